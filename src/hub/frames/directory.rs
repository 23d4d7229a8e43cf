//! The session directory: an operator's console lists the tenant's
//! sessions over its WebSocket, with the same token it watches them with,
//! so a console needs no API key and sees no more than its token allows.

use crate::hub::client::Client;
use crate::hub::core::Hub;
use crate::hub::error::HubError;
use crate::hub::validate::require;
use crate::identity::Identity;
use crate::protocol::ServerFrame;
use crate::protocol::frames::{ClientMsgId, SessionSummary};
use crate::protocol::model::{Role, SessionStatus};
use crate::store::{SessionQuery, SessionRecord};

/// Listings are capped so one frame stays small.
const LIST_MAX: u32 = 500;
const LIST_DEFAULT: u32 = 100;

impl Hub {
    /// `list_sessions`: newest first, answered with `session_list`.
    pub(crate) async fn list_sessions_frame(
        &self,
        client: &Client,
        me: &Identity,
        status: Option<SessionStatus>,
        include_ended: bool,
        limit: Option<u32>,
        id: Option<ClientMsgId>,
    ) -> Result<(), HubError> {
        require(me, Role::Operator, "list sessions")?;
        let limit = limit.unwrap_or(LIST_DEFAULT).clamp(1, LIST_MAX) as usize;
        let query = SessionQuery {
            status,
            before: None,
            limit,
        };
        let records = self.writer.store().list_sessions(me.tenant, &query).await?;
        let sessions = records
            .into_iter()
            .filter(|r| include_ended || !r.status.is_terminal())
            .filter(|r| me.may_join(r.id))
            .map(|r| self.summary(r))
            .collect();
        client.conn.send(&ServerFrame::SessionList { id, sessions });
        Ok(())
    }

    /// A directory line: the live replica's view when the session is
    /// loaded here, the stored record's otherwise.
    fn summary(&self, r: SessionRecord) -> SessionSummary {
        let created_at = r.created_at.timestamp_millis().max(0) as u64;
        match self.sessions.get(r.id) {
            Some(s) => {
                let g = s.lock();
                SessionSummary {
                    session: r.id,
                    name: g.info.name.clone(),
                    status: g.info.status,
                    created_at,
                    participant_count: g.counters.participant_count,
                    questions_received: g.counters.questions_received,
                    renderer_connected: g.renderer.connected,
                    controller: g.controller.as_ref().map(|c| c.operator_id.clone()),
                    is_speaking: g.state.is_speaking,
                    current_slide: g.state.current_slide,
                    open_alerts: g.open_alerts.len() as u32,
                }
            }
            None => SessionSummary {
                session: r.id,
                name: r.name,
                status: r.status,
                created_at,
                participant_count: 0,
                questions_received: r.counters.questions_received,
                renderer_connected: false,
                controller: None,
                is_speaking: r.state.is_speaking,
                current_slide: r.state.current_slide,
                open_alerts: 0,
            },
        }
    }
}
