//! The connection to Redis: building and connecting the fred clients from
//! [`RedisSettings`], running Lua scripts by hash ([`Script`]), telling a
//! lost connection from a failing command, and this node's view of
//! whether Redis answers ([`Reachability`]). Nothing here knows about
//! sessions; the health monitor that drives the reachability flag lives in
//! `health.rs`, above the tracks it resyncs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fred::clients::{Client, SubscriberClient};
use fred::prelude::{ClientLike, Config, Error as RedisError, LuaInterface};
use fred::types::config::ReconnectPolicy;
use fred::types::{Builder, ConnectHandle, Value};
use parking_lot::Mutex;

use super::reply::unavailable;
use crate::broker::BrokerError;
use crate::config::RedisSettings;
use crate::metrics as m;

/// The command client and the pub/sub client, with the tasks that drive
/// their connections.
pub(super) struct Clients {
    pub(super) client: Client,
    pub(super) subscriber: SubscriberClient,
    pub(super) tasks: ConnectionTasks,
}

/// The tasks fred runs for each client. fred reconnects on its own after
/// a lost connection, but one kind of failure ends its task for good: a
/// command with no attempt left that meets an `ASK` redirection (a slot
/// being migrated, during a resharding) stops the task, and every command
/// fails from then on. The health monitor watches for that and starts
/// the task again ([`ConnectionTasks::revive`]).
pub(super) struct ConnectionTasks {
    client: Mutex<ConnectHandle>,
    subscriber: Mutex<ConnectHandle>,
}

impl ConnectionTasks {
    /// Starts again every task that ended. Returns true if it did, so the
    /// caller resubscribes and resyncs as after a reconnect.
    pub(super) async fn revive(
        &self,
        client: &Client,
        subscriber: &SubscriberClient,
        timeout: Duration,
    ) -> bool {
        let mut revived = false;
        if self.client.lock().is_finished() {
            revived |= restart(client, &self.client, "command", timeout).await;
        }
        if self.subscriber.lock().is_finished() {
            revived |= restart(subscriber, &self.subscriber, "pub/sub", timeout).await;
        }
        revived
    }
}

async fn restart(
    client: &impl ClientLike,
    task: &Mutex<ConnectHandle>,
    name: &str,
    timeout: Duration,
) -> bool {
    tracing::warn!(
        client = name,
        "the Redis client's connection task ended; starting it again"
    );
    m::redis_client_restarted();
    match tokio::time::timeout(timeout, client.init()).await {
        Ok(Ok(handle)) => {
            *task.lock() = handle;
            true
        }
        Ok(Err(e)) => {
            tracing::warn!(client = name, error = %e, "restarting the Redis client failed; retrying");
            false
        }
        Err(_) => {
            tracing::warn!(
                client = name,
                "restarting the Redis client timed out; retrying"
            );
            false
        }
    }
}

/// Builds the command client and the pub/sub client for `cfg.url` and
/// connects both.
pub(super) async fn connect(cfg: &RedisSettings) -> Result<Clients, BrokerError> {
    let config = Config::from_url(&cfg.url).map_err(unavailable)?;
    let timeout = cfg.command_timeout();
    let mut builder = Builder::from_config(config);
    builder
        .with_performance_config(|p| {
            p.default_command_timeout = timeout;
            p.broadcast_channel_capacity = cfg.pubsub_buffer;
        })
        .with_connection_config(|c| {
            c.connection_timeout = timeout;
            c.internal_command_timeout = timeout;
            // A publish resent after a dropped connection could be
            // sequenced twice; fail it instead and let the track
            // resync.
            c.max_command_attempts = 1;
            // A redirected command is answered with an error instead of
            // being followed: following `MOVED` would spend the one
            // attempt, and following `ASK` without one left ends the
            // client's connection task. A redirection means the server did
            // not run the command, so `Script::run` sends it again itself
            // (`MOVED` has refreshed the slot map by then).
            c.max_redirections = 0;
        })
        .set_policy(ReconnectPolicy::new_constant(0, 250));
    let client = builder.build().map_err(unavailable)?;
    // Subscribing twice is harmless, so the pub/sub client may resend: on
    // a cluster a subscription can meet MOVED (a stale slot map, a
    // resharding), and following it takes a second attempt.
    builder.with_connection_config(|c| c.max_command_attempts = 3);
    let subscriber = builder.build_subscriber_client().map_err(unavailable)?;
    let client_task = client.init().await.map_err(unavailable)?;
    let subscriber_task = subscriber.init().await.map_err(unavailable)?;
    Ok(Clients {
        client,
        subscriber,
        tasks: ConnectionTasks {
            client: Mutex::new(client_task),
            subscriber: Mutex::new(subscriber_task),
        },
    })
}

