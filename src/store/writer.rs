//! The batch writer: group commit in front of any [`Store`].
//!
//! Senders submit rows; a flusher task gathers everything pending in its
//! lane (up to `batch_max_rows` in a session lane, `metric_batch_max_rows`
//! in the metric lane, or whatever arrived within
//! `flush_interval` of the first row) and writes it as one transaction.
//! Acknowledgements of must-keep rows are sent only after that
//! transaction commits, so an acknowledged row is never lost.
//!
//! The backlog (rows admitted but not yet committed) is bounded in rows and
//! bytes. When it is full, must-keep submissions are refused with a
//! retry-after and the sender keeps its message; droppable rows (metrics,
//! state snapshots) are dropped and counted. While the database fails, the
//! flusher retries the same batch with exponential backoff, and the
//! backlog drains when it returns.
//!
//! Every submission names the session it belongs to ([`Order`]). One
//! session's batches are written one at a time, in submission order, so a
//! row that updates another (an intervention's end, an alert's
//! acknowledgement, a participant leaving) is never written before it,
//! and an empty submission works as a barrier: it completes once
//! everything the session submitted before it has committed. Sessions are
//! spread by a hash of their id over `ordered_writers` lanes, each with a
//! flusher of its own: nothing one session writes refers to another's
//! rows, so lanes commit side by side and the database works on several
//! transactions at once instead of waiting for each commit. A submission
//! that belongs to no one session ([`Order::All`]) is a fence: it is
//! written once every lane has committed what was submitted before it,
//! and no lane writes what was submitted after it until it has committed.
//! A batch the store rejects is written again one submission at a time,
//! so one bad message fails alone.
//!
//! Performance metrics have a lane of their own: append-only, droppable,
//! never acknowledged and never referred to by another row, they are the
//! bulk of what is written, and `metric_writers` flushers write them side
//! by side, in no particular order.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{Notify, oneshot};

use super::{Row, Store, StoreError};
use crate::config::StoreSettings;
use crate::connection::outbox::Outbox;
use crate::ids::SessionId;
use crate::metrics as m;

/// Settings of the writer; see `[store]` in `config/default.toml`.
#[derive(Clone, Debug)]
pub struct WriterConfig {
    /// Rows per batch in the sessions' lanes; 0 chooses by the store
    /// (see [`WriterConfig::for_store`]).
    pub batch_max_rows: usize,
    /// Rows per batch in the metric lane.
    pub metric_batch_max_rows: usize,
    /// Lanes that sessions are spread over, each written by a flusher of
    /// its own.
    pub ordered_writers: usize,
    /// Flushers that write metric-only submissions side by side.
    pub metric_writers: usize,
    pub flush_interval: Duration,
    pub backlog_max_rows: usize,
    pub backlog_max_bytes: usize,
    pub retry_initial: Duration,
    pub retry_max: Duration,
}

impl WriterConfig {
    /// The settings as the writer applies them to a store that does (or
    /// does not) commit transactions side by side: a store that writes
    /// through one connection (SQLite) gets one lane of each kind, since
    /// more would only queue, and `batch_max_rows` 0 becomes the batch
    /// size that suits the store.
    pub fn for_store(mut self, parallel_writes: bool) -> WriterConfig {
        if parallel_writes {
            self.ordered_writers = self.ordered_writers.max(1);
            self.metric_writers = self.metric_writers.max(1);
        } else {
            self.ordered_writers = 1;
            self.metric_writers = 1;
        }
        if self.batch_max_rows == 0 {
            self.batch_max_rows = if parallel_writes {
                SIDE_BY_SIDE_BATCH_ROWS
            } else {
                ONE_LANE_BATCH_ROWS
            };
        }
        self.metric_batch_max_rows = self.metric_batch_max_rows.max(1);
        self
    }

    pub fn from_settings(s: &StoreSettings) -> WriterConfig {
        let ms = Duration::from_millis;
        WriterConfig {
            batch_max_rows: s.batch_max_rows,
            metric_batch_max_rows: s.metric_batch_max_rows,
            ordered_writers: s.ordered_writers.max(1),
            metric_writers: s.metric_writers.max(1),
            flush_interval: ms(s.flush_interval_ms),
            backlog_max_rows: s.backlog_max_rows,
            backlog_max_bytes: s.backlog_max_bytes,
            retry_initial: ms(s.retry_initial_ms.max(1)),
            retry_max: ms(s.retry_max_ms.max(1)),
        }
    }
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            batch_max_rows: 0,
            metric_batch_max_rows: 5000,
            ordered_writers: 4,
            metric_writers: 2,
            flush_interval: Duration::from_millis(5),
            backlog_max_rows: 200_000,
            backlog_max_bytes: 64 << 20,
            retry_initial: Duration::from_millis(50),
            retry_max: Duration::from_secs(2),
        }
    }
}

