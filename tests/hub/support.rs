//! Test support: a real hub on a random port, and clients that speak the
//! protocol over real TCP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use eva_hub::app::{App, Backends};
use eva_hub::auth::dev::DevAuthenticator;
use eva_hub::broker::memory::MemoryBroker;
use eva_hub::client::{Client, ConnectOptions, Incoming};
use eva_hub::config::Settings;
use eva_hub::hub::Hub;
use eva_hub::ids::SessionId;
use eva_hub::protocol::frames::Snapshot;
use eva_hub::protocol::model::{Event, Role};
use eva_hub::protocol::{ClientFrame, Codec, ServerFrame};
use eva_hub::store::Store;
use eva_hub::store::memory::MemoryStore;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const WAIT: Duration = Duration::from_secs(5);

/// Settings for tests: development identities and short timers, so grace
/// periods and deadlines pass in a fraction of a second.
pub fn test_settings() -> Settings {
    let mut s = Settings::defaults();
    s.auth.dev = true;
    s.store.database_url = "memory".into();
    // Short enough that tests finish quickly, long enough that a loaded CI
    // machine does not overrun them by accident.
    s.session.presence_grace_ms = 1000;
    s.session.renderer_grace_ms = 500;
    s.session.takeover_grace_ms = 1000;
    s.session.emergency_ack_timeout_ms = 1000;
    s.session.metrics_interval_ms = 100;
    s.session.counters_interval_ms = 100;
    s.session.state_persist_interval_ms = 100;
    s.session.stop_timeout_ms = 500;
    s.server.shutdown_grace_ms = 3000;
    s.store.flush_interval_ms = 2;
    // These tests measure the hub, not its abuse limits (tests/security).
    s.limits = eva_hub::config::LimitSettings::unlimited();
    s
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub hub: Hub,
    pub store: Arc<dyn Store>,
    pub http: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    pub server: Option<JoinHandle<anyhow::Result<()>>>,
}

pub async fn spawn_app() -> TestApp {
    spawn_with(test_settings(), Arc::new(MemoryStore::new())).await
}

pub async fn spawn_with(settings: Settings, store: Arc<dyn Store>) -> TestApp {
    let broker = Arc::new(MemoryBroker::new(settings.session.history_size));
    spawn_on(settings, store, broker).await
}

