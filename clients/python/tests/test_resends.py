"""A frame whose ack is lost with its connection is sent again with the same
id after the reconnect, and the hub answers with the original outcome:
``duplicate: true`` with the original ``seq`` and ``ref_id``, no second
event and no error. Questions are covered in test_resume.py; here every
other frame that takes an id: status, state, context, takeover, approve,
release."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from eva_hub import Client, HubError, Renderer
from eva_hub.types import AckFrame, EventFrame
from conftest import FAST, Hub, eventually
from test_resume import kill_socket


def lose_ack_once(c: Client, id: str) -> list[AckFrame]:
    """The first ack for ``id`` is dropped and the connection killed, as if
    the ack had been lost with it. Returns the dropped acks."""
    dropped: list[AckFrame] = []
    deliver = c._frame_handlers["ack"]

    def lose(f: Any) -> None:
        if f["id"] == id and not dropped:
            dropped.append(f)
            kill_socket(c)
            return
        deliver(f)

    c._frame_handlers["ack"] = lose
    return dropped


async def test_resends_after_a_lost_ack_get_the_original_outcome(
    hub: Hub, session_id: str, closer: Callable[[Client], Client]
) -> None:
    r = Renderer(hub.ws_url, "dev:renderer:resender", session_id, activate=False, reconnect=FAST)
    await r.start()
    closer(r.client)
    op = closer(hub.client("dev:operator:ops-r", reconnect=FAST))
    await op.connect()
    await op.join(session_id)
    watch = closer(hub.client("dev:operator:watcher", codec="json"))
    await watch.connect()
    await watch.join(session_id)
    seen: dict[str, list[EventFrame]] = {}
    watch.on_event(lambda ev, f: seen.setdefault(ev["kind"], []).append(f))
    # The renderer's join moves the session to `starting` on its own; the
    # watcher must have that status (from its snapshot or as an event)
    # before the first check counts lifecycle events.
    await eventually(lambda: watch.session(session_id).status == "starting", what="the session to start")
    errors: list[HubError] = []
    for c in (r.client, op, watch):
        c.on_error(errors.append)

    async def check(c: Client, kind: str, id: str, send: Callable[[str], Awaitable[AckFrame]]) -> AckFrame:
        before = len(seen.get(kind, []))
        dropped = lose_ack_once(c, id)
        ack = await asyncio.wait_for(send(id), 10)
        assert dropped, f"{kind}: the first ack was not intercepted"
        assert ack.get("duplicate") is True, f"{kind}: {ack}"
        assert ack["seq"] == dropped[0]["seq"], f"{kind}: not the original seq"
        assert ack.get("ref_id") == dropped[0].get("ref_id")
        await eventually(lambda: len(seen.get(kind, [])) >= before + 1, what=f"the {kind} event")
        await asyncio.sleep(0.1)
        assert len(seen[kind]) == before + 1, f"a second {kind} event"
        assert seen[kind][-1]["seq"] == ack["seq"]
        return ack

    await check(r.client, "lifecycle", "st-1", lambda id: r.client.set_status(session_id, "active", id=id))
    await check(r.client, "state", "s-1", lambda id: r.client.set_state(session_id, {"current_slide": 4}, id=id))
    await check(r.client, "context", "c-1", lambda id: r.client.set_context(session_id, {"flow": "qa"}, id=id))

    # Another event between the takeover and its resend: the duplicate ack
    # still names the takeover's own seq.
    async def takeover_then_state(id: str) -> AckFrame:
        pending = asyncio.ensure_future(op.takeover(session_id, reason="review", id=id))
        await eventually(lambda: "takeover" in seen, what="the takeover event")
        await r.state(slide=5)
        return await pending

    await check(op, "takeover", "t-1", takeover_then_state)
    held = (await r.respond(None, "held for review")).get("ref_id")
    assert held is not None
    await eventually(lambda: held in op.session(session_id).held_responses, what="the held response")
    approved = await check(op, "response", "a-1", lambda id: op.approve(session_id, held, id=id))
    assert approved.get("ref_id") in (None, held)
    await check(op, "release", "rl-1", lambda id: op.release(session_id, id=id))

    assert errors == [], errors
    assert watch.session(session_id).status == "active" and watch.session(session_id).controller is None
