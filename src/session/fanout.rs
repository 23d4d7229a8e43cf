//! What a replica sends a connection directly, under the session lock: a
//! new connection's snapshot or resume replay, and an emergency stop's
//! `urgent` frame; and what it queues for delivery in order (see
//! `delivery.rs`): the discontinuity and fresh snapshots when the stream
//! continues elsewhere. Snapshots and replays are taken under the lock, so
//! a joining connection gets its view with no gap and no duplicate.

use std::sync::Arc;

use super::deliveries::{Delivery, role_index};
use super::replica::{Attached, Replica, Sub, View};
use super::snapshot::ReplicaSnapshot;
use crate::connection::ConnHandle;
use crate::ids::SessionId;
use crate::protocol::ServerFrame;
use crate::protocol::frames::{
    ControlView, DiscontinuityReason, OpenQuestion, PendingCommandView, PresenceView, Snapshot,
};
use crate::protocol::job::Job;
use crate::protocol::model::{Audience, Event, Role, StreamPosition};
use crate::stream::Published;

/// Open questions a snapshot lists: enough for an operator's queue and a
/// renderer catching up, without letting a big Q&A bloat every snapshot.
const OPEN_QUESTIONS_MAX: usize = 256;

impl Replica {
    /// An emergency stop's priority lane: an `urgent` frame ahead of
    /// everything already queued for the renderer, conflation or not,
    /// written as the stop is applied rather than in delivery order. The
    /// `emergency_stop` event itself follows in order.
    pub(super) fn urgent(&self, p: &Published) {
        let Event::EmergencyStop {
            intervention_id,
            reason,
            ..
        } = &p.event
        else {
            return;
        };
        for sub in self.subs.renderers.values() {
            let conn = &sub.conn;
            conn.outbox
                .push_urgent(conn.codec.frame(&ServerFrame::Urgent {
                    session: p.session,
                    seq: p.seq,
                    intervention_id: *intervention_id,
                    reason: reason.clone(),
                }));
        }
    }

    /// The session as `role` sees it now.
    pub fn snapshot(&self, id: SessionId, role: Role) -> Snapshot {
        let staff = role != Role::Participant;
        let operator = role == Role::Operator;
        let members = staff.then(|| {
            self.members
                .values()
                .take(self.limits.snapshot_members_max)
                .cloned()
                .collect::<Vec<_>>()
        });
        Snapshot {
            session: id,
            epoch: self.epoch,
            seq: self.seq,
            status: self.info.status,
            name: self.info.name.clone(),
            state: self.state.clone(),
            counters: self.counters,
            presence: PresenceView {
                participant_count: self.counters.participant_count,
                truncated: staff && self.members.len() > self.limits.snapshot_members_max,
                members,
            },
            control: staff.then(|| ControlView {
                controller: self.controller.as_ref().map(|c| c.operator_id.clone()),
                renderer_connected: self.renderer.connected,
                renderer_fence: self.renderer.fence,
            }),
            context: staff.then(|| self.context.clone()),
            metrics: if operator { self.metrics.clone() } else { None },
            alerts: operator.then(|| self.open_alerts.iter().cloned().collect()),
            held_responses: operator.then(|| self.held.iter().cloned().collect()),
            questions: staff.then(|| self.open_questions()),
            pending_commands: staff.then(|| self.pending_commands()),
            jobs: self.visible_jobs(role),
        }
    }

    /// The jobs `role` sees, or `None` when there are none.
    fn visible_jobs(&self, role: Role) -> Option<Vec<Job>> {
        let jobs: Vec<Job> = self
            .reported_jobs
            .values()
            .filter(|j| Audience::from(j.audience).includes(role))
            .map(|j| j.job.clone())
            .collect();
        (!jobs.is_empty()).then_some(jobs)
    }

    /// The latest unanswered questions, oldest first.
    fn open_questions(&self) -> Vec<OpenQuestion> {
        let mut open: Vec<OpenQuestion> = self
            .questions
            .iter()
            .filter(|(_, q)| !q.answered)
            .map(|(id, q)| OpenQuestion {
                question_id: *id,
                participant_id: q.participant_id.clone(),
                participant_name: q.participant_name.clone(),
                text: q.text.clone(),
                asked_at: q.asked_at,
            })
            .collect();
        open.drain(..open.len().saturating_sub(OPEN_QUESTIONS_MAX));
        open
    }

    /// Unacknowledged commands and emergency stops, oldest first.
    fn pending_commands(&self) -> Vec<PendingCommandView> {
        let mut pending: Vec<PendingCommandView> = self
            .commands
            .iter()
            .map(|(id, c)| PendingCommandView {
                command_id: *id,
                operator_id: c.operator_id.clone(),
                emergency: c.emergency,
                command: c.command.clone(),
                reason: c.reason.clone(),
                issued_at: c.issued_at,
            })
            .collect();
        pending.sort_by_key(|c| (c.issued_at, c.command_id));
        pending
    }

