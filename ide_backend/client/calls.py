"""The HTTP API as data: for each endpoint, its path, its request model and its answer model (the server's own,
from ide_backend.api.models), so Client and AsyncClient only differ in how they send a Call.

A request is validated here, before anything is sent: a value the server would refuse (an id that is not one, an
empty command) raises InvalidRequestError with pydantic's reason and costs no round trip.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import pydantic
from pydantic import BaseModel

from ..api.models import (
    DeleteResponse,
    ExecRequest,
    ExecResponse,
    FilesDeleteRequest,
    FilesDeleteResponse,
    FilesListRequest,
    FilesListResponse,
    FilesReadRequest,
    FilesReadResponse,
    ForkRequest,
    ForkResponse,
    LifecycleResponse,
    ListRequest,
    ListResponse,
    RevokeRequest,
    RevokeResponse,
    StartRequest,
    StatusResponse,
    SyncRequest,
    SyncResponse,
    TemplatesResponse,
    ThemeRequest,
    ThemeResponse,
    TokenRequest,
    TokenResponse,
    WebhookGetRequest,
    WebhookResponse,
    WebhookSetRequest,
    WorkspaceRef,
)
from .errors import IDEClientError, InvalidRequestError, from_answer

R = TypeVar("R", bound=BaseModel)

DEFAULT_URL = "http://127.0.0.1:8000"  # where `scripts/serve.sh` listens
CONTAINERS = "/api/v1/containers"
# The server's exec timeout is at most IDE_EXEC_MAX_TIMEOUT (3600 s by default); an HTTP read waits that and a margin.
EXEC_MAX_TIMEOUT = 3600.0
EXEC_MARGIN = 30.0


def resolve(url: str | None, token: str | None) -> tuple[str, str | None]:
    """The server's base URL and token: the arguments, else IDE_URL and IDE_TOKEN, else the local default URL."""
    base = (url or os.environ.get("IDE_URL") or DEFAULT_URL).rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise IDEClientError(f"The server URL must start with http:// or https://, not {base!r}", code="bad_url")
    return base, token if token is not None else os.environ.get("IDE_TOKEN") or None


@dataclass(frozen=True)
class Call(Generic[R]):
    """One request: method, path, JSON body, and the model its success answer is parsed into."""

    method: str
    path: str
    answer: type[R]
    body: bytes | None = None
    timeout: float | None = None  # a read timeout longer than the client's (exec); None: the client's own


def build(model: type[BaseModel], **fields: Any) -> bytes:
    """The JSON body for a request model, validated as the server will validate it; None fields are left out."""
    return _validated(model, fields).model_dump_json(by_alias=True, exclude_none=True).encode()


def build_with_nulls(model: type[BaseModel], keep_null: tuple[str, ...], **fields: Any) -> bytes:
    """As build, but the fields named in `keep_null` (by their JSON names) are sent as null, where null means
    something (a webhook's url: remove it)."""
    body = _validated(model, fields).model_dump(mode="json", by_alias=True)
    return json.dumps({k: v for k, v in body.items() if v is not None or k in keep_null}).encode()


def _validated(model: type[BaseModel], fields: dict[str, Any]) -> BaseModel:
    try:
        return model.model_validate(fields)
    except pydantic.ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}"
            for err in exc.errors(include_url=False, include_input=False)
        )
        raise InvalidRequestError(f"Invalid request: {problems}") from exc


def ref(project_id: str, workspace_id: str) -> WorkspaceRef:
    """A checked workspace reference (InvalidRequestError for ids the server would refuse)."""
    try:
        return WorkspaceRef.model_validate({"project_id": project_id, "workspace_id": workspace_id})
    except pydantic.ValidationError as exc:
        raise InvalidRequestError(f"Invalid workspace id: {exc.errors(include_url=False)[0]['msg']}") from exc


def _ids(ws: WorkspaceRef) -> dict[str, str]:
    return {"project_id": ws.project_id, "workspace_id": ws.workspace_id}


def _post(endpoint: str, answer: type[R], model: type[BaseModel], **fields: Any) -> Call[R]:
    return Call("POST", f"{CONTAINERS}/{endpoint}", answer, build(model, **fields))


def start(ws: WorkspaceRef, template: str | None, files: dict[str, Any] | None) -> Call[LifecycleResponse]:
    return _post("start", LifecycleResponse, StartRequest, **_ids(ws), template=template, files=files)


def stop(ws: WorkspaceRef) -> Call[LifecycleResponse]:
    return _post("stop", LifecycleResponse, WorkspaceRef, **_ids(ws))


def status(ws: WorkspaceRef) -> Call[StatusResponse]:
    return _post("status", StatusResponse, WorkspaceRef, **_ids(ws))


