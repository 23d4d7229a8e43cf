"""The two codecs of ``eva.v1``: JSON in text frames, MessagePack in binary
frames. Both carry the same model (maps keyed by field name, UUIDs and
epochs as strings); the WebSocket subprotocol picks one per connection.
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any, Literal, Union, cast

import msgpack

from .types import ClientFrame, ServerFrame

JSON_SUBPROTOCOL = "eva.v1.json"
MSGPACK_SUBPROTOCOL = "eva.v1.msgpack"

CodecName = Literal["json", "msgpack"]
Payload = Union[str, bytes]


class Codec:
    """Encodes client frames and decodes server frames for one connection.

    ``decode`` is the SDK's hot path: one C call per frame (``json.loads`` or
    ``msgpack.unpackb``), producing the plain dicts handlers receive.
    """

    __slots__ = ("name", "subprotocol", "binary", "_encode", "decode")

    def __init__(self, name: CodecName) -> None:
        self.name: CodecName = name
        if name == "json":
            self.subprotocol = JSON_SUBPROTOCOL
            self.binary = False
            # Compact separators: frames go over the wire, not to people.
            encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
            self._encode: Any = encoder.encode
            self.decode: Any = json.loads
        elif name == "msgpack":
            self.subprotocol = MSGPACK_SUBPROTOCOL
            self.binary = True
            packer = msgpack.Packer(use_bin_type=True)
            self._encode = packer.pack
            # raw=False: map keys and strings arrive as str, as in JSON.
            self.decode = _msgpack_decoder()
        else:  # pragma: no cover - guarded by the Literal type
            raise ValueError(f"unknown codec {name!r}: use 'json' or 'msgpack'")

    def encode(self, frame: ClientFrame) -> Payload:
        """One frame as a text (JSON) or binary (MessagePack) payload."""
        return cast(Payload, self._encode(frame))

    def decode_frame(self, data: Payload) -> ServerFrame:
        """Typed wrapper of ``decode`` for callers outside the hot path."""
        return cast(ServerFrame, self.decode(data))

    def __repr__(self) -> str:
        return f"Codec({self.name!r})"


def _msgpack_decoder() -> Any:
    # A partial, not a wrapper function: one Python call less per frame.
    return partial(msgpack.unpackb, raw=False)


def codec_for_subprotocol(name: str | None) -> Codec | None:
    if name == JSON_SUBPROTOCOL:
        return Codec("json")
    if name == MSGPACK_SUBPROTOCOL:
        return Codec("msgpack")
    return None
