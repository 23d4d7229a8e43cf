//! The sequencing scripts and the key layout they work on: every Lua
//! source the Redis broker and its shared counters run, each with its KEYS
//! and ARGV, the one static set of [`Script`]s (each loads once per
//! process and again after a Redis restart or failover), and [`Keys`],
//! which builds every key and channel name.
//!
//! The layout works on one Redis and on a Redis Cluster alike (see
//! docs/CLUSTER.md). Every script touches only keys it is given in KEYS,
//! and all of them share one hash tag: a session's keys and channel carry
//! `{<session id>}`, so they live in one slot and its events are
//! sequenced, stored and published by one shard. Work that spans sessions
//! or nodes (presence bookkeeping per node, counting out a dead node's
//! members, connection slots) is a sequence of single-slot steps, each
//! idempotent, driven from Rust.

use super::router::Script;
use crate::counters::{RateKey, SlotKey};
use crate::ids::SessionId;

/// KEYS: position, stream, channel. ARGV: expected seq (-1: any), maxlen,
/// ttl, then one payload per event. Numbers the events back to back and
/// appends each to the stream; publishes them in one message, `E <epoch>
/// <first seq> <payload>` with one line per payload (a payload is compact
/// JSON, which holds no newline). Returns {1, last seq, epoch} when
/// sequenced, {0, seq, epoch} when the condition failed, {2} when the
/// session has no stream: a stream is only begun by BEGIN (or a
/// hand-over), with its base checkpoint.
const PUBLISH: &str = r#"
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then return {2} end
local seq = tonumber(redis.call('HGET', KEYS[1], 'seq'))
local expected = tonumber(ARGV[1])
if expected >= 0 and expected ~= seq then
  return {0, seq, epoch}
end
local first = seq + 1
for i = 4, #ARGV do
  seq = seq + 1
  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[2], seq .. '-1', 'e', ARGV[i])
end
redis.call('HSET', KEYS[1], 'seq', seq)
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
redis.call('SPUBLISH', KEYS[3], 'E ' .. epoch .. ' ' .. first .. ' ' .. table.concat(ARGV, '\n', 4))
return {1, seq, epoch}
"#;

/// Begins a session's stream with its base checkpoint, unless it has one.
/// KEYS: position, stream, checkpoint, state, metrics, context. ARGV:
/// epoch, seq, ttl, whether a base follows (1 or 0), then only with a base:
/// replica, state, state ttl, metrics ('' for none), metrics ttl, context,
/// context ttl. Returns
/// {1, epoch, seq} when begun, {0, epoch, seq} for the stream that exists.
const BEGIN: &str = r#"
local have = redis.call('HMGET', KEYS[1], 'epoch', 'seq')
if have[1] then return {0, have[1], tonumber(have[2])} end
redis.call('HSET', KEYS[1], 'epoch', ARGV[1], 'seq', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('DEL', KEYS[2])
if ARGV[4] == '1' then
  redis.call('HSET', KEYS[3], 'epoch', ARGV[1], 'seq', ARGV[2], 'data', ARGV[5])
  redis.call('EXPIRE', KEYS[3], ARGV[3])
  redis.call('SET', KEYS[4], ARGV[6], 'EX', ARGV[7])
  if ARGV[8] ~= '' then redis.call('SET', KEYS[5], ARGV[8], 'EX', ARGV[9]) end
  redis.call('SET', KEYS[6], ARGV[10], 'EX', ARGV[11])
else
  redis.call('DEL', KEYS[3])
end
return {1, ARGV[1], tonumber(ARGV[2])}
"#;

/// KEYS: position, stream. ARGV: after, limit.
/// Returns {epoch, top, entries} or {epoch, top, -1} when trimmed, or {}
/// when the stream does not exist. The entries begin with the one
/// numbered `after` while the stream still holds it, so the reader can
/// check it is the event it had (a failover can lose writes).
const HISTORY: &str = r#"
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then return {} end
local top = tonumber(redis.call('HGET', KEYS[1], 'seq'))
local after = tonumber(ARGV[1])
if after > top then return {epoch, top, {}} end
local first = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
local first_seq = top + 1
if #first > 0 then first_seq = tonumber(string.match(first[1][1], '^(%d+)')) end
if after + 1 < first_seq then return {epoch, top, -1} end
local from, count = after, tonumber(ARGV[2]) + 1
if after < 1 then from, count = 1, count - 1 end
return {epoch, top, redis.call('XRANGE', KEYS[2], from .. '-0', '+', 'COUNT', count)}
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
/// KEYS: position, stream, checkpoint, channel. ARGV: since epoch, since
/// seq, new epoch, new seq, replica, ttl, maxlen, then (seq, payload)
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
for i = 8, #ARGV, 2 do
  if tonumber(ARGV[i]) > top then
    redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[7], ARGV[i] .. '-1', 'e', ARGV[i + 1])
  end
