"""Webhooks: a workspace's lifecycle events POSTed as JSON to the operator's URL (IDE_WEBHOOK_URL) and to its
project's own URL (POST /api/v1/webhooks/set), signed, retried with back-off, in order, and never in the way of the
API: events are taken off the bus into one outbox per receiver, each emptied by a task of its own, so a receiver that
is down holds up only its own events.

Events: `workspace.started`, `workspace.stopped` (asked for: `reason: "requested"`), `workspace.idle_stopped`,
`workspace.died` (`reason`: `died`, `oom_killed` or `engine_restarted`, with `exitCode`), `workspace.oom` (the
kernel's out-of-memory killer struck inside it; the death follows), `workspace.deleted` and `workspace.removed`
(removed behind the backend's back). A body:

    {"id": "<uuid>", "type": "workspace.stopped", "projectId": "p1", "workspaceId": "w1", "reason": "requested",
     "exitCode": 0, "at": "2026-11-29T13:40:00.123Z"}

Headers: `X-IDE-Event` (the type), `X-IDE-Delivery` (the id: the same on every retry, for a receiver to drop
repeats), `X-IDE-Timestamp` (Unix seconds) and `X-IDE-Signature: sha256=<hex>`, the HMAC-SHA256 of
`<timestamp>.<body>` with IDE_WEBHOOK_SECRET (the API token when unset), or with the project's own secret for its
URL (the operator's secret never goes to a project's receiver). A project's URL is read from the store for each
event, so a change made through any backend process applies to the next event on all of them. A delivery is done
when the receiver answers 2xx; anything else (or no answer within 10 s) is retried after 1, 2, 4 ... up to 60 s, for
up to IDE_WEBHOOK_MAX_AGE seconds after the event, then dropped with a warning. Later events wait for the one being
retried, so a receiver sees them in order. At most 10,000 wait per receiver; past that the oldest is dropped with a
warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Any

import aiohttp

from ..errors import IDEError
from .bus import EventBus
from .messages import StatusMessage

log = logging.getLogger(__name__)

OUTBOX_LIMIT = 10_000
ATTEMPT_TIMEOUT = 10.0
BACKOFF_FIRST, BACKOFF_MAX = 1.0, 60.0

ProjectLookup = Callable[[str], Awaitable[tuple[str, bytes] | None]]
"""A project id -> its own (url, secret), or None."""
Leadership = Callable[[], AbstractAsyncContextManager[bool]]
"""Whether this process is the one that sends (held while the block runs); see Webhooks."""
LEADER_RETRY = 5.0  # how often a process that does not send tries to become the one that does


def event_type(message: StatusMessage) -> str | None:
    """The webhook event a bus message is, or None for a step nobody is told of (creating, syncing, ...)."""
    status, reason = message["status"], message.get("reason")
    if status == "running":
        return "workspace.started"
    if status == "oom":
        return "workspace.oom"
    if status in ("exited", "died") and reason:
        if reason == "idle":
            return "workspace.idle_stopped"
        if reason == "requested":
            return "workspace.stopped"
        if reason in ("died", "oom_killed", "engine_restarted"):
            return "workspace.died"
    if status == "removed" and reason in ("deleted", "removed_outside"):
        return "workspace.deleted" if reason == "deleted" else "workspace.removed"
    return None


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The X-IDE-Signature value for a body sent at `timestamp`."""
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class Receiver:
    """One URL and its key: an outbox and the task that empties it, in order, retrying the head with back-off."""

    def __init__(self, url: str, secret: bytes, session: aiohttp.ClientSession, max_age: float) -> None:
        self.url = url
        self.secret = secret
        self.max_age = max_age
        self.delivered = 0
        self.dropped = 0
        self._session = session
        self._outbox: deque[tuple[float, dict[str, Any]]] = deque()
        self._ready = asyncio.Event()
        self._task = asyncio.create_task(self._deliver(), name=f"webhooks-deliver {url}")

    @property
    def waiting(self) -> int:
        return len(self._outbox)

    def put(self, made_at: float, event: dict[str, Any]) -> None:
        if len(self._outbox) >= OUTBOX_LIMIT:
            self._outbox.popleft()
            self.dropped += 1
            log.warning("webhooks: more than %d events waiting for %s; the oldest was dropped", OUTBOX_LIMIT, self.url)
        self._outbox.append((made_at, event))
        self._ready.set()

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        if self._outbox:
            log.warning("webhooks: %d event(s) for %s not delivered at shutdown", len(self._outbox), self.url)

    async def _deliver(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self._outbox:
                made_at, event = self._outbox[0]
                await self._send(made_at, event)
                self._outbox.popleft()

    async def _send(self, made_at: float, event: dict[str, Any]) -> None:
        """Deliver one event, retrying with back-off until it is accepted or too old."""
        body = json.dumps(event, separators=(",", ":")).encode()
        wait = BACKOFF_FIRST
        while True:
            timestamp = str(int(time.time()))
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "ide-backend-webhooks",
                "X-IDE-Event": event["type"],
                "X-IDE-Delivery": event["id"],
                "X-IDE-Timestamp": timestamp,
                "X-IDE-Signature": sign(self.secret, timestamp, body),
            }
            try:
                async with self._session.post(self.url, data=body, headers=headers) as response:
                    await response.read()
                    if 200 <= response.status < 300:
                        self.delivered += 1
                        return
                    problem = f"answered {response.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                problem = f"did not answer ({exc.__class__.__name__})"
            if time.monotonic() - made_at + wait > self.max_age:
                self.dropped += 1
                log.warning("webhooks: %s %s for %s; dropped", self.url, problem, event["type"])
                return
            log.info("webhooks: %s %s; trying again in %.0f s", self.url, problem, wait)
            await asyncio.sleep(wait)
            wait = min(wait * 2, BACKOFF_MAX)


