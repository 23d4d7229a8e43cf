//! The store rows the hub writes for what happens in a session: one
//! place that maps events to the seed tables' columns.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::ids::{EventId, SessionId};
use crate::session::{Replica, Session, ref_id};
use crate::store::{ConversationRow, InterventionRow, InterventionType, MessageType, Row};
use crate::stream::Published;

/// The session's status, timestamps and counters, for the store.
pub(crate) fn progress_row(id: SessionId, g: &Replica) -> Row {
    Row::SessionProgress {
        id,
        status: g.info.status,
        started_at: g.info.started_at,
        ended_at: g.info.ended_at,
        counters: g.counters,
        last_error: g.info.last_error.clone(),
    }
}

/// The session's latest state and context, for the store.
pub(crate) fn state_row(id: SessionId, g: &Replica) -> Row {
    Row::State {
        session_id: id,
        state: g.state.clone(),
        context: g.context.clone(),
        metrics: g
            .metrics
            .as_ref()
            .and_then(|m| serde_json::to_value(m).ok())
            .unwrap_or(Value::Null),
    }
}

/// Unix milliseconds as a timestamp.
pub(crate) fn ts(ms: u64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms as i64).unwrap_or_else(Utc::now)
}

/// A conversation row for an event.
#[allow(clippy::too_many_arguments)]
pub(crate) fn conversation(
    p: &Published,
    id: EventId,
    message_type: MessageType,
    content: &str,
    speaker: Option<&str>,
    scored: Option<(f64, u32)>,
    metadata: Value,
    client_msg_id: Option<&str>,
) -> ConversationRow {
    let participant_id = match message_type {
        MessageType::Question => Some(p.origin.sender.clone()),
        _ => None,
    };
    ConversationRow {
        id,
        session_id: p.session,
        seq: p.seq,
        participant_id,
        message_type,
        content: content.to_owned(),
        speaker: speaker.map(str::to_owned),
        timestamp: ts(p.ts),
        confidence_score: scored.map(|s| s.0),
        response_time_ms: scored.map(|s| s.1.min(i32::MAX as u32) as i32),
        context: json!({}),
        metadata,
        client_msg_id: client_msg_id.map(str::to_owned),
    }
}

/// An intervention row for an event.
pub(crate) fn intervention(
    p: &Published,
    operator: &str,
    kind: InterventionType,
    reason: Option<String>,
    action: &str,
    client_msg_id: Option<&str>,
) -> InterventionRow {
    InterventionRow {
        id: ref_id(&p.event).unwrap_or_default(),
        session_id: p.session,
        seq: p.seq,
        operator_id: operator.to_owned(),
        intervention_type: kind,
        trigger_reason: reason,
        action_taken: action.to_owned(),
        created_at: ts(p.ts),
        ended_at: None,
        duration_seconds: None,
        client_msg_id: client_msg_id.map(str::to_owned),
    }
}

/// The webhook rows of a published event (none for most events): queued
/// with the event's own rows, so its deliveries commit with them.
/// `emergency_ack` says a `command_ack` acknowledges an emergency stop.
pub(crate) fn webhook_rows(session: &Session, p: &Published, emergency_ack: bool) -> Vec<Row> {
    crate::webhooks::session_rows(session.tenant, p, emergency_ack)
        .into_iter()
        .map(Row::Webhook)
        .collect()
}
