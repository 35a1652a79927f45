"""create_app(settings): the Starlette application, wired from its parts; event-loop-bound resources (the database,
the Docker client, the service's background work) are opened in its lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .api.answers import CLOSE_BASE, EXCEPTION_HANDLERS
from .api.auth import Authenticator, AuthMiddleware, FailureLimiter
from .api.middleware import BodyLimitMiddleware
from .api.openapi import build_openapi
from .api.routes import routes
from .api.telemetry import MetricsMiddleware, RequestIdMiddleware, metrics_endpoint
from .api.tokens import TokenSigner
from .api.websocket import Connection
from .errors import IDEError, StoreInUse
from .metrics import Metrics
from .proxy import IDEProxy
from .proxy.preview import PreviewOriginGuard, PreviewProxy
from .runtime import DockerRuntime
from .runtime.swarm import SwarmRuntime
from .service.domain import IDETarget, WorkspaceRef
from .service.ports import ListeningPort
from .service.workspaces import WorkspaceService
from .settings import Settings
from .store import Store

log = logging.getLogger(__name__)


def _index(path: Path) -> Callable[[Request], Awaitable[Response]]:
    present = path.is_file()

    async def index(request: Request) -> Response:
        if not present:
            return JSONResponse({"success": False, "message": f"The demo page is missing ({path})"}, status_code=404)
        return FileResponse(path, headers={"cache-control": "no-cache"})

    return index


async def _enforce_revocations(
    app: Starlette, store: Store, authenticator: Authenticator, proxy: IDEProxy, settings: Settings
) -> None:
    """Read the revocations other processes recorded, and close the websockets (the API's and the IDE's) whose
    credential was revoked or has expired, every IDE_REVOCATION_POLL seconds."""
    while True:
        try:
            authenticator.revocations.merge(await store.revocations())
        except IDEError as exc:
            log.warning("cannot read token revocations: %s", exc.message)
        connections: set[Connection] = app.state.connections
        for connection in [c for c in connections if not authenticator.still_valid(c.credential)]:
            await connection.close(CLOSE_BASE + 401, "token revoked or expired")
        await proxy.close_sockets(authenticator.still_valid, CLOSE_BASE + 401, "token revoked or expired")
        preview: PreviewProxy = app.state.preview
        await preview.close_sockets(authenticator.still_valid, CLOSE_BASE + 401, "token revoked or expired")
        await asyncio.sleep(settings.revocation_poll)


def create_app(settings: Settings) -> Starlette:
    """The application: the API and its websocket, the /ide/ proxy and the demo page, behind one authenticator."""
    token, _ = settings.ensure_token()
    authenticator = Authenticator(
        token,
        FailureLimiter(settings.auth_failure_limit),
        session_ttl=settings.session_hours * 3600,
        signer=TokenSigner(settings.ensure_token_secret(), token),
    )

    async def resolve_ide(ref: WorkspaceRef) -> tuple[str, int]:
        service: WorkspaceService = app.state.service
        return await service.ide_address(ref)

    def ide_activity(ref: WorkspaceRef, label: str) -> contextlib.AbstractContextManager[None]:
        service: WorkspaceService = app.state.service
        return service.idle.hold(ref, label)

    async def sign_in_ide(ref: WorkspaceRef) -> IDETarget:
        service: WorkspaceService = app.state.service
        return await service.ide_target(ref)

    proxy = IDEProxy(resolve_ide, authenticator, activity=ide_activity, sign_in=sign_in_ide)

    async def resolve_preview(ref: WorkspaceRef, port: int) -> tuple[str, int]:
        service: WorkspaceService = app.state.service
        return await service.preview_address(ref, port)

    async def listening(ref: WorkspaceRef) -> list[ListeningPort]:
        service: WorkspaceService = app.state.service
        return await service.listening(ref)

    preview = PreviewProxy(
        resolve_preview,
        listening,
        authenticator,
        port=settings.preview_port,
        url=settings.preview_url,
        activity=ide_activity,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store = Store(settings.resolved_database_url())
        try:
            await store.connect()
        except StoreInUse as exc:
            log.error("%s", exc.message)  # the one line an operator needs, above uvicorn's traceback
            raise
        # The container's attach stream has one input for every attached backend process: two writing frames at
        # once would mix them. On a shared database (several processes) each starts an agent of its own in a
        # workspace, through a Docker exec with streams of its own (runtime/docker/agent.py).
        use_agent, own_agents = settings.exec_agent, store.shared
        runtime: DockerRuntime | SwarmRuntime
        if settings.runtime == "swarm":
            runtime = SwarmRuntime(
                settings.docker_host,
                settings.docker_timeout,
                settings.swarm_node_port,
                use_agent=use_agent,
                own_agents=own_agents,
            )
        else:
            runtime = DockerRuntime(
                settings.docker_host, settings.docker_timeout, use_agent=use_agent, own_agents=own_agents
            )
        service = WorkspaceService(settings, store, runtime)
        app.state.service = service
        app.state.store = store
        app.state.authenticator = authenticator
        app.state.metrics = Metrics()
        app.state.metrics_token = settings.metrics_token
        app.state.openapi = build_openapi(settings, service.templates.names())
        app.state.ide_probe = proxy
        app.state.preview = preview
        app.state.connections = set()
        try:
            await runtime.ping()
        except IDEError as exc:
            log.warning("Docker is not reachable yet: %s", exc.message)
        await service.startup()
        enforcer = asyncio.create_task(_enforce_revocations(app, store, authenticator, proxy, settings))
        try:
            yield
        finally:
            enforcer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await enforcer
            await proxy.close()
            await preview.close()
            await service.shutdown()
            await runtime.close()
            await store.disconnect()

    pages = [
        Route("/", _index(settings.static_dir / "index.html"), methods=["GET"]),
        Route("/docs", _index(settings.static_dir / "docs.html"), methods=["GET"]),
        Mount("/static", StaticFiles(directory=settings.static_dir, check_dir=False), name="static"),
        Mount("/vendor", StaticFiles(directory=settings.vendor_dir, check_dir=False), name="vendor"),
    ]
    middleware = [
        Middleware(RequestIdMiddleware),
        Middleware(MetricsMiddleware),
        Middleware(BodyLimitMiddleware, limit=settings.max_body_bytes),
        Middleware(AuthMiddleware, authenticator=authenticator),
    ]
    if settings.cors_origins:
        cors = Middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["authorization", "content-type", "x-request-id"],
            expose_headers=["x-request-id"],
        )
        middleware.insert(0, cors)
    middleware.insert(0, Middleware(PreviewOriginGuard, port=settings.preview_port))  # outermost: first to decide
    app = Starlette(
        routes=[
            *routes(),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
            *proxy.routes(),
            *preview.routes(),
            *pages,
        ],
        middleware=middleware,
        exception_handlers=dict(EXCEPTION_HANDLERS),
        lifespan=lifespan,
    )
    return app
