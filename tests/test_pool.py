"""The warm pool (docs/pool.md) on a real engine: claims, refills, restarts, a lost database, containers removed or
killed behind the backend's back, bursts larger than the pool, and nothing left idling after a shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from .harness import Server, docker, docker_json, remove_instance
from .helpers import TOKEN, Channel, base_only, post, start_server, wait_for_pool

pytestmark = pytest.mark.docker

StartPooled = Callable[..., Server]


def _stats(server: Server) -> dict[str, int]:
    """The pool's totals (over every template's pool)."""
    with server.client() as c:
        pool: dict[str, int] = c.get("/api/v1/stats").json()["pool"]
        pool.pop("templates")
        return pool


def _names(instance: str, *, pool_only: bool = False) -> list[str]:
    """The instance's containers; with pool_only, the unclaimed pool ones (claimed ones keep the pool label)."""
    label = f"label=ide-backend.instance={instance}"
    out = docker("ps", "-a", "--format", "{{.Names}}", "--filter", label).stdout.split()
    return sorted(n for n in out if n.startswith(f"ide-{instance}.pool-") or not pool_only)


def _run(server: Server, ref: dict[str, str], command: str) -> str:
    answer = post(server, "exec", {**ref, "command": command}).json()
    assert answer["success"] and answer["exitCode"] == 0, answer
    return str(answer["output"])


@pytest.fixture
def pooled(tmp_path: Path, docker_engine: None) -> Iterator[StartPooled]:
    """Starts servers with a warm pool (pooled(data folder, instance, size)); stops and clears them all after."""
    servers: list[Server] = []

    def start(data: str = "data", instance: str | None = None, size: str = "2") -> Server:
        srv = start_server(tmp_path / data, instance=instance, IDE_POOL_SIZE=size, IDE_TEMPLATES=base_only(tmp_path))
        servers.append(srv)
        wait_for_pool(srv)
        return srv

    yield start
    for srv in servers:
        srv.stop()
    for instance in {srv.instance for srv in servers}:
        remove_instance(instance)


def test_a_new_workspace_is_a_claimed_pool_container_and_the_pool_refills(pooled: StartPooled) -> None:
    server: Server = pooled()
    ready = _names(server.instance, pool_only=True)
    assert len(ready) == 2
    ref = {"projectId": "pool", "workspaceId": "one"}
    answer = post(server, "start", {**ref, "files": {"hello.txt": "hi"}})
    assert answer.status_code == 200, answer.text
    data = answer.json()["data"]
    assert _stats(server)["hits"] == 1
    inspected = docker_json("inspect", data["id"])[0]
    assert inspected["Name"] == "/" + data["name"] and data["name"].startswith(f"ide-{server.instance}-pool-one-")
    assert inspected["Config"]["Labels"]["ide-backend.pool"] == "1"
    assert inspected["Name"][1:] not in ready and any(
        inspected["Id"] == docker_json("inspect", n)[0]["Id"] for n in [data["name"]]
    )
    # It was one of the ready ones: its volume is the pool container's, and the record says so.
    assert data["volume"] in {f"{n}-data" for n in ready}
    assert [m["Name"] for m in inspected["Mounts"] if m["Destination"] == "/workspace"] == [data["volume"]]
    assert _run(server, ref, "cat hello.txt; id -u; pwd") == "hi1000\n/workspace\n"
    # The password the container was made with is the workspace's now.
    password = post(server, "status", ref).json()["data"]["password"]
    assert f"PASSWORD={password}" in inspected["Config"]["Env"]
    # The pool is back to its size, with a container that was not there before.
    wait_for_pool(server)
    after = _names(server.instance, pool_only=True)
    assert len(after) == 2 and after != ready
    # Files survive a stop and a start like any workspace's.
    post(server, "stop", ref)
    assert post(server, "start", ref).json()["data"]["id"] == data["id"]
    assert _run(server, ref, "cat hello.txt") == "hi"


