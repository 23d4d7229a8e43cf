//! The broker: sequences each session's events, keeps their recent history
//! and delivers them, in order, to every node that watches the session.
//!
//! Implementations:
//! * [`memory::MemoryBroker`]: one process. Sequencing, history and
//!   delivery happen under one lock per session. Single node only.
//! * `redis::RedisBroker`: several nodes share sessions through Redis.
//!
//! The broker *pushes* publications into the node through the
//! [`BrokerHandler`] given to [`Broker::attach`]; for a given session the
//! handler sees publications in strictly increasing `seq` order, without
//! gaps, including the node's own.

pub mod memory;
pub mod redis;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::config::LimitSettings;
use crate::counters::Counters;
use crate::ids::{Epoch, Seq, SessionId};
use crate::protocol::model::{Event, StreamPosition};
use crate::stream::{Origin, Published};

/// A replica's replicated state at a stream position (encoded by the
/// session layer; opaque bytes here), so a node that starts watching a live
/// session can build its replica from it plus the events after it,
/// without the session's whole log.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    pub position: StreamPosition,
    pub replica: Vec<u8>,
    /// JSON views other services read (`:state`, `:metrics`, `:context`).
    pub state: String,
    pub metrics: Option<String>,
    pub context: String,
}

/// A condition checked atomically with sequencing.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Condition {
    Always,
    /// Publish only if the stream's last seq is exactly this: the event was
    /// validated against a replica at that position.
    SeqIs(Seq),
}

/// A page of history.
#[derive(Debug)]
pub struct HistoryPage {
    pub epoch: Epoch,
    /// The stream's last seq when the page was read.
    pub top: Seq,
    /// Events with `seq > after`, oldest first.
    pub events: Vec<Arc<Published>>,
}

#[derive(Clone, Debug, thiserror::Error)]
pub enum BrokerError {
    /// The condition failed; the caller should re-validate and retry.
    #[error("stream moved on (now at {current})")]
    Conflict { current: Seq },
    /// The events after the requested seq were trimmed from history.
    #[error("history no longer holds seq {after}")]
    Trimmed { after: Seq },
    /// The backend is unreachable or failing.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
}

/// Receives publications from the broker. Called in `seq` order per
/// session. Must not publish from inside the call: the memory broker
/// delivers while it holds the session's stream lock.
pub trait BrokerHandler: Send + Sync + 'static {
    fn on_publication(&self, publication: Arc<Published>);

    /// The stream continues at `position`, not after the last publication
    /// delivered: it was lost and restarted under a new epoch (a Redis
    /// restart), this node sequenced on its own during an outage, or it
    /// fell too far behind to refill. With `replica` (a checkpoint at
    /// `position`) the node replaces its replica's state; without, its
    /// state carries on. Either way its history before `position` is gone
    /// and its clients must be told so.
    fn on_stream_reset(
        &self,
        session: SessionId,
        position: StreamPosition,
        replica: Option<Vec<u8>>,
    );

    /// A checkpoint of the node's replica, when the broker must hand the
    /// session's state to other nodes (rejoining after an outage).
    fn checkpoint(&self, session: SessionId) -> Option<Checkpoint>;
}

