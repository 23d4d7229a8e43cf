//! Frames: what clients send ([`ClientFrame`]) and what the hub sends
//! ([`ServerFrame`]). Both codecs carry exactly this model; `type` names
//! the frame.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::codes::ErrorCode;
use super::model::{
    Alert, Command, Counters, CustomAudience, Event, Member, RendererMetrics, ResponseBody, Role,
    SessionState, SessionStatus, StatePatch, StreamPosition,
};
use crate::ids::{ConnId, Epoch, EventId, Seq, SessionId, TenantId};
use crate::secret::Secret;

/// A client's own id for a frame, quoted back in `ack` and `error`. For
/// questions, responses and interventions it is also the idempotency key:
/// resending a frame with the same id never creates a second one.
pub type ClientMsgId = String;

/// Frames a client sends.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// Authenticate with a token, for clients (browsers) that cannot set an
    /// `Authorization` header. Must be the first frame.
    Auth { token: Secret },
    /// Start receiving a session. `resume` continues from a known position.
    /// A renderer sets `takeover` to replace a live renderer.
    Join {
        session: SessionId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resume: Option<StreamPosition>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        takeover: bool,
        /// Display name for presence (participants).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// Receive this session's events as compact event frames (see
        /// `CompactEventFrame`): the session named by the alias `joined`
        /// gives, no `type`, `session` or `ts`.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        compact: bool,
        /// `false`: do not send this connection the events it published
        /// itself (its frames are still answered with `ack`).
        #[serde(default = "yes", skip_serializing_if = "is_true")]
        echo: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<ClientMsgId>,
    },
    Leave {
        session: SessionId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<ClientMsgId>,
    },

    // ---- renderer ----
    /// Change session state. Renderer only.
    State {
        session: SessionId,
        state: StatePatch,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<ClientMsgId>,
    },
    /// Replace the conversation context. Renderer only.
    Context {
        session: SessionId,
        context: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<ClientMsgId>,
    },
    /// Report performance. Renderer only. Conflated before it reaches
    /// operators.
    Metrics {
        session: SessionId,
        metrics: RendererMetrics,
    },
    /// Report a lifecycle change the renderer owns: `starting`, `active`,
    /// `paused`, `failed`.
    Status {
        session: SessionId,
        status: SessionStatus,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<ClientMsgId>,
    },
    /// Answer a question, or carry out a `say` command. Renderer only.
    Response {
        session: SessionId,
        id: ClientMsgId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        question_id: Option<EventId>,
        text: String,
        confidence: f64,
        response_time_ms: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        intent: Option<String>,
        #[serde(default)]
        knowledge_sources: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        command_id: Option<EventId>,
    },
    /// Acknowledge a command or an emergency stop. Renderer only.
    CommandAck {
        session: SessionId,
        command_id: EventId,
    },

    // ---- participant ----
    Question {
        session: SessionId,
        id: ClientMsgId,
        text: String,
    },

    // ---- operator ----
    /// Take control of the session: the renderer's responses are held for
    /// this operator's approval until `release`. Refused with `conflict`
    /// while another operator holds it; taking it again as its controller
    /// changes nothing (an `id` gets the original `ack`, `duplicate`).
    Takeover {
        session: SessionId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<ClientMsgId>,
    },
    /// Give control back to the renderer. Refused with `not_controller`
    /// when this operator does not hold the session (nobody does, or
    /// another operator does).
    Release {
        session: SessionId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<ClientMsgId>,
    },
    /// Tell the renderer what to do. Only the controlling operator.
    Command {
        session: SessionId,
        id: ClientMsgId,
        command: Command,
    },
    Suggestion {
        session: SessionId,
        id: ClientMsgId,
        text: String,
    },
    Correction {
        session: SessionId,
        id: ClientMsgId,
        response_id: EventId,
        text: String,
    },
    /// Stop the renderer now. Sequenced like any event, with an `urgent`
    /// frame put ahead of everything queued for the renderer. An `active`
    /// session becomes `paused`; on a `starting`, `paused` or `stopping`
    /// session the status is left as it is and everything else happens
    /// the same. Refused with `session_ended` on an ended session. The
    /// renderer must answer with `command_ack` within
    /// `emergency_ack_timeout_ms`, or an `emergency_stop_unacknowledged`
    /// alert is raised. Never refused for lack of storage.
    EmergencyStop {
        session: SessionId,
        id: ClientMsgId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Publish a held response. Only the controlling operator.
    Approve {
        session: SessionId,
        response_id: EventId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<ClientMsgId>,
    },
    AckAlert {
        session: SessionId,
        alert_id: EventId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<ClientMsgId>,
    },

    // ---- renderer or operator ----
    /// Publish an app-defined event into the session stream.
    Publish {
        session: SessionId,
        name: String,
        #[serde(default)]
        audience: CustomAudience,
        #[serde(default)]
        data: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<ClientMsgId>,
    },

    /// The tenant's sessions, newest first (operators): answered with
    /// `session_list`. Ended sessions are left out unless `include_ended`;
    /// a token limited to some sessions lists only those.
    ListSessions {
        /// Only sessions in this status.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<SessionStatus>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        include_ended: bool,
        /// 1 to 500; 100 when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<ClientMsgId>,
    },

    /// Application-level ping; answered with `pong`.
    Ping {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nonce: Option<u64>,
    },
}

