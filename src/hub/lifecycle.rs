//! Sessions as backends see them over REST, and the lifecycle every
//! path shares: creating, viewing and listing sessions, moving them
//! through their states (with the follow-up each transition owes), and
//! app-defined events from backends.

use std::sync::Arc;

use chrono::Utc;
use serde_json::Value;
use uuid::Uuid;

use super::core::Hub;
use super::error::{HubError, not_found, refuse};
use super::rows::{progress_row, webhook_rows};
use super::timers::Job;
use super::validate::{dedupe, validate_event_name};
use crate::identity::Principal;
use crate::ids::SessionId;
use crate::protocol::model::{
    Counters, CustomAudience, Event, ReleaseReason, SessionState, StreamPosition,
};
use crate::protocol::{ErrorCode, SessionStatus};
use crate::session::Session;
use crate::store::ingest::EXTERNAL_ID_MAX;
use crate::store::writer::Order;
use crate::store::{SessionQuery, SessionRecord, TenantRecord};
use crate::stream::{Origin, Published};

/// What a backend gives to create a session.
#[derive(Clone, Debug, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSession {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub avatar_id: Option<Uuid>,
    #[serde(default)]
    pub config: Option<Value>,
    /// The vendor's id for the conversation this session presents (a
    /// Tavus conversation id, a HeyGen streaming session id, a LiveKit
    /// room name): inbound events that name it drive this session
    /// (`docs/INGEST.md`). 1-255 bytes, no control characters, unique.
    #[serde(default)]
    pub external_id: Option<String>,
}

/// A session as REST shows it: the stored record plus what only the live
/// replica knows.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct SessionView {
    #[serde(flatten)]
    pub record: SessionRecord,
    /// Present while the session is loaded on this node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<LiveView>,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct LiveView {
    pub position: StreamPosition,
    pub renderer_connected: bool,
    pub controller: Option<String>,
    pub connections: usize,
}

impl Hub {
    pub async fn create_session(
        &self,
        principal: &Principal,
        new: NewSession,
    ) -> Result<SessionView, HubError> {
        if self.is_draining() {
            return Err(refuse(ErrorCode::Unavailable, "the hub is shutting down"));
        }
        let max = self.settings.session.max_text_bytes;
        if new.name.as_ref().is_some_and(|n| n.len() > 255) {
            return Err(refuse(ErrorCode::Invalid, "name is longer than 255 bytes"));
        }
        if new.description.as_ref().is_some_and(|d| d.len() > max) {
            return Err(refuse(ErrorCode::Invalid, "description is too long"));
        }
        if let Some(x) = &new.external_id {
            if x.is_empty() || x.len() > EXTERNAL_ID_MAX || x.chars().any(char::is_control) {
                return Err(refuse(
                    ErrorCode::Invalid,
                    "external_id is 1-255 bytes without control characters",
                ));
            }
            // The unique index decides in a race; this gives the usual
            // answer a clear message.
            if self
                .writer
                .store()
                .session_by_external_id(x)
                .await?
                .is_some()
            {
                return Err(refuse(
                    ErrorCode::Conflict,
                    "another session has this external_id",
                ));
            }
        }
        let config = new
            .config
            .unwrap_or_else(|| Value::Object(Default::default()));
        if !config.is_object() {
            return Err(refuse(ErrorCode::Invalid, "config must be a JSON object"));
        }
        if self.auth.insecure() {
            // Development identities name tenants freely; give each one a
            // row so the store's references hold.
            self.writer
                .store()
                .ensure_tenant(&TenantRecord::new(
                    principal.tenant,
                    format!("{}@dev.eva-hub.invalid", principal.tenant),
                ))
                .await?;
        }
        let record = SessionRecord {
            id: SessionId::new(),
            tenant: principal.tenant,
            avatar_id: new.avatar_id,
            name: new.name.clone(),
            description: new.description,
            external_id: new.external_id,
            status: SessionStatus::Created,
            config,
            created_at: Utc::now(),
            started_at: None,
            ended_at: None,
            counters: Counters::default(),
            last_error: None,
            state: SessionState::default(),
            context: Value::Object(Default::default()),
        };
        self.writer.store().create_session(&record).await?;
        let session = self.sessions.load(record).await?;
        let p = self
            .sessions
            .publish(&session, Event::Created { name: new.name }, Origin::hub())
            .await?;
        self.persist(
            Order::Session(session.id),
            webhook_rows(&session, &p, false),
        );
        Ok(self.view(&session))
    }

    /// A loaded session as REST shows it.
    pub fn view(&self, session: &Session) -> SessionView {
        let g = session.lock();
        SessionView {
            record: g.record(session.id, session.tenant),
            live: Some(LiveView {
                position: g.position(),
                renderer_connected: g.renderer.connected,
                controller: g.controller.as_ref().map(|c| c.operator_id.clone()),
                connections: g.subs.len(),
            }),
        }
    }

    pub async fn get_session(
        &self,
        principal: &Principal,
        id: SessionId,
    ) -> Result<SessionView, HubError> {
        if let Some(s) = self.sessions.get(id) {
            return if s.tenant == principal.tenant {
                Ok(self.view(&s))
            } else {
                Err(not_found())
            };
        }
        let record = self
            .writer
            .store()
            .get_session(Some(principal.tenant), id)
            .await?
            .ok_or_else(not_found)?;
        Ok(SessionView { record, live: None })
    }

