//! Which Redis server a command goes to, and whether it answers.
//!
//! On one Redis every command goes to its one client. On a Redis Cluster
//! the broker keeps a client per master and its own map of the 16,384
//! slots (from `CLUSTER SLOTS`, and from each `MOVED`), and sends each
//! command to the master of its key's slot. fred's cluster client would
//! route as well, but it drives every shard from one task, and that task
//! stops while it reconnects to a failed master: one failover would stall
//! every session of the node. With a client per master, the sessions of
//! the other shards go on.
//!
//! Each [`Shard`] carries this node's view of whether it answers: a
//! session whose shard is away runs on this node alone (outage.rs) while
//! the others still share their streams. [`Script`] runs a Lua script on
//! its keys' shard and follows the cluster's redirections.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fred::clients::Client;
use fred::error::ErrorKind;
use fred::interfaces::ClusterInterface;
use fred::prelude::{ClientLike, Config, Error as RedisError, LuaInterface};
use fred::types::cluster::ClusterRouting;
use fred::types::config::{Server, ServerConfig};
use fred::types::{ConnectHandle, Value};
use parking_lot::{Mutex, RwLock};

use super::conn::{self, restart};
use super::reply::unavailable;
use crate::broker::BrokerError;
use crate::config::RedisSettings;
use crate::metrics as m;

/// The slots of a Redis Cluster.
const SLOTS: usize = 16_384;

/// One Redis server this node sends commands to: the only one, or a
/// cluster master.
pub(super) struct Shard {
    pub(super) server: Server,
    pub(super) client: Client,
    /// fred's connection task; `None` when the first connection failed.
    task: Mutex<Option<ConnectHandle>>,
    up: AtomicBool,
}

impl Shard {
    /// Whether the server answered this node lately.
    pub(super) fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }
}

impl Drop for Shard {
    fn drop(&mut self) {
        // A master that left the map (failed over, or emptied by a
        // resharding) would otherwise be dialled every 250 ms for ever.
        if let Some(task) = self.task.lock().take() {
            task.abort();
        }
    }
}

/// Where commands go: one server, or the masters of a cluster.
pub(super) struct Router {
    cfg: RedisSettings,
    /// The URL's settings; each shard's client gets a copy naming its
    /// server alone.
    config: Config,
    /// The servers the URL names, asked for the slot map when no known
    /// master answers. Empty on one Redis.
    seeds: Vec<Server>,
    node: String,
    map: RwLock<Map>,
    /// One slot-map refresh at a time.
    refreshing: tokio::sync::Mutex<()>,
    /// Refreshes done, so that callers that waited for one (many
    /// publishes meet the same `MOVED` at once) do not run another.
    refreshes: AtomicU64,
    /// Some slot changed hands since the health monitor last asked.
    moved: AtomicBool,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let servers: Vec<String> = self.shards().iter().map(|s| s.server.to_string()).collect();
        f.debug_struct("Router")
            .field("node", &self.node)
            .field("servers", &servers)
            .finish()
    }
}

struct Map {
    /// The shard serving each slot (one entry on one Redis).
    slots: Vec<Arc<Shard>>,
    shards: HashMap<Server, Arc<Shard>>,
}

impl Router {
    /// Connects to the server `config` ([`conn::client_config`]) names,
    /// or to every master of the cluster it names.
    pub(super) async fn connect(
        cfg: &RedisSettings,
        config: Config,
        node: &str,
    ) -> Result<Router, BrokerError> {
        let seeds = match &config.server {
            ServerConfig::Clustered { hosts, .. } => hosts.clone(),
            _ => Vec::new(),
        };
        let router = Router {
            cfg: cfg.clone(),
            config: config.clone(),
            seeds,
            node: node.to_owned(),
            map: RwLock::new(Map {
                slots: Vec::new(),
                shards: HashMap::new(),
            }),
            refreshing: tokio::sync::Mutex::new(()),
            refreshes: AtomicU64::new(0),
            moved: AtomicBool::new(false),
        };
        if router.seeds.is_empty() {
            let server = match &config.server {
                ServerConfig::Centralized { server } => server.clone(),
                _ => Server::new("redis", 0),
            };
            let client = conn::command_client(cfg, config)?;
            let task = client.init().await.map_err(unavailable)?;
            let shard = Arc::new(Shard {
                server,
                client,
                task: Mutex::new(Some(task)),
                up: AtomicBool::new(true),
            });
            let mut map = router.map.write();
            map.slots = vec![shard];
        } else {
            router.refresh().await.map_err(unavailable)?;
            router.take_moved();
        }
        Ok(router)
    }

