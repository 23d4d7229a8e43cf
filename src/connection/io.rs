//! The stream tungstenite reads from: the socket's read half for input, the
//! connection's outbox for tungstenite's own replies (pong, close).
//!
//! Routing those replies through the outbox keeps a single writer on the
//! socket, so they can never interleave with event frames mid-frame.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::OwnedReadHalf;

use super::outbox::Outbox;

#[derive(Debug)]
pub struct ServerIo {
    read: OwnedReadHalf,
    outbox: Arc<Outbox>,
}

impl ServerIo {
    pub fn new(read: OwnedReadHalf, outbox: Arc<Outbox>) -> ServerIo {
        ServerIo { read, outbox }
    }
}

impl AsyncRead for ServerIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.read).poll_read(cx, buf)
    }
}

impl AsyncWrite for ServerIo {
    /// tungstenite writes whole frames from its buffer in one call, so each
    /// call is pushed as one unit.
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        // A closing outbox drops it; the reply is moot then.
        self.outbox.push_urgent(Bytes::copy_from_slice(buf));
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
