"""Workspace status events: the API's own steps, and the engine's event stream, which this module alone follows.

Everything else that cares about containers stopping (the process manager, the websockets' subscriptions) hears of
it from the bus this publishes on; nothing calls back into here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from datetime import datetime

from ..errors import IDEError
from ..metrics import engine_stream_reconnected
from ..runtime import ContainerState, Runtime, RuntimeEvent
from ..store import Store, WorkspaceRecord
from .bus import EventBus
from .containers import INSTANCE_LABEL, ContainerOwners
from .domain import WorkspaceRef
from .messages import Status, StatusMessage
from .states import ContainerStates

log = logging.getLogger(__name__)

_REPORTED = frozenset({"start", "oom", "die", "destroy"})
# Reasons a process records before it stops or deletes a workspace itself (so the others tell the same).
_INTENDED = frozenset({"requested", "idle", "deleted"})
# How long before its stream broke a shutting-down engine may have been stopping containers (and the engine's clock
# behind ours): a workspace that died on its own within it, just before a restart, is told as stopped by the restart.
_SHUTDOWN_WINDOW = 15.0


def _timestamp(value: str) -> float:
    """Seconds since the epoch of the engine's RFC 3339 time (0 when unreadable)."""
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return 0.0


class StatusEvents:
    """Publishes status events on the bus, from API steps (`source: api`) and engine events (`source: docker`)."""

    def __init__(
        self,
        runtime: Runtime,
        bus: EventBus,
        owners: ContainerOwners,
        store: Store,
        *,
        instance: str,
        states: ContainerStates | None = None,
    ) -> None:
        self.runtime = runtime
        self.bus = bus
        self.store = store
        self._recorder: asyncio.Task[None] | None = None
        self._owners = owners
        self._labels = {INSTANCE_LABEL: instance}
        self._expected: dict[WorkspaceRef, str] = {}  # workspaces we are stopping or deleting ourselves, and why
        self._destroyed: dict[WorkspaceRef, asyncio.Event] = {}
        self._oom: set[WorkspaceRef] = set()  # the engine reported an out-of-memory kill; its death says so
        self._watcher: asyncio.Task[None] | None = None
        self._states = states  # the view /status answers from: told of the stream's every event and break

    async def start(self) -> None:
        """Record why workspaces stop, then follow the engine's events for this instance's containers."""
        ready = asyncio.Event()
        self._recorder = asyncio.create_task(self._record_stop_reasons(ready), name="stop-reasons")
        await ready.wait()
        self._watcher = asyncio.create_task(self._watch_engine(), name="engine-events")

    async def close(self) -> None:
        for task in (self._watcher, self._recorder):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _record_stop_reasons(self, ready: asyncio.Event) -> None:
        """Keep why each workspace last stopped in its record, for /status (the bus says it as it happens)."""
        async with self.bus.subscribe_all() as events:
            ready.set()
            while True:
                event = await events.get()
                reason = event.get("reason")
                if event["status"] in ("exited", "died", "removed") and reason and reason != "deleted":
                    try:
                        await self.store.update(event["projectId"], event["workspaceId"], stop_reason=reason)
                    except IDEError as exc:
                        log.warning("cannot record why a workspace stopped: %s", exc.message)

    def publish(self, ref: WorkspaceRef, status: Status, reason: str | None = None) -> None:
        """A step the API is taking (creating, starting, syncing, stopping, removed), and why when it says."""
        self.bus.publish(ref, status, "api", reason=reason)

    def publish_state(self, ref: WorkspaceRef, state: ContainerState | None) -> None:
        """Where an API call left the container."""
        if state is None:
            self.bus.publish(ref, "removed", "api")
        elif state.running:
            self.bus.publish(ref, "running", "api")
        else:
            self.bus.publish(ref, "exited", "api", exit_code=state.exit_code)

    @staticmethod
    def snapshot(ref: WorkspaceRef, state: ContainerState | None) -> StatusMessage:
        """The status now, as the event a new subscriber gets first."""
        event: StatusMessage = {
            "type": "status",
            "projectId": ref.project_id,
            "workspaceId": ref.workspace_id,
            "status": "removed" if state is None else ("running" if state.running else "exited"),
            "source": "snapshot",
        }
        if state is not None and not state.running:
            event["exitCode"] = state.exit_code
        return event

    @contextlib.contextmanager
    def stopping(self, ref: WorkspaceRef, reason: str = "requested") -> Iterator[None]:
        """While we stop (or delete) a container ourselves its death is `exited`, not `died`, and the engine's
        events about it carry our `reason`."""
        self._expected[ref] = reason
        self._destroyed[ref] = asyncio.Event()
        try:
            yield
        finally:
            self._expected.pop(ref, None)
            self._destroyed.pop(ref, None)

    async def settled(self, ref: WorkspaceRef, timeout: float = 3.0) -> None:
        """Within stopping(): wait (briefly) for the engine to report the container's removal, so its event carries
        our reason rather than arriving after we stopped expecting it."""
        destroyed = self._destroyed.get(ref)
        if destroyed is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(destroyed.wait(), timeout)

    async def _watch_engine(self) -> None:
        """Follow the engine's container events for this instance. After a break, subscribe again from the last
        event seen, so what happened in between is reported too. The first subscription too asks for the events
        since just before it was made: the engine answers the request before it subscribes (states.py)."""
        since: float | None = time.time()
        opened = self._states.opened if self._states is not None else None
        backoff = 0.5
        try:
            await self._follow(since, opened, backoff)
        finally:  # cancelled, or a bug: the view may no longer be trusted
            if self._states is not None:
                self._states.broke()

    async def _follow(self, since: float | None, opened: Callable[[], None] | None, backoff: float) -> None:
        broke_at: float | None = None  # when the stream last broke, until the engine answers again
        while True:
            try:
                if broke_at is not None:
                    await self.runtime.ping()
                    await self._after_outage(broke_at)
                    broke_at = None
                async for event in self.runtime.events(self._labels, since, opened):
                    if self._states is not None:
                        self._states.saw(event)
                    backoff = 0.5
                    since = event.time or since
                    if event.project_id and event.workspace_id:
                        await self._on_engine_event(WorkspaceRef(event.project_id, event.workspace_id), event)
                    elif event.action in _REPORTED and (ref := await self._owners.claimed_by(event.name)) is not None:
                        await self._on_engine_event(ref, event)  # a container claimed from the warm pool
            except IDEError as exc:
                if self._states is not None:
                    self._states.broke()
                log.info("engine events interrupted (%s); following again in %.1f s", exc.message, backoff)
                engine_stream_reconnected()
                broke_at = broke_at or time.time()
            if since is None:
                since = time.time()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def _after_outage(self, broke_at: float) -> None:
        """The engine answers again after the stream broke at `broke_at`. An engine that restarted meanwhile stopped
        our containers as it shut down: unseen when its API closed first (no reason recorded), or seen dying just
        before the stream broke (`died`). Either way a workspace stopped since a little before the break stopped for
        `engine_restarted`, recorded and told (a subscriber that was told `died` already keeps that status; /status
        has the reason). One that died on its own while a live engine could not be reached is reported again by the
        events replayed since then, which follow."""
        limit = asyncio.Semaphore(16)

        async def stopped_by_engine(record: WorkspaceRecord) -> ContainerState | None:
            async with limit:
                state = await self.runtime.inspect(record.container_name)
            if state is None or state.running or state.finished_at is None:
                return None
            return state if _timestamp(state.finished_at) >= broke_at - _SHUTDOWN_WINDOW else None

        try:
            records = [r for r in await self.store.all() if r.stop_reason in (None, "died")]
            states = await asyncio.gather(*(stopped_by_engine(r) for r in records))
            for record, state in zip(records, states, strict=True):
                if state is not None:
                    ref = WorkspaceRef(record.project_id, record.workspace_id)
                    log.warning("%s was stopped by the engine as it shut down (restarted)", ref)
                    await self.store.update(ref.project_id, ref.workspace_id, stop_reason="engine_restarted")
                    self.bus.publish(ref, "died", "docker", exit_code=state.exit_code, reason="engine_restarted")
        except IDEError as exc:
            log.warning("cannot tell which workspaces the engine stopped while it was away: %s", exc.message)

    async def _intended(self, ref: WorkspaceRef) -> str | None:
        """Why another process sharing the database is stopping or deleting the workspace, if it is: that process
        records its reason before it acts (a start clears it), and a deleted workspace has no record left."""
        if ref in self._expected or not self.store.shared:
            return self._expected.get(ref)
        try:
            record = await self.store.get(ref.project_id, ref.workspace_id)
        except IDEError:
            return None
        if record is None:
            return "deleted"
        return record.stop_reason if record.stop_reason in _INTENDED else None

    async def _on_engine_event(self, ref: WorkspaceRef, event: RuntimeEvent) -> None:
        expected = await self._intended(ref) if event.action in ("die", "destroy") else None
        if event.action == "start":
            self._oom.discard(ref)
            self.bus.publish(ref, "running", "docker")
        elif event.action == "oom":
            self._oom.add(ref)
            self.bus.publish(ref, "oom", "docker")
        elif event.action == "die":
            status: Status = "died" if expected is None else "exited"
            reason = expected or ("oom_killed" if ref in self._oom else "died")
            self._oom.discard(ref)
            self.bus.publish(ref, status, "docker", exit_code=event.exit_code, reason=reason)
        elif event.action in ("node_down", "node_drained"):  # a Swarm node left with its workspaces (swarm.py)
            self.bus.publish(ref, "died", "docker", reason=event.action)
        elif event.action == "destroy":
            self.bus.publish(ref, "removed", "docker", reason=expected or "removed_outside")
            if (destroyed := self._destroyed.get(ref)) is not None:
                destroyed.set()
