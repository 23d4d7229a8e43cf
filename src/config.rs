//! Settings, loaded in layers: the built-in `config/default.toml`, then an
//! optional file (`--config`), then `EVA_HUB__SECTION__KEY` environment
//! variables, then the command line. `DATABASE_URL` and `REDIS_URL` are
//! honoured as the conventional names for `store.database_url` and
//! `redis.url`.
//!
//! Unknown keys are errors, so a typo fails loudly at start-up instead of
//! being ignored. Every field is documented in `config/default.toml`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// The defaults, compiled in so the binary runs with no files around it.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub websocket: WebSocketSettings,
    pub session: SessionSettings,
    pub alerts: AlertSettings,
    pub store: StoreSettings,
    pub redis: RedisSettings,
    pub auth: AuthSettings,
    pub limits: LimitSettings,
    pub log: LogSettings,
    pub webhooks: WebhookSettings,
    pub ingest: IngestSettings,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub metrics_listen: SocketAddr,
    pub metrics: bool,
    pub shutdown_grace_ms: u64,
    pub handshake_timeout_ms: u64,
    pub worker_threads: usize,
    pub max_body_bytes: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebSocketSettings {
    pub read_buffer_bytes: usize,
    pub send_buffer_bytes: u32,
    pub max_message_bytes: usize,
    pub max_frame_bytes: usize,
    pub outbound_max_bytes: usize,
    pub conflate_after_bytes: usize,
    pub heartbeat_interval_ms: u64,
    pub idle_timeout_ms: u64,
    pub auth_timeout_ms: u64,
    pub max_bad_frames: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionSettings {
    pub history_size: usize,
    pub presence_grace_ms: u64,
    pub renderer_grace_ms: u64,
    pub takeover_grace_ms: u64,
    pub emergency_ack_timeout_ms: u64,
    pub metrics_interval_ms: u64,
    pub counters_interval_ms: u64,
    pub state_persist_interval_ms: u64,
    pub dedupe_window: usize,
    pub snapshot_members_max: usize,
    pub held_responses_max: usize,
    pub recent_refs_max: usize,
    pub stop_timeout_ms: u64,
    pub ended_ttl_ms: u64,
    pub max_text_bytes: usize,
}

/// Renderer metric thresholds; crossing one raises a `metric_threshold`
/// alert (once, until the value comes back).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertSettings {
    pub latency_ms: Option<f64>,
    pub total_latency_ms: Option<f64>,
    pub cpu_usage: Option<f64>,
    pub gpu_usage: Option<f64>,
    pub memory_usage: Option<f64>,
    pub fps_below: Option<f64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    /// `postgres://...`, `sqlite://...` or `memory`. Empty means the
    /// embedded SQLite file.
    pub database_url: Url,
    pub migrate_on_start: bool,
    /// Rows per batch in the sessions' lanes; 0 chooses by the database.
    pub batch_max_rows: usize,
    /// Rows per batch of performance metrics.
    pub metric_batch_max_rows: usize,
    /// Lanes that sessions' rows are spread over, written side by side.
    pub ordered_writers: usize,
    /// Flushers that write performance metrics side by side.
    pub metric_writers: usize,
    pub flush_interval_ms: u64,
    pub backlog_max_rows: usize,
    pub backlog_max_bytes: usize,
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    pub metrics_retention_days: u32,
    pub retention_interval_s: u64,
    pub max_connections: u32,
    pub acquire_timeout_ms: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// `redis://host:port`; empty means the in-process broker.
    pub url: Url,
    pub prefix: String,
    /// Names this node in Redis (presence, logs); empty: a random name.
    pub node_id: String,
    /// Events kept per session in its Redis stream (resume on any node).
    pub stream_maxlen: usize,
    /// Lifetime of a session's stream, position and checkpoint after its
    /// last event.
    pub stream_ttl_s: u64,
    /// Lifetime of the `:state`, `:metrics` and `:context` views.
    pub state_ttl_s: u64,
    pub metrics_ttl_s: u64,
    pub context_ttl_s: u64,
    /// A node's members vanish this long after it stops refreshing them.
    pub presence_ttl_s: u64,
    /// How often a node writes a checkpoint of sessions it changed.
    pub checkpoint_interval_ms: u64,
    /// Pub/sub messages buffered between the Redis connection and the
    /// node; past this the oldest are dropped (counted) and refilled.
    pub pubsub_buffer: usize,
    /// Timeout of every Redis command.
    pub command_timeout_ms: u64,
    /// How long a gap in pub/sub delivery waits for the missing messages
    /// before the node refills it from the stream.
    pub gap_wait_ms: u64,
    /// Replicas of the session's master that must hold an event before its
    /// publish returns (`WAIT`); 0 does not wait.
    pub wait_replicas: u32,
    /// How long a publish waits for them.
    pub wait_timeout_ms: u64,
    /// With a TLS URL (`rediss://`, `rediss-cluster://`): a PEM file of the
    /// certificate authorities the servers' certificates must chain to.
    /// Empty: the system's roots.
    pub tls_ca_file: String,
    /// A client certificate chain and its private key (PEM), for servers
    /// that require one (`tls-auth-clients yes`). Both or neither.
    pub tls_cert_file: String,
    pub tls_key_file: String,
}

