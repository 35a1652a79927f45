"""The OpenAPI document, generated from the same pydantic models the routes validate with and answer with, with
the limits of the server it describes (its templates, the longest exec timeout and token life it allows)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from ..settings import Settings
from ..version import __version__
from .models import (
    FILE_SCHEMAS,
    DeleteResponse,
    ErrorResponse,
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
    ThemeRequest,
    ThemeResponse,
    TokenRequest,
    TokenResponse,
    WebhookGetRequest,
    WebhookResponse,
    WebhookSetRequest,
    WorkspaceRef,
)

PREFIX = "/api/v1/containers"
ENDPOINTS: list[tuple[str, type[BaseModel], type[BaseModel], str]] = [
    ("start", StartRequest, LifecycleResponse, "Create and start the workspace's container; write `files` into it"),
    ("stop", WorkspaceRef, LifecycleResponse, "Stop the workspace's container"),
    ("status", WorkspaceRef, StatusResponse, "Docker's live state merged with the stored record, with the password"),
    ("exec", ExecRequest, ExecResponse, "Run `sh -c command` in the workspace as its user"),
    (
        "sync",
        SyncRequest,
        SyncResponse,
        "Write files into the workspace as one set (optionally emptying it first); `ifMatch` per file saves only "
        "over that version (409 with `conflicts` otherwise, nothing written)",
    ),
    ("vscode-theme", ThemeRequest, ThemeResponse, "Set workbench.colorTheme in the user's VS Code settings"),
    ("files/list", FilesListRequest, FilesListResponse, "List the workspace's files"),
    ("files/read", FilesReadRequest, FilesReadResponse, "Read one file (UTF-8 text, or base64)"),
    ("files/delete", FilesDeleteRequest, FilesDeleteResponse, "Delete files and folders (links, not their targets)"),
    ("list", ListRequest, ListResponse, "A page of workspaces with their live state (a scoped token sees its own)"),
    ("delete", WorkspaceRef, DeleteResponse, "Delete the workspace: processes, container, volume, record, password"),
    (
        "fork",
        ForkRequest,
        ForkResponse,
        "Copy the workspace's files, template and theme into a new workspace (a running source is paused meanwhile)",
    ),
    ("/api/v1/tokens", TokenRequest, TokenResponse, "Mint a scoped, expiring token (operator's token only)"),
    ("/api/v1/tokens/revoke", RevokeRequest, RevokeResponse, "Void the tokens of a project or workspace issued so far"),
    ("/api/v1/webhooks/set", WebhookSetRequest, WebhookResponse, "Set (or, url null, remove) a project's own webhook"),
    ("/api/v1/webhooks/get", WebhookGetRequest, WebhookResponse, "A project's own webhook URL (operator's token only)"),
]
ERRORS = {
    "400": "Not JSON, or a path that is absolute, climbs out, or goes through a link",
    "401": "The bearer token is missing or wrong",
    "403": "The credential may not touch this workspace",
    "404": "The workspace was never started, or a file does not exist",
    "409": "The workspace is not running, files and folders are in each other's way, or files changed since the "
    "versions given as `ifMatch` (`conflicts` names them)",
    "413": "The body or the file set is too large",
    "422": "A field is missing or malformed (`fields` names it)",
    "429": "Too many wrong tokens from this address",
    "502": "The Docker engine failed",
    "503": "The Docker engine or the database does not answer",
}


def build_openapi(settings: Settings, templates: Sequence[str]) -> dict[str, Any]:
    """The document for a server with these settings and templates: what it allows, that server accepts."""
    models: list[type[BaseModel]] = [ErrorResponse]
    for _, request, response, _ in ENDPOINTS:
        models += [request, response]
    _, schemas = models_json_schema(
        [(m, "validation" if m in {e[1] for e in ENDPOINTS} else "serialization") for m in models],
        by_alias=True,
        ref_template="#/components/schemas/{model}",
    )
    definitions: dict[str, Any] = {**schemas.get("$defs", {}), **FILE_SCHEMAS}
    _narrow(definitions["StartRequest"], "template", {"enum": list(templates)})
    _narrow(definitions["ExecRequest"], "timeout", {"maximum": settings.exec_max_timeout})
    _narrow(definitions["TokenRequest"], "ttlSeconds", {"maximum": settings.token_max_ttl})
    paths: dict[str, Any] = {}
    for name, request, response, summary in ENDPOINTS:
        error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
        responses: dict[str, Any] = {
            "200": {
                "description": "Done",
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{response.__name__}"}}},
            }
        }
        responses.update({status: {"description": text, "content": error} for status, text in ERRORS.items()})
        path = name if name.startswith("/") else f"{PREFIX}/{name}"
        paths[path] = {
            "post": {
                "operationId": path.removeprefix(PREFIX + "/")
                .removeprefix("/api/v1/")
                .replace("/", "_")
                .replace("-", "_"),
                "summary": summary,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{request.__name__}"}}},
                },
                "responses": responses,
                "security": [{"bearer": []}],
            }
        }
    return {
        "openapi": "3.1.0",
        "info": {"title": "ide-backend", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": definitions,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _narrow(model: dict[str, Any], field: str, keywords: dict[str, Any]) -> None:
    """Add keywords to a field's schema (to its non-null branch when it may be null): a limit this server sets."""
    schema = model["properties"][field]
    for branch in schema.get("anyOf", []):
        if branch.get("type") != "null":
            schema = branch
    schema.update(keywords)
