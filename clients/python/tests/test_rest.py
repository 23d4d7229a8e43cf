"""The REST wrapper against a real hub: sessions, tokens, events, history,
alerts; and its errors."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from eva_hub import Client, HubError, Renderer, Rest
from eva_hub.types import AlertEvent, CustomEvent, EventFrame
from conftest import FAST, Hub, HubFactory, eventually


async def test_sessions_events_and_history(hub: Hub, closer: Callable[[Client], Client]) -> None:
    rest = hub.rest()
    created = await rest.create_session("rest", description="d", config={"voice": "calm"})
    sid = created["id"]
    assert created["status"] == "created" and created["name"] == "rest"
    assert (await rest.get_session(sid))["id"] == sid
    listed = await rest.list_sessions(limit=10)
    assert sid in [s["id"] for s in listed["items"]]

    r = Renderer(hub.ws_url, "dev:renderer:avatar-1", sid, reconnect=FAST)
    await r.start()
    closer(r.client)
    op = closer(hub.client("dev:operator:ops-1"))
    await op.connect()
    await op.join(sid)
    got: list[tuple[CustomEvent, EventFrame]] = []
    op.on_custom(lambda ev, f: got.append((ev, f)))
    alerts: list[AlertEvent] = []
    op.on_alert(lambda ev, f: alerts.append(ev))

    published = await rest.post_event(sid, "job.progress", {"progress": 40}, audience="staff")
    await eventually(lambda: bool(got), what="the published event")
    ev, frame = got[0]
    assert frame["seq"] == published["seq"] and ev["data"] == {"progress": 40} and ev["audience"] == "staff"

    p = closer(hub.client("dev:participant:pia"))
    await p.connect()
    await p.join(sid)
    q = await p.ask(sid, "history?")
    await r.respond(q["ref_id"], "kept")
    await op.takeover(sid, reason="audit")
    # A latency over the default 3000 ms threshold raises an alert.
    await r.metrics(latency_ms=4000)
    await eventually(lambda: bool(alerts), what="a metric_threshold alert")
    alert = alerts[0]["alert"]
    assert alert["alert_type"] == "metric_threshold" and alert["alert_id"] in op.session(sid).alerts
    await op.ack_alert(sid, alert["alert_id"])
    await eventually(lambda: not op.session(sid).alerts, what="the alert to be acknowledged")

    conversation = (await rest.conversation(sid))["items"]
    assert {"history?", "kept"} <= {row.get("content") for row in conversation}
    interventions = (await rest.interventions(sid))["items"]
    assert any(i.get("trigger_reason") == "audit" for i in interventions), interventions
    stored_alerts = (await rest.alerts(sid, limit=5))["items"]
    assert [a["id"] for a in stored_alerts] == [alert["alert_id"]], stored_alerts

    stopped = await rest.stop_session(sid, "done")
    assert stopped["status"] in ("stopping", "stopped")


async def test_errors_and_tokens_on_a_production_hub(hubs: HubFactory) -> None:
    hub = hubs.start_production()
    anonymous = Rest(hub.http_url)
    with pytest.raises(HubError) as e:
        await anonymous.create_session("nope")
    assert e.value.status == 401 and e.value.code == "unauthorized"

    rest = hub.rest()
    sid = (await rest.create_session("tokens"))["id"]
    with pytest.raises(HubError) as missing:
        await rest.get_session("00000000-0000-7000-8000-000000000000")
    assert missing.value.status == 404 and missing.value.code == "not_found"

    grant = await rest.mint_token("participant", "quinn", sessions=[sid], name="Quinn", ttl_s=60)
    assert grant["token_type"] == "Bearer" and grant["expires_at"]
    c = Client(hub.ws_url, rest.token_provider("participant", "quinn", sessions=[sid], name="Quinn"))
    try:
        welcome = await c.connect()
        assert welcome["subject"] == "quinn" and welcome["role"] == "participant"
        view = await c.join(sid)
        assert view.ready
    finally:
        await c.close()
    # A Rest made from the WebSocket URL talks to the same listener.
    assert Rest(hub.ws_url, hub.admin_key).base_url == hub.http_url
