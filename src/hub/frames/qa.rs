//! Questions and responses: a participant asks, the renderer answers
//! (held for operators while the session is taken over). Both are kept:
//! acknowledged only once their rows commit.

use std::sync::Arc;

use serde_json::json;

use crate::hub::client::Client;
use crate::hub::core::Hub;
use crate::hub::error::HubError;
use crate::hub::rows::{conversation, ts};
use crate::hub::validate::{
    dedupe, lease, live, require, validate_id, validate_response, validate_text,
};
use crate::identity::Identity;
use crate::ids::{EventId, SessionId};
use crate::metrics as m;
use crate::protocol::frames::ClientMsgId;
use crate::protocol::model::{Event, ResponseBody, Role};
use crate::session::{QuestionRef, Session};
use crate::store::{MessageType, QuestionResponseRow, Row};
use crate::stream::Published;

impl Hub {
    /// `question` (participant): stored, then acknowledged.
    pub(crate) async fn question(
        &self,
        client: &Client,
        me: &Identity,
        session: SessionId,
        id: ClientMsgId,
        text: String,
    ) -> Result<(), HubError> {
        require(me, Role::Participant, "ask questions")?;
        validate_id(&id)?;
        validate_text("text", &text, self.settings.session.max_text_bytes)?;
        let s = client.joined(session)?;
        if let Err(e) = self.limiter.question(me.tenant, &me.subject).await {
            m::limit_hit("questions");
            return Err(e.into());
        }
        self.publish_question(client, &s, id, text).await
    }

    /// `response` (renderer): held while an operator controls the session.
    pub(crate) async fn response(
        &self,
        client: &Client,
        me: &Identity,
        session: SessionId,
        id: ClientMsgId,
        body: ResponseBody,
    ) -> Result<(), HubError> {
        require(me, Role::Renderer, "answer")?;
        validate_id(&id)?;
        validate_response(
            &body.text,
            body.confidence,
            body.intent.as_deref(),
            &body.knowledge_sources,
            self.settings.session.max_text_bytes,
        )?;
        let s = client.joined(session)?;
        self.publish_response(client, &s, id, body).await
    }

    async fn publish_question(
        &self,
        client: &Client,
        s: &Arc<Session>,
        id: ClientMsgId,
        text: String,
    ) -> Result<(), HubError> {
        let me = client.identity()?;
        let question_id = EventId::new();
        let event = Event::Question {
            question_id,
            participant_id: me.subject.clone(),
            participant_name: client.display_name.clone(),
            text: text.clone(),
        };
        let subject = me.subject.clone();
        // From the published event, not this frame: a resend stores the
        // first copy's row again (see `Hub::publish_kept`).
        let rows = |p: &Published| match &p.event {
            Event::Question {
                question_id,
                participant_name,
                text,
                ..
            } => vec![Row::Conversation(conversation(
                p,
                *question_id,
                MessageType::Question,
                text,
                participant_name.as_deref().or(Some(&subject)),
                None,
                json!({}),
                Some(&id),
            ))],
            _ => Vec::new(),
        };
        let row_text = text.len();
        self.publish_kept(client, s, &id.clone(), event, 1, row_text, rows)
            .await?;
        s.lock().pending.counters_dirty = true;
        Ok(())
    }

    async fn publish_response(
        &self,
        client: &Client,
        s: &Arc<Session>,
        id: ClientMsgId,
        body: ResponseBody,
    ) -> Result<(), HubError> {
        let reservation = self.writer.reserve(2, 256 + body.text.len() * 2)?;
        let conn = client.conn.clone();
        let mut origin = client.origin(Some(&id));
        origin.fence = Some(lease(&s.lock(), &conn)?);
        let sender = origin.sender.clone();
        let published = self
            .publish_checked(s, origin, |g| {
                lease(g, &conn)?;
                live(g)?;
                dedupe(g, &sender, Some(&id))?;
                // While an operator controls the session, the renderer's own
                // answers are held for operators; answers that carry out an
                // operator command pass.
                if g.controller.is_some() && body.command_id.is_none() {
                    Ok(Event::ResponseHeld(Box::new(body.clone())))
                } else {
                    Ok(Event::Response(Box::new(body.clone())))
                }
            })
            .await;
        // Built from the published event: a resend stores the first
        // copy's rows again (see `Hub::publish_kept`).
        let rows = |p: &Published| {
            let (Event::Response(b) | Event::ResponseHeld(b)) = &p.event else {
                return Vec::new();
            };
            let question = b
                .question_id
                .and_then(|q| s.lock().questions.get(&q).cloned());
            response_rows(p, b, &sender, &id, question)
        };
        let p = match published {
            Ok(p) => p,
            Err(HubError::Duplicate(seen)) => {
                return self
                    .store_again(client, s, &id, seen, reservation, rows)
                    .await;
            }
            Err(e) => return Err(e),
        };
        let rows = rows(&p);
        self.finish_kept(client, s, Some(id), &p, reservation, rows)
            .await;
        Ok(())
    }
}

/// A response's rows: its conversation row, and the question/response pair
/// when it answers a question the session knows.
fn response_rows(
    p: &Published,
    body: &ResponseBody,
    sender: &str,
    id: &str,
    question: Option<QuestionRef>,
) -> Vec<Row> {
    let held = matches!(p.event, Event::ResponseHeld(_));
    let mut rows = vec![Row::Conversation(conversation(
        p,
        body.response_id,
        MessageType::Response,
        &body.text,
        Some(sender),
        Some((body.confidence, body.response_time_ms)),
        json!({
            "held": held,
            "question_id": body.question_id,
            "command_id": body.command_id,
            "intent": body.intent,
        }),
        Some(id),
    ))];
    if let Some(q) = question {
        rows.push(Row::QuestionResponse(QuestionResponseRow {
            id: EventId(uuid::Uuid::new_v5(
                &body.response_id.0,
                b"question_response",
            )),
            conversation_id: body.response_id,
            question_text: q.text,
            response_text: body.text.clone(),
            intent_classification: body.intent.clone(),
            knowledge_sources: body.knowledge_sources.clone(),
            confidence_score: body.confidence,
            response_time_ms: body.response_time_ms.min(i32::MAX as u32) as i32,
            created_at: ts(p.ts),
        }));
    }
    rows
}