impl RedisSettings {
    pub fn command_timeout(&self) -> Duration {
        ms(self.command_timeout_ms)
    }
}

/// Credentials: connection-token keys, their validation, and the browser
/// origin policy. `docs/SECURITY.md` explains each setting.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// Trust client-claimed identities. Set by `serve --dev`.
    pub dev: bool,
    /// `iss` of connection tokens: minted with it, required on every one.
    pub issuer: String,
    /// `aud` of connection tokens: minted with it, required on every one.
    pub audience: String,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub leeway_s: u64,
    /// Lifetime of a minted token unless the request asks for less.
    pub token_ttl_s: u64,
    /// Longest lifetime a mint request may ask for.
    pub token_ttl_max_s: u64,
    /// The `kid` that signs new tokens. Empty: the only key that can sign.
    pub signing_kid: String,
    /// Keys that verify (and, with private material, sign) tokens. Several
    /// at once during a rotation.
    #[serde(default)]
    pub keys: Vec<TokenKeySettings>,
    /// Browser origins allowed to open a WebSocket, as `scheme://host[:port]`;
    /// `https://*.example.com` allows subdomains of example.com.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Handshakes without an `Origin` header (clients that are not
    /// browsers): `authorization_header` (allowed with an `Authorization`
    /// header, refused otherwise), `allow` or `deny`.
    pub missing_origin: String,
}

/// One connection-token key. Secrets and private keys are read from a
/// file or an environment variable rather than written into the settings;
/// inline values exist for tests and are redacted by `eva-hub config`.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenKeySettings {
    /// Key id, carried in every token's header (`kid`).
    pub kid: String,
    /// `HS256`, `RS256` or `ES256`. Tokens are verified with this algorithm
    /// only, whatever their header says.
    pub algorithm: String,
    /// HS256: the shared secret (at least 32 bytes), from a file, an
    /// environment variable, or inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<std::path::PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// RS256/ES256: the PEM public key that verifies tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_file: Option<std::path::PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// RS256/ES256: the PEM (PKCS#8) private key, only where tokens are
    /// minted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_file: Option<std::path::PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
}

impl std::fmt::Debug for TokenKeySettings {
    // Never print key material, even in a debug dump of the settings.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeySettings")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("secret_file", &self.secret_file)
            .field("secret_env", &self.secret_env)
            .field("secret", &self.secret.as_ref().map(|_| REDACTED))
            .field("public_key_file", &self.public_key_file)
            .field("private_key_file", &self.private_key_file)
            .field("private_key_env", &self.private_key_env)
            .field("private_key", &self.private_key.as_ref().map(|_| REDACTED))
            .finish()
    }
}

/// What secrets are replaced with in printed settings.
pub const REDACTED: &str = "***";

