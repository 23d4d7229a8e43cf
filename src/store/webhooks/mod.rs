//! Outbound webhooks in the store: endpoints (seed 000 `webhooks`) and
//! their deliveries (`webhook_deliveries`), behind the [`WebhookStore`]
//! trait every [`super::Store`] also implements.
//!
//! An event reaches the store as a [`Row::Webhook`](super::Row::Webhook)
//! in the same batch as the rows it reports; writing the batch turns it
//! into one pending delivery per active endpoint of the tenant that
//! subscribes to its type, in the same transaction. A delivery is unique
//! per `(endpoint, msg_id, replay)`, so a batch retried after an
//! ambiguous commit stores each delivery once. The webhook
//! dispatcher (a layer above) claims due deliveries with a lease (their
//! `next_attempt_at` moves past the lease), attempts them and records the
//! outcomes; a delivery whose node dies is claimed again once its lease
//! ends, with the same `webhook-id`: delivery is at least once.

pub(crate) mod memory;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::StoreError;
use crate::ids::TenantId;
use crate::secret::Secret;

/// A subscribed endpoint (seed 000 `webhooks`, plus `description`, the
/// signing secret itself and why it was disabled).
#[derive(Clone, PartialEq, Debug)]
pub struct WebhookRecord {
    pub id: Uuid,
    /// Seed: `user_id`.
    pub tenant: TenantId,
    pub url: String,
    /// Event type names, or `*` for all.
    pub events: Vec<String>,
    pub description: Option<String>,
    /// `whsec_` + base64 of the key. The Standard Webhooks scheme signs
    /// with the key itself, so it is kept; `Debug` never prints it.
    pub secret: Secret,
    /// SHA-256 of the secret, lowercase hex (seed: `secret_hash`), so the
    /// secret an endpoint has can be confirmed without reading it.
    pub secret_hash: String,
    pub is_active: bool,
    /// Attempts after the first before a delivery fails for good.
    pub retry_count: i32,
    /// Per attempt.
    pub timeout_seconds: i32,
    /// The last attempt to this endpoint, successful or not.
    pub last_triggered: Option<DateTime<Utc>>,
    /// Failed attempts since the last successful one.
    pub failure_count: i32,
    /// Set when the hub disabled the endpoint; cleared when re-enabled.
    pub disabled_reason: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl WebhookRecord {
    /// Whether the endpoint subscribes to `event_type`.
    pub fn wants(&self, event_type: &str) -> bool {
        self.events.iter().any(|e| e == "*" || e == event_type)
    }
}

/// A change to an endpoint; absent fields keep their value.
#[derive(Clone, Debug, Default)]
pub struct WebhookPatch {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    /// `Some(None)` clears it.
    pub description: Option<Option<String>>,
    /// Re-enabling clears `failure_count` and `disabled_reason`.
    pub is_active: Option<bool>,
    pub retry_count: Option<i32>,
    pub timeout_seconds: Option<i32>,
}

/// One event to report, in the batch of the rows it reports.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct WebhookEventRow {
    /// The `webhook-id` of every delivery of this event (`msg_…`).
    pub msg_id: String,
    pub tenant: TenantId,
    /// E.g. `question.created`.
    pub event_type: String,
    /// The request body, exactly as it is sent and signed.
    pub body: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Waiting for its first or next attempt.
    Pending,
    /// A 2xx answer was received.
    Delivered,
    /// Every attempt failed, or the endpoint is gone or disabled.
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<DeliveryStatus> {
        match s {
            "pending" => Some(DeliveryStatus::Pending),
            "delivered" => Some(DeliveryStatus::Delivered),
            "failed" => Some(DeliveryStatus::Failed),
            _ => None,
        }
    }
}

