//! The rows a session produces: `conversations`, `question_responses`,
//! `operator_interventions`, `system_alerts` and `performance_metrics`,
//! with the keyed updates of interventions (their end) and alerts (their
//! acknowledgement), described once for both SQL stores.

use crate::ids::{EventId, SessionId};
use crate::store::sql::columns::{
    Cell, Column, Decode, Insert, OnConflict, Parent, ReadRow, Shape, col, int8, parse_enum,
};
use crate::store::sql::plan::{AlertAck, InterventionEnd};
use crate::store::{
    AlertRow, ConversationRow, InterventionRow, MetricRow, QuestionResponseRow, StoreError,
};

const CONVERSATIONS: [Column; 13] = [
    col::uuid("id"),
    col::uuid("session_id"),
    col::int8("seq"),
    col::text("participant_id"),
    col::text("message_type"),
    col::text("content"),
    col::text("speaker"),
    col::timestamp("timestamp"),
    col::decimal("confidence_score"),
    col::int4("response_time_ms"),
    col::json("context"),
    col::json("metadata"),
    col::text("client_msg_id"),
];

impl Shape<{ CONVERSATIONS.len() }> for ConversationRow {
    const TABLE: &'static str = "conversations";
    const COLUMNS: [Column; CONVERSATIONS.len()] = CONVERSATIONS;
    fn cells(&self) -> [Cell<'_>; CONVERSATIONS.len()] {
        [
            self.id.0.into(),
            self.session_id.0.into(),
            int8(self.seq).into(),
            self.participant_id.as_deref().into(),
            self.message_type.as_str().into(),
            (&self.content).into(),
            self.speaker.as_deref().into(),
            self.timestamp.into(),
            self.confidence_score.into(),
            self.response_time_ms.into(),
            (&self.context).into(),
            (&self.metadata).into(),
            self.client_msg_id.as_deref().into(),
        ]
    }
}

impl Insert<{ CONVERSATIONS.len() }> for ConversationRow {
    /// A resend (same id, or same sender and client id) is skipped.
    const ON_CONFLICT: OnConflict = OnConflict::Skip;
}

impl Decode for ConversationRow {
    const SELECT: &'static [(&'static str, &'static [Column])] = &[("", &CONVERSATIONS)];
    const FROM: &'static str = "conversations";
    fn decode(r: &impl ReadRow) -> Result<Self, StoreError> {
        Ok(ConversationRow {
            id: EventId(r.uuid("id")?),
            session_id: SessionId(r.uuid("session_id")?),
            seq: r.i64("seq")?.max(0) as u64,
            participant_id: r.opt_text("participant_id")?,
            message_type: parse_enum("conversations.message_type", &r.text("message_type")?)?,
            content: r.text("content")?,
            speaker: r.opt_text("speaker")?,
            timestamp: r.ts_or_epoch("timestamp")?,
            confidence_score: r.opt_f64("confidence_score")?,
            response_time_ms: r.opt_i32("response_time_ms")?,
            context: r.json_or_empty("context")?,
            metadata: r.json_or_empty("metadata")?,
            client_msg_id: r.opt_text("client_msg_id")?,
        })
    }
}

const QUESTION_RESPONSES: [Column; 9] = [
    col::uuid("id"),
    col::uuid("conversation_id"),
    col::text("question_text"),
    col::text("response_text"),
    col::text("intent_classification"),
    col::text_list("knowledge_sources"),
    col::decimal("confidence_score"),
    col::int4("response_time_ms"),
    col::timestamp("created_at"),
];

impl Shape<{ QUESTION_RESPONSES.len() }> for QuestionResponseRow {
    const TABLE: &'static str = "question_responses";
    const COLUMNS: [Column; QUESTION_RESPONSES.len()] = QUESTION_RESPONSES;
    fn cells(&self) -> [Cell<'_>; QUESTION_RESPONSES.len()] {
        [
            self.id.0.into(),
            self.conversation_id.0.into(),
            (&self.question_text).into(),
            (&self.response_text).into(),
            self.intent_classification.as_deref().into(),
            (&self.knowledge_sources).into(),
            self.confidence_score.into(),
            self.response_time_ms.into(),
            self.created_at.into(),
        ]
    }
}

