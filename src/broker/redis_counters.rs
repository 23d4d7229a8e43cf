//! The abuse limits' shared counters in Redis, so that connection caps per
//! address and tenant, questions per participant and REST calls per API
//! key hold across all nodes rather than per node.
//!
//! Connection slots are counted per node in one hash per key; a node whose
//! heartbeat (kept by the broker) is older than `redis.presence_ttl_s`
//! no longer counts, so a crashed node's slots free themselves. Rates use
//! fixed windows (`eva:ratelimit:{key}:{window}`, seed 000 §3.2): one
//! `INCR` per event, expiring with the window.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use fred::clients::Client;
use fred::prelude::HashesInterface;
use fred::types::Value;

use super::redis::Script;
use crate::auth::limits::{Counters, RateKey, SlotKey};
use crate::config::LimitSettings;
use crate::ids::now_ms;

/// KEYS: slot hash, heartbeats, this node's slot set. ARGV: node, limit,
/// deadline ms, ttl.
const ACQUIRE: &str = r#"
local held = redis.call('HGETALL', KEYS[1])
local total = 0
for i = 1, #held, 2 do
  local node = held[i]
  local beat = redis.call('ZSCORE', KEYS[2], node)
  if node == ARGV[1] or (beat and tonumber(beat) > tonumber(ARGV[3])) then
    total = total + tonumber(held[i + 1])
  else
    redis.call('HDEL', KEYS[1], node)
  end
end
if total >= tonumber(ARGV[2]) then return 0 end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('SADD', KEYS[3], KEYS[1])
return 1
"#;

/// KEYS: window counter. ARGV: limit, window seconds.
const HIT: &str = r#"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
if n > tonumber(ARGV[1]) then return redis.call('PTTL', KEYS[1]) end
return -1
"#;

static ACQUIRE_SCRIPT: Script = Script::new(ACQUIRE);
static HIT_SCRIPT: Script = Script::new(HIT);

/// Slots expire this long after their last change, in case every node
/// holding them vanished without a heartbeat entry to judge them by.
const SLOT_TTL_S: i64 = 86_400;

#[derive(Debug)]
pub struct RedisCounters {
    client: Client,
    prefix: String,
    node: String,
    presence_ttl_ms: u64,
    /// The broker's view of Redis: while it is away, counters fail open
    /// at once instead of waiting out a command timeout.
    up: Arc<AtomicBool>,
    questions_per_minute: u32,
    rest_per_window: u32,
}

impl RedisCounters {
    pub(crate) fn new(
        client: Client,
        prefix: String,
        node: String,
        presence_ttl_s: u64,
        up: Arc<AtomicBool>,
        limits: &LimitSettings,
    ) -> RedisCounters {
        RedisCounters {
            client,
            prefix,
            node,
            presence_ttl_ms: presence_ttl_s * 1000,
            up,
            questions_per_minute: limits.questions_per_minute,
            // A fixed one-second window: `rest_per_s` calls in each second
            // (the burst allowance refines a single node's bucket only).
            rest_per_window: limits.rest_per_s,
        }
    }

    fn reachable(&self) -> Result<(), String> {
        if self.up.load(Ordering::Relaxed) {
            Ok(())
        } else {
            Err("Redis is unreachable".into())
        }
    }

    fn slot_key(&self, key: &SlotKey) -> String {
        match key {
            SlotKey::Ip(ip) => format!("{}:limits:slots:ip:{ip}", self.prefix),
            SlotKey::Tenant(t) => format!("{}:limits:slots:tenant:{t}", self.prefix),
        }
    }
}

#[async_trait]
impl Counters for RedisCounters {
    async fn acquire(&self, key: SlotKey, limit: u32) -> Result<bool, String> {
        self.reachable()?;
        let deadline = now_ms().saturating_sub(self.presence_ttl_ms);
        let v = ACQUIRE_SCRIPT
            .run(
                &self.client,
                vec![
                    self.slot_key(&key),
                    format!("{}:ws:nodes", self.prefix),
                    format!("{}:ws:node:{}:slots", self.prefix, self.node),
                ],
                vec![
                    self.node.clone().into(),
                    i64::from(limit).into(),
                    (deadline as i64).into(),
                    SLOT_TTL_S.into(),
                ],
            )
            .await
            .map_err(|e| e.to_string())?;
        Ok(matches!(v, Value::Integer(1)))
    }

    fn release(&self, key: SlotKey) {
        let client = self.client.clone();
        let hash = self.slot_key(&key);
        let node = self.node.clone();
        tokio::spawn(async move {
            let left: Result<i64, _> = client.hincrby(&hash, &node, -1).await;
            if matches!(left, Ok(n) if n <= 0) {
                let _: Result<i64, _> = client.hdel(&hash, &node).await;
            }
        });
    }

    async fn hit(&self, key: &RateKey) -> Result<Result<(), Duration>, String> {
        let (name, limit, window_s) = match key {
            RateKey::Questions(tenant, subject) => (
                format!("questions:{tenant}:{subject}"),
                self.questions_per_minute,
                60u64,
            ),
            RateKey::ApiKey(id) => (format!("apikey:{id}"), self.rest_per_window, 1),
        };
        if limit == 0 {
            return Ok(Ok(()));
        }
        self.reachable()?;
        let window = now_ms() / 1000 / window_s;
        let v = HIT_SCRIPT
            .run(
                &self.client,
                vec![format!("{}:ratelimit:{name}:{window}", self.prefix)],
                vec![i64::from(limit).into(), (window_s as i64).into()],
            )
            .await
            .map_err(|e| e.to_string())?;
        Ok(match v {
            Value::Integer(ms) if ms >= 0 => Err(Duration::from_millis(ms as u64)),
            _ => Ok(()),
        })
    }
}
