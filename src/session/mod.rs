//! One session's replica on this node: the state folded from its event log,
//! its recent history, and the local connections watching it.
//!
//! Invariants, all kept under the one session lock:
//! * `seq` is the last applied event; events are applied in `seq` order;
//! * `history` holds every applied event with a seq in
//!   `(history[0].seq - 1, seq]`, so a resume inside it is exact;
//! * fan-out, snapshots and resume replays are pushed to outboxes while the
//!   lock is held, so each connection sees one gap-free, duplicate-free,
//!   ordered stream of its view.

pub mod recent;
pub mod snapshot;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use indexmap::IndexMap;
use parking_lot::{Mutex, MutexGuard};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::broker::Published;
use crate::connection::ConnHandle;
use crate::connection::outbox::Pushed;
use crate::ids::{ConnId, Epoch, EventId, Seq, SessionId, TenantId};
use crate::metrics as m;
use crate::protocol::frames::{ControlView, DiscontinuityReason, PresenceView, Snapshot};
use crate::protocol::model::{
    Alert, Counters, Event, Member, PresenceChange, RendererMetrics, ResponseBody, Role,
    SessionState, SessionStatus, StreamPosition,
};
use crate::protocol::{CloseCode, Codec, ServerFrame};
use crate::store::SessionRecord;
use recent::RecentMap;
pub use snapshot::{ReplicaSnapshot, SnapshotError};

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
}

/// A command (or emergency stop) awaiting the renderer's acknowledgement.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct PendingCommand {
    /// When this node received it, on the [`crate::clock`] timeline.
    /// Meaningless on another node, so never shipped in a snapshot.
    #[serde(skip)]
    pub issued_us: u64,
    pub emergency: bool,
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
    pub renderers: IndexMap<ConnId, Arc<ConnHandle>>,
    pub operators: IndexMap<ConnId, Arc<ConnHandle>>,
    pub participants: IndexMap<ConnId, Arc<ConnHandle>>,
}

impl Subscribers {
    fn of(&mut self, role: Role) -> &mut IndexMap<ConnId, Arc<ConnHandle>> {
        match role {
            Role::Renderer => &mut self.renderers,
            Role::Operator => &mut self.operators,
            Role::Participant => &mut self.participants,
        }
    }

    pub fn len(&self) -> usize {
        self.renderers.len() + self.operators.len() + self.participants.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug)]
pub struct Inner {
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
    pub history: VecDeque<Arc<Published>>,

    // ---- local to this node ----
    pub subs: Subscribers,
    /// The renderer connection on this node holding the current fence.
    pub local_renderer: Option<(ConnId, u64)>,
    pub local_members: HashMap<String, LocalMember>,
    pub pending: Pending,
    limits: ReplicaLimits,
}

#[derive(Debug)]
pub struct Session {
    pub id: SessionId,
    pub tenant: TenantId,
    inner: Mutex<Inner>,
}

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
        let inner = Inner {
            epoch: position.epoch,
            seq: position.seq,
            info: Info {
                name: record.name.clone(),
                description: record.description.clone(),
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
            history: VecDeque::new(),
            subs: Subscribers::default(),
            local_renderer: None,
            local_members: HashMap::new(),
            pending: Pending::default(),
            limits,
        };
        Session {
            id: record.id,
            tenant: record.tenant,
            inner: Mutex::new(inner),
        }
    }

    /// Locks the replica. Never hold the guard across an `.await`.
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
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
    /// The event was folded and fanned out (false: duplicate or fenced).
    pub delivered: bool,
    /// Connections this node must close because of it, with the code.
    pub close: Vec<(Arc<ConnHandle>, CloseCode)>,
}

