//! What the SQL stores share: how a batch of rows becomes set-based
//! statements, and how database errors become [`StoreError`]s.
//!
//! A batch is applied as if its rows were applied one by one, in order
//! (that is the memory store's definition). The SQL stores write it with
//! one statement per row kind instead, which is equivalent because:
//! * inserts (conversations, question responses, interventions, alerts,
//!   metrics) never depend on updates, and `ON CONFLICT DO NOTHING` makes
//!   repeats within or across batches harmless, so they go first, parents
//!   before children;
//! * keyed updates are folded per key into the one change the sequence
//!   makes (last status wins, first acknowledgement wins, ...), so each
//!   key appears once per statement, which PostgreSQL's upserts require;
//! * participant joins and leaves do not fold (a leave before a join
//!   behaves differently on a missing row), so they run in rounds: round
//!   `k` holds the `k`-th change of every participant.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::{
    AlertRow, ConversationRow, InterventionRow, MetricRow, ParticipantRow, QuestionResponseRow,
    Row, StoreError,
};
use crate::ids::{EventId, SessionId};
use crate::protocol::model::{Counters, SessionState, SessionStatus};

/// A batch sorted into set-based writes, in the order they must run.
#[derive(Debug, Default)]
pub(crate) struct Plan<'a> {
    pub conversations: Vec<&'a ConversationRow>,
    /// After `conversations`: each references a conversation row.
    pub question_responses: Vec<&'a QuestionResponseRow>,
    pub interventions: Vec<&'a InterventionRow>,
    /// One per intervention, the last end written.
    pub interventions_ended: Vec<InterventionEnd>,
    pub alerts: Vec<&'a AlertRow>,
    /// One per alert, the first acknowledgement (later ones never apply).
    pub alerts_acknowledged: Vec<AlertAck<'a>>,
    pub metrics: Vec<&'a MetricRow>,
    /// One per session.
    pub progress: Vec<Progress<'a>>,
    /// One per session, the latest.
    pub states: Vec<StateRow<'a>>,
    /// Each round holds at most one change per participant.
    pub participant_rounds: Vec<Vec<ParticipantChange<'a>>>,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct InterventionEnd {
    pub id: EventId,
    pub ended_at: DateTime<Utc>,
    pub duration_seconds: i32,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct AlertAck<'a> {
    pub id: EventId,
    pub by: &'a str,
    pub at: DateTime<Utc>,
}

