"""The wire model of protocol ``eva.v1``: every client frame, server frame
and event, as ``TypedDict``.

Frames are decoded into plain dicts and handed to your code as they are:
no per-event objects are built on the hot path, and the type checker still
knows every field. ``tests/test_schema.py`` checks these types against
``docs/protocol.schema.json`` (every ``type``, every ``kind``, every field
and which ones are required), so they cannot drift from the hub.

Optional fields live in a ``total=False`` subclass of the required ones
(``NotRequired`` needs Python 3.11; this package supports 3.10). The hub
omits absent optional fields; a few may also be ``null``.
"""

from typing import Any, Literal, TypedDict, Union

# ---------------------------------------------------------------------------
# Closed sets
# ---------------------------------------------------------------------------

Role = Literal["renderer", "operator", "participant"]
SessionStatus = Literal["created", "starting", "active", "paused", "stopping", "stopped", "failed"]
CustomAudience = Literal["all", "staff", "operators", "renderer"]
PresenceChange = Literal["join", "leave"]
ReleaseReason = Literal["released", "expired", "session_ended"]
DiscontinuityReason = Literal["epoch_changed", "history_trimmed", "position_ahead"]
AlertType = Literal["renderer_heartbeat_lost", "emergency_stop_unacknowledged", "metric_threshold", "webhook_disabled"]
Severity = Literal["info", "warning", "error", "critical"]
# `completed`, `failed` and `cancelled` are terminal: a finished job does
# not change again.
JobStatus = Literal["pending", "processing", "completed", "failed", "cancelled"]
ErrorCode = Literal[
    "bad_frame",
    "unknown_type",
    "invalid",
    "unauthorized",
    "token_expired",
    "forbidden",
    "not_found",
    "not_joined",
    "already_joined",
    "renderer_active",
    "stale_renderer",
    "illegal_transition",
    "conflict",
    "not_controller",
    "unknown_reference",
    "session_ended",
    "rate_limited",
    "quota_exceeded",
    "backlog_full",
    "unavailable",
    "internal",
]

# ---------------------------------------------------------------------------
# Shared models
# ---------------------------------------------------------------------------


class StreamPosition(TypedDict):
    """``(epoch, seq)``: where a client is in a session's stream."""

    epoch: str
    seq: int


class StatePatch(TypedDict, total=False):
    """What a renderer may change; absent fields are kept, ``current_topic:
    None`` clears the topic."""

    current_slide: int | None
    presentation_mode: str | None
    is_speaking: bool | None
    awaiting_questions: bool | None
    current_topic: str | None


class SessionState(TypedDict):
    """The whole session state, as every ``state`` event carries it."""

    current_slide: int
    presentation_mode: str
    is_speaking: bool
    awaiting_questions: bool
    operator_connected: bool
    current_topic: str | None
    last_interaction: int


class StageLatencies(TypedDict, total=False):
    stt_ms: float | None
    llm_ms: float | None
    tts_ms: float | None
    total_ms: float | None


class RendererMetrics(TypedDict, total=False):
    """One metrics report; usages are fractions in [0, 1]."""

    latency_ms: float | None
    cpu_usage: float | None
    gpu_usage: float | None
    memory_usage: float | None
    fps: float | None
    stages: StageLatencies
    component: str | None


class Counters(TypedDict):
    participant_count: int
    questions_received: int
    operator_interventions: int
    error_count: int


class _MemberRequired(TypedDict):
    id: str
    role: Role


class Member(_MemberRequired, total=False):
    name: str | None


class _PresenceViewRequired(TypedDict):
    participant_count: int


class PresenceView(_PresenceViewRequired, total=False):
    members: list[Member] | None
    truncated: bool


class ControlView(TypedDict):
    controller: str | None
    renderer_connected: bool
    renderer_fence: int


class _AlertRequired(TypedDict):
    alert_id: str
    alert_type: AlertType
    severity: Severity
    title: str
    message: str
    metadata: Any
    created_at: int


class Alert(_AlertRequired, total=False):
    component: str | None


class _ResponseBodyRequired(TypedDict):
    response_id: str
    text: str
    confidence: float
    response_time_ms: int
    knowledge_sources: list[str]


class ResponseBody(_ResponseBodyRequired, total=False):
    question_id: str | None
    intent: str | None
    command_id: str | None


class SayCommand(TypedDict):
    action: Literal["say"]
    text: str


