"""/status (and /start of a running workspace) answer from an in-memory view of the containers kept exact by the
engine's event stream (ide_backend/service/states.py). Each way a container changes behind the backend's back must
show at once: `docker pause`, `docker kill`, `docker rm -f`, a break of the event stream (cut for real by a relay on
the engine's socket that the backend talks through), and a start and a stop through another backend process on the
same PostgreSQL database. (An engine restart is tests/test_engine_restart.py, which checks /status too.)

Each test first shows the view is in use (its hits grow), so none of them passes by asking the engine every time.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .harness import Server, docker, remove_instance
from .helpers import TOKEN, post, start_server

pytestmark = pytest.mark.docker

PG_URL = os.environ.get("IDE_TEST_POSTGRES_URL", "")
ENGINE_SOCKET = "/var/run/docker.sock"
SHORT = 5.0  # seconds an event of the engine may take to reach the backend on a busy machine


def _status(server: Server, ref: dict[str, str]) -> dict[str, Any]:
    answer = post(server, "status", ref)
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()["data"]
    return data


def _hits(server: Server) -> int:
    stats = httpx.get(f"{server.url}/api/v1/stats", headers={"Authorization": f"Bearer {TOKEN}"}).json()
    return int(stats["states"]["hits"])


def _answered_from_view(server: Server, ref: dict[str, str]) -> dict[str, Any]:
    """/status twice; the second must come from the view (its hits grow)."""
    _status(server, ref)
    before = _hits(server)
    data = _status(server, ref)
    assert _hits(server) > before, "the second /status asked the engine: the view is not in use"
    return data


def _until(server: Server, ref: dict[str, str], ok: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """/status until `ok` (within SHORT seconds), then 20 more that must all stay so: once the event has arrived,
    the view never goes back to what was true before."""
    deadline = time.monotonic() + SHORT
    while not ok(data := _status(server, ref)):
        assert time.monotonic() < deadline, f"/status still says {data['status']} (running={data['running']})"
        time.sleep(0.01)
    for _ in range(20):
        data = _status(server, ref)
        assert ok(data), data
    return data


@pytest.fixture
def server(tmp_path: Path, docker_engine: None) -> Iterator[Server]:
    srv = start_server(tmp_path)
    try:
        yield srv
    finally:
        srv.stop()
        remove_instance(srv.instance)


def test_pause_kill_and_removal_behind_the_backend_show_at_once(server: Server) -> None:
    ref = {"projectId": "view", "workspaceId": "w1"}
    started = post(server, "start", ref).json()["data"]
    name = started["name"]
    assert _answered_from_view(server, ref)["running"] is True

    docker("pause", name)
    # A paused container is what it was before the view: running, with status "paused" (and no ports read).
    paused = _until(server, ref, lambda d: d["status"] == "paused")
    assert paused["running"] is True and paused["listening"] == []
    docker("unpause", name)
    _until(server, ref, lambda d: d["status"] == "running")

    assert _answered_from_view(server, ref)["running"] is True
    docker("kill", name)
    killed = _until(server, ref, lambda d: d["running"] is False)
    assert killed["status"] == "exited" and killed["stopReason"] == "died"

    # /start of a stopped workspace, then of a running one (answered from the view), then /stop: each of our own
    # steps shows in the very next /status, without waiting for its event.
    assert post(server, "start", ref).json()["data"]["running"] is True
    assert _status(server, ref)["running"] is True
    before = _hits(server)
    again = post(server, "start", ref).json()
    assert again["data"]["running"] is True
    assert _hits(server) > before
    assert post(server, "stop", ref).json()["data"]["running"] is False
    assert _status(server, ref)["running"] is False
    assert post(server, "start", ref).json()["data"]["running"] is True

    assert _answered_from_view(server, ref)["running"] is True
    docker("rm", "-f", name)
    removed = _until(server, ref, lambda d: d["status"] == "removed")
    assert removed["running"] is False and removed["id"] is None


class EngineRelay:
    """A relay on a socket of its own to the engine's socket, for the backend to talk through: `cut_events()` closes
    the connections that carry the event stream and, until `resume_events()`, closes any new one as soon as it asks
    for events; everything else passes. A real break of the stream, without touching the engine."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(path))
        self._listener.listen(64)
        self._lock = threading.Lock()
        self._events: set[socket.socket] = set()
        self._blocked = False
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def cut_events(self) -> None:
        with self._lock:
            self._blocked = True
            cut, self._events = self._events, set()
        for conn in cut:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def resume_events(self) -> None:
        with self._lock:
            self._blocked = False

    def close(self) -> None:
        self._closed = True
        self.cut_events()
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(ENGINE_SOCKET)
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, requests: bool) -> None:
        try:
            while chunk := source.recv(65536):
                if requests and b"/events" in chunk.split(b"\r\n", 1)[0]:
                    with self._lock:
                        blocked = self._blocked
                        if not blocked:
                            self._events.add(source)
                    if blocked:
                        break
                target.sendall(chunk)
        except OSError:
            pass
        finally:
            for conn in (source, target):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
            source.close()  # the other direction's pump closes `target`, its own source


