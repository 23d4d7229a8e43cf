//! The outbound queue of one connection.
//!
//! Producers (session fan-out, acks, the heartbeat) push complete WebSocket
//! frames; the connection's single writer takes everything pending at once
//! and writes it with one vectored write. The queue is bounded in bytes:
//!
//! * past `conflate_after` bytes, a conflatable frame (state, context,
//!   metrics, counters) removes the older pending frame of the same slot, so
//!   a slow reader skips to the latest value without breaking `seq` order;
//! * past `max_bytes`, the connection is closed with the slow-consumer code
//!   and the pending frames are dropped to free their memory at once.
//!
//! The urgent lane (emergency stops, pongs, close replies) is written before
//! anything else that is pending.
//!
//! **Direct writes.** When nothing is pending and the writer is parked, a
//! push writes the frame to the socket itself (a non-blocking write)
//! instead of queueing it and waking the writer: a connection that keeps
//! up costs one syscall per frame and no task wake-up. Whatever the socket
//! does not take at once (a full send buffer) is queued, and the writer
//! takes over from there, so frames stay in order and a slow consumer is
//! handled as before. Several frames pushed back to back (a run of events
//! delivered together) are *held* instead: queued without a write, then
//! released with one vectored write for all of them.
//!
//! The lock is a `parking_lot` mutex held for a few instructions, or one
//! non-blocking write, and never across an `.await`.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::net::tcp::OwnedWriteHalf;

use crate::ids::SessionId;
use crate::protocol::CloseCode;
use crate::protocol::codec::close_frame;

/// Identifies a conflatable stream of frames: a session and a slot within it.
pub type SlotKey = (SessionId, u8);

#[derive(Clone, Copy, Debug)]
pub struct OutboxLimits {
    /// Hard limit on pending bytes; over it the consumer is disconnected.
    pub max_bytes: usize,
    /// Pending bytes past which conflatable frames replace older ones.
    pub conflate_after: usize,
}

/// One pending frame. `frame` is `None` once a newer frame of the same slot
/// replaced it.
#[derive(Debug)]
pub struct Item {
    pub frame: Option<Bytes>,
    /// When the hub accepted the event, on the [`crate::clock`] timeline;
    /// 0 for frames that are not events.
    pub accepted_us: u64,
}

/// What happened to a pushed frame.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Pushed {
    Queued,
    /// Queued, and an older frame of the same slot was dropped.
    Conflated,
    /// The queue overflowed: the connection is now closing as a slow
    /// consumer.
    Overflow,
    /// The connection is closing; the frame was dropped.
    Closed,
}

#[derive(Debug)]
struct Closing {
    frame: Option<Bytes>,
    code: Option<CloseCode>,
}

#[derive(Debug, Default)]
struct Queue {
    urgent: VecDeque<Bytes>,
    items: VecDeque<Item>,
    bytes: usize,
    /// Absolute position of `items[0]`; positions in `slots` are absolute so
    /// they stay valid while the front is drained.
    head: u64,
    /// Pending position of the latest frame per slot. Only filled while the
    /// queue is past the conflation threshold, so a fast consumer pays
    /// nothing for it. Boxed: 8 bytes instead of 48 on every idle
    /// connection.
    #[allow(clippy::box_collection)]
    slots: Option<Box<HashMap<SlotKey, u64>>>,
    /// Boxed for the same reason: only a closing connection has it.
    closing: Option<Box<Closing>>,
    /// The writer is parked and must be woken by the next push.
    waker: Option<Waker>,
    /// The connection task, waiting to learn that closing began.
    close_waiter: Option<Waker>,
    /// Buffers the writer gave back after its last batch; the next take
    /// hands them to the queue, so a steady stream allocates nothing.
    spare_urgent: VecDeque<Bytes>,
    spare_items: VecDeque<Item>,
    /// The writer took something since the last trim.
    active: bool,
    /// The writer holds a batch it has not finished writing: frames must
    /// queue behind it rather than go to the socket directly.
    writing: bool,
    /// Direct writes since the last latency sample.
    unsampled: u8,
    /// The socket while the connection runs: pushes write to it directly
    /// while the writer is idle.
    socket: Option<Arc<OwnedWriteHalf>>,
}

