"""A workspace's container: its names and labels, the one spec every workspace container is made from, whose a
container is, and keeping the stored record in step with what the engine has.

One container per workspace: its name is deterministic (`ide-<instance>-<project>-<workspace>-<digest>`), so the
engine itself refuses a second one, even across backend processes. A container claimed from the warm pool carries
no workspace labels (the engine cannot relabel), so whose it is comes from its name and the stored record.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import secrets
from collections.abc import Mapping

from ..errors import Conflict, IDEError, NotFound, NotRunning
from ..runtime import ContainerSpec, ContainerState, CopyResult, NetworkPolicy, Runtime
from ..settings import Settings
from ..store import Store, WorkspaceRecord
from .domain import WorkspaceInfo, WorkspaceRef
from .pool import POOL_LABEL, WarmPools
from .templates import Template, Templates

log = logging.getLogger(__name__)

LABEL_PREFIX = "ide-backend"
INSTANCE_LABEL = f"{LABEL_PREFIX}.instance"
PROJECT_LABEL = f"{LABEL_PREFIX}.project"
WORKSPACE_LABEL = f"{LABEL_PREFIX}.workspace"
IDE_LABEL = f"{LABEL_PREFIX}.ide"  # set by IDE images (images/code-server)
FILES_LABEL = f"{LABEL_PREFIX}.files-volume"  # on a claimed workspace's marker volume: the volume with its files


def network_policy(settings: Settings) -> NetworkPolicy:
    """The network every workspace container is on (IDE_NETWORK, IDE_EGRESS_ALLOW)."""
    return NetworkPolicy(settings.network, tuple(sorted(str(cidr) for cidr in settings.egress_allow)))


def container_spec(
    settings: Settings, template: Template, name: str, volume: str, labels: Mapping[str, str], password: str
) -> ContainerSpec:
    """One container config for every workspace container, pooled or not (so a claimed one is on the same network,
    with the same limits): its template decides the image, limits, ports and environment; only the name, volume,
    labels and password differ between two containers of one template."""
    s = settings
    disk_mb = template.disk_mb if template.disk_mb is not None else s.disk_limit_mb
    return ContainerSpec(
        name=name,
        image=template.image,
        volume=volume,
        labels=labels,
        env={**template.env, "PASSWORD": password, "WORKSPACE_DIR": s.workspace_dir},
        user=f"{s.workspace_uid}:{s.workspace_gid}",
        workdir=s.workspace_dir,
        mount_path=s.workspace_dir,
        publish_ports=template.ports,
        memory_bytes=template.memory_mb * 1024 * 1024,
        nano_cpus=int(template.cpus * 1e9),
        pids_limit=template.pids,
        network=network_policy(s),
        disk_bytes=disk_mb * 1024 * 1024 if disk_mb else None,
        home=s.workspace_home,
    )


class ContainerOwners:
    """Which workspace a container belongs to. Containers made for a workspace say so in their labels; a container
    claimed from the warm pool does not, so its name is looked up in the store (and remembered)."""

    def __init__(self, store: Store, pools: WarmPools) -> None:
        self._store = store
        self._pool = pools
        self._claimed: dict[str, WorkspaceRef] = {}

    def remember(self, container_name: str, ref: WorkspaceRef) -> None:
        self._claimed[container_name] = ref

    async def claimed_by(self, container_name: str) -> WorkspaceRef | None:
        """The workspace that claimed this container, or None (an unclaimed pool container, or not ours)."""
        if not container_name or self._pool.owns(container_name):
            return None
        ref = self._claimed.get(container_name)
        if ref is None:
            try:
                record = await self._store.by_container_name(container_name)
            except IDEError as exc:
                log.warning("cannot tell whose container %s is: %s", container_name, exc.message)
                return None
            if record is None:
                return None
            ref = self._claimed[container_name] = WorkspaceRef(record.project_id, record.workspace_id)
        return ref


class Containers:
    """Finds, creates, claims and adopts workspace containers, and keeps their records true."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        runtime: Runtime,
        templates: Templates,
        pools: WarmPools,
        owners: ContainerOwners,
    ) -> None:
        self.settings = settings
        self.store = store
        self.runtime = runtime
        self.templates = templates
        self.pools = pools
        self.owners = owners
        self._names: dict[WorkspaceRef, str] = {}
        self._network = network_policy(settings)
        self._fresh: set[str] = set()  # containers create() just made: already on the right network
        if settings.egress_allow and settings.network != "isolated":
            log.warning("IDE_EGRESS_ALLOW is ignored: it takes IDE_NETWORK=isolated (it is %s)", settings.network)

    # -- naming ---------------------------------------------------------------------------------------------

    def labels(self, ref: WorkspaceRef) -> dict[str, str]:
        return {
            INSTANCE_LABEL: self.settings.instance,
            PROJECT_LABEL: ref.project_id,
            WORKSPACE_LABEL: ref.workspace_id,
        }

    def names(self, ref: WorkspaceRef) -> tuple[str, str]:
        """Container and volume names: readable, and unique per (instance, project, workspace) via a digest."""
        key = f"{self.settings.instance}\0{ref.project_id}\0{ref.workspace_id}".encode()
        digest = hashlib.sha256(key).hexdigest()[:10]
        base = f"ide-{self.settings.instance}-{ref.project_id}-{ref.workspace_id}-{digest}"
        return base, f"{base}-data"

    def template_of(self, record: WorkspaceRecord) -> Template:
        """The workspace's template; one no longer defined (the file changed) keeps its image on the default's
        limits."""
        if record.template in self.templates.names():
            return self.templates.get(record.template)
        return dataclasses.replace(self.templates.get(None), name=record.template or "", image=record.image)

    def spec(self, ref: WorkspaceRef, record: WorkspaceRecord) -> ContainerSpec:
        return container_spec(
            self.settings,
            self.template_of(record),
            record.container_name,
            record.volume_name,
            self.labels(ref),
            record.password,
        )

    # -- records ----------------------------------------------------------------------------------------------

    async def require(self, ref: WorkspaceRef) -> WorkspaceRecord:
        """The stored record, or 404 for a workspace never started."""
        record = await self.store.get(ref.project_id, ref.workspace_id)
        if record is None:
            raise NotFound(f"Workspace {ref} does not exist; create it with /api/v1/containers/start")
        return record

    async def record(self, ref: WorkspaceRef, template: Template) -> WorkspaceRecord:
        """The stored record, made now from `template` for a new workspace (first writer wins)."""
        record = await self.store.get(ref.project_id, ref.workspace_id)
        if record is not None:
            return record
        return await self.store.create(self.new_record(ref, template.name, template.image))

    def new_record(self, ref: WorkspaceRef, template: str, image: str, theme: str | None = None) -> WorkspaceRecord:
        """The record of a new workspace (not stored yet): its names, a new IDE password."""
        container_name, volume_name = self.names(ref)
        return WorkspaceRecord.new(
            project_id=ref.project_id,
            workspace_id=ref.workspace_id,
            container_name=container_name,
            container_id=None,
            volume_name=volume_name,
            image=image,
            password=secrets.token_urlsafe(18),
            theme=theme,
            template=template,
        )

    async def switch_template(
        self, ref: WorkspaceRef, record: WorkspaceRecord, template: Template
    ) -> tuple[WorkspaceRecord, bool]:
        """Make the workspace use another template: its container is removed (stopped first by the engine), its
        volume and files stay, and the next container is made from the new template. Returns the record as now
        stored, and whether a container was removed."""
        state = await self.runtime.inspect(record.container_name)
        if state is not None:
            await self.runtime.remove(state.id)
            log.info("removed the container of %s to re-create it from template %s", ref, template.name)
        await self.store.update(
            ref.project_id, ref.workspace_id, template=template.name, image=template.image, container_id=None
        )
        return dataclasses.replace(record, template=template.name, image=template.image, container_id=None), (
            state is not None
        )

    async def copy(
        self, source: WorkspaceRef, record: WorkspaceRecord, target: WorkspaceRef
    ) -> tuple[WorkspaceRecord, CopyResult]:
        """Record a new workspace `target` made from the source's record (template, image, theme) with a copy of its
        files, the running source paused for the copy (runtime.copy_workspace). Returns the new record and how the
        copy went. On any failure nothing of the new workspace is left. Call with both workspaces' locks held."""
        if await self.store.get(target.project_id, target.workspace_id) is not None:
            raise Conflict(f"Workspace {target} already exists; fork to a new id, or delete it first")
        fork = self.new_record(target, record.template or "", record.image, record.theme)
        if await self.runtime.volume_labels(fork.volume_name) is not None:
            raise Conflict(
                f"The engine still holds volume {fork.volume_name} of an earlier workspace {target}; "
                "remove it (docker volume rm) or fork to a new id"
            )
        files_at = await self.files_volume(record)
        state = await self.runtime.inspect(record.container_name)
        copied = CopyResult(seconds=0.0, paused_seconds=0.0)
        try:
            if files_at is not None:
                copied = await self.runtime.copy_workspace(
                    self.spec(source, dataclasses.replace(record, volume_name=files_at)),
                    self.spec(target, fork),
                    freeze=state.id if state is not None and state.running else None,
                )
            stored = await self.store.create(fork)
        except BaseException:
            with contextlib.suppress(IDEError):
                await asyncio.shield(self.runtime.remove_volume(fork.volume_name))
            raise
        if stored is not fork:  # another backend process made the workspace meanwhile
            raise Conflict(f"Workspace {target} was made meanwhile; fork to a new id")
        return fork, copied

    async def container_name(self, ref: WorkspaceRef) -> str:
        """The workspace's container name. Records are never deleted and a name never changes: once read, it is
        good forever, and the hot paths (exec, terminals, file browsing) skip the database after the first call."""
        name = self._names.get(ref)
        if name is None:
            name = self._names[ref] = (await self.require(ref)).container_name
        return name

    async def states(self, records: list[WorkspaceRecord]) -> list[ContainerState | None]:
        """The engine's state of each record's container (None: it has none), at most 16 inspects at a time."""
        limit = asyncio.Semaphore(16)

        async def inspect(record: WorkspaceRecord) -> ContainerState | None:
            async with limit:
                return await self.runtime.inspect(record.container_name)

        return list(await asyncio.gather(*(inspect(r) for r in records)))

    async def running_records(self) -> list[tuple[WorkspaceRef, WorkspaceRecord, ContainerState]]:
        """Every workspace whose container runs now, with its record and its container's state."""
        records = await self.store.all()
        return [
            (WorkspaceRef(r.project_id, r.workspace_id), r, state)
            for r, state in zip(records, await self.states(records), strict=True)
            if state is not None and state.running
        ]

    def forget(self, ref: WorkspaceRef) -> None:
        """The workspace was deleted: its record is gone, so its name may no longer be taken from memory."""
        self._names.pop(ref, None)

    # -- containers -------------------------------------------------------------------------------------------

    async def running(self, ref: WorkspaceRef, doing: str) -> ContainerState:
        """The workspace's container, which must be running (409 saying what it takes otherwise)."""
        state = await self.runtime.inspect(await self.container_name(ref))
        if state is None or not state.running:
            raise NotRunning(f"Workspace {ref} is not running; start it to {doing}")
        return state

    async def create(self, ref: WorkspaceRef, record: WorkspaceRecord, *, claim: bool) -> ContainerState:
        """A container for a workspace the engine has none for: claimed from the warm pool (started; only when
        `claim`, and only for a workspace with no files yet) or created (not started) on the workspace's volume."""
        files_at = await self.files_volume(record)
        if files_at is None and claim and (state := await self._claim(record)) is not None:
            return state
        record = dataclasses.replace(record, volume_name=files_at or record.volume_name)
        await self.runtime.ensure_volume(record.volume_name, self.labels(ref))
        state = await self.runtime.create(self.spec(ref, record))
        self._fresh.add(state.id)
        log.info("created container %s for %s", state.name, ref)
        return state

    async def adopt(self, ref: WorkspaceRef, record: WorkspaceRecord, state: ContainerState) -> WorkspaceRecord:
        """Check the container is this workspace's and make the record match it: the container is the truth. A
        claimed pool container brings its own volume and password, and so does one adopted from an earlier run or a
        lost database (code-server inside it already uses that password). Returns the record as now stored."""
        self._check_owner(ref, record, state)
        if state.id in self._fresh:
            self._fresh.discard(state.id)
        elif not state.running and await self.runtime.move_to_network(state.id, self._network):
            # Made by an earlier version (on the default bridge) or under another IDE_NETWORK: moved before it starts.
            log.info("moved the container of %s to the %s network", ref, self._network.mode)
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
        return record

    async def files_volume(self, record: WorkspaceRecord) -> str | None:
        """Which volume holds the workspace's files (its own, or the claimed one its marker names); None when it
        has none yet."""
        labels = await self.runtime.volume_labels(record.volume_name)
        if labels is None:
            return None
        return labels.get(FILES_LABEL) or record.volume_name

    async def _claim(self, record: WorkspaceRecord) -> ContainerState | None:
        """A container of the workspace's template's pool renamed to this workspace's name; None when that pool
        cannot serve it."""
        template = self.template_of(record)
        if template.image != record.image or not await self.pools.claim(template.name, record.container_name):
            return None
        return await self.runtime.inspect(record.container_name)

    def _check_owner(self, ref: WorkspaceRef, record: WorkspaceRecord, state: ContainerState) -> None:
        """The container under this workspace's name must be ours: made for it (labels), or claimed from our pool
        (a pool container carries no workspace labels; only a claim gives it this digest-bearing name)."""
        labels = state.labels
        if labels.get(POOL_LABEL) and labels.get(INSTANCE_LABEL) == self.settings.instance:
            self.owners.remember(state.name, ref)
            return
        if (labels.get(PROJECT_LABEL), labels.get(WORKSPACE_LABEL)) != (ref.project_id, ref.workspace_id):
            raise Conflict(f"A container named {record.container_name} exists but is not this workspace's")

    def info(self, ref: WorkspaceRef, record: WorkspaceRecord, state: ContainerState | None) -> WorkspaceInfo:
        return WorkspaceInfo(
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
            stop_reason=None if state and state.running else record.stop_reason,
            template=record.template or self.templates.default,
        )

    async def ide_address(self, ref: WorkspaceRef, state: ContainerState) -> tuple[str, int]:
        """Where the running workspace's code-server answers: its port published on this host's 127.0.0.1, or
        (setting ide_upstream=container) the container's own address on its Docker network as the runtime reaches
        it, which needs no published port."""
        s = self.settings
        if s.network == "none":
            raise Conflict(f"Workspace {ref} has no network (IDE_NETWORK=none), so its IDE cannot be reached")
        if not state.labels.get(IDE_LABEL):
            raise Conflict(
                f"Workspace {ref} has no IDE: start it with an IDE image "
                f"(IDE_WORKSPACE_IMAGE=ide-backend/code-server:latest)"
            )
        if s.ide_upstream == "container":
            if not state.address:
                raise Conflict(f"Workspace {ref} has no address on a Docker network")
            return await self.runtime.reach(state, s.code_server_port)
        port = state.ports.get(str(s.code_server_port))
        if port is None:
            raise Conflict(
                f"Workspace {ref} does not publish code-server's port {s.code_server_port} (IDE_PUBLISH_PORTS)"
            )
        return "127.0.0.1", port
