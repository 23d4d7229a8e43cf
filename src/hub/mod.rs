//! The hub: the registry of live sessions and connections on this node,
//! and every operation on a session.
//!
//! Writes follow one pattern: validate against the local replica, publish
//! through the broker (which sequences), and let the broker's delivery
//! apply the event to every replica and fan it out. Operations whose
//! legality depends on the current state are published on the condition
//! that the stream has not moved since they were validated; on a conflict
//! they are validated again.
//!
//! Must-keep operations (questions, responses, interventions) reserve room
//! in the store's backlog before publishing, and are acknowledged to their
//! sender only after their rows commit.

pub mod client;
pub mod error;
pub mod timers;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use serde_json::Value;
use uuid::Uuid;

use crate::auth::limits::{Limits, Slot, TenantRefusal};
use crate::auth::origin::OriginPolicy;
use crate::auth::{Authenticator, Principal};
use crate::broker::{Broker, BrokerError, BrokerHandler, Checkpoint, Condition, Origin, Published};
use crate::config::Settings;
use crate::connection::ConnHandle;
use crate::connection::outbox::OutboxLimits;
use crate::ids::{ConnId, SessionId, TenantId, now_ms};
use crate::protocol::model::{Counters, CustomAudience, Event, SessionState, StreamPosition};
use crate::protocol::{CloseCode, ErrorCode, SessionStatus};
use crate::session::snapshot::ReplicaSnapshot;
use crate::session::{Inner, ReplicaLimits, Session};
use crate::store::writer::{Ack, BatchWriter};
use crate::store::{Row, SessionQuery, SessionRecord};
pub use error::{HubError, not_found, refuse};
use timers::{Job, Timers};

/// Attempts at a conditional publish before giving up with `unavailable`.
const MAX_CONDITIONAL_ATTEMPTS: usize = 64;

/// What a backend gives to create a session.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSession {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub avatar_id: Option<Uuid>,
    #[serde(default)]
    pub config: Option<Value>,
}

/// A session as REST shows it: the stored record plus what only the live
/// replica knows.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct SessionView {
    #[serde(flatten)]
    pub record: SessionRecord,
    /// Present while the session is loaded on this node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<LiveView>,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct LiveView {
    pub position: StreamPosition,
    pub renderer_connected: bool,
    pub controller: Option<String>,
    pub connections: usize,
}

#[derive(Debug)]
pub struct HubInner {
    pub settings: Arc<Settings>,
    pub broker: Arc<dyn Broker>,
    pub writer: BatchWriter,
    pub auth: Arc<dyn Authenticator>,
    /// Connection, frame, question and REST limits.
    pub limiter: Limits,
    /// Which browser origins may open a WebSocket.
    pub origins: OriginPolicy,
    sessions: DashMap<SessionId, Arc<Session>>,
    conns: DashMap<ConnId, Arc<ConnHandle>>,
    timers: Timers,
    limits: ReplicaLimits,
    outbox_limits: OutboxLimits,
    draining: AtomicBool,
}

/// Cheap handle to the hub.
#[derive(Clone, Debug)]
pub struct Hub {
    inner: Arc<HubInner>,
}

impl std::ops::Deref for Hub {
    type Target = HubInner;
    fn deref(&self) -> &HubInner {
        &self.inner
    }
}

/// Receives the broker's publications without keeping the hub alive.
struct Delivery(Weak<HubInner>);

impl BrokerHandler for Delivery {
    fn on_publication(&self, p: Arc<Published>) {
        let Some(hub) = self.0.upgrade() else { return };
        let Some(session) = hub.sessions.get(&p.session).map(|s| s.clone()) else {
            return;
        };
        let applied = session.lock().apply(&p);
        for (conn, code) in applied.close {
            conn.outbox.close(code);
        }
    }

