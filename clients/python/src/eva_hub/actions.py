"""What each role can send, as typed methods over ``Client.request`` (frames
with an ``id``: the call returns the hub's ``ack`` once the effect is
committed, and raises ``HubError`` if the hub refuses) and ``Client.send``
(frames without one: metrics and command acks).

The hub enforces roles; calling an operator method from a participant
connection raises ``HubError("forbidden")``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from . import frames
from .types import (
    AckFrame,
    ClientFrame,
    Command,
    CustomAudience,
    RendererMetrics,
    SessionStatus,
    StatePatch,
)


class Actions:
    """Mixed into ``Client``."""

    async def request(self, frame: ClientFrame) -> AckFrame:
        raise NotImplementedError

    async def send(self, frame: ClientFrame) -> None:
        raise NotImplementedError

    def _answered(self, session: str, question_id: str) -> None:
        """A response to ``question_id`` was stored (the session view drops
        it from the open questions)."""

    # -- participant -----------------------------------------------------

    async def ask(self, session: str, text: str, *, id: str | None = None) -> AckFrame:
        """Asks a question; ``ack["ref_id"]`` is the question id. Sent again
        with the same id after a reconnect, it is never stored twice."""
        return await self.request(frames.question(session, id or frames.new_id(), text))

    # -- operator --------------------------------------------------------

    async def takeover(self, session: str, *, reason: str | None = None, id: str | None = None) -> AckFrame:
        return await self.request(frames.takeover(session, reason=reason, id=id or frames.new_id()))

    async def release(self, session: str, *, id: str | None = None) -> AckFrame:
        return await self.request(frames.release(session, id=id or frames.new_id()))

    async def command(self, session: str, cmd: Command, *, id: str | None = None) -> AckFrame:
        """Commands the renderer (controlling operator only); ``ack["ref_id"]``
        is the command id the renderer's ``command_ack`` will name."""
        return await self.request(frames.command(session, id or frames.new_id(), cmd))

    async def say(self, session: str, text: str, *, id: str | None = None) -> AckFrame:
        return await self.command(session, {"action": "say", "text": text}, id=id)

    async def goto_slide(self, session: str, slide: int, *, id: str | None = None) -> AckFrame:
        return await self.command(session, {"action": "goto_slide", "slide": slide}, id=id)

    async def pause(self, session: str, *, id: str | None = None) -> AckFrame:
        return await self.command(session, {"action": "pause"}, id=id)

    async def resume(self, session: str, *, id: str | None = None) -> AckFrame:
        return await self.command(session, {"action": "resume"}, id=id)

    async def suggest(self, session: str, text: str, *, id: str | None = None) -> AckFrame:
        return await self.request(frames.suggestion(session, id or frames.new_id(), text))

    async def correct(self, session: str, response_id: str, text: str, *, id: str | None = None) -> AckFrame:
        return await self.request(frames.correction(session, id or frames.new_id(), response_id, text))

    async def emergency_stop(self, session: str, *, reason: str | None = None, id: str | None = None) -> AckFrame:
        return await self.request(frames.emergency_stop(session, id or frames.new_id(), reason=reason))

    async def approve(self, session: str, response_id: str, *, id: str | None = None) -> AckFrame:
        return await self.request(frames.approve(session, response_id, id=id or frames.new_id()))

    async def ack_alert(self, session: str, alert_id: str, *, id: str | None = None) -> AckFrame:
        return await self.request(frames.ack_alert(session, alert_id, id=id or frames.new_id()))

    # -- renderer or operator ----------------------------------------------

    async def publish(
        self,
        session: str,
        name: str,
        data: Any = None,
        *,
        audience: CustomAudience = "all",
        id: str | None = None,
    ) -> AckFrame:
        """An app-defined event (``custom``) into the session's stream."""
        return await self.request(frames.publish(session, name, data, audience=audience, id=id or frames.new_id()))

    # -- renderer (the Renderer class wraps these) -------------------------

    async def set_state(self, session: str, patch: StatePatch, *, id: str | None = None) -> AckFrame:
        return await self.request(frames.state(session, patch, id=id or frames.new_id()))

    async def set_context(self, session: str, ctx: dict[str, Any], *, id: str | None = None) -> AckFrame:
        return await self.request(frames.context(session, ctx, id=id or frames.new_id()))

    async def set_status(
        self, session: str, status: SessionStatus, *, reason: str | None = None, id: str | None = None
    ) -> AckFrame:
        return await self.request(frames.status(session, status, reason=reason, id=id or frames.new_id()))

    async def report_metrics(self, session: str, metrics: RendererMetrics) -> None:
        """Never acknowledged; while disconnected only the latest report per
        session is kept, and sent after the reconnect."""
        await self.send(frames.metrics(session, metrics))

    async def respond(
        self,
        session: str,
        text: str,
        *,
        question_id: str | None = None,
        confidence: float = 1.0,
        response_time_ms: int = 0,
        intent: str | None = None,
        knowledge_sources: Iterable[str] = (),
        command_id: str | None = None,
        id: str | None = None,
    ) -> AckFrame:
        ack = await self.request(
            frames.response(
                session,
                id or frames.new_id(),
                text,
                question_id=question_id,
                confidence=confidence,
                response_time_ms=response_time_ms,
                intent=intent,
                knowledge_sources=knowledge_sources,
                command_id=command_id,
            )
        )
        if question_id is not None:
            # Also when the response is held (a takeover): the renderer does
            # not see `response_held`, but the question is answered.
            self._answered(session, question_id)
        return ack

    async def command_ack(self, session: str, command_id: str) -> None:
        """Acknowledges a ``command`` event or an emergency stop (its
        ``intervention_id``). Never acknowledged itself; the command leaves
        the session's ``pending_commands`` at once. A command the hub still
        lists as pending in a later snapshot because this ack was lost with
        its connection is acknowledged again by the client."""
        await self.send(frames.command_ack(session, command_id))
