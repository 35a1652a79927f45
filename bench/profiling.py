"""`--py-spy DIR`: py-spy recording the server and the bench client for the whole run (bench/profile_summary.py
summarises what it writes)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path


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
