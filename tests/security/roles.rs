//! A credential does what its role and scopes allow, and nothing else.

use eva_hub::client::ConnectOptions;
use eva_hub::protocol::model::{Command, CustomAudience, StatePatch};
use eva_hub::protocol::{ClientFrame, Codec, ErrorCode, ServerFrame};
use serde_json::json;

use crate::support::*;

async fn expect_error(c: &mut TestClient, id: &str) -> ErrorCode {
    match c
        .until(|f| matches!(f, ServerFrame::Error { id: Some(i), .. } if i == id))
        .await
    {
        ServerFrame::Error { code, .. } => code,
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn a_participant_cannot_act_as_an_operator_or_a_renderer() {
    let app = spawn().await;
    let session = app.session(&app.a).await;
    let token = app.participant(&app.a, "pat", session).await;
    let mut p = app.connect(&token).await;
    p.join(session).await;
    let frames = vec![
        ClientFrame::Takeover {
            session,
            reason: None,
            id: Some("t".into()),
        },
        ClientFrame::Command {
            session,
            id: "c".into(),
            command: Command::Pause,
        },
        ClientFrame::Suggestion {
            session,
            id: "s".into(),
            text: "say this".into(),
        },
        ClientFrame::EmergencyStop {
            session,
            id: "e".into(),
            reason: None,
        },
        ClientFrame::State {
            session,
            state: StatePatch {
                current_slide: Some(3),
                ..Default::default()
            },
            id: Some("st".into()),
        },
        ClientFrame::Status {
            session,
            status: eva_hub::protocol::SessionStatus::Active,
            reason: None,
            id: Some("su".into()),
        },
        ClientFrame::Publish {
            session,
            name: "job.progress".into(),
            audience: CustomAudience::All,
            data: json!({}),
            id: Some("pu".into()),
        },
    ];
    for f in frames {
        let id = f.client_id().unwrap().to_owned();
        p.send(&f).await;
        assert_eq!(
            expect_error(&mut p, &id).await,
            ErrorCode::Forbidden,
            "{id}"
        );
    }
    // Its token is no key for REST, and mints nothing.
    let a = app
        .post(
            "/v1/tokens",
            &token,
            json!({"role": "operator", "subject": "pat"}),
        )
        .await;
    assert_eq!((a.status, a.body.as_str()), (401, UNAUTHORIZED));
    // A participant token names its sessions: another one of the same
    // tenant is "not found".
    let other = app.session(&app.a).await;
    let mut p2 = app.connect(&token).await;
    p2.send(&ClientFrame::Join {
        session: other,
        resume: None,
        takeover: false,
        name: None,
        compact: false,
        echo: true,
        id: Some("j".into()),
    })
    .await;
    assert_eq!(expect_error(&mut p2, "j").await, ErrorCode::NotFound);
}

#[tokio::test]
async fn scopes_decide_what_keys_may_do() {
    let app = spawn().await;
    let session = app.session(&app.a).await;
    let a = &app.a;
    // Read-only keys read, and do nothing else.
    assert_eq!(app.get("/v1/sessions", &a.reader).await.status, 200);
    for (path, body) in [
        ("/v1/sessions", json!({"name": "x"})),
        (
            "/v1/tokens",
            json!({"role": "participant", "subject": "p", "sessions": [session]}),
        ),
        ("/v1/keys", json!({"name": "k", "scopes": ["eva:read"]})),
    ] {
        let r = app.post(path, &a.reader, body).await;
        assert_eq!(r.status, 403, "{path}: {}", r.body);
        assert_eq!(r.json()["error"]["code"], "forbidden");
    }
    // Writers mint participant and renderer tokens, not operator tokens.
    app.participant(a, "p", session).await;
    app.renderer(a, "r", session).await;
    let r = app
        .post(
            "/v1/tokens",
            &a.writer,
            json!({"role": "operator", "subject": "op"}),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("eva:operate"), "{}", r.body);
    // Writers do not manage keys.
    assert_eq!(app.get("/v1/keys", &a.writer).await.status, 403);
    // Participant tokens must name their sessions.
    let r = app
        .post(
            "/v1/tokens",
            &a.writer,
            json!({"role": "participant", "subject": "p"}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    // An operator key gets operator tokens that really are operators'.
    let created = app
        .post(
            "/v1/keys",
            &a.admin,
            json!({"name": "console", "scopes": ["eva:operate"]}),
        )
        .await;
    let console = created.json()["key"].as_str().unwrap().to_owned();
    let op = app
        .mint(
            &console,
            json!({"role": "operator", "subject": "op-9", "ttl_s": 60}),
        )
        .await;
    let claims: serde_json::Value = jsonwebtoken::dangerous::insecure_decode_claims(&op).unwrap();
    assert_eq!(claims["role"], "operator");
    assert_eq!(claims["tenant"], json!(a.id));
    assert!(claims["exp"].as_u64().unwrap() <= now_s() + 61);
    let mut c = app.connect(&op).await;
    c.join(session).await;
    // A renderer token cannot be used by a browser page of another site.
    let renderer = app.renderer(a, "r2", session).await;
    let mut opts = ConnectOptions::new(Codec::Json, renderer);
    opts.origin = Some("https://evil.example".into());
    let (status, _) = app.refusal(opts).await;
    assert_eq!(status, 403);
}
