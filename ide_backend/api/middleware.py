"""ASGI middleware: a hard cap on request body size (authentication is ide_backend.api.auth's)."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import PayloadTooLarge
from .answers import deny


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
                await deny(scope, receive, send, too_large)
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