#[async_trait]
pub trait Broker: Send + Sync + fmt::Debug + 'static {
    /// Short name for logs and `/readyz`.
    fn name(&self) -> &'static str;

    /// Sets the handler that receives publications. Called once, before
    /// anything is published.
    fn attach(&self, handler: Arc<dyn BrokerHandler>);

    /// Appends `events` to the session's stream back to back (nothing
    /// sequenced between them) if `condition` holds before the first, and
    /// delivers them to every watching node, in order. All or none: on an
    /// error none of them was published. Begins the stream (with a new
    /// epoch, from the handler's checkpoint) if it does not exist.
    ///
    /// One call is one step of the backend (one Redis round trip), so a
    /// publisher that sends events faster than a round trip takes is not
    /// held to one round trip per event.
    async fn publish_many(
        &self,
        session: SessionId,
        events: Vec<(Event, Origin)>,
        ts: u64,
        condition: Condition,
    ) -> Result<Vec<Arc<Published>>, BrokerError>;

    /// [`Broker::publish_many`] with one event.
    async fn publish(
        &self,
        session: SessionId,
        event: Event,
        origin: Origin,
        ts: u64,
        condition: Condition,
    ) -> Result<Arc<Published>, BrokerError> {
        self.publish_many(session, vec![(event, origin)], ts, condition)
            .await?
            .pop()
            .ok_or_else(|| BrokerError::Unavailable("the event was not published".into()))
    }

    /// The stream's epoch and last seq, or `None` when the session has no
    /// stream: it was never begun, or the broker lost it (Redis restarted
    /// empty, or a failover lost it).
    async fn position(&self, session: SessionId) -> Result<Option<StreamPosition>, BrokerError>;

    /// Begins the session's stream at `base.position` (a fresh epoch), with
    /// `base` as its first checkpoint, unless the session has a stream
    /// already. Returns the stream's position either way: `base.position`
    /// when this call began it.
    ///
    /// Every stream a node begins with a replica starts from that
    /// replica's checkpoint, so every node that follows the stream builds
    /// its replica from the same base plus the same events: two nodes
    /// never carry on from different states under one epoch.
    async fn begin(
        &self,
        session: SessionId,
        base: Checkpoint,
    ) -> Result<StreamPosition, BrokerError>;

    /// Events after `after`, oldest first, at most `limit`.
    async fn history(
        &self,
        session: SessionId,
        after: Seq,
        limit: usize,
    ) -> Result<HistoryPage, BrokerError>;

    /// Starts delivering this session's publications after `from` to this
    /// node: first those already in history, then live ones, in order.
    async fn watch(&self, session: SessionId, from: StreamPosition) -> Result<(), BrokerError>;

    /// Stops delivering this session's publications to this node.
    async fn unwatch(&self, session: SessionId) -> Result<(), BrokerError>;

    /// Counts one more connection of `member` in the session, across all
    /// nodes. Returns true if it is the member's first.
    async fn presence_join(&self, session: SessionId, member: &str) -> Result<bool, BrokerError>;

    /// Counts one connection of `member` fewer. Returns true if it was the
    /// member's last.
    async fn presence_leave(&self, session: SessionId, member: &str) -> Result<bool, BrokerError>;

    /// Members whose last connection was on a node that died: their
    /// presence is gone and somebody must publish their `leave`.
    async fn reap(&self) -> Result<Vec<(SessionId, String)>, BrokerError> {
        Ok(Vec::new())
    }

    /// Counters for the abuse limits shared by every node, when the
    /// broker links several; `None` keeps them per node.
    fn shared_counters(&self, _limits: &LimitSettings) -> Option<Arc<dyn Counters>> {
        None
    }

    /// Whether other nodes may need checkpoints to build replicas. The
    /// single-node broker never does, so the hub skips the work.
    fn wants_checkpoints(&self) -> bool {
        false
    }

    /// Stores a checkpoint if it is newer than the stored one.
    async fn save_checkpoint(
        &self,
        _session: SessionId,
        _checkpoint: Checkpoint,
    ) -> Result<(), BrokerError> {
        Ok(())
    }

    /// The latest checkpoint of the session's current stream, if any.
    async fn load_checkpoint(
        &self,
        _session: SessionId,
    ) -> Result<Option<(StreamPosition, Vec<u8>)>, BrokerError> {
        Ok(None)
    }

    /// Drops the stream and presence of a session that is gone for good.
    async fn remove(&self, session: SessionId) -> Result<(), BrokerError>;

    /// Checks that the backend answers, for readiness.
    async fn ping(&self) -> Result<(), BrokerError>;
}
