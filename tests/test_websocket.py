"""The live channel over a real websocket, a real uvicorn server and a real engine."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from .harness import Server
from .helpers import Call, Channel, new_process_id, run
from .swarm import docker_at

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def server(exec_server: Server) -> Server:
    """Every test here runs on both exec paths (agent and Docker exec) and must see the same results."""
    return exec_server


def _text(messages: list[dict[str, Any]], kind: str) -> str:
    return "".join(m["data"] for m in messages if m["type"] == kind)


def test_output_streams_as_it_is_written(
    channel: Channel, api: Call, ref: dict[str, str], started: dict[str, Any]
) -> None:
    pid = new_process_id()
    command = "echo first; while [ ! -f /tmp/go ]; do sleep 0.05; done; echo second"
    channel.send(type="exec", id=pid, command=command, **ref)
    assert channel.wait_for(id=pid)["type"] == "started"
    first = channel.wait_for(id=pid)
    assert first == {"type": "stdout", "id": pid, "seq": 1, "data": "first\n"}
    run(api, ref, "touch /tmp/go")  # only now can the command go on: the first chunk came before it ended
    rest = channel.process(pid)
    assert _text(rest, "stdout") == "second\n"
    assert rest[-1]["exitCode"] == 0


def test_stdout_stderr_and_exit_code(channel: Channel, ref: dict[str, str], started: dict[str, Any]) -> None:
    pid = new_process_id()
    channel.send(type="exec", id=pid, command="echo out; echo err >&2; exit 7", **ref)
    messages = channel.process(pid)
    assert messages[0]["type"] == "started"
    assert _text(messages, "stdout") == "out\n" and _text(messages, "stderr") == "err\n"
    assert messages[-1] == {"type": "exit", "id": pid, "exitCode": 7, "timedOut": False, "truncated": False}
    seqs = [m["seq"] for m in messages if "seq" in m]
    assert seqs == list(range(1, len(seqs) + 1))


def test_utf8_split_across_writes_is_not_broken(channel: Channel, ref: dict[str, str], started: dict[str, Any]) -> None:
    pid = new_process_id()
    channel.send(type="exec", id=pid, command="printf '\\342'; sleep 0.3; printf '\\202\\254\\n'", **ref)
    assert _text(channel.process(pid), "stdout") == "€\n"


def test_pty_shell_typing_and_resize(channel: Channel, ref: dict[str, str], started: dict[str, Any]) -> None:
    pid = new_process_id()
    channel.send(type="exec", id=pid, command="bash -l", tty=True, cols=100, rows=30, **ref)
    channel.send(type="stdin", id=pid, data="stty size; echo hel''lo\r")
    output = ""
    while "hello" not in output or "30 100" not in output:
        message = channel.wait_for(id=pid, type="stdout")
        output += message["data"]
    channel.send(type="resize", id=pid, cols=132, rows=43)
    channel.send(type="stdin", id=pid, data="stty size\r")
    while "43 132" not in output:
        output += channel.wait_for(id=pid, type="stdout")["data"]
    channel.send(type="stdin", id=pid, data="exit 3\r")
    assert channel.process(pid)[-1]["exitCode"] == 3


def test_sigint_stops_sleep(channel: Channel, ref: dict[str, str], started: dict[str, Any]) -> None:
    pid = new_process_id()
    channel.send(type="exec", id=pid, command="sleep 100", **ref)
    channel.wait_for(id=pid, type="started")
    channel.send(type="signal", id=pid, signal="SIGINT")
    exit_message = channel.process(pid, timeout=15)[-1]
    assert exit_message["exitCode"] == 130
    assert exit_message["timedOut"] is False


def test_close_stdin_ends_input(channel: Channel, ref: dict[str, str], started: dict[str, Any]) -> None:
    pid = new_process_id()
    channel.send(type="exec", id=pid, command="tr a-z A-Z", **ref)
    channel.send(type="stdin", id=pid, data="shout\n")
    channel.send(type="close_stdin", id=pid)
    messages = channel.process(pid)
    assert _text(messages, "stdout") == "SHOUT\n" and messages[-1]["exitCode"] == 0


def test_timeout_keeps_partial_output(channel: Channel, ref: dict[str, str], started: dict[str, Any]) -> None:
    pid = new_process_id()
    channel.send(type="exec", id=pid, command="echo partial; sleep 30", timeout=1, **ref)
    messages = channel.process(pid)
    assert _text(messages, "stdout") == "partial\n"
    assert messages[-1]["timedOut"] is True


def test_reconnect_and_attach_replays_exactly_what_was_missed(
    server: Server, api: Call, ref: dict[str, str], started: dict[str, Any]
) -> None:
    pid = new_process_id()
    command = "for i in 1 2 3 4 5; do echo line$i; while [ ! -f /tmp/gate$i ]; do sleep 0.05; done; done; echo done"
    first = Channel(server)
    first.send(type="exec", id=pid, command=command, **ref)
    assert first.wait_for(id=pid, type="stdout")["data"] == "line1\n"
    first.close()  # the network drops; the process keeps running
    run(api, ref, "touch /tmp/gate1 /tmp/gate2 /tmp/gate3")
    second = Channel(server)
    try:
        second.send(type="attach", id=pid, since=1)
        attached = second.wait_for(id=pid, type="attached")
        assert attached["running"] is True
        replayed: list[dict[str, Any]] = []
        while "".join(m["data"] for m in replayed) != "line2\nline3\nline4\n":
            replayed.append(second.wait_for(id=pid, type="stdout"))
        assert replayed[0]["seq"] == 2  # nothing before `since` again, nothing missed after it
        run(api, ref, "touch /tmp/gate4 /tmp/gate5")
        rest = second.process(pid)
        assert _text(rest, "stdout") == "line5\ndone\n"
        assert rest[-1]["exitCode"] == 0
        # A late attach to a finished process replays everything and the exit.
        second.send(type="attach", id=pid, since=0)
        assert second.wait_for(id=pid, type="attached")["running"] is False
        everything = second.process(pid)
        assert _text(everything, "stdout") == "".join(f"line{i}\n" for i in range(1, 6)) + "done\n"
    finally:
        second.close()


def test_container_killed_ends_stream_and_emits_status(
    server: Server, channel: Channel, ref: dict[str, str], started: dict[str, Any]
) -> None:
    channel.send(type="subscribe", **ref)
    channel.wait_for(type="subscribed")
    assert channel.wait_for(type="status")["status"] == "running"
    pid = new_process_id()
    channel.send(type="exec", id=pid, command="sleep 100", **ref)
    channel.wait_for(id=pid, type="started")
    docker_at(server, started["id"], "kill", started["id"])
    exit_message = channel.process(pid, timeout=10)[-1]
    assert exit_message.get("reason") == "container_stopped", exit_message
    died = channel.wait_for(type="status", status="died", timeout=10)
    assert died["source"] == "docker" and died["exitCode"] == 137


def test_two_subscribers_both_see_rest_lifecycle(server: Server, api: Call, ref: dict[str, str]) -> None:
    api("start", ref)
    a, b = Channel(server), Channel(server)
    try:
        for ch in (a, b):
            ch.send(type="subscribe", **ref)
            ch.wait_for(type="subscribed")
            ch.wait_for(type="status", status="running")
        api("stop", ref)
        api("sync", ref, files={"x.txt": "x"})
        api("start", ref)
        for ch in (a, b):
            seen = [ch.wait_for(type="status", timeout=15)["status"] for _ in range(6)]
            assert seen[:2] == ["stopping", "exited"], seen
            assert "syncing" in seen and seen[-2:] == ["starting", "running"], seen
    finally:
        a.close()
        b.close()


def test_unsubscribe_stops_events(channel: Channel, api: Call, ref: dict[str, str], started: dict[str, Any]) -> None:
    channel.send(type="subscribe", **ref)
    channel.wait_for(type="subscribed")
    channel.send(type="unsubscribe", **ref)
    channel.wait_for(type="unsubscribed")
    channel.backlog.clear()
    api("stop", ref)
    channel.send(type="ping")
    assert channel.recv() == {"type": "pong"}


@pytest.mark.parametrize("token", ["", "wrong"])
def test_bad_token_is_refused(server: Server, token: str) -> None:
    with pytest.raises(InvalidStatus) as info:
        Channel(server, token=token)
    assert info.value.response.status_code == 401


def test_bad_messages_get_errors_and_the_connection_stays(channel: Channel, ref: dict[str, str]) -> None:
    bad = [
        "not json",
        json.dumps([1]),
        json.dumps({"type": "nope"}),
        json.dumps({"type": "exec", "id": "x"}),
        json.dumps({"type": "exec", "id": "../x", "command": "true", **ref}),
        json.dumps({"type": "resize", "id": "x", "cols": 0, "rows": 10}),
        json.dumps({"type": "signal", "id": "x", "signal": "SIGSTOP"}),
        json.dumps({"type": "subscribe", "projectId": "a b", "workspaceId": "w"}),
    ]
    for text in bad:
        channel.ws.send(text)
        message = channel.recv()
        assert message["type"] == "error" and message["code"] == "invalid_message", (text, message)
        assert message["message"]
    channel.send(type="stdin", id="never-started", data="x")
    assert channel.recv()["code"] == "not_found"
    channel.send(type="exec", id="p1", command="true", **ref)
    assert channel.recv() == {
        "type": "error",
        "id": "p1",
        "code": "not_found",
        "message": f"Workspace {ref['projectId']}/{ref['workspaceId']} does not exist; "
        "create it with /api/v1/containers/start",
    }
    channel.send(type="ping")
    assert channel.recv() == {"type": "pong"}


def test_exec_on_a_stopped_workspace_and_duplicate_ids(
    channel: Channel, api: Call, ref: dict[str, str], started: dict[str, Any]
) -> None:
    pid = new_process_id()
    channel.send(type="exec", id=pid, command="sleep 30", **ref)
    channel.wait_for(id=pid, type="started")
    channel.send(type="exec", id=pid, command="true", **ref)
    assert channel.wait_for(id=pid, type="error")["code"] == "conflict"
    channel.send(type="signal", id=pid, signal="SIGKILL")
    channel.process(pid)
    api("stop", ref)
    other = new_process_id()
    channel.send(type="exec", id=other, command="true", **ref)
    assert channel.wait_for(id=other)["code"] == "not_running"


def _stats(server: Server) -> dict[str, Any]:
    with server.client() as c:
        body: dict[str, Any] = c.get("/api/v1/stats").json()
        return body


def test_closing_the_socket_leaks_nothing(
    server: Server, api: Call, ref: dict[str, str], started: dict[str, Any]
) -> None:
    run(api, ref, "true")  # the workspace's agent channel (one long-lived task per container) exists from here on
    before = _stats(server)
    ch = Channel(server)
    ch.send(type="subscribe", **ref)
    ch.wait_for(type="subscribed")
    pid = new_process_id()
    ch.send(type="exec", id=pid, command="sleep 300", **ref)
    ch.wait_for(id=pid, type="started")
    during = _stats(server)
    assert during["websockets"] == before["websockets"] + 1
    assert during["subscriptions"] == before["subscriptions"] + 1
    assert during["processes"] == before["processes"] + 1
    ch.close()
    deadline = time.monotonic() + 15  # detached processes are killed after IDE_PROCESS_DETACHED_TTL (3 s here)
    after = _stats(server)
    while time.monotonic() < deadline and (
        after["processes"] > before["processes"] or after["tasks"] > before["tasks"]
    ):
        time.sleep(0.2)
        after = _stats(server)
    assert after["websockets"] == before["websockets"]
    assert after["subscriptions"] == before["subscriptions"]
    assert after["processes"] == before["processes"]
    assert after["tasks"] <= before["tasks"]
    assert run(api, ref, "ps -eo args | grep -c '^sleep 300' || true")["output"].strip() == "0"


def test_stats_needs_the_token(server: Server) -> None:
    assert httpx.get(f"{server.url}/api/v1/stats").status_code == 401


def test_a_command_that_cannot_start_says_why(channel: Channel, ref: dict[str, str], started: dict[str, Any]) -> None:
    pid = new_process_id()
    channel.send(type="exec", id=pid, command="true", cwd="no/such/folder", **ref)
    messages = channel.process(pid)
    assert "no/such/folder" in _text(messages, "stdout") + _text(messages, "stderr")
    assert messages[-1]["exitCode"] == 126
