//! What each client frame does, per role.
//!
//! A connection's frames are handled one at a time, in order, by its
//! reader. Every handler validates against the replica and publishes;
//! errors become `error` frames that carry the frame's `id` and session.

use std::sync::Arc;
use std::time::Instant;

use serde_json::{Value, json};

use super::{Hub, HubError, commit_ack, not_found, refuse, ts};
use crate::auth::limits::{ConnLimiter, FrameClass, Slot, TenantRefusal, Verdict};
use crate::auth::{AuthError, Identity};
use crate::broker::{Origin, Published};
use crate::connection::ConnHandle;
use crate::ids::{EventId, SessionId, now_ms};
use crate::metrics as m;
use crate::protocol::frames::ClientMsgId;
use crate::protocol::model::{
    AlertType, Command, Event, Member, PresenceChange, ReleaseReason, RendererMetrics,
    ResponseBody, Severity, StatePatch, StreamPosition,
};
use crate::protocol::{
    ClientFrame, CloseCode, DecodeError, ErrorCode, Role, ServerFrame, SessionStatus,
};
use crate::session::{Inner, Seen, Session, member_key, ref_id};
use crate::store::writer::Reservation;
use crate::store::{
    ConversationRow, InterventionRow, InterventionType, MessageType, MetricRow, ParticipantRow,
    QuestionResponseRow, Row,
};

/// Per-connection state, owned by the connection's task.
#[derive(Debug)]
pub struct Client {
    pub conn: Arc<ConnHandle>,
    /// Sessions this connection has joined (one for renderers and
    /// participants, any number for operators).
    pub joined: Vec<Arc<Session>>,
    /// Display name given at join (participants).
    display_name: Option<String>,
    bad_frames: u32,
    /// This connection's token buckets.
    limiter: ConnLimiter,
    /// Connection slots (address, tenant) held until the connection ends.
    pub slots: Vec<Slot>,
}

/// What the connection task should do after a frame.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Next {
    Continue,
    Close(CloseCode),
}

impl Client {
    pub fn new(conn: Arc<ConnHandle>, limiter: ConnLimiter) -> Client {
        Client {
            conn,
            joined: Vec::new(),
            display_name: None,
            bad_frames: 0,
            limiter,
            slots: Vec::new(),
        }
    }

    fn identity(&self) -> Result<&Identity, HubError> {
        self.conn
            .identity()
            .ok_or_else(|| refuse(ErrorCode::Unauthorized, "authenticate first"))
    }

    fn joined(&self, session: SessionId) -> Result<Arc<Session>, HubError> {
        self.joined
            .iter()
            .find(|s| s.id == session)
            .cloned()
            .ok_or_else(|| refuse(ErrorCode::NotJoined, "join the session first"))
    }

    fn origin(&self, client_id: Option<&str>) -> Origin {
        let id = self.conn.identity();
        Origin {
            sender: id.map(|i| i.subject.clone()).unwrap_or_default(),
            role: id.map(|i| i.role),
            client_id: client_id.map(str::to_owned),
            fence: None,
        }
    }
}

fn require(identity: &Identity, role: Role, what: &str) -> Result<(), HubError> {
    if identity.role == role {
        Ok(())
    } else {
        Err(refuse(
            ErrorCode::Forbidden,
            format!("only a {} may {what}", role.as_str()),
        ))
    }
}

fn validate_id(id: &str) -> Result<(), HubError> {
    if id.is_empty() || id.len() > 64 {
        return Err(refuse(ErrorCode::Invalid, "id must be 1 to 64 bytes"));
    }
    Ok(())
}

fn validate_text(field: &str, text: &str, max: usize) -> Result<(), HubError> {
    if text.trim().is_empty() {
        return Err(refuse(
            ErrorCode::Invalid,
            format!("{field} must not be empty"),
        ));
    }
    if text.len() > max {
        return Err(refuse(
            ErrorCode::Invalid,
            format!("{field} is longer than {max} bytes"),
        ));
    }
    Ok(())
}

fn validate_short(field: &str, text: Option<&str>, max: usize) -> Result<(), HubError> {
    match text {
        Some(t) if t.len() > max => Err(refuse(
            ErrorCode::Invalid,
            format!("{field} is longer than {max} bytes"),
        )),
        _ => Ok(()),
    }
}

/// App-defined event names: lowercase, start with a letter, at most 64
/// bytes of `[a-z0-9_.:-]`, e.g. `job.progress`.
pub fn validate_event_name(name: &str) -> Result<(), HubError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.:-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(refuse(
            ErrorCode::Invalid,
            "event names are 1-64 characters of a-z 0-9 _ . : - starting with a letter",
        ))
    }
}