def exec_(
    ws: WorkspaceRef, command: str, cwd: str | None, env: dict[str, str] | None, timeout: float | None
) -> Call[ExecResponse]:
    body = build(ExecRequest, **_ids(ws), command=command, cwd=cwd, env=env, timeout=timeout)
    wait = (timeout if timeout is not None else EXEC_MAX_TIMEOUT) + EXEC_MARGIN
    return Call("POST", f"{CONTAINERS}/exec", ExecResponse, body, timeout=wait)


def sync(ws: WorkspaceRef, files: dict[str, Any], clean: bool) -> Call[SyncResponse]:
    return _post("sync", SyncResponse, SyncRequest, **_ids(ws), files=files, clean=clean)


def sync_raw(body: bytes) -> Call[SyncResponse]:
    """A sync whose JSON body is already made (sync_dir packs its batches itself, to know their exact size)."""
    return Call("POST", f"{CONTAINERS}/sync", SyncResponse, body)


def theme(ws: WorkspaceRef, name: str) -> Call[ThemeResponse]:
    return _post("vscode-theme", ThemeResponse, ThemeRequest, **_ids(ws), theme=name)


def files_list(ws: WorkspaceRef, path: str, depth: int, limit: int) -> Call[FilesListResponse]:
    return _post("files/list", FilesListResponse, FilesListRequest, **_ids(ws), path=path, depth=depth, limit=limit)


def files_read(ws: WorkspaceRef, path: str) -> Call[FilesReadResponse]:
    return _post("files/read", FilesReadResponse, FilesReadRequest, **_ids(ws), path=path)


def files_delete(ws: WorkspaceRef, paths: list[str]) -> Call[FilesDeleteResponse]:
    return _post("files/delete", FilesDeleteResponse, FilesDeleteRequest, **_ids(ws), paths=paths)


def delete(ws: WorkspaceRef) -> Call[DeleteResponse]:
    return _post("delete", DeleteResponse, WorkspaceRef, **_ids(ws))


def fork(ws: WorkspaceRef, to_workspace_id: str, to_project_id: str | None) -> Call[ForkResponse]:
    return _post(
        "fork", ForkResponse, ForkRequest, **_ids(ws), to_workspace_id=to_workspace_id, to_project_id=to_project_id
    )


def list_page(project_id: str | None, status: str | None, limit: int, cursor: str | None) -> Call[ListResponse]:
    return _post("list", ListResponse, ListRequest, project_id=project_id, status=status, limit=limit, cursor=cursor)


def templates() -> Call[TemplatesResponse]:
    return Call("GET", "/api/v1/templates", TemplatesResponse)


def mint_token(
    project_id: str, workspace_id: str | None, ttl_seconds: int, scopes: Iterable[str] | None
) -> Call[TokenResponse]:
    listed = None if scopes is None else list(scopes)
    body = build(TokenRequest, project_id=project_id, workspace_id=workspace_id, ttl_seconds=ttl_seconds, scopes=listed)
    return Call("POST", "/api/v1/tokens", TokenResponse, body)


def revoke_tokens(project_id: str, workspace_id: str | None) -> Call[RevokeResponse]:
    body = build(RevokeRequest, project_id=project_id, workspace_id=workspace_id)
    return Call("POST", "/api/v1/tokens/revoke", RevokeResponse, body)


def set_webhook(project_id: str, url: str | None, secret: str | None) -> Call[WebhookResponse]:
    body = build_with_nulls(WebhookSetRequest, ("url",), project_id=project_id, url=url, secret=secret)
    return Call("POST", "/api/v1/webhooks/set", WebhookResponse, body)


def get_webhook(project_id: str) -> Call[WebhookResponse]:
    return Call("POST", "/api/v1/webhooks/get", WebhookResponse, build(WebhookGetRequest, project_id=project_id))


def headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def parse(call: Call[R], status: int, content: bytes) -> R:
    """The answer model of a success, or the SDK's error for anything else (with the server's code and message)."""
    if 200 <= status < 300:
        try:
            return call.answer.model_validate_json(content)
        except pydantic.ValidationError as exc:
            raise IDEClientError(
                f"The server's answer to {call.method} {call.path} is not a {call.answer.__name__}: {exc}",
                code="unexpected_answer",
                status=status,
            ) from exc
    try:
        body = json.loads(content)
    except ValueError:
        body = None
    raise from_answer(status, body, content.decode("utf-8", "replace"))


def content(answer: FilesReadResponse) -> bytes:
    """A file's bytes from files/read, whichever encoding the server chose to send them in."""
    if answer.encoding == "base64":
        return base64.b64decode(answer.content)
    return answer.content.encode("utf-8")
