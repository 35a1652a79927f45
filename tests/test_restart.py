"""The backend restarted, on SQLite and on PostgreSQL: workspaces, passwords and files are all still there."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from .harness import docker, free_port, remove_instance
from .helpers import post, start_server

PG_URL = os.environ.get("IDE_TEST_POSTGRES_URL", "")


@pytest.mark.docker
@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_state_survives_a_backend_restart(tmp_path: Path, backend: str) -> None:
    env = {}
    if backend == "postgresql":
        if not PG_URL:
            pytest.skip("IDE_TEST_POSTGRES_URL is not set (scripts/test.sh sets it up when run as root)")
        env["IDE_DATABASE_URL"] = PG_URL
    ref = {"projectId": "restart", "workspaceId": backend}
    first = start_server(tmp_path, **env)
    try:
        started = post(first, "start", {**ref, "files": {"kept.txt": "kept"}}).json()["data"]
        password = post(first, "status", ref).json()["data"]["password"]
        first.stop()
        second = start_server(tmp_path, instance=first.instance, **env)
        try:
            status = post(second, "status", ref).json()["data"]
            assert status["id"] == started["id"] and status["password"] == password
            out = post(second, "exec", {**ref, "command": "cat kept.txt"}).json()
            assert out["output"] == "kept"
        finally:
            second.stop()
    finally:
        first.stop()
        remove_instance(first.instance)


@pytest.mark.docker
def test_a_container_from_an_earlier_run_is_adopted_not_duplicated(tmp_path: Path) -> None:
    """The database is lost but Docker still has the container: start finds it by name and labels."""
    ref = {"projectId": "adopt", "workspaceId": "me"}
    first = start_server(tmp_path / "a")
    try:
        started = post(first, "start", {**ref, "files": {"mine.txt": "mine"}}).json()["data"]
        password = post(first, "status", ref).json()["data"]["password"]
        first.stop()
        second = start_server(tmp_path / "b", instance=first.instance)  # a fresh, empty SQLite file
        try:
            assert post(second, "status", ref).status_code == 404
            again = post(second, "start", ref).json()["data"]
            assert again["id"] == started["id"]
            assert post(second, "status", ref).json()["data"]["password"] == password
            assert post(second, "exec", {**ref, "command": "cat mine.txt"}).json()["output"] == "mine"
            label = f"label=ide-backend.instance={first.instance}"
            assert len(docker("ps", "-aq", "--filter", label).stdout.split()) == 1
        finally:
            second.stop()
    finally:
        first.stop()
        remove_instance(first.instance)


def test_serve_generates_and_prints_a_token_when_none_is_set(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "IDE_API_TOKEN"}
    env.update(IDE_DATA_DIR=str(tmp_path), IDE_PORT="0")
    port = free_port()
    log = tmp_path / "out.log"
    with log.open("wb") as handle:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ide_backend", "serve", "--port", str(port)], env=env, stdout=handle, stderr=handle
        )
    try:
        token = ""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not token:
            for line in log.read_text().splitlines():
                if "?token=" in line:
                    token = line.split("?token=", 1)[1].strip()
            time.sleep(0.1)
        assert len(token) >= 24
        url = f"http://127.0.0.1:{port}/api/v1/containers/status"
        for _ in range(100):
            try:
                response = httpx.post(
                    url, json={"projectId": "x", "workspaceId": "y"}, headers={"Authorization": f"Bearer {token}"}
                )
                break
            except httpx.ConnectError:
                time.sleep(0.1)
        assert response.status_code == 404  # authenticated; the workspace simply does not exist
        assert httpx.post(url, json={}, headers={"Authorization": "Bearer nope"}).status_code == 401
    finally:
        proc.terminate()
        proc.wait(timeout=15)
