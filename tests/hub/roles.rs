//! Each role's view, and the one-renderer rule.

use std::time::Duration;

use eva_hub::protocol::model::{Event, RendererMetrics, Role, StatePatch};
use eva_hub::protocol::{ClientFrame, Codec, ErrorCode, ServerFrame};

use crate::support::*;

#[tokio::test]
async fn participants_see_state_and_answers_but_never_staff_events() {
    let app = spawn_app().await;
    let (id, mut renderer) = app.active_session(Codec::Json).await;
    let mut op = app.connect(Role::Operator, "op-1", Codec::MsgPack).await;
    let op_snap = op.join(id).await;
    assert!(
        op_snap.control.is_some() && op_snap.alerts.is_some(),
        "operators see control and alerts"
    );
    let mut p = app.connect(Role::Participant, "p-1", Codec::Json).await;
    let p_snap = p.join(id).await;
    assert!(p_snap.control.is_none() && p_snap.alerts.is_none() && p_snap.metrics.is_none());
    assert!(
        p_snap.presence.members.is_none(),
        "participants get the count, not the list"
    );

    op.send(&ClientFrame::Suggestion {
        session: id,
        id: "s1".into(),
        text: "mention pricing".into(),
    })
    .await;
    renderer
        .send(&ClientFrame::Metrics {
            session: id,
            metrics: RendererMetrics {
                latency_ms: Some(120.0),
                ..Default::default()
            },
        })
        .await;
    renderer
        .send(&ClientFrame::State {
            session: id,
            state: StatePatch {
                current_slide: Some(4),
                ..Default::default()
            },
            id: None,
        })
        .await;

    // Staff get the suggestion; operators get metrics.
    let (_, e) = renderer.event("suggestion").await;
    assert!(matches!(e, Event::Suggestion { text, .. } if text == "mention pricing"));
    op.event("suggestion").await;
    let (_, m) = op.event("metrics").await;
    assert!(matches!(m, Event::Metrics { metrics } if metrics.latency_ms == Some(120.0)));

    // The participant sees the slide change and nothing of the rest.
    let mut seen = Vec::new();
    loop {
        match p.next().await {
            ServerFrame::Event { event, .. } => {
                let done = matches!(event, Event::State { ref state } if state.current_slide == 4);
                seen.push(event.kind());
                if done {
                    break;
                }
            }
            _ => continue,
        }
    }
    p.none_within(Duration::from_millis(300), |f| {
        matches!(f, ServerFrame::Event { event, .. } if !event.audience().includes(Role::Participant))
    })
    .await;
    for kind in seen {
        assert!(
            !["suggestion", "metrics", "alert", "presence", "question"].contains(&kind),
            "participant saw {kind}"
        );
    }
}

#[tokio::test]
async fn an_operator_watches_many_sessions_over_one_connection() {
    let app = spawn_app().await;
    let (a, mut ra) = app.active_session(Codec::Json).await;
    let (b, mut rb) = app.active_session(Codec::MsgPack).await;
    let mut op = app.connect(Role::Operator, "console", Codec::Json).await;
    op.join(a).await;
    op.join(b).await;
    for (s, r) in [(a, &mut ra), (b, &mut rb)] {
        r.send(&ClientFrame::State {
            session: s,
            state: StatePatch {
                current_topic: Some(Some(format!("topic {s}"))),
                ..Default::default()
            },
            id: None,
        })
        .await;
    }
    let mut got = std::collections::HashSet::new();
    while got.len() < 2 {
        if let ServerFrame::Event {
            session,
            event: Event::State { state },
            ..
        } = op.next().await
            && state.current_topic.is_some()
        {
            assert_eq!(state.current_topic.unwrap(), format!("topic {session}"));
            got.insert(session);
        }
    }
}

