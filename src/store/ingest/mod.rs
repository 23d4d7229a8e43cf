//! Inbound vendor events in the store (seed 001
//! `processed_webhook_events`), behind the [`IngestStore`] trait every
//! [`super::Store`] also implements, and the lookup of a session by the
//! vendor's conversation id (`sessions.external_id`).
//!
//! Idempotency lives here: an event is recorded under the SHA-256 of its
//! canonical form (`event_hash`, unique), and recording the same hash
//! again returns the row already stored instead of a second one. The
//! insert and the check are one statement, so two deliveries of the same
//! event racing on two nodes still produce one row, and one of them learns
//! it was a duplicate. Events are recorded in batches (one statement, one
//! commit) by [`batcher::Recorder`], so concurrent deliveries share a
//! commit instead of queueing for one each.

pub mod batcher;
pub mod mappings;
pub(crate) mod memory;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::{SessionRecord, StoreError};
use crate::ids::SessionId;

/// The longest `external_id` a session may carry (the column's width).
pub const EXTERNAL_ID_MAX: usize = 255;

/// One inbound event, as stored (`processed_webhook_events`).
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProcessedEvent {
    pub id: Uuid,
    /// `tavus`, `heygen`, `livekit` or `generic`.
    pub source: String,
    /// The vendor's conversation id (a LiveKit room name, a HeyGen
    /// streaming session id).
    pub conversation_id: String,
    /// The vendor's name for the event, as received.
    pub event_type: String,
    /// The event as received.
    #[schema(value_type = Object)]
    pub event_data: Value,
    /// Lowercase hex SHA-256 of the canonical event (docs/INGEST.md).
    pub event_hash: String,
    /// The session the conversation maps to; `null` when none did.
    pub session: Option<SessionId>,
    pub processed_at: DateTime<Utc>,
    /// From receipt of the request until the event was recorded
    /// (verification, parsing, the session lookup).
    pub processing_duration_ms: i32,
}

/// What recording an event did.
#[derive(Clone, PartialEq, Debug)]
pub enum Recorded {
    /// The first delivery: this row was stored.
    New(ProcessedEvent),
    /// An event with the same hash was stored before; this is that row.
    Duplicate(ProcessedEvent),
}

/// Inbound events and the sessions they map to, in every store.
#[async_trait]
pub trait IngestStore: Send + Sync {
    /// Stores each event unless one with its `event_hash` is stored (or
    /// comes earlier in `events`), in one transaction; one answer per
    /// event, in order.
    async fn record_processed_events(
        &self,
        events: &[ProcessedEvent],
    ) -> Result<Vec<Recorded>, StoreError>;

    /// [`IngestStore::record_processed_events`] for one event.
    async fn record_processed_event(&self, e: &ProcessedEvent) -> Result<Recorded, StoreError> {
        self.record_processed_events(std::slice::from_ref(e))
            .await?
            .pop()
            .ok_or_else(|| StoreError::Unavailable("no answer for a recorded event".into()))
    }

    /// The stored event with this hash.
    async fn processed_event(&self, event_hash: &str)
    -> Result<Option<ProcessedEvent>, StoreError>;

    /// How many events are stored for a conversation (for tests and
    /// operators: an unmapped conversation's events are kept too).
    async fn count_processed_events(&self, conversation_id: &str) -> Result<u64, StoreError>;

    /// The session whose `external_id` is this, of any tenant: vendors
    /// know conversations, not tenants.
    async fn session_by_external_id(
        &self,
        external_id: &str,
    ) -> Result<Option<SessionRecord>, StoreError>;
}

/// The first event of each hash in `events`, by index: what a batch
/// inserts. Later events of the same hash are duplicates of it.
pub(crate) fn first_of_each_hash(events: &[ProcessedEvent]) -> Vec<usize> {
    let mut seen = std::collections::HashSet::new();
    (0..events.len())
        .filter(|&i| seen.insert(events[i].event_hash.as_str()))
        .collect()
}

/// Assembles a batch's answers in input order: an event whose row was
/// inserted (`inserted` holds its index) is new; every other one is a
/// duplicate of the row stored under its hash, found in `stored` or, for
/// a hash first seen in this batch, the batch's own first event.
pub(crate) fn answers(
    events: &[ProcessedEvent],
    inserted: &std::collections::HashSet<usize>,
    stored: &std::collections::HashMap<String, ProcessedEvent>,
) -> Result<Vec<Recorded>, StoreError> {
    let mut first: std::collections::HashMap<&str, &ProcessedEvent> =
        std::collections::HashMap::new();
    let mut out = Vec::with_capacity(events.len());
    for (i, e) in events.iter().enumerate() {
        if inserted.contains(&i) {
            first.insert(&e.event_hash, e);
            out.push(Recorded::New(e.clone()));
            continue;
        }
        let row = first
            .get(e.event_hash.as_str())
            .map(|r| (*r).clone())
            .or_else(|| stored.get(&e.event_hash).cloned())
            // Rows are never deleted by the hub: a hash that conflicted
            // is stored.
            .ok_or_else(|| StoreError::Unavailable("a duplicate event vanished".into()))?;
        out.push(Recorded::Duplicate(row));
    }
    Ok(out)
}
