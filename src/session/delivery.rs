//! Delivery: what a session sends its connections, in order, outside the
//! session lock.
//!
//! Applying an event (under the lock) only queues a [`Delivery`]; one task per
//! session, started when the first delivery is queued and ended when none is
//! left, hands the deliveries to the connections in the order they were queued.
//! Each connection therefore sees its view in `seq` order, while the lock
//! is held for microseconds however many connections an event reaches: an
//! emergency stop is sequenced (and its `urgent` frame written) without
//! waiting for a fan-out to thousands of sockets, and the task yields
//! between small groups of writes so other connections' frames are read
//! promptly. A fan-out to very many connections is split over the
//! runtime's worker threads.
//!
//! A connection that joins takes its snapshot (or resume replay) under the
//! lock and is marked with the last delivery queued by then: deliveries up to that one
//! are already in what it was sent, so delivery skips them for it.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::deliveries::{Delivery, role_index};
use super::replica::Session;
use crate::connection::ConnHandle;
use crate::connection::outbox::{Pushed, SlotKey};
use crate::metrics as m;
use crate::protocol::ServerFrame;
use crate::stream::Published;

/// Writes between two yields of the delivery task: small enough that a
/// frame read elsewhere (an emergency stop) waits at most a few hundred
/// microseconds for the worker thread.
const YIELD_EVERY: usize = 64;
/// Recipients past which one event's fan-out is split over the runtime's
/// worker threads.
const PARALLEL_FROM: usize = 2048;

/// Delivers queued deliveries until none is left. Started by whoever queues the
/// first delivery while no delivery task runs (see `Replica::queue`).
pub(super) async fn run(session: Arc<Session>) {
    loop {
        let deliveries = {
            let mut g = session.lock();
            if g.deliveries.is_empty() {
                g.delivering = false;
                return;
            }
            std::mem::take(&mut g.deliveries)
        };
        // Several events at once (a run a publisher streamed, or a backlog):
        // each connection's frames are held and then written together, one
        // vectored write per connection instead of one write per frame.
        let events = deliveries
            .iter()
            .filter(|(_, d)| matches!(d, Delivery::Event(_)))
            .count();
        let mut held = (events > 1).then(Vec::new);
        for (n, job) in deliveries {
            deliver(&session, n, job, held.as_mut()).await;
            session.delivered.store(n, Ordering::Release);
            session.progress.notify_waiters();
        }
        if let Some(mut conns) = held {
            conns.sort_unstable_by_key(Arc::as_ptr);
            conns.dedup_by(|a, b| Arc::ptr_eq(a, b));
            for (i, c) in conns.iter().enumerate() {
                if i > 0 && i % YIELD_EVERY == 0 {
                    tokio::task::yield_now().await;
                }
                c.outbox.release();
            }
        }
    }
}

/// Connections with frames pushed by [`Outbox::push_held`], to release.
///
/// [`Outbox::push_held`]: crate::connection::outbox::Outbox::push_held
type Held = Vec<Arc<ConnHandle>>;

async fn deliver(session: &Session, n: u64, job: Delivery, held: Option<&mut Held>) {
    match job {
        Delivery::Event(p) => {
            let recipients = session.lock().recipients(n, &p);
            fan_out(&p, recipients, held).await;
        }
        Delivery::Send(conn, frame) => {
            conn.outbox.push(frame, None, 0);
        }
        Delivery::Close(conn, code) => {
            conn.outbox.close(code);
        }
        Delivery::Reset {
            discontinuity,
            snapshots,
        } => {
            let recipients = session.lock().recipients_by_role(n);
            let mut pushed = 0;
            for (role, conns) in recipients {
                let Some(snapshot) = &snapshots[role_index(role)] else {
                    continue;
                };
                let snapshot = ServerFrame::Snapshot(snapshot.clone());
                for c in conns {
                    c.outbox.push(c.codec.frame(&discontinuity), None, 0);
                    c.outbox.push(c.codec.frame(&snapshot), None, 0);
                    pushed += 1;
                    if pushed % YIELD_EVERY == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            }
        }
    }
}

/// One event to its recipients (renderers first: whatever an operator just
/// did, the renderer is the one that has to act on it). The frame is
/// encoded once per codec; each recipient gets a `Bytes` clone.
async fn fan_out(
    p: &Arc<Published>,
    mut recipients: Vec<(Arc<ConnHandle>, Option<u32>)>,
    held: Option<&mut Held>,
) {
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    let mut helper = None;
    if recipients.len() >= PARALLEL_FROM && workers > 1 {
        // Each connection is in one half only, and the next delivery starts once
        // both halves are done, so every connection still sees its events
        // in order.
        let rest = recipients.split_off(recipients.len() / 2);
        let p = p.clone();
        helper = Some(tokio::spawn(async move { push_all(&p, &rest, None).await }));
    }
    let mut totals = push_all(p, &recipients, held).await;
    if let Some(h) = helper
        && let Ok(more) = h.await
    {
        totals.0 += more.0;
        totals.1 += more.1;
    }
    m::frames_out(&p.event, totals.0);
    if totals.1 > 0 {
        m::conflated(totals.1);
    }
}

/// Pushes `p` to each connection, yielding every [`YIELD_EVERY`] pushes;
/// with `held`, holds the frames and notes the connections to release.
/// Returns (recipients, conflated).
async fn push_all(
    p: &Published,
    conns: &[(Arc<ConnHandle>, Option<u32>)],
    mut held: Option<&mut Held>,
) -> (usize, u64) {
    let slot: Option<SlotKey> = p.event.conflation_slot().map(|s| (p.session, s));
    let (mut recipients, mut conflated) = (0, 0);
    for (i, (conn, compact)) in conns.iter().enumerate() {
        if i > 0 && i % YIELD_EVERY == 0 {
            tokio::task::yield_now().await;
        }
        let frame = p.frame_for(conn.codec, *compact).clone();
        let pushed = match held.as_deref_mut() {
            Some(held) => {
                held.push(conn.clone());
                conn.outbox.push_held(frame, slot, p.accepted_us)
            }
            None => conn.outbox.push(frame, slot, p.accepted_us),
        };
        match pushed {
            Pushed::Queued => {}
            Pushed::Conflated => conflated += 1,
            Pushed::Overflow => m::slow_consumer(),
            Pushed::Closed => continue,
        }
        recipients += 1;
    }
    (recipients, conflated)
}
