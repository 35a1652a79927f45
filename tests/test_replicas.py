"""Several backend processes: on one PostgreSQL database they share workspaces safely (one process at a time works
on a workspace, whichever process a call reaches), and a second process on one SQLite file is refused.

Real uvicorn processes, a real PostgreSQL (scripts/test.sh starts one) and the real engine; the processes share
one IDE_INSTANCE, as replicas behind a load balancer do.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ide_backend.service.members import GONE_AFTER

from .harness import Server, docker, free_port, remove_instance
from .helpers import Channel, base_only, new_process_id, post, start_server, wait_for_pool
from .test_held_terminals import attach_after_loss, new_ref, open_terminal, output_until
from .test_webhooks import Receiver

PG_URL = os.environ.get("IDE_TEST_POSTGRES_URL", "")


def test_a_second_process_on_one_sqlite_file_is_refused_naming_postgresql(tmp_path: Path) -> None:
    absent = f"unix://{tmp_path}/absent.sock"  # nothing here needs an engine
    data = str(tmp_path / "shared-data")
    first = start_server(tmp_path / "a", IDE_DOCKER_HOST=absent, IDE_DATA_DIR=data)
    try:
        with pytest.raises(RuntimeError) as refused:
            start_server(tmp_path / "b", IDE_DOCKER_HOST=absent, IDE_DATA_DIR=data)
        said = str(refused.value)
        assert "exited early" in said, said
        assert f"pid {first.pid}" in said and "PostgreSQL" in said and "IDE_DATABASE_URL" in said, said
        assert httpx.get(f"{first.url}/healthz").status_code == 200  # the first one is untouched
    finally:
        first.stop()
    again = start_server(tmp_path / "c", IDE_DOCKER_HOST=absent, IDE_DATA_DIR=data)  # the file is free once it ends
    again.stop()


StartReplica = Callable[..., Server]


@pytest.fixture
def start_replica(tmp_path: Path, docker_engine: None) -> Iterator[StartReplica]:
    """Starts backend processes on one PostgreSQL database and one engine, sharing an instance and a token secret
    (start_replica(name, **settings)); stops them and clears the instance after."""
    if not PG_URL:
        pytest.skip("IDE_TEST_POSTGRES_URL is not set (scripts/test.sh sets it up when run as root)")
    secret = "replica-secret-" + uuid.uuid4().hex + uuid.uuid4().hex
    servers: list[Server] = []

    def start(name: str, **settings: str) -> Server:
        env = {"IDE_DATABASE_URL": PG_URL, "IDE_TOKEN_SECRET": secret, "IDE_POOL_SIZE": "0", **settings}
        instance = servers[0].instance if servers else None
        servers.append(start_server(tmp_path / name, instance=instance, **env))
        return servers[-1]

    try:
        yield start
    finally:
        for server in servers:
            server.stop()
        if servers:
            remove_instance(servers[0].instance)


@pytest.fixture
def replicas(start_replica: StartReplica) -> list[Server]:
    """Three backend processes, as behind a load balancer."""
    return [start_replica(name) for name in ("a", "b", "c")]


def _all_at_once(calls: list[tuple[Server, str, dict[str, Any]]]) -> list[httpx.Response]:
    """Send every call at the same moment (a thread each, released together); their answers in order."""
    answers: list[httpx.Response | None] = [None] * len(calls)
    gate = threading.Barrier(len(calls))

    def send(i: int, server: Server, endpoint: str, body: dict[str, Any]) -> None:
        gate.wait()
        answers[i] = post(server, endpoint, body, timeout=180)

    threads = [threading.Thread(target=send, args=(i, *call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)
    assert all(a is not None for a in answers), "a call did not come back"
    return [a for a in answers if a is not None]


@pytest.mark.postgres
@pytest.mark.docker
def test_concurrent_starts_over_three_processes_make_one_container(replicas: list[Server]) -> None:
    ref: dict[str, Any] = {"projectId": "replicas" + uuid.uuid4().hex[:6], "workspaceId": "w"}
    answers = _all_at_once([(replicas[i % 3], "start", ref) for i in range(20)])
    assert [a.status_code for a in answers] == [200] * 20, [a.text for a in answers if a.status_code != 200]
    ids = {a.json()["data"]["id"] for a in answers}
    assert len(ids) == 1, ids
    label = f"label=ide-backend.instance={replicas[0].instance}"
    named = docker("ps", "-aq", "--no-trunc", "--filter", label, "--filter", f"name={ref['projectId']}").stdout.split()
    assert named == list(ids), named
    for server in replicas:  # every process answers for it, whichever started it
        status = post(server, "status", ref).json()["data"]
        assert status["id"] in ids and status["running"] is True


@pytest.mark.postgres
@pytest.mark.docker
def test_syncs_through_different_processes_each_apply_whole(replicas: list[Server]) -> None:
    ref: dict[str, Any] = {"projectId": "replicas" + uuid.uuid4().hex[:6], "workspaceId": "w"}
    assert post(replicas[0], "start", ref).status_code == 200
    names = [f"set/{i:03}.txt" for i in range(300)]
    for round_ in range(4):
        calls: list[tuple[Server, str, dict[str, Any]]] = []
        for who, server in enumerate(replicas):
            files = {name: f"{round_}-{who}\n" for name in names}
            calls.append((server, "sync", {**ref, "files": files}))
        answers = _all_at_once(calls)
        assert [a.status_code for a in answers] == [200] * 3, [a.text for a in answers]
        seen = post(replicas[round_ % 3], "exec", {**ref, "command": "cat set/*.txt | sort | uniq -c"}).json()
        lines = seen["output"].strip().splitlines()
        assert len(lines) == 1 and lines[0].split()[0] == "300", f"a mix of syncs in round {round_}: {lines}"


IDLE = 5.0


@pytest.fixture
def idle_pair(start_replica: StartReplica) -> list[Server]:
    """Two backend processes with a short idle timeout."""
    return [start_replica(name, IDE_IDLE_TIMEOUT=str(IDLE), IDE_IDLE_SWEEP="0.3") for name in ("a", "b")]


def _status(server: Server, ref: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = post(server, "status", ref).json()["data"]
    return data


@pytest.mark.postgres
@pytest.mark.docker
def test_use_through_one_process_keeps_the_workspace_from_the_others_idle_stop(idle_pair: list[Server]) -> None:
    first, second = idle_pair
    ref: dict[str, Any] = {"projectId": "replicas" + uuid.uuid4().hex[:6], "workspaceId": "w"}
    assert post(first, "start", ref).status_code == 200  # started through the first, used through the second only
    began = time.monotonic()
    while time.monotonic() - began < 2.5 * IDLE:
        assert post(second, "exec", {**ref, "command": "true"}).status_code == 200, "stopped while in use"
        time.sleep(1.0)
    assert _status(first, ref)["running"] is True

    channel = Channel(second)
    terminal = new_process_id()
    try:
        channel.send(type="exec", id=terminal, command="cat", tty=True, **ref)
        channel.wait_for(type="started", id=terminal)
        deadline = time.monotonic() + 10
        while "in use through another backend process" not in _status(first, ref)["keptAliveBy"]:
            assert time.monotonic() < deadline, _status(first, ref)
            time.sleep(0.2)
        assert _status(first, ref)["idleStopAt"] is None
        assert _status(second, ref)["keptAliveBy"] == [f"terminal {terminal} attached"]
        time.sleep(IDLE + 2)
        assert _status(first, ref)["running"] is True  # the terminal on the second process kept it
        channel.send(type="signal", id=terminal, signal="SIGKILL")
        channel.wait_for(type="exit", id=terminal)
    finally:
        channel.close()
    deadline = time.monotonic() + 3 * IDLE + 10
    while _status(first, ref)["running"]:
        assert time.monotonic() < deadline, "never stopped once nothing used it"
        time.sleep(0.3)
    assert _status(second, ref)["stopReason"] == "idle"


@pytest.mark.postgres
@pytest.mark.docker
def test_a_subscriber_on_one_process_hears_the_steps_another_process_takes(replicas: list[Server]) -> None:
    first, second = replicas[0], replicas[1]
    ref: dict[str, Any] = {"projectId": "replicas" + uuid.uuid4().hex[:6], "workspaceId": "w"}
    assert post(first, "start", ref).status_code == 200
    watcher = Channel(second)
    try:
        watcher.send(type="subscribe", **ref)
        watcher.wait_for(type="subscribed")
        watcher.wait_for(type="status", status="running", source="snapshot")
        assert post(first, "sync", {**ref, "files": {"a.txt": "a"}}).status_code == 200
        syncing = watcher.wait_for(type="status", status="syncing", timeout=5)
        assert syncing["source"] == "api"  # a step only the first process took, told through the database
        watcher.wait_for(type="status", status="running", timeout=5)
        assert post(first, "stop", ref).status_code == 200
        stopping = watcher.wait_for(type="status", status="stopping", timeout=5)
        assert stopping["source"] == "api"
        exited = watcher.wait_for(type="status", status="exited", timeout=10)
        assert exited["reason"] == "requested"
    finally:
        watcher.close()


def _pool_containers(instance: str) -> dict[str, str]:
    """The instance's unclaimed pool containers: name -> the process that made it."""
    names = docker(
        "ps",
        "-a",
        "--filter",
        f"label=ide-backend.instance={instance}",
        "--filter",
        "label=ide-backend.pool",
        "--format",
        '{{.Names}}\t{{.Label "ide-backend.pool-owner"}}',
    ).stdout.split("\n")
    return dict(line.split("\t", 1) for line in names if line.strip())


