"""``Rest``: the hub's REST API for backends (create sessions, mint
connection tokens, publish events, read history, report jobs' progress).

Standard library only (``urllib`` run in a worker thread through
``asyncio.to_thread``), so the SDK keeps its two dependencies. Calls are
infrequent control-plane calls; a thread per call is fine for them.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypedDict, cast

from .errors import HubError
from .types import CustomAudience, Job, JobStatus, Role, SessionStatus


class TokenGrant(TypedDict):
    token: str
    token_type: str
    # Unix seconds; None in dev mode (dev tokens do not expire).
    expires_at: int | None


class Published(TypedDict):
    session: str
    seq: int


class Page(TypedDict, total=False):
    """A page of history or sessions, newest first. Pass ``next_before``
    as ``before`` for the next page (absent on the last page)."""

    items: list[dict[str, Any]]
    next_before: str | None


class _JobPageRequired(TypedDict):
    items: list[Job]


class JobPage(_JobPageRequired, total=False):
    """A page of jobs, newest first. Pass ``next_before`` as ``before`` for
    the next page (absent on the last page)."""

    next_before: str | None


def ws_url_to_http(url: str) -> str:
    """``ws://host:port/v1/ws`` → ``http://host:port`` (same listener)."""
    parts = urllib.parse.urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return f"{scheme}://{parts.netloc}"


