"""Load test: many workspaces, mixed REST traffic and hundreds of live websocket terminals against one real server.

    .venv/bin/python bench/load.py            # 50 workspaces, 200 terminals, 20 REST workers, 180 s
    .venv/bin/python bench/load.py --quick    # 10 workspaces, 40 terminals, 8 REST workers, 30 s

Bounded in count and time, loopback only. It passes when there were zero errors, memory stayed bounded, and
afterwards no process, task, exec or container was left behind. Results go to bench/results/load-latest.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import websockets

# After bench/ itself: the repository, for `tests.harness` (the server harness the tests and bench.py use too).
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))
from measure import memory_kb, percentile
from runner import start_server

from tests.harness import Server, leftovers, remove_instance

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    failures: int = 0
    errors: list[str] = field(default_factory=list)  # the first few, for the report

    def ok(self, kind: str, began: float) -> None:
        self.latencies.setdefault(kind, []).append((time.perf_counter() - began) * 1000)

    def fail(self, kind: str, detail: str) -> None:
        self.failures += 1
        if len(self.errors) < 50:
            self.errors.append(f"{kind}: {detail}")

    def summary(self) -> dict[str, Any]:
        return {
            kind: {"n": len(v), "p50_ms": round(percentile(v, 50), 1), "p99_ms": round(percentile(v, 99), 1)}
            for kind, v in sorted(self.latencies.items())
        }


async def rest_worker(client: httpx.AsyncClient, refs: list[dict[str, str]], tally: Tally, until: float) -> None:
    turn = 0
    while time.monotonic() < until:
        ref = refs[(turn * 7 + id(tally)) % len(refs)]
        kind = ("exec", "sync", "status")[turn % 3]
        turn += 1
        began = time.perf_counter()
        try:
            if kind == "exec":
                word = uuid.uuid4().hex[:8]
                answer = await client.post("/api/v1/containers/exec", json={**ref, "command": f"echo {word}"})
                good = answer.status_code == 200 and answer.json()["output"] == f"{word}\n"
            elif kind == "sync":
                files = {f"load/{i}.txt": uuid.uuid4().hex * 16 for i in range(10)}
                answer = await client.post("/api/v1/containers/sync", json={**ref, "files": files})
                good = answer.status_code == 200
            else:
                answer = await client.post("/api/v1/containers/status", json=ref)
                good = answer.status_code == 200 and answer.json()["data"]["running"] is True
            if good:
                tally.ok(kind, began)
            else:
                tally.fail(kind, f"{answer.status_code} {answer.text[:200]}")
        except httpx.HTTPError as exc:
            tally.fail(kind, repr(exc))


async def terminal(url: str, ref: dict[str, str], tally: Tally, until: float) -> None:
    """One interactive shell: type a line every second and wait to see its answer."""
    pid = "load-" + uuid.uuid4().hex[:12]
    try:
        async with websockets.connect(url, max_size=2**24, open_timeout=60) as ws:
            await ws.send(json.dumps({"type": "exec", "id": pid, **ref, "command": "bash --norc", "tty": True}))
            n = 0
            while time.monotonic() < until:
                n += 1
                began = time.perf_counter()
                await ws.send(json.dumps({"type": "stdin", "id": pid, "data": f"echo tick-$((1000+{n}))\r"}))
                seen = ""
                while f"tick-{1000 + n}\r\n" not in seen:
                    message = json.loads(await asyncio.wait_for(ws.recv(), 30))
                    if message.get("type") == "error" or message.get("type") == "exit":
                        raise RuntimeError(f"terminal got {message}")
                    seen = (seen + message.get("data", ""))[-4096:]
                tally.ok("terminal echo", began)
                await asyncio.sleep(1.0)
            await ws.send(json.dumps({"type": "stdin", "id": pid, "data": "exit\r"}))
            while True:
                message = json.loads(await asyncio.wait_for(ws.recv(), 30))
                if message.get("type") == "exit":
                    break
    except Exception as exc:
        tally.fail("terminal", repr(exc)[:300])


async def run(args: argparse.Namespace, server: Server) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {server.token}"}
    limits = httpx.Limits(max_connections=500, max_keepalive_connections=100)
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=120, limits=limits) as client:
        refs = [{"projectId": "load", "workspaceId": f"w{i:03d}"} for i in range(args.workspaces)]
        gate = asyncio.Semaphore(10)

        async def start(ref: dict[str, str]) -> None:
            async with gate:
                answer = await client.post("/api/v1/containers/start", json=ref)
                answer.raise_for_status()

        began = time.perf_counter()
        await asyncio.gather(*(start(ref) for ref in refs))
        start_s = time.perf_counter() - began
        # One exec each first: a workspace's agent channel (one long-lived task per container) belongs to the
        # baseline, not to what the load leaves behind.
        await asyncio.gather(*(client.post("/api/v1/containers/exec", json={**ref, "command": "true"}) for ref in refs))
        baseline = (await client.get("/api/v1/stats")).json()
        tally = Tally()
        until = time.monotonic() + args.seconds
        ws_url = f"{server.url.replace('http', 'ws')}/api/v1/ws?token={server.token}"
        memory: list[int] = []

        async def sample_memory() -> None:
            while time.monotonic() < until + 5:
                memory.append(memory_kb(server.pid)["VmRSS"])
                await asyncio.sleep(2)

        sampler = asyncio.create_task(sample_memory())
        terminals = [terminal(ws_url, refs[i % len(refs)], tally, until) for i in range(args.terminals)]
        workers = [rest_worker(client, refs, tally, until) for _ in range(args.workers)]
        peak_stats: dict[str, Any] = {}

        async def peek() -> None:
            await asyncio.sleep(min(10, args.seconds / 2))
            peak_stats.update((await client.get("/api/v1/stats")).json())

        await asyncio.gather(*terminals, *workers, peek())
        await sampler
        # Everything the terminals started must be gone: no process in the server, no shell in any container.
        after = (await client.get("/api/v1/stats")).json()
        for _ in range(30):
            if after["processes"] == 0 and after["websockets"] == 0:
                break
            await asyncio.sleep(1)
            after = (await client.get("/api/v1/stats")).json()
        shells = 0
        for ref in refs:
            answer = await client.post(
                "/api/v1/containers/exec", json={**ref, "command": "ps -eo args | grep -c '^bash --norc' || true"}
            )
            shells += int(answer.json()["output"].strip() or 0)
    return {
        "workspaces": args.workspaces,
        "terminals": args.terminals,
        "rest_workers": args.workers,
        "seconds": args.seconds,
        "start_all_s": round(start_s, 1),
        "errors": tally.failures,
        "error_samples": tally.errors[:10],
        "operations": tally.summary(),
        "rss_mib": {
            "first": round(memory[0] / 1024, 1) if memory else None,
            "peak": round(max(memory) / 1024, 1) if memory else None,
            "last": round(memory[-1] / 1024, 1) if memory else None,
        },
        "stats": {"baseline": baseline, "during": peak_stats, "after": after},
        "shells_left": shells,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10 workspaces, 40 terminals, 8 workers, 30 s")
    parser.add_argument("--json", type=Path, default=RESULTS / "load-latest.json")
    args = parser.parse_args(argv)
    args.workspaces, args.terminals, args.workers, args.seconds = (10, 40, 8, 30) if args.quick else (50, 200, 20, 180)
    instance = "load" + secrets.token_hex(4)
    with tempfile.TemporaryDirectory(prefix="ide-load-") as tmp:
        server: Server | None = None
        try:
            server = start_server(Path(tmp), instance, secrets.token_urlsafe(16))
            result = asyncio.run(run(args, server))
        finally:
            if server is not None:
                server.stop()
            left = remove_instance(instance)
    containers, volumes = leftovers(instance)
    result["cleanup"] = {**left, "after_sweep": {"containers": len(containers), "volumes": len(volumes)}}
    stats = result["stats"]
    result["passed"] = bool(
        result["errors"] == 0
        and result["shells_left"] == 0
        and stats["after"]["processes"] == 0
        and stats["after"]["websockets"] == 0
        and stats["after"]["tasks"] <= stats["baseline"]["tasks"] + 2
        and not containers
        and not volumes
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **result}, indent=2))
    print(json.dumps(result, indent=2))
    print("load test", "PASSED" if result["passed"] else "FAILED", file=sys.stderr)
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
