"""create_app(settings): the Starlette application, its middleware, error handlers and lifespan."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .api import AuthMiddleware, BodyLimitMiddleware, FailureLimiter, routes
from .api.models import WorkspaceRef
from .api.openapi import build_openapi
from .errors import IDEError
from .proxy.proxy import IDEProxy
from .runtime import DockerRuntime
from .service.bus import EventBus
from .service.workspaces import WorkspaceService
from .settings import Settings
from .store import Store

log = logging.getLogger(__name__)


async def _ide_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, IDEError)
    if exc.status_code >= 500:
        log.warning("%s %s -> %d: %s", request.method, request.url.path, exc.status_code, exc.message)
    return JSONResponse(exc.to_json(), status_code=exc.status_code)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    messages = {404: f"No such endpoint: {request.url.path}", 405: f"{request.method} is not allowed here"}
    message = messages.get(exc.status_code, str(exc.detail))
    return JSONResponse({"success": False, "message": message, "code": "http_error"}, status_code=exc.status_code)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return JSONResponse(
        {"success": False, "message": "Internal error; the server log has the details", "code": "internal_error"},
        status_code=500,
    )


def _index(path: Path) -> Callable[[Request], Awaitable[Response]]:
    present = path.is_file()

    async def index(request: Request) -> Response:
        if not present:
            return JSONResponse({"success": False, "message": f"The demo page is missing ({path})"}, status_code=404)
        return FileResponse(path, headers={"cache-control": "no-cache"})

    return index


def create_app(settings: Settings) -> Starlette:
    """The application; event-loop-bound resources (DB, Docker client) are opened in its lifespan."""
    token, _ = settings.ensure_token()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store = Store(settings.resolved_database_url())
        await store.connect()
        runtime = DockerRuntime(settings.docker_host, settings.docker_timeout, use_agent=settings.exec_agent)
        service = WorkspaceService(settings, store, runtime, EventBus())
        app.state.service = service
        app.state.token = token
        app.state.limiter = limiter
        app.state.openapi = build_openapi()
        app.state.proxy = proxy
        app.state.connections = set()
        try:
            await runtime.ping()
        except IDEError as exc:
            log.warning("Docker is not reachable yet: %s", exc.message)
        await service.startup()
        try:
            yield
        finally:
            await proxy.close()
            await service.shutdown()
            await runtime.close()
            await store.disconnect()

    pages = [
        Route("/", _index(settings.static_dir / "index.html"), methods=["GET"]),
        Mount("/static", StaticFiles(directory=settings.static_dir, check_dir=False), name="static"),
        Mount("/vendor", StaticFiles(directory=settings.vendor_dir, check_dir=False), name="vendor"),
    ]
    limiter = FailureLimiter(settings.auth_failure_limit)

    async def resolve_ide(project_id: str, workspace_id: str) -> tuple[str, int]:
        service: WorkspaceService = app.state.service
        return await service.ide_address(WorkspaceRef(project_id=project_id, workspace_id=workspace_id))

    proxy = IDEProxy(resolve_ide, token=token, limiter=limiter, cookie_ttl=settings.session_hours * 3600)
    middleware = [
        Middleware(BodyLimitMiddleware, limit=settings.max_body_bytes),
        Middleware(AuthMiddleware, token=token, limiter=limiter),
    ]
    if settings.cors_origins:
        cors = Middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["authorization", "content-type"],
        )
        middleware.insert(0, cors)
    app = Starlette(
        routes=routes() + proxy.routes() + pages,
        middleware=middleware,
        exception_handlers={IDEError: _ide_error, HTTPException: _http_error, Exception: _unexpected},
        lifespan=lifespan,
    )
    return app
