"""Keeping a connection to the hub: attempts, the reconnect rule, backoff,
token refresh, and the heartbeat that notices a dead link.

The rule (docs/PROTOCOL.md, "Close codes"): 1011, 1012 and 4000-4499
reconnect with exponential backoff and full jitter, and so does a
connection that ends without a close frame; every other close code is
final, and so is a handshake refused for good (HTTP 400/401/403...). 4002
(token expired), and a handshake refused with HTTP 401 ``token_expired``
(a genuine token that expired, e.g. cached through a long outage), ask the
token provider for a fresh token first.

``Connector.run`` owns only that loop. What happens on a connection (join,
resume, resend, dispatch) is the owner's job (``Client``), reached through
the small ``ConnectionOwner`` interface.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Literal, Protocol, Union

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed as WsConnectionClosed

from .backoff import Backoff
from .codec import Codec
from .errors import TOKEN_EXPIRED, ConnectionClosed, EvaError, HandshakeError, ProtocolError, close_code_reconnects
from .transport import AuthMode, Opened, Transient, open_socket

log = logging.getLogger("eva_hub")

ConnectionState = Literal["connecting", "connected", "reconnecting", "closed"]
TokenProvider = Callable[[], Union[str, Awaitable[str]]]


class ConnectionOwner(Protocol):
    """What the reconnect loop needs from the client it serves."""

    @property
    def ever_connected(self) -> bool:
        """A connection got as far as ``welcome`` before (so the next one is
        a reconnect)."""

    @property
    def closing(self) -> bool:
        """The app asked to close: stop, whatever the close code."""

    async def serve(self, opened: Opened) -> tuple[int | None, str]:
        """Runs one open connection until it ends; returns the hub's close
        code and reason (``None``: no close frame)."""

    def finalize(self, exc: EvaError) -> None:
        """The end: nothing will reconnect."""

    def set_connection_state(self, state: ConnectionState, why: BaseException | None = None) -> None: ...


class Connector:
    def __init__(
        self,
        url: str,
        codec: Codec,
        token: str | TokenProvider,
        *,
        auth: AuthMode,
        origin: str | None,
        open_timeout: float,
        backoff: Backoff,
    ) -> None:
        self.url = url
        self.codec = codec
        self.auth: AuthMode = auth
        self.origin = origin
        self.open_timeout = open_timeout
        self.backoff = backoff
        self._source = token
        self._token: str | None = token if isinstance(token, str) else None

    async def token(self, refresh: bool) -> str:
        """The connection token; a provider is called the first time and
        when ``refresh`` (after 4002 or ``token_expired``) asks for a fresh
        one."""
        source = self._source
        if isinstance(source, str):
            return source
        if self._token is None or refresh:
            got = source()
            if inspect.isawaitable(got):
                got = await got
            if not isinstance(got, str):
                raise TypeError(f"the token provider returned {type(got).__name__}, not str")
            self._token = got
        return self._token

    async def run(self, owner: ConnectionOwner) -> None:
        """Connects, serves, and reconnects per the rule until a final
        outcome, which is handed to ``owner.finalize``."""
        loop = asyncio.get_running_loop()
        attempt = 0
        refresh = False
        # Handshakes refused with `token_expired` in a row: the first asks
        # the provider for a fresh token; a fresh one that has expired too
        # is a clock or provider problem that retrying does not fix.
        expired_refusals = 0
        while True:
            min_delay = 0.0
            # Why the last attempt or connection ended, for the state callback.
            why: BaseException | None = None
            try:
                token = await self.token(refresh)
                refresh = False
                opened = await open_socket(
                    self.url,
                    self.codec,
                    token,
                    auth=self.auth,
                    origin=self.origin,
                    open_timeout=self.open_timeout,
                )
            except Transient as t:
                log.info("eva_hub: connection attempt failed: %s", t)
                refresh = refresh or t.token_expired
                min_delay = t.min_delay_s
                why = t
            except HandshakeError as e:
                expired_refusals = expired_refusals + 1 if e.code == "token_expired" else 0
                if e.code == "token_expired" and callable(self._source) and expired_refusals < 2:
                    log.info("eva_hub: the token has expired; asking the provider for a fresh one")
                    refresh = True
                    why = e
                else:
                    # `unauthorized` (a bad token) and the rest are final.
                    owner.finalize(e)
                    return
            except ConnectionClosed as e:
                owner.finalize(e)
                return
            except ProtocolError as e:
                owner.finalize(ConnectionClosed(None, str(e), cause=e))
                return
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the token provider failed
                log.warning("eva_hub: token provider failed: %r", e)
                why = e
            else:
                expired_refusals = 0
                started = loop.time()
                code, reason = await owner.serve(opened)
                if owner.closing:
                    return
                if not close_code_reconnects(code):
                    owner.finalize(ConnectionClosed(code, reason))
                    return
                log.info("eva_hub: connection closed with %s %s; reconnecting", code, reason)
                why = ConnectionClosed(code, reason)
                if code == TOKEN_EXPIRED:
                    refresh = True
                if loop.time() - started >= self.backoff.reset_after_s:
                    attempt = 0
            if self.backoff.exhausted(attempt):
                owner.finalize(ConnectionClosed(None, f"gave up after {attempt} attempts", cause=why))
                return
            owner.set_connection_state("reconnecting" if owner.ever_connected else "connecting", why)
            await asyncio.sleep(max(self.backoff.delay(attempt), min_delay))
            attempt += 1


async def heartbeat(
    ws: ClientConnection,
    heartbeat_ms: int,
    timeout: float | None,
    on_latency: Callable[[float], None],
) -> None:
    """WebSocket pings at the hub's own heartbeat interval (``welcome``'s
    ``heartbeat_ms``). A pong that does not come within ``timeout`` (one
    interval by default) means the link is dead even if the socket looks
    open (no FIN ever arrived): the connection is dropped, which makes the
    owner reconnect. The hub's own pings are answered by ``websockets``."""
    interval = max(heartbeat_ms, 100) / 1000.0
    limit = timeout or interval
    try:
        while True:
            await asyncio.sleep(interval)
            pong = await ws.ping()
            try:
                on_latency(await asyncio.wait_for(pong, limit))
            except asyncio.TimeoutError:
                log.warning("eva_hub: no pong within %.1fs; dropping the connection", limit)
                ws.transport.abort()
                return
    except WsConnectionClosed:
        return