/// What to do once a submission commits.
#[derive(Debug)]
pub enum Ack {
    /// Push this (already encoded) frame to a connection, if it still
    /// exists. On failure, push `on_error` instead.
    Frame {
        outbox: Weak<Outbox>,
        frame: Bytes,
        on_error: Bytes,
    },
    /// Wake a waiting REST handler.
    Notify(oneshot::Sender<Result<(), StoreError>>),
}

impl Ack {
    /// An ack that wakes the returned [`Committed`] once the rows commit
    /// (or fail for good): how a REST answer waits for its rows.
    pub fn notify() -> (Ack, Committed) {
        let (tx, rx) = oneshot::channel();
        (Ack::Notify(tx), Committed(rx))
    }

    fn complete(self, result: Result<(), StoreError>) {
        match self {
            Ack::Frame {
                outbox,
                frame,
                on_error,
            } => {
                // The ordinary lane: the event this acknowledges was queued
                // when it was published, so the ack always follows it.
                if let Some(o) = outbox.upgrade() {
                    o.push(if result.is_ok() { frame } else { on_error }, None, 0);
                }
            }
            Ack::Notify(tx) => {
                let _ = tx.send(result);
            }
        }
    }
}

/// Completes once the rows of an [`Ack::notify`] submission commit.
#[derive(Debug)]
pub struct Committed(oneshot::Receiver<Result<(), StoreError>>);

impl Committed {
    /// # Errors
    /// The store rejected the rows, or the writer stopped before they
    /// committed.
    pub async fn wait(self) -> Result<(), StoreError> {
        match self.0.await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Unavailable("the store writer stopped".into())),
        }
    }
}

/// Backlog room held for one message. Submitting consumes it; dropping it
/// unused gives the room back.
#[derive(Debug)]
pub struct Reservation {
    writer: BatchWriter,
    rows: usize,
    bytes: usize,
}

impl Reservation {
    /// Queues the rows in `order`; `ack` completes after they commit. The
    /// real rows replace the estimate the reservation was made with.
    pub fn submit(mut self, order: Order, rows: Vec<Row>, ack: Option<Ack>) {
        let weight: usize = rows.iter().map(Row::weight).sum();
        {
            let mut b = self.writer.shared.backlog.lock();
            b.rows = b.rows - self.rows + rows.len();
            b.bytes = b.bytes - self.bytes + weight;
        }
        self.rows = 0;
        self.bytes = 0;
        self.writer.enqueue(
            order,
            Pending {
                rows,
                weight,
                ack,
                queued_at: Instant::now(),
                fence: None,
            },
        );
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.rows > 0 || self.bytes > 0 {
            self.writer.release(self.rows, self.bytes);
        }
    }
}

/// The backlog is full; retry after this long.
#[derive(Clone, Copy, Debug, thiserror::Error)]
#[error("the durable backlog is full; retry after {retry_after:?}")]
pub struct BacklogFull {
    pub retry_after: Duration,
}

/// What a submission must stay in order with (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Commits after every earlier submission of this session and before
    /// every later one.
    Session(SessionId),
    /// Commits after every earlier submission and before every later one,
    /// whatever their session: for rows that belong to no one session.
    All,
}

#[derive(Debug)]
struct Pending {
    rows: Vec<Row>,
    weight: usize,
    ack: Option<Ack>,
    queued_at: Instant,
    /// Set on an [`Order::All`] submission and on its markers.
    fence: Option<Arc<Fence>>,
}

impl Pending {
    /// Holds a lane at an [`Order::All`] submission's place until that
    /// submission has committed.
    fn marker(fence: Arc<Fence>) -> Pending {
        Pending {
            rows: Vec::new(),
            weight: 0,
            ack: None,
            queued_at: Instant::now(),
            fence: Some(fence),
        }
    }

