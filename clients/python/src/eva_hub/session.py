"""One session as a client sees it: the last snapshot with every later
event folded in.

The hub sends a ``snapshot`` after ``join`` (and after a
``discontinuity``), then events in one order with strictly increasing
``seq``. Folding them gives the current status, slide, speaking flag,
presence, who controls the session, open questions, open alerts and held
responses. What a role cannot see stays empty (participants get no
members, alerts or held responses).

For the renderer and operators the snapshot also lists the open
questions (no response answers them yet) and the pending commands
(commands and emergency stops the renderer has not acknowledged); events
keep both current.

Jobs (``docs/JOBS.md``) reporting into the session come the same way: the
snapshot lists those the role may see, and each ``job`` event carries the
whole job after a change, so ``jobs`` holds every job as its latest event
left it. A repeated event after a resume is skipped by its ``seq`` like
any other, and a discontinuity's fresh snapshot replaces them all.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, cast

from .types import (
    Alert,
    Counters,
    EmergencyStopEvent,
    Event,
    EventFrame,
    Job,
    Member,
    OpenQuestion,
    PendingCommandView,
    RendererMetrics,
    ResponseBody,
    SessionState,
    SessionStatus,
    Snapshot,
    StreamPosition,
    TakeoverEvent,
)

_TERMINAL = ("stopped", "failed")


def _empty_state() -> SessionState:
    return {
        "current_slide": 0,
        "presentation_mode": "auto",
        "is_speaking": False,
        "awaiting_questions": False,
        "operator_connected": False,
        "current_topic": None,
        "last_interaction": 0,
    }


class SessionView:
    """The folded state of one joined session. Read it any time; the SDK
    updates it before calling your handlers for an event."""

    def __init__(self, session: str) -> None:
        self.id = session
        self._reset()

    def _reset(self) -> None:
        # Position: the epoch of the stream and the last seq applied. Resume
        # sends exactly this.
        self.epoch: str | None = None
        self.seq = 0
        self.ready = False
        self.status: SessionStatus = "created"
        self.name: str | None = None
        self.state: SessionState = _empty_state()
        self.counters: Counters = {
            "participant_count": 0,
            "questions_received": 0,
            "operator_interventions": 0,
            "error_count": 0,
        }
        self.members: dict[str, Member] = {}
        self.members_truncated = False
        self.controller: str | None = None
        self.takeover: TakeoverEvent | None = None
        self.renderer_connected = False
        self.renderer_fence = 0
        self.renderer_id: str | None = None
        self.context: Any = None
        self.metrics: RendererMetrics | None = None
        self.alerts: dict[str, Alert] = {}
        self.held_responses: dict[str, ResponseBody] = {}
        # Oldest first (dicts keep insertion order).
        self.open_questions: dict[str, OpenQuestion] = {}
        self.pending_commands: dict[str, PendingCommandView] = {}
        # By job id, least recently changed first (as the snapshot lists
        # them). Finished jobs stay: their final state is what a watcher
        # came for.
        self.jobs: dict[str, Job] = {}
        self.last_emergency_stop: EmergencyStopEvent | None = None

    # -- convenience views ------------------------------------------------

    @property
    def position(self) -> StreamPosition | None:
        """Where to resume from, once a snapshot has been applied."""
        if self.epoch is None:
            return None
        return {"epoch": self.epoch, "seq": self.seq}

    @property
    def slide(self) -> int:
        return self.state["current_slide"]

    @property
    def speaking(self) -> bool:
        return self.state["is_speaking"]

    @property
    def mode(self) -> str:
        return self.state["presentation_mode"]

    @property
    def participant_count(self) -> int:
        return self.counters["participant_count"]

    @property
    def taken_over(self) -> bool:
        return self.controller is not None

    @property
    def ended(self) -> bool:
        return self.status in _TERMINAL

    def __repr__(self) -> str:
        return (
            f"SessionView(id={self.id!r}, status={self.status!r}, seq={self.seq}, "
            f"slide={self.slide}, speaking={self.speaking}, controller={self.controller!r})"
        )

    # -- folding -------------------------------------------------------------

    def apply_snapshot(self, snap: Snapshot) -> None:
        """Replaces everything with the snapshot (also after a
        discontinuity: the old state is discarded, not merged)."""
        self._reset()
        self.epoch = snap["epoch"]
        self.seq = snap["seq"]
        self.ready = True
        self.status = snap["status"]
        self.name = snap.get("name")
        self.state = dict(snap["state"])  # type: ignore[assignment]
        self.counters = dict(snap["counters"])  # type: ignore[assignment]
        presence = snap["presence"]
        self.counters["participant_count"] = presence["participant_count"]
        for m in presence.get("members") or ():
            self.members[_member_key(m)] = m
        self.members_truncated = bool(presence.get("truncated", False))
        control = snap.get("control")
        if control is not None:
            self.controller = control["controller"]
            self.renderer_connected = control["renderer_connected"]
            self.renderer_fence = control["renderer_fence"]
        self.context = snap.get("context")
        self.metrics = snap.get("metrics")
        for a in snap.get("alerts") or ():
            self.alerts[a["alert_id"]] = a
        for r in snap.get("held_responses") or ():
            self.held_responses[r["response_id"]] = r
        for q in snap.get("questions") or ():
            self.open_questions[q["question_id"]] = q
        for c in snap.get("pending_commands") or ():
            self.pending_commands[c["command_id"]] = c
        for job in snap.get("jobs") or ():
            self.jobs[job["id"]] = job

    def answered(self, question_id: str) -> None:
        """A response to the question was stored (the renderer's own acked
        ``respond``; a held one is not seen as an event by the renderer)."""
        self.open_questions.pop(question_id, None)

    def acknowledged(self, command_id: str) -> None:
        """The renderer acknowledged the command or stop (renderers do not
        see ``command_ack`` events; operators do)."""
        self.pending_commands.pop(command_id, None)

    def apply(self, frame: EventFrame) -> bool:
        """Folds one event frame. Returns False (and changes nothing) for an
        event at or before the current position, which is a repeat."""
        seq = frame["seq"]
        if seq <= self.seq:
            return False
        self.seq = seq
        event = frame["event"]
        fold = _FOLDS.get(event["kind"])
        if fold is not None:
            fold(self, event, frame.get("ts"))
        return True


def _at(ts: int | None) -> int:
    """The event's time: its ``ts``, or, for a compact event frame (which
    has none), this client's clock at receipt."""
    return int(time.time() * 1000) if ts is None else ts


