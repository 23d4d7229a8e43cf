//! App-defined events: renderers and operators publish named events
//! (job progress, state-machine transitions...) into the session stream,
//! sequenced and filtered like every other event.

use serde_json::Value;

use crate::hub::client::Client;
use crate::hub::core::Hub;
use crate::hub::error::{HubError, refuse};
use crate::hub::validate::{dedupe, lease, live, validate_event_name};
use crate::identity::Identity;
use crate::ids::SessionId;
use crate::protocol::ErrorCode;
use crate::protocol::frames::ClientMsgId;
use crate::protocol::model::{CustomAudience, Event, Role};

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
                    data: data.clone(),
                    from: subject.clone(),
                })
            })
            .await?;
        self.ack_now(client, id, &s, &p).await;
        Ok(())
    }
}
