"""Benchmark ide-backend against raw Docker, both measured in the same run on the same engine.

    .venv/bin/python bench/bench.py [--quick] [--json PATH] [--case NAME ...] [--py-spy DIR]

Starts a real server (`python -m ide_backend serve`) with its own IDE_INSTANCE, times each API call next to the
smallest raw-Docker (aiodocker or docker CLI) equivalent, prints a table and writes every number as JSON. Every
container and volume it makes (the server's and the raw ones) carries the label ide-backend.instance=<instance> and
is removed at the end, also on failure, Ctrl-C and SIGTERM. See bench/README.md for what each case measures.

This file is the command line; the rest of bench/: runner.py (one run: the server, the clients, the raw-Docker
equivalents, the paired timing loop), cases/ (one module per family of cases), measure.py (plan and statistics),
report.py (the table and notes), machine.py and profiling.py. The server is started by tests/harness.py, as the
tests start theirs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# After bench/ itself: the repository, for `tests.harness` (the server harness the tests use too).
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from cases import CASES
from machine import git_state
from measure import Plan, progress
from profiling import start_py_spy, stop_py_spy
from report import concurrency_summary, notes_summary, render_table
from runner import IMAGE, Bench, run_cases, start_server

from tests.harness import Server, remove_instance

REPO = Path(__file__).resolve().parent.parent
DEFAULT_JSON = REPO / "bench" / "results" / "latest.json"


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
    server: Server | None = None
    date = datetime.now(UTC).isoformat(timespec="seconds")
    began = time.monotonic()
    bench: Bench | None = None
    machine: dict[str, Any] = {}
    code = 0

    def on_sigterm(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    spies: list[subprocess.Popen[bytes]] = []
    try:
        server = start_server(tmp, instance, secrets.token_urlsafe(24))
        progress(f"instance {instance}, server on {server.url}, temp dir {tmp}")
        if args.py_spy:
            spies = start_py_spy(args.py_spy, {"server": server.pid, "client": os.getpid()})
        bench, machine = asyncio.run(run_cases(server, plan, tmp, cases))
    except (KeyboardInterrupt, asyncio.CancelledError):
        progress("interrupted; cleaning up")
        code = 130
    except Exception:
        traceback.print_exc()
        progress(f"failed; server log tail:\n{server.log_tail() if server else '(the server did not start)'}")
        code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the clean-up runs to its end
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop_py_spy(spies)
        if server is not None:
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
            "templates": list(plan.templates),
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
