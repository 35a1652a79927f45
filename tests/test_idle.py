"""Idle stop that explains itself, on a real server with a short idle timeout: what keeps a workspace running is
named in /status, a workspace nobody uses stops with `reason: "idle"`, and every stop says why."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from .harness import Server, docker, remove_instance
from .helpers import Channel, new_process_id, post, start_server

pytestmark = pytest.mark.docker

IDLE = 3.0


@pytest.fixture(scope="module")
def idle_server(tmp_path_factory: pytest.TempPathFactory, docker_engine: None) -> Iterator[Server]:
    srv = start_server(
        tmp_path_factory.mktemp("idle"),
        IDE_IDLE_TIMEOUT=str(IDLE),
        IDE_IDLE_SWEEP="0.3",
        IDE_PROCESS_DETACHED_TTL="120",
    )
    try:
        yield srv
    finally:
        srv.stop()
        remove_instance(srv.instance)


@pytest.fixture
def ref() -> dict[str, str]:
    return {"projectId": "idle", "workspaceId": "w" + uuid.uuid4().hex[:6]}


def status(server: Server, ref: dict[str, str]) -> dict[str, Any]:
    data: dict[str, Any] = post(server, "status", ref).json()["data"]
    return data


def wait_stopped(server: Server, ref: dict[str, str], within: float) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        data = status(server, ref)
        if not data["running"]:
            return data
        time.sleep(0.2)
    pytest.fail(f"{ref} still runs after {within} s: {status(server, ref)}")


def test_an_unused_workspace_stops_as_idle_and_says_so(idle_server: Server, ref: dict[str, str]) -> None:
    assert post(idle_server, "start", ref).status_code == 200
    data = status(idle_server, ref)
    assert data["keptAliveBy"] == []
    stop_at = datetime.fromisoformat(data["idleStopAt"]).timestamp()
    assert 0 < stop_at - time.time() <= IDLE + 1
    watcher = Channel(idle_server)
    try:
        watcher.send(type="subscribe", **ref)
        watcher.wait_for(type="subscribed")
        exited = watcher.wait_for(type="status", status="exited", timeout=IDLE + 10)
        assert exited["reason"] == "idle"
    finally:
        watcher.close()
    stopped = status(idle_server, ref)
    assert stopped["running"] is False and stopped["stopReason"] == "idle" and stopped["idleStopAt"] is None


def test_running_and_attached_processes_keep_it_and_a_finished_one_does_not(
    idle_server: Server, ref: dict[str, str]
) -> None:
    assert post(idle_server, "start", ref).status_code == 200
    channel = Channel(idle_server)
    build, terminal, quick = new_process_id(), new_process_id(), new_process_id()
    try:
        channel.send(type="exec", id=build, command="sleep 60", **ref)
        channel.send(type="exec", id=terminal, command="cat", tty=True, **ref)
        channel.send(type="exec", id=quick, command="echo done", **ref)
        channel.process(quick)
        channel.wait_for(type="started", id=terminal)
        channel.send(type="detach", id=build)  # a build nobody watches
        time.sleep(0.5)
        kept = status(idle_server, ref)["keptAliveBy"]
        assert sorted(kept) == sorted([f"process {build} running", f"terminal {terminal} attached"])
        assert status(idle_server, ref)["idleStopAt"] is None
        time.sleep(IDLE + 1.5)
        assert status(idle_server, ref)["running"] is True  # kept alive all along
        channel.send(type="attach", id=build, since=0)
        for process_id in (build, terminal):
            channel.send(type="signal", id=process_id, signal="SIGKILL")
            channel.wait_for(type="exit", id=process_id)
    finally:
        channel.close()
    assert wait_stopped(idle_server, ref, IDLE + 10)["stopReason"] == "idle"


def test_every_stop_says_why(server: Server, ref: dict[str, str]) -> None:
    assert post(server, "start", ref).status_code == 200
    running = status(server, ref)
    assert running["stopReason"] is None and running["idleStopAt"] is not None  # the default timeout: 30 minutes
    assert post(server, "stop", ref).status_code == 200
    time.sleep(0.5)
    assert status(server, ref)["stopReason"] == "requested"
    assert post(server, "start", ref).status_code == 200
    assert status(server, ref)["stopReason"] is None
    docker("kill", running["name"])
    deadline = time.monotonic() + 10
    while status(server, ref)["stopReason"] != "died":
        assert time.monotonic() < deadline, status(server, ref)
        time.sleep(0.2)
    docker("rm", "-f", running["name"])
    deadline = time.monotonic() + 10
    while status(server, ref)["stopReason"] != "removed_outside":
        assert time.monotonic() < deadline, status(server, ref)
        time.sleep(0.2)


def test_no_idle_stop_with_a_zero_timeout(tmp_path: Path, docker_engine: None, ref: dict[str, str]) -> None:
    srv = start_server(tmp_path, IDE_IDLE_TIMEOUT="0", IDE_IDLE_SWEEP="0.2")
    try:
        assert post(srv, "start", ref).status_code == 200
        assert status(srv, ref)["idleStopAt"] is None
        time.sleep(1.5)
        assert status(srv, ref)["running"] is True
    finally:
        srv.stop()
        remove_instance(srv.instance)