class Rest:
    """``Rest("http://127.0.0.1:8080", api_key)``; in ``--dev`` mode the key
    may be omitted. Errors raise ``HubError`` with the hub's code, message,
    ``retry_after_ms`` and the HTTP ``status``."""

    def __init__(self, base_url: str, api_key: str | None = None, *, timeout: float = 10.0) -> None:
        if base_url.startswith(("ws://", "wss://")):
            base_url = ws_url_to_http(base_url)
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout

    # -- sessions ------------------------------------------------------------

    async def create_session(
        self,
        name: str | None = None,
        *,
        description: str | None = None,
        avatar_id: str | None = None,
        config: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Creates a session (201); its id is ``["id"]``."""
        body = _without_none(name=name, description=description, avatar_id=avatar_id, config=config)
        return cast(dict[str, Any], await self.call("POST", "/v1/sessions", body))

    async def get_session(self, session: str) -> dict[str, Any]:
        return cast(dict[str, Any], await self.call("GET", f"/v1/sessions/{_q(session)}"))

    async def list_sessions(
        self, *, status: SessionStatus | None = None, before: str | None = None, limit: int | None = None
    ) -> Page:
        return cast(Page, await self.call("GET", "/v1/sessions" + _query(status=status, before=before, limit=limit)))

    async def stop_session(self, session: str, reason: str | None = None) -> dict[str, Any]:
        return cast(
            dict[str, Any], await self.call("POST", f"/v1/sessions/{_q(session)}/stop", _without_none(reason=reason))
        )

    async def set_status(self, session: str, status: SessionStatus, reason: str | None = None) -> dict[str, Any]:
        body = _without_none(status=status, reason=reason)
        return cast(dict[str, Any], await self.call("POST", f"/v1/sessions/{_q(session)}/status", body))

    async def post_event(
        self, session: str, name: str, data: Any = None, *, audience: CustomAudience | None = None
    ) -> Published:
        """Publishes an app-defined ``custom`` event into the session (202)."""
        body = _without_none(name=name, audience=audience, data=data)
        return cast(Published, await self.call("POST", f"/v1/sessions/{_q(session)}/events", body))

    # -- history ---------------------------------------------------------------

    async def conversation(self, session: str, *, before: str | None = None, limit: int | None = None) -> Page:
        return await self._history(session, "conversation", before, limit)

    async def interventions(self, session: str, *, before: str | None = None, limit: int | None = None) -> Page:
        return await self._history(session, "interventions", before, limit)

    async def alerts(self, session: str, *, before: str | None = None, limit: int | None = None) -> Page:
        return await self._history(session, "alerts", before, limit)

    async def _history(
        self,
        session: str,
        kind: Literal["conversation", "interventions", "alerts"],
        before: str | None,
        limit: int | None,
    ) -> Page:
        path = f"/v1/sessions/{_q(session)}/{kind}" + _query(before=before, limit=limit)
        return cast(Page, await self.call("GET", path))

    # -- jobs ------------------------------------------------------------------

    async def create_job(
        self,
        type: str,
        *,
        owner: str | None = None,
        session: str | None = None,
        audience: CustomAudience | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Job:
        """Creates a job, ``pending`` at 0 (201), answered once stored.
        Watchers join ``job["stream"]``: ``session`` when given (its
        events then go to ``audience``, default ``operators``), else a
        session of the job's own that only ``owner`` and the tenant's
        operators may join, and that stops when the job finishes."""
        body = _without_none(type=type, owner=owner, session=session, audience=audience, metadata=metadata)
        return cast(Job, await self.call("POST", "/v1/jobs", body))

    async def update_job(
        self,
        job_id: str,
        *,
        status: JobStatus | None = None,
        progress: int | None = None,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
    ) -> Job:
        """Reports a change; returns the job after it. Answered only once
        stored (its ``job`` event is out by then), so a returned job is
        never lost. Progress on a ``pending`` job makes it ``processing``;
        ``completed`` sets progress to 100. The hub decides what is
        allowed, against the job as watchers last saw it: ``HubError``
        ``conflict`` (409) for progress going down, a return to
        ``pending`` or any change after the job finished; ``invalid``
        (400) for an empty change or progress over 100."""
        body = _without_none(status=status, progress=progress, result=result, error=error)
        return cast(Job, await self.call("PATCH", f"/v1/jobs/{_q(job_id)}", body))

    async def get_job(self, job_id: str) -> Job:
        """The job as stored: every change answered so far is in it."""
        return cast(Job, await self.call("GET", f"/v1/jobs/{_q(job_id)}"))

    async def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        type: str | None = None,
        before: str | None = None,
        limit: int | None = None,
    ) -> JobPage:
        """The tenant's jobs, newest first, optionally only one status or
        type."""
        path = "/v1/jobs" + _query(status=status, type=type, before=before, limit=limit)
        return cast(JobPage, await self.call("GET", path))

    # -- credentials -------------------------------------------------------------

    async def mint_token(
        self,
        role: Role,
        subject: str,
        *,
        sessions: list[str] | None = None,
        name: str | None = None,
        ttl_s: int | None = None,
    ) -> TokenGrant:
        """A connection token for a renderer, operator or participant
        (participants must name their ``sessions``)."""
        body = _without_none(role=role, subject=subject, sessions=sessions, name=name, ttl_s=ttl_s)
        return cast(TokenGrant, await self.call("POST", "/v1/tokens", body))

    def token_provider(
        self,
        role: Role,
        subject: str,
        *,
        sessions: list[str] | None = None,
        name: str | None = None,
        ttl_s: int | None = None,
    ) -> Callable[[], Awaitable[str]]:
        """An async token provider for ``Client``/``Renderer``: mints a
        fresh token whenever the client needs one (first connect, 4002)."""

        async def provide() -> str:
            grant = await self.mint_token(role, subject, sessions=sessions, name=name, ttl_s=ttl_s)
            return grant["token"]

        return provide

    # -- plumbing ------------------------------------------------------------------

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        """One request; the decoded JSON answer (``None`` for 204)."""
        return await asyncio.to_thread(self._call_sync, method, path, body)

    def _call_sync(self, method: str, path: str, body: Any) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.api_key:
            req.add_header("Authorization", f"Bearer {self.api_key}")
        # An explicit opener without the environment's proxies: the hub is
        # addressed directly.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(req, timeout=self.timeout) as res:
                raw = res.read()
        except urllib.error.HTTPError as e:
            raise _rest_error(e) from None
        except urllib.error.URLError as e:
            raise HubError("unavailable", f"cannot reach {self.base_url}: {e.reason}") from e
        return json.loads(raw) if raw else None


def _rest_error(e: urllib.error.HTTPError) -> HubError:
    raw = e.read()
    code, message, retry_after_ms = "internal", e.reason or f"HTTP {e.code}", None
    try:
        err = json.loads(raw)["error"]
        code, message, retry_after_ms = err["code"], err["message"], err.get("retry_after_ms")
    except (ValueError, KeyError, TypeError):
        pass
    return HubError(code, message, retry_after_ms=retry_after_ms, status=e.code)


def _without_none(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


def _query(**params: Any) -> str:
    kept = _without_none(**params)
    return "?" + urllib.parse.urlencode(kept) if kept else ""


def _q(segment: str) -> str:
    return urllib.parse.quote(segment, safe="")
