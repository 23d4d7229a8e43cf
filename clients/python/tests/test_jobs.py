"""Jobs (``docs/JOBS.md``) against a real hub: a backend reports progress
over REST, a watcher follows it in ``view.jobs`` by joining the job's
``stream``; the hub's refusals; listing; who may watch.

Each ``PATCH`` is answered once its ``job`` event is out, and the watcher
joins before the first one, so the job events a watcher sees are exactly
the changes made after its join, in order: those lists are compared
whole. Nothing here counts events whose number depends on timing
(presence, lifecycle): those are only looked for."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from eva_hub import Client, HubError, SessionView
from eva_hub.types import CustomEvent, Event, EventFrame, JobEvent, ResumedFrame
from conftest import CODECS, Hub, eventually
from test_resume import kill_socket


def progress(view: SessionView, job_id: str) -> int | None:
    """The job's progress as the view has it; None before it is seen."""
    job = view.jobs.get(job_id)
    return None if job is None else job["progress"]


class JobWatch:
    """Records the ``job`` events (status, progress, seq) and the order of
    every event kind a client receives."""

    def __init__(self, c: Client) -> None:
        self.steps: list[tuple[str, int]] = []
        self.seqs: list[int] = []
        self.kinds: list[str] = []
        c.on_job(self.on_job)
        c.on_event(self.on_event)

    def on_job(self, ev: JobEvent, f: EventFrame) -> None:
        self.steps.append((ev["job"]["status"], ev["job"]["progress"]))
        self.seqs.append(f["seq"])

    def on_event(self, ev: Event, f: EventFrame) -> None:
        self.kinds.append(ev["kind"])


@pytest.mark.parametrize("codec", CODECS)
async def test_the_owner_watches_a_job_from_snapshot_to_completion(
    hub: Hub, codec: Any, closer: Callable[[Client], Client]
) -> None:
    rest = hub.rest()
    job = await rest.create_job("voice_clone", owner="alice", metadata={"sample_url": "https://example.com/a.wav"})
    jid = job["id"]
    assert (job["status"], job["progress"], job["owner"]) == ("pending", 0, "alice")
    assert job["type"] == "voice_clone" and job["metadata"] == {"sample_url": "https://example.com/a.wav"}
    # Without a presentation session the job reports into a stream of its own.
    assert job["stream"] and "session" not in job

    alice = closer(hub.client("dev:participant:alice", codec=codec))
    await alice.connect()
    watch = JobWatch(alice)
    view = await alice.join(job["stream"])
    # Created before the join: it comes with the snapshot, not as an event.
    assert view.jobs[jid] == job

    at30 = await rest.update_job(jid, progress=30)
    # Reporting progress starts a pending job.
    assert (at30["status"], at30["progress"]) == ("processing", 30) and at30.get("started_at")
    await rest.update_job(jid, progress=60)
    done = await rest.update_job(jid, status="completed", result={"voice_id": "v-1"})
    assert (done["status"], done["progress"], done["result"]) == ("completed", 100, {"voice_id": "v-1"})
    assert done.get("completed_at") and "failed_at" not in done

    await eventually(lambda: view.jobs[jid]["status"] == "completed", what="the completed job in the view")
    assert view.jobs[jid]["progress"] == 100
    assert view.jobs[jid] == done == await rest.get_job(jid)
    assert watch.steps == [("processing", 30), ("processing", 60), ("completed", 100)]
    assert watch.seqs == sorted(set(watch.seqs))

    # A job's own session stops right after the job's last event.
    await eventually(lambda: view.status in ("stopping", "stopped"), what="the job's session to stop")
    last_job = max(i for i, k in enumerate(watch.kinds) if k == "job")
    first_lifecycle = watch.kinds.index("lifecycle")
    assert last_job < first_lifecycle, watch.kinds
    # The finished job stays in the view: its final state is what was watched.
    assert view.jobs[jid]["status"] == "completed"


async def test_a_watcher_that_reconnects_misses_no_step(hub: Hub, closer: Callable[[Client], Client]) -> None:
    rest = hub.rest()
    job = await rest.create_job("rag_ingest", owner="alice")
    jid = job["id"]
    alice = closer(hub.client("dev:participant:alice"))
    resumed: list[ResumedFrame] = []
    alice.on_resumed(lambda f: resumed.append(f))
    await alice.connect()
    watch = JobWatch(alice)
    view = await alice.join(job["stream"])

    await rest.update_job(jid, progress=10)
    await eventually(lambda: view.jobs[jid]["progress"] == 10, what="progress 10")
    kill_socket(alice)
    # Reported while the watcher is away: replayed by the resume.
    await rest.update_job(jid, progress=20)
    await rest.update_job(jid, progress=30)
    await eventually(lambda: bool(resumed), what="the resume")
    await rest.update_job(jid, status="failed", error={"code": "bad_audio", "message": "too short"})

    await eventually(lambda: view.jobs[jid]["status"] == "failed", what="the failed job")
    failed = view.jobs[jid]
    assert failed["progress"] == 30 and failed["error"] == {"code": "bad_audio", "message": "too short"}
    assert failed.get("failed_at") and "completed_at" not in failed
    # Exact: nothing lost with the socket, nothing repeated by the replay.
    assert watch.steps == [("processing", 10), ("processing", 20), ("processing", 30), ("failed", 30)]
    assert watch.seqs == sorted(set(watch.seqs))


