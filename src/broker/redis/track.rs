//! A watched session's track: the per-session ordering state behind
//! in-order delivery. It records the epoch and last `seq` delivered to the
//! hub, the publications that arrived early and wait for a gap to fill,
//! and, while Redis is away, the run this node sequences alone. Plain
//! state under one lock, with no Redis in it: `delivery.rs` and
//! `outage.rs` drive it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::ids::{Epoch, Seq, SessionId};
use crate::protocol::model::StreamPosition;
use crate::stream::Published;

/// A run of events this node sequenced alone while Redis was away.
#[derive(Debug)]
pub(super) struct LocalRun {
    /// The shared stream's position when the run began.
    pub(super) since: StreamPosition,
    /// Payloads of the run's most recent events, to hand over.
    pub(super) events: VecDeque<(Seq, String)>,
    /// Presence changes made while away: member → connections added.
    pub(super) presence: HashMap<String, i64>,
}

#[derive(Debug)]
pub(super) struct TrackState {
    pub(super) epoch: Epoch,
    pub(super) delivered: Seq,
    pub(super) pending: BTreeMap<Seq, Arc<Published>>,
    pub(super) local: Option<LocalRun>,
    pub(super) resync_queued: bool,
}

#[derive(Debug)]
pub(super) struct Track {
    pub(super) session: SessionId,
    pub(super) state: Mutex<TrackState>,
    pub(super) delivered: Notify,
}

impl Track {
    /// A track that has delivered up to `from`.
    pub(super) fn new(session: SessionId, from: StreamPosition) -> Track {
        Track {
            session,
            state: Mutex::new(TrackState {
                epoch: from.epoch,
                delivered: from.seq,
                pending: BTreeMap::new(),
                local: None,
                resync_queued: false,
            }),
            delivered: Notify::new(),
        }
    }

    pub(super) fn position(&self) -> StreamPosition {
        let st = self.state.lock();
        StreamPosition {
            epoch: st.epoch,
            seq: st.delivered,
        }
    }
}
