"""Idle stop that explains itself: a running workspace that nobody has used for its idle timeout is stopped.

Used means any of: an API call that acts on the workspace (`touch`: start, exec, sync, files, theme; looking at it
with status, list or a subscription does not, so a dashboard that polls keeps nothing alive), a process of it
running (exec, terminal or background job started over the websocket, watched or not), a connection attached to
one of its processes, or a holder such as an open VS Code session (`hold`). While any of these lasts the workspace
is kept, and `/status` says by what (`keptAliveBy`); once none does, `/status` says when it will stop
(`idleStopAt`), and the stop's events carry `reason: "idle"`.

With several backend processes on one PostgreSQL database, each one knows only the use that went through it. So
every sweep each process records what it saw (when each workspace was last used, and a lease of three sweeps, at
least 10 s, while something there keeps it in use) in the store, reads what the others recorded, and counts both;
one process at a time (whichever holds the store's `idle-sweep` lock) stops the idle ones. What another process
saw is therefore known here up to one sweep late (IDE_IDLE_SWEEP, 15 s by default): a workspace is never stopped
while any process holds it, and its idle clock counts from its last use through any of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime

from ..errors import IDEError
from ..store import Store
from .domain import WorkspaceRef
from .messages import ProcessItem

log = logging.getLogger(__name__)

LEASE_MIN = 10.0  # seconds: what holds a workspace here stays known to the others through a slow sweep or two
ProcessLister = Callable[[WorkspaceRef], list[ProcessItem]]
Stopper = Callable[[WorkspaceRef], Awaitable[None]]


class IdleMonitor:
    """Knows when each workspace was last used and what keeps it in use; stops the idle ones."""

    def __init__(
        self,
        timeout: Callable[[WorkspaceRef], float],
        sweep: float,
        processes: ProcessLister,
        *,
        sweeping: bool,
        store: Store | None = None,
        process_id: str = "",
    ) -> None:
        self.timeout = timeout  # seconds for a workspace (its template's); 0 turns its idle stop off
        self.sweep = sweep
        self.sweeping = sweeping  # whether any workspace can be stopped as idle at all
        self._processes = processes
        self._last_used: dict[WorkspaceRef, float] = {}  # time.time() of the last use that has ended
        self._holders: dict[WorkspaceRef, Counter[str]] = {}
        self._task: asyncio.Task[None] | None = None
        self._store = store if store is not None and store.shared else None
        self._others: dict[WorkspaceRef, tuple[float, float]] = {}  # (last used, busy until) through the others
        self._process_id = process_id or uuid.uuid4().hex  # this process, among those sharing the store

    def touch(self, ref: WorkspaceRef) -> None:
        """The workspace was used just now (an API call, a message about one of its processes)."""
        self._last_used[ref] = time.time()

    def forget(self, ref: WorkspaceRef) -> None:
        self._last_used.pop(ref, None)
        self._holders.pop(ref, None)

    @contextlib.contextmanager
    def hold(self, ref: WorkspaceRef, label: str) -> Iterator[None]:
        """Keep the workspace in use while the block runs (an open VS Code session, say)."""
        holders = self._holders.setdefault(ref, Counter())
        holders[label] += 1
        try:
            yield
        finally:
            holders[label] -= 1
            if holders[label] <= 0:
                del holders[label]
            self.touch(ref)

    def kept_alive_by(self, ref: WorkspaceRef) -> list[str]:
        """What keeps the workspace in use now, in words; empty when nothing does."""
        reasons = self._here(ref)
        if self._others.get(ref, (0.0, 0.0))[1] > time.time():
            reasons.append("in use through another backend process")
        return reasons

    def _here(self, ref: WorkspaceRef) -> list[str]:
        """What keeps the workspace in use through this process."""
        reasons = []
        for item in self._processes(ref):
            if not item["running"]:
                continue
            kind = "terminal" if item["tty"] else "process"
            if item["attached"]:
                reasons.append(f"{kind} {item['id']} attached")
            else:
                reasons.append(f"{kind} {item['id']} running")
        for label, count in sorted(self._holders.get(ref, Counter()).items()):
            reasons.append(label if count == 1 else f"{label} ({count})")
        return reasons

    def stop_at(self, ref: WorkspaceRef) -> float | None:
        """When the workspace will be stopped if nothing uses it meanwhile; None when idle stop is off or something
        keeps it in use."""
        timeout = self.timeout(ref)
        if timeout <= 0 or self.kept_alive_by(ref):
            return None
        elsewhere = self._others.get(ref, (0.0, 0.0))[0]
        return max(self._last_used.setdefault(ref, time.time()), elsewhere) + timeout

    def stop_at_iso(self, ref: WorkspaceRef) -> str | None:
        at = self.stop_at(ref)
        return None if at is None else datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")

    def start(self, running: Callable[[], Awaitable[list[WorkspaceRef]]], stop: Stopper) -> None:
        if self.sweeping:
            self._task = asyncio.create_task(self._sweep_forever(running, stop), name="idle-stop")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _sweep_forever(self, running: Callable[[], Awaitable[list[WorkspaceRef]]], stop: Stopper) -> None:
        while True:
            await asyncio.sleep(self.sweep)
            try:
                refs = await running()
            except Exception as exc:  # the engine or the database is down: try again next sweep
                log.warning("idle stop: cannot list running workspaces: %s", getattr(exc, "message", exc))
                continue
            if self._store is None:
                await self._stop_due(refs, stop)
                continue
            try:
                await self._share(refs)
                async with self._store.exclusive("idle-sweep") as mine:
                    if mine:  # else another process sweeps this time
                        await self._stop_due(refs, stop)
            except IDEError as exc:
                log.warning("idle stop: the shared database failed: %s", exc.message)

    async def _share(self, refs: list[WorkspaceRef]) -> None:
        """Record what this process saw of each workspace's use; read what every process recorded."""
        assert self._store is not None
        now = time.time()
        lease = now + max(3 * self.sweep, LEASE_MIN)
        rows = []
        for ref in dict.fromkeys([*refs, *self._last_used, *self._holders]):
            busy = lease if self._here(ref) else 0.0
            used = now if busy else self._last_used.get(ref, 0.0)
            if used or busy:
                rows.append((ref.project_id, ref.workspace_id, used, busy))
        await self._store.note_activity(self._process_id, rows)
        seen = await self._store.activity(besides=self._process_id)
        self._others = {WorkspaceRef(p, w): values for (p, w), values in seen.items()}

    async def _stop_due(self, refs: list[WorkspaceRef], stop: Stopper) -> None:
        now = time.time()
        for ref in refs:
            at = self.stop_at(ref)  # a workspace first seen now counts from now
            if at is not None and at <= now:
                log.info("stopping %s: idle for %.0f s", ref, self.timeout(ref))
                try:
                    await stop(ref)
                except Exception as exc:
                    log.warning("idle stop of %s failed: %s", ref, getattr(exc, "message", exc))
                self._last_used.pop(ref, None)