/// A hub on `store` and `broker` (a Redis broker, say).
pub async fn spawn_on(
    settings: Settings,
    store: Arc<dyn Store>,
    broker: Arc<dyn eva_hub::broker::Broker>,
) -> TestApp {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics_addr = metrics.local_addr().unwrap();
    let backends = Backends {
        broker,
        store: store.clone(),
        auth: Arc::new(DevAuthenticator),
    };
    let app = App::with(settings, listener, Some(metrics), backends)
        .await
        .unwrap();
    let addr = app.local_addr();
    let hub = app.hub().clone();
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run(async {
        let _ = rx.await;
    }));
    TestApp {
        addr,
        metrics_addr,
        hub,
        store,
        http: test_http_client(),
        shutdown: Some(tx),
        server: Some(server),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let res = self
            .http
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let res = self.http.get(self.url(path)).send().await.unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    pub async fn create_session(&self) -> SessionId {
        let (status, body) = self.post("/v1/sessions", json!({"name": "demo"})).await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().unwrap().parse().unwrap()
    }

    /// A session that a renderer has joined and made active.
    pub async fn active_session(&self, codec: Codec) -> (SessionId, TestClient) {
        let id = self.create_session().await;
        let mut r = self.connect(Role::Renderer, "renderer-1", codec).await;
        r.join(id).await;
        r.send(&ClientFrame::Status {
            session: id,
            status: eva_hub::protocol::SessionStatus::Active,
            reason: None,
            id: Some("go".into()),
        })
        .await;
        r.until(|f| matches!(f, ServerFrame::Ack { id, .. } if id == "go"))
            .await;
        (id, r)
    }

    pub async fn connect(&self, role: Role, subject: &str, codec: Codec) -> TestClient {
        let token = eva_hub::auth::dev::dev_token(role, subject, None);
        let client = Client::connect(self.addr, ConnectOptions::new(codec, token))
            .await
            .unwrap();
        let mut c = TestClient { client };
        match c.next().await {
            ServerFrame::Welcome { .. } => c,
            other => panic!("expected welcome, got {other:?}"),
        }
    }

    /// Sends the shutdown signal and waits for the server to finish.
    pub async fn shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(s) = self.server.take() {
            tokio::time::timeout(Duration::from_secs(20), s)
                .await
                .expect("shutdown within its deadline")
                .unwrap()
                .unwrap();
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub struct TestClient {
    pub client: Client,
}

impl TestClient {
    pub async fn send(&mut self, frame: &ClientFrame) {
        self.client.send(frame).await.unwrap();
    }

    /// The next frame; panics on close or timeout.
    pub async fn next(&mut self) -> ServerFrame {
        match self.client.recv_timeout(WAIT).await {
            Ok(Incoming::Frame(f)) => f,
            Ok(Incoming::Closed(c)) => panic!("connection closed: {c:?}"),
            Err(e) => panic!("no frame: {e}"),
        }
    }

    /// Skips frames until one matches.
    pub async fn until(&mut self, mut pred: impl FnMut(&ServerFrame) -> bool) -> ServerFrame {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.client.recv_timeout(left).await {
                Ok(Incoming::Frame(f)) if pred(&f) => return f,
                Ok(Incoming::Frame(_)) => continue,
                Ok(Incoming::Closed(c)) => panic!("connection closed while waiting: {c:?}"),
                Err(e) => panic!("frame never came: {e}"),
            }
        }
    }

    /// Skips to the next event of a kind; returns its seq and event.
    pub async fn event(&mut self, kind: &str) -> (u64, Event) {
        match self
            .until(|f| matches!(f, ServerFrame::Event { event, .. } if event.kind() == kind))
            .await
        {
            ServerFrame::Event { seq, event, .. } => (seq, event),
            _ => unreachable!(),
        }
    }

    /// Asserts nothing matching arrives within `d`.
    pub async fn none_within(&mut self, d: Duration, mut pred: impl FnMut(&ServerFrame) -> bool) {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return;
            }
            match self.client.recv_timeout(left).await {
                Ok(Incoming::Frame(f)) if pred(&f) => panic!("unexpected frame {f:?}"),
                Ok(Incoming::Frame(_)) => continue,
                Ok(Incoming::Closed(_)) | Err(_) => return,
            }
        }
    }

    /// Waits for the close and returns its code.
    pub async fn closed(&mut self) -> Option<u16> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.client.recv_timeout(left).await {
                Ok(Incoming::Frame(_)) => continue,
                Ok(Incoming::Closed(c)) => return c.map(|(code, _)| code),
                Err(e) => panic!("connection did not close: {e}"),
            }
        }
    }

    /// Joins and returns the snapshot.
    pub async fn join(&mut self, session: SessionId) -> Snapshot {
        self.send(&ClientFrame::Join {
            session,
            resume: None,
            takeover: false,
            name: None,
            compact: false,
            echo: true,
            id: None,
        })
        .await;
        match self
            .until(|f| matches!(f, ServerFrame::Snapshot(_) | ServerFrame::Error { .. }))
            .await
        {
            ServerFrame::Snapshot(s) => *s,
            other => panic!("join refused: {other:?}"),
        }
    }
}

/// A REST client for the tests. reqwest is built without a default TLS
/// crypto provider (the hub installs ring when its webhook dispatcher
/// starts, which a test may not have done yet), so install it here;
/// installing twice is harmless. Pooled connections are dropped after a
/// second idle: the hub closes an idle keep-alive connection after its
/// `handshake_timeout` (5 s), and a request sent on one just as it closes
/// fails with an incomplete message.
pub fn test_http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .pool_idle_timeout(std::time::Duration::from_secs(1))
        .build()
        .expect("a REST client")
}
