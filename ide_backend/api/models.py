"""Request and response models: the edge of the system, where every input is checked before it goes further."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, WithJsonSchema
from pydantic.alias_generators import to_camel

from ..service import domain

ID_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9_-])?$"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
# Linux refuses one argv string longer than this (MAX_ARG_STRLEN).
MAX_COMMAND_CHARS = 100_000


def _check_id(value: str) -> str:
    if not re.match(ID_PATTERN, value) or value.endswith("."):
        raise ValueError("must be 1-63 characters of letters, digits, '_', '-' or '.', starting with a letter or digit")
    return value


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _check_env(value: dict[str, str]) -> dict[str, str]:
    for name, item in value.items():
        if not _ENV_NAME.match(name):
            raise ValueError(f"variable name {name!r} must be letters, digits and '_', not starting with a digit")
        if "\x00" in item:
            raise ValueError(f"value of {name} must not contain NUL characters")
    return value


def _check_theme(value: str) -> str:
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise ValueError("must not contain control characters")
    return value


WorkspaceIdStr = Annotated[
    StrictStr,
    AfterValidator(_check_id),
    WithJsonSchema({"type": "string", "pattern": ID_PATTERN, "minLength": 1, "maxLength": 63}),
]
CommandStr = Annotated[StrictStr, Field(min_length=1, max_length=MAX_COMMAND_CHARS), AfterValidator(_no_nul)]
EnvMap = Annotated[dict[StrictStr, StrictStr], Field(max_length=256), AfterValidator(_check_env)]
ThemeStr = Annotated[StrictStr, Field(min_length=1, max_length=200), AfterValidator(_check_theme)]


class _Model(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields are ignored so clients can evolve."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class WorkspaceRef(_Model):
    project_id: WorkspaceIdStr
    workspace_id: WorkspaceIdStr

    @property
    def ref(self) -> domain.WorkspaceRef:
        """The workspace this request is about, as the service names it."""
        return domain.WorkspaceRef(self.project_id, self.workspace_id)


class StartRequest(WorkspaceRef):
    # Validated and normalised by ide_backend.service.filesets, which knows the accepted shapes.
    files: dict[str, Any] | None = None
    # The template to make the workspace from (the default when left out); another one than the workspace's
    # re-creates its container on the same volume.
    template: Annotated[StrictStr, Field(min_length=1, max_length=32)] | None = None


class ForkRequest(WorkspaceRef):
    """The workspace to copy (projectId, workspaceId) and the new one's ids (its project the source's unless
    given)."""

    to_project_id: WorkspaceIdStr | None = None
    to_workspace_id: WorkspaceIdStr

    @property
    def target(self) -> domain.WorkspaceRef:
        return domain.WorkspaceRef(self.to_project_id or self.project_id, self.to_workspace_id)


class ExecRequest(WorkspaceRef):
    command: CommandStr
    cwd: Annotated[StrictStr, Field(max_length=4096), AfterValidator(_no_nul)] | None = None
    env: EnvMap | None = None
    timeout: Annotated[float, Field(gt=0)] | None = None


class SyncRequest(WorkspaceRef):
    files: dict[str, Any]
    clean: StrictBool = False


class ThemeRequest(WorkspaceRef):
    theme: ThemeStr


PathStr = Annotated[StrictStr, Field(max_length=4096)]


class FilesListRequest(WorkspaceRef):
    path: PathStr = ""
    depth: Annotated[StrictInt, Field(ge=1, le=20)] = 1
    limit: Annotated[StrictInt, Field(ge=1, le=50_000)] = 5000


class FilesReadRequest(WorkspaceRef):
    path: PathStr


class FilesDeleteRequest(WorkspaceRef):
    paths: Annotated[list[PathStr], Field(min_length=1, max_length=1000)]


class ContainerInfo(_Model):
    """What the API tells about a workspace's container: Docker's live state merged with our record."""

    id: str | None
    name: str
    project_id: str
    workspace_id: str
    image: str
    status: str
    running: bool
    created_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    exit_code: int | None = None
    oom_killed: bool = False
    workspace_dir: str
    volume: str
    ports: dict[str, int] = Field(default_factory=dict)
    theme: str | None = None
    # Where the workspace's VS Code opens through the backend; None when its image has no IDE.
    ide_url: str | None = None
    # Why it last stopped or went away (requested, idle, died, oom_killed, removed_outside), while not running.
    stop_reason: str | None = None
    template: str = ""  # the template it was made from (GET /api/v1/templates lists them)


class ExecResult(_Model):
    output: str
    error: str
    exit_code: int
    timed_out: bool = False
    truncated: bool = False
    duration_ms: float = 0.0


# -- answers --------------------------------------------------------------------------------------------------


class ConflictItem(_Model):
    path: str
    version: str | None  # its version now; null: it does not exist


class ErrorResponse(_Model):
    """Every failure: a message a person can act on, a stable code, sometimes `path`, `fields`, `hint`."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    success: Literal[False] = False
    message: str
    code: str
    # A 409 of a sync whose ifMatch versions are not the files' versions now (nothing was written): each such file.
    conflicts: list[ConflictItem] | None = None