    pub async fn list_sessions(
        &self,
        principal: &Principal,
        query: &SessionQuery,
    ) -> Result<Vec<SessionView>, HubError> {
        let records = self
            .writer
            .store()
            .list_sessions(principal.tenant, query)
            .await?;
        Ok(records
            .into_iter()
            .map(|record| match self.sessions.get(record.id) {
                Some(s) => self.view(&s),
                None => SessionView { record, live: None },
            })
            .collect())
    }

    /// Moves a session through its lifecycle. Refused with
    /// `illegal_transition` when the lifecycle does not allow it.
    pub async fn transition(
        &self,
        session: &Arc<Session>,
        to: SessionStatus,
        reason: Option<String>,
        by: Option<String>,
    ) -> Result<Arc<Published>, HubError> {
        let origin = Origin {
            sender: by.unwrap_or_default(),
            ..Origin::hub()
        };
        self.transition_by(session, to, reason, origin).await
    }

    /// A transition a client asked for: `origin` names it (its subject
    /// becomes `by`), and a resend of its frame `id` is answered with the
    /// original outcome instead of `illegal_transition`.
    pub(crate) async fn transition_by(
        &self,
        session: &Arc<Session>,
        to: SessionStatus,
        reason: Option<String>,
        origin: Origin,
    ) -> Result<Arc<Published>, HubError> {
        let by = (!origin.sender.is_empty()).then(|| origin.sender.clone());
        let sender = origin.sender.clone();
        let client_id = origin.client_id.clone();
        let p = self
            .publish_checked(session, origin, |g| {
                dedupe(g, &sender, client_id.as_deref())?;
                let from = g.info.status;
                if !from.can_become(to) {
                    return Err(refuse(
                        ErrorCode::IllegalTransition,
                        format!("a {} session cannot become {}", from.as_str(), to.as_str()),
                    ));
                }
                Ok(Event::Lifecycle {
                    status: to,
                    previous: from,
                    reason: reason.clone(),
                    by: by.clone(),
                })
            })
            .await?;
        self.after_transition(session, to, &p).await;
        Ok(p)
    }

    /// Follow-up work a transition owes: persistence, timers, and a stop
    /// that needs no renderer.
    async fn after_transition(&self, session: &Arc<Session>, to: SessionStatus, p: &Published) {
        let (row, renderer_connected, controller) = {
            let g = session.lock();
            (
                progress_row(session.id, &g),
                g.renderer.connected,
                g.controller.as_ref().map(|c| c.operator_id.clone()),
            )
        };
        let mut rows = vec![row];
        rows.extend(webhook_rows(session, p, false));
        self.persist(Order::Session(session.id), rows);
        if let (true, Some(operator)) = (to.is_terminal(), controller)
            && let Err(e) = self
                .release(session, &operator, ReleaseReason::SessionEnded, None)
                .await
        {
            tracing::info!(session = %session.id, error = %e, "end-of-session release raced");
        }
        match to {
            SessionStatus::Stopping if !renderer_connected => {
                let _ = Box::pin(self.transition(
                    session,
                    SessionStatus::Stopped,
                    Some("no renderer to wait for".into()),
                    None,
                ))
                .await;
            }
            SessionStatus::Stopping => self.timers.schedule(
                self.settings.session.stop_timeout(),
                Job::StopTimeout {
                    session: session.id,
                },
            ),
            SessionStatus::Starting | SessionStatus::Active if !renderer_connected => {
                self.timers.schedule(
                    self.settings.session.renderer_grace(),
                    Job::RendererGrace {
                        session: session.id,
                    },
                )
            }
            _ => {}
        }
    }

    /// Starts stopping a session (REST `stop`).
    pub async fn stop(
        &self,
        principal: &Principal,
        id: SessionId,
        reason: Option<String>,
    ) -> Result<SessionView, HubError> {
        let session = self.sessions.find(Some(principal.tenant), id).await?;
        self.transition(
            &session,
            SessionStatus::Stopping,
            reason,
            Some(principal.subject.clone()),
        )
        .await?;
        Ok(self.view(&session))
    }

    /// A lifecycle change requested over REST.
    pub async fn set_status(
        &self,
        principal: &Principal,
        id: SessionId,
        to: SessionStatus,
        reason: Option<String>,
    ) -> Result<SessionView, HubError> {
        let session = self.sessions.find(Some(principal.tenant), id).await?;
        self.transition(&session, to, reason, Some(principal.subject.clone()))
            .await?;
        Ok(self.view(&session))
    }

    /// Publishes an app-defined event for a backend (REST).
    pub async fn publish_custom(
        &self,
        principal: &Principal,
        id: SessionId,
        name: String,
        audience: CustomAudience,
        data: Value,
    ) -> Result<Arc<Published>, HubError> {
        let session = self.sessions.find(Some(principal.tenant), id).await?;
        validate_event_name(&name)?;
        if session.lock().info.status.is_terminal() {
            return Err(refuse(ErrorCode::SessionEnded, "the session has ended"));
        }
        let p = self
            .sessions
            .publish(
                &session,
                Event::Custom {
                    name,
                    audience,
                    data: Box::new(data),
                    from: principal.subject.clone(),
                },
                Origin {
                    sender: principal.subject.clone(),
                    ..Origin::default()
                },
            )
            .await?;
        Ok(p)
    }
}