    /// Metric rows alone, acknowledged to no one: the metrics lane's.
    fn is_metrics(&self) -> bool {
        self.ack.is_none()
            && !self.rows.is_empty()
            && self.rows.iter().all(|r| matches!(r, Row::Metric(_)))
    }
}

/// Where an [`Order::All`] submission meets the other ordered lanes. The
/// submission is queued in the first ordered lane and an empty marker in
/// each of the others, all under one lock, so every lane sees fences in
/// the same order.
#[derive(Debug)]
struct Fence {
    /// Lanes whose flusher has not yet reached its marker, that is, not
    /// yet committed everything queued in it before the fence.
    waiting: AtomicUsize,
    /// The submission has committed (or failed for good).
    passed: AtomicBool,
    changed: Notify,
}

impl Fence {
    fn new(waiting: usize) -> Fence {
        Fence {
            waiting: AtomicUsize::new(waiting),
            passed: AtomicBool::new(false),
            changed: Notify::new(),
        }
    }

    /// A marker's lane has written everything before the marker.
    fn arrive(&self) {
        if self.waiting.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.changed.notify_waiters();
        }
    }

    fn pass(&self) {
        self.passed.store(true, Ordering::Release);
        self.changed.notify_waiters();
    }

    async fn until(&self, done: impl Fn(&Fence) -> bool) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Registered before the check, so a change between the two
            // still wakes it.
            changed.as_mut().enable();
            if done(self) {
                return;
            }
            changed.await;
        }
    }
}

/// The metrics lane's index in [`Backlog::queues`] and [`Shared::wake`];
/// the ordered lanes follow it.
const METRICS: usize = 0;

/// Rows per batch of a session lane when `batch_max_rows` is 0. Where
/// lanes commit side by side (PostgreSQL), four 5,000-row transactions
/// share the cores and the flush p99 grew to 240–280 ms; 1,000-row batches
/// kept it at 65–85 ms for the same rows per second. Where one connection
/// writes everything (SQLite), nothing shares it and each commit costs a
/// sync, so 1,000-row batches halved the rows per second (store-bench,
/// 2026-12-07).
const SIDE_BY_SIDE_BATCH_ROWS: usize = 1000;
const ONE_LANE_BATCH_ROWS: usize = 5000;
const FIRST_ORDERED: usize = 1;

#[derive(Debug, Default)]
struct Queue {
    pending: VecDeque<Pending>,
    /// Rows in `pending`.
    rows: usize,
}

#[derive(Debug)]
struct Backlog {
    /// One queue per lane: metrics, then the ordered lanes.
    queues: Vec<Queue>,
    /// Rows and bytes admitted and not yet committed (reserved, queued or
    /// in flight), in every lane.
    rows: usize,
    bytes: usize,
}

#[derive(Debug)]
struct Shared {
    store: Arc<dyn Store>,
    config: WriterConfig,
    backlog: Mutex<Backlog>,
    /// Ordered lanes.
    ordered: usize,
    /// Wakes a lane's flushers; one per lane, indexed as the queues.
    wake: Vec<Notify>,
    /// Set once shutdown begins: new submissions are refused.
    closed: AtomicBool,
    /// Current retry delay in ms while the store fails, 0 when healthy.
    failing_ms: AtomicU64,
    /// Signalled after every commit, and when a flusher exits.
    progress: Notify,
    /// Flushers still running.
    flushers: AtomicUsize,
    /// Signalled after a commit that queued webhook deliveries.
    webhooks_committed: Notify,
}

/// Handle to the writer. Cheap to clone.
#[derive(Clone, Debug)]
pub struct BatchWriter {
    shared: Arc<Shared>,
}

impl BatchWriter {
    /// Starts the flusher tasks: one per ordered lane, and
    /// `metric_writers` for metrics, as [`WriterConfig::for_store`]
    /// settles them for `store`.
    pub fn start(store: Arc<dyn Store>, config: WriterConfig) -> BatchWriter {
        let config = config.for_store(store.parallel_writes());
        let (ordered, metric_writers) = (config.ordered_writers, config.metric_writers);
        let lanes = FIRST_ORDERED + ordered;
        let shared = Arc::new(Shared {
            store,
            config,
            backlog: Mutex::new(Backlog {
                queues: (0..lanes).map(|_| Queue::default()).collect(),
                rows: 0,
                bytes: 0,
            }),
            ordered,
            wake: (0..lanes).map(|_| Notify::new()).collect(),
            closed: AtomicBool::new(false),
            failing_ms: AtomicU64::new(0),
            progress: Notify::new(),
            flushers: AtomicUsize::new(ordered + metric_writers),
            webhooks_committed: Notify::new(),
        });
        for lane in FIRST_ORDERED..lanes {
            tokio::spawn(flusher(shared.clone(), lane));
        }
        for _ in 0..metric_writers {
            tokio::spawn(flusher(shared.clone(), METRICS));
        }
        BatchWriter { shared }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.shared.store
    }

