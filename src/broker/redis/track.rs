//! A watched session's track: the per-session ordering state behind
//! in-order delivery. It records the epoch and last `seq` delivered to the
//! hub, the publications that arrived early and wait for a gap to fill,
//! the prints of the latest events delivered (to tell a duplicate from a
//! different event under the same number, after Redis lost writes), and,
//! while Redis is away, the run this node sequences alone. Plain
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

/// How many of the latest delivered events' prints a track keeps.
const PRINTS: usize = 64;

/// A publication as the track holds it: the event and the print of the
/// payload it travelled as (`wire::print`).
pub(super) type Entry = (Arc<Published>, u64);

#[derive(Debug)]
pub(super) struct TrackState {
    pub(super) epoch: Epoch,
    pub(super) delivered: Seq,
    pub(super) pending: BTreeMap<Seq, Entry>,
    /// (seq, print) of recently delivered events, by `seq % PRINTS`.
    prints: [(Seq, u64); PRINTS],
    pub(super) local: Option<LocalRun>,
    pub(super) resync_queued: bool,
}

#[derive(Debug)]
pub(super) struct Track {
    pub(super) session: SessionId,
    pub(super) state: Mutex<TrackState>,
    pub(super) delivered: Notify,
}

impl TrackState {
    /// Notes that the event `seq` travelled with `print`.
    pub(super) fn record(&mut self, seq: Seq, print: u64) {
        self.prints[(seq % PRINTS as Seq) as usize] = (seq, print);
    }

    /// Whether a delivered event numbered `seq` had another print than
    /// `print`: Redis handed the number out twice (it lost the first
    /// one in a failover). Unknown numbers are not a conflict.
    pub(super) fn conflicts(&self, seq: Seq, print: u64) -> bool {
        let (at, had) = self.prints[(seq % PRINTS as Seq) as usize];
        at == seq && seq != 0 && had != print
    }

    /// Forgets the prints (the replica was reset).
    pub(super) fn forget_prints(&mut self) {
        self.prints = [(0, 0); PRINTS];
    }
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
                prints: [(0, 0); PRINTS],
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
