//! Abuse limits: how many connections a tenant and an address may hold,
//! how fast a connection may send, how many questions a participant may
//! ask, how fast an API key may call.
//!
//! Layers, outermost first (each with its own refusal):
//!
//! | limit | where | refusal |
//! |---|---|---|
//! | connections per IP | handshake, before credentials are checked | HTTP 429 `rate_limited` |
//! | connections per tenant | after credentials | HTTP 429 `rate_limited`, or close 4004 after an `auth` frame |
//! | frames per connection, and per class | every frame | `error` `rate_limited` with `retry_after_ms` |
//! | persistent abuse | every refused frame | close 4003 |
//! | questions per participant | `question` | `error` `rate_limited` with `retry_after_ms` |
//! | REST calls per API key | every REST call | HTTP 429 `rate_limited` |
//!
//! Every counter that spans connections (concurrent connections,
//! questions per participant, calls per API key) goes through the
//! [`Counters`] trait, so a cluster-wide implementation (through the
//! broker) can replace [`LocalCounters`] without touching the callers. A connection's own token buckets stay local: a connection
//! lives on one node.
//!
//! Per-frame checks are a clock read and one or two comparisons on the
//! connection's own buckets ([`super::bucket`]); nothing allocates.

use std::fmt;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use governor::Quota;
use uuid::Uuid;

use super::bucket::{Bucket, Rate};
use crate::config::LimitSettings;
use crate::counters::{Counters, LocalCounters, RateKey, SlotKey, quota};
use crate::ids::TenantId;
use crate::protocol::ClientFrame;
use crate::protocol::model::Role;
use crate::store::Store;

/// A limit was reached: `what` names it for the client ("frames",
/// "questions", "connections from your address"...).
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
#[error("too many {what}")]
pub struct Limited {
    pub what: &'static str,
    pub retry_after: Duration,
}

/// A held connection slot; dropping it gives the slot back.
pub struct Slot {
    counter: Arc<dyn Counters>,
    key: SlotKey,
}

impl fmt::Debug for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Slot").field(&self.key).finish()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.counter.release(self.key);
    }
}

/// Keeps `slot`, if one was taken, with a connection's others. Exactly
/// sized: every connection carries this list for its whole life, and most
/// hold none or one.
pub fn hold(slots: &mut Vec<Slot>, slot: Option<Slot>) {
    if let Some(slot) = slot {
        slots.reserve_exact(1);
        slots.push(slot);
    }
}

/// Why a connection was not admitted for its tenant.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TenantRefusal {
    /// The tenant holds all the connections it may.
    Full,
    /// The tenant is deactivated.
    Inactive,
}

/// How long a tenant's connection limit is cached: changing a tenant
/// record takes at most this long to apply.
const TENANT_CACHE_TTL: Duration = Duration::from_secs(10);
/// Suggested wait for a refused connection.
const CONNECT_RETRY: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug)]
struct TenantCap {
    /// 0: unlimited.
    limit: u32,
    active: bool,
}

/// The hub-wide limits.
pub struct Limits {
    settings: LimitSettings,
    counters: Arc<dyn Counters>,
    /// Sweeps the node-local counters, when those are the ones in use.
    local: Option<Arc<LocalCounters>>,
    tenants: DashMap<TenantId, (Instant, TenantCap)>,
    /// Quotas of participants, operators and not-yet-authenticated
    /// connections.
    audience: Arc<RateSet>,
    /// Renderers are the tenant's own engine pushing state, metrics and
    /// answers far more often than an audience member; they get the same
    /// buckets scaled by `renderer_rate_multiplier`, which still caps what
    /// a stolen renderer token can do to a session.
    renderer: Arc<RateSet>,
}

impl fmt::Debug for Limits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limits")
            .field("settings", &self.settings)
            .field("counters", &self.counters)
            .finish()
    }
}

impl Limits {
    /// Limits with node-local counters.
    pub fn local(settings: &LimitSettings) -> Limits {
        let local = Arc::new(LocalCounters::new(settings));
        let mut l = Limits::new(settings, local.clone());
        l.local = Some(local);
        l
    }

