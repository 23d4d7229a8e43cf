//! The session vocabulary as it appears on the wire: roles, lifecycle
//! status, typed session state, renderer metrics, alerts and the sequenced
//! events. Names follow seed 000 (`sessions`, `session_state`,
//! `conversations`, `question_responses`, `operator_interventions`,
//! `system_alerts`, `performance_metrics`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ids::{EventId, Seq};

/// What a connection is. Fixed for the life of the connection.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize, JsonSchema, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The avatar engine: pushes state, metrics and answers; obeys commands.
    Renderer,
    /// A human at a console: watches many sessions and intervenes.
    Operator,
    /// The audience: asks questions, sees slides, speech and answers.
    Participant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Renderer => "renderer",
            Role::Operator => "operator",
            Role::Participant => "participant",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "renderer" => Some(Role::Renderer),
            "operator" => Some(Role::Operator),
            "participant" => Some(Role::Participant),
            _ => None,
        }
    }

    fn bit(self) -> u8 {
        match self {
            Role::Renderer => 0b001,
            Role::Operator => 0b010,
            Role::Participant => 0b100,
        }
    }
}

/// The set of roles an event is delivered to.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Audience(u8);

impl Audience {
    pub const RENDERER: Audience = Audience(0b001);
    pub const OPERATORS: Audience = Audience(0b010);
    pub const STAFF: Audience = Audience(0b011);
    pub const ALL: Audience = Audience(0b111);

    pub fn includes(self, role: Role) -> bool {
        self.0 & role.bit() != 0
    }
}

/// Audience a renderer, operator or backend picks for an app-defined event.
#[derive(
    Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize, Default, JsonSchema, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum CustomAudience {
    /// Everyone in the session, participants included.
    #[default]
    All,
    /// Renderer and operators.
    Staff,
    Operators,
    Renderer,
}

impl CustomAudience {
    pub fn is_all(&self) -> bool {
        *self == CustomAudience::All
    }
}

impl From<CustomAudience> for Audience {
    fn from(a: CustomAudience) -> Audience {
        match a {
            CustomAudience::All => Audience::ALL,
            CustomAudience::Staff => Audience::STAFF,
            CustomAudience::Operators => Audience::OPERATORS,
            CustomAudience::Renderer => Audience::RENDERER,
        }
    }
}

/// Session lifecycle (seed 000 `sessions.status`).
///
/// ```text
/// created → starting → active ⇄ paused → stopping → stopped
///              └──────────┴────────┴─────────┴──→ failed
/// ```
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize, JsonSchema, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    Created,
    Starting,
    Active,
    Paused,
    Stopping,
    Stopped,
    Failed,
}

impl SessionStatus {
    pub const ALL: [SessionStatus; 7] = [
        SessionStatus::Created,
        SessionStatus::Starting,
        SessionStatus::Active,
        SessionStatus::Paused,
        SessionStatus::Stopping,
        SessionStatus::Stopped,
        SessionStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Created => "created",
            SessionStatus::Starting => "starting",
            SessionStatus::Active => "active",
            SessionStatus::Paused => "paused",
            SessionStatus::Stopping => "stopping",
            SessionStatus::Stopped => "stopped",
            SessionStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<SessionStatus> {
        SessionStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Live states are the ones `failed` can be reached from.
    pub fn is_live(self) -> bool {
        matches!(
            self,
            SessionStatus::Starting
                | SessionStatus::Active
                | SessionStatus::Paused
                | SessionStatus::Stopping
        )
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, SessionStatus::Stopped | SessionStatus::Failed)
    }

    /// The lifecycle table. Everything not listed is illegal.
    pub fn can_become(self, to: SessionStatus) -> bool {
        use SessionStatus::*;
        match (self, to) {
            (Created, Starting | Stopping) => true,
            (Starting, Active | Stopping) => true,
            (Active, Paused | Stopping) => true,
            (Paused, Active | Stopping) => true,
            (Stopping, Stopped) => true,
            (from, Failed) => from.is_live(),
            _ => false,
        }
    }
}

/// Real-time session state (seed 000 `session_state`). Every `state` event
/// carries the whole struct, so a client that skipped some (conflation)
/// still ends up with the right picture.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize, JsonSchema, utoipa::ToSchema)]
pub struct SessionState {
    pub current_slide: i32,
    pub presentation_mode: String,
    pub is_speaking: bool,
    pub awaiting_questions: bool,
    /// True while at least one operator watches the session. Owned by the
    /// hub; renderers cannot set it.
    pub operator_connected: bool,
    pub current_topic: Option<String>,
    /// Time of the last question or response, in Unix milliseconds. Owned by
    /// the hub.
    pub last_interaction: u64,
}

impl Default for SessionState {
    fn default() -> Self {
        SessionState {
            current_slide: 0,
            presentation_mode: "auto".to_owned(),
            is_speaking: false,
            awaiting_questions: false,
            operator_connected: false,
            current_topic: None,
            last_interaction: 0,
        }
    }
}

/// What a renderer may change in [`SessionState`]. Absent fields are kept.
/// `current_topic: null` clears the topic.
#[derive(Clone, PartialEq, Debug, Default, Serialize, Deserialize, JsonSchema)]
pub struct StatePatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_slide: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presentation_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_speaking: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub awaiting_questions: Option<bool>,
    #[serde(
        default,
        deserialize_with = "double_option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<String>")]
    pub current_topic: Option<Option<String>>,
}

