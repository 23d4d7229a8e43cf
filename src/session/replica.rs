//! One session's replica on this node: the state folded from its event
//! log, its recent history, and the local connections watching it.
//!
//! Invariants, all kept under the one session lock:
//! * `seq` is the last applied event; events are applied in `seq` order;
//! * `history` holds every applied event with a seq in
//!   `(history[0].seq - 1, seq]`, so a resume inside it is exact;
//! * fan-out, snapshots and resume replays are pushed to outboxes while the
//!   lock is held (`fanout.rs`), so each connection sees one gap-free,
//!   duplicate-free, ordered stream of its view.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use chrono::{DateTime, Utc};
use indexmap::IndexMap;
use parking_lot::{Mutex, MutexGuard};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Notify;
use uuid::Uuid;

use super::deliveries::Delivery;
use crate::connection::ConnHandle;
use crate::ids::{ConnId, Epoch, EventId, JobId, Seq, SessionId, TenantId};
use crate::protocol::frames::DiscontinuityReason;
use crate::protocol::job::Job;
use crate::protocol::model::{
    Alert, Command, Counters, CustomAudience, Event, Member, PresenceChange, RendererMetrics,
    ResponseBody, Role, SessionState, SessionStatus, StreamPosition,
};
use crate::protocol::{CloseCode, ServerFrame};
use crate::recent::RecentMap;
use crate::store::SessionRecord;
use crate::stream::Published;

/// Limits that shape a replica's memory; from `[session]` settings.
#[derive(Clone, Copy, Debug)]
pub struct ReplicaLimits {
    pub history_size: usize,
    pub dedupe_window: usize,
    pub recent_refs_max: usize,
    pub held_responses_max: usize,
    pub snapshot_members_max: usize,
    /// A resume replay larger than this is answered with a snapshot
    /// instead, so a replay can never overflow the client's outbox.
    pub replay_max_bytes: usize,
}

/// Descriptive fields of a session (seed 000 `sessions`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Info {
    pub name: Option<String>,
    pub description: Option<String>,
    /// Checkpoints written before sessions had one read without it.
    #[serde(default)]
    pub external_id: Option<String>,
    pub avatar_id: Option<Uuid>,
    pub config: Value,
    pub status: SessionStatus,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

/// The operator holding a takeover.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Controller {
    pub operator_id: String,
    pub intervention_id: EventId,
    pub since_ms: u64,
}

/// Who renders the session, as the event log says.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RendererSlot {
    pub connected: bool,
    pub fence: u64,
    pub id: Option<String>,
}

/// A question remembered so responses can reference it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct QuestionRef {
    pub text: String,
    pub participant_id: String,
    #[serde(default)]
    pub participant_name: Option<String>,
    /// When it was asked (the event's `ts`, Unix ms).
    #[serde(default)]
    pub asked_at: u64,
    /// A response (published or held) names it.
    #[serde(default)]
    pub answered: bool,
}

/// A job as the stream last reported it, and who sees it.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct ReportedJob {
    pub job: Job,
    pub audience: CustomAudience,
}

/// A command (or emergency stop) awaiting the renderer's acknowledgement.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PendingCommand {
    /// When this node received it, on the [`crate::clock`] timeline.
    /// Meaningless on another node, so never shipped in a snapshot.
    #[serde(skip)]
    pub issued_us: u64,
    pub emergency: bool,
    #[serde(default)]
    pub operator_id: String,
    /// What to do (absent for an emergency stop).
    #[serde(default)]
    pub command: Option<Command>,
    /// Why (emergency stops).
    #[serde(default)]
    pub reason: Option<String>,
    /// When it was sequenced (the event's `ts`, Unix ms).
    #[serde(default)]
    pub issued_at: u64,
}

/// What a dedupe hit answers with.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Seen {
    pub seq: Seq,
    pub ref_id: Option<EventId>,
}

/// Presence of one member on this node.
#[derive(Clone, Copy, Debug, Default)]
pub struct LocalMember {
    pub conns: u32,
    /// Set while the member has no connection here and the grace runs.
    pub leaving_since: Option<Instant>,
}

