"""e. N workspaces, then a burst of concurrent /exec spread over them, next to the same burst as raw Docker execs
(once as the bench's client has it, once with the backend's aiohttp timeouts); the server's memory throughout."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiodocker
import aiohttp
import httpx
from measure import BenchError, Row, Stats, elapsed_ms, memory_kb, percentile, progress, reset_peak
from runner import HTTP_TIMEOUT, Bench

START_CONCURRENCY = 10  # concurrent /start requests when bringing up the concurrency case's workspaces


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
    reset = reset_peak(bench.server.pid)
    before = memory_kb(bench.server.pid)
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
                    samples.append(memory_kb(bench.server.pid)["VmRSS"])
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
        after = memory_kb(bench.server.pid)

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
