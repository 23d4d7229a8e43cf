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
//! Keys (`eva` is `redis.prefix`; seed 000 §3):
//! `eva:session:{id}:position` (epoch, seq), `:stream`, `:checkpoint`,
//! `:state`, `:metrics`, `:context` (JSON views with TTLs), `:presence`,
//! `:presence:{node}`, channel `eva:session:{id}:events`,
//! `eva:ws:sessions` (live sessions), `eva:ws:nodes` (heartbeats),
//! `eva:ws:node:{node}:sessions`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use dashmap::DashMap;
use fred::clients::{Client, SubscriberClient};
use fred::prelude::{
    ClientLike, Config, Error as RedisError, EventInterface, HashesInterface, KeysInterface,
    LuaInterface, PubsubInterface, SetsInterface, SortedSetsInterface,
};
use fred::types::config::ReconnectPolicy;
use fred::types::{Builder, Value};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc};

use super::{
    Broker, BrokerError, BrokerHandler, Checkpoint, Condition, HistoryPage, Origin, Published,
};
use crate::config::RedisSettings;
use crate::ids::{Epoch, Seq, SessionId, now_ms};
use crate::metrics as m;
use crate::protocol::model::{Event, StreamPosition};

/// Publications held while waiting for a gap to fill; past this the
/// track drops them and reads everything from the stream.
const MAX_PENDING: usize = 4096;
/// Events read from a stream per round trip.
const PAGE: usize = 1000;
/// How long a node's own publish waits for its track to deliver it.
const DELIVERY_WAIT: Duration = Duration::from_secs(2);

// ---------------------------------------------------------------------
// Scripts
// ---------------------------------------------------------------------

/// KEYS: position, stream. ARGV: expected seq (-1: any), payload,
/// maxlen, ttl, candidate epoch, channel.
const PUBLISH: &str = r#"
local epoch = redis.call('HGET', KEYS[1], 'epoch')
local seq = 0
if epoch then
  seq = tonumber(redis.call('HGET', KEYS[1], 'seq'))
else
  epoch = ARGV[5]
  redis.call('DEL', KEYS[2])
end
local expected = tonumber(ARGV[1])
if expected >= 0 and expected ~= seq then
  return {0, seq, epoch}
end
seq = seq + 1
redis.call('HSET', KEYS[1], 'epoch', epoch, 'seq', seq)
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[3], seq .. '-1', 'e', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('PUBLISH', ARGV[6], 'E ' .. epoch .. ' ' .. seq .. ' ' .. ARGV[2])
return {1, seq, epoch}
"#;

/// KEYS: position, stream. ARGV: candidate epoch, ttl.
const POSITION: &str = r#"
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'seq', 0)
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  redis.call('DEL', KEYS[2])
  return {epoch, 0}
end
return {epoch, tonumber(redis.call('HGET', KEYS[1], 'seq'))}
"#;

/// KEYS: position, stream. ARGV: after, limit.
/// Returns {epoch, top, entries} or {epoch, top, -1} when trimmed, or {}
/// when the stream does not exist.
const HISTORY: &str = r#"
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then return {} end
local top = tonumber(redis.call('HGET', KEYS[1], 'seq'))
local after = tonumber(ARGV[1])
if after >= top then return {epoch, top, {}} end
local first = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
local first_seq = top + 1
if #first > 0 then first_seq = tonumber(string.match(first[1][1], '^(%d+)')) end
if after + 1 < first_seq then return {epoch, top, -1} end
return {epoch, top, redis.call('XRANGE', KEYS[2], (after + 1) .. '-0', '+', 'COUNT', ARGV[2])}
"#;

/// KEYS: position, checkpoint, state, metrics, context. ARGV: epoch, seq,
/// replica, ttl, state, state ttl, metrics ('' for none), metrics ttl,
/// context, context ttl.
const CHECKPOINT: &str = r#"
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return 0 end
local have = redis.call('HMGET', KEYS[2], 'epoch', 'seq')
if have[1] == ARGV[1] and tonumber(have[2]) >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[2], 'epoch', ARGV[1], 'seq', ARGV[2], 'data', ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('SET', KEYS[3], ARGV[5], 'EX', ARGV[6])
if ARGV[7] ~= '' then redis.call('SET', KEYS[4], ARGV[7], 'EX', ARGV[8]) end
redis.call('SET', KEYS[5], ARGV[9], 'EX', ARGV[10])
return 1
"#;

/// Hands a run sequenced on one node during an outage over to Redis.
/// KEYS: position, stream, checkpoint. ARGV: since epoch, since seq, new
/// epoch, new seq, replica, ttl, maxlen, channel, then (seq, payload)
/// pairs. Returns {1} or {0, epoch, seq} when the stream moved on.
const ADOPT: &str = r#"
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if epoch then
  local seq = tonumber(redis.call('HGET', KEYS[1], 'seq'))
  if epoch ~= ARGV[1] or seq ~= tonumber(ARGV[2]) then return {0, epoch, seq} end
end
if epoch ~= ARGV[3] then redis.call('DEL', KEYS[2]) end
redis.call('HSET', KEYS[1], 'epoch', ARGV[3], 'seq', ARGV[4])
local top = 0
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
if #last > 0 then top = tonumber(string.match(last[1][1], '^(%d+)')) end
for i = 9, #ARGV, 2 do
  if tonumber(ARGV[i]) > top then
    redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[7], ARGV[i] .. '-1', 'e', ARGV[i + 1])
  end
end
redis.call('HSET', KEYS[3], 'epoch', ARGV[3], 'seq', ARGV[4], 'data', ARGV[5])
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[6]) end
redis.call('PUBLISH', ARGV[8], 'R ' .. ARGV[3] .. ' ' .. ARGV[4])
return {1}
"#;

