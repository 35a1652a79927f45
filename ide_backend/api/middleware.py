"""ASGI middleware: bearer-token auth on the API, and a hard cap on request body size."""

from __future__ import annotations

import hmac
import json
import time
from collections import deque

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import IDEError, PayloadTooLarge, TooManyAttempts, Unauthorized

PROTECTED_PREFIX = "/api/"


async def _send_error(send: Send, error: IDEError) -> None:
    body = json.dumps(error.to_json()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if isinstance(error, Unauthorized):
        headers.append((b"www-authenticate", b'Bearer realm="ide-backend"'))
    if isinstance(error, TooManyAttempts):
        headers.append((b"retry-after", str(error.details["retryAfter"]).encode()))
    await send({"type": "http.response.start", "status": error.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def token_matches(presented: str | None, expected: str) -> bool:
    """Constant-time comparison, so the token cannot be guessed byte by byte from timings."""
    if not presented:
        return False
    return hmac.compare_digest(presented.encode(), expected.encode())


class FailureLimiter:
    """Counts failed token checks per client address in a sliding minute, so a token cannot be brute-forced."""

    def __init__(self, limit: int, window: float = 60.0) -> None:
        self.limit = limit
        self.window = window
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, client: str) -> deque[float]:
        failures = self._failures.setdefault(client, deque())
        cutoff = time.monotonic() - self.window
        while failures and failures[0] < cutoff:
            failures.popleft()
        return failures

    def blocked_for(self, client: str) -> float:
        """Seconds until this client may try again; 0 when it may try now."""
        failures = self._recent(client)
        if len(failures) < self.limit:
            if not failures:
                self._failures.pop(client, None)
            return 0.0
        return max(0.0, failures[0] + self.window - time.monotonic())

    def failed(self, client: str) -> None:
        self._recent(client).append(time.monotonic())


def client_address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class AuthMiddleware:
    """Requires `Authorization: Bearer <token>` on every /api/ request; throttles repeated failures."""

    def __init__(self, app: ASGIApp, token: str, limiter: FailureLimiter) -> None:
        self.app = app
        self.token = token
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(PROTECTED_PREFIX):
            client = client_address(scope)
            wait = self.limiter.blocked_for(client)
            if wait:
                await _send_error(send, TooManyAttempts(wait))
                return
            presented = None
            for name, value in scope["headers"]:
                if name == b"authorization":
                    scheme, _, credentials = value.decode("latin-1").partition(" ")
                    if scheme.lower() == "bearer":
                        presented = credentials.strip()
            if not token_matches(presented, self.token):
                self.limiter.failed(client)
                reason = "is missing" if presented is None else "is wrong"
                await _send_error(
                    send,
                    Unauthorized(
                        f"The API token {reason}: send it as 'Authorization: Bearer <token>' "
                        "(the server prints it at start-up, or set IDE_API_TOKEN)"
                    ),
                )
                return
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """Refuses bodies over `limit` bytes: at once from Content-Length, or as soon as the stream passes it."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = PayloadTooLarge(
            f"The request body is larger than {self.limit} bytes; send fewer or smaller files per call "
            "(or raise IDE_MAX_BODY_BYTES)"
        )
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await _send_error(send, too_large)
                return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise too_large
            return message

        await self.app(scope, limited_receive, send)
