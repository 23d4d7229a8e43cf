//! `sessions`, `session_state` and `session_participants`, described once
//! for both SQL stores. A session is read from `sessions` joined with its
//! state row.

use serde_json::Value;

use crate::ids::{SessionId, TenantId};
use crate::protocol::model::{Counters, SessionState};
use crate::store::sql::columns::{
    Cell, Column, Decode, Insert, OnConflict, Parent, ReadRow, Shape, col, count, int4, ms_to_ts,
    parse_enum, ts_to_ms,
};
use crate::store::sql::plan::{ParticipantLeft, Progress, StateRow, participant_row_id};
use crate::store::{ParticipantRow, SessionRecord, StoreError};

const SESSIONS: [Column; 16] = [
    col::uuid("id"),
    col::uuid("user_id"),
    col::uuid("avatar_id"),
    col::text("name"),
    col::text("description"),
    col::text("status"),
    col::json("config"),
    col::timestamp("created_at"),
    col::timestamp("started_at"),
    col::timestamp("ended_at"),
    col::int4("participant_count"),
    col::int4("questions_received"),
    col::int4("operator_interventions"),
    col::int4("error_count"),
    col::text("last_error"),
    col::text("external_id"),
];

impl Shape<{ SESSIONS.len() }> for SessionRecord {
    const TABLE: &'static str = "sessions";
    const COLUMNS: [Column; SESSIONS.len()] = SESSIONS;
    fn cells(&self) -> [Cell<'_>; SESSIONS.len()] {
        [
            self.id.0.into(),
            self.tenant.0.into(),
            self.avatar_id.into(),
            self.name.as_deref().into(),
            self.description.as_deref().into(),
            self.status.as_str().into(),
            (&self.config).into(),
            self.created_at.into(),
            self.started_at.into(),
            self.ended_at.into(),
            int4(self.counters.participant_count.into()).into(),
            int4(self.counters.questions_received).into(),
            int4(self.counters.operator_interventions).into(),
            int4(self.counters.error_count).into(),
            self.last_error.as_deref().into(),
            self.external_id.as_deref().into(),
        ]
    }
}

impl Insert<{ SESSIONS.len() }> for SessionRecord {
    /// `create_session` is idempotent; it writes the state row only when
    /// this insert wrote the session.
    const ON_CONFLICT: OnConflict = OnConflict::SkipOn("id");
}

const PROGRESS: [Column; 9] = [
    col::uuid("id"),
    col::text("status"),
    col::timestamp("started_at"),
    col::timestamp("ended_at"),
    col::int4("participant_count"),
    col::int4("questions_received"),
    col::int4("operator_interventions"),
    col::int4("error_count"),
    col::text("last_error"),
];

/// A session's progress: key, then the new values. The stores' `SET`
/// keep a stored time or error when the new one is absent, and compute
/// `total_duration_seconds`.
impl Shape<{ PROGRESS.len() }> for Progress<'_> {
    const TABLE: &'static str = "sessions";
    const COLUMNS: [Column; PROGRESS.len()] = PROGRESS;
    fn cells(&self) -> [Cell<'_>; PROGRESS.len()] {
        [
            self.id.0.into(),
            self.status.as_str().into(),
            self.started_at.into(),
            self.ended_at.into(),
            int4(self.counters.participant_count.into()).into(),
            int4(self.counters.questions_received).into(),
            int4(self.counters.operator_interventions).into(),
            int4(self.counters.error_count).into(),
            self.last_error.into(),
        ]
    }
}

const SESSION_STATE: [Column; 10] = [
    col::uuid("session_id").write_only(),
    col::int4("current_slide"),
    col::text("presentation_mode"),
    col::bool("is_speaking"),
    col::bool("awaiting_questions"),
    col::bool("operator_connected"),
    col::timestamp("last_interaction"),
    col::text("current_topic"),
    col::json("conversation_context"),
    // The latest renderer metrics report; the hub never reads it back.
    col::json("system_metrics").write_only(),
];

impl<'a> StateRow<'a> {
    /// The state row `create_session` writes, with `system_metrics` as the
    /// column's default (`{}`).
    pub(crate) fn initial(s: &'a SessionRecord, no_metrics: &'a Value) -> StateRow<'a> {
        StateRow {
            session_id: s.id,
            state: &s.state,
            context: &s.context,
            metrics: no_metrics,
        }
    }
}

impl Shape<{ SESSION_STATE.len() }> for StateRow<'_> {
    const TABLE: &'static str = "session_state";
    const COLUMNS: [Column; SESSION_STATE.len()] = SESSION_STATE;
    fn cells(&self) -> [Cell<'_>; SESSION_STATE.len()] {
        [
            self.session_id.0.into(),
            self.state.current_slide.into(),
            self.state.presentation_mode.as_str().into(),
            self.state.is_speaking.into(),
            self.state.awaiting_questions.into(),
            self.state.operator_connected.into(),
            ms_to_ts(self.state.last_interaction).into(),
            self.state.current_topic.as_deref().into(),
            self.context.into(),
            // Before the first report: NULL.
            Some(self.metrics).filter(|m| !m.is_null()).into(),
        ]
    }
}

