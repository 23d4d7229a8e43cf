//! Interventions and the emergency lane: what operators do to a session
//! (take over and release, command, suggest, correct, approve held
//! responses, acknowledge alerts) and the emergency stop, which jumps
//! every queue on its way to the renderer.

use std::sync::Arc;

use serde_json::json;

use crate::hub::client::Client;
use crate::hub::core::Hub;
use crate::hub::error::{HubError, refuse};
use crate::hub::rows::{conversation, intervention, ts};
use crate::hub::timers::Job;
use crate::hub::validate::{
    dedupe, live, require, validate_command, validate_id, validate_short, validate_text,
};
use crate::identity::Identity;
use crate::ids::{EventId, SessionId};
use crate::protocol::frames::ClientMsgId;
use crate::protocol::model::{Command, Event, ReleaseReason, Role};
use crate::protocol::{ErrorCode, SessionStatus};
use crate::session::{Seen, Session, ref_id};
use crate::store::{InterventionRow, InterventionType, MessageType, Row};
use crate::stream::Published;

impl Hub {
    /// `takeover`: one operator takes control.
    pub(crate) async fn takeover(
        &self,
        client: &Client,
        me: &Identity,
        session: SessionId,
        reason: Option<String>,
        id: Option<ClientMsgId>,
    ) -> Result<(), HubError> {
        require(me, Role::Operator, "take a session over")?;
        validate_short("reason", reason.as_deref(), 255)?;
        let s = client.joined(session)?;
        self.take_over(client, &s, id, reason).await
    }

    /// `release`: the controlling operator gives control back.
    pub(crate) async fn release_frame(
        &self,
        client: &Client,
        me: &Identity,
        session: SessionId,
        id: Option<ClientMsgId>,
    ) -> Result<(), HubError> {
        require(me, Role::Operator, "release a session")?;
        let s = client.joined(session)?;
        self.release(&s, &me.subject, ReleaseReason::Released, Some((client, id)))
            .await
    }

    /// `command`: the controlling operator tells the renderer what to do.
    pub(crate) async fn command(
        &self,
        client: &Client,
        me: &Identity,
        session: SessionId,
        id: ClientMsgId,
        command: Command,
    ) -> Result<(), HubError> {
        require(me, Role::Operator, "command the renderer")?;
        validate_id(&id)?;
        validate_command(&command, self.settings.session.max_text_bytes)?;
        let s = client.joined(session)?;
        self.issue_command(client, &s, id, command).await
    }

    /// `suggestion`: a hint for the renderer, seen by staff only.
    pub(crate) async fn suggestion(
        &self,
        client: &Client,
        me: &Identity,
        session: SessionId,
        id: ClientMsgId,
        text: String,
    ) -> Result<(), HubError> {
        require(me, Role::Operator, "suggest")?;
        validate_id(&id)?;
        validate_text("text", &text, self.settings.session.max_text_bytes)?;
        let s = client.joined(session)?;
        let intervention_id = EventId::new();
        let event = Event::Suggestion {
            intervention_id,
            operator_id: me.subject.clone(),
            text: text.clone(),
        };
        let row = |p: &Published| {
            vec![Row::Intervention(intervention(
                p,
                &me.subject,
                InterventionType::Suggestion,
                None,
                &text,
                Some(&id),
            ))]
        };
        self.publish_kept(client, &s, &id, event, 1, text.len(), row)
            .await
    }

    /// `correction`: an operator corrects a response, for everyone.
    pub(crate) async fn correction(
        &self,
        client: &Client,
        me: &Identity,
        session: SessionId,
        id: ClientMsgId,
        response_id: EventId,
        text: String,
    ) -> Result<(), HubError> {
        require(me, Role::Operator, "correct")?;
        validate_id(&id)?;
        validate_text("text", &text, self.settings.session.max_text_bytes)?;
        let s = client.joined(session)?;
        if !s.lock().responses.contains(&response_id) {
            return Err(refuse(
                ErrorCode::UnknownReference,
                "no such response in this session",
            ));
        }
        let intervention_id = EventId::new();
        let event = Event::Correction {
            intervention_id,
            operator_id: me.subject.clone(),
            response_id,
            text: text.clone(),
        };
        let rows = |p: &Published| {
            let reason = format!("corrects response {response_id}");
            vec![
                Row::Intervention(intervention(
                    p,
                    &me.subject,
                    InterventionType::Correction,
                    Some(reason),
                    &text,
                    Some(&id),
                )),
                Row::Conversation(conversation(
                    p,
                    // The published event's id: a resend stores the first
                    // copy's rows again (see `Hub::publish_kept`).
                    ref_id(&p.event).unwrap_or(intervention_id),
                    MessageType::Operator,
                    &text,
                    Some(&me.subject),
                    None,
                    json!({ "corrects": response_id }),
                    Some(&id),
                )),
            ]
        };
        self.publish_kept(client, &s, &id, event, 2, text.len() * 2, rows)
            .await
    }

