"""The Swarm test harness itself (tests/swarm.py, scripts/swarm.sh): a service placed on one node runs there, its
named volume lives on that node's engine, and the volume keeps its files when the node goes down and comes back.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import TypeVar

import pytest

from .swarm import SwarmCluster, on, run_on

pytestmark = [pytest.mark.docker, pytest.mark.swarm]

IMAGE = "ide-backend/workspace:latest"
TIMEOUT = 60.0
T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None]) -> T:
    """Poll until `probe` returns something, for up to TIMEOUT seconds."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.25)
    raise AssertionError(f"no {what} within {TIMEOUT:.0f} s")


def task_container(engine_url: str, service: str) -> str | None:
    """The id of the service's running container on this engine, if any."""
    ids = on(engine_url, "ps", "-q", "--filter", f"label=com.docker.swarm.service.name={service}").split()
    return ids[0] if ids else None


def test_volume_on_a_node_outlives_the_node_going_down(swarm_cluster: SwarmCluster) -> None:
    node = swarm_cluster.nodes[1]
    service = f"ide-swarm-smoke-{uuid.uuid4().hex[:8]}"
    volume = f"{service}-vol"
    token = uuid.uuid4().hex
    # /workspace as the mount point, as the runtime mounts it: a new volume takes the image's owner (coder) there.
    on(
        swarm_cluster.manager,
        "service",
        "create",
        "--detach",
        "--quiet",
        "--no-resolve-image",  # no registry: each node has the image loaded
        "--init",  # `sleep` ignores SIGTERM; the node's engine stops it at once when the node goes down
        "--name",
        service,
        "--constraint",
        f"node.id=={node.node_id}",
        "--mount",
        f"type=volume,source={volume},target=/workspace",
        IMAGE,
        "sleep",
        "infinity",
    )
    try:
        first = wait_for("task on the node", lambda: task_container(node.engine_url, service))
        on(node.engine_url, "exec", "-i", first, "tee", "/workspace/probe", stdin=token)
        assert on(node.engine_url, "exec", first, "cat", "/workspace/probe") == token

        swarm_cluster.stop_node(node.name)
        wait_for(
            "node marked down",
            lambda: (
                on(swarm_cluster.manager, "node", "inspect", "-f", "{{.Status.State}}", node.node_id).strip() == "down"
            ),
        )
        swarm_cluster.start_node(node.name)

        # The swarm replaced the task while the node was down; the replacement runs there now, on the same volume.
        second = wait_for("task on the node again", lambda: task_container(node.engine_url, service))
        assert second != first
        assert on(node.engine_url, "exec", second, "cat", "/workspace/probe") == token
    finally:
        on(swarm_cluster.manager, "service", "rm", service)
        # The volume is the node's: removable once the engine has removed the task's container.
        wait_for("volume removed", lambda: run_on(node.engine_url, "volume", "rm", volume).returncode == 0)
