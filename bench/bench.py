"""Benchmark ide-backend against raw Docker, both measured in the same run on the same engine.

    .venv/bin/python bench/bench.py [--quick] [--json PATH] [--case NAME ...]

Starts a real server (`python -m ide_backend serve`) with its own IDE_INSTANCE, times each API call next to the
smallest raw-Docker (aiodocker or docker CLI) equivalent, prints a table and writes every number as JSON. Every
container and volume it makes (the server's and the raw ones) carries the label ide-backend.instance=<instance> and
is removed at the end, also on failure, Ctrl-C and SIGTERM. See bench/README.md for what each case measures.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp
import httpx
import websockets
from aiodocker.volumes import DockerVolume

REPO = Path(__file__).resolve().parent.parent
DEFAULT_JSON = REPO / "bench" / "results" / "latest.json"
DOCKER = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"
IMAGE = "ide-backend/workspace:latest"
INSTANCE_LABEL = "ide-backend.instance"
USER = "1000:1000"
# The backend's container settings (ide_backend/runtime/docker.py and settings.py defaults), restated here so the
# raw figures use the same container config without importing the code under test.
CAPS = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "NET_BIND_SERVICE"]
MEMORY_BYTES = 2048 * 1024 * 1024

# Sync payload: FILE_COUNT files of FILE_BYTES bytes in FOLDERS folders (~10 MB).
FILE_COUNT = 1000
FILE_BYTES = 10 * 1024
FOLDERS = 20
START_CONCURRENCY = 10  # concurrent /start requests when bringing up the concurrency case's workspaces
HTTP_TIMEOUT = 300.0  # seconds for one HTTP request (a 10 MB sync under load included)
DOCKER_CLI_TIMEOUT = 120.0


@dataclass(frozen=True)
class Plan:
    """How many repetitions each case gets, and its time budget (seconds)."""

    fast: int  # exec, status, start of a running workspace
    starts: int  # start of a new workspace / raw create+start
    syncs: int  # 10 MB tree syncs and docker cp
    one_file: int  # sequential one-file /sync requests
    cp_one: int  # docker cp of one file
    workspaces: int  # concurrency case
    burst: int  # concurrent execs
    warmup: int
    stream_mb: int = 200  # websocket stream case: MB of /dev/zero, base64-encoded (4/3 of it on the wire)
    streams: int = 3
    budgets: dict[str, float] = field(
        default_factory=lambda: {
            "exec": 300,
            "status": 120,
            "start": 600,
            "sync": 1200,
            "concurrency": 900,
            "ws_stream": 900,
        }
    )

    @classmethod
    def full(cls) -> Plan:
        return cls(fast=50, starts=10, syncs=10, one_file=1000, cp_one=50, workspaces=50, burst=500, warmup=3)

    @classmethod
    def quick(cls) -> Plan:
        return cls(
            fast=10,
            starts=3,
            syncs=3,
            one_file=100,
            cp_one=10,
            workspaces=10,
            burst=100,
            warmup=1,
            stream_mb=20,
            streams=2,
        )


class BenchError(RuntimeError):
    pass


# -- statistics ---------------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); q in [0, 100]."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


@dataclass(frozen=True)
class Stats:
    """Latencies in milliseconds."""

    samples: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.samples)

    @property
    def median(self) -> float:
        return percentile(list(self.samples), 50)

    @property
    def p95(self) -> float:
        return percentile(list(self.samples), 95)

    @property
    def p99(self) -> float:
        return percentile(list(self.samples), 99)

    def to_json(self) -> dict[str, Any]:
        values = list(self.samples)
        return {
            "n": self.n,
            "median_ms": round(self.median, 3),
            "p95_ms": round(self.p95, 3),
            "p99_ms": round(self.p99, 3),
            "min_ms": round(min(values), 3),
            "max_ms": round(max(values), 3),
            "mean_ms": round(sum(values) / len(values), 3),
            "samples_ms": [round(v, 3) for v in values],
        }


@dataclass(frozen=True)
class Row:
    """One line of the table: our figure next to raw Docker's."""

    key: str
    label: str
    ours: Stats
    raw: Stats | None
    raw_label: str

    @property
    def ratio(self) -> float | None:
        if self.raw is None or self.raw.median <= 0:
            return None
        return self.ours.median / self.raw.median

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "label": self.label,
            "ours": self.ours.to_json(),
            "raw": self.raw.to_json() if self.raw else None,
            "raw_label": self.raw_label,
            "ratio": round(self.ratio, 3) if self.ratio is not None else None,
        }


