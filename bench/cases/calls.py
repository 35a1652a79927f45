"""a, b, d: one API call at a time (exec, /start of a running workspace, status) next to its smallest raw-Docker
equivalent."""

from __future__ import annotations

from measure import BenchError, Row, Stats
from runner import Bench


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


async def case_start_running(bench: Bench) -> None:
    """b. POST /start of a workspace that is already running vs a raw aiodocker container inspect."""
    info = await bench.start_workspace("bench", "exec")
    container = bench.docker.containers.container(str(info["id"]))

    async def ours() -> None:
        await bench.start_workspace("bench", "exec")

    async def raw() -> None:
        await container.show()

    ours_stats, raw_stats = await bench.paired(bench.plan.fast, ours, raw)
    bench.rows.append(
        Row(
            "start_running",
            "b. POST /start, already running",
            ours_stats,
            raw_stats,
            "aiodocker container inspect (all Docker has to do for a running container)",
        )
    )