/// Abuse limits. Counters are node-local: with several nodes, a client
/// spread over them gets each node's allowance. A rate of 0 (or a count
/// of 0) turns that limit off.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSettings {
    /// `false` turns every limit below off at once (benchmarks, trusted
    /// deployments behind their own limits).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Concurrent WebSocket connections from one IP address.
    pub connections_per_ip: u32,
    /// Concurrent connections of a tenant that has no tenant record (and
    /// of every tenant in `--dev`); a tenant record's
    /// `concurrent_sessions_limit` applies otherwise.
    pub tenant_connections_default: u32,
    /// Frames per second per connection, all frames, and the burst.
    pub frames_per_s: u32,
    pub frames_burst: u32,
    /// Renderer telemetry (`state`, `context`, `metrics`) per connection.
    pub telemetry_per_s: u32,
    pub telemetry_burst: u32,
    /// Interactions (questions, responses, interventions, `publish`,
    /// `status`, acknowledgements) per connection.
    pub interactions_per_s: u32,
    pub interactions_burst: u32,
    /// `join` and `leave` per connection.
    pub joins_per_s: u32,
    pub joins_burst: u32,
    /// Rate-limited frames tolerated within `strike_window_s` before the
    /// connection is closed with 4003.
    pub strikes: u32,
    pub strike_window_s: u64,
    /// Questions per participant (tenant and subject) per minute.
    pub questions_per_minute: u32,
    /// REST calls per second per API key, and the burst.
    pub rest_per_s: u32,
    pub rest_burst: u32,
    /// Renderers get the per-connection frame buckets scaled by this.
    pub renderer_rate_multiplier: u32,
}

fn yes() -> bool {
    true
}

impl LimitSettings {
    /// Every limit off (tests that measure the hub rather than its limits).
    pub fn unlimited() -> LimitSettings {
        LimitSettings {
            enabled: false,
            connections_per_ip: 0,
            tenant_connections_default: 0,
            frames_per_s: 0,
            frames_burst: 0,
            telemetry_per_s: 0,
            telemetry_burst: 0,
            interactions_per_s: 0,
            interactions_burst: 0,
            joins_per_s: 0,
            joins_burst: 0,
            strikes: 0,
            strike_window_s: 0,
            questions_per_minute: 0,
            rest_per_s: 0,
            rest_burst: 0,
            renderer_rate_multiplier: 1,
        }
    }

    /// The environment that gives a hub process
    /// [`LimitSettings::unlimited`] (tests and load tests start hubs so).
    pub fn unlimited_env() -> Vec<(String, String)> {
        vec![("EVA_HUB__LIMITS__ENABLED".into(), "false".into())]
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// `text` (human-readable) or `json`.
    pub format: String,
    /// A `tracing` filter, e.g. `info` or `eva_hub=debug,info`. `RUST_LOG`
    /// overrides it.
    pub level: String,
}

/// Outbound webhooks (`docs/WEBHOOKS.md`). Every field is described in
/// `config/default.toml`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// Run the dispatcher on this node.
    pub enabled: bool,
    /// Deliver to loopback addresses (`--dev` allows them too).
    pub allow_loopback: bool,
    /// Deliver to private, shared (CGNAT) and link-local addresses.
    pub allow_private: bool,
    /// Requests in flight to one endpoint at most.
    pub max_in_flight_per_endpoint: usize,
    /// Deliveries claimed and waiting in memory for one endpoint at most.
    pub queue_per_endpoint: usize,
    /// Deliveries claimed per round at most.
    pub claim_batch: usize,
    /// How often the store is checked for due deliveries (retries, and
    /// deliveries queued by other nodes) when nothing new was committed.
    pub poll_interval_ms: u64,
    /// A claimed delivery is claimed again (possibly by another node)
    /// if no outcome is recorded within this long.
    pub lease_s: u64,
    /// The first retry waits about this long; each further one twice as
    /// long (with jitter), up to `retry_max_ms`.
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    /// The longest `Retry-After` honoured; a longer one is cut to this.
    pub retry_after_max_s: u64,
    /// Consecutive failed attempts that disable an endpoint; 0: never.
    pub disable_after_failures: i32,
    /// Outcomes recorded per store write at most.
    pub record_batch: usize,
}

impl WebhookSettings {
    pub fn poll_interval(&self) -> Duration {
        ms(self.poll_interval_ms)
    }
}