    fn on_stream_reset(
        &self,
        session: SessionId,
        position: StreamPosition,
        replica: Option<Vec<u8>>,
    ) {
        let Some(hub) = self.0.upgrade() else { return };
        let Some(s) = hub.sessions.get(&session).map(|s| s.clone()) else {
            return;
        };
        let snapshot = replica.and_then(|bytes| match ReplicaSnapshot::decode(&bytes) {
            Ok(snap) => Some(snap),
            Err(e) => {
                tracing::error!(%session, error = %e, "undecodable checkpoint; keeping this node's state");
                None
            }
        });
        tracing::warn!(%session, epoch = %position.epoch, seq = position.seq, restored = snapshot.is_some(), "session stream continues elsewhere; history dropped");
        let close = s.lock().reset(session, position, snapshot);
        for (conn, code) in close {
            conn.outbox.close(code);
        }
    }

    fn checkpoint(&self, session: SessionId) -> Option<Checkpoint> {
        let hub = self.0.upgrade()?;
        let s = hub.sessions.get(&session).map(|s| s.clone())?;
        let g = s.lock();
        Some(checkpoint_of(&g))
    }
}

/// The replica's checkpoint, with the JSON views Redis keeps beside it.
fn checkpoint_of(g: &Inner) -> Checkpoint {
    Checkpoint {
        position: g.position(),
        replica: g.replica_snapshot().encode(),
        state: serde_json::to_string(&g.state).unwrap_or_default(),
        metrics: g
            .metrics
            .as_ref()
            .and_then(|m| serde_json::to_string(m).ok()),
        context: serde_json::to_string(&g.context).unwrap_or_default(),
    }
}

impl Hub {
    /// Builds the hub and starts its timer and ticker tasks.
    pub fn new(
        settings: Arc<Settings>,
        broker: Arc<dyn Broker>,
        writer: BatchWriter,
        auth: Arc<dyn Authenticator>,
    ) -> Hub {
        let s = &settings.session;
        let ws = &settings.websocket;
        let limits = ReplicaLimits {
            history_size: s.history_size,
            dedupe_window: s.dedupe_window,
            recent_refs_max: s.recent_refs_max,
            held_responses_max: s.held_responses_max,
            snapshot_members_max: s.snapshot_members_max,
            replay_max_bytes: ws.outbound_max_bytes / 2,
        };
        let outbox_limits = OutboxLimits {
            max_bytes: ws.outbound_max_bytes,
            conflate_after: ws.conflate_after_bytes,
        };
        // Settings::load validated the origins; settings built in code
        // may not have been, and a bad entry then admits no browser.
        let origins = OriginPolicy::from_settings(&settings.auth).unwrap_or_else(|e| {
            tracing::error!(error = %e, "invalid origin policy; refusing every browser origin");
            let mut auth = settings.auth.clone();
            auth.allowed_origins.clear();
            auth.dev = false;
            OriginPolicy::from_settings(&auth).expect("an empty allow-list is valid")
        });
        // Counters that span connections are shared through the broker
        // when it links several nodes, else kept on this node.
        let limiter = match broker.shared_counters(&settings.limits) {
            Some(counters) => Limits::new(&settings.limits, counters),
            None => Limits::local(&settings.limits),
        };
        let inner = Arc::new_cyclic(|weak: &Weak<HubInner>| HubInner {
            settings: settings.clone(),
            broker: broker.clone(),
            writer,
            auth,
            limiter,
            origins,
            sessions: DashMap::new(),
            conns: DashMap::new(),
            timers: Timers::start(weak.clone()),
            limits,
            outbox_limits,
            draining: AtomicBool::new(false),
        });
        broker.attach(Arc::new(Delivery(Arc::downgrade(&inner))));
        timers::start_ticker(Arc::downgrade(&inner));
        Hub { inner }
    }

    fn from_inner(inner: Arc<HubInner>) -> Hub {
        Hub { inner }
    }

