"""The workspace service: start, stop, status, exec, sync and theme for one (projectId, workspaceId) each.

It owns the rules: one container per workspace (a per-workspace lock here, a deterministic container name in
Docker so other processes cannot create a second), files checked before anything is written, and the record in the
store kept in step with what Docker has.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..api.models import (
    ContainerInfo,
    ExecRequest,
    ExecResult,
    FilesDeleteRequest,
    FilesListRequest,
    FilesReadRequest,
    WorkspaceRef,
)
from ..api.protocol import ExecMessage
from ..errors import Conflict, IDEError, NotFound, NotRunning, ValidationFailed
from ..runtime import ContainerSpec, ContainerState, Runtime
from ..settings import Settings
from ..store import Store, WorkspaceRecord
from .bus import EventBus
from .filesets import FileEntry, FileSet, normalize_path, parse_files
from .pool import POOL_LABEL, WarmPool
from .processes import Outbox, Process, ProcessManager
from .status import StatusEvents
from .vscode import SETTINGS_PATH, set_theme
from .workspace_files import Entry, FileContent, WorkspaceFiles

log = logging.getLogger(__name__)

LABEL_PREFIX = "ide-backend"
IDE_LABEL = f"{LABEL_PREFIX}.ide"  # set by IDE images (images/code-server)
FILES_LABEL = f"{LABEL_PREFIX}.files-volume"  # on a claimed workspace's marker volume: the volume with its files
MAX_SETTINGS_BYTES = 1024 * 1024
MAX_READ_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True)
class Outcome:
    """What a lifecycle call did, for the route to word its answer."""

    info: ContainerInfo
    changed: bool


class WorkspaceService:
    """Drives the runtime and the store for every workspace; the routes call only this."""

    def __init__(self, settings: Settings, store: Store, runtime: Runtime, bus: EventBus) -> None:
        self.settings = settings
        self.store = store
        self.runtime = runtime
        self.bus = bus
        self.status_events = StatusEvents(
            runtime, bus, instance=settings.instance, label_prefix=LABEL_PREFIX, owner=self._owner
        )
        self.pool = WarmPool(
            runtime,
            size=settings.pool_size,
            instance=settings.instance,
            image=settings.workspace_image,
            make_spec=self._pool_spec,
        )
        self._owners: dict[str, tuple[str, str]] = {}  # container name -> (project, workspace), for claimed ones
        self._names: dict[tuple[str, str], str] = {}  # (project, workspace) -> container name
        self.processes = ProcessManager(
            buffer_limit=settings.process_buffer_bytes,
            lag_limit=settings.process_lag_chars,
            output_cap=settings.process_output_cap,
            detached_ttl=settings.process_detached_ttl,
            finished_ttl=settings.process_finished_ttl,
            end_reason=self.status_events.end_reason,
        )
        self.files = WorkspaceFiles(runtime, settings)
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def startup(self) -> None:
        """Start the background work: the process reaper and the engine event watcher."""
        self.processes.start()
        self.status_events.start(on_container_end=self.processes.workspace_ended)
        await self.pool.start()

    async def shutdown(self) -> None:
        await self.pool.close()
        await self.status_events.close()
        await self.processes.close()

    def _publish(self, ref: WorkspaceRef, status: str, **details: Any) -> None:
        self.status_events.publish(ref.project_id, ref.workspace_id, status, **details)

    def _publish_state(self, ref: WorkspaceRef, state: ContainerState | None) -> None:
        self.status_events.publish_state(ref.project_id, ref.workspace_id, state)

    async def status_event(self, ref: WorkspaceRef) -> dict[str, Any]:
        """The workspace's status now, as a status event (sent first to a new subscriber)."""
        record = await self._require(ref)
        state = await self.runtime.inspect(record.container_name)
        return self.status_events.snapshot(ref.project_id, ref.workspace_id, state)

    # -- naming -------------------------------------------------------------------------------------------

    def labels(self, ref: WorkspaceRef) -> dict[str, str]:
        return {
            f"{LABEL_PREFIX}.instance": self.settings.instance,
            f"{LABEL_PREFIX}.project": ref.project_id,
            f"{LABEL_PREFIX}.workspace": ref.workspace_id,
        }

    def names(self, ref: WorkspaceRef) -> tuple[str, str]:
        """Container and volume names: readable, and unique per (instance, project, workspace) via a digest."""
        key = f"{self.settings.instance}\0{ref.project_id}\0{ref.workspace_id}".encode()
        digest = hashlib.sha256(key).hexdigest()[:10]
        base = f"ide-{self.settings.instance}-{ref.project_id}-{ref.workspace_id}-{digest}"
        return base, f"{base}-data"

    def _spec(self, ref: WorkspaceRef, record: WorkspaceRecord) -> ContainerSpec:
        return self._container_spec(
            record.container_name, record.image, record.volume_name, self.labels(ref), record.password
        )

    def _pool_spec(self, name: str, volume: str, labels: Mapping[str, str], password: str) -> ContainerSpec:
        return self._container_spec(name, self.settings.workspace_image, volume, labels, password)

    def _container_spec(
        self, name: str, image: str, volume: str, labels: Mapping[str, str], password: str
    ) -> ContainerSpec:
        """One container config for every workspace container, pooled or not: only these five things differ."""
        s = self.settings
        return ContainerSpec(
            name=name,
            image=image,
            volume=volume,
            labels=labels,
            env={"PASSWORD": password, "WORKSPACE_DIR": s.workspace_dir},
            user=f"{s.workspace_uid}:{s.workspace_gid}",
            workdir=s.workspace_dir,
            mount_path=s.workspace_dir,
            publish_ports=s.publish_ports,
            memory_bytes=s.memory_limit_mb * 1024 * 1024,
            nano_cpus=int(s.cpu_limit * 1e9),
            pids_limit=s.pids_limit,
        )

    def _lock(self, ref: WorkspaceRef) -> asyncio.Lock:
        return self._locks.setdefault((ref.project_id, ref.workspace_id), asyncio.Lock())

    # -- records and containers -----------------------------------------------------------------------------

    async def _require(self, ref: WorkspaceRef) -> WorkspaceRecord:
        record = await self.store.get(ref.project_id, ref.workspace_id)
        if record is None:
            raise NotFound(
                f"Workspace {ref.project_id}/{ref.workspace_id} does not exist; create it with /api/v1/containers/start"
            )
        return record

    async def _record(self, ref: WorkspaceRef) -> WorkspaceRecord:
        record = await self.store.get(ref.project_id, ref.workspace_id)
        if record is not None:
            return record
        container_name, volume_name = self.names(ref)
        return await self.store.create(
            WorkspaceRecord.new(
                project_id=ref.project_id,
                workspace_id=ref.workspace_id,
                container_name=container_name,
                container_id=None,
                volume_name=volume_name,
                image=self.settings.workspace_image,
                password=secrets.token_urlsafe(18),
                theme=None,
            )
        )

    async def _ensure_container(
        self, ref: WorkspaceRef, record: WorkspaceRecord, *, claim: bool = False
    ) -> tuple[ContainerState, bool, WorkspaceRecord]:
        """The workspace's container, when Docker has none: claimed from the warm pool (started; only when `claim`,
        and only for a workspace with no files yet) or created (not started) on the workspace's volume. Returns
        (state, created, the record as now stored)."""
        state = await self.runtime.inspect(record.container_name)
        created = False
        if state is None:
            self._publish(ref, "creating")
            files_at = await self._files_volume(record)
            if files_at is None and claim:
                state = await self._claim(record)
            if state is None:
                record = dataclasses.replace(record, volume_name=files_at or record.volume_name)
                await self.runtime.ensure_volume(record.volume_name, self.labels(ref))
                state = await self.runtime.create(self._spec(ref, record))
                log.info("created container %s for %s/%s", state.name, ref.project_id, ref.workspace_id)
            created = True
        self._check_owner(ref, record, state)
        # The container is the truth: a claimed pool container brings its own volume and password, and so does
        # one adopted from an earlier run or a lost database (code-server inside it already uses that password).
        truth = {
            "container_id": state.id,
            "volume_name": state.volumes.get(self.settings.workspace_dir, record.volume_name),
            "password": state.env.get("PASSWORD") or record.password,
        }
        changes = {key: value for key, value in truth.items() if getattr(record, key) != value}
        if changes:
            await self.store.update(ref.project_id, ref.workspace_id, **changes)
            record = dataclasses.replace(record, **changes)
        if POOL_LABEL in state.labels and "volume_name" in changes:
            # A claimed volume keeps its pool name and labels: leave a labelled marker under the workspace's own
            # volume name saying where its files are, so they are found from Docker alone (lost database and
            # container both), as any workspace's are.
            labels = {**self.labels(ref), FILES_LABEL: record.volume_name}
            await self.runtime.ensure_volume(self.names(ref)[1], labels)
        if created and record.theme:
            await self.files.write(state.id, self.settings.workspace_home, _settings_file(None, record.theme))
        return state, created, record

    async def _files_volume(self, record: WorkspaceRecord) -> str | None:
        """Which volume holds the workspace's files (its own, or the claimed one its marker names); None when it
        has none yet."""
        labels = await self.runtime.volume_labels(record.volume_name)
        if labels is None:
            return None
        return labels.get(FILES_LABEL) or record.volume_name

    async def _claim(self, record: WorkspaceRecord) -> ContainerState | None:
        """A pool container renamed to this workspace's name; None when the pool cannot serve it."""
        if self.pool.size <= 0 or record.image != self.pool.image or not await self.pool.claim(record.container_name):
            return None
        return await self.runtime.inspect(record.container_name)

    def _check_owner(self, ref: WorkspaceRef, record: WorkspaceRecord, state: ContainerState) -> None:
        """The container under this workspace's name must be ours: made for it (labels), or claimed from our pool
        (a pool container carries no workspace labels; only a claim gives it this digest-bearing name)."""
        labels = state.labels
        if labels.get(POOL_LABEL) and labels.get(f"{LABEL_PREFIX}.instance") == self.settings.instance:
            self._owners[state.name] = (ref.project_id, ref.workspace_id)
            return
        if (labels.get(f"{LABEL_PREFIX}.project"), labels.get(f"{LABEL_PREFIX}.workspace")) != (
            ref.project_id,
            ref.workspace_id,
        ):
            raise Conflict(f"A container named {record.container_name} exists but is not this workspace's")

    async def _owner(self, container_name: str) -> tuple[str, str] | None:
        """Which workspace a claimed pool container (no workspace labels) belongs to, for its engine events."""
        if not container_name or self.pool.owns(container_name):
            return None
        owner = self._owners.get(container_name)
        if owner is None:
            try:
                record = await self.store.by_container_name(container_name)
            except IDEError as exc:
                log.warning("cannot tell whose container %s is: %s", container_name, exc.message)
                return None
            if record is None:
                return None
            owner = self._owners[container_name] = (record.project_id, record.workspace_id)
        return owner

    def _info(self, ref: WorkspaceRef, record: WorkspaceRecord, state: ContainerState | None) -> ContainerInfo:
        return ContainerInfo(
            id=state.id if state else None,
            name=record.container_name,
            project_id=ref.project_id,
            workspace_id=ref.workspace_id,
            image=state.image if state else record.image,
            status=state.status if state else "removed",
            running=bool(state and state.running),
            created_at=state.created_at if state else None,
            started_at=state.started_at if state else None,
            finished_at=state.finished_at if state else None,
            exit_code=state.exit_code if state else None,
            oom_killed=bool(state and state.oom_killed),
            workspace_dir=self.settings.workspace_dir,
            volume=record.volume_name,
            ports=dict(state.ports) if state else {},
            theme=record.theme,
            ide_url=f"/ide/{ref.project_id}/{ref.workspace_id}/" if state and state.labels.get(IDE_LABEL) else None,
        )

    # -- the six operations ---------------------------------------------------------------------------------

    async def start(self, ref: WorkspaceRef, files: Mapping[str, Any] | None) -> Outcome:
        """Create the container if missing, start it if stopped, then write `files` into the workspace."""
        fileset = parse_files(files) if files else None
        async with self._lock(ref):
            record = await self._record(ref)
            state, changed, record = await self._ensure_container(ref, record, claim=True)
            if not state.running:
                self._publish(ref, "starting")
                await self.runtime.start(state.id)
                changed = True
                log.info("started %s/%s", ref.project_id, ref.workspace_id)
            if fileset is not None:
                await self.files.write(state.id, self.settings.workspace_dir, fileset)
            after = await self.runtime.inspect(state.id)
        self._publish_state(ref, after)
        return Outcome(self._info(ref, record, after), changed)

    async def stop(self, ref: WorkspaceRef) -> Outcome:
        record = await self._require(ref)
        async with self._lock(ref):
            state = await self.runtime.inspect(record.container_name)
            changed = bool(state and state.running)
            if state is not None and state.running:
                self._publish(ref, "stopping")
                with self.status_events.stopping(ref.project_id, ref.workspace_id):
                    await self.runtime.stop(state.id, self.settings.stop_timeout)
                state = await self.runtime.inspect(state.id)
                log.info("stopped %s/%s", ref.project_id, ref.workspace_id)
        self._publish_state(ref, state)
        return Outcome(self._info(ref, record, state), changed)

    async def status(self, ref: WorkspaceRef) -> tuple[ContainerInfo, str]:
        record = await self._require(ref)
        state = await self.runtime.inspect(record.container_name)
        return self._info(ref, record, state), record.password

    async def exec(self, request: ExecRequest) -> ExecResult:
        """Run `sh -c command` as the workspace user in the workspace folder (or `cwd`)."""
        s = self.settings
        timeout = request.timeout if request.timeout is not None else s.exec_default_timeout
        if timeout > s.exec_max_timeout:
            raise ValidationFailed(f"timeout: must be at most {s.exec_max_timeout:g} seconds", field="timeout")
        workdir = self._workdir(request.cwd)
        state = await self._running(request, "run commands (/api/v1/containers/start)")
        began = time.perf_counter()
        try:
            result = await self.runtime.exec(
                state.id,
                ["sh", "-c", request.command],
                user=f"{s.workspace_uid}:{s.workspace_gid}",
                workdir=workdir,
                env=request.env or {},
                timeout=timeout,
                output_cap=s.exec_output_cap,
            )
        except Conflict as exc:  # the container stopped between our inspect and the exec
            raise NotRunning(f"Workspace {request.project_id}/{request.workspace_id} stopped: {exc.message}") from exc
        return ExecResult(
            output=result.stdout.decode("utf-8", "replace"),
            error=result.stderr.decode("utf-8", "replace"),
            exit_code=result.exit_code,
            timed_out=result.timed_out,
            truncated=result.truncated,
            duration_ms=round((time.perf_counter() - began) * 1000, 2),
        )

    def _workdir(self, cwd: str | None) -> str:
        """The exec's folder: `cwd` below the workspace folder, or an absolute path as given (normalised)."""
        base = self.settings.workspace_dir
        if cwd is None:
            return base
        root, rest = ("/", cwd.lstrip("/")) if cwd.startswith("/") else (base + "/", cwd)
        if all(part in ("", ".") for part in rest.split("/")):
            return root.rstrip("/") or "/"
        return root + normalize_path(rest, where="cwd")

    async def sync(self, ref: WorkspaceRef, files: Mapping[str, Any], clean: bool) -> Outcome:
        """Write `files` as one archive (after emptying the workspace when `clean`), running or stopped."""
        fileset = parse_files(files)
        record = await self._require(ref)
        async with self._lock(ref):
            state, _, record = await self._ensure_container(ref, record)
            self._publish(ref, "syncing")
            if clean:
                await self.runtime.empty_dir(state, self._spec(ref, record))
            if fileset.files or fileset.dirs:
                await self.files.write(state.id, self.settings.workspace_dir, fileset)
            after = await self.runtime.inspect(state.id)
        self._publish_state(ref, after)
        return Outcome(self._info(ref, record, after), bool(fileset.files or fileset.dirs))

    async def set_theme(self, ref: WorkspaceRef, theme: str) -> None:
        """Set workbench.colorTheme in the user's VS Code settings, keeping the rest; remember it for re-creation."""
        record = await self._require(ref)
        async with self._lock(ref):
            state, created, _ = await self._ensure_container(ref, record)
            home = self.settings.workspace_home
            existing = (
                None
                if created
                else await self.runtime.read_file(state.id, f"{home}/{SETTINGS_PATH}", MAX_SETTINGS_BYTES)
            )
            await self.files.write(state.id, home, _settings_file(existing, theme))
            await self.store.update(ref.project_id, ref.workspace_id, theme=theme)

    async def ide_address(self, ref: WorkspaceRef) -> tuple[str, int]:
        """Where the workspace's code-server answers: its port published on this host's 127.0.0.1, or (setting
        ide_upstream=container) the container's own address on its Docker network."""
        s = self.settings
        state = await self._running(ref, "open the IDE")
        port = state.ports.get(str(s.code_server_port))
        if port is None or not state.labels.get(IDE_LABEL):
            raise Conflict(
                f"Workspace {ref.project_id}/{ref.workspace_id} has no IDE: start it with an IDE image "
                f"(IDE_WORKSPACE_IMAGE=ide-backend/code-server:latest) publishing port {s.code_server_port}"
            )
        if s.ide_upstream == "container":
            if not state.address:
                raise Conflict(f"Workspace {ref.project_id}/{ref.workspace_id} has no address on a Docker network")
            return state.address, s.code_server_port
        return "127.0.0.1", port

    # -- browsing files -----------------------------------------------------------------------------------------

    async def _running(self, ref: WorkspaceRef, doing: str) -> ContainerState:
        key = (ref.project_id, ref.workspace_id)
        name = self._names.get(key)
        if name is None:
            # Records are never deleted and a container name never changes: once read, it is good forever, and
            # the hot paths (exec, terminals, file browsing) skip the database after the first call.
            name = self._names[key] = (await self._require(ref)).container_name
        state = await self.runtime.inspect(name)
        if state is None or not state.running:
            raise NotRunning(f"Workspace {ref.project_id}/{ref.workspace_id} is not running; start it to {doing}")
        return state

    async def list_files(self, request: FilesListRequest) -> tuple[list[Entry], bool]:
        path = "" if request.path.strip("/.") == "" else normalize_path(request.path, where="path")
        state = await self._running(request, "list its files")
        return await self.files.listing(state, path, request.depth, request.limit)

    async def read_file(self, request: FilesReadRequest) -> FileContent:
        path = normalize_path(request.path, where="path")
        record = await self._require(request)
        state, _, _ = await self._ensure_container(request, record)
        return await self.files.read(state.id, path, MAX_READ_BYTES)

    async def delete_files(self, request: FilesDeleteRequest) -> list[str]:
        paths = [normalize_path(p, where="paths") for p in request.paths]
        async with self._lock(request):
            state = await self._running(request, "delete files")
            await self.files.delete(state, paths)
        return paths

    # -- processes over the websocket ------------------------------------------------------------------------

    async def open_process(self, message: ExecMessage, outbox: Outbox) -> Process:
        """Start an exec whose output streams to `outbox` (and to whoever attaches later)."""
        s = self.settings
        self.processes.check_free(message.id)
        if message.timeout is not None and message.timeout > s.exec_max_timeout:
            raise ValidationFailed(f"timeout: must be at most {s.exec_max_timeout:g} seconds", field="timeout")
        workdir = self._workdir(message.cwd)
        ref = WorkspaceRef(project_id=message.project_id, workspace_id=message.workspace_id)
        state = await self._running(ref, "run commands")
        env = dict(message.env or {})
        if message.tty:
            env.setdefault("TERM", "xterm-256color")
        session = await self.runtime.open_exec(
            state.id,
            ["sh", "-c", message.command],
            user=f"{s.workspace_uid}:{s.workspace_gid}",
            workdir=workdir,
            env=env,
            tty=message.tty,
            stdin=True,
        )
        process = self.processes.add(
            message.id, message.project_id, message.workspace_id, session, message.timeout, outbox
        )
        if message.tty:
            await session.resize(message.cols, message.rows)
        return process


def _settings_file(existing: bytes | None, theme: str) -> FileSet:
    return FileSet((FileEntry(SETTINGS_PATH, set_theme(existing, theme), 0o644),), ())
