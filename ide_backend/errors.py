"""One exception tree for the whole backend, and the one place that turns it into a JSON answer.

    IDEError (500, "internal_error")
     +-- BadRequest (400, "bad_request")
     |    +-- InvalidPath (400, "invalid_path")
     +-- ValidationFailed (422, "validation_error")
     +-- Unauthorized (401, "unauthorized")
     +-- Forbidden (403, "forbidden")
     +-- NotFound (404, "not_found")
     +-- Conflict (409, "conflict")
     |    +-- NotRunning (409, "not_running")
     +-- PayloadTooLarge (413, "payload_too_large")
     +-- TooManyAttempts (429, "too_many_attempts")
     +-- RuntimeUnavailable (503, "runtime_unavailable")
     +-- RuntimeFailure (502, "runtime_error")
     +-- IDEUnavailable (502, "ide_unavailable")
     |    +-- PreviewUnavailable (502, "preview_unavailable")
     +-- IDETimeout (504, "ide_timeout")
     +-- StoreUnavailable (503, "store_unavailable")

Foreign errors (aiodocker, aiohttp, the database) are translated into this tree where they are raised: the runtime
and the store. Routes only ever see these, and ide_backend.api.answers is the one place that turns them into an
answer (JSON over HTTP, a websocket refusal or error message, a page for a browser tab).
"""

from __future__ import annotations

from typing import Any


class IDEError(Exception):
    """Base of every error the API answers with; `message` is meant for a person."""

    status_code = 500
    code = "internal_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"success": False, "message": self.message, "code": self.code}
        body.update(self.details)
        return body


class BadRequest(IDEError):
    status_code = 400
    code = "bad_request"


class InvalidPath(BadRequest):
    code = "invalid_path"


class ValidationFailed(IDEError):
    status_code = 422
    code = "validation_error"


class Unauthorized(IDEError):
    status_code = 401
    code = "unauthorized"


class Forbidden(IDEError):
    """A valid credential that may not touch this workspace, or do this to it."""

    status_code = 403
    code = "forbidden"


class NotFound(IDEError):
    status_code = 404
    code = "not_found"


class Conflict(IDEError):
    status_code = 409
    code = "conflict"


class NotRunning(Conflict):
    code = "not_running"


class PayloadTooLarge(IDEError):
    status_code = 413
    code = "payload_too_large"


class TooManyAttempts(IDEError):
    status_code = 429
    code = "too_many_attempts"

    def __init__(self, wait: float) -> None:
        seconds = max(1, round(wait))
        super().__init__(
            f"Too many requests with a wrong token from this address; try again in {seconds} s", retryAfter=seconds
        )


class RuntimeUnavailable(IDEError):
    status_code = 503
    code = "runtime_unavailable"


class RuntimeFailure(IDEError):
    status_code = 502
    code = "runtime_error"


class StoreUnavailable(IDEError):
    status_code = 503
    code = "store_unavailable"


class StoreInUse(StoreUnavailable):
    """The SQLite file is held by another backend process (SQLite serves one)."""

    code = "store_in_use"


class IDEUnavailable(IDEError):
    """code-server does not answer on the published port (still starting, or crashed)."""

    status_code = 502
    code = "ide_unavailable"


class PreviewUnavailable(IDEUnavailable):
    """Nothing answers on a previewed port (nothing listens there, or only on the workspace's own loopback)."""

    code = "preview_unavailable"


class IDETimeout(IDEError):
    status_code = 504
    code = "ide_timeout"
