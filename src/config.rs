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
    pub log: LogSettings,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub metrics_listen: SocketAddr,
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
    pub database_url: String,
    pub migrate_on_start: bool,
    pub batch_max_rows: usize,
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
    pub url: String,
    pub prefix: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// Trust client-claimed identities. Set by `serve --dev`.
    pub dev: bool,
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
        let s: Settings = fig.extract().map_err(|e| ConfigError(e.to_string()))?;
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
        if st.batch_max_rows == 0 {
            return fail("store.batch_max_rows must be at least 1");
        }
        if st.backlog_max_rows == 0 || st.backlog_max_bytes == 0 {
            return fail("store.backlog_max_rows and store.backlog_max_bytes must be at least 1");
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return fail("log.format must be `text` or `json`");
        }
        Ok(())
    }

    /// The effective settings as JSON with secrets redacted, for
    /// `eva-hub config`.
    pub fn redacted_json(&self) -> String {
        let mut s = self.clone();
        s.store.database_url = redact_url(&s.store.database_url);
        s.redis.url = redact_url(&s.redis.url);
        serde_json::to_string_pretty(&s).unwrap_or_default()
    }
}

/// Hides the password in a URL: `postgres://u:secret@h/db` becomes
/// `postgres://u:***@h/db`.
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

impl StoreSettings {
    pub fn pool(&self) -> crate::store::PoolConfig {
        crate::store::PoolConfig {
            max_connections: self.max_connections,
            acquire_timeout: ms(self.acquire_timeout_ms),
        }
    }

    pub fn writer(&self) -> crate::store::writer::WriterConfig {
        crate::store::writer::WriterConfig {
            batch_max_rows: self.batch_max_rows.max(1),
            flush_interval: ms(self.flush_interval_ms),
            backlog_max_rows: self.backlog_max_rows,
            backlog_max_bytes: self.backlog_max_bytes,
            retry_initial: ms(self.retry_initial_ms.max(1)),
            retry_max: ms(self.retry_max_ms.max(1)),
        }
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
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://eva:hunter2@db:5432/eva"),
            "postgres://eva:***@db:5432/eva"
        );
        assert_eq!(redact_url("sqlite://data/eva.db"), "sqlite://data/eva.db");
    }
}
