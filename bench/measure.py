"""What the bench measures with: the plan of repetitions, latency statistics, one table row, and the server
process's memory."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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
    templates: tuple[str, ...] = ("base", "python", "node", "vscode")  # start case: /start new of these
    forks: int = 3  # fork case: copies of a 1 GB workspace
    fork_mb: int = 1000  # fork case: MB of random bytes in the source (one file)
    budgets: dict[str, float] = field(
        default_factory=lambda: {
            "exec": 300,
            "status": 120,
            "start": 900,
            "start_running": 120,
            "delete": 300,
            "fork": 900,
            "sync": 1200,
            "concurrency": 900,
            "ws_stream": 900,
            "watch": 300,
        }
    )

    @classmethod
    def full(cls) -> Plan:
        return cls(fast=50, starts=10, syncs=10, one_file=1000, cp_one=50, workspaces=50, burst=500, warmup=3)

    @classmethod
    def quick(cls) -> Plan:
        return cls(
            fast=10,
            starts=2,
            syncs=3,
            one_file=100,
            cp_one=10,
            workspaces=10,
            burst=100,
            warmup=1,
            stream_mb=20,
            streams=2,
            templates=("base", "vscode"),  # python and node take base's path: their own image only
            forks=1,
            fork_mb=100,
        )


class BenchError(RuntimeError):
    pass


def progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def elapsed_ms(began: float) -> float:
    return (time.perf_counter() - began) * 1000


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


# -- the server's memory ------------------------------------------------------------------------------------


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process, in kB."""
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    return values


def reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0, `echo 5 > /proc/PID/clear_refs`)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True
