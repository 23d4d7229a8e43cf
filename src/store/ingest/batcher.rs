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

use std::sync::Arc;

use tokio::sync::{Mutex, mpsc, oneshot};

use super::{IngestStore, ProcessedEvent, Recorded};
use crate::store::StoreError;

/// Events recorded per call at most.
const BATCH_MAX: usize = 512;
/// Requests waiting for a batch; senders wait when it is full.
const QUEUE: usize = 4096;
/// Batches written at the same time.
const WORKERS: usize = 4;

type Reply = oneshot::Sender<Result<Recorded, StoreError>>;

/// A handle to the recording task; cheap to clone. The task ends when
/// every handle is dropped.
#[derive(Clone, Debug)]
pub struct Recorder {
    tx: mpsc::Sender<(ProcessedEvent, Reply)>,
}

impl Recorder {
    /// Starts the recording task on the current runtime.
    pub fn start(store: Arc<dyn IngestStore>) -> Recorder {
        let (tx, rx) = mpsc::channel(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..WORKERS {
            tokio::spawn(run(store.clone(), rx.clone()));
        }
        Recorder { tx }
    }

    /// Records one event with whatever else is waiting.
    ///
    /// # Errors
    /// The store failed; nothing of this event was recorded, and a retry
    /// is safe.
    pub async fn record(&self, event: ProcessedEvent) -> Result<Recorded, StoreError> {
        let stopped = || StoreError::Unavailable("the ingest recorder stopped".into());
        let (reply, answer) = oneshot::channel();
        self.tx.send((event, reply)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

type Queue = Arc<Mutex<mpsc::Receiver<(ProcessedEvent, Reply)>>>;

/// One worker: takes what is queued (waiting its turn behind the other
/// workers for the queue, not for their writes) and records it.
async fn run(store: Arc<dyn IngestStore>, rx: Queue) {
    let mut waiting = Vec::with_capacity(BATCH_MAX);
    loop {
        if rx.lock().await.recv_many(&mut waiting, BATCH_MAX).await == 0 {
            return;
        }
        let (events, replies): (Vec<_>, Vec<_>) = waiting.drain(..).unzip();
        match store.record_processed_events(&events).await {
            Ok(answers) => {
                for (reply, answer) in replies.into_iter().zip(answers) {
                    let _ = reply.send(Ok(answer));
                }
            }
            // A rejected batch is recorded again one event at a time, so
            // a bad event fails alone.
            Err(StoreError::Rejected(_)) if events.len() > 1 => {
                for (event, reply) in events.iter().zip(replies) {
                    let _ = reply.send(store.record_processed_event(event).await);
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