/// Inbound vendor events (`docs/INGEST.md`). A source with a secret is
/// verified with it; a source without one is refused (404) unless the hub
/// runs with `--dev`. Every field is described in `config/default.toml`.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestSettings {
    /// A larger body is refused with 413 before it is parsed.
    pub max_body_bytes: usize,
    /// Tavus does not sign its callbacks: a shared secret the caller
    /// repeats in `X-Eva-Ingest-Secret` (or `?secret=`).
    pub tavus_secret: String,
    /// The HeyGen webhook endpoint's secret (HMAC-SHA256 of the body).
    pub heygen_secret: String,
    /// The LiveKit API key that signs webhooks (the token's `iss`), and
    /// its secret (the HS256 key).
    pub livekit_api_key: String,
    pub livekit_api_secret: String,
    /// The HMAC-SHA256 key of `X-Eva-Signature` on the generic source.
    pub generic_secret: String,
}

impl std::fmt::Debug for IngestSettings {
    // Never print a secret, even in a debug dump of the settings.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = |v: &str| if v.is_empty() { "" } else { REDACTED };
        f.debug_struct("IngestSettings")
            .field("max_body_bytes", &self.max_body_bytes)
            .field("tavus_secret", &r(&self.tavus_secret))
            .field("heygen_secret", &r(&self.heygen_secret))
            .field("livekit_api_key", &self.livekit_api_key)
            .field("livekit_api_secret", &r(&self.livekit_api_secret))
            .field("generic_secret", &r(&self.generic_secret))
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(String);

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

impl Settings {
    /// Loads the layers. `overrides` is applied last (command-line flags).
    pub fn load(
        file: Option<&Path>,
        overrides: Option<serde_json::Value>,
    ) -> Result<Settings, ConfigError> {
        let mut fig = Figment::from(Toml::string(DEFAULT_TOML));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError(format!(
                    "config file {} not found",
                    path.display()
                )));
            }
            fig = fig.merge(Toml::file(path));
        }
        fig = fig.merge(Env::prefixed("EVA_HUB__").split("__"));
        if let Ok(url) = std::env::var("DATABASE_URL") {
            fig = fig.merge(Serialized::default("store.database_url", url));
        }
        if let Ok(url) = std::env::var("REDIS_URL") {
            fig = fig.merge(Serialized::default("redis.url", url));
        }
        if let Some(o) = overrides {
            fig = fig.merge(Serialized::defaults(o));
        }
        let mut s: Settings = fig.extract().map_err(|e| ConfigError(e.to_string()))?;
        if !s.limits.enabled {
            // One switch for every limit: each consumer then sees 0 (off).
            s.limits = LimitSettings::unlimited();
        }
        s.validate()?;
        Ok(s)
    }

    /// The built-in defaults alone (tests start from these).
    pub fn defaults() -> Settings {
        Figment::from(Toml::string(DEFAULT_TOML))
            .extract()
            .expect("config/default.toml is valid")
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let ws = &self.websocket;
        let fail = |m: &str| Err(ConfigError(m.to_owned()));
        if ws.max_frame_bytes > ws.max_message_bytes {
            return fail("websocket.max_frame_bytes must not exceed websocket.max_message_bytes");
        }
        let r = &self.redis;
        if r.prefix.is_empty() || r.prefix.contains(char::is_whitespace) {
            return fail("redis.prefix must be a non-empty word");
        }
        if r.prefix.contains(['{', '}']) {
            // A brace would become the hash tag of every key, putting the
            // whole deployment in one cluster slot.
            return fail("redis.prefix must not contain braces");
        }
        let tls_files = [&r.tls_ca_file, &r.tls_cert_file, &r.tls_key_file];
        if tls_files.iter().any(|f| !f.is_empty()) && !r.url.as_str().starts_with("rediss") {
            return fail(
                "redis.tls_ca_file, tls_cert_file and tls_key_file need a TLS redis.url \
                 (rediss:// or rediss-cluster://)",
            );
        }
        if r.tls_cert_file.is_empty() != r.tls_key_file.is_empty() {
            return fail("redis.tls_cert_file and redis.tls_key_file go together");
        }
        if r.wait_replicas > 0 && r.wait_timeout_ms == 0 {
            return fail("redis.wait_timeout_ms must be positive when redis.wait_replicas is set");
        }
        if r.presence_ttl_s < 3 {
            return fail("redis.presence_ttl_s must be at least 3");
        }
        if r.stream_maxlen < 100 || r.pubsub_buffer < 1024 {
            return fail(
                "redis.stream_maxlen must be at least 100 and redis.pubsub_buffer at least 1024",
            );
        }
        if ws.conflate_after_bytes >= ws.outbound_max_bytes {
            return fail(
                "websocket.conflate_after_bytes must be below websocket.outbound_max_bytes",
            );
        }
        if ws.idle_timeout_ms <= ws.heartbeat_interval_ms {
            return fail("websocket.idle_timeout_ms must exceed websocket.heartbeat_interval_ms");
        }
        if self.session.history_size == 0 {
            return fail("session.history_size must be at least 1");
        }
        let st = &self.store;
        if st.max_connections == 0 {
            return fail("store.max_connections must be at least 1");
        }
        if st.metric_batch_max_rows == 0 {
            return fail("store.metric_batch_max_rows must be at least 1");
        }
        if st.ordered_writers == 0 {
            return fail("store.ordered_writers must be at least 1");
        }
        if st.metric_writers == 0 {
            return fail("store.metric_writers must be at least 1");
        }
        if st.backlog_max_rows == 0 || st.backlog_max_bytes == 0 {
            return fail("store.backlog_max_rows and store.backlog_max_bytes must be at least 1");
        }
        let w = &self.webhooks;
        if w.max_in_flight_per_endpoint == 0
            || w.queue_per_endpoint == 0
            || w.claim_batch == 0
            || w.record_batch == 0
        {
            return fail(
                "webhooks.max_in_flight_per_endpoint, queue_per_endpoint, claim_batch and \
                 record_batch must be at least 1",
            );
        }
        if w.lease_s == 0 || w.poll_interval_ms == 0 {
            return fail("webhooks.lease_s and webhooks.poll_interval_ms must be at least 1");
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return fail("log.format must be `text` or `json`");
        }
        if !matches!(
            self.auth.missing_origin.as_str(),
            "authorization_header" | "allow" | "deny"
        ) {
            return fail("auth.missing_origin must be `authorization_header`, `allow` or `deny`");
        }
        if self.auth.token_ttl_s == 0 || self.auth.token_ttl_s > self.auth.token_ttl_max_s {
            return fail("auth.token_ttl_s must be between 1 and auth.token_ttl_max_s");
        }
        Ok(())
    }

    /// The effective settings as JSON with secrets redacted, for
    /// `eva-hub config`.
    pub fn redacted_json(&self) -> String {
        let mut s = self.clone();
        s.store.database_url = redact_url(&s.store.database_url).into();
        s.redis.url = redact_url(&s.redis.url).into();
        for v in [
            &mut s.ingest.tavus_secret,
            &mut s.ingest.heygen_secret,
            &mut s.ingest.livekit_api_secret,
            &mut s.ingest.generic_secret,
        ] {
            if !v.is_empty() {
                *v = REDACTED.into();
            }
        }
        for k in &mut s.auth.keys {
            if k.secret.is_some() {
                k.secret = Some(REDACTED.into());
            }
            if k.private_key.is_some() {
                k.private_key = Some(REDACTED.into());
            }
        }
        serde_json::to_string_pretty(&s).unwrap_or_default()
    }
}

