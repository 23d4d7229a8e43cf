//! Durable storage: sessions and the rows a session produces
//! (conversations, question responses, interventions, alerts, performance
//! metrics, participants), following seed 000.
//!
//! Implementations:
//! * [`sqlite::SqliteStore`], an embedded file: the default;
//! * [`postgres::PostgresStore`], for production;
//! * [`memory::MemoryStore`], in-process, for tests and throwaway runs.
//!
//! Rows reach the store through the [`writer::BatchWriter`], which groups
//! them into one transaction per batch and acknowledges must-keep rows to
//! their senders only after that transaction commits. Every row kind is
//! idempotent (a unique key plus `ON CONFLICT DO NOTHING`, or an upsert),
//! so a batch retried after an ambiguous failure never duplicates
//! anything. `docs/SCHEMA.md` describes the tables.

pub mod ingest;
pub mod jobs;
pub mod memory;
pub mod postgres;
pub mod retention;
mod sql;
pub mod sqlite;
pub mod webhooks;
pub mod writer;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

pub use self::ingest::IngestStore;
pub use self::jobs::{JobQuery, JobStore};
pub use self::webhooks::{WebhookEventRow, WebhookStore};
use crate::config::StoreSettings;
use crate::ids::{EventId, Seq, SessionId, TenantId};
use crate::protocol::job::Job;
use crate::protocol::model::{
    AlertType, Counters, RendererMetrics, SessionState, SessionStatus, Severity,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database is unreachable or failed; the operation may succeed
    /// later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The data violates a constraint; retrying will not help.
    #[error("store rejected the data: {0}")]
    Rejected(String),
}

/// Connection pool settings of the SQL stores (from `[store]`).
#[derive(Clone, Copy, Debug)]
pub struct PoolConfig {
    pub max_connections: u32,
    /// How long a query waits for a connection before it fails as
    /// unavailable (and the writer retries).
    pub acquire_timeout: Duration,
}

impl PoolConfig {
    pub fn from_settings(s: &StoreSettings) -> PoolConfig {
        PoolConfig {
            max_connections: s.max_connections,
            acquire_timeout: Duration::from_millis(s.acquire_timeout_ms),
        }
    }
}

/// A session row (seed 000 `sessions` joined with `session_state`).
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SessionRecord {
    pub id: SessionId,
    pub tenant: TenantId,
    pub avatar_id: Option<Uuid>,
    pub name: Option<String>,
    pub description: Option<String>,
    /// The vendor's id for the conversation this session presents
    /// (`docs/INGEST.md`): inbound events name it. Unique across tenants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    pub status: SessionStatus,
    pub config: Value,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub counters: Counters,
    pub last_error: Option<String>,
    pub state: SessionState,
    pub context: Value,
}

impl SessionRecord {
    /// The session as it was created: what its event stream folds from.
    pub fn as_created(&self) -> SessionRecord {
        SessionRecord {
            status: SessionStatus::Created,
            started_at: None,
            ended_at: None,
            counters: Counters::default(),
            last_error: None,
            state: SessionState::default(),
            context: Value::Object(Default::default()),
            ..self.clone()
        }
    }
}

/// Filters and paging for session listings.
#[derive(Clone, Debug, Default)]
pub struct SessionQuery {
    pub status: Option<SessionStatus>,
    /// Return sessions created strictly before this one (keyset paging:
    /// ids are time-ordered).
    pub before: Option<SessionId>,
    pub limit: usize,
}

/// Keyset paging over time-ordered rows: newest first, strictly before
/// `before`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Page {
    pub before: Option<Uuid>,
    pub limit: usize,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MessageType {
    Question,
    Response,
    System,
    Operator,
}

impl MessageType {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::Question => "question",
            MessageType::Response => "response",
            MessageType::System => "system",
            MessageType::Operator => "operator",
        }
    }
}