#[derive(Debug)]
pub struct Outbox {
    queue: Mutex<Queue>,
    limits: OutboxLimits,
    /// Mirror of `queue.bytes` for samplers that must not take the lock.
    queued_bytes: AtomicUsize,
}

/// What a direct write did with a frame.
enum Direct {
    /// Written whole.
    Sent,
    /// The socket took nothing or part of it: this is what is left.
    Rest(Bytes),
}

/// What the writer took in one go.
#[derive(Debug, Default)]
pub struct Batch {
    pub urgent: VecDeque<Bytes>,
    /// In order; on the last batch, the close frame (if any) is the last
    /// item.
    pub items: VecDeque<Item>,
    /// This is the last batch: write it, then shut the socket down. (A
    /// flag rather than the close frame itself: the batch lives in every
    /// connection's writer, and the frame would cost it 32 bytes.)
    pub last: bool,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.urgent.is_empty() && self.items.is_empty()
    }
}

impl Outbox {
    pub fn new(limits: OutboxLimits) -> Outbox {
        Outbox {
            queue: Mutex::new(Queue::default()),
            limits,
            queued_bytes: AtomicUsize::new(0),
        }
    }

    /// Lets pushes write to `socket` directly while the writer is idle.
    pub fn attach_socket(&self, socket: Arc<OwnedWriteHalf>) {
        self.queue.lock().socket = Some(socket);
    }

    /// The connection is over: the outbox lets go of the socket, so it
    /// closes even while others still hold the outbox.
    pub fn detach_socket(&self) {
        self.queue.lock().socket = None;
    }

    /// Writes `frame` to the socket now if nothing is ahead of it. `None`
    /// when it must queue (the writer is busy, or no socket).
    fn try_direct(q: &mut Queue, frame: &Bytes) -> Option<Direct> {
        if q.writing || !q.items.is_empty() || !q.urgent.is_empty() {
            return None;
        }
        let socket = q.socket.as_ref()?;
        match socket.try_write(frame) {
            Ok(n) if n == frame.len() => {
                crate::metrics::bytes_out(n);
                Some(Direct::Sent)
            }
            Ok(n) => {
                crate::metrics::bytes_out(n);
                Some(Direct::Rest(frame.slice(n..)))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Some(Direct::Rest(frame.clone())),
            // The writer meets the same error on its next write and ends
            // the connection; the frame waits for it like any other.
            Err(_) => None,
        }
    }

    /// One latency reading per 64 direct writes: per-delivery histograms
    /// would cost more than the write.
    fn sample_latency(q: &mut Queue, accepted_us: u64) {
        q.unsampled = q.unsampled.wrapping_add(1);
        if accepted_us > 0 && q.unsampled % 64 == 1 {
            crate::metrics::fanout_latency(crate::clock::since_us(accepted_us));
        }
    }

    /// Pending bytes, as of the last push or take.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes.load(Ordering::Relaxed)
    }

    /// Queues an event frame. `slot` names the conflation slot of
    /// conflatable kinds.
    pub fn push(&self, frame: Bytes, slot: Option<SlotKey>, accepted_us: u64) -> Pushed {
        self.push_as(frame, slot, accepted_us, true)
    }

    /// [`Outbox::push`] for one of several frames pushed back to back:
    /// queued without a direct write and without waking the writer, so
    /// that [`Outbox::release`] (which the caller must call after the
    /// last) hands them all to one vectored write instead of one syscall
    /// each.
    pub fn push_held(&self, frame: Bytes, slot: Option<SlotKey>, accepted_us: u64) -> Pushed {
        self.push_as(frame, slot, accepted_us, false)
    }

