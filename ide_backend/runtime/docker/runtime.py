"""DockerRuntime: the runtime seam over one shared aiodocker client. Containers, volumes and events are here; exec,
the agent, files, the network and bounded disks are delegated to the modules beside it."""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence

import aiohttp
from aiodocker.volumes import DockerVolume

from ...errors import Conflict, IDEError, NotFound, NotRunning, RuntimeFailure
from ...metrics import docker_timed
from ..base import (
    ContainerSpec,
    ContainerState,
    CopyResult,
    ExecOutput,
    ExecSession,
    HeldSession,
    HeldTerminal,
    NetworkPolicy,
    PathStat,
    RuntimeEvent,
)
from .agent import AgentChannels
from .archive import ContainerFiles
from .client import DockerClient
from .disk import DISK_LABEL, DISK_ROOT, WorkspaceDisks
from .errors import missing_image, translate_errors, unavailable
from .exec import DockerExecSession, open_docker_exec, run_to_end
from .held import HOLD, HOLD_LABEL, open_relay
from .network import WorkspaceNetworks
from .parsing import container_config, container_state, runtime_event
from .tunnel import TUNNEL_SCRIPT
from .volume_copy import copy_volumes, left_copies

log = logging.getLogger(__name__)

_COPY_TIMEOUT = 3600.0  # seconds a fork's copy may take


