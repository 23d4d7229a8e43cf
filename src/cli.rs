//! The command line. `eva-hub` with no command serves.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use serde_json::{Map, Value, json};

/// eva-hub: real-time WebSocket session hub for live AI-avatar
/// presentations.
///
/// Settings come from the built-in defaults, then --config FILE, then
/// EVA_HUB__SECTION__KEY environment variables, then these flags.
#[derive(Debug, Parser)]
#[command(name = "eva-hub", version, about, long_about)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Args)]
pub struct Global {
    /// A TOML file with settings to override (same keys as
    /// config/default.toml).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Database: postgres://..., sqlite://... or `memory`. Default: the
    /// embedded SQLite file ./data/eva-hub.db.
    #[arg(
        long,
        global = true,
        env = "DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// Redis for several hub nodes, e.g. redis://127.0.0.1:6379. Default:
    /// the in-process broker (one node).
    #[arg(
        long,
        global = true,
        env = "REDIS_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub redis_url: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the hub (the default command).
    Serve(Serve),
    /// Bring the database schema up to date, then exit.
    Migrate,
    /// Print the effective settings (passwords redacted), then exit.
    Config,
}

#[derive(Debug, Args, Default)]
pub struct Serve {
    /// Address for WebSocket and REST.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Address for Prometheus /metrics.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,
    /// INSECURE development mode: trust the identity a client claims
    /// (tokens `dev:<role>:<subject>`), no API keys for REST. Never expose
    /// such a hub to a network you do not control.
    #[arg(long)]
    pub dev: bool,
}

impl Cli {
    /// The flags, as a settings overlay applied last.
    pub fn overrides(&self) -> Value {
        let mut root = Map::new();
        let mut set = |section: &str, key: &str, v: Value| {
            root.entry(section)
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("sections are objects")
                .insert(key.to_owned(), v);
        };
        if let Some(url) = &self.global.database_url {
            set("store", "database_url", json!(url));
        }
        if let Some(url) = &self.global.redis_url {
            set("redis", "url", json!(url));
        }
        if let Some(Command::Serve(s)) = &self.command {
            if let Some(a) = s.listen {
                set("server", "listen", json!(a.to_string()));
            }
            if let Some(a) = s.metrics_listen {
                set("server", "metrics_listen", json!(a.to_string()));
            }
            if s.dev {
                set("auth", "dev", json!(true));
            }
        }
        Value::Object(root)
    }
}