def test_a_burst_larger_than_the_pool_gets_distinct_containers(pooled: StartPooled) -> None:
    server: Server = pooled()
    refs = [{"projectId": "burst", "workspaceId": f"w{i}"} for i in range(6)]

    async def burst() -> list[httpx.Response]:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=120) as c:
            # Each workspace asked for three times at once: still one container each.
            calls = [c.post("/api/v1/containers/start", json=ref) for ref in refs for _ in range(3)]
            return await asyncio.gather(*calls)

    responses = asyncio.run(burst())
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses if r.status_code != 200]
    by_ref: dict[str, set[str]] = {}
    for r in responses:
        data = r.json()["data"]
        by_ref.setdefault(data["workspaceId"], set()).add(data["id"])
    assert all(len(ids) == 1 for ids in by_ref.values()) and len(by_ref) == 6
    stats = _stats(server)
    assert stats["hits"] == 2 and stats["misses"] >= 4, stats  # two from the pool, the rest created cold
    volumes = {post(server, "status", ref).json()["data"]["volume"] for ref in refs}
    assert len(volumes) == 6
    for i, ref in enumerate(refs):
        post(server, "sync", {**ref, "files": {"me.txt": str(i)}})
    assert [_run(server, ref, "cat me.txt; ls | wc -l") for ref in refs] == [f"{i}1\n" for i in range(6)]
    containers = [n for n in _names(server.instance) if n not in _names(server.instance, pool_only=True)]
    assert len(containers) == 6


def test_restart_lost_database_and_removed_container(pooled: StartPooled) -> None:
    first: Server = pooled()
    ref = {"projectId": "pool", "workspaceId": "kept"}
    data = post(first, "start", {**ref, "files": {"kept.txt": "kept"}}).json()["data"]
    password = post(first, "status", ref).json()["data"]["password"]
    assert _stats(first)["hits"] == 1
    first.stop()
    # A graceful stop leaves no idle pool container behind; the claimed one stays.
    assert _names(first.instance) == [data["name"]]

    # Same database: the same container, password and files.
    second: Server = pooled(instance=first.instance)
    status = post(second, "status", ref).json()["data"]
    assert (status["id"], status["password"], status["volume"]) == (data["id"], password, data["volume"])
    assert _run(second, ref, "cat kept.txt") == "kept"
    second.stop()

    # The database is lost: the container is found by its name and its volume and password are adopted.
    third: Server = pooled("other-data", instance=first.instance)
    assert post(third, "status", ref).status_code == 404
    again = post(third, "start", ref).json()["data"]
    assert (again["id"], again["volume"]) == (data["id"], data["volume"])
    assert _stats(third)["hits"] == 0  # nothing was claimed for it
    assert post(third, "status", ref).json()["data"]["password"] == password
    assert _run(third, ref, "cat kept.txt") == "kept"

    # The container is removed behind the backend's back: a new one on the same volume, not a pool container.
    docker("rm", "-f", data["id"])
    recreated = post(third, "start", ref).json()["data"]
    assert recreated["id"] != data["id"] and recreated["volume"] == data["volume"]
    assert _stats(third)["hits"] == 0
    assert _run(third, ref, "cat kept.txt") == "kept"
    third.stop()

    # Both lost at once, the database and the container: the marker volume under the workspace's own volume name
    # says where its files are.
    docker("rm", "-f", recreated["id"])
    fourth: Server = pooled("third-data", instance=first.instance)
    last = post(fourth, "start", ref).json()["data"]
    assert last["volume"] == data["volume"] and _stats(fourth)["hits"] == 0
    assert _run(fourth, ref, "cat kept.txt") == "kept"


