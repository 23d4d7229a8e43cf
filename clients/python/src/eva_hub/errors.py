"""Everything that can go wrong, as exceptions with the hub's own codes,
and the two tables that decide what the SDK does about it: which close
codes mean "reconnect" and which error codes mean "retry the same frame".
"""

from __future__ import annotations

from .types import ErrorCode, ErrorFrame

# Close codes the hub sends (docs/PROTOCOL.md, "Close codes"): name and
# whether the client reconnects. The rule is 1011, 1012 and 4000-4499
# reconnect (with backoff, resuming every joined session); every other code
# is final. A connection that ends without a close frame (killed socket,
# network loss) also reconnects.
CLOSE_CODES: dict[int, tuple[str, bool]] = {
    1000: ("normal", False),
    1002: ("protocol_error", False),
    1003: ("unsupported_data", False),
    1007: ("invalid_payload", False),
    1009: ("message_too_big", False),
    1011: ("internal_error", True),
    1012: ("service_restart", True),
    4000: ("slow_consumer", True),
    4001: ("idle_timeout", True),
    4002: ("token_expired", True),
    4003: ("rate_limited", True),
    4004: ("overloaded", True),
    4500: ("protocol_violation", False),
    4501: ("unauthorized", False),
    4502: ("forbidden", False),
    4503: ("auth_timeout", False),
    4504: ("replaced", False),
    4505: ("session_ended", False),
}

TOKEN_EXPIRED = 4002

# Error codes after which the same frame (same id) may be sent again, after
# `retry_after_ms` when the hub gives one. Everything else is final for that
# frame.
RETRYABLE_ERRORS: frozenset[str] = frozenset({"rate_limited", "backlog_full", "unavailable", "internal"})


def close_code_reconnects(code: int | None) -> bool:
    """The reconnect rule. ``None`` is a connection that ended without a
    close frame from the hub: reconnect."""
    if code is None:
        return True
    return code in (1011, 1012) or 4000 <= code <= 4499


def close_code_name(code: int | None) -> str:
    if code is None:
        return "abnormal_closure"
    known = CLOSE_CODES.get(code)
    return known[0] if known else f"close_{code}"


class EvaError(Exception):
    """Base of every exception this SDK raises."""


class HubError(EvaError):
    """The hub refused a frame (an ``error`` frame), or a REST call.

    ``retryable`` says whether sending the same frame again can succeed;
    the SDK already retried those a bounded number of times before raising.
    """

    def __init__(
        self,
        code: ErrorCode | str,
        message: str,
        *,
        retry_after_ms: int | None = None,
        id: str | None = None,
        session: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retry_after_ms = retry_after_ms
        self.id = id
        self.session = session
        # HTTP status, for REST calls and refused WebSocket handshakes.
        self.status = status

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE_ERRORS

    @classmethod
    def from_frame(cls, frame: ErrorFrame) -> HubError:
        return cls(
            frame["code"],
            frame["message"],
            retry_after_ms=frame.get("retry_after_ms"),
            id=frame.get("id"),
            session=frame.get("session"),
        )


class HandshakeError(HubError):
    """The hub answered the WebSocket handshake with an HTTP error (401
    ``unauthorized``: bad token; 401 ``token_expired``: a genuine token that
    expired, final only when no fresh one could be had; 403 origin or scope,
    429 too many connections, 400 no supported subprotocol, 503 draining).
    ``code`` is the hub's error code from the body, ``status`` the HTTP
    status."""


class ConnectionClosed(EvaError):
    """The connection ended for good: a final close code (see
    ``CLOSE_CODES``), ``Client.close()``, or a handshake refused for good.

    Every request still waiting for its ack fails with this, and
    ``Client.wait_closed()`` raises it (unless you closed the client).
    """

    def __init__(self, code: int | None, reason: str = "", *, cause: BaseException | None = None) -> None:
        self.code = code
        self.reason = reason
        self.name = close_code_name(code)
        detail = f" ({reason})" if reason else ""
        super().__init__(f"connection closed: {code} {self.name}{detail}")
        if cause is not None:
            self.__cause__ = cause


class RetriesExhausted(HubError):
    """A frame was refused with a retryable code more times than allowed;
    ``code`` and ``retry_after_ms`` are from the last refusal."""


class ProtocolError(EvaError):
    """The hub sent something this SDK cannot read (a bug on one side)."""