    fn clustered(&self) -> bool {
        !self.seeds.is_empty()
    }

    /// The shard serving `key`'s slot.
    pub(super) fn shard(&self, key: &str) -> Arc<Shard> {
        let map = self.map.read();
        if map.slots.len() == 1 {
            return map.slots[0].clone();
        }
        map.slots[usize::from(ClusterRouting::hash_key(key.as_bytes()))].clone()
    }

    /// The client for commands on `key`.
    pub(super) fn client(&self, key: &str) -> Client {
        self.shard(key).client.clone()
    }

    /// Whether the shard serving `key` answers.
    pub(super) fn is_up(&self, key: &str) -> bool {
        self.shard(key).is_up()
    }

    /// Every shard, each once.
    pub(super) fn shards(&self) -> Vec<Arc<Shard>> {
        let map = self.map.read();
        if map.shards.is_empty() {
            map.slots.clone()
        } else {
            map.shards.values().cloned().collect()
        }
    }

    /// Records whether `shard` answers (`Err`: why not); returns what was
    /// recorded before.
    pub(super) fn set_up(&self, shard: &Shard, answer: Result<(), &RedisError>) -> bool {
        let up = answer.is_ok();
        let was = shard.up.swap(up, Ordering::Relaxed);
        if was != up {
            let server = shard.server.to_string();
            match answer {
                Ok(()) => {
                    tracing::info!(node = %self.node, %server, "Redis answers again; resyncing sessions")
                }
                Err(e) => {
                    tracing::warn!(node = %self.node, %server, error = %e, "Redis unreachable; its sessions continue on this node alone")
                }
            }
            self.publish_up();
        }
        was
    }

    /// `eva_redis_up`: 1 while every shard answers.
    fn publish_up(&self) {
        m::redis_up(self.shards().iter().all(|s| s.is_up()));
    }

    /// Marks the shard serving `key` away when `e` is a lost connection.
    pub(super) fn lost(&self, key: &str, e: &RedisError) {
        if conn::is_connection_error(e) {
            self.set_up(&self.shard(key), Err(e));
        }
    }

    /// Starts again every shard client whose connection task ended.
    /// Returns true if it did, so the caller resyncs as after a reconnect.
    pub(super) async fn revive(&self) -> bool {
        let timeout = self.cfg.command_timeout() * 2;
        let mut revived = false;
        for shard in self.shards() {
            let ended = shard.task.lock().as_ref().is_none_or(|t| t.is_finished());
            if ended && let Some(task) = restart(&shard.client, "command", timeout).await {
                *shard.task.lock() = Some(task);
                revived = true;
            }
        }
        revived
    }

    /// Whether some slot changed hands since the last call: the watched
    /// sessions' channels must be subscribed again and their tracks
    /// resynced.
    pub(super) fn take_moved(&self) -> bool {
        self.moved.swap(false, Ordering::Relaxed)
    }

    /// Reads the cluster's slot map again and connects to new masters.
    /// Nothing on one Redis.
    pub(super) async fn refresh(&self) -> Result<(), RedisError> {
        if !self.clustered() {
            return Ok(());
        }
        let seen = self.refreshes.load(Ordering::Acquire);
        let _one = self.refreshing.lock().await;
        if self.refreshes.load(Ordering::Acquire) != seen {
            return Ok(());
        }
        let result = self.read_and_apply().await;
        self.refreshes.fetch_add(1, Ordering::Release);
        result
    }

    async fn read_and_apply(&self) -> Result<(), RedisError> {
        let (routing, from) = self.read_slot_map().await?;
        let mut shards = self.map.read().shards.clone();
        let mut primaries = routing.unique_primary_nodes();
        primaries.sort();
        shards.retain(|server, _| primaries.contains(server));
        for server in primaries {
            if let Entry::Vacant(entry) = shards.entry(server) {
                let shard = self.open(entry.key().clone()).await?;
                entry.insert(shard);
            }
        }
        let mut slots = Vec::with_capacity(SLOTS);
        for slot in 0..SLOTS as u16 {
            let shard = routing
                .get_server(slot)
                .and_then(|s| shards.get(s))
                // An unassigned slot: any master answers it with an error.
                .or_else(|| shards.values().next())
                .ok_or_else(|| RedisError::new(ErrorKind::Cluster, "the cluster has no master"))?;
            slots.push(shard.clone());
        }
        let mut map = self.map.write();
        let changed = map.slots.len() != slots.len()
            || map
                .slots
                .iter()
                .zip(&slots)
                .any(|(a, b)| a.server != b.server);
        if changed {
            tracing::info!(node = %self.node, masters = shards.len(), %from, "Redis Cluster slot map read");
            self.moved.store(true, Ordering::Relaxed);
        }
        *map = Map { slots, shards };
        drop(map);
        self.publish_up();
        Ok(())
    }