    /// Limits over any [`Counters`] implementation (a cluster-wide one).
    pub fn new(settings: &LimitSettings, counters: Arc<dyn Counters>) -> Limits {
        let s = settings;
        let strikes = NonZeroU32::new(s.strikes).and_then(|n| {
            let window = Duration::from_secs(s.strike_window_s.max(1));
            Quota::with_period(window / n.get()).map(|q| q.allow_burst(n))
        });
        Limits {
            settings: s.clone(),
            counters,
            local: None,
            tenants: DashMap::new(),
            audience: Arc::new(RateSet::new([
                quota(s.frames_per_s, s.frames_burst),
                quota(s.telemetry_per_s, s.telemetry_burst),
                quota(s.interactions_per_s, s.interactions_burst),
                quota(s.joins_per_s, s.joins_burst),
                strikes,
            ])),
            renderer: {
                let k = s.renderer_rate_multiplier.max(1);
                let scaled = |per_s: u32, burst: u32| {
                    quota(per_s.saturating_mul(k), burst.saturating_mul(k))
                };
                Arc::new(RateSet::new([
                    scaled(s.frames_per_s, s.frames_burst),
                    scaled(s.telemetry_per_s, s.telemetry_burst),
                    scaled(s.interactions_per_s, s.interactions_burst),
                    scaled(s.joins_per_s, s.joins_burst),
                    strikes,
                ]))
            },
        }
    }

    async fn take(&self, key: SlotKey, limit: u32) -> Option<Option<Slot>> {
        if limit == 0 {
            return Some(None);
        }
        match self.counters.acquire(key, limit).await {
            Ok(true) => Some(Some(Slot {
                counter: self.counters.clone(),
                key,
            })),
            Ok(false) => None,
            Err(e) => {
                tracing::warn!(error = %e, "connection counter unavailable; admitting");
                Some(None)
            }
        }
    }

    /// Takes a connection slot for an address. `Ok(None)` when the limit is
    /// off.
    ///
    /// # Errors
    /// `rate_limited` when the address holds all it may.
    pub async fn admit_ip(&self, ip: IpAddr) -> Result<Option<Slot>, Limited> {
        self.take(SlotKey::Ip(ip), self.settings.connections_per_ip)
            .await
            .ok_or(Limited {
                what: "connections from your address",
                retry_after: CONNECT_RETRY,
            })
    }

    /// Takes a connection slot for a tenant. Its limit is the tenant
    /// record's `concurrent_sessions_limit`; without a record, or when
    /// `dev` (development tenants are made up by clients), the configured
    /// default.
    ///
    /// # Errors
    /// [`TenantRefusal`].
    pub async fn admit_tenant(
        &self,
        tenant: TenantId,
        store: &dyn Store,
        dev: bool,
    ) -> Result<Option<Slot>, TenantRefusal> {
        let cap = if dev {
            TenantCap {
                limit: self.settings.tenant_connections_default,
                active: true,
            }
        } else {
            self.tenant_cap(tenant, store).await
        };
        if !cap.active {
            return Err(TenantRefusal::Inactive);
        }
        self.take(SlotKey::Tenant(tenant), cap.limit)
            .await
            .ok_or(TenantRefusal::Full)
    }

    async fn tenant_cap(&self, tenant: TenantId, store: &dyn Store) -> TenantCap {
        if let Some(c) = self.tenants.get(&tenant)
            && c.0.elapsed() < TENANT_CACHE_TTL
        {
            return c.1;
        }
        let default = TenantCap {
            limit: self.settings.tenant_connections_default,
            active: true,
        };
        let cap = match store.get_tenant(tenant).await {
            Ok(Some(t)) => TenantCap {
                // A non-positive limit in a record means "none allowed"
                // would lock a tenant out by accident; it falls back to
                // the default instead.
                limit: u32::try_from(t.concurrent_sessions_limit)
                    .ok()
                    .filter(|l| *l > 0)
                    .unwrap_or(default.limit),
                active: t.is_active,
            },
            Ok(None) => default,
            Err(e) => {
                tracing::warn!(%tenant, error = %e, "tenant lookup failed; default connection limit applies");
                return default;
            }
        };
        self.tenants.insert(tenant, (Instant::now(), cap));
        cap
    }