/// Hides the password in a URL: `postgres://u:secret@h/db` becomes
/// `postgres://u:***@h/db`.
/// A connection URL (database, Redis) that may carry a password: `Debug`
/// prints it with the password replaced, so settings can be logged.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Url(String);

impl Url {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for Url {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&redact_url(&self.0), f)
    }
}

impl From<String> for Url {
    fn from(url: String) -> Url {
        Url(url)
    }
}

impl From<&str> for Url {
    fn from(url: &str) -> Url {
        Url(url.to_owned())
    }
}

pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((auth, host)) = rest.split_once('@')
    {
        let user = auth.split(':').next().unwrap_or("");
        return format!("{scheme}://{user}:***@{host}");
    }
    url.to_owned()
}

impl ServerSettings {
    pub fn shutdown_grace(&self) -> Duration {
        ms(self.shutdown_grace_ms)
    }
    pub fn handshake_timeout(&self) -> Duration {
        ms(self.handshake_timeout_ms)
    }
}

impl WebSocketSettings {
    pub fn heartbeat_interval(&self) -> Duration {
        ms(self.heartbeat_interval_ms)
    }
    pub fn idle_timeout(&self) -> Duration {
        ms(self.idle_timeout_ms)
    }
    pub fn auth_timeout(&self) -> Duration {
        ms(self.auth_timeout_ms)
    }
}