impl Insert<{ QUESTION_RESPONSES.len() }> for QuestionResponseRow {
    /// A response that was a resend of a stored one was not inserted (its
    /// conversation row was skipped); its analysis row is a resend too and
    /// is skipped.
    const ONLY_WITH_PARENT: Option<Parent> = Some(Parent::new(
        "conversations",
        "id",
        &QUESTION_RESPONSES,
        "conversation_id",
    ));
    const ON_CONFLICT: OnConflict = OnConflict::Skip;
}

const OPERATOR_INTERVENTIONS: [Column; 11] = [
    col::uuid("id"),
    col::uuid("session_id"),
    col::int8("seq"),
    col::text("operator_id"),
    col::text("intervention_type"),
    col::text("trigger_reason"),
    col::text("action_taken"),
    col::timestamp("created_at"),
    col::timestamp("ended_at"),
    col::int4("duration_seconds"),
    col::text("client_msg_id"),
];

impl Shape<{ OPERATOR_INTERVENTIONS.len() }> for InterventionRow {
    const TABLE: &'static str = "operator_interventions";
    const COLUMNS: [Column; OPERATOR_INTERVENTIONS.len()] = OPERATOR_INTERVENTIONS;
    fn cells(&self) -> [Cell<'_>; OPERATOR_INTERVENTIONS.len()] {
        [
            self.id.0.into(),
            self.session_id.0.into(),
            int8(self.seq).into(),
            (&self.operator_id).into(),
            self.intervention_type.as_str().into(),
            self.trigger_reason.as_deref().into(),
            (&self.action_taken).into(),
            self.created_at.into(),
            self.ended_at.into(),
            self.duration_seconds.into(),
            self.client_msg_id.as_deref().into(),
        ]
    }
}

impl Insert<{ OPERATOR_INTERVENTIONS.len() }> for InterventionRow {
    /// A resend (same id, or same operator and client id) is skipped.
    const ON_CONFLICT: OnConflict = OnConflict::Skip;
}

impl Decode for InterventionRow {
    const SELECT: &'static [(&'static str, &'static [Column])] = &[("", &OPERATOR_INTERVENTIONS)];
    const FROM: &'static str = "operator_interventions";
    fn decode(r: &impl ReadRow) -> Result<Self, StoreError> {
        Ok(InterventionRow {
            id: EventId(r.uuid("id")?),
            session_id: SessionId(r.uuid("session_id")?),
            seq: r.i64("seq")?.max(0) as u64,
            operator_id: r.text("operator_id")?,
            intervention_type: parse_enum(
                "operator_interventions.intervention_type",
                &r.text("intervention_type")?,
            )?,
            trigger_reason: r.opt_text("trigger_reason")?,
            action_taken: r.text("action_taken")?,
            created_at: r.ts_or_epoch("created_at")?,
            ended_at: r.opt_ts("ended_at")?,
            duration_seconds: r.opt_i32("duration_seconds")?,
            client_msg_id: r.opt_text("client_msg_id")?,
        })
    }
}

const INTERVENTION_END: [Column; 3] = [
    col::uuid("id"),
    col::timestamp("ended_at"),
    col::int4("duration_seconds"),
];

/// A takeover ended: key, then the new values.
impl Shape<{ INTERVENTION_END.len() }> for InterventionEnd {
    const TABLE: &'static str = "operator_interventions";
    const COLUMNS: [Column; INTERVENTION_END.len()] = INTERVENTION_END;
    fn cells(&self) -> [Cell<'_>; INTERVENTION_END.len()] {
        [
            self.id.0.into(),
            self.ended_at.into(),
            self.duration_seconds.into(),
        ]
    }
}

