"""deploy/docker-compose.yml for real: Debian's docker-compose builds and starts PostgreSQL, two backend replicas and
the load balancer (HAProxy) under a compose project of its own; everything below goes through the balancer's port.
The demo page and its packages are served, a workspace starts and runs commands, a websocket sees status events,
and the replica holding the websocket is stopped: the balancer keeps serving through the other one, the client
reconnects there, the workspace and its files are intact, and the old terminal (held in the workspace, not in the
replica) is found there with what it wrote meanwhile and types on in the same shell, while a new one opens too.
Then the stopped replica starts again and serves. Screenshots go to artifacts/deploy/."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, expect
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from .harness import ROOT, docker, free_port, remove_instance
from .helpers import TOKEN
from .pages import new_context

pytestmark = pytest.mark.docker

COMPOSE = "/usr/bin/docker-compose"
ARTIFACTS = ROOT / "artifacts" / "deploy"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class Deployment:
    project: str
    env_file: Path
    url: str
    preview_url: str

    def compose(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [COMPOSE, "-p", self.project, "-f", str(ROOT / "deploy" / "docker-compose.yml")]
        command += ["--env-file", str(self.env_file), *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0 or not check, f"{' '.join(args)}: {done.stdout[-2000:]}{done.stderr[-3000:]}"
        return done

    def container(self, service: str) -> str:
        return f"{self.project}_{service}_1"

    def wait_healthy(self, service: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while True:
            health = docker("inspect", "-f", "{{.State.Health.Status}}", self.container(service), check=False)
            if health.stdout.strip() == "healthy":
                return
            if time.monotonic() > deadline:
                logs = docker("logs", "--tail", "40", self.container(service), check=False)
                pytest.fail(f"{service} is not healthy: {health.stdout}{logs.stdout[-2000:]}{logs.stderr[-3000:]}")
            time.sleep(0.5)

    def websockets_of(self, service: str) -> int:
        """Open websockets of one replica (GET /api/v1/stats), asked inside its container, past the balancer."""
        script = (
            "import json, sys, urllib.request as u;"
            "r = u.Request('http://127.0.0.1:8000/api/v1/stats', headers={'Authorization': 'Bearer ' + sys.argv[1]});"
            "print(json.load(u.urlopen(r, timeout=10))['websockets'])"
        )
        done = docker("exec", self.container(service), "/opt/ide-backend/bin/python", "-c", script, TOKEN)
        return int(done.stdout.strip())

    def post(self, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = httpx.post(f"{self.url}/api/v1/containers/{endpoint}", json=body, headers=AUTH, timeout=120)
        assert answer.status_code == 200, f"{endpoint}: {answer.status_code} {answer.text}"
        data: dict[str, Any] = answer.json()
        assert data["success"] is True, data
        return data


@pytest.fixture(scope="module")
def deployment(docker_engine: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    if shutil.which(COMPOSE) is None:
        pytest.fail(f"{COMPOSE} is missing: scripts/setup.sh --test installs Debian's docker-compose")
    project = "deploy" + uuid.uuid4().hex[:8]  # also the backends' IDE_INSTANCE, so the sweep finds the workspaces
    port, preview_port = free_port(), free_port()
    env_file = tmp_path_factory.mktemp("deploy") / "env"
    env_file.write_text(
        f"POSTGRES_PASSWORD={uuid.uuid4().hex}\nIDE_API_TOKEN={TOKEN}\nIDE_TOKEN_SECRET={uuid.uuid4().hex * 2}\n"
        f"IDE_INSTANCE={project}\nIDE_HTTP_PORT={port}\nIDE_PREVIEW_HTTP_PORT={preview_port}\n"
        f"IDE_PREVIEW_URL=http://127.0.0.1:{preview_port}\nIDE_POOL_SIZE=0\n"
    )
    deployed = Deployment(project, env_file, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{preview_port}")
    try:
        deployed.compose("up", "-d", "--build", timeout=900)
        for service in ("postgres", "backend-a", "backend-b"):
            deployed.wait_healthy(service)
        deadline = time.monotonic() + 60
        while True:  # the balancer's own health checks see the replicas within a second or two
            try:
                if httpx.get(f"{deployed.url}/healthz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the balancer did not answer /healthz"
            time.sleep(0.3)
        yield deployed
    finally:
        deployed.compose("down", "-v", "--remove-orphans", "-t", "20", timeout=300, check=False)
        left = remove_instance(project)
        assert left == {"containers_left": 0, "volumes_left": 0}, left


def test_the_page_and_its_packages_through_the_balancer(deployment: Deployment) -> None:
    page = httpx.get(f"{deployment.url}/", timeout=30)
    assert page.status_code == 200 and "/vendor/monaco-editor/min/vs/loader.js" in page.text
    for asset in ("/static/app.js", "/static/style.css", "/vendor/@xterm/xterm/lib/xterm.js"):
        assert httpx.get(deployment.url + asset, timeout=30).status_code == 200, asset
    # The preview port is another origin, serving /preview/ only.
    assert httpx.get(f"{deployment.preview_url}/", timeout=30).status_code == 404


def _ws(deployment: Deployment) -> ClientConnection:
    return connect(f"{deployment.url.replace('http', 'ws')}/api/v1/ws?token={TOKEN}", open_timeout=30)


def _until(ws: ClientConnection, timeout: float = 60, **match: Any) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        message: dict[str, Any] = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
        if all(message.get(key) == value for key, value in match.items()):
            return message


def _terminal_says(ws: ClientConnection, process_id: str, text: str, timeout: float = 30) -> None:
    seen = ""
    deadline = time.monotonic() + timeout
    while text not in seen:
        message = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
        if message.get("id") == process_id and message["type"] in ("stdout", "stderr"):
            seen += message["data"]


def test_a_replica_stops_and_the_other_serves_the_workspace(deployment: Deployment) -> None:
    ref = {"projectId": "deploy", "workspaceId": "one"}
    started = deployment.post("start", {**ref, "files": {"notes.txt": "kept across replicas"}})
    assert started["data"]["running"] is True
    assert deployment.post("exec", {**ref, "command": "cat notes.txt"})["output"] == "kept across replicas"

    with _ws(deployment) as ws:
        ws.send(json.dumps({"type": "subscribe", **ref}))
        _until(ws, type="subscribed")
        assert _until(ws, type="status")["status"] == "running"
        ws.send(json.dumps({"type": "exec", "id": "term-1", **ref, "command": "bash", "tty": True}))
        ws.send(json.dumps({"type": "stdin", "id": "term-1", "data": "X=kept; echo marker-$((6*7))\r"}))
        _terminal_says(ws, "term-1", "marker-42")
        # Output written while its replica is gone and nobody relays it: replayed through the other one.
        ws.send(json.dumps({"type": "stdin", "id": "term-1", "data": "sleep 3; echo missed-$X\r"}))

        # The replica this websocket reached (the other has none open), stopped the way `docker-compose stop` does.
        counts = {service: deployment.websockets_of(service) for service in ("backend-a", "backend-b")}
        assert sorted(counts.values()) == [0, 1], counts
        gone = next(service for service, count in counts.items() if count == 1)
        other = "backend-b" if gone == "backend-a" else "backend-a"
        deployment.compose("stop", gone)
        with pytest.raises(ConnectionClosed):
            while True:
                ws.recv(timeout=60)

    # Everything through the balancer now reaches the other replica, and every call succeeds.
    for _ in range(6):
        assert deployment.post("status", ref)["data"]["running"] is True
    assert deployment.post("exec", {**ref, "command": "cat notes.txt"})["output"] == "kept across replicas"
    assert httpx.get(f"{deployment.url}/", timeout=30).status_code == 200

    with _ws(deployment) as ws:
        assert deployment.websockets_of(other) == 1
        ws.send(json.dumps({"type": "subscribe", **ref}))
        _until(ws, type="subscribed")
        assert _until(ws, type="status")["status"] == "running"
        # The old terminal is held in the workspace, not in the stopped replica: found here, the same shell, with
        # what it wrote meanwhile.
        ws.send(json.dumps({"type": "attach", "id": "term-1", "since": 0}))
        answer = _until(ws, id="term-1")
        assert answer["type"] == "attached" and answer["running"] is True, answer
        _terminal_says(ws, "term-1", "missed-kept")
        ws.send(json.dumps({"type": "stdin", "id": "term-1", "data": "echo still-$X\r"}))
        _terminal_says(ws, "term-1", "still-kept")
        ws.send(json.dumps({"type": "exec", "id": "term-2", **ref, "command": "bash", "tty": True}))
        ws.send(json.dumps({"type": "stdin", "id": "term-2", "data": "cat notes.txt; echo; echo again-$((6*7))\r"}))
        _terminal_says(ws, "term-2", "again-42")

        # The stopped replica comes back and serves; a stop made through either reaches this subscriber as events.
        deployment.compose("start", gone)
        deployment.wait_healthy(gone)
        time.sleep(2)  # the balancer's check (every second, up after one success) puts it back in rotation
        for _ in range(6):
            assert deployment.post("status", ref)["data"]["running"] is True
        assert deployment.websockets_of(gone) == 0  # nothing moved back: no sticky sessions, nothing to move
        deployment.post("stop", ref)
        _until(ws, type="status", status="exited")
    assert deployment.post("start", ref)["data"]["running"] is True
    assert deployment.post("exec", {**ref, "command": "cat notes.txt"})["output"] == "kept across replicas"


@pytest.mark.browser
def test_the_demo_page_through_the_balancer_in_chromium(deployment: Deployment, browser: Browser) -> None:
    ref = {"projectId": "deploy", "workspaceId": "page"}
    deployment.post("start", {**ref, "files": {"hello.txt": "from the page"}})
    context = new_context(browser)
    try:
        page = context.new_page()
        page.goto(f"{deployment.url}/?token={TOKEN}")
        page.fill("#project-id", ref["projectId"])
        page.fill("#workspace-id", ref["workspaceId"])
        page.press("#workspace-id", "Enter")
        expect(page.locator("#conn")).to_have_attribute("data-state", "open")
        expect(page.locator("#status-badge")).to_have_text("running", timeout=60_000)
        expect(page.locator("#terminal-state")).to_have_text("bash", timeout=30_000)
        page.click("#terminal .xterm-screen")
        page.keyboard.type("cat hello.txt; echo; echo page-$((6*7))")
        page.keyboard.press("Enter")
        page.wait_for_function(
            "() => window.ide.terminalScreen.some((row) => row.trimEnd() === 'page-42')", timeout=30_000
        )
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "page-through-balancer.png"), animations="disabled")
    finally:
        context.close()
