//! Tenant isolation, as properties: whatever tenant A does over REST or
//! WebSocket to a session of tenant B, the answer is exactly the answer
//! for a session that does not exist, B's session does not change, and no
//! trace of it reaches A's views.

use std::sync::Arc;

use eva_hub::ids::SessionId;
use eva_hub::protocol::model::Role;
use eva_hub::protocol::{ClientFrame, ServerFrame};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Value, json};

use crate::support::*;

#[derive(Clone, Copy, Debug)]
enum RestOp {
    Get,
    Stop,
    Status,
    Publish,
    Conversation,
    Interventions,
    Alerts,
    Mint,
}

#[derive(Clone, Copy, Debug)]
enum WsOp {
    /// An operator of A (any of A's sessions) joins.
    JoinOperator,
    /// A token of tenant A that names the session (as no backend of A
    /// could mint: the hub refuses) joins.
    JoinParticipant,
    JoinRenderer,
    PublishUnjoined,
    TakeoverUnjoined,
    QuestionUnjoined,
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Rest(RestOp),
    Ws(WsOp),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        prop_oneof![
            Just(RestOp::Get),
            Just(RestOp::Stop),
            Just(RestOp::Status),
            Just(RestOp::Publish),
            Just(RestOp::Conversation),
            Just(RestOp::Interventions),
            Just(RestOp::Alerts),
            Just(RestOp::Mint),
        ]
        .prop_map(Op::Rest),
        prop_oneof![
            Just(WsOp::JoinOperator),
            Just(WsOp::JoinParticipant),
            Just(WsOp::JoinRenderer),
            Just(WsOp::PublishUnjoined),
            Just(WsOp::TakeoverUnjoined),
            Just(WsOp::QuestionUnjoined),
        ]
        .prop_map(Op::Ws),
    ]
}

/// B's sessions in different states, and what A has open.
struct World {
    app: SecApp,
    /// Created, active (renderer connected), stopped.
    b_sessions: [SessionId; 3],
    /// An operator of A, joined to A's own active session, watching for
    /// anything of B's.
    a_watcher: tokio::sync::Mutex<TestClient>,
    a_session: SessionId,
    _b_renderer: TestClient,
}

