//! What the hub does later or periodically: the timer jobs (each a check
//! that acts only if its condition still holds), and the ticker's work:
//! conflated metrics and counters, state persistence, checkpoints,
//! counting out the members of dead nodes, heartbeats and idle sweeps,
//! eviction of ended sessions.

use std::sync::Weak;
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use super::core::{Hub, HubInner};
use super::rows::{progress_row, state_row};
use super::timers::Job;
use crate::ids::now_ms;
use crate::protocol::codec::ping_frame;
use crate::protocol::model::{AlertType, ReleaseReason, Role, Severity};
use crate::protocol::{CloseCode, Event, SessionStatus};
use crate::session::member_key;
use crate::store::writer::Order;
use crate::stream::Origin;

impl Hub {
    /// Runs a due timer job.
    pub(super) async fn run_job(&self, job: Job) {
        match job {
            Job::PresenceLeave { session, key } => {
                let Some(s) = self.sessions.get(session) else {
                    return;
                };
                let grace = self.settings.session.presence_grace();
                let gone = {
                    let mut g = s.lock();
                    match g.local_members.get(&key) {
                        Some(e)
                            if e.conns == 0
                                && e.leaving_since.is_some_and(|t| t.elapsed() >= grace) =>
                        {
                            g.local_members.remove(&key);
                            true
                        }
                        _ => false,
                    }
                };
                if gone {
                    self.presence_leave(&s, &key).await;
                }
            }
            Job::RendererGrace { session } => {
                let Some(s) = self.sessions.get(session) else {
                    return;
                };
                let lost = {
                    let g = s.lock();
                    matches!(
                        g.info.status,
                        SessionStatus::Starting | SessionStatus::Active | SessionStatus::Paused
                    ) && !g.renderer.connected
                        && !g
                            .open_alerts
                            .iter()
                            .any(|a| a.alert_type == AlertType::RendererHeartbeatLost)
                };
                if lost {
                    let grace = self.settings.session.renderer_grace_ms;
                    self.raise_alert(
                        &s,
                        AlertType::RendererHeartbeatLost,
                        Severity::Critical,
                        "renderer heartbeat lost".into(),
                        format!(
                            "no renderer has been connected to this live session for {grace} ms"
                        ),
                        Some("renderer".into()),
                        json!({ "grace_ms": grace }),
                    )
                    .await;
                }
            }
            Job::EmergencyAckDeadline {
                session,
                intervention_id,
            } => {
                let Some(s) = self.sessions.get(session) else {
                    return;
                };
                let pending = s.lock().commands.contains_key(&intervention_id);
                if pending {
                    let timeout = self.settings.session.emergency_ack_timeout_ms;
                    self.raise_alert(
                        &s,
                        AlertType::EmergencyStopUnacknowledged,
                        Severity::Critical,
                        "emergency stop not acknowledged".into(),
                        format!("the renderer did not acknowledge emergency stop {intervention_id} within {timeout} ms"),
                        Some("renderer".into()),
                        json!({ "intervention_id": intervention_id, "timeout_ms": timeout }),
                    )
                    .await;
                }
            }
            Job::TakeoverGrace { session, operator } => {
                let Some(s) = self.sessions.get(session) else {
                    return;
                };
                let expired = {
                    let g = s.lock();
                    g.controller
                        .as_ref()
                        .is_some_and(|c| c.operator_id == operator)
                        && !g
                            .members
                            .contains_key(&member_key(Role::Operator, &operator))
                };
                if expired
                    && let Err(e) = self
                        .release(&s, &operator, ReleaseReason::Expired, None)
                        .await
                {
                    tracing::info!(%session, error = %e, "takeover expiry raced");
                }
            }
            Job::AuthDeadline { conn } => {
                let late = self.connection(conn);
                if let Some(c) = late
                    && c.identity().is_none()
                {
                    c.outbox.close(CloseCode::AuthTimeout);
                }
            }
            Job::TokenExpiry { conn } => {
                let Some(c) = self.connection(conn) else {
                    return;
                };
                let Some(exp_ms) = c
                    .identity()
                    .and_then(|i| i.expires_at)
                    .map(|exp| exp.saturating_mul(1000))
                else {
                    return;
                };
                let now = now_ms();
                if exp_ms <= now {
                    c.outbox.close(CloseCode::TokenExpired);
                } else {
                    // The timer runs on the monotonic clock, expiry on the
                    // wall clock; if they disagree, check again later.
                    self.timers.schedule(
                        Duration::from_millis(exp_ms - now),
                        Job::TokenExpiry { conn },
                    );
                }
            }
            Job::StopTimeout { session } => {
                let Some(s) = self.sessions.get(session) else {
                    return;
                };
                if s.lock().info.status == SessionStatus::Stopping {
                    let _ = self
                        .transition(
                            &s,
                            SessionStatus::Stopped,
                            Some("stop timeout".into()),
                            None,
                        )
                        .await;
                }
            }
        }
    }
}

/// The ticker's period; conflation intervals are multiples of it.
const TICK: Duration = Duration::from_millis(50);

