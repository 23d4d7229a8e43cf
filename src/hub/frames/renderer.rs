//! Renderer state and metrics: the frames only the session's current
//! renderer (the holder of the lease) may send, except its answers, which
//! are in `qa.rs`.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::hub::client::Client;
use crate::hub::core::Hub;
use crate::hub::error::{HubError, refuse};
use crate::hub::rows::webhook_rows;
use crate::hub::validate::{
    dedupe, lease, live, require, validate_context, validate_metrics, validate_patch,
    validate_short,
};
use crate::identity::Identity;
use crate::ids::{EventId, SessionId};
use crate::metrics as m;
use crate::protocol::frames::ClientMsgId;
use crate::protocol::model::{AlertType, Event, RendererMetrics, Role, Severity, StatePatch};
use crate::protocol::{ErrorCode, SessionStatus};
use crate::session::Session;
use crate::store::writer::Order;
use crate::store::{MetricRow, Row};

impl Hub {
    /// `state`: change slide, mode, speaking, topic (renderer).
    pub(crate) async fn state(
        &self,
        client: &Client,
        me: &Identity,
        session: SessionId,
        state: StatePatch,
        id: Option<ClientMsgId>,
    ) -> Result<(), HubError> {
        require(me, Role::Renderer, "change session state")?;
        validate_patch(&state)?;
        let s = client.joined(session)?;
        let conn = client.conn.clone();
        let mut origin = client.origin(id.as_deref());
        origin.fence = Some(lease(&s.lock(), &conn)?);
        let sender = origin.sender.clone();
        let p = self
            .publish_checked(&s, origin, |g| {
                lease(g, &conn)?;
                live(g)?;
                dedupe(g, &sender, id.as_deref())?;
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
        self.ack_now(client, id, &s, &p).await;
        Ok(())
    }

    /// `context`: replace the conversation context (renderer).
    pub(crate) async fn context(
        &self,
        client: &Client,
        me: &Identity,
        session: SessionId,
        context: Value,
        id: Option<ClientMsgId>,
    ) -> Result<(), HubError> {
        require(me, Role::Renderer, "set the conversation context")?;
        validate_context(&context)?;
        let s = client.joined(session)?;
        let conn = client.conn.clone();
        let mut origin = client.origin(id.as_deref());
        origin.fence = Some(lease(&s.lock(), &conn)?);
        let sender = origin.sender.clone();
        let p = self
            .publish_checked(&s, origin, |g| {
                lease(g, &conn)?;
                live(g)?;
                dedupe(g, &sender, id.as_deref())?;
                Ok(Event::Context {
                    context: context.clone(),
                })
            })
            .await?;
        s.lock().pending.state_dirty = true;
        self.ack_now(client, id, &s, &p).await;
        Ok(())
    }

    /// `metrics`: a performance report, conflated before operators see it.
    pub(crate) async fn metrics(
        &self,
        client: &Client,
        me: &Identity,
        session: SessionId,
        metrics: RendererMetrics,
    ) -> Result<(), HubError> {
        require(me, Role::Renderer, "report metrics")?;
        validate_metrics(&metrics)?;
        let s = client.joined(session)?;
        self.renderer_metrics(client, &s, metrics).await
    }

    /// `status`: a lifecycle change the renderer owns.
    pub(crate) async fn status(
        &self,
        client: &Client,
        me: &Identity,
        session: SessionId,
        status: SessionStatus,
        reason: Option<String>,
        id: Option<ClientMsgId>,
    ) -> Result<(), HubError> {
        require(me, Role::Renderer, "report lifecycle status")?;
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
            .transition_by(&s, status, reason, client.origin(id.as_deref()))
            .await?;
        self.ack_now(client, id, &s, &p).await;
        Ok(())
    }

    /// `command_ack`: the renderer did what a command or emergency stop asked.
    pub(crate) async fn command_ack(
        &self,
        client: &Client,
        me: &Identity,
        session: SessionId,
        command_id: EventId,
    ) -> Result<(), HubError> {
        require(me, Role::Renderer, "acknowledge commands")?;
        let s = client.joined(session)?;
        let conn = client.conn.clone();
        let mut origin = client.origin(None);
        origin.fence = Some(lease(&s.lock(), &conn)?);
        let mut pending = None;
        let p = self
            .publish_checked(&s, origin, |g| {
                lease(g, &conn)?;
                let c = g.commands.get(&command_id).ok_or_else(|| {
                    refuse(ErrorCode::UnknownReference, "no such command awaits an ack")
                })?;
                pending = Some((c.issued_us, c.emergency));
                Ok(Event::CommandAck {
                    command_id,
                    latency_ms: crate::clock::since_us(c.issued_us) / 1000,
                })
            })
            .await?;
        if let Some((issued_us, true)) = pending {
            self.persist(Order::Session(s.id), webhook_rows(&s, &p, true));
            m::emergency_stop_ack(std::time::Duration::from_micros(crate::clock::since_us(
                issued_us,
            )));
        }
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
            Order::Session(s.id),
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
}
