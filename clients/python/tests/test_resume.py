"""Reconnect and resume: killed sockets, lost acks, history exceeded, a hub
restart. Delivery must be exact (nothing lost, nothing twice) or explicit
(a discontinuity the app is told about)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from typing import Any

import pytest

from eva_hub import Backoff, Client, Renderer
from eva_hub.client import ConnectionState
from eva_hub.types import AckFrame, CustomEvent, DiscontinuityFrame, EventFrame, ResumedFrame
from eva_hub.session import SessionView
from conftest import CODECS, FAST, Hub, HubFactory, eventually


def kill_socket(c: Client) -> None:
    """Drops the TCP connection without a close frame, as a network failure
    would."""
    ws = c._ws
    assert ws is not None, "not connected"
    ws.transport.abort()


class FixedDelay(Backoff):
    """Reconnects after exactly this long (a test needs the gap)."""

    def delay(self, attempt: int) -> float:
        return self.initial_s


class Ticks:
    """Records the `custom` events a client receives."""

    def __init__(self, c: Client) -> None:
        self.values: list[int] = []
        self.seqs: list[int] = []
        c.on_custom(self.on)

    def on(self, ev: CustomEvent, f: EventFrame) -> None:
        self.values.append(ev["data"]["i"])
        self.seqs.append(f["seq"])


@pytest.mark.parametrize("codec", CODECS)
async def test_resume_after_killed_sockets_loses_and_repeats_nothing(
    hub: Hub, session_id: str, codec: Any, closer: Callable[[Client], Client]
) -> None:
    sid = session_id
    r = Renderer(hub.ws_url, "dev:renderer:avatar-1", sid, codec=codec, reconnect=FAST)
    await r.start()
    closer(r.client)
    p = closer(hub.client("dev:participant:alice", codec=codec))
    states: list[ConnectionState] = []
    p.on_connection_state(lambda s, e: states.append(s))
    resumed: list[ResumedFrame] = []
    p.on_resumed(lambda f: resumed.append(f))
    await p.connect()
    await p.join(sid)
    ticks = Ticks(p)

    n = 120
    sends: list[asyncio.Task[AckFrame]] = []
    for i in range(1, n + 1):
        # Not awaited one by one: many frames are in flight (sent, unacked)
        # when the sockets die.
        sends.append(asyncio.ensure_future(r.publish("tick", {"i": i})))
        if i == 30:
            kill_socket(p)
        if i == 60:
            kill_socket(r.client)
        if i == 90:
            kill_socket(p)
            kill_socket(r.client)
        await asyncio.sleep(0.002)
    acks = await asyncio.wait_for(asyncio.gather(*sends), 20)
    # Each publish produced one event: n distinct positions.
    assert len({a.get("seq") for a in acks}) == n

    await eventually(lambda: len(ticks.values) >= n, what=f"{n} ticks")
    await asyncio.sleep(0.2)  # anything extra would show up now
    assert ticks.values == list(range(1, n + 1)), "lost, repeated or reordered events"
    assert ticks.seqs == sorted(set(ticks.seqs))
    assert len(resumed) >= 2 and all(f["epoch"] == p.session(sid).epoch for f in resumed)
    assert states.count("reconnecting") >= 2 and states[-1] == "connected"
    assert p.session(sid).seq >= ticks.seqs[-1]


async def test_a_lost_ack_is_answered_as_a_duplicate_after_the_reconnect(
    hub: Hub, session_id: str, closer: Callable[[Client], Client]
) -> None:
    p = closer(hub.client("dev:participant:dave"))
    await p.connect()
    await p.join(session_id)
    target = "q-lost-ack-1"
    dropped: list[Any] = []
    deliver = p._frame_handlers["ack"]

    def lose_first_ack(f: Any) -> None:
        # The hub stored the question and acked it; the ack is lost with
        # the connection.
        if f["id"] == target and not dropped:
            dropped.append(f)
            kill_socket(p)
            return
        deliver(f)

    p._frame_handlers["ack"] = lose_first_ack
    ack = await asyncio.wait_for(p.ask(session_id, "Asked once, sent twice?", id=target), 10)
    assert dropped, "the first ack was not intercepted"
    assert ack.get("duplicate") is True
    assert ack["ref_id"] == dropped[0]["ref_id"]
    # Stored once.
    rows = (await hub.rest().conversation(session_id))["items"]
    assert sum(1 for row in rows if row.get("content") == "Asked once, sent twice?") == 1, rows


async def test_resending_an_id_gets_the_original_ack(hub: Hub, session_id: str, closer: Callable[[Client], Client]) -> None:
    p = closer(hub.client("dev:participant:erin", codec="json"))
    await p.connect()
    await p.join(session_id)
    first = await p.ask(session_id, "same id", id="q-1")
    again = await p.ask(session_id, "same id", id="q-1")
    assert not first.get("duplicate") and again.get("duplicate") is True
    assert again["ref_id"] == first["ref_id"] and again["seq"] == first["seq"]


async def test_discontinuity_when_history_is_exceeded(hubs: HubFactory, closer: Callable[[Client], Client]) -> None:
    hub = hubs.start(env={"EVA_HUB__SESSION__HISTORY_SIZE": "8"})
    sid = (await hub.rest().create_session("short history"))["id"]
    r = Renderer(hub.ws_url, "dev:renderer:avatar-1", sid, reconnect=FAST)
    await r.start()
    closer(r.client)
    p = closer(hub.client("dev:participant:frank", reconnect=FixedDelay(initial_s=1.5)))
    gaps: list[tuple[DiscontinuityFrame, SessionView]] = []
    p.on_discontinuity(lambda f, v: gaps.append((f, v)))
    await p.connect()
    before = await p.join(sid)
    epoch = before.epoch
    ticks = Ticks(p)
    await r.publish("tick", {"i": 0})
    await eventually(lambda: ticks.values == [0], what="first tick")

    kill_socket(p)
    # While the participant is away (1.5 s), far more than
    # history_size events happen.
    for i in range(1, 31):
        await r.publish("tick", {"i": i})
    await r.state(slide=30, speaking=False)

    await eventually(lambda: bool(gaps), what="a discontinuity")
    frame, view = gaps[0]
    assert frame["reason"] == "history_trimmed" and frame["epoch"] == epoch
    # The state was replaced by the fresh snapshot, not patched.
    assert view.slide == 30 and view.ready and view.seq >= frame["seq"]
    assert p.session(sid) is view
    # The events in the gap were not replayed (they are gone).
    assert ticks.values == [0]
    await r.publish("tick", {"i": 31})
    await eventually(lambda: ticks.values == [0, 31], what="live events after the snapshot")


async def test_nothing_missed_resume_and_hub_restart_with_a_new_epoch(
    hubs: HubFactory, tmp_path: Any, closer: Callable[[Client], Client]
) -> None:
    db = f"sqlite://{tmp_path}/restart.db"
    # Counters (participant_count...) are published at most every
    # counters_interval_ms: short, so the session is quiet when we leave.
    env = {"EVA_HUB__SESSION__COUNTERS_INTERVAL_MS": "20"}
    hub = hubs.start(database_url=db, env=env)
    sid = (await hub.rest().create_session("restart"))["id"]
    p = closer(hub.client("dev:participant:gina"))
    resumed: list[ResumedFrame] = []
    p.on_resumed(lambda f: resumed.append(f))
    gaps: list[DiscontinuityFrame] = []
    p.on_discontinuity(lambda f, v: gaps.append(f))
    states: list[tuple[ConnectionState, Any]] = []
    p.on_connection_state(lambda s, e: states.append((s, e)))
    await p.connect()
    view = await p.join(sid)
    await asyncio.sleep(0.2)
    old_epoch, seq = view.epoch, view.seq

    # Nothing happened while away: `resumed` with from > to, no gap.
    kill_socket(p)
    await eventually(lambda: bool(resumed), what="an empty resume")
    assert resumed[0]["from"] > resumed[0]["to"] and resumed[0]["epoch"] == old_epoch
    assert p.session(sid).seq == seq and not gaps

    # A restart: the hub closes with 1012 (reconnect), comes back on the
    # same address with a new epoch; a question asked meanwhile is sent
    # when it is back and acked once stored.
    addr = hub.addr
    hub.stop(signal.SIGTERM)
    await eventually(lambda: p.state == "reconnecting", what="reconnecting after 1012")
    assert not p.connected
    asking = asyncio.ensure_future(p.ask(sid, "asked during the restart"))
    await asyncio.sleep(0.3)
    assert not asking.done()
    hubs.start(database_url=db, listen=addr, env=env)
    ack = await asyncio.wait_for(asking, 15)
    assert ack["ref_id"]
    assert gaps and gaps[0]["reason"] == "epoch_changed"
    assert p.session(sid).epoch != old_epoch and p.session(sid).ready
    assert p.state == "connected"


async def test_a_silent_hub_is_detected_by_the_heartbeat(hubs: HubFactory, closer: Callable[[Client], Client]) -> None:
    # The hub pings (and tells clients to) every 300 ms here.
    hub = hubs.start(env={"EVA_HUB__WEBSOCKET__HEARTBEAT_INTERVAL_MS": "300"})
    sid = (await hub.rest().create_session("heartbeat"))["id"]
    p = closer(hub.client("dev:participant:quentin"))
    why: list[Any] = []
    p.on_connection_state(lambda s, e: why.append(e) if s == "reconnecting" else None)
    resumed: list[ResumedFrame] = []
    p.on_resumed(lambda f: resumed.append(f))
    welcome = await p.connect()
    assert welcome["heartbeat_ms"] == 300
    await p.join(sid)
    await eventually(lambda: p.latency is not None, what="a first pong")
    # The hub process freezes: its socket stays open, nothing answers. Only
    # a missing pong can tell.
    hub.proc.send_signal(signal.SIGSTOP)
    try:
        await eventually(lambda: p.state == "reconnecting", timeout=5, what="the dead link to be noticed")
    finally:
        hub.proc.send_signal(signal.SIGCONT)
    await eventually(lambda: p.connected and bool(resumed), timeout=15, what="the reconnect after the freeze")


async def test_an_operator_resumes_every_session_it_follows(hub: Hub, closer: Callable[[Client], Client]) -> None:
    rest = hub.rest()
    sessions = [(await rest.create_session(f"s{i}"))["id"] for i in range(3)]
    op = closer(hub.client("dev:operator:ops-7", codec="json"))
    await op.connect()
    for sid in sessions:
        await op.join(sid)
    got: dict[str, list[int]] = {sid: [] for sid in sessions}
    op.on_custom(lambda ev, f: got[f["session"]].append(ev["data"]["i"]))
    for i in range(5):
        for sid in sessions:
            await rest.post_event(sid, "tick", {"i": i})
        if i == 2:
            kill_socket(op)
    await eventually(lambda: all(len(v) >= 5 for v in got.values()), what="every session's ticks")
    await asyncio.sleep(0.1)
    assert got == {sid: [0, 1, 2, 3, 4] for sid in sessions}
    assert op.connected and set(op.sessions) == set(sessions)