/// Distinguishes an absent field (`None`) from an explicit `null`
/// (`Some(None)`).
fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Session counters (seed 000 `sessions`).
#[derive(
    Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize, JsonSchema, utoipa::ToSchema,
)]
pub struct Counters {
    pub participant_count: u32,
    pub questions_received: u64,
    pub operator_interventions: u64,
    pub error_count: u64,
}

/// Per-stage pipeline latencies (seed 002 `stt_latency_ms` ...).
#[derive(Clone, Copy, PartialEq, Debug, Default, Serialize, Deserialize, JsonSchema)]
pub struct StageLatencies {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stt_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tts_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_ms: Option<f64>,
}

impl StageLatencies {
    pub fn is_empty(&self) -> bool {
        *self == StageLatencies::default()
    }
}

/// One renderer metrics report (seed 000 `eva:session:{id}:metrics`).
/// Usages are fractions in `[0, 1]`.
#[derive(Clone, PartialEq, Debug, Default, Serialize, Deserialize, JsonSchema)]
pub struct RendererMetrics {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_usage: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_usage: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_usage: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fps: Option<f64>,
    #[serde(default, skip_serializing_if = "StageLatencies::is_empty")]
    pub stages: StageLatencies,
    /// Which part of the renderer measured this (seed 000
    /// `performance_metrics.component`), e.g. `speech_recognition`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
}

impl RendererMetrics {
    /// `(metric_type, value, unit)` for every value present, named as the
    /// seeds name them. Used for thresholds and for `performance_metrics`.
    pub fn values(&self) -> impl Iterator<Item = (&'static str, f64, &'static str)> + '_ {
        [
            ("latency_ms", self.latency_ms, "ms"),
            ("cpu_usage", self.cpu_usage, "ratio"),
            ("gpu_usage", self.gpu_usage, "ratio"),
            ("memory_usage", self.memory_usage, "ratio"),
            ("fps", self.fps, "fps"),
            ("stt_latency_ms", self.stages.stt_ms, "ms"),
            ("llm_latency_ms", self.stages.llm_ms, "ms"),
            ("tts_latency_ms", self.stages.tts_ms, "ms"),
            ("total_latency_ms", self.stages.total_ms, "ms"),
        ]
        .into_iter()
        .filter_map(|(name, v, unit)| v.map(|v| (name, v, unit)))
    }
}

#[derive(
    Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Error,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
            Severity::Critical => "critical",
        }
    }
}

/// Closed set of alert types the hub raises.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize, JsonSchema, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum AlertType {
    /// The session is live and no renderer has been connected for the
    /// renderer grace period.
    RendererHeartbeatLost,
    /// The renderer did not acknowledge an emergency stop in time.
    EmergencyStopUnacknowledged,
    /// A renderer metric crossed its configured threshold.
    MetricThreshold,
    /// One of the tenant's webhook endpoints failed too often and was
    /// disabled (raised in each of the tenant's live sessions).
    WebhookDisabled,
}

impl AlertType {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertType::RendererHeartbeatLost => "renderer_heartbeat_lost",
            AlertType::EmergencyStopUnacknowledged => "emergency_stop_unacknowledged",
            AlertType::MetricThreshold => "metric_threshold",
            AlertType::WebhookDisabled => "webhook_disabled",
        }
    }
}

/// An alert (seed 000 `system_alerts`).
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct Alert {
    pub alert_id: EventId,
    pub alert_type: AlertType,
    pub severity: Severity,
    pub title: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    #[serde(default)]
    pub metadata: Value,
    pub created_at: u64,
}