const SYSTEM_ALERTS: [Column; 12] = [
    col::uuid("id"),
    col::uuid("session_id"),
    col::text("alert_type"),
    col::text("severity"),
    col::text("title"),
    col::text("message"),
    col::text("component"),
    col::json("metadata"),
    col::timestamp("created_at"),
    col::bool("acknowledged"),
    col::text("acknowledged_by"),
    col::timestamp("acknowledged_at"),
];

impl Shape<{ SYSTEM_ALERTS.len() }> for AlertRow {
    const TABLE: &'static str = "system_alerts";
    const COLUMNS: [Column; SYSTEM_ALERTS.len()] = SYSTEM_ALERTS;
    fn cells(&self) -> [Cell<'_>; SYSTEM_ALERTS.len()] {
        [
            self.id.0.into(),
            self.session_id.0.into(),
            self.alert_type.as_str().into(),
            self.severity.as_str().into(),
            (&self.title).into(),
            (&self.message).into(),
            self.component.as_deref().into(),
            (&self.metadata).into(),
            self.created_at.into(),
            self.acknowledged.into(),
            self.acknowledged_by.as_deref().into(),
            self.acknowledged_at.into(),
        ]
    }
}

impl Insert<{ SYSTEM_ALERTS.len() }> for AlertRow {
    const ON_CONFLICT: OnConflict = OnConflict::Skip;
}

impl Decode for AlertRow {
    const SELECT: &'static [(&'static str, &'static [Column])] = &[("", &SYSTEM_ALERTS)];
    const FROM: &'static str = "system_alerts";
    fn decode(r: &impl ReadRow) -> Result<Self, StoreError> {
        Ok(AlertRow {
            id: EventId(r.uuid("id")?),
            session_id: SessionId(r.opt_uuid("session_id")?.unwrap_or_default()),
            alert_type: parse_enum("system_alerts.alert_type", &r.text("alert_type")?)?,
            severity: parse_enum(
                "system_alerts.severity",
                r.opt_text("severity")?.as_deref().unwrap_or("info"),
            )?,
            title: r.text("title")?,
            message: r.text("message")?,
            component: r.opt_text("component")?,
            metadata: r.json_or_empty("metadata")?,
            created_at: r.ts_or_epoch("created_at")?,
            acknowledged: r.opt_bool("acknowledged")?.unwrap_or(false),
            acknowledged_by: r.opt_text("acknowledged_by")?,
            acknowledged_at: r.opt_ts("acknowledged_at")?,
        })
    }
}

const ALERT_ACK: [Column; 3] = [
    col::uuid("id"),
    col::text("acknowledged_by"),
    col::timestamp("acknowledged_at"),
];

/// An alert acknowledged: key, then the new values (the stores' `SET`
/// keeps the first acknowledgement).
impl Shape<{ ALERT_ACK.len() }> for AlertAck<'_> {
    const TABLE: &'static str = "system_alerts";
    const COLUMNS: [Column; ALERT_ACK.len()] = ALERT_ACK;
    fn cells(&self) -> [Cell<'_>; ALERT_ACK.len()] {
        [self.id.0.into(), self.by.into(), self.at.into()]
    }
}

const PERFORMANCE_METRICS: [Column; 7] = [
    col::uuid("id"),
    col::uuid("session_id"),
    col::text("metric_type"),
    col::decimal("metric_value"),
    col::text("unit"),
    col::timestamp("timestamp"),
    col::text("component"),
];

impl Shape<{ PERFORMANCE_METRICS.len() }> for MetricRow {
    const TABLE: &'static str = "performance_metrics";
    const COLUMNS: [Column; PERFORMANCE_METRICS.len()] = PERFORMANCE_METRICS;
    fn cells(&self) -> [Cell<'_>; PERFORMANCE_METRICS.len()] {
        [
            self.id.into(),
            self.session_id.0.into(),
            (&self.metric_type).into(),
            self.metric_value.into(),
            self.unit.as_deref().into(),
            self.timestamp.into(),
            self.component.as_deref().into(),
        ]
    }
}

impl Insert<{ PERFORMANCE_METRICS.len() }> for MetricRow {
    const ON_CONFLICT: OnConflict = OnConflict::Skip;
}
