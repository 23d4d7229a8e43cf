"""examples/renderer.py as a user runs it (a separate process) answering a
participant, obeying an operator and stopping on an emergency stop."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from eva_hub import Client
from eva_hub.types import MetricsEvent, ResponseEvent
from conftest import Hub, eventually

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "renderer.py"


async def test_example_renderer_answers_obeys_and_stops(
    hub: Hub, session_id: str, tmp_path: Path, closer: Callable[[Client], Client]
) -> None:
    sid = session_id
    log_path = tmp_path / "example.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                str(EXAMPLE),
                "--url",
                hub.ws_url,
                "--session",
                sid,
                "--token",
                "dev:renderer:avatar-1",
                "--thinking-ms",
                "150",
                "--slide-seconds",
                "0.2",
                "--words-per-second",
                "40",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        op = closer(hub.client("dev:operator:ops-1"))
        await op.connect()
        view = await op.join(sid)
        metrics: list[MetricsEvent] = []
        op.on_metrics(lambda ev, f: metrics.append(ev))
        await eventually(lambda: view.renderer_connected and view.status == "active", what="the example to start")
        await eventually(lambda: view.slide >= 1, what="the example to present")

        p = closer(hub.client("dev:participant:olga", codec="json"))
        await p.connect()
        await p.join(sid, name="Olga")
        answers: list[ResponseEvent] = []
        p.on_response(lambda ev, f: answers.append(ev))
        q = await p.ask(sid, "How much does it cost?")
        await eventually(lambda: len(answers) == 1, what="the example's answer")
        assert answers[0]["question_id"] == q["ref_id"] and "How much does it cost?" in answers[0]["text"]
        # Answers take the "thinking" time, and the pipeline's stages are
        # reported as metrics.
        assert answers[0]["response_time_ms"] >= 150
        await eventually(
            lambda: any((m["metrics"].get("stages") or {}).get("total_ms") for m in metrics), what="stage metrics"
        )

        # Takeover: the example's own answers are held; a `say` passes.
        await op.takeover(sid, reason="checking")
        await p.ask(sid, "Second question?")
        await eventually(lambda: bool(view.held_responses), what="a held answer")
        said = await op.say(sid, "Operator speaking through the avatar.")
        await eventually(lambda: len(answers) == 2, what="the said text")
        assert answers[1].get("command_id") == said["ref_id"]
        await op.release(sid)

        # Emergency stop: silent at once, acknowledged.
        acked: list[str] = []
        op.on_command_ack(lambda ev, f: acked.append(ev["command_id"]))
        await eventually(lambda: view.speaking, what="the example to speak again")
        stop = await op.emergency_stop(sid, reason="test")
        await eventually(lambda: stop["ref_id"] in acked, what="the stop's ack")
        await eventually(lambda: not view.speaking, what="silence")
        await asyncio.sleep(0.5)
        assert not view.speaking, "the example spoke again after an emergency stop"
        assert view.status == "paused"
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
        try:
            code = proc.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            raise
        output = log_path.read_text()
    assert code == 0, output
    assert "EMERGENCY STOP" in output and "closed" in output, output


async def test_the_ten_line_renderer_answers(
    hub: Hub, session_id: str, tmp_path: Path, closer: Callable[[Client], Client]
) -> None:
    script = EXAMPLE.parent / "ten_lines.py"
    log_path = tmp_path / "ten.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, str(script), session_id, hub.ws_url], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        p = closer(hub.client("dev:participant:pat"))
        await p.connect()
        view = await p.join(session_id)
        await eventually(lambda: view.slide == 1 and view.speaking, what="the renderer's state")
        answers: list[ResponseEvent] = []
        p.on_response(lambda ev, f: answers.append(ev))
        await p.ask(session_id, "ten lines?")
        await eventually(lambda: bool(answers), what="the answer")
        assert answers[0]["text"] == "You asked: ten lines?"
    finally:
        proc.kill()
        proc.wait(10)