impl SessionSettings {
    pub fn presence_grace(&self) -> Duration {
        ms(self.presence_grace_ms)
    }
    pub fn renderer_grace(&self) -> Duration {
        ms(self.renderer_grace_ms)
    }
    pub fn takeover_grace(&self) -> Duration {
        ms(self.takeover_grace_ms)
    }
    pub fn emergency_ack_timeout(&self) -> Duration {
        ms(self.emergency_ack_timeout_ms)
    }
    pub fn metrics_interval(&self) -> Duration {
        ms(self.metrics_interval_ms)
    }
    pub fn counters_interval(&self) -> Duration {
        ms(self.counters_interval_ms)
    }
    pub fn state_persist_interval(&self) -> Duration {
        ms(self.state_persist_interval_ms)
    }
    pub fn stop_timeout(&self) -> Duration {
        ms(self.stop_timeout_ms)
    }
    pub fn ended_ttl(&self) -> Duration {
        ms(self.ended_ttl_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_parse_and_validate() {
        let s = Settings::defaults();
        s.validate().unwrap();
        assert_eq!(s.server.listen.to_string(), "127.0.0.1:8080");
    }

    #[test]
    fn overrides_win() {
        let s = Settings::load(
            None,
            Some(serde_json::json!({"websocket": {"max_message_bytes": 1234567}})),
        )
        .unwrap();
        assert_eq!(s.websocket.max_message_bytes, 1234567);
    }

    #[test]
    fn one_switch_turns_every_limit_off() {
        let s = Settings::load(
            None,
            Some(serde_json::json!({"limits": {"enabled": false, "frames_per_s": 7}})),
        )
        .unwrap();
        assert!(!s.limits.enabled);
        assert_eq!(s.limits.frames_per_s, 0, "a disabled limit is off");
        assert_eq!(s.limits.connections_per_ip, 0);
        assert_eq!(s.limits.tenant_connections_default, 0);
        assert!(Settings::defaults().limits.enabled);
    }

    #[test]
    fn key_material_is_redacted() {
        let mut s = Settings::defaults();
        s.auth.keys.push(TokenKeySettings {
            kid: "k1".into(),
            algorithm: "HS256".into(),
            secret: Some("a-very-secret-value-that-is-long-enough".into()),
            private_key: Some("-----BEGIN PRIVATE KEY-----".into()),
            ..Default::default()
        });
        let printed = s.redacted_json();
        assert!(!printed.contains("a-very-secret-value"));
        assert!(!printed.contains("BEGIN PRIVATE KEY"));
        assert!(printed.contains("\"kid\": \"k1\""));
        let debug = format!("{s:?}");
        assert!(!debug.contains("a-very-secret-value"));
        assert!(!debug.contains("BEGIN PRIVATE KEY"));
    }

    #[test]
    fn keys_come_from_the_environment_as_a_list() {
        let v: figment::value::Value = r#"[{kid="k1",algorithm="HS256",secret_env="EVA_SECRET"}]"#
            .parse()
            .unwrap();
        let keys: Vec<TokenKeySettings> = v.deserialize().unwrap();
        assert_eq!(keys[0].kid, "k1");
        assert_eq!(keys[0].secret_env.as_deref(), Some("EVA_SECRET"));
    }

    #[test]
    fn redis_tls_files_need_a_tls_url_and_come_in_pairs() {
        let load = |redis: serde_json::Value| {
            Settings::load(None, Some(serde_json::json!({ "redis": redis })))
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        let e = load(serde_json::json!({"url": "redis://r:6379", "tls_ca_file": "/ca.pem"}));
        assert!(e.unwrap_err().contains("rediss://"));
        let e = load(serde_json::json!({"url": "rediss://r:6379", "tls_cert_file": "/c.pem"}));
        assert!(e.unwrap_err().contains("go together"));
        load(serde_json::json!({
            "url": "rediss-cluster://r1:6379?node=r2:6379",
            "tls_ca_file": "/ca.pem",
            "tls_cert_file": "/c.pem",
            "tls_key_file": "/k.pem",
        }))
        .unwrap();
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://eva:hunter2@db:5432/eva"),
            "postgres://eva:***@db:5432/eva"
        );
        assert_eq!(redact_url("sqlite://data/eva.db"), "sqlite://data/eva.db");
    }
}
