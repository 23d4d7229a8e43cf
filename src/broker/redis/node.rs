//! One node's state, shared by its broker handle and its background tasks
//! (pub/sub receiver, health monitor, resync worker): the Redis clients,
//! key layout, node name and settings, the hub's handler, the tracks of
//! the sessions it watches, whether Redis answers, and the resync queue.
//! The methods that act on it live with their responsibility
//! (`delivery.rs`, `outage.rs`, `presence.rs`, `sequence.rs`); here are only
//! the accessors and the script call they all share.

use std::sync::{Arc, OnceLock};

use dashmap::DashMap;
use fred::clients::{Client, SubscriberClient};
use fred::types::Value;
use parking_lot::{Mutex, RwLock};
use tokio::sync::mpsc;

use super::conn::{ConnectionTasks, Reachability, Script, is_connection_error};
use super::reply::unavailable;
use super::scripts::Keys;
use super::track::Track;
use crate::broker::{BrokerError, BrokerHandler};
use crate::config::RedisSettings;
use crate::ids::SessionId;

pub(super) struct Shared {
    pub(super) client: Client,
    pub(super) subscriber: SubscriberClient,
    /// The clients' connection tasks, watched by the health monitor.
    pub(super) tasks: ConnectionTasks,
    pub(super) keys: Keys,
    pub(super) node: String,
    pub(super) cfg: RedisSettings,
    pub(super) history_size: usize,
    pub(super) handler: OnceLock<Arc<dyn BrokerHandler>>,
    pub(super) tracks: DashMap<SessionId, Arc<Track>>,
    pub(super) up: Reachability,
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

    pub(super) fn is_up(&self) -> bool {
        self.up.is_up()
    }

    pub(super) fn set_up(&self, up: bool) -> bool {
        self.up.set_up(up, &self.node)
    }

    /// A failed command's error; a lost connection also marks Redis down.
    pub(super) fn lost(&self, e: fred::error::Error) -> BrokerError {
        if is_connection_error(&e) {
            self.set_up(false);
        }
        unavailable(e)
    }

    pub(super) async fn run(
        &self,
        script: &Script,
        keys: Vec<String>,
        args: Vec<Value>,
    ) -> Result<Value, BrokerError> {
        script
            .run(&self.client, keys, args)
            .await
            .map_err(|e| self.lost(e))
    }
}
