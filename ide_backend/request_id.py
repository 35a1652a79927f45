"""The id of the request being served: taken from a caller's `X-Request-Id` (when it is a sane token) or made
here, set for the request's whole task by ide_backend.api.telemetry.RequestIdMiddleware, answered back in the
`X-Request-Id` header and in error bodies (`requestId`), and written on every log line of the request.

Any layer may read it (`current()`); only the edge sets it. Work started by a request but running in another task
copies the context at its creation, as asyncio does, so it carries the id too.
"""

from __future__ import annotations

import re
import secrets
from contextvars import ContextVar, Token

HEADER = "x-request-id"
_SANE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_CURRENT: ContextVar[str | None] = ContextVar("ide_request_id", default=None)


def current() -> str | None:
    """The id of the request this code runs for, or None outside one (start-up, background loops)."""
    return _CURRENT.get()


def accept(offered: str | None) -> str:
    """The caller's id when it is 1-128 characters of letters, digits and `._:-`; a new random one otherwise."""
    if offered and _SANE.match(offered):
        return offered
    return secrets.token_hex(8)


def set_current(request_id: str | None) -> Token[str | None]:
    """Set the id for the running context; returns the token that `reset` takes."""
    return _CURRENT.set(request_id)


def reset(token: Token[str | None]) -> None:
    _CURRENT.reset(token)