impl Inner {
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
        self.fold(p, &mut out);
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
        self.fan_out(p);
        out.delivered = true;
        out
    }

    fn fold(&mut self, p: &Published, out: &mut Applied) {
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
                    self.close_ended(&mut out.close);
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
                self.close_replaced_renderer(&mut out.close);
            }
            Event::Question {
                question_id,
                participant_id,
                text,
                ..
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
                    },
                );
                self.state.last_interaction = p.ts;
            }
            Event::Response(body) => {
                self.responses.insert(body.response_id, ());
                self.held.retain(|h| h.response_id != body.response_id);
                self.state.last_interaction = p.ts;
            }
            Event::ResponseHeld(body) => {
                if self.held.len() >= self.limits.held_responses_max {
                    self.held.pop_front();
                }
                self.held.push_back(body.clone());
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
            Event::Command { command_id, .. } => {
                self.commands.insert(
                    *command_id,
                    PendingCommand {
                        issued_us: p.accepted_us,
                        emergency: false,
                    },
                );
            }
            Event::EmergencyStop {
                intervention_id, ..
            } => {
                self.counters.operator_interventions += 1;
                self.commands.insert(
                    *intervention_id,
                    PendingCommand {
                        issued_us: p.accepted_us,
                        emergency: true,
                    },
                );
            }
            Event::CommandAck { command_id, .. } => {
                self.commands.remove(command_id);
            }
            Event::Suggestion { .. } | Event::Correction { .. } => {
                self.counters.operator_interventions += 1;
            }
            Event::Metrics { metrics } => self.metrics = Some(metrics.clone()),
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
                self.open_alerts.push_back(alert.clone());
            }
            Event::AlertAck { alert_id, .. } => {
                self.open_alerts.retain(|a| a.alert_id != *alert_id);
            }
        }
    }

    /// Pushes an applied event to every local subscriber whose role is in
    /// its audience. One `Bytes` clone and one queue push per recipient.
    fn fan_out(&self, p: &Arc<Published>) {
        let audience = p.event.audience();
        let slot = p.event.conflation_slot().map(|s| (p.session, s));
        if let Event::EmergencyStop {
            intervention_id,
            reason,
            ..
        } = &p.event
        {
            // The priority lane: ahead of everything already queued for the
            // renderer, conflation or not. The event itself follows in order.
            for conn in self.subs.renderers.values() {
                conn.outbox
                    .push_urgent(conn.codec.frame(&ServerFrame::Urgent {
                        session: p.session,
                        seq: p.seq,
                        intervention_id: *intervention_id,
                        reason: reason.clone(),
                    }));
            }
        }
        let mut recipients = 0;
        let mut conflated = 0;
        // Renderers first: whatever an operator just did, the renderer is
        // the one that has to act on it.
        for (role, subs) in [
            (Role::Renderer, &self.subs.renderers),
            (Role::Operator, &self.subs.operators),
            (Role::Participant, &self.subs.participants),
        ] {
            if !audience.includes(role) {
                continue;
            }
            for conn in subs.values() {
                let frame = p.frame(conn.codec).clone();
                match conn.outbox.push(frame, slot, p.accepted_us) {
                    Pushed::Queued => {}
                    Pushed::Conflated => conflated += 1,
                    Pushed::Overflow => m::slow_consumer(),
                    Pushed::Closed => continue,
                }
                recipients += 1;
            }
        }
        m::frames_out(&p.event, recipients);
        if conflated > 0 {
            m::conflated(conflated);
        }
    }

    /// The session as `role` sees it now.
    pub fn snapshot(&self, id: SessionId, role: Role) -> Snapshot {
        let staff = role != Role::Participant;
        let operator = role == Role::Operator;
        let members = staff.then(|| {
            self.members
                .values()
                .take(self.limits.snapshot_members_max)
                .cloned()
                .collect::<Vec<_>>()
        });
        Snapshot {
            session: id,
            epoch: self.epoch,
            seq: self.seq,
            status: self.info.status,
            name: self.info.name.clone(),
            state: self.state.clone(),
            counters: self.counters,
            presence: PresenceView {
                participant_count: self.counters.participant_count,
                truncated: staff && self.members.len() > self.limits.snapshot_members_max,
                members,
            },
            control: staff.then(|| ControlView {
                controller: self.controller.as_ref().map(|c| c.operator_id.clone()),
                renderer_connected: self.renderer.connected,
                renderer_fence: self.renderer.fence,
            }),
            context: staff.then(|| self.context.clone()),
            metrics: if operator { self.metrics.clone() } else { None },
            alerts: operator.then(|| self.open_alerts.iter().cloned().collect()),
            held_responses: operator.then(|| self.held.iter().cloned().collect()),
        }
    }

    /// Adds a connection to the session and queues what it needs first: a
    /// snapshot, or the events it missed, or a discontinuity and a
    /// snapshot. Everything is queued under the lock, before any later
    /// event can be fanned out, so the client's stream has no gap and no
    /// duplicate.
    pub fn attach(
        &mut self,
        id: SessionId,
        conn: &Arc<ConnHandle>,
        role: Role,
        resume: Option<StreamPosition>,
    ) -> Attached {
        let codec = conn.codec;
        let outcome = match resume {
            None => Attached::Snapshot,
            Some(pos) => match self.replay_plan(pos, role, codec) {
                Ok(replay) => {
                    conn.outbox.push(
                        codec.frame(&ServerFrame::Resumed {
                            session: id,
                            epoch: self.epoch,
                            from: pos.seq + 1,
                            to: self.seq,
                        }),
                        None,
                        0,
                    );
                    for p in &replay {
                        conn.outbox
                            .push(p.frame(codec).clone(), None, p.accepted_us);
                    }
                    Attached::Resumed {
                        replayed: replay.len(),
                    }
                }
                Err(reason) => {
                    conn.outbox.push(
                        codec.frame(&ServerFrame::Discontinuity {
                            session: id,
                            reason,
                            epoch: self.epoch,
                            seq: self.seq,
                        }),
                        None,
                        0,
                    );
                    Attached::Discontinuity(reason)
                }
            },
        };
        if !matches!(outcome, Attached::Resumed { .. }) {
            let snapshot = self.snapshot(id, role);
            conn.outbox.push(
                codec.frame(&ServerFrame::Snapshot(Box::new(snapshot))),
                None,
                0,
            );
        }
        self.subs.of(role).insert(conn.id, conn.clone());
        outcome
    }

    /// The events after `pos` that `role` should see, if history still
    /// holds all of them.
    fn replay_plan(
        &self,
        pos: StreamPosition,
        role: Role,
        codec: Codec,
    ) -> Result<Vec<Arc<Published>>, DiscontinuityReason> {
        if pos.epoch != self.epoch {
            return Err(DiscontinuityReason::EpochChanged);
        }
        if pos.seq > self.seq {
            return Err(DiscontinuityReason::PositionAhead);
        }
        if pos.seq == self.seq {
            return Ok(Vec::new());
        }
        let first = self.history.front().map(|p| p.seq).unwrap_or(self.seq + 1);
        if pos.seq + 1 < first {
            return Err(DiscontinuityReason::HistoryTrimmed);
        }
        let mut bytes = 0;
        let mut replay = Vec::new();
        for p in self.history.iter().filter(|p| p.seq > pos.seq) {
            if p.event.audience().includes(role) {
                bytes += p.frame(codec).len();
                if bytes > self.limits.replay_max_bytes {
                    return Err(DiscontinuityReason::HistoryTrimmed);
                }
                replay.push(p.clone());
            }
        }
        Ok(replay)
    }

    /// A renderer on this node whose fence is older than the session's was
    /// replaced: it is closed.
    fn close_replaced_renderer(&mut self, close: &mut Vec<(Arc<ConnHandle>, CloseCode)>) {
        if let Some((conn, fence)) = self.local_renderer
            && fence < self.renderer.fence
        {
            self.local_renderer = None;
            if let Some(c) = self.subs.renderers.get(&conn) {
                close.push((c.clone(), CloseCode::Replaced));
            }
        }
    }

    /// The session ended: renderers and participants have nothing left to
    /// do here; operators keep watching their other sessions.
    fn close_ended(&self, close: &mut Vec<(Arc<ConnHandle>, CloseCode)>) {
        for c in self
            .subs
            .renderers
            .values()
            .chain(self.subs.participants.values())
        {
            close.push((c.clone(), CloseCode::SessionEnded));
        }
    }

    /// Replaces the replicated state with `snap`; what is local to this
    /// node (connections, presence here, pending work) stays.
    fn install(&mut self, id: SessionId, snap: snapshot::ReplicaSnapshot) {
        let mut fresh = Session::restore(id, TenantId::default(), snap, self.limits)
            .inner
            .into_inner();
        fresh.subs = std::mem::take(&mut self.subs);
        fresh.local_renderer = self.local_renderer;
        fresh.local_members = std::mem::take(&mut self.local_members);
        fresh.pending = std::mem::take(&mut self.pending);
        *self = fresh;
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

    /// Continues the stream at `position` instead of after the last event:
    /// history before it is gone, and with a `snapshot` the replicated
    /// state is replaced by it. Every local connection is told
    /// (discontinuity and a fresh snapshot). Returns connections to close.
    pub fn reset(
        &mut self,
        id: SessionId,
        position: StreamPosition,
        snapshot: Option<snapshot::ReplicaSnapshot>,
    ) -> Vec<(Arc<ConnHandle>, CloseCode)> {
        let mut close = Vec::new();
        let reason = if position.epoch == self.epoch {
            DiscontinuityReason::HistoryTrimmed
        } else {
            DiscontinuityReason::EpochChanged
        };
        if let Some(snap) = snapshot {
            self.install(id, snap);
            self.close_replaced_renderer(&mut close);
            if self.info.status.is_terminal() {
                self.close_ended(&mut close);
            }
        }
        self.epoch = position.epoch;
        self.seq = position.seq;
        self.history.clear();
        let roles = [
            (Role::Renderer, &self.subs.renderers),
            (Role::Operator, &self.subs.operators),
            (Role::Participant, &self.subs.participants),
        ];
        for (role, conns) in roles {
            if conns.is_empty() {
                continue;
            }
            let snapshot = self.snapshot(id, role);
            for c in conns.values() {
                c.outbox.push(
                    c.codec.frame(&ServerFrame::Discontinuity {
                        session: id,
                        reason,
                        epoch: self.epoch,
                        seq: self.seq,
                    }),
                    None,
                    0,
                );
                c.outbox.push(
                    c.codec
                        .frame(&ServerFrame::Snapshot(Box::new(snapshot.clone()))),
                    None,
                    0,
                );
            }
        }
        close
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