end
redis.call('HSET', KEYS[3], 'epoch', ARGV[3], 'seq', ARGV[4], 'data', ARGV[5])
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[6]) end
redis.call('SPUBLISH', KEYS[4], 'R ' .. ARGV[3] .. ' ' .. ARGV[4])
return {1}
"#;

/// KEYS: total, this node's count. ARGV: member, delta.
/// Returns the member's total after the change, or -1 when this node held
/// none to take away. (The caller first records the session in this
/// node's session set, so a reaper always finds the count.)
const PRESENCE: &str = r#"
local delta = tonumber(ARGV[2])
local here = redis.call('HINCRBY', KEYS[2], ARGV[1], delta)
if here <= 0 then redis.call('HDEL', KEYS[2], ARGV[1]) end
if here < 0 then return -1 end
local total = redis.call('HINCRBY', KEYS[1], ARGV[1], delta)
if total <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return total
"#;

/// Counts a dead node's members out of one session. KEYS: total, the dead
/// node's count. Returns the members whose total reached zero. Idempotent:
/// the node's count goes in the same step, so reapers racing over the same
/// node count each member out once.
const REAP: &str = r#"
local out = {}
local members = redis.call('HGETALL', KEYS[2])
for i = 1, #members, 2 do
  local left = redis.call('HINCRBY', KEYS[1], members[i], -tonumber(members[i + 1]))
  if left <= 0 then
    redis.call('HDEL', KEYS[1], members[i])
    table.insert(out, members[i])
  end
end
redis.call('DEL', KEYS[2])
return out
"#;

// The shared counters' scripts (counters.rs).

/// KEYS: slot hash. ARGV: node, limit, ttl, then the nodes whose
/// heartbeat is out of date (their slots no longer count and go).
const ACQUIRE: &str = r#"
local dead = {}
for i = 4, #ARGV do dead[ARGV[i]] = true end
local held = redis.call('HGETALL', KEYS[1])
local total = 0
for i = 1, #held, 2 do
  local node = held[i]
  if node == ARGV[1] or not dead[node] then
    total = total + tonumber(held[i + 1])
  else
    redis.call('HDEL', KEYS[1], node)
  end
end
if total >= tonumber(ARGV[2]) then return 0 end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"#;

/// KEYS: window counter. ARGV: limit, window seconds.
const HIT: &str = r#"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
if n > tonumber(ARGV[1]) then return redis.call('PTTL', KEYS[1]) end
return -1
"#;

pub(super) struct Scripts {
    pub(super) publish: Script,
    pub(super) begin: Script,
    pub(super) history: Script,
    pub(super) checkpoint: Script,
    pub(super) adopt: Script,
    pub(super) presence: Script,
    pub(super) reap: Script,
    pub(super) acquire: Script,
    pub(super) hit: Script,
}

pub(super) static SCRIPTS: Scripts = Scripts {
    publish: Script::new(PUBLISH),
    begin: Script::new(BEGIN),
    history: Script::new(HISTORY),
    checkpoint: Script::new(CHECKPOINT),
    adopt: Script::new(ADOPT),
    presence: Script::new(PRESENCE),
    reap: Script::new(REAP),
    acquire: Script::new(ACQUIRE),
    hit: Script::new(HIT),
};

/// Key and channel names under `redis.prefix` (seed 000 §3). A session's
/// keys and channel share the hash tag `{<session id>}`, a node's keys
/// `{<node>}`; see docs/CLUSTER.md for the whole layout.
#[derive(Clone, Debug)]
pub(super) struct Keys {
    prefix: String,
}

/// The parts of a session's keys, in the order [`Keys::session_keys`]
/// lists them.
const SESSION_PARTS: [&str; 7] = [
    "position",
    "stream",
    "checkpoint",
    "state",
    "metrics",
    "context",
    "presence",
];

