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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp
import httpx
from aiodocker.volumes import DockerVolume
from machine import machine_info
from measure import BenchError, Plan, Row, Stats, elapsed_ms, memory_kb, progress

from tests.harness import DISKS, DOCKER, DOCKER_CLI_TIMEOUT, INSTANCE_LABEL, Server, launch, remove_instance

IMAGE = "ide-backend/workspace:latest"
USER = "1000:1000"
# The backend's container config (ide_backend/service/containers.py `container_spec`, runtime/docker/parsing.py
# `container_config`, settings.py defaults), restated here so the raw figures use the same config without importing
# the code under test. `Bench.probe` compares it with a container the server made and reports any difference.
TEMPLATE_IMAGES = {  # the built-in templates (service/templates.py); every limit is the settings' default
    "base": IMAGE,
    "python": "ide-backend/python:latest",
    "node": "ide-backend/node:latest",
    "vscode": "ide-backend/code-server:latest",
}
CAPS = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "NET_BIND_SERVICE"]
MEMORY_BYTES = 2048 * 1024 * 1024
NETWORK = "ide-workspaces"  # IDE_NETWORK=isolated with no IDE_EGRESS_ALLOW (runtime/docker/network.py)
HOME = "/home/coder"
TMP = "/tmp"  # noqa: S108 (the container's /tmp, on its disk)
DISK_BYTES = 10240 * 1024 * 1024  # IDE_DISK_LIMIT_MB
DISK_LABEL = "ide-backend.disk"  # on each of a disk's volumes: the disk's name (harness.remove_instance reads it)
STOP_TIMEOUT = 5  # IDE_STOP_TIMEOUT
HTTP_TIMEOUT = 300.0  # seconds for one HTTP request (a 10 MB sync under load included)

# A bounded disk by hand, as runtime/docker/disk.py's script makes and removes one (same root, lock, mkfs options,
# mount options and folders): $1 root, $2 create|remove, $3 the workspace volume's name, then size and owner.
RAW_DISK = """set -eu
root=$1 action=$2 d=$1/$3
mkdir -p "$root"
exec 9>"$root/.lock"
flock 9
if [ "$action" = create ]; then
    mkdir -p "$d/fs"
    truncate -s "$4" "$d/disk.new"
    mkfs.ext4 -q -F -m 0 -E lazy_itable_init=1,lazy_journal_init=1 "$d/disk.new"
    mv "$d/disk.new" "$d/disk.img"
    mount -o loop,nosuid,nodev,noatime,discard "$d/disk.img" "$d/fs"
    mkdir -p "$d/fs/workspace" "$d/fs/home" "$d/fs/tmp"
    chown "$5" "$d/fs/workspace" "$d/fs/home"
    chmod 1777 "$d/fs/tmp"
else
    if mountpoint -q "$d/fs"; then umount "$d/fs" || umount -l "$d/fs"; fi
    rm -rf -- "$d"
fi
"""


