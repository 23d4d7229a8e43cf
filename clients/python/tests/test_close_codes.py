"""Final close codes surface once, without retry loops; 4002 refreshes the
token and reconnects; retryable refusals are retried with the same id,
boundedly; pending requests fail on a final close."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from eva_hub import Client, ConnectionClosed, HandshakeError, HubError, Renderer, RetriesExhausted
from eva_hub.client import ConnectionState
from eva_hub.types import ResumedFrame
from conftest import FAST, Hub, HubFactory, eventually
from test_resume import FixedDelay, kill_socket


def count_records(hub: Hub, message: str) -> int:
    return sum(1 for r in hub.log_records() if message in str(r.get("message", "")))


def refusal_reasons(hub: Hub) -> list[Any]:
    """Why the hub refused each handshake, as it logged it."""
    return [r.get("error") for r in hub.log_records() if r.get("message") == "WebSocket authentication refused"]


async def test_a_bad_header_token_is_refused_with_401_once(hubs: HubFactory) -> None:
    hub = hubs.start_production()
    c = hub.client("not-a-token")
    with pytest.raises(HandshakeError) as e:
        await c.connect()
    assert e.value.status == 401 and e.value.code == "unauthorized"
    await asyncio.sleep(0.5)
    assert c.state == "closed"
    assert count_records(hub, "WebSocket authentication refused") == 1, "the client retried a final refusal"
    with pytest.raises(HandshakeError):
        await c.wait_closed()


async def test_a_bad_auth_frame_token_closes_with_4501_once(hubs: HubFactory) -> None:
    origin = "https://app.example.com"
    hub = hubs.start_production(env={"EVA_HUB__AUTH__ALLOWED_ORIGINS": f'["{origin}"]'})
    states: list[ConnectionState] = []
    c = hub.client("not-a-token", auth="frame", origin=origin, codec="json")
    c.on_connection_state(lambda s, e: states.append(s))
    with pytest.raises(ConnectionClosed) as e:
        await c.connect()
    assert e.value.code == 4501 and e.value.name == "unauthorized"
    await asyncio.sleep(0.5)
    assert states == ["connecting", "closed"]
    assert count_records(hub, "authentication failed") == 1


async def test_token_expiry_4002_calls_the_provider_again_and_resumes(
    hubs: HubFactory, closer: Callable[[Client], Client]
) -> None:
    # No clock-skew leeway, so a 1 s token really ends after 1 s.
    hub = hubs.start_production(env={"EVA_HUB__AUTH__LEEWAY_S": "0"})
    rest = hub.rest()
    sid = (await rest.create_session("expiring"))["id"]
    minted: list[str] = []

    async def provide() -> str:
        grant = await rest.mint_token("participant", "henry", sessions=[sid], ttl_s=2)
        assert grant["expires_at"]
        minted.append(grant["token"])
        return grant["token"]

    c = closer(hub.client(provide, codec="json"))
    closes: list[Any] = []
    c.on_connection_state(lambda s, e: closes.append(e) if s == "reconnecting" else None)
    resumed: list[ResumedFrame] = []
    c.on_resumed(lambda f: resumed.append(f))
    await c.connect()
    await c.join(sid)
    assert len(minted) == 1

    await eventually(lambda: len(minted) >= 2 and c.connected, timeout=10, what="a refreshed token")
    assert resumed, "the session was not resumed on the new connection"
    assert isinstance(closes[0], ConnectionClosed) and closes[0].code == 4002
    assert minted[0] != minted[1]
    ack = await c.ask(sid, "still here?")
    assert ack["ref_id"]


async def test_an_expired_token_in_the_auth_frame_gets_4002_and_a_fresh_one(
    hubs: HubFactory, closer: Callable[[Client], Client]
) -> None:
    origin = "https://app.example.com"
    hub = hubs.start_production(
        env={"EVA_HUB__AUTH__LEEWAY_S": "0", "EVA_HUB__AUTH__ALLOWED_ORIGINS": f'["{origin}"]'}
    )
    rest = hub.rest()
    stale = (await rest.mint_token("operator", "ops-9", ttl_s=1))["token"]
    await asyncio.sleep(2.1)  # whole seconds: past `exp` for sure
    tokens = [stale]

    async def provide() -> str:
        if tokens:
            return tokens.pop()
        return (await rest.mint_token("operator", "ops-9", ttl_s=60))["token"]

    c = closer(hub.client(provide, auth="frame", origin=origin, codec="msgpack"))
    states: list[tuple[ConnectionState, Any]] = []
    c.on_connection_state(lambda s, e: states.append((s, e)))
    welcome = await asyncio.wait_for(c.connect(), 10)
    assert welcome["subject"] == "ops-9" and not tokens
    refusals = [r for r in hub.log_records() if r.get("message") == "authentication failed"]
    assert [r.get("error") for r in refusals] == ["credentials expired"]


async def _expired(rest: Any, subject: str, sid: str) -> str:
    """A participant token for ``sid`` that has already expired."""
    stale = (await rest.mint_token("participant", subject, sessions=[sid], ttl_s=1))["token"]
    await asyncio.sleep(2.1)  # whole seconds: past `exp` for sure
    return str(stale)


async def test_an_expired_header_token_is_401_token_expired_and_a_fresh_one_is_fetched(
    hubs: HubFactory, closer: Callable[[Client], Client]
) -> None:
    hub = hubs.start_production(env={"EVA_HUB__AUTH__LEEWAY_S": "0"})
    rest = hub.rest()
    sid = (await rest.create_session("stale header"))["id"]
    tokens = [await _expired(rest, "nina", sid)]
    calls: list[int] = []

    async def provide() -> str:
        calls.append(1)
        if tokens:
            return tokens.pop()
        return (await rest.mint_token("participant", "nina", sessions=[sid], ttl_s=60))["token"]

    c = closer(hub.client(provide))
    welcome = await asyncio.wait_for(c.connect(), 10)
    assert welcome["subject"] == "nina" and len(calls) == 2
    assert refusal_reasons(hub) == ["credentials expired"]
    await c.join(sid)


async def test_an_expired_string_token_is_final_and_says_so(hubs: HubFactory) -> None:
    hub = hubs.start_production(env={"EVA_HUB__AUTH__LEEWAY_S": "0"})
    rest = hub.rest()
    sid = (await rest.create_session("stale string"))["id"]
    c = hub.client(await _expired(rest, "olga", sid))
    with pytest.raises(HandshakeError) as e:
        await c.connect()
    assert e.value.status == 401 and e.value.code == "token_expired"
    await asyncio.sleep(0.3)
    assert count_records(hub, "WebSocket authentication refused") == 1, "no fresh token to be had: no retry"


async def test_a_provider_of_bad_tokens_is_asked_once_401_is_final(hubs: HubFactory) -> None:
    hub = hubs.start_production()
    calls: list[int] = []

    def provide() -> str:
        calls.append(1)
        return "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.Zm9yZ2Vk"

    c = hub.client(provide)
    with pytest.raises(HandshakeError) as e:
        await c.connect()
    assert e.value.status == 401 and e.value.code == "unauthorized"
    await asyncio.sleep(0.3)
    assert calls == [1]
    assert count_records(hub, "WebSocket authentication refused") == 1


async def test_a_token_that_expired_during_an_outage_is_replaced_on_the_reconnect(
    hubs: HubFactory, closer: Callable[[Client], Client]
) -> None:
    hub = hubs.start_production(env={"EVA_HUB__AUTH__LEEWAY_S": "0"})
    rest = hub.rest()
    sid = (await rest.create_session("outage"))["id"]
    minted: list[int] = []

    async def provide() -> str:
        minted.append(1)
        ttl = 2 if len(minted) == 1 else 60
        return (await rest.mint_token("participant", "pete", sessions=[sid], ttl_s=ttl))["token"]

    # The reconnect comes 3 s after the drop: the cached token has expired.
    c = closer(hub.client(provide, reconnect=FixedDelay(initial_s=3.0, max_s=3.0)))
    resumed: list[ResumedFrame] = []
    c.on_resumed(resumed.append)
    await c.connect()
    await c.join(sid)
    kill_socket(c)
    await eventually(lambda: bool(resumed) and c.connected, timeout=15, what="the resume with a fresh token")
    assert len(minted) == 2
    assert refusal_reasons(hub) == ["credentials expired"], "the reconnect with the cached token was refused"


async def test_a_sync_token_provider_works_too(hub: Hub, session_id: str, closer: Callable[[Client], Client]) -> None:
    calls: list[int] = []

    def provide() -> str:
        calls.append(1)
        return "dev:participant:ivy"

    c = closer(hub.client(provide))
    states: list[ConnectionState] = []
    c.on_connection_state(lambda s, e: states.append(s))
    assert (await c.connect())["subject"] == "ivy"
    await c.join(session_id)
    kill_socket(c)  # not 4002: the cached token is reused
    await eventually(lambda: states[-2:] == ["reconnecting", "connected"], what="a reconnect")
    assert calls == [1]


async def test_replaced_renderer_gets_4504_and_its_pending_requests_fail(
    hub: Hub, session_id: str, closer: Callable[[Client], Client]
) -> None:
    old = Renderer(hub.ws_url, "dev:renderer:avatar-1", session_id, reconnect=FAST)
    await old.start()
    # A response whose ack is lost: still pending when the final close comes.
    deliver = old.client._frame_handlers["ack"]
    old.client._frame_handlers["ack"] = lambda f: None
    pending = asyncio.ensure_future(old.respond(None, "unacked"))
    await asyncio.sleep(0.1)
    old.client._frame_handlers["ack"] = deliver
    assert not pending.done()

    new = Renderer(hub.ws_url, "dev:renderer:avatar-2", session_id, takeover=True, reconnect=FAST)
    await new.start()
    closer(new.client)
    with pytest.raises(ConnectionClosed) as e:
        await asyncio.wait_for(pending, 5)
    assert e.value.code == 4504 and e.value.name == "replaced"
    with pytest.raises(ConnectionClosed):
        await old.run()
    await asyncio.sleep(0.5)
    assert old.client.state == "closed"
    # Nothing more goes out on a closed client.
    with pytest.raises(ConnectionClosed):
        await old.state(slide=1)
    # The successor was not disturbed: the old one did not come back.
    assert new.client.connected and new.session.renderer_fence == new.fence


async def test_session_end_closes_participants_with_4505(
    hub: Hub, session_id: str, closer: Callable[[Client], Client]
) -> None:
    p = hub.client("dev:participant:jack")
    closed: list[Any] = []
    p.on_session_closed(lambda sid, err: closed.append((sid, err)))
    await p.connect()
    await p.join(session_id)
    await hub.rest().stop_session(session_id, "done")
    with pytest.raises(ConnectionClosed) as e:
        await asyncio.wait_for(p.wait_closed(), 10)
    assert e.value.code == 4505
    assert closed and closed[0][0] == session_id
    assert p.session(session_id).ended
    # Ended sessions refuse participants: a typed error, not a loop.
    q = closer(hub.client("dev:participant:kate"))
    await q.connect()
    with pytest.raises(HubError) as refused:
        await q.join(session_id)
    assert refused.value.code == "session_ended"


async def test_rate_limited_frames_are_retried_with_the_same_id(
    hubs: HubFactory, closer: Callable[[Client], Client]
) -> None:
    hub = hubs.start(
        env={
            "EVA_HUB__LIMITS__INTERACTIONS_PER_S": "4",
            "EVA_HUB__LIMITS__INTERACTIONS_BURST": "2",
        }
    )
    sid = (await hub.rest().create_session("limits"))["id"]
    p = closer(hub.client("dev:participant:liam"))
    await p.connect()
    await p.join(sid)
    refusals: list[str] = []
    on_error = p._acks.on_error

    def count(f: Any) -> Any:
        refusals.append(f["code"])
        return on_error(f)

    p._acks.on_error = count  # type: ignore[method-assign,assignment]
    acks = await asyncio.wait_for(asyncio.gather(*(p.ask(sid, f"question {i}") for i in range(6))), 20)
    assert "rate_limited" in refusals, "the limit was not hit; the test proves nothing"
    assert len({a["ref_id"] for a in acks}) == 6
    await eventually(lambda: p.session(sid).counters["questions_received"] == 6, what="six questions counted")


async def test_retries_are_bounded(hubs: HubFactory, closer: Callable[[Client], Client]) -> None:
    hub = hubs.start(
        env={
            "EVA_HUB__LIMITS__INTERACTIONS_PER_S": "1",
            "EVA_HUB__LIMITS__INTERACTIONS_BURST": "1",
        }
    )
    sid = (await hub.rest().create_session("limits"))["id"]
    p = closer(hub.client("dev:participant:mia", max_retries=0))
    await p.connect()
    await p.join(sid)
    results = await asyncio.gather(*(p.ask(sid, f"q{i}") for i in range(3)), return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    assert failures and all(isinstance(f, RetriesExhausted) and f.code == "rate_limited" for f in failures)
    assert all(f.retry_after_ms for f in failures if isinstance(f, HubError))