/// KEYS: total, this node's hash, this node's session set, heartbeats.
/// ARGV: member (or '' for none), delta, session, node, now ms.
/// Returns the member's total after the change.
const PRESENCE: &str = r#"
redis.call('ZADD', KEYS[4], ARGV[5], ARGV[4])
redis.call('SADD', KEYS[3], ARGV[3])
local delta = tonumber(ARGV[2])
local here = redis.call('HINCRBY', KEYS[2], ARGV[1], delta)
if here <= 0 then redis.call('HDEL', KEYS[2], ARGV[1]) end
if here < 0 then return -1 end
local total = redis.call('HINCRBY', KEYS[1], ARGV[1], delta)
if total <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return total
"#;

/// KEYS: heartbeats. ARGV: prefix, deadline ms, and optionally a node to
/// forget whatever its heartbeat (this node, restarted under its old
/// name). Counts out every member of every node whose heartbeat is older
/// than the deadline, frees its connection slots, and returns the
/// (session, member) pairs whose total reached zero.
const REAP: &str = r#"
local out = {}
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
if ARGV[3] then table.insert(dead, ARGV[3]) end
for _, node in ipairs(dead) do
  local slots = ARGV[1] .. ':ws:node:' .. node .. ':slots'
  for _, key in ipairs(redis.call('SMEMBERS', slots)) do redis.call('HDEL', key, node) end
  redis.call('DEL', slots)
  local set = ARGV[1] .. ':ws:node:' .. node .. ':sessions'
  for _, sid in ipairs(redis.call('SMEMBERS', set)) do
    local total = ARGV[1] .. ':session:' .. sid .. ':presence'
    local here = total .. ':' .. node
    local members = redis.call('HGETALL', here)
    for i = 1, #members, 2 do
      local left = redis.call('HINCRBY', total, members[i], -tonumber(members[i + 1]))
      if left <= 0 then
        redis.call('HDEL', total, members[i])
        table.insert(out, sid)
        table.insert(out, members[i])
      end
    end
    redis.call('DEL', here)
  end
  redis.call('DEL', set)
  redis.call('ZREM', KEYS[1], node)
end
return out
"#;

/// A Lua script run by hash, loaded on first use and again after Redis
/// forgot it (a restart).
pub(crate) struct Script {
    source: &'static str,
    sha: Mutex<Option<String>>,
}

impl Script {
    pub(crate) const fn new(source: &'static str) -> Script {
        Script {
            source,
            sha: Mutex::new(None),
        }
    }

    pub(crate) async fn run(
        &self,
        client: &Client,
        keys: Vec<String>,
        args: Vec<Value>,
    ) -> Result<Value, RedisError> {
        for _ in 0..2 {
            let sha = self.sha.lock().clone();
            let sha = match sha {
                Some(s) => s,
                None => {
                    let s: String = client.script_load(self.source).await?;
                    *self.sha.lock() = Some(s.clone());
                    s
                }
            };
            match client.evalsha(sha, keys.clone(), args.clone()).await {
                Err(e) if e.to_string().contains("NOSCRIPT") => *self.sha.lock() = None,
                other => return other,
            }
        }
        client.eval(self.source, keys, args).await
    }
}

struct Scripts {
    publish: Script,
    position: Script,
    history: Script,
    checkpoint: Script,
    adopt: Script,
    presence: Script,
    reap: Script,
}

static SCRIPTS: Scripts = Scripts {
    publish: Script::new(PUBLISH),
    position: Script::new(POSITION),
    history: Script::new(HISTORY),
    checkpoint: Script::new(CHECKPOINT),
    adopt: Script::new(ADOPT),
    presence: Script::new(PRESENCE),
    reap: Script::new(REAP),
};

// ---------------------------------------------------------------------
// Keys and wire format
// ---------------------------------------------------------------------

#[derive(Clone, Debug)]
struct Keys {
    prefix: String,
}

impl Keys {
    fn session(&self, id: SessionId, part: &str) -> String {
        format!("{}:session:{id}:{part}", self.prefix)
    }
    fn position(&self, id: SessionId) -> String {
        self.session(id, "position")
    }
    fn stream(&self, id: SessionId) -> String {
        self.session(id, "stream")
    }
    fn checkpoint(&self, id: SessionId) -> String {
        self.session(id, "checkpoint")
    }
    fn channel(&self, id: SessionId) -> String {
        self.session(id, "events")
    }
    fn presence(&self, id: SessionId) -> String {
        self.session(id, "presence")
    }
    fn presence_on(&self, id: SessionId, node: &str) -> String {
        format!("{}:{node}", self.presence(id))
    }
    fn node_sessions(&self, node: &str) -> String {
        format!("{}:ws:node:{node}:sessions", self.prefix)
    }
    fn heartbeats(&self) -> String {
        format!("{}:ws:nodes", self.prefix)
    }
    fn live_sessions(&self) -> String {
        format!("{}:ws:sessions", self.prefix)
    }
    /// The session a channel belongs to.
    fn session_of(&self, channel: &str) -> Option<SessionId> {
        channel
            .strip_prefix(&self.prefix)?
            .strip_prefix(":session:")?
            .strip_suffix(":events")?
            .parse()
            .ok()
    }
}

/// What the stream and the channel carry for one event.
#[derive(Serialize)]
struct WireRef<'a> {
    ts: u64,
    event: &'a Event,
    origin: &'a Origin,
}

#[derive(Deserialize)]
struct Wire {
    ts: u64,
    event: Event,
    origin: Origin,
}

fn encode(ts: u64, event: &Event, origin: &Origin) -> Result<String, BrokerError> {
    // JSON rather than MessagePack: the event model uses internally tagged
    // enums, and operators can read the stream with redis-cli.
    serde_json::to_string(&WireRef { ts, event, origin })
        .map_err(|e| BrokerError::Unavailable(format!("cannot encode event: {e}")))
}

