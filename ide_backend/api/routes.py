"""The POST endpoints of /api/v1/containers: parse the body into a model, ask the credential, call the service
with domain values, answer with a response model."""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import pydantic_core
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route, WebSocketRoute

from ..errors import BadRequest, Forbidden, ValidationFailed
from ..service.domain import ExecSpec, WorkspaceInfo
from ..service.workspaces import WorkspaceService
from ..store import Store
from .auth import Authenticator, credential
from .models import (
    ContainerInfo,
    DeleteResponse,
    ExecRequest,
    ExecResponse,
    FileEntryInfo,
    FilesDeleteRequest,
    FilesDeleteResponse,
    FilesListRequest,
    FilesListResponse,
    FilesReadRequest,
    FilesReadResponse,
    ForkRequest,
    ForkResponse,
    LifecycleResponse,
    ListeningPortInfo,
    ListRequest,
    ListResponse,
    RevokeRequest,
    RevokeResponse,
    StartRequest,
    StatusData,
    StatusResponse,
    SyncRequest,
    SyncResponse,
    TemplateInfo,
    TemplatesResponse,
    ThemeRequest,
    ThemeResponse,
    TokenRequest,
    TokenResponse,
    WebhookGetRequest,
    WebhookResponse,
    WebhookSetRequest,
    WorkspaceRef,
    cursor_of,
)
from .tokens import ACTIONS, Action
from .websocket import websocket_endpoint

M = TypeVar("M", bound=WorkspaceRef)
A = TypeVar("A", bound=BaseModel)


class IDEProbe(Protocol):
    """Whether a workspace's code-server answers (the /ide/ proxy, which knows how to reach it)."""

    async def ready(self, host: str, port: int) -> bool: ...


def _service(request: Request) -> WorkspaceService:
    service: WorkspaceService = request.app.state.service
    return service


async def parse(request: Request, model: type[M], action: Action) -> M:
    """The body as `model` (see parse_body); then the request's credential must allow `action` on the workspace it
    names (403)."""
    body = await parse_body(request, model)
    credential(request).require(body.ref, action)
    return body


async def parse_body(request: Request, model: type[A]) -> A:
    """The body as `model`, or a 400 (not JSON) / 422 (wrong shape, naming each field) that a person can act on."""
    raw = await request.body()
    try:
        data = pydantic_core.from_json(raw)  # ~10x json.loads on a 10 MB sync body; refuses lone surrogates too
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"The request body is not valid JSON ({exc}); send a JSON object") from exc
    if not isinstance(data, dict):
        raise ValidationFailed(f"The request body must be a JSON object, not {type(data).__name__}")
    try:
        body = model.model_validate(data)
    except ValidationError as exc:
        problems = [_describe(err) for err in exc.errors(include_url=False, include_input=False)]
        fields = sorted({str(err["loc"][0]) for err in exc.errors() if err["loc"]})
        raise ValidationFailed("Invalid request: " + "; ".join(problems), fields=fields) from exc
    return body


def _describe(error: Any) -> str:
    where = ".".join(str(part) for part in error["loc"]) or "body"
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "missing":
        message = "is required"
    return f"{where} {message}" if message.startswith("is ") else f"{where}: {message}"


def answer(model: BaseModel) -> JSONResponse:
    """A success answer, serialised from its response model (the same one /openapi.json describes)."""
    return JSONResponse(model.model_dump(mode="json", by_alias=True))


def _info(info: WorkspaceInfo) -> ContainerInfo:
    return ContainerInfo(**asdict(info))


async def start(request: Request) -> JSONResponse:
    body = await parse(request, StartRequest, "write")
    outcome = await _service(request).start(body.ref, body.files, body.template)
    return answer(LifecycleResponse(message="Container started successfully", data=_info(outcome.info)))


async def stop(request: Request) -> JSONResponse:
    body = await parse(request, WorkspaceRef, "write")
    outcome = await _service(request).stop(body.ref)
    message = "Container stopped successfully" if outcome.changed else "Container was already stopped"
    return answer(LifecycleResponse(message=message, data=_info(outcome.info)))


async def delete(request: Request) -> JSONResponse:
    body = await parse(request, WorkspaceRef, "write")
    await _service(request).delete(body.ref)
    return answer(DeleteResponse(message="Workspace deleted successfully"))


