"""A real Docker Swarm of three engines on this machine (scripts/swarm.sh), as a session fixture for the tests of the
Swarm runtime, and the docker CLI on the engine that really has a given container (the host's, or a node's).

Each node is a container running its own dockerd, reachable from here at `tcp://ADDRESS:2375`; node 1 is the
manager. The first `up` of a machine takes about a minute (the node image, three engines, the workspace image loaded
into each), later ones a second or two. The cluster is removed at the end of the session unless IDE_KEEP_SWARM=1,
which keeps it for the next run. Tests using it are marked `docker` and `swarm`.
"""

from __future__ import annotations

import functools
import os
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from .harness import DOCKER, INSTANCE_LABEL, ROOT, Server, docker

SCRIPT = ROOT / "scripts" / "swarm.sh"
ENGINE_CLI_TIMEOUT = 60.0  # seconds for one docker CLI call to a node's engine
SCRIPT_TIMEOUT = 600.0  # the first `up` builds an image and loads the workspace image into every node
NODE_PORT = 2375  # where each node's engine listens, at its swarm address (IDE_SWARM_NODE_PORT's default)


def swarm_script(*args: str) -> str:
    """Run scripts/swarm.sh; its stdout. Its log ([swarm] lines on stderr) goes into the failure's message."""
    result = subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=SCRIPT_TIMEOUT, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"scripts/swarm.sh {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result.stdout


@dataclass(frozen=True)
class SwarmNode:
    """One engine of the swarm: its container's name (also its hostname), address, swarm node id and engine URL."""

    name: str
    address: str
    node_id: str
    engine_url: str


@dataclass(frozen=True)
class SwarmCluster:
    """The swarm: the manager's engine URL and the nodes, in order (nodes[0] is the manager)."""

    manager: str
    nodes: list[SwarmNode]

    def node(self, name: str) -> SwarmNode:
        """The node called `name` (ide-swarm-K)."""
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def stop_node(self, name: str) -> None:
        """Stop the node's container: its engine shuts down as a machine's would, its state stays on its volume."""
        swarm_script("stop-node", self.node(name).name)

    def start_node(self, name: str) -> None:
        """Start the node again; returns once its engine answers and the manager lists it Ready."""
        swarm_script("start-node", self.node(name).name)


def parse_nodes(listing: str) -> list[SwarmNode]:
    """`scripts/swarm.sh nodes`' lines (NAME ADDRESS NODE_ID) as nodes."""
    nodes = []
    for line in listing.splitlines():
        name, address, node_id = line.split()
        nodes.append(SwarmNode(name, address, node_id, f"tcp://{address}:{NODE_PORT}"))
    return nodes


@pytest.fixture(scope="session")
def swarm_cluster(docker_engine: None) -> Iterator[SwarmCluster]:
    """The running swarm (started, or reused when it is up already); taken down at the end unless IDE_KEEP_SWARM=1."""
    try:
        manager = swarm_script("up").strip()
        yield SwarmCluster(manager, parse_nodes(swarm_script("nodes")))
    finally:
        if os.environ.get("IDE_KEEP_SWARM") != "1":
            swarm_script("down")


