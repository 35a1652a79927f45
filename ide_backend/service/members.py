"""The backend processes serving one instance: this one's id, a heartbeat in the store, and which are alive.

Several processes may share one database and one engine (PostgreSQL). What one of them makes for itself, such as its
warm pool containers, is another's to clear away only once its maker has stopped saying it is alive (for
GONE_AFTER seconds), or said goodbye. On SQLite, which serves one process, this process is the only member.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid

from ..errors import IDEError
from ..store import Store

log = logging.getLogger(__name__)

HEARTBEAT = 5.0
GONE_AFTER = 20.0  # a process silent this long is taken for gone


class Members:
    def __init__(self, store: Store, instance: str) -> None:
        self.store = store
        self.instance = instance
        self.process_id = uuid.uuid4().hex
        self.started_at = time.time()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if not self.store.shared:
            return
        try:
            await self.store.heartbeat(self.process_id, self.instance, self.started_at)
        except IDEError as exc:
            log.warning("cannot register this process: %s", exc.message)
        self._task = asyncio.create_task(self._beat(), name="heartbeat")

    async def close(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        with contextlib.suppress(IDEError):
            await self.store.process_gone(self.process_id)

    async def live(self) -> set[str]:
        """The ids of the instance's processes alive now, this one's always among them."""
        if not self.store.shared:
            return {self.process_id}
        return await self.store.live_processes(self.instance, GONE_AFTER) | {self.process_id}

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT)
            try:
                await self.store.heartbeat(self.process_id, self.instance, self.started_at)
            except IDEError as exc:
                log.warning("cannot record that this process is alive: %s", exc.message)
