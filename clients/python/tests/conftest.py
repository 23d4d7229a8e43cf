"""Test fixtures: a real eva-hub process per test, on a random port, with a
fresh in-memory store, talking WebSocket over real TCP. No mocks.

The binary is ``$EVA_HUB_BIN``, or the workspace's own debug build
(``<repo>/target/debug/eva-hub``). Without it the run stops at once with
one line saying how to build it: tests never skip quietly.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from eva_hub import Client, Rest
from eva_hub.backoff import Backoff
from eva_hub.codec import Codec, CodecName

REPO = Path(__file__).resolve().parents[3]
SCHEMA_PATH = REPO / "docs" / "protocol.schema.json"
CODECS: list[CodecName] = ["json", "msgpack"]

# Reconnects in tests: quick, still exponential with full jitter.
FAST = Backoff(initial_s=0.05, max_s=0.5)


def hub_binary() -> Path:
    env = os.environ.get("EVA_HUB_BIN")
    return Path(env) if env else REPO / "target" / "debug" / "eva-hub"


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Stops the run before any test when tests need a hub and there is no
    binary: one line saying how to get one, never a quiet skip."""
    needs_hub = any("hubs" in getattr(item, "fixturenames", ()) for item in items)
    path = hub_binary()
    if needs_hub and not (path.is_file() and os.access(path, os.X_OK)):
        pytest.exit(
            f"eva-hub binary not found at {path}: build it with `cargo build` in {REPO} "
            "(or point EVA_HUB_BIN at one)",
            returncode=1,
        )


@dataclass
class Hub:
    """One running hub process."""

    proc: subprocess.Popen[bytes]
    addr: str
    log_path: Path
    dev: bool
    admin_key: str | None = None
    _log: Any = field(default=None, repr=False)

    @property
    def ws_url(self) -> str:
        return f"ws://{self.addr}/v1/ws"

    @property
    def http_url(self) -> str:
        return f"http://{self.addr}"

    def rest(self) -> Rest:
        return Rest(self.http_url, self.admin_key)

    def client(self, token: Any, **kw: Any) -> Client:
        kw.setdefault("reconnect", FAST)
        return Client(self.ws_url, token, **kw)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_records(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log().splitlines():
            with_json = line.strip()
            if with_json.startswith("{"):
                try:
                    out.append(json.loads(with_json))
                except ValueError:
                    pass
        return out

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


def _start(
    binary: Path,
    workdir: Path,
    *,
    dev: bool = True,
    env: dict[str, str] | None = None,
    database_url: str = "memory",
    listen: str = "127.0.0.1:0",
) -> Hub:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("EVA_HUB__")}
    full_env["EVA_HUB__LOG__FORMAT"] = "json"
    full_env.update(env or {})
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"hub-{time.monotonic_ns()}.log"
    log = open(log_path, "wb")
    args = [str(binary), "serve"]
    if dev:
        args.append("--dev")
    args += ["--listen", listen, "--metrics-listen", "127.0.0.1:0", "--database-url", database_url]
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=full_env, cwd=workdir)
    hub = Hub(proc, "", log_path, dev, _log=log)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        for rec in hub.log_records():
            if rec.get("message") == "eva-hub serving":
                hub.addr = rec["listen"]
                return hub
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    hub.stop(signal.SIGKILL)
    raise RuntimeError(f"eva-hub did not start:\n{hub.log()[-3000:]}")


class HubFactory:
    def __init__(self, binary: Path, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.hubs: list[Hub] = []

    def start(self, **kw: Any) -> Hub:
        hub = _start(self.binary, self.workdir, **kw)
        self.hubs.append(hub)
        return hub

    def start_production(self, env: dict[str, str] | None = None) -> Hub:
        """A hub without --dev: HS256 connection tokens, a SQLite store in
        the test's directory, and an admin API key."""
        db = f"sqlite://{self.workdir}/eva-{time.monotonic_ns()}.db"
        secret = "test-secret-" + "x" * 40
        prod_env = {
            "EVA_HUB_JWT_SECRET": secret,
            "EVA_HUB__AUTH__KEYS": '[{kid="k1",algorithm="HS256",secret_env="EVA_HUB_JWT_SECRET"}]',
            **(env or {}),
        }
        key = subprocess.run(
            [
                str(self.binary),
                "keys",
                "create",
                "--database-url",
                db,
                "--email",
                "sdk-tests@example.com",
                "--name",
                "admin",
                "--scope",
                "eva:admin",
            ],
            env={**os.environ, **prod_env},
            cwd=self.workdir,
            capture_output=True,
            check=True,
            timeout=30,
        ).stdout.decode().strip()
        hub = self.start(dev=False, env=prod_env, database_url=db)
        hub.admin_key = key
        return hub

    def stop_all(self) -> None:
        for hub in self.hubs:
            hub.stop()


@pytest.fixture(autouse=True)
def wire_check(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Records every frame the SDK encodes and every frame it receives
    during a test, and validates all of them against
    docs/protocol.schema.json afterwards: what the SDK really sends, and
    what the hub really sends, must match the published schema."""
    if request.node.get_closest_marker("no_wire_check"):
        yield
        return
    from schema_check import validator

    sent: list[Any] = []
    received: list[Any] = []
    encode = Codec.encode
    feed = Client._feed

    def recording_encode(self: Codec, frame: Any) -> Any:
        sent.append(copy.deepcopy(frame))
        return encode(self, frame)

    def recording_feed(self: Client, data: Any) -> None:
        try:
            received.append(self._codec.decode(data))
        except Exception:
            received.append({"undecodable": repr(data)[:200]})
        feed(self, data)

    monkeypatch.setattr(Codec, "encode", recording_encode)
    monkeypatch.setattr(Client, "_feed", recording_feed)
    yield
    problems = []
    checks = {"sent": validator("ClientFrame"), "received": validator("ServerFrame"), "compact": validator("CompactEventFrame")}
    for what, frames in (("sent", sent), ("received", received)):
        for f in frames:
            # A frame with `e` and no `type` is a compact event frame.
            v = checks["compact" if what == "received" and "type" not in f and "e" in f else what]
            for err in v.iter_errors(f):
                problems.append(f"{what} {str(f)[:300]}: {err.message[:300]}")
                break
    assert not problems, "frames off the schema:\n" + "\n".join(problems[:10])


@pytest.fixture
def hubs(tmp_path: Path) -> Iterator[HubFactory]:
    factory = HubFactory(hub_binary(), tmp_path)
    try:
        yield factory
    finally:
        factory.stop_all()


@pytest.fixture
def hub(hubs: HubFactory) -> Hub:
    return hubs.start()


@pytest.fixture
async def session_id(hub: Hub) -> str:
    created = await hub.rest().create_session("sdk test")
    return str(created["id"])


@pytest.fixture
async def closer() -> AsyncIterator[Callable[[Client], Client]]:
    """Registers clients to close at the end of a test."""
    clients: list[Client] = []

    def track(c: Client) -> Client:
        clients.append(c)
        return c

    yield track
    for c in clients:
        await c.close()


async def eventually(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Waits until ``predicate()`` holds (polling; for state the SDK folds
    asynchronously). Fails the test after ``timeout``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