/// Work this node owes the session, done by the hub's ticker.
#[derive(Clone, Debug, Default)]
pub struct Pending {
    /// Latest renderer metrics not yet published.
    pub metrics: Option<RendererMetrics>,
    pub metrics_published_at: Option<Instant>,
    /// Counters changed by events this node published.
    pub counters_dirty: bool,
    pub counters_published_at: Option<Instant>,
    /// State changed by events this node published; not yet persisted.
    pub state_dirty: bool,
    pub state_persisted_at: Option<Instant>,
    /// Metric thresholds currently crossed (alert raised, not yet cleared).
    pub latched: Vec<&'static str>,
    /// This node published since its last checkpoint (cluster mode).
    pub checkpoint_due: bool,
}

/// The local connections watching the session, per role.
#[derive(Debug, Default)]
pub struct Subscribers {
    pub renderers: IndexMap<ConnId, Sub>,
    pub operators: IndexMap<ConnId, Sub>,
    pub participants: IndexMap<ConnId, Sub>,
}

/// A local connection watching the session.
#[derive(Debug)]
pub struct Sub {
    pub conn: Arc<ConnHandle>,
    /// The last delivery job queued when it joined: its snapshot or replay
    /// already covers that job and every one before it.
    pub after: u64,
    pub view: View,
}

/// How one connection asked to receive a session's events.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct View {
    /// Compact event frames naming the session by this alias.
    pub compact: Option<u32>,
    /// Also the events this connection published itself.
    pub echo: bool,
}

impl Default for View {
    fn default() -> Self {
        View {
            compact: None,
            echo: true,
        }
    }
}

impl View {
    /// Whether `p` goes to `conn`: not when `conn` published it itself and
    /// asked not to hear its own events again.
    pub fn wants(&self, p: &Published, conn: &ConnHandle) -> bool {
        self.echo
            || !conn
                .identity()
                .is_some_and(|me| p.origin.role == Some(me.role) && p.origin.sender == me.subject)
    }
}

impl Sub {
    /// Whether job `n` is for this subscriber: it was queued after the
    /// subscriber's snapshot or replay.
    pub(super) fn wants(&self, n: u64) -> bool {
        n > self.after
    }
}

impl Subscribers {
    pub(super) fn of(&mut self, role: Role) -> &mut IndexMap<ConnId, Sub> {
        match role {
            Role::Renderer => &mut self.renderers,
            Role::Operator => &mut self.operators,
            Role::Participant => &mut self.participants,
        }
    }

    pub fn len(&self) -> usize {
        self.renderers.len() + self.operators.len() + self.participants.len()
    }

    /// Each role's connections, renderers first: whatever an operator just
    /// did, the renderer is the one that has to act on it.
    pub(super) fn by_role(&self) -> [(Role, &IndexMap<ConnId, Sub>); 3] {
        [
            (Role::Renderer, &self.renderers),
            (Role::Operator, &self.operators),
            (Role::Participant, &self.participants),
        ]
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug)]
pub struct Replica {
    pub epoch: Epoch,
    pub seq: Seq,
    pub info: Info,
    pub state: SessionState,
    pub context: Value,
    pub counters: Counters,
    pub members: IndexMap<String, Member>,
    pub controller: Option<Controller>,
    pub renderer: RendererSlot,
    pub metrics: Option<RendererMetrics>,
    pub open_alerts: VecDeque<Alert>,
    pub held: VecDeque<ResponseBody>,
    pub questions: RecentMap<EventId, QuestionRef>,
    pub responses: RecentMap<EventId, ()>,
    pub commands: HashMap<EventId, PendingCommand>,
    pub dedupe: RecentMap<(String, String), Seen>,
    pub questions_asked: HashMap<String, i32>,
    /// Jobs reporting into this stream, as their latest `job` event left
    /// them; at most `recent_refs_max`, the oldest change evicted first.
    pub reported_jobs: IndexMap<JobId, ReportedJob>,
    pub history: VecDeque<Arc<Published>>,

    // ---- local to this node ----
    pub subs: Subscribers,
    /// The renderer connection on this node holding the current fence.
    pub local_renderer: Option<(ConnId, u64)>,
    pub local_members: HashMap<String, LocalMember>,
    pub pending: Pending,
    pub(super) limits: ReplicaLimits,
    /// Deliveries queued for the session's delivery task, numbered.
    pub(super) deliveries: Vec<(u64, Delivery)>,
    /// The number of the last job queued.
    pub(super) last_delivery: u64,
    /// A delivery task is running (or has been asked to start).
    pub(super) delivering: bool,
}

