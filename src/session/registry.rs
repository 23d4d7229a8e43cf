//! The sessions live on this node, and how events get into them.
//!
//! Writes follow one pattern: validate against the local replica, publish
//! through the broker (which sequences), and let the broker's delivery
//! apply the event to every replica and fan it out ([`Delivery`]).
//! Operations whose legality depends on the current state are published
//! on the condition that the stream has not moved since they were
//! validated; on a conflict they are validated again
//! ([`Sessions::publish_checked`]).

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use dashmap::DashMap;

use super::delivery;
use super::replica::{Replica, ReplicaLimits, Seen, Session};
use super::snapshot::ReplicaSnapshot;
use crate::broker::{Broker, BrokerError, BrokerHandler, Checkpoint, Condition};
use crate::ids::{Epoch, SessionId, TenantId, now_ms};
use crate::protocol::model::{Event, StreamPosition};
use crate::store::{Page, SessionRecord, Store, StoreError};
use crate::stream::{Origin, Published};

/// Attempts at a conditional publish before giving up.
const MAX_CONDITIONAL_ATTEMPTS: usize = 64;

/// Why a session could not be reached or written.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// No such session, or (asked with a tenant) another tenant's.
    #[error("no such session")]
    NotFound,
    /// Conditional publishes kept losing to other writers.
    #[error("the session is changing too fast")]
    TooBusy,
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Every session loaded on this node, by id.
#[derive(Debug)]
pub struct Sessions {
    map: DashMap<SessionId, Arc<Session>>,
    broker: Arc<dyn Broker>,
    store: Arc<dyn Store>,
    limits: ReplicaLimits,
}

/// Receives the broker's publications without keeping the registry alive.
struct Delivery(Weak<Sessions>);

impl BrokerHandler for Delivery {
    fn on_publication(&self, p: Arc<Published>) {
        let Some(s) = self.0.upgrade().and_then(|r| r.get(p.session)) else {
            return;
        };
        let applied = s.lock().apply(&p);
        if applied.start_delivery {
            tokio::spawn(delivery::run(s));
        }
    }

