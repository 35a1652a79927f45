"""The live-channel messages the service produces, as typed dicts: process output, exits, attaches, status events.

They are the exact JSON the websocket sends (camelCase keys), built once and queued as they are: a chunk of output
is encoded per listener without being copied into another shape first. ide_backend.api.protocol describes the same
messages as pydantic models for the documentation and the tests; a test keeps the two in step.
"""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict

OutputType = Literal["stdout", "stderr"]
Status = Literal["creating", "starting", "running", "syncing", "stopping", "exited", "died", "oom", "removed"]
StatusSource = Literal["api", "docker", "snapshot", "ports"]


class StartedMessage(TypedDict):
    type: Literal["started"]
    id: str


class OutputMessage(TypedDict):
    type: OutputType
    id: str
    seq: int
    data: str


class ScreenMessage(TypedDict):
    """A terminal's screen as it is now, drawn with escape sequences, covering output up to `seq`."""

    type: Literal["screen"]
    id: str
    seq: int
    cols: int
    rows: int
    data: str


class ExitMessage(TypedDict):
    type: Literal["exit"]
    id: str
    exitCode: int | None
    timedOut: bool
    truncated: bool
    reason: NotRequired[str]


class AttachedMessage(TypedDict):
    type: Literal["attached"]
    id: str
    firstSeq: int
    nextSeq: int
    running: bool


class ErrorMessage(TypedDict):
    type: Literal["error"]
    code: str
    message: str
    id: NotRequired[str]


class ListeningItem(TypedDict):
    """A TCP port something listens on in a workspace, and where its preview opens (ide_backend.service.ports)."""

    port: int
    address: str
    process: str | None
    previewUrl: str


class StatusMessage(TypedDict):
    type: Literal["status"]
    projectId: str
    workspaceId: str
    status: Status
    source: StatusSource
    exitCode: NotRequired[int | None]
    missed: NotRequired[int]
    reason: NotRequired[str]
    listening: NotRequired[list[ListeningItem]]  # with source "ports" (a port opened or closed), or in a snapshot


class ProcessItem(TypedDict):
    """One process in a `processes` answer: enough for a reloaded page to attach to its terminals again."""

    id: str
    command: str
    tty: bool
    running: bool
    exitCode: int | None
    startedAt: str
    nextSeq: int
    attached: int


class ProcessesMessage(TypedDict):
    type: Literal["processes"]
    projectId: str
    workspaceId: str
    items: list[ProcessItem]


ProcessMessage = StartedMessage | OutputMessage | ExitMessage | AttachedMessage | ErrorMessage | ScreenMessage
ServerMessage = ProcessMessage | StatusMessage | ProcessesMessage


def error_message(code: str, message: str, process_id: str | None = None) -> ErrorMessage:
    """An error about one request on the channel; the connection stays up."""
    error: ErrorMessage = {"type": "error", "code": code, "message": message}
    if process_id is not None:
        error["id"] = process_id
    return error