    /// `CLUSTER SLOTS` from the first master that answers, else from the
    /// URL's servers.
    async fn read_slot_map(&self) -> Result<(ClusterRouting, Server), RedisError> {
        let timeout = self.cfg.command_timeout();
        let mut shards = self.shards();
        // Masters known to answer first: a failed one costs a timeout.
        shards.sort_by_key(|s| !s.is_up());
        let mut last = RedisError::new(ErrorKind::Cluster, "no Redis Cluster node answered");
        for shard in &shards {
            match ask_slot_map(shard, timeout).await {
                Ok(routing) => return Ok((routing, shard.server.clone())),
                Err(e) => last = e.unwrap_or(last),
            }
        }
        for seed in &self.seeds {
            let shard = match self.connect_to(seed.clone()).await {
                Ok((shard, None)) => shard,
                // Why the seed refused (a password, a certificate) is
                // what the operator needs to read.
                Ok((_, Some(e))) | Err(e) => {
                    last = e;
                    continue;
                }
            };
            match ask_slot_map(&shard, timeout).await {
                Ok(routing) => return Ok((routing, seed.clone())),
                Err(e) => last = e.unwrap_or(last),
            }
        }
        Err(last)
    }

    /// A client for `server` alone, connected. A master that does not
    /// answer yet still gets its shard, marked away, so that its slots
    /// have somewhere to go; the health monitor keeps trying it.
    async fn open(&self, server: Server) -> Result<Arc<Shard>, RedisError> {
        self.connect_to(server).await.map(|(shard, _)| shard)
    }

    /// [`Router::open`], with the reason its first connection failed.
    async fn connect_to(
        &self,
        server: Server,
    ) -> Result<(Arc<Shard>, Option<RedisError>), RedisError> {
        let mut config = self.config.clone();
        config.server = ServerConfig::Centralized {
            server: server.clone(),
        };
        let client = conn::command_client(&self.cfg, config).map_err(|e| {
            RedisError::new(ErrorKind::Config, format!("cannot build a client: {e}"))
        })?;
        let (task, failed) =
            match tokio::time::timeout(self.cfg.command_timeout(), client.init()).await {
                Ok(Ok(task)) => (Some(task), None),
                Ok(Err(e)) => (None, Some(e)),
                Err(_) => (
                    None,
                    Some(RedisError::new(ErrorKind::Timeout, "connecting timed out")),
                ),
            };
        if let Some(e) = &failed {
            tracing::warn!(node = %self.node, %server, error = %e, "cannot connect to a Redis Cluster node yet");
        }
        let shard = Arc::new(Shard {
            server,
            client,
            task: Mutex::new(task),
            up: AtomicBool::new(failed.is_none()),
        });
        Ok((shard, failed))
    }

    /// Sends a command on `key` to its shard: `command` gets the shard's
    /// client. A command the cluster redirects is sent again (after a
    /// `MOVED`, to the slot's new master), for up to 3 s: the server that
    /// redirected it did not run it, so it runs once. A command whose
    /// connection failed is not sent again, since it may have run.
    pub(super) async fn send<T, F, Fut>(&self, key: &str, command: F) -> Result<T, RedisError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let deadline = Instant::now() + REDIRECT_PATIENCE;
        let mut pause = REDIRECT_PAUSE_FIRST;
        loop {
            let e = match command(self.client(key)).await {
                Err(e) if Instant::now() + pause < deadline => e,
                other => return other,
            };
            match redirection(&e) {
                Some(Redirect::Moved(slot, server)) => self.moved(slot, server).await,
                Some(Redirect::Wait) => {}
                None => return Err(e),
            }
            m::redis_redirected();
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(REDIRECT_PAUSE_MAX);
        }
    }

    /// Follows a `MOVED`: `slot` now lives on `server`.
    async fn moved(&self, slot: u16, server: Server) {
        let known = self.map.read().shards.get(&server).cloned();
        let shard = match known {
            Some(shard) => shard,
            None => {
                // A master this node has not met: read the whole map.
                if let Err(e) = self.refresh().await {
                    tracing::warn!(error = %e, "reading the Redis Cluster slot map failed");
                }
                return;
            }
        };
        if let Some(entry) = self.map.write().slots.get_mut(usize::from(slot))
            && entry.server != shard.server
        {
            *entry = shard;
            self.moved.store(true, Ordering::Relaxed);
        }
    }
}

