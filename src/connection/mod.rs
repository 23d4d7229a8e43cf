//! One WebSocket connection: a reader and a writer over one TCP socket,
//! polled by one task.
//!
//! * The **reader** is tungstenite over the socket's read half. It parses
//!   and validates inbound frames and hands messages to the hub. Its
//!   automatic replies (pong, close) are written through [`io::ServerIo`]
//!   into the outbox's urgent lane, so the write half has one writer.
//! * The **writer** takes everything pending in the [`outbox::Outbox`] and
//!   writes it with vectored writes: one syscall per batch, not per frame,
//!   and no copy of the shared event bytes. While it is idle, a push writes
//!   its frame to the socket directly; the writer only runs for what the
//!   socket did not take at once.
//!
//! Closing: whoever decides (reader, hub, heartbeat sweeper, shutdown)
//! tells the outbox; the writer writes what it must, then the close frame,
//! then shuts down its half. The reader keeps draining for a short linger
//! so the client reads our close frame before the socket goes away.

pub mod io;
pub mod outbox;

use std::future::poll_fn;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Buf;
use tokio::net::tcp::OwnedWriteHalf;

use crate::identity::Identity;
use crate::ids::{ConnId, now_ms};
use crate::metrics as m;
use crate::protocol::{Codec, Role};
use outbox::{Batch, Outbox};

/// The part of a connection that others hold: sessions fan out into its
/// outbox; the sweeper checks its liveness.
#[derive(Debug)]
pub struct ConnHandle {
    pub id: ConnId,
    pub codec: Codec,
    pub outbox: Arc<Outbox>,
    pub peer: SocketAddr,
    identity: OnceLock<Identity>,
    /// Unix ms of the last frame read (any frame, pongs included).
    last_seen_ms: AtomicU64,
    pub opened_ms: u64,
}

impl ConnHandle {
    pub fn new(codec: Codec, outbox: Arc<Outbox>, peer: SocketAddr) -> ConnHandle {
        let now = now_ms();
        ConnHandle {
            id: ConnId::next(),
            codec,
            outbox,
            peer,
            identity: OnceLock::new(),
            last_seen_ms: AtomicU64::new(now),
            opened_ms: now,
        }
    }

    pub fn identity(&self) -> Option<&Identity> {
        self.identity.get()
    }

    pub fn role(&self) -> Option<Role> {
        self.identity.get().map(|i| i.role)
    }

    /// Sets the identity once; false if it was already set.
    pub fn set_identity(&self, identity: Identity) -> bool {
        self.identity.set(identity).is_ok()
    }

    pub fn touch(&self) {
        self.last_seen_ms.store(now_ms(), Ordering::Relaxed);
    }

    pub fn last_seen_ms(&self) -> u64 {
        self.last_seen_ms.load(Ordering::Relaxed)
    }

    /// Encodes and queues a control frame (ack, error, welcome...).
    pub fn send(&self, frame: &crate::protocol::ServerFrame) {
        self.outbox.push(self.codec.frame(frame), None, 0);
    }
}

/// Vectored writes gather at most this many frames per syscall.
const MAX_IOV: usize = 128;

/// Runs the writer until the outbox closes or the socket fails.
///
/// A plain function that returns the future, so that the future holds
/// `wr` and `outbox` once: as an `async fn`, it would keep a second copy of
/// each argument (they are moved into locals), and every connection's task
/// carries this future for its whole life.
#[allow(clippy::manual_async_fn)]
pub fn write_loop<'a>(
    wr: &'a OwnedWriteHalf,
    outbox: &'a Outbox,
) -> impl Future<Output = std::io::Result<()>> + 'a {
    async move {
        let mut batch = Batch::default();
        // Counts batches for sampling; wrapping is harmless.
        let mut batches: u32 = 0;
        loop {
            poll_fn(|cx| outbox.poll_take(cx, &mut batch)).await;
            // 0: no event in this batch (events are never accepted at 0).
            let oldest = batch
                .items
                .iter()
                .find_map(|i| (i.accepted_us > 0 && i.frame.is_some()).then_some(i.accepted_us))
                .unwrap_or(0);
            // Replaced frames leave holes; drop them first so every
            // remaining item has bytes.
            batch.items.retain(|i| i.frame.is_some());
            let mut written = 0;
            loop {
                written += write_ready(wr, &mut batch)?;
                if batch.is_empty() {
                    break;
                }
                // Boxed: a readiness wait is a large future, and only a full
                // socket needs one; the writer of an idle connection should
                // not keep its space.
                Box::pin(wr.writable()).await?;
            }
            m::bytes_out(written);
            batches = batches.wrapping_add(1);
            // Sampled, never per delivery: one latency reading per 4 batches.
            if oldest > 0 && batches % 4 == 1 {
                m::fanout_latency(crate::clock::since_us(oldest));
            }
            // The last batch ended with the close frame, if there was one.
            if batch.last {
                let _ = socket2::SockRef::from(wr.as_ref()).shutdown(std::net::Shutdown::Write);
                return Ok(());
            }
            outbox.recycle(&mut batch);
        }
    }
}

/// Writes as much of the batch as the socket takes now, urgent frames
/// first, gathering up to [`MAX_IOV`] frames per syscall; returns the bytes
/// written. The batch is empty afterwards unless the socket is full.
/// Synchronous, so the writer's future holds no state of its own for it.
fn write_ready(wr: &OwnedWriteHalf, batch: &mut Batch) -> std::io::Result<usize> {
    let mut total = 0;
    while !batch.is_empty() {
        let n = match write_some(wr, batch) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        };
        total += n;
        let mut left = n;
        while left > 0 {
            let front = match batch.urgent.front_mut() {
                Some(f) => f,
                None => batch
                    .items
                    .front_mut()
                    .and_then(|i| i.frame.as_mut())
                    .expect("written bytes come from queued frames"),
            };
            if front.len() <= left {
                left -= front.len();
                if batch.urgent.pop_front().is_none() {
                    batch.items.pop_front();
                }
            } else {
                front.advance(left);
                left = 0;
            }
        }
    }
    Ok(total)
}

/// One non-blocking vectored write of the front of the batch. The slice
/// array lives on this call's stack, not in the writer's future, so an
/// idle connection does not carry 2 KiB of `IoSlice`s around.
fn write_some(wr: &OwnedWriteHalf, batch: &Batch) -> std::io::Result<usize> {
    let mut slices = [IoSlice::new(&[]); MAX_IOV];
    let frames = batch
        .urgent
        .iter()
        .chain(batch.items.iter().filter_map(|i| i.frame.as_ref()));
    let mut k = 0;
    for b in frames.take(MAX_IOV) {
        slices[k] = IoSlice::new(b);
        k += 1;
    }
    wr.try_write_vectored(&slices[..k])
}

/// How long the reader keeps draining after our close frame is written, so
/// the client can read it and answer.
pub const CLOSE_LINGER: Duration = Duration::from_secs(2);
