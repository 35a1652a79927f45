"""start / stop / status against a real engine: idempotence, persistence, re-creation, one container per workspace.

Every test runs three times: new workspaces created cold, claimed from the warm pool (docs/pool.md), and on the swarm
(IDE_RUNTIME=swarm, no pool there), where the container is checked on the engine of the node that runs it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .harness import Server
from .helpers import SWARM, TOKEN, Call, base_only, run, serving, swarm_for, wait_for_pool
from .swarm import docker_at, engine_cli, engines, on_swarm, remove_behind_its_back

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module", params=["cold", "pool", SWARM])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, docker_engine: None
) -> Iterator[Server]:
    pool = "4" if request.param == "pool" else "0"
    tmp = tmp_path_factory.mktemp(f"lifecycle-{request.param}")
    with serving(tmp, swarm_for(request), IDE_POOL_SIZE=pool, IDE_TEMPLATES=base_only(tmp)) as srv:
        yield srv


def _inspect(server: Server, container: str) -> dict[str, Any]:
    """`docker inspect` of the container, on the engine that has it."""
    inspected: dict[str, Any] = json.loads(docker_at(server, container, "inspect", container).stdout)[0]
    return inspected


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
    inspected = _inspect(server, data["id"])
    assert inspected["State"]["Running"] is True
    if on_swarm(server):  # the container of the service `name`'s task in slot 1: `name.1.<task id>`
        assert inspected["Config"]["Labels"]["com.docker.swarm.service.name"] == data["name"]
        assert inspected["Name"].startswith(f"/{data['name']}.1.")
    else:
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
    assert third["name"] == first["name"] and third["running"] is True


def test_a_stopped_or_killed_container_starts_again_as_itself(
    api: Call, ref: dict[str, str], started: dict[str, Any], server: Server
) -> None:
    """The same container, not a new one: its id stays."""
    if on_swarm(server):
        pytest.skip("on a swarm every start is a new task of the workspace's service: a new container, its id new")
    api("stop", ref)
    assert api("start", ref).json()["data"]["id"] == started["id"]
    docker_at(server, started["id"], "kill", started["id"])
    assert api("start", ref).json()["data"]["id"] == started["id"]


def test_stop_then_stop_again(api: Call, ref: dict[str, str], started: dict[str, Any], server: Server) -> None:
    first = api("stop", ref)
    assert first.status_code == 200
    assert first.json()["message"] == "Container stopped successfully"
    assert first.json()["data"]["status"] == "exited"
    second = api("stop", ref)
    assert second.status_code == 200
    assert second.json()["message"] == "Container was already stopped"
    assert _inspect(server, started["id"])["State"]["Running"] is False


def test_status_merges_docker_state_with_the_record(
    api: Call, ref: dict[str, str], started: dict[str, Any], server: Server
) -> None:
    body = api("status", ref).json()
    assert body["message"] == "Container status retrieved successfully"
    data = body["data"]
    assert data["id"] == started["id"] and data["running"] is True
    assert isinstance(data["password"], str) and len(data["password"]) >= 16
    assert data["ideUrl"] is None and data["ideReady"] is False  # the plain workspace image has no VS Code
    env = _inspect(server, started["id"])["Config"]["Env"]
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


def test_start_with_files_on_a_stopped_workspace_writes_them(
    api: Call, ref: dict[str, str], started: dict[str, Any]
) -> None:
    """On a swarm a start runs a new container: the files go to it, not through the stopped one's id."""
    api("stop", ref)
    response = api("start", ref, files={"late.txt": "L"})
    assert response.status_code == 200, response.text
    assert run(api, ref, "cat late.txt")["output"] == "L"


def test_removed_container_is_reported_and_recreated_with_files_intact(
    api: Call, ref: dict[str, str], started: dict[str, Any], server: Server
) -> None:
    api("sync", ref, files={"survivor.txt": "still here"})
    remove_behind_its_back(server, started)
    status = api("status", ref).json()["data"]
    assert status["running"] is False and status["status"] == "removed" and status["id"] is None
    exec_answer = api("exec", ref, command="true")
    assert exec_answer.status_code == 409
    again = api("start", ref).json()["data"]
    assert again["id"] != started["id"] and again["running"] is True
    assert run(api, ref, "cat survivor.txt")["output"] == "still here"


def test_killed_container_shows_in_status(
    api: Call, ref: dict[str, str], started: dict[str, Any], server: Server
) -> None:
    docker_at(server, started["id"], "kill", started["id"])
    status = api("status", ref).json()["data"]
    assert status["running"] is False
    assert status["status"] == "exited"
    assert api("start", ref).json()["data"]["running"] is True  # the same container: the test above


def test_concurrent_starts_make_exactly_one_container(server: Server, ref: dict[str, str]) -> None:
    async def burst() -> list[httpx.Response]:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=120) as c:
            return await asyncio.gather(*(c.post("/api/v1/containers/start", json=ref) for _ in range(20)))

    responses = asyncio.run(burst())
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses if r.status_code != 200]
    ids = {r.json()["data"]["id"] for r in responses}
    assert len(ids) == 1
    listing = "".join(  # every engine's: on a swarm, one more anywhere would be one too many
        engine_cli(
            engine,
            "ps",
            "-a",
            "--no-trunc",
            "--format",
            "{{.ID}} {{.Names}}",
            "--filter",
            f"label=ide-backend.instance={server.instance}",
        ).stdout
        for engine in engines(server)
    )
    workspace_containers = [
        line.split()[0] for line in listing.splitlines() if f"-{ref['projectId']}-{ref['workspaceId']}-" in line
    ]
    assert workspace_containers == list(ids)
