//! The deliveries a session queues (see `delivery.rs`): what they are,
//! kept apart from the task that carries them out so the replica can queue
//! them without depending on it.

use std::sync::Arc;

use bytes::Bytes;

use crate::connection::ConnHandle;
use crate::protocol::frames::Snapshot;
use crate::protocol::model::Role;
use crate::protocol::{CloseCode, ServerFrame};
use crate::stream::Published;

/// What the delivery task does next, in the order they were queued.
#[derive(Debug)]
pub(super) enum Delivery {
    /// An applied event, to every subscriber whose role is in its audience.
    Event(Arc<Published>),
    /// One frame to one connection, after everything queued before it.
    Send(Arc<ConnHandle>, Bytes),
    /// Closes a connection after everything queued before it.
    Close(Arc<ConnHandle>, CloseCode),
    /// The stream continues elsewhere: every subscriber gets this
    /// discontinuity and a fresh snapshot of its role's view.
    Reset {
        discontinuity: ServerFrame,
        /// Per role: renderer, operator, participant.
        snapshots: [Option<Box<Snapshot>>; 3],
    },
}

/// A role's place in per-role arrays.
pub(super) fn role_index(role: Role) -> usize {
    match role {
        Role::Renderer => 0,
        Role::Operator => 1,
        Role::Participant => 2,
    }
}
