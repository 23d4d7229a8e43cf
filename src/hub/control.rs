//! What the hub itself does to a session on behalf of nobody in
//! particular, or of an operator: raising alerts, and ending a takeover
//! (asked by the controlling operator, or because it expired or the
//! session ended).

use std::sync::Arc;

use serde_json::{Value, json};

use super::client::Client;
use super::core::Hub;
use super::error::{HubError, refuse};
use super::rows::{ts, webhook_rows};
use super::validate::dedupe;
use crate::ids::{EventId, now_ms};
use crate::metrics as m;
use crate::protocol::ErrorCode;
use crate::protocol::frames::ClientMsgId;
use crate::protocol::model::{Alert, AlertType, Event, ReleaseReason, Severity};
use crate::session::Session;
use crate::store::webhooks::DisabledEndpoint;
use crate::store::writer::Order;
use crate::store::{AlertRow, Row, SessionQuery};
use crate::stream::Origin;

impl Hub {
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
        let alert = Alert {
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
            .sessions
            .publish(
                s,
                Event::Alert {
                    alert: Box::new(alert.clone()),
                },
                Origin::hub(),
            )
            .await
        {
            Ok(p) => self.persist(
                Order::Session(s.id),
                std::iter::once(Row::Alert(AlertRow {
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
                }))
                .chain(webhook_rows(s, &p, false))
                .collect(),
            ),
            Err(e) => tracing::error!(session = %s.id, error = %e, "could not publish an alert"),
        }
    }

    /// A webhook endpoint was disabled: a `webhook_disabled` alert in each
    /// of the tenant's live sessions, where its operators watch.
    pub async fn webhook_disabled(&self, d: &DisabledEndpoint) {
        let query = SessionQuery {
            status: None,
            before: None,
            limit: 500,
        };
        let records = match self.writer.store().list_sessions(d.tenant, &query).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(tenant = %d.tenant, error = %e, "cannot list sessions to alert about a disabled webhook");
                return;
            }
        };
        let live: Vec<_> = records
            .into_iter()
            .filter(|r| !r.status.is_terminal())
            .collect();
        if live.is_empty() {
            tracing::warn!(tenant = %d.tenant, webhook = %d.id,
                "webhook endpoint disabled; the tenant has no live session to alert in");
        }
        for r in live {
            let Ok(s) = self.sessions.find(Some(d.tenant), r.id).await else {
                continue;
            };
            self.raise_alert(
                &s,
                AlertType::WebhookDisabled,
                Severity::Warning,
                "webhook endpoint disabled".into(),
                format!(
                    "webhook {} ({}) was disabled after {} consecutive failed attempts; \
                     fix it, re-enable it (PATCH is_active) and replay what it missed",
                    d.id, d.url, d.failure_count
                ),
                Some("webhooks".into()),
                json!({ "webhook_id": d.id, "url": d.url, "failure_count": d.failure_count }),
            )
            .await;
        }
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
        let resend = match &client {
            Some((_, Some(id))) => Some((origin.sender.clone(), id.clone())),
            _ => None,
        };
        let p = self
            .publish_checked(s, origin, |g| {
                if let Some((sender, id)) = &resend {
                    dedupe(g, sender, Some(id))?;
                }
                match &g.controller {
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
                }
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
            Some((c, id)) => self.finish_kept(c, s, id, &p, reservation, rows).await,
            None => {
                let mut rows = rows;
                rows.extend(webhook_rows(s, &p, false));
                reservation.submit(Order::Session(s.id), rows, None)
            }
        }
        Ok(())
    }
}
