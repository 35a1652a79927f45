"""In-process event bus for workspace status: many subscribers per workspace, a bounded queue each.

A slow subscriber never blocks the publisher or the others: when its queue is full the oldest event waiting in it
is dropped and counted, and the next event it receives carries `"missed": <n>`. Status events describe state, so
the latest one is always the one that matters.

Subscribers of one workspace get a status only when it changes (a repeat of the same status is skipped);
`subscribe_all()` is for components that react to every event of every workspace (the process manager ending the
streams of a stopped container), repeats included.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from .domain import WorkspaceRef
from .messages import ListeningItem, Status, StatusMessage, StatusSource

QUEUE_SIZE = 256
ALL_QUEUE_SIZE = 4096


@dataclass(eq=False)
class Subscription:
    """One subscriber's queue."""

    size: int = QUEUE_SIZE
    ports: bool = False  # also gets the listening ports' events (publish_ports)
    queue: asyncio.Queue[StatusMessage] = field(init=False)
    missed: int = 0

    def __post_init__(self) -> None:
        self.queue = asyncio.Queue(self.size)

    def offer(self, event: StatusMessage) -> None:
        if self.queue.full():
            self.queue.get_nowait()
            self.missed += 1
        self.queue.put_nowait(event)

    async def get(self) -> StatusMessage:
        event = await self.queue.get()
        if self.missed:
            event = {**event, "missed": self.missed}
            self.missed = 0
        return event


class EventBus:
    """publish() never waits; subscribe() and subscribe_all() are async context managers that always unsubscribe."""

    def __init__(self) -> None:
        self._subscribers: dict[WorkspaceRef, set[Subscription]] = {}
        self._everything: set[Subscription] = set()
        self._last: dict[WorkspaceRef, str] = {}

    def publish(
        self,
        ref: WorkspaceRef,
        status: Status,
        source: StatusSource,
        exit_code: int | None = None,
        reason: str | None = None,
    ) -> StatusMessage:
        """Send a status event to every subscriber of the workspace (unless it repeats the last status), and to
        every subscriber of all workspaces."""
        event: StatusMessage = {
            "type": "status",
            "projectId": ref.project_id,
            "workspaceId": ref.workspace_id,
            "status": status,
            "source": source,
        }
        if status in ("exited", "died"):
            event["exitCode"] = exit_code
        if reason is not None:
            event["reason"] = reason
        for subscription in list(self._everything):
            subscription.offer(event)
        if self._last.get(ref) != status:
            self._last[ref] = status
            for subscription in list(self._subscribers.get(ref, ())):
                subscription.offer(event)
        return event

    def publish_remote(self, event: StatusMessage) -> None:
        """A status event another backend process published (ide_backend.service.relay): to the workspace's
        subscribers as any event (a repeat skipped), but not to subscribe_all(), whose listeners (the process
        manager, the stop reasons' recorder, webhooks) act on what happened through this process and the engine."""
        ref = WorkspaceRef(event["projectId"], event["workspaceId"])
        if self._last.get(ref) != event["status"]:
            self._last[ref] = event["status"]
            for subscription in list(self._subscribers.get(ref, ())):
                subscription.offer(event)

    def publish_ports(self, ref: WorkspaceRef, listening: list[ListeningItem]) -> bool:
        """Tell the workspace's subscribers that asked for ports which ports listen in it now (one opened or
        closed): a `running` status with `source: "ports"`, never skipped as a repeat, and not a lifecycle event
        (the service's own subscribe_all() listeners do not get it). Not sent (False) while the last status said
        anything but running (a reading that raced a stop, or a sync), so it never contradicts a lifecycle event."""
        if self._last.get(ref, "running") != "running":
            return False
        event: StatusMessage = {
            "type": "status",
            "projectId": ref.project_id,
            "workspaceId": ref.workspace_id,
            "status": "running",
            "source": "ports",
            "listening": listening,
        }
        for subscription in list(self._subscribers.get(ref, ())):
            if subscription.ports:
                subscription.offer(event)
        return True

    @contextlib.asynccontextmanager
    async def subscribe(self, ref: WorkspaceRef, ports: bool = False) -> AsyncIterator[Subscription]:
        subscription = Subscription(ports=ports)
        self._subscribers.setdefault(ref, set()).add(subscription)
        try:
            yield subscription
        finally:
            subscribers = self._subscribers.get(ref)
            if subscribers is not None:
                subscribers.discard(subscription)
                if not subscribers:
                    del self._subscribers[ref]

    @contextlib.asynccontextmanager
    async def subscribe_all(self) -> AsyncIterator[Subscription]:
        subscription = Subscription(ALL_QUEUE_SIZE)
        self._everything.add(subscription)
        try:
            yield subscription
        finally:
            self._everything.discard(subscription)

    def subscriber_count(self) -> int:
        """Subscriptions held by clients (the service's own subscribe_all() is not counted)."""
        return sum(len(s) for s in self._subscribers.values())
