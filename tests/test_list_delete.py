"""The whole life of a workspace, its end included: listing workspaces page by page, deleting one (processes,
container, volumes, record), and a page finding its processes again over the websocket."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .harness import Server, docker, remove_instance
from .helpers import TOKEN, Channel, new_process_id, post, start_server, wait_for_pool

pytestmark = pytest.mark.docker


@pytest.fixture
def project() -> str:
    return "life-" + uuid.uuid4().hex[:6]


def listing(server: Server, token: str = TOKEN, **body: Any) -> httpx.Response:
    return httpx.post(
        f"{server.url}/api/v1/containers/list", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=60
    )


def test_list_pages_through_workspaces_with_their_state(server: Server, project: str) -> None:
    refs = [{"projectId": project, "workspaceId": f"w{i}"} for i in range(3)]
    for ref in refs:
        assert post(server, "start", ref).status_code == 200
    assert post(server, "stop", refs[1]).status_code == 200
    try:
        first = listing(server, projectId=project, limit=2).json()
        assert [info["workspaceId"] for info in first["data"]] == ["w0", "w1"] and first["nextCursor"]
        rest = listing(server, projectId=project, limit=2, cursor=first["nextCursor"]).json()
        assert [info["workspaceId"] for info in rest["data"]] == ["w2"] and rest["nextCursor"] is None
        assert [info["running"] for info in first["data"] + rest["data"]] == [True, False, True]
        running = listing(server, projectId=project, status="running").json()["data"]
        assert [info["workspaceId"] for info in running] == ["w0", "w2"]
        everyone = listing(server, limit=500).json()["data"]
        assert {info["workspaceId"] for info in everyone if info["projectId"] == project} == {"w0", "w1", "w2"}
        bad = listing(server, cursor="not-a-cursor")
        assert bad.status_code == 422 and bad.json()["fields"] == ["cursor"]

        admin = {"Authorization": f"Bearer {TOKEN}"}
        one = httpx.post(
            f"{server.url}/api/v1/tokens", json={"projectId": project, "workspaceId": "w2"}, headers=admin
        ).json()["token"]
        whole = httpx.post(f"{server.url}/api/v1/tokens", json={"projectId": project}, headers=admin).json()["token"]
        assert [i["workspaceId"] for i in listing(server, one).json()["data"]] == ["w2"]
        assert [i["workspaceId"] for i in listing(server, whole, limit=500).json()["data"]] == ["w0", "w1", "w2"]
        other = listing(server, whole, projectId="not-" + project)
        assert other.status_code == 403 and other.json()["code"] == "forbidden"
    finally:
        for ref in refs:
            post(server, "delete", ref)


def _volume_exists(name: str) -> bool:
    return docker("volume", "inspect", name, check=False).returncode == 0


def test_delete_ends_processes_and_removes_everything(server: Server, project: str) -> None:
    ref = {"projectId": project, "workspaceId": "doomed"}
    started = post(server, "start", {**ref, "files": {"keep.txt": "old"}}).json()["data"]
    channel, watcher = Channel(server), Channel(server)
    try:
        terminal = new_process_id()
        channel.send(type="exec", id=terminal, command="sleep 300", tty=True, **ref)
        channel.wait_for(type="started", id=terminal)
        watcher.send(type="subscribe", **ref)
        watcher.wait_for(type="subscribed")
        deleted = post(server, "delete", ref)
        assert deleted.status_code == 200, deleted.text
        assert deleted.json() == {"success": True, "message": "Workspace deleted successfully"}
        assert channel.wait_for(type="exit", id=terminal)["reason"] == "workspace_deleted"
        removed = watcher.wait_for(type="status", status="removed")
        assert removed["reason"] == "deleted"
    finally:
        channel.close()
        watcher.close()
    assert docker("inspect", started["name"], check=False).returncode != 0
    assert not _volume_exists(started["volume"])
    status = post(server, "status", ref)
    assert status.status_code == 404 and status.json()["code"] == "not_found"
    assert post(server, "delete", ref).status_code == 404
    again = post(server, "start", ref).json()["data"]
    assert again["volume"] == started["volume"]  # the same name, a new empty volume
    assert post(server, "files/read", {**ref, "path": "keep.txt"}).status_code == 404
    assert post(server, "delete", ref).status_code == 200


@pytest.fixture
def pool_server(tmp_path: Path, docker_engine: None) -> Iterator[Server]:
    srv = start_server(tmp_path, IDE_POOL_SIZE="1")
    try:
        yield srv
    finally:
        srv.stop()
        remove_instance(srv.instance)


def test_delete_of_a_claimed_workspace_removes_the_claimed_volume_and_its_marker(
    pool_server: Server, project: str
) -> None:
    wait_for_pool(pool_server)
    ref = {"projectId": project, "workspaceId": "claimed"}
    data = post(pool_server, "start", {**ref, "files": {"a": "1"}}).json()["data"]
    assert ".pool-" in data["volume"]  # its files live on the pool container's volume
    marker = data["name"] + "-data"
    assert _volume_exists(data["volume"]) and _volume_exists(marker)
    assert post(pool_server, "delete", ref).status_code == 200
    assert not _volume_exists(data["volume"]) and not _volume_exists(marker)


def test_a_page_finds_its_processes_again(server: Server, project: str) -> None:
    ref = {"projectId": project, "workspaceId": "w"}
    assert post(server, "start", ref).status_code == 200
    first = Channel(server)
    try:
        terminal, job = new_process_id(), new_process_id()
        first.send(type="exec", id=terminal, command="cat", tty=True, **ref)
        first.wait_for(type="started", id=terminal)
        first.send(type="exec", id=job, command="echo done", **ref)
        first.process(job)
    finally:
        first.close()  # the page reloads
    second = Channel(server)
    try:
        second.send(type="list", **ref)
        items = {item["id"]: item for item in second.wait_for(type="processes")["items"]}
        assert items[terminal]["command"] == "cat" and items[terminal]["tty"] and items[terminal]["running"]
        assert items[job]["running"] is False and items[job]["exitCode"] == 0 and items[job]["nextSeq"] == 2
        second.send(type="attach", id=terminal, since=0)
        second.wait_for(type="attached", id=terminal)
        second.send(type="list", **ref)
        assert {i["id"]: i for i in second.wait_for(type="processes")["items"]}[terminal]["attached"] == 1
        second.send(type="list", projectId=project, workspaceId="nothing-here")
        assert second.wait_for(type="processes")["items"] == []
    finally:
        second.close()
        post(server, "delete", ref)