/// PING within `timeout`, for readiness.
pub(super) async fn ping(client: &Client, timeout: Duration) -> Result<(), BrokerError> {
    match tokio::time::timeout(timeout, client.ping::<String>(None)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(unavailable(e)),
        Err(_) => Err(unavailable("Redis did not answer PING in time")),
    }
}

/// How long a script redirected by a Redis Cluster (a slot that moved or is
/// moving) is tried again, and the pauses between tries. Moving one slot's
/// keys takes milliseconds; a slot stays half-moved (`ASK`) until
/// `redis-cli --cluster reshard` or its like settles it.
const REDIRECT_PATIENCE: Duration = Duration::from_secs(3);
const REDIRECT_PAUSE_FIRST: Duration = Duration::from_millis(2);
const REDIRECT_PAUSE_MAX: Duration = Duration::from_millis(100);

/// A Lua script run by hash, loaded on first use. A server that does not
/// know it (restarted, or a cluster shard or promoted replica that never
/// saw it) gets the source once with EVAL, which also caches it there. A
/// script the cluster redirects is sent again: the server that redirected
/// it did not run it, so it runs once.
pub(super) struct Script {
    source: &'static str,
    sha: Mutex<Option<String>>,
}

impl Script {
    pub(super) const fn new(source: &'static str) -> Script {
        Script {
            source,
            sha: Mutex::new(None),
        }
    }

    pub(super) async fn run(
        &self,
        client: &Client,
        keys: Vec<String>,
        args: Vec<Value>,
    ) -> Result<Value, RedisError> {
        let cached = self.sha.lock().clone();
        let sha = match cached {
            Some(sha) => sha,
            None => {
                // SCRIPT LOAD goes to one server; the hash is the same on
                // every server, and the others learn the script by EVAL.
                let sha: String = client.script_load(self.source).await?;
                *self.sha.lock() = Some(sha.clone());
                sha
            }
        };
        let deadline = Instant::now() + REDIRECT_PATIENCE;
        let mut pause = REDIRECT_PAUSE_FIRST;
        loop {
            let result = match client
                .evalsha(sha.as_str(), keys.clone(), args.clone())
                .await
            {
                Err(e) if e.to_string().contains("NOSCRIPT") => {
                    client.eval(self.source, keys.clone(), args.clone()).await
                }
                other => other,
            };
            match result {
                Err(e) if is_redirect(&e) && Instant::now() + pause < deadline => {
                    m::redis_redirected();
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(REDIRECT_PAUSE_MAX);
                }
                other => return other,
            }
        }
    }
}

/// A Redis Cluster refused the command without running it: its slot is on
/// another shard (`MOVED`), being moved there (`ASK`), or a multi-key
/// command met a slot half-moved (`TRYAGAIN`).
fn is_redirect(e: &RedisError) -> bool {
    use fred::error::ErrorKind;
    (e.kind() == &ErrorKind::Routing && e.details().contains("redirections"))
        || e.details().starts_with("TRYAGAIN")
}

pub(super) fn is_connection_error(e: &RedisError) -> bool {
    use fred::error::ErrorKind;
    matches!(
        e.kind(),
        ErrorKind::IO | ErrorKind::Timeout | ErrorKind::Canceled
    )
}

/// Whether Redis answered this node lately. The broker sequences alone
/// while it is down; the shared counters fail open at once instead of
/// waiting out a command timeout. Clones share the flag.
#[derive(Clone, Debug)]
pub(super) struct Reachability {
    up: Arc<AtomicBool>,
}

impl Reachability {
    /// Up, as after a successful connect.
    pub(super) fn connected() -> Reachability {
        Reachability {
            up: Arc::new(AtomicBool::new(true)),
        }
    }

    pub(super) fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Records whether Redis answers; returns what was recorded before.
    /// `node` names this node in the logs.
    pub(super) fn set_up(&self, up: bool, node: &str) -> bool {
        let was = self.up.swap(up, Ordering::Relaxed);
        if was != up {
            m::redis_up(up);
            if up {
                tracing::info!(node = %node, "Redis answers again; resyncing sessions");
            } else {
                tracing::warn!(node = %node, "Redis unreachable; sessions continue on this node alone");
            }
        }
        was
    }
}