    /// Writes the frames [`Outbox::push_held`] queued, with one vectored
    /// write on the caller's task, as a direct write does, if the writer
    /// is idle. What the socket does not take, or what a busy writer must
    /// write after its batch, is left to the writer, which is woken.
    ///
    /// Writing here rather than waking every recipient's writer keeps a
    /// fan-out's work in the delivery task, which yields between small
    /// groups of connections: a thousand woken writers would all run
    /// before a frame read elsewhere (an emergency stop) is handled.
    pub fn release(&self) {
        let mut q = self.queue.lock();
        if q.items.is_empty() {
            return;
        }
        if !q.writing
            && q.urgent.is_empty()
            && q.closing.is_none()
            && let Some(socket) = q.socket.clone()
        {
            self.write_front(&mut q, &socket);
            if q.items.is_empty() {
                return;
            }
        }
        let waker = q.waker.take();
        drop(q);
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// One non-blocking vectored write of the front of the queue; drops
    /// what it wrote.
    fn write_front(&self, q: &mut Queue, socket: &OwnedWriteHalf) {
        let accepted_us = q.items.front().map_or(0, |i| i.accepted_us);
        let written = {
            let mut slices = [io::IoSlice::new(&[]); super::MAX_IOV];
            let mut k = 0;
            for f in q
                .items
                .iter()
                .filter_map(|i| i.frame.as_ref())
                .take(super::MAX_IOV)
            {
                slices[k] = io::IoSlice::new(f);
                k += 1;
            }
            socket.try_write_vectored(&slices[..k])
        };
        // An error or a full buffer: the writer meets it too and handles it.
        let Ok(mut left) = written else {
            return;
        };
        crate::metrics::bytes_out(left);
        while let Some(front) = q.items.front_mut() {
            match front.frame.as_mut() {
                // A frame replaced by a newer one of its slot.
                None => {}
                Some(f) if f.len() <= left => {
                    left -= f.len();
                    q.bytes -= f.len();
                }
                Some(f) => {
                    if left > 0 {
                        *f = f.slice(left..);
                        q.bytes -= left;
                        // Part of it is on the wire: the rest must go out
                        // next, whole, so it may no longer be conflated.
                        let head = q.head;
                        if let Some(slots) = q.slots.as_mut() {
                            slots.retain(|_, pos| *pos != head);
                        }
                    }
                    break;
                }
            }
            q.items.pop_front();
            q.head += 1;
        }
        self.queued_bytes.store(q.bytes, Ordering::Relaxed);
        Self::sample_latency(q, accepted_us);
    }

    fn push_as(&self, frame: Bytes, slot: Option<SlotKey>, accepted_us: u64, now: bool) -> Pushed {
        let len = frame.len();
        let mut q = self.queue.lock();
        if q.closing.is_some() {
            return Pushed::Closed;
        }
        let mut outcome = Pushed::Queued;
        if let Some(key) = slot
            && q.bytes >= self.limits.conflate_after
        {
            let pos = q.head + q.items.len() as u64;
            let slots = q.slots.get_or_insert_with(Default::default);
            if let Some(old) = slots.insert(key, pos) {
                let head = q.head;
                if old >= head {
                    let idx = (old - head) as usize;
                    if let Some(dropped) = q.items.get_mut(idx).and_then(|it| it.frame.take()) {
                        q.bytes -= dropped.len();
                        outcome = Pushed::Conflated;
                    }
                }
            }
        }
        let direct = if now {
            Self::try_direct(&mut q, &frame)
        } else {
            None
        };
        let frame = match direct {
            Some(Direct::Sent) => {
                Self::sample_latency(&mut q, accepted_us);
                return outcome;
            }
            // Part of it is on the wire: the rest must go out next, whole,
            // so it is never conflated away.
            Some(Direct::Rest(rest)) if rest.len() < len => {
                q.bytes += rest.len();
                q.items.push_back(Item {
                    frame: Some(rest),
                    accepted_us,
                });
                self.queued_bytes.store(q.bytes, Ordering::Relaxed);
                let waker = q.waker.take();
                drop(q);
                if let Some(w) = waker {
                    w.wake();
                }
                return outcome;
            }
            Some(Direct::Rest(whole)) => whole,
            None => frame,
        };
        if q.bytes + len > self.limits.max_bytes {
            drop(q);
            self.close_now(CloseCode::SlowConsumer);
            return Pushed::Overflow;
        }
        q.bytes += len;
        q.items.push_back(Item {
            frame: Some(frame),
            accepted_us,
        });
        self.queued_bytes.store(q.bytes, Ordering::Relaxed);
        let waker = if now { q.waker.take() } else { None };
        drop(q);
        if let Some(w) = waker {
            w.wake();
        }
        outcome
    }

    /// Queues a frame ahead of all pending events. Not bounded by
    /// `max_bytes`: urgent frames are few and small (emergency stops,
    /// pongs, close replies, pings).
    pub fn push_urgent(&self, frame: Bytes) -> bool {
        let mut q = self.queue.lock();
        if q.closing.is_some() {
            return false;
        }
        let frame = match Self::try_direct(&mut q, &frame) {
            Some(Direct::Sent) => return true,
            Some(Direct::Rest(rest)) => rest,
            None => frame,
        };
        q.urgent.push_back(frame);
        let waker = q.waker.take();
        drop(q);
        if let Some(w) = waker {
            w.wake();
        }
        true
    }

    /// Closes after writing what is pending, ending with a close frame.
    /// Returns false if the connection was already closing.
    pub fn close(&self, code: CloseCode) -> bool {
        self.begin_close(Closing {
            frame: Some(close_frame(code.code(), code.reason())),
            code: Some(code),
        })
    }

    /// Closes at once: pending events are dropped, then the close frame is
    /// written. Used when the pending frames are the problem.
    pub fn close_now(&self, code: CloseCode) -> bool {
        let mut q = self.queue.lock();
        if q.closing.is_some() {
            return false;
        }
        q.items.clear();
        q.bytes = 0;
        q.slots = None;
        q.closing = Some(Box::new(Closing {
            frame: Some(close_frame(code.code(), code.reason())),
            code: Some(code),
        }));
        self.queued_bytes.store(0, Ordering::Relaxed);
        let wakers = [q.waker.take(), q.close_waiter.take()];
        drop(q);
        wakers.into_iter().flatten().for_each(Waker::wake);
        true
    }

    /// Ends the connection after writing what is pending, without a close
    /// frame of our own (the close reply is already in the urgent lane).
    pub fn finish(&self) -> bool {
        self.begin_close(Closing {
            frame: None,
            code: None,
        })
    }

    fn begin_close(&self, closing: Closing) -> bool {
        let mut q = self.queue.lock();
        if q.closing.is_some() {
            return false;
        }
        q.closing = Some(Box::new(closing));
        let wakers = [q.waker.take(), q.close_waiter.take()];
        drop(q);
        wakers.into_iter().flatten().for_each(Waker::wake);
        true
    }

    /// Gives a written (empty) batch's buffers back for reuse, so the
    /// writer holds no memory while it waits.
    pub fn recycle(&self, batch: &mut Batch) {
        batch.urgent.clear();
        batch.items.clear();
        let mut q = self.queue.lock();
        q.spare_urgent = std::mem::take(&mut batch.urgent);
        q.spare_items = std::mem::take(&mut batch.items);
    }

    /// Frees the buffers of a connection that took nothing since the last
    /// call (the heartbeat sweep calls it): an idle connection holds no
    /// queue memory, a busy one keeps its buffers.
    pub fn trim_if_idle(&self) {
        let mut q = self.queue.lock();
        if std::mem::take(&mut q.active) {
            return;
        }
        q.spare_urgent = VecDeque::new();
        q.spare_items = VecDeque::new();
        if q.urgent.is_empty() {
            q.urgent = VecDeque::new();
        }
        if q.items.is_empty() {
            q.items = VecDeque::new();
        }
    }

    /// Ready once the connection has begun closing.
    pub fn poll_closing(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut q = self.queue.lock();
        if q.closing.is_some() {
            return Poll::Ready(());
        }
        match &q.close_waiter {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => q.close_waiter = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// The close code this connection is closing with, if it is closing.
    pub fn close_code(&self) -> Option<CloseCode> {
        self.queue.lock().closing.as_ref().and_then(|c| c.code)
    }

    pub fn is_closing(&self) -> bool {
        self.queue.lock().closing.is_some()
    }

    /// Moves everything pending into `batch`, or parks the writer.
    pub fn poll_take(&self, cx: &mut Context<'_>, batch: &mut Batch) -> Poll<()> {
        let mut q = self.queue.lock();
        let has_work = !q.urgent.is_empty() || !q.items.is_empty();
        if !has_work && q.closing.is_none() {
            // Idle: pushes may write to the socket themselves until the
            // next batch.
            q.writing = false;
            match &q.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => q.waker = Some(cx.waker().clone()),
            }
            return Poll::Pending;
        }
        q.writing = true;
        // The pending buffers become the batch; the spares the writer gave
        // back become the queue.
        let q = &mut *q;
        batch.urgent = std::mem::replace(&mut q.urgent, std::mem::take(&mut q.spare_urgent));
        batch.items = std::mem::replace(&mut q.items, std::mem::take(&mut q.spare_items));
        q.active = true;
        q.head += batch.items.len() as u64;
        q.bytes = 0;
        if let Some(slots) = q.slots.as_mut() {
            slots.clear();
        }
        if let Some(closing) = q.closing.as_mut() {
            batch.last = true;
            if let Some(frame) = closing.frame.take() {
                batch.items.push_back(Item {
                    frame: Some(frame),
                    accepted_us: 0,
                });
            }
        }
        self.queued_bytes.store(0, Ordering::Relaxed);
        Poll::Ready(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;

    fn limits() -> OutboxLimits {
        OutboxLimits {
            max_bytes: 1000,
            conflate_after: 100,
        }
    }

    fn frame(n: usize, tag: u8) -> Bytes {
        Bytes::from(vec![tag; n])
    }

    async fn take(o: &Outbox) -> Batch {
        let mut b = Batch::default();
        poll_fn(|cx| o.poll_take(cx, &mut b)).await;
        b
    }

    fn tags(b: &Batch) -> Vec<u8> {
        b.items
            .iter()
            .filter_map(|i| i.frame.as_ref().map(|f| f[0]))
            .collect()
    }

    #[tokio::test]
    async fn keeps_order_and_puts_urgent_first() {
        let o = Outbox::new(limits());
        o.push(frame(10, 1), None, 0);
        o.push(frame(10, 2), None, 0);
        o.push_urgent(frame(5, 9));
        let b = take(&o).await;
        assert_eq!(b.urgent.len(), 1);
        assert_eq!(tags(&b), vec![1, 2]);
        assert!(!b.last);
    }

    /// A waker that notes whether it was woken.
    struct Flag(std::sync::atomic::AtomicBool);

    impl std::task::Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    impl Flag {
        fn woken(&self) -> bool {
            self.0.load(Ordering::SeqCst)
        }
    }

    /// Parks the writer of `o` on a waker that notes being woken.
    fn park_writer(o: &Outbox) -> Arc<Flag> {
        let flag = Arc::new(Flag(Default::default()));
        let waker = Waker::from(flag.clone());
        let mut b = Batch::default();
        assert!(
            o.poll_take(&mut Context::from_waker(&waker), &mut b)
                .is_pending()
        );
        flag
    }

    #[tokio::test]
    async fn held_frames_wait_for_release_and_keep_their_order() {
        let o = Outbox::new(limits());
        let flag = park_writer(&o);
        o.push_held(frame(10, 1), None, 0);
        o.push_held(frame(10, 2), None, 0);
        assert!(!flag.woken(), "held frames do not wake the writer");
        // A frame pushed the usual way meanwhile queues behind them.
        o.push(frame(10, 3), None, 0);
        o.release();
        assert!(flag.woken());
        assert_eq!(tags(&take(&o).await), vec![1, 2, 3]);
    }

    #[tokio::test]
    async fn released_frames_are_written_together_by_the_releaser() {
        use tokio::io::AsyncReadExt;
        // A write counts its bytes: the recorder must be installed before
        // the metric handles are first made, or the first-scrape test in
        // this binary finds them missing.
        crate::metrics::install_exporter();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        let (_rd, wr) = accepted.unwrap().0.into_split();
        let o = Outbox::new(limits());
        o.attach_socket(Arc::new(wr));
        let flag = park_writer(&o);
        for tag in 1..=3 {
            o.push_held(frame(4, tag), None, 0);
        }
        o.release();
        assert!(!flag.woken(), "the writer had nothing left to do");
        assert_eq!(o.queued_bytes(), 0);
        let mut got = [0u8; 12];
        client.unwrap().read_exact(&mut got).await.unwrap();
        assert_eq!(got, [1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3]);
    }

    #[tokio::test]
    async fn conflates_only_past_the_threshold_and_keeps_seq_order() {
        let o = Outbox::new(limits());
        let s = SessionId::new();
        // Below the threshold nothing is conflated.
        o.push(frame(60, 1), Some((s, 0)), 0);
        assert_eq!(o.push(frame(60, 2), Some((s, 0)), 0), Pushed::Queued);
        // Now past it: state 3 is recorded, an ordinary event follows, and
        // state 5 replaces state 3 but lands after event 4.
        o.push(frame(10, 3), Some((s, 0)), 0);
        o.push(frame(10, 4), None, 0);
        assert_eq!(o.push(frame(10, 5), Some((s, 0)), 0), Pushed::Conflated);
        let b = take(&o).await;
        assert_eq!(tags(&b), vec![1, 2, 4, 5]);
    }

    #[tokio::test]
    async fn overflow_closes_as_slow_consumer_and_frees_the_queue() {
        let o = Outbox::new(limits());
        for _ in 0..9 {
            assert_eq!(o.push(frame(100, 1), None, 0), Pushed::Queued);
        }
        assert_eq!(o.push(frame(200, 1), None, 0), Pushed::Overflow);
        assert_eq!(o.close_code(), Some(CloseCode::SlowConsumer));
        assert_eq!(o.queued_bytes(), 0);
        assert_eq!(o.push(frame(1, 1), None, 0), Pushed::Closed);
        let b = take(&o).await;
        assert!(b.last);
        assert_eq!(b.items.len(), 1, "only the close frame is left");
        let close = b.items[0].frame.as_ref().expect("close frame");
        assert_eq!(u16::from_be_bytes([close[2], close[3]]), 4000);
    }

    #[tokio::test]
    async fn graceful_close_writes_pending_first() {
        let o = Outbox::new(limits());
        o.push(frame(10, 1), None, 0);
        o.close(CloseCode::ServiceRestart);
        let b = take(&o).await;
        assert!(b.last);
        assert_eq!(
            tags(&b),
            vec![1, 0x88],
            "the pending frame, then the close frame"
        );
    }

    #[tokio::test]
    async fn a_push_wakes_a_parked_writer() {
        let o = std::sync::Arc::new(Outbox::new(limits()));
        let o2 = o.clone();
        let writer = tokio::spawn(async move { take(&o2).await });
        tokio::task::yield_now().await;
        o.push(frame(3, 7), None, 0);
        let b = tokio::time::timeout(std::time::Duration::from_secs(5), writer)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(tags(&b), vec![7]);
    }
}

#[cfg(test)]
mod bound_tests {
    use super::*;

    #[test]
    fn a_stream_of_one_slot_stays_bounded() {
        let o = Outbox::new(OutboxLimits {
            max_bytes: 64 * 1024,
            conflate_after: 8 * 1024,
        });
        let s = SessionId::new();
        for _ in 0..3000 {
            assert_ne!(
                o.push(Bytes::from(vec![0u8; 300]), Some((s, 0)), 0),
                Pushed::Overflow
            );
        }
        assert!(
            o.queued_bytes() <= 8 * 1024 + 2 * 300,
            "{}",
            o.queued_bytes()
        );
    }
}
