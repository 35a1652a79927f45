"""Several backends, and a swarm: exec and terminal throughput against one backend, next to raw Docker measured in
the same run on the same containers (issue #17).

    .venv/bin/python bench/multi.py [--quick] [--json PATH]

Three configurations, one after another, each swept away before the next:

1. one backend on SQLite, the local engine (the baseline);
2. three backends on one PostgreSQL database (IDE_TEST_POSTGRES_URL; skipped with a note when unset), sharing one
   IDE_INSTANCE and IDE_TOKEN_SECRET, on the local engine, the load spread round-robin over the three;
3. one backend with IDE_RUNTIME=swarm on the three-node swarm of scripts/swarm.sh; raw goes to the nodes' engines.

Each starts W workspaces and measures (a) C concurrent clients doing POST /exec of `true`, next to as many concurrent
raw aiodocker exec round trips (as in bench case a) over the same containers, and (b) T websocket terminals running
`cat` in a PTY, each typing a line and waiting for it to come back, next to raw aiodocker execs of `cat` with a tty
typed into over their attach streams. Ours and raw alternate in halves (ours, raw, raw, ours). The CPU of the
backends, dockerd, containerd, the containers and the bench itself is read from /proc and the cpuacct cgroups around
every half, to say what limits each configuration. Everything made carries ide-backend.instance=<instance> and is
removed at the end, also on failure, Ctrl-C and SIGTERM. See bench/README.md, "Several backends, and a swarm".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

# After bench/ itself: the repository, for `tests.harness` and `tests.swarm` (the harnesses the tests use too).
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

import aiodocker
import aiohttp
import httpx
import websockets
from aiodocker.stream import Stream
from cases.concurrency import START_CONCURRENCY
from machine import git_state, machine_info
from measure import BenchError, Plan, elapsed_ms, percentile, progress
from report import fmt_ms
from runner import HTTP_TIMEOUT, IMAGE, USER, Bench, start_server

from tests.harness import DOCKER, Server, docker, remove_instance
from tests.swarm import SwarmNode, parse_nodes, remove_swarm_instance, swarm_script

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "multi-latest.json"
READ_TIMEOUT = 60.0  # seconds for one terminal echo, or one websocket answer
CONFIG_BUDGET = 1200.0  # seconds for one configuration, its workspaces' starts included
SWARM_SETTINGS = {
    "IDE_RUNTIME": "swarm",
    "IDE_NETWORK": "shared",
    "IDE_DISK_LIMIT_MB": "0",
    "IDE_POOL_SIZE": "0",
    "IDE_MEMORY_LIMIT_MB": "256",
    "IDE_CPU_LIMIT": "1",
}
SWARM_NODE_LABEL = "ide-backend.swarm-node"  # on the node containers (scripts/swarm.sh)
CGROUP_CPU = Path("/sys/fs/cgroup/cpuacct")  # cgroup v1; without it the containers' CPU falls into "other"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Counts:
    workspaces: int
    clients: int  # concurrent exec clients
    execs: int
    terminals: int
    rounds: int  # round trips per terminal


# 500 round trips per terminal, not fewer: raw's take under a millisecond, and a half shorter than about a second
# leaves its CPU shares to the rounding of the kernel's 10 ms ticks.
FULL = Counts(workspaces=6, clients=12, execs=300, terminals=6, rounds=500)
QUICK = Counts(workspaces=3, clients=12, execs=60, terminals=6, rounds=15)


class Skip(Exception):
    """A configuration this machine cannot run; its message says why."""


# -- CPU: who used the cores -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CpuSnapshot:
    busy_s: float  # the machine's non-idle CPU time since boot (/proc/stat)
    procs: dict[tuple[int, int], tuple[str, float]]  # (pid, start time) -> (group, CPU s with waited-for children)
    cgroups: dict[str, float]  # group -> CPU seconds (cpuacct)


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:  # a process that ended, a cgroup that is not there
        return None


def _on_host(pid: int) -> bool:
    """Whether a process is outside every container (a container's processes are counted by its cgroup)."""
    lines = (_read(Path(f"/proc/{pid}/cgroup")) or "").splitlines()
    paths = [line.split(":", 2)[2] for line in lines if line.count(":") >= 2]
    return not any(p.startswith(("/docker", "/ide-swarm")) or "docker-" in p for p in paths)


@dataclass
class CpuGroups:
    """Which processes and cgroups make each group reported: the backends one by one, the bench's own process, the
    host's dockerd and containerd (the shims, and runc through them), PostgreSQL, the host's containers, and the
    swarm nodes (each one's engine, and the workspaces' containers inside them)."""

    backends: dict[int, str] = field(default_factory=dict)  # pid -> "backend N"
    nodes: dict[str, str] = field(default_factory=dict)  # a swarm node container's id -> its group

    def group(self, pid: int, comm: str) -> str | None:
        if pid in self.backends:
            return self.backends[pid]
        if pid == os.getpid():
            return "bench client"
        if comm == "postgres":
            return "postgres"
        if comm in ("dockerd", "containerd") or comm.startswith("containerd-shim"):
            return comm.split("-")[0] if _on_host(pid) else None
        return None

    def snapshot(self) -> CpuSnapshot:
        ticks = [int(v) for v in (_read(Path("/proc/stat")) or "cpu 0").splitlines()[0].split()[1:]]
        busy = sum(ticks[0:3]) + sum(ticks[5:8])  # user nice system, irq softirq steal (not idle, not iowait)
        procs: dict[tuple[int, int], tuple[str, float]] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or (stat := _read(entry / "stat")) is None:
                continue
            pid, comm = int(entry.name), stat[stat.index("(") + 1 : stat.rindex(")")]
            if (group := self.group(pid, comm)) is None:
                continue
            rest = stat[stat.rindex(")") + 2 :].split()  # fields from 3 (state) on
            procs[(pid, int(rest[19]))] = (group, sum(int(v) for v in rest[11:15]) / CLOCK_TICKS)
        cgroups: dict[str, float] = {}
        if (containers := self._cgroup("docker")) is not None:
            for node, group in self.nodes.items():  # a node's engine, containerd and shims: its container's cgroup
                cgroups[group] = self._cgroup(f"docker/{node}") or 0.0
            cgroups["containers"] = containers - sum(cgroups.values())
            if self.nodes:  # the workspaces on the nodes (their cgroups are under IDE_SWARM's cgroup parent)
                cgroups["node containers"] = self._cgroup("ide-swarm") or 0.0
        return CpuSnapshot((busy / CLOCK_TICKS), procs, cgroups)

    @staticmethod
    def _cgroup(path: str) -> float | None:
        text = _read(CGROUP_CPU / path / "cpuacct.usage")
        return int(text) / 1e9 if text else None


def cpu_between(before: CpuSnapshot, after: CpuSnapshot) -> dict[str, float]:
    """CPU seconds per group between two snapshots, and the machine's busy seconds. A process born in between counts
    whole; one that ended in between is lost to its group and lands in "other", with everything no group holds."""
    used: dict[str, float] = {"busy": after.busy_s - before.busy_s}
    for key, (group, cpu) in after.procs.items():
        used[group] = used.get(group, 0.0) + cpu - before.procs.get(key, (group, 0.0))[1]
    for group, cpu in after.cgroups.items():
        used[group] = cpu - before.cgroups.get(group, cpu)
    used["other"] = max(0.0, used["busy"] - sum(v for k, v in used.items() if k != "busy"))
    return used


def limit_statement(percent: dict[str, float]) -> str:
    """What limits a measurement, from its CPU (percent of one core per group, "busy" the whole machine's)."""
    cores = os.cpu_count() or 1
    busy = percent.get("busy", 0.0)
    shares = sorted(((v, k) for k, v in percent.items() if k != "busy" and v >= 3), reverse=True)
    loops = [k for v, k in shares if (k.startswith("backend") or k == "bench client") and v >= 85]
    if busy >= 0.9 * cores * 100:
        head = f"the {cores} cores are saturated ({busy:.0f}% of {cores * 100}%)"
    elif busy >= 0.75 * cores * 100:
        head = f"the {cores} cores are nearly saturated ({busy:.0f}% of {cores * 100}%)"
    elif loops:
        head = f"one process's event loop is ({', '.join(loops)}; the machine {busy:.0f}% of {cores * 100}%)"
    else:
        head = f"no CPU is saturated ({busy:.0f}% of {cores * 100}%): waiting, not computing, bounds it"
    return f"{head}: " + ", ".join(f"{k} {v:.0f}%" for v, k in shares)


# -- measuring: ours and raw in alternating halves -------------------------------------------------------------


@dataclass
class Side:
    """Ours or raw in one measurement: every latency (failed ones included), the failures, the wall time and CPU of
    its halves."""

    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    cpu_s: dict[str, float] = field(default_factory=dict)

    @property
    def per_second(self) -> float:
        return (len(self.latencies) - len(self.errors)) / self.wall_s if self.wall_s else 0.0

    def cpu_percent(self) -> dict[str, float]:
        return {k: round(100 * v / self.wall_s, 1) for k, v in sorted(self.cpu_s.items())} if self.wall_s else {}

    def to_json(self) -> dict[str, Any]:
        return {
            "n": len(self.latencies),
            "errors": len(self.errors),
            "error_examples": self.errors[:5],
            "per_second": round(self.per_second, 2),
            "p50_ms": round(percentile(self.latencies, 50), 3),
            "p99_ms": round(percentile(self.latencies, 99), 3),
            "wall_s": round(self.wall_s, 3),
            "cpu_percent_of_one_core": self.cpu_percent(),
            "limited_by": limit_statement(self.cpu_percent()),
            "samples_ms": [round(v, 3) for v in self.latencies],
        }


Phase = Callable[[int, int], Awaitable[tuple[list[float], list[str]]]]  # (first index, count) -> latencies, errors


async def alternate(cpu: CpuGroups, n: int, ours: Phase, raw: Phase) -> dict[str, Any]:
    """n units of each side, in halves: ours, raw, raw, ours (so drift falls on both alike); the CPU read around
    each half."""
    sides = {"ours": Side(), "raw": Side()}
    halves = [(0, n // 2), (n // 2, n - n // 2)]
    for name, (first, count) in [("ours", halves[0]), ("raw", halves[0]), ("raw", halves[1]), ("ours", halves[1])]:
        side = sides[name]
        before = cpu.snapshot()
        began = time.perf_counter()
        latencies, errors = await (ours if name == "ours" else raw)(first, count)
        side.wall_s += time.perf_counter() - began
        for group, seconds in cpu_between(before, cpu.snapshot()).items():
            side.cpu_s[group] = side.cpu_s.get(group, 0.0) + seconds
        side.latencies += latencies
        side.errors += errors
    ours_side, raw_side = sides["ours"], sides["raw"]
    ratios = {
        "per_second": round(ours_side.per_second / raw_side.per_second, 3) if raw_side.per_second else None,
        "p50": round(percentile(ours_side.latencies, 50) / percentile(raw_side.latencies, 50), 3),
        "p99": round(percentile(ours_side.latencies, 99) / percentile(raw_side.latencies, 99), 3),
    }
    return {"ours": ours_side.to_json(), "raw": raw_side.to_json(), "ratio": ratios}


def describe(exc: BaseException) -> str:
    return exc.args[0] if isinstance(exc, BenchError) and exc.args else f"{type(exc).__name__}: {exc}"


@dataclass
class Backend:
    server: Server
    http: httpx.AsyncClient

    @property
    def ws_url(self) -> str:
        return f"{self.server.url.replace('http', 'ws')}/api/v1/ws?token={self.server.token}"


@dataclass
class Target:
    """One configuration, up: its backends, its workspaces, and the raw side's way to the same containers."""

    backends: list[Backend]
    refs: list[dict[str, str]]
    containers: list[tuple[aiodocker.Docker, str]]  # per workspace: the engine it runs on, and its container id
    bench: Bench  # for its calls (post, start_workspace, raw_exec)
    facts: dict[str, Any] = field(default_factory=dict)  # saved with the configuration's results


async def measure_exec(target: Target, counts: Counts, cpu: CpuGroups) -> dict[str, Any]:
    """C clients doing POST /exec of `true`, request k to backend k mod B and workspace (k div B) mod W (so every
    backend reaches every workspace), next to the same count of raw exec round trips over the same containers."""
    b, w = len(target.backends), len(target.refs)

    async def ours_one(k: int) -> None:
        body = {**target.refs[(k // b) % w], "command": "true"}
        data = await target.bench.post("exec", body, target.backends[k % b].http)
        if data.get("exitCode") != 0:
            raise BenchError(f"/exec of true answered exitCode {data.get('exitCode')}")

    async def raw_one(k: int) -> None:
        engine, container_id = target.containers[(k // b) % w]
        await target.bench.raw_exec(container_id, engine)

    def closed_loop(one: Callable[[int], Awaitable[None]]) -> Phase:
        async def phase(first: int, count: int) -> tuple[list[float], list[str]]:
            latencies: list[float] = []
            errors: list[str] = []
            indices = iter(range(first, first + count))  # shared: each client takes the next request

            async def client() -> None:
                for k in indices:
                    began = time.perf_counter()
                    try:
                        await one(k)
                    except Exception as exc:  # counted; none stops the others
                        errors.append(describe(exc))
                    latencies.append(elapsed_ms(began))

            await asyncio.gather(*(client() for _ in range(counts.clients)))
            return latencies, errors

        return phase

    # Warm-up, not counted: each backend's first exec in a workspace connects to its agent.
    await asyncio.gather(*(ours_one(i) for i in range(b * w)), *(raw_one(i * b) for i in range(w)))
    return await alternate(cpu, counts.execs, closed_loop(ours_one), closed_loop(raw_one))


class Terminal(Protocol):
    async def trip(self, marker: str) -> None:
        """Type a line and wait until it is back twice: the PTY's echo, then cat's copy."""


class WsTerminal:
    """`cat` in a PTY through the backend's websocket (docs/protocol.md)."""

    def __init__(self, ws: websockets.ClientConnection, process_id: str) -> None:
        self.ws = ws
        self.id = process_id

    async def receive(self) -> dict[str, Any]:
        message: dict[str, Any] = json.loads(await asyncio.wait_for(self.ws.recv(), READ_TIMEOUT))
        if message.get("type") in ("error", "exit"):
            raise BenchError(f"terminal {self.id} got {str(message)[:300]}")
        return message

    async def trip(self, marker: str) -> None:
        await self.ws.send(json.dumps({"type": "stdin", "id": self.id, "data": f"{marker}\r"}))
        seen = ""
        while seen.count(marker) < 2:
            message = await self.receive()
            if message.get("type") == "stdout":
                seen += message["data"]

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, url: str, ref: dict[str, str]) -> AsyncIterator[WsTerminal]:
        async with websockets.connect(url, open_timeout=READ_TIMEOUT, max_size=2**24) as ws:
            term = cls(ws, "multi-" + secrets.token_hex(6))
            await ws.send(json.dumps({"type": "exec", "id": term.id, **ref, "command": "cat", "tty": True}))
            while (await term.receive()).get("type") != "started":
                pass
            try:
                yield term
            finally:
                with contextlib.suppress(Exception):  # Ctrl-D ends cat; its exit is the last message
                    await ws.send(json.dumps({"type": "stdin", "id": term.id, "data": "\x04"}))
                    async with asyncio.timeout(10):
                        while json.loads(await ws.recv()).get("type") != "exit":
                            pass


class RawTerminal:
    """`cat` in a PTY as a raw aiodocker exec, typed into over its attach stream."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream

    async def trip(self, marker: str) -> None:
        await self.stream.write_in(f"{marker}\r".encode())
        seen, wanted = b"", marker.encode()
        while seen.count(wanted) < 2:
            message = await asyncio.wait_for(self.stream.read_out(), READ_TIMEOUT)
            if message is None:
                raise BenchError("raw terminal ended")
            seen += message.data

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, engine: aiodocker.Docker, container_id: str) -> AsyncIterator[RawTerminal]:
        container = engine.containers.container(container_id)
        execution = await container.exec(["sh", "-c", "cat"], stdin=True, tty=True, user=USER)
        async with execution.start(detach=False) as stream:
            try:
                yield cls(stream)
            finally:
                with contextlib.suppress(Exception):
                    await stream.write_in(b"\x04")
                    async with asyncio.timeout(10):
                        while await stream.read_out() is not None:
                            pass


async def measure_terminals(target: Target, counts: Counts, cpu: CpuGroups) -> dict[str, Any]:
    """T terminals of each side open at once (terminal t on workspace t mod W, through backend t mod B), each doing
    N round trips in turn, all terminals at the same time."""
    b, w = len(target.backends), len(target.refs)
    async with contextlib.AsyncExitStack() as stack:
        ours: list[Terminal] = [
            await stack.enter_async_context(WsTerminal.open(target.backends[t % b].ws_url, target.refs[t % w]))
            for t in range(counts.terminals)
        ]
        raw: list[Terminal] = [
            await stack.enter_async_context(RawTerminal.open(*target.containers[t % w]))
            for t in range(counts.terminals)
        ]

        def rounds(terminals: list[Terminal]) -> Phase:
            async def phase(first: int, count: int) -> tuple[list[float], list[str]]:
                latencies: list[float] = []
                errors: list[str] = []

                async def one(t: int, term: Terminal) -> None:
                    for r in range(first, first + count):
                        began = time.perf_counter()
                        try:
                            await term.trip(f"t{t}r{r}x")
                        except Exception as exc:  # this terminal is in an unknown state: it stops here
                            errors.append(describe(exc))
                            latencies.append(elapsed_ms(began))
                            return
                        latencies.append(elapsed_ms(began))

                await asyncio.gather(*(one(t, term) for t, term in enumerate(terminals)))
                return latencies, errors

            return phase

        await asyncio.gather(*(term.trip(f"warm{t}x") for t, term in enumerate([*ours, *raw])))  # not counted
        return await alternate(cpu, counts.rounds, rounds(ours), rounds(raw))


# -- the configurations ---------------------------------------------------------------------------------------


@dataclass
class Run:
    """One run's clients and everything it started, for the sweep at its end (which also runs on errors)."""

    prefix: str
    tmp: Path
    token: str
    counts: Counts
    plan: Plan
    local: aiodocker.Docker | None = None  # the local engine's client (made in the event loop)
    cpu: CpuGroups = field(default_factory=CpuGroups)
    servers: list[Server] = field(default_factory=list)
    instances: list[str] = field(default_factory=list)
    swarms: list[tuple[str, list[SwarmNode], str]] = field(default_factory=list)  # (manager, nodes, instance)

    def start(self, instance: str, index: int, **settings: str) -> Server:
        data = str(self.tmp / f"data-{instance}-{index}")
        server = start_server(self.tmp, instance, self.token, IDE_DATA_DIR=data, **settings)
        self.servers.append(server)
        self.cpu.backends[server.pid] = f"backend {index + 1}"
        return server

    def sweep(self) -> dict[str, int]:
        """Stop every server, remove every instance's containers, volumes and services; what is left of them."""
        for server in self.servers:
            server.stop()
        left: dict[str, int] = {}
        for instance in self.instances:
            for key, value in remove_instance(instance).items():
                left[key] = left.get(key, 0) + value
        for swarm in self.swarms:
            for key, value in remove_swarm_instance(*swarm).items():
                left[key] = left.get(key, 0) + value
        return left


Locate = Callable[[dict[str, Any]], Awaitable[tuple[aiodocker.Docker, str]]]


@contextlib.asynccontextmanager
async def serve(run: Run, servers: list[Server], locate: Locate) -> AsyncIterator[Target]:
    """Clients of the servers, and W workspaces started through them round-robin, START_CONCURRENCY at a time."""
    assert run.local is not None
    async with contextlib.AsyncExitStack() as stack:
        backends = []
        for server in servers:
            headers = {"Authorization": f"Bearer {server.token}"}
            client = httpx.AsyncClient(base_url=server.url, headers=headers, timeout=HTTP_TIMEOUT)
            backends.append(Backend(server, await stack.enter_async_context(client)))
        bench = Bench(servers[0], run.plan, run.tmp, backends[0].http, run.local)
        refs = [{"projectId": "multi", "workspaceId": f"w{i}"} for i in range(run.counts.workspaces)]
        gate = asyncio.Semaphore(START_CONCURRENCY)

        async def start(i: int) -> tuple[aiodocker.Docker, str]:
            async with gate:
                return await locate(await bench.start_workspace("multi", f"w{i}", http=backends[i % len(servers)].http))

        began = time.perf_counter()
        containers = list(await asyncio.gather(*(start(i) for i in range(len(refs)))))
        progress(f"{len(refs)} workspaces up in {elapsed_ms(began) / 1000:.1f} s")
        yield Target(backends, refs, containers, bench)


@contextlib.asynccontextmanager
async def on_local_engine(run: Run, key: str, backends: int, **settings: str) -> AsyncIterator[Target]:
    """`backends` servers on one instance and the local engine; stopped and swept away afterwards."""
    instance = f"{run.prefix}{key}"
    run.instances.append(instance)
    servers: list[Server] = []
    try:
        for i in range(backends):
            servers.append(run.start(instance, i, **settings))
        local = run.local
        assert local is not None

        async def locate(info: dict[str, Any]) -> tuple[aiodocker.Docker, str]:
            return local, str(info["id"])

        async with serve(run, servers, locate) as target:
            yield target
    finally:
        for server in servers:
            server.stop()
        remove_instance(instance)


@contextlib.asynccontextmanager
async def on_swarm(run: Run) -> AsyncIterator[Target]:
    """One server with IDE_RUNTIME=swarm on the swarm of scripts/swarm.sh; raw reaches the nodes' engines directly."""
    try:
        manager = (await asyncio.to_thread(swarm_script, "up")).strip()
        nodes = parse_nodes(await asyncio.to_thread(swarm_script, "nodes"))
    except (OSError, RuntimeError) as exc:
        raise Skip(f"no swarm here (scripts/swarm.sh up failed: {str(exc)[:300]})") from exc
    local_image = docker("image", "inspect", "-f", "{{.Id}}", IMAGE).stdout.strip()
    for node in nodes:
        there = docker("-H", node.engine_url, "image", "inspect", "-f", "{{.Id}}", IMAGE, check=False).stdout.strip()
        if there != local_image:
            progress(f"note: {node.name} has {IMAGE} {there[7:19] or 'missing'}, the host {local_image[7:19]}")
    listing = docker("ps", "--no-trunc", "--format", "{{.ID}} {{.Names}}", "--filter", f"label={SWARM_NODE_LABEL}")
    managers = {n.name for n in nodes if n.engine_url == manager}
    for line in listing.stdout.splitlines():
        node_id, name = line.split()
        run.cpu.nodes[node_id] = f"{name} engine" + (" (manager)" if name in managers else "")
    instance = f"{run.prefix}s"
    run.swarms.append((manager, nodes, instance))
    async with contextlib.AsyncExitStack() as stack:
        engines = {}
        for node in nodes:
            engine = aiodocker.Docker(url=node.engine_url, timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT))
            stack.push_async_callback(engine.close)
            engines[node.name] = engine

        async def locate(info: dict[str, Any]) -> tuple[aiodocker.Docker, str]:
            """The task container of the workspace's service, on whichever node it runs."""
            filters = json.dumps({"label": [f"com.docker.swarm.service.name={info['name']}"], "status": ["running"]})
            for engine in engines.values():
                found = await engine.containers.list(filters=filters)
                if found:
                    return engine, str(found[0].id)
            raise BenchError(f"no node runs the task of {info['name']}")

        servers: list[Server] = []
        try:
            servers.append(run.start(instance, 0, IDE_DOCKER_HOST=manager, **SWARM_SETTINGS))
            async with serve(run, servers, locate) as target:
                placed = {name: sum(e is engine for e, _ in target.containers) for name, engine in engines.items()}
                target.facts.update(manager=manager, workspaces_per_node=placed)
                progress(f"workspaces per node: {placed}")
                yield target
        finally:
            for server in servers:
                server.stop()
            remove_swarm_instance(manager, nodes, instance)


# -- the run ---------------------------------------------------------------------------------------------------


def configurations(run: Run) -> list[tuple[str, Callable[[], contextlib.AbstractAsyncContextManager[Target]]]]:
    postgres = os.environ.get("IDE_TEST_POSTGRES_URL", "")
    shared = {"IDE_DATABASE_URL": postgres, "IDE_TOKEN_SECRET": secrets.token_hex(32), "IDE_POOL_SIZE": "0"}

    def three_on_postgres() -> contextlib.AbstractAsyncContextManager[Target]:
        if not postgres:
            raise Skip("IDE_TEST_POSTGRES_URL is not set (e.g. postgresql://ide_test:ide_test@127.0.0.1:5432/ide_test)")
        return on_local_engine(run, "p", 3, **shared)

    return [
        ("1 backend, SQLite, local engine", lambda: on_local_engine(run, "l", 1, IDE_POOL_SIZE="0")),
        ("3 backends, PostgreSQL, local engine", three_on_postgres),
        ("1 backend, swarm of 3 nodes", lambda: on_swarm(run)),
    ]


async def run_all(run: Run) -> tuple[dict[str, Any], dict[str, Any]]:
    task = asyncio.current_task()
    if task is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    run.local = aiodocker.Docker(timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT))
    try:
        machine = machine_info(await run.local.version())
        machine["other_running_containers_at_start"] = len(await run.local.containers.list())
        results: dict[str, Any] = {}
        for name, config in configurations(run):
            progress(f"{name}: starting (load average {os.getloadavg()[0]:.2f})")
            entry: dict[str, Any] = {"loadavg_at_start": list(os.getloadavg())}
            results[name] = entry
            try:
                async with asyncio.timeout(CONFIG_BUDGET), config() as target:
                    entry["backends"] = len(target.backends)
                    entry.update(target.facts)
                    entry["settings"] = {
                        k: v
                        for k, v in target.backends[0].server.env.items()
                        if k.startswith("IDE_")
                        and not k.startswith("IDE_TEST_")
                        and k not in ("IDE_API_TOKEN", "IDE_TOKEN_SECRET", "IDE_DATA_DIR")
                    }
                    progress(f"{name}: exec, {run.counts.execs} x `true` by {run.counts.clients} clients")
                    entry["exec"] = await measure_exec(target, run.counts, run.cpu)
                    progress(f"{name}: terminals, {run.counts.terminals} x {run.counts.rounds} round trips")
                    entry["terminal"] = await measure_terminals(target, run.counts, run.cpu)
            except Skip as skip:
                entry["skipped"] = str(skip)
                progress(f"{name}: skipped: {skip}")
            entry["loadavg_at_end"] = list(os.getloadavg())
        machine["loadavg_at_end"] = list(os.getloadavg())
        return machine, results
    finally:
        await run.local.close()


def render(results: dict[str, Any]) -> str:
    """The table (configuration, metric, ours, raw, ratio), then what limits each configuration."""
    rows = [["configuration", "metric", "ours", "raw", "ratio"]]
    notes: list[str] = []
    for name, entry in results.items():
        if "skipped" in entry:
            notes.append(f"{name}: skipped: {entry['skipped']}")
            continue
        for key, what in (("exec", "exec"), ("terminal", "terminal round trips")):
            m = entry[key]
            ours, raw, ratio = m["ours"], m["raw"], m["ratio"]
            errors = f" ({ours['errors']}/{raw['errors']} errors)" if ours["errors"] or raw["errors"] else ""
            throughput = f"{ratio['per_second']:.2f}x" if ratio["per_second"] else "-"
            rows.append(
                [name, f"{what}/s{errors}", f"{ours['per_second']:.1f}", f"{raw['per_second']:.1f}", throughput]
            )
            for q in ("p50", "p99"):
                rows.append(["", f"{key} {q}", fmt_ms(ours[f"{q}_ms"]), fmt_ms(raw[f"{q}_ms"]), f"{ratio[q]:.2f}x"])
            notes.append(f"{name}, {key}: ours: {ours['limited_by']}")
            notes.append(f"{' ' * len(name)}  {' ' * len(key)}  raw: {raw['limited_by']}")
            notes += [f"    ! {e}" for e in dict.fromkeys(ours["error_examples"] + raw["error_examples"])]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    cells = [
        [c.ljust(wd) if i < 2 else c.rjust(wd) for i, (c, wd) in enumerate(zip(row, widths, strict=True))]
        for row in rows
    ]
    lines = ["| " + " | ".join(row) + " |" for row in cells]
    lines.insert(1, "|" + "|".join("-" * (wd + 2) for wd in widths) + "|")
    return "\n".join([*lines, "", "what limits each (CPU in % of one core, over the measurement):", *notes])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 workspaces, 60 execs, 15 round trips per terminal")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"where to write results ({DEFAULT_JSON})")
    args = parser.parse_args(argv)
    counts = QUICK if args.quick else FULL
    tmp = Path(tempfile.mkdtemp(prefix="ide-bench-multi-"))
    run = Run(
        "multi" + secrets.token_hex(4),
        tmp,
        secrets.token_urlsafe(24),
        counts,
        Plan.quick() if args.quick else Plan.full(),
    )
    date = datetime.now(UTC).isoformat(timespec="seconds")
    began = time.monotonic()
    machine: dict[str, Any] = {}
    results: dict[str, Any] | None = None
    code = 0

    def on_sigterm(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    progress(f"instances {run.prefix}*, temp dir {tmp}, load average {os.getloadavg()}")
    try:
        machine, results = asyncio.run(run_all(run))
    except (KeyboardInterrupt, asyncio.CancelledError):
        progress("interrupted; cleaning up")
        code = 130
    except Exception:
        traceback.print_exc()
        for server in run.servers[-3:]:
            progress(f"server log tail ({server.instance}):\n{server.log_tail()}")
        code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the clean-up runs to its end
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        left = run.sweep()
        shutil.rmtree(tmp, ignore_errors=True)
        progress(f"cleaned up: {left}")
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if any(left.values()):
        code = code or 1
    if results is None:
        return code

    wall_s = time.monotonic() - began
    args.json.parent.mkdir(parents=True, exist_ok=True)
    output = {
        "date": date,
        "command": [Path(sys.executable).name, *sys.argv],
        "quick": args.quick,
        "counts": dataclasses.asdict(counts),
        "wall_s": round(wall_s, 1),
        "machine": machine,
        "backend": {**git_state(), "instances": run.prefix + "*", "image": IMAGE, "docker_cli": DOCKER},
        "configurations": results,
        "cleanup": left,
    }
    args.json.write_text(json.dumps(output, indent=2) + "\n")
    print()
    print(
        f"ide-backend, several backends and a swarm, {date}, {machine.get('nproc')} cores, load average "
        f"{machine['loadavg_at_start'][0]:.2f} at start, {machine['loadavg_at_end'][0]:.2f} at end; "
        f"{counts.workspaces} workspaces, {counts.execs} execs by {counts.clients} clients, "
        f"{counts.terminals} terminals x {counts.rounds} round trips"
    )
    print(render(results))
    print()
    print(f"wall time {wall_s:.0f} s; results in {args.json}")
    return code


if __name__ == "__main__":
    sys.exit(main())
