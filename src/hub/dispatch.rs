//! A connection's frames, one at a time and in order: decoding, the
//! first-frame `auth`, rate limits, and one short match that routes each
//! frame to its family in `frames/`. Errors become `error` frames that
//! carry the frame's `id` and session.

use super::client::{Client, Next};
use super::core::Hub;
use super::error::{HubError, refuse};
use super::frames::join::Join;
use super::timers::Job;
use super::validate::validate_id;
use crate::auth::AuthError;
use crate::auth::limits::{FrameClass, TenantRefusal, Verdict};
use crate::identity::Identity;
use crate::ids::{EventId, now_ms};
use crate::metrics as m;
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
                ClientFrame::Auth { token } => self.authenticate(client, token.expose()).await,
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
        // Checked for every frame, not only where an id is required: an
        // optional `""` would otherwise be remembered, and every later
        // frame with it answered as its duplicate and dropped.
        let checked = match id.as_deref().map(validate_id) {
            Some(Err(e)) => Err(e),
            _ => self.dispatch(client, frame).await,
        };
        match checked {
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
