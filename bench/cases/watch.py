"""g. A file made in a watched workspace, seen over the websocket's `watch`, next to the same watcher program run
raw with aiodocker (its stdout read directly): what the agent, the backend and the websocket add to the watcher."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import websockets
from measure import BenchError, Row, Stats, elapsed_ms
from runner import USER, Bench

from ide_backend.service.watch_script import WATCH_SCRIPT

FOLDERS = 2000  # the watched tree: this many folders (a middling project with its dependencies)


async def case_watch(bench: Bench) -> None:
    """g. The time from a file written (a raw Docker exec, the same for both) to its change arriving: over the
    websocket's watch, and from the watcher run raw; both include the watcher's 50 ms batch. Also the time a watch
    takes to start on a workspace of FOLDERS folders (walking and watching every one)."""
    info = await bench.start_workspace("bench", "watch")
    container = bench.docker.containers.container(str(info["id"]))

    async def sh(command: str) -> None:
        execution = await container.exec(["sh", "-c", command], stdout=True, stderr=True, user=USER)
        async with execution.start(detach=False) as stream:
            while await stream.read_out() is not None:
                pass

    await sh(
        f"cd /workspace && for i in $(seq 1 {FOLDERS // 10}); do mkdir -p d$i/a d$i/b d$i/c d$i/e d$i/f "
        "d$i/g d$i/h d$i/j d$i/k; done"
    )
    url = f"{bench.server.url.replace('http', 'ws')}/api/v1/ws?token={bench.server.token}"
    serial = 0
    started_ms: list[float] = []

    async with websockets.connect(url, max_size=2**26) as ws:
        began = time.perf_counter()
        await ws.send(json.dumps({"type": "watch", "projectId": "bench", "workspaceId": "watch"}))
        answer = json.loads(await ws.recv())
        if answer["type"] != "watching":
            raise BenchError(f"watch failed: {answer}")
        started_ms.append(elapsed_ms(began))

        async def ours() -> None:
            nonlocal serial
            serial += 1
            name = f"d7/a/ours-{serial}.txt"
            await sh(f"echo {serial} > /workspace/{name}")
            while True:
                message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 30))
                if message["type"] == "files" and any(c["path"] == name for c in message["changes"]):
                    return

        raw_exec = await container.exec(
            ["perl", "-e", WATCH_SCRIPT, "/workspace", "20000", "50", "1000", str(1024 * 1024)],
            stdout=True,
            stderr=True,
            stdin=True,
            user=USER,
            environment={"IDE_WATCH_PIDFILE": "/workspace/.bench-watch.pid"},  # beside the backend's watcher
        )
        async with raw_exec.start(detach=False) as stream:
            buffer = bytearray()

            async def until(needle: bytes) -> None:
                while needle not in buffer:
                    chunk = await asyncio.wait_for(stream.read_out(), 30)
                    if chunk is None:
                        raise BenchError("the raw watcher ended")
                    buffer.extend(chunk.data)
                del buffer[:]

            await until(b"R\0")

            async def raw() -> None:
                nonlocal serial
                serial += 1
                name = f"d7/a/raw-{serial}.txt"
                await sh(f"echo {serial} > /workspace/{name}")
                await until(name.encode() + b"\0")

            ours_stats, raw_stats = await bench.paired(bench.plan.fast, ours, raw)
            await stream.write_in(b"")
        await ws.send(json.dumps({"type": "unwatch", "projectId": "bench", "workspaceId": "watch"}))

    bench.rows.append(
        Row(
            "watch",
            "g. file written -> its change over the websocket's watch",
            ours_stats,
            raw_stats,
            "the same watcher run by aiodocker exec, its stdout read directly (both include the 50 ms batch)",
        )
    )
    bench.details["watch"] = {"folders": FOLDERS, "watch_start_ms": Stats(tuple(started_ms)).median}
