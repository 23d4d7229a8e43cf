"""A network partition, played by a TCP relay between the renderer and the
hub that stops forwarding without closing anything: the renderer's
heartbeat notices, it reconnects while the hub still holds its old
connection as the live renderer; the hub lets the same renderer replace
its own stale connection (a new fence), and it resumes and answers the
question it missed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


from eva_hub import Client, Renderer
from eva_hub.types import QuestionEvent, ResponseEvent
from conftest import FAST, HubFactory, eventually


class Relay:
    """Forwards TCP connections to the hub; ``freeze()`` makes the current
    ones silent both ways, leaving both sockets open, as a dead network
    path would."""

    def __init__(self, target: str) -> None:
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.frozen: list[asyncio.Event] = []
        self.upstreams: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None
        self.addr = ""

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        host, port = self.server.sockets[0].getsockname()[:2]
        self.addr = f"{host}:{port}"

    def freeze(self) -> None:
        for f in self.frozen:
            f.set()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for w in self.upstreams:
            w.close()

    async def _accept(self, down_r: asyncio.StreamReader, down_w: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection(*self.target)
        self.upstreams.append(up_w)
        frozen = asyncio.Event()
        self.frozen.append(frozen)

        async def pump(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            try:
                while data := await r.read(65536):
                    if not frozen.is_set():
                        w.write(data)
                        await w.drain()
            except (ConnectionError, OSError):
                pass
            # A frozen path never tells the far side anything.
            if not frozen.is_set():
                w.close()

        await asyncio.gather(pump(down_r, up_w), pump(up_r, down_w))


async def test_partition_rejoin_replaces_the_stale_renderer_connection(
    hubs: HubFactory, closer: Callable[[Client], Client]
) -> None:
    hub = hubs.start(
        env={
            "EVA_HUB__WEBSOCKET__HEARTBEAT_INTERVAL_MS": "300",
            "EVA_HUB__WEBSOCKET__IDLE_TIMEOUT_MS": "1500",
        }
    )
    sid = (await hub.rest().create_session("partition"))["id"]
    relay = Relay(hub.addr)
    await relay.start()
    try:
        r = Renderer(f"ws://{relay.addr}/v1/ws", "dev:renderer:avatar-1", sid, reconnect=FAST)
        answered: list[str] = []

        @r.on_question
        async def answer(q: QuestionEvent) -> None:
            answered.append(q["text"])
            await r.respond(q["question_id"], f"answer: {q['text']}")

        await r.start()
        closer(r.client)
        fence = r.fence
        # Recorded, not polled: the reconnect through the relay can be
        # quicker than a poll of `state` would notice.
        states: list[str] = []
        r.client.on_connection_state(lambda s, e: states.append(s))
        p = closer(hub.client("dev:participant:rosa"))
        await p.connect()
        await p.join(sid)
        responses: list[ResponseEvent] = []
        p.on_response(lambda ev, f: responses.append(ev))

        relay.freeze()
        # Asked while the hub still delivers to the frozen connection: the
        # renderer can only get it by resuming.
        await p.ask(sid, "anyone there?")
        await eventually(lambda: "reconnecting" in states, timeout=5, what="the dead link to be noticed")
        await eventually(lambda: responses != [], timeout=15, what="the answer after the partition")
        assert answered == ["anyone there?"]
        assert responses[0]["text"] == "answer: anyone there?"
        # Re-joined, not taken over: a new fence from a plain join.
        assert r.fence is not None and fence is not None and r.fence > fence
        assert r.client.connected
    finally:
        await relay.close()
