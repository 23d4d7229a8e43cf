//! Inbound vendor events applied to sessions (`docs/INGEST.md`).
//!
//! An event is recorded first, under its hash, and applied only if that
//! record is new: a redelivery finds the stored row and publishes
//! nothing, on this node or any other sharing the store. What an event
//! does goes through the same paths as the renderer's frames and REST:
//! a speaking change is a `state` event validated on the replica, an
//! utterance an app event plus a conversation row through the batch
//! writer, the end of a conversation a lifecycle transition to
//! `stopping`. So the events are sequenced, kept in history for resume,
//! and persisted like any other.
//!
//! The record comes before the publish. The answer waits for the rows an
//! event produced (an utterance's conversation row) to commit, and
//! backlog room for them is taken before anything is recorded, so a full
//! backlog refuses the request (503, retry) instead of recording an event
//! it could not apply. An event recorded but not applied for a reason
//! that passes (the broker or the database unreachable) is answered with
//! that error, so the sender retries; so is one whose hub stopped between
//! the record and the row. A redelivery then finds the work unfinished
//! (an utterance without its conversation row, a conversation end the
//! session has not made) and finishes it: an utterance's row and event
//! are written at least once, the row exactly once (its client id is the
//! stored event's id). A redelivery of an event applied on this node
//! lately, or whose row exists, publishes nothing. One delivery of an
//! event is handled at a time per node, so a redelivery that arrives
//! during the first waits for its outcome. A refusal that will not pass
//! (the session has ended) is logged and counted, and the event stays
//! recorded, not applied.

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use serde_json::json;
use uuid::Uuid;

use super::core::Hub;
use super::error::{HubError, refuse};
use super::rows::conversation;
use crate::ids::{EventId, SessionId, TenantId};
use crate::ingest::{Action, Inbound, Source, Speaker};
use crate::metrics as m;
use crate::protocol::model::{CustomAudience, Event};
use crate::protocol::{ErrorCode, SessionStatus};
use crate::session::Session;
use crate::store::ingest::{ProcessedEvent, Recorded};
use crate::store::writer::{Ack, Order, Reservation};
use crate::store::{MessageType, Row};
use crate::stream::Origin;

/// What became of an inbound event.
#[derive(Clone, Debug)]
pub struct IngestOutcome {
    /// The stored event (the earlier one, for a duplicate).
    pub event: ProcessedEvent,
    pub duplicate: bool,
    /// The `seq` of each hub event it produced, in order.
    pub published: Vec<u64>,
}

impl Hub {
    /// Records an inbound event and, the first time, applies it to the
    /// session whose `external_id` is its conversation id.
    ///
    /// # Errors
    /// The store failed: nothing was recorded, and a retry is safe.
    pub async fn ingest(
        &self,
        inbound: Inbound,
        received: Instant,
    ) -> Result<IngestOutcome, HubError> {
        // One delivery of an event at a time on this node: a redelivery
        // that arrives while the first is being applied waits for it,
        // then finds its rows (or their absence) settled.
        let _turn = self.ingest_turns.take(&inbound.event_hash).await;
        let store = self.writer.store().clone();
        let record = self
            .conversations
            .session_of(store.as_ref(), &inbound.conversation_id)
            .await?;
        let reservation = match (&record, &inbound.action) {
            (Some(_), Action::Utterance { text, .. }) => {
                Some(self.writer.reserve(1, 512 + text.len())?)
            }
            _ => None,
        };
        let event = ProcessedEvent {
            id: Uuid::now_v7(),
            source: inbound.source.as_str().to_owned(),
            conversation_id: inbound.conversation_id.clone(),
            event_type: inbound.event_type.clone(),
            event_data: inbound.body.clone(),
            event_hash: inbound.event_hash.clone(),
            session: record.map(|(_, id)| id),
            // Whole microseconds: what every store keeps.
            processed_at: chrono::DateTime::from_timestamp_micros(Utc::now().timestamp_micros())
                .unwrap_or_default(),
            processing_duration_ms: received.elapsed().as_millis().min(i32::MAX as u128) as i32,
        };
        let (event, duplicate) = match self.ingest.record(event).await? {
            Recorded::Duplicate(stored) => (stored, true),
            Recorded::New(e) => (e, false),
        };
        let target = record.filter(|(_, id)| event.session == Some(*id));
        let published = match target {
            Some(target) if !duplicate || self.unfinished(target.1, &inbound, &event).await? => {
                match self
                    .apply_inbound(target, &inbound, event.id, reservation)
                    .await
                {
                    Ok(seqs) => seqs,
                    // Not applied, and worth another try: the sender's
                    // retry is a duplicate that finds the work unfinished.
                    Err(e) if e.retry_after().is_some() => return Err(e),
                    // Refused again (the session ended meanwhile): the
                    // first delivery said so already.
                    Err(_) if duplicate => Vec::new(),
                    Err(e) => {
                        tracing::warn!(
                            source = inbound.source.as_str(),
                            event_type = %inbound.event_type,
                            session = %target.1,
                            error = %e,
                            "inbound event recorded but not applied"
                        );
                        m::ingest_unapplied(inbound.source.as_str());
                        self.conversations.forget(&inbound.conversation_id);
                        Vec::new()
                    }
                }
            }
            _ => Vec::new(),
        };
        self.ingest_applied
            .lock()
            .insert(inbound.event_hash.clone(), ());
        Ok(IngestOutcome {
            event,
            duplicate,
            published,
        })
    }

