"""Webhooks against a real receiver on 127.0.0.1: every lifecycle event of a workspace (started, stopped, died,
oom, idle-stopped, deleted) arrives once, in order, signed so the receiver can check it; a receiver that is down for
a while gets them all once it is back, and the API answers as usual meanwhile."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from .harness import Server, docker, free_port, remove_instance
from .helpers import post, start_server

pytestmark = pytest.mark.docker

SECRET = "webhook-secret-for-tests"


class Receiver:
    """A real HTTP server that keeps every request it accepts; `failing` answers 503 to each (a broken receiver)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.events: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.bodies: list[bytes] = []
        self.failing = 0
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if receiver.failing:
                    receiver.failing -= 1
                    self.send_response(503)
                else:
                    receiver.bodies.append(body)
                    receiver.headers.append(dict(self.headers.items()))
                    receiver.events.append(json.loads(body))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def wait_for(self, kind: str, workspace: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.events:
                if event["type"] == kind and event["workspaceId"] == workspace:
                    return event
            time.sleep(0.05)
        raise AssertionError(f"no {kind} for {workspace} within {timeout} s; got {self.events}")

    def of(self, workspace: str) -> list[str]:
        return [e["type"] for e in self.events if e["workspaceId"] == workspace]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver(free_port())
    found.start()
    yield found
    found.stop()


@pytest.fixture
def hooked(tmp_path: Path, receiver: Receiver, docker_engine: None) -> Iterator[Server]:
    server = start_server(
        tmp_path,
        IDE_WEBHOOK_URL=receiver.url,
        IDE_WEBHOOK_SECRET=SECRET,
        IDE_IDLE_TIMEOUT="3",
        IDE_IDLE_SWEEP="0.3",
        IDE_MEMORY_LIMIT_MB="64",
    )
    yield server
    server.stop()
    remove_instance(server.instance)


def test_each_lifecycle_event_arrives_once_in_order_and_signed(hooked: Server, receiver: Receiver) -> None:
    ref = {"projectId": "hooks", "workspaceId": "w" + uuid.uuid4().hex[:6]}
    workspace = ref["workspaceId"]
    assert post(hooked, "start", ref).status_code == 200
    receiver.wait_for("workspace.started", workspace)
    assert post(hooked, "stop", ref).status_code == 200
    stopped = receiver.wait_for("workspace.stopped", workspace)
    assert stopped["reason"] == "requested" and stopped["projectId"] == "hooks"
    started = post(hooked, "start", ref).json()["data"]
    post(hooked, "start", ref)  # already running: nothing new to tell
    docker("kill", started["id"])
    died = receiver.wait_for("workspace.died", workspace)
    assert died["reason"] == "died" and died["exitCode"] == 137
    post(hooked, "start", ref)
    post(hooked, "exec", {**ref, "command": "sleep 1"})  # a use: the idle clock starts again after it
    idle = receiver.wait_for("workspace.idle_stopped", workspace, timeout=30)
    assert idle["reason"] == "idle"
    post(hooked, "start", ref)
    hog = post(hooked, "exec", {**ref, "command": "head -c 300m /dev/zero | tail > /dev/null; echo survived"})
    assert hog.status_code in (200, 409), hog.text
    receiver.wait_for("workspace.oom", workspace)
    assert receiver.wait_for("workspace.died", workspace)  # the first death's event, or the OOM kill's
    assert post(hooked, "delete", ref).status_code == 200
    receiver.wait_for("workspace.deleted", workspace)
    time.sleep(1.0)  # anything sent twice would have arrived by now
    kinds = receiver.of(workspace)
    assert kinds[:6] == [
        "workspace.started",
        "workspace.stopped",
        "workspace.started",
        "workspace.died",
        "workspace.started",
        "workspace.idle_stopped",
    ], kinds
    assert kinds[-1] == "workspace.deleted" and kinds.count("workspace.deleted") == 1, kinds
    assert "workspace.oom" in kinds[6:], kinds
    assert len({e["id"] for e in receiver.events}) == len(receiver.events)
    for headers, body, event in zip(receiver.headers, receiver.bodies, receiver.events, strict=True):
        signed = hmac.new(SECRET.encode(), headers["X-IDE-Timestamp"].encode() + b"." + body, hashlib.sha256)
        assert hmac.compare_digest(headers["X-IDE-Signature"], "sha256=" + signed.hexdigest())
        assert headers["X-IDE-Event"] == event["type"] and headers["X-IDE-Delivery"] == event["id"]


def test_a_receiver_down_for_a_while_gets_every_event_once_it_is_back(hooked: Server, receiver: Receiver) -> None:
    receiver.stop()  # nothing listens on its port now
    ref = {"projectId": "hooks", "workspaceId": "down" + uuid.uuid4().hex[:6]}
    for _ in range(2):
        assert post(hooked, "start", ref).status_code == 200
        assert post(hooked, "stop", ref).status_code == 200
    time.sleep(2.0)  # a few failed attempts
    receiver.failing = 2  # back, but broken for two more attempts
    receiver.start()
    receiver.wait_for("workspace.stopped", ref["workspaceId"], timeout=90)
    deadline = time.monotonic() + 90
    while len(receiver.of(ref["workspaceId"])) < 4 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert receiver.of(ref["workspaceId"]) == ["workspace.started", "workspace.stopped"] * 2
    with hooked.client() as client:
        stats = client.get("/api/v1/stats").json()
    assert stats["webhooks"]["waiting"] == 0 and stats["webhooks"]["dropped"] == 0
    post(hooked, "delete", ref)
