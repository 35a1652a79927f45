"""Per-workspace mutual exclusion, within this process and across every process sharing the database.

Every step that changes a workspace's container or files (start, stop, delete, sync, fork, finishing a staged
write) runs holding its workspace's lock: first this process's asyncio lock (so tasks of one process queue here,
without touching the database), then the store's lock for the workspace (a PostgreSQL advisory lock; nothing on
SQLite, which serves one process). So 20 concurrent starts of one workspace spread over three processes make one
container, and two syncs each apply whole.

    async with locks.hold(ref):
        ...
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from ..store import Store
from .domain import WorkspaceRef


class WorkspaceLocks:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._local: dict[WorkspaceRef, asyncio.Lock] = {}

    @contextlib.asynccontextmanager
    async def hold(self, ref: WorkspaceRef) -> AsyncIterator[None]:
        local = self._local.setdefault(ref, asyncio.Lock())
        async with local, self._store.workspace_lock(f"workspace:{ref.project_id}/{ref.workspace_id}"):
            yield

    def forget(self, ref: WorkspaceRef) -> None:
        """Drop a deleted workspace's lock, unless someone holds or waits for it."""
        local = self._local.get(ref)
        if local is not None and not local.locked():
            del self._local[ref]
