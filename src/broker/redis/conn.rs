//! The connection to Redis: building and connecting the fred clients from
//! [`RedisSettings`], running Lua scripts by hash ([`Script`]), telling a
//! lost connection from a failing command, and this node's view of
//! whether Redis answers ([`Reachability`]). Nothing here knows about
//! sessions; the health monitor that drives the reachability flag lives in
//! `health.rs`, above the tracks it resyncs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fred::clients::{Client, SubscriberClient};
use fred::prelude::{ClientLike, Config, Error as RedisError, LuaInterface};
use fred::types::config::ReconnectPolicy;
use fred::types::{Builder, Value};
use parking_lot::Mutex;

use super::reply::unavailable;
use crate::broker::BrokerError;
use crate::config::RedisSettings;
use crate::metrics as m;

/// Builds the command client and the pub/sub client for `cfg.url` and
/// connects both.
pub(super) async fn connect(
    cfg: &RedisSettings,
) -> Result<(Client, SubscriberClient), BrokerError> {
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
        })
        .set_policy(ReconnectPolicy::new_constant(0, 250));
    let client = builder.build().map_err(unavailable)?;
    // Subscribing twice is harmless, so the pub/sub client may resend: on
    // a cluster a subscription can meet MOVED (a stale slot map, a
    // resharding), and following it takes a second attempt.
    builder.with_connection_config(|c| c.max_command_attempts = 3);
    let subscriber = builder.build_subscriber_client().map_err(unavailable)?;
    client.init().await.map_err(unavailable)?;
    subscriber.init().await.map_err(unavailable)?;
    Ok((client, subscriber))
}

/// PING within `timeout`, for readiness.
pub(super) async fn ping(client: &Client, timeout: Duration) -> Result<(), BrokerError> {
    match tokio::time::timeout(timeout, client.ping::<String>(None)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(unavailable(e)),
        Err(_) => Err(unavailable("Redis did not answer PING in time")),
    }
}

/// A Lua script run by hash, loaded on first use. A server that does not
/// know it (restarted, or a cluster shard or promoted replica that never
/// saw it) gets the source once with EVAL, which also caches it there.
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
        match client.evalsha(sha, keys.clone(), args.clone()).await {
            Err(e) if e.to_string().contains("NOSCRIPT") => {
                client.eval(self.source, keys, args).await
            }
            other => other,
        }
    }
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
