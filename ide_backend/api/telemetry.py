"""The operator's view of the edge: every request's id (ide_backend.request_id), HTTP requests counted and timed by
route, and GET /metrics (ide_backend.metrics)."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import request_id
from ..metrics import CONTENT_TYPE_LATEST, HTTP_REQUESTS, HTTP_SECONDS, Metrics, route_label
from ..service.workspaces import WorkspaceService
from .auth import Authenticator


class RequestIdMiddleware:
    """Gives each HTTP request and websocket its id: the caller's `X-Request-Id` when sane, else a new one. It is
    set for the whole request (log lines and error bodies carry it) and answered in the `X-Request-Id` header.

    The id is not reset afterwards on purpose: the server runs each request in a task of its own, and the error
    handler of last resort (Starlette's, outside this middleware) still writes it into a 500's body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        offered = next((v.decode("latin-1") for k, v in scope["headers"] if k == request_id.HEADER.encode()), None)
        rid = request_id.accept(offered)
        request_id.set_current(rid)
        header = (request_id.HEADER.encode(), rid.encode())

        async def sending(message: Message) -> None:
            if message["type"] in ("http.response.start", "websocket.http.response.start"):
                message = {**message, "headers": [*message.get("headers", []), header]}
            elif message["type"] == "websocket.accept":
                message = {**message, "headers": [*message.get("headers", []), header]}
            await send(message)

        await self.app(scope, receive, sending)


class MetricsMiddleware:
    """Counts and times every HTTP request by route (known after routing), method and status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route, method = route_label(scope), scope.get("method", "")
            HTTP_REQUESTS.labels(route, method, str(status)).inc()
            HTTP_SECONDS.labels(route, method).observe(time.perf_counter() - began)


async def metrics_endpoint(request: Request) -> Response:
    """GET /metrics, Prometheus text format: the operator's token or IDE_METRICS_TOKEN."""
    authenticator: Authenticator = request.app.state.authenticator
    authenticator.require_metrics(request, request.app.state.metrics_token)
    service: WorkspaceService = request.app.state.service
    metrics: Metrics = request.app.state.metrics
    stats = service.stats()
    body = await metrics.render(
        websockets=len(request.app.state.connections),
        processes=stats["processes"],
        pool=stats["pool"],
        workspaces=service.workspace_states,
    )
    return Response(body, media_type=CONTENT_TYPE_LATEST)
