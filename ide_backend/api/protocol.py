"""The websocket protocol: every message type, client to server and server to client, as pydantic models.

Client messages form a discriminated union on "type", which the websocket parses every message with;
docs/protocol.md documents each with an example, and a test checks every example there against these models.
The server's messages are built as typed dicts where they arise (ide_backend.service.messages for processes and
status, Pong and Subscribed below for the channel's own); the models below describe the same shapes for the
documentation and the tests, and a test keeps the two in step.
"""

from __future__ import annotations

from typing import Annotated, Literal, TypedDict

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, TypeAdapter
from pydantic.alias_generators import to_camel

from .models import CommandStr, EnvMap, WorkspaceIdStr

ProcessId = Annotated[StrictStr, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")]
Cols = Annotated[StrictInt, Field(ge=1, le=1000)]
Rows = Annotated[StrictInt, Field(ge=1, le=1000)]


class _Message(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


# -- client to server --------------------------------------------------------------------------------------


class ExecMessage(_Message):
    type: Literal["exec"]
    id: ProcessId
    project_id: WorkspaceIdStr
    workspace_id: WorkspaceIdStr
    command: CommandStr
    tty: StrictBool = False
    cols: Cols = 80
    rows: Rows = 24
    cwd: Annotated[StrictStr, Field(max_length=4096)] | None = None
    env: EnvMap | None = None
    timeout: Annotated[float, Field(gt=0)] | None = None


class StdinMessage(_Message):
    type: Literal["stdin"]
    id: ProcessId
    data: Annotated[StrictStr, Field(max_length=1024 * 1024)]


class ResizeMessage(_Message):
    type: Literal["resize"]
    id: ProcessId
    cols: Cols
    rows: Rows


class SignalMessage(_Message):
    type: Literal["signal"]
    id: ProcessId
    signal: Literal["SIGINT", "SIGTERM", "SIGKILL", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2"]


class CloseStdinMessage(_Message):
    type: Literal["close_stdin"]
    id: ProcessId


class SubscribeMessage(_Message):
    type: Literal["subscribe"]
    project_id: WorkspaceIdStr
    workspace_id: WorkspaceIdStr
    ports: StrictBool = False  # also the listening ports: status events with source "ports" when one opens or closes


class UnsubscribeMessage(_Message):
    type: Literal["unsubscribe"]
    project_id: WorkspaceIdStr
    workspace_id: WorkspaceIdStr


class AttachMessage(_Message):
    type: Literal["attach"]
    id: ProcessId
    since: Annotated[StrictInt, Field(ge=0)] = 0
    # A terminal sends its screen as it is now (a `screen` message) instead of replaying what was missed.
    screen: StrictBool = False


class DetachMessage(_Message):
    type: Literal["detach"]
    id: ProcessId


class PingMessage(_Message):
    type: Literal["ping"]


class ListMessage(_Message):
    """Which processes the workspace has (so a reloaded page can attach to its terminals again)."""

    type: Literal["list"]
    project_id: WorkspaceIdStr
    workspace_id: WorkspaceIdStr


class WatchMessage(_Message):
    """Follow the file changes below `path` ("" = the whole workspace) of a running workspace."""

    type: Literal["watch"]
    project_id: WorkspaceIdStr
    workspace_id: WorkspaceIdStr
    path: Annotated[StrictStr, Field(max_length=4096)] = ""


class UnwatchMessage(_Message):
    type: Literal["unwatch"]
    project_id: WorkspaceIdStr
    workspace_id: WorkspaceIdStr
    path: Annotated[StrictStr, Field(max_length=4096)] = ""


ClientMessage = Annotated[
    ExecMessage
    | StdinMessage
    | ResizeMessage
    | SignalMessage
    | CloseStdinMessage
    | SubscribeMessage
    | UnsubscribeMessage
    | AttachMessage
    | DetachMessage
    | PingMessage
    | ListMessage
    | WatchMessage
    | UnwatchMessage,
    Field(discriminator="type"),
]
client_message = TypeAdapter[ClientMessage](ClientMessage)


# -- server to client --------------------------------------------------------------------------------------


class StartedMessage(_Message):
    type: Literal["started"]
    id: str


class OutputMessage(_Message):
    type: Literal["stdout", "stderr"]
    id: str
    seq: int
    data: str


class ExitMessage(_Message):
    type: Literal["exit"]
    id: str
    exit_code: int | None
    timed_out: bool = False
    truncated: bool = False
    reason: str | None = None


class ListeningItemModel(_Message):
    port: int
    address: str
    process: str | None
    preview_url: str


class StatusMessage(_Message):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    type: Literal["status"]
    project_id: str
    workspace_id: str
    status: Literal["creating", "starting", "running", "syncing", "stopping", "exited", "died", "oom", "removed"]
    source: Literal["api", "docker", "snapshot", "ports"] | None = None
    exit_code: int | None = None
    missed: int | None = None
    reason: str | None = None
    listening: list[ListeningItemModel] | None = None


class SubscribedMessage(_Message):
    type: Literal["subscribed", "unsubscribed"]
    project_id: str
    workspace_id: str


class ScreenMessage(_Message):
    type: Literal["screen"]
    id: str
    seq: int
    cols: int
    rows: int
    data: str


class AttachedMessage(_Message):
    type: Literal["attached"]
    id: str
    first_seq: int
    next_seq: int
    running: bool


class ErrorMessage(_Message):
    type: Literal["error"]
    id: str | None = None
    code: str
    message: str


class PongMessage(_Message):
    type: Literal["pong"]


class ProcessItemModel(_Message):
    id: str
    command: str
    tty: bool
    running: bool
    exit_code: int | None
    started_at: str
    next_seq: int
    attached: int


class ProcessesMessage(_Message):
    type: Literal["processes"]
    project_id: str
    workspace_id: str
    items: list[ProcessItemModel]


class WatchingMessage(_Message):
    type: Literal["watching", "unwatched"]
    project_id: str
    workspace_id: str
    path: str
    folders: int | None = None  # watching: how many folders the workspace's watcher watches
    reason: Literal["container_stopped", "watcher_ended"] | None = None  # unwatched by the server


class FileChangeModel(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    path: str
    kind: Literal["created", "modified", "deleted", "moved"]
    type: Literal["file", "dir", "symlink", "other"]
    from_: str | None = Field(default=None, alias="from")  # moved: where it was
    version: str | None = None  # sha256 hex of a regular file's contents, up to 1 MiB
    origin: Literal["sync"] | None = None  # a write through this backend made it
    request_id: str | None = Field(default=None, alias="requestId")  # that write's request (X-Request-Id)


class FilesMessage(_Message):
    type: Literal["files"]
    project_id: str
    workspace_id: str
    path: str
    changes: list[FileChangeModel]
    overflow: bool | None = None  # changes were lost: list again
    reason: Literal["too_many", "queue", "limit"] | None = None


ServerMessage = Annotated[
    StartedMessage
    | OutputMessage
    | ExitMessage
    | StatusMessage
    | SubscribedMessage
    | AttachedMessage
    | ErrorMessage
    | PongMessage
    | ProcessesMessage
    | ScreenMessage
    | WatchingMessage
    | FilesMessage,
    Field(discriminator="type"),
]
server_message = TypeAdapter[ServerMessage](ServerMessage)


# -- the channel's own answers, as sent ---------------------------------------------------------------------


class Pong(TypedDict):
    type: Literal["pong"]


class Subscribed(TypedDict):
    type: Literal["subscribed", "unsubscribed"]
    projectId: str
    workspaceId: str
