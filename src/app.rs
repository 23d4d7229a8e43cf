//! Wiring: settings in, backends chosen, hub built, listeners served until
//! a shutdown signal, then an orderly drain.
//!
//! `main` and the integration tests run the very same [`App`]; tests pass
//! listeners bound to port 0 and their own backends.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::auth::Authenticator;
use crate::auth::credentials::CredentialAuthenticator;
use crate::auth::dev::DevAuthenticator;
use crate::auth::limits::Limits;
use crate::auth::origin::OriginPolicy;
use crate::broker::Broker;
use crate::broker::memory::MemoryBroker;
use crate::broker::redis::RedisBroker;
use crate::config::{Settings, redact_url};
use crate::hub::Hub;
use crate::store::PoolConfig;
use crate::store::Store;
use crate::store::memory::MemoryStore;
use crate::store::postgres::PostgresStore;
use crate::store::sqlite::{self, SqliteStore};
use crate::store::writer::{BatchWriter, WriterConfig};
use crate::webhooks::Dispatcher;

/// The pluggable parts of a hub.
#[derive(Debug, Clone)]
pub struct Backends {
    pub broker: Arc<dyn Broker>,
    pub store: Arc<dyn Store>,
    pub auth: Arc<dyn Authenticator>,
}

impl Backends {
    /// Chooses backends from the settings: the memory broker unless
    /// `redis.url` is set, the store named by `store.database_url`.
    pub async fn from_settings(settings: &Settings) -> anyhow::Result<Backends> {
        let broker: Arc<dyn Broker> = if settings.redis.url.is_empty() {
            Arc::new(MemoryBroker::new(settings.session.history_size))
        } else {
            let broker = RedisBroker::connect(&settings.redis, settings.session.history_size)
                .await
                .with_context(|| {
                    format!("cannot reach Redis at {}", redact_url(&settings.redis.url))
                })?;
            Arc::new(broker)
        };
        let store = open_store(settings).await?;
        let auth = authenticator(settings, store.clone())?;
        Ok(Backends {
            broker,
            store,
            auth,
        })
    }
}

/// Runs the migrations. Nodes that start together may migrate the same
/// database at once; PostgreSQL serialises them with a lock, but SQLite
/// does not, and the loser sees the winner's tables half-way. A failure
/// is therefore retried a few times, by when the other node has recorded
/// its migrations and they are skipped.
async fn migrate(store: &dyn Store) -> anyhow::Result<()> {
    let mut attempt = 1;
    loop {
        match store.migrate().await {
            Ok(()) => return Ok(()),
            Err(e) if attempt < 3 => {
                tracing::warn!(attempt, error = %e, "database migration failed; retrying in case another node is migrating");
                tokio::time::sleep(std::time::Duration::from_millis(500 * attempt)).await;
                attempt += 1;
            }
            Err(e) => return Err(anyhow::Error::new(e).context("database migration failed")),
        }
    }
}

/// Opens the store `store.database_url` names: `memory`, `sqlite://...`
/// or `postgres://...`; empty means the embedded SQLite file
/// `./data/eva-hub.db`. Connections open on first use: a database that is
/// down shows up in the migration or reload that follows.
pub async fn open_store(settings: &Settings) -> anyhow::Result<Arc<dyn Store>> {
    let url = settings.store.database_url.trim();
    let pool = PoolConfig::from_settings(&settings.store);
    let store: Arc<dyn Store> = if url == "memory" {
        Arc::new(MemoryStore::new())
    } else if url.is_empty() {
        Arc::new(
            SqliteStore::at_path(sqlite::DEFAULT_PATH, pool)
                .with_context(|| format!("cannot open {}", sqlite::DEFAULT_PATH))?,
        )
    } else if url.starts_with("sqlite:") {
        Arc::new(SqliteStore::open(url, pool).with_context(|| format!("cannot open {url}"))?)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Arc::new(
            PostgresStore::connect_lazy(url, pool)
                .with_context(|| format!("cannot use {}", redact_url(url)))?,
        )
    } else {
        bail!(
            "unsupported store.database_url {}: use postgres://..., sqlite://... or memory \
             (empty means the embedded SQLite file {})",
            redact_url(url),
            sqlite::DEFAULT_PATH
        );
    };
    Ok(store)
}

/// The authenticator the settings ask for: development identities with
/// `--dev`, otherwise connection tokens verified against `auth.keys` and
/// API keys from the store.
///
/// # Errors
/// Without `--dev` and without usable keys, an error that says exactly
/// which settings (or environment variables) to set.
pub fn authenticator(
    settings: &Settings,
    store: Arc<dyn Store>,
) -> anyhow::Result<Arc<dyn Authenticator>> {
    if settings.auth.dev {
        return Ok(Arc::new(DevAuthenticator));
    }
    let auth = CredentialAuthenticator::from_settings(&settings.auth, store)
        .context("eva-hub refuses to start without credentials")?;
    tracing::info!(
        keys = settings.auth.keys.len(),
        signing_kid = auth
            .keyring()
            .signing_kid()
            .unwrap_or("none: this hub cannot mint tokens"),
        "connection-token keys loaded"
    );
    Ok(Arc::new(auth))
}

/// A hub with its listeners, ready to run.
#[derive(Debug)]
pub struct App {
    hub: Hub,
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    settings: Arc<Settings>,
    retention: Option<AbortOnDrop>,
    webhooks: Option<Dispatcher>,
}

