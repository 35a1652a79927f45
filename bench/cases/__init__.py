"""The bench's cases, in the order a full run takes them; `--case NAME` picks some (bench/README.md: The cases)."""

from __future__ import annotations

from runner import Case

from cases.calls import case_exec, case_start_running, case_status
from cases.concurrency import case_concurrency
from cases.lifecycle import case_delete, case_fork, case_start
from cases.stream import case_ws_stream
from cases.sync import case_sync
from cases.watch import case_watch

CASES: list[tuple[str, Case]] = [
    ("exec", case_exec),
    ("status", case_status),
    ("start", case_start),
    ("start_running", case_start_running),
    ("delete", case_delete),
    ("fork", case_fork),
    ("sync", case_sync),
    ("concurrency", case_concurrency),
    ("ws_stream", case_ws_stream),
    ("watch", case_watch),
]
