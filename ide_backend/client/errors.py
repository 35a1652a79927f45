"""The SDK's one exception tree: every failure the server answers with, and every failure to reach it.

    IDEClientError (.code, .message, .status, .details)
     +-- IDEConnectionError        the server could not be reached, or the live channel could not be re-opened
     +-- BadRequestError           400 (bad_request, invalid_path, invalid_message)
     +-- InvalidRequestError       422 validation_error (also raised before sending a request the server would refuse)
     +-- UnauthorizedError         401 (no, wrong, expired or revoked token)
     +-- ForbiddenError            403 (the token may not touch that workspace, or do that)
     +-- NotFoundError             404 (no such workspace, process or file)
     +-- ConflictError             409 (.conflicts: the files whose ifMatch failed, with their versions now)
     |    +-- NotRunningError      409 not_running
     +-- PayloadTooLargeError      413 (payload_too_large, too_large)
     +-- TooManyAttemptsError      429 (.retry_after)
     +-- ServerError               5xx (runtime_error, internal_error, ide_unavailable, ...)
          +-- UnavailableError     503 (runtime_unavailable, store_unavailable)

`code`, `message` and `status` are the server's own (`status` is None for an error that came over the websocket,
which has no HTTP status, and for one raised on this side).
"""

from __future__ import annotations

from typing import Any

from ..api.models import ConflictItem


class IDEClientError(Exception):
    """Base of every error the SDK raises; `message` is meant for a person, `code` for a program."""

    default_code = "error"

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.status = status
        self.details = details  # whatever else the server said (`path`, `fields`, `hint`, ...)

    @property
    def request_id(self) -> str | None:
        """The server's id of the failed request (its log lines carry it): quote it in a report."""
        rid = self.details.get("requestId")
        return rid if isinstance(rid, str) else None

    def __str__(self) -> str:
        where = f"{self.status} " if self.status is not None else ""
        request = f", request {self.request_id}" if self.request_id else ""
        return f"{self.message} ({where}{self.code}{request})"


class IDEConnectionError(IDEClientError):
    default_code = "connection_error"


class BadRequestError(IDEClientError):
    default_code = "bad_request"


class InvalidRequestError(IDEClientError):
    default_code = "validation_error"


class UnauthorizedError(IDEClientError):
    default_code = "unauthorized"


class ForbiddenError(IDEClientError):
    default_code = "forbidden"


class NotFoundError(IDEClientError):
    default_code = "not_found"


class ConflictError(IDEClientError):
    default_code = "conflict"

    @property
    def conflicts(self) -> list[ConflictItem]:
        """The files a sync's ifMatch did not hold for (path, version now; None: the file does not exist)."""
        return [ConflictItem.model_validate(item) for item in self.details.get("conflicts") or []]


class NotRunningError(ConflictError):
    default_code = "not_running"


class PayloadTooLargeError(IDEClientError):
    default_code = "payload_too_large"


class TooManyAttemptsError(IDEClientError):
    default_code = "too_many_attempts"

    @property
    def retry_after(self) -> float | None:
        value = self.details.get("retryAfter")
        return float(value) if isinstance(value, int | float) else None


class ServerError(IDEClientError):
    default_code = "internal_error"


class UnavailableError(ServerError):
    default_code = "runtime_unavailable"


_BY_CODE: dict[str, type[IDEClientError]] = {
    "bad_request": BadRequestError,
    "invalid_path": BadRequestError,
    "invalid_message": BadRequestError,
    "validation_error": InvalidRequestError,
    "unauthorized": UnauthorizedError,
    "forbidden": ForbiddenError,
    "not_found": NotFoundError,
    "conflict": ConflictError,
    "not_running": NotRunningError,
    "payload_too_large": PayloadTooLargeError,
    "too_large": PayloadTooLargeError,
    "too_many_attempts": TooManyAttemptsError,
    "runtime_unavailable": UnavailableError,
    "store_unavailable": UnavailableError,
}
_BY_STATUS: dict[int, type[IDEClientError]] = {
    400: BadRequestError,
    401: UnauthorizedError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    422: InvalidRequestError,
    429: TooManyAttemptsError,
    503: UnavailableError,
}


def error_class(code: str, status: int | None) -> type[IDEClientError]:
    """The class for a server's error: by its stable `code` first, by HTTP status for codes this SDK does not know."""
    if code in _BY_CODE:
        return _BY_CODE[code]
    if status is not None:
        if status in _BY_STATUS:
            return _BY_STATUS[status]
        if status >= 500:
            return ServerError
    return IDEClientError


def from_answer(status: int, body: object, text: str = "") -> IDEClientError:
    """The error for an HTTP answer that is not a success: the server's JSON body, or its text when it sent none."""
    if isinstance(body, dict) and isinstance(body.get("message"), str) and isinstance(body.get("code"), str):
        details = {k: v for k, v in body.items() if k not in ("success", "message", "code")}
        code: str = body["code"]
        return error_class(code, status)(body["message"], code=code, status=status, **details)
    message = text.strip()[:500] or f"HTTP {status} with no JSON body"
    return error_class("http_error", status)(message, code="http_error", status=status)


def from_message(code: str, message: str) -> IDEClientError:
    """The error for a websocket `error` message (no HTTP status there)."""
    return error_class(code, None)(message, code=code)