#[tokio::test]
async fn a_second_renderer_is_refused_unless_it_takes_over_with_a_fence() {
    let app = spawn_app().await;
    let (id, mut first) = app.active_session(Codec::Json).await;
    let mut op = app.connect(Role::Operator, "op", Codec::Json).await;
    op.join(id).await;

    let mut second = app
        .connect(Role::Renderer, "renderer-2", Codec::MsgPack)
        .await;
    second
        .send(&ClientFrame::Join {
            session: id,
            resume: None,
            takeover: false,
            name: None,
            compact: false,
            echo: true,
            id: Some("j".into()),
        })
        .await;
    let err = second
        .until(|f| matches!(f, ServerFrame::Error { .. }))
        .await;
    assert!(
        matches!(
            err,
            ServerFrame::Error {
                code: ErrorCode::RendererActive,
                ..
            }
        ),
        "{err:?}"
    );

    second
        .send(&ClientFrame::Join {
            session: id,
            resume: None,
            takeover: true,
            name: None,
            compact: false,
            echo: true,
            id: Some("j2".into()),
        })
        .await;
    let joined = second
        .until(|f| matches!(f, ServerFrame::Joined { .. }))
        .await;
    let ServerFrame::Joined {
        fence: Some(fence), ..
    } = joined
    else {
        panic!("{joined:?}")
    };
    assert_eq!(fence, 2);
    // The replaced renderer is closed with the final "replaced" code.
    assert_eq!(first.closed().await, Some(4504));
    let (_, e) = op.event("renderer").await;
    assert!(matches!(
        e,
        Event::Renderer {
            connected: true,
            fence: 2,
            ..
        }
    ));
    // The new renderer's frames are accepted.
    second
        .send(&ClientFrame::State {
            session: id,
            state: StatePatch {
                current_slide: Some(9),
                ..Default::default()
            },
            id: Some("st".into()),
        })
        .await;
    second
        .until(|f| matches!(f, ServerFrame::Ack { id, .. } if id == "st"))
        .await;
}

#[tokio::test]
async fn roles_cannot_do_each_others_jobs() {
    let app = spawn_app().await;
    let (id, _r) = app.active_session(Codec::Json).await;
    let mut p = app.connect(Role::Participant, "p", Codec::Json).await;
    p.join(id).await;
    p.send(&ClientFrame::Takeover {
        session: id,
        reason: None,
        id: Some("t".into()),
    })
    .await;
    let e = p.until(|f| matches!(f, ServerFrame::Error { .. })).await;
    assert!(
        matches!(e, ServerFrame::Error { code: ErrorCode::Forbidden, id: Some(ref i), .. } if i == "t")
    );
    p.send(&ClientFrame::State {
        session: id,
        state: StatePatch::default(),
        id: None,
    })
    .await;
    let e = p.until(|f| matches!(f, ServerFrame::Error { .. })).await;
    assert!(matches!(
        e,
        ServerFrame::Error {
            code: ErrorCode::Forbidden,
            ..
        }
    ));
    // A participant serves one session.
    let other = app.create_session().await;
    p.send(&ClientFrame::Join {
        session: other,
        resume: None,
        takeover: false,
        name: None,
        compact: false,
        echo: true,
        id: None,
    })
    .await;
    let e = p.until(|f| matches!(f, ServerFrame::Error { .. })).await;
    assert!(matches!(
        e,
        ServerFrame::Error {
            code: ErrorCode::AlreadyJoined,
            ..
        }
    ));
}

#[tokio::test]
async fn another_tenants_session_is_not_found() {
    let app = spawn_app().await;
    let id = app.create_session().await;
    let other_tenant = eva_hub::ids::TenantId::new();
    let token = eva_hub::auth::dev::dev_token(Role::Participant, "eve", Some(other_tenant));
    let mut c = TestClient {
        client: eva_hub::client::Client::connect(
            app.addr,
            eva_hub::client::ConnectOptions::new(Codec::Json, token),
        )
        .await
        .unwrap(),
    };
    c.next().await; // welcome
    c.send(&ClientFrame::Join {
        session: id,
        resume: None,
        takeover: false,
        name: None,
        compact: false,
        echo: true,
        id: None,
    })
    .await;
    let e = c.until(|f| matches!(f, ServerFrame::Error { .. })).await;
    assert!(matches!(
        e,
        ServerFrame::Error {
            code: ErrorCode::NotFound,
            ..
        }
    ));
    let res = app
        .http
        .get(app.url(&format!("/v1/sessions/{id}")))
        .bearer_auth(format!("dev:backend:svc:{other_tenant}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 404);
}