@pytest.mark.postgres
@pytest.mark.docker
def test_processes_keep_their_own_warm_pools_and_clear_a_dead_ones(start_replica: StartReplica, tmp_path: Path) -> None:
    pooled = {"IDE_POOL_SIZE": "1", "IDE_TEMPLATES": base_only(tmp_path)}
    first = start_replica("a", **pooled)
    wait_for_pool(first)
    (mine,) = _pool_containers(first.instance)
    second = start_replica("b", **pooled)
    wait_for_pool(second)
    pools = _pool_containers(first.instance)
    assert mine in pools and len(pools) == 2, pools  # the second process left the first one's alone
    assert len(set(pools.values())) == 2, pools  # each marked with its maker
    ref = {"projectId": "replicas" + uuid.uuid4().hex[:6], "workspaceId": "w"}
    assert post(first, "start", ref).status_code == 200
    with first.client() as client:
        assert client.get("/api/v1/stats").json()["pool"]["hits"] == 1  # its own ready container, claimed

    firsts = {name for name, owner in _pool_containers(first.instance).items() if owner == pools[mine]}
    second.process.send_signal(signal.SIGKILL)
    second.process.wait()
    left = {name for name, owner in _pool_containers(first.instance).items() if owner != pools[mine]}
    assert left, "the killed process's ready container should still be there"
    time.sleep(GONE_AFTER + 2)  # it stopped saying it is alive
    third = start_replica("c", **pooled)
    wait_for_pool(third)
    now = _pool_containers(first.instance)
    assert not left & set(now), now  # the dead process's were removed at the third one's start
    assert firsts <= set(now), now  # the first process's stayed
    assert post(first, "start", {**ref, "workspaceId": "w2"}).status_code == 200


