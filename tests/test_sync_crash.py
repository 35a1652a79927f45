"""All or nothing, even through a crash: the backend is SIGKILLed at several points of large syncs (the staged archive
path), small ones (the container's own writer) and `clean` syncs, then started again; every file of the set is old
or every one is new, never a mix, and no staging folder or temporary file is left in the workspace. Small sets are
also cut inside the container's writer, slowed down by a test-only pause: the backend killed (with or without the
writer process) and the whole container killed, then started again."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import tarfile
import threading
import time
from pathlib import Path

import httpx
import pytest

from .harness import Server, remove_instance
from .helpers import post, start_server

pytestmark = pytest.mark.docker

COUNT_LARGE, SIZE_LARGE = 1500, 8000  # ~12 MB: through the archive upload, long enough to be cut at many points
COUNT_SMALL = 40


def files(version: str, count: int, size: int) -> dict[str, str]:
    body = "x" * max(0, size - 8)
    return {f"set/d{i % 15}/f{i}.txt": f"{version}:{body}" for i in range(count)}


def _post_quietly(server: Server, body: dict[str, object]) -> None:
    try:
        post(server, "sync", body, timeout=120)
    except httpx.HTTPError:
        pass  # the backend was killed under the call


def census(server: Server, ref: dict[str, str]) -> tuple[dict[str, int], str]:
    """How many files of the set hold each version, and whatever a write might have left behind."""
    listed = post(
        server, "files/list", {**ref, "path": "set", "depth": 2, "limit": 10000}
    )  # finishes a crash's leftovers
    assert listed.status_code in (200, 404), listed.text
    answer = post(
        server,
        "exec",
        {
            **ref,
            "command": "for v in v0 v1 v2 v3 v4 v5 v6 v7 v8; do printf '%s ' $v; "
            'grep -l "^$v:" set/*/*.txt 2>/dev/null | wc -l; done; '
            "find /workspace /home/coder -name '.ide-staging' -o -name '.ide-write.*' -o -name '*.part'",
        },
    ).json()
    counts = {}
    debris = []
    for line in answer["output"].splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].startswith("v") and parts[1].isdigit():
            if int(parts[1]):
                counts[parts[0]] = int(parts[1])
        elif line.strip():
            debris.append(line)
    return counts, "\n".join(debris)


@pytest.mark.parametrize(
    ("kind", "count", "size", "delays"),
    [
        ("large", COUNT_LARGE, SIZE_LARGE, [0.0, 0.08, 0.2, 0.35, 0.6, 1.0, 1.6, 6.0]),
        ("small", COUNT_SMALL, 100, [0.0, 0.01, 0.03, 0.08, 2.0]),
        ("clean", COUNT_LARGE, SIZE_LARGE, [0.1, 0.4, 0.9, 6.0]),
    ],
)
def test_a_sync_cut_by_a_crash_leaves_the_old_set_or_the_new_one(
    tmp_path: Path, docker_engine: None, kind: str, count: int, size: int, delays: list[float]
) -> None:
    data = tmp_path / "data"
    server = start_server(tmp_path / "0", IDE_DATA_DIR=str(data))
    instance = server.instance
    ref = {"projectId": "crash", "workspaceId": kind}
    seen: set[str] = set()
    try:
        first = post(server, "start", {**ref, "files": files("v0", count, size)}, timeout=300)
        assert first.status_code == 200, first.text
        for round_, delay in enumerate(delays, start=1):
            version = f"v{round_}"
            body: dict[str, object] = {**ref, "files": files(version, count, size), "clean": kind == "clean"}
            call = threading.Thread(target=_post_quietly, args=(server, body))
            call.start()
            time.sleep(delay)
            os.kill(server.pid, signal.SIGKILL)
            server.process.wait(timeout=30)
            call.join(timeout=60)
            server = start_server(tmp_path / str(round_), instance=instance, IDE_DATA_DIR=str(data))
            counts, debris = census(server, ref)
            assert len(counts) == 1 and sum(counts.values()) == count, (delay, counts)
            assert not debris, (delay, debris)
            seen |= set(counts)
    finally:
        server.stop()
        remove_instance(instance)
    # The cuts fell both before and after the commit at least once (the last one long after the call ended).
    assert len(seen) >= 2, seen


PAUSE = 0.1  # seconds ide-write pauses per staged file and per move (IDE_WRITER_PAUSE: a test-only setting)
COUNT_WRITER = 20  # in 15 folders that exist after the first round: 20 files staged, then 20 moves into place


def _docker(*argv: str) -> str:
    done = subprocess.run(["docker", *argv], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _kill_writer(container: str) -> None:
    """SIGKILL the ide-write process(es) in the container by pid, as if the agent's child had died with the
    backend."""
    pids = subprocess.run(
        ["docker", "exec", container, "pgrep", "-f", "/usr/local/bin/ide-write"], capture_output=True, text=True
    ).stdout.split()
    for pid in pids:
        subprocess.run(["docker", "exec", container, "kill", "-KILL", pid], capture_output=True)


def _staged(container: str) -> set[str]:
    """What a cut left in the workspace's staging folder, read with `docker cp` (which works on a stopped container
    too): "part" for an undecided set, "committed" for a decided one not all in place (empty: nothing)."""
    done = subprocess.run(["docker", "cp", f"{container}:/workspace/.ide-staging", "-"], capture_output=True)
    if done.returncode != 0:
        return set()
    names = {m.name.split("/")[1] for m in tarfile.open(fileobj=io.BytesIO(done.stdout)) if m.name.count("/") >= 1}
    return {"part" if name.endswith(".part") else "committed" for name in names}


@pytest.mark.parametrize(
    ("how", "delays"),
    [
        # The backend alone: the agent runs the writer to its end, and the restarted backend waits for it (the
        # writer holds the base's lock) before it looks for anything to finish.
        ("backend", [0.05, 0.8, 2.6, 3.4]),
        # The backend and the writer (the agent's child killed with it): before, while staging, while moving.
        ("backend+writer", [0.05, 0.8, 1.6, 2.6, 3.0, 3.4, 6.0]),
        # The container killed under a live backend, then started again through the API.
        ("container", [0.8, 2.6, 3.2, 6.0]),
    ],
)
def test_a_writer_set_cut_by_a_crash_leaves_the_old_set_or_the_new_one(
    tmp_path: Path, docker_engine: None, how: str, delays: list[float]
) -> None:
    """Small sets through the container's own writer (images/workspace/ide-write), made slow by the test-only pause
    (the production writer has none), cut at points before it stages, while it stages, while it moves the committed
    set into place and after it: every file of the set is old or every one is new, and nothing is left behind."""
    data = tmp_path / "data"
    pause = {"IDE_WRITER_PAUSE": str(PAUSE), "IDE_DATA_DIR": str(data)}
    server = start_server(tmp_path / "0", **pause)
    instance = server.instance
    ref = {"projectId": "crash", "workspaceId": how.replace("+", "-")}
    seen: set[str] = set()
    cuts: set[str] = set()  # what the cuts left to the next call: undecided sets, decided ones
    try:
        first = post(server, "start", {**ref, "files": files("v0", COUNT_WRITER, 100)}, timeout=300)
        assert first.status_code == 200, first.text
        container = first.json()["data"]["name"]
        with server.client() as c:
            assert c.get("/api/v1/stats").json()["writes"]["writer"] >= 1  # sets this small take the writer
        for round_, delay in enumerate(delays, start=1):
            body: dict[str, object] = {**ref, "files": files(f"v{round_}", COUNT_WRITER, 100)}
            call = threading.Thread(target=_post_quietly, args=(server, body))
            call.start()
            time.sleep(delay)
            if how == "container":
                _docker("kill", container)
                call.join(timeout=120)
                cuts |= _staged(container)
                started = post(server, "start", ref, timeout=300)
                assert started.status_code == 200, started.text
            else:
                os.kill(server.pid, signal.SIGKILL)
                if how == "backend+writer":
                    _kill_writer(container)
                    cuts |= _staged(container)
                server.process.wait(timeout=30)
                call.join(timeout=60)
                server = start_server(tmp_path / str(round_), instance=instance, **pause)
            counts, debris = census(server, ref)
            assert len(counts) == 1 and sum(counts.values()) == COUNT_WRITER, (delay, counts)
            assert not debris, (delay, debris)
            seen |= set(counts)
    finally:
        server.stop()
        remove_instance(instance)
    if how != "backend":
        # Cuts fell while the writer staged (the old set stays) and while it moved a committed set into place (the
        # next call finished it: the new set), so both ways out of a crash were taken.
        assert {"part", "committed"} <= cuts, cuts
        assert len(seen) >= 2, seen
