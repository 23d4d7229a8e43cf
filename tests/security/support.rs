//! Security test support: a real hub with production credentials (JWT
//! keys, API keys in a memory store) on a random port, two tenants with
//! keys, token crafting for forged and broken tokens, and a capture of
//! everything the hub logs.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use eva_hub::app::{App, Backends};
use eva_hub::auth::api_key::{self, NewKey};
use eva_hub::auth::credentials::CredentialAuthenticator;
use eva_hub::broker::memory::MemoryBroker;
use eva_hub::client::{Client, ClientError, ConnectOptions};
use eva_hub::config::{LimitSettings, Settings, TokenKeySettings};
use eva_hub::hub::Hub;
use eva_hub::identity::Scope;
use eva_hub::ids::{SessionId, TenantId, now_ms};
use eva_hub::protocol::model::Role;
use eva_hub::protocol::{Codec, ServerFrame};
use eva_hub::store::memory::MemoryStore;
use eva_hub::store::{Store, TenantRecord};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub use crate::hub_support::{TestClient, WAIT};

pub const HS_SECRET: &str = "security-tests-hs256-secret-0123456789abcdef";
pub const OLD_SECRET: &str = "security-tests-previous-hs256-secret-fedcba98";
/// Test-only key pairs, generated for these tests and used nowhere else.
pub const RSA_PRIVATE: &str = include_str!("keys/rsa-test-private.pem");
pub const RSA_PUBLIC: &str = include_str!("keys/rsa-test-public.pem");
pub const EC_PRIVATE: &str = include_str!("keys/ec-test-private.pem");
pub const EC_PUBLIC: &str = include_str!("keys/ec-test-public.pem");

pub const ORIGIN: &str = "https://app.example.com";
/// The body of every refused credential, whatever the reason.
pub const UNAUTHORIZED: &str =
    r#"{"error":{"code":"unauthorized","message":"missing or invalid credentials"}}"#;

// ---------------------------------------------------------------------
// Log capture
// ---------------------------------------------------------------------

static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Capture;

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Sends every log event of this test binary, at debug level and above,
/// into one buffer.
pub fn capture_logs() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
            .with_writer(|| Capture)
            .with_ansi(false)
            .try_init();
    });
}

/// Everything logged so far.
pub fn logs() -> String {
    String::from_utf8_lossy(&LOGS.lock().unwrap()).into_owned()
}

// ---------------------------------------------------------------------
// The hub
// ---------------------------------------------------------------------

fn hs(kid: &str, secret: &str) -> TokenKeySettings {
    TokenKeySettings {
        kid: kid.into(),
        algorithm: "HS256".into(),
        secret: Some(secret.into()),
        ..Default::default()
    }
}

/// Production credentials with all three algorithms, a short auth
/// deadline, and generous limits (the limit tests lower them).
pub fn settings() -> Settings {
    let mut s = Settings::defaults();
    s.store.database_url = "memory".into();
    s.store.flush_interval_ms = 2;
    s.server.shutdown_grace_ms = 3000;
    s.websocket.auth_timeout_ms = 500;
    s.session.emergency_ack_timeout_ms = 200;
    s.session.counters_interval_ms = 100;
    s.auth.keys = vec![
        hs("hs-1", HS_SECRET),
        hs("hs-old", OLD_SECRET),
        TokenKeySettings {
            kid: "rs-1".into(),
            algorithm: "RS256".into(),
            public_key: Some(RSA_PUBLIC.into()),
            private_key: Some(RSA_PRIVATE.into()),
            ..Default::default()
        },
        TokenKeySettings {
            kid: "es-1".into(),
            algorithm: "ES256".into(),
            public_key: Some(EC_PUBLIC.into()),
            private_key: Some(EC_PRIVATE.into()),
            ..Default::default()
        },
    ];
    s.auth.signing_kid = "hs-1".into();
    s.auth.leeway_s = 5;
    s.auth.allowed_origins = vec![ORIGIN.into(), "https://*.eva.test".into()];
    s.limits = LimitSettings::unlimited();
    s
}