fn decode(session: SessionId, seq: Seq, payload: &str) -> Option<Arc<Published>> {
    match serde_json::from_str::<Wire>(payload) {
        Ok(w) => Some(Arc::new(Published::new(
            session, seq, w.ts, w.event, w.origin,
        ))),
        Err(e) => {
            // Written by a newer or broken node; skipping it would leave a
            // gap, so the track refills and will log this again.
            tracing::error!(%session, seq, error = %e, "undecodable event in Redis");
            None
        }
    }
}

fn unavailable(e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Unavailable(e.to_string())
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Integer(i) => Some(*i),
        Value::String(s) => s.parse().ok(),
        Value::Bytes(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        _ => None,
    }
}

fn text(v: &Value) -> Option<String> {
    v.as_string()
}

fn epoch_of(v: &Value) -> Result<Epoch, BrokerError> {
    text(v)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| unavailable("malformed epoch in Redis"))
}

fn array(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a,
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

/// Stream entries `[[id, [field, value, ...]], ...]` as (seq, payload).
fn entries(v: Value) -> Vec<(Seq, String)> {
    array(v)
        .into_iter()
        .filter_map(|entry| {
            let mut parts = array(entry).into_iter();
            let id = text(&parts.next()?)?;
            let seq = id.split('-').next()?.parse().ok()?;
            let fields = array(parts.next()?);
            let payload = text(fields.get(1)?)?;
            Some((seq, payload))
        })
        .collect()
}

// ---------------------------------------------------------------------
// Tracks: in-order delivery per watched session
// ---------------------------------------------------------------------

/// A run of events this node sequenced alone while Redis was away.
#[derive(Debug)]
struct LocalRun {
    /// The shared stream's position when the run began.
    since: StreamPosition,
    /// Payloads of the run's most recent events, to hand over.
    events: VecDeque<(Seq, String)>,
    /// Presence changes made while away: member → connections added.
    presence: HashMap<String, i64>,
}

#[derive(Debug)]
struct TrackState {
    epoch: Epoch,
    delivered: Seq,
    pending: BTreeMap<Seq, Arc<Published>>,
    local: Option<LocalRun>,
    resync_queued: bool,
}

#[derive(Debug)]
struct Track {
    session: SessionId,
    state: Mutex<TrackState>,
    delivered: Notify,
}

impl Track {
    fn position(&self) -> StreamPosition {
        let st = self.state.lock();
        StreamPosition {
            epoch: st.epoch,
            seq: st.delivered,
        }
    }
}

// ---------------------------------------------------------------------
// The broker
// ---------------------------------------------------------------------

struct Shared {
    client: Client,
    subscriber: SubscriberClient,
    keys: Keys,
    node: String,
    cfg: RedisSettings,
    history_size: usize,
    handler: OnceLock<Arc<dyn BrokerHandler>>,
    tracks: DashMap<SessionId, Arc<Track>>,
    up: Arc<AtomicBool>,
    resync: mpsc::UnboundedSender<SessionId>,
    /// Members of this node's previous life, counted out at start.
    forgotten: Mutex<Vec<(SessionId, String)>>,
}

pub struct RedisBroker {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RedisBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBroker")
            .field("node", &self.shared.node)
            .field("prefix", &self.shared.keys.prefix)
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
        let subscriber = builder.build_subscriber_client().map_err(unavailable)?;
        client.init().await.map_err(unavailable)?;
        subscriber.init().await.map_err(unavailable)?;
        let node = if cfg.node_id.is_empty() {
            format!("node-{:08x}", rand::random::<u32>())
        } else {
            cfg.node_id.clone()
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            client,
            subscriber,
            keys: Keys {
                prefix: cfg.prefix.clone(),
            },
            node,
            cfg: cfg.clone(),
            history_size: history_size.max(1),
            handler: OnceLock::new(),
            tracks: DashMap::new(),
            up: Arc::new(AtomicBool::new(true)),
            resync: tx,
            forgotten: Mutex::new(Vec::new()),
        });
        m::redis_up(true);
        // A node restarted under its old name must not inherit the members
        // and connection slots of its previous life: count them out now
        // (their `leave` events go out with the first reap).
        let forgotten = shared.reap(Some(&shared.node)).await?;
        *shared.forgotten.lock() = forgotten;
        tokio::spawn(receive(Arc::downgrade(&shared)));
        tokio::spawn(monitor(Arc::downgrade(&shared)));
        tokio::spawn(resync_worker(Arc::downgrade(&shared), rx));
        tracing::info!(node = %shared.node, prefix = %cfg.prefix, "Redis broker connected");
        Ok(RedisBroker { shared })
    }

    /// This node's name in Redis.
    pub fn node(&self) -> &str {
        &self.shared.node
    }
}

impl RedisBroker {
    fn counters_for(
        &self,
        limits: &crate::config::LimitSettings,
    ) -> Arc<dyn crate::auth::limits::Counters> {
        let s = &self.shared;
        Arc::new(super::redis_counters::RedisCounters::new(
            s.client.clone(),
            s.keys.prefix.clone(),
            s.node.clone(),
            s.cfg.presence_ttl_s,
            s.up.clone(),
            limits,
        ))
    }
}

impl Shared {
    fn handler(&self) -> Option<&Arc<dyn BrokerHandler>> {
        self.handler.get()
    }

    fn track(&self, session: SessionId) -> Option<Arc<Track>> {
        self.tracks.get(&session).map(|t| t.clone())
    }

    fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    fn set_up(&self, up: bool) -> bool {
        let was = self.up.swap(up, Ordering::Relaxed);
        if was != up {
            m::redis_up(up);
            if up {
                tracing::info!(node = %self.node, "Redis answers again; resyncing sessions");
            } else {
                tracing::warn!(node = %self.node, "Redis unreachable; sessions continue on this node alone");
            }
        }
        was
    }

    fn queue_resync(&self, track: &Track, st: &mut TrackState) {
        if !st.resync_queued {
            st.resync_queued = true;
            let _ = self.resync.send(track.session);
        }
    }

    /// Delivers `p` if it is next, holds it if early, drops it if old.
    fn offer(&self, track: &Track, epoch: Epoch, p: Arc<Published>) {
        let mut st = track.state.lock();
        if st.local.is_some() {
            // Runs alone until the hand-over settles which stream wins.
            return;
        }
        if epoch != st.epoch {
            self.queue_resync(track, &mut st);
            return;
        }
        if p.seq <= st.delivered {
            return;
        }
        if p.seq > st.delivered + 1 {
            if st.pending.len() < MAX_PENDING {
                st.pending.insert(p.seq, p);
            }
            self.queue_resync(track, &mut st);
            return;
        }
        self.deliver(&mut st, p);
        drop(st);
        track.delivered.notify_waiters();
    }

    /// Hands `p` (the next publication) and any held successors to the hub.
    fn deliver(&self, st: &mut TrackState, p: Arc<Published>) {
        let handler = self.handler();
        st.delivered = p.seq;
        if let Some(h) = handler {
            h.on_publication(p);
        }
        while let Some(next) = st.pending.remove(&(st.delivered + 1)) {
            st.delivered = next.seq;
            if let Some(h) = handler {
                h.on_publication(next);
            }
        }
        let delivered = st.delivered;
        st.pending.retain(|seq, _| *seq > delivered);
    }

    /// Waits until the track has delivered `seq` of `epoch`.
    async fn wait_delivered(&self, track: &Track, epoch: Epoch, seq: Seq) {
        let deadline = tokio::time::Instant::now() + DELIVERY_WAIT;
        loop {
            let notified = track.delivered.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let st = track.state.lock();
                if st.epoch != epoch || st.delivered >= seq || st.local.is_some() {
                    return;
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                tracing::warn!(session = %track.session, seq, "own publication not delivered in time; the track will refill it");
                return;
            }
        }
    }

    async fn run(
        &self,
        script: &Script,
        keys: Vec<String>,
        args: Vec<Value>,
    ) -> Result<Value, BrokerError> {
        match script.run(&self.client, keys, args).await {
            Ok(v) => Ok(v),
            Err(e) => {
                if is_connection_error(&e) {
                    self.set_up(false);
                }
                Err(unavailable(e))
            }
        }
    }

    async fn position(&self, session: SessionId) -> Result<StreamPosition, BrokerError> {
        let v = self
            .run(
                &SCRIPTS.position,
                vec![self.keys.position(session), self.keys.stream(session)],
                vec![
                    Epoch::random().to_string().into(),
                    (self.cfg.stream_ttl_s as i64).into(),
                ],
            )
            .await?;
        let a = array(v);
        if a.len() != 2 {
            return Err(unavailable("malformed position reply"));
        }
        Ok(StreamPosition {
            epoch: epoch_of(&a[0])?,
            seq: int(&a[1]).unwrap_or(0) as Seq,
        })
    }

    /// Events after `after` as (seq, payload); `Ok(None)` when the stream
    /// does not exist.
    async fn read(
        &self,
        session: SessionId,
        after: Seq,
        limit: usize,
    ) -> Result<Option<(StreamPosition, Vec<(Seq, String)>)>, BrokerError> {
        let v = self
            .run(
                &SCRIPTS.history,
                vec![self.keys.position(session), self.keys.stream(session)],
                vec![(after as i64).into(), (limit as i64).into()],
            )
            .await?;
        let mut a = array(v).into_iter();
        let (Some(epoch), Some(top), Some(rest)) = (a.next(), a.next(), a.next()) else {
            return Ok(None);
        };
        let position = StreamPosition {
            epoch: epoch_of(&epoch)?,
            seq: int(&top).unwrap_or(0) as Seq,
        };
        if int(&rest) == Some(-1) {
            return Err(BrokerError::Trimmed { after });
        }
        Ok(Some((position, entries(rest))))
    }

    async fn load_checkpoint(
        &self,
        session: SessionId,
    ) -> Result<Option<(StreamPosition, Vec<u8>)>, BrokerError> {
        let v: Vec<Value> = self
            .client
            .hmget(self.keys.checkpoint(session), vec!["epoch", "seq", "data"])
            .await
            .map_err(unavailable)?;
        let (Some(epoch), Some(seq), Some(data)) = (
            v.first().and_then(text).and_then(|s| s.parse().ok()),
            v.get(1).and_then(int),
            v.get(2).and_then(|d| d.as_bytes().map(<[u8]>::to_vec)),
        ) else {
            return Ok(None);
        };
        Ok(Some((
            StreamPosition {
                epoch,
                seq: seq as Seq,
            },
            data,
        )))
    }

