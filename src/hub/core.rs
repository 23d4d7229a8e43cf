//! The hub handle: what every part of the hub shares (settings, the
//! sessions, the store writer, credentials, limits) and the registry of
//! this node's connections.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;

use super::error::HubError;
use super::rows::{progress_row, state_row};
use super::timers::Timers;
use crate::auth::Authenticator;
use crate::auth::limits::{Limits, Slot, TenantRefusal};
use crate::auth::origin::OriginPolicy;
use crate::broker::Broker;
use crate::config::Settings;
use crate::connection::ConnHandle;
use crate::connection::outbox::OutboxLimits;
use crate::identity::Identity;
use crate::ids::ConnId;
use crate::metrics as m;
use crate::protocol::model::Event;
use crate::protocol::{CloseCode, SessionStatus};
use crate::recent::RecentMap;
use crate::session::{Replica, Session, Sessions};
use crate::store::Row;
use crate::store::ingest::batcher::Recorder;
use crate::store::ingest::mappings::Mappings;
use crate::store::writer::{BatchWriter, Order};
use crate::stream::{Origin, Published};
use crate::turns::Turns;

#[derive(Debug)]
pub struct HubInner {
    pub settings: Arc<Settings>,
    /// The sessions loaded on this node; every write goes through them.
    pub sessions: Arc<Sessions>,
    pub broker: Arc<dyn Broker>,
    pub writer: BatchWriter,
    /// Records inbound vendor events in batches.
    pub(super) ingest: Recorder,
    /// The session each vendor conversation maps to.
    pub(super) conversations: Mappings,
    /// Inbound events being applied on this node, by hash: a redelivery
    /// waits for its first delivery to finish (`hub::ingest`).
    pub(super) ingest_turns: Turns<String>,
    /// Hashes of the inbound events this node applied (or found applied)
    /// lately: a redelivery of one is a plain duplicate.
    pub(super) ingest_applied: parking_lot::Mutex<RecentMap<String, ()>>,
    pub auth: Arc<dyn Authenticator>,
    /// Connection, frame, question and REST limits.
    pub limiter: Limits,
    /// Which browser origins may open a WebSocket.
    pub origins: OriginPolicy,
    pub(super) conns: DashMap<ConnId, Arc<ConnHandle>>,
    pub(super) timers: Timers,
    pub(super) outbox_limits: OutboxLimits,
    pub(super) draining: AtomicBool,
}

/// Cheap handle to the hub.
#[derive(Clone, Debug)]
pub struct Hub {
    pub(super) inner: Arc<HubInner>,
}

impl std::ops::Deref for Hub {
    type Target = HubInner;
    fn deref(&self) -> &HubInner {
        &self.inner
    }
}

impl Hub {
    pub(super) fn from_inner(inner: Arc<HubInner>) -> Hub {
        Hub { inner }
    }

    /// The shared state, for a weak reference that must not keep the hub
    /// alive (a background task's callback).
    pub fn inner_arc(&self) -> Arc<HubInner> {
        self.inner.clone()
    }

    /// The hub again from a weak reference, while it exists.
    pub fn upgrade(weak: &std::sync::Weak<HubInner>) -> Option<Hub> {
        weak.upgrade().map(|inner| Hub { inner })
    }

    pub fn outbox_limits(&self) -> OutboxLimits {
        self.outbox_limits
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Adds a connection to the registry. One without an identity yet
    /// gets `auth_timeout_ms` to authenticate, enforced by the timer task
    /// rather than a timer in every connection.
    pub fn register(&self, conn: Arc<ConnHandle>) {
        if conn.identity().is_none() {
            self.timers.schedule(
                self.settings.websocket.auth_timeout(),
                super::timers::Job::AuthDeadline { conn: conn.id },
            );
        }
        self.conns.insert(conn.id, conn);
    }

    pub fn unregister(&self, id: ConnId) {
        self.conns.remove(&id);
    }

    pub(crate) fn connection(&self, id: ConnId) -> Option<Arc<ConnHandle>> {
        self.conns.get(&id).map(|c| c.value().clone())
    }

    /// Takes a connection slot of the identity's tenant (see
    /// [`Limits::admit_tenant`]).
    ///
    /// # Errors
    /// [`TenantRefusal`] when the tenant is full or deactivated.
    pub async fn admit_tenant(&self, identity: &Identity) -> Result<Option<Slot>, TenantRefusal> {
        let store = self.writer.store();
        self.limiter
            .admit_tenant(identity.tenant, store.as_ref(), self.auth.insecure())
            .await
    }

    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    pub fn connections(&self) -> Vec<Arc<ConnHandle>> {
        self.conns.iter().map(|c| c.value().clone()).collect()
    }

    /// [`Sessions::publish_checked`] for the hub's own refusals.
    pub(crate) async fn publish_checked<F>(
        &self,
        session: &Session,
        origin: Origin,
        build: F,
    ) -> Result<Arc<Published>, HubError>
    where
        F: FnMut(&Replica) -> Result<Event, HubError>,
    {
        self.sessions.publish_checked(session, origin, build).await
    }

    /// Queues rows that may be dropped under pressure.
    pub fn persist_droppable(&self, order: Order, rows: Vec<Row>) {
        if !rows.is_empty() {
            self.writer.offer(order, rows);
        }
    }

    /// Queues must-keep rows that nobody waits for (participant rows,
    /// lifecycle). If the backlog is full they are logged and counted.
    pub fn persist(&self, order: Order, rows: Vec<Row>) {
        if rows.is_empty() {
            return;
        }
        let kind = rows[0].kind();
        let n = rows.len();
        if let Err(e) = self.writer.submit(order, rows, None) {
            tracing::warn!(kind, rows = n, error = %e, "store backlog full; rows not persisted");
            m::store_rows_dropped(kind, n as u64);
        }
    }

    /// Closes every connection with the "restart" code and waits (until
    /// `deadline`) for their writers to finish.
    pub async fn drain(&self, deadline: Instant) {
        self.draining.store(true, Ordering::Relaxed);
        for conn in self.connections() {
            conn.outbox.close(CloseCode::ServiceRestart);
        }
        while !self.conns.is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Persist the latest state of every loaded session.
        let rows: Vec<Row> = self
            .sessions
            .loaded()
            .iter()
            .flat_map(|s| {
                let g = s.lock();
                [state_row(s.id, &g), progress_row(s.id, &g)]
            })
            .collect();
        self.persist(Order::All, rows);
    }

    /// Sets the gauges that are cheaper to compute when scraped than to
    /// keep up to date: sessions by status, bytes queued to clients.
    pub fn refresh_gauges(&self) {
        let queued = self
            .connections()
            .iter()
            .map(|c| c.outbox.queued_bytes())
            .sum();
        m::outbound_queue_bytes(queued);
        let mut counts: HashMap<SessionStatus, usize> = HashMap::new();
        for s in self.sessions.loaded() {
            *counts.entry(s.lock().info.status).or_default() += 1;
        }
        let all: Vec<_> = SessionStatus::ALL
            .iter()
            .map(|st| (*st, counts.get(st).copied().unwrap_or(0)))
            .collect();
        m::sessions_by_status(&all);
    }
}
