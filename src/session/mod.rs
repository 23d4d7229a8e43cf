//! The session layer: sequencing and replicas. Every session loaded on
//! this node has a replica, the fold of its event log, kept under one lock;
//! events get in only through the broker, which sequences them and
//! delivers them back in order.
//!
//! Files from the bottom up (each uses only those above it):
//!
//! | file | owns |
//! |---|---|
//! | `deliveries.rs` | the deliveries a replica queues for its connections |
//! | `replica.rs` | one replica: its state, the fold of each event, local presence and pending work, the delivery queue |
//! | `snapshot.rs` | a replica's replicated state as bytes, to start a replica on another node |
//! | `fanout.rs` | what a replica sends a connection under its lock (snapshots, resume replays, urgent frames) and the discontinuities it queues |
//! | `delivery.rs` | the task that hands queued deliveries to the connections, in order, outside the lock |
//! | `registry.rs` | the loaded sessions; loading, publishing (plain and conditional), the broker's delivery into replicas, checkpoints |

mod deliveries;
mod delivery;
mod fanout;
pub mod registry;
pub mod replica;
pub mod snapshot;

pub use registry::{SessionError, Sessions};
pub use replica::{
    Applied, Attached, QuestionRef, Replica, ReplicaLimits, Seen, Session, View, member_key, ref_id,
};
pub use snapshot::{ReplicaSnapshot, SnapshotError};

// The fold, property-tested: resuming from any snapshot gives the live
// state.
#[cfg(test)]
mod fold_props;
