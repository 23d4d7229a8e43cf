"""Opening one WebSocket to the hub, up to its ``welcome``, and telling
apart the failures worth retrying from the final ones.

Credentials go in the ``Authorization: Bearer`` header (Python is not a
browser), or, with ``auth="frame"``, in an ``auth`` frame sent first. A bad
header token is refused before the upgrade (HTTP 401 ``unauthorized``; a
genuine one that has expired: HTTP 401 ``token_expired``); a bad ``auth``
frame token closes the socket with 4501 (4002 when it only expired).

A handshake with neither an ``Authorization`` header nor an ``Origin`` is
refused by default (``auth.missing_origin``), so ``auth="frame"`` needs an
``origin`` the hub allows (``auth.allowed_origins``), as a browser's would.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Literal

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed as WsConnectionClosed
from websockets.exceptions import InvalidHandshake, InvalidStatus
from websockets.typing import Origin, Subprotocol

from . import frames
from .codec import Codec
from .errors import ConnectionClosed, HandshakeError, ProtocolError, close_code_reconnects
from .types import WelcomeFrame

AuthMode = Literal["header", "frame"]

# HTTP statuses of a refused handshake worth trying again later: too many
# connections (429), a hub draining or a backend down (503), and gateway
# trouble in front of the hub.
_RETRY_HTTP = frozenset({408, 429, 500, 502, 503, 504})


@dataclass
class Opened:
    ws: ClientConnection
    welcome: WelcomeFrame


class Transient(Exception):
    """This attempt failed; another one may succeed. ``min_delay_s`` is the
    hub's own retry-after, when it gave one; ``token_expired`` asks for a
    fresh token first."""

    def __init__(self, why: str, *, min_delay_s: float = 0.0, token_expired: bool = False, status: int | None = None):
        super().__init__(why)
        self.min_delay_s = min_delay_s
        self.token_expired = token_expired
        self.status = status


def close_info(exc: WsConnectionClosed) -> tuple[int | None, str]:
    """The hub's close code and reason, or ``(None, "")`` when the
    connection ended without a close frame from the hub."""
    rcvd = exc.rcvd
    if rcvd is None:
        return None, ""
    return rcvd.code, rcvd.reason


async def open_socket(
    url: str,
    codec: Codec,
    token: str,
    *,
    auth: AuthMode = "header",
    origin: str | None = None,
    open_timeout: float = 10.0,
    max_size: int | None = 16 * 1024 * 1024,
) -> Opened:
    """Connects and waits for ``welcome``.

    Raises ``Transient`` for failures worth another attempt,
    ``HandshakeError`` / ``ConnectionClosed`` for final ones.
    """
    headers = {"Authorization": f"Bearer {token}"} if auth == "header" else None
    try:
        ws = await connect(
            url,
            subprotocols=[Subprotocol(codec.subprotocol)],
            additional_headers=headers,
            origin=Origin(origin) if origin else None,
            # The hub does not compress; offering it only costs a header.
            compression=None,
            # Our own heartbeat (Client) uses the hub's heartbeat_ms.
            ping_interval=None,
            ping_timeout=None,
            open_timeout=open_timeout,
            close_timeout=2.0,
            max_size=max_size,
            # Frames buffered before reading pauses the socket (and so,
            # eventually, the hub's writer): generous, for bursts.
            max_queue=1024,
            user_agent_header="eva-hub-python/0.1",
            # Never route hub traffic through a proxy picked up from the
            # environment.
            proxy=None,
        )
    except InvalidStatus as e:
        raise _refusal(e) from e
    except (OSError, asyncio.TimeoutError, InvalidHandshake) as e:
        raise Transient(f"cannot connect to {url}: {e!r}") from e

    if ws.subprotocol != codec.subprotocol:
        await ws.close()
        raise ProtocolError(f"the hub picked subprotocol {ws.subprotocol!r}, not {codec.subprotocol!r}")
    try:
        if auth == "frame":
            await ws.send(codec.encode(frames.auth(token)))
        first = await asyncio.wait_for(ws.recv(), open_timeout)
    except WsConnectionClosed as e:
        code, reason = close_info(e)
        if close_code_reconnects(code):
            raise Transient(f"closed before welcome: {code} {reason}", token_expired=code == 4002) from e
        raise ConnectionClosed(code, reason) from e
    except (OSError, asyncio.TimeoutError) as e:
        ws.transport.abort()
        raise Transient(f"no welcome from {url}: {e!r}") from e
    frame = codec.decode(first)
    if not isinstance(frame, dict) or frame.get("type") != "welcome":
        await ws.close()
        raise ProtocolError(f"expected welcome, got {frame!r:.200}")
    return Opened(ws, frame)  # type: ignore[arg-type]


def _refusal(e: InvalidStatus) -> Exception:
    res = e.response
    status = res.status_code
    code, message, retry_after_ms = "invalid", res.reason_phrase or "", None
    try:
        body = json.loads(res.body or b"{}")
        err = body.get("error", {})
        code = err.get("code", code)
        message = err.get("message", message)
        retry_after_ms = err.get("retry_after_ms")
    except (ValueError, AttributeError):
        pass
    if retry_after_ms is None:
        header = res.headers.get("Retry-After")
        if header and header.isdigit():
            retry_after_ms = int(header) * 1000
    if status in _RETRY_HTTP:
        delay = (retry_after_ms or 0) / 1000.0
        return Transient(f"handshake refused with HTTP {status} {code}: {message}", min_delay_s=delay, status=status)
    return HandshakeError(code, message, retry_after_ms=retry_after_ms, status=status)
