//! Joining and leaving: admitting a connection to a session in its
//! role (the renderer with a new fence, members into presence), resuming
//! it exactly from `(epoch, seq)` or with a discontinuity, and what a
//! leave or a closed connection leaves behind.

use std::sync::Arc;
use std::time::Instant;

use crate::connection::ConnHandle;
use crate::hub::client::Client;
use crate::hub::core::Hub;
use crate::hub::error::{HubError, not_found, refuse};
use crate::hub::jobs::job_session_owner;
use crate::hub::timers::Job;
use crate::hub::validate::{live, validate_short};
use crate::identity::Identity;
use crate::ids::SessionId;
use crate::metrics as m;
use crate::protocol::frames::ClientMsgId;
use crate::protocol::model::{Event, Member, Role, StreamPosition};
use crate::protocol::{CloseCode, ErrorCode, ServerFrame, SessionStatus};
use crate::session::{Session, View, member_key};
use crate::store::writer::Order;
use crate::store::{ParticipantRow, Row};
use crate::stream::Origin;

/// A `join` frame's fields.
#[derive(Debug)]
pub(crate) struct Join {
    pub session: SessionId,
    pub resume: Option<StreamPosition>,
    pub takeover: bool,
    pub name: Option<String>,
    pub compact: bool,
    pub echo: bool,
    pub id: Option<ClientMsgId>,
}

impl Hub {
    /// `join`: admits the connection in its role and sends it the session
    /// (snapshot, or the events it missed).
    pub(crate) async fn join(
        &self,
        client: &mut Client,
        me: &Identity,
        join: Join,
    ) -> Result<(), HubError> {
        let Join {
            session: session_id,
            resume,
            takeover,
            name,
            compact,
            echo,
            id,
        } = join;
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
        let s = self.sessions.find(Some(me.tenant), session_id).await?;
        if me.role != Role::Operator {
            let g = s.lock();
            // A job's own session is its owner's and the operators'.
            if let Some(owner) = job_session_owner(&g.info.config)
                && owner != Some(me.subject.as_str())
            {
                return Err(not_found());
            }
            live(&g)?;
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
                        // The same renderer coming back (its old socket
                        // half-open after a network failure, say) replaces
                        // its previous connection without waiting for the
                        // hub to notice that one is dead.
                        let itself = g.renderer.id.as_deref() == Some(subject.as_str());
                        if g.renderer.connected && !takeover && !itself {
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
            let view = View {
                compact: compact.then_some(s.alias),
                echo,
            };
            conn.send(&ServerFrame::Joined {
                session: session_id,
                role: me.role,
                fence,
                alias: view.compact,
                id,
            });
            let outcome = g.attach(session_id, &conn, me.role, resume, view);
            if resume.is_some() {
                m::resume(matches!(outcome, crate::session::Attached::Resumed { .. }));
            }
        }
        client.joined.push(s.clone());
        let status = s.lock().info.status;
        if me.role == Role::Participant {
            self.persist(
                Order::Session(session_id),
                vec![Row::ParticipantJoined(ParticipantRow {
                    session_id,
                    participant_id: me.subject.clone(),
                    participant_name: client.display_name.clone(),
                    joined_at: chrono::Utc::now(),
                    left_at: None,
                    questions_asked: 0,
                })],
            );
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

    /// `leave`: leave at once, with no presence grace.
    pub(crate) async fn leave(
        &self,
        client: &mut Client,
        me: &Identity,
        session: SessionId,
        id: Option<ClientMsgId>,
    ) -> Result<(), HubError> {
        let s = client.joined(session)?;
        client.joined.retain(|j| j.id != session);
        self.leave_session(&client.conn, me, &s, true).await;
        // Whatever was on its way to the connection goes first.
        s.settled().await;
        client.conn.send(&ServerFrame::Left { session, id });
        Ok(())
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
                            Job::PresenceLeave {
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
                    Job::RendererGrace { session: s.id },
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
}