#[derive(Debug)]
pub struct Session {
    pub id: SessionId,
    pub tenant: TenantId,
    pub(super) inner: Mutex<Replica>,
    /// The number of the last delivery job handed to its connections.
    pub(super) delivered: AtomicU64,
    /// Woken whenever `delivered` moves.
    pub(super) progress: Notify,
    /// The number compact event frames name the session by on this node.
    pub alias: u32,
}

/// Session aliases for compact event frames: unique on this node, so a
/// connection following many sessions can tell their events apart.
static NEXT_ALIAS: AtomicU32 = AtomicU32::new(1);

/// How a join was answered.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Attached {
    Snapshot,
    Resumed { replayed: usize },
    Discontinuity(DiscontinuityReason),
}

impl Session {
    /// A replica of a session at stream position `position`, starting from
    /// a stored record (creation, or reload after a restart).
    pub fn new(record: &SessionRecord, position: StreamPosition, limits: ReplicaLimits) -> Session {
        let inner = Replica {
            epoch: position.epoch,
            seq: position.seq,
            info: Info {
                name: record.name.clone(),
                description: record.description.clone(),
                external_id: record.external_id.clone(),
                avatar_id: record.avatar_id,
                config: record.config.clone(),
                status: record.status,
                created_at: record.created_at,
                started_at: record.started_at,
                ended_at: record.ended_at,
                last_error: record.last_error.clone(),
            },
            state: SessionState {
                // Nobody is connected to a freshly loaded replica.
                operator_connected: false,
                ..record.state.clone()
            },
            context: record.context.clone(),
            counters: Counters {
                participant_count: 0,
                ..record.counters
            },
            members: IndexMap::new(),
            controller: None,
            renderer: RendererSlot::default(),
            metrics: None,
            open_alerts: VecDeque::new(),
            held: VecDeque::new(),
            questions: RecentMap::new(limits.recent_refs_max),
            responses: RecentMap::new(limits.recent_refs_max),
            commands: HashMap::new(),
            dedupe: RecentMap::new(limits.dedupe_window),
            questions_asked: HashMap::new(),
            reported_jobs: IndexMap::new(),
            history: VecDeque::new(),
            subs: Subscribers::default(),
            local_renderer: None,
            local_members: HashMap::new(),
            pending: Pending::default(),
            limits,
            deliveries: Vec::new(),
            last_delivery: 0,
            delivering: false,
        };
        Session::from_replica(record.id, record.tenant, inner)
    }

    /// A session around a replica, with nothing queued for delivery.
    pub(super) fn from_replica(id: SessionId, tenant: TenantId, replica: Replica) -> Session {
        Session {
            id,
            tenant,
            inner: Mutex::new(replica),
            delivered: AtomicU64::new(0),
            progress: Notify::new(),
            alias: NEXT_ALIAS.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Waits until everything queued for delivery so far has been handed
    /// to the connections: an `ack` sent after this follows the event its
    /// frame produced, as the protocol promises.
    pub async fn settled(&self) {
        let target = self.lock().last_delivery;
        loop {
            let notified = self.progress.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.delivered.load(Ordering::Acquire) >= target {
                return;
            }
            notified.await;
        }
    }

    /// Locks the replica. Never hold the guard across an `.await`.
    pub fn lock(&self) -> MutexGuard<'_, Replica> {
        self.inner.lock()
    }
}

/// Key of a member in presence: the same subject may be both an operator
/// and a participant.
pub fn member_key(role: Role, subject: &str) -> String {
    format!("{}:{subject}", role.as_str())
}

/// The hub's id for what an event created, quoted in acks.
pub fn ref_id(event: &Event) -> Option<EventId> {
    match event {
        Event::Question { question_id, .. } => Some(*question_id),
        Event::Response(b) | Event::ResponseHeld(b) => Some(b.response_id),
        Event::Takeover {
            intervention_id, ..
        }
        | Event::Release {
            intervention_id, ..
        }
        | Event::Suggestion {
            intervention_id, ..
        }
        | Event::Correction {
            intervention_id, ..
        }
        | Event::EmergencyStop {
            intervention_id, ..
        } => Some(*intervention_id),
        Event::Command { command_id, .. } | Event::CommandAck { command_id, .. } => {
            Some(*command_id)
        }
        Event::Alert { alert } => Some(alert.alert_id),
        Event::AlertAck { alert_id, .. } => Some(*alert_id),
        _ => None,
    }
}

/// What applying one publication did, for the hub's local follow-up.
#[derive(Debug, Default)]
pub struct Applied {
    /// The event was folded and queued for delivery (false: duplicate or
    /// fenced).
    pub delivered: bool,
    /// A delivery task must be started for the session.
    pub start_delivery: bool,
}

impl Replica {
    pub fn position(&self) -> StreamPosition {
        StreamPosition {
            epoch: self.epoch,
            seq: self.seq,
        }
    }