    /// Brings a track up to date with the shared stream: refills a gap,
    /// follows a stream that restarted, or hands over a run sequenced
    /// alone.
    async fn sync(&self, track: &Arc<Track>) -> Result<(), BrokerError> {
        let (local, from) = {
            let mut st = track.state.lock();
            st.resync_queued = false;
            (
                st.local.is_some(),
                StreamPosition {
                    epoch: st.epoch,
                    seq: st.delivered,
                },
            )
        };
        if local {
            return self.hand_over(track).await;
        }
        let mut from = from;
        loop {
            match self.read(track.session, from.seq, PAGE).await {
                Ok(Some((position, events))) if position.epoch == from.epoch => {
                    let n = events.len();
                    let mut last = from.seq;
                    for (seq, payload) in events {
                        match decode(track.session, seq, &payload) {
                            Some(p) => self.offer(track, from.epoch, p),
                            // Waiting for it would stall the session here
                            // for good; the replica notes the hole.
                            None => self.skip(track, from.epoch, seq),
                        }
                        last = seq;
                    }
                    m::redis_refilled(n as u64);
                    if n < PAGE || last >= position.seq {
                        return Ok(());
                    }
                    from.seq = last;
                }
                Ok(Some(_)) => return self.follow_restart(track).await,
                // Redis lost the stream and nobody published since. Do not
                // start one: a node that ran the session alone meanwhile
                // must be able to hand its run over. The next publication
                // (or hand-over) arrives under a new epoch and is followed.
                Ok(None) => return Ok(()),
                Err(BrokerError::Trimmed { .. }) => return self.reload(track, "behind").await,
                Err(e) => return Err(e),
            }
        }
    }

    /// The shared stream is under another epoch than the track: Redis lost
    /// it and a node started it again, or a node handed over a run.
    async fn follow_restart(&self, track: &Arc<Track>) -> Result<(), BrokerError> {
        let position = self.position(track.session).await?;
        match self.load_checkpoint(track.session).await? {
            Some((cp, _)) if cp.epoch == position.epoch => self.reload(track, "adopted").await,
            _ => {
                // A fresh stream: this replica's state carries on and the
                // new stream's events apply on top of it.
                self.reset(
                    track,
                    StreamPosition {
                        epoch: position.epoch,
                        seq: 0,
                    },
                    None,
                    "restart",
                );
                Box::pin(self.sync(track)).await
            }
        }
    }

    /// Rebuilds the replica from the latest checkpoint and the events
    /// after it.
    async fn reload(&self, track: &Arc<Track>, reason: &'static str) -> Result<(), BrokerError> {
        let position = self.position(track.session).await?;
        match self.load_checkpoint(track.session).await? {
            Some((cp, data)) if cp.epoch == position.epoch => {
                self.reset(track, cp, Some(data), reason);
            }
            _ => {
                tracing::error!(session = %track.session, "fell behind the stream and no checkpoint covers the gap; continuing from the stream's head");
                self.reset(track, position, None, reason);
            }
        }
        Box::pin(self.sync(track)).await
    }

    /// Moves past an event no node can read.
    fn skip(&self, track: &Track, epoch: Epoch, seq: Seq) {
        let mut guard = track.state.lock();
        let st = &mut *guard;
        if st.epoch == epoch && st.delivered + 1 == seq && st.local.is_none() {
            st.delivered = seq;
            let next = seq + 1;
            if let Some(p) = st.pending.remove(&next) {
                self.deliver(st, p);
            }
        }
    }

    fn reset(
        &self,
        track: &Track,
        at: StreamPosition,
        replica: Option<Vec<u8>>,
        reason: &'static str,
    ) {
        let mut st = track.state.lock();
        st.epoch = at.epoch;
        st.delivered = at.seq;
        st.pending.clear();
        st.local = None;
        m::redis_stream_reset(reason);
        if let Some(h) = self.handler() {
            h.on_stream_reset(track.session, at, replica);
        }
        drop(st);
        track.delivered.notify_waiters();
    }

    /// Offers the run this node sequenced alone to Redis as the session's
    /// stream; if the shared stream moved on meanwhile, takes that instead.
    async fn hand_over(&self, track: &Arc<Track>) -> Result<(), BrokerError> {
        let Some(handler) = self.handler() else {
            return Ok(());
        };
        loop {
            // Read the replica and the run under the track lock, so the
            // checkpoint's position and the events agree.
            let (since, at, cp, events, presence) = {
                let mut st = track.state.lock();
                let at = StreamPosition {
                    epoch: st.epoch,
                    seq: st.delivered,
                };
                let Some(run) = st.local.as_mut() else {
                    return Ok(());
                };
                let Some(cp) = handler.checkpoint(track.session) else {
                    return Ok(());
                };
                (
                    run.since,
                    at,
                    cp,
                    run.events.iter().cloned().collect::<Vec<_>>(),
                    std::mem::take(&mut run.presence),
                )
            };
            for (member, delta) in presence {
                if delta != 0 {
                    self.presence(track.session, &member, delta).await?;
                }
            }
            let mut args: Vec<Value> = vec![
                since.epoch.to_string().into(),
                (since.seq as i64).into(),
                at.epoch.to_string().into(),
                (at.seq as i64).into(),
                Value::Bytes(cp.replica.into()),
                (self.cfg.stream_ttl_s as i64).into(),
                (self.cfg.stream_maxlen as i64).into(),
                self.keys.channel(track.session).into(),
            ];
            for (seq, payload) in events.into_iter().filter(|(s, _)| *s <= at.seq) {
                args.push((seq as i64).into());
                args.push(payload.into());
            }
            let v = self
                .run(
                    &SCRIPTS.adopt,
                    vec![
                        self.keys.position(track.session),
                        self.keys.stream(track.session),
                        self.keys.checkpoint(track.session),
                    ],
                    args,
                )
                .await?;
            let adopted = array(v).first().and_then(int) == Some(1);
            if !adopted {
                tracing::warn!(session = %track.session, "the session moved on elsewhere while this node ran it alone; taking the shared stream");
                track.state.lock().local = None;
                return self.reload(track, "outage").await;
            }
            let mut st = track.state.lock();
            if st.delivered == at.seq && st.epoch == at.epoch {
                st.local = None;
                tracing::info!(session = %track.session, seq = at.seq, "run sequenced during the outage handed over to Redis");
                return Ok(());
            }
            // More events were sequenced meanwhile: hand those over too.
            if let Some(run) = st.local.as_mut() {
                run.since = at;
            }
        }
    }

