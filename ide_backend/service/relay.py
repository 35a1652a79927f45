"""Status events across backend processes sharing one PostgreSQL database.

Each process follows the engine's events itself, so those reach every process's subscribers already. The steps the
API takes (`creating`, `starting`, `syncing`, `stopping`, and where a call left the container) are known only to
the process that took them: this relay sends each of them as a PostgreSQL NOTIFY, and publishes the ones other
processes sent to this process's subscribers of that workspace (ide_backend.service.bus.EventBus.publish_remote),
so a websocket hears of a sync within a moment whichever process it is connected to. Only subscribers hear them:
webhooks, the stop reasons' recorder and the process manager act on what happened through their own process and on
the engine's events, so nothing is done twice. Notifications sent while a process's listening connection was down
are not replayed; the engine's events, and a new subscription's snapshot, say where things stand. Off on SQLite,
which serves one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid

from ..errors import IDEError
from ..store import Store
from .bus import EventBus
from .messages import StatusMessage

log = logging.getLogger(__name__)

CHANNEL = "ide_backend_status"


class EventRelay:
    def __init__(self, store: Store, bus: EventBus, instance: str, process_id: str = "") -> None:
        self.store = store
        self.bus = bus
        self.instance = instance
        self.process_id = process_id or uuid.uuid4().hex
        self.relayed = 0  # events sent to other processes
        self.received = 0  # events other processes sent here
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        if not self.store.shared:
            return
        forwarding, listening = asyncio.Event(), asyncio.Event()
        self._tasks = [
            asyncio.create_task(self._forward(forwarding), name="relay-send"),
            asyncio.create_task(self._receive(listening), name="relay-receive"),
        ]
        await forwarding.wait()
        with contextlib.suppress(TimeoutError):  # a database that is slow to answer does not hold up start-up
            await asyncio.wait_for(listening.wait(), 5)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _forward(self, ready: asyncio.Event) -> None:
        async with self.bus.subscribe_all() as events:
            ready.set()
            while True:
                event = await events.get()
                if event["source"] != "api":
                    continue
                event.pop("missed", None)  # how many this process missed is no news to the others
                payload = json.dumps({"from": self.process_id, "instance": self.instance, "event": event})
                try:
                    await self.store.notify(CHANNEL, payload)
                    self.relayed += 1
                except IDEError as exc:
                    log.warning("cannot tell other processes of a status event: %s", exc.message)

    async def _receive(self, ready: asyncio.Event) -> None:
        backoff = 0.5
        while True:
            try:
                async with self.store.listen(CHANNEL) as payloads:
                    ready.set()
                    backoff = 0.5
                    while (payload := await payloads.get()) is not None:
                        self._take(payload)
                log.warning("lost the connection that hears other processes' status events; listening again")
            except IDEError as exc:
                log.warning(
                    "cannot hear other processes' status events (%s); trying again in %.0f s", exc.message, backoff
                )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10.0)

    def _take(self, payload: str) -> None:
        try:
            message = json.loads(payload)
            if message["from"] == self.process_id or message["instance"] != self.instance:
                return
            event: StatusMessage = message["event"]
            if event.get("type") != "status" or not event.get("projectId") or not event.get("workspaceId"):
                raise ValueError("not a status event")
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("ignored a malformed status notification: %s", exc)
            return
        self.received += 1
        self.bus.publish_remote(event)
