"""``Rest`` against ``docs/openapi.json``: every call it makes (method, path,
query parameters, body fields) is a documented operation, and every field
it reads from an answer is in that operation's documented answer. The
calls are made against a real hub and recorded on the way."""

from __future__ import annotations

import json
import re
import typing
from functools import cache
from typing import Any

import pytest

from eva_hub import HubError, Rest
from eva_hub.rest import JobPage, Page, Published, TokenGrant
from eva_hub.types import Job
from conftest import REPO, Hub

OPENAPI_PATH = REPO / "docs" / "openapi.json"


@cache
def openapi() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(OPENAPI_PATH.read_text())
    return loaded


def schema(node: dict[str, Any]) -> dict[str, Any]:
    """Follows ``$ref``s, merges ``allOf``, and takes the object out of a
    ``oneOf`` with ``null``."""
    if "$ref" in node:
        return schema(openapi()["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]])
    if "allOf" in node:
        merged: dict[str, Any] = {"properties": {}, "required": []}
        for part in node["allOf"]:
            s = schema(part)
            merged["properties"].update(s.get("properties", {}))
            merged["required"] += s.get("required", [])
        return merged
    for key in ("oneOf", "anyOf"):
        if key in node:
            objects = [schema(n) for n in node[key] if n.get("type") != "null"]
            if len(objects) == 1:
                return objects[0]
    return node


def operation(method: str, path: str) -> tuple[str, dict[str, Any]]:
    """The documented operation a concrete call fills in."""
    for template, ops in openapi()["paths"].items():
        if re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", template), path) and method.lower() in ops:
            return template, ops[method.lower()]
    raise AssertionError(f"{method} {path} is not in docs/openapi.json")


def answer_fields(op: dict[str, Any], status: str) -> set[str]:
    content = op["responses"][status]["content"]["application/json"]["schema"]
    return set(schema(content).get("properties", {}))


class RecordingRest(Rest):
    """A Rest that notes every call it makes (and still makes it)."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.calls: list[tuple[str, str, Any]] = []

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        self.calls.append((method, path, body))
        return await super().call(method, path, body)


async def test_every_rest_call_and_field_read_is_documented(hub: Hub) -> None:
    rest = RecordingRest(hub.http_url)
    created = await rest.create_session("openapi", description="d", config={"k": 1})
    sid = created["id"]
    await rest.get_session(sid)
    page = await rest.list_sessions(status="created", limit=5)
    await rest.list_sessions(before=page.get("next_before") or sid, limit=1)
    await rest.set_status(sid, "starting", reason="warming up")
    published = await rest.post_event(sid, "job.progress", {"n": 1}, audience="staff")
    await rest.conversation(sid, limit=2)
    await rest.interventions(sid, before=sid, limit=2)
    await rest.alerts(sid)
    grant = await rest.mint_token("participant", "doc", sessions=[sid], name="Doc", ttl_s=60)
    await rest.token_provider("operator", "ops-doc")()
    job = await rest.create_job("voice_clone", owner="doc", session=sid, audience="staff", metadata={"m": 1})
    await rest.create_job("rag_ingest")
    await rest.update_job(job["id"], progress=40)
    await rest.update_job(job["id"], status="completed", result={"voice_id": "v"})
    with pytest.raises(HubError):
        # Every body field, once: refused (the job has finished), still
        # recorded.
        await rest.update_job(job["id"], status="failed", progress=100, error={"code": "x"}, result={})
    await rest.get_job(job["id"])
    jobs = await rest.list_jobs(status="completed", type="voice_clone", limit=1)
    await rest.list_jobs(before=jobs.get("next_before") or job["id"])
    await rest.stop_session(sid, "done")
    assert published["seq"] > 0 and grant["token"]

    made = set()
    for method, path_and_query, body in rest.calls:
        path, _, query = path_and_query.partition("?")
        template, op = operation(method, path)
        made.add((method, template))
        documented = {p["name"] for p in op.get("parameters", []) if p["in"] == "query"}
        used = {kv.split("=", 1)[0] for kv in query.split("&") if kv}
        assert used <= documented, f"{method} {template}: undocumented query parameters {used - documented}"
        if body is not None:
            request = schema(op["requestBody"]["content"]["application/json"]["schema"])
            fields = set(request.get("properties", {}))
            assert set(body) <= fields, f"{method} {template}: undocumented body fields {set(body) - fields}"
            assert set(request.get("required", [])) <= set(body), f"{method} {template}: required fields missing"
    assert len(made) == 14, sorted(made)

    # What the wrapper reads from the answers (its TypedDicts, and the error
    # body) is what the document says the answers carry.
    def keys(td: Any) -> set[str]:
        return set(typing.get_type_hints(td))

    assert keys(TokenGrant) <= answer_fields(operation("POST", "/v1/tokens")[1], "201")
    assert keys(Published) <= answer_fields(operation("POST", f"/v1/sessions/{sid}/events")[1], "202")
    for path in ("/v1/sessions", f"/v1/sessions/{sid}/conversation", f"/v1/sessions/{sid}/alerts"):
        assert keys(Page) <= answer_fields(operation("GET", path)[1], "200"), path
    job_path = f"/v1/jobs/{job['id']}"
    listing = operation("GET", "/v1/jobs")[1]
    assert keys(JobPage) <= answer_fields(listing, "200")
    items = schema(listing["responses"]["200"]["content"]["application/json"]["schema"])["properties"]["items"]
    assert keys(Job) == set(schema(items["items"])["properties"])
    for method, path, status in (("POST", "/v1/jobs", "201"), ("PATCH", job_path, "200"), ("GET", job_path, "200")):
        assert keys(Job) == answer_fields(operation(method, path)[1], status), f"{method} {path}"
    session_fields = answer_fields(operation("GET", f"/v1/sessions/{sid}")[1], "200")
    assert {"id", "status", "name"} <= session_fields
    error = schema(openapi()["components"]["schemas"]["ErrorDetail"])
    assert {"code", "message", "retry_after_ms"} <= set(error["properties"])
    assert set(openapi()["components"]["schemas"]["ErrorBody"]["properties"]) == {"error"}
