"""Faults produced for real: the backend killed mid-start, shut down mid-request, racing syncs, a locked or full
database, a missing image. (The Docker engine restart lives in test_engine_restart.py: it runs last.)"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from .harness import Server, docker, leftovers, remove_instance
from .helpers import TOKEN, Call, Channel, post, run, start_server

pytestmark = pytest.mark.docker

HEADERS = {"Authorization": f"Bearer {TOKEN}"}


def _containers(instance: str) -> list[str]:
    return docker("ps", "-aq", "--filter", f"label=ide-backend.instance={instance}").stdout.split()


def _wait_for_log(server: Server, pattern: str, timeout: float = 60) -> re.Match[str]:
    """Until a line of the server's log matches `pattern`, read as the server writes it (every few milliseconds)."""
    deadline = time.monotonic() + timeout
    seen = ""
    with server.log_path.open(errors="replace") as log:
        while not (found := re.search(pattern, seen)):
            assert server.process.poll() is None, f"the server exited:\n{seen[-3000:]}"
            assert time.monotonic() < deadline, f"the server never logged {pattern!r}:\n{seen[-3000:]}"
            time.sleep(0.002)
            seen += log.read()
    return found


@pytest.mark.parametrize("existing", [False, True], ids=["new", "files-kept"])
def test_backend_killed_mid_start_then_restarted(tmp_path: Path, existing: bool) -> None:
    """SIGKILL between the container's creation and its start, at the log line the server writes in between
    (warm pool off, so /start creates). With `existing`, the workspace already has files and its container was
    removed behind the backend's back: the new container goes onto the old volume. A second backend on the same
    database then starts the workspace: one container, the one created before the kill, and the files intact."""
    ref = {"projectId": "killed", "workspaceId": "mid-start"}
    first = start_server(tmp_path, IDE_POOL_SIZE="0")
    try:
        if existing:
            old = post(first, "start", {**ref, "files": {"precious.txt": "do not lose me"}}).json()["data"]
            docker("rm", "-f", old["id"])  # the volume stays; the next /start creates a container on it
        outcome: list[httpx.Response | httpx.HTTPError] = []

        def start() -> None:
            try:
                outcome.append(post(first, "start", ref, timeout=60))
            except httpx.HTTPError as exc:  # the server is killed under this request: that is the point
                outcome.append(exc)

        thread = threading.Thread(target=start, daemon=True)
        thread.start()
        created = _wait_for_log(first, r"created container (\S+) for killed/mid-start")
        first.process.send_signal(signal.SIGKILL)
        first.process.wait()
        thread.join(timeout=30)
        assert len(outcome) == 1 and isinstance(outcome[0], httpx.TransportError), (
            f"/start answered before the kill landed: {outcome}"
        )
        second = start_server(tmp_path, instance=first.instance, IDE_POOL_SIZE="0")
        try:
            answer = post(second, "start", ref)
            assert answer.status_code == 200, answer.text
            data = answer.json()["data"]
            assert data["running"] is True and data["name"] == created[1]
            containers, volumes = leftovers(first.instance)
            # One container and one workspace volume (a bounded disk adds its home and /tmp volumes beside it).
            data_volume = f"{created[1]}-data"
            assert len(containers) == 1, containers
            assert set(volumes) <= {data_volume, f"{data_volume}-home", f"{data_volume}-tmp"}, volumes
            assert data_volume in volumes, volumes
            if existing:
                assert post(second, "exec", {**ref, "command": "cat precious.txt"}).json()["output"] == "do not lose me"
        finally:
            second.stop()
    finally:
        first.stop()
        remove_instance(first.instance)


def test_sigterm_lets_requests_in_flight_finish(tmp_path: Path) -> None:
    srv = start_server(tmp_path)
    ref = {"projectId": "graceful", "workspaceId": "w"}
    try:
        post(srv, "start", ref)
        answers: list[httpx.Response] = []
        thread = threading.Thread(
            target=lambda: answers.append(post(srv, "exec", {**ref, "command": "sleep 2; echo finished"}))
        )
        thread.start()
        time.sleep(0.7)
        srv.process.send_signal(signal.SIGTERM)
        thread.join(timeout=30)
        assert answers and answers[0].status_code == 200
        assert answers[0].json()["output"] == "finished\n"
        # uvicorn shuts down cleanly, then re-raises the signal so the exit status still says SIGTERM.
        assert srv.process.wait(timeout=30) in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in srv.log()
    finally:
        srv.stop()
        remove_instance(srv.instance)