async def test_refused_changes(hub: Hub) -> None:
    rest = hub.rest()
    jid = (await rest.create_job("voice_clone", owner="alice"))["id"]
    await rest.update_job(jid, progress=50)

    with pytest.raises(HubError) as backwards:
        await rest.update_job(jid, progress=40)
    assert (backwards.value.status, backwards.value.code) == (409, "conflict")
    assert not backwards.value.retryable
    with pytest.raises(HubError) as restarted:
        await rest.update_job(jid, status="pending")
    assert (restarted.value.status, restarted.value.code) == (409, "conflict")
    with pytest.raises(HubError) as past_100:
        await rest.update_job(jid, progress=101)
    assert (past_100.value.status, past_100.value.code) == (400, "invalid")
    with pytest.raises(HubError) as empty:
        await rest.update_job(jid)
    assert (empty.value.status, empty.value.code) == (400, "invalid")
    # None of those changed anything.
    assert (await rest.get_job(jid))["progress"] == 50

    await rest.update_job(jid, status="cancelled")
    with pytest.raises(HubError) as finished:
        await rest.update_job(jid, progress=60)
    assert (finished.value.status, finished.value.code) == (409, "conflict")
    assert (await rest.get_job(jid))["status"] == "cancelled"

    missing = "00000000-0000-7000-8000-000000000000"
    with pytest.raises(HubError) as no_job:
        await rest.get_job(missing)
    assert (no_job.value.status, no_job.value.code) == (404, "not_found")
    with pytest.raises(HubError) as no_job:
        await rest.update_job(missing, progress=1)
    assert (no_job.value.status, no_job.value.code) == (404, "not_found")
    with pytest.raises(HubError) as no_type:
        await rest.create_job("")
    assert (no_type.value.status, no_type.value.code) == (400, "invalid")


async def test_listing_filters_and_pages(hub: Hub) -> None:
    rest = hub.rest()
    clone_1 = (await rest.create_job("voice_clone", owner="alice"))["id"]
    ingest = (await rest.create_job("rag_ingest"))["id"]
    clone_2 = (await rest.create_job("voice_clone", owner="bob"))["id"]
    await rest.update_job(clone_1, status="completed")
    await rest.update_job(ingest, progress=5)

    # Newest first; the hub is fresh, so these are all its jobs.
    every = await rest.list_jobs()
    assert [j["id"] for j in every["items"]] == [clone_2, ingest, clone_1]
    assert "next_before" not in every
    clones = await rest.list_jobs(type="voice_clone")
    assert [j["id"] for j in clones["items"]] == [clone_2, clone_1]
    completed = await rest.list_jobs(status="completed")
    assert [(j["id"], j["progress"]) for j in completed["items"]] == [(clone_1, 100)]
    processing = await rest.list_jobs(status="processing", type="rag_ingest")
    assert [j["id"] for j in processing["items"]] == [ingest]
    assert (await rest.list_jobs(status="failed"))["items"] == []

    first = await rest.list_jobs(limit=2)
    assert [j["id"] for j in first["items"]] == [clone_2, ingest]
    assert first.get("next_before") == ingest
    rest_of_it = await rest.list_jobs(before=first["next_before"], limit=2)
    assert [j["id"] for j in rest_of_it["items"]] == [clone_1]

    with pytest.raises(HubError) as unknown:
        await rest.list_jobs(status="done")  # type: ignore[arg-type]
    assert (unknown.value.status, unknown.value.code) == (400, "invalid")


async def test_who_may_watch(hub: Hub, session_id: str, closer: Callable[[Client], Client]) -> None:
    rest = hub.rest()
    # A job's own stream admits its owner and operators only.
    own = await rest.create_job("persona_extract", owner="alice")
    bob = closer(hub.client("dev:participant:bob"))
    await bob.connect()
    with pytest.raises(HubError) as refused:
        await bob.join(own["stream"])
    assert refused.value.code == "not_found"
    op = closer(hub.client("dev:operator:ops-1"))
    await op.connect()
    assert own["id"] in (await op.join(own["stream"])).jobs

    # Reporting into a presentation: its operators see the job (the default
    # audience), its participants do not.
    sid = session_id
    pia = closer(hub.client("dev:participant:pia"))
    await pia.connect()
    pia_view = await pia.join(sid)
    op_view = await op.join(sid)
    markers: list[CustomEvent] = []
    pia.on_custom(lambda ev, f: markers.append(ev))
    job = await rest.create_job("rag_ingest", session=sid, metadata={"doc": "faq.pdf"})
    assert job["session"] == sid and job["stream"] == sid
    await rest.update_job(job["id"], progress=70)
    await eventually(lambda: progress(op_view, job["id"]) == 70, what="the operator's job")
    # Events reach a connection in stream order: once the participant has
    # the marker published after the job's events, it would have had them.
    await rest.post_event(sid, "marker")
    await eventually(lambda: bool(markers), what="the marker")
    assert pia_view.jobs == {}

    # A snapshot lists the jobs the joining role may see.
    op2 = closer(hub.client("dev:operator:ops-2"))
    await op2.connect()
    assert (await op2.join(sid)).jobs[job["id"]]["progress"] == 70
    pia2 = closer(hub.client("dev:participant:pia-2"))
    await pia2.connect()
    assert (await pia2.join(sid)).jobs == {}


async def test_an_audience_of_all_reaches_participants(
    hub: Hub, session_id: str, closer: Callable[[Client], Client]
) -> None:
    rest = hub.rest()
    pia = closer(hub.client("dev:participant:pia", compact=True))
    await pia.connect()
    view = await pia.join(session_id)
    seen: list[JobEvent] = []
    pia.on_job(lambda ev, f: seen.append(ev))
    job = await rest.create_job("rag_ingest", session=session_id, audience="all")
    await rest.update_job(job["id"], progress=100)
    await eventually(lambda: progress(view, job["id"]) == 100, what="the job at 100")
    # `all` is the default audience on the wire: left out.
    assert seen and all("audience" not in ev for ev in seen)
    assert [ev["job"]["progress"] for ev in seen] == [0, 100]
