"""Typed handler registration, one method per event kind and per
session-level frame. Every method works directly (``client.on_question(f)``)
and as a decorator (``@client.on_question``), and returns the handler.

Event handlers get ``(event, frame)``: the event, typed by kind, and the
``event`` frame around it (``frame["session"]``, ``frame["seq"]``, and
``frame["ts"]`` except for sessions joined with ``compact``, whose frames
carry no ts: read it with ``frame.get("ts")``). They run after the event is folded into the session's
state (``client.session(id)``). Plain functions run inline; coroutine
functions run as tasks. Each registration returns the handler; remove one
with ``client.off(handler)``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Optional, TypeVar, Union

from .dispatch import Dispatcher
from .errors import ConnectionClosed, HubError
from .session import SessionView
from .types import (
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
    DiscontinuityFrame,
    Event,
    EventFrame,
    ResumedFrame,
    UrgentFrame,
)

E = TypeVar("E")
EventHandler = Callable[[E, EventFrame], Optional[Awaitable[object]]]
"""``handler(event, frame)``, plain or ``async``."""

SnapshotHandler = Callable[[SessionView], Optional[Awaitable[object]]]
DiscontinuityHandler = Callable[[DiscontinuityFrame, SessionView], Optional[Awaitable[object]]]
ResumedHandler = Callable[[ResumedFrame], Optional[Awaitable[object]]]
UrgentHandler = Callable[[UrgentFrame], Optional[Awaitable[object]]]
ErrorHandler = Callable[[HubError], Optional[Awaitable[object]]]
SessionClosedHandler = Callable[[str, Union[HubError, ConnectionClosed]], Optional[Awaitable[object]]]

H = TypeVar("H", bound=Callable[..., Any])


class HandlerRegistry:
    """Mixed into ``Client``."""

    _dispatch: Dispatcher
    _removers: dict[int, list[Callable[[], None]]]

    def _on(self, key: str, handler: H) -> H:
        self._removers.setdefault(id(handler), []).append(self._dispatch.add(key, handler))
        return handler

    def off(self, handler: Callable[..., Any]) -> None:
        """Removes a handler from everything it was registered for."""
        for remove in self._removers.pop(id(handler), []):
            remove()

    # -- session-level frames --------------------------------------------

    def on_event(self, handler: EventHandler[Event]) -> EventHandler[Event]:
        """Every event of every joined session (after the per-kind handlers)."""
        return self._on("*", handler)

    def on_snapshot(self, handler: SnapshotHandler) -> SnapshotHandler:
        """A snapshot was applied (after join, and after a discontinuity)."""
        return self._on("@snapshot", handler)

    def on_discontinuity(self, handler: DiscontinuityHandler) -> DiscontinuityHandler:
        """The hub could not resume exactly (history trimmed, epoch changed):
        the session's state was replaced by the fresh snapshot, which the
        handler receives. Events in the gap are gone: refetch what you need
        (REST history)."""
        return self._on("@discontinuity", handler)

    def on_resumed(self, handler: ResumedHandler) -> ResumedHandler:
        """A resume after a reconnect was exact; the missed events follow
        (none when ``from > to``)."""
        return self._on("@resumed", handler)

    def on_urgent(self, handler: UrgentHandler) -> UrgentHandler:
        """Renderers: an emergency stop, ahead of everything queued. Runs in
        the priority lane: no other handler is called until it returns."""
        return self._on("@urgent", handler)

    def on_error(self, handler: ErrorHandler) -> ErrorHandler:
        """An ``error`` frame no request is waiting for (frames sent
        without an id, like metrics or command_ack)."""
        return self._on("@error", handler)

    def on_session_closed(self, handler: SessionClosedHandler) -> SessionClosedHandler:
        """A joined session can no longer be followed (a rejoin was
        refused: session ended, access revoked...), or the client closed."""
        return self._on("@session_closed", handler)

    # -- events, by kind -------------------------------------------------

    def on_created(self, handler: EventHandler[CreatedEvent]) -> EventHandler[CreatedEvent]:
        return self._on("created", handler)

    def on_lifecycle(self, handler: EventHandler[LifecycleEvent]) -> EventHandler[LifecycleEvent]:
        return self._on("lifecycle", handler)

    def on_state(self, handler: EventHandler[StateEvent]) -> EventHandler[StateEvent]:
        return self._on("state", handler)

    def on_context(self, handler: EventHandler[ContextEvent]) -> EventHandler[ContextEvent]:
        return self._on("context", handler)

    def on_presence(self, handler: EventHandler[PresenceEvent]) -> EventHandler[PresenceEvent]:
        return self._on("presence", handler)

    def on_counters(self, handler: EventHandler[CountersEvent]) -> EventHandler[CountersEvent]:
        return self._on("counters", handler)

    def on_renderer(self, handler: EventHandler[RendererEvent]) -> EventHandler[RendererEvent]:
        return self._on("renderer", handler)

    def on_question(self, handler: EventHandler[QuestionEvent]) -> EventHandler[QuestionEvent]:
        return self._on("question", handler)

    def on_response(self, handler: EventHandler[ResponseEvent]) -> EventHandler[ResponseEvent]:
        return self._on("response", handler)

    def on_response_held(self, handler: EventHandler[ResponseHeldEvent]) -> EventHandler[ResponseHeldEvent]:
        return self._on("response_held", handler)

    def on_takeover(self, handler: EventHandler[TakeoverEvent]) -> EventHandler[TakeoverEvent]:
        return self._on("takeover", handler)

    def on_release(self, handler: EventHandler[ReleaseEvent]) -> EventHandler[ReleaseEvent]:
        return self._on("release", handler)

    def on_command(self, handler: EventHandler[CommandEvent]) -> EventHandler[CommandEvent]:
        return self._on("command", handler)

    def on_command_ack(self, handler: EventHandler[CommandAckEvent]) -> EventHandler[CommandAckEvent]:
        return self._on("command_ack", handler)

    def on_suggestion(self, handler: EventHandler[SuggestionEvent]) -> EventHandler[SuggestionEvent]:
        return self._on("suggestion", handler)

    def on_correction(self, handler: EventHandler[CorrectionEvent]) -> EventHandler[CorrectionEvent]:
        return self._on("correction", handler)

    def on_emergency_stop(self, handler: EventHandler[EmergencyStopEvent]) -> EventHandler[EmergencyStopEvent]:
        return self._on("emergency_stop", handler)

    def on_metrics(self, handler: EventHandler[MetricsEvent]) -> EventHandler[MetricsEvent]:
        return self._on("metrics", handler)

    def on_alert(self, handler: EventHandler[AlertEvent]) -> EventHandler[AlertEvent]:
        return self._on("alert", handler)

    def on_alert_ack(self, handler: EventHandler[AlertAckEvent]) -> EventHandler[AlertAckEvent]:
        return self._on("alert_ack", handler)

    def on_custom(self, handler: EventHandler[CustomEvent]) -> EventHandler[CustomEvent]:
        return self._on("custom", handler)

    def on_job(self, handler: EventHandler[JobEvent]) -> EventHandler[JobEvent]:
        """A job reporting into the session was created or changed; the
        event is the whole job (also in ``session(id).jobs`` by then)."""
        return self._on("job", handler)
