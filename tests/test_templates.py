"""Workspace templates on real servers and the real images: the built-in set (base, python, node, vscode) runs real
Python and Node, a workspace moves between templates keeping its files, each template keeps a warm pool of its own,
and an operator's TOML file defines images, limits and environment."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .harness import Server, docker_json, remove_instance
from .helpers import TOKEN, Channel, post, start_server, wait_for_pool

pytestmark = pytest.mark.docker


def _ref() -> dict[str, str]:
    return {"projectId": "tpl", "workspaceId": "w" + uuid.uuid4().hex[:6]}


def _templates(server: Server) -> dict[str, Any]:
    answer: dict[str, Any] = httpx.get(
        f"{server.url}/api/v1/templates", headers={"Authorization": f"Bearer {TOKEN}"}
    ).json()
    return answer


def _exec(server: Server, ref: dict[str, str], command: str) -> dict[str, Any]:
    response = post(server, "exec", {**ref, "command": command})
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def test_the_built_in_templates_and_real_python_and_node(server: Server) -> None:
    listed = _templates(server)
    assert listed["default"] == "base"
    assert [t["name"] for t in listed["data"]] == ["base", "python", "node", "vscode"]
    ref = _ref()
    started = post(server, "start", {**ref, "template": "python", "files": {"hello.py": "print(6 * 7)"}}).json()
    assert started["data"]["template"] == "python" and started["data"]["image"] == "ide-backend/python:latest"
    assert _exec(server, ref, "python3 hello.py")["output"] == "42\n"
    venv = _exec(server, ref, "python3 -m venv /tmp/v && /tmp/v/bin/python -c 'import sys; print(sys.prefix)'")
    assert venv["output"] == "/tmp/v\n", venv
    compiled = _exec(server, ref, "printf 'int main(){return 7;}' > m.c && cc m.c -o m && ./m; echo $?")
    assert compiled["output"].strip() == "7", compiled

    channel = Channel(server)
    try:
        channel.send(type="subscribe", **ref)
        channel.wait_for(type="status", source="snapshot")
        moved = post(server, "start", {**ref, "template": "node"}).json()["data"]
        # The old container's end is told as a step of the start, never as a removal behind the backend's back.
        removed = channel.wait_for(type="status", status="removed", timeout=30)
        assert removed.get("reason") == "requested", removed
        events = [removed]
        while events[-1].get("status") != "running":
            events.append(channel.wait_for(type="status", timeout=30))
        assert not [e for e in events if e.get("reason") == "removed_outside"], events
    finally:
        channel.close()
    assert moved["template"] == "node" and moved["image"] == "ide-backend/node:latest"
    assert moved["volume"] == started["data"]["volume"]
    assert _exec(server, ref, "node -e 'console.log(6 * 7)' && cat hello.py")["output"] == "42\nprint(6 * 7)"
    assert _exec(server, ref, "npm --version")["exitCode"] == 0
    status = post(server, "status", ref).json()["data"]
    assert status["template"] == "node"
    post(server, "delete", ref)


def test_an_unknown_template_is_422_naming_the_known_ones_and_changes_nothing(server: Server) -> None:
    ref = _ref()
    refused = post(server, "start", {**ref, "template": "cobol"})
    assert refused.status_code == 422
    body = refused.json()
    assert body["fields"] == ["template"] and "python" in body["message"] and "base" in body["known"]
    assert post(server, "status", ref).status_code == 404  # nothing was made
    assert post(server, "start", ref).json()["data"]["template"] == "base"
    assert post(server, "start", {**ref, "template": "cobol"}).status_code == 422
    assert post(server, "status", ref).json()["data"]["template"] == "base"
    post(server, "delete", ref)


@pytest.fixture
def pooled(tmp_path: Path, docker_engine: None) -> Iterator[Server]:
    srv = start_server(tmp_path, IDE_POOL_SIZE="1")
    try:
        yield srv
    finally:
        srv.stop()
        remove_instance(srv.instance)


def test_each_template_keeps_a_warm_pool_of_its_own(pooled: Server) -> None:
    stats = wait_for_pool(pooled)
    assert {name: one["ready"] for name, one in stats["templates"].items()} == {
        "base": 1,
        "python": 1,
        "node": 1,
        "vscode": 0,
    }
    ref = _ref()
    data = post(pooled, "start", {**ref, "template": "python"}).json()["data"]
    assert ".pool-python-" in data["volume"]  # claimed from the python pool
    assert _exec(pooled, ref, "python3 -c 'print(1)'")["output"] == "1\n"
    with pooled.client() as client:
        after = client.get("/api/v1/stats").json()["pool"]["templates"]
    assert after["python"]["hits"] == 1 and after["base"]["hits"] == 0
    post(pooled, "delete", ref)


def test_an_operators_templates_file(tmp_path: Path, docker_engine: None) -> None:
    path = tmp_path / "templates.toml"
    path.write_text(
        'default = "small"\n'
        "[templates.small]\n"
        'image = "ide-backend/workspace:latest"\n'
        'description = "a small box"\n'
        "memory_mb = 256\n"
        "pids = 64\n"
        "ports = []\n"
        'env = { GREETING = "hello from the template" }\n'
        "idle_timeout = 0\n"
        "pool_size = 0\n"
    )
    srv = start_server(tmp_path / "srv", IDE_TEMPLATES=str(path))
    try:
        listed = _templates(srv)
        assert listed["default"] == "small" and [t["name"] for t in listed["data"]] == ["small"]
        ref = _ref()
        data = post(srv, "start", ref).json()["data"]
        assert data["template"] == "small" and data["ports"] == {}
        assert _exec(srv, ref, "echo $GREETING")["output"] == "hello from the template\n"
        host = docker_json("inspect", data["name"])[0]["HostConfig"]
        assert host["Memory"] == 256 * 1024 * 1024 and host["PidsLimit"] == 64
        assert post(srv, "status", ref).json()["data"]["idleStopAt"] is None  # idle_timeout = 0: never
        post(srv, "delete", ref)
    finally:
        srv.stop()
        remove_instance(srv.instance)


def test_a_broken_templates_file_stops_the_server_with_a_reason(tmp_path: Path, docker_engine: None) -> None:
    path = tmp_path / "templates.toml"
    path.write_text("[templates.x]\nmemory_mb = 5\n")  # no image, too little memory
    with pytest.raises(RuntimeError) as failed:
        start_server(tmp_path / "srv", IDE_TEMPLATES=str(path))
    assert "templates file" in str(failed.value) and "image" in str(failed.value)
