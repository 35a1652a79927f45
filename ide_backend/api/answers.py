"""The one place where an error becomes an answer: JSON over HTTP (with the headers its status calls for), the
refusal of a websocket handshake, an error message on an open websocket, or a page for a browser tab.

Every IDEError a route, the middleware, the websocket or the proxy raises ends here, so a client sees the same
`{"success": false, "message", "code", ...}` whichever door it knocked on.
"""

from __future__ import annotations

import html
import logging
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import Receive, Scope, Send

from .. import request_id
from ..errors import IDEError, IDEUnavailable, TooManyAttempts, Unauthorized
from ..service.messages import ErrorMessage, error_message

log = logging.getLogger(__name__)

# A websocket refused after it was accepted (servers without the HTTP denial extension) closes with 4000 + status.
CLOSE_BASE = 4000


def _headers(error: IDEError) -> dict[str, str]:
    headers = {}
    if isinstance(error, Unauthorized):
        headers["www-authenticate"] = 'Bearer realm="ide-backend"'
    if isinstance(error, TooManyAttempts):
        headers["retry-after"] = str(error.details["retryAfter"])
    if isinstance(error, IDEUnavailable):
        headers["retry-after"] = str(error.details.get("retryAfter", 2))
    return headers


def _with_request_id(body: dict[str, Any]) -> dict[str, Any]:
    """An error body with the request's id, which the log's lines about it carry too (ide_backend.request_id)."""
    rid = request_id.current()
    return {**body, "requestId": rid} if rid else body


def error_response(error: IDEError) -> Response:
    """The JSON answer for an error, with WWW-Authenticate / Retry-After where its status calls for them."""
    return JSONResponse(_with_request_id(error.to_json()), status_code=error.status_code, headers=_headers(error))


def error_page(error: IDEError) -> Response:
    """The same failure for a person looking at a browser tab: said in words; a starting IDE retries by itself."""
    refresh = '<meta http-equiv="refresh" content="2">' if isinstance(error, IDEUnavailable) else ""
    page = f"<!doctype html>{refresh}<title>IDE: {error.code}</title><p>{html.escape(error.message)}</p>\n"
    headers = {**_headers(error), "cache-control": "no-store"}
    return HTMLResponse(page, status_code=error.status_code, headers=headers)


async def deny(scope: Scope, receive: Receive, send: Send, error: IDEError) -> None:
    """Refuse an HTTP request or a websocket handshake with the error's JSON. A websocket gets the HTTP answer where
    the server can send one before the upgrade; otherwise it is accepted and closed at once with 4000 + status."""
    if scope["type"] == "http":
        await error_response(error)(scope, receive, send)
        return
    if "websocket.http.response" in scope.get("extensions", {}):
        await error_response(error)(scope, receive, send)  # Starlette sends it as websocket.http.response.*
        return
    message = await receive()
    if message["type"] == "websocket.connect":
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": CLOSE_BASE + error.status_code, "reason": error.code})


def channel_error(error: IDEError, process_id: str | None = None) -> ErrorMessage:
    """An error about one request on an open websocket; the connection stays up."""
    return error_message(error.code, error.message, process_id)


async def on_ide_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, IDEError)
    if exc.status_code >= 500:
        log.warning("%s %s -> %d: %s", request.method, request.url.path, exc.status_code, exc.message)
    return error_response(exc)


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    messages = {404: f"No such endpoint: {request.url.path}", 405: f"{request.method} is not allowed here"}
    message = messages.get(exc.status_code, str(exc.detail))
    # exc.headers: a 405's Allow (the methods the resource takes, which RFC 9110 requires), for one.
    body = _with_request_id({"success": False, "message": message, "code": "http_error"})
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


async def on_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    message = "Internal error; the server log has the details (find this request's id in it)"
    body = _with_request_id({"success": False, "message": message, "code": "internal_error"})
    # Raised past the middleware that answers the id in a header, so it is added here.
    headers = {request_id.HEADER: body["requestId"]} if "requestId" in body else None
    return JSONResponse(body, status_code=500, headers=headers)


EXCEPTION_HANDLERS = {IDEError: on_ide_error, HTTPException: on_http_error, Exception: on_unexpected}