    pub fn participant_count(&self) -> u32 {
        self.counters.participant_count
    }

    /// Folds one publication into the replica and fans it out to local
    /// subscribers. Called in seq order by the hub's broker handler.
    pub fn apply(&mut self, p: &Arc<Published>) -> Applied {
        let mut out = Applied::default();
        if p.seq <= self.seq {
            return out; // already applied (a refill overlapping the live stream)
        }
        if p.seq != self.seq + 1 {
            // The broker promises gap-free delivery; if that ever breaks,
            // make every older position unresumable rather than replay a
            // history with a hole in it.
            tracing::error!(session = %p.session, have = self.seq, got = p.seq, "gap in session stream; dropping history");
            self.history.clear();
        }
        self.seq = p.seq;
        if let (Some(Role::Renderer), Some(fence)) = (p.origin.role, p.origin.fence)
            && fence < self.renderer.fence
        {
            // A replaced renderer's frame that was sequenced after its
            // successor's join: every node drops it the same way.
            return out;
        }
        let mut close = Vec::new();
        self.fold(p, &mut close);
        if let Some(cid) = &p.origin.client_id {
            self.dedupe.insert(
                (p.origin.sender.clone(), cid.clone()),
                Seen {
                    seq: p.seq,
                    ref_id: ref_id(&p.event),
                },
            );
        }
        if self.history.len() >= self.limits.history_size {
            self.history.pop_front();
        }
        self.history.push_back(p.clone());
        self.urgent(p);
        out.start_delivery |= self.queue(Delivery::Event(p.clone()));
        if !close.is_empty() {
            out.start_delivery |= self.answer_before_closing(p);
        }
        for (conn, code) in close {
            out.start_delivery |= self.queue(Delivery::Close(conn, code));
        }
        out.delivered = true;
        out
    }

    /// Queues a delivery. True when no delivery task runs: the caller
    /// starts one (`delivery::run`), it has the session's `Arc`.
    pub(super) fn queue(&mut self, job: Delivery) -> bool {
        self.last_delivery += 1;
        self.deliveries.push((self.last_delivery, job));
        !std::mem::replace(&mut self.delivering, true)
    }

    /// The renderer's own frame (a `status` with an `id`) ended the session:
    /// its `ack` goes out before the connection is closed, as every frame
    /// with an `id` is answered. (The handler's own `ack` would find the
    /// connection already closing.)
    fn answer_before_closing(&mut self, p: &Published) -> bool {
        let (Some(Role::Renderer), Some(id), Some((conn, _))) =
            (p.origin.role, &p.origin.client_id, self.local_renderer)
        else {
            return false;
        };
        let Some(sub) = self.subs.renderers.get(&conn) else {
            return false;
        };
        let conn = sub.conn.clone();
        let ack = conn.codec.frame(&ServerFrame::Ack {
            id: id.clone(),
            session: Some(p.session),
            seq: Some(p.seq),
            ref_id: None,
            duplicate: false,
        });
        self.queue(Delivery::Send(conn, ack))
    }

