"""Throughput of the SDK's receive path: decode + fold + dispatch of event
frames, on one core, without a network.

    python -m eva_hub.bench [--events 200000] [--codec msgpack|json|both]
                            [--frames full|compact|both] [--rounds 5]

Frames are pre-encoded by the hub's rules (the same maps the hub sends)
and fed to a real ``Client`` through the same method its socket reader
calls for every message. A plain-function handler is registered for every
event kind, as an app would. The mix: state, counters, presence, question,
response, custom and metrics events. ``--frames compact`` sends them as
compact event frames (``{"e": alias, "q": seq, ...event}``, what a join
with ``compact: true`` gets) instead of ``event`` frames.

Rates are per second of this process's CPU time (one core), so other
processes on the machine do not distort them. Not a test: a number to
watch (target: 50,000 events/s or more).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
import uuid
from typing import Any

from .client import Client, _Joined
from .codec import Codec, CodecName
from .types import EventFrame

SESSION = str(uuid.UUID(int=0x0192F5C07D3E7B1A9C4E2F6A8D1B3C5E))


def _event(kind: int, seq: int) -> dict[str, Any]:
    """One realistic event of each kind in the mix."""
    qid = "0192f5c1-7d3e-7b1a-9c4e-2f6a8d1b3c5e"
    k = kind % 7
    if k == 0:
        ev: dict[str, Any] = {
            "kind": "state",
            "state": {
                "current_slide": seq % 40,
                "presentation_mode": "auto",
                "is_speaking": bool(seq & 1),
                "awaiting_questions": False,
                "operator_connected": True,
                "current_topic": "pricing",
                "last_interaction": 1732290000001,
            },
        }
    elif k == 1:
        ev = {
            "kind": "counters",
            "counters": {
                "participant_count": 118,
                "questions_received": seq,
                "operator_interventions": 1,
                "error_count": 0,
            },
        }
    elif k == 2:
        ev = {
            "kind": "presence",
            "change": "join" if seq & 2 else "leave",
            "member": {"id": f"user-{seq % 500}", "role": "participant", "name": "Ada"},
            "participant_count": 118,
        }
    elif k == 3:
        ev = {
            "kind": "question",
            "question_id": qid,
            "participant_id": "alice",
            "participant_name": "Alice",
            "text": "What does it cost?",
        }
    elif k == 4:
        ev = {
            "kind": "response",
            "response_id": "0192f5c1-7d3e-7b1a-9c4e-2f6a8d1b3c5f",
            "question_id": qid,
            "text": "It is free for a month.",
            "confidence": 0.92,
            "response_time_ms": 840,
            "intent": "pricing",
            "knowledge_sources": ["faq/pricing"],
        }
    elif k == 5:
        ev = {
            "kind": "custom",
            "name": "job.progress",
            "data": {"job_id": "job_voice_abc123", "progress": seq % 100},
            "from": "backend",
        }
    else:
        ev = {
            "kind": "metrics",
            "metrics": {
                "latency_ms": 234.0,
                "cpu_usage": 0.68,
                "stages": {"stt_ms": 120.0, "llm_ms": 640.0, "tts_ms": 210.0, "total_ms": 980.0},
            },
        }
    return {"type": "event", "session": SESSION, "seq": seq, "ts": 1732290000123 + seq, "event": ev}


def _snapshot() -> dict[str, Any]:
    return {
        "type": "snapshot",
        "session": SESSION,
        "epoch": "9f3a2c0d11e4b567",
        "seq": 0,
        "status": "active",
        "state": _event(0, 0)["event"]["state"],
        "counters": _event(1, 0)["event"]["counters"],
        "presence": {"participant_count": 0, "members": []},
        "control": {"controller": None, "renderer_connected": True, "renderer_fence": 1},
    }


def _encode_server(codec: Codec, frame: dict[str, Any]) -> Any:
    # Client codecs encode client frames; server frames are the same maps.
    return codec._encode(frame)


def _compact(frame: dict[str, Any]) -> dict[str, Any]:
    """The same event as a compact event frame (alias 1)."""
    return {"e": 1, "q": frame["seq"], **frame["event"]}


async def run(events: int, codec_name: CodecName, rounds: int, compact: bool = False) -> dict[str, float]:
    codec = Codec(codec_name)
    payloads = [
        _encode_server(codec, _compact(_event(i, i + 1)) if compact else _event(i, i + 1)) for i in range(events)
    ]
    snapshot = _encode_server(codec, _snapshot())

    client = Client("ws://127.0.0.1:9/v1/ws", "dev:operator:bench", codec=codec_name)
    counted = [0]

    def on_any(ev: Any, frame: EventFrame) -> None:
        counted[0] += 1

    for kind in ("state", "counters", "presence", "question", "response", "custom", "metrics"):
        getattr(client, f"on_{kind}")(on_any)

    loop = asyncio.get_running_loop()
    rates = []
    for _ in range(rounds):
        j = _Joined(SESSION, None, False, compact, True, loop.create_future())
        client._sessions[SESSION] = j
        if compact:
            client._feed(_encode_server(codec, {"type": "joined", "session": SESSION, "role": "operator", "alias": 1}))
        client._feed(snapshot)
        counted[0] = 0
        gc.collect()
        feed = client._feed
        # CPU time of this process: what one core spends, unaffected by
        # other processes competing for it.
        t0 = time.process_time()
        for p in payloads:
            feed(p)
        dt = time.process_time() - t0
        assert counted[0] == events, (counted[0], events)
        assert j.view.seq == events
        rates.append(events / dt)

    # The floor: decoding alone, nothing else (best of the same rounds).
    decode = codec.decode
    floors = []
    for _ in range(rounds):
        gc.collect()
        t0 = time.process_time()
        for p in payloads:
            decode(p)
        floors.append(events / (time.process_time() - t0))
    decode_only = max(floors)
    return {
        "best": max(rates),
        "median": statistics.median(rates),
        "decode_only": decode_only,
        "bytes_per_frame": sum(len(p) for p in payloads) / events,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description="eva_hub receive-path throughput (decode + fold + dispatch)")
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--codec", choices=["msgpack", "json", "both"], default="both")
    ap.add_argument("--frames", choices=["full", "compact", "both"], default="both")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    codecs: list[CodecName] = ["msgpack", "json"] if args.codec == "both" else [args.codec]
    forms = ["full", "compact"] if args.frames == "both" else [args.frames]
    for name in codecs:
        for form in forms:
            r = asyncio.run(run(args.events, name, args.rounds, compact=form == "compact"))
            print(
                f"{name:8} {form:8} {args.events} events x {args.rounds} rounds, {r['bytes_per_frame']:.0f} B/frame: "
                f"decode+fold+dispatch best {r['best']:,.0f} events/s, median {r['median']:,.0f} events/s "
                f"of CPU time (decode alone {r['decode_only']:,.0f}/s)"
            )


if __name__ == "__main__":
    main()
