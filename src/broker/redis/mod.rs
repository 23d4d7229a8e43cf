//! The Redis broker: several hub nodes share sessions.
//!
//! **Sequencing.** Redis assigns every session's sequence numbers. One Lua
//! script checks the publish condition, increments the session's `seq`,
//! appends the event to the session's stream (capped at
//! `redis.stream_maxlen`) and publishes it on the session's channel, all
//! atomically, so two nodes that race get consecutive numbers in the order
//! Redis ran their scripts, and a conditional publish that lost the race
//! is refused with the winner's position. We chose this over a per-session
//! owner with a lease: no ownership hand-over when a node dies, and a
//! publish costs one round trip from any node.
//!
//! **Delivery.** Each node subscribes to the channels of the sessions it
//! watches. A per-session *track* delivers publications to the hub in
//! `seq` order: one that arrives early waits `redis.gap_wait_ms` for the
//! missing ones, then they are read from the stream. The same happens when
//! the pub/sub buffer overflowed (counted), after a reconnect, and after
//! `CLIENT KILL`. A node's own publish returns once its track has
//! delivered it, so the hub reads its replica after a publish exactly as
//! with the in-process broker.
//!
//! **Joining late.** Nodes checkpoint the replicas of sessions they change
//! (`redis.checkpoint_interval_ms`); a node that starts watching a live
//! session restores the latest checkpoint and applies the stream after it.
//!
//! **Beginning a stream.** No script creates a stream as a side effect:
//! a node begins one (the BEGIN script, or the hand-over after an outage)
//! with its replica's checkpoint as the stream's base, atomically. Every
//! node that follows a new stream (after Redis lost one, say) reloads from
//! that base, so no two nodes carry on from different states under one
//! epoch.
//!
//! **Outage.** When Redis does not answer, each session this node publishes
//! to continues on the node alone under a fresh epoch (its clients get one
//! discontinuity). When Redis answers again the node hands that run over:
//! if nobody else moved the session's stream meanwhile (or Redis lost it),
//! the node's checkpoint and events become the shared stream and the other
//! nodes reload; otherwise Redis wins and this node reloads from it.
//!
//! **Presence.** Connections are counted per member and per node; each
//! node refreshes a heartbeat, and the members of a node whose heartbeat
//! is older than `redis.presence_ttl_s` are counted out by whichever node
//! notices first (one script, so once).
//!
//! **One Redis or a Redis Cluster.** The same layout and scripts run on
//! both (docs/CLUSTER.md). Every key of a session, and its channel, carry
//! the hash tag `{<session id>}`, so a session lives in one slot; its
//! events travel on a shard channel (SPUBLISH/SSUBSCRIBE), which reaches
//! only the nodes subscribed to it on that shard. On a cluster the node
//! sends each command to the master of its key's slot through a client of
//! that master's own (router.rs), so a failed master stops only its own
//! sessions; the health monitor reads the slot map, subscribes the
//! channels again and resyncs the tracks when slots move.
//!
//! Keys (`eva` is `redis.prefix`; seed 000 §3; the braces are literal):
//! `eva:session:{<id>}:position` (epoch, seq), `:stream`, `:checkpoint`,
//! `:state`, `:metrics`, `:context` (JSON views with TTLs), `:presence`,
//! `:presence:<node>`, channel `eva:session:{<id>}:events`,
//! `eva:ws:sessions` (live sessions), `eva:ws:nodes` (heartbeats),
//! `eva:ws:node:{<node>}:sessions`; the shared abuse-limit counters add
//! `eva:limits:slots:…`, `eva:ws:node:{<node>}:slots` and
//! `eva:ratelimit:…`. `scripts.rs` builds all of them.
//!
//! **Files**, each using only those listed before it:
//! * `reply.rs`: parsing Redis replies; the `Unavailable` error.
//! * `conn.rs`: the fred clients and their settings (TLS included), restarting one,
//!   connection errors.
//! * `router.rs`: which server a command goes to (a client per cluster
//!   master, the slot map), whether each answers, and the script runner.
//! * `scripts.rs`: every Lua script with its KEYS and ARGV, and the key
//!   layout (`Keys`).
//! * `wire.rs`: the JSON an event travels as.
//! * `track.rs`: a watched session's ordering state, without Redis.
//! * `node.rs`: the state a node shares with its background tasks.
//! * `delivery.rs`: subscription, in-order delivery, gap refill, resync.
//! * `outage.rs`: sequencing alone while Redis is away, and the hand-over.
//! * `presence.rs`: presence counts, reaping, checkpoints.
//! * `sequence.rs`: publish, beginning, position, history and removal of
//!   a stream.
//! * `health.rs`: the monitor task (ping, heartbeat, resync after reconnect).
//! * `counters.rs`: the abuse limits' counters shared by all nodes.
//! * `mod.rs` (here): [`RedisBroker`], its connect, and the [`Broker`]
//!   methods, each handed to the file that owns it.

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use dashmap::DashMap;
use parking_lot::{Mutex, RwLock};
use tokio::sync::mpsc;

use crate::broker::redis::counters::RedisCounters;
use crate::broker::redis::node::Shared;
use crate::broker::redis::router::Router;
use crate::broker::redis::scripts::Keys;
use crate::broker::{Broker, BrokerError, BrokerHandler, Checkpoint, Condition, HistoryPage};
use crate::config::{LimitSettings, RedisSettings};
use crate::counters::Counters;
use crate::ids::{Seq, SessionId};
use crate::metrics as m;
use crate::protocol::model::{Event, StreamPosition};
use crate::stream::{Origin, Published};

