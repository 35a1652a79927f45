"""In-process event bus for workspace status: many subscribers per workspace, a bounded queue each.

A slow subscriber never blocks the publisher or the others: when its queue is full the oldest event waiting in it
is dropped and counted, and the next event it receives carries `"missed": <n>`. Status events describe state, so
the latest one is always the one that matters.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

WorkspaceKey = tuple[str, str]
QUEUE_SIZE = 256


@dataclass(eq=False)
class Subscription:
    """One subscriber's queue for one workspace."""

    key: WorkspaceKey
    queue: asyncio.Queue[dict[str, Any]] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    missed: int = 0

    def offer(self, event: dict[str, Any]) -> None:
        if self.queue.full():
            self.queue.get_nowait()
            self.missed += 1
        self.queue.put_nowait(event)

    async def get(self) -> dict[str, Any]:
        event = await self.queue.get()
        if self.missed:
            event = {**event, "missed": self.missed}
            self.missed = 0
        return event


class EventBus:
    """publish() never waits; subscribe() is an async context manager that always unsubscribes."""

    def __init__(self) -> None:
        self._subscribers: dict[WorkspaceKey, set[Subscription]] = {}
        self._last: dict[WorkspaceKey, str] = {}

    def publish(self, project_id: str, workspace_id: str, status: str, **details: Any) -> None:
        """Send a status event to every subscriber of the workspace; a repeat of the same status is skipped."""
        key = (project_id, workspace_id)
        if self._last.get(key) == status and not details.get("force"):
            return
        self._last[key] = status
        details.pop("force", None)
        event = {"type": "status", "projectId": project_id, "workspaceId": workspace_id, "status": status, **details}
        for subscription in list(self._subscribers.get(key, ())):
            subscription.offer(event)

    @contextlib.asynccontextmanager
    async def subscribe(self, project_id: str, workspace_id: str) -> AsyncIterator[Subscription]:
        key = (project_id, workspace_id)
        subscription = Subscription(key)
        self._subscribers.setdefault(key, set()).add(subscription)
        try:
            yield subscription
        finally:
            subscribers = self._subscribers.get(key)
            if subscribers is not None:
                subscribers.discard(subscription)
                if not subscribers:
                    del self._subscribers[key]

    def subscriber_count(self) -> int:
        return sum(len(s) for s in self._subscribers.values())
