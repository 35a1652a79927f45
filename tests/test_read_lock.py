"""files/read of a workspace whose container is gone makes the container again, under the workspace's lock: many
readers at once make exactly one container, and none of them races another to create it."""

from __future__ import annotations

import concurrent.futures
import uuid

import pytest

from .harness import Server, docker
from .helpers import post

pytestmark = pytest.mark.docker


def test_concurrent_reads_of_a_removed_container_create_it_once(server: Server) -> None:
    ref = {"projectId": "lock", "workspaceId": "r" + uuid.uuid4().hex[:6]}
    started = post(server, "start", {**ref, "files": {"a.txt": "kept"}}).json()
    name = started["data"]["name"]
    docker("rm", "-f", name)  # behind the backend's back: the volume and the record stay
    before = server.log()

    def read() -> int:
        return post(server, "files/read", {**ref, "path": "a.txt"}).status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: read(), range(8)))
    assert statuses == [200] * 8
    log = server.log()[len(before) :]
    assert log.count(f"created container {name}") == 1, log
    assert "already exists; using it" not in log, "two readers raced to create the container"
    assert post(server, "files/read", {**ref, "path": "a.txt"}).json()["content"] == "kept"
    post(server, "stop", ref)