class GotoSlideCommand(TypedDict):
    action: Literal["goto_slide"]
    slide: int


class PauseCommand(TypedDict):
    action: Literal["pause"]


class ResumeCommand(TypedDict):
    action: Literal["resume"]


Command = Union[SayCommand, GotoSlideCommand, PauseCommand, ResumeCommand]


# `type` is a field name here, so this one uses the functional syntax too.
_JobRequired = TypedDict(
    "_JobRequired",
    {
        "id": str,
        "tenant": str,
        "type": str,
        "status": JobStatus,
        "progress": int,
        "stream": str,
        "metadata": dict[str, Any],
        "created_at": str,
        "updated_at": str,
    },
)


class Job(_JobRequired, total=False):
    """Background work with live progress (``docs/JOBS.md``), as REST
    answers, ``job`` events and snapshots all carry it: the whole job, so
    the latest one seen replaces any earlier one. ``progress`` is 0-100
    and never goes down; ``stream`` is the session to join to watch it.
    Times are RFC 3339 strings (``created_at``, ``updated_at``,
    ``started_at`` once it left ``pending``, ``completed_at``,
    ``failed_at`` for failed or cancelled)."""

    owner: str | None
    session: str | None
    result: Any
    error: Any
    started_at: str | None
    completed_at: str | None
    failed_at: str | None


# ---------------------------------------------------------------------------
# Client frames (what the SDK sends)
# ---------------------------------------------------------------------------


class AuthFrame(TypedDict):
    type: Literal["auth"]
    token: str


class _JoinFrameRequired(TypedDict):
    type: Literal["join"]
    session: str


class JoinFrame(_JoinFrameRequired, total=False):
    resume: StreamPosition | None
    takeover: bool
    name: str | None
    # True: this session's events come as compact event frames
    # (``CompactEventFrame``), named by the ``alias`` of ``joined``.
    compact: bool
    # False: the hub does not send the events this role and subject
    # published (its frames are still acked).
    echo: bool
    id: str | None


class _LeaveFrameRequired(TypedDict):
    type: Literal["leave"]
    session: str


class LeaveFrame(_LeaveFrameRequired, total=False):
    id: str | None


class _StateFrameRequired(TypedDict):
    type: Literal["state"]
    session: str
    state: StatePatch


class StateFrame(_StateFrameRequired, total=False):
    id: str | None


class _ContextFrameRequired(TypedDict):
    type: Literal["context"]
    session: str
    context: Any


class ContextFrame(_ContextFrameRequired, total=False):
    id: str | None


class MetricsFrame(TypedDict):
    """No ``id``: metrics are conflated and never acknowledged."""

    type: Literal["metrics"]
    session: str
    metrics: RendererMetrics


class _StatusFrameRequired(TypedDict):
    type: Literal["status"]
    session: str
    status: SessionStatus


class StatusFrame(_StatusFrameRequired, total=False):
    reason: str | None
    id: str | None


class _ResponseFrameRequired(TypedDict):
    type: Literal["response"]
    session: str
    id: str
    text: str
    confidence: float
    response_time_ms: int


class ResponseFrame(_ResponseFrameRequired, total=False):
    question_id: str | None
    intent: str | None
    knowledge_sources: list[str]
    command_id: str | None


class CommandAckFrame(TypedDict):
    """No ``id``: acknowledges a command or an emergency stop."""

    type: Literal["command_ack"]
    session: str
    command_id: str


class QuestionFrame(TypedDict):
    type: Literal["question"]
    session: str
    id: str
    text: str


class _TakeoverFrameRequired(TypedDict):
    type: Literal["takeover"]
    session: str


class TakeoverFrame(_TakeoverFrameRequired, total=False):
    reason: str | None
    id: str | None


class _ReleaseFrameRequired(TypedDict):
    type: Literal["release"]
    session: str


class ReleaseFrame(_ReleaseFrameRequired, total=False):
    id: str | None


class CommandFrame(TypedDict):
    type: Literal["command"]
    session: str
    id: str
    command: Command


class SuggestionFrame(TypedDict):
    type: Literal["suggestion"]
    session: str
    id: str
    text: str


class CorrectionFrame(TypedDict):
    type: Literal["correction"]
    session: str
    id: str
    response_id: str
    text: str


class _EmergencyStopFrameRequired(TypedDict):
    type: Literal["emergency_stop"]
    session: str
    id: str


