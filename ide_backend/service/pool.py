"""The warm pool: workspace containers created and started ahead of need, so /start of a new workspace is one
rename instead of a volume create, a container create and a start. docs/pool.md has the design.

There is one pool per template (WarmPools), each sized by its template. A pool container is a complete workspace
container of its template (same image, limits, hardening; its own empty volume at the workspace folder; its agent
already connected) that carries only the instance label, `ide-backend.pool` and `ide-backend.template`, under the
name `ide-<instance>.pool-<template>-<hex>` (a workspace's is `ide-<instance>-...` and an instance name has no dot,
so no workspace's container can be taken for an unclaimed one). A claim renames it to the workspace's own deterministic
name. The rename is by the pool name, never by id, so it is atomic across processes: once a container has been
claimed its pool name no longer resolves, and a second claimer moves on to the next one. Docker cannot relabel a
container, so a claimed container is known as the workspace's by its name (and the store's record), not by labels.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ..errors import Conflict, IDEError, NotFound
from ..runtime import ContainerSpec, Runtime

log = logging.getLogger(__name__)

POOL_LABEL = "ide-backend.pool"
TEMPLATE_LABEL = "ide-backend.template"
OWNER_LABEL = "ide-backend.pool-owner"  # the backend process that made it (service/members.py)
SWEEP_SECONDS = 60.0  # how often the pool containers of processes that are gone are looked for
SpecFactory = Callable[[str, str, Mapping[str, str], str], ContainerSpec]  # name, volume, labels, password
_RETRY_SECONDS = 5.0


def pool_prefix(instance: str) -> str:
    """What every unclaimed pool container's name of this instance starts with (no workspace's does)."""
    return f"ide-{instance}.pool-"


class WarmPool:
    """Keeps `size` started, unclaimed containers of one template ready, and hands them out by renaming."""

    def __init__(
        self, runtime: Runtime, *, size: int, instance: str, template: str, make_spec: SpecFactory, owner: str
    ) -> None:
        self.runtime = runtime
        self.size = size
        self.template = template
        self.prefix = f"{pool_prefix(instance)}{template}-"
        self._labels = {
            "ide-backend.instance": instance,
            POOL_LABEL: "1",
            TEMPLATE_LABEL: template,
            OWNER_LABEL: owner,
        }
        self._make_spec = make_spec
        self._ready: deque[str] = deque()
        self._mine: set[str] = set()  # made by this process and not claimed (yet): what close() removes
        self._wanted = asyncio.Event()
        self._filler: asyncio.Task[None] | None = None
        self.hits = 0
        self.misses = 0

    def owns(self, container_name: str) -> bool:
        """Whether this name is an unclaimed pool container's."""
        return container_name.startswith(self.prefix)

    def stats(self) -> dict[str, int]:
        return {"size": self.size, "ready": len(self._ready), "hits": self.hits, "misses": self.misses}

    async def start(self) -> None:
        """Start filling the pool (WarmPools has removed what an earlier run left)."""
        if self.size > 0:
            self._filler = asyncio.create_task(self._fill_forever(), name="warm-pool")
            self._wanted.set()

    async def close(self) -> None:
        """Stop filling and remove the unclaimed containers this process made, with their volumes: nothing idles
        after the backend stops (another process on the same instance keeps its own)."""
        if self._filler is not None:
            self._filler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._filler
        self._ready.clear()
        for name in sorted(self._mine):
            with contextlib.suppress(IDEError):
                await self._remove(name)
        self._mine.clear()

    async def claim(self, new_name: str) -> bool:
        """Rename a ready container to `new_name`; False when none is ready, or `new_name` is taken meanwhile."""
        while self._ready:
            name = self._ready.popleft()
            self._wanted.set()
            try:
                renamed = await self.runtime.rename(name, new_name)
            except Conflict:  # someone created the workspace's container since the caller looked: use that one
                self._ready.appendleft(name)
                return False
            except IDEError as exc:
                log.warning("could not claim %s from the warm pool: %s", name, exc.message)
                self._ready.appendleft(name)  # it may still be ready; a later claim finds out
                break
            self._mine.discard(name)
            if renamed:
                self.hits += 1
                log.info("claimed %s from the warm pool as %s", name, new_name)
                return True
            # Another backend process on this instance claimed it first (or it was removed): try the next.
        self.misses += 1
        return False

    async def _fill_forever(self) -> None:
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            while len(self._ready) < self.size:
                try:
                    self._ready.append(await self._make_one())
                except IDEError as exc:
                    log.warning("warm pool: %s; trying again in %.0f s", exc.message, _RETRY_SECONDS)
                    await asyncio.sleep(_RETRY_SECONDS)

    async def _make_one(self) -> str:
        name = self.prefix + secrets.token_hex(6)
        spec = self._make_spec(name, _volume(name), self._labels, secrets.token_urlsafe(18))
        self._mine.add(name)
        try:
            await self.runtime.ensure_volume(_volume(name), self._labels)
            state = await self.runtime.create(spec)
            await self.runtime.start(state.id)
            await self.runtime.agent_ready(state.id)  # its first command then pays no attach
        except BaseException:
            self._mine.discard(name)
            with contextlib.suppress(IDEError):
                if not await self._remove(name):  # never created, so never ready nor claimed: only its volume
                    await self.runtime.remove_volume(_volume(name))
            raise
        return name

    async def _remove(self, name: str) -> bool:
        return await remove_pool_container(self.runtime, name)


