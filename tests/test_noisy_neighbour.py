"""One workspace runs a fork bomb, a memory hog and an output flood at once; another workspace's terminal stays
responsive all the while (each echo round trip under a second), and the noisy one is held to its limits."""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import Server, docker, remove_instance
from .helpers import Channel, new_process_id, post, start_server

pytestmark = pytest.mark.docker

FORK_BOMB = "b() { b | b & }; b"
# Doubles a string until the memory limit stops it (the kernel kills it; the container's main process survives).
MEMORY_HOG = "perl -e '$x = q(x) x 1048576; while (1) { $x .= $x }'"
FLOOD = "cat /dev/urandom | base64"


@pytest.fixture
def limited(tmp_path: Path, docker_engine: None) -> Iterator[Server]:
    # One core of the machine's two for a workspace: the other stays for the backend and everyone else.
    srv = start_server(tmp_path, IDE_CPU_LIMIT="1.0", IDE_MEMORY_LIMIT_MB="256", IDE_PIDS_LIMIT="128")
    try:
        yield srv
    finally:
        srv.stop()
        remove_instance(srv.instance)


def test_a_noisy_workspace_does_not_hold_up_another_ones_terminal(limited: Server) -> None:
    noisy = {"projectId": "noise", "workspaceId": "n" + uuid.uuid4().hex[:6]}
    quiet = {"projectId": "noise", "workspaceId": "q" + uuid.uuid4().hex[:6]}
    for ref in (noisy, quiet):
        assert post(limited, "start", ref).status_code == 200
    loud, calm = Channel(limited), Channel(limited)
    try:
        terminal = new_process_id()
        calm.send(type="exec", id=terminal, command="cat", tty=True, **quiet)
        calm.wait_for(type="started", id=terminal)
        hogs = [new_process_id() for _ in range(3)]
        for process_id, command in zip(hogs, ["bash -c '" + FORK_BOMB + "'", MEMORY_HOG, FLOOD], strict=True):
            loud.send(type="exec", id=process_id, command=command, **noisy)
        time.sleep(3)  # let all three get going; the flood's output is never read on this connection
        name = post(limited, "status", noisy).json()["data"]["name"]
        assert len(docker("top", name).stdout.splitlines()) > 64  # the fork bomb is at work, up to the pids limit

        rounds: list[float] = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            marker = uuid.uuid4().hex[:8]
            began = time.monotonic()
            calm.send(type="stdin", id=terminal, data=marker + "\r")
            seen = ""
            while marker not in seen:
                seen += calm.wait_for(id=terminal, type="stdout", timeout=5)["data"]
            rounds.append(time.monotonic() - began)
            time.sleep(0.2)
        assert len(rounds) >= 10
        assert max(rounds) < 1.0, f"echo round trips: max {max(rounds):.3f} s, median {statistics.median(rounds):.3f} s"

        # The noisy workspace is held to its limits (no more processes than its pids limit), the API still answers
        # for it, and it is still running.
        assert len(docker("top", name).stdout.splitlines()) <= 128 + 1
        assert post(limited, "status", noisy).json()["data"]["running"] is True
    finally:
        loud.close()
        calm.close()
        for ref in (noisy, quiet):
            post(limited, "delete", ref, timeout=120)
