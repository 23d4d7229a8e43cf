"""Every role, both codecs: a renderer, an operator and a participant in one
session, against a real hub."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from eva_hub import Client, ConnectionClosed, HubError, Renderer
from eva_hub.types import (
    CommandEvent,
    EventFrame,
    MetricsEvent,
    PresenceEvent,
    QuestionEvent,
    ResponseEvent,
    ResponseHeldEvent,
)
from conftest import CODECS, FAST, Hub, HubFactory, eventually


def renderer(hub: Hub, session: str, codec: Any = "msgpack", token: str = "dev:renderer:avatar-1", **kw: Any) -> Renderer:
    return Renderer(hub.ws_url, token, session, codec=codec, reconnect=FAST, **kw)


@pytest.mark.parametrize("codec", CODECS)
async def test_every_role_in_one_session(
    hubs: HubFactory, codec: Any, closer: Callable[[Client], Client]
) -> None:
    # Metrics reach operators at most every metrics_interval_ms: short here.
    hub = hubs.start(env={"EVA_HUB__SESSION__METRICS_INTERVAL_MS": "50"})
    sid = (await hub.rest().create_session("roles"))["id"]

    r = renderer(hub, sid, codec)
    questions: list[QuestionEvent] = []

    @r.on_question
    async def answer(q: QuestionEvent) -> None:
        questions.append(q)
        await r.respond(q["question_id"], f"answer to {q['text']}", intent="faq", knowledge_sources=["kb/1"])

    view = await r.start()
    closer(r.client)
    assert view.status in ("active", "starting", "created")
    await eventually(lambda: r.session.status == "active", what="renderer activated the session")

    op = closer(hub.client("dev:operator:ops-1", codec=codec))
    welcome = await op.connect()
    assert welcome["role"] == "operator" and welcome["subject"] == "ops-1"
    op_view = await op.join(sid)
    assert op_view.renderer_connected and op_view.controller is None
    metrics: list[MetricsEvent] = []
    op.on_metrics(lambda ev, f: metrics.append(ev))
    presence: list[PresenceEvent] = []
    op.on_presence(lambda ev, f: presence.append(ev))
    op_responses: list[ResponseEvent] = []
    op.on_response(lambda ev, f: op_responses.append(ev))

    p = closer(hub.client("dev:participant:alice", codec=codec))
    await p.connect()
    p_view = await p.join(sid, name="Alice")
    assert p_view.members == {}  # participants see counts, not members
    responses: list[tuple[ResponseEvent, EventFrame]] = []
    p.on_response(lambda ev, f: responses.append((ev, f)))

    ack = await r.state(slide=4, speaking=True, topic="pricing")
    assert ack["seq"] is not None and not ack.get("duplicate", False)
    await r.metrics(stt_ms=120, llm_ms=640, tts_ms=210, total_ms=970, cpu=0.5, fps=30)

    q_ack = await p.ask(sid, "What does it cost?")
    question_id = q_ack["ref_id"]
    assert question_id

    await eventually(lambda: len(responses) == 1, what="the participant to get the answer")
    resp, frame = responses[0]
    assert resp["question_id"] == question_id
    assert resp["text"] == "answer to What does it cost?"
    assert frame["session"] == sid and frame["seq"] > q_ack["seq"]  # type: ignore[operator]
    assert questions[0]["participant_name"] == "Alice"

    # Every view folded the same state.
    for v in (p.session(sid), op.session(sid), r.session):
        await eventually(lambda v=v: v.slide == 4 and v.speaking, what=f"{v} to show slide 4")  # type: ignore[misc]
        assert v.state["current_topic"] == "pricing"
    await eventually(lambda: bool(metrics), what="operator metrics")
    stages = metrics[-1]["metrics"].get("stages") or {}
    assert stages.get("llm_ms") == 640
    assert op.session(sid).metrics is not None
    assert any(e["change"] == "join" and e["member"]["id"] == "alice" for e in presence)
    assert "participant:alice" in op.session(sid).members
    # The operator saw the question open, then answered.
    assert not op.session(sid).open_questions and op_responses
    await eventually(lambda: p.session(sid).participant_count == 1, what="participant count")

    # A participant may not do an operator's job: a typed error, nothing
    # retried, the connection stays up.
    with pytest.raises(HubError) as refused:
        await p.takeover(sid)
    assert refused.value.code == "forbidden" and not refused.value.retryable
    assert p.connected


async def test_auth_frame_instead_of_header(hub: Hub, session_id: str, closer: Callable[[Client], Client]) -> None:
    p = closer(hub.client("dev:participant:bob", auth="frame", codec="json"))
    welcome = await p.connect()
    assert welcome["subject"] == "bob"
    view = await p.join(session_id)
    assert view.ready and view.epoch


async def test_takeover_holds_answers_say_passes_and_release(
    hub: Hub, session_id: str, closer: Callable[[Client], Client]
) -> None:
    sid = session_id
    r = renderer(hub, sid)
    taken: list[Any] = []
    released: list[Any] = []
    commands: list[CommandEvent] = []
    r.on_takeover(lambda ev: taken.append(ev))
    r.on_release(lambda ev: released.append(ev))

    @r.on_question
    async def answer(q: QuestionEvent) -> None:
        await r.respond(q["question_id"], "my own answer")

    @r.on_command
    async def obey(cmd: CommandEvent) -> None:
        commands.append(cmd)
        c = cmd["command"]
        if c["action"] == "say":
            await r.respond(None, c["text"], command_id=cmd["command_id"])
        elif c["action"] == "goto_slide":
            await r.state(slide=c["slide"])

    await r.start()
    closer(r.client)
    op = closer(hub.client("dev:operator:ops-1"))
    await op.connect()
    await op.join(sid)
    held: list[ResponseHeldEvent] = []
    op.on_response_held(lambda ev, f: held.append(ev))
    acked: list[str] = []
    op.on_command_ack(lambda ev, f: acked.append(ev["command_id"]))
    p = closer(hub.client("dev:participant:carol"))
    await p.connect()
    await p.join(sid)
    seen: list[ResponseEvent] = []
    p.on_response(lambda ev, f: seen.append(ev))

    t_ack = await op.takeover(sid, reason="off topic")
    await eventually(lambda: bool(taken) and r.taken_over, what="the renderer to learn of the takeover")
    assert op.session(sid).controller == "ops-1"
    # The takeover stands: taking over again is a duplicate, not an error.
    again = await op.takeover(sid)
    assert again.get("duplicate") is True and again["ref_id"] == t_ack["ref_id"]

    await p.ask(sid, "Is it free?")
    await eventually(lambda: bool(held), what="the answer to be held for the operator")
    assert not seen, "a held answer reached the participant"
    assert held[0]["response_id"] in op.session(sid).held_responses

    # A later operator joining sees the held response in its snapshot.
    op2 = closer(hub.client("dev:operator:ops-2"))
    await op2.connect()
    snap = await op2.join(sid)
    assert held[0]["response_id"] in snap.held_responses and snap.controller == "ops-1"

    await op.approve(sid, held[0]["response_id"])
    await eventually(lambda: len(seen) == 1, what="the approved answer")
    assert seen[0]["text"] == "my own answer"
    await eventually(lambda: not op.session(sid).held_responses, what="held response to be cleared")

    say = await op.say(sid, "Let's move on.")
    await eventually(lambda: len(seen) == 2, what="the said text")
    assert seen[1]["command_id"] == say["ref_id"] and seen[1]["text"] == "Let's move on."
    await op.goto_slide(sid, 7)
    await eventually(lambda: p.session(sid).slide == 7, what="slide 7")
    await eventually(lambda: len(acked) == 2, what="command acks")
    assert set(acked) == {c["command_id"] for c in commands}
    assert not op.session(sid).pending_commands

    # Only the controller may command.
    with pytest.raises(HubError) as e:
        await op2.say(sid, "me too")
    assert e.value.code == "not_controller"

    await op.release(sid)
    await eventually(lambda: bool(released) and not r.taken_over, what="release")
    assert released[0]["reason"] == "released"


async def test_operator_follows_several_sessions_and_leaves(hub: Hub, closer: Callable[[Client], Client]) -> None:
    rest = hub.rest()
    a = (await rest.create_session("a"))["id"]
    b = (await rest.create_session("b"))["id"]
    op = closer(hub.client("dev:operator:ops-1", codec="json"))
    await op.connect()
    await op.join(a)
    await op.join(b)
    customs: list[tuple[str, Any]] = []
    op.on_custom(lambda ev, f: customs.append((f["session"], ev["data"])))
    await rest.post_event(a, "job.progress", {"n": 1})
    await rest.post_event(b, "job.progress", {"n": 2})
    await eventually(lambda: len(customs) == 2, what="events of both sessions")
    assert sorted(customs, key=str) == sorted([(a, {"n": 1}), (b, {"n": 2})], key=str)

    watcher = closer(hub.client("dev:operator:watcher"))
    await watcher.connect()
    await watcher.join(a)
    left: list[PresenceEvent] = []
    watcher.on_presence(lambda ev, f: left.append(ev) if ev["change"] == "leave" else None)
    await op.leave(a)
    assert a not in op.sessions and b in op.sessions
    await eventually(lambda: any(e["member"]["id"] == "ops-1" for e in left), what="presence leave")
    assert await op.ping() > 0

    # The console's overview: the tenant's sessions, newest first.
    listed = await op.list_sessions()
    ids = [line["session"] for line in listed]
    assert ids.index(b) < ids.index(a)
    assert next(line for line in listed if line["session"] == a).get("name") == "a"
    p = closer(hub.client("dev:participant:peek"))
    await p.connect()
    with pytest.raises(HubError) as refused:
        await p.list_sessions()
    assert refused.value.code == "forbidden"


async def test_renderer_refused_while_another_is_live_unless_it_takes_over(
    hub: Hub, session_id: str, closer: Callable[[Client], Client]
) -> None:
    first = renderer(hub, session_id)
    await first.start()
    closer(first.client)
    second = Renderer(hub.ws_url, "dev:renderer:avatar-2", session_id, reconnect=FAST)
    closer(second.client)
    with pytest.raises(HubError) as e:
        await second.start()
    assert e.value.code == "renderer_active"
    assert session_id not in second.client.sessions

    third = renderer(hub, session_id, token="dev:renderer:avatar-3", takeover=True)
    await third.start()
    closer(third.client)
    assert first.fence is not None and third.fence == first.fence + 1
    await eventually(lambda: third.session.renderer_fence == third.fence, what="fence in the view")
    # The replaced renderer was closed with 4504, final: no reconnect.
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(first.client.wait_closed(), 5)
    assert closed.value.code == 4504
    assert first.client.state == "closed"
    ack = await third.state(slide=2)
    assert ack["seq"]
    await asyncio.sleep(0)