impl Keys {
    pub(super) fn new(prefix: String) -> Keys {
        Keys { prefix }
    }
    pub(super) fn prefix(&self) -> &str {
        &self.prefix
    }
    fn session(&self, id: SessionId, part: &str) -> String {
        format!("{}:session:{{{id}}}:{part}", self.prefix)
    }
    pub(super) fn position(&self, id: SessionId) -> String {
        self.session(id, "position")
    }
    pub(super) fn stream(&self, id: SessionId) -> String {
        self.session(id, "stream")
    }
    pub(super) fn checkpoint(&self, id: SessionId) -> String {
        self.session(id, "checkpoint")
    }
    pub(super) fn state(&self, id: SessionId) -> String {
        self.session(id, "state")
    }
    pub(super) fn metrics(&self, id: SessionId) -> String {
        self.session(id, "metrics")
    }
    pub(super) fn context(&self, id: SessionId) -> String {
        self.session(id, "context")
    }
    /// The session's shard channel (SPUBLISH/SSUBSCRIBE): it hashes to the
    /// slot of the session's keys, so only that shard carries it.
    pub(super) fn channel(&self, id: SessionId) -> String {
        self.session(id, "events")
    }
    pub(super) fn presence(&self, id: SessionId) -> String {
        self.session(id, "presence")
    }
    pub(super) fn presence_on(&self, id: SessionId, node: &str) -> String {
        format!("{}:{node}", self.presence(id))
    }
    /// The keys to drop when a session is gone for good: its stream,
    /// checkpoint, views and presence, and `node`'s presence count (one
    /// slot, so one DEL).
    pub(super) fn session_keys(&self, id: SessionId, node: &str) -> Vec<String> {
        SESSION_PARTS
            .iter()
            .map(|part| self.session(id, part))
            .chain([self.presence_on(id, node)])
            .collect()
    }
    /// The sessions `node` counts presence in.
    pub(super) fn node_sessions(&self, node: &str) -> String {
        format!("{}:ws:node:{{{node}}}:sessions", self.prefix)
    }
    /// The slot hashes `node` holds a slot in.
    pub(super) fn node_slots(&self, node: &str) -> String {
        format!("{}:ws:node:{{{node}}}:slots", self.prefix)
    }
    pub(super) fn heartbeats(&self) -> String {
        format!("{}:ws:nodes", self.prefix)
    }
    pub(super) fn live_sessions(&self) -> String {
        format!("{}:ws:sessions", self.prefix)
    }
    /// The hash counting `key`'s connection slots per node.
    pub(super) fn slots(&self, key: &SlotKey) -> String {
        match key {
            SlotKey::Ip(ip) => format!("{}:limits:slots:ip:{ip}", self.prefix),
            SlotKey::Tenant(t) => format!("{}:limits:slots:tenant:{t}", self.prefix),
        }
    }
    /// The counter of `key`'s events in fixed window number `window`.
    pub(super) fn rate(&self, key: &RateKey, window: u64) -> String {
        let name = match key {
            RateKey::Questions(tenant, subject) => format!("questions:{tenant}:{subject}"),
            RateKey::ApiKey(id) => format!("apikey:{id}"),
        };
        format!("{}:ratelimit:{name}:{window}", self.prefix)
    }
    /// The session a channel belongs to.
    pub(super) fn session_of(&self, channel: &str) -> Option<SessionId> {
        channel
            .strip_prefix(&self.prefix)?
            .strip_prefix(":session:{")?
            .strip_suffix("}:events")?
            .parse()
            .ok()
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
        // The old single-server layout (no hash tag) is not read.
        assert_eq!(keys.session_of(&format!("eva-t:session:{id}:events")), None);
    }

    /// Redis Cluster hashes only what is inside the first `{…}` of a key.
    fn hash_tag(key: &str) -> &str {
        let Some(open) = key.find('{') else {
            return key;
        };
        match key[open + 1..].find('}') {
            Some(len) if len > 0 => &key[open + 1..open + 1 + len],
            _ => key,
        }
    }

    #[test]
    fn a_session_s_keys_and_channel_share_one_hash_tag() {
        let keys = Keys::new("eva".into());
        let id = SessionId::new();
        let tag = id.to_string();
        let mut all = keys.session_keys(id, "node-1");
        all.push(keys.channel(id));
        for key in &all {
            assert_eq!(hash_tag(key), tag, "{key}");
        }
        assert_eq!(
            keys.state(id),
            format!("eva:session:{{{id}}}:state"),
            "seed 000 §3's name"
        );
        assert_eq!(hash_tag(&keys.node_sessions("n1")), "n1");
        assert_eq!(hash_tag(&keys.node_slots("n1")), "n1");
    }
}
