"""`ideReady` asks code-server where the backend really reaches it. With IDE_IDE_UPSTREAM=container (what the
backend's own image sets) that is the workspace container's address on its network, not a port published on this
host's loopback: here nothing is published at all, so only the container's address can answer."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from .harness import Server, docker, remove_instance
from .helpers import start_server

IMAGE = "ide-backend/code-server:latest"

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def container_upstream(tmp_path_factory: pytest.TempPathFactory, docker_engine: None) -> Iterator[Server]:
    if docker("image", "inspect", IMAGE, check=False).returncode != 0:
        pytest.skip(f"{IMAGE} is not built; build it with: scripts/build-images.sh --code-server")
    srv = start_server(
        tmp_path_factory.mktemp("ide-ready"),
        IDE_WORKSPACE_IMAGE=IMAGE,
        IDE_IDE_UPSTREAM="container",
        IDE_PUBLISH_PORTS="[]",
    )
    try:
        yield srv
    finally:
        srv.stop()
        remove_instance(srv.instance)


def test_ide_ready_probes_the_address_the_proxy_uses(container_upstream: Server) -> None:
    ref = {"projectId": "ready", "workspaceId": "w" + uuid.uuid4().hex[:6]}
    with container_upstream.client() as api:
        started = api.post("/api/v1/containers/start", json=ref).json()
        assert started["success"] and started["data"]["ports"] == {}  # nothing published on this host
        deadline = time.monotonic() + 60  # code-server answers a second or two after the container starts
        data: dict[str, Any] = {}
        while time.monotonic() < deadline:
            data = api.post("/api/v1/containers/status", json=ref).json()["data"]
            if data["ideReady"]:
                break
            time.sleep(0.3)
        assert data["ideReady"] is True, data
        # ...and the proxy reaches it the same way.
        health = api.get(f"/ide/{ref['projectId']}/{ref['workspaceId']}/healthz")
        assert health.status_code == 200, health.text
        api.post("/api/v1/containers/stop", json=ref)
        assert api.post("/api/v1/containers/status", json=ref).json()["data"]["ideReady"] is False


def test_ide_ready_is_false_for_a_workspace_without_an_ide(server: Server) -> None:
    ref = {"projectId": "ready", "workspaceId": "plain" + uuid.uuid4().hex[:6]}
    with server.client() as api:
        assert api.post("/api/v1/containers/start", json=ref).status_code == 200
        data = api.post("/api/v1/containers/status", json=ref).json()["data"]
        assert data["ideUrl"] is None and data["ideReady"] is False
        api.post("/api/v1/containers/stop", json=ref)