class Webhooks:
    """Follows the bus and delivers lifecycle events to the operator's URL (if set) and to each project's own.

    With several backend processes on one database (`leadership` given), every process sees the engine's events,
    so one process at a time sends: the one holding the store's `webhooks` lock (the others try every 5 s, so a
    sender that dies is replaced within seconds; events in between are not sent). The reasons of stops and
    deletions other processes made reach it through the engine's events and the reasons those processes recorded
    first (service/status.py), so nothing else is needed; a deletion through another process of a workspace that
    had no container (no engine event) is the one event it does not hear of."""

    def __init__(
        self,
        bus: EventBus,
        url: str,
        secret: bytes,
        *,
        max_age: float,
        project_lookup: ProjectLookup,
        leadership: Leadership | None = None,
    ) -> None:
        self.bus = bus
        self.url = url
        self.secret = secret
        self.max_age = max_age
        self._lookup = project_lookup
        self._leadership = leadership
        self._receivers: dict[tuple[str, bytes], Receiver] = {}
        self._last: dict[tuple[str, str], str] = {}  # the last event type told per workspace (a start is told once)
        self._gone = {"delivered": 0, "dropped": 0}  # counts of receivers let go
        self._session: aiohttp.ClientSession | None = None
        self._follower: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=ATTEMPT_TIMEOUT), cookie_jar=aiohttp.DummyCookieJar()
        )
        following = asyncio.Event()
        self._follower = asyncio.create_task(self._follow(following), name="webhooks-follow")
        await following.wait()

    async def close(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
        for receiver in self._receivers.values():
            await receiver.close()
        if self._session is not None:
            await self._session.close()

    def stats(self) -> dict[str, int] | None:
        """Events waiting, delivered and dropped over every receiver; None when there has never been one."""
        if not self._receivers and not self.url and not any(self._gone.values()):
            return None
        receivers = self._receivers.values()
        return {
            "waiting": sum(r.waiting for r in receivers),
            "delivered": self._gone["delivered"] + sum(r.delivered for r in receivers),
            "dropped": self._gone["dropped"] + sum(r.dropped for r in receivers),
        }

    async def _follow(self, following: asyncio.Event) -> None:
        if self._leadership is None:
            async with self.bus.subscribe_all() as events:
                following.set()
                while True:
                    await self._take(await events.get())
        following.set()
        while True:
            try:
                async with self._leadership() as sending:
                    if sending:
                        log.info("webhooks: this process sends them")
                        async with self.bus.subscribe_all() as events:
                            while True:
                                await self._take(await events.get())
            except IDEError as exc:
                log.warning("webhooks: the shared database failed (%s); trying again", exc.message)
            await asyncio.sleep(LEADER_RETRY)

    async def _take(self, message: StatusMessage) -> None:
        kind = event_type(message)
        key = (message["projectId"], message["workspaceId"])
        # The API and the engine both tell of a start (and of a deletion): each is sent once, until the next change.
        if kind is None or self._last.get(key) == kind:
            return
        self._last[key] = kind
        event: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "type": kind,
            "projectId": message["projectId"],
            "workspaceId": message["workspaceId"],
            "at": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }
        if message.get("reason"):
            event["reason"] = message["reason"]
        if "exitCode" in message:
            event["exitCode"] = message["exitCode"]
        made_at = time.monotonic()
        targets = [(self.url, self.secret)] if self.url else []
        try:
            own = await self._lookup(message["projectId"])
        except IDEError as exc:
            own = None
            log.warning("webhooks: cannot read project %s's webhook (%s); not sent there", key[0], exc.message)
        if own is not None:
            targets.append(own)
        for target in targets:
            self._receiver(*target).put(made_at, event)
        # A receiver with nothing left to send and no part in this event (a project's old URL, say) is let go;
        # its counts stay in the totals.
        for key_, receiver in list(self._receivers.items()):
            if receiver.waiting == 0 and key_ not in targets:
                del self._receivers[key_]
                self._gone["delivered"] += receiver.delivered
                self._gone["dropped"] += receiver.dropped
                await receiver.close()

    def _receiver(self, url: str, secret: bytes) -> Receiver:
        receiver = self._receivers.get((url, secret))
        if receiver is None:
            assert self._session is not None, "Webhooks.start() first"
            receiver = self._receivers[(url, secret)] = Receiver(url, secret, self._session, self.max_age)
        return receiver
