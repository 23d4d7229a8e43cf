"""``Client``: one logical connection to the hub that survives reconnects.

``connection.Connector`` keeps a WebSocket open (reconnecting as the
close-code table says); on each new connection this module re-joins every
session the client had joined, resuming each from its last
``(epoch, seq)``, re-sends every frame still waiting for its ack (same id),
folds each session's events into a ``SessionView``, and calls the app's
handlers.

Life of one connection (``_serve``)::

    welcome ─▶ reader task ─────────────────────────────────▶ close code
           ├▶ restore: join/resume each session (until its `resumed`
           │  or snapshot is in), re-send its unacked frames, then
           │  "connected" (live)
           └▶ heartbeat: ping every heartbeat_ms, drop if no pong

While not live, new frames wait in the ack tracker (or, without an id, in a
small queue) and go out in order once the restore is done.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from contextlib import suppress
from types import TracebackType
from typing import Any, Optional, cast

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed as WsConnectionClosed
from websockets.exceptions import InvalidURI
from websockets.uri import parse_uri

from . import frames
from .acks import AckTracker, Request
from .actions import Actions
from .backoff import Backoff
from .codec import Codec, CodecName, Payload
from .dispatch import Dispatcher, ErrorHook
from .errors import ConnectionClosed, EvaError, HubError
from .connection import ConnectionState, Connector, TokenProvider, heartbeat
from .handlers import HandlerRegistry
from .session import SessionView
from .transport import AuthMode, Opened, close_info
from .types import (
    AckFrame,
    ClientFrame,
    DiscontinuityFrame,
    ErrorFrame,
    Event,
    EventFrame,
    JoinedFrame,
    LeftFrame,
    PongFrame,
    ResumedFrame,
    Role,
    SessionListFrame,
    SessionStatus,
    SessionSummary,
    SnapshotFrame,
    UrgentFrame,
    WelcomeFrame,
)

log = logging.getLogger("eva_hub")

__all__ = ["Client", "ConnectionState", "TokenProvider"]

ConnectionStateHandler = Callable[[ConnectionState, Optional[BaseException]], Optional[Awaitable[object]]]

# Frames `request()` refuses: the hub never acks them (no `id` in the
# protocol, or answered by `joined` / `left`): they would wait forever.
_NOT_ACKED = frozenset({"auth", "join", "leave", "metrics", "command_ack", "ping", "list_sessions"})

# Frames without an id kept while disconnected (metrics keep only the latest
# per session); beyond this the oldest are dropped.
_MAX_QUEUED = 1000

# Command acks remembered with the connection they went out on, to tell an
# ack in flight from one lost with its connection when a snapshot still
# lists the command as pending.
_MAX_ACKED = 1024


class _Interrupted(Exception):
    """A join or leave was in flight when its connection dropped; the next
    connection takes over."""


class _Joined:
    """A session this client has joined (or is joining)."""

    __slots__ = (
        "view",
        "name",
        "takeover",
        "compact",
        "echo",
        "ready",
        "joined_on",
        "outcome",
        "settled",
        "discontinuity",
        "early",
        "fence",
        "alias",
    )

    def __init__(
        self,
        session: str,
        name: str | None,
        takeover: bool,
        compact: bool,
        echo: bool,
        ready: asyncio.Future[SessionView],
    ) -> None:
        self.view = SessionView(session)
        self.name = name
        self.takeover = takeover
        self.compact = compact
        self.echo = echo
        # Resolved at the first snapshot: what `join()` returns.
        self.ready = ready
        # Generation of the connection this session is joined on.
        self.joined_on = -1
        # `joined` or `error` for the join in flight.
        self.outcome: asyncio.Future[JoinedFrame] | None = None
        # The hub's answer to a resume in flight (`resumed`, or the snapshot
        # after a `discontinuity`): a re-joined session counts as restored
        # only once it came, so `connected` never precedes `on_resumed`.
        self.settled: asyncio.Future[None] | None = None
        # Set between a `discontinuity` and the snapshot that follows it.
        self.discontinuity: DiscontinuityFrame | None = None
        # Events that arrived while no snapshot was applied (none expected;
        # kept rather than lost, applied after the snapshot if newer).
        self.early: list[EventFrame] = []
        self.fence: int | None = None
        # The alias the current connection's `joined` gave (compact only).
        self.alias: int | None = None


class Client(HandlerRegistry, Actions):
    """A connection to eva-hub for any role.

    ``token`` is a connection token, or a function (sync or async)
    returning one: it is called before the first connection and again when
    the hub closes with 4002 (token expired) before reconnecting.

    ``codec``: ``"msgpack"`` (binary frames, the default) or ``"json"``.
    ``auth``: ``"header"`` (``Authorization: Bearer``) or ``"frame"`` (a
    first ``auth`` frame, as browsers must; the hub then wants an ``origin``
    it allows).

    ``compact`` and ``echo`` are the defaults of every ``join`` (each join
    may override them). ``compact=True`` asks for compact event frames:
    about a third fewer bytes per event and less to decode; handlers get
    the same events, but their frames have no ``ts`` (see ``join``).
    ``echo=False``: the hub does not send the events this role and
    subject published (frames are still acked).
    """

    def __init__(
        self,
        url: str,
        token: str | TokenProvider,
        *,
        codec: CodecName = "msgpack",
        auth: AuthMode = "header",
        origin: str | None = None,
        reconnect: Backoff | None = None,
        max_retries: int = 8,
        open_timeout: float = 10.0,
        heartbeat_timeout: float | None = None,
        on_handler_error: ErrorHook | None = None,
        compact: bool = False,
        echo: bool = True,
    ) -> None:
        try:
            parse_uri(url)
        except InvalidURI as e:
            raise ValueError(f"not a WebSocket URL: {url!r} (expected ws://host:port/v1/ws)") from e
        self.url = url
        self._codec = Codec(codec)
        self._compact = compact
        self._echo = echo
        self._backoff = reconnect or Backoff()
        self._connector = Connector(
            url, self._codec, token, auth=auth, origin=origin, open_timeout=open_timeout, backoff=self._backoff
        )
        self._heartbeat_timeout = heartbeat_timeout
        self._dispatch = Dispatcher(on_handler_error)
        self._removers = {}
        self._state_handlers: list[ConnectionStateHandler] = []
        self._acks = AckTracker(max_retries)
        # Joins tried again after a retryable refusal (rate_limited...).
        self._max_join_retries = max_retries
        self._sessions: dict[str, _Joined] = {}
        # Compact event frames name their session by an alias that the
        # current connection's `joined` gave; cleared on every connection.
        self._aliases: dict[int, _Joined] = {}
        self._join_ids: dict[str, _Joined] = {}
        self._leave_ids: dict[str, asyncio.Future[LeftFrame]] = {}
        self._listings: dict[str, asyncio.Future[SessionListFrame]] = {}
        self._pings: dict[int, asyncio.Future[PongFrame]] = {}
        self._nonce = 0
        # Untracked frames (no id) waiting for a connection.
        self._queued: dict[object, Payload] = {}
        self._queued_seq = 0
        # (session, command_id) -> generation of the connection its
        # command_ack went out on (None: still queued for the next one).
        self._acked: OrderedDict[tuple[str, str], int | None] = OrderedDict()
        self._background: set[asyncio.Task[None]] = set()

        self._state: ConnectionState = "closed"
        self._ws: ClientConnection | None = None
        self._gen = 0
        self._live = False
        self._welcome: WelcomeFrame | None = None
        self._max_message = 65536
        self.latency: float | None = None
        self._run_task: asyncio.Task[None] | None = None
        self._first: asyncio.Future[WelcomeFrame] | None = None
        self._closed: asyncio.Future[None] | None = None
        self._closing = False
        self._final: EvaError | None = None
        self._user_closed = False
        self._frame_handlers: dict[str, Callable[[Any], None]] = {
            "event": self._on_event,
            "snapshot": self._on_snapshot,
            "joined": self._on_joined,
            "resumed": self._on_resumed,
            "discontinuity": self._on_discontinuity,
            "urgent": self._on_urgent,
            "ack": self._on_ack,
            "error": self._on_error_frame,
            "left": self._on_left,
            "pong": self._on_pong,
            "session_list": self._on_session_list,
            "welcome": self._on_welcome,
        }

    # ------------------------------------------------------------------
    # Public surface
    # ------------------------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        return self._state

    @property
    def connected(self) -> bool:
        """True while a connection is up and every session is restored."""
        return self._live

    @property
    def welcome(self) -> WelcomeFrame | None:
        """The last ``welcome`` (role, subject, tenant, heartbeat_ms...)."""
        return self._welcome

    @property
    def role(self) -> Role | None:
        return self._welcome["role"] if self._welcome else None

    @property
    def codec(self) -> CodecName:
        return self._codec.name

    @property
    def pending_acks(self) -> int:
        """Frames sent (or waiting to be) whose ack has not come yet."""
        return len(self._acks)

    def session(self, session: str) -> SessionView:
        """The folded state of a joined session."""
        return self._sessions[session].view

    def fence(self, session: str) -> int | None:
        """The fence the hub gave this connection's renderer join (renderers
        only): what the hub checks every renderer frame against."""
        return self._sessions[session].fence

    @property
    def sessions(self) -> dict[str, SessionView]:
        return {k: j.view for k, j in self._sessions.items()}

    def on_connection_state(self, handler: ConnectionStateHandler) -> ConnectionStateHandler:
        """``handler(state, error)`` on every change among ``connecting``,
        ``connected``, ``reconnecting`` and ``closed``. ``error`` says why
        the last connection or attempt ended (a ``ConnectionClosed`` with
        the hub's close code, a refused handshake...); ``None`` on
        ``connected`` and when you closed the client."""
        self._state_handlers.append(handler)
        return handler

    def cancel_handlers(self) -> int:
        """Cancels every async handler still running (an emergency stop
        uses this to abort answers being generated)."""
        return self._dispatch.cancel_running()

    def run_first(self, handler: Callable[..., Any], *args: Any) -> None:
        """Runs ``handler(*args)`` in the priority lane: no other handler is
        called until it returns (what urgent frames get)."""
        self._dispatch.emit_first(handler, *args)

    def run_in_order(self, handler: Callable[..., Any], *args: Any) -> None:
        """Runs ``handler(*args)`` as an event handler would be: now, or,
        while something runs in the priority lane, after it."""
        self._dispatch.emit_call(handler, *args)

    def _note_command_ack(self, session: str, command_id: str) -> None:
        """A command_ack is going out: the command leaves the session's
        pending commands (renderers see no ``command_ack`` events)."""
        key = (session, command_id)
        self._acked.pop(key, None)
        self._acked[key] = None
        if len(self._acked) > _MAX_ACKED:
            self._acked.popitem(last=False)
        j = self._sessions.get(session)
        if j is not None:
            j.view.acknowledged(command_id)

    def _answered(self, session: str, question_id: str) -> None:
        j = self._sessions.get(session)
        if j is not None:
            j.view.answered(question_id)

    async def connect(self) -> WelcomeFrame:
        """Connects (retrying transient failures per the backoff) and
        returns the ``welcome``. Raises ``HandshakeError`` (HTTP 401, 403...)
        or ``ConnectionClosed`` (a final close code) when it cannot."""
        if self._final is not None:
            raise self._final
        if self._run_task is None:
            loop = asyncio.get_running_loop()
            self._first = loop.create_future()
            self._closed = loop.create_future()
            self._set_state("connecting")
            self._run_task = asyncio.ensure_future(self._run())
        assert self._first is not None
        return await asyncio.shield(self._first)

    async def join(
        self,
        session: str,
        *,
        name: str | None = None,
        takeover: bool = False,
        compact: bool | None = None,
        echo: bool | None = None,
    ) -> SessionView:
        """Joins a session and returns its state once the snapshot is in.

        The session stays joined across reconnects (resumed from its last
        position) until ``leave``. ``takeover`` (renderers) replaces a live
        renderer; ``name`` (participants) is the display name.

        ``compact`` (default: the client's): the hub sends this session's
        events as compact event frames, which the SDK turns into the same
        events and ``event`` frames as ever, except that the frames have no
        ``ts`` (the session's view then records its own times, such as an
        open question's ``asked_at``, by this client's clock). Resume is
        unchanged. ``echo=False`` (default: the client's): the events this
        role and subject published do not come back (nor are they folded
        into the view); frames are still acked.
        """
        self._check_open()
        j = self._sessions.get(session)
        if j is None:
            j = _Joined(
                session,
                name,
                takeover,
                self._compact if compact is None else compact,
                self._echo if echo is None else echo,
                asyncio.get_running_loop().create_future(),
            )
            self._sessions[session] = j
            if self._live:
                with suppress(_Interrupted):
                    await self._join_on(j, self._gen)
        return await asyncio.shield(j.ready)

    async def leave(self, session: str, *, timeout: float = 10.0) -> None:
        """Leaves a session at once (no presence grace)."""
        j = self._sessions.pop(session, None)
        if j is None:
            return
        if j.alias is not None:
            self._aliases.pop(j.alias, None)
        if not j.ready.done():
            j.ready.set_exception(EvaError(f"left session {session} before its snapshot"))
            j.ready.exception()
        if not self._live or self._ws is None:
            return
        id = frames.new_id()
        fut: asyncio.Future[LeftFrame] = asyncio.get_running_loop().create_future()
        self._leave_ids[id] = fut
        with suppress(WsConnectionClosed):
            await self._ws.send(self._codec.encode(frames.leave(session, id=id)))
        with suppress(_Interrupted, asyncio.TimeoutError):
            await asyncio.wait_for(fut, timeout)

    async def request(self, frame: ClientFrame) -> AckFrame:
        """Sends a frame with an ``id`` (one is assigned if missing) and
        returns the hub's ``ack``: sent once the frame's effect is stored
        (questions, responses, interventions, alert acks) or sequenced
        (state, context, status, publish, approve); ``ack["duplicate"]``
        when the hub had already accepted the id (the original outcome,
        with the original ``seq`` and ``ref_id``).

        Until the ack comes the frame is kept: after a reconnect it is sent
        again with the same id. Refusals with a retryable code
        (``backlog_full``, ``rate_limited``...) are retried after the hub's
        ``retry_after_ms``, a bounded number of times. Raises ``HubError``
        when refused, ``ConnectionClosed`` when the client closes for good
        first. Cancelling the await does not withdraw the frame.
        """
        self._check_open()
        if frame["type"] in _NOT_ACKED:
            raise ValueError(f"the hub never acks a {frame['type']} frame: use join(), leave(), send() or ping()")
        id = cast("str | None", frame.get("id"))
        if id is None:
            id = frames.new_id()
            # Every frame that takes an id has an optional `id` field.
            frame["id"] = id  # type: ignore[typeddict-unknown-key]
        req = self._acks.get(id)
        if req is None:
            payload = self._encode(frame)
            req = self._acks.add(id, frame, payload)
            if self._live:
                await self._transmit(req, self._gen)
        return await asyncio.shield(req.future)

    async def send(self, frame: ClientFrame) -> None:
        """Sends a frame without waiting for anything (frames without an
        id: ``metrics``, ``command_ack``). While disconnected it is queued
        (metrics: only the latest per session) and sent after the
        reconnect."""
        self._check_open()
        payload = self._encode(frame)
        ws = self._ws
        if frame["type"] == "command_ack":
            self._note_command_ack(frame["session"], frame["command_id"])
        if self._live and ws is not None:
            try:
                await ws.send(payload)
                if frame["type"] == "command_ack":
                    self._acked[(frame["session"], frame["command_id"])] = self._gen
                return
            except WsConnectionClosed:
                pass
        self._enqueue(frame, payload)

    async def list_sessions(
        self,
        *,
        status: SessionStatus | None = None,
        include_ended: bool = False,
        limit: int | None = None,
        timeout: float = 10.0,
    ) -> list[SessionSummary]:
        """The tenant's sessions, newest first (operators only): what a
        console's overview lists. Raises ``HubError`` (``forbidden`` for
        other roles) or ``EvaError`` when the connection is lost first."""
        self._check_open()
        ws = self._ws
        if not self._live or ws is None:
            raise EvaError("not connected")
        id = frames.new_id()
        fut: asyncio.Future[SessionListFrame] = asyncio.get_running_loop().create_future()
        self._listings[id] = fut
        try:
            frame = frames.list_sessions(status=status, include_ended=include_ended, limit=limit, id=id)
            await ws.send(self._codec.encode(frame))
            return (await asyncio.wait_for(fut, timeout))["sessions"]
        finally:
            self._listings.pop(id, None)

    async def ping(self, timeout: float = 10.0) -> float:
        """Round trip of an application-level ``ping``, in seconds."""
        self._check_open()
        ws = self._ws
        if not self._live or ws is None:
            raise EvaError("not connected")
        self._nonce += 1
        nonce = self._nonce
        fut: asyncio.Future[PongFrame] = asyncio.get_running_loop().create_future()
        self._pings[nonce] = fut
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        try:
            await ws.send(self._codec.encode(frames.ping(nonce)))
            await asyncio.wait_for(fut, timeout)
        finally:
            self._pings.pop(nonce, None)
        return loop.time() - t0

    async def close(self) -> None:
        """Closes for good (close code 1000). Requests still waiting for
        their ack fail with ``ConnectionClosed``."""
        if self._final is not None:
            return
        self._closing = True
        ws = self._ws
        if ws is not None:
            with suppress(Exception):
                await ws.close()
        task = self._run_task
        if task is not None and not task.done():
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        self._finalize(ConnectionClosed(1000, "closed by the client"), requested=True)

    async def wait_closed(self) -> None:
        """Returns when the client is closed; raises the final error
        (``ConnectionClosed`` with its code, ``HandshakeError``) unless it
        was ``close()`` that closed it."""
        if self._closed is None:
            raise EvaError("not started: call connect() first")
        await asyncio.shield(self._closed)
        if self._final is not None and not self._user_closed:
            raise self._final

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # ------------------------------------------------------------------
    # Connection lifecycle
    # ------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._connector.run(self)
        except asyncio.CancelledError:
            raise
        except BaseException as e:
            # A bug, here or in a library: never leave connect() and the
            # pending requests waiting forever.
            log.exception("eva_hub: the connection task failed")
            self._finalize(ConnectionClosed(None, f"internal error: {e!r}", cause=e))

    # -- ConnectionOwner (what the Connector calls) -------------------------

    @property
    def ever_connected(self) -> bool:
        return self._welcome is not None

    @property
    def closing(self) -> bool:
        return self._closing

    def finalize(self, exc: EvaError) -> None:
        self._finalize(exc)

    def set_connection_state(self, state: ConnectionState, why: BaseException | None = None) -> None:
        self._set_state(state, why)

    async def serve(self, opened: Opened) -> tuple[int | None, str]:
        return await self._serve(opened)

    def _on_latency(self, seconds: float) -> None:
        self.latency = seconds

    async def _serve(self, opened: Opened) -> tuple[int | None, str]:
        """Runs one connection until it ends; returns the hub's close code
        (``None``: no close frame)."""
        ws = opened.ws
        self._gen += 1
        gen = self._gen
        self._ws = ws
        self._on_welcome(opened.welcome)
        reader = asyncio.ensure_future(self._read(ws))
        restore = asyncio.ensure_future(self._restore(ws, gen))
        beat = asyncio.ensure_future(
            heartbeat(ws, opened.welcome["heartbeat_ms"], self._heartbeat_timeout, self._on_latency)
        )
        try:
            return await reader
        finally:
            self._live = False
            self._ws = None
            restore.cancel()
            beat.cancel()
            if not reader.done():
                reader.cancel()
                ws.transport.abort()
            self._interrupt()

    def _interrupt(self) -> None:
        """A connection ended: whatever waited for an answer on it is
        handed over to the next one."""
        # Aliases are the connection's: the next one's `joined` gives new ones.
        self._aliases.clear()
        for j in self._sessions.values():
            j.joined_on = -1
            j.alias = None
            waiting: list[asyncio.Future[Any]] = [f for f in (j.outcome, j.settled) if f is not None]
            for fut in waiting:
                if not fut.done():
                    fut.set_exception(_Interrupted())
                    fut.exception()
        self._join_ids.clear()
        for fut in self._leave_ids.values():
            if not fut.done():
                fut.set_exception(_Interrupted())
                fut.exception()
        self._leave_ids.clear()
        for pong in self._pings.values():
            if not pong.done():
                pong.set_exception(EvaError("connection lost before pong"))
                pong.exception()
        for listing in self._listings.values():
            if not listing.done():
                listing.set_exception(EvaError("connection lost before the session list arrived"))
                listing.exception()
        self._listings.clear()

    async def _read(self, ws: ClientConnection) -> tuple[int | None, str]:
        feed = self._feed
        try:
            while True:
                feed(await ws.recv())
        except WsConnectionClosed as e:
            return close_info(e)

    def _feed(self, data: Payload) -> None:
        """Decodes one message and acts on it: the hot path."""
        try:
            frame = self._codec.decode(data)
            kind = frame.get("type")
            if kind is None and "e" in frame:
                # A compact event frame: no `type`, the session by alias.
                self._on_compact(frame)
                return
            handler = self._frame_handlers.get(kind)
        except Exception:
            log.warning("eva_hub: undecodable frame from the hub: %.200r", data)
            return
        if handler is None:
            # A frame type newer than this SDK: ignore, as the protocol
            # lets the hub add them.
            return
        try:
            handler(frame)
        except Exception:
            log.exception("eva_hub: failed to handle a %s frame", frame.get("type"))

    async def _restore(self, ws: ClientConnection, gen: int) -> None:
        """Re-joins every session, re-sends what is unacked, then goes
        live. Order: each session's join before that session's frames, so
        none is refused with not_joined."""
        try:
            while True:
                todo = [j for j in self._sessions.values() if j.joined_on != gen]
                if not todo and not self._acks.due(gen) and not self._queued:
                    break
                for j in todo:
                    if self._sessions.get(j.view.id) is j and await self._join_on(j, gen):
                        await self._flush(gen, j.view.id)
                await self._flush(gen, None)
                while self._queued:
                    key = next(iter(self._queued))
                    payload = self._queued.pop(key)
                    await ws.send(payload)
                    if isinstance(key, tuple) and key[0] == "command_ack":
                        self._acked[(key[1], key[2])] = gen
            # No await between the last check above and here: nothing can
            # slip in unsent.
            self._live = True
            self._set_state("connected")
            if self._first is not None and not self._first.done() and self._welcome is not None:
                self._first.set_result(self._welcome)
        except (_Interrupted, WsConnectionClosed, asyncio.CancelledError):
            return
        except Exception:
            log.exception("eva_hub: restoring the connection failed; reconnecting")
            ws.transport.abort()

    async def _join_on(self, j: _Joined, gen: int) -> bool:
        """Joins (or re-joins, resuming) one session on connection ``gen``.
        Returns False when the hub refused it for good (the session is then
        dropped and ``on_session_closed`` told)."""
        loop = asyncio.get_running_loop()
        attempt = 0
        while True:
            ws = self._ws
            if ws is None or gen != self._gen:
                raise _Interrupted()
            id = frames.new_id()
            rejoin = j.view.epoch is not None
            frame = frames.join(
                j.view.id,
                resume=j.view.position,
                # A re-join never takes over: if another renderer joined
                # while we were away, it is the session's renderer now.
                takeover=j.takeover and not rejoin,
                name=j.name,
                compact=j.compact,
                echo=j.echo,
                id=id,
            )
            outcome: asyncio.Future[JoinedFrame] = loop.create_future()
            j.outcome = outcome
            settled: asyncio.Future[None] | None = loop.create_future() if rejoin else None
            j.settled = settled
            self._join_ids[id] = j
            try:
                await ws.send(self._codec.encode(frame))
            except WsConnectionClosed:
                raise _Interrupted() from None
            try:
                await outcome
                if settled is not None:
                    await settled
                return True
            except HubError as e:
                if e.code == "already_joined":
                    j.joined_on = gen
                    return True
                # `renderer_active` is final, on a re-join too: the hub lets a
                # renderer re-joining under its own subject replace its
                # previous connection (even one it still believes live), so
                # the refusal means another renderer is live.
                if e.retryable and attempt < self._max_join_retries:
                    log.info("eva_hub: join of %s refused (%s); trying again", j.view.id, e.code)
                    delay = max(self._backoff.delay(attempt), (e.retry_after_ms or 0) / 1000.0)
                    attempt += 1
                    await asyncio.sleep(delay)
                    continue
                self._drop(j, e)
                return False

    async def _flush(self, gen: int, session: str | None) -> None:
        for req in self._acks.due(gen, session):
            await self._transmit(req, gen)

    async def _transmit(self, req: Request, gen: int) -> None:
        ws = self._ws
        if ws is None or gen != self._gen:
            return
        req.sent_on = gen
        with suppress(WsConnectionClosed):
            # A failed send is not an error here: the reader sees the close,
            # and the next connection sends the frame again.
            await ws.send(req.payload)

    def _in_background(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        # Held until done: the loop keeps only weak references to tasks.
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _retry(self, req: Request) -> None:
        req.held = False
        if self._acks.get(req.id) is req and self._live:
            task = asyncio.ensure_future(self._transmit(req, self._gen))
            # Held until done: the loop keeps only weak references to tasks.
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    def _finalize(self, exc: EvaError, *, requested: bool = False) -> None:
        if self._final is not None:
            return
        self._final = exc
        self._user_closed = requested
        self._live = False
        self._interrupt()
        self._acks.fail_all(exc)
        sessions = list(self._sessions.items())
        for _, j in sessions:
            if not j.ready.done():
                j.ready.set_exception(exc)
                j.ready.exception()
        if self._first is not None and not self._first.done():
            self._first.set_exception(exc)
            self._first.exception()
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)
        self._set_state("closed", None if requested else exc)
        if not requested:
            for sid, _ in sessions:
                self._dispatch.emit("@session_closed", sid, exc)

    def _drop(self, j: _Joined, err: HubError) -> None:
        sid = j.view.id
        if self._sessions.get(sid) is j:
            del self._sessions[sid]
        if j.alias is not None and self._aliases.get(j.alias) is j:
            del self._aliases[j.alias]
        if not j.ready.done():
            j.ready.set_exception(err)
            j.ready.exception()
        self._acks.fail_session(sid, err)
        self._dispatch.emit("@session_closed", sid, err)

    def _set_state(self, state: ConnectionState, exc: BaseException | None = None) -> None:
        if state == self._state:
            return
        self._state = state
        for h in self._state_handlers:
            self._dispatch.call(h, state, exc)

    def _check_open(self) -> None:
        if self._final is not None:
            raise self._final
        if self._run_task is None:
            raise EvaError("not connected: call connect() first")

    def _encode(self, frame: ClientFrame) -> Payload:
        payload = self._codec.encode(frame)
        size = len(payload.encode() if isinstance(payload, str) else payload)
        if size > self._max_message:
            # The hub would close the whole connection (1009, final) for it.
            raise EvaError(f"{frame['type']} frame of {size} bytes exceeds max_message_bytes {self._max_message}")
        return payload

    def _enqueue(self, frame: ClientFrame, payload: Payload) -> None:
        key: object
        if frame["type"] == "metrics":
            # Metrics carry whole values: only the latest report matters.
            key = ("metrics", frame.get("session"))
        elif frame["type"] == "command_ack":
            # One ack per command, however often it is asked for offline.
            key = ("command_ack", frame.get("session"), frame.get("command_id"))
        else:
            self._queued_seq += 1
            key = self._queued_seq
        self._queued[key] = payload
        if len(self._queued) > _MAX_QUEUED:
            dropped = next(iter(self._queued))
            del self._queued[dropped]
            log.warning("eva_hub: dropped a queued frame: more than %d waiting for a connection", _MAX_QUEUED)

    # ------------------------------------------------------------------
    # Frames from the hub
    # ------------------------------------------------------------------

    def _on_welcome(self, f: WelcomeFrame) -> None:
        self._welcome = f
        self._max_message = f["max_message_bytes"]

    def _on_event(self, f: EventFrame) -> None:
        j = self._sessions.get(f["session"])
        if j is not None:
            self._deliver(j, f)

    def _on_compact(self, f: dict[str, Any]) -> None:
        """A compact event frame: ``e`` and ``q`` out, the rest is the
        event itself (the same dict a full ``event`` frame would carry)."""
        j = self._aliases.get(f.pop("e"))
        seq = f.pop("q")
        if j is not None:
            self._deliver(j, {"type": "event", "session": j.view.id, "seq": seq, "event": cast(Event, f)})

    def _deliver(self, j: _Joined, f: EventFrame) -> None:
        view = j.view
        if not view.ready:
            j.early.append(f)
            return
        if not view.apply(f):
            return
        ev = f["event"]
        emit = self._dispatch.emit_event
        emit(ev["kind"], ev, f)
        emit("*", ev, f)

    def _on_snapshot(self, f: SnapshotFrame) -> None:
        j = self._sessions.get(f["session"])
        if j is None:
            return
        view = j.view
        view.apply_snapshot(f)
        sid = f["session"]
        for cid in [c for c in view.pending_commands if (sid, c) in self._acked]:
            # Acknowledged already. Queued, or sent on this connection: in
            # flight (the snapshot predates it). Sent on an earlier
            # connection: lost with it, so acknowledge again.
            view.acknowledged(cid)
            if self._acked[(sid, cid)] not in (None, self._gen):
                self._in_background(self.command_ack(sid, cid))
        early, j.early = j.early, []
        gap = j.discontinuity
        j.discontinuity = None
        if gap is not None:
            self._dispatch.emit("@discontinuity", gap, view)
        self._dispatch.emit("@snapshot", view)
        if not j.ready.done():
            j.ready.set_result(view)
        self._settle(j)
        for ef in early:
            self._deliver(j, ef)

    def _on_joined(self, f: JoinedFrame) -> None:
        id = f.get("id")
        j = self._join_ids.pop(id, None) if id is not None else None
        if j is None:
            j = self._sessions.get(f["session"])
            if j is None:
                return
        j.joined_on = self._gen
        j.fence = f.get("fence")
        alias = f.get("alias")
        if j.alias is not None and self._aliases.get(j.alias) is j:
            del self._aliases[j.alias]
        j.alias = alias
        if alias is not None:
            self._aliases[alias] = j
        if j.outcome is not None and not j.outcome.done():
            j.outcome.set_result(f)

    def _on_resumed(self, f: ResumedFrame) -> None:
        # Missed events follow (none when from > to); they fold like any.
        self._dispatch.emit("@resumed", f)
        j = self._sessions.get(f["session"])
        if j is not None:
            self._settle(j)

    @staticmethod
    def _settle(j: _Joined) -> None:
        if j.settled is not None and not j.settled.done():
            j.settled.set_result(None)

    def _on_discontinuity(self, f: DiscontinuityFrame) -> None:
        j = self._sessions.get(f["session"])
        if j is None:
            return
        # Discard: nothing is applied until the fresh snapshot arrives.
        j.discontinuity = f
        j.view.ready = False

    def _on_urgent(self, f: UrgentFrame) -> None:
        if self._dispatch.has("@urgent"):
            self._dispatch.emit_first(self._dispatch.run_all, "@urgent", f)

    def _on_ack(self, f: AckFrame) -> None:
        self._acks.on_ack(f)

    def _on_error_frame(self, f: ErrorFrame) -> None:
        id = f.get("id")
        if id is not None:
            j = self._join_ids.pop(id, None)
            if j is not None:
                if j.outcome is not None and not j.outcome.done():
                    j.outcome.set_exception(HubError.from_frame(f))
                    j.outcome.exception()
                return
            left = self._leave_ids.pop(id, None)
            if left is not None:
                if not left.done():
                    left.set_exception(HubError.from_frame(f))
                    left.exception()
                return
            listing = self._listings.pop(id, None)
            if listing is not None:
                if not listing.done():
                    listing.set_exception(HubError.from_frame(f))
                    listing.exception()
                return
            if self._acks.get(id) is not None:
                retry = self._acks.on_error(f)
                if retry is not None:
                    req, delay = retry
                    asyncio.get_running_loop().call_later(delay, self._retry, req)
                return
        err = HubError.from_frame(f)
        if self._dispatch.has("@error"):
            self._dispatch.emit("@error", err)
        else:
            log.warning("eva_hub: the hub refused a frame: %s", err)

    def _on_left(self, f: LeftFrame) -> None:
        id = f.get("id")
        fut = self._leave_ids.pop(id, None) if id is not None else None
        if fut is not None and not fut.done():
            fut.set_result(f)

    def _on_session_list(self, f: SessionListFrame) -> None:
        id = f.get("id")
        fut = self._listings.get(id) if id is not None else None
        if fut is not None and not fut.done():
            fut.set_result(f)

    def _on_pong(self, f: PongFrame) -> None:
        nonce = f.get("nonce")
        fut = self._pings.get(nonce) if nonce is not None else None
        if fut is not None and not fut.done():
            fut.set_result(f)