/// Starts the periodic work: conflated metrics and counters, state
/// persistence, heartbeats and idle sweeps, eviction of ended sessions.
pub(super) fn start_ticker(hub: Weak<HubInner>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_heartbeat = Instant::now();
        let mut last_eviction = Instant::now();
        let mut last_checkpoint = Instant::now();
        let mut last_reap = Instant::now();
        loop {
            tick.tick().await;
            let Some(inner) = hub.upgrade() else { return };
            let hub = Hub::from_inner(inner);
            hub.flush_pending().await;
            if hub.broker.wants_checkpoints() {
                let redis = &hub.settings.redis;
                if last_checkpoint.elapsed() >= Duration::from_millis(redis.checkpoint_interval_ms)
                {
                    last_checkpoint = Instant::now();
                    hub.sessions.save_checkpoints().await;
                }
                if last_reap.elapsed() >= Duration::from_secs(redis.presence_ttl_s / 3) {
                    last_reap = Instant::now();
                    hub.reap_dead_nodes().await;
                }
            }
            if last_heartbeat.elapsed() >= hub.settings.websocket.heartbeat_interval() {
                last_heartbeat = Instant::now();
                hub.heartbeat();
            }
            if last_eviction.elapsed() >= Duration::from_secs(5) {
                last_eviction = Instant::now();
                hub.evict_ended().await;
                hub.limiter.sweep();
            }
        }
    });
}

impl Hub {
    /// Publishes conflated metrics and counters, and persists state, for
    /// every session whose interval has passed.
    async fn flush_pending(&self) {
        let cfg = &self.settings.session;
        for s in self.sessions.loaded() {
            let (metrics, counters, rows) = {
                let mut g = s.lock();
                let due = |at: Option<std::time::Instant>, every: Duration| {
                    at.is_none_or(|t| t.elapsed() >= every)
                };
                let metrics = if g.pending.metrics.is_some()
                    && due(g.pending.metrics_published_at, cfg.metrics_interval())
                {
                    g.pending.metrics_published_at = Some(std::time::Instant::now());
                    g.pending.metrics.take()
                } else {
                    None
                };
                let counters = if g.pending.counters_dirty
                    && due(g.pending.counters_published_at, cfg.counters_interval())
                {
                    g.pending.counters_dirty = false;
                    g.pending.counters_published_at = Some(std::time::Instant::now());
                    g.pending.state_dirty = true;
                    Some(g.counters)
                } else {
                    None
                };
                let rows = if g.pending.state_dirty
                    && due(g.pending.state_persisted_at, cfg.state_persist_interval())
                {
                    g.pending.state_dirty = false;
                    g.pending.state_persisted_at = Some(std::time::Instant::now());
                    Some((state_row(s.id, &g), progress_row(s.id, &g)))
                } else {
                    None
                };
                (metrics, counters, rows)
            };
            if let Some(metrics) = metrics {
                let _ = self
                    .sessions
                    .publish(
                        &s,
                        Event::Metrics {
                            metrics: Box::new(metrics),
                        },
                        Origin::hub(),
                    )
                    .await;
            }
            if let Some(counters) = counters {
                let _ = self
                    .sessions
                    .publish(&s, Event::Counters { counters }, Origin::hub())
                    .await;
            }
            if let Some((state, progress)) = rows {
                self.persist_droppable(Order::Session(s.id), vec![state]);
                self.persist(Order::Session(s.id), vec![progress]);
            }
        }
    }

    /// Publishes the `leave` of members whose node died.
    async fn reap_dead_nodes(&self) {
        let gone = match self.broker.reap().await {
            Ok(gone) => gone,
            Err(e) => {
                tracing::debug!(error = %e, "presence reap failed");
                return;
            }
        };
        for (session, key) in gone {
            tracing::info!(%session, member = %key, "member's node is gone; counting it out");
            match self.sessions.find(None, session).await {
                Ok(s) => self.publish_leave(&s, &key).await,
                Err(e) => {
                    tracing::debug!(%session, error = %e, "cannot load session to count a member out")
                }
            }
        }
    }

    /// Pings every connection; closes the silent, the expired and the
    /// unauthenticated.
    fn heartbeat(&self) {
        let ws = &self.settings.websocket;
        let now = now_ms();
        let idle_ms = ws.idle_timeout_ms;
        let ping = ping_frame();
        for conn in self.connections() {
            let close = match conn.identity() {
                None if now.saturating_sub(conn.opened_ms) >= ws.auth_timeout_ms => {
                    Some(CloseCode::AuthTimeout)
                }
                Some(id)
                    if id
                        .expires_at
                        .is_some_and(|exp| exp.saturating_mul(1000) <= now) =>
                {
                    Some(CloseCode::TokenExpired)
                }
                _ if now.saturating_sub(conn.last_seen_ms()) >= idle_ms => {
                    Some(CloseCode::IdleTimeout)
                }
                _ => None,
            };
            match close {
                Some(code) => {
                    conn.outbox.close(code);
                }
                None => {
                    conn.outbox.trim_if_idle();
                    conn.outbox.push_urgent(ping.clone());
                }
            }
        }
    }

    /// Drops ended sessions nobody watches from memory (the store keeps
    /// them).
    async fn evict_ended(&self) {
        let ttl = self.settings.session.ended_ttl();
        let mut evict = Vec::new();
        for s in self.sessions.loaded() {
            let g = s.lock();
            let ended_long_ago = g
                .info
                .ended_at
                .is_some_and(|t| (chrono::Utc::now() - t).to_std().unwrap_or_default() >= ttl);
            if g.info.status.is_terminal() && ended_long_ago && g.subs.is_empty() {
                evict.push(s.id);
            }
        }
        for id in evict {
            self.sessions.evict(id).await;
        }
    }
}