class EmergencyStopFrame(_EmergencyStopFrameRequired, total=False):
    reason: str | None


class _ApproveFrameRequired(TypedDict):
    type: Literal["approve"]
    session: str
    response_id: str


class ApproveFrame(_ApproveFrameRequired, total=False):
    id: str | None


class _AckAlertFrameRequired(TypedDict):
    type: Literal["ack_alert"]
    session: str
    alert_id: str


class AckAlertFrame(_AckAlertFrameRequired, total=False):
    id: str | None


class _PublishFrameRequired(TypedDict):
    type: Literal["publish"]
    session: str
    name: str


class PublishFrame(_PublishFrameRequired, total=False):
    audience: CustomAudience
    data: Any
    id: str | None


class _ListSessionsFrameRequired(TypedDict):
    type: Literal["list_sessions"]


class ListSessionsFrame(_ListSessionsFrameRequired, total=False):
    status: SessionStatus | None
    include_ended: bool
    limit: int | None
    id: str | None


class _PingFrameRequired(TypedDict):
    type: Literal["ping"]


class PingFrame(_PingFrameRequired, total=False):
    nonce: int | None


ClientFrame = Union[
    AuthFrame,
    JoinFrame,
    LeaveFrame,
    StateFrame,
    ContextFrame,
    MetricsFrame,
    StatusFrame,
    ResponseFrame,
    CommandAckFrame,
    QuestionFrame,
    TakeoverFrame,
    ReleaseFrame,
    CommandFrame,
    SuggestionFrame,
    CorrectionFrame,
    EmergencyStopFrame,
    ApproveFrame,
    AckAlertFrame,
    PublishFrame,
    ListSessionsFrame,
    PingFrame,
]

# ---------------------------------------------------------------------------
# Events (the ``event`` of an ``event`` frame), discriminated by ``kind``
# ---------------------------------------------------------------------------


class CreatedEvent(TypedDict):
    kind: Literal["created"]
    name: str | None


class _LifecycleEventRequired(TypedDict):
    kind: Literal["lifecycle"]
    status: SessionStatus
    previous: SessionStatus


class LifecycleEvent(_LifecycleEventRequired, total=False):
    reason: str | None
    by: str | None


class StateEvent(TypedDict):
    kind: Literal["state"]
    state: SessionState


class ContextEvent(TypedDict):
    kind: Literal["context"]
    context: Any


class PresenceEvent(TypedDict):
    kind: Literal["presence"]
    change: PresenceChange
    member: Member
    participant_count: int


class CountersEvent(TypedDict):
    kind: Literal["counters"]
    counters: Counters


class _RendererEventRequired(TypedDict):
    kind: Literal["renderer"]
    connected: bool
    fence: int


class RendererEvent(_RendererEventRequired, total=False):
    renderer_id: str | None


class _QuestionEventRequired(TypedDict):
    kind: Literal["question"]
    question_id: str
    participant_id: str
    text: str


class QuestionEvent(_QuestionEventRequired, total=False):
    participant_name: str | None


class _ResponseEventRequired(_ResponseBodyRequired):
    kind: Literal["response"]


class ResponseEvent(_ResponseEventRequired, total=False):
    question_id: str | None
    intent: str | None
    command_id: str | None


class _ResponseHeldEventRequired(_ResponseBodyRequired):
    kind: Literal["response_held"]


class ResponseHeldEvent(_ResponseHeldEventRequired, total=False):
    """A renderer response held back during a takeover (operators only)."""

    question_id: str | None
    intent: str | None
    command_id: str | None


class _TakeoverEventRequired(TypedDict):
    kind: Literal["takeover"]
    intervention_id: str
    operator_id: str


class TakeoverEvent(_TakeoverEventRequired, total=False):
    reason: str | None


class ReleaseEvent(TypedDict):
    kind: Literal["release"]
    intervention_id: str
    operator_id: str
    reason: ReleaseReason


class CommandEvent(TypedDict):
    kind: Literal["command"]
    command_id: str
    operator_id: str
    command: Command


class CommandAckEvent(TypedDict):
    kind: Literal["command_ack"]
    command_id: str
    latency_ms: int


class SuggestionEvent(TypedDict):
    kind: Literal["suggestion"]
    intervention_id: str
    operator_id: str
    text: str


class CorrectionEvent(TypedDict):
    kind: Literal["correction"]
    intervention_id: str
    operator_id: str
    response_id: str
    text: str


