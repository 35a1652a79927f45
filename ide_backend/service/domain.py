"""The values the service speaks in: which workspace, what to run in it, and what it looks like now.

Routes and the websocket turn wire messages (ide_backend.api.models, ide_backend.api.protocol) into these, call the
service, and turn what it hands back into their answers; nothing here knows about HTTP, JSON or Docker.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .messages import ListeningItem


@dataclass(frozen=True, slots=True)
class WorkspaceRef:
    """One workspace: the unit of ownership, locking and (for credentials) access."""

    project_id: str
    workspace_id: str

    def __str__(self) -> str:
        return f"{self.project_id}/{self.workspace_id}"


@dataclass(frozen=True)
class IDETarget:
    """A running workspace's code-server as the /ide/ proxy signs in to it: where it answers, the password it was
    started with, and which start of the container it is (changes with every start, so an open tab can tell a new
    code-server from the one it loaded)."""

    host: str
    port: int
    password: str = field(repr=False)
    generation: str


@dataclass(frozen=True)
class ExecSpec:
    """One command to run as the workspace user: `sh -c command` in the workspace folder (or `cwd`)."""

    command: str
    cwd: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    timeout: float | None = None  # seconds; None: the default (REST) or no limit (websocket processes)
    tty: bool = False
    cols: int = 80
    rows: int = 24


@dataclass(frozen=True)
class WorkspaceInfo:
    """A workspace's container as the API shows it: the engine's live state merged with the stored record."""

    id: str | None
    name: str
    project_id: str
    workspace_id: str
    image: str
    status: str
    running: bool
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    exit_code: int | None
    oom_killed: bool
    workspace_dir: str
    volume: str
    ports: dict[str, int]
    theme: str | None
    ide_url: str | None  # where VS Code opens through the backend; None when the image has none
    stop_reason: str | None = None  # why it last stopped or went away, while it is not running
    template: str = ""  # the template it was made from


@dataclass(frozen=True)
class Outcome:
    """What a lifecycle call did, for the route to word its answer."""

    info: WorkspaceInfo
    changed: bool
    versions: dict[str, str] = field(default_factory=dict)  # of the files a sync wrote, by path


@dataclass(frozen=True)
class Forked:
    """A fork: the new workspace, how long the copy took, and how long the source was paused for it."""

    info: WorkspaceInfo
    seconds: float
    paused_seconds: float


@dataclass(frozen=True)
class WorkspaceStatus:
    """`status`: the info, the IDE password, what keeps it running, and where its IDE answers."""

    info: WorkspaceInfo
    password: str
    kept_alive_by: list[str]  # what keeps a running workspace from its idle stop, in words
    idle_stop_at: str | None  # when it will be stopped if nothing uses it (ISO 8601), while nothing does
    ide_address: tuple[str, int] | None = None  # where a running workspace's code-server answers, if reachable
    listening: list[ListeningItem] = field(default_factory=list)  # the TCP ports something listens on, if running


@dataclass(frozen=True)
class ExecResult:
    output: str
    error: str
    exit_code: int
    timed_out: bool
    truncated: bool
    duration_ms: float