def _member_key(m: Member) -> str:
    return f'{m["role"]}:{m["id"]}'


# One function per event kind that changes the view; kinds that change
# nothing (suggestion, correction, custom...) have none.


def _created(v: SessionView, e: Any, ts: int | None) -> None:
    v.name = e.get("name")


def _lifecycle(v: SessionView, e: Any, ts: int | None) -> None:
    v.status = e["status"]
    if v.ended:
        v.controller = None
        v.takeover = None
        v.held_responses.clear()


def _state(v: SessionView, e: Any, ts: int | None) -> None:
    v.state = e["state"]


def _context(v: SessionView, e: Any, ts: int | None) -> None:
    v.context = e["context"]


def _counters(v: SessionView, e: Any, ts: int | None) -> None:
    v.counters = e["counters"]


def _presence(v: SessionView, e: Any, ts: int | None) -> None:
    member: Member = e["member"]
    if e["change"] == "join":
        v.members[_member_key(member)] = member
    else:
        v.members.pop(_member_key(member), None)
    # Counters are a copy: a later `counters` event replaces them whole.
    v.counters = cast(Counters, {**v.counters, "participant_count": e["participant_count"]})


def _renderer(v: SessionView, e: Any, ts: int | None) -> None:
    v.renderer_connected = e["connected"]
    v.renderer_fence = e["fence"]
    v.renderer_id = e.get("renderer_id")


def _question(v: SessionView, e: Any, ts: int | None) -> None:
    q: OpenQuestion = {
        "question_id": e["question_id"],
        "participant_id": e["participant_id"],
        "text": e["text"],
        "asked_at": _at(ts),
    }
    if e.get("participant_name") is not None:
        q["participant_name"] = e["participant_name"]
    v.open_questions[e["question_id"]] = q


def _response(v: SessionView, e: Any, ts: int | None) -> None:
    qid = e.get("question_id")
    if qid is not None:
        v.open_questions.pop(qid, None)
    # An approved held response is published as a `response` with the same
    # response_id.
    v.held_responses.pop(e["response_id"], None)


def _response_held(v: SessionView, e: Any, ts: int | None) -> None:
    body = dict(e)
    del body["kind"]
    v.held_responses[e["response_id"]] = cast(ResponseBody, body)
    # A held response answers its question too (the hub's snapshots agree).
    qid = e.get("question_id")
    if qid is not None:
        v.open_questions.pop(qid, None)


def _takeover(v: SessionView, e: Any, ts: int | None) -> None:
    v.controller = e["operator_id"]
    v.takeover = e


def _release(v: SessionView, e: Any, ts: int | None) -> None:
    v.controller = None
    v.takeover = None
    # Held responses are discarded from the session on release.
    v.held_responses.clear()


def _command(v: SessionView, e: Any, ts: int | None) -> None:
    v.pending_commands[e["command_id"]] = {
        "command_id": e["command_id"],
        "operator_id": e["operator_id"],
        "emergency": False,
        "command": e["command"],
        "issued_at": _at(ts),
    }


def _command_ack(v: SessionView, e: Any, ts: int | None) -> None:
    v.pending_commands.pop(e["command_id"], None)


def _emergency_stop(v: SessionView, e: Any, ts: int | None) -> None:
    v.last_emergency_stop = e
    stop: PendingCommandView = {
        "command_id": e["intervention_id"],
        "operator_id": e["operator_id"],
        "emergency": True,
        "issued_at": _at(ts),
    }
    if e.get("reason") is not None:
        stop["reason"] = e["reason"]
    v.pending_commands.setdefault(e["intervention_id"], stop)


def _metrics(v: SessionView, e: Any, ts: int | None) -> None:
    v.metrics = e["metrics"]


def _alert(v: SessionView, e: Any, ts: int | None) -> None:
    alert: Alert = e["alert"]
    v.alerts[alert["alert_id"]] = alert


def _alert_ack(v: SessionView, e: Any, ts: int | None) -> None:
    v.alerts.pop(e["alert_id"], None)


def _job(v: SessionView, e: Any, ts: int | None) -> None:
    # The event is the whole job, not a delta: replace. Re-inserted so the
    # dict stays least recently changed first, the snapshot's order.
    job: Job = e["job"]
    v.jobs.pop(job["id"], None)
    v.jobs[job["id"]] = job


_FOLDS: dict[str, Callable[[SessionView, Event, "int | None"], None]] = {
    "created": _created,
    "lifecycle": _lifecycle,
    "state": _state,
    "context": _context,
    "counters": _counters,
    "presence": _presence,
    "renderer": _renderer,
    "question": _question,
    "response": _response,
    "response_held": _response_held,
    "takeover": _takeover,
    "release": _release,
    "command": _command,
    "command_ack": _command_ack,
    "emergency_stop": _emergency_stop,
    "metrics": _metrics,
    "alert": _alert,
    "alert_ack": _alert_ack,
    "job": _job,
}