/// Seed 000 `conversations`, plus the event's stream position and the
/// sender's frame id. The position is only unique within one epoch of the
/// stream (it starts again after a single-node restart), so the
/// idempotency key is the row id and `(session, type, sender, client id)`.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConversationRow {
    pub id: EventId,
    pub session_id: SessionId,
    #[schema(value_type = u64)]
    pub seq: Seq,
    pub participant_id: Option<String>,
    pub message_type: MessageType,
    pub content: String,
    pub speaker: Option<String>,
    pub timestamp: DateTime<Utc>,
    pub confidence_score: Option<f64>,
    pub response_time_ms: Option<i32>,
    pub context: Value,
    pub metadata: Value,
    pub client_msg_id: Option<String>,
}

impl ConversationRow {
    /// Who sent the frame the row came from: the participant for a
    /// question, the speaker (renderer or operator subject) otherwise.
    /// `(session, message type, sender, client_msg_id)` is unique.
    pub fn sender(&self) -> Option<&str> {
        self.participant_id.as_deref().or(self.speaker.as_deref())
    }
}

/// Seed 000 `question_responses`.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct QuestionResponseRow {
    pub id: EventId,
    /// The response's conversation row.
    pub conversation_id: EventId,
    pub question_text: String,
    pub response_text: String,
    pub intent_classification: Option<String>,
    pub knowledge_sources: Vec<String>,
    pub confidence_score: f64,
    pub response_time_ms: i32,
    pub created_at: DateTime<Utc>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InterventionType {
    Takeover,
    Suggestion,
    Correction,
    EmergencyStop,
}

impl InterventionType {
    pub fn as_str(self) -> &'static str {
        match self {
            InterventionType::Takeover => "takeover",
            InterventionType::Suggestion => "suggestion",
            InterventionType::Correction => "correction",
            InterventionType::EmergencyStop => "emergency_stop",
        }
    }
}

/// Seed 000 `operator_interventions`. `operator_id` is the operator's
/// subject.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InterventionRow {
    pub id: EventId,
    pub session_id: SessionId,
    #[schema(value_type = u64)]
    pub seq: Seq,
    pub operator_id: String,
    pub intervention_type: InterventionType,
    pub trigger_reason: Option<String>,
    pub action_taken: String,
    pub created_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub duration_seconds: Option<i32>,
    pub client_msg_id: Option<String>,
}

/// Seed 000 `system_alerts`.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AlertRow {
    pub id: EventId,
    pub session_id: SessionId,
    pub alert_type: AlertType,
    pub severity: Severity,
    pub title: String,
    pub message: String,
    pub component: Option<String>,
    pub metadata: Value,
    pub created_at: DateTime<Utc>,
    pub acknowledged: bool,
    pub acknowledged_by: Option<String>,
    pub acknowledged_at: Option<DateTime<Utc>>,
}

/// Seed 000 `performance_metrics`.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct MetricRow {
    pub id: Uuid,
    pub session_id: SessionId,
    pub metric_type: String,
    pub metric_value: f64,
    pub unit: Option<String>,
    pub timestamp: DateTime<Utc>,
    pub component: Option<String>,
}

impl MetricRow {
    /// One row per value in a renderer report.
    pub fn from_report(
        session: SessionId,
        at: DateTime<Utc>,
        m: &RendererMetrics,
    ) -> impl Iterator<Item = MetricRow> + '_ {
        m.values().map(move |(name, value, unit)| MetricRow {
            id: Uuid::now_v7(),
            session_id: session,
            metric_type: name.to_owned(),
            metric_value: value,
            unit: Some(unit.to_owned()),
            timestamp: at,
            component: m.component.clone(),
        })
    }
}

/// Seed 000 `session_participants`.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct ParticipantRow {
    pub session_id: SessionId,
    pub participant_id: String,
    pub participant_name: Option<String>,
    pub joined_at: DateTime<Utc>,
    pub left_at: Option<DateTime<Utc>>,
    pub questions_asked: i32,
}

/// A tenant (seed 000 `users`): owns sessions, API keys and credentials.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct TenantRecord {
    pub id: TenantId,
    /// Unique contact address (seed: `users.email`).
    pub email: String,
    pub company: Option<String>,
    /// `basic`, `professional` or `enterprise`.
    pub subscription_tier: String,
    pub api_quota_monthly: i32,
    pub api_calls_used: i32,
    /// Concurrent WebSocket connections allowed (seed:
    /// `concurrent_sessions_limit`).
    pub concurrent_sessions_limit: i32,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
}

