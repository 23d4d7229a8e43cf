//! The in-process broker: single node only.
//!
//! Each session's stream is a mutex around a counter and a ring of recent
//! publications. Publishing takes the lock, assigns the next seq, appends
//! to the ring and hands the publication to the node's handler before
//! releasing it, so the handler sees every session's events in order.
//! A restart loses every stream: streams start again under a fresh epoch.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use dashmap::DashMap;
use parking_lot::Mutex;

use super::{Broker, BrokerError, BrokerHandler, Checkpoint, Condition, HistoryPage};
use crate::ids::{Epoch, Seq, SessionId};
use crate::protocol::model::{Event, StreamPosition};
use crate::stream::{Origin, Published};

#[derive(Debug)]
struct Stream {
    epoch: Epoch,
    seq: Seq,
    ring: VecDeque<Arc<Published>>,
}

pub struct MemoryBroker {
    streams: DashMap<SessionId, Arc<Mutex<Stream>>>,
    presence: DashMap<SessionId, HashMap<String, u32>>,
    handler: OnceLock<Arc<dyn BrokerHandler>>,
    history_size: usize,
}

impl std::fmt::Debug for MemoryBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBroker")
            .field("streams", &self.streams.len())
            .field("history_size", &self.history_size)
            .finish()
    }
}

impl MemoryBroker {
    /// `history_size` bounds the events kept per session.
    pub fn new(history_size: usize) -> MemoryBroker {
        MemoryBroker {
            streams: DashMap::new(),
            presence: DashMap::new(),
            handler: OnceLock::new(),
            history_size: history_size.max(1),
        }
    }

    fn stream(&self, session: SessionId) -> Arc<Mutex<Stream>> {
        if let Some(s) = self.streams.get(&session) {
            return s.clone();
        }
        self.stream_from(
            session,
            StreamPosition {
                epoch: Epoch::random(),
                seq: 0,
            },
        )
    }

    /// The session's stream, begun at `at` if it has none.
    fn stream_from(&self, session: SessionId, at: StreamPosition) -> Arc<Mutex<Stream>> {
        self.streams
            .entry(session)
            .or_insert_with(|| {
                Arc::new(Mutex::new(Stream {
                    epoch: at.epoch,
                    seq: at.seq,
                    ring: VecDeque::new(),
                }))
            })
            .clone()
    }
}

#[async_trait]
impl Broker for MemoryBroker {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn attach(&self, handler: Arc<dyn BrokerHandler>) {
        let _ = self.handler.set(handler);
    }

    async fn publish_many(
        &self,
        session: SessionId,
        events: Vec<(Event, Origin)>,
        ts: u64,
        condition: Condition,
    ) -> Result<Vec<Arc<Published>>, BrokerError> {
        let stream = self.stream(session);
        let mut s = stream.lock();
        if let Condition::SeqIs(expected) = condition
            && s.seq != expected
        {
            return Err(BrokerError::Conflict { current: s.seq });
        }
        let mut published = Vec::with_capacity(events.len());
        for (event, origin) in events {
            s.seq += 1;
            let p = Arc::new(Published::new(session, s.seq, ts, event, origin));
            if s.ring.len() == self.history_size {
                s.ring.pop_front();
            }
            s.ring.push_back(p.clone());
            // Delivered under the stream lock: this is what orders the
            // handler's view of the session.
            if let Some(h) = self.handler.get() {
                h.on_publication(p.clone());
            }
            published.push(p);
        }
        Ok(published)
    }

    async fn position(&self, session: SessionId) -> Result<Option<StreamPosition>, BrokerError> {
        Ok(self.streams.get(&session).map(|stream| {
            let s = stream.lock();
            StreamPosition {
                epoch: s.epoch,
                seq: s.seq,
            }
        }))
    }

    /// One process holds every replica, so the base needs no keeping: only
    /// its position is taken.
    async fn begin(
        &self,
        session: SessionId,
        base: Checkpoint,
    ) -> Result<StreamPosition, BrokerError> {
        let stream = self.stream_from(session, base.position);
        let s = stream.lock();
        Ok(StreamPosition {
            epoch: s.epoch,
            seq: s.seq,
        })
    }

    async fn history(
        &self,
        session: SessionId,
        after: Seq,
        limit: usize,
    ) -> Result<HistoryPage, BrokerError> {
        let stream = self.stream(session);
        let s = stream.lock();
        let first = s.ring.front().map(|p| p.seq).unwrap_or(s.seq + 1);
        if after + 1 < first {
            return Err(BrokerError::Trimmed { after });
        }
        let events = s
            .ring
            .iter()
            .filter(|p| p.seq > after)
            .take(limit)
            .cloned()
            .collect();
        Ok(HistoryPage {
            epoch: s.epoch,
            top: s.seq,
            events,
        })
    }

    async fn watch(&self, session: SessionId, from: StreamPosition) -> Result<(), BrokerError> {
        // Publications between the caller's `position()` and now reached
        // the handler before the caller's replica existed; hand them over
        // again (the replica skips what it has).
        let stream = self.stream(session);
        let s = stream.lock();
        if s.epoch == from.epoch
            && let Some(h) = self.handler.get()
        {
            for p in s.ring.iter().filter(|p| p.seq > from.seq) {
                h.on_publication(p.clone());
            }
        }
        Ok(())
    }

    async fn unwatch(&self, _session: SessionId) -> Result<(), BrokerError> {
        Ok(())
    }

    async fn presence_join(&self, session: SessionId, member: &str) -> Result<bool, BrokerError> {
        let mut members = self.presence.entry(session).or_default();
        let n = members.entry(member.to_owned()).or_insert(0);
        *n += 1;
        Ok(*n == 1)
    }

    async fn presence_leave(&self, session: SessionId, member: &str) -> Result<bool, BrokerError> {
        let Some(mut members) = self.presence.get_mut(&session) else {
            return Ok(false);
        };
        let last = match members.get_mut(member) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => {
                members.remove(member);
                true
            }
            None => false,
        };
        Ok(last)
    }

    async fn remove(&self, session: SessionId) -> Result<(), BrokerError> {
        self.streams.remove(&session);
        self.presence.remove(&session);
        Ok(())
    }

    async fn ping(&self) -> Result<(), BrokerError> {
        Ok(())
    }
}
