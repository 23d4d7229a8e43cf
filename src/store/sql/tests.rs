//! Checks of the table descriptions that the compiler cannot make: every
//! cell fits its column's type, column names are unique, and the shared
//! clauses render as the stores expect.

use chrono::Utc;
use serde_json::json;
use uuid::Uuid;

use super::columns::{Cell, OnConflict, Shape, SqlType};
use super::plan::{AlertAck, InterventionEnd, ParticipantLeft, Progress, StateRow};
use crate::ids::{EventId, SessionId, TenantId};
use crate::protocol::model::{AlertType, Counters, SessionState, SessionStatus, Severity};
use crate::store::{
    AlertRow, ApiKeyRecord, ConversationRow, InterventionRow, InterventionType, MessageType,
    MetricRow, ParticipantRow, QuestionResponseRow, SessionRecord, TenantRecord,
};

fn fits(cell: &Cell<'_>, ty: SqlType) -> bool {
    matches!(
        (cell, ty),
        (Cell::Uuid(_), SqlType::Uuid)
            | (Cell::Text(_), SqlType::Text)
            | (Cell::Int4(_), SqlType::Int4)
            | (Cell::Int8(_), SqlType::Int8)
            | (Cell::Float8(_), SqlType::Decimal)
            | (Cell::Bool(_), SqlType::Bool)
            | (Cell::Timestamp(_), SqlType::Timestamp)
            | (Cell::Json(_), SqlType::Json)
            | (Cell::TextList(_), SqlType::TextList)
    )
}

fn check<const N: usize, R: Shape<N>>(row: &R) {
    for (cell, column) in row.cells().iter().zip(R::COLUMNS.iter()) {
        assert!(
            fits(cell, column.ty),
            "{}.{}: {cell:?} does not fit {:?}",
            R::TABLE,
            column.name,
            column.ty
        );
    }
    let mut names: Vec<&str> = R::COLUMNS.iter().map(|c| c.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), N, "{}: repeated column", R::TABLE);
}

#[test]
fn every_cell_fits_its_column() {
    let now = Utc::now();
    let session = SessionId::new();
    let tenant = TenantRecord::new(TenantId(Uuid::now_v7()), "a@example.com");
    check(&tenant);
    check(&ApiKeyRecord {
        id: Uuid::now_v7(),
        tenant: tenant.id,
        name: "k".into(),
        key_hash: "00".into(),
        scopes: vec!["eva:read".into()],
        created_at: now,
        expires_at: None,
        last_used: Some(now),
        is_active: true,
    });
    let record = SessionRecord {
        id: session,
        tenant: tenant.id,
        avatar_id: None,
        name: Some("n".into()),
        description: None,
        external_id: None,
        status: SessionStatus::Created,
        config: json!({}),
        created_at: now,
        started_at: None,
        ended_at: None,
        counters: Counters::default(),
        last_error: None,
        state: SessionState::default(),
        context: json!({}),
    };
    check(&record);
    let metrics = json!({"fps": 30});
    check(&StateRow::initial(&record, &metrics));
    check(&Progress {
        id: session,
        status: SessionStatus::Active,
        started_at: Some(now),
        ended_at: None,
        counters: Counters::default(),
        last_error: Some("e"),
    });
    check(&ParticipantRow {
        session_id: session,
        participant_id: "p".into(),
        participant_name: None,
        joined_at: now,
        left_at: None,
        questions_asked: 0,
    });
    check(&ParticipantLeft {
        session_id: session,
        participant_id: "p",
        left_at: now,
        questions_asked: 1,
    });
    let conversation = EventId::new();
    check(&ConversationRow {
        id: conversation,
        session_id: session,
        seq: 1,
        participant_id: Some("p".into()),
        message_type: MessageType::Question,
        content: "q".into(),
        speaker: None,
        timestamp: now,
        confidence_score: Some(0.5),
        response_time_ms: Some(3),
        context: json!({}),
        metadata: json!({}),
        client_msg_id: Some("c".into()),
    });
    check(&QuestionResponseRow {
        id: EventId::new(),
        conversation_id: conversation,
        question_text: "q".into(),
        response_text: "r".into(),
        intent_classification: None,
        knowledge_sources: vec!["kb".into()],
        confidence_score: 0.5,
        response_time_ms: 3,
        created_at: now,
    });
    check(&InterventionRow {
        id: EventId::new(),
        session_id: session,
        seq: 2,
        operator_id: "op".into(),
        intervention_type: InterventionType::Takeover,
        trigger_reason: None,
        action_taken: "a".into(),
        created_at: now,
        ended_at: None,
        duration_seconds: None,
        client_msg_id: None,
    });
    check(&InterventionEnd {
        id: EventId::new(),
        ended_at: now,
        duration_seconds: 4,
    });
    check(&AlertRow {
        id: EventId::new(),
        session_id: session,
        alert_type: AlertType::MetricThreshold,
        severity: Severity::Warning,
        title: "t".into(),
        message: "m".into(),
        component: None,
        metadata: json!({}),
        created_at: now,
        acknowledged: false,
        acknowledged_by: None,
        acknowledged_at: None,
    });
    check(&AlertAck {
        id: EventId::new(),
        by: "op",
        at: now,
    });
    check(&MetricRow {
        id: Uuid::now_v7(),
        session_id: session,
        metric_type: "fps".into(),
        metric_value: 30.0,
        unit: Some("fps".into()),
        timestamp: now,
        component: None,
    });
}

#[test]
fn upsert_sets_every_column_but_the_key() {
    let sql = OnConflict::UpdateOn("session_id").sql(&StateRow::COLUMNS);
    assert!(sql.starts_with("ON CONFLICT (session_id) DO UPDATE SET current_slide = "));
    assert!(sql.ends_with("system_metrics = excluded.system_metrics"));
    assert!(!sql.contains("session_id = excluded"));
}