impl ClientFrame {
    pub fn name(&self) -> &'static str {
        match self {
            ClientFrame::Auth { .. } => "auth",
            ClientFrame::Join { .. } => "join",
            ClientFrame::Leave { .. } => "leave",
            ClientFrame::State { .. } => "state",
            ClientFrame::Context { .. } => "context",
            ClientFrame::Metrics { .. } => "metrics",
            ClientFrame::Status { .. } => "status",
            ClientFrame::Response { .. } => "response",
            ClientFrame::CommandAck { .. } => "command_ack",
            ClientFrame::Question { .. } => "question",
            ClientFrame::Takeover { .. } => "takeover",
            ClientFrame::Release { .. } => "release",
            ClientFrame::Command { .. } => "command",
            ClientFrame::Suggestion { .. } => "suggestion",
            ClientFrame::Correction { .. } => "correction",
            ClientFrame::EmergencyStop { .. } => "emergency_stop",
            ClientFrame::Approve { .. } => "approve",
            ClientFrame::AckAlert { .. } => "ack_alert",
            ClientFrame::Publish { .. } => "publish",
            ClientFrame::ListSessions { .. } => "list_sessions",
            ClientFrame::Ping { .. } => "ping",
        }
    }

    /// The client's id for this frame, if it gave one.
    pub fn client_id(&self) -> Option<&str> {
        match self {
            ClientFrame::Join { id, .. }
            | ClientFrame::Leave { id, .. }
            | ClientFrame::State { id, .. }
            | ClientFrame::Context { id, .. }
            | ClientFrame::Status { id, .. }
            | ClientFrame::Takeover { id, .. }
            | ClientFrame::Release { id, .. }
            | ClientFrame::Approve { id, .. }
            | ClientFrame::AckAlert { id, .. }
            | ClientFrame::Publish { id, .. }
            | ClientFrame::ListSessions { id, .. } => id.as_deref(),
            ClientFrame::Response { id, .. }
            | ClientFrame::Question { id, .. }
            | ClientFrame::Command { id, .. }
            | ClientFrame::Suggestion { id, .. }
            | ClientFrame::Correction { id, .. }
            | ClientFrame::EmergencyStop { id, .. } => Some(id),
            ClientFrame::Auth { .. }
            | ClientFrame::Metrics { .. }
            | ClientFrame::CommandAck { .. }
            | ClientFrame::Ping { .. } => None,
        }
    }

    /// The session the frame is about, if any.
    pub fn session(&self) -> Option<SessionId> {
        match self {
            ClientFrame::Auth { .. }
            | ClientFrame::Ping { .. }
            | ClientFrame::ListSessions { .. } => None,
            ClientFrame::Join { session, .. }
            | ClientFrame::Leave { session, .. }
            | ClientFrame::State { session, .. }
            | ClientFrame::Context { session, .. }
            | ClientFrame::Metrics { session, .. }
            | ClientFrame::Status { session, .. }
            | ClientFrame::Response { session, .. }
            | ClientFrame::CommandAck { session, .. }
            | ClientFrame::Question { session, .. }
            | ClientFrame::Takeover { session, .. }
            | ClientFrame::Release { session, .. }
            | ClientFrame::Command { session, .. }
            | ClientFrame::Suggestion { session, .. }
            | ClientFrame::Correction { session, .. }
            | ClientFrame::EmergencyStop { session, .. }
            | ClientFrame::Approve { session, .. }
            | ClientFrame::AckAlert { session, .. }
            | ClientFrame::Publish { session, .. } => Some(*session),
        }
    }
}

