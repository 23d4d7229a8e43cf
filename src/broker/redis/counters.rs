//! The abuse limits' shared counters in Redis, so that connection caps per
//! address and tenant, questions per participant and REST calls per API
//! key hold across all nodes rather than per node.
//!
//! Connection slots are counted per node in one hash per key; a node whose
//! heartbeat (kept by the broker) is older than `redis.presence_ttl_s`
//! no longer counts, so a crashed node's slots free themselves. The
//! heartbeats live in another cluster slot than a slot hash, so ACQUIRE
//! gets the out-of-date nodes from the broker's health monitor, which
//! reads them every 500 ms. A node records a slot hash in its own set
//! before it takes a slot there, so reaping it finds every slot it held. Rates use
//! fixed windows (`eva:ratelimit:{key}:{window}`, seed 000 §3.2): one
//! `INCR` per event, expiring with the window. The scripts and key names
//! are in `scripts.rs`, with the broker's.

use std::time::Duration;

use async_trait::async_trait;
use std::sync::Arc;

use fred::prelude::{HashesInterface, SetsInterface};
use fred::types::Value;
use parking_lot::RwLock;

use super::router::Router;
use super::scripts::{Keys, SCRIPTS};
use crate::config::LimitSettings;
use crate::counters::{Counters, RateKey, SlotKey};
use crate::ids::now_ms;

/// Slots expire this long after their last change, in case every node
/// holding them vanished without a heartbeat entry to judge them by.
const SLOT_TTL_S: i64 = 86_400;

#[derive(Debug)]
pub(super) struct RedisCounters {
    /// Where commands go, and which servers answer: while a counter's
    /// server is away, it fails open at once instead of waiting out a
    /// command timeout.
    redis: Arc<Router>,
    keys: Keys,
    node: String,
    /// Nodes whose heartbeat is out of date (the broker's health monitor
    /// refreshes the list).
    dead_nodes: Arc<RwLock<Vec<String>>>,
    questions_per_minute: u32,
    rest_per_window: u32,
}

impl RedisCounters {
    pub(super) fn new(
        redis: Arc<Router>,
        keys: Keys,
        node: String,
        dead_nodes: Arc<RwLock<Vec<String>>>,
        limits: &LimitSettings,
    ) -> RedisCounters {
        RedisCounters {
            redis,
            keys,
            node,
            dead_nodes,
            questions_per_minute: limits.questions_per_minute,
            // A fixed one-second window: `rest_per_s` calls in each second
            // (the burst allowance refines a single node's bucket only).
            rest_per_window: limits.rest_per_s,
        }
    }

    fn reachable(&self, key: &str) -> Result<(), String> {
        if self.redis.is_up(key) {
            Ok(())
        } else {
            Err("Redis is unreachable".into())
        }
    }
}

#[async_trait]
impl Counters for RedisCounters {
    async fn acquire(&self, key: SlotKey, limit: u32) -> Result<bool, String> {
        let hash = self.keys.slots(&key);
        self.reachable(&hash)?;
        let (held, member) = (&self.keys.node_slots(&self.node), hash.as_str());
        let _: i64 = self
            .redis
            .send(held, |c| async move { c.sadd(held, member).await })
            .await
            .map_err(|e| e.to_string())?;
        let mut args: Vec<Value> = vec![
            self.node.clone().into(),
            i64::from(limit).into(),
            SLOT_TTL_S.into(),
        ];
        args.extend(
            self.dead_nodes
                .read()
                .iter()
                .map(|n| Value::from(n.clone())),
        );
        let v = SCRIPTS
            .acquire
            .run(&self.redis, &[hash], args)
            .await
            .map_err(|e| e.to_string())?;
        Ok(matches!(v, Value::Integer(1)))
    }

    fn release(&self, key: SlotKey) {
        let hash = self.keys.slots(&key);
        let redis = self.redis.clone();
        let node = self.node.clone();
        tokio::spawn(async move {
            let (hash, node) = (&hash, &node);
            let left: Result<i64, _> = redis
                .send(hash, |c| async move { c.hincrby(hash, node, -1).await })
                .await;
            if matches!(left, Ok(n) if n <= 0) {
                let _: Result<i64, _> = redis
                    .send(hash, |c| async move { c.hdel(hash, node).await })
                    .await;
            }
        });
    }

    async fn hit(&self, key: &RateKey) -> Result<Result<(), Duration>, String> {
        let (limit, window_s) = match key {
            RateKey::Questions(..) => (self.questions_per_minute, 60u64),
            RateKey::ApiKey(_) => (self.rest_per_window, 1),
        };
        if limit == 0 {
            return Ok(Ok(()));
        }
        let window = now_ms() / 1000 / window_s;
        let counter = self.keys.rate(key, window);
        self.reachable(&counter)?;
        let v = SCRIPTS
            .hit
            .run(
                &self.redis,
                &[counter],
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
