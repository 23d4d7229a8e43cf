//! A connection's frames, in order: decoding, the first-frame `auth`, rate
//! limits, and one short match that routes each frame to its family in
//! `frames/`. Frames are handled one at a time, except that `publish`
//! frames arriving together for one session are sequenced as one run.
//! Errors become `error` frames that carry the frame's `id` and session.

use bytes::Bytes;

use super::client::{Client, Next};
use super::core::Hub;
use super::error::{HubError, refuse};
use super::frames::custom::{Queued, Run};
use super::frames::join::Join;
use super::timers::Job;
use super::validate::validate_id;
use crate::auth::AuthError;
use crate::auth::limits::{FrameClass, TenantRefusal, Verdict, hold};
use crate::identity::Identity;
use crate::ids::{EventId, SessionId, now_ms};
use crate::metrics as m;
use crate::protocol::frames::ClientMsgId;
use crate::protocol::model::ResponseBody;
use crate::protocol::{ClientFrame, CloseCode, DecodeError, ErrorCode, ServerFrame};

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
                Job::TokenExpiry {
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

    /// Handles inbound data messages that arrived together, in order.
    /// `publish` frames next to each other for one session are sequenced
    /// as one run ([`Hub::publish_run`]); every other frame is handled
    /// alone, after the run before it.
    pub async fn on_messages(&self, client: &mut Client, payloads: &[Bytes]) -> Next {
        let mut run = Run::default();
        for payload in payloads {
            let frame = match self.admit(client, payload).await {
                Ok(frame) => frame,
                Err(Next::Continue) => continue,
                Err(close) => {
                    self.finish_run(client, &mut run).await;
                    return close;
                }
            };
            let frame = match frame {
                ClientFrame::Publish {
                    session,
                    name,
                    audience,
                    data,
                    id,
                } => {
                    let queued = Queued {
                        name,
                        audience,
                        data,
                        id,
                    };
                    let me = client.conn.identity();
                    if !me.is_some_and(|me| queued.may_join_a_run(me)) {
                        queued.into_frame(session)
                    } else {
                        if !run.fits(session, &queued) {
                            self.finish_run(client, &mut run).await;
                        }
                        run.push(session, queued);
                        continue;
                    }
                }
                frame => frame,
            };
            self.finish_run(client, &mut run).await;
            if let Next::Close(code) = self.handle(client, frame).await {
                return Next::Close(code);
            }
        }
        self.finish_run(client, &mut run).await;
        Next::Continue
    }

    /// Decodes a data message and lets it through the connection's
    /// checks: authentication first, then the rate limits. `Err` says
    /// what to do instead of handling a frame (refusals are answered).
    async fn admit(&self, client: &mut Client, payload: &[u8]) -> Result<ClientFrame, Next> {
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
                    return Err(Next::Close(CloseCode::ProtocolViolation));
                }
                return Err(Next::Continue);
            }
        };
        m::frame_in(frame.name());
        if client.conn.identity().is_none() {
            return Err(match frame {
                ClientFrame::Auth { token } => self.authenticate(client, token.expose()).await,
                _ => Next::Close(CloseCode::Unauthorized),
            });
        }
        match client.limiter.check(FrameClass::of(&frame)) {
            Verdict::Pass => Ok(frame),
            Verdict::Limited(retry_after) => {
                m::limit_hit("frames");
                client.conn.send(&ServerFrame::Error {
                    code: ErrorCode::RateLimited,
                    message: "too many frames; slow down".into(),
                    id: frame.client_id().map(str::to_owned),
                    session: frame.session(),
                    retry_after_ms: Some(retry_after.as_millis().max(1) as u64),
                });
                Err(Next::Continue)
            }
            Verdict::Abuse => {
                m::limit_hit("abuse");
                tracing::info!(conn = %client.conn.id, peer = %client.conn.peer, "closing a connection that keeps exceeding its rate limits");
                Err(Next::Close(CloseCode::RateLimited))
            }
        }
    }

    /// Handles one admitted frame and answers it.
    async fn handle(&self, client: &mut Client, frame: ClientFrame) -> Next {
        let id = frame.client_id().map(str::to_owned);
        let session = frame.session();
        // Checked for every frame, not only where an id is required: an
        // optional `""` would otherwise be remembered, and every later
        // frame with it answered as its duplicate and dropped.
        let checked = match id.as_deref().map(validate_id) {
            Some(Err(e)) => Err(e),
            _ => self.dispatch(client, frame).await,
        };
        self.answer(client, id, session, checked);
        Next::Continue
    }

    /// Publishes the run's frames, if any, and answers each.
    async fn finish_run(&self, client: &mut Client, run: &mut Run) {
        let Some((session, frames)) = run.take() else {
            return;
        };
        let Some(me) = client.conn.identity().cloned() else {
            return;
        };
        let ids: Vec<Option<ClientMsgId>> = frames.iter().map(|f| f.id.clone()).collect();
        let outcomes = self.publish_run(client, &me, session, frames).await;
        for (id, outcome) in ids.into_iter().zip(outcomes) {
            self.answer(client, id, Some(session), outcome);
        }
    }

    /// Answers a handled frame: nothing more on success, the original
    /// outcome to a resend, an `error` frame with the frame's id and
    /// session otherwise.
    fn answer(
        &self,
        client: &Client,
        id: Option<ClientMsgId>,
        session: Option<SessionId>,
        outcome: Result<(), HubError>,
    ) {
        match outcome {
            Ok(()) => {}
            Err(HubError::Duplicate(seen)) => {
                if let (Some(id), Some(session)) = (id, session) {
                    self.duplicate_ack(client, session, id, seen);
                }
            }
            Err(e) => {
                client.conn.send(&ServerFrame::Error {
                    code: e.code(),
                    message: e.client_message(),
                    id,
                    session,
                    retry_after_ms: e.retry_after().map(|d| d.as_millis() as u64),
                });
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
            Ok(slot) => hold(&mut client.slots, slot),
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

    /// Routes an authenticated frame to its family.
    async fn dispatch(&self, client: &mut Client, frame: ClientFrame) -> Result<(), HubError> {
        let me = client.identity()?.clone();
        let me = &me;
        match frame {
            ClientFrame::Auth { .. } => Err(refuse(ErrorCode::Invalid, "already authenticated")),
            ClientFrame::Ping { nonce } => {
                let server_time = now_ms();
                client.conn.send(&ServerFrame::Pong { nonce, server_time });
                Ok(())
            }
            // Joining and resume
            ClientFrame::Join {
                session,
                resume,
                takeover,
                name,
                compact,
                echo,
                id,
            } => {
                let join = Join {
                    session,
                    resume,
                    takeover,
                    name,
                    compact,
                    echo,
                    id,
                };
                self.join(client, me, join).await
            }
            ClientFrame::Leave { session, id } => self.leave(client, me, session, id).await,
            // Renderer state and metrics
            ClientFrame::State { session, state, id } => {
                self.state(client, me, session, state, id).await
            }
            ClientFrame::Context {
                session,
                context,
                id,
            } => self.context(client, me, session, context, id).await,
            ClientFrame::Metrics { session, metrics } => {
                self.metrics(client, me, session, metrics).await
            }
            ClientFrame::Status {
                session,
                status,
                reason,
                id,
            } => self.status(client, me, session, status, reason, id).await,
            ClientFrame::CommandAck {
                session,
                command_id,
            } => self.command_ack(client, me, session, command_id).await,
            // Questions and responses
            ClientFrame::Question { session, id, text } => {
                self.question(client, me, session, id, text).await
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
                self.response(client, me, session, id, body).await
            }
            // Interventions and the emergency lane
            ClientFrame::Takeover {
                session,
                reason,
                id,
            } => self.takeover(client, me, session, reason, id).await,
            ClientFrame::Release { session, id } => {
                self.release_frame(client, me, session, id).await
            }
            ClientFrame::Command {
                session,
                id,
                command,
            } => self.command(client, me, session, id, command).await,
            ClientFrame::Suggestion { session, id, text } => {
                self.suggestion(client, me, session, id, text).await
            }
            ClientFrame::Correction {
                session,
                id,
                response_id,
                text,
            } => {
                self.correction(client, me, session, id, response_id, text)
                    .await
            }
            ClientFrame::EmergencyStop {
                session,
                id,
                reason,
            } => self.emergency_stop(client, me, session, id, reason).await,
            ClientFrame::Approve {
                session,
                response_id,
                id,
            } => self.approve(client, me, session, response_id, id).await,
            ClientFrame::AckAlert {
                session,
                alert_id,
                id,
            } => self.ack_alert(client, me, session, alert_id, id).await,
            // The session directory
            ClientFrame::ListSessions {
                status,
                include_ended,
                limit,
                id,
            } => {
                self.list_sessions_frame(client, me, status, include_ended, limit, id)
                    .await
            }
            // App-defined events
            ClientFrame::Publish {
                session,
                name,
                audience,
                data,
                id,
            } => {
                self.publish(client, me, session, name, audience, data, id)
                    .await
            }
        }
    }
}
