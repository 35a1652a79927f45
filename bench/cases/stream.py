"""f. Output streamed over the websocket next to the same exec's stream read raw from Docker."""

from __future__ import annotations

import json
import secrets
import time

import websockets
from measure import BenchError, Row, Stats, elapsed_ms
from runner import USER, Bench


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