async def fork(request: Request) -> JSONResponse:
    """Copy a workspace into a new one: the token must read the source and write the target."""
    body = await parse(request, ForkRequest, "read")
    credential(request).require(body.target, "write")
    forked = await _service(request).fork(body.ref, body.target)
    return answer(
        ForkResponse(
            message="Workspace forked successfully",
            data=_info(forked.info),
            copy_ms=round(forked.seconds * 1000),
            paused_ms=round(forked.paused_seconds * 1000),
        )
    )


async def list_workspaces(request: Request) -> JSONResponse:
    """A page of workspaces; a scoped token sees only the project (or workspace) it covers."""
    body = await parse_body(request, ListRequest)
    project_id, workspace_id = body.project_id, None
    claims = credential(request).claims
    if claims is not None:
        if project_id not in (None, claims.project_id):
            raise Forbidden(f"This token is not valid for project {project_id}")
        project_id, workspace_id = claims.project_id, claims.workspace_id
    infos, following = await _service(request).list_workspaces(
        project_id=project_id,
        workspace_id=workspace_id,
        status=body.status,
        limit=body.limit,
        after=body.after,
    )
    next_cursor = cursor_of(following) if following else None
    return answer(ListResponse(data=[_info(i) for i in infos], next_cursor=next_cursor))


async def status(request: Request) -> JSONResponse:
    body = await parse(request, WorkspaceRef, "read")
    found = await _service(request).status(body.ref)
    ready = False
    if found.ide_address is not None:
        probe: IDEProbe = request.app.state.ide_probe
        ready = await probe.ready(*found.ide_address)
    data = StatusData(
        **asdict(found.info),
        password=found.password,
        ide_ready=ready,
        kept_alive_by=found.kept_alive_by,
        idle_stop_at=found.idle_stop_at,
        listening=[ListeningPortInfo.model_validate(item) for item in found.listening],
    )
    return answer(StatusResponse(message="Container status retrieved successfully", data=data))


async def exec_command(request: Request) -> JSONResponse:
    body = await parse(request, ExecRequest, "write")
    spec = ExecSpec(command=body.command, cwd=body.cwd, env=body.env or {}, timeout=body.timeout)
    result = await _service(request).exec(body.ref, spec)
    return answer(ExecResponse(**asdict(result)))


async def sync(request: Request) -> JSONResponse:
    body = await parse(request, SyncRequest, "write")
    outcome = await _service(request).sync(body.ref, body.files, body.clean)
    message = "Files synced successfully" if outcome.changed or not body.clean else "Workspace cleaned successfully"
    return answer(SyncResponse(message=message, data=_info(outcome.info), versions=outcome.versions))


async def vscode_theme(request: Request) -> JSONResponse:
    body = await parse(request, ThemeRequest, "write")
    await _service(request).set_theme(body.ref, body.theme)
    return answer(ThemeResponse(theme=body.theme))


async def files_list(request: Request) -> JSONResponse:
    body = await parse(request, FilesListRequest, "read")
    entries, truncated = await _service(request).list_files(body.ref, body.path, body.depth, body.limit)
    return answer(FilesListResponse(entries=[FileEntryInfo(**asdict(e)) for e in entries], truncated=truncated))


async def files_read(request: Request) -> JSONResponse:
    body = await parse(request, FilesReadRequest, "read")
    return answer(FilesReadResponse(**asdict(await _service(request).read_file(body.ref, body.path))))


async def files_delete(request: Request) -> JSONResponse:
    body = await parse(request, FilesDeleteRequest, "write")
    return answer(FilesDeleteResponse(deleted=await _service(request).delete_files(body.ref, body.paths)))


async def _admin_body(request: Request, model: type[A], doing: str) -> A:
    credential(request).require_admin(doing)
    return await parse_body(request, model)


async def mint_token(request: Request) -> JSONResponse:
    """A scoped token for one project or workspace (the operator's token only)."""
    body = await _admin_body(request, TokenRequest, "mint tokens")
    settings = _service(request).settings
    if body.ttl_seconds > settings.token_max_ttl:
        raise ValidationFailed(
            f"ttlSeconds: must be at most {settings.token_max_ttl} (IDE_TOKEN_MAX_TTL)", fields=["ttlSeconds"]
        )
    auth: Authenticator = request.app.state.authenticator
    actions: list[Action] = list(body.scopes or ACTIONS)
    token, claims = auth.signer.mint(body.project_id, body.workspace_id, actions, body.ttl_seconds)
    return answer(
        TokenResponse(
            token=token,
            expires_at=_iso(claims.expires_at),
            project_id=body.project_id,
            workspace_id=body.workspace_id,
            scopes=sorted(claims.actions),
        )
    )