impl Insert<{ SESSION_STATE.len() }> for StateRow<'_> {
    /// A state may arrive for a session deleted meanwhile: skipped.
    const ONLY_WITH_PARENT: Option<Parent> =
        Some(Parent::new("sessions", "id", &SESSION_STATE, "session_id"));
    /// The latest state replaces the stored one.
    const ON_CONFLICT: OnConflict = OnConflict::UpdateOn("session_id");
}

/// Read from `sessions` joined with `session_state`: a session without a
/// state row (another writer's) reads with the default state.
impl Decode for SessionRecord {
    const SELECT: &'static [(&'static str, &'static [Column])] =
        &[("s", &SESSIONS), ("st", &SESSION_STATE)];
    const FROM: &'static str = "sessions s LEFT JOIN session_state st ON st.session_id = s.id";
    fn decode(r: &impl ReadRow) -> Result<Self, StoreError> {
        let defaults = SessionState::default();
        Ok(SessionRecord {
            id: SessionId(r.uuid("id")?),
            tenant: TenantId(r.uuid("user_id")?),
            avatar_id: r.opt_uuid("avatar_id")?,
            name: r.opt_text("name")?,
            description: r.opt_text("description")?,
            external_id: r.opt_text("external_id")?,
            status: parse_enum("sessions.status", &r.text("status")?)?,
            config: r.json_or_empty("config")?,
            created_at: r.ts_or_epoch("created_at")?,
            started_at: r.opt_ts("started_at")?,
            ended_at: r.opt_ts("ended_at")?,
            counters: Counters {
                participant_count: count(r.opt_i32("participant_count")?),
                questions_received: count(r.opt_i32("questions_received")?),
                operator_interventions: count(r.opt_i32("operator_interventions")?),
                error_count: count(r.opt_i32("error_count")?),
            },
            last_error: r.opt_text("last_error")?,
            state: SessionState {
                current_slide: r
                    .opt_i32("current_slide")?
                    .unwrap_or(defaults.current_slide),
                presentation_mode: r
                    .opt_text("presentation_mode")?
                    .unwrap_or(defaults.presentation_mode),
                is_speaking: r.opt_bool("is_speaking")?.unwrap_or(false),
                awaiting_questions: r.opt_bool("awaiting_questions")?.unwrap_or(false),
                operator_connected: r.opt_bool("operator_connected")?.unwrap_or(false),
                current_topic: r.opt_text("current_topic")?,
                last_interaction: ts_to_ms(r.opt_ts("last_interaction")?),
            },
            context: r.json_or_empty("conversation_context")?,
        })
    }
}

const SESSION_PARTICIPANTS: [Column; 7] = [
    // Derived from the session and the participant (see
    // `participant_row_id`).
    col::uuid("id").write_only(),
    col::uuid("session_id"),
    col::text("participant_id"),
    col::text("participant_name"),
    col::timestamp("joined_at").null_is_now(),
    col::timestamp("left_at"),
    col::int4("questions_asked"),
];

impl Shape<{ SESSION_PARTICIPANTS.len() }> for ParticipantRow {
    const TABLE: &'static str = "session_participants";
    const COLUMNS: [Column; SESSION_PARTICIPANTS.len()] = SESSION_PARTICIPANTS;
    fn cells(&self) -> [Cell<'_>; SESSION_PARTICIPANTS.len()] {
        [
            participant_row_id(self.session_id, &self.participant_id).into(),
            self.session_id.0.into(),
            (&self.participant_id).into(),
            self.participant_name.as_deref().into(),
            self.joined_at.into(),
            self.left_at.into(),
            self.questions_asked.into(),
        ]
    }
}

impl Insert<{ SESSION_PARTICIPANTS.len() }> for ParticipantRow {
    const ONLY_WITH_PARENT: Option<Parent> = Some(Parent::new(
        "sessions",
        "id",
        &SESSION_PARTICIPANTS,
        "session_id",
    ));
    /// A participant who comes back is present again.
    const ON_CONFLICT: OnConflict =
        OnConflict::Sql("ON CONFLICT (session_id, participant_id) DO UPDATE SET left_at = NULL");
}

impl Decode for ParticipantRow {
    const SELECT: &'static [(&'static str, &'static [Column])] = &[("", &SESSION_PARTICIPANTS)];
    const FROM: &'static str = "session_participants";
    fn decode(r: &impl ReadRow) -> Result<Self, StoreError> {
        Ok(ParticipantRow {
            session_id: SessionId(r.uuid("session_id")?),
            participant_id: r.text("participant_id")?,
            participant_name: r.opt_text("participant_name")?,
            joined_at: r.ts_or_epoch("joined_at")?,
            left_at: r.opt_ts("left_at")?,
            questions_asked: r.opt_i32("questions_asked")?.unwrap_or(0),
        })
    }
}

const PARTICIPANT_LEFT: [Column; 4] = [
    col::uuid("session_id"),
    col::text("participant_id"),
    col::timestamp("left_at"),
    col::int4("questions_asked"),
];

/// A participant left: key, then the new values.
impl Shape<{ PARTICIPANT_LEFT.len() }> for ParticipantLeft<'_> {
    const TABLE: &'static str = "session_participants";
    const COLUMNS: [Column; PARTICIPANT_LEFT.len()] = PARTICIPANT_LEFT;
    fn cells(&self) -> [Cell<'_>; PARTICIPANT_LEFT.len()] {
        [
            self.session_id.0.into(),
            self.participant_id.into(),
            self.left_at.into(),
            self.questions_asked.into(),
        ]
    }
}
