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
    /// Manage API keys in the configured database.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Mint a connection token with the configured signing key and print
    /// it (for operators' consoles, renderers and testing).
    Token(TokenArgs),
    /// Print the JSON Schema of every WebSocket frame and event (the
    /// source of docs/protocol.schema.json and the SDKs' types).
    Schema,
    /// Print the OpenAPI 3.1 document of the REST API (the source of
    /// docs/openapi.json; also served at /v1/openapi.json).
    Openapi,
    /// Run simulated live presentations against a hub: one renderer per
    /// session (slides, speech, a transcript, stage latencies, answers to
    /// questions, commands, emergency stops acknowledged at once) and a
    /// small audience. Sessions a previous demo created and that have not
    /// ended are taken up again.
    Demo(DemoArgs),
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The hub, as ws://host:port (http://host:port works too).
    #[arg(long, value_name = "URL", default_value = "ws://127.0.0.1:8080")]
    pub url: String,
    /// How many sessions to present.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub sessions: usize,
    /// An API key with eva:read and eva:write, for a hub outside --dev:
    /// the demo creates its sessions and mints its tokens with it.
    /// Without one it uses development tokens.
    #[arg(long, env = "EVA_API_KEY", value_name = "KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Development renderer tokens are <PREFIX>-<n> (n = 1..N).
    #[arg(long, value_name = "PREFIX", default_value = "dev:renderer:demo")]
    pub token_prefix: String,
    #[command(flatten)]
    pub pace: DemoPace,
}

/// How the simulated presentations move (`eva-hub demo`, `serve --demo`).
#[derive(Clone, Debug, Args)]
#[command(next_help_heading = "Demo pace")]
pub struct DemoPace {
    /// Milliseconds between slides; 0: the next slide comes when the
    /// avatar has said its sentences.
    #[arg(long, value_name = "MS", default_value_t = DemoPace::DEFAULT.slide_ms)]
    pub slide_ms: u64,
    /// Transcript updates (one more spoken word each) per second and
    /// session.
    #[arg(long, value_name = "N", default_value_t = DemoPace::DEFAULT.updates_per_s)]
    pub updates_per_s: f64,
    /// The avatar thinks this long before it answers a question.
    #[arg(long, value_name = "MS", default_value_t = DemoPace::DEFAULT.think_ms)]
    pub think_ms: u64,
    /// Simulated participants per session.
    #[arg(long, value_name = "N", default_value_t = DemoPace::DEFAULT.audience)]
    pub audience: usize,
    /// The audience asks a question about this often, per session; 0:
    /// never.
    #[arg(long, value_name = "MS", default_value_t = DemoPace::DEFAULT.question_every_ms)]
    pub question_every_ms: u64,
}

impl DemoPace {
    pub const DEFAULT: DemoPace = DemoPace {
        slide_ms: 0,
        updates_per_s: 3.0,
        think_ms: 1500,
        audience: 3,
        question_every_ms: 45_000,
    };
}

impl Default for DemoPace {
    fn default() -> Self {
        DemoPace::DEFAULT
    }
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key and print it once (to stdout; details to stderr). The
    /// database keeps only its SHA-256.
    Create(KeyCreate),
    /// List keys (never their values).
    List {
        /// Only this tenant's keys.
        #[arg(long, value_name = "UUID")]
        tenant: Option<crate::ids::TenantId>,
    },
    /// Revoke a key: it stops working at once.
    Revoke {
        /// The key's id (from `keys list`).
        id: uuid::Uuid,
        /// Only if the key belongs to this tenant.
        #[arg(long, value_name = "UUID")]
        tenant: Option<crate::ids::TenantId>,
    },
}

#[derive(Debug, Args)]
pub struct KeyCreate {
    /// What the key is for, e.g. `booking-backend`. Events and audit rows
    /// name the key's caller by it.
    #[arg(long)]
    pub name: String,
    /// A scope to grant (repeat): eva:read, eva:write, eva:operate,
    /// eva:admin.
    #[arg(long = "scope", value_name = "SCOPE", required = true)]
    pub scopes: Vec<String>,
    /// The tenant. Omitted, or not yet in the database: a tenant is
    /// created, which needs --email.
    #[arg(long, value_name = "UUID")]
    pub tenant: Option<crate::ids::TenantId>,
    /// Contact address of a tenant being created.
    #[arg(long)]
    pub email: Option<String>,
    /// Concurrent connections of a tenant being created (seed default 5).
    #[arg(long, value_name = "N")]
    pub max_connections: Option<i32>,
    /// Monthly REST call quota of a tenant being created (seed default
    /// 10000).
    #[arg(long, value_name = "N")]
    pub monthly_quota: Option<i32>,
    /// The key expires this many days from now; default: never.
    #[arg(long, value_name = "DAYS")]
    pub expires_in_days: Option<u32>,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    #[arg(long, value_name = "UUID")]
    pub tenant: crate::ids::TenantId,
    /// participant, operator or renderer.
    #[arg(long, value_parser = parse_role)]
    pub role: crate::protocol::model::Role,
    /// The participant, operator or renderer id.
    #[arg(long)]
    pub subject: String,
    /// A session the token may join (repeat); none: any of the tenant's.
    #[arg(long = "session", value_name = "UUID")]
    pub sessions: Vec<crate::ids::SessionId>,
    /// Display name.
    #[arg(long)]
    pub name: Option<String>,
    /// Lifetime in seconds; default auth.token_ttl_s.
    #[arg(long, value_name = "SECONDS")]
    pub ttl_s: Option<u64>,
}

fn parse_role(s: &str) -> Result<crate::protocol::model::Role, String> {
    crate::protocol::model::Role::parse(s)
        .ok_or_else(|| format!("{s:?} is not a role: use participant, operator or renderer"))
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
    /// With --dev: also run N simulated live presentations in this
    /// process (what `eva-hub demo --sessions N` does), to watch in the
    /// console at /console/.
    #[arg(long, value_name = "N")]
    pub demo: Option<usize>,
    #[command(flatten)]
    pub pace: DemoPace,
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
