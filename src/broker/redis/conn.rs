//! The connection to Redis: building the fred clients from
//! [`RedisSettings`], starting one again whose task ended, and telling a
//! lost connection from a failing command. Which server a command goes to
//! is router.rs's job; nothing here knows about sessions.

use std::time::Duration;

use fred::clients::{Client, SubscriberClient};
use fred::prelude::{ClientLike, Config, Error as RedisError};
use fred::types::config::ReconnectPolicy;
use fred::types::{Builder, ConnectHandle};

use super::reply::unavailable;
use crate::broker::BrokerError;
use crate::config::RedisSettings;
use crate::metrics as m;

/// Starts again a client whose connection task ended. fred reconnects on
/// its own after a lost connection, but some failures end its task for
/// good (it cannot refresh a cluster's slot map, say), and every command
/// fails from then on. The health monitor watches for that. Returns the
/// new task, or `None` when the client still cannot connect.
pub(super) async fn restart(
    client: &impl ClientLike,
    name: &str,
    timeout: Duration,
) -> Option<ConnectHandle> {
    tracing::warn!(
        client = name,
        "the Redis client's connection task ended; starting it again"
    );
    m::redis_client_restarted();
    match tokio::time::timeout(timeout, client.init()).await {
        Ok(Ok(handle)) => Some(handle),
        Ok(Err(e)) => {
            tracing::warn!(client = name, error = %e, "restarting the Redis client failed; retrying");
            None
        }
        Err(_) => {
            tracing::warn!(
                client = name,
                "restarting the Redis client timed out; retrying"
            );
            None
        }
    }
}

/// The settings both clients share.
fn builder(cfg: &RedisSettings, config: Config) -> Builder {
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
            // being followed: a redirection means the server did not run
            // the command, and `Script::run` sends it again itself.
            c.max_redirections = 0;
        })
        .set_policy(ReconnectPolicy::new_constant(0, 250));
    builder
}

/// A command client for `config`'s server (not connected yet). On a
/// cluster the router builds one per master (router.rs).
pub(super) fn command_client(cfg: &RedisSettings, config: Config) -> Result<Client, BrokerError> {
    builder(cfg, config).build().map_err(unavailable)
}

/// The pub/sub client for `cfg.url`, connected, with its connection
/// task. On a cluster it is fred's cluster client: it sends each
/// `SSUBSCRIBE` to the shard that owns the channel.
pub(super) async fn subscriber(
    cfg: &RedisSettings,
) -> Result<(SubscriberClient, ConnectHandle), BrokerError> {
    let config = Config::from_url(&cfg.url).map_err(unavailable)?;
    let mut builder = builder(cfg, config);
    // Subscribing twice is harmless, so the pub/sub client may resend: on
    // a cluster a subscription can meet MOVED (a stale slot map, a
    // resharding), and following it takes a second attempt.
    builder.with_connection_config(|c| c.max_command_attempts = 3);
    let subscriber = builder.build_subscriber_client().map_err(unavailable)?;
    let task = subscriber.init().await.map_err(unavailable)?;
    Ok((subscriber, task))
}

/// PING within `timeout`, for readiness.
pub(super) async fn ping(client: &Client, timeout: Duration) -> Result<(), BrokerError> {
    match tokio::time::timeout(timeout, client.ping::<String>(None)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(unavailable(e)),
        Err(_) => Err(unavailable("Redis did not answer PING in time")),
    }
}

/// The command failed because the connection did: it may or may not have
/// run.
pub(super) fn is_connection_error(e: &RedisError) -> bool {
    use fred::error::ErrorKind;
    matches!(
        e.kind(),
        ErrorKind::IO | ErrorKind::Timeout | ErrorKind::Canceled
    )
}
