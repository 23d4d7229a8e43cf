"""eva_hub: the Python client of eva-hub (protocol ``eva.v1``).

Start with ``Renderer`` (an avatar pipeline driving one session) or
``Client`` (operators, participants, anything lower level); ``Rest`` is for
backends. The modules, one job each:

- ``types``      every frame and event of the protocol, as TypedDicts
- ``frames``     builders for every client frame
- ``codec``      JSON / MessagePack encoding, picked by subprotocol
- ``transport``  opening one WebSocket up to ``welcome``; what is retryable
- ``connection`` the reconnect rule, backoff, token refresh, heartbeat
- ``client``     one logical connection: join/resume, resend, fold, route
- ``acks``       frames waiting for their ack; retries with the same id
- ``session``    one session's state: snapshot + events folded
- ``dispatch``   calling handlers in order, with a priority lane
- ``handlers``   typed handler registration (``on_question``...)
- ``actions``    typed sending methods per role (``ask``, ``takeover``...)
- ``renderer``   the high-level renderer
- ``rest``       the REST API (standard library only)
- ``errors``     exceptions, close-code and error-code tables
- ``backoff``    exponential backoff with full jitter
- ``bench``      ``python -m eva_hub.bench``: decode + dispatch throughput
"""

from .backoff import Backoff
from .client import Client, ConnectionState, TokenProvider
from .codec import JSON_SUBPROTOCOL, MSGPACK_SUBPROTOCOL, Codec
from .errors import (
    CLOSE_CODES,
    RETRYABLE_ERRORS,
    ConnectionClosed,
    EvaError,
    HandshakeError,
    HubError,
    ProtocolError,
    RetriesExhausted,
    close_code_reconnects,
)
from .renderer import EmergencyStop, Renderer
from .rest import Rest
from .session import SessionView

__version__ = "0.1.0"

__all__ = [
    "CLOSE_CODES",
    "JSON_SUBPROTOCOL",
    "MSGPACK_SUBPROTOCOL",
    "RETRYABLE_ERRORS",
    "Backoff",
    "Client",
    "Codec",
    "ConnectionClosed",
    "ConnectionState",
    "EmergencyStop",
    "EvaError",
    "HandshakeError",
    "HubError",
    "ProtocolError",
    "Renderer",
    "Rest",
    "RetriesExhausted",
    "SessionView",
    "TokenProvider",
    "close_code_reconnects",
]