def test_parallel_syncs_are_each_applied_whole(server: Server, api: Call, ref: dict[str, str]) -> None:
    api("start", ref)
    names = [f"tree/{d}/f{i}.txt" for d in range(5) for i in range(20)]

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, headers=HEADERS, timeout=120) as c:
            return await asyncio.gather(
                *(
                    c.post("/api/v1/containers/sync", json={**ref, "files": {n: f"version {v}" for n in names}})
                    for v in range(8)
                )
            )

    assert all(r.status_code == 200 for r in asyncio.run(burst()))
    contents = run(api, ref, "cat tree/*/*.txt | sort | uniq -c")["output"].split("\n")
    assert len([line for line in contents if line.strip()]) == 1, contents  # one version everywhere


def test_locked_database_is_a_clear_503_and_nothing_breaks(tmp_path: Path) -> None:
    srv = start_server(tmp_path)
    ref = {"projectId": "locked", "workspaceId": "db"}
    try:
        assert post(srv, "start", ref).status_code == 200
        holder = sqlite3.connect(tmp_path / "data" / "ide-backend.db", isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            blocked = post(srv, "start", {"projectId": "locked", "workspaceId": "second"})
            assert blocked.status_code == 503, blocked.text
            assert "database" in blocked.json()["message"] and "locked" in blocked.json()["message"]
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert post(srv, "start", {"projectId": "locked", "workspaceId": "second"}).status_code == 200
        with sqlite3.connect(tmp_path / "data" / "ide-backend.db") as check:
            assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            assert check.execute("SELECT count(*) FROM workspaces").fetchone() == (2,)
    finally:
        srv.stop()
        remove_instance(srv.instance)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_full_disk_is_a_clear_503_and_the_database_survives(tmp_path: Path) -> None:
    data = tmp_path / "small"
    data.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(data)], check=True)
    srv = None
    try:
        srv = start_server(tmp_path, IDE_DATA_DIR=str(data))
        assert post(srv, "start", {"projectId": "full", "workspaceId": "one"}).status_code == 200
        filler = data / "filler"
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True, check=False)
        refused = post(srv, "start", {"projectId": "full", "workspaceId": "two"})
        assert refused.status_code == 503, refused.text
        assert "full" in refused.json()["message"]
        filler.unlink()
        assert post(srv, "start", {"projectId": "full", "workspaceId": "two"}).status_code == 200
        status = post(srv, "status", {"projectId": "full", "workspaceId": "one"})
        assert status.status_code == 200 and status.json()["data"]["running"] is True
        with sqlite3.connect(data / "ide-backend.db") as check:
            assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        if srv is not None:
            srv.stop()
            remove_instance(srv.instance)
        subprocess.run(["umount", "--lazy", str(data)], check=False)


def test_missing_image_is_a_clear_503(tmp_path: Path) -> None:
    srv = start_server(tmp_path, IDE_WORKSPACE_IMAGE="ide-backend/not-built:never")
    try:
        answer = post(srv, "start", {"projectId": "no", "workspaceId": "image"})
        assert answer.status_code == 503
        assert "scripts/build-images.sh" in answer.json()["message"]
        assert _containers(srv.instance) == []
    finally:
        srv.stop()
        remove_instance(srv.instance)


def test_removed_behind_our_back_pushes_an_event(server: Server, api: Call, ref: dict[str, str]) -> None:
    started = api("start", ref).json()["data"]
    channel = Channel(server)
    try:
        channel.send(type="subscribe", **ref)
        channel.wait_for(type="status", source="snapshot")
        docker("rm", "-f", started["id"])
        assert channel.wait_for(type="status", status="removed", timeout=10)["source"] == "docker"
    finally:
        channel.close()
    assert api("status", ref).json()["data"]["status"] == "removed"
