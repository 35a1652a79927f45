"""IDE_RUNTIME=swarm for real: a Docker Swarm of three engines on this machine (tests/swarm.py, scripts/swarm.sh), a
real backend process on it. Workspaces are placed by Swarm's scheduler and stay on their node; exec, terminals and
files go to the engine of that node; a node that goes down is reported for its workspaces (`node_down`) while the
others keep working, and its workspaces start again with their files once it is back."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from .harness import Server
from .helpers import Channel, post, serving
from .swarm import SwarmCluster, on

pytestmark = [pytest.mark.docker, pytest.mark.swarm]


@pytest.fixture(scope="module")
def swarm_server(tmp_path_factory: pytest.TempPathFactory, swarm_cluster: SwarmCluster) -> Iterator[Server]:
    with serving(tmp_path_factory.mktemp("swarm"), swarm_cluster) as server:
        yield server


def _ok(server: Server, endpoint: str, body: dict[str, Any], timeout: float = 180) -> dict[str, Any]:
    answer = post(server, endpoint, body, timeout=timeout)
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()
    return data


def _node_of(cluster: SwarmCluster, server: Server, ref: dict[str, str]) -> str:
    """The node (its container name) whose engine runs the workspace's container."""
    name = _ok(server, "status", ref)["data"]["name"]
    for node in cluster.nodes:
        if on(node.engine_url, "ps", "-q", "--filter", f"label=com.docker.swarm.service.name={name}").strip():
            return node.name
    raise AssertionError(f"no node runs {name}")


def test_a_workspace_lives_on_a_node_of_the_swarm(swarm_cluster: SwarmCluster, swarm_server: Server) -> None:
    server = swarm_server
    ref = {"projectId": "sw-" + uuid.uuid4().hex[:6], "workspaceId": "w"}
    started = _ok(server, "start", {**ref, "files": {"notes.txt": "on the swarm"}})
    assert started["data"]["running"] is True
    home = _node_of(swarm_cluster, server, ref)
    assert _ok(server, "exec", {**ref, "command": "cat notes.txt; id -un"})["output"] == "on the swarmcoder\n"
    _ok(server, "sync", {**ref, "files": {"src/app.py": "print('hi')\n"}})
    assert _ok(server, "files/read", {**ref, "path": "src/app.py"})["content"] == "print('hi')\n"

    # Live: a command's output streams, and a terminal held on the node answers.
    channel = Channel(server)
    try:
        channel.send(type="exec", id="run-1", command="echo streamed-$((6*7))", **ref)
        assert "streamed-42" in "".join(m.get("data", "") for m in channel.process("run-1"))
        channel.send(type="exec", id="term-1", command="bash --norc -i", tty=True, **ref)
        channel.send(type="stdin", id="term-1", data="echo typed-$((6*7))\n")
        seen = ""
        while "typed-42" not in seen:
            seen += channel.wait_for(type="stdout", id="term-1").get("data", "")
        channel.send(type="stdin", id="term-1", data="exit\n")
        channel.wait_for(type="exit", id="term-1")
    finally:
        channel.close()

    stopped = _ok(server, "stop", ref)
    assert stopped["data"]["running"] is False
    assert _ok(server, "status", ref)["data"]["stopReason"] == "requested"
    again = _ok(server, "start", ref)
    assert again["data"]["running"] is True
    assert _node_of(swarm_cluster, server, ref) == home  # its files are there: it stays
    assert _ok(server, "exec", {**ref, "command": "cat notes.txt src/app.py"})["output"] == "on the swarmprint('hi')\n"


def test_thirty_workspaces_spread_and_a_node_goes_down_and_comes_back(
    swarm_cluster: SwarmCluster,
    swarm_server: Server,
) -> None:
    server = swarm_server
    project = "spread-" + uuid.uuid4().hex[:6]
    refs = [{"projectId": project, "workspaceId": f"w{i:02d}"} for i in range(30)]

    def start(ref: dict[str, str]) -> None:
        _ok(server, "start", {**ref, "files": {"who.txt": ref["workspaceId"]}})

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(start, refs))
    homes = {ref["workspaceId"]: _node_of(swarm_cluster, server, ref) for ref in refs}
    by_node: dict[str, list[str]] = {}
    for workspace, node in homes.items():
        by_node.setdefault(node, []).append(workspace)
    assert len(by_node) == len(swarm_cluster.nodes), by_node  # Swarm spread them over every node

    # Stop a node that is not the manager: its workspaces are reported down, the others keep working.
    gone = next(n.name for n in swarm_cluster.nodes[1:] if n.name in by_node)
    lost = set(by_node[gone])
    one = sorted(lost)[0]
    watcher = Channel(server)
    watcher.send(type="subscribe", projectId=project, workspaceId=one)
    watcher.wait_for(type="status", status="running")
    swarm_cluster.stop_node(gone)
    try:
        # Its engine stops its containers as it shuts down (`died`), then the manager marks the node down.
        watcher.wait_for(type="status", status="died", reason="node_down", timeout=120)
        watcher.close()
        for ref in refs:
            data = _ok(server, "status", ref)["data"]
            if ref["workspaceId"] in lost:
                assert (data["running"], data["stopReason"]) == (False, "node_down"), data
            else:
                assert data["running"] is True, data
        for ref in refs[:30:5]:
            if ref["workspaceId"] not in lost:
                assert _ok(server, "exec", {**ref, "command": "cat who.txt"})["output"] == ref["workspaceId"]
        refused = post(server, "start", {"projectId": project, "workspaceId": one})
        assert refused.status_code == 409 and "down" in refused.json()["message"], refused.text
    finally:
        # The node comes back (also when a check above failed: the cluster is shared by the session).
        swarm_cluster.start_node(gone)

    # Its workspaces start again there, with their files.
    for ref in refs:
        if ref["workspaceId"] in lost:
            deadline = time.monotonic() + 60
            while (answer := post(server, "start", ref, timeout=180)).status_code == 409:
                assert time.monotonic() < deadline, answer.text
                time.sleep(1)
            assert answer.status_code == 200, answer.text
            assert _ok(server, "exec", {**ref, "command": "cat who.txt"})["output"] == ref["workspaceId"]
            assert _node_of(swarm_cluster, server, ref) == gone
