"""One bench run: the server under test, the clients, the raw-Docker equivalents of our calls, the paired timing
loop, and every result. The cases (cases/) get a `Bench`; `run_cases` gives them one after another."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp
import httpx
from aiodocker.volumes import DockerVolume
from machine import machine_info
from measure import BenchError, Plan, Row, Stats, elapsed_ms, memory_kb, progress

from tests.harness import DOCKER, DOCKER_CLI_TIMEOUT, INSTANCE_LABEL, Server, launch

IMAGE = "ide-backend/workspace:latest"
USER = "1000:1000"
# The backend's container settings (ide_backend/runtime/docker.py and settings.py defaults), restated here so the
# raw figures use the same container config without importing the code under test.
CAPS = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "NET_BIND_SERVICE"]
MEMORY_BYTES = 2048 * 1024 * 1024
HTTP_TIMEOUT = 300.0  # seconds for one HTTP request (a 10 MB sync under load included)


def start_server(tmp: Path, instance: str, token: str, **settings: str) -> Server:
    """`python -m ide_backend serve` with every setting at its default but `settings`, in its own session (Ctrl-C
    reaches the bench, which then shuts the server down itself)."""
    env = {"IDE_DATA_DIR": str(tmp / f"data-{instance}"), **settings}
    return launch(tmp, token=token, instance=instance, env=env, own_session=True, timeout=60)


class Bench:
    """Holds the clients, the raw containers and every result of one run."""

    def __init__(self, server: Server, plan: Plan, tmp: Path, http: httpx.AsyncClient, docker: aiodocker.Docker):
        self.server = server
        self.plan = plan
        self.tmp = tmp
        self.http = http
        self.docker = docker
        self.rows: list[Row] = []
        self.details: dict[str, Any] = {}
        self._raw_count = 0

    # ours

    async def post(self, endpoint: str, body: dict[str, Any] | bytes) -> dict[str, Any]:
        """POST to the API; any failure (HTTP error status or success false) raises."""
        url = f"/api/v1/containers/{endpoint}"
        if isinstance(body, bytes):
            response = await self.http.post(url, content=body, headers={"content-type": "application/json"})
        else:
            response = await self.http.post(url, json=body)
        data: dict[str, Any] = response.json()
        if response.status_code != 200 or not data.get("success"):
            raise BenchError(f"POST {endpoint} answered {response.status_code}: {str(data)[:500]}")
        return data

    async def start_workspace(self, project: str, workspace: str) -> dict[str, Any]:
        data = await self.post("start", {"projectId": project, "workspaceId": workspace})
        info: dict[str, Any] = data["data"]
        if not info.get("running") or not info.get("id"):
            raise BenchError(f"/start of {project}/{workspace} did not leave it running: {info}")
        return info

    # raw

    def raw_config(self, volume: str) -> dict[str, Any]:
        """The container config the backend uses (see ide_backend/runtime/docker.py), restated."""
        return {
            "Image": IMAGE,
            "Hostname": "workspace",
            "User": USER,
            "WorkingDir": "/workspace",
            "Env": [f"PASSWORD={secrets.token_urlsafe(18)}", "WORKSPACE_DIR=/workspace"],
            "Labels": self.raw_labels(),
            "ExposedPorts": {"8080/tcp": {}},
            "HostConfig": {
                "Init": True,
                "Mounts": [{"Type": "volume", "Source": volume, "Target": "/workspace"}],
                "Memory": MEMORY_BYTES,
                "MemorySwap": MEMORY_BYTES,
                "NanoCpus": 2_000_000_000,
                "PidsLimit": 512,
                "SecurityOpt": ["no-new-privileges:true"],
                "CapDrop": ["ALL"],
                "CapAdd": list(CAPS),
                "PortBindings": {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]},
                "RestartPolicy": {"Name": "no"},
            },
        }

    def raw_labels(self) -> dict[str, str]:
        return {INSTANCE_LABEL: self.server.instance, "ide-backend.bench": "raw"}

    async def raw_start(self) -> tuple[str, str]:
        """Raw volume create + container create + start. Returns the container id and the volume name."""
        self._raw_count += 1
        name = f"ide-{self.server.instance}-raw-{self._raw_count}"
        volume = f"{name}-data"
        await self.docker.volumes.create({"Name": volume, "Labels": self.raw_labels()})  # type: ignore[no-untyped-call]
        container = await self.docker.containers.create(self.raw_config(volume), name=name)
        await container.start()
        return str(container.id), volume

    async def raw_exec(
        self,
        container_id: str,
        docker: aiodocker.Docker | None = None,
        start_timeout: aiohttp.ClientTimeout | None = None,
    ) -> bool:
        """One full exec round trip of `sh -c true` as USER: create, start, read to end, inspect.
        Returns whether the exec still showed Running at that one inspect."""
        container = (docker or self.docker).containers.container(container_id)
        execution = await container.exec(["sh", "-c", "true"], stdout=True, stderr=True, user=USER)
        async with execution.start(detach=False, timeout=start_timeout) as stream:
            while await stream.read_out() is not None:
                pass
        info = await execution.inspect()
        if not info.get("Running") and info.get("ExitCode") not in (0, None):
            raise BenchError(f"raw exec exited {info.get('ExitCode')}")
        return bool(info.get("Running"))

    async def remove_containers(self, ids: list[str], volumes: list[str]) -> None:
        for cid in ids:
            with contextlib.suppress(aiodocker.DockerError):
                await self.docker.containers.container(cid).delete(force=True)
        for name in volumes:
            with contextlib.suppress(aiodocker.DockerError):
                await DockerVolume(self.docker, name).delete()  # type: ignore[no-untyped-call]

    # helpers

    async def paired(
        self,
        n: int,
        ours: Callable[[], Awaitable[object]],
        raw: Callable[[], Awaitable[object]],
        before_ours: Callable[[], Awaitable[object]] | None = None,
    ) -> tuple[Stats, Stats]:
        """Warm up, then time n rounds of ours and raw, alternating which goes first to spread drift evenly.
        `before_ours` runs ahead of every call of ours, outside the clock."""
        for _ in range(self.plan.warmup):
            if before_ours is not None:
                await before_ours()
            await ours()
            await raw()
        ours_ms: list[float] = []
        raw_ms: list[float] = []
        for i in range(n):
            order = [(ours, ours_ms), (raw, raw_ms)]
            for fn, out in order if i % 2 == 0 else reversed(order):
                if fn is ours and before_ours is not None:
                    await before_ours()
                began = time.perf_counter()
                await fn()
                out.append(elapsed_ms(began))
        return Stats(tuple(ours_ms)), Stats(tuple(raw_ms))

    async def pool(self) -> dict[str, int]:
        """The server's warm pool counters (GET /api/v1/stats)."""
        pool: dict[str, int] = (await self.http.get("/api/v1/stats")).json()["pool"]
        return pool

    async def pool_full(self, timeout: float = 60.0) -> None:
        """Until the warm pool holds as many ready containers as its size."""
        deadline = time.monotonic() + timeout
        while (pool := await self.pool())["ready"] < pool["size"]:
            if time.monotonic() > deadline:
                raise BenchError(f"the warm pool did not fill within {timeout:.0f} s: {pool}")
            await asyncio.sleep(0.02)

    async def docker_cp(self, source: str, dest: str) -> None:
        process = await asyncio.create_subprocess_exec(
            DOCKER, "cp", source, dest, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        try:
            async with asyncio.timeout(DOCKER_CLI_TIMEOUT):
                _, err = await process.communicate()
        finally:
            if process.returncode is None:  # timed out or cancelled: do not leave it to outlive the loop
                process.kill()
                await process.wait()
        if process.returncode != 0:
            raise BenchError(f"docker cp {source} {dest} failed: {err.decode(errors='replace')}")

    def note_memory(self, when: str) -> None:
        self.details.setdefault("server_memory_kb", {})[when] = memory_kb(self.server.pid)


Case = Callable[[Bench], Awaitable[None]]


@contextlib.asynccontextmanager
async def clients(server: Server) -> AsyncIterator[tuple[httpx.AsyncClient, aiodocker.Docker]]:
    headers = {"Authorization": f"Bearer {server.token}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=HTTP_TIMEOUT) as http:
        docker = aiodocker.Docker(timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT))
        try:
            yield http, docker
        finally:
            await docker.close()


async def run_cases(
    server: Server, plan: Plan, tmp: Path, cases: list[tuple[str, Case]]
) -> tuple[Bench, dict[str, Any]]:
    task = asyncio.current_task()
    if task is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    async with clients(server) as (http, docker):
        machine = machine_info(await docker.version())
        others = len(await docker.containers.list())
        machine["other_running_containers_at_start"] = others
        image = await docker.images.inspect(IMAGE)
        machine["workspace_image"] = {"name": IMAGE, "id": image.get("Id"), "created": image.get("Created")}
        bench = Bench(server, plan, tmp, http, docker)
        bench.note_memory("at_start")
        for name, case in cases:
            progress(f"{name}: running (budget {plan.budgets[name]:.0f} s)")
            began = time.perf_counter()
            async with asyncio.timeout(plan.budgets[name]):
                await case(bench)
            bench.details.setdefault("case_wall_s", {})[name] = round(time.perf_counter() - began, 2)
            progress(f"{name}: done in {time.perf_counter() - began:.1f} s")
        bench.note_memory("at_end")
        machine["loadavg_at_end"] = list(os.getloadavg())
    return bench, machine