/// One delivery of one event to one endpoint (`webhook_deliveries`).
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeliveryRecord {
    /// Increasing with creation.
    pub id: i64,
    pub webhook_id: Uuid,
    /// The `webhook-id` header: the same for every attempt and replay.
    pub msg_id: String,
    /// 0 for the original delivery, 1, 2, … for replays.
    pub replay: i32,
    pub event_type: String,
    /// The request body.
    pub body: String,
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    /// When the delivery was queued (the event, or the replay request).
    pub created_at: DateTime<Utc>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    /// The HTTP status of the last answer, if one came.
    pub response_status: Option<i32>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

/// What `claim_webhook_deliveries` takes.
#[derive(Clone, Debug)]
pub struct ClaimRequest {
    pub now: DateTime<Utc>,
    /// Claimed deliveries become due again at this time unless an outcome
    /// is recorded first.
    pub lease_until: DateTime<Utc>,
    pub limit: usize,
    /// At most this many per endpoint.
    pub per_endpoint: usize,
    /// Endpoints not to claim for (their queues are full).
    pub skip: Vec<Uuid>,
    /// Only for these endpoints; empty: for all.
    pub only: Vec<Uuid>,
}

/// Claimed deliveries and the endpoints they go to.
#[derive(Clone, Debug, Default)]
pub struct Claimed {
    pub deliveries: Vec<DeliveryRecord>,
    pub endpoints: Vec<WebhookRecord>,
}

/// The result of one attempt.
#[derive(Clone, Debug)]
pub struct AttemptOutcome {
    pub delivery_id: i64,
    pub webhook_id: Uuid,
    pub at: DateTime<Utc>,
    /// Pending (retry at `next_attempt_at`), delivered or failed.
    pub status: DeliveryStatus,
    pub next_attempt_at: DateTime<Utc>,
    pub response_status: Option<i32>,
    pub error: Option<String>,
    /// False when no request was made (the delivery is handed back, or
    /// failed because its endpoint is disabled): `attempts`,
    /// `last_attempt_at` and the endpoint's counts stay as they are.
    pub attempted: bool,
}

/// An endpoint the store disabled while recording outcomes.
#[derive(Clone, Debug)]
pub struct DisabledEndpoint {
    pub id: Uuid,
    pub tenant: TenantId,
    pub url: String,
    pub failure_count: i32,
}

/// Where a replay starts.
#[derive(Clone, Copy, Debug)]
pub enum ReplayFrom {
    /// Every original delivery queued at or after this time.
    Since(DateTime<Utc>),
    /// This delivery's event and every later one of the endpoint.
    Delivery(i64),
}

/// Deliveries to replay at most per call.
pub const REPLAY_MAX: i64 = 10_000;

/// Endpoints and deliveries, in every store.
#[async_trait]
pub trait WebhookStore: Send + Sync {
    /// # Errors
    /// `Rejected` if the tenant does not exist.
    async fn create_webhook(&self, w: &WebhookRecord) -> Result<(), StoreError>;

    /// The tenant's endpoints, oldest first.
    async fn list_webhooks(&self, tenant: TenantId) -> Result<Vec<WebhookRecord>, StoreError>;

    async fn get_webhook(
        &self,
        tenant: TenantId,
        id: Uuid,
    ) -> Result<Option<WebhookRecord>, StoreError>;

    /// Applies the patch; `None` if the tenant has no such endpoint.
    async fn update_webhook(
        &self,
        tenant: TenantId,
        id: Uuid,
        patch: &WebhookPatch,
    ) -> Result<Option<WebhookRecord>, StoreError>;

    /// Deletes the endpoint and its deliveries. False if there was none.
    async fn delete_webhook(&self, tenant: TenantId, id: Uuid) -> Result<bool, StoreError>;

    /// An endpoint's deliveries, newest first, before `before` (an id).
    async fn webhook_deliveries(
        &self,
        webhook: Uuid,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, StoreError>;

    /// Claims due pending deliveries, oldest due first: their
    /// `next_attempt_at` becomes `lease_until`. A delivery is claimed by
    /// one caller at a time.
    async fn claim_webhook_deliveries(&self, req: &ClaimRequest) -> Result<Claimed, StoreError>;

    /// Records attempts in one transaction: each delivery's status, and
    /// each endpoint's `last_triggered` and `failure_count` (reset by a
    /// success, counted up by a failure). An active endpoint whose
    /// `failure_count` reaches `disable_after` (0: never) is disabled and
    /// returned.
    async fn record_webhook_attempts(
        &self,
        outcomes: &[AttemptOutcome],
        disable_after: i32,
    ) -> Result<Vec<DisabledEndpoint>, StoreError>;

    /// Queues the endpoint's original deliveries from `from` again, as new
    /// deliveries (same `msg_id` and body, next `replay` number), due at
    /// `now`; at most [`REPLAY_MAX`]. Returns how many.
    async fn replay_webhook_deliveries(
        &self,
        webhook: Uuid,
        from: ReplayFrom,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError>;
}

/// The lowercase hex SHA-256 of a secret.
pub fn secret_hash(secret: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Why the hub disabled an endpoint.
pub fn disabled_reason(failures: i32) -> String {
    format!("disabled after {failures} consecutive failed attempts")
}

/// The net change a batch of outcomes makes to one endpoint.
#[derive(Clone, Copy, Debug)]
pub struct EndpointChange {
    pub webhook_id: Uuid,
    pub last_at: DateTime<Utc>,
    /// A success came: `failure_count` restarts from `failures`.
    pub reset: bool,
    /// Failures to add (after the last success, if `reset`).
    pub failures: i32,
}

/// Folds outcomes, in order, into one change per endpoint.
pub fn fold_endpoints(outcomes: &[AttemptOutcome]) -> Vec<EndpointChange> {
    let mut out: Vec<EndpointChange> = Vec::new();
    for o in outcomes.iter().filter(|o| o.attempted) {
        let i = match out.iter().position(|c| c.webhook_id == o.webhook_id) {
            Some(i) => i,
            None => {
                out.push(EndpointChange {
                    webhook_id: o.webhook_id,
                    last_at: o.at,
                    reset: false,
                    failures: 0,
                });
                out.len() - 1
            }
        };
        let c = &mut out[i];
        c.last_at = c.last_at.max(o.at);
        if o.status == DeliveryStatus::Delivered {
            c.reset = true;
            c.failures = 0;
        } else {
            c.failures += 1;
        }
    }
    out
}