    /// Counts out the members of dead nodes (and of `forget`).
    async fn reap(&self, forget: Option<&str>) -> Result<Vec<(SessionId, String)>, BrokerError> {
        let deadline = now_ms().saturating_sub(self.cfg.presence_ttl_s * 1000);
        let mut args: Vec<Value> = vec![self.keys.prefix.clone().into(), (deadline as i64).into()];
        if let Some(node) = forget {
            args.push(node.to_owned().into());
        }
        let v = self
            .run(&SCRIPTS.reap, vec![self.keys.heartbeats()], args)
            .await?;
        let flat: Vec<String> = array(v).iter().filter_map(text).collect();
        Ok(flat
            .chunks_exact(2)
            .filter_map(|pair| Some((pair[0].parse().ok()?, pair[1].clone())))
            .collect())
    }

    async fn presence(
        &self,
        session: SessionId,
        member: &str,
        delta: i64,
    ) -> Result<i64, BrokerError> {
        let v = self
            .run(
                &SCRIPTS.presence,
                vec![
                    self.keys.presence(session),
                    self.keys.presence_on(session, &self.node),
                    self.keys.node_sessions(&self.node),
                    self.keys.heartbeats(),
                ],
                vec![
                    member.into(),
                    delta.into(),
                    session.to_string().into(),
                    self.node.clone().into(),
                    (now_ms() as i64).into(),
                ],
            )
            .await?;
        int(&v).ok_or_else(|| unavailable("malformed presence reply"))
    }

    /// Starts (or continues) a run sequenced on this node alone. Its
    /// clients move to a fresh epoch: positions in it can never be
    /// confused with the shared stream's, whatever happens there.
    fn go_alone<'a>(&self, track: &Track, st: &'a mut TrackState) -> &'a mut LocalRun {
        if st.local.is_none() {
            let since = StreamPosition {
                epoch: st.epoch,
                seq: st.delivered,
            };
            let epoch = Epoch::random();
            st.epoch = epoch;
            st.pending.clear();
            m::redis_stream_reset("outage");
            tracing::warn!(session = %track.session, %epoch, "sequencing on this node alone until Redis answers");
            if let Some(h) = self.handler() {
                h.on_stream_reset(
                    track.session,
                    StreamPosition {
                        epoch,
                        seq: st.delivered,
                    },
                    None,
                );
            }
            st.local = Some(LocalRun {
                since,
                events: VecDeque::new(),
                presence: HashMap::new(),
            });
        }
        st.local.as_mut().expect("set above")
    }

    /// Sequences on this node alone (Redis unreachable), as the memory
    /// broker does.
    fn publish_alone(
        &self,
        track: &Track,
        event: Event,
        origin: Origin,
        ts: u64,
        condition: Condition,
    ) -> Result<Arc<Published>, BrokerError> {
        let payload = encode(ts, &event, &origin)?;
        let mut st = track.state.lock();
        self.go_alone(track, &mut st);
        if let Condition::SeqIs(expected) = condition
            && st.delivered != expected
        {
            return Err(BrokerError::Conflict {
                current: st.delivered,
            });
        }
        let seq = st.delivered + 1;
        let p = Arc::new(Published::new(track.session, seq, ts, event, origin));
        let keep = self.history_size;
        if let Some(run) = st.local.as_mut() {
            if run.events.len() >= keep {
                run.events.pop_front();
            }
            run.events.push_back((seq, payload));
        }
        self.deliver(&mut st, p.clone());
        Ok(p)
    }
}

fn is_connection_error(e: &RedisError) -> bool {
    use fred::error::ErrorKind;
    matches!(
        e.kind(),
        ErrorKind::IO | ErrorKind::Timeout | ErrorKind::Canceled
    )
}

