"""Frames sent with an ``id``, waiting for the hub's ``ack`` or ``error``.

The hub acks a frame only after its effect is committed, and answers a
resend of an id it has seen with the original ack (``duplicate: true``).
So a frame stays here from the moment it is handed to the SDK until it is
acked or refused for good: if the connection drops first it is sent again,
with the same id, on the next connection. Refusals with a retryable code
(``backlog_full``, ``rate_limited``...) are sent again after the hub's
``retry_after_ms``, a bounded number of times.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import cast
from .errors import HubError, RetriesExhausted
from .types import AckFrame, ClientFrame, ErrorFrame


class Request:
    """One frame awaiting its ack."""

    __slots__ = ("id", "frame", "payload", "session", "future", "attempts", "sent_on", "held")

    def __init__(self, id: str, frame: ClientFrame, payload: str | bytes, future: asyncio.Future[AckFrame]) -> None:
        self.id = id
        self.frame = frame
        # Encoded once: a resend is the same bytes, same id.
        self.payload = payload
        self.session: str | None = cast("str | None", frame.get("session"))
        self.future = future
        # Refusals with a retryable code so far.
        self.attempts = 0
        # The connection (its generation number) this frame was last sent
        # on; anything else means it must be sent (again) on the current one.
        self.sent_on = -1
        # Waiting out a retry_after_ms: the retry timer sends it, not a
        # reconnect's flush.
        self.held = False


class AckTracker:
    """Requests by id, in the order they were first sent (dicts keep
    insertion order, which is the resend order after a reconnect)."""

    def __init__(self, max_retries: int) -> None:
        self.max_retries = max_retries
        self._pending: dict[str, Request] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def __iter__(self) -> Iterator[Request]:
        return iter(list(self._pending.values()))

    def get(self, id: str) -> Request | None:
        return self._pending.get(id)

    def add(self, id: str, frame: ClientFrame, payload: str | bytes) -> Request:
        """Registers a frame; the same id again (a resend by the app) gets
        the request already in flight."""
        existing = self._pending.get(id)
        if existing is not None:
            return existing
        loop = asyncio.get_running_loop()
        req = Request(id, frame, payload, loop.create_future())
        self._pending[id] = req
        return req

    def on_ack(self, frame: AckFrame) -> bool:
        req = self._pending.pop(frame["id"], None)
        if req is None:
            # An ack for a request the app gave up on, or a second answer
            # to a resend: nothing waits for it.
            return False
        if not req.future.done():
            req.future.set_result(frame)
        return True

    def on_error(self, frame: ErrorFrame) -> tuple[Request, float] | None:
        """Settles the request the error is about. Returns ``(request,
        delay_s)`` when it should be sent again after ``delay_s``."""
        id = frame.get("id")
        req = self._pending.get(id) if id is not None else None
        if req is None:
            return None
        err = HubError.from_frame(frame)
        if err.retryable:
            if req.attempts < self.max_retries:
                req.attempts += 1
                req.held = True
                after = frame.get("retry_after_ms")
                # `internal` comes without a delay: back off a little anyway.
                delay = (after if after is not None else 100 * 2**req.attempts) / 1000.0
                return req, delay
            err = RetriesExhausted(
                err.code,
                f"{err.message} (refused {req.attempts + 1} times)",
                retry_after_ms=err.retry_after_ms,
                id=err.id,
                session=err.session,
            )
        self._settle(req, err)
        return None

    def fail(self, id: str, exc: BaseException) -> None:
        req = self._pending.get(id)
        if req is not None:
            self._settle(req, exc)

    def fail_session(self, session: str, exc: BaseException) -> None:
        for req in list(self._pending.values()):
            if req.session == session:
                self._settle(req, exc)

    def fail_all(self, exc: BaseException) -> None:
        for req in list(self._pending.values()):
            self._settle(req, exc)

    def due(self, generation: int, session: str | None = None) -> list[Request]:
        """Requests not yet sent on connection ``generation`` (and not
        waiting for a retry); with ``session``, only that session's."""
        return [
            req
            for req in self._pending.values()
            if req.sent_on != generation and not req.held and (session is None or req.session == session)
        ]

    def _settle(self, req: Request, exc: BaseException) -> None:
        self._pending.pop(req.id, None)
        if not req.future.done():
            req.future.set_exception(exc)
            # Nobody may be awaiting it (the app gave up): do not let
            # asyncio log "exception was never retrieved".
            req.future.exception()