class _EmergencyStopEventRequired(TypedDict):
    kind: Literal["emergency_stop"]
    intervention_id: str
    operator_id: str


class EmergencyStopEvent(_EmergencyStopEventRequired, total=False):
    reason: str | None


class MetricsEvent(TypedDict):
    kind: Literal["metrics"]
    metrics: RendererMetrics


class AlertEvent(TypedDict):
    kind: Literal["alert"]
    alert: Alert


class AlertAckEvent(TypedDict):
    kind: Literal["alert_ack"]
    alert_id: str
    by: str


# `from` is a Python keyword, so this one uses the functional syntax; read
# it as ``event["from"]``. ``audience`` is left out when it is ``"all"``
# (read it as ``event.get("audience", "all")``).
_CustomEventRequired = TypedDict(
    "_CustomEventRequired",
    {
        "kind": Literal["custom"],
        "name": str,
        "data": Any,
        "from": str,
    },
)


class CustomEvent(_CustomEventRequired, total=False):
    audience: CustomAudience


class _JobEventRequired(TypedDict):
    kind: Literal["job"]
    job: Job


class JobEvent(_JobEventRequired, total=False):
    """A job reporting into this stream was created or changed: its whole
    state after the change. ``audience`` is left out when it is ``"all"``
    (a job's own stream); ``operators`` by default in a presentation."""

    audience: CustomAudience

Event = Union[
    CreatedEvent,
    LifecycleEvent,
    StateEvent,
    ContextEvent,
    PresenceEvent,
    CountersEvent,
    RendererEvent,
    QuestionEvent,
    ResponseEvent,
    ResponseHeldEvent,
    TakeoverEvent,
    ReleaseEvent,
    CommandEvent,
    CommandAckEvent,
    SuggestionEvent,
    CorrectionEvent,
    EmergencyStopEvent,
    MetricsEvent,
    AlertEvent,
    AlertAckEvent,
    CustomEvent,
    JobEvent,
]

EventKind = Literal[
    "created",
    "lifecycle",
    "state",
    "context",
    "presence",
    "counters",
    "renderer",
    "question",
    "response",
    "response_held",
    "takeover",
    "release",
    "command",
    "command_ack",
    "suggestion",
    "correction",
    "emergency_stop",
    "metrics",
    "alert",
    "alert_ack",
    "custom",
    "job",
]

# ---------------------------------------------------------------------------
# Server frames (what the hub sends), discriminated by ``type``
# ---------------------------------------------------------------------------


class WelcomeFrame(TypedDict):
    type: Literal["welcome"]
    protocol: str
    conn_id: int
    role: Role
    subject: str
    tenant: str
    server_time: int
    heartbeat_ms: int
    max_message_bytes: int


class _JoinedFrameRequired(TypedDict):
    type: Literal["joined"]
    session: str
    role: Role


class JoinedFrame(_JoinedFrameRequired, total=False):
    fence: int | None
    # With ``compact``: the number this connection's compact event frames
    # name the session by (``e``); valid for this connection only.
    alias: int | None
    id: str | None


class _OpenQuestionRequired(TypedDict):
    question_id: str
    participant_id: str
    text: str
    asked_at: int


class OpenQuestion(_OpenQuestionRequired, total=False):
    """A question no response answers yet (snapshot ``questions``);
    ``asked_at`` in Unix milliseconds."""

    participant_name: str | None


class _PendingCommandViewRequired(TypedDict):
    command_id: str
    operator_id: str
    emergency: bool
    issued_at: int


class PendingCommandView(_PendingCommandViewRequired, total=False):
    """A command, or an emergency stop (``emergency``: ``command_id`` is
    its ``intervention_id``), the renderer has not acknowledged (snapshot
    ``pending_commands``); ``issued_at`` in Unix milliseconds."""

    command: Command | None
    reason: str | None


class _SnapshotRequired(TypedDict):
    session: str
    epoch: str
    seq: int
    status: SessionStatus
    state: SessionState
    counters: Counters
    presence: PresenceView


class Snapshot(_SnapshotRequired, total=False):
    """Everything needed to render a session at ``seq``; staff-only parts
    are absent for participants."""

    name: str | None
    control: ControlView | None
    context: Any
    metrics: RendererMetrics | None
    alerts: list[Alert] | None
    held_responses: list[ResponseBody] | None
    questions: list[OpenQuestion] | None
    pending_commands: list[PendingCommandView] | None
    # Jobs reporting into this stream that the role may see, least
    # recently changed first; absent when none.
    jobs: list[Job] | None