/// A tenant with its keys.
#[derive(Clone, Debug)]
pub struct Tenant {
    pub id: TenantId,
    /// eva:admin.
    pub admin: String,
    /// eva:read + eva:write.
    pub writer: String,
    /// eva:read only.
    pub reader: String,
}

pub struct SecApp {
    pub addr: SocketAddr,
    pub hub: Hub,
    pub store: Arc<MemoryStore>,
    pub http: reqwest::Client,
    pub a: Tenant,
    pub b: Tenant,
    shutdown: Option<oneshot::Sender<()>>,
}

impl Drop for SecApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Creates a tenant record and its three keys.
pub async fn tenant(store: &dyn Store, record: TenantRecord) -> Tenant {
    store.ensure_tenant(&record).await.unwrap();
    let key = |name: &str, scopes: Vec<Scope>| {
        let new = NewKey {
            tenant: record.id,
            name: name.into(),
            scopes,
            expires_at: None,
        };
        async move { api_key::create(store, new).await.unwrap().1 }
    };
    let admin = key("admin", vec![Scope::Admin]).await;
    let writer = key("backend", vec![Scope::Read, Scope::Write]).await;
    let reader = key("dashboard", vec![Scope::Read]).await;
    Tenant {
        id: record.id,
        admin: admin.expose().to_owned(),
        writer: writer.expose().to_owned(),
        reader: reader.expose().to_owned(),
    }
}

pub async fn spawn() -> SecApp {
    spawn_with(settings()).await
}

pub async fn spawn_with(settings: Settings) -> SecApp {
    capture_logs();
    let store = Arc::new(MemoryStore::new());
    let dyn_store: Arc<dyn Store> = store.clone();
    let a = tenant(
        store.as_ref(),
        TenantRecord::new(
            TenantId::new(),
            format!("a-{}@example.com", TenantId::new()),
        ),
    )
    .await;
    let b = tenant(
        store.as_ref(),
        TenantRecord::new(
            TenantId::new(),
            format!("b-{}@example.com", TenantId::new()),
        ),
    )
    .await;
    let auth = CredentialAuthenticator::from_settings(&settings.auth, dyn_store.clone()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backends = Backends {
        broker: Arc::new(MemoryBroker::new(settings.session.history_size)),
        store: dyn_store,
        auth: Arc::new(auth),
    };
    let app = App::with(settings, listener, None, backends).await.unwrap();
    let addr = app.local_addr();
    let hub = app.hub().clone();
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(app.run(async {
        let _ = rx.await;
    }));
    SecApp {
        addr,
        hub,
        store,
        http: test_http_client(),
        a,
        b,
        shutdown: Some(tx),
    }
}

/// An HTTP answer: status, headers we care about, body as text.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<String>,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

impl SecApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let mut req = self.http.request(method, self.url(path));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let retry_after = res
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Answer {
            status,
            retry_after,
            body: res.text().await.unwrap(),
        }
    }

    pub async fn get(&self, path: &str, key: &str) -> Answer {
        self.call(reqwest::Method::GET, path, Some(key), None).await
    }

    pub async fn post(&self, path: &str, key: &str, body: Value) -> Answer {
        self.call(reqwest::Method::POST, path, Some(key), Some(body))
            .await
    }

    /// A session of tenant `t` (created through its writer key).
    pub async fn session(&self, t: &Tenant) -> SessionId {
        let a = self
            .post("/v1/sessions", &t.writer, json!({"name": "demo"}))
            .await;
        assert_eq!(a.status, 201, "{}", a.body);
        a.json()["id"].as_str().unwrap().parse().unwrap()
    }

    /// A token minted through `POST /v1/tokens` with `key`.
    pub async fn mint(&self, key: &str, body: Value) -> String {
        let a = self.post("/v1/tokens", key, body).await;
        assert_eq!(a.status, 201, "{}", a.body);
        a.json()["token"].as_str().unwrap().to_owned()
    }

    pub async fn participant(&self, t: &Tenant, subject: &str, session: SessionId) -> String {
        self.mint(
            &t.writer,
            json!({"role": "participant", "subject": subject, "sessions": [session]}),
        )
        .await
    }

    pub async fn operator(&self, t: &Tenant, subject: &str) -> String {
        self.mint(&t.admin, json!({"role": "operator", "subject": subject}))
            .await
    }

    pub async fn renderer(&self, t: &Tenant, subject: &str, session: SessionId) -> String {
        self.mint(
            &t.writer,
            json!({"role": "renderer", "subject": subject, "sessions": [session]}),
        )
        .await
    }

    /// Connects with `token` in the Authorization header.
    pub async fn try_connect(&self, token: &str) -> Result<Client, ClientError> {
        Client::connect(self.addr, ConnectOptions::new(Codec::Json, token)).await
    }

    pub async fn try_connect_with(&self, opts: ConnectOptions) -> Result<Client, ClientError> {
        Client::connect(self.addr, opts).await
    }

    /// Connects and reads `welcome`.
    pub async fn connect(&self, token: &str) -> TestClient {
        let client = self.try_connect(token).await.expect("connect");
        let mut c = TestClient { client };
        match c.next().await {
            ServerFrame::Welcome { .. } => c,
            other => panic!("expected welcome, got {other:?}"),
        }
    }

    /// The handshake's refusal: status and body. Panics if it upgraded.
    pub async fn refusal(&self, opts: ConnectOptions) -> (u16, String) {
        match Client::connect(self.addr, opts).await {
            Err(ClientError::Refused { status, body }) => (status, body),
            Ok(_) => panic!("the handshake was upgraded"),
            Err(e) => panic!("unexpected failure: {e}"),
        }
    }
}

