//! Counters shared by connections: how many connection slots an address
//! or a tenant holds, and how often a participant asks or an API key
//! calls. The abuse limits (`auth::limits`) count through the [`Counters`]
//! trait; [`LocalCounters`] keeps them on this node, and the Redis broker
//! offers an implementation shared by every node it links.

use std::fmt;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use async_trait::async_trait;
use dashmap::DashMap;
use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use uuid::Uuid;

use crate::config::LimitSettings;
use crate::ids::TenantId;

/// What a connection slot counts against.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum SlotKey {
    Ip(IpAddr),
    Tenant(TenantId),
}

/// What a rate counts against.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum RateKey {
    /// Questions of one participant (tenant and subject).
    Questions(TenantId, String),
    /// REST calls of one API key.
    ApiKey(Uuid),
}

/// Counters shared by connections: concurrent slots, and event rates.
#[async_trait]
pub trait Counters: Send + Sync + fmt::Debug + 'static {
    /// Takes one slot of `key` if fewer than `limit` are held. `Err` means
    /// the counter could not be reached; callers then let the connection
    /// in (availability over strictness) and log it.
    async fn acquire(&self, key: SlotKey, limit: u32) -> Result<bool, String>;

    /// Gives a slot back. Runs from `Drop`, so it must not block; a remote
    /// implementation sends the decrement in the background.
    fn release(&self, key: SlotKey);

    /// Counts one event of `key` against its configured rate:
    /// `Ok(Err(wait))` when over it, `Err` when the counter could not be
    /// reached (the event is then allowed).
    async fn hit(&self, key: &RateKey) -> Result<Result<(), Duration>, String>;
}

/// [`Counters`] for one node.
pub struct LocalCounters {
    held: DashMap<SlotKey, u32>,
    questions: Option<DefaultKeyedRateLimiter<(TenantId, String)>>,
    api_keys: Option<DefaultKeyedRateLimiter<Uuid>>,
}

impl fmt::Debug for LocalCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalCounters")
            .field("slot_keys", &self.held.len())
            .finish()
    }
}

impl LocalCounters {
    /// Counters with the rates of `settings`.
    pub fn new(settings: &LimitSettings) -> LocalCounters {
        LocalCounters {
            held: DashMap::new(),
            questions: NonZeroU32::new(settings.questions_per_minute)
                .map(|n| RateLimiter::keyed(Quota::per_minute(n))),
            api_keys: quota(settings.rest_per_s, settings.rest_burst).map(RateLimiter::keyed),
        }
    }

    /// Slots held for `key` (for tests and gauges).
    pub fn held(&self, key: SlotKey) -> u32 {
        self.held.get(&key).map(|v| *v).unwrap_or(0)
    }

    /// How many keys hold a slot: an entry lives only while a slot is
    /// held, so this falls back to 0 once everything is released.
    pub fn keys_held(&self) -> usize {
        self.held.len()
    }

    /// Forgets rate state that is back to "fresh", so the maps only hold
    /// recent callers; run periodically.
    pub fn sweep(&self) {
        if let Some(l) = &self.questions {
            l.retain_recent();
            l.shrink_to_fit();
        }
        if let Some(l) = &self.api_keys {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

#[async_trait]
impl Counters for LocalCounters {
    async fn acquire(&self, key: SlotKey, limit: u32) -> Result<bool, String> {
        let mut n = self.held.entry(key).or_insert(0);
        if *n >= limit {
            return Ok(false);
        }
        *n += 1;
        Ok(true)
    }

    fn release(&self, key: SlotKey) {
        // Invariant: an entry exists while a slot is held; the last release
        // removes it, so the map only holds keys in use.
        self.held.remove_if_mut(&key, |_, n| {
            *n = n.saturating_sub(1);
            *n == 0
        });
    }

    async fn hit(&self, key: &RateKey) -> Result<Result<(), Duration>, String> {
        fn check<K: std::hash::Hash + Eq + Clone>(
            l: &Option<DefaultKeyedRateLimiter<K>>,
            k: &K,
        ) -> Result<(), Duration> {
            match l {
                None => Ok(()),
                Some(l) => l
                    .check_key(k)
                    .map_err(|n| n.wait_time_from(l.clock().now())),
            }
        }
        Ok(match key {
            RateKey::Questions(t, s) => {
                // The key is cloned into the map only for a participant
                // seen for the first time in the window.
                check(&self.questions, &(*t, s.clone()))
            }
            RateKey::ApiKey(id) => check(&self.api_keys, id),
        })
    }
}

/// A token-bucket quota of `per_s` with a burst of `burst` (default
/// `per_s`); `None` when the rate is 0 (no limit).
pub fn quota(per_s: u32, burst: u32) -> Option<Quota> {
    let per_s = NonZeroU32::new(per_s)?;
    let burst = NonZeroU32::new(burst).unwrap_or(per_s);
    Some(Quota::per_second(per_s).allow_burst(burst))
}