fn validate_patch(p: &StatePatch) -> Result<(), HubError> {
    if let Some(mode) = &p.presentation_mode
        && (mode.is_empty()
            || mode.len() > 50
            || !mode
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
    {
        return Err(refuse(
            ErrorCode::Invalid,
            "presentation_mode is 1-50 characters of a-z A-Z 0-9 _ -",
        ));
    }
    if let Some(Some(topic)) = &p.current_topic {
        validate_short("current_topic", Some(topic), 255)?;
    }
    if p.current_slide.is_some_and(|s| s < 0) {
        return Err(refuse(
            ErrorCode::Invalid,
            "current_slide must not be negative",
        ));
    }
    Ok(())
}

/// Largest metric value: `performance_metrics.metric_value` is
/// DECIMAL(10,4).
const METRIC_VALUE_MAX: f64 = 999_999.999_9;

fn validate_metrics(m: &RendererMetrics) -> Result<(), HubError> {
    for (name, v, _) in m.values() {
        if !v.is_finite() || v < 0.0 {
            return Err(refuse(
                ErrorCode::Invalid,
                format!("{name} must be a finite, non-negative number"),
            ));
        }
        if v > METRIC_VALUE_MAX {
            return Err(refuse(
                ErrorCode::Invalid,
                format!("{name} must be below 1000000"),
            ));
        }
        if name.ends_with("_usage") && v > 1.0 {
            return Err(refuse(
                ErrorCode::Invalid,
                format!("{name} is a fraction in [0, 1]"),
            ));
        }
    }
    validate_short("component", m.component.as_deref(), 100)
}

/// The renderer lease: this connection must be the session's current
/// renderer. Returns its fence.
fn lease(g: &Inner, conn: &ConnHandle) -> Result<u64, HubError> {
    match g.local_renderer {
        Some((c, fence)) if c == conn.id && fence == g.renderer.fence => Ok(fence),
        _ => Err(refuse(
            ErrorCode::StaleRenderer,
            "this renderer was replaced; its frames are refused",
        )),
    }
}

fn dedupe(g: &Inner, sender: &str, id: Option<&str>) -> Result<(), HubError> {
    if let Some(id) = id
        && let Some(seen) = g.dedupe.get(&(sender.to_owned(), id.to_owned()))
    {
        return Err(HubError::Duplicate(*seen));
    }
    Ok(())
}

fn live(g: &Inner) -> Result<(), HubError> {
    if g.info.status.is_terminal() {
        Err(refuse(ErrorCode::SessionEnded, "the session has ended"))
    } else {
        Ok(())
    }
}

impl Hub {
    /// Sets the connection's identity and sends `welcome`.
    pub fn welcome(&self, client: &mut Client, identity: Identity) {
        let role = identity.role;
        let subject = identity.subject.clone();
        let tenant = identity.tenant;
        let expires_at = identity.expires_at;
        if !client.conn.set_identity(identity) {
            return;
        }
        client.limiter = self.limiter.connection_for(Some(role));
        if let Some(exp) = expires_at {
            // Closed the moment the credential expires, not at the next
            // heartbeat sweep (which stays as a backstop).
            let left = (exp.saturating_mul(1000)).saturating_sub(now_ms());
            self.timers.schedule(
                std::time::Duration::from_millis(left),
                super::timers::Job::TokenExpiry {
                    conn: client.conn.id,
                },
            );
        }
        m::connection_opened(role);
        client.conn.send(&ServerFrame::Welcome {
            protocol: crate::protocol::PROTOCOL_VERSION.to_owned(),
            conn_id: client.conn.id,
            role,
            subject,
            tenant,
            server_time: now_ms(),
            heartbeat_ms: self.settings.websocket.heartbeat_interval_ms,
            max_message_bytes: self.settings.websocket.max_message_bytes,
        });
    }

    /// Handles one inbound data message.
    pub async fn on_message(&self, client: &mut Client, payload: &[u8]) -> Next {
        let frame = match client.conn.codec.decode_client(payload) {
            Ok(f) => f,
            Err(e) => {
                client.bad_frames += 1;
                let (code, reason) = match &e {
                    DecodeError::UnknownType(_) => (ErrorCode::UnknownType, "unknown_type"),
                    DecodeError::Malformed(_) => (ErrorCode::BadFrame, "malformed"),
                };
                m::frame_in_rejected(reason);
                client.conn.send(&ServerFrame::error(code, e.to_string()));
                if client.bad_frames > self.settings.websocket.max_bad_frames {
                    return Next::Close(CloseCode::ProtocolViolation);
                }
                return Next::Continue;
            }
        };
        m::frame_in(frame.name());
        if client.conn.identity().is_none() {
            return match frame {
                ClientFrame::Auth { token } => self.authenticate(client, &token).await,
                _ => Next::Close(CloseCode::Unauthorized),
            };
        }
        match client.limiter.check(FrameClass::of(&frame)) {
            Verdict::Pass => {}
            Verdict::Limited(retry_after) => {
                m::limit_hit("frames");
                client.conn.send(&ServerFrame::Error {
                    code: ErrorCode::RateLimited,
                    message: "too many frames; slow down".into(),
                    id: frame.client_id().map(str::to_owned),
                    session: frame.session(),
                    retry_after_ms: Some(retry_after.as_millis().max(1) as u64),
                });
                return Next::Continue;
            }
            Verdict::Abuse => {
                m::limit_hit("abuse");
                tracing::info!(conn = %client.conn.id, peer = %client.conn.peer, "closing a connection that keeps exceeding its rate limits");
                return Next::Close(CloseCode::RateLimited);
            }
        }
        let id = frame.client_id().map(str::to_owned);
        let session = frame.session();
        match self.dispatch(client, frame).await {
            Ok(()) => Next::Continue,
            Err(HubError::Duplicate(seen)) => {
                if let (Some(id), Some(session)) = (id, session) {
                    self.duplicate_ack(client, session, id, seen);
                }
                Next::Continue
            }
            Err(e) => {
                client.conn.send(&ServerFrame::Error {
                    code: e.code(),
                    message: e.client_message(),
                    id,
                    session,
                    retry_after_ms: e.retry_after().map(|d| d.as_millis() as u64),
                });
                Next::Continue
            }
        }
    }

    /// The first-frame `auth` of a connection without an `Authorization`
    /// header: the same validation as the header, then the tenant's
    /// connection limit.
    async fn authenticate(&self, client: &mut Client, token: &str) -> Next {
        let identity = match self.auth.connection(token).await {
            Ok(identity) => identity,
            Err(e) => {
                tracing::info!(conn = %client.conn.id, peer = %client.conn.peer, error = %e, "authentication failed");
                m::auth_refused(e.label());
                return Next::Close(match e {
                    AuthError::Expired => CloseCode::TokenExpired,
                    AuthError::Forbidden(_) => CloseCode::Forbidden,
                    AuthError::Unavailable(_) => CloseCode::InternalError,
                    _ => CloseCode::Unauthorized,
                });
            }
        };
        match self.admit_tenant(&identity).await {
            Ok(slot) => client.slots.extend(slot),
            Err(TenantRefusal::Full) => {
                m::limit_hit("connections_per_tenant");
                tracing::info!(conn = %client.conn.id, tenant = %identity.tenant, "tenant connection limit reached");
                return Next::Close(CloseCode::Overloaded);
            }
            Err(TenantRefusal::Inactive) => {
                m::auth_refused("inactive");
                return Next::Close(CloseCode::Unauthorized);
            }
        }
        self.welcome(client, identity);
        Next::Continue
    }

    async fn dispatch(&self, client: &mut Client, frame: ClientFrame) -> Result<(), HubError> {
        let me = client.identity()?.clone();
        match frame {
            ClientFrame::Auth { .. } => Err(refuse(ErrorCode::Invalid, "already authenticated")),
            ClientFrame::Ping { nonce } => {
                client.conn.send(&ServerFrame::Pong {
                    nonce,
                    server_time: now_ms(),
                });
                Ok(())
            }
            ClientFrame::Join {
                session,
                resume,
                takeover,
                name,
                id,
            } => {
                self.join(client, &me, session, resume, takeover, name, id)
                    .await
            }
            ClientFrame::Leave { session, id } => {
                let s = client.joined(session)?;
                client.joined.retain(|j| j.id != session);
                self.leave_session(&client.conn, &me, &s, true).await;
                client.conn.send(&ServerFrame::Left { session, id });
                Ok(())
            }
            ClientFrame::State { session, state, id } => {
                require(&me, Role::Renderer, "change session state")?;
                validate_patch(&state)?;
                let s = client.joined(session)?;
                let conn = client.conn.clone();
                let mut origin = client.origin(id.as_deref());
                origin.fence = Some(lease(&s.lock(), &conn)?);
                let p = self
                    .publish_checked(&s, origin, |g| {
                        lease(g, &conn)?;
                        live(g)?;
                        let mut st = g.state.clone();
                        if let Some(v) = state.current_slide {
                            st.current_slide = v;
                        }
                        if let Some(v) = &state.presentation_mode {
                            st.presentation_mode = v.clone();
                        }
                        if let Some(v) = state.is_speaking {
                            st.is_speaking = v;
                        }
                        if let Some(v) = state.awaiting_questions {
                            st.awaiting_questions = v;
                        }
                        if let Some(v) = &state.current_topic {
                            st.current_topic = v.clone();
                        }
                        Ok(Event::State { state: st })
                    })
                    .await?;
                s.lock().pending.state_dirty = true;
                self.ack_now(client, id, session, &p);
                Ok(())
            }
            ClientFrame::Context {
                session,
                context,
                id,
            } => {
                require(&me, Role::Renderer, "set the conversation context")?;
                if !context.is_object() {
                    return Err(refuse(ErrorCode::Invalid, "context must be a JSON object"));
                }
                let s = client.joined(session)?;
                let mut origin = client.origin(id.as_deref());
                {
                    let g = s.lock();
                    origin.fence = Some(lease(&g, &client.conn)?);
                    live(&g)?;
                }
                let p = self.publish(&s, Event::Context { context }, origin).await?;
                s.lock().pending.state_dirty = true;
                self.ack_now(client, id, session, &p);
                Ok(())
            }
            ClientFrame::Metrics { session, metrics } => {
                require(&me, Role::Renderer, "report metrics")?;
                validate_metrics(&metrics)?;
                let s = client.joined(session)?;
                self.renderer_metrics(client, &s, metrics).await
            }
            ClientFrame::Status {
                session,
                status,
                reason,
                id,
            } => {
                require(&me, Role::Renderer, "report lifecycle status")?;
                validate_short("reason", reason.as_deref(), 1000)?;
                let s = client.joined(session)?;
                lease(&s.lock(), &client.conn)?;
                let current = s.lock().info.status;
                let allowed = match status {
                    SessionStatus::Starting | SessionStatus::Active | SessionStatus::Paused => true,
                    SessionStatus::Failed => true,
                    SessionStatus::Stopped => current == SessionStatus::Stopping,
                    SessionStatus::Created | SessionStatus::Stopping => false,
                };
                if !allowed {
                    return Err(refuse(
                        ErrorCode::Forbidden,
                        format!("a renderer cannot set status {}", status.as_str()),
                    ));
                }
                let p = self
                    .transition(&s, status, reason, Some(me.subject.clone()))
                    .await?;
                self.ack_now(client, id, session, &p);
                Ok(())
            }
            ClientFrame::Response {
                session,
                id,
                question_id,
                text,
                confidence,
                response_time_ms,
                intent,
                knowledge_sources,
                command_id,
            } => {
                require(&me, Role::Renderer, "answer")?;
                validate_id(&id)?;
                validate_text("text", &text, self.settings.session.max_text_bytes)?;
                if !(0.0..=1.0).contains(&confidence) {
                    return Err(refuse(
                        ErrorCode::Invalid,
                        "confidence is a fraction in [0, 1]",
                    ));
                }
                validate_short("intent", intent.as_deref(), 100)?;
                if knowledge_sources.len() > 64 || knowledge_sources.iter().any(|k| k.len() > 500) {
                    return Err(refuse(
                        ErrorCode::Invalid,
                        "at most 64 knowledge_sources of at most 500 bytes",
                    ));
                }
                let s = client.joined(session)?;
                let body = ResponseBody {
                    response_id: EventId::new(),
                    question_id,
                    text,
                    confidence,
                    response_time_ms,
                    intent,
                    knowledge_sources,
                    command_id,
                };
                self.response(client, &s, id, body).await
            }
            ClientFrame::CommandAck {
                session,
                command_id,
            } => {
                require(&me, Role::Renderer, "acknowledge commands")?;
                let s = client.joined(session)?;
                let conn = client.conn.clone();
                let mut origin = client.origin(None);
                origin.fence = Some(lease(&s.lock(), &conn)?);
                let mut pending = None;
                self.publish_checked(&s, origin, |g| {
                    lease(g, &conn)?;
                    let c = g.commands.get(&command_id).copied().ok_or_else(|| {
                        refuse(ErrorCode::UnknownReference, "no such command awaits an ack")
                    })?;
                    pending = Some(c);
                    Ok(Event::CommandAck {
                        command_id,
                        latency_ms: crate::clock::since_us(c.issued_us) / 1000,
                    })
                })
                .await?;
                if let Some(c) = pending
                    && c.emergency
                {
                    m::emergency_stop_ack(std::time::Duration::from_micros(
                        crate::clock::since_us(c.issued_us),
                    ));
                }
                Ok(())
            }
            ClientFrame::Question { session, id, text } => {
                require(&me, Role::Participant, "ask questions")?;
                validate_id(&id)?;
                validate_text("text", &text, self.settings.session.max_text_bytes)?;
                let s = client.joined(session)?;
                if let Err(e) = self.limiter.question(me.tenant, &me.subject).await {
                    m::limit_hit("questions");
                    return Err(e);
                }
                self.question(client, &s, id, text).await
            }
            ClientFrame::Takeover {
                session,
                reason,
                id,
            } => {
                require(&me, Role::Operator, "take a session over")?;
                validate_short("reason", reason.as_deref(), 255)?;
                let s = client.joined(session)?;
                self.takeover(client, &s, id, reason).await
            }
            ClientFrame::Release { session, id } => {
                require(&me, Role::Operator, "release a session")?;
                let s = client.joined(session)?;
                self.release(&s, &me.subject, ReleaseReason::Released, Some((client, id)))
                    .await
            }
            ClientFrame::Command {
                session,
                id,
                command,
            } => {
                require(&me, Role::Operator, "command the renderer")?;
                validate_id(&id)?;
                if let Command::Say { text } = &command {
                    validate_text("text", text, self.settings.session.max_text_bytes)?;
                }
                if let Command::GotoSlide { slide } = command
                    && slide < 0
                {
                    return Err(refuse(ErrorCode::Invalid, "slide must not be negative"));
                }
                let s = client.joined(session)?;
                self.command(client, &s, id, command).await
            }
            ClientFrame::Suggestion { session, id, text } => {
                require(&me, Role::Operator, "suggest")?;
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
            ClientFrame::Correction {
                session,
                id,
                response_id,
                text,
            } => {
                require(&me, Role::Operator, "correct")?;
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
                            intervention_id,
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
            ClientFrame::EmergencyStop {
                session,
                id,
                reason,
            } => {
                require(&me, Role::Operator, "stop the session")?;
                validate_id(&id)?;
                validate_short("reason", reason.as_deref(), 255)?;
                let s = client.joined(session)?;
                self.emergency_stop(client, &s, id, reason).await
            }
            ClientFrame::Approve {
                session,
                response_id,
                id,
            } => {
                require(&me, Role::Operator, "approve responses")?;
                let s = client.joined(session)?;
                let subject = me.subject.clone();
                let p = self
                    .publish_checked(&s, client.origin(id.as_deref()), |g| {
                        live(g)?;
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
                            .ok_or_else(|| {
                                refuse(ErrorCode::UnknownReference, "no such held response")
                            })?;
                        Ok(Event::Response(held.clone()))
                    })
                    .await?;
                self.ack_now(client, id, session, &p);
                Ok(())
            }
            ClientFrame::AckAlert {
                session,
                alert_id,
                id,
            } => {
                require(&me, Role::Operator, "acknowledge alerts")?;
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
                self.finish_kept(client, session, id, &p, reservation, rows);
                Ok(())
            }
            ClientFrame::Publish {
                session,
                name,
                audience,
                data,
                id,
            } => {
                validate_event_name(&name)?;
                if me.role == Role::Participant {
                    return Err(refuse(
                        ErrorCode::Forbidden,
                        "participants cannot publish app-defined events",
                    ));
                }
                let s = client.joined(session)?;
                let mut origin = client.origin(id.as_deref());
                let conn = client.conn.clone();
                let renderer = me.role == Role::Renderer;
                if renderer {
                    origin.fence = Some(lease(&s.lock(), &conn)?);
                }
                let subject = me.subject.clone();
                let p = self
                    .publish_checked(&s, origin, |g| {
                        live(g)?;
                        dedupe(g, &subject, id.as_deref())?;
                        if renderer {
                            lease(g, &conn)?;
                        }
                        Ok(Event::Custom {
                            name: name.clone(),
                            audience,
                            data: data.clone(),
                            from: subject.clone(),
                        })
                    })
                    .await?;
                self.ack_now(client, id, session, &p);
                Ok(())
            }
        }
    }

    // ---------------------------------------------------------------
    // Acks
    // ---------------------------------------------------------------

    /// Acks a frame whose effect needs no commit.
    fn ack_now(&self, client: &Client, id: Option<ClientMsgId>, session: SessionId, p: &Published) {
        if let Some(id) = id {
            client.conn.send(&ServerFrame::Ack {
                id,
                session: Some(session),
                seq: Some(p.seq),
                ref_id: ref_id(&p.event),
                duplicate: false,
            });
        }
    }

    /// Answers a resend with the original outcome, once everything queued
    /// before it has committed (an empty submission is a barrier: the
    /// writer commits in order).
    fn duplicate_ack(&self, client: &Client, session: SessionId, id: ClientMsgId, seen: Seen) {
        let frame = ServerFrame::Ack {
            id,
            session: Some(session),
            seq: Some(seen.seq),
            ref_id: seen.ref_id,
            duplicate: true,
        };
        if self
            .writer
            .submit(Vec::new(), Some(commit_ack(&client.conn, &frame)))
            .is_err()
        {
            client.conn.send(&frame);
        }
    }

    /// Publishes a must-keep event: reserve backlog room, publish (unless
    /// the id is a resend), queue the rows, ack after they commit.
    #[allow(clippy::too_many_arguments)]
    async fn publish_kept(
        &self,
        client: &Client,
        session: &Arc<Session>,
        id: &str,
        event: Event,
        rows: usize,
        bytes: usize,
        make_rows: impl FnOnce(&Published) -> Vec<Row>,
    ) -> Result<(), HubError> {
        let reservation = self.writer.reserve(rows, 128 * rows + bytes)?;
        let sender = client.origin(None).sender;
        let p = self
            .publish_checked(session, client.origin(Some(id)), |g| {
                live(g)?;
                dedupe(g, &sender, Some(id))?;
                Ok(event.clone())
            })
            .await?;
        let rows = make_rows(&p);
        self.finish_kept(
            client,
            session.id,
            Some(id.to_owned()),
            &p,
            reservation,
            rows,
        );
        Ok(())
    }

    fn finish_kept(
        &self,
        client: &Client,
        session: SessionId,
        id: Option<ClientMsgId>,
        p: &Published,
        reservation: Reservation,
        rows: Vec<Row>,
    ) {
        let ack = id.map(|id| {
            commit_ack(
                &client.conn,
                &ServerFrame::Ack {
                    id,
                    session: Some(session),
                    seq: Some(p.seq),
                    ref_id: ref_id(&p.event),
                    duplicate: false,
                },
            )
        });
        reservation.submit(rows, ack);
    }

    // ---------------------------------------------------------------
    // Join and leave
    // ---------------------------------------------------------------

    #[allow(clippy::too_many_arguments)]
    async fn join(
        &self,
        client: &mut Client,
        me: &Identity,
        session_id: SessionId,
        resume: Option<StreamPosition>,
        takeover: bool,
        name: Option<String>,
        id: Option<ClientMsgId>,
    ) -> Result<(), HubError> {
        if !me.may_join(session_id) {
            return Err(not_found());
        }
        validate_short("name", name.as_deref(), 255)?;
        if client.joined.iter().any(|s| s.id == session_id) {
            return Err(refuse(
                ErrorCode::AlreadyJoined,
                "already joined this session",
            ));
        }
        if me.role != Role::Operator && !client.joined.is_empty() {
            return Err(refuse(
                ErrorCode::AlreadyJoined,
                "a renderer or participant connection serves one session",
            ));
        }
        let s = self.session(me.tenant, session_id).await?;
        if me.role != Role::Operator {
            live(&s.lock())?;
        }
        if let Some(pos) = resume {
            self.backfill_history(&s, pos).await;
        }
        let conn = client.conn.clone();
        let mut fence = None;
        match me.role {
            Role::Renderer => {
                let subject = me.subject.clone();
                let p = self
                    .publish_checked(&s, client.origin(None), |g| {
                        live(g)?;
                        if g.renderer.connected && !takeover {
                            return Err(refuse(
                                ErrorCode::RendererActive,
                                "another renderer is live; join with takeover: true to replace it",
                            ));
                        }
                        Ok(Event::Renderer {
                            connected: true,
                            fence: g.renderer.fence + 1,
                            renderer_id: Some(subject.clone()),
                        })
                    })
                    .await?;
                if let Event::Renderer { fence: f, .. } = p.event {
                    fence = Some(f);
                }
                // Counted like a member so that, across nodes, a renderer
                // whose node dies is counted out (see `publish_leave`).
                let key = member_key(Role::Renderer, &me.subject);
                if let Err(e) = self.broker.presence_join(s.id, &key).await {
                    tracing::debug!(session = %s.id, error = %e, "renderer presence not counted");
                }
            }
            Role::Participant | Role::Operator => {
                client.display_name = name.clone().or_else(|| me.name.clone());
                let member = Member {
                    id: me.subject.clone(),
                    role: me.role,
                    name: client.display_name.clone(),
                };
                self.presence_join(&s, member).await?;
            }
        }
        {
            let mut g = s.lock();
            if let Some(f) = fence {
                if g.renderer.fence != f {
                    // Replaced before we even attached.
                    drop(g);
                    conn.outbox.close(CloseCode::Replaced);
                    return Ok(());
                }
                g.local_renderer = Some((conn.id, f));
            }
            conn.send(&ServerFrame::Joined {
                session: session_id,
                role: me.role,
                fence,
                id,
            });
            let outcome = g.attach(session_id, &conn, me.role, resume);
            if resume.is_some() {
                m::resume(matches!(outcome, crate::session::Attached::Resumed { .. }));
            }
        }
        client.joined.push(s.clone());
        let status = s.lock().info.status;
        if me.role == Role::Participant {
            self.persist(vec![Row::ParticipantJoined(ParticipantRow {
                session_id,
                participant_id: me.subject.clone(),
                participant_name: client.display_name.clone(),
                joined_at: chrono::Utc::now(),
                left_at: None,
                questions_asked: 0,
            })]);
        }
        if me.role == Role::Renderer
            && matches!(status, SessionStatus::Created)
            && let Err(e) = self
                .transition(
                    &s,
                    SessionStatus::Starting,
                    Some("renderer joined".into()),
                    None,
                )
                .await
        {
            tracing::debug!(session = %session_id, error = %e, "renderer join did not start the session");
        }
        Ok(())
    }

    /// Makes a resume from `pos` exact when this node's history starts
    /// after it (the client was on another node, or this node started
    /// watching later): the broker's history fills in the older events.
    async fn backfill_history(&self, s: &Arc<Session>, pos: StreamPosition) {
        let (epoch, first, top) = {
            let g = s.lock();
            let first = g.history.front().map_or(g.seq + 1, |p| p.seq);
            (g.epoch, first, g.seq)
        };
        if pos.epoch != epoch || pos.seq >= top || pos.seq + 1 >= first {
            return;
        }
        let want = (first - pos.seq - 1) as usize;
        if want > self.settings.session.history_size {
            return;
        }
        match self.broker.history(s.id, pos.seq, want).await {
            Ok(page) if page.epoch == epoch => s.lock().backfill(page.events),
            Ok(_) => {}
            Err(e) => tracing::debug!(session = %s.id, error = %e, "no older history to backfill"),
        }
    }

    /// Counts a member in; the first connection anywhere publishes `join`.
    async fn presence_join(&self, s: &Arc<Session>, member: Member) -> Result<(), HubError> {
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
                Role::Participant => self.persist(vec![Row::ParticipantLeft {
                    session_id: s.id,
                    participant_id: member.id,
                    left_at: ts(p.ts),
                    questions_asked: asked.unwrap_or(0),
                }]),
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

    /// Detaches a connection from a session, on `leave` (`explicit`) or
    /// disconnect (presence grace applies).
    pub(crate) async fn leave_session(
        &self,
        conn: &ConnHandle,
        me: &Identity,
        s: &Arc<Session>,
        explicit: bool,
    ) {
        let key = member_key(me.role, &me.subject);
        let mut leave_now = false;
        let mut renderer_fence = None;
        {
            let mut g = s.lock();
            if me.role == Role::Renderer {
                if let Some((c, f)) = g.local_renderer
                    && c == conn.id
                    && f == g.renderer.fence
                {
                    renderer_fence = Some(f);
                }
            } else if let Some(entry) = g.local_members.get_mut(&key) {
                entry.conns = entry.conns.saturating_sub(1);
                if entry.conns == 0 {
                    if explicit {
                        g.local_members.remove(&key);
                        leave_now = true;
                    } else {
                        entry.leaving_since = Some(Instant::now());
                        self.timers.schedule(
                            self.settings.session.presence_grace(),
                            super::timers::Job::PresenceLeave {
                                session: s.id,
                                key: key.clone(),
                            },
                        );
                    }
                }
            }
            g.detach(conn.id, me.role);
        }
        if leave_now {
            self.presence_leave(s, &key).await;
        }
        if me.role == Role::Renderer
            && let Err(e) = self.broker.presence_leave(s.id, &key).await
        {
            tracing::debug!(session = %s.id, error = %e, "renderer presence not counted out");
        }
        if let Some(fence) = renderer_fence {
            let _ = self
                .publish_checked(s, Origin::hub(), |g| {
                    if g.renderer.fence != fence || !g.renderer.connected {
                        return Err(refuse(ErrorCode::Conflict, "renderer already replaced"));
                    }
                    Ok(Event::Renderer {
                        connected: false,
                        fence,
                        renderer_id: g.renderer.id.clone(),
                    })
                })
                .await;
            let status = s.lock().info.status;
            if status.is_live() && status != SessionStatus::Stopping {
                self.timers.schedule(
                    self.settings.session.renderer_grace(),
                    super::timers::Job::RendererGrace { session: s.id },
                );
            } else if status == SessionStatus::Stopping {
                let _ = self
                    .transition(
                        s,
                        SessionStatus::Stopped,
                        Some("renderer left".into()),
                        None,
                    )
                    .await;
            }
        }
    }

    /// The controlling operator is gone from the session: release the
    /// takeover unless it is back within the takeover grace.
    fn schedule_takeover_expiry(&self, s: &Arc<Session>, operator: &str) {
        self.timers.schedule(
            self.settings.session.takeover_grace(),
            super::timers::Job::TakeoverGrace {
                session: s.id,
                operator: operator.to_owned(),
            },
        );
    }

    /// Everything a closed connection leaves behind.
    pub async fn disconnect(&self, client: &mut Client) {
        self.unregister(client.conn.id);
        let Some(me) = client.conn.identity().cloned() else {
            return;
        };
        m::connection_closed(me.role);
        for s in std::mem::take(&mut client.joined) {
            self.leave_session(&client.conn, &me, &s, false).await;
        }
    }

    // ---------------------------------------------------------------
    // Renderer
    // ---------------------------------------------------------------

    async fn response(
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
        let mut question = None;
        let p = self
            .publish_checked(s, origin, |g| {
                lease(g, &conn)?;
                live(g)?;
                dedupe(g, &sender, Some(&id))?;
                question = body.question_id.and_then(|q| g.questions.get(&q).cloned());
                // While an operator controls the session, the renderer's own
                // answers are held for operators; answers that carry out an
                // operator command pass.
                if g.controller.is_some() && body.command_id.is_none() {
                    Ok(Event::ResponseHeld(body.clone()))
                } else {
                    Ok(Event::Response(body.clone()))
                }
            })
            .await?;
        let held = matches!(p.event, Event::ResponseHeld(_));
        let mut rows = vec![Row::Conversation(conversation(
            &p,
            body.response_id,
            MessageType::Response,
            &body.text,
            Some(&sender),
            Some((body.confidence, body.response_time_ms)),
            json!({
                "held": held,
                "question_id": body.question_id,
                "command_id": body.command_id,
                "intent": body.intent,
            }),
            Some(&id),
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
        self.finish_kept(client, s.id, Some(id), &p, reservation, rows);
        Ok(())
    }

    async fn renderer_metrics(
        &self,
        client: &Client,
        s: &Arc<Session>,
        metrics: RendererMetrics,
    ) -> Result<(), HubError> {
        let mut crossed = Vec::new();
        {
            let mut g = s.lock();
            lease(&g, &client.conn)?;
            for (name, value, limit, above) in self.thresholds(&metrics) {
                let over = if above { value > limit } else { value < limit };
                let latched = g.pending.latched.contains(&name);
                if over && !latched {
                    g.pending.latched.push(name);
                    crossed.push((name, value, limit, above));
                } else if !over && latched {
                    g.pending.latched.retain(|n| *n != name);
                }
            }
            g.pending.metrics = Some(metrics.clone());
        }
        for (stage, v) in [
            ("stt", metrics.stages.stt_ms),
            ("llm", metrics.stages.llm_ms),
            ("tts", metrics.stages.tts_ms),
            ("total", metrics.stages.total_ms),
        ] {
            if let Some(v) = v {
                m::renderer_stage(stage, v);
            }
        }
        if let Some(l) = metrics.latency_ms {
            m::renderer_component(metrics.component.as_deref(), l);
        }
        self.persist_droppable(
            MetricRow::from_report(s.id, chrono::Utc::now(), &metrics)
                .map(Row::Metric)
                .collect(),
        );
        for (name, value, limit, above) in crossed {
            let direction = if above { "above" } else { "below" };
            self.raise_alert(
                s,
                AlertType::MetricThreshold,
                Severity::Warning,
                format!("{name} {direction} threshold"),
                format!("renderer reported {name} = {value}, {direction} the threshold {limit}"),
                metrics.component.clone(),
                json!({ "metric": name, "value": value, "threshold": limit }),
            )
            .await;
        }
        Ok(())
    }

    /// `(metric, value, threshold, alert_when_above)` for every configured
    /// threshold the report has a value for.
    fn thresholds(&self, m: &RendererMetrics) -> Vec<(&'static str, f64, f64, bool)> {
        let a = &self.settings.alerts;
        [
            ("latency_ms", m.latency_ms, a.latency_ms, true),
            (
                "total_latency_ms",
                m.stages.total_ms,
                a.total_latency_ms,
                true,
            ),
            ("cpu_usage", m.cpu_usage, a.cpu_usage, true),
            ("gpu_usage", m.gpu_usage, a.gpu_usage, true),
            ("memory_usage", m.memory_usage, a.memory_usage, true),
            ("fps", m.fps, a.fps_below, false),
        ]
        .into_iter()
        .filter_map(|(n, v, l, above)| Some((n, v?, l?, above)))
        .collect()
    }

    /// Raises an alert: an event to operators and a row in the store.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn raise_alert(
        &self,
        s: &Arc<Session>,
        alert_type: AlertType,
        severity: Severity,
        title: String,
        message: String,
        component: Option<String>,
        metadata: Value,
    ) {
        let alert = crate::protocol::model::Alert {
            alert_id: EventId::new(),
            alert_type,
            severity,
            title,
            message,
            component,
            metadata,
            created_at: now_ms(),
        };
        m::alert_raised(alert_type);
        tracing::warn!(session = %s.id, alert = alert_type.as_str(), "{}", alert.title);
        match self
            .publish(
                s,
                Event::Alert {
                    alert: alert.clone(),
                },
                Origin::hub(),
            )
            .await
        {
            Ok(p) => self.persist(vec![Row::Alert(crate::store::AlertRow {
                id: alert.alert_id,
                session_id: s.id,
                alert_type,
                severity,
                title: alert.title,
                message: alert.message,
                component: alert.component,
                metadata: alert.metadata,
                created_at: ts(p.ts),
                acknowledged: false,
                acknowledged_by: None,
                acknowledged_at: None,
            })]),
            Err(e) => tracing::error!(session = %s.id, error = %e, "could not publish an alert"),
        }
    }

    // ---------------------------------------------------------------
    // Participant
    // ---------------------------------------------------------------

    async fn question(
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
        let name = client.display_name.clone();
        let rows = |p: &Published| {
            vec![Row::Conversation(conversation(
                p,
                question_id,
                MessageType::Question,
                &text,
                name.as_deref().or(Some(&subject)),
                None,
                json!({}),
                Some(&id),
            ))]
        };
        let row_text = text.len();
        self.publish_kept(client, s, &id.clone(), event, 1, row_text, rows)
            .await?;
        s.lock().pending.counters_dirty = true;
        Ok(())
    }

    // ---------------------------------------------------------------
    // Operator
    // ---------------------------------------------------------------

    async fn takeover(
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
        self.finish_kept(client, s.id, id, &p, reservation, vec![row]);
        s.lock().pending.counters_dirty = true;
        Ok(())
    }

    /// Ends a takeover. `by` is the operator releasing (or whose grace
    /// expired); `client` is set when an operator asked for it.
    pub(crate) async fn release(
        &self,
        s: &Arc<Session>,
        by: &str,
        reason: ReleaseReason,
        client: Option<(&Client, Option<ClientMsgId>)>,
    ) -> Result<(), HubError> {
        let reservation = self.writer.reserve(1, 128)?;
        let mut since = 0;
        let origin = match &client {
            Some((c, id)) => c.origin(id.as_deref()),
            None => Origin::hub(),
        };
        let p = self
            .publish_checked(s, origin, |g| match &g.controller {
                Some(c) if c.operator_id == by => {
                    since = c.since_ms;
                    Ok(Event::Release {
                        intervention_id: c.intervention_id,
                        operator_id: by.to_owned(),
                        reason,
                    })
                }
                _ => Err(refuse(
                    ErrorCode::NotController,
                    "only the controlling operator may release",
                )),
            })
            .await?;
        let Event::Release {
            intervention_id, ..
        } = p.event
        else {
            return Ok(());
        };
        let rows = vec![Row::InterventionEnded {
            id: intervention_id,
            ended_at: ts(p.ts),
            duration_seconds: (p.ts.saturating_sub(since) / 1000).min(i32::MAX as u64) as i32,
        }];
        match client {
            Some((c, id)) => self.finish_kept(c, s.id, id, &p, reservation, rows),
            None => reservation.submit(rows, None),
        }
        Ok(())
    }

    async fn command(
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
        self.finish_kept(client, s.id, Some(id), &p, reservation, rows);
        Ok(())
    }

    async fn emergency_stop(
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
            super::timers::Job::EmergencyAckDeadline {
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
        self.finish_kept(client, s.id, Some(id), &p, reservation, vec![row]);
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

/// A conversation row for an event.
#[allow(clippy::too_many_arguments)]
fn conversation(
    p: &Published,
    id: EventId,
    message_type: MessageType,
    content: &str,
    speaker: Option<&str>,
    scored: Option<(f64, u32)>,
    metadata: Value,
    client_msg_id: Option<&str>,
) -> ConversationRow {
    let participant_id = match message_type {
        MessageType::Question => Some(p.origin.sender.clone()),
        _ => None,
    };
    ConversationRow {
        id,
        session_id: p.session,
        seq: p.seq,
        participant_id,
        message_type,
        content: content.to_owned(),
        speaker: speaker.map(str::to_owned),
        timestamp: ts(p.ts),
        confidence_score: scored.map(|s| s.0),
        response_time_ms: scored.map(|s| s.1.min(i32::MAX as u32) as i32),
        context: json!({}),
        metadata,
        client_msg_id: client_msg_id.map(str::to_owned),
    }
}

/// An intervention row for an event.
fn intervention(
    p: &Published,
    operator: &str,
    kind: InterventionType,
    reason: Option<String>,
    action: &str,
    client_msg_id: Option<&str>,
) -> InterventionRow {
    InterventionRow {
        id: ref_id(&p.event).unwrap_or_default(),
        session_id: p.session,
        seq: p.seq,
        operator_id: operator.to_owned(),
        intervention_type: kind,
        trigger_reason: reason,
        action_taken: action.to_owned(),
        created_at: ts(p.ts),
        ended_at: None,
        duration_seconds: None,
        client_msg_id: client_msg_id.map(str::to_owned),
    }
}