/// A background task that ends with its owner.
#[derive(Debug)]
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl App {
    /// Binds the addresses in the settings and opens the configured
    /// backends.
    pub async fn bind(settings: Settings) -> anyhow::Result<App> {
        let listener = TcpListener::bind(settings.server.listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.server.listen))?;
        let metrics = if settings.server.metrics {
            Some(
                TcpListener::bind(settings.server.metrics_listen)
                    .await
                    .with_context(|| {
                        format!("cannot listen on {}", settings.server.metrics_listen)
                    })?,
            )
        } else {
            None
        };
        let backends = Backends::from_settings(&settings).await?;
        App::with(settings, listener, metrics, backends).await
    }

    /// Builds the hub on given listeners and backends.
    pub async fn with(
        settings: Settings,
        listener: TcpListener,
        metrics_listener: Option<TcpListener>,
        backends: Backends,
    ) -> anyhow::Result<App> {
        let settings = Arc::new(settings);
        if settings.server.metrics {
            crate::metrics::install_exporter();
        }
        if settings.store.migrate_on_start {
            migrate(backends.store.as_ref()).await?;
        }
        let writer = BatchWriter::start(
            backends.store.clone(),
            WriterConfig::from_settings(&settings.store),
        );
        if backends.auth.insecure() {
            tracing::warn!(
                "DEVELOPMENT MODE: identities are taken from client claims, anyone can be anyone. \
                 Never expose this hub to a network you do not control."
            );
        }
        let origins = OriginPolicy::from_settings(&settings.auth).map_err(anyhow::Error::msg)?;
        // Counters that span connections are shared through the broker
        // when it links several nodes, else kept on this node.
        let limiter = match backends.broker.shared_counters(&settings.limits) {
            Some(counters) => Limits::new(&settings.limits, counters),
            None => Limits::local(&settings.limits),
        };
        let hub = Hub::new(
            settings.clone(),
            backends.broker,
            writer,
            backends.auth,
            limiter,
            origins,
        );
        if hub.origins.refuses_every_browser() {
            tracing::warn!(
                "auth.allowed_origins is empty: no browser can open a WebSocket; \
                 list your web app's origins there"
            );
        }
        let reloaded = hub
            .sessions
            .reload()
            .await
            .context("reloading live sessions failed")?;
        if reloaded > 0 {
            tracing::info!(
                sessions = reloaded,
                "reloaded live sessions; their clients will resync"
            );
        }
        let webhooks = if settings.webhooks.enabled {
            let weak = std::sync::Arc::downgrade(&hub.inner_arc());
            let on_disabled: crate::webhooks::OnDisabled = Arc::new(move |d| {
                if let Some(hub) = Hub::upgrade(&weak) {
                    tokio::spawn(async move { hub.webhook_disabled(&d).await });
                }
            });
            Some(
                Dispatcher::start(
                    backends.store.clone(),
                    hub.writer.clone(),
                    settings.webhooks.clone(),
                    crate::webhooks::address_policy(&settings),
                    on_disabled,
                )
                .context("cannot start the webhook dispatcher")?,
            )
        } else {
            None
        };
        let retention = crate::store::retention::spawn(
            backends.store.clone(),
            settings.store.metrics_retention_days,
            std::time::Duration::from_secs(settings.store.retention_interval_s),
        )
        .map(AbortOnDrop);
        Ok(App {
            hub,
            listener,
            metrics_listener,
            settings,
            retention,
            webhooks,
        })
    }

    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound listener")
    }

    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// Serves until `shutdown` resolves, then drains: stop accepting, close
    /// WebSockets with the "restart" code, flush the store backlog, all
    /// within `server.shutdown_grace_ms`.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let App {
            hub,
            listener,
            metrics_listener,
            settings,
            retention,
            webhooks,
        } = self;
        tracing::info!(
            listen = %listener.local_addr()?,
            broker = hub.broker.name(),
            store = hub.writer.store().name(),
            "eva-hub serving"
        );
        let metrics_task = metrics_listener.map(|l| tokio::spawn(serve_metrics(l, hub.clone())));
        crate::gateway::serve(listener, hub.clone(), shutdown).await;
        let deadline = Instant::now() + settings.server.shutdown_grace();
        tracing::info!(
            connections = hub.connection_count(),
            "shutting down: draining"
        );
        hub.drain(deadline).await;
        if let Some(w) = &webhooks {
            w.shutdown(deadline).await;
        }
        let left = hub.writer.shutdown(deadline).await;
        if left > 0 {
            tracing::error!(
                rows = left,
                "shutdown deadline passed with rows not written"
            );
        }
        drop(retention);
        if let Some(t) = metrics_task {
            t.abort();
        }
        tracing::info!("eva-hub stopped");
        Ok(())
    }
}

/// Serves `/metrics` on its own listener.
async fn serve_metrics(listener: TcpListener, hub: Hub) {
    let handle = crate::metrics::install_exporter();
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let handle = handle.clone();
            let hub = hub.clone();
            async move {
                crate::metrics::process_gauges();
                hub.refresh_gauges();
                handle.run_upkeep();
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4",
                    )],
                    handle.render(),
                )
            }
        }),
    );
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "metrics listener failed");
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received"),
        _ = term => tracing::info!("SIGTERM received"),
    }
}
