"""The pieces without a hub: backoff, dispatch order and the priority
lane, the session fold, the ack tracker, the codecs."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from eva_hub import Backoff, HubError, RetriesExhausted, frames
from eva_hub.acks import AckTracker
from eva_hub.codec import Codec
from eva_hub.dispatch import Dispatcher
from eva_hub.session import SessionView
from eva_hub.types import EventFrame, Job, JobStatus, Snapshot

SID = "0192f5c0-7d3e-7b1a-9c4e-2f6a8d1b3c5e"


def test_backoff_is_exponential_capped_and_fully_jittered() -> None:
    b = Backoff(initial_s=0.5, max_s=8.0, rng=random.Random(7))
    assert [b.cap(n) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert b.cap(10_000) == 8.0  # no overflow
    draws = [b.delay(3) for _ in range(2000)]
    assert all(0.0 <= d <= 4.0 for d in draws)
    # Full jitter: spread over the whole range, not clustered at the cap.
    assert min(draws) < 0.4 and max(draws) > 3.6
    assert not Backoff().exhausted(10**6)
    assert Backoff(max_attempts=3).exhausted(3) and not Backoff(max_attempts=3).exhausted(2)


async def test_dispatch_order_and_the_priority_lane() -> None:
    errors: list[BaseException] = []
    d = Dispatcher(on_error=lambda e, h: errors.append(e))
    seen: list[str] = []
    d.add("a", lambda x: seen.append(f"a{x}"))
    release = asyncio.Event()

    async def urgent(x: str) -> None:
        seen.append(f"urgent {x}")
        await release.wait()
        seen.append("urgent done")

    d.emit("a", 1)
    d.emit_first(urgent, "stop")
    # Emitted while the priority handler runs: held back, in order.
    d.emit("a", 2)
    d.emit("a", 3)
    await asyncio.sleep(0.01)
    assert seen == ["a1", "urgent stop"]
    release.set()
    await d.drain()
    assert seen == ["a1", "urgent stop", "urgent done", "a2", "a3"]

    # A failing handler is reported, and the next one still runs.
    def boom(x: int) -> None:
        raise ValueError("handler bug")

    d.add("b", boom)
    d.add("b", lambda x: seen.append(f"b{x}"))
    d.emit("b", 1)
    assert isinstance(errors[0], ValueError) and seen[-1] == "b1"


async def test_async_handlers_run_as_tasks_and_can_be_cancelled() -> None:
    d = Dispatcher()
    started = asyncio.Event()
    cancelled: list[bool] = []

    async def slow(x: int) -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    d.add("q", slow)
    d.emit("q", 1)  # returns at once
    await started.wait()
    assert d.cancel_running() == 1
    await d.drain()
    assert cancelled == [True]


def snapshot(seq: int = 10) -> Snapshot:
    return {
        "session": SID,
        "epoch": "9f3a2c0d11e4b567",
        "seq": seq,
        "status": "active",
        "state": {
            "current_slide": 5,
            "presentation_mode": "auto",
            "is_speaking": True,
            "awaiting_questions": False,
            "operator_connected": True,
            "current_topic": "pricing",
            "last_interaction": 0,
        },
        "counters": {"participant_count": 1, "questions_received": 0, "operator_interventions": 0, "error_count": 0},
        "presence": {"participant_count": 1, "members": [{"id": "alice", "role": "participant", "name": "Alice"}]},
        "control": {"controller": None, "renderer_connected": True, "renderer_fence": 1},
        "held_responses": [],
        "alerts": [],
    }


def event(seq: int, ev: dict[str, Any]) -> EventFrame:
    return {"type": "event", "session": SID, "seq": seq, "ts": 0, "event": ev}  # type: ignore[typeddict-item]


def test_the_session_fold() -> None:
    v = SessionView(SID)
    assert v.position is None
    v.apply_snapshot(snapshot())
    assert v.position == {"epoch": "9f3a2c0d11e4b567", "seq": 10}
    assert v.slide == 5 and v.speaking and "participant:alice" in v.members

    assert not v.apply(event(10, {"kind": "state", "state": {**v.state, "current_slide": 99}})), "a repeat applied"
    assert v.slide == 5
    assert v.apply(event(12, {"kind": "takeover", "intervention_id": "i1", "operator_id": "op"}))
    assert v.controller == "op" and v.taken_over
    held = {
        "response_id": "r1",
        "text": "x",
        "confidence": 1.0,
        "response_time_ms": 1,
        "knowledge_sources": [],
    }
    v.apply(event(13, {"kind": "question", "question_id": "q1", "participant_id": "alice", "text": "?"}))
    v.apply(event(14, {"kind": "response_held", **held, "question_id": "q1"}))
    # A held response answers its question (as the hub's snapshots say).
    assert "r1" in v.held_responses and "q1" not in v.open_questions
    v.apply(event(15, {"kind": "response", **held, "question_id": "q1"}))  # approved
    assert not v.held_responses and not v.open_questions
    v.apply(event(16, {"kind": "response_held", **held, "response_id": "r2"}))
    v.apply(event(17, {"kind": "release", "intervention_id": "i1", "operator_id": "op", "reason": "released"}))
    assert v.controller is None and not v.held_responses
    v.apply(
        event(
            18,
            {
                "kind": "presence",
                "change": "leave",
                "member": {"id": "alice", "role": "participant"},
                "participant_count": 0,
            },
        )
    )
    assert not v.members and v.participant_count == 0
    alert = {
        "alert_id": "a1",
        "alert_type": "metric_threshold",
        "severity": "warning",
        "title": "t",
        "message": "m",
        "metadata": None,
        "created_at": 0,
    }
    v.apply(event(19, {"kind": "alert", "alert": alert}))
    assert "a1" in v.alerts
    v.apply(event(20, {"kind": "alert_ack", "alert_id": "a1", "by": "op"}))
    assert not v.alerts
    v.apply(event(21, {"kind": "command", "command_id": "c1", "operator_id": "op", "command": {"action": "pause"}}))
    assert v.pending_commands["c1"] == {
        "command_id": "c1",
        "operator_id": "op",
        "emergency": False,
        "command": {"action": "pause"},
        "issued_at": 0,
    }
    v.apply(event(22, {"kind": "emergency_stop", "intervention_id": "e1", "operator_id": "op", "reason": "r"}))
    assert v.pending_commands["e1"]["emergency"] and v.pending_commands["e1"].get("reason") == "r"
    v.apply(event(23, {"kind": "command_ack", "command_id": "c1", "latency_ms": 3}))
    v.acknowledged("e1")  # the renderer's own ack: it sees no command_ack event
    assert not v.pending_commands
    v.apply(event(24, {"kind": "question", "question_id": "q2", "participant_id": "bob", "text": "and?"}))
    assert v.open_questions["q2"] == {"question_id": "q2", "participant_id": "bob", "text": "and?", "asked_at": 0}
    v.answered("q2")
    assert not v.open_questions
    v.apply(event(25, {"kind": "lifecycle", "status": "stopped", "previous": "active"}))
    assert v.ended and v.seq == 25
    # A discontinuity's snapshot replaces everything, open questions and
    # pending commands included.
    snap = snapshot(seq=5)
    snap["questions"] = [{"question_id": "q9", "participant_id": "alice", "text": "?", "asked_at": 1}]
    snap["pending_commands"] = [
        {"command_id": "e9", "operator_id": "op", "emergency": True, "reason": "x", "issued_at": 2},
        {"command_id": "c9", "operator_id": "op", "emergency": False, "command": {"action": "resume"}, "issued_at": 3},
    ]
    v.apply_snapshot(snap)
    assert v.seq == 5 and v.status == "active" and "participant:alice" in v.members
    assert list(v.open_questions) == ["q9"] and list(v.pending_commands) == ["e9", "c9"]


def job(id: str, status: JobStatus = "pending", progress: int = 0) -> Job:
    return {
        "id": id,
        "tenant": "00000000-0000-7000-8000-000000000001",
        "type": "voice_clone",
        "status": status,
        "progress": progress,
        "stream": SID,
        "metadata": {},
        "created_at": "2026-12-05T10:00:00Z",
        "updated_at": f"2026-12-05T10:00:{progress:02}Z",
    }


def test_the_jobs_fold() -> None:
    v = SessionView(SID)
    snap = snapshot()
    snap["jobs"] = [job("j1", "processing", 40), job("j2")]
    v.apply_snapshot(snap)
    assert list(v.jobs) == ["j1", "j2"] and v.jobs["j1"]["progress"] == 40

    # Each event is the whole job: it replaces, and the changed job moves
    # last (least recently changed first, the snapshot's order).
    assert v.apply(event(11, {"kind": "job", "job": job("j1", "processing", 60)}))
    assert list(v.jobs) == ["j2", "j1"] and v.jobs["j1"]["progress"] == 60
    # A repeat (a replay after a resume) changes nothing.
    assert not v.apply(event(11, {"kind": "job", "job": job("j1", "processing", 30)}))
    assert not v.apply(event(9, {"kind": "job", "job": job("j2", "cancelled")}))
    assert v.jobs["j1"]["progress"] == 60 and v.jobs["j2"]["status"] == "pending"
    v.apply(event(12, {"kind": "job", "job": job("j3"), "audience": "operators"}))
    v.apply(event(13, {"kind": "job", "job": job("j1", "completed", 100)}))
    assert list(v.jobs) == ["j2", "j3", "j1"] and v.jobs["j1"]["status"] == "completed"
    # The session ending does not take finished jobs away.
    v.apply(event(14, {"kind": "lifecycle", "status": "stopped", "previous": "active"}))
    assert v.jobs["j1"]["status"] == "completed"

    # A discontinuity's snapshot replaces them: none listed, none kept.
    v.apply_snapshot(snapshot(seq=20))
    assert v.jobs == {}


async def test_ack_tracker_retries_boundedly_and_fails_for_good() -> None:
    t = AckTracker(max_retries=2)
    req = t.add("q1", frames.question(SID, "q1", "?"), b"")
    err = {"type": "error", "code": "backlog_full", "message": "later", "id": "q1", "retry_after_ms": 200}
    first = t.on_error(err)  # type: ignore[arg-type]
    assert first is not None and first[1] == pytest.approx(0.2) and req.held
    req.held = False
    assert t.on_error(err) is not None  # type: ignore[arg-type]
    assert t.on_error(err) is None  # type: ignore[arg-type]
    with pytest.raises(RetriesExhausted) as e:
        await req.future
    assert e.value.code == "backlog_full" and e.value.retry_after_ms == 200

    req2 = t.add("q2", frames.question(SID, "q2", "?"), b"")
    assert t.add("q2", frames.question(SID, "q2", "?"), b"") is req2  # same id, same request
    t.on_error({"type": "error", "code": "forbidden", "message": "no", "id": "q2"})
    with pytest.raises(HubError) as e2:
        await req2.future
    assert e2.value.code == "forbidden" and not e2.value.retryable and len(t) == 0

    req3 = t.add("q3", frames.question(SID, "q3", "?"), b"")
    assert [r.id for r in t.due(1)] == ["q3"]
    req3.sent_on = 1
    assert t.due(1) == [] and [r.id for r in t.due(2)] == ["q3"]
    t.on_ack({"type": "ack", "id": "q3", "seq": 4})
    assert (await req3.future)["seq"] == 4


@pytest.mark.parametrize("name", ["json", "msgpack"])
def test_codecs_round_trip(name: Any) -> None:
    c = Codec(name)
    frame = frames.response(SID, "r1", "héllo", question_id=SID, knowledge_sources=["a"])
    payload = c.encode(frame)
    assert isinstance(payload, bytes if name == "msgpack" else str)
    assert c.decode(payload) == frame


async def test_request_refuses_frames_the_hub_never_acks() -> None:
    from eva_hub import Client

    c = Client("ws://127.0.0.1:9/v1/ws", "dev:renderer:x")
    c._run_task = asyncio.ensure_future(asyncio.sleep(0))  # as if connect() had been called
    for f in (frames.metrics(SID, {}), frames.command_ack(SID, SID), frames.join(SID), frames.ping()):
        with pytest.raises(ValueError):
            await c.request(f)
    await c._run_task


def test_a_bad_url_fails_at_once() -> None:
    from eva_hub import Client

    with pytest.raises(ValueError):
        Client("http://127.0.0.1:8080/v1/ws", "dev:participant:x")
