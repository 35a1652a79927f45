"""What more than one test module uses: the server with the tests' settings, API calls, the websocket test client
and the browser. Fixtures live in conftest.py; the process harness (shared with bench/) in harness.py."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from ide_backend.api.protocol import server_message

from .harness import Server, launch, remove_instance
from .swarm import SwarmCluster, remove_swarm_instance

if TYPE_CHECKING:
    from playwright.sync_api import Browser

TOKEN = "test-token-" + uuid.uuid4().hex[:8]
# Debian's Chromium, driven by Playwright; never `playwright install` (it downloads a browser of its own).
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# The settings every test server starts with, unless a test overrides them.
TEST_SETTINGS = {
    "IDE_STOP_TIMEOUT": "1",
    "IDE_MEMORY_LIMIT_MB": "512",
    "IDE_PIDS_LIMIT": "256",
    "IDE_PROCESS_DETACHED_TTL": "3",
    "IDE_PROCESS_LAG_CHARS": str(32 * 1024 * 1024),  # test_streaming outruns it with 64 MiB, not 192
    # Off unless a test asks: the warm pool's own tests (test_pool, test_lifecycle) run both ways.
    "IDE_POOL_SIZE": "0",
}

Call = Callable[..., httpx.Response]


def base_only(tmp: Path) -> str:
    """A templates file with the base template alone, for tests about one warm pool (the built-in set keeps one per
    template); returns its path for IDE_TEMPLATES."""
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "base-only.toml"
    path.write_text('[templates.base]\nimage = "ide-backend/workspace:latest"\n')
    return str(path)


def start_server(tmp: Path, *, instance: str | None = None, **settings: str) -> Server:
    """A server with the tests' token and settings (`settings` override them), its data and log under `tmp`."""
    return launch(tmp, token=TOKEN, instance=instance, env={**TEST_SETTINGS, **settings}, timeout=30)


# A fixture param for a server on the swarm: marked, so `-m "not swarm"` leaves it (and the cluster) out.
SWARM = pytest.param("swarm", marks=pytest.mark.swarm)


def swarm_for(request: pytest.FixtureRequest) -> SwarmCluster | None:
    """The swarm when the fixture's param is `swarm`, else None: no other param ever brings the cluster up."""
    if request.param != "swarm":
        return None
    cluster: SwarmCluster = request.getfixturevalue("swarm_cluster")
    return cluster


def swarm_settings(cluster: SwarmCluster) -> dict[str, str]:
    """What a server needs to run its workspaces on the swarm (IDE_RUNTIME=swarm refuses what it does not do yet)."""
    return {
        "IDE_RUNTIME": "swarm",
        "IDE_DOCKER_HOST": cluster.manager,
        "IDE_NETWORK": "shared",
        "IDE_DISK_LIMIT_MB": "0",
        "IDE_POOL_SIZE": "0",
        "IDE_IDE_UPSTREAM": "container",
        "IDE_MEMORY_LIMIT_MB": "256",
        "IDE_CPU_LIMIT": "1",  # each reserves an eighth of its limits: 16 fit on a node of this 2-core machine
    }


@contextlib.contextmanager
def serving(tmp: Path, swarm: SwarmCluster | None = None, **settings: str) -> Iterator[Server]:
    """A server (start_server) on the host's engine, or on `swarm` when given; stopped afterwards and everything it
    made swept away, on whichever engines it made it."""
    srv = start_server(tmp, **{**(swarm_settings(swarm) if swarm else {}), **settings})
    try:
        yield srv
    finally:
        srv.stop()
        if swarm is None:
            remove_instance(srv.instance)
        else:
            remove_swarm_instance(swarm.manager, swarm.nodes, srv.instance)


def post(server: Server, endpoint: str, body: Mapping[str, Any], timeout: float = 120) -> httpx.Response:
    """POST /api/v1/containers/<endpoint> with the tests' token."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    return httpx.post(f"{server.url}/api/v1/containers/{endpoint}", json=dict(body), headers=headers, timeout=timeout)


def run(api: Call, ref: dict[str, str], command: str, **extra: Any) -> dict[str, Any]:
    """Exec a command that must complete; returns the answer."""
    response = api("exec", ref, command=command, **extra)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def wait_for_pool(server: Server, timeout: float = 60.0) -> dict[str, Any]:
    """Until the server's warm pools are full; returns their stats (totals, and `templates` for each)."""
    deadline = time.monotonic() + timeout
    with server.client() as c:
        while True:
            pool: dict[str, Any] = c.get("/api/v1/stats").json()["pool"]
            if pool["ready"] >= pool["size"] or time.monotonic() > deadline:
                assert pool["ready"] >= pool["size"], f"the warm pool did not fill: {pool}\n{server.log()[-3000:]}"
                return pool
            time.sleep(0.05)


def new_process_id() -> str:
    """An id for a websocket exec no other test uses."""
    return "p-" + uuid.uuid4().hex[:8]


class Channel:
    """A test client for /api/v1/ws that keeps messages it was not waiting for."""

    def __init__(self, server: Server, token: str = TOKEN) -> None:
        self._stack = contextlib.ExitStack()
        url = f"{server.url.replace('http', 'ws')}/api/v1/ws?token={token}"
        self.ws: ClientConnection = self._stack.enter_context(connect(url))
        self.backlog: list[dict[str, Any]] = []

    def send(self, **message: Any) -> None:
        self.ws.send(json.dumps(message))

    def recv(self, timeout: float = 30) -> dict[str, Any]:
        if self.backlog:
            return self.backlog.pop(0)
        return self._read(timeout)

    def _read(self, timeout: float) -> dict[str, Any]:
        """One message off the wire, checked against the documented protocol models."""
        text = self.ws.recv(timeout=timeout)
        server_message.validate_json(text)
        message: dict[str, Any] = json.loads(text)
        return message

    def wait_for(self, timeout: float = 30, **match: Any) -> dict[str, Any]:
        """The first message with all of `match`; others are kept for later."""
        deadline = time.monotonic() + timeout
        for index, message in enumerate(self.backlog):
            if all(message.get(k) == v for k, v in match.items()):
                return self.backlog.pop(index)
        while True:
            message = self._read(max(0.1, deadline - time.monotonic()))
            if all(message.get(k) == v for k, v in match.items()):
                return dict(message)
            self.backlog.append(message)

    def process(self, process_id: str, timeout: float = 30) -> list[dict[str, Any]]:
        """Every message for one process up to and including its exit."""
        seen = []
        deadline = time.monotonic() + timeout
        while True:
            message = self.wait_for(timeout=max(0.1, deadline - time.monotonic()), id=process_id)
            seen.append(message)
            if message["type"] == "exit":
                return seen

    def close(self) -> None:
        self._stack.close()


@contextlib.contextmanager
def chromium_browser() -> Iterator[Browser]:
    """Debian's Chromium under Playwright; fails (not skips) when missing: scripts/setup.sh --test installs it."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y --no-install-recommends chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