    async fn hit(&self, key: RateKey, what: &'static str) -> Result<(), Limited> {
        match self.counters.hit(&key).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(wait)) => Err(Limited {
                what,
                retry_after: wait.max(Duration::from_millis(1)),
            }),
            Err(e) => {
                tracing::warn!(error = %e, "rate counter unavailable; allowing");
                Ok(())
            }
        }
    }

    /// Counts a question of a participant.
    ///
    /// # Errors
    /// `rate_limited` with the wait until the next question is allowed.
    pub async fn question(&self, tenant: TenantId, subject: &str) -> Result<(), Limited> {
        if self.settings.questions_per_minute == 0 {
            return Ok(());
        }
        self.hit(RateKey::Questions(tenant, subject.to_owned()), "questions")
            .await
    }

    /// Counts a REST call of an API key.
    ///
    /// # Errors
    /// `rate_limited` with the wait until the next call is allowed.
    pub async fn rest_call(&self, key: Uuid) -> Result<(), Limited> {
        if self.settings.rest_per_s == 0 {
            return Ok(());
        }
        self.hit(RateKey::ApiKey(key), "requests for this API key")
            .await
    }

    /// The buckets of a new connection, before its role is known.
    pub fn connection(&self) -> ConnLimiter {
        self.connection_for(None)
    }

    /// The buckets of a connection with a known role.
    pub fn connection_for(&self, role: Option<Role>) -> ConnLimiter {
        ConnLimiter::new(match role {
            Some(Role::Renderer) => self.renderer.clone(),
            _ => self.audience.clone(),
        })
    }

    /// Forgets idle rate state and stale tenant limits; run periodically
    /// so the maps hold only recent callers.
    pub fn sweep(&self) {
        if let Some(l) = &self.local {
            l.sweep();
        }
        self.tenants
            .retain(|_, (at, _)| at.elapsed() < TENANT_CACHE_TTL);
    }
}

/// Which bucket a frame draws from, besides the connection's own.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FrameClass {
    /// `ping`: only the connection bucket.
    Control,
    /// `join`, `leave`, `list_sessions`.
    Join,
    /// `state`, `context`, `metrics`.
    Telemetry,
    /// Everything a client does to a session.
    Interaction,
    /// `emergency_stop`: never rate-limited, so a stop always goes out.
    Urgent,
}

impl FrameClass {
    pub fn of(frame: &ClientFrame) -> FrameClass {
        match frame {
            ClientFrame::Ping { .. } | ClientFrame::Auth { .. } => FrameClass::Control,
            ClientFrame::Join { .. }
            | ClientFrame::Leave { .. }
            | ClientFrame::ListSessions { .. } => FrameClass::Join,
            ClientFrame::State { .. }
            | ClientFrame::Context { .. }
            | ClientFrame::Metrics { .. } => FrameClass::Telemetry,
            ClientFrame::EmergencyStop { .. } => FrameClass::Urgent,
            ClientFrame::Status { .. }
            | ClientFrame::Response { .. }
            | ClientFrame::CommandAck { .. }
            | ClientFrame::Question { .. }
            | ClientFrame::Takeover { .. }
            | ClientFrame::Release { .. }
            | ClientFrame::Command { .. }
            | ClientFrame::Suggestion { .. }
            | ClientFrame::Correction { .. }
            | ClientFrame::Approve { .. }
            | ClientFrame::AckAlert { .. }
            | ClientFrame::Publish { .. } => FrameClass::Interaction,
        }
    }
}

/// What the buckets say about a frame.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Verdict {
    Pass,
    /// Refuse it; the client may retry after this long.
    Limited(Duration),
    /// Refused too often: close the connection (4003).
    Abuse,
}

/// The rates one kind of connection gets, shared by all of them, in the
/// order of the class indexes below; `None`: that class is not limited.
#[derive(Clone, Debug)]
struct RateSet([Option<Rate>; 5]);

impl RateSet {
    fn new(quotas: [Option<Quota>; 5]) -> RateSet {
        RateSet(quotas.map(|q| q.map(Rate::from)))
    }
}

/// One connection's buckets, owned by its reader: 48 bytes on every
/// connection, and nothing on the heap.
pub struct ConnLimiter {
    rates: Option<Arc<RateSet>>,
    buckets: [Bucket; 5],
}

const FRAMES: usize = 0;
const TELEMETRY: usize = 1;
const INTERACTIONS: usize = 2;
const JOINS: usize = 3;
const STRIKES: usize = 4;

impl fmt::Debug for ConnLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConnLimiter")
    }
}

impl ConnLimiter {
    fn new(rates: Arc<RateSet>) -> ConnLimiter {
        ConnLimiter {
            rates: Some(rates),
            buckets: Default::default(),
        }
    }

    /// A limiter that lets everything pass.
    pub fn unlimited() -> ConnLimiter {
        ConnLimiter {
            rates: None,
            buckets: Default::default(),
        }
    }