async fn world() -> World {
    let app = spawn().await;
    let created = app.session(&app.b).await;
    let active = app.session(&app.b).await;
    let stopped = app.session(&app.b).await;
    let renderer = app.renderer(&app.b, "b-renderer", active).await;
    let mut r = app.connect(&renderer).await;
    r.join(active).await;
    r.send(&ClientFrame::Status {
        session: active,
        status: eva_hub::protocol::SessionStatus::Active,
        reason: None,
        id: Some("go".into()),
    })
    .await;
    r.until(|f| matches!(f, ServerFrame::Ack { id, .. } if id == "go"))
        .await;
    let a = app
        .post(
            &format!("/v1/sessions/{stopped}/stop"),
            &app.b.writer,
            json!({}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a_session = app.session(&app.a).await;
    let op = app.operator(&app.a, "a-watcher").await;
    let mut w = app.connect(&op).await;
    w.join(a_session).await;
    World {
        app,
        b_sessions: [created, active, stopped],
        a_watcher: tokio::sync::Mutex::new(w),
        a_session,
        _b_renderer: r,
    }
}

fn normalise(body: &str, id: SessionId) -> String {
    body.replace(&id.to_string(), "<session>")
}

async fn rest(w: &World, op: RestOp, id: SessionId) -> (u16, String) {
    let app = &w.app;
    let key = &app.a.admin;
    let a = match op {
        RestOp::Get => app.get(&format!("/v1/sessions/{id}"), key).await,
        RestOp::Stop => {
            app.post(&format!("/v1/sessions/{id}/stop"), key, json!({}))
                .await
        }
        RestOp::Status => {
            app.post(
                &format!("/v1/sessions/{id}/status"),
                key,
                json!({"status": "paused"}),
            )
            .await
        }
        RestOp::Publish => {
            app.post(
                &format!("/v1/sessions/{id}/events"),
                key,
                json!({"name": "probe", "data": {"from": "a"}}),
            )
            .await
        }
        RestOp::Conversation => {
            app.get(&format!("/v1/sessions/{id}/conversation"), key)
                .await
        }
        RestOp::Interventions => {
            app.get(&format!("/v1/sessions/{id}/interventions"), key)
                .await
        }
        RestOp::Alerts => app.get(&format!("/v1/sessions/{id}/alerts"), key).await,
        RestOp::Mint => {
            app.post(
                "/v1/tokens",
                key,
                json!({"role": "participant", "subject": "x", "sessions": [id]}),
            )
            .await
        }
    };
    (a.status, normalise(&a.body, id))
}

/// The error frame a WebSocket operation gets: code and message.
async fn ws(w: &World, op: WsOp, id: SessionId) -> (String, String) {
    let app = &w.app;
    let tenant = app.a.id;
    let (token, frame) = match op {
        WsOp::JoinOperator => (
            sign("hs-1", &claims(tenant, Role::Operator, "a-op", None)),
            join(id, false),
        ),
        WsOp::JoinParticipant => (
            sign(
                "rs-1",
                &claims(tenant, Role::Participant, "a-p", Some(&[id])),
            ),
            join(id, false),
        ),
        WsOp::JoinRenderer => (
            sign("es-1", &claims(tenant, Role::Renderer, "a-r", Some(&[id]))),
            join(id, true),
        ),
        WsOp::PublishUnjoined => (
            sign("hs-1", &claims(tenant, Role::Operator, "a-op", None)),
            ClientFrame::Publish {
                session: id,
                name: "probe".into(),
                audience: Default::default(),
                data: json!(1),
                id: Some("x".into()),
            },
        ),
        WsOp::TakeoverUnjoined => (
            sign("hs-1", &claims(tenant, Role::Operator, "a-op", None)),
            ClientFrame::Takeover {
                session: id,
                reason: None,
                id: Some("x".into()),
            },
        ),
        WsOp::QuestionUnjoined => (
            sign(
                "hs-1",
                &claims(tenant, Role::Participant, "a-p", Some(&[id])),
            ),
            ClientFrame::Question {
                session: id,
                id: "x".into(),
                text: "hello?".into(),
            },
        ),
    };
    let mut c = app.connect(&token).await;
    c.send(&frame).await;
    let answer = match c
        .until(|f| {
            matches!(
                f,
                ServerFrame::Error { .. } | ServerFrame::Joined { .. } | ServerFrame::Ack { .. }
            )
        })
        .await
    {
        ServerFrame::Error { code, message, .. } => (code.as_str().to_owned(), message),
        other => (format!("{other:?}"), String::new()),
    };
    let _ = c.client.close().await;
    answer
}

fn join(session: SessionId, takeover: bool) -> ClientFrame {
    ClientFrame::Join {
        session,
        resume: None,
        takeover,
        name: None,
        compact: false,
        echo: true,
        id: Some("x".into()),
    }
}

/// B's view of its session: status and stream position.
async fn b_view(w: &World, id: SessionId) -> Value {
    let a = w
        .app
        .get(&format!("/v1/sessions/{id}"), &w.app.b.reader)
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let v = a.json();
    json!({"status": v["status"], "seq": v["live"]["position"]["seq"]})
}

async fn case(w: &World, ops: Vec<(Op, usize)>) -> Result<(), TestCaseError> {
    for (op, which) in ops {
        let target = w.b_sessions[which % 3];
        let before = b_view(w, target).await;
        let absent = SessionId::new();
        match op {
            Op::Rest(r) => {
                let on_b = rest(w, r, target).await;
                let on_absent = rest(w, r, absent).await;
                prop_assert_eq!(&on_b, &on_absent, "{:?} on B's session", r);
                prop_assert_eq!(on_b.0, 404, "{:?}", r);
            }
            Op::Ws(o) => {
                let on_b = ws(w, o, target).await;
                let on_absent = ws(w, o, absent).await;
                prop_assert_eq!(&on_b, &on_absent, "{:?} on B's session", o);
            }
        }
        prop_assert_eq!(before, b_view(w, target).await, "B's session changed");
    }
    // A's listing never names B's sessions, even paging from one of them.
    for before in [None, Some(w.b_sessions[1])] {
        let path = match before {
            Some(b) => format!("/v1/sessions?before={b}&limit=500"),
            None => "/v1/sessions?limit=500".into(),
        };
        let a = w.app.get(&path, &w.app.a.reader).await;
        for b in w.b_sessions {
            prop_assert!(
                !a.body.contains(&b.to_string()),
                "A's listing shows B's session"
            );
        }
    }
    // Nothing of B's reached A's operator.
    let mut watcher = w.a_watcher.lock().await;
    while let Ok(eva_hub::client::Incoming::Frame(f)) = watcher
        .client
        .recv_timeout(std::time::Duration::from_millis(20))
        .await
    {
        let text = format!("{f:?}");
        for b in w.b_sessions {
            prop_assert!(!text.contains(&b.to_string()), "A saw {}", text);
        }
        if let ServerFrame::Event { session, .. } = f {
            prop_assert_eq!(session, w.a_session);
        }
    }
    Ok(())
}

#[test]
fn tenant_a_never_reaches_or_learns_of_tenant_b_sessions() {
    let rt = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap(),
    );
    let w = rt.block_on(world());
    let mut runner = TestRunner::new(Config {
        cases: 24,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&proptest::collection::vec((op(), 0usize..3), 1..6), |ops| {
            rt.block_on(case(&w, ops))
        })
        .unwrap();
    // B still sees its own sessions.
    rt.block_on(async {
        let a = w.app.get("/v1/sessions", &w.app.b.reader).await;
        for b in w.b_sessions {
            assert!(a.body.contains(&b.to_string()));
        }
    });
}
