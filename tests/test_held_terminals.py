"""Terminals held in their workspace (images/workspace/ide-hold) outlive the backend relaying them: the backend is
killed (SIGKILL) or restarted, the client attaches through the restarted one with the last seq it saw, gets exactly
the output it missed and types on into the same shell (through another replica: tests/test_replicas.py).

Real uvicorn processes, the real engine and a real SQLite file.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .harness import Server, remove_instance
from .helpers import Channel, post, start_server


def new_ref() -> dict[str, str]:
    return {"projectId": "held-" + uuid.uuid4().hex[:6], "workspaceId": "w"}


def output_until(channel: Channel, process_id: str, text: str, timeout: float = 30) -> list[dict[str, Any]]:
    """Output chunks of the process up to the one that completes `text`."""
    chunks: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while text not in "".join(c["data"] for c in chunks):
        message = channel.wait_for(timeout=max(0.1, deadline - time.monotonic()), id=process_id)
        assert message["type"] in ("stdout", "attached", "started"), message
        if message["type"] == "stdout":
            chunks.append(message)
    return chunks


def open_terminal(server: Server, ref: dict[str, str], process_id: str) -> tuple[Channel, int]:
    """A bash terminal with X set in it; the channel and the last seq seen."""
    channel = Channel(server)
    channel.send(type="exec", id=process_id, command="bash --norc -i", tty=True, cols=90, rows=20, **ref)
    channel.wait_for(type="started", id=process_id)
    channel.send(type="stdin", id=process_id, data="X=kept-$((6*7)); echo ready-$X\n")
    chunks = output_until(channel, process_id, "ready-kept-42")
    return channel, chunks[-1]["seq"]


def attach_after_loss(server: Server, process_id: str, since: int, expect: str) -> tuple[Channel, list[Any]]:
    """Attach through `server` with `since`; the chunks up to `expect`, checked to follow `since` with no gap."""
    channel = Channel(server)
    channel.send(type="attach", id=process_id, since=since)
    attached = channel.wait_for(type="attached", id=process_id, timeout=30)
    assert attached["running"] is True and attached["firstSeq"] <= since + 1, attached
    chunks = output_until(channel, process_id, expect)
    seqs = [c["seq"] for c in chunks]
    assert seqs == list(range(since + 1, since + 1 + len(seqs))), seqs  # exactly what came after, in order
    return channel, chunks


class OneBackend:
    """One backend on a SQLite file, restarted on the same data (a deploy); everything it made is removed after."""

    def __init__(self, tmp_path: Path, detached_ttl: float) -> None:
        self._tmp = tmp_path
        self._ttl = str(detached_ttl)
        self._data = str(tmp_path / "data")
        self._starts = 0
        self.server = self._start(None)

    def _start(self, instance: str | None) -> Server:
        self._starts += 1
        tmp = self._tmp / f"run{self._starts}"
        settings = {"IDE_DATA_DIR": self._data, "IDE_POOL_SIZE": "0", "IDE_PROCESS_DETACHED_TTL": self._ttl}
        return start_server(tmp, instance=instance, **settings)

    def restart(self) -> Server:
        self.server.stop()
        self.server = self._start(self.server.instance)
        return self.server

    def close(self) -> None:
        self.server.stop()
        remove_instance(self.server.instance)


@pytest.fixture
def backend(request: pytest.FixtureRequest, tmp_path: Path, docker_engine: None) -> Iterator[OneBackend]:
    """The detached TTL is the test's `ttl` parameter (indirect), else 60 s: longer than any restart here."""
    one = OneBackend(tmp_path, getattr(request, "param", 60.0))
    try:
        yield one
    finally:
        one.close()


def _terminal_in_new_workspace(server: Server) -> tuple[dict[str, str], str, Channel, int]:
    ref = new_ref()
    assert post(server, "start", ref).status_code == 200
    pid = "term-" + uuid.uuid4().hex[:6]
    channel, seen = open_terminal(server, ref, pid)
    return ref, pid, channel, seen


@pytest.mark.docker
def test_a_terminal_outlives_a_restart_of_the_one_backend(backend: OneBackend) -> None:
    """The embedded default (SQLite, one process): a deploy restarts the backend, terminals run on."""
    ref, pid, channel, seen = _terminal_in_new_workspace(backend.server)
    channel.send(type="stdin", id=pid, data="sleep 2; echo missed-$X\n")
    time.sleep(0.3)
    channel.close()
    server = backend.restart()  # a graceful stop: held terminals are let go, not killed
    # A reloaded page finds its terminal by listing the workspace's processes.
    finder = Channel(server)
    finder.send(type="list", **ref)
    items = finder.wait_for(type="processes")["items"]
    assert [(i["id"], i["running"]) for i in items] == [(pid, True)], items
    finder.close()
    again, _ = attach_after_loss(server, pid, seen, "missed-kept-42")
    again.send(type="stdin", id=pid, data="echo again-$X\n")
    output_until(again, pid, "again-kept-42")
    again.close()


@pytest.mark.docker
@pytest.mark.parametrize("backend", [2.0], indirect=True)
def test_a_terminal_nobody_relays_is_ended_by_its_holder(backend: OneBackend) -> None:
    """The backend is killed and nobody attaches: the holder kills the program after IDE_PROCESS_DETACHED_TTL (2 s
    here) and keeps its exit for a later attach."""
    ref, pid, channel, _ = _terminal_in_new_workspace(backend.server)
    os.kill(backend.server.pid, signal.SIGKILL)
    channel.close()
    time.sleep(5)
    server = backend.restart()
    late = Channel(server)
    late.send(type="attach", id=pid, since=0)
    attached = late.wait_for(type="attached", id=pid)
    assert attached["running"] is False, attached
    ended = late.wait_for(type="exit", id=pid)
    assert (ended["exitCode"], ended.get("reason")) == (137, "detached_timeout"), ended
    late.close()
    # Once its end was seen it is forgotten: the id is free for a new terminal.
    fresh, _ = open_terminal(server, ref, pid)
    fresh.close()


@pytest.mark.docker
def test_a_held_terminal_keeps_size_signals_and_timeout(channel: Channel, ref: dict[str, str], started: Any) -> None:
    """What a terminal did before it was held still holds: its size and resizes, Ctrl-C through `signal`, and a
    `timeout` that kills it (its exit says so, 137)."""
    pid = "term-" + uuid.uuid4().hex[:6]
    channel.send(type="exec", id=pid, command="bash --norc -i", tty=True, cols=101, rows=31, **ref)
    channel.send(type="stdin", id=pid, data="stty size\n")
    output_until(channel, pid, "31 101")
    channel.send(type="resize", id=pid, cols=77, rows=22)
    channel.send(type="stdin", id=pid, data="stty size; sleep 30; echo not-interrupted\n")
    output_until(channel, pid, "22 77")
    time.sleep(0.5)
    channel.send(type="signal", id=pid, signal="SIGINT")
    channel.send(type="stdin", id=pid, data="echo after-$((1+1))\n")
    text = "".join(c["data"] for c in output_until(channel, pid, "after-2", timeout=10))
    assert "not-interrupted" not in text
    channel.send(type="stdin", id=pid, data="exit\n")
    assert channel.wait_for(type="exit", id=pid)["exitCode"] == 0

    timed = "term-" + uuid.uuid4().hex[:6]
    channel.send(type="exec", id=timed, command="sleep 60", tty=True, timeout=2, **ref)
    ended = channel.wait_for(type="exit", id=timed, timeout=20)
    assert (ended["exitCode"], ended["timedOut"]) == (137, True), ended