    fn fold(&mut self, p: &Published, close: &mut Vec<(Arc<ConnHandle>, CloseCode)>) {
        let now = || DateTime::<Utc>::from_timestamp_millis(p.ts as i64).unwrap_or_else(Utc::now);
        match &p.event {
            Event::Created { .. } | Event::Counters { .. } | Event::Custom { .. } => {}
            Event::Lifecycle { status, .. } => {
                self.info.status = *status;
                if *status == SessionStatus::Active && self.info.started_at.is_none() {
                    self.info.started_at = Some(now());
                }
                if status.is_terminal() {
                    self.info.ended_at = Some(now());
                    self.close_ended(close);
                }
                if *status == SessionStatus::Failed
                    && let Event::Lifecycle {
                        reason: Some(r), ..
                    } = &p.event
                {
                    self.info.last_error = Some(r.clone());
                }
            }
            Event::State { state } => self.state = state.clone(),
            Event::Context { context } => self.context = context.clone(),
            Event::Presence {
                change,
                member,
                participant_count,
            } => {
                let key = member_key(member.role, &member.id);
                match change {
                    PresenceChange::Join => {
                        self.members.insert(key, member.clone());
                    }
                    PresenceChange::Leave => {
                        self.members.shift_remove(&key);
                    }
                }
                // The publisher computed the count against this very
                // position (a conditional publish), so it is exact.
                self.counters.participant_count = *participant_count;
            }
            Event::Renderer {
                connected,
                fence,
                renderer_id,
            } => {
                self.renderer = RendererSlot {
                    connected: *connected,
                    fence: *fence,
                    id: renderer_id.clone(),
                };
                self.close_replaced_renderer(close);
            }
            Event::Question {
                question_id,
                participant_id,
                participant_name,
                text,
            } => {
                self.counters.questions_received += 1;
                *self
                    .questions_asked
                    .entry(participant_id.clone())
                    .or_default() += 1;
                self.questions.insert(
                    *question_id,
                    QuestionRef {
                        text: text.clone(),
                        participant_id: participant_id.clone(),
                        participant_name: participant_name.clone(),
                        asked_at: p.ts,
                        answered: false,
                    },
                );
                self.state.last_interaction = p.ts;
            }
            Event::Response(body) => {
                self.responses.insert(body.response_id, ());
                self.held.retain(|h| h.response_id != body.response_id);
                self.mark_answered(body.question_id);
                self.state.last_interaction = p.ts;
            }
            Event::ResponseHeld(body) => {
                self.mark_answered(body.question_id);
                if self.held.len() >= self.limits.held_responses_max {
                    self.held.pop_front();
                }
                self.held.push_back((**body).clone());
            }
            Event::Takeover {
                intervention_id,
                operator_id,
                ..
            } => {
                self.counters.operator_interventions += 1;
                self.controller = Some(Controller {
                    operator_id: operator_id.clone(),
                    intervention_id: *intervention_id,
                    since_ms: p.ts,
                });
            }
            Event::Release { .. } => {
                self.controller = None;
                // Held responses were the renderer's own answers to a moment
                // that has passed; they are not published on release.
                self.held.clear();
            }
            Event::Command {
                command_id,
                operator_id,
                command,
            } => {
                self.commands.insert(
                    *command_id,
                    PendingCommand {
                        issued_us: p.accepted_us,
                        emergency: false,
                        operator_id: operator_id.clone(),
                        command: Some(command.clone()),
                        reason: None,
                        issued_at: p.ts,
                    },
                );
            }
            Event::EmergencyStop {
                intervention_id,
                operator_id,
                reason,
            } => {
                self.counters.operator_interventions += 1;
                self.commands.insert(
                    *intervention_id,
                    PendingCommand {
                        issued_us: p.accepted_us,
                        emergency: true,
                        operator_id: operator_id.clone(),
                        command: None,
                        reason: reason.clone(),
                        issued_at: p.ts,
                    },
                );
            }
            Event::CommandAck { command_id, .. } => {
                self.commands.remove(command_id);
            }
            Event::Suggestion { .. } | Event::Correction { .. } => {
                self.counters.operator_interventions += 1;
            }
            Event::Metrics { metrics } => self.metrics = Some((**metrics).clone()),
            Event::Alert { alert } => {
                if matches!(
                    alert.severity,
                    crate::protocol::model::Severity::Error
                        | crate::protocol::model::Severity::Critical
                ) {
                    self.counters.error_count += 1;
                }
                if self.open_alerts.len() >= self.limits.recent_refs_max {
                    self.open_alerts.pop_front();
                }
                self.open_alerts.push_back((**alert).clone());
            }
            Event::AlertAck { alert_id, .. } => {
                self.open_alerts.retain(|a| a.alert_id != *alert_id);
            }
            Event::Job { job, audience } => {
                // Re-inserted at the end, so eviction takes the job that
                // changed longest ago.
                self.reported_jobs.shift_remove(&job.id);
                if self.reported_jobs.len() >= self.limits.recent_refs_max {
                    self.reported_jobs.shift_remove_index(0);
                }
                self.reported_jobs.insert(
                    job.id,
                    ReportedJob {
                        job: (**job).clone(),
                        audience: *audience,
                    },
                );
            }
        }
    }