    /// Whether the last flush failed (the store is unreachable).
    pub fn is_failing(&self) -> bool {
        self.shared.failing_ms.load(Ordering::Relaxed) > 0
    }

    /// Resolves after a batch with webhook events commits (at once if
    /// one committed since the last call): the webhook dispatcher's cue
    /// to claim the new deliveries.
    pub async fn webhooks_committed(&self) {
        self.shared.webhooks_committed.notified().await
    }

    /// Rows admitted but not yet committed.
    pub fn backlog_rows(&self) -> usize {
        self.shared.backlog.lock().rows
    }

    fn retry_after(&self) -> Duration {
        let failing = self.shared.failing_ms.load(Ordering::Relaxed);
        if failing > 0 {
            Duration::from_millis(failing.max(100))
        } else {
            (self.shared.config.flush_interval * 4).max(Duration::from_millis(50))
        }
    }

    /// Counts `rows` and `bytes` into the backlog. A forced admission is
    /// always counted, even while closing, so its reservation can give the
    /// room back or submit without the counts going below zero.
    fn admit(&self, rows: usize, bytes: usize, force: bool) -> Result<(), BacklogFull> {
        let mut b = self.shared.backlog.lock();
        let c = &self.shared.config;
        let full = b.rows + rows > c.backlog_max_rows || b.bytes + bytes > c.backlog_max_bytes;
        if !force && (self.shared.closed.load(Ordering::Relaxed) || full) {
            drop(b);
            m::store_backlog_refused();
            return Err(BacklogFull {
                retry_after: self.retry_after(),
            });
        }
        b.rows += rows;
        b.bytes += bytes;
        Ok(())
    }

    /// Reserves backlog room for a must-keep message before anything is
    /// published, so that once the event exists its rows are always
    /// accepted. Refused with a retry-after when the backlog is full: the
    /// sender keeps its message.
    pub fn reserve(&self, rows: usize, bytes: usize) -> Result<Reservation, BacklogFull> {
        self.admit(rows, bytes, false)?;
        Ok(Reservation {
            writer: self.clone(),
            rows,
            bytes,
        })
    }

    /// Reserves room even past the bound. Only for emergency stops, which
    /// are never refused.
    pub fn reserve_forced(&self, rows: usize, bytes: usize) -> Reservation {
        // A forced admission cannot fail.
        let _ = self.admit(rows, bytes, true);
        Reservation {
            writer: self.clone(),
            rows,
            bytes,
        }
    }

    fn enqueue(&self, order: Order, mut pending: Pending) {
        let shared = &self.shared;
        let lane = match order {
            _ if pending.is_metrics() => METRICS,
            Order::Session(id) => shared.lane_of(id),
            Order::All => {
                let fence = Arc::new(Fence::new(shared.ordered - 1));
                pending.fence = Some(fence.clone());
                let mut b = shared.backlog.lock();
                for q in &mut b.queues[FIRST_ORDERED + 1..] {
                    q.push(Pending::marker(fence.clone()));
                }
                b.queues[FIRST_ORDERED].push(pending);
                drop(b);
                for wake in &shared.wake[FIRST_ORDERED..] {
                    wake.notify_one();
                }
                return;
            }
        };
        shared.backlog.lock().queues[lane].push(pending);
        shared.wake[lane].notify_one();
    }

    fn release(&self, rows: usize, bytes: usize) {
        {
            let mut b = self.shared.backlog.lock();
            b.rows -= rows;
            b.bytes -= bytes;
        }
        // A closing flusher waits for outstanding reservations.
        self.shared.wake_all();
    }

