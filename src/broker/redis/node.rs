//! One node's state, shared by its broker handle and its background tasks
//! (pub/sub receiver, health monitor, resync worker): the router to the
//! Redis servers (and whether each answers), the pub/sub client, key
//! layout, node name and settings, the hub's handler, the tracks of the
//! sessions it watches, and the resync queue.
//! The methods that act on it live with their responsibility
//! (`delivery.rs`, `outage.rs`, `presence.rs`, `sequence.rs`); here are only
//! the accessors and the script call they all share.

use std::future::Future;
use std::sync::{Arc, OnceLock};

use dashmap::DashMap;
use fred::clients::{Client, SubscriberClient};
use fred::types::{ConnectHandle, Value};
use parking_lot::{Mutex, RwLock};
use tokio::sync::mpsc;

use super::reply::unavailable;
use super::router::{Router, Script};
use super::scripts::Keys;
use super::track::Track;
use crate::broker::{BrokerError, BrokerHandler};
use crate::config::RedisSettings;
use crate::ids::SessionId;

pub(super) struct Shared {
    /// Where commands go, and which servers answer.
    pub(super) redis: Arc<Router>,
    pub(super) subscriber: SubscriberClient,
    /// The pub/sub client's connection task, watched by the health
    /// monitor.
    pub(super) subscriber_task: Mutex<ConnectHandle>,
    pub(super) keys: Keys,
    pub(super) node: String,
    pub(super) cfg: RedisSettings,
    pub(super) history_size: usize,
    pub(super) handler: OnceLock<Arc<dyn BrokerHandler>>,
    pub(super) tracks: DashMap<SessionId, Arc<Track>>,
    pub(super) resync: mpsc::UnboundedSender<SessionId>,
    /// Members of this node's previous life, counted out at start.
    pub(super) forgotten: Mutex<Vec<(SessionId, String)>>,
    /// Nodes whose heartbeat is out of date, as the health monitor last
    /// read them; shared with the abuse limits' counters.
    pub(super) dead_nodes: Arc<RwLock<Vec<String>>>,
}

impl Shared {
    pub(super) fn handler(&self) -> Option<&Arc<dyn BrokerHandler>> {
        self.handler.get()
    }

    pub(super) fn track(&self, session: SessionId) -> Option<Arc<Track>> {
        self.tracks.get(&session).map(|t| t.clone())
    }

    /// Whether the Redis server holding `session`'s keys answers.
    pub(super) fn is_up(&self, session: SessionId) -> bool {
        self.redis.is_up(&self.keys.position(session))
    }

    /// Sends a command on `key` to its server ([`Router::send`]: again
    /// after a cluster redirection); a lost connection also marks the
    /// server away.
    pub(super) async fn send<T, F, Fut>(&self, key: &str, command: F) -> Result<T, BrokerError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, fred::error::Error>>,
    {
        self.redis
            .send(key, command)
            .await
            .map_err(|e| self.lost(key, e))
    }

    /// A failed command on `key`; a lost connection also marks its server
    /// away.
    pub(super) fn lost(&self, key: &str, e: fred::error::Error) -> BrokerError {
        self.redis.lost(key, &e);
        unavailable(e)
    }

    /// Runs `script` on the server holding `keys` (one slot).
    pub(super) async fn run(
        &self,
        script: &Script,
        keys: Vec<String>,
        args: Vec<Value>,
    ) -> Result<Value, BrokerError> {
        script
            .run(&self.redis, &keys, args)
            .await
            .map_err(|e| self.lost(keys.first().map_or("", String::as_str), e))
    }
}
