"""The Docker engine restarted under a running backend. Marked `engine_restart`, which conftest runs after every
other test: it stops every container on the engine.

Requests while the engine is down fail fast with a clear 503; afterwards the same backend process serves again,
statuses are right (the workspace the engine stopped says `engine_restarted` in /status), and its
engine event stream is followed again (a container killed behind its back is reported).
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from .harness import DOCKER, ROOT, docker, remove_instance
from .helpers import Channel, post, start_server

pytestmark = [pytest.mark.docker, pytest.mark.engine_restart]


def _engine_up() -> bool:
    return subprocess.run([DOCKER, "info"], capture_output=True, check=False, timeout=30).returncode == 0


def _stop_engine() -> None:
    """SIGTERM dockerd and wait until its process is gone (its API closes well before it has stopped containers)."""
    subprocess.run(["pkill", "-TERM", "-x", "dockerd"], check=False)
    deadline = time.monotonic() + 90
    while _engine_up() or subprocess.run(["pgrep", "-x", "dockerd"], capture_output=True).returncode == 0:
        assert time.monotonic() < deadline, "dockerd did not stop"
        time.sleep(0.3)


def test_engine_restart_under_a_running_backend(tmp_path: Path) -> None:
    srv = start_server(tmp_path, IDE_DOCKER_TIMEOUT="5")
    ref = {"projectId": "engine", "workspaceId": "restart"}
    try:
        assert post(srv, "start", {**ref, "files": {"kept.txt": "kept"}}).status_code == 200
        watcher = Channel(srv)
        watcher.send(type="subscribe", **ref)
        watcher.wait_for(type="status", source="snapshot")
        in_flight: list[httpx.Response] = []
        thread = threading.Thread(target=lambda: in_flight.append(post(srv, "exec", {**ref, "command": "sleep 60"})))
        thread.start()
        time.sleep(1.0)
        try:
            _stop_engine()
            thread.join(timeout=30)
            assert in_flight and in_flight[0].status_code in (409, 503), in_flight and in_flight[0].text
            down = post(srv, "status", ref)
            assert down.status_code == 503 and "dockerd" in down.json()["message"]
        finally:
            subprocess.run([str(ROOT / "scripts" / "docker-engine.sh")], check=True, timeout=120)
        status = post(srv, "status", ref)
        assert status.status_code == 200 and status.json()["data"]["running"] is False
        # The subscriber is told it died: as the engine stopped it (when its API was still up), or once the engine
        # answers again (when it was not). Either way /status says why, once the engine is back.
        try:
            stopped = watcher.wait_for(type="status", status="died", timeout=30)
            assert stopped["reason"] in ("died", "engine_restarted") and stopped["source"] == "docker"
        finally:
            watcher.close()
        deadline = time.monotonic() + 30
        while post(srv, "status", ref).json()["data"]["stopReason"] != "engine_restarted":
            assert time.monotonic() < deadline, post(srv, "status", ref).json()["data"]
            time.sleep(0.3)
        again = post(srv, "start", ref)
        assert again.status_code == 200 and again.json()["data"]["running"] is True
        assert post(srv, "status", ref).json()["data"]["stopReason"] is None  # a start ends the last stop's reason
        assert post(srv, "exec", {**ref, "command": "cat kept.txt"}).json()["output"] == "kept"
        channel = Channel(srv)
        try:
            channel.send(type="subscribe", **ref)
            channel.wait_for(type="status", source="snapshot")
            docker("kill", again.json()["data"]["id"])
            # Reported once the event stream is followed again (back-off at most 5 s; it resumes from its last event).
            assert channel.wait_for(type="status", status="died", timeout=20)["source"] == "docker"
        finally:
            channel.close()
    finally:
        srv.stop()
        remove_instance(srv.instance)