    /// Submits rows in one go (reserve and submit). Refused with a
    /// retry-after when the backlog is full.
    pub fn submit(
        &self,
        order: Order,
        rows: Vec<Row>,
        ack: Option<Ack>,
    ) -> Result<(), BacklogFull> {
        let weight: usize = rows.iter().map(Row::weight).sum();
        self.reserve(rows.len(), weight)?.submit(order, rows, ack);
        Ok(())
    }

    /// Submits droppable rows (metrics, state snapshots). Dropped and
    /// counted when the backlog is full.
    pub fn offer(&self, order: Order, rows: Vec<Row>) {
        let n = rows.len();
        let kind = rows.first().map(Row::kind).unwrap_or("none");
        if self.submit(order, rows, None).is_err() {
            m::store_rows_dropped(kind, n as u64);
        }
    }

    /// Stops accepting rows and waits until the backlog is written or the
    /// deadline passes. Returns the rows left unwritten.
    pub async fn shutdown(&self, deadline: Instant) -> usize {
        self.shared.closed.store(true, Ordering::Relaxed);
        self.shared.wake_all();
        loop {
            let progressed = self.shared.progress.notified();
            let left = self.shared.backlog.lock().rows;
            if left == 0 || self.shared.flushers.load(Ordering::Relaxed) == 0 {
                return left;
            }
            let now = Instant::now();
            if now >= deadline {
                return left;
            }
            let _ = tokio::time::timeout(deadline - now, progressed).await;
        }
    }
}

impl Queue {
    fn push(&mut self, pending: Pending) {
        self.rows += pending.rows.len();
        self.pending.push_back(pending);
    }
}

