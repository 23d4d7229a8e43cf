//! Every abuse limit, each with its documented refusal.

use eva_hub::client::ConnectOptions;
use eva_hub::ids::TenantId;
use eva_hub::protocol::model::{Role, StatePatch};
use eva_hub::protocol::{ClientFrame, Codec, ErrorCode, ServerFrame};
use eva_hub::store::{Store, TenantRecord};

use crate::support::*;

fn rate_limited(f: &ServerFrame) -> Option<u64> {
    match f {
        ServerFrame::Error {
            code: ErrorCode::RateLimited,
            retry_after_ms,
            ..
        } => *retry_after_ms,
        _ => None,
    }
}

#[tokio::test]
async fn connections_per_address() {
    let mut s = settings();
    s.limits.connections_per_ip = 2;
    let app = spawn_with(s).await;
    let token = sign("hs-1", &claims(app.a.id, Role::Operator, "op", None));
    let first = app.connect(&token).await;
    let _second = app.connect(&token).await;
    let (status, body) = app
        .refusal(ConnectOptions::new(Codec::Json, token.clone()))
        .await;
    assert_eq!(status, 429, "{body}");
    assert!(
        body.contains("rate_limited") && body.contains("retry_after_ms"),
        "{body}"
    );
    // Unauthenticated connections hold a slot too.
    drop(first);
    eventually("a slot to be free again", || async {
        app.try_connect(&token).await.is_ok()
    })
    .await;
}

#[tokio::test]
async fn connections_per_tenant_follow_its_record() {
    let app = spawn().await;
    let mut rec = TenantRecord::new(TenantId::new(), "small@example.com");
    rec.concurrent_sessions_limit = 2;
    let small = tenant(app.store.as_ref(), rec).await;
    let token = sign("hs-1", &claims(small.id, Role::Participant, "p", None));
    let _a = app.connect(&token).await;
    let b = app.connect(&token).await;
    // By header: refused before the upgrade.
    let (status, body) = app
        .refusal(ConnectOptions::new(Codec::Json, token.clone()))
        .await;
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("connections for this tenant"), "{body}");
    // By `auth` frame: closed with 4004.
    let mut o = ConnectOptions::new(Codec::Json, token.clone());
    o.origin = Some(ORIGIN.into());
    o.token_in_frame = true;
    let mut c = TestClient {
        client: app.try_connect_with(o).await.unwrap(),
    };
    assert_eq!(c.closed().await, Some(4004));
    // Other tenants are not affected.
    app.connect(&sign(
        "hs-1",
        &claims(app.a.id, Role::Participant, "p", None),
    ))
    .await;
    drop(b);
    eventually("the tenant to have room again", || async {
        app.try_connect(&token).await.is_ok()
    })
    .await;
    // A deactivated tenant cannot connect.
    let mut rec = TenantRecord::new(TenantId::new(), "gone@example.com");
    rec.is_active = false;
    app.store.ensure_tenant(&rec).await.unwrap();
    let (status, body) = app
        .refusal(ConnectOptions::new(
            Codec::Json,
            sign("hs-1", &claims(rec.id, Role::Participant, "p", None)),
        ))
        .await;
    assert_eq!((status, body.as_str()), (401, UNAUTHORIZED));
}

#[tokio::test]
async fn frame_rate_errors_then_closes_persistent_abuse() {
    let mut s = settings();
    s.limits.frames_per_s = 5;
    s.limits.frames_burst = 5;
    s.limits.strikes = 3;
    s.limits.strike_window_s = 60;
    let app = spawn_with(s).await;
    let mut c = app
        .connect(&sign("hs-1", &claims(app.a.id, Role::Operator, "op", None)))
        .await;
    for i in 0..5 {
        c.send(&ClientFrame::Ping { nonce: Some(i) }).await;
        assert!(matches!(c.next().await, ServerFrame::Pong { .. }));
    }
    c.send(&ClientFrame::Ping { nonce: Some(99) }).await;
    let f = c.next().await;
    let after = rate_limited(&f).unwrap_or_else(|| panic!("expected rate_limited, got {f:?}"));
    assert!(after > 0 && after <= 200, "{after}");
    // Past the strikes: closed with 4003.
    for _ in 0..5 {
        c.client.send(&ClientFrame::Ping { nonce: None }).await.ok();
    }
    assert_eq!(c.closed().await, Some(4003));
}