class DockerRuntime:
    """Implements ide_backend.runtime.base.Runtime against a Docker engine."""

    def __init__(
        self,
        docker_host: str = "",
        timeout: float = 30.0,
        use_agent: bool = True,
        disk_root: str = DISK_ROOT,
        *,
        own_agents: bool = False,
    ) -> None:
        self._timeout = timeout
        self.use_agent = use_agent
        self._client = DockerClient(docker_host, timeout)
        self._docker = self._client.api
        self.host = self._client.host
        # own_agents: an agent per backend process in each workspace (several processes share the workspaces)
        self._agents = AgentChannels(self._client, self.inspect, own=own_agents)
        self._files = ContainerFiles(self._client, self)
        self._networks = WorkspaceNetworks(self._client)
        self._disks = WorkspaceDisks(self._client, disk_root)

    async def close(self) -> None:
        await self._agents.close()
        await self._client.close()

    def _errors(self, doing: str) -> contextlib.AbstractContextManager[None]:
        return translate_errors(doing, self.host)

    async def ping(self) -> None:
        with self._errors("checking the engine"):
            await self._docker.version()

    @docker_timed("volume_create")
    async def ensure_volume(self, name: str, labels: Mapping[str, str]) -> None:
        """Make the volume when it does not exist. A new one is plain; create() turns it into a bounded disk when
        its spec has a disk limit (disk.py)."""
        if await self.volume_labels(name) is not None:
            return
        with self._errors(f"creating volume {name}"):
            await self._docker.volumes.create({"Name": name, "Labels": dict(labels)})  # type: ignore[no-untyped-call]
        self._disks.made_plain(name, labels)

    @docker_timed("inspect")
    async def inspect(self, name_or_id: str) -> ContainerState | None:
        try:
            with self._errors("inspecting the container"):
                data = await self._docker.containers.container(name_or_id).show()
        except NotFound:
            return None
        return container_state(data)

    @docker_timed("create")
    async def create(self, spec: ContainerSpec) -> ContainerState:
        """Create the container, or return the one that already carries this name (another process won). Its network
        (and the firewall rules around it) is put in place first, by the first create of the process, and so is its
        disk when the spec has a disk limit (made for a new volume; disk.py)."""
        await self._networks.ensure(spec.network, spec.image, spec.labels)
        spec = await self._disks.prepare(spec)
        try:
            await self._reattaching(lambda: self._create(spec))
        except NotFound as exc:
            # Its network may have been removed behind our back since it was put in place: made again, once.
            if not await self._networks.repair(spec.network, spec.image, spec.labels):
                raise missing_image(spec.image) from exc
            try:
                await self._create(spec)
            except NotFound as again:
                raise missing_image(spec.image) from again
        state = await self.inspect(spec.name)
        if state is None:
            raise RuntimeFailure(f"Container {spec.name} vanished right after it was created; retry the start")
        return state

    async def _create(self, spec: ContainerSpec) -> None:
        try:
            with self._errors(f"creating container {spec.name}"):
                await self._docker.containers.create(container_config(spec), name=spec.name)
        except Conflict:
            log.info("container %s already exists; using it", spec.name)

    @docker_timed("start")
    async def start(self, container_id: str) -> None:
        await self._disks.attach_all()

        async def start() -> None:
            with self._errors("starting the container"):
                await self._docker.containers.container(container_id).start()

        await self._reattaching(start)

    async def _reattaching(self, call: Callable[[], Awaitable[None]]) -> None:
        """Run `call`; when the engine failed because a disk was detached (its host rebooted while this process
        ran), attach every disk and run it once more."""
        try:
            await call()
            return
        except IDEError as exc:
            if not self._disks.detached(exc):
                raise
            log.warning("a workspace disk was detached (a reboot of the engine's host?): attaching them again")
        await self._disks.reattach()
        await call()

    @docker_timed("stop")
    async def stop(self, container_id: str, timeout: int) -> None:
        with self._errors("stopping the container"):
            await self._docker.containers.container(container_id).stop(
                t=timeout, timeout=aiohttp.ClientTimeout(total=timeout + self._timeout)
            )

    @docker_timed("remove")
    async def remove(self, container_id: str) -> None:
        with self._errors("removing the container"):
            await self._docker.containers.container(container_id).delete(force=True, v=False)

    @docker_timed("network_move")
    async def move_to_network(self, container_id: str, policy: NetworkPolicy) -> bool:
        """Put a stopped container on the policy's network (one made before it, or under another IDE_NETWORK); True
        when it was moved. network.py has the details."""
        return await self._networks.move(container_id, policy)

    @docker_timed("rename")
    async def rename(self, name: str, new_name: str) -> bool:
        """Rename the container called `name` (never an id: a name the container no longer has fails, which is what
        makes a claim from the warm pool atomic). False when no container has that name; Conflict when `new_name`
        is taken."""
        try:
            with self._errors(f"renaming container {name}"):
                await self._docker.containers.container(name).rename(new_name)
        except NotFound:
            return False
        return True

    async def volume_labels(self, name: str) -> dict[str, str] | None:
        """The volume's labels, or None when there is no such volume."""
        return await self._disks.volume_labels(name)

    @docker_timed("volume_remove")
    async def remove_volume(self, name: str) -> None:
        """Remove the volume (gone already is fine); a bounded one goes with its home and /tmp volumes and its disk
        (the image file, and the loop device it held)."""
        if await self._disks.remove(name):
            return
        with contextlib.suppress(NotFound), self._errors(f"removing volume {name}"):
            await DockerVolume(self._docker, name).delete()  # type: ignore[no-untyped-call]

    @docker_timed("copy_workspace")
    async def copy_workspace(self, source: ContainerSpec, target: ContainerSpec, freeze: str | None) -> CopyResult:
        """Make the target's volumes (a bounded disk when its spec has a limit) and copy the source's files onto
        them, the running source container `freeze` paused meanwhile (volume_copy.py)."""
        await self._disks.attach_all()
        await self.ensure_volume(target.volume, target.labels)
        target = await self._disks.prepare(target)
        labels = await self._disks.volume_labels(source.volume) or {}
        with_home = target.disk_bytes is not None and labels.get(DISK_LABEL) == source.volume
        return await copy_volumes(
            self._client, source, target, with_home=with_home, freeze=freeze, timeout=_COPY_TIMEOUT
        )

    async def resume_left(self, instance: str) -> list[str]:
        """Undo the copies a killed backend of this instance left unfinished: their helpers and the volumes they
        wrote removed, the containers they paused resumed (their names are returned)."""
        resumed, targets = await left_copies(self._client, instance)
        for volume in targets:
            await self.remove_volume(volume)
            log.warning("removed volume %s of a fork that did not finish", volume)
        return resumed

    async def container_names(self, labels: Mapping[str, str]) -> list[str]:
        """The names of every container (running or not) carrying all of `labels`."""
        filters = {"label": [f"{k}={v}" for k, v in labels.items()]}
        with self._errors("listing containers"):
            found = await self._client.get_json("containers/json", {"all": "1", "filters": json.dumps(filters)})
        return [str(item["Names"][0]).lstrip("/") for item in found if item.get("Names")]

    async def agent_ready(self, container_id: str) -> bool:
        """Whether the container's agent answers, connecting its channel now if need be: commands then cost no
        Docker exec, and stat_paths answers for any number of paths in one command instead of a request each."""
        return self.use_agent and await self._agents.get(container_id) is not None

    async def open_exec(
        self,
        container_id: str,
        argv: Sequence[str],
        *,
        user: str,
        workdir: str,
        env: Mapping[str, str],
        tty: bool = False,
        stdin: bool = False,
    ) -> ExecSession:
        """Start argv and return the live session, through the container's agent when it has one (not for
        terminals). Every process it starts carries a marker in its environment, so signals reach the whole tree."""
        marker = uuid.uuid4().hex
        if self.use_agent and not tty:
            channel = await self._agents.get(container_id)
            if channel is not None and channel.alive:
                with self._errors("starting the command through the agent"):
                    return await channel.run(argv, workdir=workdir, env={**env, "IDE_EXEC_ID": marker})
        return await self._docker_exec(
            container_id, argv, user=user, workdir=workdir, env=env, tty=tty, stdin=stdin, marker=marker
        )

    async def open_held(
        self, container_id: str, terminal: HeldTerminal, *, user: str, workdir: str, env: Mapping[str, str]
    ) -> HeldSession | None:
        """Start a terminal (or a command on pipes) held in the workspace (held.py); None when the container's
        image cannot hold one."""
        state = await self.inspect(container_id)
        if state is None or HOLD_LABEL not in state.labels:
            return None
        ttls = (str(max(1, round(terminal.detached_ttl))), str(max(1, round(terminal.finished_ttl))))
        size = (str(terminal.cols), str(terminal.rows)) if terminal.tty else ("0", "0")  # 0 0: pipes, no PTY
        argv = [HOLD, "open", terminal.key, *ttls, *size, "--", *terminal.argv]
        session = await self._docker_exec(container_id, argv, user=user, workdir=workdir, env=env, stdin=True)
        return await open_relay(session, 0)

    async def attach_held(self, container_id: str, key: str, *, user: str, since: int) -> HeldSession:
        """A relay to a held terminal, replaying every frame after `since`; NotFound when it is not there."""
        state = await self.inspect(container_id)
        if state is None or not state.running or HOLD_LABEL not in state.labels:
            raise NotFound("No terminal held there")
        argv = [HOLD, "attach", key]
        session = await self._docker_exec(container_id, argv, user=user, workdir="/", env={}, stdin=True)
        return await open_relay(session, since)

    async def _docker_exec(
        self,
        container_id: str,
        argv: Sequence[str],
        *,
        user: str,
        workdir: str,
        env: Mapping[str, str],
        tty: bool = False,
        stdin: bool = False,
        marker: str | None = None,
    ) -> DockerExecSession:
        return await open_docker_exec(
            self._client,
            container_id,
            argv,
            user=user,
            workdir=workdir,
            env=env,
            tty=tty,
            stdin=stdin,
            marker=marker or uuid.uuid4().hex,
            connect_timeout=self._timeout,
        )

    @docker_timed("exec")
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
    ) -> ExecOutput:
        """Run argv to the end, stdout and stderr apart (each capped); on timeout kill the whole process tree."""
        session = await self.open_exec(container_id, argv, user=user, workdir=workdir, env=env)
        result = await run_to_end(session, timeout=timeout, output_cap=output_cap)
        if result is None:
            # The engine cannot say how it ended: the container went away under it, or the engine did.
            state = await self.inspect(container_id)
            if state is None or not state.running:
                raise NotRunning("The workspace stopped while the command ran; start it and run the command again")
            raise RuntimeFailure("The engine lost track of the command; run it again")
        return result

    async def events(
        self, labels: Mapping[str, str], since: float | None = None, opened: Callable[[], None] | None = None
    ) -> AsyncIterator[RuntimeEvent]:
        """Container events for containers carrying `labels`, as they happen (and those since `since`, a Unix
        time, so a re-subscription misses nothing). `opened` is called once the engine has answered the request,
        before its first event. Ends (raising RuntimeUnavailable) when the engine goes away."""
        filters = {"type": ["container"], "label": [f"{k}={v}" for k, v in labels.items()]}
        params = {"filters": json.dumps(filters)}
        if since is not None:
            params["since"] = f"{since:.9f}"
        with self._errors("following engine events"):
            async with self._client.request(
                "events",
                params=params,
                timeout=aiohttp.ClientTimeout(total=None, sock_read=None, sock_connect=self._timeout),
            ) as response:
                if opened is not None:
                    opened()
                async for line in response.content:
                    if line.strip():
                        yield runtime_event(json.loads(line))
        raise unavailable("following engine events", "the event stream ended", self.host)

    @docker_timed("stat_paths")
    async def stat_paths(self, container_id: str, paths: Sequence[str]) -> dict[str, PathStat | None]:
        """Stat each absolute path (not following a final symlink); None where nothing exists."""
        await self._disks.attach_all()  # the engine mounts a stopped container's volumes to look
        return await self._files.stat_paths(container_id, paths)

    @docker_timed("put_archive")
    async def put_archive(self, container_id: str, dest: str, data: bytes) -> None:
        """Extract one tar at dest; the engine refuses to turn a folder into a file or a link into a folder."""
        await self._disks.attach_all()
        await self._files.put_archive(container_id, dest, data)

    @docker_timed("read_file")
    async def read_file(self, container_id: str, path: str, max_bytes: int) -> bytes | None:
        """The bytes of one regular file, or None when it does not exist or is not a regular file."""
        await self._disks.attach_all()
        return await self._files.read_file(container_id, path, max_bytes)

    @docker_timed("run_on_files")
    async def run_on_files(
        self, container: ContainerState, argv: Sequence[str], *, user: str, root: bool = False, timeout: float = 600
    ) -> ExecOutput:
        """argv on the workspace's files: in the running container as `user`, or as root in a helper container of
        its image with its volumes (when it is stopped, or `root`)."""
        await self._disks.attach_all()
        return await self._files.run_on_files(container, argv, user=user, root=root, timeout=timeout)

    async def reach(self, container: ContainerState, port: int) -> tuple[str, int]:
        """The container's own address: this host reaches its Docker networks (the isolated one's rules let it)."""
        return container.address, port

    async def open_tunnel(self, container_id: str, host: str, port: int) -> ExecSession:
        """One connection to host:port made from inside the container, its bytes as the exec's stdin and stdout
        (tunnel.py): for a process that cannot reach the container's network itself."""
        argv = ["perl", "-e", TUNNEL_SCRIPT, host, str(port)]
        return await self._docker_exec(container_id, argv, user="", workdir="/", env={}, stdin=True)
