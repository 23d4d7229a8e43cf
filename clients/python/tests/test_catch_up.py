"""A renderer starting from a snapshot acts on what is still waiting: the
emergency stops among the pending commands first (handled, acknowledged),
then the pending commands (``on_command``, acknowledged when it returns),
then the open questions (``on_question``). After an outage long enough for
a discontinuity, and on a first join."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from eva_hub import Client, EmergencyStop, Renderer
from eva_hub.types import CommandEvent, DiscontinuityFrame, QuestionEvent
from conftest import FAST, Hub, HubFactory, eventually
from test_resume import FixedDelay, kill_socket


async def test_after_a_discontinuity_the_renderer_handles_the_stop_then_the_command_then_the_question(
    hubs: HubFactory, closer: Callable[[Client], Client]
) -> None:
    hub = hubs.start(env={"EVA_HUB__SESSION__HISTORY_SIZE": "8"})
    sid = (await hub.rest().create_session("catch-up"))["id"]
    # Back 1.5 s after the drop: the outage the test fills with events.
    r = Renderer(hub.ws_url, "dev:renderer:returning", sid, reconnect=FixedDelay(initial_s=1.5, max_s=1.5))
    log: list[str] = []

    def on_stop(stop: EmergencyStop) -> None:
        log.append(f"stop {stop.reason} by {stop.operator_id}")

    async def on_command(cmd: CommandEvent) -> None:
        log.append(f"command {cmd['command']['action']}")

    async def on_question(q: QuestionEvent) -> None:
        log.append(f"question {q['text']} from {q.get('participant_name')}")
        await r.respond(q["question_id"], f"answer: {q['text']}")

    r.on_emergency_stop(on_stop)
    r.on_command(on_command)
    r.on_question(on_question)
    gaps: list[DiscontinuityFrame] = []
    r.client.on_discontinuity(lambda f, view: gaps.append(f))
    await r.start()
    closer(r.client)
    op = closer(hub.client("dev:operator:ops-gap"))
    await op.connect()
    await op.join(sid)
    p = closer(hub.client("dev:participant:gap"))
    await p.connect()
    await p.join(sid, name="Gap")

    kill_socket(r.client)
    await eventually(lambda: not r.client.connected, what="the renderer offline")
    question = await p.ask(sid, "what did I miss?")
    await op.takeover(sid, reason="while the renderer is away")
    command = await op.goto_slide(sid, 3)
    stop = await op.emergency_stop(sid, reason="halt")
    for i in range(12):
        await hub.rest().post_event(sid, "tick", {"i": i})
    staff = op.session(sid)
    assert list(staff.pending_commands) == [command["ref_id"], stop["ref_id"]]
    assert list(staff.open_questions) == [question["ref_id"]]

    await eventually(lambda: bool(gaps), timeout=10, what="the discontinuity")
    assert gaps[0]["reason"] == "history_trimmed"
    await eventually(lambda: not staff.pending_commands, what="both acknowledged (command_ack events)")
    # Taken over: the answer is held, and answers the question.
    await eventually(lambda: not staff.open_questions, what="the question answered")
    assert any(h.get("question_id") == question["ref_id"] for h in staff.held_responses.values())
    assert log == ["stop halt by ops-gap", "command goto_slide", "question what did I miss? from Gap"]
    assert r.stopped
    mine = r.session
    # Its answer's ack may come after the operator saw the held response.
    await eventually(lambda: not mine.open_questions, what="answered in the renderer's own view")
    assert not mine.pending_commands, "acknowledged in the renderer's own view"
    # Nothing is handled twice: a reconnect that resumes changes nothing.
    kill_socket(r.client)
    await eventually(lambda: r.client.connected, timeout=10, what="the resume")
    await asyncio.sleep(0.2)
    assert len(log) == 3


async def test_a_renderer_gets_the_questions_asked_before_it_joined(
    hub: Hub, session_id: str, closer: Callable[[Client], Client]
) -> None:
    p = closer(hub.client("dev:participant:early"))
    await p.connect()
    await p.join(session_id, name="Early")
    asked = await p.ask(session_id, "is anyone coming?")
    answered: list[str] = []
    async with Renderer(hub.ws_url, "dev:renderer:late", session_id, reconnect=FAST) as r:
        # Registered after the join (the usual `async with` shape): the
        # questions the first snapshot listed are handed over now.
        @r.on_question
        async def answer(q: QuestionEvent) -> None:
            answered.append(q["question_id"])
            await r.respond(q["question_id"], "here now")

        await eventually(lambda: answered == [asked["ref_id"]], what="the early question")
        await eventually(lambda: not r.session.open_questions, what="answered in the renderer's view")
