"""Emergency stop: the renderer's handler runs before anything else queued
for its connection, exactly once (the urgent frame and the event that
follows it are one stop), and the SDK acknowledges it when the handler
returns."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from eva_hub import Client, EmergencyStop, Renderer
from eva_hub.types import QuestionEvent
from conftest import FAST, HubFactory, eventually

# Operators publish hundreds of frames here: no rate limits in the way.
NO_LIMITS = {
    "EVA_HUB__LIMITS__FRAMES_PER_S": "0",
    "EVA_HUB__LIMITS__INTERACTIONS_PER_S": "0",
    "EVA_HUB__LIMITS__TELEMETRY_PER_S": "0",
}


async def test_stop_handler_runs_first_cancels_answers_and_is_acked_when_it_returns(
    hubs: HubFactory, closer: Callable[[Client], Client]
) -> None:
    hub = hubs.start(env={"EVA_HUB__SESSION__EMERGENCY_ACK_TIMEOUT_MS": "1500"})
    sid = (await hub.rest().create_session("stop"))["id"]
    r = Renderer(hub.ws_url, "dev:renderer:avatar-1", sid, reconnect=FAST)
    log: list[str] = []

    @r.on_question
    async def answer(q: QuestionEvent) -> None:
        log.append("answering")
        try:
            await asyncio.sleep(30)  # a long answer being generated and spoken
        except asyncio.CancelledError:
            log.append("answer cancelled")
            raise

    @r.on_emergency_stop
    async def stop(s: EmergencyStop) -> None:
        log.append(f"stop {s.intervention_id}")
        # Slow on purpose: nothing else may be handled meanwhile. Awaiting
        # an ack from inside the priority lane must not deadlock either.
        await asyncio.sleep(0.2)
        await r.state(speaking=False)
        log.append("stop done")

    r.on_suggestion(lambda ev, f: log.append(f"suggestion {ev['text']}"))
    await r.start()
    closer(r.client)

    op = closer(hub.client("dev:operator:ops-1"))
    await op.connect()
    await op.join(sid)
    acks: dict[str, int] = {}
    op.on_command_ack(lambda ev, f: acks.__setitem__(ev["command_id"], ev["latency_ms"]))
    p = closer(hub.client("dev:participant:nina"))
    await p.connect()
    await p.join(sid)
    await p.ask(sid, "Tell me everything")
    await eventually(lambda: "answering" in log, what="the answer to start")

    stopped_at = asyncio.get_running_loop().time()
    e_ack = await op.emergency_stop(sid, reason="inappropriate output")
    iid = e_ack["ref_id"]
    assert iid
    await op.suggest(sid, "after the stop")
    await eventually(lambda: "suggestion after the stop" in log, what="the later suggestion")

    assert log == ["answering", f"stop {iid}", "answer cancelled", "stop done", "suggestion after the stop"], log
    assert r.stopped
    await eventually(lambda: iid in acks, what="the stop's command_ack")
    assert acks[iid] >= 200, "acknowledged before the handler returned"
    await eventually(lambda: op.session(sid).status == "paused", what="the session to leave active")
    assert op.session(sid).last_emergency_stop is not None
    # The ack came in time: past the hub's deadline, no
    # "emergency_stop_unacknowledged" alert.
    await asyncio.sleep(max(0.0, stopped_at + 1.7 - asyncio.get_running_loop().time()))
    assert not [a for a in op.session(sid).alerts.values() if a["alert_type"] == "emergency_stop_unacknowledged"]

    # An operator resumes the session: the renderer is no longer stopped.
    await op.takeover(sid)
    await op.resume(sid)
    await eventually(lambda: not r.stopped, what="resume after the stop")


async def test_the_urgent_frame_overtakes_frames_queued_for_a_slow_renderer(
    hubs: HubFactory, closer: Callable[[Client], Client]
) -> None:
    hub = hubs.start(
        env={
            **NO_LIMITS,
            # A small kernel send buffer and a large outbox: frames for a
            # renderer that does not read pile up in the hub's queue.
            "EVA_HUB__WEBSOCKET__SEND_BUFFER_BYTES": "4096",
            "EVA_HUB__WEBSOCKET__OUTBOUND_MAX_BYTES": str(16 * 1024 * 1024),
        }
    )
    sid = (await hub.rest().create_session("slow renderer"))["id"]
    r = Renderer(hub.ws_url, "dev:renderer:avatar-1", sid, reconnect=FAST)
    order: list[Any] = []
    r.client.on_custom(lambda ev, f: order.append(ev["data"]["i"]))
    r.on_emergency_stop(lambda s: order.append("STOP"))
    await r.start()
    closer(r.client)
    op = closer(hub.client("dev:operator:ops-1"))
    await op.connect()
    await op.join(sid)

    ws = r.client._ws
    assert ws is not None
    ws.transport.pause_reading()  # the renderer stops reading its socket
    n = 300
    pad = "x" * 4000
    for i in range(n):
        await op.publish(sid, "filler", {"i": i, "pad": pad}, audience="renderer")
    await op.emergency_stop(sid, reason="stop now")
    await op.publish(sid, "after", {"i": "after"}, audience="renderer")
    await asyncio.sleep(0.3)
    ws.transport.resume_reading()

    await eventually(lambda: "after" in order, timeout=15, what="every frame")
    stop_at = order.index("STOP")
    print(f"stop handled after {stop_at} of {n} earlier fillers")
    assert order.count("STOP") == 1
    fillers = [x for x in order if isinstance(x, int)]
    assert fillers == list(range(n)), "fillers lost or reordered"
    # Fillers published before the stop but still queued at the hub were
    # handled after it: the stop overtook them.
    assert stop_at < n, f"the stop was handled after all {n} earlier frames"
    assert order[-1] == "after"