@pytest.mark.postgres
@pytest.mark.docker
def test_webhooks_are_sent_once_by_one_process(start_replica: StartReplica) -> None:
    receiver = Receiver(free_port())
    receiver.start()
    try:
        hooks = {"IDE_WEBHOOK_URL": receiver.url, "IDE_WEBHOOK_SECRET": "replica-webhook-secret"}
        first, second = start_replica("a", **hooks), start_replica("b", **hooks)
        ref: dict[str, Any] = {"projectId": "replicas" + uuid.uuid4().hex[:6], "workspaceId": "w"}
        workspace = ref["workspaceId"]
        assert post(first, "start", ref).status_code == 200
        receiver.wait_for("workspace.started", workspace)
        assert post(second, "stop", ref).status_code == 200
        stopped = receiver.wait_for("workspace.stopped", workspace)
        assert stopped["reason"] == "requested"  # stopped through the other process: still told why
        assert post(second, "start", ref).status_code == 200
        assert post(first, "delete", ref).status_code == 200
        receiver.wait_for("workspace.deleted", workspace)
        time.sleep(2.0)  # anything sent twice would have arrived by now
        kinds = [e["type"] for e in receiver.events if e["projectId"] == ref["projectId"]]
        assert kinds == ["workspace.started", "workspace.stopped", "workspace.started", "workspace.deleted"], kinds
    finally:
        receiver.stop()


