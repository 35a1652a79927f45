"""start / stop / status against a real engine: idempotence, persistence, re-creation, one container per workspace.

Every test runs twice: new workspaces created cold, and claimed from the warm pool (docs/pool.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .harness import Server, docker, docker_json, remove_instance
from .helpers import TOKEN, Call, base_only, run, start_server, wait_for_pool

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module", params=["cold", "pool"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, docker_engine: None
) -> Iterator[Server]:
    pool = "4" if request.param == "pool" else "0"
    tmp = tmp_path_factory.mktemp(f"lifecycle-{request.param}")
    srv = start_server(tmp, IDE_POOL_SIZE=pool, IDE_TEMPLATES=base_only(tmp))
    try:
        yield srv
    finally:
        srv.stop()
        remove_instance(srv.instance)


def _pooled(server: Server) -> bool:
    return server.env["IDE_POOL_SIZE"] != "0"


@pytest.fixture(autouse=True)
def pool_ready(server: Server) -> None:
    """In pool mode every test begins with a full pool, so its new workspaces are claimed, not created."""
    if _pooled(server):
        wait_for_pool(server)


def test_start_creates_a_running_container(
    api: Call, ref: dict[str, str], server: Server, client: httpx.Client
) -> None:
    hits = client.get("/api/v1/stats").json()["pool"]["hits"]
    response = api("start", ref)
    assert client.get("/api/v1/stats").json()["pool"]["hits"] == hits + _pooled(server)
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    assert body["message"] == "Container started successfully"
    data = body["data"]
    assert data["running"] is True and data["status"] == "running"
    assert data["projectId"] == ref["projectId"] and data["workspaceId"] == ref["workspaceId"]
    assert data["workspaceDir"] == "/workspace"
    for key in ("id", "name", "image", "createdAt", "startedAt", "finishedAt", "exitCode", "ports", "volume"):
        assert key in data
    inspected = docker_json("inspect", data["id"])[0]
    assert inspected["State"]["Running"] is True
    assert inspected["Name"] == "/" + data["name"]
    assert ref["projectId"] in data["name"] and ref["workspaceId"] in data["name"]
    labels = inspected["Config"]["Labels"]
    assert labels["ide-backend.instance"] == server.instance
    if _pooled(server):  # claimed: Docker cannot relabel, the name says whose it is
        assert labels["ide-backend.pool"] == "1" and "ide-backend.project" not in labels
    else:
        assert labels["ide-backend.project"] == ref["projectId"]
        assert labels["ide-backend.workspace"] == ref["workspaceId"]
    mounts = [m for m in inspected["Mounts"] if m["Destination"] == "/workspace"]
    assert [m["Name"] for m in mounts] == [data["volume"]]


def test_start_is_idempotent_and_restarts_a_stopped_container(api: Call, ref: dict[str, str]) -> None:
    first = api("start", ref).json()["data"]
    second = api("start", ref).json()["data"]
    assert first["id"] == second["id"]
    assert api("stop", ref).json()["data"]["running"] is False
    third = api("start", ref).json()["data"]
    assert third["id"] == first["id"] and third["running"] is True


def test_stop_then_stop_again(api: Call, ref: dict[str, str], started: dict[str, Any]) -> None:
    first = api("stop", ref)
    assert first.status_code == 200
    assert first.json()["message"] == "Container stopped successfully"
    assert first.json()["data"]["status"] == "exited"
    second = api("stop", ref)
    assert second.status_code == 200
    assert second.json()["message"] == "Container was already stopped"
    assert docker_json("inspect", started["id"])[0]["State"]["Running"] is False


def test_status_merges_docker_state_with_the_record(api: Call, ref: dict[str, str], started: dict[str, Any]) -> None:
    body = api("status", ref).json()
    assert body["message"] == "Container status retrieved successfully"
    data = body["data"]
    assert data["id"] == started["id"] and data["running"] is True
    assert isinstance(data["password"], str) and len(data["password"]) >= 16
    assert data["ideUrl"] is None and data["ideReady"] is False  # the plain workspace image has no VS Code
    env = docker_json("inspect", started["id"])[0]["Config"]["Env"]
    assert f"PASSWORD={data['password']}" in env
    api("stop", ref)
    stopped = api("status", ref).json()["data"]
    assert stopped["running"] is False and stopped["status"] == "exited"
    assert stopped["finishedAt"] is not None and stopped["exitCode"] is not None
    assert stopped["password"] == data["password"]


def test_passwords_differ_between_workspaces(api: Call, ref: dict[str, str], started: dict[str, Any]) -> None:
    other = {**ref, "workspaceId": ref["workspaceId"] + "-b"}
    api("start", other)
    assert api("status", ref).json()["data"]["password"] != api("status", other).json()["data"]["password"]


def test_files_persist_across_stop_start(api: Call, ref: dict[str, str]) -> None:
    api("start", ref, files={"keep.txt": "kept"})
    api("stop", ref)
    api("start", ref)
    assert run(api, ref, "cat keep.txt")["output"] == "kept"


def test_start_with_files_writes_them_before_answering(api: Call, ref: dict[str, str]) -> None:
    response = api("start", ref, files={"a.txt": "A", "dir/b.txt": "B"})
    assert response.status_code == 200
    assert run(api, ref, "cat a.txt dir/b.txt")["output"] == "AB"


def test_removed_container_is_reported_and_recreated_with_files_intact(
    api: Call, ref: dict[str, str], started: dict[str, Any]
) -> None:
    api("sync", ref, files={"survivor.txt": "still here"})
    docker("rm", "-f", started["id"])
    status = api("status", ref).json()["data"]
    assert status["running"] is False and status["status"] == "removed" and status["id"] is None
    exec_answer = api("exec", ref, command="true")
    assert exec_answer.status_code == 409
    again = api("start", ref).json()["data"]
    assert again["id"] != started["id"] and again["running"] is True
    assert run(api, ref, "cat survivor.txt")["output"] == "still here"


def test_killed_container_shows_in_status(api: Call, ref: dict[str, str], started: dict[str, Any]) -> None:
    docker("kill", started["id"])
    status = api("status", ref).json()["data"]
    assert status["running"] is False
    assert status["status"] == "exited"
    assert api("start", ref).json()["data"]["id"] == started["id"]


def test_concurrent_starts_make_exactly_one_container(server: Server, ref: dict[str, str]) -> None:
    async def burst() -> list[httpx.Response]:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=120) as c:
            return await asyncio.gather(*(c.post("/api/v1/containers/start", json=ref) for _ in range(20)))

    responses = asyncio.run(burst())
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses if r.status_code != 200]
    ids = {r.json()["data"]["id"] for r in responses}
    assert len(ids) == 1
    workspace_containers = [
        line.split()[0]
        for line in docker(
            "ps",
            "-a",
            "--no-trunc",
            "--format",
            "{{.ID}} {{.Names}}",
            "--filter",
            f"label=ide-backend.instance={server.instance}",
        ).stdout.splitlines()
        if f"-{ref['projectId']}-{ref['workspaceId']}-" in line
    ]
    assert workspace_containers == list(ids)
