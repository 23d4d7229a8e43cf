//! Presence across nodes: a member counts once however many connections
//! it holds, anywhere; the first connection publishes its `join`, the
//! last one's `leave` (after the grace, see `deferred.rs`), and
//! `state.operator_connected` follows whether an operator is present.

use std::sync::Arc;

use super::core::Hub;
use super::error::{HubError, refuse};
use super::rows::ts;
use super::timers::Job;
use crate::protocol::ErrorCode;
use crate::protocol::model::{Event, Member, PresenceChange, Role};
use crate::session::{Session, member_key};
use crate::store::Row;
use crate::store::writer::Order;
use crate::stream::Origin;

impl Hub {
    /// Counts a member in; the first connection anywhere publishes `join`.
    pub(crate) async fn presence_join(
        &self,
        s: &Arc<Session>,
        member: Member,
    ) -> Result<(), HubError> {
        let key = member_key(member.role, &member.id);
        let first_here = {
            let mut g = s.lock();
            let entry = g.local_members.entry(key.clone()).or_default();
            let first = entry.conns == 0 && entry.leaving_since.is_none();
            entry.conns += 1;
            entry.leaving_since = None;
            first
        };
        if !first_here || !self.broker.presence_join(s.id, &key).await? {
            return Ok(());
        }
        let result = self
            .publish_checked(s, Origin::hub(), |g| {
                if g.members.contains_key(&key) {
                    return Err(refuse(ErrorCode::Conflict, "already present"));
                }
                let count =
                    g.counters.participant_count + u32::from(member.role == Role::Participant);
                Ok(Event::Presence {
                    change: PresenceChange::Join,
                    member: member.clone(),
                    participant_count: count,
                })
            })
            .await;
        if result.is_ok() {
            s.lock().pending.counters_dirty = true;
            if member.role == Role::Operator {
                self.sync_operator_connected(s).await;
            }
        }
        Ok(())
    }

    /// Counts a member out everywhere; the last connection publishes
    /// `leave`.
    pub(crate) async fn presence_leave(&self, s: &Arc<Session>, key: &str) {
        match self.broker.presence_leave(s.id, key).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(session = %s.id, error = %e, "presence leave failed");
                return;
            }
        }
        self.publish_leave(s, key).await;
    }

    /// Publishes the `leave` of a member counted out everywhere (by its
    /// last connection here, or because its node died).
    pub(crate) async fn publish_leave(&self, s: &Arc<Session>, key: &str) {
        if let Some(subject) = key.strip_prefix("renderer:") {
            // A renderer's node died with it: free the slot so its
            // reconnect (anywhere) needs no takeover.
            let _ = self
                .publish_checked(s, Origin::hub(), |g| {
                    if !g.renderer.connected || g.renderer.id.as_deref() != Some(subject) {
                        return Err(refuse(ErrorCode::Conflict, "renderer already gone"));
                    }
                    Ok(Event::Renderer {
                        connected: false,
                        fence: g.renderer.fence,
                        renderer_id: g.renderer.id.clone(),
                    })
                })
                .await;
            return;
        }
        let mut left = None;
        let result = self
            .publish_checked(s, Origin::hub(), |g| {
                let member = g
                    .members
                    .get(key)
                    .cloned()
                    .ok_or_else(|| refuse(ErrorCode::Conflict, "not present"))?;
                let count = g.counters.participant_count
                    - u32::from(
                        member.role == Role::Participant && g.counters.participant_count > 0,
                    );
                left = Some((member.clone(), g.questions_asked.get(&member.id).copied()));
                Ok(Event::Presence {
                    change: PresenceChange::Leave,
                    member,
                    participant_count: count,
                })
            })
            .await;
        let Ok(p) = result else { return };
        s.lock().pending.counters_dirty = true;
        if let Some((member, asked)) = left {
            match member.role {
                Role::Participant => self.persist(
                    Order::Session(s.id),
                    vec![Row::ParticipantLeft {
                        session_id: s.id,
                        participant_id: member.id,
                        left_at: ts(p.ts),
                        questions_asked: asked.unwrap_or(0),
                    }],
                ),
                Role::Operator => {
                    self.sync_operator_connected(s).await;
                    let controls = s
                        .lock()
                        .controller
                        .as_ref()
                        .is_some_and(|c| c.operator_id == member.id);
                    if controls {
                        self.schedule_takeover_expiry(s, &member.id);
                    }
                }
                Role::Renderer => {}
            }
        }
    }

    /// Keeps `state.operator_connected` true exactly while an operator is
    /// present, through a `state` event so every view sees the change.
    async fn sync_operator_connected(&self, s: &Arc<Session>) {
        let _ = self
            .publish_checked(s, Origin::hub(), |g| {
                let present = g.members.values().any(|m| m.role == Role::Operator);
                if present == g.state.operator_connected {
                    return Err(refuse(ErrorCode::Conflict, "unchanged"));
                }
                let mut st = g.state.clone();
                st.operator_connected = present;
                Ok(Event::State { state: st })
            })
            .await;
    }

    /// The controlling operator is gone from the session: release the
    /// takeover unless it is back within the takeover grace.
    fn schedule_takeover_expiry(&self, s: &Arc<Session>, operator: &str) {
        self.timers.schedule(
            self.settings.session.takeover_grace(),
            Job::TakeoverGrace {
                session: s.id,
                operator: operator.to_owned(),
            },
        );
    }
}