async def remove_pool_container(runtime: Runtime, name: str) -> bool:
    """Remove a pool container by its pool name, then its volume. A container claimed meanwhile no longer answers to
    that name: it and its volume (now a workspace's files) are left alone, and this returns False."""
    try:
        await runtime.remove(name)
    except NotFound:
        return False
    await runtime.remove_volume(_volume(name))
    return True


def _volume(name: str) -> str:
    return f"{name}-data"


class WarmPools:
    """The warm pools of every template that keeps one, under one name prefix. Unclaimed containers whose maker
    is gone (an earlier run of this process, or another process sharing the instance that stopped or died) are
    removed at start-up and every SWEEP_SECONDS after; those of live processes are theirs to hand out."""

    def __init__(
        self, runtime: Runtime, instance: str, pools: Mapping[str, WarmPool], live: Callable[[], Awaitable[set[str]]]
    ) -> None:
        self.runtime = runtime
        self.prefix = pool_prefix(instance)
        self._labels = {"ide-backend.instance": instance, POOL_LABEL: "1"}
        self._pools = dict(pools)
        self._live = live
        self._sweeper: asyncio.Task[None] | None = None

    def owns(self, container_name: str) -> bool:
        """Whether this name is an unclaimed pool container's (of any template)."""
        return container_name.startswith(self.prefix)

    def get(self, template: str) -> WarmPool | None:
        pool = self._pools.get(template)
        return pool if pool is not None and pool.size > 0 else None

    async def claim(self, template: str, new_name: str) -> bool:
        pool = self.get(template)
        return pool is not None and await pool.claim(new_name)

    def stats(self) -> dict[str, Any]:
        """Totals over every pool, and each template's own."""
        per = {name: pool.stats() for name, pool in self._pools.items()}
        totals = {key: sum(one[key] for one in per.values()) for key in ("size", "ready", "hits", "misses")}
        return {**totals, "templates": per}

    async def start(self) -> None:
        """Remove what processes that are gone left in any pool (an earlier run's settings, templates or images may
        have changed), then fill each."""
        try:
            await self.remove_orphans()
        except IDEError as exc:  # the engine may be down at start-up: the fillers keep trying
            log.warning("warm pool: could not look for leftovers: %s", exc.message)
        for pool in self._pools.values():
            await pool.start()
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="warm-pool-orphans")

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for pool in self._pools.values():
            await pool.close()

    async def remove_orphans(self) -> list[str]:
        """Remove the unclaimed containers whose maker is not alive (or that carry no maker: made before makers
        were labelled); returns their names."""
        found = await self.runtime.container_names(self._labels)  # first: one made after is not in it
        kept: set[str] = set()
        for owner in await self._live():
            kept.update(await self.runtime.container_names({**self._labels, OWNER_LABEL: owner}))
        removed = []
        for name in found:
            if self.owns(name) and name not in kept and await remove_pool_container(self.runtime, name):
                removed.append(name)
        if removed:
            log.info("warm pool: removed %d container(s) of processes that are gone", len(removed))
        return removed

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            try:
                await self.remove_orphans()
            except IDEError as exc:
                log.warning("warm pool: could not look for containers of processes that are gone: %s", exc.message)
