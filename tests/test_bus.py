"""The status event bus, in process: per-workspace subscribers see changes only, a slow one loses the oldest and
is told how many, subscribe_all() sees every event, and leaving unsubscribes."""

from __future__ import annotations

import asyncio

from ide_backend.service.bus import QUEUE_SIZE, EventBus
from ide_backend.service.domain import WorkspaceRef

A, B = WorkspaceRef("p", "a"), WorkspaceRef("p", "b")


def test_subscribers_see_their_workspace_and_changes_only() -> None:
    async def scenario() -> None:
        bus = EventBus()
        async with bus.subscribe(A) as sub, bus.subscribe_all() as everything:
            bus.publish(A, "running", "api")
            bus.publish(A, "running", "docker")  # the same status again: not news for a subscriber
            bus.publish(B, "creating", "api")
            bus.publish(A, "exited", "docker", exit_code=3)
            first, second = await sub.get(), await sub.get()
            assert (first["status"], second["status"], second.get("exitCode")) == ("running", "exited", 3)
            assert sub.queue.empty()
            seen = [(await everything.get())["status"] for _ in range(4)]
            assert seen == ["running", "running", "creating", "exited"]
            assert bus.subscriber_count() == 1  # the service's own subscribe_all() is not a client's
        assert bus.subscriber_count() == 0

    asyncio.run(scenario())


def test_a_slow_subscriber_loses_the_oldest_and_is_told() -> None:
    async def scenario() -> None:
        bus = EventBus()
        async with bus.subscribe(A) as sub:
            for i in range(QUEUE_SIZE + 5):
                bus.publish(A, "running" if i % 2 else "exited", "docker")
            first = await sub.get()
            assert first["missed"] == 5
            rest = [await sub.get() for _ in range(QUEUE_SIZE - 1)]
            assert all("missed" not in event for event in rest)

    asyncio.run(scenario())