/// What an operator tells the renderer to do.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Command {
    /// Speak this text. The renderer answers with a `response` that carries
    /// the command's id, which passes even while the session is taken over.
    Say { text: String },
    /// Move to this slide.
    GotoSlide { slide: i32 },
    /// Pause the presentation (the session becomes `paused`).
    Pause,
    /// Resume the presentation (the session becomes `active`).
    Resume,
}

/// A participant, operator or renderer as presence lists it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct Member {
    pub id: String,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PresenceChange {
    Join,
    Leave,
}

/// A renderer's answer (seed 000 `question_responses`).
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize, JsonSchema)]
pub struct ResponseBody {
    pub response_id: EventId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub question_id: Option<EventId>,
    pub text: String,
    pub confidence: f64,
    pub response_time_ms: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<String>,
    #[serde(default)]
    pub knowledge_sources: Vec<String>,
    /// Set when the response carries out an operator `say` command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<EventId>,
}

/// Why a takeover ended.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseReason {
    /// The controlling operator released it.
    Released,
    /// The controlling operator was gone for longer than the takeover grace.
    Expired,
    /// The session ended.
    SessionEnded,
}

/// Every event a session emits. Each gets the next `seq` of its session and
/// reaches the roles its [`Event::audience`] names.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// The session was created. Always `seq = 1` of a new stream.
    Created {
        name: Option<String>,
    },
    /// A lifecycle transition.
    Lifecycle {
        status: SessionStatus,
        previous: SessionStatus,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    /// The whole session state after a change.
    State {
        state: SessionState,
    },
    /// Conversation context the renderer keeps (seed 000
    /// `eva:session:{id}:context`).
    Context {
        context: Value,
    },
    Presence {
        change: PresenceChange,
        member: Member,
        participant_count: u32,
    },
    /// Sampled counters, emitted at most once per counters interval.
    Counters {
        counters: Counters,
    },
    /// A renderer connected (with a new fence) or went away.
    Renderer {
        connected: bool,
        fence: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        renderer_id: Option<String>,
    },
    Question {
        question_id: EventId,
        participant_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        participant_name: Option<String>,
        text: String,
    },
    // Responses, metrics and alerts are boxed: they are twice the size of
    // the common events, and every event kept in a session's history
    // would otherwise carry their size.
    Response(Box<ResponseBody>),
    /// A renderer response held back because an operator controls the
    /// session. Operators only; `approve` publishes it as a `response`.
    ResponseHeld(Box<ResponseBody>),
    Takeover {
        intervention_id: EventId,
        operator_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    Release {
        intervention_id: EventId,
        operator_id: String,
        reason: ReleaseReason,
    },
    Command {
        command_id: EventId,
        operator_id: String,
        command: Command,
    },
    /// The renderer acknowledged a command or an emergency stop.
    CommandAck {
        command_id: EventId,
        latency_ms: u64,
    },
    Suggestion {
        intervention_id: EventId,
        operator_id: String,
        text: String,
    },
    Correction {
        intervention_id: EventId,
        operator_id: String,
        response_id: EventId,
        text: String,
    },
    EmergencyStop {
        intervention_id: EventId,
        operator_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    Metrics {
        metrics: Box<RendererMetrics>,
    },
    Alert {
        alert: Box<Alert>,
    },
    AlertAck {
        alert_id: EventId,
        by: String,
    },
    /// An app-defined event (job progress, state-machine transitions,
    /// webhook events...).
    Custom {
        name: String,
        /// Left out when `all` (what receivers assume without it).
        #[serde(default, skip_serializing_if = "CustomAudience::is_all")]
        audience: CustomAudience,
        // Boxed: inline it would make every event, of every kind, 32
        // bytes larger in each session's history.
        #[serde(default)]
        data: Box<Value>,
        /// Who published it: the subject of the renderer's or operator's
        /// token for a `publish` frame, or the API key's name for
        /// `POST /v1/sessions/{id}/events`.
        from: String,
    },
    /// A job reporting into this stream was created or changed
    /// (`docs/JOBS.md`): its whole state after the change.
    Job {
        // Boxed: a job is several times the size of most events.
        job: Box<crate::protocol::job::Job>,
        /// `all` in a job's own stream (only its owner and operators may
        /// join that); `operators` in a presentation session.
        #[serde(default, skip_serializing_if = "CustomAudience::is_all")]
        audience: CustomAudience,
    },
}

impl Event {
    /// Who receives this event. The one place the role views are defined.
    pub fn audience(&self) -> Audience {
        match self {
            Event::Created { .. }
            | Event::Lifecycle { .. }
            | Event::State { .. }
            | Event::Counters { .. }
            | Event::Response(_)
            | Event::Correction { .. } => Audience::ALL,
            Event::Context { .. }
            | Event::Presence { .. }
            | Event::Renderer { .. }
            | Event::Question { .. }
            | Event::Takeover { .. }
            | Event::Release { .. }
            | Event::Command { .. }
            | Event::Suggestion { .. }
            | Event::EmergencyStop { .. } => Audience::STAFF,
            Event::ResponseHeld(_)
            | Event::CommandAck { .. }
            | Event::Metrics { .. }
            | Event::Alert { .. }
            | Event::AlertAck { .. } => Audience::OPERATORS,
            Event::Custom { audience, .. } | Event::Job { audience, .. } => (*audience).into(),
        }
    }

    /// Kinds a slow consumer may skip to the latest value of, because each
    /// one carries the whole picture rather than a change.
    pub fn conflation_slot(&self) -> Option<u8> {
        match self {
            Event::State { .. } => Some(0),
            Event::Context { .. } => Some(1),
            Event::Metrics { .. } => Some(2),
            Event::Counters { .. } => Some(3),
            _ => None,
        }
    }

    /// Stable lowercase name, used for metrics labels and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Created { .. } => "created",
            Event::Lifecycle { .. } => "lifecycle",
            Event::State { .. } => "state",
            Event::Context { .. } => "context",
            Event::Presence { .. } => "presence",
            Event::Counters { .. } => "counters",
            Event::Renderer { .. } => "renderer",
            Event::Question { .. } => "question",
            Event::Response(_) => "response",
            Event::ResponseHeld(_) => "response_held",
            Event::Takeover { .. } => "takeover",
            Event::Release { .. } => "release",
            Event::Command { .. } => "command",
            Event::CommandAck { .. } => "command_ack",
            Event::Suggestion { .. } => "suggestion",
            Event::Correction { .. } => "correction",
            Event::EmergencyStop { .. } => "emergency_stop",
            Event::Metrics { .. } => "metrics",
            Event::Alert { .. } => "alert",
            Event::AlertAck { .. } => "alert_ack",
            Event::Custom { .. } => "custom",
            Event::Job { .. } => "job",
        }
    }
}