    /// `emergency_stop`: the urgent lane; never refused for storage.
    pub(crate) async fn emergency_stop(
        &self,
        client: &Client,
        me: &Identity,
        session: SessionId,
        id: ClientMsgId,
        reason: Option<String>,
    ) -> Result<(), HubError> {
        require(me, Role::Operator, "stop the session")?;
        validate_id(&id)?;
        validate_short("reason", reason.as_deref(), 255)?;
        let s = client.joined(session)?;
        self.stop_now(client, &s, id, reason).await
    }

    /// `approve`: publish a held response to everyone.
    pub(crate) async fn approve(
        &self,
        client: &Client,
        me: &Identity,
        session: SessionId,
        response_id: EventId,
        id: Option<ClientMsgId>,
    ) -> Result<(), HubError> {
        require(me, Role::Operator, "approve responses")?;
        let s = client.joined(session)?;
        let subject = me.subject.clone();
        let p = self
            .publish_checked(&s, client.origin(id.as_deref()), |g| {
                live(g)?;
                dedupe(g, &subject, id.as_deref())?;
                match &g.controller {
                    Some(c) if c.operator_id == subject => {}
                    _ => {
                        return Err(refuse(
                            ErrorCode::NotController,
                            "only the controlling operator may approve",
                        ));
                    }
                }
                let held = g
                    .held
                    .iter()
                    .find(|h| h.response_id == response_id)
                    .ok_or_else(|| refuse(ErrorCode::UnknownReference, "no such held response"))?;
                Ok(Event::Response(Box::new(held.clone())))
            })
            .await?;
        self.ack_now(client, id, &s, &p).await;
        Ok(())
    }

    /// `ack_alert`: an operator acknowledges an open alert.
    pub(crate) async fn ack_alert(
        &self,
        client: &Client,
        me: &Identity,
        session: SessionId,
        alert_id: EventId,
        id: Option<ClientMsgId>,
    ) -> Result<(), HubError> {
        require(me, Role::Operator, "acknowledge alerts")?;
        let s = client.joined(session)?;
        let subject = me.subject.clone();
        let reservation = self.writer.reserve(1, 128)?;
        let p = self
            .publish_checked(&s, client.origin(id.as_deref()), |g| {
                dedupe(g, &subject, id.as_deref())?;
                if !g.open_alerts.iter().any(|a| a.alert_id == alert_id) {
                    return Err(refuse(
                        ErrorCode::UnknownReference,
                        "no such open alert in this session",
                    ));
                }
                Ok(Event::AlertAck {
                    alert_id,
                    by: subject.clone(),
                })
            })
            .await?;
        let rows = vec![Row::AlertAcknowledged {
            id: alert_id,
            by: me.subject.clone(),
            at: ts(p.ts),
        }];
        self.finish_kept(client, &s, id, &p, reservation, rows)
            .await;
        Ok(())
    }

    async fn take_over(
        &self,
        client: &Client,
        s: &Arc<Session>,
        id: Option<ClientMsgId>,
        reason: Option<String>,
    ) -> Result<(), HubError> {
        let me = client.identity()?.subject.clone();
        let reservation = self.writer.reserve(1, 256)?;
        let intervention_id = EventId::new();
        let result = self
            .publish_checked(s, client.origin(id.as_deref()), |g| {
                live(g)?;
                // A resend of the frame that took over gets its own outcome;
                // any other takeover by the controller is a no-op answered
                // with where the stream is now.
                dedupe(g, &me, id.as_deref())?;
                match &g.controller {
                    Some(c) if c.operator_id == me => Err(HubError::Duplicate(Seen {
                        seq: g.seq,
                        ref_id: Some(c.intervention_id),
                    })),
                    Some(c) => Err(refuse(
                        ErrorCode::Conflict,
                        format!("operator {} controls this session", c.operator_id),
                    )),
                    None => Ok(Event::Takeover {
                        intervention_id,
                        operator_id: me.clone(),
                        reason: reason.clone(),
                    }),
                }
            })
            .await;
        let p = match result {
            Ok(p) => p,
            // Already in control and no id to answer: the takeover stands.
            // With an id, the caller answers with a duplicate ack.
            Err(HubError::Duplicate(_)) if id.is_none() => return Ok(()),
            Err(e) => return Err(e),
        };
        let row = Row::Intervention(InterventionRow {
            trigger_reason: reason.clone(),
            ..intervention(
                &p,
                &me,
                InterventionType::Takeover,
                reason.clone(),
                "takeover",
                id.as_deref(),
            )
        });
        self.finish_kept(client, s, id, &p, reservation, vec![row])
            .await;
        s.lock().pending.counters_dirty = true;
        Ok(())
    }