def test_a_break_of_the_event_stream_empties_the_view(tmp_path: Path, docker_engine: None) -> None:
    """While the stream is cut, a container killed behind the backend's back is not reported by any event: the view
    must not answer its last state (it answered `running` for good before the view forgot everything at a break)."""
    relay = EngineRelay(tmp_path / "engine.sock")
    srv = start_server(tmp_path / "srv", IDE_DOCKER_HOST=f"unix://{relay.path}")
    try:
        ref = {"projectId": "view", "workspaceId": "cut"}
        name = post(srv, "start", ref).json()["data"]["name"]
        assert _answered_from_view(srv, ref)["running"] is True

        seen = srv.log().count("engine events interrupted")
        relay.cut_events()
        deadline = time.monotonic() + SHORT
        while srv.log().count("engine events interrupted") == seen:
            assert time.monotonic() < deadline, "the backend did not notice the cut:\n" + srv.log_tail()
            time.sleep(0.01)
        docker("kill", name)  # no event reaches the backend now
        cut = _status(srv, ref)
        assert cut["running"] is False and cut["status"] == "exited", cut

        relay.resume_events()
        assert post(srv, "start", ref).json()["data"]["running"] is True
        deadline = time.monotonic() + 30  # the backend follows again after its back-off (at most 5 s)
        while True:  # the view fills again once the stream is back
            before = _hits(srv)
            data = _status(srv, ref)
            if _hits(srv) > before:
                break
            assert time.monotonic() < deadline, "the view was never used again after the stream came back"
            time.sleep(0.2)
        assert data["running"] is True
    finally:
        srv.stop()
        relay.close()
        remove_instance(srv.instance)


@pytest.mark.postgres
def test_a_start_and_a_stop_through_another_process_show_at_once(tmp_path: Path, docker_engine: None) -> None:
    if not PG_URL:
        pytest.skip("IDE_TEST_POSTGRES_URL is not set (scripts/test.sh sets it up when run as root)")
    env = {"IDE_DATABASE_URL": PG_URL, "IDE_TOKEN_SECRET": "view-secret-" + os.urandom(24).hex()}
    first = start_server(tmp_path / "a", **env)
    second = None
    try:
        second = start_server(tmp_path / "b", instance=first.instance, **env)
        ref = {"projectId": "view", "workspaceId": os.urandom(4).hex()}
        assert post(first, "start", ref).json()["data"]["running"] is True
        assert _answered_from_view(first, ref)["running"] is True

        assert post(second, "stop", ref).json()["data"]["running"] is False
        stopped = _until(first, ref, lambda d: d["running"] is False)
        assert stopped["stopReason"] == "requested"

        assert _answered_from_view(first, ref)["running"] is False
        assert post(second, "start", ref).json()["data"]["running"] is True
        started = _until(first, ref, lambda d: d["running"] is True)
        assert started["stopReason"] is None
    finally:
        for srv in (first, second):
            if srv is not None:
                srv.stop()
        remove_instance(first.instance)