    /// Whether a redelivered event's first delivery left work undone: an
    /// utterance whose conversation row never committed (the hub stopped
    /// between the record and the row, or the row's write failed), or a
    /// conversation end the session has not seen. Speaking changes are
    /// not replayed: a late one would undo a newer state.
    async fn unfinished(
        &self,
        session: SessionId,
        inbound: &Inbound,
        event: &ProcessedEvent,
    ) -> Result<bool, HubError> {
        if self.ingest_applied.lock().contains(&inbound.event_hash) {
            return Ok(false);
        }
        match &inbound.action {
            Action::Utterance { who, .. } => {
                let sender = sender_of(inbound.source);
                let present = self
                    .writer
                    .store()
                    .has_conversation_row(
                        session,
                        message_type(*who),
                        &sender,
                        &event.id.to_string(),
                    )
                    .await?;
                Ok(!present)
            }
            // A transition the session already made is not made again.
            Action::Ended { .. } => Ok(true),
            Action::Speaking { .. } | Action::Record => Ok(false),
        }
    }

    async fn apply_inbound(
        &self,
        (tenant, id): (TenantId, SessionId),
        inbound: &Inbound,
        event_id: Uuid,
        reservation: Option<Reservation>,
    ) -> Result<Vec<u64>, HubError> {
        if matches!(inbound.action, Action::Record) {
            return Ok(Vec::new());
        }
        let session = self.sessions.find(Some(tenant), id).await?;
        if session.lock().info.status.is_terminal() {
            return Err(refuse(ErrorCode::SessionEnded, "the session has ended"));
        }
        let source = inbound.source.as_str();
        let sender = sender_of(inbound.source);
        let origin = Origin {
            sender: sender.clone(),
            ..Origin::default()
        };
        match &inbound.action {
            Action::Record => Ok(Vec::new()),
            Action::Speaking {
                who: Speaker::Renderer,
                speaking,
            } => self.renderer_speaking(&session, origin, *speaking).await,
            Action::Speaking {
                who: Speaker::User,
                speaking,
            } => {
                let p = self
                    .sessions
                    .publish(
                        &session,
                        Event::Custom {
                            name: "user.speaking".into(),
                            audience: CustomAudience::All,
                            data: Box::new(json!({ "speaking": speaking, "source": source })),
                            from: sender,
                        },
                        origin,
                    )
                    .await?;
                Ok(vec![p.seq])
            }
            Action::Utterance { who, text } => {
                let p = self
                    .sessions
                    .publish(
                        &session,
                        Event::Custom {
                            name: "utterance".into(),
                            audience: CustomAudience::All,
                            data: Box::new(
                                json!({ "role": who.as_str(), "text": text, "source": source }),
                            ),
                            from: sender.clone(),
                        },
                        origin,
                    )
                    .await?;
                let kind = message_type(*who);
                // The stored event's id as the row's client id: a row
                // written twice (a retried batch) is kept once.
                let row_id = event_id.to_string();
                let rows = vec![Row::Conversation(conversation(
                    &p,
                    EventId::new(),
                    kind,
                    text,
                    Some(&sender),
                    None,
                    json!({ "source": source, "event_type": inbound.event_type }),
                    Some(&row_id),
                ))];
                let (ack, committed) = Ack::notify();
                match reservation {
                    Some(r) => r.submit(Order::Session(session.id), rows, Some(ack)),
                    None => self
                        .writer
                        .submit(Order::Session(session.id), rows, Some(ack))?,
                }
                committed.wait().await?;
                Ok(vec![p.seq])
            }
            Action::Ended { reason } => {
                let status = session.lock().info.status;
                if !status.can_become(SessionStatus::Stopping) {
                    return Ok(Vec::new());
                }
                let why = match reason {
                    Some(r) => format!("{source}: {r}"),
                    None => format!("{source}: conversation ended"),
                };
                let p = self
                    .transition(&session, SessionStatus::Stopping, Some(why), Some(sender))
                    .await?;
                Ok(vec![p.seq])
            }
        }
    }

    /// `state.is_speaking`, changed on the replica as a renderer's `state`
    /// frame would; no event when it already has that value.
    async fn renderer_speaking(
        &self,
        session: &Arc<Session>,
        origin: Origin,
        speaking: bool,
    ) -> Result<Vec<u64>, HubError> {
        let mut unchanged = false;
        let result = self
            .publish_checked(session, origin, |g| {
                if g.info.status.is_terminal() {
                    return Err(refuse(ErrorCode::SessionEnded, "the session has ended"));
                }
                if g.state.is_speaking == speaking {
                    unchanged = true;
                    return Err(refuse(ErrorCode::Conflict, "unchanged"));
                }
                let mut st = g.state.clone();
                st.is_speaking = speaking;
                Ok(Event::State { state: st })
            })
            .await;
        match result {
            Ok(p) => {
                session.lock().pending.state_dirty = true;
                Ok(vec![p.seq])
            }
            Err(_) if unchanged => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }
}

/// Who an inbound event's events and rows are from: the row lookup of a
/// redelivery must name the sender the first delivery wrote.
fn sender_of(source: Source) -> String {
    format!("ingest:{}", source.as_str())
}

/// The conversation row an utterance of `who` becomes.
fn message_type(who: Speaker) -> MessageType {
    match who {
        Speaker::User => MessageType::Question,
        Speaker::Renderer => MessageType::Response,
    }
}