impl TenantRecord {
    /// A tenant with the seed's defaults.
    pub fn new(id: TenantId, email: impl Into<String>) -> TenantRecord {
        TenantRecord {
            id,
            email: email.into(),
            company: None,
            subscription_tier: "basic".into(),
            api_quota_monthly: 10_000,
            api_calls_used: 0,
            concurrent_sessions_limit: 5,
            is_active: true,
            created_at: Utc::now(),
        }
    }
}

/// An API key (seed 000 `api_keys`). Only the SHA-256 of the key is ever
/// stored, as lowercase hex.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    pub id: Uuid,
    pub tenant: TenantId,
    pub name: String,
    pub key_hash: String,
    pub scopes: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used: Option<DateTime<Utc>>,
    /// False once revoked.
    pub is_active: bool,
}

/// One row to write. Every variant is idempotent: writing it twice leaves
/// the same data as writing it once.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub enum Row {
    Conversation(ConversationRow),
    QuestionResponse(QuestionResponseRow),
    Intervention(InterventionRow),
    /// A takeover ended.
    InterventionEnded {
        id: EventId,
        ended_at: DateTime<Utc>,
        duration_seconds: i32,
    },
    Alert(AlertRow),
    AlertAcknowledged {
        id: EventId,
        by: String,
        at: DateTime<Utc>,
    },
    Metric(MetricRow),
    /// Status, timestamps and counters of a session.
    SessionProgress {
        id: SessionId,
        status: SessionStatus,
        started_at: Option<DateTime<Utc>>,
        ended_at: Option<DateTime<Utc>>,
        counters: Counters,
        last_error: Option<String>,
    },
    /// Latest state and context of a session (upsert).
    State {
        session_id: SessionId,
        state: SessionState,
        context: Value,
        metrics: Value,
    },
    ParticipantJoined(ParticipantRow),
    ParticipantLeft {
        session_id: SessionId,
        participant_id: String,
        left_at: DateTime<Utc>,
        questions_asked: i32,
    },
    /// An event for the tenant's webhook endpoints: written as one
    /// pending delivery per subscribed endpoint (`store::webhooks`).
    Webhook(WebhookEventRow),
    /// A job created or changed (upsert; `store::jobs`).
    Job(Job),
}

impl Row {
    /// Rows that are never dropped: their senders are acknowledged only
    /// after they commit. The others may be dropped under pressure (and
    /// every drop is counted).
    pub fn must_keep(&self) -> bool {
        !matches!(self, Row::Metric(_) | Row::State { .. })
    }

    /// Rough size in bytes, for the backlog budget.
    pub fn weight(&self) -> usize {
        let text = match self {
            Row::Conversation(c) => c.content.len() + c.metadata.to_string().len(),
            Row::QuestionResponse(q) => q.question_text.len() + q.response_text.len(),
            Row::Intervention(i) => i.action_taken.len(),
            Row::Alert(a) => a.title.len() + a.message.len(),
            Row::State { context, .. } => context.to_string().len(),
            Row::Webhook(w) => w.body.len(),
            Row::Job(j) => {
                j.metadata.to_string().len()
                    + j.result.as_ref().map_or(0, |v| v.to_string().len())
                    + j.error.as_ref().map_or(0, |v| v.to_string().len())
            }
            _ => 0,
        };
        128 + text
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Row::Conversation(_) => "conversation",
            Row::QuestionResponse(_) => "question_response",
            Row::Intervention(_) | Row::InterventionEnded { .. } => "intervention",
            Row::Alert(_) | Row::AlertAcknowledged { .. } => "alert",
            Row::Metric(_) => "metric",
            Row::SessionProgress { .. } => "session",
            Row::State { .. } => "state",
            Row::ParticipantJoined(_) | Row::ParticipantLeft { .. } => "participant",
            Row::Webhook(_) => "webhook",
            Row::Job(_) => "job",
        }
    }
}