/// Presence as a snapshot shows it.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct PresenceView {
    pub participant_count: u32,
    /// Members (staff views only), at most the configured cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<Member>>,
    /// True when `members` was cut at the cap.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// Who holds the session (staff views only).
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct ControlView {
    /// The operator that has taken the session over, if any.
    pub controller: Option<String>,
    pub renderer_connected: bool,
    /// The current renderer fence; grows by one on every renderer join.
    pub renderer_fence: u64,
}

/// Everything a client needs to render a session at `seq`. Live events with
/// a higher `seq` follow it.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct Snapshot {
    pub session: SessionId,
    pub epoch: Epoch,
    pub seq: Seq,
    pub status: SessionStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub state: SessionState,
    pub counters: Counters,
    pub presence: PresenceView,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<ControlView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<RendererMetrics>,
    /// Open (unacknowledged) alerts. Operators only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerts: Option<Vec<Alert>>,
    /// Responses held back during a takeover. Operators only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_responses: Option<Vec<ResponseBody>>,
    /// Questions no response (published or held) answers yet, oldest
    /// first; at most the latest 256. Renderer and operators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub questions: Option<Vec<OpenQuestion>>,
    /// Commands and emergency stops the renderer has not acknowledged,
    /// oldest first. Renderer and operators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_commands: Option<Vec<PendingCommandView>>,
    /// Jobs reporting into this stream that the role may see, in the
    /// order they last changed (`docs/JOBS.md`). Absent when none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jobs: Option<Vec<crate::protocol::job::Job>>,
}

/// A question still waiting for an answer, as a snapshot lists it.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct OpenQuestion {
    pub question_id: EventId,
    pub participant_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub participant_name: Option<String>,
    pub text: String,
    /// When it was asked, Unix milliseconds.
    pub asked_at: u64,
}

/// A command or emergency stop awaiting the renderer's `command_ack`.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct PendingCommandView {
    /// The `command_id`, or the emergency stop's `intervention_id`.
    pub command_id: EventId,
    pub operator_id: String,
    /// True for an emergency stop: stop now, then acknowledge.
    pub emergency: bool,
    /// What to do (commands only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Command>,
    /// Why (emergency stops).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When it was issued, Unix milliseconds.
    pub issued_at: u64,
}

/// Why a resume could not be served from history.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DiscontinuityReason {
    /// The stream was restarted; the client's epoch is gone.
    EpochChanged,
    /// The events after the client's seq are no longer in history.
    HistoryTrimmed,
    /// The client's seq is ahead of the stream.
    PositionAhead,
}