/// Reads pub/sub messages and offers them to their tracks.
async fn receive(weak: Weak<Shared>) {
    let Some(mut rx) = weak.upgrade().map(|s| s.subscriber.message_rx()) else {
        return;
    };
    loop {
        let msg = rx.recv().await;
        let Some(shared) = weak.upgrade() else { return };
        match msg {
            Ok(msg) => {
                let Some(session) = shared.keys.session_of(&msg.channel) else {
                    continue;
                };
                let Some(track) = shared.track(session) else {
                    continue;
                };
                let Some(body) = text(&msg.value) else {
                    continue;
                };
                on_message(&shared, &track, &body);
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                m::redis_pubsub_dropped(n);
                tracing::warn!(
                    dropped = n,
                    "pub/sub buffer overflowed; refilling from streams"
                );
                resync_all(&shared);
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

fn on_message(shared: &Shared, track: &Arc<Track>, body: &str) {
    let mut parts = body.splitn(4, ' ');
    let kind = parts.next();
    let (Some(epoch), Some(seq)) = (
        parts.next().and_then(|e| e.parse::<Epoch>().ok()),
        parts.next().and_then(|s| s.parse::<Seq>().ok()),
    ) else {
        return;
    };
    match kind {
        Some("E") => {
            let Some(p) = parts
                .next()
                .and_then(|payload| decode(track.session, seq, payload))
            else {
                let mut st = track.state.lock();
                shared.queue_resync(track, &mut st);
                return;
            };
            shared.offer(track, epoch, p);
        }
        Some("R") => {
            // A node handed over a run: follow it unless it was ours.
            let mut st = track.state.lock();
            if st.epoch != epoch || st.delivered < seq {
                shared.queue_resync(track, &mut st);
            }
        }
        _ => {}
    }
}

fn resync_all(shared: &Shared) {
    for t in shared.tracks.iter() {
        let mut st = t.state.lock();
        shared.queue_resync(&t, &mut st);
    }
}

/// Watches Redis' health, refreshes this node's heartbeat, and resyncs
/// every session after an outage or a reconnect.
async fn monitor(weak: Weak<Shared>) {
    let Some(mut reconnects) = weak.upgrade().map(|s| s.subscriber.reconnect_rx()) else {
        return;
    };
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heartbeat = Instant::now() - Duration::from_secs(3600);
    loop {
        let reconnected = tokio::select! {
            _ = tick.tick() => false,
            r = reconnects.recv() => r.is_ok(),
        };
        let Some(shared) = weak.upgrade() else { return };
        let ok = shared.client.ping::<String>(None).await.is_ok();
        let was = shared.set_up(ok);
        if !ok {
            continue;
        }
        if !was || reconnected {
            // Pub/sub may have missed messages, and subscriptions made
            // while Redis was away never happened.
            let channels: Vec<String> = shared
                .tracks
                .iter()
                .map(|t| shared.keys.channel(t.session))
                .collect();
            if !channels.is_empty()
                && let Err(e) = shared.subscriber.subscribe(channels).await
            {
                tracing::warn!(error = %e, "resubscribe failed");
            }
            resync_all(&shared);
        }
        let every = Duration::from_secs(shared.cfg.presence_ttl_s / 3);
        if last_heartbeat.elapsed() >= every {
            let beat: Result<i64, _> = shared
                .client
                .zadd(
                    shared.keys.heartbeats(),
                    None,
                    None,
                    false,
                    false,
                    (now_ms() as f64, shared.node.clone()),
                )
                .await;
            if beat.is_ok() {
                last_heartbeat = Instant::now();
            }
        }
    }
}

/// Runs queued resyncs, after a short wait so a gap can close by itself.
async fn resync_worker(weak: Weak<Shared>, mut rx: mpsc::UnboundedReceiver<SessionId>) {
    while let Some(first) = rx.recv().await {
        let Some(wait) = weak
            .upgrade()
            .map(|s| Duration::from_millis(s.cfg.gap_wait_ms))
        else {
            return;
        };
        tokio::time::sleep(wait).await;
        let mut batch = vec![first];
        while let Ok(next) = rx.try_recv() {
            batch.push(next);
        }
        let Some(shared) = weak.upgrade() else { return };
        for session in batch {
            let Some(track) = shared.track(session) else {
                continue;
            };
            {
                let st = track.state.lock();
                if !st.resync_queued {
                    continue;
                }
            }
            if !shared.is_up() {
                // Retried when the monitor sees Redis again.
                track.state.lock().resync_queued = false;
                continue;
            }
            if let Err(e) = shared.sync(&track).await {
                tracing::warn!(%session, error = %e, "resync failed; will retry");
                let mut st = track.state.lock();
                st.resync_queued = false;
                if shared.is_up() {
                    shared.queue_resync(&track, &mut st);
                }
            }
        }
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

    async fn publish(
        &self,
        session: SessionId,
        event: Event,
        origin: Origin,
        ts: u64,
        condition: Condition,
    ) -> Result<Arc<Published>, BrokerError> {
        let s = &self.shared;
        let track = s.track(session);
        if let Some(t) = &track
            && (!s.is_up() || t.state.lock().local.is_some())
        {
            return s.publish_alone(t, event, origin, ts, condition);
        }
        let payload = encode(ts, &event, &origin)?;
        let expected = match condition {
            Condition::Always => -1,
            Condition::SeqIs(seq) => seq as i64,
        };
        let started = Instant::now();
        let result = SCRIPTS
            .publish
            .run(
                &s.client,
                vec![s.keys.position(session), s.keys.stream(session)],
                vec![
                    expected.into(),
                    payload.into(),
                    (s.cfg.stream_maxlen as i64).into(),
                    (s.cfg.stream_ttl_s as i64).into(),
                    Epoch::random().to_string().into(),
                    s.keys.channel(session).into(),
                ],
            )
            .await;
        m::redis_publish(started.elapsed());
        let v = match result {
            Ok(v) => array(v),
            Err(e) if is_connection_error(&e) => {
                s.set_up(false);
                // The script may or may not have run; the hand-over after
                // the outage settles it (see the module docs).
                return match &track {
                    Some(t) => s.publish_alone(t, event, origin, ts, condition),
                    None => Err(unavailable(e)),
                };
            }
            Err(e) => return Err(unavailable(e)),
        };
        let (Some(status), Some(seq), Some(epoch)) =
            (v.first().and_then(int), v.get(1).and_then(int), v.get(2))
        else {
            return Err(unavailable("malformed publish reply"));
        };
        let seq = seq as Seq;
        if status == 0 {
            return Err(BrokerError::Conflict { current: seq });
        }
        let epoch = epoch_of(epoch)?;
        let p = Arc::new(Published::new(session, seq, ts, event, origin));
        if let Some(t) = &track {
            s.offer(t, epoch, p.clone());
            s.wait_delivered(t, epoch, seq).await;
        }
        Ok(p)
    }

    async fn position(&self, session: SessionId) -> Result<StreamPosition, BrokerError> {
        let s = &self.shared;
        if let Some(t) = s.track(session)
            && (!s.is_up() || t.state.lock().local.is_some())
        {
            return Ok(t.position());
        }
        s.position(session).await
    }

    async fn history(
        &self,
        session: SessionId,
        after: Seq,
        limit: usize,
    ) -> Result<HistoryPage, BrokerError> {
        let Some((position, events)) = self.shared.read(session, after, limit).await? else {
            return Err(BrokerError::Trimmed { after });
        };
        let events = events
            .into_iter()
            .filter_map(|(seq, payload)| decode(session, seq, &payload))
            .collect();
        Ok(HistoryPage {
            epoch: position.epoch,
            top: position.seq,
            events,
        })
    }

    async fn watch(&self, session: SessionId, from: StreamPosition) -> Result<(), BrokerError> {
        let s = &self.shared;
        let track = match s.tracks.entry(session) {
            dashmap::Entry::Occupied(_) => return Ok(()),
            dashmap::Entry::Vacant(v) => v
                .insert(Arc::new(Track {
                    session,
                    state: Mutex::new(TrackState {
                        epoch: from.epoch,
                        delivered: from.seq,
                        pending: BTreeMap::new(),
                        local: None,
                        resync_queued: false,
                    }),
                    delivered: Notify::new(),
                }))
                .clone(),
        };
        // Subscribe before reading the stream, so nothing published in
        // between is missed.
        let subscribed = s.subscriber.subscribe(s.keys.channel(session)).await;
        let added: Result<i64, _> = s
            .client
            .sadd(s.keys.live_sessions(), session.to_string())
            .await;
        if let Err(e) = subscribed.and(added.map(|_| ())) {
            s.tracks.remove(&session);
            return Err(unavailable(e));
        }
        s.sync(&track).await
    }

    async fn unwatch(&self, session: SessionId) -> Result<(), BrokerError> {
        let s = &self.shared;
        if s.tracks.remove(&session).is_some() {
            s.subscriber
                .unsubscribe(s.keys.channel(session))
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    async fn presence_join(&self, session: SessionId, member: &str) -> Result<bool, BrokerError> {
        self.presence_change(session, member, 1).await
    }

    async fn presence_leave(&self, session: SessionId, member: &str) -> Result<bool, BrokerError> {
        self.presence_change(session, member, -1).await
    }

    async fn reap(&self) -> Result<Vec<(SessionId, String)>, BrokerError> {
        let s = &self.shared;
        let mut gone = std::mem::take(&mut *s.forgotten.lock());
        if s.is_up() {
            gone.extend(s.reap(None).await?);
        }
        Ok(gone)
    }

    fn wants_checkpoints(&self) -> bool {
        true
    }

    fn shared_counters(
        &self,
        limits: &crate::config::LimitSettings,
    ) -> Option<Arc<dyn crate::auth::limits::Counters>> {
        Some(self.counters_for(limits))
    }

    async fn save_checkpoint(&self, session: SessionId, cp: Checkpoint) -> Result<(), BrokerError> {
        let s = &self.shared;
        if !s.is_up() {
            return Ok(());
        }
        let k = &s.keys;
        s.run(
            &SCRIPTS.checkpoint,
            vec![
                k.position(session),
                k.checkpoint(session),
                k.session(session, "state"),
                k.session(session, "metrics"),
                k.session(session, "context"),
            ],
            vec![
                cp.position.epoch.to_string().into(),
                (cp.position.seq as i64).into(),
                Value::Bytes(cp.replica.into()),
                (s.cfg.stream_ttl_s as i64).into(),
                cp.state.into(),
                (s.cfg.state_ttl_s as i64).into(),
                cp.metrics.unwrap_or_default().into(),
                (s.cfg.metrics_ttl_s as i64).into(),
                cp.context.into(),
                (s.cfg.context_ttl_s as i64).into(),
            ],
        )
        .await?;
        Ok(())
    }

    async fn load_checkpoint(
        &self,
        session: SessionId,
    ) -> Result<Option<(StreamPosition, Vec<u8>)>, BrokerError> {
        self.shared.load_checkpoint(session).await
    }

    async fn remove(&self, session: SessionId) -> Result<(), BrokerError> {
        self.unwatch(session).await?;
        let s = &self.shared;
        let k = &s.keys;
        let keys: Vec<String> = [
            "position",
            "stream",
            "checkpoint",
            "state",
            "metrics",
            "context",
            "presence",
        ]
        .iter()
        .map(|part| k.session(session, part))
        .chain([k.presence_on(session, &s.node)])
        .collect();
        let _: i64 = s.client.del(keys).await.map_err(unavailable)?;
        let _: i64 = s
            .client
            .srem(k.live_sessions(), session.to_string())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), BrokerError> {
        let s = &self.shared;
        match tokio::time::timeout(s.cfg.command_timeout(), s.client.ping::<String>(None)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(unavailable(e)),
            Err(_) => Err(unavailable("Redis did not answer PING in time")),
        }
    }
}

impl RedisBroker {
    async fn presence_change(
        &self,
        session: SessionId,
        member: &str,
        delta: i64,
    ) -> Result<bool, BrokerError> {
        let s = &self.shared;
        if let Some(t) = s.track(session) {
            let mut st = t.state.lock();
            if !s.is_up() || st.local.is_some() {
                // Counted into Redis at the hand-over; until then this
                // node's own count decides (the hub only asks on a local
                // first join or last leave).
                let run = s.go_alone(&t, &mut st);
                *run.presence.entry(member.to_owned()).or_default() += delta;
                return Ok(true);
            }
        }
        let total = s.presence(session, member, delta).await?;
        Ok(if delta > 0 { total == 1 } else { total == 0 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_map_back_to_sessions() {
        let keys = Keys {
            prefix: "eva-t".into(),
        };
        let id = SessionId::new();
        assert_eq!(keys.session_of(&keys.channel(id)), Some(id));
        assert_eq!(keys.session_of("other:session:x:events"), None);
    }

    #[test]
    fn stream_entries_parse() {
        let v = Value::Array(vec![Value::Array(vec![
            Value::String("7-1".into()),
            Value::Array(vec![Value::String("e".into()), Value::String("{}".into())]),
        ])]);
        assert_eq!(entries(v), vec![(7, "{}".to_owned())]);
    }
}