def fmt_ms(value: float) -> str:
    if value != value:  # NaN
        return "-"
    if value >= 10_000:
        return f"{value / 1000:.1f} s"
    if value >= 1000:
        return f"{value / 1000:.2f} s"
    return f"{value:.1f} ms"


def render_table(rows: list[Row]) -> str:
    header = ["case", "n", "ours median", "ours p95", "raw median", "raw p95", "ratio"]
    lines: list[list[str]] = [header]
    for row in rows:
        raw = row.raw
        lines.append(
            [
                row.label,
                str(row.ours.n) if raw is None or raw.n == row.ours.n else f"{row.ours.n}/{raw.n}",
                fmt_ms(row.ours.median),
                fmt_ms(row.ours.p95) if row.ours.n > 1 else "-",
                fmt_ms(raw.median) if raw else "-",
                fmt_ms(raw.p95) if raw and raw.n > 1 else "-",
                f"{row.ratio:.2f}x" if row.ratio is not None else "-",
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]

    def fmt(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True)]
        return "| " + " | ".join([first, *rest]) + " |"

    out = [fmt(lines[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [fmt(line) for line in lines[1:]]
    out.append("")
    out.append("raw is, per case:")
    out += [f"  {row.label}: {row.raw_label}" for row in rows]
    return "\n".join(out)


# -- the server under test and clean-up -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def docker_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DOCKER, *args], capture_output=True, text=True, check=check, timeout=DOCKER_CLI_TIMEOUT)


def leftovers(instance: str) -> tuple[list[str], list[str]]:
    label = f"label={INSTANCE_LABEL}={instance}"
    containers = docker_cli("ps", "-aq", "--filter", label).stdout.split()
    volumes = docker_cli("volume", "ls", "-q", "--filter", label).stdout.split()
    return containers, volumes


def remove_instance(instance: str) -> dict[str, int]:
    """Remove every container, then every volume, labelled with this instance. Returns what is left (0 and 0)."""
    containers, volumes = leftovers(instance)
    if containers:
        docker_cli("rm", "-f", *containers, check=False)
    if volumes:
        docker_cli("volume", "rm", "-f", *volumes, check=False)
    containers, volumes = leftovers(instance)
    return {
        "containers_left": len(containers),
        "volumes_left": len(volumes),
    }


class Server:
    """`python -m ide_backend serve` as a subprocess in its own session (Ctrl-C reaches us, not it)."""

    def __init__(self, tmp: Path, instance: str, token: str, env: dict[str, str] | None = None) -> None:
        self.instance = instance
        self.token = token
        self.env = env or {}  # settings other than the defaults (only the pool-off server of case b has any)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp / f"server-{instance}.log"
        self.data_dir = tmp / f"data-{instance}"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self.process is None:
            raise BenchError("the server is not running")
        return self.process.pid

    def start(self, timeout: float = 60.0) -> None:
        env = {
            **os.environ,
            "IDE_API_TOKEN": self.token,
            "IDE_INSTANCE": self.instance,
            "IDE_DATA_DIR": str(self.data_dir),
            **self.env,
        }
        with self.log_path.open("wb") as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                [sys.executable, "-m", "ide_backend", "serve", "--port", str(self.port)],
                env=env,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BenchError(f"the server exited early (code {self.process.returncode})")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            time.sleep(0.1)
        raise BenchError(f"the server did not answer /healthz within {timeout:.0f} s")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def memory_kb(self) -> dict[str, int]:
        """VmRSS and VmHWM (peak) of the server process, in kB."""
        values: dict[str, int] = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
        return values

    def reset_peak(self) -> bool:
        """Reset VmHWM to the current RSS (Linux >= 4.0, `echo 5 > /proc/PID/clear_refs`)."""
        try:
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        except OSError:
            return False
        return True

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"


# -- the benchmark ------------------------------------------------------------------------------------------


def progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def elapsed_ms(began: float) -> float:
    return (time.perf_counter() - began) * 1000


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
        self.details.setdefault("server_memory_kb", {})[when] = self.server.memory_kb()


# -- the cases ------------------------------------------------------------------------------------------------


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

    cold = Server(bench.tmp, f"{bench.server.instance}-cold", bench.server.token, env={"IDE_POOL_SIZE": "0"})
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
        cold.start()
        headers = {"Authorization": f"Bearer {cold.token}"}
        async with httpx.AsyncClient(base_url=cold.url, headers=headers, timeout=HTTP_TIMEOUT) as http:
            ours_stats, raw_stats = await bench.paired(bench.plan.starts, ours_on(http), raw)
        bench.rows.append(Row("start_new_cold", "b. POST /start, new, pool off", ours_stats, raw_stats, raw_desc))
    finally:
        progress(f"start: removing the {len(made_ids)} containers it made")
        await bench.remove_containers(made_ids, made_volumes)
        cold.stop()
        left = remove_instance(cold.instance)
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


def make_tree(root: Path) -> dict[str, str]:
    """FILE_COUNT files of FILE_BYTES ASCII bytes in FOLDERS folders, on disk and as a /sync `files` map."""
    files: dict[str, str] = {}
    per_folder = FILE_COUNT // FOLDERS
    for i in range(FILE_COUNT):
        rel = f"d{i // per_folder:02d}/f{i:04d}.txt"
        content = base64.b64encode(os.urandom(FILE_BYTES * 3 // 4)).decode()[:FILE_BYTES]
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        files[rel] = content
    return files


async def case_sync(bench: Bench) -> None:
    """c. /sync of ~10 MB in 1,000 files vs docker cp of the same tree; and as 1,000 one-file /sync requests."""
    plan = bench.plan
    tree = bench.tmp / "tree"
    files = make_tree(tree)
    total_bytes = sum(len(v) for v in files.values())
    ref = {"projectId": "bench", "workspaceId": "sync"}
    await bench.start_workspace("bench", "sync")
    raw_id, _ = await bench.raw_start()
    tag = {"ours": 0, "raw": 0}

    def body(prefix: str) -> bytes:
        return json.dumps({**ref, "files": {f"{prefix}/{k}": v for k, v in files.items()}}).encode()

    # A new tree each round (new<k>/d00..d19/...), ours and docker cp alternating which goes first; the request
    # body is encoded before the clock starts.
    next_body = body("new0")
    body_bytes = len(next_body)

    async def raw_new() -> None:
        tag["raw"] += 1
        await bench.docker_cp(str(tree), f"{raw_id}:/workspace/new{tag['raw']}")

    ours_ms: list[float] = []
    raw_ms: list[float] = []
    for i in range(plan.warmup + plan.syncs):
        for which in ("ours", "raw") if i % 2 == 0 else ("raw", "ours"):
            began = time.perf_counter()
            if which == "ours":
                await bench.post("sync", next_body)
            else:
                await raw_new()
            took = elapsed_ms(began)
            if which == "ours":
                tag["ours"] += 1
                next_body = body(f"new{tag['ours']}")
            if i >= plan.warmup:
                (ours_ms if which == "ours" else raw_ms).append(took)
    bench.rows.append(
        Row(
            "sync_new",
            f"c. POST /sync {FILE_COUNT} files, {total_bytes / 1e6:.0f} MB, new tree",
            Stats(tuple(ours_ms)),
            Stats(tuple(raw_ms)),
            "`docker cp DIR ctr:/workspace/NEW` of the same tree (CLI process included) into a running container "
            "of the same image",
        )
    )
    bench.note_memory("after_sync_new")

    # The same paths again: every folder exists, so the backend stats each of the 1,000 files before writing.
    over_body = body("over")
    await bench.post("sync", over_body)
    await bench.docker_cp(f"{tree}/.", f"{raw_id}:/workspace/over")  # dest missing: created with the contents

    async def ours_over() -> None:
        await bench.post("sync", over_body)

    async def raw_over() -> None:
        await bench.docker_cp(f"{tree}/.", f"{raw_id}:/workspace/over")

    ours_stats, raw_stats = await bench.paired(plan.syncs, ours_over, raw_over)
    bench.rows.append(
        Row(
            "sync_overwrite",
            f"c. POST /sync {FILE_COUNT} files, overwrite",
            ours_stats,
            raw_stats,
            "`docker cp DIR/. ctr:/workspace/over` over the same files",
        )
    )

    # One file per request, sequentially: plan.one_file requests (all FILE_COUNT in a full run).
    items = list(files.items())[: plan.one_file]
    bodies = [json.dumps({**ref, "files": {f"one/{k}": v}}).encode() for k, v in items]
    one_ms: list[float] = []
    began_all = time.perf_counter()
    for one in bodies:
        began = time.perf_counter()
        await bench.post("sync", one)
        one_ms.append(elapsed_ms(began))
    total_ms = elapsed_ms(began_all)

    single = tree / items[0][0]
    cp_one_ms: list[float] = []
    for k in range(plan.warmup + plan.cp_one):
        began = time.perf_counter()
        await bench.docker_cp(str(single), f"{raw_id}:/workspace/one-{k}.txt")
        if k >= plan.warmup:
            cp_one_ms.append(elapsed_ms(began))
    whole_tree = len(bodies) == FILE_COUNT
    bench.rows.append(
        Row(
            "sync_one_by_one_total",
            f"c. {len(bodies)} one-file /sync requests, total",
            Stats((total_ms,)),
            raw_stats if whole_tree else None,
            "the `docker cp` of the whole tree (overwrite row)"
            if whole_tree
            else "none: --quick sends only part of the tree one file at a time",
        )
    )
    bench.rows.append(
        Row(
            "sync_one_file",
            "c. one-file /sync, per request",
            Stats(tuple(one_ms)),
            Stats(tuple(cp_one_ms)),
            "`docker cp FILE ctr:/workspace/one-K.txt` of one 10 KB file (CLI process included)",
        )
    )
    bench.details["sync"] = {
        "files": FILE_COUNT,
        "folders": FOLDERS,
        "file_bytes": FILE_BYTES,
        "content_bytes": total_bytes,
        "request_body_bytes": body_bytes,
        "one_by_one_requests": len(bodies),
        "one_by_one_total_ms": round(total_ms, 3),
        "raw_container": raw_id,
    }
    bench.note_memory("after_sync")


@dataclass
class Burst:
    """n calls started at once: each one's latency (failures included), and what failed."""

    latencies: list[float] = field(default_factory=list)
    ok_latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    wall_ms: float = 0.0

    @classmethod
    async def run(cls, n: int, one: Callable[[int], Awaitable[object]]) -> Burst:
        """Run one(0..n-1) concurrently; one raises on failure (BenchError, HTTP or Docker errors)."""
        burst = cls()

        async def timed(k: int) -> None:
            began = time.perf_counter()
            try:
                await one(k)
            except Exception as exc:  # every failure is counted, none stops the burst
                burst.errors.append(exc.args[0] if isinstance(exc, BenchError) else f"{type(exc).__name__}: {exc}")
            else:
                burst.ok_latencies.append(elapsed_ms(began))
            finally:
                burst.latencies.append(elapsed_ms(began))

        began = time.perf_counter()
        await asyncio.gather(*(timed(k) for k in range(n)))
        burst.wall_ms = elapsed_ms(began)
        return burst

    def to_json(self) -> dict[str, Any]:
        kinds: dict[str, int] = {}
        for error in self.errors:
            # One kind per message shape: ids and workspace container names vary, the rest does not.
            kind = re.sub(r"[0-9a-f]{64}", "<id>", error.split(" (")[0])
            kind = re.sub(r"ide-[a-z0-9_-]+-benchconc-w\d+-[0-9a-f]+", "<container>", kind)[:160]
            kinds[kind] = kinds.get(kind, 0) + 1
        ok = self.ok_latencies
        return {
            "requests": len(self.latencies),
            "errors": len(self.errors),
            "error_kinds": kinds,
            "error_examples": self.errors[:5],
            "p50_ms": round(percentile(self.latencies, 50), 3),
            "p99_ms": round(percentile(self.latencies, 99), 3),
            "max_ms": round(max(self.latencies), 3),
            "ok_p50_ms": round(percentile(ok, 50), 3) if ok else None,
            "ok_p99_ms": round(percentile(ok, 99), 3) if ok else None,
            "wall_ms": round(self.wall_ms, 3),
            "ok_per_second": round(len(ok) / (self.wall_ms / 1000), 2),
        }


async def case_concurrency(bench: Bench) -> None:
    """e. N workspaces, then a burst of concurrent /exec `true` spread over them; the same burst raw."""
    plan = bench.plan
    reset = bench.server.reset_peak()
    before = bench.server.memory_kb()
    limits = httpx.Limits(max_connections=plan.burst + 16, max_keepalive_connections=plan.burst + 16)
    headers = {"Authorization": f"Bearer {bench.server.token}"}
    async with httpx.AsyncClient(
        base_url=bench.server.url, headers=headers, timeout=HTTP_TIMEOUT, limits=limits
    ) as client:
        # Bring the workspaces up, START_CONCURRENCY at a time.
        gate = asyncio.Semaphore(START_CONCURRENCY)
        start_ms: list[float] = []
        start_errors: list[str] = []

        async def start_one(i: int) -> str | None:
            async with gate:
                began = time.perf_counter()
                try:
                    response = await client.post(
                        "/api/v1/containers/start", json={"projectId": "benchconc", "workspaceId": f"w{i:03d}"}
                    )
                    data = response.json()
                    if response.status_code != 200 or not data.get("data", {}).get("running"):
                        start_errors.append(f"{response.status_code}: {str(data)[:200]}")
                        return None
                    return str(data["data"]["id"])
                except httpx.HTTPError as exc:
                    start_errors.append(f"{type(exc).__name__}: {exc}")
                    return None
                finally:
                    start_ms.append(elapsed_ms(began))

        began_starts = time.perf_counter()
        ids = await asyncio.gather(*(start_one(i) for i in range(plan.workspaces)))
        starts_total_ms = elapsed_ms(began_starts)
        running = [(i, cid) for i, cid in enumerate(ids) if cid is not None]
        if not running:
            raise BenchError(f"no workspace of the concurrency case started: {start_errors[:3]}")
        progress(f"concurrency: {len(running)}/{plan.workspaces} workspaces up in {starts_total_ms / 1000:.1f} s")

        # Our burst, with the server's RSS sampled while it runs.
        samples: list[int] = []
        stop_sampling = asyncio.Event()

        async def sample_rss() -> None:
            while not stop_sampling.is_set():
                with contextlib.suppress(OSError, KeyError):
                    samples.append(bench.server.memory_kb()["VmRSS"])
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop_sampling.wait(), 0.05)

        async def exec_one(k: int) -> None:
            i, _ = running[k % len(running)]
            response = await client.post(
                "/api/v1/containers/exec",
                json={"projectId": "benchconc", "workspaceId": f"w{i:03d}", "command": "true"},
            )
            data = response.json()
            if response.status_code != 200:
                raise BenchError(f"{response.status_code} {data.get('message', data)}")
            if data.get("exitCode") != 0:
                raise BenchError(f"200 but exitCode {data.get('exitCode')} (durationMs {data.get('durationMs')})")

        sampler = asyncio.create_task(sample_rss())
        ours = await Burst.run(plan.burst, exec_one)
        stop_sampling.set()
        await sampler
        after = bench.server.memory_kb()

    # The same burst straight to Docker over the bench's own aiodocker client: aiohttp's default pool of 100
    # connections, as the backend has, but no connect timeout.
    # Counts the raw execs whose one inspect still showed Running (the backend polls those for up to 2 s).
    unfinished = {"raw": 0, "raw_backend_timeouts": 0}

    async def raw_one(k: int, key: str, docker: aiodocker.Docker, timeout: aiohttp.ClientTimeout | None) -> None:
        if await bench.raw_exec(running[k % len(running)][1], docker, timeout):
            unfinished[key] += 1

    await asyncio.sleep(2)  # let the engine settle between bursts
    raw = await Burst.run(plan.burst, lambda k: raw_one(k, "raw", bench.docker, None))

    # Once more with the backend's aiohttp timeouts (ide_backend/runtime/docker.py: session total=30 s and
    # connect=10 s, exec stream connect=30 s). aiohttp counts the wait for a free pooled connection as "connect",
    # so this tells the engine's limits apart from the client's timeouts.
    await asyncio.sleep(2)
    backend_like = aiodocker.Docker(timeout=aiohttp.ClientTimeout(total=30.0, connect=10.0))
    try:
        await backend_like.version()  # a fresh client negotiates the API version first: not part of the burst
        stream_timeout = aiohttp.ClientTimeout(connect=30.0)
        raw_timeouts = await Burst.run(
            plan.burst, lambda k: raw_one(k, "raw_backend_timeouts", backend_like, stream_timeout)
        )
    finally:
        await backend_like.close()

    bench.rows.append(
        Row(
            "concurrent_exec",
            f"e. {plan.burst} concurrent /exec, {len(running)} ws",
            Stats(tuple(ours.latencies)),
            Stats(tuple(raw.latencies)),
            f"{plan.burst} concurrent raw aiodocker exec round trips over the same containers (one client, "
            "aiohttp's default pool of 100 connections as the backend has, no connect timeout); latencies include "
            "failed requests",
        )
    )
    bench.details["concurrency"] = {
        "workspaces_requested": plan.workspaces,
        "workspaces_running": len(running),
        "start_concurrency": START_CONCURRENCY,
        "starts_total_ms": round(starts_total_ms, 3),
        "start_latency": Stats(tuple(start_ms)).to_json(),
        "start_errors": len(start_errors),
        "start_error_examples": start_errors[:5],
        "burst": plan.burst,
        "ours": ours.to_json(),
        "raw": {**raw.to_json(), "running_at_inspect": unfinished["raw"]},
        "raw_backend_timeouts": {
            **raw_timeouts.to_json(),
            "running_at_inspect": unfinished["raw_backend_timeouts"],
        },
        "server_memory_kb": {
            "peak_reset_before_case": reset,
            "rss_before": before.get("VmRSS"),
            "rss_after": after.get("VmRSS"),
            "rss_max_sampled_during_burst": max(samples) if samples else None,
            "peak_vmhwm": after.get("VmHWM"),
        },
    }


async def case_ws_stream(bench: Bench) -> None:
    """f. A websocket exec streaming `head -c N /dev/zero | base64` vs reading the same exec raw with aiodocker:
    the whole transfer (MB/s of output) and the time to the first byte."""
    info = await bench.start_workspace("bench", "stream")
    container = bench.docker.containers.container(str(info["id"]))
    command = f"head -c {bench.plan.stream_mb * 1024 * 1024} /dev/zero | base64 -w 0"
    expected = 4 * ((bench.plan.stream_mb * 1024 * 1024 + 2) // 3)
    url = f"{bench.server.url.replace('http', 'ws')}/api/v1/ws?token={bench.server.token}"
    first_ours: list[float] = []
    first_raw: list[float] = []
    messages_ours: list[int] = []
    chunks_raw: list[int] = []

    async def ours() -> None:
        async with websockets.connect(url, max_size=2**26) as ws:
            pid = "stream-" + secrets.token_hex(6)
            began = time.perf_counter()
            await ws.send(
                json.dumps(
                    {"type": "exec", "id": pid, "projectId": "bench", "workspaceId": "stream", "command": command}
                )
            )
            received, first, count = 0, None, 0
            while True:
                message = json.loads(await ws.recv())
                if message["type"] == "stdout":
                    first = first or elapsed_ms(began)
                    received += len(message["data"])
                    count += 1
                elif message["type"] == "exit":
                    break
                elif message["type"] == "error":
                    raise BenchError(f"websocket exec failed: {message}")
        if received != expected:
            raise BenchError(f"websocket stream delivered {received} bytes, expected {expected}")
        first_ours.append(first or 0.0)
        messages_ours.append(count)

    async def raw() -> None:
        began = time.perf_counter()
        execution = await container.exec(["sh", "-c", command], stdout=True, stderr=True, user=USER)
        received, first, count = 0, None, 0
        async with execution.start(detach=False) as stream:
            while (chunk := await stream.read_out()) is not None:
                first = first or elapsed_ms(began)
                received += len(chunk.data)
                count += 1
        if received != expected:
            raise BenchError(f"raw stream delivered {received} bytes, expected {expected}")
        first_raw.append(first or 0.0)
        chunks_raw.append(count)

    ours_stats, raw_stats = await bench.paired(bench.plan.streams, ours, raw)
    bench.rows.append(
        Row(
            "ws_stream",
            f"f. ws exec stream, {bench.plan.stream_mb} MB base64",
            ours_stats,
            raw_stats,
            "aiodocker exec of the same command, stream read to the end (the bytes, not decoded)",
        )
    )
    mb = expected / 1e6
    bench.details["ws_stream"] = {
        "output_mb": round(mb, 1),
        "ours_mb_per_s": round(mb / (ours_stats.median / 1000), 1),
        "raw_mb_per_s": round(mb / (raw_stats.median / 1000), 1),
        "throughput_ratio": round(raw_stats.median / ours_stats.median, 2),
        "ours_first_byte_ms": Stats(tuple(first_ours[-bench.plan.streams :])).to_json(),
        "raw_first_byte_ms": Stats(tuple(first_raw[-bench.plan.streams :])).to_json(),
        "ours_stdout_messages": messages_ours[-bench.plan.streams :],
        "raw_chunks": chunks_raw[-bench.plan.streams :],
    }


CASES: list[tuple[str, Callable[[Bench], Awaitable[None]]]] = [
    ("exec", case_exec),
    ("status", case_status),
    ("start", case_start),
    ("sync", case_sync),
    ("concurrency", case_concurrency),
    ("ws_stream", case_ws_stream),
]


def notes_summary(details: dict[str, Any]) -> str:
    """Figures that explain the table: where the time goes inside the server, and its memory."""
    lines: list[str] = []
    if pool := details.get("start_pool"):
        lines.append(
            f"start: warm pool of {pool['size']}: {pool['claims']} of {pool['rounds']} new workspaces (warm-up "
            f"included) claimed from it, {pool['cold_creates']} created cold"
        )
    if exec_details := details.get("exec"):
        server = exec_details["server_duration_ms"]
        lines.append(
            f"exec: the server's own durationMs (runtime.exec alone) median {fmt_ms(server['median_ms'])}, "
            f"p95 {fmt_ms(server['p95_ms'])}; raw exec still Running at its one inspect in "
            f"{exec_details['raw_running_at_first_inspect']}/{exec_details['raw_rounds_including_warmup']} rounds"
        )
    if sync := details.get("sync"):
        lines.append(
            f"sync: request body {sync['request_body_bytes'] / 1e6:.1f} MB for {sync['files']} files in "
            f"{sync['folders']} folders; {sync['one_by_one_requests']} one-file requests took "
            f"{fmt_ms(sync['one_by_one_total_ms'])} in all"
        )
    if stream := details.get("ws_stream"):
        lines.append(
            f"ws stream: {stream['output_mb']} MB, ours {stream['ours_mb_per_s']} MB/s vs raw "
            f"{stream['raw_mb_per_s']} MB/s ({stream['throughput_ratio']}x raw throughput); first byte median "
            f"ours {fmt_ms(stream['ours_first_byte_ms']['median_ms'])}, raw "
            f"{fmt_ms(stream['raw_first_byte_ms']['median_ms'])}; stdout messages per run "
            f"{stream['ours_stdout_messages']}, raw chunks {stream['raw_chunks']}"
        )
    memory = details.get("server_memory_kb", {})
    if "after_sync" in memory:
        lines.append(
            f"backend memory: RSS {memory['at_start']['VmRSS'] / 1024:.1f} MiB at start, peak (VmHWM) "
            f"{memory['after_sync']['VmHWM'] / 1024:.1f} MiB through the sync case"
        )
    return "\n".join(lines)


def concurrency_summary(details: dict[str, Any]) -> str:
    c = details.get("concurrency")
    if not c:
        return ""
    mem = c["server_memory_kb"]
    lines = [
        f"concurrency: {c['workspaces_running']}/{c['workspaces_requested']} workspaces started "
        f"{c['start_concurrency']} at a time in {c['starts_total_ms'] / 1000:.1f} s "
        f"(per start median {fmt_ms(c['start_latency']['median_ms'])}, {c['start_errors']} errors); "
        f"burst of {c['burst']} concurrent exec:",
    ]
    sides = {
        "ours": "ours",
        "raw": "raw (no connect timeout)",
        "raw_backend_timeouts": "raw with the backend's aiohttp timeouts",
    }
    for side, name in sides.items():
        s = c[side]
        ok = (
            f"ok p50 {fmt_ms(s['ok_p50_ms'])}, ok p99 {fmt_ms(s['ok_p99_ms'])}"
            if s["ok_p50_ms"] is not None
            else "none ok"
        )
        lines.append(
            f"  {name}: errors {s['errors']}/{s['requests']}, p50 {fmt_ms(s['p50_ms'])}, p99 {fmt_ms(s['p99_ms'])}, "
            f"{ok}, wall {fmt_ms(s['wall_ms'])}, {s['ok_per_second']:.1f} ok/s"
        )
        kinds = sorted(s["error_kinds"].items(), key=lambda item: -item[1])
        lines += [f"      {count} x {kind}" for kind, count in kinds[:5]]
        if len(kinds) > 5:
            lines.append(f"      ... {len(kinds) - 5} more kinds in the JSON")
        if s.get("running_at_inspect"):
            lines.append(f"      {s['running_at_inspect']} exec(s) still Running at their one inspect (not errors)")
    lines.append(
        f"  backend RSS: {mem['rss_before'] / 1024:.1f} MiB before, peak {mem['peak_vmhwm'] / 1024:.1f} MiB "
        f"(VmHWM{', reset before the case' if mem['peak_reset_before_case'] else ''}), "
        f"{mem['rss_after'] / 1024:.1f} MiB after"
    )
    return "\n".join(lines)


# -- machine facts --------------------------------------------------------------------------------------------


def machine_info(docker_version: dict[str, Any]) -> dict[str, Any]:
    meminfo = {line.split(":")[0]: int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()[:3]}
    cpu_model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model,
        "memory_total_kb": meminfo.get("MemTotal"),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "docker_version": docker_version.get("Version"),
        "docker_api_version": docker_version.get("ApiVersion"),
        "loadavg_at_start": list(os.getloadavg()),
        "packages": {"httpx": httpx.__version__, "aiodocker": aiodocker.__version__, "aiohttp": aiohttp.__version__},
    }


def git_state() -> dict[str, Any]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10, check=False
            ).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    return {"commit": git("rev-parse", "HEAD"), "dirty_files": len(git("status", "--porcelain").splitlines())}


# -- running it -----------------------------------------------------------------------------------------------


def start_py_spy(folder: Path, pids: dict[str, int]) -> list[subprocess.Popen[bytes]]:
    """One `py-spy record` per process; idle threads are left out, so the profiles show where CPU time goes."""
    folder.mkdir(parents=True, exist_ok=True)
    spy = str(Path(sys.executable).with_name("py-spy"))
    spies = []
    for name, pid in pids.items():
        output = str(folder / f"{name}.txt")
        with (folder / f"{name}.log").open("wb") as log:  # the child keeps its own descriptor
            spies.append(
                subprocess.Popen(
                    [
                        spy,
                        "record",
                        "--pid",
                        str(pid),
                        "--format",
                        "raw",
                        "--rate",
                        "200",
                        "--nonblocking",
                        "--output",
                        output,
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
    return spies


def stop_py_spy(spies: list[subprocess.Popen[bytes]]) -> None:
    """SIGINT makes py-spy write its output and exit."""
    for spy in spies:
        if spy.poll() is None:
            spy.send_signal(signal.SIGINT)
    for spy in spies:
        try:
            spy.wait(timeout=60)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait(timeout=10)


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
    server: Server, plan: Plan, tmp: Path, cases: list[tuple[str, Callable[[Bench], Awaitable[None]]]]
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark ide-backend against raw Docker (see bench/README.md).")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and workspaces (a smoke run)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"where to write results ({DEFAULT_JSON})")
    parser.add_argument(
        "--case",
        action="append",
        choices=[name for name, _ in CASES],
        help="run only this case (repeatable; default: all of them)",
    )
    parser.add_argument(
        "--py-spy",
        type=Path,
        metavar="DIR",
        help="record the server and this client with py-spy (raw stacks: DIR/server.txt, DIR/client.txt; "
        "summarise with bench/profile_summary.py)",
    )
    args = parser.parse_args(argv)
    plan = Plan.quick() if args.quick else Plan.full()
    cases = [(name, case) for name, case in CASES if not args.case or name in args.case]

    instance = "bench" + secrets.token_hex(5)
    tmp = Path(tempfile.mkdtemp(prefix="ide-bench-"))
    server = Server(tmp, instance, secrets.token_urlsafe(24))
    date = datetime.now(UTC).isoformat(timespec="seconds")
    began = time.monotonic()
    bench: Bench | None = None
    machine: dict[str, Any] = {}
    code = 0

    def on_sigterm(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    progress(f"instance {instance}, server on {server.url}, temp dir {tmp}")
    spies: list[subprocess.Popen[bytes]] = []
    try:
        server.start()
        if args.py_spy:
            spies = start_py_spy(args.py_spy, {"server": server.pid, "client": os.getpid()})
        bench, machine = asyncio.run(run_cases(server, plan, tmp, cases))
    except (KeyboardInterrupt, asyncio.CancelledError):
        progress("interrupted; cleaning up")
        code = 130
    except Exception:
        traceback.print_exc()
        progress(f"failed; server log tail:\n{server.log_tail()}")
        code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the clean-up runs to its end
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop_py_spy(spies)
        server.stop()
        cleanup = remove_instance(instance)
        shutil.rmtree(tmp, ignore_errors=True)
        progress(f"cleaned up: {cleanup['containers_left']} containers, {cleanup['volumes_left']} volumes left")
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if cleanup["containers_left"] or cleanup["volumes_left"]:
        code = code or 1
    if bench is None:
        return code

    wall_s = time.monotonic() - began
    results = {
        "date": date,
        "command": [Path(sys.executable).name, *sys.argv],
        "quick": args.quick,
        "cases": [name for name, _ in cases],
        "wall_s": round(wall_s, 1),
        "machine": machine,
        "backend": {**git_state(), "instance": instance, "image": IMAGE, "settings": "defaults"},
        "plan": {
            "fast": plan.fast,
            "starts": plan.starts,
            "syncs": plan.syncs,
            "one_file": plan.one_file,
            "cp_one": plan.cp_one,
            "workspaces": plan.workspaces,
            "burst": plan.burst,
            "warmup": plan.warmup,
        },
        "rows": [row.to_json() for row in bench.rows],
        "details": bench.details,
        "cleanup": cleanup,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")

    print()
    print(
        f"ide-backend bench, {date}, {machine.get('nproc')} cores, "
        f"{(machine.get('memory_total_kb') or 0) / 1024 / 1024:.0f} GiB, Docker {machine.get('docker_version')}, "
        f"{'quick' if args.quick else 'full'} run, image {str(machine['workspace_image']['id'])[7:19]}"
    )
    print(render_table(bench.rows))
    print()
    print(notes_summary(bench.details))
    print(concurrency_summary(bench.details))
    print()
    print(f"wall time {wall_s:.0f} s; results in {args.json}")
    return code


if __name__ == "__main__":
    sys.exit(main())