#[tokio::test]
async fn frame_classes_have_their_own_buckets() {
    let mut s = settings();
    s.limits.telemetry_per_s = 2;
    s.limits.telemetry_burst = 2;
    let app = spawn_with(s).await;
    let session = app.session(&app.a).await;
    let mut r = app.connect(&app.renderer(&app.a, "r", session).await).await;
    r.join(session).await;
    for i in 0..3 {
        r.send(&ClientFrame::State {
            session,
            state: StatePatch {
                current_slide: Some(i),
                ..Default::default()
            },
            id: Some(format!("s{i}")),
        })
        .await;
    }
    let f = r
        .until(|f| matches!(f, ServerFrame::Error { id: Some(i), .. } if i == "s2"))
        .await;
    assert!(rate_limited(&f).is_some(), "{f:?}");
    // Other classes still pass.
    r.send(&ClientFrame::Ping { nonce: Some(1) }).await;
    r.until(|f| matches!(f, ServerFrame::Pong { .. })).await;
}

#[tokio::test]
async fn questions_per_participant_per_minute() {
    let mut s = settings();
    s.limits.questions_per_minute = 2;
    let app = spawn_with(s).await;
    let session = app.session(&app.a).await;
    let token = app.participant(&app.a, "curious", session).await;
    let mut p = app.connect(&token).await;
    p.join(session).await;
    // A second connection of the same participant shares the allowance.
    let mut p2 = app.connect(&token).await;
    p2.join(session).await;
    for (c, i) in [(&mut p, 0), (&mut p2, 1)] {
        c.send(&ClientFrame::Question {
            session,
            id: format!("q{i}"),
            text: "why?".into(),
        })
        .await;
        c.until(|f| matches!(f, ServerFrame::Ack { id, .. } if *id == format!("q{i}")))
            .await;
    }
    p.send(&ClientFrame::Question {
        session,
        id: "q2".into(),
        text: "and why?".into(),
    })
    .await;
    let f = p
        .until(|f| matches!(f, ServerFrame::Error { id: Some(i), .. } if i == "q2"))
        .await;
    let after = rate_limited(&f).unwrap_or_else(|| panic!("{f:?}"));
    assert!(after >= 1000, "{after}");
    // Another participant asks freely.
    let other = app.participant(&app.a, "other", session).await;
    let mut o = app.connect(&other).await;
    o.join(session).await;
    o.send(&ClientFrame::Question {
        session,
        id: "q".into(),
        text: "hi".into(),
    })
    .await;
    o.until(|f| matches!(f, ServerFrame::Ack { .. })).await;
}

#[tokio::test]
async fn rest_calls_per_key_and_the_monthly_quota() {
    let mut s = settings();
    s.limits.rest_per_s = 1;
    s.limits.rest_burst = 3;
    let app = spawn_with(s).await;
    for _ in 0..3 {
        assert_eq!(app.get("/v1/sessions", &app.a.reader).await.status, 200);
    }
    let a = app.get("/v1/sessions", &app.a.reader).await;
    assert_eq!(a.status, 429, "{}", a.body);
    assert_eq!(a.json()["error"]["code"], "rate_limited");
    assert!(a.json()["error"]["retry_after_ms"].as_u64().unwrap() > 0);
    assert!(a.retry_after.is_some());
    // Per key: another key of the same tenant still has its allowance.
    assert_eq!(app.get("/v1/sessions", &app.a.writer).await.status, 200);

    // The quota counts every call of a tenant's keys.
    let app = spawn().await;
    let mut rec = TenantRecord::new(TenantId::new(), "metered@example.com");
    rec.api_quota_monthly = 3;
    let metered = tenant(app.store.as_ref(), rec.clone()).await;
    for key in [&metered.reader, &metered.writer, &metered.reader] {
        assert_eq!(app.get("/v1/sessions", key).await.status, 200);
    }
    let a = app.get("/v1/sessions", &metered.writer).await;
    assert_eq!(a.status, 429, "{}", a.body);
    assert_eq!(a.json()["error"]["code"], "quota_exceeded");
    let used = app.store.get_tenant(rec.id).await.unwrap().unwrap();
    assert_eq!(used.api_calls_used, 3, "refused calls use no quota");
    // Other tenants are not affected.
    assert_eq!(app.get("/v1/sessions", &app.a.reader).await.status, 200);
}
