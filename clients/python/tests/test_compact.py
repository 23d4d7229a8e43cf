"""Compact event frames and ``echo=False``, against a real hub: a session
joined with ``compact`` gets the same events as one joined without (only
the frame's ``ts`` is missing), across a killed socket and its resume, and
for several sessions on one connection; ``echo=False`` leaves out the
events the connection's own role and subject published, never their acks."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from eva_hub import Client
from eva_hub.codec import Payload
from eva_hub.types import CustomEvent, Event, EventFrame
from conftest import CODECS, Hub, eventually
from test_resume import Ticks, kill_socket


class Wire:
    """Every frame a client receives, decoded, before the SDK handles it."""

    def __init__(self, c: Client) -> None:
        self.frames: list[dict[str, Any]] = []
        feed = c._feed
        decode = c._codec.decode

        def recording(data: Payload) -> None:
            self.frames.append(decode(data))
            feed(data)

        # The reader looks `_feed` up when a connection starts.
        c._feed = recording  # type: ignore[method-assign]

    def compact(self) -> list[dict[str, Any]]:
        return [f for f in self.frames if "type" not in f]

    def of_type(self, t: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f.get("type") == t]


class Events:
    """Every event a client hands to its handlers, with its frame."""

    def __init__(self, c: Client) -> None:
        self.got: list[tuple[Event, EventFrame]] = []
        c.on_event(lambda ev, f: self.got.append((ev, f)))

    def of(self, session: str) -> list[tuple[int, Event]]:
        return [(f["seq"], ev) for ev, f in self.got if f["session"] == session]


async def drive(hub: Hub, sid: str, codec: Any, closer: Callable[[Client], Client]) -> int:
    """Events of many kinds: renderer state, context and custom events (to
    all and to staff), a participant's question and its answer, a takeover
    with a suggestion and a command, and the release, whose seq it returns
    (the last event; the watching clients may not have it yet)."""
    r = closer(hub.client("dev:renderer:avatar-1", codec=codec))
    await r.connect()
    await r.join(sid)
    await r.set_status(sid, "active")
    await r.set_state(sid, {"current_slide": 3, "is_speaking": True, "current_topic": "pricing"})
    await r.set_context(sid, {"recent_questions": []})
    await r.publish(sid, "job.progress", {"progress": 40})
    await r.publish(sid, "job.secret", {"n": 1}, audience="staff")
    p = closer(hub.client("dev:participant:alice", codec=codec))
    await p.connect()
    await p.join(sid, name="Alice")
    q = await p.ask(sid, "What does it cost?")
    await r.respond(sid, "Free for a month.", question_id=q["ref_id"])
    op = closer(hub.client("dev:operator:ops-2", codec=codec))
    await op.connect()
    await op.join(sid)
    await op.takeover(sid, reason="checking")
    await op.suggest(sid, "Mention the tiers.")
    await op.goto_slide(sid, 7)
    released = await op.release(sid)
    seq = released.get("seq")
    assert isinstance(seq, int)
    return seq


@pytest.mark.parametrize("codec", CODECS)
async def test_compact_frames_give_the_same_events_and_state(
    hub: Hub, codec: Any, closer: Callable[[Client], Client]
) -> None:
    rest = hub.rest()
    s1 = str((await rest.create_session("compact one"))["id"])
    s2 = str((await rest.create_session("compact two"))["id"])
    full = closer(hub.client("dev:operator:full", codec=codec))
    compact = closer(hub.client("dev:operator:compact", codec=codec, compact=True))
    wire_full, wire_compact = Wire(full), Wire(compact)
    ev_full, ev_compact = Events(full), Events(compact)
    for c in (full, compact):
        await c.connect()
        await c.join(s1)
        await c.join(s2)
    # Compared from here on (the full client saw the compact one join).
    start = {s: max(compact.session(s).seq, full.session(s).seq) for s in (s1, s2)}

    last = {s1: await drive(hub, s1, codec, closer), s2: await drive(hub, s2, codec, closer)}
    for s in (s1, s2):
        await eventually(
            lambda: full.session(s).seq >= last[s] and compact.session(s).seq >= last[s], what="both caught up"
        )

    for s in (s1, s2):
        got_full = [(seq, ev) for seq, ev in ev_full.of(s) if seq > start[s]]
        got_compact = [(seq, ev) for seq, ev in ev_compact.of(s) if seq > start[s]]
        # How many presence events the joins and leaves make depends on
        # timing; the kinds below are what must be there.
        assert len(got_full) >= 12
        # The same events, seq for seq, field for field.
        assert got_compact == got_full
        kinds = {ev["kind"] for _, ev in got_full}
        assert {"state", "context", "custom", "question", "response", "takeover", "suggestion", "command"} <= kinds
        a, b = full.session(s), compact.session(s)
        assert (a.epoch, a.seq, a.state, a.status, a.controller, a.members) == (b.epoch, b.seq, b.state, b.status, b.controller, b.members)
        assert a.pending_commands.keys() == b.pending_commands.keys()
    # The custom event to all carries no audience; the one to staff does.
    customs = [ev for ev, _ in ev_compact.got if ev["kind"] == "custom"]
    assert {c["name"]: c.get("audience") for c in customs} == {"job.progress": None, "job.secret": "staff"}

    # On the wire: the compact client got no event frames at all, one alias
    # per session, and frames without ts; its handlers got event frames
    # without ts, the full client's with.
    assert not wire_compact.of_type("event") and len(wire_compact.compact()) == len(ev_compact.got)
    aliases = {f["session"]: f["alias"] for f in wire_compact.of_type("joined")}
    assert set(aliases) == {s1, s2} and len(set(aliases.values())) == 2
    assert all("ts" not in f and "session" not in f for f in wire_compact.compact())
    assert all("ts" not in f for _, f in ev_compact.got)
    assert all(isinstance(f.get("ts"), int) for _, f in ev_full.got)
    assert all("alias" not in f or f["alias"] is None for f in wire_full.of_type("joined"))
    # The open question of a compact session has a time all the same (this
    # client's clock at receipt).
    assert not wire_full.compact()


@pytest.mark.parametrize("codec", CODECS)
async def test_compact_resume_after_killed_sockets_loses_and_repeats_nothing(
    hub: Hub, session_id: str, codec: Any, closer: Callable[[Client], Client]
) -> None:
    sid = session_id
    r = closer(hub.client("dev:renderer:avatar-1", codec=codec, compact=True))
    await r.connect()
    await r.join(sid)
    p = closer(hub.client("dev:participant:alice", codec=codec, compact=True))
    wire = Wire(p)
    resumed: list[Any] = []
    p.on_resumed(lambda f: resumed.append(f))
    await p.connect()
    await p.join(sid)
    ticks = Ticks(p)

    n = 90
    sends = []
    for i in range(1, n + 1):
        sends.append(asyncio.ensure_future(r.publish(sid, "tick", {"i": i})))
        if i == 30:
            kill_socket(p)
        if i == 60:
            kill_socket(p)
            kill_socket(r)
        await asyncio.sleep(0.002)
    await asyncio.wait_for(asyncio.gather(*sends), 20)

    await eventually(lambda: len(ticks.values) >= n, what=f"{n} ticks")
    await asyncio.sleep(0.2)  # anything extra would show up now
    assert ticks.values == list(range(1, n + 1)), "lost, repeated or reordered events"
    assert ticks.seqs == sorted(set(ticks.seqs))
    assert len(resumed) >= 2
    # Every connection was given an alias and every event came compact,
    # replays after the resumes included.
    joined = wire.of_type("joined")
    assert len(joined) >= 3 and all(isinstance(f.get("alias"), int) for f in joined)
    assert not wire.of_type("event")
    assert len(wire.compact()) >= n
    assert p._aliases == {joined[-1]["alias"]: p._sessions[sid]}
    assert p.session(sid).position == {"epoch": resumed[-1]["epoch"], "seq": ticks.seqs[-1]}


@pytest.mark.parametrize("codec", CODECS)
async def test_echo_false_leaves_out_only_the_own_events(
    hub: Hub, session_id: str, codec: Any, closer: Callable[[Client], Client]
) -> None:
    sid = session_id
    r = closer(hub.client("dev:renderer:avatar-1", codec=codec, echo=False, compact=True))
    mine = Events(r)
    await r.connect()
    await r.join(sid)
    op = closer(hub.client("dev:operator:ops-1", codec=codec))
    theirs = Events(op)
    await op.connect()
    await op.join(sid)
    p = closer(hub.client("dev:participant:bob", codec=codec))
    await p.connect()
    await p.join(sid)

    acks = [
        await r.set_state(sid, {"current_slide": 2}),
        await r.publish(sid, "job.progress", {"progress": 1}),
        await r.publish(sid, "job.progress", {"progress": 2}),
    ]
    assert all(isinstance(a.get("seq"), int) for a in acks), "frames are still acked"
    q = await p.ask(sid, "Still there?")
    await op.suggest(sid, "Say hello.")
    # The renderer hears the others (the question, the suggestion)...
    await eventually(lambda: {"question", "suggestion"} <= {ev["kind"] for ev, _ in mine.got}, what="others' events")
    await eventually(lambda: op.session(sid).seq >= r.session(sid).seq, what="operator caught up")
    own_seqs = {a["seq"] for a in acks}
    # ...but none of its own: not the state, not the custom events (state
    # events the hub itself publishes, such as operator_connected, do come).
    assert not own_seqs & {f["seq"] for _, f in mine.got}
    assert not [ev for ev, _ in mine.got if ev["kind"] == "custom"]
    assert not [ev for ev, _ in mine.got if ev["kind"] == "state" and ev["state"]["current_slide"] == 2]
    assert any(ev["kind"] == "question" and ev["question_id"] == q["ref_id"] for ev, _ in mine.got)
    # The operator gets everything, the renderer's events included.
    assert own_seqs <= {f["seq"] for _, f in theirs.got}
    custom: list[CustomEvent] = [ev for ev, _ in theirs.got if ev["kind"] == "custom"]
    assert [c["data"]["progress"] for c in custom] == [1, 2]

    # After a killed socket the resume leaves them out as well.
    kill_socket(r)
    await r.publish(sid, "job.progress", {"progress": 3})
    await op.suggest(sid, "Again.")
    await eventually(lambda: sum(ev["kind"] == "suggestion" for ev, _ in mine.got) == 2, what="the second suggestion")
    assert not [ev for ev, _ in mine.got if ev["kind"] == "custom"]