#[async_trait]
pub trait Store:
    WebhookStore + IngestStore + JobStore + Send + Sync + fmt::Debug + 'static
{
    /// Short name for logs and `/readyz`.
    fn name(&self) -> &'static str;

    /// Whether batches written at the same time make progress side by
    /// side. A store that writes through one connection (SQLite) would
    /// only queue them, so the writer gives it one ordered lane and one
    /// metrics flusher.
    fn parallel_writes(&self) -> bool {
        false
    }

    /// Brings the schema up to date.
    async fn migrate(&self) -> Result<(), StoreError>;

    /// Checks that the database answers, for readiness.
    async fn ping(&self) -> Result<(), StoreError>;

    async fn create_session(&self, session: &SessionRecord) -> Result<(), StoreError>;

    /// A session of `tenant` (any tenant if `None`).
    async fn get_session(
        &self,
        tenant: Option<TenantId>,
        id: SessionId,
    ) -> Result<Option<SessionRecord>, StoreError>;

    /// Sessions of a tenant, newest first.
    async fn list_sessions(
        &self,
        tenant: TenantId,
        query: &SessionQuery,
    ) -> Result<Vec<SessionRecord>, StoreError>;

    /// Every session that has not ended, for reload after a restart.
    async fn live_sessions(&self) -> Result<Vec<SessionRecord>, StoreError>;

    /// Writes the rows in one transaction: all or nothing.
    async fn write_batch(&self, rows: &[Row]) -> Result<(), StoreError>;

    /// A session's conversation, newest first.
    async fn conversation(
        &self,
        session: SessionId,
        page: Page,
    ) -> Result<Vec<ConversationRow>, StoreError>;

    /// Whether the session holds the conversation row with this unique
    /// key (`ConversationRow::sender` and `client_msg_id`): how a
    /// redelivered inbound event finds out that the row its first
    /// delivery should have written never committed.
    async fn has_conversation_row(
        &self,
        session: SessionId,
        message_type: MessageType,
        sender: &str,
        client_msg_id: &str,
    ) -> Result<bool, StoreError>;

    /// A session's interventions, newest first.
    async fn interventions(
        &self,
        session: SessionId,
        page: Page,
    ) -> Result<Vec<InterventionRow>, StoreError>;

    /// A session's alerts, newest first.
    async fn alerts(&self, session: SessionId, page: Page) -> Result<Vec<AlertRow>, StoreError>;

    /// A session's participants, in the order they first joined.
    async fn participants(&self, session: SessionId) -> Result<Vec<ParticipantRow>, StoreError>;

    /// Deletes performance metrics older than `cutoff`; returns how many.
    async fn delete_metrics_before(&self, cutoff: DateTime<Utc>) -> Result<u64, StoreError>;

    /// Creates the tenant if no tenant with its id exists (an existing one
    /// is left as it is).
    async fn ensure_tenant(&self, tenant: &TenantRecord) -> Result<(), StoreError>;

    async fn get_tenant(&self, id: TenantId) -> Result<Option<TenantRecord>, StoreError>;

    /// Adds `n` to the tenant's `api_calls_used`; returns the new total.
    async fn count_api_calls(&self, tenant: TenantId, n: i32) -> Result<i64, StoreError>;

    async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError>;

    /// The key whose SHA-256 (lowercase hex) is `key_hash`, revoked or not.
    async fn api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>, StoreError>;

    /// Keys of one tenant, or of all tenants; newest first.
    async fn list_api_keys(
        &self,
        tenant: Option<TenantId>,
    ) -> Result<Vec<ApiKeyRecord>, StoreError>;

    /// Revokes a key (of `tenant`, if given). Returns false if no such key.
    async fn revoke_api_key(&self, id: Uuid, tenant: Option<TenantId>) -> Result<bool, StoreError>;

    /// Records that a key was used.
    async fn touch_api_key(&self, id: Uuid, at: DateTime<Utc>) -> Result<(), StoreError>;
}