def test_engine_events_reach_the_workspace_of_a_claimed_container(pooled: StartPooled) -> None:
    first: Server = pooled()
    ref = {"projectId": "pool", "workspaceId": "events"}
    data = post(first, "start", ref).json()["data"]
    assert _stats(first)["hits"] == 1
    first.stop()
    # A new process knows the container only from the store: a `docker kill` must still be reported.
    server: Server = pooled(instance=first.instance)
    channel = Channel(server)
    try:
        channel.send(type="subscribe", **ref)
        channel.wait_for(type="subscribed")
        assert channel.wait_for(type="status")["status"] == "running"
        docker("kill", data["id"])
        died = channel.wait_for(type="status", status="died", timeout=15)
        assert died["source"] == "docker" and died["exitCode"] == 137
        post(server, "start", ref)
        assert channel.wait_for(type="status", status="running", source="docker", timeout=15)
        docker("rm", "-f", data["id"])
        assert channel.wait_for(type="status", status="removed", source="docker", timeout=15)
    finally:
        channel.close()


def test_pool_containers_left_by_a_killed_backend_are_replaced(pooled: StartPooled) -> None:
    first: Server = pooled()
    ref = {"projectId": "pool", "workspaceId": "survivor"}
    claimed = post(first, "start", ref).json()["data"]["name"]
    wait_for_pool(first)
    stale = _names(first.instance, pool_only=True)
    first.process.send_signal(signal.SIGKILL)
    first.process.wait()
    assert sorted([*stale, claimed]) == _names(first.instance)
    second: Server = pooled(instance=first.instance)
    fresh = _names(first.instance, pool_only=True)
    assert len(fresh) == 2 and not set(fresh) & set(stale)
    assert claimed in _names(first.instance)
    volumes = docker("volume", "ls", "-q", "--filter", f"label=ide-backend.instance={first.instance}").stdout.split()
    assert not {f"{n}-data" for n in stale} & set(volumes)  # the stale ones' volumes went with them
    assert _run(second, ref, "echo ok") == "ok\n"


def test_pool_off_removes_leftovers_and_creates_cold(pooled: StartPooled) -> None:
    first: Server = pooled()
    first.process.send_signal(signal.SIGKILL)
    first.process.wait()
    assert len(_names(first.instance, pool_only=True)) == 2
    second: Server = pooled(instance=first.instance, size="0")
    assert _names(first.instance, pool_only=True) == []
    ref = {"projectId": "pool", "workspaceId": "cold"}
    data = post(second, "start", ref).json()["data"]
    labels = docker_json("inspect", data["id"])[0]["Config"]["Labels"]
    assert labels["ide-backend.project"] == "pool" and "ide-backend.pool" not in labels
    assert _stats(second) == {"size": 0, "ready": 0, "hits": 0, "misses": 0}


@pytest.mark.parametrize("delay", [0.0, 0.01, 0.02, 0.04])
def test_backend_killed_mid_claim_then_restarted(pooled: StartPooled, delay: float) -> None:
    """SIGKILL lands before, during or after the rename (a claim takes ~20 ms): the next backend finds one container
    for the workspace under its name, and the record it answers with names the volume actually mounted."""
    first: Server = pooled()
    ref = {"projectId": "pool", "workspaceId": "mid-claim"}

    def start() -> None:
        with contextlib.suppress(httpx.HTTPError):  # the backend dies under it
            post(first, "start", ref)

    thread = threading.Thread(target=start)
    thread.start()
    time.sleep(delay)
    first.process.send_signal(signal.SIGKILL)
    first.process.wait()
    thread.join(timeout=30)
    second: Server = pooled(instance=first.instance)
    data = post(second, "start", ref).json()["data"]
    assert data["running"] is True
    mine = [n for n in _names(first.instance) if n.startswith(f"ide-{first.instance}-pool-mid-claim-")]
    assert mine == [data["name"]]
    mounts = docker_json("inspect", data["id"])[0]["Mounts"]
    workspace = [m["Name"] for m in mounts if m["Destination"] == "/workspace"]
    assert workspace == [data["volume"]] == [post(second, "status", ref).json()["data"]["volume"]]
    post(second, "sync", {**ref, "files": {"after.txt": "ok"}})
    assert _run(second, ref, "cat after.txt") == "ok"
