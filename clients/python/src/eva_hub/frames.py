"""Builders for every client frame, so the SDK and apps never spell a frame
by hand. Optional fields are left out rather than sent as ``null``, as the
hub does itself. ``tests/test_schema.py`` validates what these build
against ``docs/protocol.schema.json``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from .types import (
    ListSessionsFrame,
    AckAlertFrame,
    ApproveFrame,
    AuthFrame,
    Command,
    CommandAckFrame,
    CommandFrame,
    ContextFrame,
    CorrectionFrame,
    CustomAudience,
    EmergencyStopFrame,
    JoinFrame,
    LeaveFrame,
    MetricsFrame,
    PingFrame,
    PublishFrame,
    QuestionFrame,
    ReleaseFrame,
    RendererMetrics,
    ResponseFrame,
    SessionStatus,
    StatePatch,
    StateFrame,
    StatusFrame,
    StreamPosition,
    SuggestionFrame,
    TakeoverFrame,
)


def new_id() -> str:
    """A frame id unique across reconnects *and* process restarts: the hub
    treats a known id as a resend, so a counter restarting at 1 would make
    it answer "duplicate" to a new question or response."""
    return uuid.uuid4().hex


def auth(token: str) -> AuthFrame:
    return {"type": "auth", "token": token}


def join(
    session: str,
    *,
    resume: StreamPosition | None = None,
    takeover: bool = False,
    name: str | None = None,
    compact: bool = False,
    echo: bool = True,
    id: str | None = None,
) -> JoinFrame:
    f: JoinFrame = {"type": "join", "session": session}
    if resume is not None:
        f["resume"] = resume
    if takeover:
        f["takeover"] = True
    if name is not None:
        f["name"] = name
    if compact:
        f["compact"] = True
    if not echo:
        f["echo"] = False
    if id is not None:
        f["id"] = id
    return f


def leave(session: str, *, id: str | None = None) -> LeaveFrame:
    f: LeaveFrame = {"type": "leave", "session": session}
    if id is not None:
        f["id"] = id
    return f


def state(session: str, patch: StatePatch, *, id: str | None = None) -> StateFrame:
    f: StateFrame = {"type": "state", "session": session, "state": patch}
    if id is not None:
        f["id"] = id
    return f


def context(session: str, ctx: dict[str, Any], *, id: str | None = None) -> ContextFrame:
    f: ContextFrame = {"type": "context", "session": session, "context": ctx}
    if id is not None:
        f["id"] = id
    return f


def metrics(session: str, m: RendererMetrics) -> MetricsFrame:
    return {"type": "metrics", "session": session, "metrics": m}


def status(session: str, to: SessionStatus, *, reason: str | None = None, id: str | None = None) -> StatusFrame:
    f: StatusFrame = {"type": "status", "session": session, "status": to}
    if reason is not None:
        f["reason"] = reason
    if id is not None:
        f["id"] = id
    return f


def response(
    session: str,
    id: str,
    text: str,
    *,
    question_id: str | None = None,
    confidence: float = 1.0,
    response_time_ms: int = 0,
    intent: str | None = None,
    knowledge_sources: Iterable[str] = (),
    command_id: str | None = None,
) -> ResponseFrame:
    f: ResponseFrame = {
        "type": "response",
        "session": session,
        "id": id,
        "text": text,
        "confidence": float(confidence),
        "response_time_ms": int(response_time_ms),
    }
    if question_id is not None:
        f["question_id"] = question_id
    if intent is not None:
        f["intent"] = intent
    sources = list(knowledge_sources)
    if sources:
        f["knowledge_sources"] = sources
    if command_id is not None:
        f["command_id"] = command_id
    return f


def command_ack(session: str, command_id: str) -> CommandAckFrame:
    return {"type": "command_ack", "session": session, "command_id": command_id}


def question(session: str, id: str, text: str) -> QuestionFrame:
    return {"type": "question", "session": session, "id": id, "text": text}


def takeover(session: str, *, reason: str | None = None, id: str | None = None) -> TakeoverFrame:
    f: TakeoverFrame = {"type": "takeover", "session": session}
    if reason is not None:
        f["reason"] = reason
    if id is not None:
        f["id"] = id
    return f


def release(session: str, *, id: str | None = None) -> ReleaseFrame:
    f: ReleaseFrame = {"type": "release", "session": session}
    if id is not None:
        f["id"] = id
    return f


def command(session: str, id: str, cmd: Command) -> CommandFrame:
    return {"type": "command", "session": session, "id": id, "command": cmd}


def suggestion(session: str, id: str, text: str) -> SuggestionFrame:
    return {"type": "suggestion", "session": session, "id": id, "text": text}


def correction(session: str, id: str, response_id: str, text: str) -> CorrectionFrame:
    return {"type": "correction", "session": session, "id": id, "response_id": response_id, "text": text}


def emergency_stop(session: str, id: str, *, reason: str | None = None) -> EmergencyStopFrame:
    f: EmergencyStopFrame = {"type": "emergency_stop", "session": session, "id": id}
    if reason is not None:
        f["reason"] = reason
    return f


def approve(session: str, response_id: str, *, id: str | None = None) -> ApproveFrame:
    f: ApproveFrame = {"type": "approve", "session": session, "response_id": response_id}
    if id is not None:
        f["id"] = id
    return f


def ack_alert(session: str, alert_id: str, *, id: str | None = None) -> AckAlertFrame:
    f: AckAlertFrame = {"type": "ack_alert", "session": session, "alert_id": alert_id}
    if id is not None:
        f["id"] = id
    return f


def publish(
    session: str,
    name: str,
    data: Any = None,
    *,
    audience: CustomAudience = "all",
    id: str | None = None,
) -> PublishFrame:
    f: PublishFrame = {"type": "publish", "session": session, "name": name, "audience": audience}
    if data is not None:
        f["data"] = data
    if id is not None:
        f["id"] = id
    return f


def list_sessions(
    *,
    status: SessionStatus | None = None,
    include_ended: bool = False,
    limit: int | None = None,
    id: str | None = None,
) -> ListSessionsFrame:
    f: ListSessionsFrame = {"type": "list_sessions"}
    if status is not None:
        f["status"] = status
    if include_ended:
        f["include_ended"] = True
    if limit is not None:
        f["limit"] = limit
    if id is not None:
        f["id"] = id
    return f


def ping(nonce: int | None = None) -> PingFrame:
    f: PingFrame = {"type": "ping"}
    if nonce is not None:
        f["nonce"] = nonce
    return f
