//! How a batch of rows becomes set-based statements: the [`Plan`] both SQL
//! stores run.
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
use uuid::Uuid;

use crate::ids::{EventId, JobId, SessionId};
use crate::protocol::job::Job;
use crate::protocol::model::{Counters, SessionState, SessionStatus};
use crate::store::{
    AlertRow, ConversationRow, InterventionRow, MetricRow, ParticipantRow, QuestionResponseRow,
    Row, WebhookEventRow,
};

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
    pub participant_rounds: Vec<ParticipantRound<'a>>,
    /// One per job, its latest state (an upsert that never goes back to
    /// an older `updated_at`).
    pub jobs: Vec<&'a Job>,
    /// Events for webhook endpoints, each written as one delivery per
    /// subscribed endpoint; last, since nothing depends on them.
    pub webhooks: Vec<&'a WebhookEventRow>,
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

/// One round of participant changes: at most one per participant, so
/// its joins and leaves touch different rows and may run in either order.
#[derive(Debug, Default)]
pub(crate) struct ParticipantRound<'a> {
    /// Insert the row, or clear `left_at` if it exists.
    pub joined: Vec<&'a ParticipantRow>,
    /// Set `left_at` and `questions_asked` if the row exists.
    pub left: Vec<ParticipantLeft<'a>>,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct ParticipantLeft<'a> {
    pub session_id: SessionId,
    pub participant_id: &'a str,
    pub left_at: DateTime<Utc>,
    pub questions_asked: i32,
}

/// A change to one participant's row, before it is sorted into its round.
enum ParticipantChange<'a> {
    Joined(&'a ParticipantRow),
    Left(ParticipantLeft<'a>),
}

impl<'a> ParticipantChange<'a> {
    fn key(&self) -> (SessionId, &'a str) {
        match self {
            ParticipantChange::Joined(p) => (p.session_id, p.participant_id.as_str()),
            ParticipantChange::Left(l) => (l.session_id, l.participant_id),
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
        let mut jobs: HashMap<JobId, usize> = HashMap::new();
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
                // One row per job and statement (an upsert may not touch a
                // row twice); the newest change wins, as in the upsert.
                Row::Job(j) => match jobs.get(&j.id) {
                    Some(&i) if plan.jobs[i].updated_at <= j.updated_at => plan.jobs[i] = j,
                    Some(_) => {}
                    None => {
                        jobs.insert(j.id, plan.jobs.len());
                        plan.jobs.push(j);
                    }
                },
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
                    ParticipantChange::Left(ParticipantLeft {
                        session_id: *session_id,
                        participant_id,
                        left_at: *left_at,
                        questions_asked: *questions_asked,
                    }),
                ),
                Row::Webhook(w) => plan.webhooks.push(w),
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
            self.participant_rounds.push(ParticipantRound::default());
        }
        let round = &mut self.participant_rounds[*n];
        match change {
            ParticipantChange::Joined(p) => round.joined.push(p),
            ParticipantChange::Left(l) => round.left.push(l),
        }
        *n += 1;
    }
}

/// The id of a participant's row: derived from the session and the
/// participant, so a retried insert meets its own earlier row.
pub(crate) fn participant_row_id(session: SessionId, participant_id: &str) -> Uuid {
    Uuid::new_v5(&session.0, participant_id.as_bytes())
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
        let sizes: Vec<(usize, usize)> = plan
            .participant_rounds
            .iter()
            .map(|r| (r.joined.len(), r.left.len()))
            .collect();
        assert_eq!(sizes, vec![(2, 0), (0, 1), (1, 0)]);
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
}
