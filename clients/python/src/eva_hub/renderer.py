"""``Renderer``: the high-level client for an avatar pipeline (STT → LLM →
TTS, or a vendor SDK) driving one session.

It joins its session, reports state, metrics and answers, and calls your
handlers for questions, operator commands, takeovers and emergency stops.
What it does for you:

* emergency stop: the hub's ``urgent`` frame (sent ahead of everything
  queued) runs ``on_emergency_stop`` in a priority lane: no other handler
  is called until it returns. Before calling it, the tasks of async
  handlers still running (answers being generated) are cancelled. When it
  returns, the SDK sends ``command_ack`` with the ``intervention_id``. The
  same stop arriving again as an ``emergency_stop`` event (always, right
  after) is recognised and not handled twice;
* commands are acknowledged (``command_ack``) when ``on_command`` returns;
* after a snapshot (the first join, or a discontinuity after a long
  outage) it catches up on what is still waiting: the emergency stops the
  snapshot lists among ``pending_commands`` go to ``on_emergency_stop``
  first (and are acknowledged), then the other pending commands to
  ``on_command`` (acknowledged when it returns), and the open
  ``questions`` to ``on_question``; each at most once, whether it came as
  an event or in a snapshot;
* ``respond()`` fills in ``response_time_ms`` from when the question
  arrived, and is re-sent with the same id after a reconnect.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Optional, TypeVar

from .backoff import Backoff
from .client import Client, TokenProvider
from .codec import CodecName
from .dispatch import ErrorHook
from .handlers import EventHandler
from .session import SessionView
from .transport import AuthMode
from .types import (
    AckFrame,
    CommandEvent,
    CorrectionEvent,
    CustomAudience,
    EmergencyStopEvent,
    EventFrame,
    OpenQuestion,
    PendingCommandView,
    QuestionEvent,
    ReleaseEvent,
    RendererMetrics,
    SessionStatus,
    StageLatencies,
    StatePatch,
    SuggestionEvent,
    TakeoverEvent,
    UrgentFrame,
)


@dataclass(frozen=True)
class EmergencyStop:
    """An operator's emergency stop. ``operator_id`` is known only when
    the stop came as an event (after a reconnect), not from the urgent
    frame."""

    session: str
    seq: int
    intervention_id: str
    reason: str | None = None
    operator_id: str | None = None


E = TypeVar("E")
Handler = Callable[[E], Optional[Awaitable[object]]]

_UNSET: Any = object()
# Remembered question arrival times and handled stops; bounded, oldest out.
_REMEMBER = 4096


class Renderer:
    """Drives one session as its renderer.

    ``async with Renderer(url, token, session) as r:`` connects, joins (and
    reports ``active`` if the session is just starting), and closes on
    exit. ``await r.run()`` does the same and returns when the connection
    ends for good.

    ``compact`` (default ``True``): the session's events come as compact
    event frames (fewer bytes, less to decode). ``on_question``,
    ``on_command``, ``on_takeover``, ``on_release`` and
    ``on_emergency_stop`` get events only, so nothing they see changes; the
    frames ``on_suggestion`` and ``on_correction`` pass along have no
    ``ts``, and the view's ``asked_at`` / ``issued_at`` of questions and
    commands that arrive as events are this process's clock at receipt.
    ``echo=False``: the hub does not send back this renderer's own events
    (state, context, responses...), which saves their round trip; the view
    (``r.view``) then does not fold them either.
    """

    def __init__(
        self,
        url: str,
        token: str | TokenProvider,
        session: str,
        *,
        codec: CodecName = "msgpack",
        auth: AuthMode = "header",
        origin: str | None = None,
        takeover: bool = False,
        activate: bool = True,
        cancel_on_stop: bool = True,
        reconnect: Backoff | None = None,
        on_handler_error: ErrorHook | None = None,
        compact: bool = True,
        echo: bool = True,
    ) -> None:
        self.client = Client(
            url,
            token,
            codec=codec,
            auth=auth,
            origin=origin,
            reconnect=reconnect,
            on_handler_error=on_handler_error,
            compact=compact,
            echo=echo,
        )
        self.session_id = session
        self._takeover = takeover
        self._activate = activate
        self._cancel_on_stop = cancel_on_stop
        self.stopped = False
        self._started = False
        self._asked_at: OrderedDict[str, float] = OrderedDict()
        self._stops: OrderedDict[str, None] = OrderedDict()
        # Questions and commands handed to the handlers, so one that comes
        # again in a snapshot (still open, still pending) is not handled twice.
        self._questions_seen: OrderedDict[str, None] = OrderedDict()
        self._commands_seen: OrderedDict[str, None] = OrderedDict()
        self._question: Handler[QuestionEvent] | None = None
        self._command: Handler[CommandEvent] | None = None
        self._takeover_h: Handler[TakeoverEvent] | None = None
        self._release_h: Handler[ReleaseEvent] | None = None
        self._stop_h: Handler[EmergencyStop] | None = None
        c = self.client
        c.on_question(self._on_question)
        c.on_command(self._on_command)
        c.on_takeover(self._on_takeover)
        c.on_release(self._on_release)
        c.on_urgent(self._on_urgent)
        c.on_emergency_stop(self._on_stop_event)
        c.on_lifecycle(self._on_lifecycle)
        c.on_snapshot(self._on_snapshot)
        c.on_session_closed(self._on_session_closed)
        # Set when the hub refused to let us back into our session (a
        # re-join after a reconnect): the renderer has nothing left to do.
        self._session_error: BaseException | None = None

    # -- handlers (each usable as a decorator) --------------------------------

    def on_question(self, handler: Handler[QuestionEvent]) -> Handler[QuestionEvent]:
        """A participant asked: answer with ``respond(q["question_id"], text)``.
        Also gets the questions still open when the renderer (re)starts from
        a snapshot, and, when registered after the join, the open ones."""
        first = self._question is None
        self._question = handler
        view = self.client.sessions.get(self.session_id)
        if first and view is not None and view.ready:
            self._catch_up_questions(view)
        return handler

    def on_command(self, handler: Handler[CommandEvent]) -> Handler[CommandEvent]:
        """An operator's command (``say``, ``goto_slide``, ``pause``,
        ``resume``); acknowledged when the handler returns. Carry out a
        ``say`` with ``respond(None, text, command_id=cmd["command_id"])``:
        it reaches everyone even while the session is taken over. Also gets
        the commands still pending when the renderer (re)starts from a
        snapshot, and, when registered after the join, the pending ones."""
        first = self._command is None
        self._command = handler
        view = self.client.sessions.get(self.session_id)
        if first and view is not None and view.ready:
            self._catch_up_commands(view)
        return handler

    def on_takeover(self, handler: Handler[TakeoverEvent]) -> Handler[TakeoverEvent]:
        """An operator took control: your own answers are now held for the
        operator's approval (``respond`` still gets its ack)."""
        self._takeover_h = handler
        return handler

    def on_release(self, handler: Handler[ReleaseEvent]) -> Handler[ReleaseEvent]:
        self._release_h = handler
        return handler

    def on_emergency_stop(self, handler: Handler[EmergencyStop]) -> Handler[EmergencyStop]:
        """Stop speaking now. Runs before any other handler; acknowledged to
        the hub as soon as it returns."""
        self._stop_h = handler
        return handler

    def on_suggestion(self, handler: EventHandler[SuggestionEvent]) -> EventHandler[SuggestionEvent]:
        """An operator's suggestion, ``handler(event, frame)``."""
        return self.client.on_suggestion(handler)

    def on_correction(self, handler: EventHandler[CorrectionEvent]) -> EventHandler[CorrectionEvent]:
        """An operator corrected one of your responses, ``handler(event, frame)``."""
        return self.client.on_correction(handler)

    # -- lifecycle ---------------------------------------------------------------

    @property
    def session(self) -> SessionView:
        return self.client.session(self.session_id)

    @property
    def taken_over(self) -> bool:
        """True while an operator controls the session."""
        return self.client.session(self.session_id).taken_over

    @property
    def fence(self) -> int | None:
        """This renderer's fence (grows by one on every renderer join)."""
        return self.client.fence(self.session_id)

    async def start(self) -> SessionView:
        self._started = True
        await self.client.connect()
        view = await self.client.join(self.session_id, takeover=self._takeover)
        if self._activate and view.status in ("created", "starting"):
            await self.status("active")
        return view

    async def run(self) -> None:
        """Starts (if needed) and runs until the connection ends for good;
        raises the final error unless ``close()`` ended it."""
        if not self._started:
            await self.start()
        await self.wait_closed()

    async def wait_closed(self) -> None:
        """Returns when the renderer is closed; raises why, unless
        ``close()`` closed it: ``ConnectionClosed`` (4504 replaced, 4505
        session ended...), or the ``HubError`` that refused a re-join."""
        await self.client.wait_closed()
        if self._session_error is not None:
            raise self._session_error

    async def close(self) -> None:
        await self.client.close()

    async def __aenter__(self) -> Renderer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- what a renderer sends ------------------------------------------------

    async def state(
        self,
        *,
        slide: int | None = None,
        speaking: bool | None = None,
        mode: str | None = None,
        awaiting_questions: bool | None = None,
        topic: str | None = _UNSET,
    ) -> AckFrame:
        """Changes the given parts of the session state (``topic=None``
        clears the topic); the others are kept."""
        patch: StatePatch = {}
        if slide is not None:
            patch["current_slide"] = slide
        if speaking is not None:
            patch["is_speaking"] = speaking
        if mode is not None:
            patch["presentation_mode"] = mode
        if awaiting_questions is not None:
            patch["awaiting_questions"] = awaiting_questions
        if topic is not _UNSET:
            patch["current_topic"] = topic
        return await self.client.set_state(self.session_id, patch)

    async def metrics(
        self,
        *,
        stt_ms: float | None = None,
        llm_ms: float | None = None,
        tts_ms: float | None = None,
        total_ms: float | None = None,
        latency_ms: float | None = None,
        cpu: float | None = None,
        gpu: float | None = None,
        memory: float | None = None,
        fps: float | None = None,
        component: str | None = None,
    ) -> None:
        """Reports pipeline latencies and usage (fractions in [0, 1]).
        Not acknowledged; operators get the latest at most once a second."""
        m: RendererMetrics = {}
        stages: StageLatencies = {}
        for key, v in (("stt_ms", stt_ms), ("llm_ms", llm_ms), ("tts_ms", tts_ms), ("total_ms", total_ms)):
            if v is not None:
                stages[key] = float(v)  # type: ignore[literal-required]
        if stages:
            m["stages"] = stages
        for key2, v in (
            ("latency_ms", latency_ms),
            ("cpu_usage", cpu),
            ("gpu_usage", gpu),
            ("memory_usage", memory),
            ("fps", fps),
        ):
            if v is not None:
                m[key2] = float(v)  # type: ignore[literal-required]
        if component is not None:
            m["component"] = component
        await self.client.report_metrics(self.session_id, m)

    async def respond(
        self,
        question_id: str | None,
        text: str,
        *,
        confidence: float = 1.0,
        response_time_ms: int | None = None,
        intent: str | None = None,
        knowledge_sources: Iterable[str] = (),
        command_id: str | None = None,
        id: str | None = None,
    ) -> AckFrame:
        """Answers a question (or, with ``command_id``, carries out a
        ``say`` command). Returns the ack once the response is stored;
        ``ack["ref_id"]`` is the response id. While the session is taken
        over, a response without ``command_id`` is held for approval."""
        if response_time_ms is None:
            asked = self._asked_at.pop(question_id, None) if question_id else None
            response_time_ms = int((time.monotonic() - asked) * 1000) if asked is not None else 0
        return await self.client.respond(
            self.session_id,
            text,
            question_id=question_id,
            confidence=confidence,
            response_time_ms=response_time_ms,
            intent=intent,
            knowledge_sources=knowledge_sources,
            command_id=command_id,
            id=id,
        )

    async def status(self, status: SessionStatus, reason: str | None = None) -> AckFrame:
        """Reports ``starting``, ``active``, ``paused``, ``failed`` (with a
        reason), or ``stopped`` while the session is stopping."""
        return await self.client.set_status(self.session_id, status, reason=reason)

    async def context(self, ctx: dict[str, Any]) -> AckFrame:
        """Replaces the conversation context (operators see it)."""
        return await self.client.set_context(self.session_id, ctx)

    async def publish(self, name: str, data: Any = None, *, audience: CustomAudience = "all") -> AckFrame:
        return await self.client.publish(self.session_id, name, data, audience=audience)

    # -- internals -------------------------------------------------------------

    def _on_question(self, q: QuestionEvent, f: EventFrame) -> Awaitable[object] | None:
        return self._ask(q, time.monotonic())

    def _ask(self, q: QuestionEvent, asked: float) -> Awaitable[object] | None:
        h = self._question
        # Without a handler the question stays open: a handler registered
        # later gets it from the session's open questions.
        if h is None or not _first_time(self._questions_seen, q["question_id"]):
            return None
        self._asked_at[q["question_id"]] = asked
        if len(self._asked_at) > _REMEMBER:
            self._asked_at.popitem(last=False)
        return h(q)

    def _on_command(self, cmd: CommandEvent, f: EventFrame) -> Awaitable[None] | None:
        if not _first_time(self._commands_seen, cmd["command_id"]):
            return None
        return self._run_command(cmd)

    def _on_snapshot(self, view: SessionView) -> None:
        """Catches up on what the snapshot says is still waiting: stops
        first (priority lane), then commands, then questions, each in the
        order the hub lists them (oldest first)."""
        if view.id != self.session_id:
            return
        pending = list(view.pending_commands.values())
        for c in pending:
            if c["emergency"] and c["command_id"] not in self._stops:
                stop = EmergencyStop(view.id, view.seq, c["command_id"], c.get("reason"), c["operator_id"])
                self.client.run_first(self._stop, stop)
        if self._command is not None:
            self._catch_up_commands(view)
        if self._question is not None:
            self._catch_up_questions(view)

    def _catch_up_commands(self, view: SessionView) -> None:
        for c in list(view.pending_commands.values()):
            cmd = _command_event(c)
            if cmd is not None and cmd["command_id"] not in self._commands_seen:
                self.client.run_in_order(self._on_command, cmd, None)

    def _catch_up_questions(self, view: SessionView) -> None:
        now_ms = time.time() * 1000
        for q in list(view.open_questions.values()):
            if q["question_id"] in self._questions_seen:
                continue
            # Its age by the hub's clock, as a point on ours.
            asked = time.monotonic() - max(0.0, now_ms - q["asked_at"]) / 1000
            self.client.run_in_order(self._ask, _question_event(q), asked)

    async def _run_command(self, cmd: CommandEvent) -> None:
        h = self._command
        try:
            if h is not None:
                r = h(cmd)
                if r is not None:
                    await r
        finally:
            await self.client.command_ack(self.session_id, cmd["command_id"])

    def _on_takeover(self, ev: TakeoverEvent, f: EventFrame) -> Awaitable[object] | None:
        h = self._takeover_h
        return h(ev) if h is not None else None

    def _on_release(self, ev: ReleaseEvent, f: EventFrame) -> Awaitable[object] | None:
        h = self._release_h
        return h(ev) if h is not None else None

    def _on_lifecycle(self, ev: Any, f: EventFrame) -> None:
        if ev["status"] == "active":
            # An operator resumed the session after a stop.
            self.stopped = False

    def _on_urgent(self, u: UrgentFrame) -> Awaitable[None]:
        # Already in the priority lane (Client runs urgent handlers there).
        return self._stop(
            EmergencyStop(u["session"], u["seq"], u["intervention_id"], u.get("reason"))
        )

    def _on_stop_event(self, ev: EmergencyStopEvent, f: EventFrame) -> None:
        # Normally a repeat of the urgent frame; after a reconnect it may be
        # the first news of the stop.
        if ev["intervention_id"] in self._stops:
            return
        stop = EmergencyStop(f["session"], f["seq"], ev["intervention_id"], ev.get("reason"), ev["operator_id"])
        self.client.run_first(self._stop, stop)

    async def _stop(self, stop: EmergencyStop) -> None:
        # Marked before the first await: the event that follows the urgent
        # frame must find it.
        if stop.intervention_id in self._stops:
            return
        self._stops[stop.intervention_id] = None
        if len(self._stops) > _REMEMBER:
            self._stops.popitem(last=False)
        self.stopped = True
        if self._cancel_on_stop:
            self.client.cancel_handlers()
        h = self._stop_h
        try:
            if h is not None:
                r = h(stop)
                if r is not None:
                    await r
        finally:
            await self.client.command_ack(stop.session, stop.intervention_id)

    def _on_session_closed(self, session: str, err: BaseException) -> Awaitable[object] | None:
        if session != self.session_id or self.client.state == "closed":
            return None
        self._session_error = err
        return self.client.close()

    def __repr__(self) -> str:
        return f"Renderer(session={self.session_id!r}, state={self.client.state!r})"


def _first_time(seen: OrderedDict[str, None], key: str) -> bool:
    """Remembers ``key`` (boundedly); False if it was already there."""
    if key in seen:
        return False
    seen[key] = None
    if len(seen) > _REMEMBER:
        seen.popitem(last=False)
    return True


def _question_event(q: OpenQuestion) -> QuestionEvent:
    """A snapshot's open question, shaped as the ``question`` event that
    ``on_question`` handlers get."""
    ev: QuestionEvent = {
        "kind": "question",
        "question_id": q["question_id"],
        "participant_id": q["participant_id"],
        "text": q["text"],
    }
    if q.get("participant_name") is not None:
        ev["participant_name"] = q["participant_name"]
    return ev


def _command_event(c: PendingCommandView) -> CommandEvent | None:
    """A snapshot's pending command as the ``command`` event ``on_command``
    handlers get (None for an emergency stop)."""
    command = c.get("command")
    if c["emergency"] or command is None:
        return None
    return {"kind": "command", "command_id": c["command_id"], "operator_id": c["operator_id"], "command": command}


__all__ = ["EmergencyStop", "Renderer"]