    /// Draws one token from bucket `which`, if that class is limited.
    fn take(&mut self, which: usize, now_ns: u64) -> Result<(), Duration> {
        match self.rates.as_ref().and_then(|r| r.0[which]) {
            Some(rate) => self.buckets[which].take(rate, now_ns),
            None => Ok(()),
        }
    }

    /// Draws one frame of `class` from the buckets.
    pub fn check(&mut self, class: FrameClass) -> Verdict {
        let class_bucket = match class {
            FrameClass::Urgent => return Verdict::Pass,
            FrameClass::Control => None,
            FrameClass::Join => Some(JOINS),
            FrameClass::Telemetry => Some(TELEMETRY),
            FrameClass::Interaction => Some(INTERACTIONS),
        };
        if self.rates.is_none() {
            return Verdict::Pass;
        }
        let now = crate::clock::mono_ns();
        for which in std::iter::once(FRAMES).chain(class_bucket) {
            if let Err(wait) = self.take(which, now) {
                if self.take(STRIKES, now).is_err() {
                    return Verdict::Abuse;
                }
                return Verdict::Limited(wait);
            }
        }
        Verdict::Pass
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use crate::store::TenantRecord;
    use crate::store::memory::MemoryStore;

    fn settings() -> LimitSettings {
        Settings::defaults().limits
    }

    #[tokio::test]
    async fn slots_are_counted_and_given_back() {
        let mut s = settings();
        s.connections_per_ip = 2;
        let slots = Arc::new(LocalCounters::new(&s));
        let limits = Limits::new(&s, slots.clone());
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let a = limits.admit_ip(ip).await.unwrap();
        let b = limits.admit_ip(ip).await.unwrap();
        assert!(limits.admit_ip(ip).await.is_err());
        assert!(limits.admit_ip("10.0.0.2".parse().unwrap()).await.is_ok());
        drop(a);
        assert_eq!(slots.held(SlotKey::Ip(ip)), 1);
        let _c = limits.admit_ip(ip).await.unwrap();
        drop(b);
        drop(_c);
        assert_eq!(slots.held(SlotKey::Ip(ip)), 0);
        assert_eq!(slots.keys_held(), 0);
    }

    #[tokio::test]
    async fn tenant_records_set_the_connection_limit() {
        let limits = Limits::local(&settings());
        let store = MemoryStore::new();
        let t = TenantId::new();
        let mut rec = TenantRecord::new(t, "t@example.com");
        rec.concurrent_sessions_limit = 1;
        store.ensure_tenant(&rec).await.unwrap();
        let held = limits.admit_tenant(t, &store, false).await.unwrap();
        assert_eq!(
            limits.admit_tenant(t, &store, false).await.unwrap_err(),
            TenantRefusal::Full
        );
        // Development ignores records.
        assert!(limits.admit_tenant(t, &store, true).await.is_ok());
        drop(held);
        let inactive = TenantId::new();
        let mut rec = TenantRecord::new(inactive, "off@example.com");
        rec.is_active = false;
        store.ensure_tenant(&rec).await.unwrap();
        assert_eq!(
            limits
                .admit_tenant(inactive, &store, false)
                .await
                .unwrap_err(),
            TenantRefusal::Inactive
        );
    }

    #[test]
    fn buckets_refuse_then_close_persistent_abuse() {
        let mut s = settings();
        s.frames_per_s = 1;
        s.frames_burst = 3;
        s.strikes = 2;
        s.strike_window_s = 60;
        let limits = Limits::local(&s);
        let mut c = limits.connection();
        for _ in 0..3 {
            assert_eq!(c.check(FrameClass::Control), Verdict::Pass);
        }
        assert!(matches!(c.check(FrameClass::Control), Verdict::Limited(d) if d > Duration::ZERO));
        assert_eq!(c.check(FrameClass::Urgent), Verdict::Pass);
        assert!(matches!(c.check(FrameClass::Control), Verdict::Limited(_)));
        assert_eq!(c.check(FrameClass::Control), Verdict::Abuse);
    }

    #[tokio::test]
    async fn questions_per_participant() {
        let mut s = settings();
        s.questions_per_minute = 2;
        let limits = Limits::local(&s);
        let t = TenantId::new();
        limits.question(t, "p").await.unwrap();
        limits.question(t, "p").await.unwrap();
        let e = limits.question(t, "p").await.unwrap_err();
        assert!(e.retry_after > Duration::from_secs(1));
        limits.question(t, "q").await.unwrap();
        limits.question(TenantId::new(), "p").await.unwrap();
        limits.sweep();
    }
}