    fn on_stream_reset(
        &self,
        session: SessionId,
        position: StreamPosition,
        replica: Option<Vec<u8>>,
    ) {
        let Some(s) = self.0.upgrade().and_then(|r| r.get(session)) else {
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
        if s.lock().reset(session, position, snapshot) {
            tokio::spawn(delivery::run(s));
        }
    }

    fn checkpoint(&self, session: SessionId) -> Option<Checkpoint> {
        let s = self.0.upgrade()?.get(session)?;
        let g = s.lock();
        Some(checkpoint_of(&g))
    }
}

/// The replica's checkpoint, with the JSON views Redis keeps beside it.
fn checkpoint_of(g: &Replica) -> Checkpoint {
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

impl Sessions {
    /// An empty registry that receives `broker`'s publications.
    pub fn new(
        broker: Arc<dyn Broker>,
        store: Arc<dyn Store>,
        limits: ReplicaLimits,
    ) -> Arc<Sessions> {
        let sessions = Arc::new(Sessions {
            map: DashMap::new(),
            broker: broker.clone(),
            store,
            limits,
        });
        broker.attach(Arc::new(Delivery(Arc::downgrade(&sessions))));
        sessions
    }

    pub fn broker(&self) -> &Arc<dyn Broker> {
        &self.broker
    }

    /// The session if it is loaded here.
    pub fn get(&self, id: SessionId) -> Option<Arc<Session>> {
        self.map.get(&id).map(|s| s.clone())
    }

    /// Every loaded session.
    pub fn loaded(&self) -> Vec<Arc<Session>> {
        self.map.iter().map(|s| s.value().clone()).collect()
    }

    /// The session, if it belongs to `tenant` (any tenant's when `None`,
    /// for the hub's own housekeeping). Loads it from the store if it is
    /// not in memory.
    ///
    /// # Errors
    /// [`SessionError::NotFound`] for an absent session and for another
    /// tenant's alike.
    pub async fn find(
        &self,
        tenant: Option<TenantId>,
        id: SessionId,
    ) -> Result<Arc<Session>, SessionError> {
        if let Some(s) = self.get(id) {
            return match tenant {
                Some(t) if t != s.tenant => Err(SessionError::NotFound),
                _ => Ok(s),
            };
        }
        let record = self
            .store
            .get_session(tenant, id)
            .await?
            .ok_or(SessionError::NotFound)?;
        self.load(record).await
    }

    /// Makes a stored session live on this node: from the latest
    /// checkpoint of its stream if another node has one (the session is
    /// live elsewhere), else from the stored record; then applies the
    /// stream after that point and follows it.
    pub async fn load(&self, record: SessionRecord) -> Result<Arc<Session>, SessionError> {
        if let Some(s) = self.get(record.id) {
            return Ok(s);
        }
        let position = match self.broker.position(record.id).await? {
            Some(position) => position,
            None => match self.begin(&record).await? {
                Ok(session) => return self.watch(session).await,
                // Another node began it first: load from its base.
                Err(position) => position,
            },
        };
        let restored = match self.broker.load_checkpoint(record.id).await? {
            Some((at, bytes)) if at.epoch == position.epoch && at.seq <= position.seq => {
                match ReplicaSnapshot::decode(&bytes) {
                    Ok(mut snap) => {
                        // The checkpoint's position is the stream's. A
                        // stream's base carries a replica taken where its
                        // node stood before (another epoch), so the
                        // snapshot's own position can differ.
                        (snap.epoch, snap.seq) = (at.epoch, at.seq);
                        Some(Session::restore(
                            record.id,
                            record.tenant,
                            snap,
                            self.limits,
                        ))
                    }
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
            None => {
                let s = Session::new(&record, position, self.limits);
                self.remember_stored_ids(&s).await;
                s
            }
        };
        self.watch(session).await
    }

    /// The session has no stream: builds its replica from the stored
    /// record and begins the stream with that replica as its base, so
    /// every node that loads the session (or follows the stream) starts
    /// from the same state. `Err` carries the position of the stream
    /// another node began first.
    async fn begin(
        &self,
        record: &SessionRecord,
    ) -> Result<Result<Session, StreamPosition>, SessionError> {
        let at = StreamPosition {
            epoch: Epoch::random(),
            seq: 0,
        };
        let session = Session::new(record, at, self.limits);
        self.remember_stored_ids(&session).await;
        let base = checkpoint_of(&session.lock());
        let now = self.broker.begin(record.id, base).await?;
        Ok(if now == at { Ok(session) } else { Err(now) })
    }

    /// Makes a loaded replica live here and follows its stream.
    async fn watch(&self, session: Session) -> Result<Arc<Session>, SessionError> {
        let id = session.id;
        let from = session.lock().position();
        let session = match self.map.entry(id) {
            dashmap::Entry::Occupied(o) => return Ok(o.get().clone()),
            dashmap::Entry::Vacant(v) => v.insert(Arc::new(session)).clone(),
        };
        if let Err(e) = self.broker.watch(id, from).await {
            self.map.remove(&id);
            return Err(e.into());
        }
        Ok(session)
    }

    /// A session loaded from its stored record alone (after a restart,
    /// with no stream or checkpoint left) has lost which client ids it
    /// had accepted. The newest conversation rows carry them: remembered
    /// again, a resend of a question or response that committed before
    /// the restart, whose ack was lost with the connection, is answered
    /// with its original `ref_id` and creates nothing, as before the
    /// restart. Its `seq` is the one the session was loaded at: the
    /// original's seq belongs to the epoch before. A failed read only
    /// loses that memory (the rows stay unique in the store either way).
    async fn remember_stored_ids(&self, session: &Session) {
        let page = Page {
            before: None,
            limit: self.limits.dedupe_window,
        };
        let rows = match self.store.conversation(session.id, page).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(session = %session.id, error = %e,
                    "could not read the session's recent client ids; resends after this restart get new ids");
                return;
            }
        };
        let mut g = session.lock();
        let seq = g.position().seq;
        // Oldest first, so the newest stay in the window.
        for row in rows.iter().rev() {
            if let (Some(sender), Some(cid)) = (row.sender(), &row.client_msg_id) {
                g.dedupe.insert(
                    (sender.to_owned(), cid.clone()),
                    Seen {
                        seq,
                        ref_id: Some(row.id),
                    },
                );
            }
        }
    }

    /// Loads every session that had not ended, after a restart. Their
    /// streams start under a new epoch, so clients resuming from before
    /// the restart get a discontinuity and a fresh snapshot.
    pub async fn reload(&self) -> Result<usize, SessionError> {
        let live = self.store.live_sessions().await?;
        let n = live.len();
        for record in live {
            self.load(record).await?;
        }
        Ok(n)
    }

    /// Forgets an ended session on this node and drops its stream,
    /// presence and views from the broker (the store keeps it).
    pub async fn evict(&self, id: SessionId) {
        self.map.remove(&id);
        if let Err(e) = self.broker.remove(id).await {
            tracing::debug!(session = %id, error = %e, "ended session's stream not removed");
        }
    }

    /// Publishes an event that is valid whatever the session's state.
    pub async fn publish(
        &self,
        session: &Session,
        event: Event,
        origin: Origin,
    ) -> Result<Arc<Published>, BrokerError> {
        let p = self
            .broker
            .publish(session.id, event, origin, now_ms(), Condition::Always)
            .await?;
        self.checkpoint_due(session);
        Ok(p)
    }

    /// Publishes an event built from the replica, on the condition that
    /// the stream has not moved since; rebuilds and retries on conflict.
    /// `build` sees the replica under its lock and may refuse with the
    /// caller's own error.
    pub async fn publish_checked<F, E>(
        &self,
        session: &Session,
        origin: Origin,
        mut build: F,
    ) -> Result<Arc<Published>, E>
    where
        F: FnMut(&Replica) -> Result<Event, E>,
        E: From<SessionError>,
    {
        self.publish_checked_many(session, |g| {
            build(g).map(|event| vec![(event, origin.clone())])
        })
        .await?
        .pop()
        .ok_or_else(|| {
            SessionError::Broker(BrokerError::Unavailable("not published".into())).into()
        })
    }

    /// [`Sessions::publish_checked`] for events sequenced back to back:
    /// `build` makes all of them from one look at the replica, and they
    /// are published together (one broker step) or not at all. Building
    /// none publishes nothing.
    pub async fn publish_checked_many<F, E>(
        &self,
        session: &Session,
        mut build: F,
    ) -> Result<Vec<Arc<Published>>, E>
    where
        F: FnMut(&Replica) -> Result<Vec<(Event, Origin)>, E>,
        E: From<SessionError>,
    {
        for _ in 0..MAX_CONDITIONAL_ATTEMPTS {
            let (events, seq) = {
                let g = session.lock();
                (build(&g)?, g.seq)
            };
            if events.is_empty() {
                return Ok(Vec::new());
            }
            match self
                .broker
                .publish_many(session.id, events, now_ms(), Condition::SeqIs(seq))
                .await
            {
                Ok(p) => {
                    self.checkpoint_due(session);
                    return Ok(p);
                }
                Err(BrokerError::Conflict { current }) => catch_up(session, current).await,
                Err(e) => return Err(SessionError::from(e).into()),
            }
        }
        Err(SessionError::TooBusy.into())
    }

    /// Notes that this node changed the session, so its next checkpoint
    /// is due; nothing to note when the broker keeps no checkpoints.
    fn checkpoint_due(&self, session: &Session) {
        if self.broker.wants_checkpoints() {
            session.lock().pending.checkpoint_due = true;
        }
    }

    /// Writes a checkpoint of every session this node published to since
    /// its last one, so nodes that join later can build a replica.
    pub async fn save_checkpoints(&self) {
        for s in self.loaded() {
            let cp = {
                let mut g = s.lock();
                if !std::mem::take(&mut g.pending.checkpoint_due) {
                    continue;
                }
                checkpoint_of(&g)
            };
            if let Err(e) = self.broker.save_checkpoint(s.id, cp).await {
                s.lock().pending.checkpoint_due = true;
                tracing::debug!(session = %s.id, error = %e, "checkpoint not saved");
            }
        }
    }
}

/// Waits (briefly) until the replica has applied `seq`.
async fn catch_up(session: &Session, seq: u64) {
    let deadline = Instant::now() + Duration::from_secs(1);
    while session.lock().seq < seq && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
