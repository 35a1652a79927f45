"""The six POST endpoints of /api/v1/containers: validate with a model, call the service, answer JSON."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Any, TypeVar

import pydantic_core
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route, WebSocketRoute

from ..errors import BadRequest, ValidationFailed
from ..service.workspaces import WorkspaceService
from .models import (
    ExecRequest,
    ExecResponse,
    FileEntryInfo,
    FilesDeleteRequest,
    FilesDeleteResponse,
    FilesListRequest,
    FilesListResponse,
    FilesReadRequest,
    FilesReadResponse,
    LifecycleResponse,
    StartRequest,
    StatusData,
    StatusResponse,
    SyncRequest,
    ThemeRequest,
    ThemeResponse,
    WorkspaceRef,
)
from .websocket import websocket_endpoint

M = TypeVar("M", bound=BaseModel)


def _service(request: Request) -> WorkspaceService:
    service: WorkspaceService = request.app.state.service
    return service


async def parse(request: Request, model: type[M]) -> M:
    """The body as `model`, or a 400 (not JSON) / 422 (wrong shape, naming each field) that a person can act on."""
    raw = await request.body()
    try:
        data = pydantic_core.from_json(raw)  # ~10x json.loads on a 10 MB sync body; refuses lone surrogates too
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"The request body is not valid JSON ({exc}); send a JSON object") from exc
    if not isinstance(data, dict):
        raise ValidationFailed(f"The request body must be a JSON object, not {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [_describe(err) for err in exc.errors(include_url=False, include_input=False)]
        fields = sorted({str(err["loc"][0]) for err in exc.errors() if err["loc"]})
        raise ValidationFailed("Invalid request: " + "; ".join(problems), fields=fields) from exc


def _describe(error: Any) -> str:
    where = ".".join(str(part) for part in error["loc"]) or "body"
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "missing":
        message = "is required"
    return f"{where} {message}" if message.startswith("is ") else f"{where}: {message}"


def answer(model: BaseModel) -> JSONResponse:
    """A success answer, serialised from its response model (the same one /openapi.json describes)."""
    return JSONResponse(model.model_dump(mode="json", by_alias=True))


async def start(request: Request) -> JSONResponse:
    body = await parse(request, StartRequest)
    outcome = await _service(request).start(body, body.files)
    return answer(LifecycleResponse(message="Container started successfully", data=outcome.info))


async def stop(request: Request) -> JSONResponse:
    body = await parse(request, WorkspaceRef)
    outcome = await _service(request).stop(body)
    message = "Container stopped successfully" if outcome.changed else "Container was already stopped"
    return answer(LifecycleResponse(message=message, data=outcome.info))


async def status(request: Request) -> JSONResponse:
    body = await parse(request, WorkspaceRef)
    service = _service(request)
    info, password = await service.status(body)
    port = info.ports.get(str(service.settings.code_server_port))
    ready = bool(info.ide_url and info.running and port) and await request.app.state.proxy.ready("127.0.0.1", port)
    data = StatusData(**info.model_dump(), password=password, ide_ready=ready)
    return answer(StatusResponse(message="Container status retrieved successfully", data=data))


async def exec_command(request: Request) -> JSONResponse:
    body = await parse(request, ExecRequest)
    result = await _service(request).exec(body)
    return answer(ExecResponse(**result.model_dump()))


async def sync(request: Request) -> JSONResponse:
    body = await parse(request, SyncRequest)
    outcome = await _service(request).sync(body, body.files, body.clean)
    message = "Files synced successfully" if outcome.changed or not body.clean else "Workspace cleaned successfully"
    return answer(LifecycleResponse(message=message, data=outcome.info))


async def vscode_theme(request: Request) -> JSONResponse:
    body = await parse(request, ThemeRequest)
    await _service(request).set_theme(body, body.theme)
    return answer(ThemeResponse(theme=body.theme))


async def files_list(request: Request) -> JSONResponse:
    body = await parse(request, FilesListRequest)
    entries, truncated = await _service(request).list_files(body)
    return answer(FilesListResponse(entries=[FileEntryInfo(**asdict(e)) for e in entries], truncated=truncated))


async def files_read(request: Request) -> JSONResponse:
    body = await parse(request, FilesReadRequest)
    return answer(FilesReadResponse(**asdict(await _service(request).read_file(body))))


async def files_delete(request: Request) -> JSONResponse:
    body = await parse(request, FilesDeleteRequest)
    return answer(FilesDeleteResponse(deleted=await _service(request).delete_files(body)))


async def openapi(request: Request) -> JSONResponse:
    return JSONResponse(request.app.state.openapi)


async def health(request: Request) -> JSONResponse:
    """Liveness plus whether the Docker engine answers; no token needed, tells nothing about workspaces."""
    service = _service(request)
    try:
        await service.runtime.ping()
        docker = "ok"
    except Exception as exc:
        docker = getattr(exc, "message", str(exc))
    return JSONResponse({"success": True, "status": "ok", "docker": docker})


async def stats(request: Request) -> JSONResponse:
    """Counts that show leaks: live processes, status subscriptions, open websockets, asyncio tasks."""
    service = _service(request)
    return JSONResponse(
        dict(
            success=True,
            processes=service.processes.running_count(),
            subscriptions=service.bus.subscriber_count(),
            websockets=len(request.app.state.connections),
            tasks=len(asyncio.all_tasks()),
            pool=service.pool.stats(),
            writes=service.files.writes,
        )
    )


def routes() -> list[BaseRoute]:
    prefix = "/api/v1/containers"
    return [
        Route("/healthz", health, methods=["GET"]),
        Route("/api/v1/stats", stats, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route(f"{prefix}/start", start, methods=["POST"]),
        Route(f"{prefix}/stop", stop, methods=["POST"]),
        Route(f"{prefix}/status", status, methods=["POST"]),
        Route(f"{prefix}/exec", exec_command, methods=["POST"]),
        Route(f"{prefix}/sync", sync, methods=["POST"]),
        Route(f"{prefix}/vscode-theme", vscode_theme, methods=["POST"]),
        Route(f"{prefix}/files/list", files_list, methods=["POST"]),
        Route(f"{prefix}/files/read", files_read, methods=["POST"]),
        Route(f"{prefix}/files/delete", files_delete, methods=["POST"]),
        WebSocketRoute("/api/v1/ws", websocket_endpoint),
    ]
