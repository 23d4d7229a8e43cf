//! Which hub events become webhook events, their names, and the request
//! body each one is sent as (`docs/WEBHOOKS.md` lists them all).
//!
//! A body follows the Standard Webhooks payload convention:
//! `{"type": "question.created", "timestamp": "<RFC 3339>", "data": {…}}`,
//! where `data` is the session event as the protocol carries it (its
//! `kind` and fields) plus `session_id`, `seq` and `ts` (Unix ms).

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::ids::TenantId;
use crate::protocol::SessionStatus;
use crate::protocol::model::{AlertType, Event};
use crate::store::WebhookEventRow;
use crate::stream::Published;

/// Every event type an endpoint can subscribe to (or `*` for all).
pub const EVENT_TYPES: [&str; 22] = [
    "session.created",
    "session.starting",
    "session.active",
    "session.paused",
    "session.stopping",
    "session.stopped",
    "session.failed",
    "question.created",
    "response.created",
    "intervention.takeover",
    "intervention.release",
    "intervention.suggestion",
    "intervention.correction",
    "intervention.emergency_stop",
    "intervention.emergency_stop_acknowledged",
    "intervention.emergency_stop_escalated",
    "alert.raised",
    "alert.acknowledged",
    "job.progress",
    "job.completed",
    "job.failed",
    "job.cancelled",
];

/// Whether `name` is an event type (or `*`).
pub fn is_event_type(name: &str) -> bool {
    name == "*" || EVENT_TYPES.contains(&name)
}

/// What a job reports (the jobs module enqueues these with its rows).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum JobEvent {
    Progress,
    Completed,
    Failed,
    Cancelled,
}

impl JobEvent {
    pub fn event_type(self) -> &'static str {
        match self {
            JobEvent::Progress => "job.progress",
            JobEvent::Completed => "job.completed",
            JobEvent::Failed => "job.failed",
            JobEvent::Cancelled => "job.cancelled",
        }
    }
}

/// The webhook event types a session event is reported as: none for
/// most (state, presence, metrics, …). A `command_ack` is reported only
/// when it acknowledges an emergency stop, which only its sender knows
/// (`emergency_ack`).
pub fn types_of(event: &Event, emergency_ack: bool) -> &'static [&'static str] {
    match event {
        Event::Created { .. } => &["session.created"],
        Event::Lifecycle { status, .. } => match status {
            SessionStatus::Created => &[],
            SessionStatus::Starting => &["session.starting"],
            SessionStatus::Active => &["session.active"],
            SessionStatus::Paused => &["session.paused"],
            SessionStatus::Stopping => &["session.stopping"],
            SessionStatus::Stopped => &["session.stopped"],
            SessionStatus::Failed => &["session.failed"],
        },
        Event::Question { .. } => &["question.created"],
        Event::Response(_) => &["response.created"],
        Event::Takeover { .. } => &["intervention.takeover"],
        Event::Release { .. } => &["intervention.release"],
        Event::Suggestion { .. } => &["intervention.suggestion"],
        Event::Correction { .. } => &["intervention.correction"],
        Event::EmergencyStop { .. } => &["intervention.emergency_stop"],
        Event::CommandAck { .. } if emergency_ack => &["intervention.emergency_stop_acknowledged"],
        Event::Alert { alert } if alert.alert_type == AlertType::EmergencyStopUnacknowledged => {
            &["alert.raised", "intervention.emergency_stop_escalated"]
        }
        Event::Alert { .. } => &["alert.raised"],
        Event::AlertAck { .. } => &["alert.acknowledged"],
        Event::CommandAck { .. }
        | Event::State { .. }
        | Event::Context { .. }
        | Event::Presence { .. }
        | Event::Counters { .. }
        | Event::Renderer { .. }
        | Event::ResponseHeld(_)
        | Event::Command { .. }
        | Event::Metrics { .. }
        | Event::Custom { .. }
        | Event::Job { .. } => &[],
    }
}

/// The webhook rows for a published session event of `tenant`'s (none
/// for most events).
pub fn session_rows(tenant: TenantId, p: &Published, emergency_ack: bool) -> Vec<WebhookEventRow> {
    let types = types_of(&p.event, emergency_ack);
    if types.is_empty() {
        return Vec::new();
    }
    let mut data = serde_json::to_value(&p.event).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut data {
        m.insert("session_id".into(), json!(p.session));
        m.insert("seq".into(), json!(p.seq));
        m.insert("ts".into(), json!(p.ts));
    }
    let at = DateTime::from_timestamp_millis(p.ts as i64).unwrap_or_else(Utc::now);
    types
        .iter()
        .map(|t| event_row(tenant, t, data.clone(), at))
        .collect()
}

/// A job's webhook row: `data` is the job as its REST API shows it.
pub fn job_row(
    tenant: TenantId,
    event: JobEvent,
    data: Value,
    at: DateTime<Utc>,
) -> WebhookEventRow {
    event_row(tenant, event.event_type(), data, at)
}

/// One event with a fresh `webhook-id`, its body rendered once: every
/// attempt and replay sends (and signs) these exact bytes.
pub fn event_row(
    tenant: TenantId,
    event_type: &str,
    data: Value,
    at: DateTime<Utc>,
) -> WebhookEventRow {
    let body = json!({
        "type": event_type,
        "timestamp": at.to_rfc3339_opts(SecondsFormat::Millis, true),
        "data": data,
    });
    WebhookEventRow {
        msg_id: format!("msg_{}", uuid::Uuid::now_v7().simple()),
        tenant,
        event_type: event_type.to_owned(),
        body: body.to_string(),
        created_at: Utc::now(),
    }
}