/// `CLUSTER SLOTS` from `shard` within `timeout`. `Err(None)`: it did not
/// answer in time.
async fn ask_slot_map(
    shard: &Shard,
    timeout: Duration,
) -> Result<ClusterRouting, Option<RedisError>> {
    match tokio::time::timeout(timeout, shard.client.cluster_slots::<Value>()).await {
        Ok(Ok(v)) => ClusterRouting::from_cluster_slots(v, shard.server.host.clone()).map_err(Some),
        Ok(Err(e)) => Err(Some(e)),
        Err(_) => Err(None),
    }
}

/// How long a command redirected by a Redis Cluster (a slot that moved or
/// is moving, or a cluster electing a new master) is tried again, and the
/// pauses between tries. Moving one slot's keys takes milliseconds; a slot
/// stays half-moved (`ASK`) until `redis-cli --cluster reshard` or its like
/// settles it.
const REDIRECT_PATIENCE: Duration = Duration::from_secs(3);
const REDIRECT_PAUSE_FIRST: Duration = Duration::from_millis(2);
const REDIRECT_PAUSE_MAX: Duration = Duration::from_millis(100);

/// A Lua script run by hash on its keys' shard, loaded on first use. A
/// server that does not know it (restarted, or a cluster shard or promoted
/// replica that never saw it) gets the source once with EVAL, which also
/// caches it there. A script the cluster redirects is sent again
/// ([`Router::send`]).
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

    /// Runs the script with `keys` (all in one slot) on their shard.
    pub(super) async fn run(
        &self,
        router: &Router,
        keys: &[String],
        args: Vec<Value>,
    ) -> Result<Value, RedisError> {
        let route = keys.first().map_or("", String::as_str);
        let cached = self.sha.lock().clone();
        let sha = match cached {
            Some(sha) => sha,
            None => {
                // The hash is the same on every server; the others learn
                // the script by EVAL.
                let sha: String = router.client(route).script_load(self.source).await?;
                *self.sha.lock() = Some(sha.clone());
                sha
            }
        };
        let (sha, args) = (sha.as_str(), &args);
        router
            .send(route, |client| async move {
                match client.evalsha(sha, keys.to_vec(), args.clone()).await {
                    Err(e) if e.details().starts_with("NOSCRIPT") => {
                        client.eval(self.source, keys.to_vec(), args.clone()).await
                    }
                    other => other,
                }
            })
            .await
    }
}

/// A Redis Cluster refused a command without running it.
#[derive(Debug, PartialEq)]
enum Redirect {
    /// `MOVED <slot> <host>:<port>`: the slot lives there now.
    Moved(u16, Server),
    /// The slot is being moved (`ASK`; `TRYAGAIN` for a multi-key
    /// command), or the cluster has no master for it yet (`CLUSTERDOWN`,
    /// while it elects one): the same server is asked again shortly.
    Wait,
}

fn redirection(e: &RedisError) -> Option<Redirect> {
    let details = e.details();
    let mut words = details.split_whitespace();
    match words.next()? {
        "MOVED" => {
            let slot = words.next()?.parse().ok()?;
            let (host, port) = words.next()?.rsplit_once(':')?;
            Some(Redirect::Moved(slot, Server::new(host, port.parse().ok()?)))
        }
        "ASK" | "TRYAGAIN" | "CLUSTERDOWN" => Some(Redirect::Wait),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirections_are_read_from_the_error() {
        let moved = RedisError::new(ErrorKind::Cluster, "MOVED 3999 127.0.0.1:7001");
        assert_eq!(
            redirection(&moved),
            Some(Redirect::Moved(3999, Server::new("127.0.0.1", 7001)))
        );
        for wait in [
            "ASK 3999 127.0.0.1:7001",
            "TRYAGAIN Multiple keys request during rehashing of slot",
            "CLUSTERDOWN The cluster is down",
        ] {
            let e = RedisError::new(ErrorKind::Cluster, wait);
            assert_eq!(redirection(&e), Some(Redirect::Wait), "{wait}");
        }
        let other = RedisError::new(ErrorKind::Unknown, "ERR unknown command");
        assert_eq!(redirection(&other), None);
        let garbled = RedisError::new(ErrorKind::Cluster, "MOVED x");
        assert_eq!(redirection(&garbled), None);
    }
}