impl Shared {
    /// The ordered lane of a session's submissions. (Session ids are
    /// UUIDs whose low bits are random.)
    fn lane_of(&self, session: SessionId) -> usize {
        let id = session.0.as_u128();
        let mixed = ((id as u64) ^ ((id >> 64) as u64)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        FIRST_ORDERED + ((mixed >> 32) as usize) % self.ordered
    }

    /// Wakes every flusher (closing, or backlog room given back).
    fn wake_all(&self) {
        for wake in &self.wake {
            // Flushers of one lane share a `Notify`: wake each of them.
            wake.notify_waiters();
            wake.notify_one();
        }
    }
}

/// Writes one lane's batches until the writer closes and every admitted
/// row is committed.
async fn flusher(shared: Arc<Shared>, lane: usize) {
    let config = shared.config.clone();
    // Metric rows are append-only and nobody waits on them, so their
    // batches are larger: fewer transactions for the same rows. A session
    // lane's batch holds acknowledgements back until it commits.
    let batch_max_rows = if lane == METRICS {
        config.metric_batch_max_rows
    } else {
        config.batch_max_rows
    };
    let wake = &shared.wake[lane];
    let mut rows: Vec<Row> = Vec::new();
    let mut spans: Vec<(Range<usize>, Option<Ack>)> = Vec::new();
    loop {
        // Wait for the first submission. Once closing, exit when nothing is
        // queued and nothing is reserved: every admitted row was written.
        let oldest = loop {
            let notified = wake.notified();
            {
                let b = shared.backlog.lock();
                if let Some(p) = b.queues[lane].pending.front() {
                    break p.queued_at;
                }
                if shared.closed.load(Ordering::Relaxed) && b.rows == 0 {
                    drop(b);
                    shared.flushers.fetch_sub(1, Ordering::Relaxed);
                    shared.progress.notify_waiters();
                    shared.wake_all();
                    return;
                }
            }
            notified.await;
        };
        // Group commit: whatever arrives within `flush_interval` of the
        // oldest waiting submission joins its batch. Submissions that
        // queued up during the previous write have waited long enough and
        // go at once.
        let window_end = tokio::time::Instant::from_std(oldest + config.flush_interval);
        loop {
            let notified = wake.notified();
            let queued = shared.backlog.lock().queues[lane].rows;
            if queued >= batch_max_rows || shared.closed.load(Ordering::Relaxed) {
                break;
            }
            if tokio::time::timeout_at(window_end, notified).await.is_err() {
                break;
            }
        }
        // Take whole submissions up to the batch size. A fence (an
        // `Order::All` submission or its marker) goes in a batch alone.
        let mut weight = 0;
        let mut fence = None;
        {
            let mut b = shared.backlog.lock();
            let q = &mut b.queues[lane];
            while let Some(p) = q.pending.front() {
                if p.fence.is_some() && !spans.is_empty() {
                    break;
                }
                if !rows.is_empty() && rows.len() + p.rows.len() > batch_max_rows {
                    break;
                }
                let p = q.pending.pop_front().expect("front exists");
                q.rows -= p.rows.len();
                weight += p.weight;
                let start = rows.len();
                rows.extend(p.rows);
                spans.push((start..rows.len(), p.ack));
                if p.fence.is_some() {
                    fence = p.fence;
                    break;
                }
            }
            if !q.pending.is_empty() {
                // More than one batch waits: another flusher of the lane
                // may take the next while this one writes.
                wake.notify_one();
            }
        }
        if spans.is_empty() {
            // Another flusher of the lane took them. (An empty submission,
            // a barrier, still counts: its ack completes below.)
            continue;
        }
        if let Some(fence) = &fence {
            if lane != FIRST_ORDERED {
                // A marker: everything this lane queued before the fence
                // has committed. Hold the lane until the fenced
                // submission has.
                fence.arrive();
                fence.until(|f| f.passed.load(Ordering::Acquire)).await;
                spans.clear();
                continue;
            }
            fence
                .until(|f| f.waiting.load(Ordering::Acquire) == 0)
                .await;
        }
        let results = write_batch(&shared, &rows, &spans).await;
        if rows.iter().any(|r| matches!(r, Row::Webhook(_))) {
            shared.webhooks_committed.notify_one();
        }
        let drained = {
            let mut b = shared.backlog.lock();
            b.rows -= rows.len();
            b.bytes -= weight;
            m::store_backlog(b.rows);
            b.rows == 0
        };
        for ((_, ack), result) in spans.drain(..).zip(results) {
            if let Some(ack) = ack {
                ack.complete(result);
            }
        }
        rows.clear();
        if let Some(fence) = fence {
            fence.pass();
        }
        shared.progress.notify_waiters();
        if drained && shared.closed.load(Ordering::Relaxed) {
            // The other lanes' flushers may be waiting for this.
            shared.wake_all();
        }
    }
}

/// Writes one batch; returns one result per submission. If the store
/// rejects the batch, each submission is written on its own, so only the
/// bad ones fail.
async fn write_batch(
    shared: &Shared,
    rows: &[Row],
    spans: &[(Range<usize>, Option<Ack>)],
) -> Vec<Result<(), StoreError>> {
    match write_with_retry(shared, rows).await {
        Ok(()) => spans.iter().map(|_| Ok(())).collect(),
        Err(e) if spans.len() == 1 => {
            drop_rejected(rows, &e);
            vec![Err(e)]
        }
        Err(e) => {
            tracing::error!(error = %e, rows = rows.len(), submissions = spans.len(),
                "store rejected a batch; writing its submissions one by one");
            let mut results = Vec::with_capacity(spans.len());
            for (span, _) in spans {
                let part = &rows[span.clone()];
                let result = write_with_retry(shared, part).await;
                if let Err(e) = &result {
                    drop_rejected(part, e);
                }
                results.push(result);
            }
            results
        }
    }
}

/// Logs and counts rows the store refused for good.
fn drop_rejected(rows: &[Row], e: &StoreError) {
    tracing::error!(error = %e, rows = rows.len(), kind = rows.first().map_or("none", Row::kind),
        "store rejected rows; dropping them");
    for row in rows {
        m::store_rows_dropped(row.kind(), 1);
    }
}

/// Writes rows in one transaction, retrying with backoff while the store
/// is unavailable. Returns only on commit or rejection.
async fn write_with_retry(shared: &Shared, rows: &[Row]) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let config = &shared.config;
    let mut delay = config.retry_initial;
    loop {
        let started = Instant::now();
        match shared.store.write_batch(rows).await {
            Ok(()) => {
                m::store_flush(rows.len(), started.elapsed());
                shared.failing_ms.store(0, Ordering::Relaxed);
                return Ok(());
            }
            Err(StoreError::Unavailable(e)) => {
                m::store_flush_failed();
                shared
                    .failing_ms
                    .store(delay.as_millis() as u64, Ordering::Relaxed);
                tracing::warn!(error = %e, rows = rows.len(), retry_in = ?delay, "store flush failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(config.retry_max);
            }
            Err(e @ StoreError::Rejected(_)) => return Err(e),
        }
    }
}