    /// A renderer on this node whose fence is older than the session's was
    /// replaced: it is closed.
    /// A response names the question it answers: it leaves the open ones.
    fn mark_answered(&mut self, question: Option<EventId>) {
        if let Some(q) = question.and_then(|id| self.questions.get_mut(&id)) {
            q.answered = true;
        }
    }

    pub(super) fn close_replaced_renderer(
        &mut self,
        close: &mut Vec<(Arc<ConnHandle>, CloseCode)>,
    ) {
        if let Some((conn, fence)) = self.local_renderer
            && fence < self.renderer.fence
        {
            self.local_renderer = None;
            if let Some(sub) = self.subs.renderers.get(&conn) {
                close.push((sub.conn.clone(), CloseCode::Replaced));
            }
        }
    }

    /// The session ended: renderers and participants have nothing left to
    /// do here; operators keep watching their other sessions.
    pub(super) fn close_ended(&self, close: &mut Vec<(Arc<ConnHandle>, CloseCode)>) {
        for sub in self
            .subs
            .renderers
            .values()
            .chain(self.subs.participants.values())
        {
            close.push((sub.conn.clone(), CloseCode::SessionEnded));
        }
    }

    /// The connections event job `n` (publication `p`) is for, each with
    /// the form it wants it in.
    pub(super) fn recipients(&self, n: u64, p: &Published) -> Vec<(Arc<ConnHandle>, Option<u32>)> {
        let audience = p.event.audience();
        let mut out = Vec::new();
        for (role, subs) in self.subs.by_role() {
            if audience.includes(role) {
                out.extend(
                    subs.values()
                        .filter(|s| s.wants(n) && s.view.wants(p, &s.conn))
                        .map(|s| (s.conn.clone(), s.view.compact)),
                );
            }
        }
        out
    }

    /// The connections job `n` is for, per role.
    pub(super) fn recipients_by_role(&self, n: u64) -> Vec<(Role, Vec<Arc<ConnHandle>>)> {
        self.subs
            .by_role()
            .into_iter()
            .map(|(role, subs)| {
                let conns = subs.values().filter(|s| s.wants(n)).map(|s| s.conn.clone());
                (role, conns.collect())
            })
            .collect()
    }

    /// Puts older events (oldest first) in front of the history, where
    /// they continue it without a gap; anything else is ignored.
    pub fn backfill(&mut self, older: Vec<Arc<Published>>) {
        let mut next = self.history.front().map_or(self.seq + 1, |p| p.seq);
        for p in older.into_iter().rev() {
            if p.seq + 1 != next || self.history.len() >= self.limits.history_size {
                continue;
            }
            next = p.seq;
            self.history.push_front(p);
        }
    }

    /// Removes a connection; returns whether it was subscribed.
    pub fn detach(&mut self, conn: ConnId, role: Role) -> bool {
        if self.local_renderer.is_some_and(|(c, _)| c == conn) {
            self.local_renderer = None;
        }
        self.subs.of(role).swap_remove(&conn).is_some()
    }

    /// The session as a store record (for persistence and REST views).
    pub fn record(&self, id: SessionId, tenant: TenantId) -> SessionRecord {
        SessionRecord {
            id,
            tenant,
            avatar_id: self.info.avatar_id,
            name: self.info.name.clone(),
            description: self.info.description.clone(),
            external_id: self.info.external_id.clone(),
            status: self.info.status,
            config: self.info.config.clone(),
            created_at: self.info.created_at,
            started_at: self.info.started_at,
            ended_at: self.info.ended_at,
            counters: self.counters,
            last_error: self.info.last_error.clone(),
            state: self.state.clone(),
            context: self.context.clone(),
        }
    }
}