@dataclass(frozen=True)
class RawWorkspace:
    """A container made by raw Docker calls, with its volumes (and bounded disk)."""

    container_id: str
    volume: str
    disk: bool

    @property
    def volumes(self) -> list[str]:
        """In the order they are removed: the disk's home and /tmp volumes first, as the backend does."""
        return [f"{self.volume}-home", f"{self.volume}-tmp", self.volume] if self.disk else [self.volume]


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
        self.disks = False  # whether the server's workspaces have bounded disks here (probe() finds out)
        self.templates = list(TEMPLATE_IMAGES)  # the built-in templates whose image is here (run_cases() finds out)
        self._raw_count = 0

    # ours

    async def post(
        self, endpoint: str, body: dict[str, Any] | bytes, http: httpx.AsyncClient | None = None
    ) -> dict[str, Any]:
        """POST to the API (of the bench's server, or the one `http` talks to); any failure (HTTP error status or
        success false) raises."""
        http = http or self.http
        url = f"/api/v1/containers/{endpoint}"
        if isinstance(body, bytes):
            response = await http.post(url, content=body, headers={"content-type": "application/json"})
        else:
            response = await http.post(url, json=body)
        data: dict[str, Any] = response.json()
        if response.status_code != 200 or not data.get("success"):
            raise BenchError(f"POST {endpoint} answered {response.status_code}: {str(data)[:500]}")
        return data

    async def start_workspace(
        self, project: str, workspace: str, template: str | None = None, http: httpx.AsyncClient | None = None
    ) -> dict[str, Any]:
        body = {"projectId": project, "workspaceId": workspace}
        if template is not None:
            body["template"] = template
        info: dict[str, Any] = (await self.post("start", body, http))["data"]
        if not info.get("running") or not info.get("id"):
            raise BenchError(f"/start of {project}/{workspace} did not leave it running: {info}")
        if template is not None and info.get("template") != template:
            raise BenchError(f"/start of {project}/{workspace} with template {template} made {info.get('template')}")
        return info

    @contextlib.asynccontextmanager
    async def side_server(self, suffix: str, **settings: str) -> AsyncIterator[httpx.AsyncClient]:
        """A second server for a few rows (its own instance `<instance>-<suffix>`, the same token), stopped and swept
        away afterwards; yields a client of it."""
        instance = f"{self.server.instance}-{suffix}"
        server: Server | None = None
        try:
            server = start_server(self.tmp, instance, self.server.token, **settings)
            headers = {"Authorization": f"Bearer {server.token}"}
            async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=HTTP_TIMEOUT) as http:
                yield http
        finally:
            if server is not None:
                server.stop()
            left = await asyncio.to_thread(remove_instance, instance)
            if left["containers_left"] or left["volumes_left"]:
                raise BenchError(f"the server {instance} left {left}")

    # raw

    async def probe(self) -> None:
        """Before the cases: wait until the server's warm pools are full (they fill at start-up and would otherwise
        weigh on the first case), then compare the raw config with a container the server made (bench/exec, also
        what tells whether workspaces get bounded disks here)."""
        await self.pool_full(timeout=300)
        info = await self.start_workspace("bench", "exec")
        made = await self.docker.containers.container(str(info["id"])).show()
        self.disks = any(m.get("Target") == TMP for m in made["HostConfig"].get("Mounts") or [])
        if self.disks and os.geteuid() != 0:
            raise BenchError("the server's workspaces have bounded disks: the raw side needs root to make its own")
        drift = config_drift(made, self.raw_config("volume", IMAGE, self.disks))
        self.details["raw_config"] = {"bounded_disks": self.disks, "differs_from_the_backend": drift}
        for line in drift:
            progress(f"raw config differs from the backend's: {line}")

    def raw_config(self, volume: str, image: str = IMAGE, disk: bool = False) -> dict[str, Any]:
        """The container config the backend uses for a template of this image (see the constants above), restated."""
        mounts = [{"Type": "volume", "Source": volume, "Target": "/workspace"}]
        if disk:
            mounts += [
                {"Type": "volume", "Source": f"{volume}-home", "Target": HOME},
                {"Type": "volume", "Source": f"{volume}-tmp", "Target": TMP},
            ]
        return {
            "Image": image,
            "Hostname": "workspace",
            "User": USER,
            "WorkingDir": "/workspace",
            "Env": [f"PASSWORD={secrets.token_urlsafe(18)}", "WORKSPACE_DIR=/workspace"],
            "Labels": self.raw_labels(),
            "ExposedPorts": {"8080/tcp": {}},
            "OpenStdin": True,
            "StdinOnce": False,
            "HostConfig": {
                "Init": True,
                "Mounts": mounts,
                "Memory": MEMORY_BYTES,
                "MemorySwap": MEMORY_BYTES,
                "NanoCpus": 2_000_000_000,
                "PidsLimit": 512,
                "SecurityOpt": ["no-new-privileges:true"],
                "CapDrop": ["ALL"],
                "CapAdd": list(CAPS),
                "PortBindings": {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]},
                "RestartPolicy": {"Name": "no"},
                "LogConfig": {"Type": "none", "Config": {}},
                "NetworkMode": NETWORK,
                "ReadonlyRootfs": disk,
            },
        }

    def raw_labels(self, **more: str) -> dict[str, str]:
        return {INSTANCE_LABEL: self.server.instance, "ide-backend.bench": "raw", **more}

    async def raw_start(self, template: str = "base") -> RawWorkspace:
        """What the backend does for a new workspace of this template, by hand: the volume (with a bounded disk when
        the server's have one: its three volumes, then the disk), container create, start."""
        name, ws = await self.raw_volumes()
        container = await self.docker.containers.create(
            self.raw_config(ws.volume, TEMPLATE_IMAGES[template], ws.disk), name=name
        )
        await container.start()
        return RawWorkspace(str(container.id), ws.volume, ws.disk)

    async def raw_volumes(self) -> tuple[str, RawWorkspace]:
        """A new raw workspace's volume, by hand (with a bounded disk when the server's have one: its three volumes,
        then the disk), and the name for its container (none made yet)."""
        self._raw_count += 1
        name = f"ide-{self.server.instance}-raw-{self._raw_count}"
        ws = RawWorkspace("", f"{name}-data", self.disks)
        if ws.disk:
            for folder, volume in zip(("home", "tmp", "workspace"), ws.volumes, strict=True):
                await self.docker.volumes.create(  # type: ignore[no-untyped-call]
                    {
                        "Name": volume,
                        "Driver": "local",
                        "DriverOpts": {"type": "none", "o": "bind", "device": f"{DISKS}/{ws.volume}/fs/{folder}"},
                        "Labels": self.raw_labels(**{DISK_LABEL: ws.volume}),
                    }
                )
            await self.raw_disk("create", ws.volume, str(DISK_BYTES), USER)
        else:
            await self.docker.volumes.create({"Name": ws.volume, "Labels": self.raw_labels()})  # type: ignore[no-untyped-call]
        return name, ws

    async def raw_remove(self, ws: RawWorkspace) -> None:
        """What the backend's delete removes, by hand: `docker container rm -f` (no -v; when there is one),
        `docker volume rm` of each volume, then the disk (unmounted, its folder deleted)."""
        if ws.container_id:
            await self.docker.containers.container(ws.container_id).delete(force=True)
        for volume in ws.volumes:
            await DockerVolume(self.docker, volume).delete()  # type: ignore[no-untyped-call]
        if ws.disk:
            await self.raw_disk("remove", ws.volume)

    async def raw_copy(self, source: RawWorkspace, target: RawWorkspace) -> None:
        """What the backend's fork does once the new volumes exist, by hand: a root helper container of the workspace
        image (no network) with the source's volumes read-only and the target's, the source paused from the helper's
        start to its exit, `cp -a` of the workspace folder (and of the home folder, with disks), the helper removed."""
        mounts: list[dict[str, Any]] = [
            {"Type": "volume", "Source": source.volume, "Target": "/from/workspace", "ReadOnly": True},
            {"Type": "volume", "Source": target.volume, "Target": "/to/workspace"},
        ]
        script = "cp -a /from/workspace/. /to/workspace/"
        if source.disk and target.disk:
            mounts += [
                {"Type": "volume", "Source": f"{source.volume}-home", "Target": "/from/home", "ReadOnly": True},
                {"Type": "volume", "Source": f"{target.volume}-home", "Target": "/to/home"},
            ]
            script += " && cp -a /from/home/. /to/home/"
        config: dict[str, Any] = {
            "Image": IMAGE,
            "Entrypoint": ["sh", "-c", script],
            "User": "0:0",
            "Labels": self.raw_labels(),
            "HostConfig": {
                "Mounts": mounts,
                "NetworkMode": "none",
                "CapDrop": ["ALL"],
                "CapAdd": ["CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID"],
                "SecurityOpt": ["no-new-privileges:true"],
            },
        }
        helper = await self.docker.containers.create(config)
        frozen = self.docker.containers.container(source.container_id)
        try:
            await frozen.pause()
            try:
                await helper.start()
                result = await helper.wait()
            finally:
                await frozen.unpause()
        finally:
            await helper.delete(force=True)
        if result.get("StatusCode") != 0:
            raise BenchError(f"raw copy exited {result.get('StatusCode')}")

    async def raw_disk(self, action: str, *args: str) -> None:
        process = await asyncio.create_subprocess_exec(
            "sh", "-c", RAW_DISK, "raw-disk", str(DISKS), action, *args,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await process.communicate()
        if process.returncode != 0:
            raise BenchError(f"raw disk {action} {args[0]} failed: {err.decode(errors='replace')}")

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

    # helpers

    async def paired(
        self,
        n: int,
        ours: Callable[[], Awaitable[object]],
        raw: Callable[[], Awaitable[object]],
        before_ours: Callable[[], Awaitable[object]] | None = None,
        before_raw: Callable[[], Awaitable[object]] | None = None,
    ) -> tuple[Stats, Stats]:
        """Warm up, then time n rounds of ours and raw, alternating which goes first to spread drift evenly.
        `before_ours` and `before_raw` run ahead of every call of their side, outside the clock."""
        ours_ms: list[float] = []
        raw_ms: list[float] = []
        order = [(ours, before_ours, ours_ms), (raw, before_raw, raw_ms)]
        for i in range(-self.plan.warmup, n):  # i < 0: warm-up, ours first
            for fn, before, out in order if i % 2 == 0 or i < 0 else reversed(order):
                if before is not None:
                    await before()
                began = time.perf_counter()
                await fn()
                if i >= 0:
                    out.append(elapsed_ms(began))
        return Stats(tuple(ours_ms)), Stats(tuple(raw_ms))

    async def pool(self, http: httpx.AsyncClient | None = None) -> dict[str, Any]:
        """A server's warm pool counters (GET /api/v1/stats): totals, and per template under `templates`."""
        pool: dict[str, Any] = (await (http or self.http).get("/api/v1/stats")).json()["pool"]
        return pool

    async def pool_full(self, http: httpx.AsyncClient | None = None, timeout: float = 60.0) -> None:
        """Until every warm pool of a server holds as many ready containers as its size."""
        deadline = time.monotonic() + timeout
        while (pool := await self.pool(http))["ready"] < pool["size"]:
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


def config_drift(made: dict[str, Any], restated: dict[str, Any]) -> list[str]:
    """Where the restated raw config differs from a container the server made (its inspect): every key the bench
    sets but the per-container ones (name, env, labels, volume names), the mounts by target."""
    drift: list[str] = []
    skip = ("Env", "Labels", "HostConfig")
    pairs = [(key, made["Config"].get(key), value) for key, value in restated.items() if key not in skip]
    pairs += [
        (f"HostConfig.{key}", made["HostConfig"].get(key), value)
        for key, value in restated["HostConfig"].items()
        if key != "Mounts"
    ]
    pairs.append(
        (
            "mount targets",
            sorted(m["Target"] for m in made["HostConfig"].get("Mounts") or []),
            sorted(m["Target"] for m in restated["HostConfig"]["Mounts"]),
        )
    )
    for key, backend, bench in pairs:
        if key == "HostConfig.RestartPolicy":
            backend = {"Name": (backend or {}).get("Name")}
        if backend != bench:
            drift.append(f"{key}: the backend's {backend!r}, the bench's {bench!r}")
    return drift


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
        images: dict[str, Any] = {}
        for template, name in TEMPLATE_IMAGES.items():
            with contextlib.suppress(aiodocker.DockerError):  # a template whose image is not built is skipped
                found = await docker.images.inspect(name)
                images[template] = {"name": name, "id": found.get("Id"), "created": found.get("Created")}
        machine["template_images"] = images
        bench = Bench(server, plan, tmp, http, docker)
        bench.templates = list(images)
        await bench.probe()
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