/// The net change of a sequence of `SessionProgress` rows: the last
/// status and counters, and the last value given for each optional field
/// (an absent value keeps what the row has).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Progress<'a> {
    pub id: SessionId,
    pub status: SessionStatus,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub counters: Counters,
    pub last_error: Option<&'a str>,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct StateRow<'a> {
    pub session_id: SessionId,
    pub state: &'a SessionState,
    pub context: &'a serde_json::Value,
    pub metrics: &'a serde_json::Value,
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum ParticipantChange<'a> {
    /// Insert the row, or clear `left_at` if it exists.
    Joined(&'a ParticipantRow),
    /// Set `left_at` and `questions_asked` if the row exists.
    Left {
        session_id: SessionId,
        participant_id: &'a str,
        left_at: DateTime<Utc>,
        questions_asked: i32,
    },
}

impl<'a> ParticipantChange<'a> {
    fn key(&self) -> (SessionId, &'a str) {
        match self {
            ParticipantChange::Joined(p) => (p.session_id, p.participant_id.as_str()),
            ParticipantChange::Left {
                session_id,
                participant_id,
                ..
            } => (*session_id, participant_id),
        }
    }
}

impl<'a> Plan<'a> {
    pub(crate) fn new(rows: &'a [Row]) -> Plan<'a> {
        let mut plan = Plan::default();
        let mut ended: HashMap<EventId, usize> = HashMap::new();
        let mut acked: HashMap<EventId, ()> = HashMap::new();
        let mut progress: HashMap<SessionId, usize> = HashMap::new();
        let mut states: HashMap<SessionId, usize> = HashMap::new();
        let mut participant_changes: HashMap<(SessionId, &'a str), usize> = HashMap::new();
        for row in rows {
            match row {
                Row::Conversation(c) => plan.conversations.push(c),
                Row::QuestionResponse(q) => plan.question_responses.push(q),
                Row::Intervention(i) => plan.interventions.push(i),
                Row::InterventionEnded {
                    id,
                    ended_at,
                    duration_seconds,
                } => {
                    let end = InterventionEnd {
                        id: *id,
                        ended_at: *ended_at,
                        duration_seconds: *duration_seconds,
                    };
                    match ended.get(id) {
                        Some(&i) => plan.interventions_ended[i] = end,
                        None => {
                            ended.insert(*id, plan.interventions_ended.len());
                            plan.interventions_ended.push(end);
                        }
                    }
                }
                Row::Alert(a) => plan.alerts.push(a),
                Row::AlertAcknowledged { id, by, at } => {
                    if acked.insert(*id, ()).is_none() {
                        plan.alerts_acknowledged.push(AlertAck {
                            id: *id,
                            by,
                            at: *at,
                        });
                    }
                }
                Row::Metric(m) => plan.metrics.push(m),
                Row::SessionProgress {
                    id,
                    status,
                    started_at,
                    ended_at,
                    counters,
                    last_error,
                } => {
                    let next = Progress {
                        id: *id,
                        status: *status,
                        started_at: *started_at,
                        ended_at: *ended_at,
                        counters: *counters,
                        last_error: last_error.as_deref(),
                    };
                    match progress.get(id) {
                        Some(&i) => {
                            let prev = plan.progress[i];
                            plan.progress[i] = Progress {
                                started_at: next.started_at.or(prev.started_at),
                                ended_at: next.ended_at.or(prev.ended_at),
                                last_error: next.last_error.or(prev.last_error),
                                ..next
                            };
                        }
                        None => {
                            progress.insert(*id, plan.progress.len());
                            plan.progress.push(next);
                        }
                    }
                }
                Row::State {
                    session_id,
                    state,
                    context,
                    metrics,
                } => {
                    let next = StateRow {
                        session_id: *session_id,
                        state,
                        context,
                        metrics,
                    };
                    match states.get(session_id) {
                        Some(&i) => plan.states[i] = next,
                        None => {
                            states.insert(*session_id, plan.states.len());
                            plan.states.push(next);
                        }
                    }
                }
                Row::ParticipantJoined(p) => {
                    plan.push_participant(&mut participant_changes, ParticipantChange::Joined(p))
                }
                Row::ParticipantLeft {
                    session_id,
                    participant_id,
                    left_at,
                    questions_asked,
                } => plan.push_participant(
                    &mut participant_changes,
                    ParticipantChange::Left {
                        session_id: *session_id,
                        participant_id,
                        left_at: *left_at,
                        questions_asked: *questions_asked,
                    },
                ),
            }
        }
        plan
    }

    fn push_participant(
        &mut self,
        seen: &mut HashMap<(SessionId, &'a str), usize>,
        change: ParticipantChange<'a>,
    ) {
        let n = seen.entry(change.key()).or_insert(0);
        if self.participant_rounds.len() <= *n {
            self.participant_rounds.push(Vec::new());
        }
        self.participant_rounds[*n].push(change);
        *n += 1;
    }
}

/// The id of a participant's row: derived from the session and the
/// participant, so a retried insert meets its own earlier row.
pub(crate) fn participant_row_id(session: SessionId, participant_id: &str) -> Uuid {
    Uuid::new_v5(&session.0, participant_id.as_bytes())
}

/// Seed 000 keeps counters in INTEGER columns; larger values are stored as
/// the largest INTEGER.
pub(crate) fn int4(v: u64) -> i32 {
    v.min(i32::MAX as u64) as i32
}

/// A stored INTEGER counter back to its type; negatives (never written by
/// the hub) read as 0.
pub(crate) fn count<T: TryFrom<i64> + Default>(v: Option<i32>) -> T {
    T::try_from(i64::from(v.unwrap_or(0).max(0))).unwrap_or_default()
}

/// Unix milliseconds (0 = never) as a nullable timestamp.
pub(crate) fn ms_to_ts(ms: u64) -> Option<DateTime<Utc>> {
    if ms == 0 {
        None
    } else {
        DateTime::from_timestamp_millis(ms.min(i64::MAX as u64) as i64)
    }
}

pub(crate) fn ts_to_ms(ts: Option<DateTime<Utc>>) -> u64 {
    ts.map_or(0, |t| t.timestamp_millis().max(0) as u64)
}

/// Parses a snake_case enum stored as text (status, severity, types).
pub(crate) fn parse_enum<T: DeserializeOwned>(column: &str, value: &str) -> Result<T, StoreError> {
    serde_json::from_value(serde_json::Value::String(value.to_owned()))
        .map_err(|_| StoreError::Rejected(format!("unexpected value {value:?} in column {column}")))
}

/// The database a [`classify`]d error came from: they number errors
/// differently.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Dialect {
    Postgres,
    Sqlite,
}

/// Sorts a database error into "retry later" and "will never work".
///
/// Constraint violations, bad data and schema mismatches are
/// [`StoreError::Rejected`]; everything else (connection failures,
/// timeouts, a backend terminated by an administrator, serialization
/// failures, a database shutting down or out of resources) is
/// [`StoreError::Unavailable`], so the writer keeps retrying.
pub(crate) fn classify(dialect: Dialect, e: sqlx::Error) -> StoreError {
    use sqlx::Error as E;
    match &e {
        E::Database(db) => {
            let rejected = match db.kind() {
                sqlx::error::ErrorKind::UniqueViolation
                | sqlx::error::ErrorKind::ForeignKeyViolation
                | sqlx::error::ErrorKind::NotNullViolation
                | sqlx::error::ErrorKind::CheckViolation => true,
                sqlx::error::ErrorKind::Other => {
                    db.code().is_some_and(|c| permanent_code(dialect, &c))
                }
                _ => false,
            };
            if rejected {
                StoreError::Rejected(db.message().to_owned())
            } else {
                StoreError::Unavailable(db.message().to_owned())
            }
        }
        E::Encode(_)
        | E::Decode(_)
        | E::ColumnDecode { .. }
        | E::ColumnNotFound(_)
        | E::ColumnIndexOutOfBounds { .. }
        | E::TypeNotFound { .. }
        | E::RowNotFound
        | E::InvalidArgument(_)
        | E::Configuration(_) => StoreError::Rejected(e.to_string()),
        _ => StoreError::Unavailable(e.to_string()),
    }
}

/// Error codes no retry can fix.
///
/// PostgreSQL SQLSTATE classes 22 (data exception), 23 (integrity), 42
/// (syntax, undefined table or column), 44 (check option) and 54 (program
/// limit, e.g. an index row too large). Classes such as 08 (connection),
/// 40 (serialization), 53 (resources) and 57 (operator intervention,
/// e.g. `pg_terminate_backend`) are retried.
///
/// SQLite primary result codes (the low byte of the extended code): 1
/// (plain error, e.g. a missing table), 18 (too big), 19 (constraint), 20
/// (mismatch), 25 (range). Busy, locked, I/O and full are retried.
fn permanent_code(dialect: Dialect, code: &str) -> bool {
    match dialect {
        Dialect::Postgres => {
            matches!(code.get(..2), Some("22" | "23" | "42" | "44" | "54"))
        }
        Dialect::Sqlite => code
            .parse::<i64>()
            .is_ok_and(|n| matches!(n & 0xff, 1 | 18 | 19 | 20 | 25)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::model::SessionStatus;

    fn progress(id: SessionId, status: SessionStatus, started: Option<i64>) -> Row {
        Row::SessionProgress {
            id,
            status,
            started_at: started.and_then(DateTime::from_timestamp_millis),
            ended_at: None,
            counters: Counters::default(),
            last_error: None,
        }
    }

    #[test]
    fn progress_folds_to_last_status_keeping_given_times() {
        let s = SessionId::new();
        let rows = vec![
            progress(s, SessionStatus::Starting, Some(1000)),
            progress(s, SessionStatus::Active, None),
        ];
        let plan = Plan::new(&rows);
        assert_eq!(plan.progress.len(), 1);
        assert_eq!(plan.progress[0].status, SessionStatus::Active);
        assert_eq!(
            plan.progress[0].started_at.unwrap().timestamp_millis(),
            1000
        );
    }

    #[test]
    fn participant_changes_run_in_rounds() {
        let s = SessionId::new();
        let joined = |id: &str| {
            Row::ParticipantJoined(ParticipantRow {
                session_id: s,
                participant_id: id.into(),
                participant_name: None,
                joined_at: Utc::now(),
                left_at: None,
                questions_asked: 0,
            })
        };
        let left = |id: &str| Row::ParticipantLeft {
            session_id: s,
            participant_id: id.into(),
            left_at: Utc::now(),
            questions_asked: 1,
        };
        let rows = vec![joined("a"), joined("b"), left("a"), joined("a")];
        let plan = Plan::new(&rows);
        let sizes: Vec<usize> = plan.participant_rounds.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![2, 1, 1]);
    }

    #[test]
    fn first_acknowledgement_wins_and_last_end_wins() {
        let a = EventId::new();
        let at = Utc::now();
        let rows = vec![
            Row::AlertAcknowledged {
                id: a,
                by: "first".into(),
                at,
            },
            Row::AlertAcknowledged {
                id: a,
                by: "second".into(),
                at,
            },
            Row::InterventionEnded {
                id: a,
                ended_at: at,
                duration_seconds: 1,
            },
            Row::InterventionEnded {
                id: a,
                ended_at: at,
                duration_seconds: 2,
            },
        ];
        let plan = Plan::new(&rows);
        assert_eq!(plan.alerts_acknowledged.len(), 1);
        assert_eq!(plan.alerts_acknowledged[0].by, "first");
        assert_eq!(plan.interventions_ended.len(), 1);
        assert_eq!(plan.interventions_ended[0].duration_seconds, 2);
    }

    #[test]
    fn permanent_codes() {
        let pg = |c| permanent_code(Dialect::Postgres, c);
        assert!(pg("23505"));
        assert!(pg("22003"));
        assert!(pg("42P01"));
        assert!(!pg("57P01"), "a terminated backend is retried");
        assert!(!pg("08006"));
        assert!(!pg("40001"));
        assert!(!pg("53300"), "too many connections is retried");
        let lite = |c| permanent_code(Dialect::Sqlite, c);
        assert!(lite("2067"), "unique constraint");
        assert!(lite("1"));
        assert!(!lite("5"), "busy is retried");
        assert!(!lite("10"), "I/O errors are retried");
    }
}
