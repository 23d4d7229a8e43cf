//! App-defined events: renderers and operators publish named events
//! (job progress, state-machine transitions...) into the session stream,
//! sequenced and filtered like every other event.
//!
//! A publisher may stream them without waiting for answers. `publish`
//! frames that arrive together for one session are sequenced as one run
//! ([`Hub::publish_run`]): one look at the replica and one broker step
//! for all of them, so a stream of events is not held to one Redis round
//! trip per event.

use serde_json::Value;

use crate::hub::client::Client;
use crate::hub::core::Hub;
use crate::hub::error::{HubError, refuse};
use crate::hub::validate::{dedupe, lease, live, validate_event_name, validate_id};
use crate::identity::Identity;
use crate::ids::SessionId;
use crate::protocol::frames::ClientMsgId;
use crate::protocol::model::{CustomAudience, Event, Role};
use crate::protocol::{ClientFrame, ErrorCode};
use crate::stream::Origin;

/// A `publish` frame waiting in a run.
#[derive(Debug)]
pub(crate) struct Queued {
    pub name: String,
    pub audience: CustomAudience,
    pub data: Value,
    pub id: Option<ClientMsgId>,
}

impl Queued {
    /// Whether the frame may be sequenced in a run. Frames the hub would
    /// refuse on their own (a participant's, a bad name or id) are
    /// handled alone, so each gets its own answer.
    pub(crate) fn may_join_a_run(&self, me: &Identity) -> bool {
        me.role != Role::Participant
            && validate_event_name(&self.name).is_ok()
            && self.id.as_deref().is_none_or(|id| validate_id(id).is_ok())
    }

    /// The frame again, to be handled on its own.
    pub(crate) fn into_frame(self, session: SessionId) -> ClientFrame {
        ClientFrame::Publish {
            session,
            name: self.name,
            audience: self.audience,
            data: self.data,
            id: self.id,
        }
    }
}

/// `publish` frames of one connection and session, in the order sent,
/// waiting to be sequenced together.
#[derive(Debug, Default)]
pub(crate) struct Run {
    session: Option<SessionId>,
    frames: Vec<Queued>,
}

impl Run {
    /// Most frames one run holds: bounds the script's size and the time
    /// one connection holds the session's sequencing.
    const MAX: usize = 256;

    /// Whether `frame` fits in this run; a frame that does not starts the
    /// next one.
    pub(crate) fn fits(&self, session: SessionId, frame: &Queued) -> bool {
        self.frames.len() < Self::MAX
            && self.session.is_none_or(|s| s == session)
            // A repeated id answers as a duplicate of the first, which
            // needs the first sequenced.
            && frame
                .id
                .as_deref()
                .is_none_or(|id| !self.frames.iter().any(|f| f.id.as_deref() == Some(id)))
    }

    pub(crate) fn push(&mut self, session: SessionId, frame: Queued) {
        self.session = Some(session);
        self.frames.push(frame);
    }

    /// The run's session and frames, leaving it empty.
    pub(crate) fn take(&mut self) -> Option<(SessionId, Vec<Queued>)> {
        let session = self.session.take()?;
        Some((session, std::mem::take(&mut self.frames)))
    }
}

impl Hub {
    /// `publish`: an app-defined event from a renderer or an operator.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn publish(
        &self,
        client: &Client,
        me: &Identity,
        session: SessionId,
        name: String,
        audience: CustomAudience,
        data: Value,
        id: Option<ClientMsgId>,
    ) -> Result<(), HubError> {
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
                    data: Box::new(data.clone()),
                    from: subject.clone(),
                })
            })
            .await?;
        self.ack_now(client, id, &s, &p).await;
        Ok(())
    }
}

impl Hub {
    /// Sequences a run of `publish` frames (each of which
    /// [`Queued::may_join_a_run`]) as one: each is checked against the
    /// replica as `publish` checks it, and those that pass are published
    /// back to back in one broker step. Returns each frame's outcome, in
    /// order. A run of one is published as `publish` does.
    ///
    /// When the run as a whole is refused (not joined, a replaced
    /// renderer, an ended session, a stream too busy to catch), nothing
    /// was published and each frame is handled alone, so that each gets
    /// the answer it would have had. A broker error is every frame's
    /// answer instead: the run may have been sequenced or not, and the
    /// publisher's resends decide, as for a single frame.
    pub(crate) async fn publish_run(
        &self,
        client: &Client,
        me: &Identity,
        session: SessionId,
        frames: Vec<Queued>,
    ) -> Vec<Result<(), HubError>> {
        let s = match client.joined(session) {
            Ok(s) if frames.len() > 1 => s,
            // A run of one is a frame on its own.
            _ => return self.publish_each(client, me, session, frames).await,
        };
        let conn = client.conn.clone();
        let renderer = me.role == Role::Renderer;
        let fence = match renderer.then(|| lease(&s.lock(), &conn)) {
            None => None,
            Some(Ok(fence)) => Some(fence),
            Some(Err(_)) => return self.publish_each(client, me, session, frames).await,
        };
        let origins: Vec<Origin> = frames
            .iter()
            .map(|f| Origin {
                fence,
                ..client.origin(f.id.as_deref())
            })
            .collect();
        let subject = &me.subject;
        // Each frame's refusal from the last look at the replica: a
        // resend of an id already sequenced.
        let mut refused: Vec<Option<HubError>> = Vec::new();
        let published = self
            .sessions
            .publish_checked_many(&s, |g| {
                live(g)?;
                if renderer {
                    lease(g, &conn)?;
                }
                refused = frames
                    .iter()
                    .map(|f| dedupe(g, subject, f.id.as_deref()).err())
                    .collect();
                Ok::<_, HubError>(
                    frames
                        .iter()
                        .zip(&origins)
                        .zip(&refused)
                        .filter(|(_, r)| r.is_none())
                        .map(|((f, origin), _)| {
                            let event = Event::Custom {
                                name: f.name.clone(),
                                audience: f.audience,
                                data: Box::new(f.data.clone()),
                                from: subject.clone(),
                            };
                            (event, origin.clone())
                        })
                        .collect(),
                )
            })
            .await;
        let published = match published {
            Ok(p) => p,
            Err(HubError::Broker(e)) => {
                return frames
                    .iter()
                    .map(|_| Err(HubError::Broker(e.clone())))
                    .collect();
            }
            Err(_) => return self.publish_each(client, me, session, frames).await,
        };
        let mut published = published.into_iter();
        let mut outcomes = Vec::with_capacity(frames.len());
        for (f, refusal) in frames.into_iter().zip(refused) {
            if let Some(e) = refusal {
                outcomes.push(Err(e));
                continue;
            }
            match published.next() {
                Some(p) => {
                    self.ack_now(client, f.id, &s, &p).await;
                    outcomes.push(Ok(()));
                }
                None => outcomes.push(Err(HubError::Broker(
                    crate::broker::BrokerError::Unavailable("not published".into()),
                ))),
            }
        }
        outcomes
    }

    /// Each frame of a run handled on its own, in order.
    async fn publish_each(
        &self,
        client: &Client,
        me: &Identity,
        session: SessionId,
        frames: Vec<Queued>,
    ) -> Vec<Result<(), HubError>> {
        let mut outcomes = Vec::with_capacity(frames.len());
        for f in frames {
            let outcome = self
                .publish(client, me, session, f.name, f.audience, f.data, f.id)
                .await;
            outcomes.push(outcome);
        }
        outcomes
    }
}
