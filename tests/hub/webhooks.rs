//! Outbound webhooks end to end: a real receiver on 127.0.0.1, every
//! delivery verified with the Standard Webhooks reference library
//! (`standardwebhooks` from PyPI, in a virtualenv under `target/`), the
//! REST API, retries and `Retry-After`, disabling, address refusal, a
//! hanging endpoint, and a delivery that survives a hub restart.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use eva_hub::config::Settings;
use eva_hub::protocol::model::{AlertType, Event, Role};
use eva_hub::protocol::{ClientFrame, Codec, ServerFrame};
use eva_hub::store::Store;
use eva_hub::store::memory::MemoryStore;
use eva_hub::store::sqlite::SqliteStore;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::support::*;

/// How long a test waits for deliveries before it fails.
const DELIVERY_WAIT: Duration = Duration::from_secs(20);

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Received {
    path: String,
    headers: HashMap<String, String>,
    body: String,
}

impl Received {
    fn id(&self) -> &str {
        &self.headers["webhook-id"]
    }
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
    fn event_type(&self) -> String {
        self.json()["type"].as_str().unwrap().to_owned()
    }
}

/// A scripted answer: status and `Retry-After`.
type Answer = (u16, Option<&'static str>);

#[derive(Default)]
struct ReceiverState {
    got: Mutex<Vec<Received>>,
    /// Answers to give per path before answering 204: (status, Retry-After).
    script: Mutex<HashMap<String, Vec<Answer>>>,
    changed: Notify,
}

/// A webhook receiver on 127.0.0.1. Paths: `/ok/…` answers 204 (after
/// the scripted answers for that path, if any), `/fail/…` always 500,
/// `/hang/…` never answers.
struct Receiver {
    addr: SocketAddr,
    state: Arc<ReceiverState>,
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    Path((kind, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = format!("/{kind}/{name}");
    let headers = headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    state.got.lock().push(Received {
        path: path.clone(),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    state.changed.notify_waiters();
    match kind.as_str() {
        "hang" => {
            std::future::pending::<()>().await;
            StatusCode::NO_CONTENT.into_response()
        }
        "fail" => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        _ => {
            let next = state.script.lock().get_mut(&path).and_then(|s| {
                if s.is_empty() {
                    None
                } else {
                    Some(s.remove(0))
                }
            });
            match next {
                Some((status, after)) => {
                    let mut res = StatusCode::from_u16(status).unwrap().into_response();
                    if let Some(a) = after {
                        res.headers_mut().insert("retry-after", a.parse().unwrap());
                    }
                    res
                }
                None => StatusCode::NO_CONTENT.into_response(),
            }
        }
    }
}

impl Receiver {
    async fn start() -> Receiver {
        let state = Arc::new(ReceiverState::default());
        let app = Router::new()
            .route("/{kind}/{name}", post(receive))
            .with_state(state.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { addr, state }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    fn script(&self, path: &str, answers: Vec<Answer>) {
        self.state.script.lock().insert(path.to_owned(), answers);
    }

    fn got(&self, path: &str) -> Vec<Received> {
        self.state
            .got
            .lock()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// Waits until `done` holds for the requests to `path`.
    async fn until(&self, path: &str, mut done: impl FnMut(&[Received]) -> bool) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + DELIVERY_WAIT;
        loop {
            let changed = self.state.changed.notified();
            let got = self.got(path);
            if done(&got) {
                return got;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                panic!("the receiver did not get what was expected at {path}: {got:#?}");
            }
        }
    }
}

/// The virtualenv with the Standard Webhooks reference library, made on
/// first use. Fails (never skips) when Python or the package cannot be
/// had, and says how to fix it.
fn python() -> PathBuf {
    static VENV: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    VENV.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/webhooks-venv");
        let py = dir.join("bin/python");
        let has = |py: &PathBuf| {
            Command::new(py)
                .args(["-c", "import standardwebhooks"])
                .status()
                .is_ok_and(|s| s.success())
        };
        if !has(&py) {
            let made = Command::new("python3")
                .args(["-m", "venv"])
                .arg(&dir)
                .status()
                .is_ok_and(|s| s.success());
            assert!(
                made,
                "cannot make {}: install Python 3 with venv",
                dir.display()
            );
            let installed = Command::new(dir.join("bin/pip"))
                .args(["install", "-q", "standardwebhooks"])
                .status()
                .is_ok_and(|s| s.success());
            assert!(
                installed && has(&py),
                "cannot install the `standardwebhooks` package into {}: \
                 run `{}/bin/pip install standardwebhooks`",
                dir.display(),
                dir.display()
            );
        }
        py
    })
    .clone()
}

/// Verifies every request with `standardwebhooks.Webhook(secret).verify`
/// and returns the payloads it accepted.
fn verify_with_reference_library(secret: &str, requests: &[Received]) -> Vec<Value> {
    let input: Vec<Value> = requests
        .iter()
        .map(|r| json!({"headers": r.headers, "body": r.body}))
        .collect();
    let script = r#"
import json, sys
from standardwebhooks.webhooks import Webhook
secret = sys.argv[1]
out = []
for r in json.load(sys.stdin):
    out.append(Webhook(secret).verify(r["body"], r["headers"]))
json.dump(out, sys.stdout)
"#;
    let mut child = Command::new(python())
        .args(["-c", script, secret])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(Value::from(input).to_string().as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "standardwebhooks refused a delivery: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn settings() -> Settings {
    let mut s = test_settings();
    s.webhooks.poll_interval_ms = 50;
    s.webhooks.retry_initial_ms = 50;
    s.webhooks.retry_max_ms = 200;
    s
}

/// Creates an endpoint; returns its id and secret.
async fn subscribe(app: &TestApp, url: &str, events: Value, extra: Value) -> (String, String) {
    let mut body = json!({"url": url, "events": events, "description": "test receiver"});
    if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
        b.extend(e);
    }
    let (status, created) = app.post("/v1/webhooks", body).await;
    assert_eq!(status, 201, "{created}");
    (
        created["id"].as_str().unwrap().to_owned(),
        created["secret"].as_str().unwrap().to_owned(),
    )
}

async fn deliveries(app: &TestApp, id: &str) -> Vec<Value> {
    let (status, page) = app.get(&format!("/v1/webhooks/{id}/deliveries")).await;
    assert_eq!(status, 200, "{page}");
    page["items"].as_array().unwrap().clone()
}

async fn set_status(app: &TestApp, session: eva_hub::ids::SessionId, status: &str) {
    let (code, body) = app
        .post(
            &format!("/v1/sessions/{session}/status"),
            json!({ "status": status }),
        )
        .await;
    assert_eq!(code, 200, "{body}");
}

#[tokio::test]
async fn deliveries_verify_with_the_standard_webhooks_library() {
    let rx = Receiver::start().await;
    let app = spawn_with(settings(), Arc::new(MemoryStore::new())).await;
    let (all_id, secret) = subscribe(&app, &rx.url("/ok/all"), json!(["*"]), json!({})).await;
    let (_, q_secret) = subscribe(
        &app,
        &rx.url("/ok/questions"),
        json!(["question.created"]),
        json!({}),
    )
    .await;

    let (session, mut renderer) = app.active_session(Codec::Json).await;
    let mut p = app.connect(Role::Participant, "dave", Codec::Json).await;
    p.join(session).await;
    p.send(&ClientFrame::Question {
        session,
        id: "q-1".into(),
        text: "What does it cost?".into(),
    })
    .await;
    p.until(|f| matches!(f, ServerFrame::Ack { .. })).await;
    renderer.event("question").await;

    let wanted = ["session.created", "session.active", "question.created"];
    let got = rx
        .until("/ok/all", |r| {
            wanted
                .iter()
                .all(|w| r.iter().any(|x| x.event_type() == *w))
        })
        .await;
    let verified = verify_with_reference_library(&secret, &got);
    assert_eq!(verified.len(), got.len());
    for (r, v) in got.iter().zip(&verified) {
        assert!(r.id().starts_with("msg_"));
        assert!(r.headers["webhook-signature"].starts_with("v1,"));
        assert!(r.headers["webhook-timestamp"].parse::<i64>().is_ok());
        assert_eq!(r.headers["content-type"], "application/json");
        assert_eq!(v, &r.json(), "the library returns the payload");
        assert_eq!(v["data"]["session_id"], json!(session));
    }
    let question = got
        .iter()
        .find(|r| r.event_type() == "question.created")
        .unwrap()
        .json();
    assert_eq!(question["data"]["kind"], "question");
    assert_eq!(question["data"]["text"], "What does it cost?");
    assert_eq!(question["data"]["participant_id"], "dave");

    // The filtered endpoint gets only questions, signed with its own secret.
    let q = rx.until("/ok/questions", |r| !r.is_empty()).await;
    assert!(q.iter().all(|r| r.event_type() == "question.created"));
    verify_with_reference_library(&q_secret, &q);
    // Signed with the other secret, the library refuses it.
    let wrong = std::panic::catch_unwind(|| verify_with_reference_library(&secret, &q));
    assert!(wrong.is_err(), "another endpoint's secret must not verify");

    // The deliveries API shows them delivered, with their webhook-ids.
    let list = loop {
        let list = deliveries(&app, &all_id).await;
        if list.len() >= got.len() && list.iter().all(|d| d["status"] == "delivered") {
            break list;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    for r in &got {
        let d = list.iter().find(|d| d["msg_id"] == r.id()).unwrap();
        assert_eq!(d["attempts"], 1);
        assert_eq!(d["response_status"], 204);
        assert_eq!(d["body"], r.body.as_str());
    }
}

#[tokio::test]
async fn rest_manages_endpoints_per_tenant() {
    let rx = Receiver::start().await;
    let app = spawn_with(settings(), Arc::new(MemoryStore::new())).await;
    let (id, secret) = subscribe(
        &app,
        &rx.url("/ok/crud"),
        json!(["session.active", "alert.raised"]),
        json!({"retry_count": 5, "timeout_seconds": 7}),
    )
    .await;
    assert!(secret.starts_with("whsec_"));
    let (status, one) = app.get(&format!("/v1/webhooks/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(one["events"], json!(["session.active", "alert.raised"]));
    assert_eq!(
        (one["retry_count"].clone(), one["timeout_seconds"].clone()),
        (json!(5), json!(7))
    );
    assert!(one.get("secret").is_none(), "the secret is shown once");
    assert!(!one.to_string().contains(&secret));
    let (_, list) = app.get("/v1/webhooks").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert!(!list.to_string().contains(&secret));

    // Another tenant sees nothing of it.
    let other = format!("dev:backend:other:{}", uuid::Uuid::now_v7());
    let res = app
        .http
        .get(app.url(&format!("/v1/webhooks/{id}")))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);

    let patch = |body: Value| {
        let http = app.http.clone();
        let url = app.url(&format!("/v1/webhooks/{id}"));
        async move {
            let res = http.patch(url).json(&body).send().await.unwrap();
            let status = res.status().as_u16();
            (status, res.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (status, changed) =
        patch(json!({"events": ["*"], "description": null, "is_active": false})).await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["events"], json!(["*"]));
    assert!(changed.get("description").is_none());
    assert_eq!(changed["is_active"], false);

    // Clear refusals.
    for (body, what) in [
        (
            json!({"url": rx.url("/ok/x"), "events": ["no.such"]}),
            "unknown event",
        ),
        (json!({"url": rx.url("/ok/x"), "events": []}), "no events"),
        (
            json!({"url": "ftp://example.com/", "events": ["*"]}),
            "bad scheme",
        ),
        (
            json!({"url": "http://10.1.2.3/hook", "events": ["*"]}),
            "private address",
        ),
        (
            json!({"url": "http://169.254.169.254/latest", "events": ["*"]}),
            "metadata",
        ),
        (
            json!({"url": rx.url("/ok/x"), "events": ["*"], "retry_count": 99}),
            "retry_count",
        ),
        (
            json!({"url": rx.url("/ok/x"), "events": ["*"], "timeout_seconds": 0}),
            "timeout",
        ),
    ] {
        let (status, err) = app.post("/v1/webhooks", body).await;
        assert_eq!(status, 400, "{what}: {err}");
        assert_eq!(err["error"]["code"], "invalid", "{what}");
    }
    let (status, _) = patch(json!({"url": "http://[fd00::1]/"})).await;
    assert_eq!(status, 400);
    let (status, _) = app
        .post(
            "/v1/webhooks/nope/replay",
            json!({"since": "2026-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = app
        .post(&format!("/v1/webhooks/{id}/replay"), json!({}))
        .await;
    assert_eq!(status, 400, "replay needs since or delivery_id");

    let res = app
        .http
        .delete(app.url(&format!("/v1/webhooks/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let (status, _) = app.get(&format!("/v1/webhooks/{id}")).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn retries_keep_the_webhook_id_and_honour_retry_after() {
    let rx = Receiver::start().await;
    let mut s = settings();
    // Without Retry-After the next attempt would be minutes away.
    s.webhooks.retry_initial_ms = 600_000;
    s.webhooks.retry_max_ms = 600_000;
    let app = spawn_with(s, Arc::new(MemoryStore::new())).await;
    rx.script("/ok/flaky", vec![(503, Some("1")), (429, Some("1"))]);
    let (id, secret) = subscribe(
        &app,
        &rx.url("/ok/flaky"),
        json!(["session.created"]),
        json!({"retry_count": 3}),
    )
    .await;
    app.create_session().await;
    let got = rx.until("/ok/flaky", |r| r.len() >= 3).await;
    assert_eq!(got.len(), 3);
    assert!(
        got.iter().all(|r| r.id() == got[0].id()),
        "one webhook-id for every attempt"
    );
    assert!(got.iter().all(|r| r.body == got[0].body));
    verify_with_reference_library(&secret, &got);
    let d = loop {
        let list = deliveries(&app, &id).await;
        if list[0]["status"] == "delivered" {
            break list[0].clone();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(d["attempts"], 3);
}

#[tokio::test]
async fn a_failing_endpoint_is_disabled_and_operators_are_alerted() {
    let rx = Receiver::start().await;
    let mut s = settings();
    s.webhooks.disable_after_failures = 3;
    let app = spawn_with(s, Arc::new(MemoryStore::new())).await;
    let (session, _renderer) = app.active_session(Codec::Json).await;
    let mut op = app.connect(Role::Operator, "ops-1", Codec::Json).await;
    op.join(session).await;
    let (id, _) = subscribe(
        &app,
        &rx.url("/fail/down"),
        // Not `session.active`: the session's own activation may still be
        // on its way to the store, and would queue a second delivery.
        json!(["session.paused"]),
        json!({"retry_count": 10}),
    )
    .await;
    set_status(&app, session, "paused").await;
    let f = op
        .until(|f| {
            matches!(f, ServerFrame::Event { event: Event::Alert { alert }, .. }
                if alert.alert_type == AlertType::WebhookDisabled)
        })
        .await;
    let ServerFrame::Event {
        event: Event::Alert { alert },
        ..
    } = f
    else {
        unreachable!()
    };
    assert_eq!(alert.metadata["webhook_id"], json!(id));
    assert_eq!(alert.metadata["failure_count"], 3);
    let (_, w) = app.get(&format!("/v1/webhooks/{id}")).await;
    assert_eq!(w["is_active"], false);
    assert_eq!(w["failure_count"], 3);
    assert!(
        w["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("3 consecutive")
    );
    assert_eq!(
        rx.got("/fail/down").len(),
        3,
        "exactly the attempts up to the threshold"
    );
    // A disabled endpoint gets no new deliveries.
    set_status(&app, session, "active").await;
    set_status(&app, session, "paused").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.got("/fail/down").len(), 3);
    let list = deliveries(&app, &id).await;
    assert_eq!(list.len(), 1, "no delivery queued for a disabled endpoint");
}

#[tokio::test]
async fn a_hanging_endpoint_slows_neither_others_nor_the_sessions() {
    let rx = Receiver::start().await;
    let mut s = settings();
    s.webhooks.max_in_flight_per_endpoint = 2;
    s.webhooks.queue_per_endpoint = 4;
    let app = spawn_with(s, Arc::new(MemoryStore::new())).await;
    subscribe(
        &app,
        &rx.url("/hang/slow"),
        json!(["*"]),
        json!({"timeout_seconds": 300}),
    )
    .await;
    subscribe(&app, &rx.url("/ok/fast"), json!(["*"]), json!({})).await;
    let (session, _renderer) = app.active_session(Codec::Json).await;
    let mut op = app.connect(Role::Operator, "ops-1", Codec::Json).await;
    op.join(session).await;
    for i in 0..20 {
        set_status(&app, session, if i % 2 == 0 { "paused" } else { "active" }).await;
        // The sessions keep flowing: the operator sees every transition.
        op.event("lifecycle").await;
    }
    // Every transition reaches the healthy endpoint.
    rx.until("/ok/fast", |r| {
        r.iter()
            .filter(|x| x.event_type() == "session.paused")
            .count()
            == 10
            && r.iter()
                .filter(|x| x.event_type() == "session.active")
                .count()
                == 11
    })
    .await;
    // The hanging one holds its two slots and was sent nothing more.
    rx.until("/hang/slow", |r| r.len() >= 2).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        rx.got("/hang/slow").len(),
        2,
        "only its in-flight slots are used"
    );
}

#[tokio::test]
async fn replay_resends_with_the_original_webhook_id() {
    let rx = Receiver::start().await;
    let app = spawn_with(settings(), Arc::new(MemoryStore::new())).await;
    let (id, secret) = subscribe(&app, &rx.url("/ok/replay"), json!(["*"]), json!({})).await;
    let before = chrono::Utc::now();
    let session = app.create_session().await;
    set_status(&app, session, "starting").await;
    let first = rx.until("/ok/replay", |r| r.len() >= 2).await;
    let (status, body) = app
        .post(
            &format!("/v1/webhooks/{id}/replay"),
            json!({ "since": before }),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["replayed"], 2);
    let all = rx.until("/ok/replay", |r| r.len() >= 4).await;
    for f in &first {
        let again: Vec<_> = all.iter().filter(|r| r.id() == f.id()).collect();
        assert_eq!(again.len(), 2, "the original and its replay");
        assert_eq!(again[1].body, f.body);
    }
    verify_with_reference_library(&secret, &all);
    let list = deliveries(&app, &id).await;
    let oldest = list
        .iter()
        .map(|d| d["id"].as_i64().unwrap())
        .min()
        .unwrap();
    let (status, body) = app
        .post(
            &format!("/v1/webhooks/{id}/replay"),
            json!({ "delivery_id": oldest }),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["replayed"], 2);
    rx.until("/ok/replay", |r| r.len() >= 6).await;
    let (status, _) = app
        .post(
            &format!("/v1/webhooks/{id}/replay"),
            json!({ "delivery_id": 999_999 }),
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_queued_delivery_survives_a_hub_restart() {
    let rx = Receiver::start().await;
    let dir = std::env::temp_dir().join(format!("eva-webhooks-{}", uuid::Uuid::now_v7()));
    let path = dir.join("hub.db");
    let open = || {
        let store = SqliteStore::at_path(
            &path,
            eva_hub::store::PoolConfig {
                max_connections: 4,
                acquire_timeout: Duration::from_secs(5),
            },
        )
        .unwrap();
        Arc::new(store) as Arc<dyn Store>
    };
    // The first hub queues deliveries but does not send them.
    let mut s = settings();
    s.webhooks.enabled = false;
    let mut first = spawn_with(s, open()).await;
    let (id, secret) = subscribe(&first, &rx.url("/ok/durable"), json!(["*"]), json!({})).await;
    let session = first.create_session().await;
    set_status(&first, session, "starting").await;
    let queued = loop {
        let list = deliveries(&first, &id).await;
        if list.len() == 2 {
            break list;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(queued.iter().all(|d| d["status"] == "pending"));
    first.shutdown().await;
    assert!(rx.got("/ok/durable").is_empty());

    // The next hub on the same file delivers them, as they were queued.
    let second = spawn_with(settings(), open()).await;
    let got = rx.until("/ok/durable", |r| r.len() >= 2).await;
    verify_with_reference_library(&secret, &got);
    for d in &queued {
        assert!(
            got.iter()
                .any(|r| r.id() == d["msg_id"] && r.body == d["body"].as_str().unwrap())
        );
    }
    drop(second);
    let _ = std::fs::remove_dir_all(dir);
}