    /// Adds a connection to the session and queues what it needs first: a
    /// snapshot, or the events it missed, or a discontinuity and a
    /// snapshot. Everything is queued under the lock, before any later
    /// event can be fanned out, so the client's stream has no gap and no
    /// duplicate.
    pub fn attach(
        &mut self,
        id: SessionId,
        conn: &Arc<ConnHandle>,
        role: Role,
        resume: Option<StreamPosition>,
        view: View,
    ) -> Attached {
        let codec = conn.codec;
        let outcome = match resume {
            None => Attached::Snapshot,
            Some(pos) => match self.replay_plan(pos, role, conn, view) {
                Ok(replay) => {
                    conn.outbox.push(
                        codec.frame(&ServerFrame::Resumed {
                            session: id,
                            epoch: self.epoch,
                            from: pos.seq + 1,
                            to: self.seq,
                        }),
                        None,
                        0,
                    );
                    for p in &replay {
                        conn.outbox.push(
                            p.frame_for(codec, view.compact).clone(),
                            None,
                            p.accepted_us,
                        );
                    }
                    Attached::Resumed {
                        replayed: replay.len(),
                    }
                }
                Err(reason) => {
                    conn.outbox.push(
                        codec.frame(&ServerFrame::Discontinuity {
                            session: id,
                            reason,
                            epoch: self.epoch,
                            seq: self.seq,
                        }),
                        None,
                        0,
                    );
                    Attached::Discontinuity(reason)
                }
            },
        };
        if !matches!(outcome, Attached::Resumed { .. }) {
            let snapshot = self.snapshot(id, role);
            conn.outbox.push(
                codec.frame(&ServerFrame::Snapshot(Box::new(snapshot))),
                None,
                0,
            );
        }
        // Everything queued for delivery so far is in what it was just
        // sent (the snapshot, or the replay from history).
        let after = self.last_delivery;
        self.subs.of(role).insert(
            conn.id,
            Sub {
                conn: conn.clone(),
                after,
                view,
            },
        );
        outcome
    }

    /// The events after `pos` that `role` should see, if history still
    /// holds all of them.
    fn replay_plan(
        &self,
        pos: StreamPosition,
        role: Role,
        conn: &ConnHandle,
        view: View,
    ) -> Result<Vec<Arc<Published>>, DiscontinuityReason> {
        let codec = conn.codec;
        if pos.epoch != self.epoch {
            return Err(DiscontinuityReason::EpochChanged);
        }
        if pos.seq > self.seq {
            return Err(DiscontinuityReason::PositionAhead);
        }
        if pos.seq == self.seq {
            return Ok(Vec::new());
        }
        let first = self.history.front().map(|p| p.seq).unwrap_or(self.seq + 1);
        if pos.seq + 1 < first {
            return Err(DiscontinuityReason::HistoryTrimmed);
        }
        let mut bytes = 0;
        let mut replay = Vec::new();
        for p in self.history.iter().filter(|p| p.seq > pos.seq) {
            if p.event.audience().includes(role) && view.wants(p, conn) {
                bytes += p.frame_for(codec, view.compact).len();
                if bytes > self.limits.replay_max_bytes {
                    return Err(DiscontinuityReason::HistoryTrimmed);
                }
                replay.push(p.clone());
            }
        }
        Ok(replay)
    }

    /// Continues the stream at `position` instead of after the last event:
    /// history before it is gone, and with a `snapshot` the replicated
    /// state is replaced by it. Every local connection is told (a
    /// discontinuity and a fresh snapshot, queued after what it has not
    /// been sent yet). True when a delivery task must be started.
    pub fn reset(
        &mut self,
        id: SessionId,
        position: StreamPosition,
        snapshot: Option<ReplicaSnapshot>,
    ) -> bool {
        let mut close = Vec::new();
        let reason = if position.epoch == self.epoch {
            DiscontinuityReason::HistoryTrimmed
        } else {
            DiscontinuityReason::EpochChanged
        };
        if let Some(snap) = snapshot {
            self.install(id, snap);
            self.close_replaced_renderer(&mut close);
            if self.info.status.is_terminal() {
                self.close_ended(&mut close);
            }
        }
        self.epoch = position.epoch;
        self.seq = position.seq;
        self.history.clear();
        let mut snapshots: [Option<Box<Snapshot>>; 3] = Default::default();
        for (role, subs) in self.subs.by_role() {
            if !subs.is_empty() {
                snapshots[role_index(role)] = Some(Box::new(self.snapshot(id, role)));
            }
        }
        let mut start = self.queue(Delivery::Reset {
            discontinuity: ServerFrame::Discontinuity {
                session: id,
                reason,
                epoch: self.epoch,
                seq: self.seq,
            },
            snapshots,
        });
        for (conn, code) in close {
            start |= self.queue(Delivery::Close(conn, code));
        }
        start
    }
}