@pytest.mark.postgres
@pytest.mark.docker
def test_a_terminal_outlives_the_replica_relaying_it(start_replica: StartReplica) -> None:
    # A terminal nobody relays is ended by its holder after the detached TTL (3 s in the tests' settings): longer
    # here, so the seconds between the kill and the attach cannot end it.
    first, second = (start_replica(name, IDE_PROCESS_DETACHED_TTL="60") for name in ("a", "b"))
    ref = new_ref()
    assert post(first, "start", ref).status_code == 200
    pid = "term-" + uuid.uuid4().hex[:6]
    channel, seen = open_terminal(first, ref, pid)
    # Output the client will miss: written while nobody relays the terminal.
    channel.send(type="stdin", id=pid, data="sleep 2; echo missed-$X\n")
    time.sleep(0.3)
    os.kill(first.pid, signal.SIGKILL)
    channel.close()
    time.sleep(3)

    other, chunks = attach_after_loss(second, pid, seen, "missed-kept-42")
    # A second client attaching from the start sees the same seqs for the same text (numbered by the holder).
    viewer = Channel(second)
    viewer.send(type="attach", id=pid, since=0)
    viewer.wait_for(type="attached", id=pid)
    replay = {c["seq"]: c["data"] for c in output_until(viewer, pid, "missed-kept-42")}
    assert all(replay[c["seq"]] == c["data"] for c in chunks)
    # The same shell: its variable is still set, and it answers through the other backend.
    other.send(type="stdin", id=pid, data="echo again-$X\n")
    output_until(other, pid, "again-kept-42")
    other.send(type="list", **ref)
    items = other.wait_for(type="processes")["items"]
    assert [(i["id"], i["running"], i["tty"]) for i in items] == [(pid, True, True)], items
    other.send(type="stdin", id=pid, data="exit 7\n")
    ended = other.wait_for(type="exit", id=pid)
    assert ended["exitCode"] == 7, ended
    viewer.wait_for(type="exit", id=pid)
    other.close()
    viewer.close()


@pytest.mark.postgres
@pytest.mark.docker
def test_commands_fed_through_two_processes_at_once_each_get_their_own_input(start_replica: StartReplica) -> None:
    """Two processes feed stdin to commands in one workspace at the same moment. Through the agent's channel (the
    container's attach stream, whose input all attached processes share) their frames mixed: 10-18 of 20 hashes came
    out wrong and a command hung. On a shared database each process runs commands through an agent of its own."""
    first, second = start_replica("a"), start_replica("b")
    ref = {"projectId": "feed" + uuid.uuid4().hex[:6], "workspaceId": "w"}
    assert post(first, "start", ref).status_code == 200
    payloads = {f"h{i}": (f"{i:02d}" * 512).encode() * 128 for i in range(4)}  # 128 KiB each
    channels = {pid: Channel(first if i % 2 == 0 else second) for i, pid in enumerate(payloads)}
    try:
        for pid, channel in channels.items():
            channel.send(type="exec", id=pid, command="sha256sum", **ref)
        for offset in range(0, 128 * 1024, 1024):  # interleaved, 1 KiB at a time, over both processes
            for pid, channel in channels.items():
                channel.send(type="stdin", id=pid, data=payloads[pid][offset : offset + 1024].decode())
        for pid, channel in channels.items():
            channel.send(type="close_stdin", id=pid)
        for pid, channel in channels.items():
            messages = channel.process(pid, timeout=60)
            out = "".join(m.get("data", "") for m in messages if m["type"] == "stdout")
            assert out.split()[0] == hashlib.sha256(payloads[pid]).hexdigest(), (pid, out)
    finally:
        for channel in channels.values():
            channel.close()


def _own_agents(server: Server, ref: dict[str, str]) -> int:
    """How many agents started by a backend's exec (`ide-agent --exec`) run in the workspace."""
    script = (
        "for d in /proc/[0-9]*; do tr '\\0' ' ' < $d/cmdline 2>/dev/null; echo; done | grep -c '[i]de-agent --exec'"
    )
    answer = post(server, "exec", {**ref, "command": script})
    assert answer.status_code == 200, answer.text
    return int(answer.json()["output"].strip() or 0)