/// Frames the hub sends.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// First frame after authentication.
    Welcome {
        protocol: String,
        conn_id: ConnId,
        role: Role,
        subject: String,
        tenant: TenantId,
        server_time: u64,
        heartbeat_ms: u64,
        max_message_bytes: usize,
    },
    /// The join was accepted. A snapshot, or `resumed` and the missed
    /// events, follow.
    Joined {
        session: SessionId,
        role: Role,
        /// The renderer's fence (renderers only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fence: Option<u64>,
        /// With `compact`: the number this connection's compact event
        /// frames name the session by (`e`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        alias: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<ClientMsgId>,
    },
    Snapshot(Box<Snapshot>),
    /// A resume succeeded: the events `from..=to` of this view follow.
    /// Nothing was missed when `from` is `to + 1`: live events follow.
    Resumed {
        session: SessionId,
        epoch: Epoch,
        from: Seq,
        to: Seq,
    },
    /// A resume could not be served; a fresh snapshot follows.
    Discontinuity {
        session: SessionId,
        reason: DiscontinuityReason,
        epoch: Epoch,
        seq: Seq,
    },
    /// One sequenced event.
    Event {
        session: SessionId,
        seq: Seq,
        /// When the hub accepted the event, Unix milliseconds.
        ts: u64,
        event: Event,
    },
    /// An emergency stop, sent to the renderer ahead of every queued frame.
    /// The same stop follows in order as an `emergency_stop` event with this
    /// `seq`. Acknowledge with `command_ack` and `intervention_id`.
    Urgent {
        session: SessionId,
        seq: Seq,
        intervention_id: EventId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// The client left (or was removed from) a session.
    Left {
        session: SessionId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<ClientMsgId>,
    },
    /// A frame with an `id` was accepted.
    Ack {
        id: ClientMsgId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session: Option<SessionId>,
        /// Sequence number of the event the frame produced.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seq: Option<Seq>,
        /// The hub's id for what was created (question_id, response_id,
        /// intervention_id...).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ref_id: Option<EventId>,
        /// True when this id was seen before and nothing new was created.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        duplicate: bool,
    },
    Error {
        code: ErrorCode,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<ClientMsgId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session: Option<SessionId>,
        /// For retryable errors: wait at least this long before retrying.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
    Pong {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        nonce: Option<u64>,
        server_time: u64,
    },
    /// The answer to `list_sessions`.
    SessionList {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<ClientMsgId>,
        sessions: Vec<SessionSummary>,
    },
}

/// One line of a `session_list`: enough for a console's overview. The
/// live fields are what this node's replica knows; join the session for
/// its events.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct SessionSummary {
    pub session: SessionId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub status: SessionStatus,
    /// Unix milliseconds.
    pub created_at: u64,
    pub participant_count: u32,
    pub questions_received: u64,
    pub renderer_connected: bool,
    /// The operator that has taken the session over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<String>,
    pub is_speaking: bool,
    pub current_slide: i32,
    /// Alerts not acknowledged yet.
    pub open_alerts: u32,
}

impl ServerFrame {
    pub fn error(code: ErrorCode, message: impl Into<String>) -> ServerFrame {
        ServerFrame::Error {
            code,
            message: message.into(),
            id: None,
            session: None,
            retry_after_ms: None,
        }
    }
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

/// An event as a connection that joined with `compact: true` receives it:
/// `e` (the session's alias from `joined`) and `q` (its `seq`), then the
/// event's own fields (`kind` first among them in meaning, not in order).
/// It has no `type`: a frame with `e` is a compact event frame. It leaves
/// out the session id, the frame type and the hub's `ts`, which most
/// receivers never read, so a 128-byte event costs about a third fewer bytes.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct CompactEventFrame {
    pub e: u32,
    pub q: Seq,
    #[serde(flatten)]
    pub event: Event,
}

/// Borrowed form of [`CompactEventFrame`], so a shared event is encoded
/// without cloning it.
#[derive(Serialize)]
pub(crate) struct CompactEventRef<'a> {
    pub(crate) e: u32,
    pub(crate) q: Seq,
    #[serde(flatten)]
    pub(crate) event: &'a Event,
}

/// Borrowed form of [`ServerFrame::Event`], so a shared event is encoded
/// without cloning it. Serializes byte-for-byte like the owned variant.
#[derive(Serialize)]
pub(crate) struct EventFrameRef<'a> {
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    pub(crate) session: SessionId,
    pub(crate) seq: Seq,
    pub(crate) ts: u64,
    pub(crate) event: &'a Event,
}
