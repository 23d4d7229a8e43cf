//! Group commit for inbound events: concurrent deliveries are recorded
//! together, one statement and one commit per batch.
//!
//! Recording an event is the one store write an ingest request waits for
//! before it knows whether it is new. Written one by one, each request
//! holds a pooled connection through its own commit, and the pool (not
//! the database) sets the throughput. Here one task takes everything
//! queued while the previous batch was being written and records it in
//! one call to [`IngestStore::record_processed_events`]: an idle hub
//! writes at once, a busy one writes bigger batches. No timer: the
//! batch's latency is the previous batch's commit, never a wait for
//! company. A few batches are written at once ([`WORKERS`]), so a
//! batch's round trips (the insert's commit, then the read of the rows a
//! duplicate conflicted with) overlap with the next batch's; the store's
//! unique hash keeps concurrent batches exact.
//!
//! Vendors redeliver what they think was lost, usually soon after (a
//! timeout, a 5xx), so the hashes of the last [`RECENT`] events recorded
//! on this node are kept with their stored rows and a redelivery of one is
//! answered without a round trip. That is exact: a row is remembered only
//! after its commit, and a recorded event is never changed or deleted.
//! Another node's redelivery, or an older one, goes to the store as
//! before.

use std::sync::Arc;

use tokio::sync::{Mutex, mpsc, oneshot};

use super::{IngestStore, ProcessedEvent, Recorded};
use crate::recent::RecentMap;
use crate::store::StoreError;

/// Events recorded per call at most.
const BATCH_MAX: usize = 512;
/// Requests waiting for a batch; senders wait when it is full.
const QUEUE: usize = 4096;
/// Batches written at the same time.
const WORKERS: usize = 4;
/// Recorded events remembered by hash (a few MiB at most).
const RECENT: usize = 4096;

type Recent = Arc<parking_lot::Mutex<RecentMap<String, ProcessedEvent>>>;

type Reply = oneshot::Sender<Result<Recorded, StoreError>>;

/// A handle to the recording task; cheap to clone. The task ends when
/// every handle is dropped.
#[derive(Clone, Debug)]
pub struct Recorder {
    tx: mpsc::Sender<(ProcessedEvent, Reply)>,
    recent: Recent,
}

impl Recorder {
    /// Starts the recording task on the current runtime.
    pub fn start(store: Arc<dyn IngestStore>) -> Recorder {
        let (tx, rx) = mpsc::channel(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        let recent: Recent = Arc::new(parking_lot::Mutex::new(RecentMap::new(RECENT)));
        for _ in 0..WORKERS {
            tokio::spawn(run(store.clone(), rx.clone(), recent.clone()));
        }
        Recorder { tx, recent }
    }

    /// Records one event with whatever else is waiting.
    ///
    /// # Errors
    /// The store failed; nothing of this event was recorded, and a retry
    /// is safe.
    pub async fn record(&self, event: ProcessedEvent) -> Result<Recorded, StoreError> {
        if let Some(stored) = self.recent.lock().get(&event.event_hash) {
            return Ok(Recorded::Duplicate(stored.clone()));
        }
        let stopped = || StoreError::Unavailable("the ingest recorder stopped".into());
        let (reply, answer) = oneshot::channel();
        self.tx.send((event, reply)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

type Queue = Arc<Mutex<mpsc::Receiver<(ProcessedEvent, Reply)>>>;

/// One worker: takes what is queued (waiting its turn behind the other
/// workers for the queue, not for their writes) and records it.
async fn run(store: Arc<dyn IngestStore>, rx: Queue, recent: Recent) {
    let mut waiting = Vec::with_capacity(BATCH_MAX);
    loop {
        if rx.lock().await.recv_many(&mut waiting, BATCH_MAX).await == 0 {
            return;
        }
        let (events, replies): (Vec<_>, Vec<_>) = waiting.drain(..).unzip();
        match store.record_processed_events(&events).await {
            Ok(answers) => {
                remember(&recent, &answers);
                for (reply, answer) in replies.into_iter().zip(answers) {
                    let _ = reply.send(Ok(answer));
                }
            }
            // A rejected batch is recorded again one event at a time, so
            // a bad event fails alone.
            Err(StoreError::Rejected(_)) if events.len() > 1 => {
                for (event, reply) in events.iter().zip(replies) {
                    let answer = store.record_processed_event(event).await;
                    if let Ok(a) = &answer {
                        remember(&recent, std::slice::from_ref(a));
                    }
                    let _ = reply.send(answer);
                }
            }
            Err(e) => {
                let message = e.to_string();
                for reply in replies {
                    let _ = reply.send(Err(match &e {
                        StoreError::Rejected(_) => StoreError::Rejected(message.clone()),
                        StoreError::Unavailable(_) => StoreError::Unavailable(message.clone()),
                    }));
                }
            }
        }
    }
}

/// Keeps committed rows by hash for the next redelivery.
fn remember(recent: &Recent, answers: &[Recorded]) {
    let mut recent = recent.lock();
    for answer in answers {
        let (Recorded::New(e) | Recorded::Duplicate(e)) = answer;
        recent.insert(e.event_hash.clone(), e.clone());
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use serde_json::json;
    use uuid::Uuid;

    use super::*;
    use crate::store::memory::MemoryStore;

    fn event(hash: &str) -> ProcessedEvent {
        ProcessedEvent {
            id: Uuid::now_v7(),
            source: "generic".into(),
            conversation_id: "conv-1".into(),
            event_type: "utterance".into(),
            event_data: json!({"event_type": "utterance"}),
            event_hash: hash.into(),
            session: None,
            processed_at: DateTime::from_timestamp_micros(Utc::now().timestamp_micros())
                .expect("now"),
            processing_duration_ms: 1,
        }
    }

    #[tokio::test]
    async fn a_redelivery_is_answered_with_the_row_first_stored() {
        let recorder = Recorder::start(Arc::new(MemoryStore::new()));
        let first = match recorder.record(event("h1")).await.expect("recorded") {
            Recorded::New(e) => e,
            other => panic!("first delivery: {other:?}"),
        };
        // Answered from the recent hashes, then (another hash in between)
        // still the same row, never the redelivery's own id or time.
        for _ in 0..2 {
            let again = recorder.record(event("h1")).await.expect("recorded");
            assert_eq!(again, Recorded::Duplicate(first.clone()));
            assert!(matches!(
                recorder.record(event(&Uuid::now_v7().to_string())).await,
                Ok(Recorded::New(_))
            ));
        }
    }
}