    pub fn outbox_limits(&self) -> OutboxLimits {
        self.outbox_limits
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    // ---------------------------------------------------------------
    // Registry
    // ---------------------------------------------------------------

    /// Adds a connection to the registry. One without an identity yet
    /// gets `auth_timeout_ms` to authenticate, enforced by the timer task
    /// rather than a timer in every connection.
    pub fn register(&self, conn: Arc<ConnHandle>) {
        if conn.identity().is_none() {
            self.timers.schedule(
                self.settings.websocket.auth_timeout(),
                Job::AuthDeadline { conn: conn.id },
            );
        }
        self.conns.insert(conn.id, conn);
    }

    pub fn unregister(&self, id: ConnId) {
        self.conns.remove(&id);
    }

    /// Takes a connection slot of the identity's tenant (see
    /// [`Limits::admit_tenant`]).
    ///
    /// # Errors
    /// [`TenantRefusal`] when the tenant is full or deactivated.
    pub async fn admit_tenant(
        &self,
        identity: &crate::auth::Identity,
    ) -> Result<Option<Slot>, TenantRefusal> {
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

    pub fn sessions_loaded(&self) -> Vec<Arc<Session>> {
        self.sessions.iter().map(|s| s.value().clone()).collect()
    }

    /// The session, if it belongs to `tenant`. Loads it from the store if
    /// it is not in memory.
    pub async fn session(&self, tenant: TenantId, id: SessionId) -> Result<Arc<Session>, HubError> {
        if let Some(s) = self.sessions.get(&id) {
            return if s.tenant == tenant {
                Ok(s.clone())
            } else {
                Err(not_found())
            };
        }
        let record = self
            .writer
            .store()
            .get_session(Some(tenant), id)
            .await?
            .ok_or_else(not_found)?;
        self.load(record).await
    }

    /// The session whatever its tenant, for the hub's own housekeeping.
    pub(crate) async fn session_any_tenant(&self, id: SessionId) -> Result<Arc<Session>, HubError> {
        if let Some(s) = self.sessions.get(&id) {
            return Ok(s.clone());
        }
        let record = self
            .writer
            .store()
            .get_session(None, id)
            .await?
            .ok_or_else(not_found)?;
        self.load(record).await
    }

    /// Makes a stored session live on this node: from the latest
    /// checkpoint of its stream if another node has one (the session is
    /// live elsewhere), else from the stored record; then applies the
    /// stream after that point and follows it.
    pub async fn load(&self, record: SessionRecord) -> Result<Arc<Session>, HubError> {
        if let Some(s) = self.sessions.get(&record.id) {
            return Ok(s.clone());
        }
        let position = self.broker.position(record.id).await?;
        let restored = match self.broker.load_checkpoint(record.id).await? {
            Some((at, bytes)) if at.epoch == position.epoch && at.seq <= position.seq => {
                match ReplicaSnapshot::decode(&bytes) {
                    Ok(snap) => Some(Session::restore(
                        record.id,
                        record.tenant,
                        snap,
                        self.limits,
                    )),
                    Err(e) => {
                        tracing::warn!(session = %record.id, error = %e, "undecodable checkpoint; loading from the store");
                        None
                    }
                }
            }
            _ => None,
        };
        let session = match restored {
            Some(s) => s,
            // No checkpoint, but the stream still holds every event from
            // the first: fold them all over the session as created. Else
            // the stored record is the best there is.
            None if position.seq > 0
                && matches!(self.broker.history(record.id, 0, 1).await,
                    Ok(ref page) if page.epoch == position.epoch) =>
            {
                let first = StreamPosition {
                    epoch: position.epoch,
                    seq: 0,
                };
                Session::new(&record.as_created(), first, self.limits)
            }
            None => Session::new(&record, position, self.limits),
        };
        let session = Arc::new(session);
        let from = session.lock().position();
        let session = match self.sessions.entry(record.id) {
            dashmap::Entry::Occupied(o) => return Ok(o.get().clone()),
            dashmap::Entry::Vacant(v) => v.insert(session).clone(),
        };
        if let Err(e) = self.broker.watch(record.id, from).await {
            self.sessions.remove(&record.id);
            return Err(e.into());
        }
        Ok(session)
    }

    /// Loads every session that had not ended, after a restart. Their
    /// streams start under a new epoch, so clients resuming from before
    /// the restart get a discontinuity and a fresh snapshot.
    pub async fn reload(&self) -> Result<usize, HubError> {
        let live = self.writer.store().live_sessions().await?;
        let n = live.len();
        for record in live {
            self.load(record).await?;
        }
        Ok(n)
    }

    // ---------------------------------------------------------------
    // Publishing
    // ---------------------------------------------------------------

    /// Publishes an event that is valid whatever the session's state.
    pub async fn publish(
        &self,
        session: &Session,
        event: Event,
        origin: Origin,
    ) -> Result<Arc<Published>, HubError> {
        let p = self
            .broker
            .publish(session.id, event, origin, now_ms(), Condition::Always)
            .await?;
        self.checkpoint_due(session);
        Ok(p)
    }

    /// Publishes an event built from the replica, on the condition that
    /// the stream has not moved since; rebuilds and retries on conflict.
    /// `build` sees the replica under its lock and may refuse.
    pub async fn publish_checked<F>(
        &self,
        session: &Session,
        origin: Origin,
        mut build: F,
    ) -> Result<Arc<Published>, HubError>
    where
        F: FnMut(&Inner) -> Result<Event, HubError>,
    {
        for _ in 0..MAX_CONDITIONAL_ATTEMPTS {
            let (event, seq) = {
                let g = session.lock();
                (build(&g)?, g.seq)
            };
            match self
                .broker
                .publish(
                    session.id,
                    event,
                    origin.clone(),
                    now_ms(),
                    Condition::SeqIs(seq),
                )
                .await
            {
                Ok(p) => {
                    self.checkpoint_due(session);
                    return Ok(p);
                }
                Err(BrokerError::Conflict { current }) => self.catch_up(session, current).await,
                Err(e) => return Err(e.into()),
            }
        }
        Err(refuse(
            ErrorCode::Unavailable,
            "the session is changing too fast; retry",
        ))
    }

    /// Notes that this node changed the session, so its next checkpoint
    /// is due; nothing to note when the broker keeps no checkpoints.
    fn checkpoint_due(&self, session: &Session) {
        if self.broker.wants_checkpoints() {
            session.lock().pending.checkpoint_due = true;
        }
    }

    /// Waits (briefly) until the replica has applied `seq`.
    async fn catch_up(&self, session: &Session, seq: u64) {
        let deadline = Instant::now() + Duration::from_secs(1);
        while session.lock().seq < seq && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Queues rows that may be dropped under pressure.
    pub fn persist_droppable(&self, rows: Vec<Row>) {
        if !rows.is_empty() {
            self.writer.offer(rows);
        }
    }

    /// Queues must-keep rows that nobody waits for (participant rows,
    /// lifecycle). If the backlog is full they are logged and counted.
    pub fn persist(&self, rows: Vec<Row>) {
        if rows.is_empty() {
            return;
        }
        let kind = rows[0].kind();
        let n = rows.len();
        if let Err(e) = self.writer.submit(rows, None) {
            tracing::warn!(kind, rows = n, error = %e, "store backlog full; rows not persisted");
            crate::metrics::store_rows_dropped(kind, n as u64);
        }
    }

    // ---------------------------------------------------------------
    // Sessions (REST)
    // ---------------------------------------------------------------

    pub async fn create_session(
        &self,
        principal: &Principal,
        new: NewSession,
    ) -> Result<SessionView, HubError> {
        if self.is_draining() {
            return Err(refuse(ErrorCode::Unavailable, "the hub is shutting down"));
        }
        let max = self.settings.session.max_text_bytes;
        if new.name.as_ref().is_some_and(|n| n.len() > 255) {
            return Err(refuse(ErrorCode::Invalid, "name is longer than 255 bytes"));
        }
        if new.description.as_ref().is_some_and(|d| d.len() > max) {
            return Err(refuse(ErrorCode::Invalid, "description is too long"));
        }
        let config = new
            .config
            .unwrap_or_else(|| Value::Object(Default::default()));
        if !config.is_object() {
            return Err(refuse(ErrorCode::Invalid, "config must be a JSON object"));
        }
        if self.auth.insecure() {
            // Development identities name tenants freely; give each one a
            // row so the store's references hold.
            self.writer
                .store()
                .ensure_tenant(&crate::store::TenantRecord::new(
                    principal.tenant,
                    format!("{}@dev.eva-hub.invalid", principal.tenant),
                ))
                .await?;
        }
        let record = SessionRecord {
            id: SessionId::new(),
            tenant: principal.tenant,
            avatar_id: new.avatar_id,
            name: new.name.clone(),
            description: new.description,
            status: SessionStatus::Created,
            config,
            created_at: Utc::now(),
            started_at: None,
            ended_at: None,
            counters: Counters::default(),
            last_error: None,
            state: SessionState::default(),
            context: Value::Object(Default::default()),
        };
        self.writer.store().create_session(&record).await?;
        let session = self.load(record).await?;
        self.publish(&session, Event::Created { name: new.name }, Origin::hub())
            .await?;
        Ok(self.view(&session))
    }

    /// A loaded session as REST shows it.
    pub fn view(&self, session: &Session) -> SessionView {
        let g = session.lock();
        SessionView {
            record: g.record(session.id, session.tenant),
            live: Some(LiveView {
                position: g.position(),
                renderer_connected: g.renderer.connected,
                controller: g.controller.as_ref().map(|c| c.operator_id.clone()),
                connections: g.subs.len(),
            }),
        }
    }

    pub async fn get_session(
        &self,
        principal: &Principal,
        id: SessionId,
    ) -> Result<SessionView, HubError> {
        if let Some(s) = self.sessions.get(&id).map(|s| s.clone()) {
            return if s.tenant == principal.tenant {
                Ok(self.view(&s))
            } else {
                Err(not_found())
            };
        }
        let record = self
            .writer
            .store()
            .get_session(Some(principal.tenant), id)
            .await?
            .ok_or_else(not_found)?;
        Ok(SessionView { record, live: None })
    }

    pub async fn list_sessions(
        &self,
        principal: &Principal,
        query: &SessionQuery,
    ) -> Result<Vec<SessionView>, HubError> {
        let records = self
            .writer
            .store()
            .list_sessions(principal.tenant, query)
            .await?;
        Ok(records
            .into_iter()
            .map(
                |record| match self.sessions.get(&record.id).map(|s| s.clone()) {
                    Some(s) => self.view(&s),
                    None => SessionView { record, live: None },
                },
            )
            .collect())
    }

    /// Moves a session through its lifecycle. Refused with
    /// `illegal_transition` when the lifecycle does not allow it.
    pub async fn transition(
        &self,
        session: &Arc<Session>,
        to: SessionStatus,
        reason: Option<String>,
        by: Option<String>,
    ) -> Result<Arc<Published>, HubError> {
        let p = self
            .publish_checked(session, Origin::hub(), |g| {
                let from = g.info.status;
                if !from.can_become(to) {
                    return Err(refuse(
                        ErrorCode::IllegalTransition,
                        format!("a {} session cannot become {}", from.as_str(), to.as_str()),
                    ));
                }
                Ok(Event::Lifecycle {
                    status: to,
                    previous: from,
                    reason: reason.clone(),
                    by: by.clone(),
                })
            })
            .await?;
        self.after_transition(session, to).await;
        Ok(p)
    }

    /// Follow-up work a transition owes: persistence, timers, and a stop
    /// that needs no renderer.
    async fn after_transition(&self, session: &Arc<Session>, to: SessionStatus) {
        let (row, renderer_connected, controller) = {
            let g = session.lock();
            (
                progress_row(session.id, &g),
                g.renderer.connected,
                g.controller.as_ref().map(|c| c.operator_id.clone()),
            )
        };
        self.persist(vec![row]);
        if let (true, Some(operator)) = (to.is_terminal(), controller)
            && let Err(e) = self
                .release(
                    session,
                    &operator,
                    crate::protocol::model::ReleaseReason::SessionEnded,
                    None,
                )
                .await
        {
            tracing::info!(session = %session.id, error = %e, "end-of-session release raced");
        }
        match to {
            SessionStatus::Stopping if !renderer_connected => {
                let _ = Box::pin(self.transition(
                    session,
                    SessionStatus::Stopped,
                    Some("no renderer to wait for".into()),
                    None,
                ))
                .await;
            }
            SessionStatus::Stopping => self.timers.schedule(
                self.settings.session.stop_timeout(),
                Job::StopTimeout {
                    session: session.id,
                },
            ),
            SessionStatus::Starting | SessionStatus::Active if !renderer_connected => {
                self.timers.schedule(
                    self.settings.session.renderer_grace(),
                    Job::RendererGrace {
                        session: session.id,
                    },
                )
            }
            _ => {}
        }
    }

    /// Starts stopping a session (REST `stop`).
    pub async fn stop(
        &self,
        principal: &Principal,
        id: SessionId,
        reason: Option<String>,
    ) -> Result<SessionView, HubError> {
        let session = self.session(principal.tenant, id).await?;
        self.transition(
            &session,
            SessionStatus::Stopping,
            reason,
            Some(principal.subject.clone()),
        )
        .await?;
        Ok(self.view(&session))
    }

    /// A lifecycle change requested over REST.
    pub async fn set_status(
        &self,
        principal: &Principal,
        id: SessionId,
        to: SessionStatus,
        reason: Option<String>,
    ) -> Result<SessionView, HubError> {
        let session = self.session(principal.tenant, id).await?;
        self.transition(&session, to, reason, Some(principal.subject.clone()))
            .await?;
        Ok(self.view(&session))
    }

    /// Publishes an app-defined event for a backend (REST).
    pub async fn publish_custom(
        &self,
        principal: &Principal,
        id: SessionId,
        name: String,
        audience: CustomAudience,
        data: Value,
    ) -> Result<Arc<Published>, HubError> {
        let session = self.session(principal.tenant, id).await?;
        client::validate_event_name(&name)?;
        if session.lock().info.status.is_terminal() {
            return Err(refuse(ErrorCode::SessionEnded, "the session has ended"));
        }
        self.publish(
            &session,
            Event::Custom {
                name,
                audience,
                data,
                from: principal.subject.clone(),
            },
            Origin {
                sender: principal.subject.clone(),
                ..Origin::default()
            },
        )
        .await
    }

    // ---------------------------------------------------------------
    // Shutdown
    // ---------------------------------------------------------------

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
            .sessions_loaded()
            .iter()
            .flat_map(|s| {
                let g = s.lock();
                [state_row(s.id, &g), progress_row(s.id, &g)]
            })
            .collect();
        self.persist(rows);
    }
}

/// The session's status, timestamps and counters, for the store.
pub fn progress_row(id: SessionId, g: &Inner) -> Row {
    Row::SessionProgress {
        id,
        status: g.info.status,
        started_at: g.info.started_at,
        ended_at: g.info.ended_at,
        counters: g.counters,
        last_error: g.info.last_error.clone(),
    }
}

/// The session's latest state and context, for the store.
pub fn state_row(id: SessionId, g: &Inner) -> Row {
    Row::State {
        session_id: id,
        state: g.state.clone(),
        context: g.context.clone(),
        metrics: g
            .metrics
            .as_ref()
            .and_then(|m| serde_json::to_value(m).ok())
            .unwrap_or(Value::Null),
    }
}

/// Unix milliseconds as a timestamp.
pub fn ts(ms: u64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms as i64).unwrap_or_else(Utc::now)
}

/// An ack that completes once rows commit: the encoded `ack` frame, or an
/// `internal` error frame if the commit fails for good.
pub fn commit_ack(conn: &ConnHandle, frame: &crate::protocol::ServerFrame) -> Ack {
    let mut err = crate::protocol::ServerFrame::error(
        ErrorCode::Internal,
        "the hub failed to store this; retry",
    );
    if let (
        crate::protocol::ServerFrame::Ack { id, session, .. },
        crate::protocol::ServerFrame::Error {
            id: eid,
            session: es,
            retry_after_ms,
            ..
        },
    ) = (frame, &mut err)
    {
        *eid = Some(id.clone());
        *es = *session;
        *retry_after_ms = Some(1000);
    }
    Ack::Frame {
        outbox: Arc::downgrade(&conn.outbox),
        frame: conn.codec.frame(frame),
        on_error: conn.codec.frame(&err),
    }
}