mod conn;
pub use conn::client_config;
mod counters;
mod delivery;
mod health;
mod node;
mod outage;
mod presence;
mod reply;
mod router;
mod scripts;
mod sequence;
mod track;
mod wire;

pub struct RedisBroker {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RedisBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBroker")
            .field("node", &self.shared.node)
            .field("prefix", &self.shared.keys.prefix())
            .field("sessions", &self.shared.tracks.len())
            .finish()
    }
}

impl RedisBroker {
    /// Connects to `cfg.url` and starts the node's background tasks.
    /// `history_size` bounds what a run sequenced alone keeps to hand over.
    ///
    /// # Errors
    /// When the URL is invalid or Redis does not answer.
    pub async fn connect(
        cfg: &RedisSettings,
        history_size: usize,
    ) -> Result<RedisBroker, BrokerError> {
        let node = if cfg.node_id.is_empty() {
            format!("node-{:08x}", rand::random::<u32>())
        } else {
            cfg.node_id.clone()
        };
        // Built once: a TLS URL reads its certificate files here.
        let config = conn::client_config(cfg)?;
        let redis = Arc::new(Router::connect(cfg, config.clone(), &node).await?);
        let (subscriber, subscriber_task) = conn::subscriber(cfg, config).await?;
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            redis,
            subscriber,
            subscriber_task: Mutex::new(subscriber_task),
            keys: Keys::new(cfg.prefix.clone()),
            node,
            cfg: cfg.clone(),
            history_size: history_size.max(1),
            handler: OnceLock::new(),
            tracks: DashMap::new(),
            resync: tx,
            forgotten: Mutex::new(Vec::new()),
            dead_nodes: Arc::new(RwLock::new(Vec::new())),
        });
        m::redis_up(true);
        // A node restarted under its old name must not inherit the members
        // and connection slots of its previous life: count them out now
        // (their `leave` events go out with the first reap).
        shared.forget_previous_life().await?;
        tokio::spawn(delivery::receive(Arc::downgrade(&shared)));
        tokio::spawn(health::monitor(Arc::downgrade(&shared)));
        tokio::spawn(delivery::resync_worker(Arc::downgrade(&shared), rx));
        tracing::info!(node = %shared.node, prefix = %cfg.prefix, "Redis broker connected");
        Ok(RedisBroker { shared })
    }

    /// This node's name in Redis.
    pub fn node(&self) -> &str {
        &self.shared.node
    }
}

#[async_trait]
impl Broker for RedisBroker {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn attach(&self, handler: Arc<dyn BrokerHandler>) {
        let _ = self.shared.handler.set(handler);
    }

    async fn publish_many(
        &self,
        session: SessionId,
        events: Vec<(Event, Origin)>,
        ts: u64,
        condition: Condition,
    ) -> Result<Vec<Arc<Published>>, BrokerError> {
        self.shared.publish(session, events, ts, condition).await
    }

    async fn position(&self, session: SessionId) -> Result<Option<StreamPosition>, BrokerError> {
        self.shared.current_position(session).await
    }

    async fn begin(
        &self,
        session: SessionId,
        base: Checkpoint,
    ) -> Result<StreamPosition, BrokerError> {
        let (_, now) = self
            .shared
            .begin(session, base.position, Some(&base))
            .await?;
        Ok(now)
    }

    async fn history(
        &self,
        session: SessionId,
        after: Seq,
        limit: usize,
    ) -> Result<HistoryPage, BrokerError> {
        self.shared.history(session, after, limit).await
    }

    async fn watch(&self, session: SessionId, from: StreamPosition) -> Result<(), BrokerError> {
        self.shared.watch(session, from).await
    }

    async fn unwatch(&self, session: SessionId) -> Result<(), BrokerError> {
        self.shared.unwatch(session).await
    }

    async fn presence_join(&self, session: SessionId, member: &str) -> Result<bool, BrokerError> {
        self.shared.presence_change(session, member, 1).await
    }

    async fn presence_leave(&self, session: SessionId, member: &str) -> Result<bool, BrokerError> {
        self.shared.presence_change(session, member, -1).await
    }

    async fn reap(&self) -> Result<Vec<(SessionId, String)>, BrokerError> {
        self.shared.reaped().await
    }

    fn wants_checkpoints(&self) -> bool {
        true
    }

    fn shared_counters(&self, limits: &LimitSettings) -> Option<Arc<dyn Counters>> {
        let s = &self.shared;
        Some(Arc::new(RedisCounters::new(
            s.redis.clone(),
            s.keys.clone(),
            s.node.clone(),
            s.dead_nodes.clone(),
            limits,
        )))
    }

    async fn save_checkpoint(&self, session: SessionId, cp: Checkpoint) -> Result<(), BrokerError> {
        self.shared.save_checkpoint(session, cp).await
    }

    async fn load_checkpoint(
        &self,
        session: SessionId,
    ) -> Result<Option<(StreamPosition, Vec<u8>)>, BrokerError> {
        self.shared.load_checkpoint(session).await
    }

    async fn remove(&self, session: SessionId) -> Result<(), BrokerError> {
        self.shared.remove(session).await
    }

    async fn ping(&self) -> Result<(), BrokerError> {
        // Ready while some server answers: during a cluster failover the
        // other shards' sessions go on.
        let s = &self.shared;
        let mut shards = s.redis.shards();
        shards.sort_by_key(|shard| !shard.is_up());
        let mut last = None;
        for shard in shards {
            match conn::ping(&shard.client, s.cfg.command_timeout()).await {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| reply::unavailable("no Redis server")))
    }
}
