#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora under fuzz/corpus/<target>/.

Client frames are the JSON examples of docs/PROTOCOL.md (every block the
protocol test reads), each also as MessagePack; REST bodies are the JSON
objects of the REST docs plus one body of every request type; tokens are
the shapes a client presents. Run from anywhere; the seeds are committed,
so rerun it only when the docs change.
"""

import hashlib
import json
import pathlib
import re
import struct

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"


def blocks(path):
    """Every JSON value in a ```json block: the block, or each of its lines."""
    text = (ROOT / path).read_text()
    for block in re.findall(r"```json\n(.*?)```", text, re.S):
        try:
            yield json.loads(block)
        except json.JSONDecodeError:
            for line in block.splitlines():
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError:
                        pass


def msgpack(v):
    """MessagePack as rmp-serde writes it: maps with string keys."""
    if v is None:
        return b"\xc0"
    if v is True:
        return b"\xc3"
    if v is False:
        return b"\xc2"
    if isinstance(v, int):
        if 0 <= v < 128:
            return bytes([v])
        if -32 <= v < 0:
            return struct.pack("b", v)
        if v >= 0:
            return b"\xcf" + struct.pack(">Q", v)
        return b"\xd3" + struct.pack(">q", v)
    if isinstance(v, float):
        return b"\xcb" + struct.pack(">d", v)
    if isinstance(v, str):
        b = v.encode()
        if len(b) < 32:
            return bytes([0xA0 | len(b)]) + b
        return b"\xdb" + struct.pack(">I", len(b)) + b
    if isinstance(v, list):
        return b"\xdd" + struct.pack(">I", len(v)) + b"".join(msgpack(x) for x in v)
    if isinstance(v, dict):
        out = b"\xdf" + struct.pack(">I", len(v))
        for k, x in v.items():
            out += msgpack(k) + msgpack(x)
        return out
    raise TypeError(type(v))


def write(target, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()[:16]).write_bytes(data)


# `ingest::Source::ALL`, in order.
SOURCES = ["tavus", "heygen", "livekit", "generic"]

CLIENT_TYPES = {
    "auth", "join", "leave", "state", "context", "metrics", "status", "response",
    "command_ack", "question", "takeover", "release", "command", "suggestion",
    "correction", "emergency_stop", "approve", "ack_alert", "publish",
    "list_sessions", "ping",
}

SESSION = "0190a6f2-8b3c-7d4e-9f01-23456789abcd"
REST_BODIES = [
    {"name": "Quarterly review", "description": "Q3", "config": {"voice": "en-GB"}},
    {"reason": "done"},
    {"status": "active", "reason": "renderer ready"},
    {"name": "job.progress", "audience": "staff", "data": {"done": 3, "of": 7}},
    {"role": "participant", "subject": "alice", "sessions": [SESSION], "name": "Alice", "ttl_s": 600},
    {"name": "ci", "scopes": ["eva:read", "eva:write"], "expires_at": "2030-01-01T00:00:00Z"},
    {"url": "https://example.com/hook", "events": ["*"], "description": "x", "retry_count": 3, "timeout_seconds": 30},
    {"description": None, "is_active": False, "events": ["session.started"]},
    {"since": "2026-01-01T00:00:00Z"},
    {"delivery_id": 42},
    {"type": "voice_clone", "metadata": {"sample_url": "https://example.com/a.wav"}, "session": SESSION},
    {"status": "processing", "progress": 40},
    {"status": "completed", "progress": 100, "result": {"voice_id": "v-1"}},
]

TOKENS = [
    b"\x00dev:participant:alice",
    b"\x00dev:operator:op-1:" + SESSION.encode(),
    b"\x00dev:backend:ci",
    b"\x00evk_" + b"A" * 43,
    b"\x00eyJhbGciOiJIUzI1NiIsImtpZCI6ImZ1enoifQ.e30.c2ln",
    b"\x01" + json.dumps({
        "sub": "alice", "tenant": SESSION, "role": "participant", "sessions": [SESSION],
        "exp": 4102444800, "nbf": 1700000000, "iat": 1700000000,
        "iss": "eva-hub", "aud": "eva-hub",
    }).encode(),
    b"\x01" + json.dumps({"alg": "HS256", "kid": "fuzz", "crit": ["b64"]}).encode() + b"\x00{}",
]


def main():
    frames = [v for v in blocks("docs/PROTOCOL.md") if isinstance(v, dict) and v.get("type") in CLIENT_TYPES]
    for f in frames:
        write("client_frames", json.dumps(f, separators=(",", ":")).encode())
        write("client_frames", msgpack(f))
    bodies = list(REST_BODIES)
    for doc in ("docs/SECURITY.md", "docs/WEBHOOKS.md", "README.md"):
        bodies += [v for v in blocks(doc) if isinstance(v, dict) and "type" not in v]
    for b in bodies:
        write("rest_bodies", json.dumps(b, separators=(",", ":")).encode())
    for t in TOKENS:
        write("auth_tokens", t)
    # The snapshot target reads its input as choices (which event, which
    # ids), so any bytes are a sequence of events; a few long ones start it
    # with long sequences.
    for i in range(4):
        data = b""
        while len(data) < 256 * (i + 1):
            data += hashlib.sha256(data + bytes([i])).digest()
        write("replica_snapshot", data)
    # Inbound vendor events: each fixture of the ingest tests, correctly
    # signed for its source (first byte: the source's index in
    # `Source::ALL`, bit 2 set), and once unsigned with a made-up
    # credential (bit 2 clear, credential NUL body).
    events = sorted((ROOT / "tests" / "fixtures" / "ingest").glob("*.json"))
    for path in events:
        source = SOURCES.index(path.name.split("_")[0])
        body = path.read_bytes()
        write("ingest_events", bytes([4 | source]) + body)
        write("ingest_events", bytes([source]) + b"sha256=00\x00" + body)
    print(f"{len(frames)} client frames, {len(bodies)} REST bodies, {len(TOKENS)} tokens, "
          f"{len(events)} inbound events")


if __name__ == "__main__":
    main()