    async fn issue_command(
        &self,
        client: &Client,
        s: &Arc<Session>,
        id: ClientMsgId,
        command: Command,
    ) -> Result<(), HubError> {
        let me = client.identity()?.subject.clone();
        let reservation = self.writer.reserve(1, 256)?;
        let command_id = EventId::new();
        let target = match command {
            Command::Pause => Some(SessionStatus::Paused),
            Command::Resume => Some(SessionStatus::Active),
            _ => None,
        };
        let p = self
            .publish_checked(s, client.origin(Some(&id)), |g| {
                live(g)?;
                dedupe(g, &me, Some(&id))?;
                match &g.controller {
                    Some(c) if c.operator_id == me => {}
                    _ => {
                        return Err(refuse(
                            ErrorCode::NotController,
                            "take the session over before commanding the renderer",
                        ));
                    }
                }
                if let Some(to) = target
                    && !g.info.status.can_become(to)
                {
                    return Err(refuse(
                        ErrorCode::IllegalTransition,
                        format!(
                            "a {} session cannot become {}",
                            g.info.status.as_str(),
                            to.as_str()
                        ),
                    ));
                }
                Ok(Event::Command {
                    command_id,
                    operator_id: me.clone(),
                    command: command.clone(),
                })
            })
            .await?;
        if let Some(to) = target
            && let Err(e) = self
                .transition(s, to, Some("operator command".into()), Some(me.clone()))
                .await
        {
            tracing::info!(session = %s.id, error = %e, "command transition raced");
        }
        let rows = match &command {
            Command::Say { text } => vec![Row::Conversation(conversation(
                &p,
                command_id,
                MessageType::Operator,
                text,
                Some(&me),
                None,
                json!({ "command": "say" }),
                Some(&id),
            ))],
            _ => Vec::new(),
        };
        self.finish_kept(client, s, Some(id), &p, reservation, rows)
            .await;
        Ok(())
    }

    async fn stop_now(
        &self,
        client: &Client,
        s: &Arc<Session>,
        id: ClientMsgId,
        reason: Option<String>,
    ) -> Result<(), HubError> {
        let me = client.identity()?.subject.clone();
        // Never refused for lack of backlog room: a stop always goes out.
        let reservation = self.writer.reserve_forced(1, 256);
        let intervention_id = EventId::new();
        let p = self
            .publish_checked(s, client.origin(Some(&id)), |g| {
                live(g)?;
                dedupe(g, &me, Some(&id))?;
                Ok(Event::EmergencyStop {
                    intervention_id,
                    operator_id: me.clone(),
                    reason: reason.clone(),
                })
            })
            .await?;
        self.timers.schedule(
            self.settings.session.emergency_ack_timeout(),
            Job::EmergencyAckDeadline {
                session: s.id,
                intervention_id,
            },
        );
        let row = Row::Intervention(intervention(
            &p,
            &me,
            InterventionType::EmergencyStop,
            reason.clone(),
            "emergency_stop",
            Some(&id),
        ));
        self.finish_kept(client, s, Some(id), &p, reservation, vec![row])
            .await;
        s.lock().pending.counters_dirty = true;
        // The session leaves the active state.
        if s.lock().info.status == SessionStatus::Active
            && let Err(e) = self
                .transition(
                    s,
                    SessionStatus::Paused,
                    Some("emergency stop".into()),
                    Some(me.clone()),
                )
                .await
        {
            tracing::info!(session = %s.id, error = %e, "emergency stop transition raced");
        }
        Ok(())
    }
}