async def set_webhook(request: Request) -> JSONResponse:
    """Set or remove a project's own webhook (the operator's token only: the server POSTs to whatever URL it is
    given, so choosing one is the operator's call)."""
    body = await _admin_body(request, WebhookSetRequest, "set webhooks")
    service = _service(request)
    if body.url is None:
        had = await service.remove_project_webhook(body.project_id)
        said = "removed" if had else "had none; nothing to remove"
        return answer(
            WebhookResponse(message=f"Project {body.project_id}'s webhook {said}", project_id=body.project_id, url=None)
        )
    url, secret = await service.set_project_webhook(body.project_id, body.url, body.secret)
    message = f"Lifecycle events of project {body.project_id} go to {url} too, signed with the secret answered here"
    return answer(WebhookResponse(message=message, project_id=body.project_id, url=url, secret=secret))


async def get_webhook(request: Request) -> JSONResponse:
    """A project's own webhook URL (never its secret)."""
    body = await _admin_body(request, WebhookGetRequest, "read webhooks")
    url = await _service(request).project_webhook(body.project_id)
    message = f"Project {body.project_id}'s webhook" if url else f"Project {body.project_id} has no webhook of its own"
    return answer(WebhookResponse(message=message, project_id=body.project_id, url=url))


async def revoke_tokens(request: Request) -> JSONResponse:
    """Void every token of the project (or workspace) issued until now, on every process sharing the database."""
    body = await _admin_body(request, RevokeRequest, "revoke tokens")
    at = round(time.time(), 3)
    store: Store = request.app.state.store
    await store.revoke(body.project_id, body.workspace_id or "", at)
    auth: Authenticator = request.app.state.authenticator
    auth.revocations.add(body.project_id, body.workspace_id or "", at)
    scope = body.project_id + (f"/{body.workspace_id}" if body.workspace_id else "")
    return answer(RevokeResponse(message=f"Tokens of {scope} issued before now are revoked", revoked_at=_iso(at)))


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def templates(request: Request) -> JSONResponse:
    """The templates a workspace can be made from (any credential may look)."""
    credential(request)
    known = _service(request).templates
    data = [
        TemplateInfo(
            name=t.name,
            image=t.image,
            description=t.description,
            memory_mb=t.memory_mb,
            cpus=t.cpus,
            pids=t.pids,
            disk_mb=t.disk_mb,
            ports=list(t.ports),
            idle_timeout=t.idle_timeout,
            pool_size=t.pool_size,
        )
        for t in known.all()
    ]
    return answer(TemplatesResponse(default=known.default, data=data))


async def openapi(request: Request) -> JSONResponse:
    return JSONResponse(request.app.state.openapi)


async def health(request: Request) -> JSONResponse:
    """Liveness plus whether the Docker engine answers; no token needed, tells nothing about workspaces."""
    try:
        await _service(request).runtime.ping()
        docker = "ok"
    except Exception as exc:
        docker = getattr(exc, "message", str(exc))
    return JSONResponse({"success": True, "status": "ok", "docker": docker})


async def stats(request: Request) -> JSONResponse:
    """Counts that show leaks: live processes, status subscriptions, open websockets, asyncio tasks (and the
    webhooks' outbox when they are on), and the container view /status answers from (entries, hits, misses)."""
    credential(request).require_admin("read the server's statistics")
    counts = _service(request).stats()
    return JSONResponse(
        dict(
            success=True,
            processes=counts["processes"],
            subscriptions=counts["subscriptions"],
            websockets=len(request.app.state.connections),
            tasks=len(asyncio.all_tasks()),
            pool=counts["pool"],
            writes=counts["writes"],
            watchers=counts["watchers"],
            states=counts["states"],
            **({"webhooks": counts["webhooks"]} if "webhooks" in counts else {}),
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
        Route(f"{prefix}/list", list_workspaces, methods=["POST"]),
        Route(f"{prefix}/delete", delete, methods=["POST"]),
        Route(f"{prefix}/fork", fork, methods=["POST"]),
        Route("/api/v1/templates", templates, methods=["GET"]),
        Route("/api/v1/tokens", mint_token, methods=["POST"]),
        Route("/api/v1/tokens/revoke", revoke_tokens, methods=["POST"]),
        Route("/api/v1/webhooks/set", set_webhook, methods=["POST"]),
        Route("/api/v1/webhooks/get", get_webhook, methods=["POST"]),
        WebSocketRoute("/api/v1/ws", websocket_endpoint),
    ]