class _SnapshotFrameRequired(_SnapshotRequired):
    type: Literal["snapshot"]


class SnapshotFrame(_SnapshotFrameRequired, total=False):
    name: str | None
    control: ControlView | None
    context: Any
    metrics: RendererMetrics | None
    alerts: list[Alert] | None
    held_responses: list[ResponseBody] | None
    questions: list[OpenQuestion] | None
    pending_commands: list[PendingCommandView] | None
    jobs: list[Job] | None


ResumedFrame = TypedDict(
    "ResumedFrame",
    {
        "type": Literal["resumed"],
        "session": str,
        "epoch": str,
        "from": int,
        "to": int,
    },
)


class DiscontinuityFrame(TypedDict):
    type: Literal["discontinuity"]
    session: str
    reason: DiscontinuityReason
    epoch: str
    seq: int


class _EventFrameRequired(TypedDict):
    type: Literal["event"]
    session: str
    seq: int
    event: Event


class EventFrame(_EventFrameRequired, total=False):
    """An event as handlers receive it. ``ts`` (when the hub accepted the
    event, ms since the epoch) is always on the wire's ``event`` frames;
    events of a session joined with ``compact`` come without it (the SDK
    builds this frame from a ``CompactEventFrame``, which has no ``ts``).
    The schema has ``ts`` required: ``tests/test_schema.py`` allows this
    one difference."""

    ts: int


class CompactEventFrame(TypedDict):
    """An event of a session joined with ``compact: true``, as the hub
    sends it: ``e`` (the session's ``alias`` from ``joined``) and ``q``
    (the event's ``seq``), then the event's own fields (``kind`` and the
    fields of that kind, as in ``Event``). No ``type``, ``session`` or
    ``ts``. The SDK turns it into an ``EventFrame`` before any handler
    sees it."""

    e: int
    q: int


class _UrgentFrameRequired(TypedDict):
    type: Literal["urgent"]
    session: str
    seq: int
    intervention_id: str


class UrgentFrame(_UrgentFrameRequired, total=False):
    reason: str | None


class _LeftFrameRequired(TypedDict):
    type: Literal["left"]
    session: str


class LeftFrame(_LeftFrameRequired, total=False):
    id: str | None


class _AckFrameRequired(TypedDict):
    type: Literal["ack"]
    id: str


class AckFrame(_AckFrameRequired, total=False):
    """The hub's answer to a frame with an ``id``: sent after the frame's
    effect is committed. ``ref_id`` is what was created (question id,
    response id, intervention id...); ``duplicate`` when the id had been
    seen before and nothing new was created."""

    session: str | None
    seq: int | None
    ref_id: str | None
    duplicate: bool


class _ErrorFrameRequired(TypedDict):
    type: Literal["error"]
    code: ErrorCode
    message: str


class ErrorFrame(_ErrorFrameRequired, total=False):
    id: str | None
    session: str | None
    retry_after_ms: int | None


class _PongFrameRequired(TypedDict):
    type: Literal["pong"]
    server_time: int


class PongFrame(_PongFrameRequired, total=False):
    nonce: int | None


class _SessionSummaryRequired(TypedDict):
    session: str
    status: SessionStatus
    created_at: int
    participant_count: int
    questions_received: int
    renderer_connected: bool
    is_speaking: bool
    current_slide: int
    open_alerts: int


class SessionSummary(_SessionSummaryRequired, total=False):
    """One line of a ``session_list``: a console's overview of a session."""

    name: str | None
    controller: str | None


class _SessionListFrameRequired(TypedDict):
    type: Literal["session_list"]
    sessions: list[SessionSummary]


class SessionListFrame(_SessionListFrameRequired, total=False):
    id: str | None


ServerFrame = Union[
    WelcomeFrame,
    JoinedFrame,
    SnapshotFrame,
    ResumedFrame,
    DiscontinuityFrame,
    EventFrame,
    UrgentFrame,
    LeftFrame,
    AckFrame,
    ErrorFrame,
    PongFrame,
    SessionListFrame,
]

ServerFrameType = Literal[
    "welcome",
    "joined",
    "snapshot",
    "resumed",
    "discontinuity",
    "event",
    "urgent",
    "left",
    "ack",
    "error",
    "pong",
    "session_list",
]
