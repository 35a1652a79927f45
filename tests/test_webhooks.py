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


def _hooks(server: Server, endpoint: str, body: dict[str, Any], token: str | None = None) -> Any:
    with server.client(token) as client:
        return client.post(f"/api/v1/webhooks/{endpoint}", json=body)


@pytest.fixture
def steady(tmp_path: Path, receiver: Receiver, docker_engine: None) -> Iterator[Server]:
    """Like `hooked`, without its short idle stop (which would stop workspaces in the middle of a test)."""
    server = start_server(tmp_path, IDE_WEBHOOK_URL=receiver.url, IDE_WEBHOOK_SECRET=SECRET, IDE_IDLE_TIMEOUT="0")
    yield server
    server.stop()
    remove_instance(server.instance)


@pytest.fixture
def second_receiver() -> Iterator[Receiver]:
    found = Receiver(free_port())
    found.start()
    yield found
    found.stop()


def test_a_projects_own_webhook_gets_its_events_signed_with_its_own_secret(
    steady: Server, receiver: Receiver, second_receiver: Receiver
) -> None:
    hooked = steady
    project = "own" + uuid.uuid4().hex[:6]
    mine = {"projectId": project, "workspaceId": "w1"}
    other = {"projectId": "hooks", "workspaceId": "x" + uuid.uuid4().hex[:6]}
    answer = _hooks(hooked, "set", {"projectId": project, "url": second_receiver.url})
    assert answer.status_code == 200, answer.text
    secret = answer.json()["secret"]
    assert len(secret) >= 32 and secret != SECRET
    read = _hooks(hooked, "get", {"projectId": project}).json()
    assert read["url"] == second_receiver.url and read.get("secret") is None
    for ref in (mine, other):
        assert post(hooked, "start", ref).status_code == 200
    second_receiver.wait_for("workspace.started", "w1")
    receiver.wait_for("workspace.started", "w1")  # the operator's URL still gets every event
    receiver.wait_for("workspace.started", other["workspaceId"])
    time.sleep(0.5)
    assert {e["projectId"] for e in second_receiver.events} == {project}
    for headers, body in zip(second_receiver.headers, second_receiver.bodies, strict=True):
        signed = hmac.new(secret.encode(), headers["X-IDE-Timestamp"].encode() + b"." + body, hashlib.sha256)
        assert hmac.compare_digest(headers["X-IDE-Signature"], "sha256=" + signed.hexdigest())

    # Its own receiver down does not hold up the operator's: the stop reaches the one that answers.
    second_receiver.stop()
    assert post(hooked, "stop", mine).status_code == 200
    receiver.wait_for("workspace.stopped", "w1")
    second_receiver.start()
    second_receiver.wait_for("workspace.stopped", "w1", timeout=90)

    # Removed: nothing more goes there; removing again says there was none.
    removed = _hooks(hooked, "set", {"projectId": project, "url": None})
    assert removed.status_code == 200 and removed.json()["url"] is None
    assert "nothing to remove" in _hooks(hooked, "set", {"projectId": project, "url": None}).json()["message"]
    assert _hooks(hooked, "get", {"projectId": project}).json()["url"] is None
    told = len(second_receiver.events)
    assert post(hooked, "start", mine).status_code == 200
    receiver.wait_for("workspace.started", "w1")
    deadline = time.monotonic() + 10
    while receiver.of("w1").count("workspace.started") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    assert len(second_receiver.events) == told
    for ref in (mine, other):
        post(hooked, "delete", ref)


def test_a_projects_webhook_is_kept_in_the_store_and_a_given_secret_is_used(
    tmp_path: Path, second_receiver: Receiver, docker_engine: None
) -> None:
    server = start_server(tmp_path)  # no operator URL at all
    ref = {"projectId": "kept", "workspaceId": "w" + uuid.uuid4().hex[:6]}
    given = "a-secret-of-the-project-0123456789"
    try:
        answer = _hooks(server, "set", {"projectId": "kept", "url": second_receiver.url, "secret": given})
        assert answer.status_code == 200 and answer.json()["secret"] == given
        server.stop()
        server = start_server(tmp_path, instance=server.instance)
        assert post(server, "start", ref).status_code == 200
        second_receiver.wait_for("workspace.started", ref["workspaceId"])
        headers, body = second_receiver.headers[-1], second_receiver.bodies[-1]
        signed = hmac.new(given.encode(), headers["X-IDE-Timestamp"].encode() + b"." + body, hashlib.sha256)
        assert hmac.compare_digest(headers["X-IDE-Signature"], "sha256=" + signed.hexdigest())
        with server.client() as client:
            assert client.get("/api/v1/stats").json()["webhooks"]["delivered"] >= 1
        post(server, "delete", ref)
    finally:
        server.stop()
        remove_instance(server.instance)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"projectId": "refused", "url": "ftp://example.invalid/x"}, "url"),
        ({"projectId": "refused", "url": "http:// spaces"}, "url"),
        ({"projectId": "refused"}, "url"),
        ({"projectId": "refused", "url": "http://127.0.0.1:9/x", "secret": "short"}, "secret"),
        ({"projectId": "bad id", "url": "http://127.0.0.1:9/x"}, "projectId"),
    ],
)
def test_bad_webhook_settings_are_refused_and_change_nothing(
    server_without_engine: Server, body: dict[str, Any], field: str
) -> None:
    answer = _hooks(server_without_engine, "set", body)
    assert answer.status_code == 422, answer.text
    assert field in answer.json()["fields"]
    if body["projectId"] == "refused":
        assert _hooks(server_without_engine, "get", {"projectId": "refused"}).json()["url"] is None


def test_only_the_operator_chooses_where_the_server_posts(server_without_engine: Server) -> None:
    with server_without_engine.client() as client:
        minted = client.post("/api/v1/tokens", json={"projectId": "tenant"}).json()["token"]
    body = {"projectId": "tenant", "url": "http://127.0.0.1:9/x"}
    refused = _hooks(server_without_engine, "set", body, token=minted)
    assert refused.status_code == 403, refused.text
    assert _hooks(server_without_engine, "get", {"projectId": "tenant"}, token=minted).status_code == 403
    assert _hooks(server_without_engine, "get", {"projectId": "tenant"}).json()["url"] is None
