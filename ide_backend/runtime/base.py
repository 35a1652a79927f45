"""The container runtime seam: what the workspace service needs from an engine, and the values it returns."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

STDOUT, STDERR = 1, 2  # the stream numbers ExecSession.read() returns

NetworkMode = Literal["isolated", "none", "shared"]


@dataclass(frozen=True)
class NetworkPolicy:
    """Where a workspace container's traffic may go. `isolated`: a network for workspaces only, where no workspace
    reaches another, nor the host, and the wider network stays open (only to `egress_allow`, IPv4 CIDRs, when that
    is not empty); `none`: loopback only; `shared`: the engine's default bridge, unrestricted (docs/security.md)."""

    mode: NetworkMode = "shared"
    egress_allow: tuple[str, ...] = ()


@dataclass(frozen=True)
class ContainerSpec:
    """Everything needed to create one workspace container."""

    name: str
    image: str
    volume: str
    labels: Mapping[str, str]
    env: Mapping[str, str]
    user: str
    workdir: str
    mount_path: str
    publish_ports: Sequence[int]
    memory_bytes: int
    nano_cpus: int
    pids_limit: int
    network: NetworkPolicy = NetworkPolicy()
    # Everything the workspace user can write (the workspace folder, the home folder, /tmp) within this many bytes;
    # None: unbounded.
    disk_bytes: int | None = None
    home: str = "/home/coder"  # the workspace user's home folder (bounded with the rest when disk_bytes is set)


@dataclass(frozen=True)
class ContainerState:
    """Docker's live view of one container."""

    id: str
    name: str
    image: str
    status: str
    running: bool
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    exit_code: int | None
    oom_killed: bool
    ports: dict[str, int] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    volumes: dict[str, str] = field(default_factory=dict)  # mount path -> volume name
    address: str = ""  # its IP address on its Docker network, when running


@dataclass(frozen=True)
class CopyResult:
    """A workspace's files copied onto another's volumes: how long it took, and how long of that the source was
    paused (0 when it was not running)."""

    seconds: float
    paused_seconds: float


@dataclass(frozen=True)
class PathStat:
    """One path inside a container, not following a final symlink."""

    mode: int  # permission bits
    mtime: float
    is_dir: bool
    is_symlink: bool
    link_target: str


@dataclass(frozen=True)
class ExecOutput:
    stdout: bytes
    stderr: bytes
    exit_code: int
    timed_out: bool
    truncated: bool


class ExecSession(Protocol):
    """One live exec: read() chunks as (1 stdout / 2 stderr, bytes) until None, then exit_code()."""

    container_id: str
    tty: bool

    async def read(self) -> tuple[int, bytes] | None: ...

    async def write(self, data: bytes) -> None: ...

    async def close_stdin(self) -> None: ...

    async def resize(self, cols: int, rows: int) -> None: ...

    async def signal(self, name: str) -> None: ...

    async def exit_code(self, *, killed: bool = False) -> int | None: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class HeldTerminal:
    """A terminal, or a command on pipes (tty False), held in its workspace (it outlives the backend relaying it):
    how to start one."""

    key: str  # [0-9a-f]{32}: names the holder in the container
    argv: Sequence[str]
    cols: int
    rows: int
    detached_ttl: float  # seconds with no backend attached before the holder kills the program
    finished_ttl: float  # seconds an ended one is kept for late attaches
    tty: bool = True


class HeldSession(ExecSession, Protocol):
    """A relay to a held terminal. Each chunk read() returns has the holder's seq (`seq`, set by read()), the same
    for every backend; `first_seq`/`next_seq`/`size` are what the holder held when this relay attached."""

    seq: int
    first_seq: int
    next_seq: int
    size: tuple[int, int]
    reason: str | None  # why the holder ended the program (detached_timeout), once it has


class Runtime(Protocol):
    """A container engine as the workspace service uses it. Errors are ide_backend.errors types."""

    async def ping(self) -> None: ...

    async def ensure_volume(self, name: str, labels: Mapping[str, str]) -> None: ...

    async def inspect(self, name_or_id: str) -> ContainerState | None: ...

    async def create(self, spec: ContainerSpec) -> ContainerState: ...

    async def start(self, container_id: str) -> None: ...

    async def stop(self, container_id: str, timeout: int) -> None: ...

    async def remove(self, container_id: str) -> None: ...

    async def move_to_network(self, container_id: str, policy: NetworkPolicy) -> bool: ...

    async def rename(self, name: str, new_name: str) -> bool: ...

    async def volume_labels(self, name: str) -> dict[str, str] | None: ...

    async def remove_volume(self, name: str) -> None: ...

    async def copy_workspace(self, source: ContainerSpec, target: ContainerSpec, freeze: str | None) -> CopyResult: ...

    async def resume_left(self, instance: str) -> list[str]: ...

    async def container_names(self, labels: Mapping[str, str]) -> list[str]: ...

    async def agent_ready(self, container_id: str) -> bool: ...

    def open_exec(
        self,
        container_id: str,
        argv: Sequence[str],
        *,
        user: str,
        workdir: str,
        env: Mapping[str, str],
        tty: bool = False,
        stdin: bool = False,
    ) -> Awaitable[ExecSession]: ...

    async def open_held(
        self, container_id: str, terminal: HeldTerminal, *, user: str, workdir: str, env: Mapping[str, str]
    ) -> HeldSession | None: ...

    async def attach_held(self, container_id: str, key: str, *, user: str, since: int) -> HeldSession: ...

    def events(
        self, labels: Mapping[str, str], since: float | None = None, opened: Callable[[], None] | None = None
    ) -> AsyncIterator[RuntimeEvent]: ...

    async def exec(
        self,
        container_id: str,
        argv: Sequence[str],
        *,
        user: str,
        workdir: str,
        env: Mapping[str, str],
        timeout: float,
        output_cap: int,
    ) -> ExecOutput: ...

    async def stat_paths(self, container_id: str, paths: Sequence[str]) -> dict[str, PathStat | None]: ...

    async def put_archive(self, container_id: str, dest: str, data: bytes) -> None: ...

    async def read_file(self, container_id: str, path: str, max_bytes: int) -> bytes | None: ...

    async def run_on_files(
        self, container: ContainerState, argv: Sequence[str], *, user: str, root: bool = False, timeout: float = 600
    ) -> ExecOutput: ...

    async def reach(self, container: ContainerState, port: int) -> tuple[str, int]:
        """An address this process can connect to that reaches `port` on the running container's network address
        (the address itself where its network is reachable from here, else a forward into it)."""
        ...


@dataclass(frozen=True)
class RuntimeEvent:
    """A container event from the engine, for one of our workspaces."""

    project_id: str  # from the container's labels; empty for a container claimed from the warm pool
    workspace_id: str
    action: str  # start, die, oom, kill, stop, destroy, ...
    container_id: str
    name: str = ""  # the container's name when the event happened
    exit_code: int | None = None
    time: float = 0.0  # when the engine saw it (Unix time)
