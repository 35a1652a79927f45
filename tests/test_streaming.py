"""Large and fast command output over the websocket, on both exec paths, a real engine and a real server.

Output that is already waiting when the server gets to it goes out in fewer, larger messages (up to 128 KiB of
output each), never mixing stdout and stderr and never reordering them; UTF-8 stays whole across every split; and a
connection that stops reading makes the command wait (flow control) rather than being buffered, until it holds back
another connection and is detached (`slow_consumer`). tests/test_flow_control.py has a slow, steady reader.

To make output pile up for certain, some tests stop the server process (SIGSTOP) while the command writes, as a
busy event loop would, then let it go on: it finds everything waiting at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from .harness import Server, remove_instance
from .helpers import TOKEN, Channel, new_process_id, start_server
from .swarm import docker_at

pytestmark = pytest.mark.docker

MAX_CHUNK = 128 * 1024  # ide_backend.runtime.session.MAX_CHUNK, as documented in docs/protocol.md
PIECE = 64 * 1024  # no piece read from a command (agent) or from the engine (Docker exec) is larger


@pytest.fixture(scope="module")
def server(exec_server: Server) -> Server:
    return exec_server


@contextlib.contextmanager
def paused(server: Server) -> Iterator[None]:
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.process.pid, signal.SIGCONT)


def wait_for_file(server: Server, container: str, path: str) -> None:
    deadline = time.monotonic() + 60
    while docker_at(server, container, "exec", container, "test", "-f", path, check=False).returncode != 0:
        assert time.monotonic() < deadline, f"{path} did not appear in the container"
        time.sleep(0.1)


def run_while_paused(server: Server, channel: Channel, ref: dict[str, str], container: str, script: str) -> list[Any]:
    """Start `script` behind a gate, stop the server, open the gate, wait until the script has written everything,
    let the server go on; returns every message of the process."""
    pid = new_process_id()
    gate, done = f"/tmp/gate-{pid}", f"/tmp/done-{pid}"
    channel.send(
        type="exec", id=pid, command=f"while [ ! -f {gate} ]; do sleep 0.05; done; {script}; touch {done}", **ref
    )
    channel.wait_for(id=pid, type="started")
    with paused(server):
        docker_at(server, container, "exec", container, "touch", gate)
        wait_for_file(server, container, done)
    return channel.process(pid, timeout=60)


def output_of(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    output = [m for m in messages if m["type"] in ("stdout", "stderr")]
    assert [m["seq"] for m in output] == list(range(1, len(output) + 1))
    return output


def test_large_output_arrives_whole_and_in_order(
    channel: Channel, ref: dict[str, str], started: dict[str, Any]
) -> None:
    pid = new_process_id()
    channel.send(type="exec", id=pid, command="seq 1 300000", **ref)
    messages = channel.process(pid, timeout=60)
    output = output_of(messages)
    assert "".join(m["data"] for m in output) == "".join(f"{i}\n" for i in range(1, 300001))
    assert all(m["type"] == "stdout" and len(m["data"].encode()) <= MAX_CHUNK for m in output)
    assert messages[-1]["exitCode"] == 0


def test_waiting_output_is_merged_but_never_across_streams(
    server: Server, channel: Channel, ref: dict[str, str], started: dict[str, Any]
) -> None:
    part = 70_000  # more than one piece: merged, each part fits in one message
    script = (
        f"head -c {part} /dev/zero | tr '\\0' a; sleep 0.3; "
        f"head -c {part} /dev/zero | tr '\\0' b >&2; sleep 0.3; "
        f"head -c {part} /dev/zero | tr '\\0' c"
    )
    messages = run_while_paused(server, channel, ref, started["id"], script)
    output = output_of(messages)
    assert "".join(m["data"] for m in output) == "a" * part + "b" * part + "c" * part
    for m in output:
        assert set(m["data"]) in ({"a"}, {"c"}) if m["type"] == "stdout" else set(m["data"]) == {"b"}, m["seq"]
    assert max(len(m["data"]) for m in output) > PIECE
    assert messages[-1]["exitCode"] == 0


def test_a_burst_is_split_at_the_cap_without_breaking_characters(
    server: Server, channel: Channel, ref: dict[str, str], started: dict[str, Any]
) -> None:
    lines = 35_000  # "€é\n" is 6 bytes: 210,000 in all, so the 128 KiB cap (131,072 = 6 * 21,845 + 2) splits a "€"
    messages = run_while_paused(server, channel, ref, started["id"], f"yes '€é' | head -n {lines}")
    output = output_of(messages)
    assert "".join(m["data"] for m in output) == "€é\n" * lines
    sizes = [len(m["data"].encode()) for m in output]
    assert PIECE < max(sizes) <= MAX_CHUNK + 3, sizes  # + a split character's first bytes, carried to the next
    assert messages[-1]["exitCode"] == 0


def test_a_connection_that_does_not_read_holds_the_command_until_another_is_held_back(
    server: Server, ref: dict[str, str], started: dict[str, Any]
) -> None:
    """Flow control: alone, a connection that reads nothing makes the command wait (it is never detached for that);
    once it holds back a second, reading connection for STALL_SECONDS (10 s) it is detached (`slow_consumer`), the
    command runs to its end for the other, and the detached one attaches again from the last seq it saw."""
    size = 64 * 1024 * 1024  # far past the flow-control window, the outbox's pace and all socket buffers
    pid = new_process_id()
    done = f"/tmp/done-{pid}"
    reader = Channel(server)
    follower = Channel(server)
    try:
        reader.send(type="exec", id=pid, command=f"head -c {size} /dev/zero | tr '\\0' a; touch {done}", **ref)
        reader.wait_for(id=pid, type="started")
        time.sleep(5)  # reading nothing meanwhile: the command must be waiting, not done
        assert docker_at(server, started["id"], "exec", started["id"], "test", "-f", done, check=False).returncode != 0
        follower.send(type="list", **ref)
        item = next(i for i in follower.wait_for(type="processes")["items"] if i["id"] == pid)
        # At most this much was taken from it (messages are up to MAX_CHUNK; what waits in the engine's and the
        # kernel's buffers varies by path): well short of the whole, which an unpaced command writes in a second.
        assert item["running"] and (item["nextSeq"] - 1) * MAX_CHUNK < size * 3 // 4, item

        follower.send(type="attach", id=pid, since=0)
        follower.wait_for(id=pid, type="attached")
        rest = follower.process(pid, timeout=120)
        assert rest[-1]["type"] == "exit" and rest[-1]["exitCode"] == 0

        last_seq, received = 0, 0
        while (message := reader.recv(timeout=60))["type"] != "error":
            assert message["id"] == pid and message["type"] in ("stdout",), message
            assert message["seq"] == last_seq + 1
            last_seq, received = message["seq"], received + len(message["data"])
        assert message["id"] == pid and message["code"] == "slow_consumer"
        assert received < size

        reader.send(type="attach", id=pid, since=last_seq)
        attached = reader.wait_for(id=pid, type="attached")
        assert attached["firstSeq"] > last_seq + 1  # the replay buffer (1 MiB) no longer holds what was missed
        again = reader.process(pid, timeout=60)
        output = [m for m in again if m["type"] == "stdout"]
        assert [m["seq"] for m in output] == list(range(attached["firstSeq"], attached["firstSeq"] + len(output)))
        assert set("".join(m["data"] for m in output)) == {"a"}
        assert again[-1]["type"] == "exit" and again[-1]["exitCode"] == 0
    finally:
        reader.close()
        follower.close()


@pytest.mark.parametrize("setting", ["default", "true"])
def test_compression_is_offered_only_when_turned_on(tmp_path: Path, docker_engine: None, setting: str) -> None:
    env = {} if setting == "default" else {"IDE_WS_COMPRESSION": setting}
    srv = start_server(tmp_path, **env)
    try:
        url = f"{srv.url.replace('http', 'ws')}/api/v1/ws?token={TOKEN}"
        with connect(url) as ws:  # the client offers permessage-deflate by default
            assert ws.response is not None  # set once the handshake is done, which connect() waits for
            extensions = ws.response.headers.get("Sec-WebSocket-Extensions") or ""
            ws.send('{"type": "ping"}')
            assert ws.recv(timeout=10) == '{"type":"pong"}'
        assert ("permessage-deflate" in extensions) == (setting == "true"), extensions
    finally:
        srv.stop()
        remove_instance(srv.instance)