// ---------------------------------------------------------------------
// Tokens, good and bad
// ---------------------------------------------------------------------

pub fn now_s() -> u64 {
    now_ms() / 1000
}

/// Claims a valid token of this hub carries.
pub fn claims(tenant: TenantId, role: Role, sub: &str, sessions: Option<&[SessionId]>) -> Value {
    let now = now_s();
    let mut c = json!({
        "sub": sub,
        "tenant": tenant,
        "role": role.as_str(),
        "iss": "eva-hub",
        "aud": "eva-hub",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
    });
    if let Some(s) = sessions {
        c["sessions"] = json!(s);
    }
    c
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

/// A token with exactly this header and these claims, signed with `key`
/// under `alg` (or with an empty signature when `key` is `None`).
pub fn craft(header: Value, claims: &Value, signer: Option<(Algorithm, EncodingKey)>) -> String {
    let message = format!("{}.{}", b64(&header), b64(claims));
    let sig = match signer {
        Some((alg, key)) => jsonwebtoken::crypto::sign(message.as_bytes(), &key, alg).unwrap(),
        None => String::new(),
    };
    format!("{message}.{sig}")
}

/// A correctly signed token for `kid` (one of the test keys).
pub fn sign(kid: &str, claims: &Value) -> String {
    let (alg, key) = match kid {
        "hs-1" => (
            Algorithm::HS256,
            EncodingKey::from_secret(HS_SECRET.as_bytes()),
        ),
        "hs-old" => (
            Algorithm::HS256,
            EncodingKey::from_secret(OLD_SECRET.as_bytes()),
        ),
        "rs-1" => (
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
        ),
        "es-1" => (
            Algorithm::ES256,
            EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap(),
        ),
        other => panic!("no test key {other}"),
    };
    let alg_name = match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::RS256 => "RS256",
        _ => "ES256",
    };
    craft(
        json!({"alg": alg_name, "typ": "JWT", "kid": kid}),
        claims,
        Some((alg, key)),
    )
}

/// Waits until `f` holds, or panics after `WAIT`.
pub async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what} never happened");
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