class LifecycleResponse(_Model):
    success: Literal[True] = True
    message: str
    data: ContainerInfo


class SyncResponse(LifecycleResponse):
    versions: dict[str, str]  # the version of each file written, by path (for its next ifMatch)


class StatusData(ContainerInfo):
    password: str
    ide_ready: bool = False  # code-server answers its health check: the IDE can be opened
    # What keeps a running workspace from being stopped as idle, e.g. "terminal term-7f3a attached".
    kept_alive_by: list[str] = Field(default_factory=list)
    idle_stop_at: str | None = None  # when it will be stopped as idle if nothing uses it meanwhile


class StatusResponse(_Model):
    success: Literal[True] = True
    message: str
    data: StatusData


class ExecResponse(ExecResult):
    success: Literal[True] = True


class ThemeResponse(_Model):
    success: Literal[True] = True
    theme: str


class FileEntryInfo(_Model):
    path: str
    type: Literal["file", "dir", "symlink", "other"]
    size: int
    mode: int
    mtime: float
    # SHA-256 of the bytes (hex): of a regular file the workspace user can read, up to 10 MiB; else null
    version: str | None = None


class FilesListResponse(_Model):
    success: Literal[True] = True
    entries: list[FileEntryInfo]
    truncated: bool


class FilesReadResponse(_Model):
    success: Literal[True] = True
    path: str
    content: str
    encoding: Literal["utf-8", "base64"]
    size: int
    version: str  # SHA-256 of the bytes (hex): give it as the file's ifMatch in sync to save only over this


class FilesDeleteResponse(_Model):
    success: Literal[True] = True
    deleted: list[str]


class ListRequest(_Model):
    """A page of workspaces: all (operator) or those a scoped token covers, optionally of one project."""

    project_id: WorkspaceIdStr | None = None
    status: Annotated[StrictStr, Field(min_length=1, max_length=32)] | None = None
    limit: Annotated[StrictInt, Field(ge=1, le=500)] = 100
    cursor: Annotated[StrictStr, Field(max_length=512)] | None = None


class ListResponse(_Model):
    success: Literal[True] = True
    data: list[ContainerInfo]
    next_cursor: str | None  # pass it as `cursor` for the next page; null on the last


class ForkResponse(_Model):
    success: Literal[True] = True
    message: str
    data: ContainerInfo  # the new workspace: no container until its first start
    copy_ms: int  # how long the copy took
    paused_ms: int  # how long of that the source was paused (0 when it was stopped)


class DeleteResponse(_Model):
    success: Literal[True] = True
    message: str


class TemplateInfo(_Model):
    name: str
    image: str
    description: str
    memory_mb: int
    cpus: float
    pids: int
    disk_mb: int | None  # None: IDE_DISK_LIMIT_MB
    ports: list[int]
    idle_timeout: float  # seconds; 0 = never stopped as idle
    pool_size: int  # started containers of it kept ready


class TemplatesResponse(_Model):
    success: Literal[True] = True
    default: str
    data: list[TemplateInfo]


# -- tokens ---------------------------------------------------------------------------------------------------


class TokenRequest(_Model):
    """A scoped token for one project, or one workspace of it."""

    project_id: WorkspaceIdStr
    workspace_id: WorkspaceIdStr | None = None
    ttl_seconds: Annotated[StrictInt, Field(ge=1)] = 3600
    # `read`: status, files/list, files/read, attach, subscribe; `write`: everything (it includes read).
    scopes: Annotated[list[Literal["read", "write"]], Field(min_length=1, max_length=2)] | None = None


class TokenResponse(_Model):
    success: Literal[True] = True
    token: str
    expires_at: str  # ISO 8601, UTC
    project_id: str
    workspace_id: str | None
    scopes: list[str]


class RevokeRequest(_Model):
    project_id: WorkspaceIdStr
    workspace_id: WorkspaceIdStr | None = None


class RevokeResponse(_Model):
    success: Literal[True] = True
    message: str
    revoked_at: str  # ISO 8601, UTC: tokens of this scope issued before it no longer work
