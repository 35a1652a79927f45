"""Shared fixtures: a real ide-backend server (a uvicorn subprocess) on a real Docker engine, and clean-up by label.

Every server started here runs with its own IDE_INSTANCE, so everything it creates carries that label and is
removed at the end, even when a test fails half-way.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

DOCKER = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"
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
TOKEN = "test-token-" + uuid.uuid4().hex[:8]


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the docker CLI: what an operator (or an attacker behind our back) would do."""
    return subprocess.run([DOCKER, *args], capture_output=True, text=True, check=check, timeout=120)


def docker_json(*args: str) -> Any:
    return json.loads(docker(*args).stdout)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def remove_instance(instance: str) -> None:
    label = f"label=ide-backend.instance={instance}"
    ids = docker("ps", "-aq", "--filter", label).stdout.split()
    if ids:
        docker("rm", "-f", "-v", *ids, check=False)  # -v: anonymous volumes too (the backend image's /data)
    vols = docker("volume", "ls", "-q", "--filter", label).stdout.split()
    if vols:
        docker("volume", "rm", "-f", *vols, check=False)


@dataclass
class Server:
    """One running ide-backend process and what it was started with."""

    url: str
    instance: str
    log_path: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    refs: list[dict[str, str]] = field(default_factory=list)

    def client(self, token: str | None = TOKEN, timeout: float = 120.0) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(tmp: Path, *, instance: str | None = None, **env_overrides: str) -> Server:
    """Start `python -m ide_backend serve` and wait until /healthz answers."""
    instance = instance or "t" + uuid.uuid4().hex[:10]
    port = free_port()
    env = {
        **os.environ,
        "IDE_API_TOKEN": TOKEN,
        "IDE_INSTANCE": instance,
        "IDE_DATA_DIR": str(tmp / "data"),
        "IDE_STOP_TIMEOUT": "1",
        "IDE_MEMORY_LIMIT_MB": "512",
        "IDE_PIDS_LIMIT": "256",
        "IDE_PROCESS_DETACHED_TTL": "3",
        "IDE_PROCESS_LAG_CHARS": str(32 * 1024 * 1024),  # test_streaming outruns it with 64 MiB, not 192
        # Off unless a test asks: the warm pool's own tests (test_pool, test_lifecycle) run both ways.
        "IDE_POOL_SIZE": "0",
        **env_overrides,
    }
    tmp.mkdir(parents=True, exist_ok=True)
    log_path = tmp / f"server-{port}.log"
    with log_path.open("wb") as handle:  # the child keeps its own descriptor
        process = subprocess.Popen(
            [sys.executable, "-m", "ide_backend", "serve", "--port", str(port)],
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    server = Server(url, instance, log_path, env, process)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{server.log()}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"server did not come up:\n{server.log()}")


def wait_for_pool(server: Server, timeout: float = 60.0) -> dict[str, int]:
    """Until the server's warm pool is full; returns its stats."""
    deadline = time.monotonic() + timeout
    with server.client() as c:
        while True:
            pool: dict[str, int] = c.get("/api/v1/stats").json()["pool"]
            if pool["ready"] >= pool["size"] or time.monotonic() > deadline:
                assert pool["ready"] >= pool["size"], f"the warm pool did not fill: {pool}\n{server.log()[-3000:]}"
                return pool
            time.sleep(0.05)


@contextlib.contextmanager
def chromium_browser() -> Iterator[Any]:
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


@pytest.fixture(scope="session")
def docker_engine() -> None:
    """The suite needs a real engine; scripts/test.sh starts one. Failing loudly beats skipping silently."""
    result = docker("info", "--format", "{{.ServerVersion}}", check=False)
    if result.returncode != 0:
        pytest.fail(f"No Docker engine answers ({result.stderr.strip()}); run scripts/docker-engine.sh")


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, docker_engine: None) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("server"))
    try:
        yield srv
    finally:
        srv.stop()
        remove_instance(srv.instance)


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


@pytest.fixture
def ref() -> dict[str, str]:
    """A workspace no other test uses."""
    return {"projectId": "proj-" + uuid.uuid4().hex[:6], "workspaceId": "ws-" + uuid.uuid4().hex[:6]}


Call = Callable[..., httpx.Response]


@pytest.fixture
def api(client: httpx.Client) -> Call:
    """POST one endpoint: api("start", ref, files=...) -> response."""

    def call(endpoint: str, ref: dict[str, str], **body: Any) -> httpx.Response:
        return client.post(f"/api/v1/containers/{endpoint}", json={**ref, **body})

    return call


@pytest.fixture
def started(api: Call, ref: dict[str, str]) -> dict[str, Any]:
    """A running workspace; returns the start answer's data."""
    response = api("start", ref)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def run(api: Call, ref: dict[str, str], command: str, **extra: Any) -> dict[str, Any]:
    """Exec a command that must complete; returns the answer."""
    response = api("exec", ref, command=command, **extra)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture(scope="module", params=["agent", "docker-exec"])
def exec_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, docker_engine: None
) -> Iterator[Server]:
    """A server per exec path: the in-container agent (the default) and plain Docker exec (the fallback).
    Modules that must give identical results on both use it as their `server`."""
    srv = start_server(tmp_path_factory.mktemp(request.param), IDE_EXEC_AGENT=str(request.param == "agent").lower())
    try:
        yield srv
    finally:
        srv.stop()
        remove_instance(srv.instance)
