"""a, b, d: one API call at a time (exec, start, status) next to its smallest raw-Docker equivalent."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
from measure import BenchError, Row, Stats, progress
from runner import HTTP_TIMEOUT, Bench, start_server

from tests.harness import Server, remove_instance


async def case_exec(bench: Bench) -> None:
    """a. POST /exec of `true` vs a raw aiodocker exec round trip on the same container, as the same user."""
    info = await bench.start_workspace("bench", "exec")
    container_id = str(info["id"])
    server_ms: list[float] = []
    still_running = 0

    async def ours() -> None:
        data = await bench.post("exec", {"projectId": "bench", "workspaceId": "exec", "command": "true"})
        if data.get("exitCode") != 0:
            raise BenchError(f"/exec of true answered {data}")
        server_ms.append(float(data["durationMs"]))

    async def raw() -> None:
        nonlocal still_running
        still_running += await bench.raw_exec(container_id)

    ours_stats, raw_stats = await bench.paired(bench.plan.fast, ours, raw)
    bench.rows.append(
        Row(
            "exec",
            "a. POST /exec `true`",
            ours_stats,
            raw_stats,
            "aiodocker exec create + start + read to end + exec inspect of `sh -c true`, user 1000:1000, same "
            "container",
        )
    )
    measured = server_ms[-bench.plan.fast :]
    bench.details["exec"] = {
        "container": container_id,
        "server_duration_ms": Stats(tuple(measured)).to_json(),
        "raw_running_at_first_inspect": still_running,
        "raw_rounds_including_warmup": bench.plan.fast + bench.plan.warmup,
    }


async def case_status(bench: Bench) -> None:
    """d. POST /status vs a raw aiodocker container inspect."""
    info = await bench.start_workspace("bench", "exec")
    container = bench.docker.containers.container(str(info["id"]))

    async def ours() -> None:
        await bench.post("status", {"projectId": "bench", "workspaceId": "exec"})

    async def raw() -> None:
        await container.show()

    ours_stats, raw_stats = await bench.paired(bench.plan.fast, ours, raw)
    bench.rows.append(Row("status", "d. POST /status", ours_stats, raw_stats, "aiodocker container inspect"))


async def case_start(bench: Bench) -> None:
    """b. POST /start of a new workspace vs raw volume create + container create + start: claimed from the warm pool
    (the default, IDE_POOL_SIZE=2; the pool is let refill between rounds, outside the clock), and created cold by a
    second server with the pool off. Then /start of a running one."""
    made_ids: list[str] = []
    made_volumes: list[str] = []
    counter = 0
    raw_desc = (
        "aiodocker volume create + container create + start, the backend's container config (Init, volume "
        "at /workspace, user 1000:1000, limits, caps, port 8080 on 127.0.0.1)"
    )

    async def raw() -> None:
        cid, volume = await bench.raw_start()
        made_ids.append(cid)
        made_volumes.append(volume)

    def ours_on(http: httpx.AsyncClient) -> Callable[[], Awaitable[None]]:
        async def ours() -> None:
            nonlocal counter
            counter += 1
            ref = {"projectId": "benchstart", "workspaceId": f"w{counter}"}
            response = await http.post("/api/v1/containers/start", json=ref)
            info = response.json().get("data") or {}
            if response.status_code != 200 or not info.get("running"):
                raise BenchError(f"/start answered {response.status_code}: {response.text[:500]}")
            made_ids.append(str(info["id"]))
            made_volumes.append(str(info["volume"]))

        return ours

    cold_instance = f"{bench.server.instance}-cold"
    cold: Server | None = None
    try:
        before = await bench.pool()
        ours_stats, raw_stats = await bench.paired(bench.plan.starts, ours_on(bench.http), raw, bench.pool_full)
        after = await bench.pool()
        bench.details["start_pool"] = {
            "size": after["size"],
            "claims": after["hits"] - before["hits"],
            "cold_creates": after["misses"] - before["misses"],
            "rounds": bench.plan.starts + bench.plan.warmup,
        }
        bench.rows.append(Row("start_new_pool", "b. POST /start, new, warm pool", ours_stats, raw_stats, raw_desc))
        cold = start_server(bench.tmp, cold_instance, bench.server.token, IDE_POOL_SIZE="0")
        headers = {"Authorization": f"Bearer {cold.token}"}
        async with httpx.AsyncClient(base_url=cold.url, headers=headers, timeout=HTTP_TIMEOUT) as http:
            ours_stats, raw_stats = await bench.paired(bench.plan.starts, ours_on(http), raw)
        bench.rows.append(Row("start_new_cold", "b. POST /start, new, pool off", ours_stats, raw_stats, raw_desc))
    finally:
        progress(f"start: removing the {len(made_ids)} containers it made")
        await bench.remove_containers(made_ids, made_volumes)
        if cold is not None:
            cold.stop()
        left = remove_instance(cold_instance)
        if left["containers_left"] or left["volumes_left"]:
            raise BenchError(f"the pool-off server left {left}")

    info = await bench.start_workspace("bench", "exec")
    container = bench.docker.containers.container(str(info["id"]))

    async def ours_running() -> None:
        await bench.start_workspace("bench", "exec")

    async def raw_running() -> None:
        await container.show()

    ours_stats, raw_stats = await bench.paired(bench.plan.fast, ours_running, raw_running)
    bench.rows.append(
        Row(
            "start_running",
            "b. POST /start, already running",
            ours_stats,
            raw_stats,
            "aiodocker container inspect (all Docker has to do for a running container)",
        )
    )
