"""Workspace status events: what the API's own steps publish, what the engine's event stream reports, and why a
process's stream ended when its container is the reason."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from ..errors import IDEError
from ..runtime import ContainerState, Runtime, RuntimeEvent
from .bus import EventBus

log = logging.getLogger(__name__)

_REPORTED = frozenset({"start", "oom", "die", "destroy"})

ContainerEnded = Callable[[str, str, str], None]
OwnerLookup = Callable[[str], Awaitable[tuple[str, str] | None]]  # container name -> (project, workspace)


class StatusEvents:
    """Publishes status events on the bus, from API steps (`source: api`) and engine events (`source: docker`)."""

    def __init__(
        self, runtime: Runtime, bus: EventBus, *, instance: str, label_prefix: str, owner: OwnerLookup
    ) -> None:
        self.runtime = runtime
        self.bus = bus
        self._owner = owner
        self._labels = {f"{label_prefix}.instance": instance}
        self._stopping: set[tuple[str, str]] = set()
        self._on_container_end: ContainerEnded | None = None
        self._watcher: asyncio.Task[None] | None = None

    def start(self, on_container_end: ContainerEnded) -> None:
        """Follow the engine's events; `on_container_end(project, workspace, reason)` hears of stopped containers."""
        self._on_container_end = on_container_end
        self._watcher = asyncio.create_task(self._watch_engine(), name="engine-events")

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher

    def publish(self, project_id: str, workspace_id: str, status: str, **details: Any) -> None:
        self.bus.publish(project_id, workspace_id, status, source="api", **details)

    def publish_state(self, project_id: str, workspace_id: str, state: ContainerState | None) -> None:
        if state is None:
            self.publish(project_id, workspace_id, "removed")
        elif state.running:
            self.publish(project_id, workspace_id, "running")
        else:
            self.publish(project_id, workspace_id, "exited", exitCode=state.exit_code)

    def snapshot(self, project_id: str, workspace_id: str, state: ContainerState | None) -> dict[str, Any]:
        """The status now, as the event a new subscriber gets first."""
        status = "removed" if state is None else ("running" if state.running else "exited")
        event: dict[str, Any] = {
            "type": "status",
            "projectId": project_id,
            "workspaceId": workspace_id,
            "status": status,
            "source": "snapshot",
        }
        if state is not None and not state.running:
            event["exitCode"] = state.exit_code
        return event

    @contextlib.contextmanager
    def stopping(self, project_id: str, workspace_id: str) -> Iterator[None]:
        """While we stop a container ourselves its death is `exited`, not `died`."""
        key = (project_id, workspace_id)
        self._stopping.add(key)
        try:
            yield
        finally:
            self._stopping.discard(key)

    async def end_reason(self, container_id: str, exit_code: int | None, known: Callable[[], str | None]) -> str | None:
        """Why a process's stream ended, when its container is the reason. A process killed by a signal may have
        died with its container a moment before the engine says so: look again for a while, and take the engine's
        die event (`known`) as soon as it arrives."""
        deadline = time.monotonic() + (3.0 if exit_code is None or exit_code >= 128 else 0.0)
        while True:
            if known() is not None:
                return known()
            try:
                state = await self.runtime.inspect(container_id)
            except IDEError:
                return "runtime_unavailable"
            if state is None:
                return "container_removed"
            if not state.running:
                return "oom_killed" if state.oom_killed else "container_stopped"
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(0.05)

    async def _watch_engine(self) -> None:
        """Follow the engine's container events for this instance. After a break, subscribe again from the last
        event seen, so what happened in between is reported too."""
        since: float | None = None
        backoff = 0.5
        while True:
            try:
                async for event in self.runtime.events(self._labels, since):
                    backoff = 0.5
                    since = event.time or since
                    if event.project_id and event.workspace_id:
                        self._on_engine_event((event.project_id, event.workspace_id), event)
                    elif event.action in _REPORTED and (key := await self._owner(event.name)) is not None:
                        self._on_engine_event(key, event)  # a container claimed from the warm pool
            except IDEError as exc:
                log.info("engine events interrupted (%s); following again in %.1f s", exc.message, backoff)
            if since is None:
                since = time.time()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    def _on_engine_event(self, key: tuple[str, str], event: RuntimeEvent) -> None:
        publish = self.bus.publish
        ended = self._on_container_end or (lambda *_: None)
        if event.action == "start":
            publish(*key, "running", source="docker")
        elif event.action == "oom":
            publish(*key, "oom", source="docker")
        elif event.action == "die":
            status = "exited" if key in self._stopping else "died"
            publish(*key, status, source="docker", exitCode=event.exit_code)
            ended(*key, "container_stopped")
        elif event.action == "destroy":
            publish(*key, "removed", source="docker")
            ended(*key, "container_removed")