/// `(epoch, seq)`: where a client is in a session's stream.
#[derive(
    Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize, JsonSchema, utoipa::ToSchema,
)]
pub struct StreamPosition {
    pub epoch: crate::ids::Epoch,
    #[schema(value_type = u64)]
    pub seq: Seq,
}

#[cfg(test)]
mod tests {
    use super::*;
    use SessionStatus::*;

    #[test]
    fn lifecycle_table_matches_the_documented_graph() {
        let legal = [
            (Created, Starting),
            (Created, Stopping),
            (Starting, Active),
            (Starting, Stopping),
            (Starting, Failed),
            (Active, Paused),
            (Active, Stopping),
            (Active, Failed),
            (Paused, Active),
            (Paused, Stopping),
            (Paused, Failed),
            (Stopping, Stopped),
            (Stopping, Failed),
        ];
        for from in SessionStatus::ALL {
            for to in SessionStatus::ALL {
                assert_eq!(
                    from.can_become(to),
                    legal.contains(&(from, to)),
                    "{from:?} -> {to:?}"
                );
            }
        }
    }

    #[test]
    fn participants_never_see_staff_kinds() {
        let op = || "op".to_owned();
        let hidden = [
            Event::Suggestion {
                intervention_id: EventId::new(),
                operator_id: op(),
                text: "x".into(),
            },
            Event::Metrics {
                metrics: Box::default(),
            },
            Event::AlertAck {
                alert_id: EventId::new(),
                by: op(),
            },
        ];
        for e in hidden {
            assert!(!e.audience().includes(Role::Participant), "{}", e.kind());
            assert!(e.audience().includes(Role::Operator), "{}", e.kind());
        }
    }

    #[test]
    fn state_patch_tells_null_from_absent() {
        let p: StatePatch = serde_json::from_str(r#"{"current_topic":null}"#).unwrap();
        assert_eq!(p.current_topic, Some(None));
        let p: StatePatch = serde_json::from_str(r#"{}"#).unwrap();
        assert_eq!(p.current_topic, None);
    }
}
