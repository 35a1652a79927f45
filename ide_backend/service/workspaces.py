"""The workspace service: what a workspace can be asked to do, in domain terms. The routes and the websocket call
only this; it owns the components below it and the order of their steps.

    WorkspaceService
     +-- Containers      names, specs, records, claiming and adopting containers (containers.py)
     +-- WarmPools       started containers kept ready, one pool per template (pool.py)
     +-- Templates       what a workspace is made from (templates.py)
     +-- WorkspaceFiles  writes, reads, listings and deletions inside a container (workspace_files.py)
     +-- StatusEvents    the engine's event stream and the API's steps, published on the EventBus (status.py)
     +-- ProcessManager  websocket processes and their replay buffers; listens to the bus (processes.py)
     +-- Webhooks        lifecycle events to the operator's URL; listens to the bus (webhooks.py)
     +-- Watches         live file watchers, one per watched workspace; listens to the bus (watch.py)
     +-- PortWatcher     the ports listening in subscribed workspaces, published on the bus (ports.py)

One container per workspace: a per-workspace lock here, a deterministic container name in the engine so other
processes cannot create a second. Files are checked before anything is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from .. import request_id
from ..errors import Conflict, IDEError, NotFound, NotRunning, ValidationFailed
from ..runtime import ContainerState, HeldSession, HeldTerminal, Runtime
from ..settings import Settings
from ..store import HeldTerminalRecord, Store, WorkspaceRecord
from .bus import EventBus, Subscription
from .containers import IDE_LABEL, INSTANCE_LABEL, ContainerOwners, Containers, container_spec
from .domain import (
    ExecResult,
    ExecSpec,
    Forked,
    IDETarget,
    Outcome,
    WorkspaceInfo,
    WorkspaceRef,
    WorkspaceStatus,
)
from .filesets import FileEntry, FileSet, normalize_path, parse_files, version_of
from .idle import IdleMonitor
from .locks import WorkspaceLocks
from .members import Members
from .messages import ProcessItem, StatusMessage
from .pool import WarmPool, WarmPools
from .ports import SCRIPT as PORTS_SCRIPT
from .ports import ListeningPort, PortWatcher, listening_items, parse_listening
from .processes import Outbox, ProcessHandle, ProcessManager, unknown_process
from .relay import EventRelay
from .states import ContainerStates
from .status import StatusEvents
from .templates import Templates
from .vscode import SETTINGS_PATH, set_theme
from .watch import Deliver, Watch, Watches, folder_path
from .webhooks import Webhooks
from .workspace_files import Entry, FileContent, WorkspaceFiles

log = logging.getLogger(__name__)

MAX_SETTINGS_BYTES = 1024 * 1024
MAX_READ_BYTES = 10 * 1024 * 1024
PORTS_POLL = 1.0  # seconds between two readings of a subscribed workspace's listening ports


class WorkspaceService:
    """start/stop/status/exec/sync/theme, files, processes and status subscriptions for every workspace."""

    def __init__(self, settings: Settings, store: Store, runtime: Runtime) -> None:
        self.settings = settings
        self.store = store
        self.runtime = runtime
        self.bus = EventBus()
        self.templates = Templates(settings)
        self.members = Members(store, settings.instance)
        pools = {
            template.name: WarmPool(
                runtime,
                size=template.pool_size,
                instance=settings.instance,
                template=template.name,
                make_spec=functools.partial(container_spec, settings, template),
                owner=self.members.process_id,
            )
            for template in self.templates.all()
        }
        self.pool = WarmPools(runtime, settings.instance, pools, self.members.live)
        owners = ContainerOwners(store, self.pool)
        self.containers = Containers(settings, store, runtime, self.templates, self.pool, owners)
        self.states = ContainerStates(runtime, (INSTANCE_LABEL, settings.instance))  # what /status answers from
        self.status_events = StatusEvents(
            runtime, self.bus, owners, store, instance=settings.instance, states=self.states
        )
        self.processes = ProcessManager(
            runtime,
            self.bus,
            store,
            buffer_limit=settings.process_buffer_bytes,
            lag_limit=settings.process_lag_chars,
            output_cap=settings.process_output_cap,
            detached_ttl=settings.process_detached_ttl,
            finished_ttl=settings.process_finished_ttl,
        )
        self.files = WorkspaceFiles(runtime, settings)
        self.watches = Watches(
            runtime,
            self.bus,
            user=f"{settings.workspace_uid}:{settings.workspace_gid}",
            root=settings.workspace_dir,
            max_folders=settings.watch_max_folders,
            batch_ms=settings.watch_batch_ms,
            max_batch=settings.watch_max_batch,
        )
        self._idle_timeouts: dict[WorkspaceRef, float] = {}  # per workspace, from its template
        self.idle = IdleMonitor(
            self._idle_timeout,
            settings.idle_sweep,
            self.processes.of_workspace,
            sweeping=any(t.idle_timeout > 0 for t in self.templates.all()),
            store=store,
            process_id=self.members.process_id,
        )
        self.ports = PortWatcher(self._listening_now, self.bus, PORTS_POLL)
        self._locks = WorkspaceLocks(store)
        self.relay = EventRelay(store, self.bus, settings.instance, self.members.process_id)
        self._settling: asyncio.Task[None] | None = None
        self.webhooks = Webhooks(
            self.bus,
            settings.webhook_url,
            (settings.webhook_secret or settings.api_token).encode(),
            max_age=settings.webhook_max_age,
            project_lookup=self._project_webhook,
            leadership=(lambda: store.exclusive("webhooks")) if store.shared else None,
        )

    async def startup(self) -> None:
        """Start the background work: the process manager, the stop reasons' recorder, the engine event watcher,
        the warm pool, the idle stop; resume workspaces a fork left paused (this process's predecessor was killed
        during the copy)."""
        try:
            for name in await self.runtime.resume_left(self.settings.instance):
                log.warning("resumed %s, left paused by a fork that did not finish", name)
        except IDEError as exc:
            log.warning("cannot look for workspaces a fork left paused: %s", exc.message)
        await self.processes.start()
        await self.relay.start()
        await self.watches.start()
        await self.webhooks.start()
        await self.status_events.start()
        await self.members.start()
        await self.pool.start()
        self.idle.start(self._running_workspaces, self._stop_idle)
        self._settling = asyncio.create_task(self._settle_running(), name="finish-staged-writes")

    async def shutdown(self) -> None:
        if self._settling is not None:
            self._settling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._settling
        await self.ports.close()
        await self.idle.close()
        await self.pool.close()
        await self.members.close()
        await self.status_events.close()
        await self.webhooks.close()
        await self.watches.close()
        await self.relay.close()
        await self.processes.close()

    def _idle_timeout(self, ref: WorkspaceRef) -> float:
        return self._idle_timeouts.get(ref, self.templates.get(None).idle_timeout)

    def _seen(self, ref: WorkspaceRef, record: WorkspaceRecord) -> None:
        self._idle_timeouts[ref] = self.containers.template_of(record).idle_timeout

    async def _stop_idle(self, ref: WorkspaceRef) -> None:
        await self.stop(ref, reason="idle")

    async def _running_workspaces(self) -> list[WorkspaceRef]:
        """Every workspace whose container runs now (for the idle sweep), its template's timeout noted."""
        running = await self.containers.running_records()
        for ref, record, _ in running:
            self._seen(ref, record)
        return [ref for ref, _, _ in running]

    def stats(self) -> dict[str, Any]:
        """Counts that show leaks and which paths did the work."""
        return {
            "processes": self.processes.running_count(),
            "subscriptions": self.bus.subscriber_count(),
            "pool": self.pool.stats(),
            "writes": dict(self.files.writes),
            "watchers": self.watches.count(),
            "states": self.states.stats(),
            **({"webhooks": webhooks} if (webhooks := self.webhooks.stats()) is not None else {}),
        }

    async def set_project_webhook(self, project_id: str, url: str, secret: str | None) -> tuple[str, str]:
        """Send the project's lifecycle events to `url` too, signed with `secret` (made here when None);
        returns (url, secret)."""
        secret = secret or secrets.token_urlsafe(32)
        await self.store.set_project_webhook(project_id, url, secret)
        return url, secret

    async def project_webhook(self, project_id: str) -> str | None:
        """The project's own webhook URL (its secret is only ever answered when set)."""
        hook = await self.store.project_webhook(project_id)
        return hook.url if hook is not None else None

    async def remove_project_webhook(self, project_id: str) -> bool:
        return await self.store.remove_project_webhook(project_id)

    async def _project_webhook(self, project_id: str) -> tuple[str, bytes] | None:
        hook = await self.store.project_webhook(project_id)
        return (hook.url, hook.secret.encode()) if hook is not None else None

    async def workspace_states(self) -> list[tuple[str, str]]:
        """(state, template) of every workspace: the engine's status of its container, or `removed` (for metrics)."""
        records = await self.store.all()
        return [
            (state.status if state else "removed", record.template or self.templates.default)
            for record, state in zip(records, await self.containers.states(records), strict=True)
        ]

    def _lock(self, ref: WorkspaceRef) -> contextlib.AbstractAsyncContextManager[None]:
        """The workspace's lock, held against this process's other tasks and every other process (locks.py)."""
        return self._locks.hold(ref)

    async def _ensure_container(
        self, ref: WorkspaceRef, record: WorkspaceRecord, *, claim: bool = False, theme: bool = True
    ) -> tuple[ContainerState, bool, WorkspaceRecord]:
        """The workspace's container, made when the engine has none (claimed from the warm pool only when
        `claim`), with the workspace's theme written into a new one unless not `theme` (the caller does it once the
        container runs). Returns (state, created, the record as now stored). Call with the workspace's lock held."""
        state = await self.states.inspect(record.container_name)
        created = state is None
        if state is None:
            self.status_events.publish(ref, "creating")
            state = await self.containers.create(ref, record, claim=claim)
        record = await self.containers.adopt(ref, record, state)
        if created and record.theme and theme:
            await self.files.write(state, self.settings.workspace_home, _settings_file(None, record.theme))
        return state, created, record

    # -- lifecycle --------------------------------------------------------------------------------------------

    async def start(
        self, ref: WorkspaceRef, files: Mapping[str, Any] | None = None, template: str | None = None
    ) -> Outcome:
        """Create the container if missing (from `template`, or the default), start it if stopped, then write
        `files` into the workspace. Another template than the workspace's re-creates its container on the same
        volume: the files stay."""
        self.idle.touch(ref)
        chosen = self.templates.get(template)
        fileset = parse_files(files) if files else None
        async with self._lock(ref):
            record = await self.containers.record(ref, chosen)
            if template is not None and self.containers.template_of(record).name != chosen.name:
                # The old container's end is a step of this start, not a removal behind our back.
                with self.status_events.stopping(ref, "requested"), self.states.changing(record.container_name):
                    record, removed = await self.containers.switch_template(ref, record, chosen)
                    if removed:
                        await self.status_events.settled(ref)
            self._seen(ref, record)
            state, created, record = await self._ensure_container(ref, record, claim=True, theme=False)
            changed = fresh_home = created
            started: ContainerState | None = None
            if not state.running:
                self.status_events.publish(ref, "starting")
                if record.stop_reason is not None:  # a reason is the last stop's; this start ends it
                    await self.store.update(ref.project_id, ref.workspace_id, stop_reason=None)
                    record = dataclasses.replace(record, stop_reason=None)
                with self.states.changing(record.container_name):
                    await self.runtime.start(state.id)
                # Read again: a runtime may start a new container (a swarm's new task), whose id the files go to and
                # whose home folder is new (the theme is written again).
                started = await self.runtime.inspect(state.id)
                fresh_home = created or (started is not None and started.id != state.id)
                state = started if started is not None else dataclasses.replace(state, running=True)
                changed = True
                log.info("started %s", ref)
            if fresh_home and record.theme:
                await self.files.write(state, self.settings.workspace_home, _settings_file(None, record.theme))
            if fileset is not None:
                with self._writing(ref, fileset, clean=False):
                    await self.files.write(state, self.settings.workspace_dir, fileset)
            after: ContainerState | None
            if started is not None:  # read once it started: the theme and files written since change no state of it
                after = started
            else:  # already running and nothing written: the state read above (the view's, states.py) is the answer
                after = await self.runtime.inspect(state.id) if fileset is not None else state
        self.status_events.publish_state(ref, after)
        return Outcome(self.containers.info(ref, record, after), changed)

    async def stop(self, ref: WorkspaceRef, reason: str = "requested") -> Outcome:
        """Stop the workspace's container; its events say why (`requested`, or `idle` from the idle sweep)."""
        record = await self.containers.require(ref)
        async with self._lock(ref):
            state = await self.runtime.inspect(record.container_name)
            changed = bool(state and state.running)
            if state is not None and state.running:
                self.status_events.publish(ref, "stopping")
                # Recorded first: whoever sees the container stopped also sees why (it shows only while stopped).
                await self.store.update(ref.project_id, ref.workspace_id, stop_reason=reason)
                record = dataclasses.replace(record, stop_reason=reason)
                with self.status_events.stopping(ref, reason), self.states.changing(record.container_name):
                    await self.runtime.stop(state.id, self.settings.stop_timeout)
                state = await self.runtime.inspect(state.id)
                log.info("stopped %s", ref)
        self.status_events.publish_state(ref, state)
        return Outcome(self.containers.info(ref, record, state), changed)

    async def delete(self, ref: WorkspaceRef) -> None:
        """Remove everything of the workspace: its processes (their exit says `workspace_deleted`), its container
        (stopped first), its volume and the marker of a claimed one, its record and password. A later start begins
        empty."""
        record = await self.containers.require(ref)
        async with self._lock(ref):
            await self.processes.end_workspace(ref, "workspace_deleted")
            state = await self.runtime.inspect(record.container_name)
            # Recorded first, as for a stop: another process seeing the container go tells it as deleted too.
            await self.store.update(ref.project_id, ref.workspace_id, stop_reason="deleted")
            with self.status_events.stopping(ref, "deleted"), self.states.changing(record.container_name):
                if state is not None and state.running:
                    self.status_events.publish(ref, "stopping")
                    await self.runtime.stop(state.id, self.settings.stop_timeout)
                if state is not None:
                    await self.runtime.remove(state.id)
                    await self.status_events.settled(ref)
            for volume in dict.fromkeys([record.volume_name, self.containers.names(ref)[1]]):
                await self.runtime.remove_volume(volume)
            await self.store.delete(ref.project_id, ref.workspace_id)
            self.containers.forget(ref)
        self._locks.forget(ref)
        self.idle.forget(ref)
        self.status_events.publish(ref, "removed", reason="deleted")
        log.info("deleted %s", ref)

    async def fork(self, source: WorkspaceRef, target: WorkspaceRef) -> Forked:
        """A new workspace `target` with a copy of the source's files (and of its home folder, where both have a
        bounded disk), its template and its theme, consistent at one moment: a running source is paused for the
        copy and goes on after it, a stopped one is copied as it is. The new workspace has no container until its
        first start, which makes one on the copy. On any failure nothing of the new workspace is left."""
        if source == target:
            raise ValidationFailed(
                "A workspace cannot be forked onto itself; give another toWorkspaceId", fields=["toWorkspaceId"]
            )
        self.idle.touch(source)
        record = await self.containers.require(source)
        first, second = sorted((source, target), key=lambda ref: (ref.project_id, ref.workspace_id))
        async with self._lock(first), self._lock(second):
            with self.states.changing(record.container_name):  # a running source is paused for the copy
                fork, copied = await self.containers.copy(source, record, target)
        log.info(
            "forked %s to %s in %.2f s (source paused %.2f s)", source, target, copied.seconds, copied.paused_seconds
        )
        return Forked(self.containers.info(target, fork, None), copied.seconds, copied.paused_seconds)

    async def list_workspaces(
        self,
        *,
        project_id: str | None,
        workspace_id: str | None,
        status: str | None,
        limit: int,
        after: tuple[str, str] | None,
    ) -> tuple[list[WorkspaceInfo], tuple[str, str] | None]:
        """A page of workspaces in (project, workspace) order with their live state, and the key to continue after
        (None at the end). `status` filters the page by the engine's state (or "removed"): a filtered page may hold
        fewer than `limit`."""
        records = await self.store.page(project_id=project_id, workspace_id=workspace_id, after=after, limit=limit)
        states = await self.containers.states(records)
        infos = [
            self.containers.info(WorkspaceRef(r.project_id, r.workspace_id), r, state)
            for r, state in zip(records, states, strict=True)
        ]
        if status is not None:
            infos = [info for info in infos if info.status == status]
        following = (records[-1].project_id, records[-1].workspace_id) if len(records) == limit else None
        return infos, following

    async def status(self, ref: WorkspaceRef) -> WorkspaceStatus:
        """The workspace's record and its container's state: the view's, kept exact by the engine's events
        (states.py), so a running workspace's status asks the engine nothing."""
        record = await self.containers.require(ref)
        state = await self.states.inspect(record.container_name)
        info = self.containers.info(ref, record, state)
        address = None
        if state is not None and state.running and info.ide_url:
            with contextlib.suppress(Conflict):  # no network to reach it on: not an error of `status`
                address = await self.containers.ide_address(ref, state)
        listening: list[ListeningPort] = []
        if state is not None and state.running and state.status != "paused":
            # A recent reading, refreshed in the background (ports.py PortWatcher.for_status): a dashboard polling
            # /status costs one exec a second, not one per call, and does not wait for it.
            with contextlib.suppress(IDEError):  # it stopped meanwhile: `running` says so
                listening = await self.ports.for_status(
                    ref, f"{state.id}@{state.started_at}", functools.partial(self._read_listening, state)
                )
        return WorkspaceStatus(
            info,
            record.password,
            kept_alive_by=self.idle.kept_alive_by(ref) if info.running else [],
            idle_stop_at=self.idle.stop_at_iso(ref) if info.running else None,
            ide_address=address,
            listening=listening_items(ref, listening),
        )

    async def ide_address(self, ref: WorkspaceRef) -> tuple[str, int]:
        """Where the workspace's code-server answers (for the /ide/ proxy and the readiness probe)."""
        return await self.containers.ide_address(ref, await self.containers.running(ref, "open the IDE"))

    async def ide_target(self, ref: WorkspaceRef) -> IDETarget:
        """The workspace's code-server with the password it runs with (the container's own PASSWORD, which is what
        code-server read) and the container's start, for the proxy's sign-in and an open tab's reload."""
        state = await self.containers.running(ref, "open the IDE")
        host, port = await self.containers.ide_address(ref, state)
        password = state.env.get("PASSWORD") or (await self.containers.require(ref)).password
        return IDETarget(host, port, password, f"{state.id[:12]}@{state.started_at or ''}")

    # -- listening ports and their previews -------------------------------------------------------------------

    async def _read_listening(self, state: ContainerState) -> list[ListeningPort]:
        """What listens in the running container now; code-server's own port is the backend's, not the user's."""
        result = await self.runtime.exec(
            state.id,
            ["perl", "-e", PORTS_SCRIPT],
            user=self._user,
            workdir="/",
            env={},
            timeout=10,
            output_cap=4 * 1024 * 1024,
        )
        exclude = frozenset({self.settings.code_server_port}) if state.labels.get(IDE_LABEL) else frozenset()
        return parse_listening(result.stdout.decode("utf-8", "replace"), exclude)

    async def _listening_now(self, ref: WorkspaceRef) -> list[ListeningPort] | None:
        """The watcher's reading: None when the workspace is not running (or not there)."""
        try:
            state = await self.containers.running(ref, "read its ports")
            return await self._read_listening(state)
        except (NotRunning, NotFound, Conflict):
            return None

    async def listening(self, ref: WorkspaceRef) -> list[ListeningPort]:
        """What listens in the running workspace now (409 when it is not running)."""
        return await self._read_listening(await self.containers.running(ref, "preview its ports"))

    async def preview_address(self, ref: WorkspaceRef, port: int) -> tuple[str, int]:
        """Where `port` inside the running workspace is reached from the backend: the container's address on its
        Docker network (no published port), which the isolated network's rules let the host's connections reach,
        or a forward into the container where its network is out of reach (runtime `reach`)."""
        await self.containers.require(ref)  # 404 for a workspace that was never started
        state = await self.containers.running(ref, "preview its ports")
        if self.settings.network == "none" or not state.address:
            raise Conflict(f"Workspace {ref} has no network (IDE_NETWORK=none), so its ports cannot be reached")
        if state.labels.get(IDE_LABEL) and port == self.settings.code_server_port:
            # code-server's own port: VS Code opens at /ide/, signed in by the backend, not around it.
            raise Conflict(f"Port {port} of workspace {ref} is VS Code's: open it at /ide/{ref}/")
        return await self.runtime.reach(state, port)

    # -- commands ---------------------------------------------------------------------------------------------

    def _check_exec(self, spec: ExecSpec) -> str:
        """The checks every command passes before it reaches a container; returns its working folder."""
        if spec.timeout is not None and spec.timeout > self.settings.exec_max_timeout:
            raise ValidationFailed(
                f"timeout: must be at most {self.settings.exec_max_timeout:g} seconds", field="timeout"
            )
        base = self.settings.workspace_dir
        if spec.cwd is None:
            return base
        root, rest = ("/", spec.cwd.lstrip("/")) if spec.cwd.startswith("/") else (base + "/", spec.cwd)
        if all(part in ("", ".") for part in rest.split("/")):
            return root.rstrip("/") or "/"
        return root + normalize_path(rest, where="cwd")

    @property
    def _user(self) -> str:
        return f"{self.settings.workspace_uid}:{self.settings.workspace_gid}"

    async def exec(self, ref: WorkspaceRef, spec: ExecSpec) -> ExecResult:
        """Run `sh -c command` to its end as the workspace user, in the workspace folder (or `cwd`)."""
        self.idle.touch(ref)
        workdir = self._check_exec(spec)
        timeout = spec.timeout if spec.timeout is not None else self.settings.exec_default_timeout
        state = await self.containers.running(ref, "run commands (/api/v1/containers/start)")
        began = time.perf_counter()
        try:
            result = await self.runtime.exec(
                state.id,
                ["sh", "-c", spec.command],
                user=self._user,
                workdir=workdir,
                env=spec.env,
                timeout=timeout,
                output_cap=self.settings.exec_output_cap,
            )
        except Conflict as exc:  # the container stopped between our inspect and the exec
            raise NotRunning(f"Workspace {ref} stopped: {exc.message}") from exc
        return ExecResult(
            output=result.stdout.decode("utf-8", "replace"),
            error=result.stderr.decode("utf-8", "replace"),
            exit_code=result.exit_code,
            timed_out=result.timed_out,
            truncated=result.truncated,
            duration_ms=round((time.perf_counter() - began) * 1000, 2),
        )

    async def open_process(self, ref: WorkspaceRef, process_id: str, spec: ExecSpec, outbox: Outbox) -> ProcessHandle:
        """Start a command whose output streams to `outbox` (and to whoever attaches later); it outlives them."""
        self.idle.touch(ref)
        self.processes.check_free(process_id)
        workdir = self._check_exec(spec)
        state = await self.containers.running(ref, "run commands")
        env = dict(spec.env)
        if spec.tty:
            env.setdefault("TERM", "xterm-256color")
        # Terminals are held in the workspace, so they outlive this backend; so are commands when several backend
        # processes share the workspaces (a client may come back through another). A command run by this process
        # alone goes through the agent: it starts in a frame, not a Docker exec.
        if spec.tty or self.store.shared:
            held = await self._open_held(ref, process_id, spec, state, workdir, env, outbox)
            if held is not None:
                return held
        session = await self.runtime.open_exec(
            state.id, ["sh", "-c", spec.command], user=self._user, workdir=workdir, env=env, tty=spec.tty, stdin=True
        )
        handle = self.processes.add(process_id, ref, session, spec, outbox)
        if spec.tty:
            await session.resize(spec.cols, spec.rows)
        return handle

    async def _open_held(
        self,
        ref: WorkspaceRef,
        process_id: str,
        spec: ExecSpec,
        state: ContainerState,
        workdir: str,
        env: Mapping[str, str],
        outbox: Outbox,
    ) -> ProcessHandle | None:
        """A terminal (or a command on pipes) held in the workspace, which outlives this backend (None when the
        image cannot hold one). Its id must not be running anywhere: another backend's process of that id is looked
        up first."""
        if await self.store.held_terminal(process_id) is not None:
            with contextlib.suppress(NotFound):
                if (await self.process(process_id, lambda _: True)).running:
                    raise Conflict(f"Process id {process_id!r} is already running; choose a unique id per exec")
        terminal = HeldTerminal(
            key=secrets.token_hex(16),
            argv=["sh", "-c", spec.command],
            cols=spec.cols,
            rows=spec.rows,
            detached_ttl=self.settings.process_detached_ttl,
            finished_ttl=self.settings.process_finished_ttl,
            tty=spec.tty,
        )
        session = await self.runtime.open_held(state.id, terminal, user=self._user, workdir=workdir, env=env)
        if session is None:
            return None
        started_at = datetime.now(UTC).isoformat(timespec="milliseconds")
        record = HeldTerminalRecord(
            process_id, ref.project_id, ref.workspace_id, terminal.key, spec.command, started_at
        )
        try:
            await self.store.hold_terminal(record)
        except IDEError:
            await session.signal("KILL")
            await session.close()
            raise
        return self.processes.add(process_id, ref, session, spec, outbox, held=record)

    async def process(self, process_id: str, allowed: Callable[[WorkspaceRef], bool]) -> ProcessHandle:
        """A process started here, or a terminal held in its workspace that another backend (or this one before a
        restart) started. `allowed` says whether the caller may touch a workspace; any other is as good as
        unknown (404), and is not attached to."""
        with contextlib.suppress(NotFound):
            handle = self.processes.get(process_id)
            if not allowed(handle.ref):
                raise unknown_process(process_id)
            return handle
        record = await self.store.held_terminal(process_id)
        if record is None or not allowed(WorkspaceRef(record.project_id, record.workspace_id)):
            raise unknown_process(process_id)
        return await self._adopt(record)

    async def _adopt(self, record: HeldTerminalRecord) -> ProcessHandle:
        ref = WorkspaceRef(record.project_id, record.workspace_id)

        async def attach() -> HeldSession:
            state = await self.containers.running(ref, "attach to its terminals")
            return await self.runtime.attach_held(state.id, record.hold_key, user=self._user, since=0)

        try:
            return await self.processes.adopt(record, attach)
        except (NotFound, NotRunning):  # its workspace stopped, or its holder ended long ago
            await self.store.forget_terminal(record.process_id, record.started_at)
            raise unknown_process(record.process_id) from None

    async def processes_of(self, ref: WorkspaceRef) -> list[ProcessItem]:
        """The workspace's processes, running and recently finished: this server's, and its terminals held in the
        workspace that other backends started."""
        known = {item["id"] for item in self.processes.of_workspace(ref)}
        for record in await self.store.held_terminals(ref.project_id, ref.workspace_id):
            if record.process_id not in known:
                with contextlib.suppress(NotFound):
                    await self._adopt(record)
        return self.processes.of_workspace(ref)

    # -- status events ----------------------------------------------------------------------------------------

    async def status_snapshot(self, ref: WorkspaceRef, ports: bool = False) -> StatusMessage:
        """The workspace's status now, as a status event (what a new subscriber gets first)."""
        record = await self.containers.require(ref)
        state = await self.runtime.inspect(record.container_name)
        snapshot = self.status_events.snapshot(ref, state)
        running = ports and state is not None and state.running
        listening = self.ports.last(ref, max_age=3 * PORTS_POLL) if running else None  # a watcher's recent reading
        if listening is not None:
            snapshot["listening"] = listening_items(ref, listening)
        return snapshot

    @contextlib.asynccontextmanager
    async def subscribe(self, ref: WorkspaceRef, ports: bool = False) -> AsyncIterator[Subscription]:
        """The workspace's status events from now on; with `ports`, its listening ports too (polled while anyone
        subscribes with them)."""
        async with self.bus.subscribe(ref, ports=ports) as subscription:
            with self.ports.watch(ref) if ports else contextlib.nullcontext():
                yield subscription

    # -- files ------------------------------------------------------------------------------------------------

    async def sync(self, ref: WorkspaceRef, files: Mapping[str, Any], clean: bool) -> Outcome:
        """Write `files` as one set (after emptying the workspace when `clean`), running or stopped; files given
        with `ifMatch` must be at that version first (else nothing is written, and nothing emptied)."""
        self.idle.touch(ref)
        fileset = parse_files(files)
        record = await self.containers.require(ref)
        async with self._lock(ref):
            state, _, record = await self._ensure_container(ref, record)
            self.status_events.publish(ref, "syncing")
            if clean or fileset.files or fileset.dirs:
                with self._writing(ref, fileset, clean=clean):
                    await self.files.write(state, self.settings.workspace_dir, fileset, clean=clean)
            after = await self.runtime.inspect(state.id)
        self.status_events.publish_state(ref, after)
        versions = {entry.path: version_of(entry.data) for entry in fileset.files}
        return Outcome(self.containers.info(ref, record, after), bool(fileset.files or fileset.dirs), versions)

    def _writing(self, ref: WorkspaceRef, fileset: FileSet, *, clean: bool) -> contextlib.AbstractContextManager[None]:
        """Mark what this write changes as its own, for the workspace's watchers (`origin: "sync"`)."""
        paths = [entry.path for entry in fileset.files] + fileset.ancestors()
        return self.watches.writing(ref, paths, clean=clean, request_id=request_id.current())

    async def watch(self, ref: WorkspaceRef, path: str, deliver: Deliver) -> tuple[Watch, int]:
        """Deliver the changes below `path` ("" = everything) in the running workspace, as they happen; returns the
        watch (to end it with unwatch) and how many folders the workspace's watcher watches. Watching is no use
        of the workspace: it does not keep it from its idle stop."""
        path = folder_path(path)
        state = await self.containers.running(ref, "watch its files")
        if path:
            await self.files.require_folder(state.id, path)
        watch = Watch(ref, path, deliver)
        return watch, await self.watches.add(watch, state.id)

    async def unwatch(self, watch: Watch) -> None:
        await self.watches.remove(watch)

    async def set_theme(self, ref: WorkspaceRef, theme: str) -> None:
        """Set workbench.colorTheme in the user's VS Code settings, keeping the rest; remember it for re-creation."""
        self.idle.touch(ref)
        record = await self.containers.require(ref)
        async with self._lock(ref):
            state, created, _ = await self._ensure_container(ref, record)
            home = self.settings.workspace_home
            existing = (
                None
                if created
                else await self.runtime.read_file(state.id, f"{home}/{SETTINGS_PATH}", MAX_SETTINGS_BYTES)
            )
            await self.files.write(state, home, _settings_file(existing, theme))
            await self.store.update(ref.project_id, ref.workspace_id, theme=theme)

    async def list_files(self, ref: WorkspaceRef, path: str, depth: int, limit: int) -> tuple[list[Entry], bool]:
        self.idle.touch(ref)
        path = "" if path.strip("/.") == "" else normalize_path(path, where="path")
        state = await self.containers.running(ref, "list its files")
        await self._settle(ref, state)
        return await self.files.listing(state, path, depth, limit)

    async def read_file(self, ref: WorkspaceRef, path: str) -> FileContent:
        """One file, from a running or a stopped workspace (whose container is made first when it has none)."""
        self.idle.touch(ref)
        path = normalize_path(path, where="path")
        record = await self.containers.require(ref)
        async with self._lock(ref):
            state, _, _ = await self._ensure_container(ref, record)
            await self.files.finish_staged(state, self.settings.workspace_dir)
        return await self.files.read(state.id, path, MAX_READ_BYTES)

    async def delete_files(self, ref: WorkspaceRef, paths: Sequence[str]) -> list[str]:
        self.idle.touch(ref)
        normalized = [normalize_path(p, where="paths") for p in paths]
        async with self._lock(ref):
            state = await self.containers.running(ref, "delete files")
            await self.files.delete(state, normalized)
        return normalized

    async def _settle(self, ref: WorkspaceRef, state: ContainerState) -> None:
        """Finish what a crashed write left staged in the workspace folder before it is looked at (once per container
        in this process)."""
        if not self.files.settled(state.id, self.settings.workspace_dir):
            async with self._lock(ref):
                await self.files.finish_staged(state, self.settings.workspace_dir)

    async def _settle_running(self) -> None:
        """At start-up: finish what a crashed backend left staged in every running workspace (its folder and home),
        so what runs in them sees whole sets even before the API is asked anything."""
        try:
            running = await self.containers.running_records()
        except IDEError as exc:
            log.warning("cannot look for unfinished writes: %s", exc.message)
            return
        for ref, _, state in running:
            try:
                async with self._lock(ref):
                    for base in (self.settings.workspace_dir, self.settings.workspace_home):
                        await self.files.finish_staged(state, base)
            except IDEError as exc:
                log.warning("cannot finish the unfinished writes of %s: %s", ref, exc.message)


def _settings_file(existing: bytes | None, theme: str) -> FileSet:
    return FileSet((FileEntry(SETTINGS_PATH, set_theme(existing, theme), 0o644),), ())
