"""Webhooks: a workspace's lifecycle events POSTed as JSON to the operator's URL (IDE_WEBHOOK_URL), signed, retried
with back-off, in order, and never in the way of the API: events are taken off the bus into an outbox of their own
and a single task delivers them.

Events: `workspace.started`, `workspace.stopped` (asked for: `reason: "requested"`), `workspace.idle_stopped`,
`workspace.died` (`reason`: `died`, `oom_killed` or `engine_restarted`, with `exitCode`), `workspace.oom` (the
kernel's out-of-memory killer struck inside it; the death follows), `workspace.deleted` and `workspace.removed`
(removed behind the backend's back). A body:

    {"id": "<uuid>", "type": "workspace.stopped", "projectId": "p1", "workspaceId": "w1", "reason": "requested",
     "exitCode": 0, "at": "2026-11-29T13:40:00.123Z"}

Headers: `X-IDE-Event` (the type), `X-IDE-Delivery` (the id: the same on every retry, for a receiver to drop
repeats), `X-IDE-Timestamp` (Unix seconds) and `X-IDE-Signature: sha256=<hex>`, the HMAC-SHA256 of
`<timestamp>.<body>` with IDE_WEBHOOK_SECRET (the API token when unset). A delivery is done when the receiver
answers 2xx; anything else (or no answer within 10 s) is retried after 1, 2, 4 ... up to 60 s, for up to
IDE_WEBHOOK_MAX_AGE seconds after the event, then dropped with a warning. Later events wait for the one being
retried, so a receiver sees them in order. At most 10,000 wait; past that the oldest is dropped with a warning.
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
from datetime import UTC, datetime
from typing import Any

import aiohttp

from .bus import EventBus
from .messages import StatusMessage

log = logging.getLogger(__name__)

OUTBOX_LIMIT = 10_000
ATTEMPT_TIMEOUT = 10.0
BACKOFF_FIRST, BACKOFF_MAX = 1.0, 60.0


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


class Webhooks:
    """Follows the bus and delivers lifecycle events to one URL."""

    def __init__(self, bus: EventBus, url: str, secret: bytes, *, max_age: float) -> None:
        self.bus = bus
        self.url = url
        self.secret = secret
        self.max_age = max_age
        self.delivered = 0
        self.dropped = 0
        self._outbox: deque[tuple[float, dict[str, Any]]] = deque()
        self._ready = asyncio.Event()
        self._last: dict[tuple[str, str], str] = {}  # the last event type told per workspace (a start is told once)
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        following = asyncio.Event()
        self._tasks = [
            asyncio.create_task(self._follow(following), name="webhooks-follow"),
            asyncio.create_task(self._deliver(), name="webhooks-deliver"),
        ]
        await following.wait()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._outbox:
            log.warning("webhooks: %d event(s) not delivered at shutdown", len(self._outbox))

    def stats(self) -> dict[str, int]:
        return {"waiting": len(self._outbox), "delivered": self.delivered, "dropped": self.dropped}

    async def _follow(self, following: asyncio.Event) -> None:
        async with self.bus.subscribe_all() as events:
            following.set()
            while True:
                self._take(await events.get())

    def _take(self, message: StatusMessage) -> None:
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
        if len(self._outbox) >= OUTBOX_LIMIT:
            self._outbox.popleft()
            self.dropped += 1
            log.warning("webhooks: more than %d events waiting; the oldest was dropped", OUTBOX_LIMIT)
        self._outbox.append((time.monotonic(), event))
        self._ready.set()

    async def _deliver(self) -> None:
        async with aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=ATTEMPT_TIMEOUT), cookie_jar=aiohttp.DummyCookieJar()
        ) as session:
            while True:
                await self._ready.wait()
                self._ready.clear()
                while self._outbox:
                    made_at, event = self._outbox[0]
                    await self._send(session, made_at, event)
                    self._outbox.popleft()

    async def _send(self, session: aiohttp.ClientSession, made_at: float, event: dict[str, Any]) -> None:
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
                async with session.post(self.url, data=body, headers=headers) as response:
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
