"""Request and response models: the edge of the system, where every input is checked before it goes further.

The OpenAPI document (openapi.py) is generated from these models and tells the truth both ways: a request it allows
is accepted (it may still find no such workspace, or a conflict), and one it forbids is refused. So every rule the
server applies to a request's shape is stated here in JSON Schema, next to the check that applies it: a field's
constraint, or a pattern below. Paths are checked by the service (400 `invalid_path`); their patterns state its rules.
Patterns use what ECMA 262 (the document's dialect), Python's `re` and Rust's regex crates read alike, and the checks
here apply them with `fullmatch` (with `re.match`, `$` would let a trailing newline through).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    WithJsonSchema,
)
from pydantic.alias_generators import to_camel

from ..service import domain
from ..service.filesets import DEFAULT_FILE_MODE, MAX_DEPTH, MAX_FILES, MAX_NAME_BYTES, MAX_PATH_CHARS

ID_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9_-])?$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
NO_NUL_PATTERN = r"^[^\u0000]*$"
NO_CONTROL_PATTERN = r"^[^\u0000-\u001f\u007f]*$"
VERSION_PATTERN = r"^[0-9a-f]{64}$"  # a file's version: the SHA-256 of its bytes, in hex
CURSOR_PATTERN = f"^{ID_PATTERN[1:-1]}/{ID_PATTERN[1:-1]}$"  # list: where a page starts
BASE64_PATTERN = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
# Linux refuses one argv string longer than this (MAX_ARG_STRLEN).
MAX_COMMAND_CHARS = 100_000


_NAME_CHAR = r"[^/\\\u0000-\u001f]"  # a name's character: no slash, backslash, NUL or control character
# A name: not "." or "..", and within MAX_NAME_BYTES of UTF-8. A pattern cannot add up bytes, so it states two
# bounds it can count: 255 ASCII characters, or 63 of any (4 bytes at most each). A longer name that fits is
# accepted all the same; the document leaves it out.
_ASCII_NAME_CHAR = r"[\u0020-\u002e\u0030-\u005b\u005d-\u007f]"
_NAME_FITS = rf"(?:{_ASCII_NAME_CHAR}{{1,{MAX_NAME_BYTES}}}|{_NAME_CHAR}{{1,{MAX_NAME_BYTES // 4}}})"
_NAME = rf"(?!\.\.?(?:/|$))(?={_NAME_FITS}(?:/|$)){_NAME_CHAR}+"
# A workspace-relative path as filesets.normalize_path takes it: names between slashes, where empty and "." parts
# are dropped, not starting with "/", at least one name and at most MAX_DEPTH, no "..".
_PATH = rf"(?:\./(?:\.?/)*)?{_NAME}(?:/(?:\.?/)*{_NAME}){{0,{MAX_DEPTH - 1}}}(?:/(?:\.?/)*\.?)?"
# At most MAX_PATH_CHARS characters, said in the pattern: a maxLength next to it would have a fuzzer look for
# a string of exactly that length that matches it, which takes minutes.
_LENGTH = rf"(?=[\s\S]{{0,{MAX_PATH_CHARS}}}$)"
PATH_PATTERN = f"^{_LENGTH}{_PATH}$"
NAME_PATTERN = f"^{_NAME}$"  # one name in a `directory` tree
LIST_PATH_PATTERN = rf"^{_LENGTH}(?:[/.]*|{_PATH})$"  # files/list: only slashes and dots is the workspace folder
CWD_PATTERN = rf"^{_LENGTH}/*(?:\.?(?:/\.?)*|{_PATH})$"  # exec: relative to the workspace, or absolute


def _rule(pattern: str, message: str) -> AfterValidator:
    """The check of a documented pattern (the field states it with `_states`)."""
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(message)
        return value

    return AfterValidator(check)


def _at_most(chars: int) -> AfterValidator:
    """A length limit the document states in a pattern (see _LENGTH)."""

    def check(value: str) -> str:
        if len(value) > chars:
            raise ValueError(f"must be at most {chars} characters")
        return value

    return AfterValidator(check)


def _states(**schema: Any) -> Any:
    """JSON Schema keywords for a field whose check is a validator (or the service's), for the document."""
    return Field(json_schema_extra=schema)


def _whole(value: object) -> object:
    """JSON Schema counts 2.0 as an integer, so an integral float is taken as the int it is."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _check_env(value: dict[str, str]) -> dict[str, str]:
    for name, item in value.items():
        if not _ENV_NAME.fullmatch(name):
            raise ValueError(f"variable name {name!r} must be letters, digits and '_', not starting with a digit")
        if "\x00" in item:
            raise ValueError(f"value of {name} must not contain NUL characters")
    return value


_ENV_NAME = re.compile(ENV_NAME_PATTERN)
_ID_MESSAGE = "must be 1-63 characters of letters, digits, '_', '-' or '.', starting with a letter or digit"

WorkspaceIdStr = Annotated[
    StrictStr,
    _rule(ID_PATTERN, _ID_MESSAGE),
    WithJsonSchema({"type": "string", "pattern": ID_PATTERN, "minLength": 1, "maxLength": 63}),
]
CommandStr = Annotated[
    StrictStr,
    Field(min_length=1, max_length=MAX_COMMAND_CHARS),
    _states(pattern=NO_NUL_PATTERN),
    _rule(NO_NUL_PATTERN, "must not contain NUL characters"),
]
EnvMap = Annotated[
    dict[StrictStr, StrictStr],
    Field(max_length=256),
    AfterValidator(_check_env),
    WithJsonSchema(
        {
            "type": "object",
            "propertyNames": {"pattern": ENV_NAME_PATTERN},
            "additionalProperties": {"type": "string", "pattern": NO_NUL_PATTERN},
            "maxProperties": 256,
        }
    ),
]
ThemeStr = Annotated[
    StrictStr,
    Field(min_length=1, max_length=200),
    _states(pattern=NO_CONTROL_PATTERN),
    _rule(NO_CONTROL_PATTERN, "must not contain control characters"),
]


# -- files (start and sync) ------------------------------------------------------------------------------------

_CONTENT_KEYS = frozenset({"content", "contents", "encoding", "mode", "ifMatch"})
_VERSION = re.compile(VERSION_PATTERN)
_BASE64 = re.compile(BASE64_PATTERN)


def _check_files(files: dict[str, Any]) -> dict[str, Any]:
    """Every value in one of the shapes FILE_SCHEMAS states (their paths are the service's to check); a mode
    given as an integral float comes out as an int."""
    return {path: _node(path, value) for path, value in files.items()}


def _node(path: str, value: object) -> object:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        if len(value) == 1 and "directory" in value:
            tree = value["directory"]
            if not isinstance(tree, dict):
                raise ValueError(f"{path!r}: directory must be an object of names")
            return {"directory": {name: _node(f"{path}/{name}", item) for name, item in tree.items()}}
        if len(value) == 1 and "file" in value:
            return {"file": _content(path, value["file"])}
        if "content" in value or "contents" in value:
            return _content(path, value)
    raise ValueError(
        f"{path!r} must be a string, an object with 'content', or a tree node "
        "({'file': {'contents': ...}} or {'directory': {...}})"
    )


def _content(path: str, spec: object) -> dict[str, Any]:
    if not isinstance(spec, dict):
        raise ValueError(f"{path!r}: file must be an object with 'contents'")
    if unknown := set(spec) - _CONTENT_KEYS:
        raise ValueError(f"{path!r}: unknown keys {sorted(unknown)}")
    if ("content" in spec) == ("contents" in spec):
        raise ValueError(f"{path!r}: give 'content' or 'contents' (one of them)")
    content = spec.get("content", spec.get("contents"))
    encoding = spec.get("encoding", "utf-8")
    mode = _whole(spec.get("mode", DEFAULT_FILE_MODE))
    if not isinstance(content, str):
        raise ValueError(f"{path!r}: content must be a string")
    if encoding not in ("utf-8", "utf8", "base64"):
        raise ValueError(f"{path!r}: encoding must be 'utf-8' or 'base64'")
    if encoding == "base64" and not _BASE64.fullmatch(content):
        raise ValueError(f"{path!r}: content is not base64 (the standard alphabet, padded with '=')")
    if isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 0o777:
        raise ValueError(f"{path!r}: mode must be permission bits between 0 and 511 (0o777), e.g. 420 for 0o644")
    if "ifMatch" in spec:
        expected = spec["ifMatch"]
        if expected is not None and not (isinstance(expected, str) and _VERSION.fullmatch(expected)):
            raise ValueError(
                f"{path!r}: ifMatch must be a version from files/read or files/list (64 hex digits), "
                "or null for a file that must not exist yet"
            )
    return {**spec, "mode": mode} if "mode" in spec else spec


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_CONTENT = {"type": "string", "description": "the file's bytes as UTF-8 text, or base64 with `encoding: base64`"}
# The shapes of the values in `files`, as components of the document (a tree holds nodes: they refer to each other).
FILE_SCHEMAS: dict[str, dict[str, Any]] = {
    "FileNode": {
        "anyOf": [
            {"type": "string", "description": "UTF-8 text"},
            _ref("FileContent"),
            {
                "type": "object",
                "properties": {"file": _ref("FileContent")},
                "required": ["file"],
                "additionalProperties": False,
            },
            {
                "type": "object",
                "properties": {"directory": _ref("FileTree")},
                "required": ["directory"],
                "additionalProperties": False,
            },
        ]
    },
    "FileTree": {
        "type": "object",
        "description": "The entries of a folder, by name",
        "propertyNames": {"pattern": NAME_PATTERN},
        "additionalProperties": _ref("FileNode"),
    },
    "FileContent": {
        "type": "object",
        "properties": {
            "content": _CONTENT,
            "contents": _CONTENT,
            "encoding": {"enum": ["utf-8", "utf8", "base64"], "default": "utf-8"},
            "mode": {"type": "integer", "minimum": 0, "maximum": 0o777, "default": DEFAULT_FILE_MODE},
            "ifMatch": {
                "anyOf": [{"type": "string", "pattern": VERSION_PATTERN}, {"type": "null"}],
                "description": "write only over this version; null: only where nothing exists (409 otherwise)",
            },
        },
        "additionalProperties": False,
        "oneOf": [{"required": ["content"]}, {"required": ["contents"]}],
        "if": {"properties": {"encoding": {"const": "base64"}}, "required": ["encoding"]},
        "then": {"properties": {"content": {"pattern": BASE64_PATTERN}, "contents": {"pattern": BASE64_PATTERN}}},
    },
}
# `files` itself, inline in the requests (a field that is only a $ref is one pydantic would look up itself).
FILES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": (
        "Workspace-relative paths to contents. Paths follow the service's rules (400 otherwise); a path within a "
        f"`directory` tree counts from the top: at most {MAX_PATH_CHARS} characters and {MAX_DEPTH} names in all. "
        "No two entries may name the same file, or a file and a folder in its path (400)."
    ),
    "propertyNames": {"pattern": PATH_PATTERN},
    "additionalProperties": _ref("FileNode"),
    "maxProperties": MAX_FILES,
}
FilesMap = Annotated[dict[StrictStr, Any], AfterValidator(_check_files), WithJsonSchema(FILES_SCHEMA)]


# -- requests ---------------------------------------------------------------------------------------------------


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
    files: FilesMap | None = None
    # The template to make the workspace from (the default when left out); another one than the workspace's
    # re-creates its container on the same volume. The document lists the server's templates (openapi.py).
    template: Annotated[StrictStr, Field(min_length=1, max_length=32)] | None = None


class ForkRequest(WorkspaceRef):
    """The workspace to copy (projectId, workspaceId) and the new one's ids (its project the source's unless
    given), which must not be the source's (422: a rule between two fields, which JSON Schema cannot state)."""

    to_project_id: WorkspaceIdStr | None = None
    to_workspace_id: WorkspaceIdStr

    @property
    def target(self) -> domain.WorkspaceRef:
        return domain.WorkspaceRef(self.to_project_id or self.project_id, self.to_workspace_id)


class ExecRequest(WorkspaceRef):
    command: CommandStr
    cwd: (
        Annotated[
            StrictStr,
            _states(pattern=CWD_PATTERN),
            _at_most(MAX_PATH_CHARS),
            _rule(NO_NUL_PATTERN, "must not contain NUL characters"),
        ]
        | None
    ) = None
    env: EnvMap | None = None
    # At most IDE_EXEC_MAX_TIMEOUT (the service checks it; the document states the server's).
    timeout: Annotated[StrictFloat, Field(gt=0)] | None = None


class SyncRequest(WorkspaceRef):
    files: FilesMap
    clean: StrictBool = False


class ThemeRequest(WorkspaceRef):
    theme: ThemeStr


PathStr = Annotated[StrictStr, _states(pattern=PATH_PATTERN), _at_most(MAX_PATH_CHARS)]


class FilesListRequest(WorkspaceRef):
    path: Annotated[StrictStr, _states(pattern=LIST_PATH_PATTERN), _at_most(MAX_PATH_CHARS)] = ""
    depth: Annotated[StrictInt, Field(ge=1, le=20), BeforeValidator(_whole)] = 1
    limit: Annotated[StrictInt, Field(ge=1, le=50_000), BeforeValidator(_whole)] = 5000


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
    # The request's id, also in the X-Request-Id header and on every log line about it: quote it in a report.
    request_id: str | None = None
    # A 409 of a sync whose ifMatch versions are not the files' versions now (nothing was written): each such file.
    conflicts: list[ConflictItem] | None = None


class LifecycleResponse(_Model):
    success: Literal[True] = True
    message: str
    data: ContainerInfo


class SyncResponse(LifecycleResponse):
    versions: dict[str, str]  # the version of each file written, by path (for its next ifMatch)


class ListeningPortInfo(_Model):
    """A TCP port something listens on inside a running workspace (its code-server's own port left out)."""

    port: int = Field(ge=1, le=65535)
    # The widest address it is bound to: "0.0.0.0" or "::" (every address), else one address; one on loopback
    # (127.0.0.1) answers inside the workspace only, so its preview cannot reach it.
    address: str
    process: str | None = None  # the listening process's name, when the workspace user may see it
    preview_url: str  # where it opens through the backend: /preview/{projectId}/{workspaceId}/{port}/


class StatusData(ContainerInfo):
    password: str
    ide_ready: bool = False  # code-server answers its health check: the IDE can be opened
    # What keeps a running workspace from being stopped as idle, e.g. "terminal term-7f3a attached".
    kept_alive_by: list[str] = Field(default_factory=list)
    idle_stop_at: str | None = None  # when it will be stopped as idle if nothing uses it meanwhile
    listening: list[ListeningPortInfo] = Field(default_factory=list)  # TCP ports listening in it (running only)


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
    limit: Annotated[StrictInt, Field(ge=1, le=500), BeforeValidator(_whole)] = 100
    # The page starts after this workspace: the nextCursor of the page before, "projectId/workspaceId".
    cursor: (
        Annotated[
            StrictStr,
            _states(pattern=CURSOR_PATTERN),
            _rule(CURSOR_PATTERN, "not a cursor this server gave out; pass nextCursor as it came"),
        ]
        | None
    ) = None

    @property
    def after(self) -> tuple[str, str] | None:
        """The (projectId, workspaceId) the page starts after, None for the first page."""
        if self.cursor is None:
            return None
        project_id, workspace_id = self.cursor.split("/")
        return project_id, workspace_id


def cursor_of(key: tuple[str, str]) -> str:
    """The cursor of the page after the workspace `key` (ListRequest.after reads it back)."""
    return "/".join(key)


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
    # At most IDE_TOKEN_MAX_TTL (the route checks it; the document states the server's).
    ttl_seconds: Annotated[StrictInt, Field(ge=1), BeforeValidator(_whole)] = 3600
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


# -- webhooks -------------------------------------------------------------------------------------------------

WebhookUrl = Annotated[StrictStr, Field(min_length=8, max_length=2048, pattern=r"^https?://[^\s/?#]+[^\s]*$")]
WebhookSecret = Annotated[StrictStr, Field(min_length=16, max_length=256, pattern=r"^[\x21-\x7e]+$")]


class WebhookSetRequest(_Model):
    """A project's own receiver of its workspaces' lifecycle events (beside IDE_WEBHOOK_URL): `url` null removes it.
    Its deliveries are signed with `secret` (16-256 printable ASCII characters), made by the server when left out
    and answered once."""

    project_id: WorkspaceIdStr
    url: WebhookUrl | None
    secret: WebhookSecret | None = None


class WebhookGetRequest(_Model):
    project_id: WorkspaceIdStr


class WebhookResponse(_Model):
    success: Literal[True] = True
    message: str
    project_id: str
    url: str | None  # None: the project has no webhook of its own
    # Only in the answer of a set: the key the receiver checks X-IDE-Signature with (never answered again).
    secret: str | None = None