@pytest.mark.postgres
@pytest.mark.docker
def test_each_process_has_an_agent_of_its_own_that_ends_after_it(start_replica: StartReplica) -> None:
    """Each process runs commands (/exec) through an agent it started in the workspace (its own Docker exec, its
    own streams). A process killed with a command running: the command runs to its end, then that agent ends."""
    first, second = start_replica("a"), start_replica("b")
    ref = {"projectId": "own" + uuid.uuid4().hex[:6], "workspaceId": "w"}
    assert post(first, "start", ref).status_code == 200
    assert post(second, "exec", {**ref, "command": "true"}).json()["exitCode"] == 0
    assert _own_agents(first, ref) == 2  # the first's (running this) and the second's
    body = {**ref, "command": "touch /tmp/began; sleep 3; echo ran > /tmp/ran-to-its-end"}

    def call() -> None:
        with contextlib.suppress(httpx.HTTPError):  # its answer never comes: the process is killed meanwhile
            post(second, "exec", body, timeout=30)

    caller = threading.Thread(target=call)
    caller.start()
    deadline = time.monotonic() + 30
    while post(first, "exec", {**ref, "command": "test -e /tmp/began"}).json()["exitCode"] != 0:
        assert time.monotonic() < deadline, "the command never began"
        time.sleep(0.1)
    os.kill(second.pid, signal.SIGKILL)
    caller.join()
    assert _own_agents(first, ref) == 2  # the second's agent waits for its command
    deadline = time.monotonic() + 30
    while _own_agents(first, ref) != 1:
        assert time.monotonic() < deadline, "the killed process's agent never ended"
        time.sleep(0.5)
    ran = post(first, "exec", {**ref, "command": "cat /tmp/ran-to-its-end"}).json()
    assert ran["output"] == "ran\n", ran


@pytest.mark.postgres
@pytest.mark.docker
def test_a_command_without_a_terminal_outlives_the_replica_relaying_it(start_replica: StartReplica) -> None:
    """A command (no terminal) started through one process, which is SIGKILLed while the command prints to stdout
    and stderr and reads its stdin: the client attaches through the other with its last seq, gets exactly what it
    missed (each stream as itself), feeds the command's stdin, ends it, and gets its exit code."""
    first, second = (start_replica(name, IDE_PROCESS_DETACHED_TTL="60") for name in ("a", "b"))
    ref = {"projectId": "cmd" + uuid.uuid4().hex[:6], "workspaceId": "w"}
    assert post(first, "start", ref).status_code == 200
    pid = new_process_id()
    command = "echo one; sleep 2; echo two-out; echo two-err >&2; read line; echo got-$line; exit 5"
    channel = Channel(first)
    channel.send(type="exec", id=pid, command=command, **ref)
    assert channel.wait_for(id=pid)["type"] == "started"
    seen = channel.wait_for(id=pid)
    assert (seen["type"], seen["data"]) == ("stdout", "one\n"), seen
    os.kill(first.pid, signal.SIGKILL)  # before two-out and two-err are written
    channel.close()
    time.sleep(3)

    other = Channel(second)
    other.send(type="attach", id=pid, since=seen["seq"])
    attached = other.wait_for(type="attached", id=pid, timeout=30)
    assert attached["running"] is True, attached
    missed = [other.wait_for(id=pid) for _ in range(2)]
    # Two pipes: which of the two lines the holder read first is the kernel's to say, not their seqs' order.
    assert sorted((m["type"], m["data"]) for m in missed) == [("stderr", "two-err\n"), ("stdout", "two-out\n")]
    assert [m["seq"] for m in missed] == [seen["seq"] + 1, seen["seq"] + 2]  # nothing missed, nothing twice
    other.send(type="stdin", id=pid, data="fed-through-b\n")
    other.send(type="close_stdin", id=pid)
    rest = other.process(pid, timeout=30)
    assert "".join(m.get("data", "") for m in rest if m["type"] == "stdout") == "got-fed-through-b\n", rest
    assert rest[-1]["type"] == "exit" and rest[-1]["exitCode"] == 5, rest
    other.close()