def run_on(engine_url: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the docker CLI against one engine of the swarm."""
    return subprocess.run(
        [DOCKER, "-H", engine_url, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=ENGINE_CLI_TIMEOUT,
        check=False,
    )


def on(engine_url: str, *args: str, stdin: str | None = None) -> str:
    """Run the docker CLI against one engine of the swarm; its stdout, which it must give."""
    result = run_on(engine_url, *args, stdin=stdin)
    assert result.returncode == 0, f"docker {' '.join(args)}: {result.stderr}"
    return result.stdout


def remove_swarm_instance(manager: str, nodes: list[SwarmNode], instance: str) -> dict[str, int]:
    """The instance's services on the manager, then on each node its volumes, once the tasks' containers are gone."""
    label = f"label={INSTANCE_LABEL}={instance}"
    services = run_on(manager, "service", "ls", "-q", "--filter", label).stdout.split()
    if services:
        run_on(manager, "service", "rm", *services)
    left = {"services_left": 0, "node_containers_left": 0, "node_volumes_left": 0}
    for node in nodes:
        deadline = time.monotonic() + 120
        while True:
            containers = run_on(node.engine_url, "ps", "-aq", "--filter", label).stdout.split()
            volumes = run_on(node.engine_url, "volume", "ls", "-q", "--filter", label).stdout.split()
            if volumes and not containers:
                run_on(node.engine_url, "volume", "rm", "-f", *volumes)
                continue
            if not containers or time.monotonic() > deadline:
                left["node_containers_left"] += len(containers)
                left["node_volumes_left"] += len(volumes)
                break
            time.sleep(0.5)
    left["services_left"] = len(run_on(manager, "service", "ls", "-q", "--filter", label).stdout.split())
    return left


# -- the engine a server's container is on: the host's, or the swarm node's that runs it ----------------------------


@functools.cache
def node_engines(manager: str) -> tuple[str, ...]:
    """The engine URL of every node of the swarm that `manager` manages (each listens at its swarm address)."""
    ids = on(manager, "node", "ls", "-q").split()
    addresses = on(manager, "node", "inspect", "--format", "{{.Status.Addr}}", *ids).split()
    return tuple(f"tcp://{address}:{NODE_PORT}" for address in addresses)


def on_swarm(server: Server) -> bool:
    """Whether the server runs its workspaces on a swarm (IDE_RUNTIME=swarm)."""
    return server.env.get("IDE_RUNTIME") == "swarm"


def engines(server: Server) -> list[str | None]:
    """Every engine `server` may put a container on: None for the host's own (IDE_RUNTIME=docker), else the nodes'."""
    if not on_swarm(server):
        return [None]
    return list(node_engines(server.env["IDE_DOCKER_HOST"]))


def engine_cli(engine: str | None, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """The docker CLI at `engine` (None: the host's, as harness.docker); raises on failure when `check`."""
    if engine is None:
        return docker(*args, check=check)
    result = run_on(engine, *args)
    if check and result.returncode != 0:
        raise subprocess.CalledProcessError(
            result.returncode, ["docker", "-H", engine, *args], result.stdout, result.stderr
        )
    return result


_homes: dict[str, str | None] = {}  # container id -> the engine it was found on (ids are unique: it never moves)


def engine_of(server: Server, container: str) -> str | None:
    """The engine that has `container` (an id, as /status says it): on a swarm, the node whose engine lists it, since
    only that engine can kill, remove, inspect or exec into it (the manager does not proxy them)."""
    if container in _homes:
        return _homes[container]
    for engine in engines(server):
        if engine is None or run_on(engine, "ps", "-aq", "--filter", f"id={container}").stdout.strip():
            _homes[container] = engine
            return engine
    raise AssertionError(f"no engine of the swarm has container {container}")


def docker_at(server: Server, container: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """The docker CLI on the engine that runs `container` for `server` (`args` name it wherever the command wants):
    what an operator, or something behind our back, does to a workspace's container."""
    return engine_cli(engine_of(server, container), *args, check=check)


def remove_behind_its_back(server: Server, workspace: Mapping[str, Any]) -> None:
    """Remove a workspace's container (`workspace`: its /start or /status data) as an operator would, behind the
    server's back: on one engine the container; on a swarm the workspace's service, what the API names (removing a
    task's container alone ends that task, as if it had died)."""
    if not on_swarm(server):
        docker("rm", "-f", workspace["id"])  # returns once the container is gone
        return
    on(server.env["IDE_DOCKER_HOST"], "service", "rm", workspace["name"])
    container = workspace["id"]
    deadline = time.monotonic() + ENGINE_CLI_TIMEOUT  # the node removes the task's container a moment later
    while docker_at(server, container, "ps", "-aq", "--filter", f"id={container}").stdout.strip():
        assert time.monotonic() < deadline, f"the swarm did not remove container {container} of a removed service"
        time.sleep(0.1)
