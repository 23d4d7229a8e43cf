"""Calls the app's handlers, in the order frames arrived, with a priority
lane for emergency stops.

Handlers may be plain functions (called inline, nothing is allocated per
call) or coroutine functions (started as tasks, so a handler that awaits an
ack cannot block the reader that delivers that ack).

``emit_first`` mirrors the hub's priority lane: it pauses ordinary
dispatch, runs its handler to completion (awaiting it if it is async),
then delivers whatever was emitted meanwhile, in order. The reader keeps
folding state and settling acks during the pause; only the app's handlers
wait.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

log = logging.getLogger("eva_hub")

Handler = Callable[..., Any]
ErrorHook = Callable[[BaseException, Handler], None]


def _log_handler_error(exc: BaseException, handler: Handler) -> None:
    log.error("eva_hub handler %r failed", getattr(handler, "__qualname__", handler), exc_info=exc)


class Dispatcher:
    def __init__(self, on_error: ErrorHook | None = None) -> None:
        # Lists are replaced, never mutated, so a list captured by a
        # queued emission stays what it was.
        self._handlers: dict[str, list[Handler]] = {}
        self._paused = 0
        self._backlog: deque[tuple[list[Handler], tuple[Any, ...]]] = deque()
        # Tasks running async handlers; cancellable as a group (an
        # emergency stop cancels the answers being generated).
        self._tasks: set[asyncio.Task[Any]] = set()
        self._priority: set[asyncio.Task[Any]] = set()
        self.on_error: ErrorHook = on_error or _log_handler_error

    def add(self, key: str, handler: Handler) -> Callable[[], None]:
        self._handlers[key] = [*self._handlers.get(key, ()), handler]

        def remove() -> None:
            hs = [h for h in self._handlers.get(key, ()) if h is not handler]
            if hs:
                self._handlers[key] = hs
            else:
                self._handlers.pop(key, None)

        return remove

    def has(self, key: str) -> bool:
        return key in self._handlers

    def emit(self, key: str, *args: Any) -> None:
        hs = self._handlers.get(key)
        if hs is None:
            return
        if self._paused:
            self._backlog.append((hs, args))
            return
        for h in hs:
            self._call(h, args)

    def emit_event(self, key: str, event: Any, frame: Any) -> None:
        """``emit`` for the hot path (every event frame): two fixed
        arguments, so no argument tuple is built unless dispatch is
        paused."""
        hs = self._handlers.get(key)
        if hs is None:
            return
        if self._paused:
            self._backlog.append((hs, (event, frame)))
            return
        for h in hs:
            try:
                r = h(event, frame)
            except Exception as e:
                self.on_error(e, h)
                continue
            if r is not None:
                self._spawn(r, h)

    def emit_first(self, handler: Handler, *args: Any) -> asyncio.Task[None]:
        """Runs ``handler`` before anything emitted from now on. The pause
        starts synchronously, before this returns."""
        self._paused += 1
        task = asyncio.ensure_future(self._run_first(handler, args))
        self._priority.add(task)
        task.add_done_callback(self._priority.discard)
        return task

    def emit_call(self, handler: Handler, *args: Any) -> None:
        """Calls one handler as if it had been emitted: now, or after the
        priority lane if an emission there is running."""
        if self._paused:
            self._backlog.append(([handler], args))
            return
        self._call(handler, args)

    def call(self, handler: Handler, *args: Any) -> None:
        """Calls one handler now, paused or not (connection-state
        callbacks must not wait behind an emergency stop)."""
        self._call(handler, args)

    async def run_all(self, key: str, *args: Any) -> None:
        """Runs every handler of ``key`` in turn, awaiting async ones: the
        body of a priority-lane emission."""
        for h in self._handlers.get(key, ()):
            try:
                r = h(*args)
                if r is not None and isinstance(r, Awaitable):
                    await r
            except Exception as e:
                self.on_error(e, h)

    def cancel_running(self) -> int:
        """Cancels the tasks of async handlers still running (not the
        priority ones). Returns how many were cancelled."""
        n = 0
        for t in list(self._tasks):
            if not t.done():
                t.cancel()
                n += 1
        return n

    async def drain(self) -> None:
        """Waits for every running handler task (tests, shutdown)."""
        while self._tasks or self._priority:
            await asyncio.gather(*self._tasks, *self._priority, return_exceptions=True)

    # -- internals -------------------------------------------------------

    def _call(self, h: Handler, args: tuple[Any, ...]) -> None:
        try:
            r = h(*args)
        except Exception as e:  # a handler's bug must not kill the reader
            self.on_error(e, h)
            return
        if r is not None:
            self._spawn(r, h)

    def _spawn(self, r: Any, h: Handler) -> None:
        """Runs what an async handler returned as a task (anything else a
        handler returns is ignored)."""
        if asyncio.iscoroutine(r) or isinstance(r, asyncio.Future):
            t = asyncio.ensure_future(r)
            self._tasks.add(t)
            t.add_done_callback(partial(self._done, handler=h))

    def _done(self, t: asyncio.Task[Any], handler: Handler) -> None:
        h = handler
        self._tasks.discard(t)
        if t.cancelled():
            return
        exc = t.exception()
        if exc is not None:
            self.on_error(exc, h)

    async def _run_first(self, handler: Handler, args: tuple[Any, ...]) -> None:
        try:
            r = handler(*args)
            if r is not None and isinstance(r, Awaitable):
                await r
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self.on_error(e, handler)
        finally:
            self._paused -= 1
            self._release()

    def _release(self) -> None:
        while self._backlog and not self._paused:
            hs, args = self._backlog.popleft()
            for h in hs:
                self._call(h, args)
