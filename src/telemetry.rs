//! Logging: structured `tracing` events, human-readable by default, JSON
//! for log pipelines. Tokens and passwords are never logged: credentials
//! are logged as the subject they resolve to, URLs through
//! [`crate::config::redact_url`].

use tracing_subscriber::EnvFilter;

use crate::config::LogSettings;

/// Installs the global subscriber. `RUST_LOG` overrides `log.level`.
/// Safe to call more than once (later calls do nothing).
pub fn init(log: &LogSettings) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true);
    let _ = if log.format == "json" {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}
