//! The hub layer: this node's connections and what their frames do, and
//! the operations backends call over REST. Below it, the session layer
//! sequences and replicates; the hub validates, publishes, persists and
//! acknowledges.
//!
//! Files from the bottom up (each uses only those above it in this list):
//!
//! | file | owns |
//! |---|---|
//! | `error.rs` | [`HubError`]: every refusal, mapped to a protocol error code |
//! | `timers.rs` | the one timer task and the jobs it runs later |
//! | `rows.rs` | the store rows events become |
//! | `core.rs` | [`Hub`]: shared handles and the registry of connections |
//! | `validate.rs` | the checks a frame passes before it touches a session |
//! | `client.rs` | [`Client`]: one connection's own state |
//! | `acks.rs` | `ack` now, after commit, or for a resend |
//! | `presence.rs` | members counted once across nodes; `join` and `leave` events |
//! | `control.rs` | alerts, and ending a takeover |
//! | `lifecycle.rs` | sessions over REST, and lifecycle transitions |
//! | `ingest.rs` | inbound vendor events: recorded once, applied to their session |
//! | `jobs.rs` | jobs: created and changed over REST, reported in a session's stream |
//! | `deferred.rs` | what timer jobs and the ticker do |
//! | `frames/` | one module per frame family |
//! | `dispatch.rs` | decoding, `auth`, rate limits, and the match that routes frames |
//!
//! Must-keep operations (questions, responses, interventions) reserve room
//! in the store's backlog before publishing, and are acknowledged to their
//! sender only after their rows commit.

mod acks;
pub mod client;
mod control;
mod core;
mod deferred;
mod dispatch;
pub mod error;
mod frames;
pub mod ingest;
pub mod jobs;
pub mod lifecycle;
mod presence;
mod rows;
mod timers;
mod validate;

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Weak};

use dashmap::DashMap;

use crate::auth::Authenticator;
use crate::auth::limits::Limits;
use crate::auth::origin::OriginPolicy;
use crate::broker::Broker;
use crate::config::Settings;
use crate::connection::outbox::OutboxLimits;
use crate::recent::RecentMap;
use crate::session::{ReplicaLimits, Sessions};
use crate::store::ingest::batcher::Recorder;
use crate::store::ingest::mappings::Mappings;
use crate::store::writer::BatchWriter;
use crate::turns::Turns;

/// Inbound event hashes remembered as applied (`HubInner::ingest_applied`).
const INGEST_APPLIED: usize = 4096;

pub use self::core::{Hub, HubInner};
pub use client::{Client, Next};
pub use error::{HubError, refuse};
pub use ingest::IngestOutcome;
pub use jobs::NewJob;
pub use lifecycle::{LiveView, NewSession, SessionView};
pub use validate::check_frame;

impl Hub {
    /// Builds the hub and starts its timer and ticker tasks.
    pub fn new(
        settings: Arc<Settings>,
        broker: Arc<dyn Broker>,
        writer: BatchWriter,
        auth: Arc<dyn Authenticator>,
        limiter: Limits,
        origins: OriginPolicy,
    ) -> Hub {
        let s = &settings.session;
        let ws = &settings.websocket;
        let limits = ReplicaLimits {
            history_size: s.history_size,
            dedupe_window: s.dedupe_window,
            recent_refs_max: s.recent_refs_max,
            held_responses_max: s.held_responses_max,
            snapshot_members_max: s.snapshot_members_max,
            replay_max_bytes: ws.outbound_max_bytes / 2,
        };
        let outbox_limits = OutboxLimits {
            max_bytes: ws.outbound_max_bytes,
            conflate_after: ws.conflate_after_bytes,
        };
        let sessions = Sessions::new(broker.clone(), writer.store().clone(), limits);
        let inner = Arc::new_cyclic(|weak: &Weak<HubInner>| {
            // Due jobs run on their own tasks; the timer task holds the
            // hub weakly, so it ends with the hub.
            let weak = weak.clone();
            let run = Box::new(move |job| {
                if let Some(inner) = weak.upgrade() {
                    let hub = Hub::from_inner(inner);
                    tokio::spawn(async move { hub.run_job(job).await });
                }
            });
            HubInner {
                settings: settings.clone(),
                sessions,
                broker,
                ingest: Recorder::start(writer.store().clone()),
                conversations: Mappings::default(),
                ingest_turns: Turns::default(),
                ingest_applied: parking_lot::Mutex::new(RecentMap::new(INGEST_APPLIED)),
                writer,
                auth,
                limiter,
                origins,
                conns: DashMap::new(),
                timers: timers::Timers::start(run),
                outbox_limits,
                draining: AtomicBool::new(false),
            }
        });
        deferred::start_ticker(Arc::downgrade(&inner));
        Hub { inner }
    }
}
