"""The Docker runtime over one shared aiodocker client. The only module that speaks Docker, and the one place
where Docker's errors become ours."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import re
import stat
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import aiodocker
import aiohttp
from aiodocker.exceptions import DockerError
from aiodocker.volumes import DockerVolume

from ...errors import BadRequest, Conflict, IDEError, NotFound, NotRunning, RuntimeFailure, RuntimeUnavailable
from ..base import STDERR, STDOUT, ContainerSpec, ContainerState, ExecOutput, ExecSession, PathStat, RuntimeEvent
from .agent import AgentChannel
from .errors import translate_errors, unavailable
from .exec import DockerExecSession

log = logging.getLogger(__name__)

# Go's os.FileMode type bits, as Docker reports them in a path stat.
_MODE_DIR = 1 << 31
_MODE_SYMLINK = 1 << 27
# The capabilities a workspace keeps: Docker's defaults minus raw sockets, device nodes, chroot and the like.
_CAPS = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "NET_BIND_SERVICE"]
# Empties the folder given as $1, making read-only folders writable first (links are not followed).
_EMPTY_DIR = 'chmod -R u+w -- "$1" 2>/dev/null; find "$1" -mindepth 1 -delete'
_STAT_CONCURRENCY = 16
AGENT_LABEL = "ide-backend.agent"
_ARGV_BUDGET = 96 * 1024  # bytes of paths per `stat` command, well under the kernel's argument limit


class DockerRuntime:
    """Implements ide_backend.runtime.base.Runtime against a Docker engine."""

    def __init__(self, docker_host: str = "", timeout: float = 30.0, use_agent: bool = True) -> None:
        self._timeout = timeout
        self.use_agent = use_agent
        self._agents: dict[str, AgentChannel | None] = {}
        self._agent_locks: dict[str, asyncio.Lock] = {}
        self._agent_retry_at: dict[str, float] = {}
        host = docker_host or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        # Every running exec and attach holds a connection: the pool must not be the limit (aiohttp's default is
        # 100), and waiting for a pooled connection is not the engine failing to answer, so only the socket
        # connect itself is timed, never the wait for the pool.
        connector = aiohttp.UnixConnector(host.removeprefix("unix://"), limit=0) if host.startswith("unix://") else None
        self._docker = aiodocker.Docker(
            url="unix://localhost" if connector is not None else host,  # aiodocker's name for "the socket I was given"
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=timeout, sock_connect=min(timeout, 10.0)),
        )
        self._connector = connector
        self.host = host

    async def close(self) -> None:
        for channel in self._agents.values():
            if channel is not None:
                await channel.close()
        await self._docker.close()
        if self._connector is not None:
            await self._connector.close()

    async def _agent(self, container_id: str) -> AgentChannel | None:
        """The running container's agent channel: connected on first use, again after the container restarted;
        None for stopped containers and images without the agent (they use Docker exec)."""
        channel = self._agents.get(container_id)
        if channel is not None and channel.alive:
            return channel
        if container_id in self._agents and channel is None:
            return None
        if time.monotonic() < self._agent_retry_at.get(container_id, 0.0):
            return None
        lock = self._agent_locks.setdefault(container_id, asyncio.Lock())
        async with lock:  # one channel per container: two attach streams would interleave on its stdin
            channel = self._agents.get(container_id)
            if channel is not None and channel.alive:
                return channel
            state = await self.inspect(container_id)
            if state is None or not state.running:
                return None
            if AGENT_LABEL not in state.labels:
                self._agents[container_id] = None
                return None
            channel = await AgentChannel.connect(self._docker, self.host, container_id)
            if channel is None:
                log.warning("container %s should run the agent but does not answer; using Docker exec", container_id)
                self._agent_retry_at[container_id] = time.monotonic() + 60.0
                return None
            self._agents[container_id] = channel
            return channel

    def _errors(self, doing: str) -> contextlib.AbstractContextManager[None]:
        return translate_errors(doing, self.host)

    async def ping(self) -> None:
        with self._errors("checking the engine"):
            await self._docker.version()

    async def ensure_volume(self, name: str, labels: Mapping[str, str]) -> None:
        with self._errors(f"creating volume {name}"):
            await self._docker.volumes.create({"Name": name, "Labels": dict(labels)})  # type: ignore[no-untyped-call]

    async def inspect(self, name_or_id: str) -> ContainerState | None:
        try:
            with self._errors("inspecting the container"):
                data = await self._docker.containers.container(name_or_id).show()
        except NotFound:
            return None
        return _state(data)

    async def create(self, spec: ContainerSpec) -> ContainerState:
        """Create the container, or return the one that already carries this name (another process won)."""
        config = _container_config(spec)
        try:
            with self._errors(f"creating container {spec.name}"):
                await self._docker.containers.create(config, name=spec.name)
        except Conflict:
            log.info("container %s already exists; using it", spec.name)
        except NotFound as exc:
            raise RuntimeUnavailable(
                f"The workspace image {spec.image!r} is not on this Docker engine; build it with "
                "scripts/build-images.sh (or set IDE_WORKSPACE_IMAGE to an image that exists)",
                hint="build the workspace image",
            ) from exc
        state = await self.inspect(spec.name)
        if state is None:
            raise RuntimeFailure(f"Container {spec.name} vanished right after it was created; retry the start")
        return state

    async def start(self, container_id: str) -> None:
        with self._errors("starting the container"):
            await self._docker.containers.container(container_id).start()

    async def stop(self, container_id: str, timeout: int) -> None:
        with self._errors("stopping the container"):
            await self._docker.containers.container(container_id).stop(
                t=timeout, timeout=aiohttp.ClientTimeout(total=timeout + self._timeout)
            )

    async def remove(self, container_id: str) -> None:
        with self._errors("removing the container"):
            await self._docker.containers.container(container_id).delete(force=True, v=False)

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
        try:
            with self._errors(f"inspecting volume {name}"):
                data = await self._docker._query_json(f"volumes/{name}")
        except NotFound:
            return None
        return dict(data.get("Labels") or {})

    async def remove_volume(self, name: str) -> None:
        with contextlib.suppress(NotFound), self._errors(f"removing volume {name}"):
            await DockerVolume(self._docker, name).delete()  # type: ignore[no-untyped-call]

    async def container_names(self, labels: Mapping[str, str]) -> list[str]:
        """The names of every container (running or not) carrying all of `labels`."""
        filters = {"label": [f"{k}={v}" for k, v in labels.items()]}
        with self._errors("listing containers"):
            found = await self._docker._query_json(
                "containers/json", params={"all": "1", "filters": json.dumps(filters)}
            )
        return [str(item["Names"][0]).lstrip("/") for item in found if item.get("Names")]

    async def agent_ready(self, container_id: str) -> bool:
        """Whether the container's agent answers, connecting its channel now if need be: commands then cost no
        Docker exec, and stat_paths answers for any number of paths in one command instead of a request each."""
        return self.use_agent and await self._agent(container_id) is not None

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
            channel = await self._agent(container_id)
            if channel is not None and channel.alive:
                with self._errors("starting the command through the agent"):
                    return await channel.run(argv, workdir=workdir, env={**env, "IDE_EXEC_ID": marker})
        container = self._docker.containers.container(container_id)
        with self._errors("creating the exec"):
            execution = await container.exec(
                list(argv),
                stdout=True,
                stderr=True,
                stdin=stdin,
                tty=tty,
                user=user,
                workdir=workdir,
                environment={**env, "IDE_EXEC_ID": marker},
            )
        stream = execution.start(detach=False, timeout=aiohttp.ClientTimeout(sock_connect=self._timeout))
        with self._errors("starting the exec"):
            await stream.__aenter__()
        return DockerExecSession(self._docker, self.host, container_id, execution, stream, marker, user, tty)

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
        buffers = {STDOUT: bytearray(), STDERR: bytearray()}
        truncated = timed_out = False
        try:
            try:
                async with asyncio.timeout(timeout):
                    while (chunk := await session.read()) is not None:
                        buf = buffers[chunk[0]]
                        room = output_cap - len(buf)
                        if room > 0:
                            buf += chunk[1][:room]
                        if len(chunk[1]) > room:
                            truncated = True
            except TimeoutError:
                timed_out = True
                await session.signal("KILL")
            exit_code = await session.exit_code(killed=timed_out)
        finally:
            await session.close()
        out, err = bytes(buffers[STDOUT]), bytes(buffers[STDERR])
        if exit_code == 126 and out.startswith(b"OCI runtime exec failed"):  # Docker exec's way of saying it
            # The engine could not start the process at all (a missing folder, most often): not the command's fault.
            detail = out.decode("utf-8", "replace").strip()
            raise BadRequest(
                f"The command could not be started: {detail}", hint="check cwd and that the program exists"
            )
        if exit_code is None:
            # The engine cannot say how it ended: the container went away under it, or the engine did.
            state = await self.inspect(container_id)
            if state is None or not state.running:
                raise NotRunning("The workspace stopped while the command ran; start it and run the command again")
            raise RuntimeFailure("The engine lost track of the command; run it again")
        return ExecOutput(out, err, exit_code, timed_out, truncated)

    async def events(self, labels: Mapping[str, str], since: float | None = None) -> AsyncIterator[RuntimeEvent]:
        """Container events for containers carrying `labels`, as they happen (and those since `since`, a Unix
        time, so a re-subscription misses nothing). Ends (raising RuntimeUnavailable) when the engine goes away."""
        filters = {"type": ["container"], "label": [f"{k}={v}" for k, v in labels.items()]}
        params = {"filters": json.dumps(filters)}
        if since is not None:
            params["since"] = f"{since:.9f}"
        with self._errors("following engine events"):
            async with self._docker._query(
                "events",
                params=params,
                timeout=aiohttp.ClientTimeout(total=None, sock_read=None, sock_connect=self._timeout),
            ) as response:
                async for line in response.content:
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    attrs = event.get("Actor", {}).get("Attributes", {})
                    code = attrs.get("exitCode")
                    yield RuntimeEvent(
                        name=attrs.get("name", ""),
                        project_id=attrs.get("ide-backend.project", ""),
                        workspace_id=attrs.get("ide-backend.workspace", ""),
                        action=str(event.get("Action", "")).split(":", 1)[0],
                        container_id=event.get("Actor", {}).get("ID", ""),
                        exit_code=int(code) if code is not None and str(code).lstrip("-").isdigit() else None,
                        time=int(event.get("timeNano", 0)) / 1e9 or float(event.get("time", 0)),
                    )
        raise unavailable("following engine events", "the event stream ended", self.host)

    async def stat_paths(self, container_id: str, paths: Sequence[str]) -> dict[str, PathStat | None]:
        """Stat each absolute path (not following a final symlink); None where nothing exists. A running
        container with the agent answers for all paths in one `stat` command; otherwise one archive stat each
        (which works on stopped containers too)."""
        if self.use_agent and paths and await self._agent(container_id) is not None:
            with contextlib.suppress(IDEError):
                return await self._stat_in_container(container_id, paths)
        limit = asyncio.Semaphore(_STAT_CONCURRENCY)

        async def one(path: str) -> tuple[str, PathStat | None]:
            async with limit:
                return path, await self._stat(container_id, path)

        return dict(await asyncio.gather(*(one(p) for p in paths)))

    async def _stat_in_container(self, container_id: str, paths: Sequence[str]) -> dict[str, PathStat | None]:
        found: dict[str, PathStat | None] = dict.fromkeys(paths)
        batch: list[str] = []
        size = 0
        for path in [*paths, None]:
            if path is not None and size + len(path) < _ARGV_BUDGET:
                batch.append(path)
                size += len(path) + 1
                continue
            argv = ["stat", "--printf", "%f\\t%a\\t%Y\\t%n\\0", "--", *batch]
            result = await self.exec(
                container_id, argv, user="", workdir="/", env={}, timeout=60, output_cap=64 * 1024 * 1024
            )
            for record in result.stdout.split(b"\0"):
                fields = record.split(b"\t", 3)
                if len(fields) != 4:
                    continue
                raw_mode, perm, mtime, name = fields
                mode = int(raw_mode, 16)
                found[name.decode("utf-8", "surrogateescape")] = PathStat(
                    mode=int(perm, 8),
                    mtime=float(mtime),
                    is_dir=stat.S_ISDIR(mode),
                    is_symlink=stat.S_ISLNK(mode),
                    link_target="",
                )
            batch, size = ([path], len(path) + 1) if path is not None else ([], 0)
        return found

    async def _stat(self, container_id: str, path: str) -> PathStat | None:
        # Docker answers HEAD with an empty body, which aiodocker's error path cannot parse: ask the session.
        url = self._docker._canonicalize_url(f"containers/{container_id}/archive")
        with self._errors(f"looking at {path}"):
            async with self._docker.session.head(url, params={"path": path}) as response:
                if response.status == 404:
                    return None
                if response.status >= 400:
                    raise DockerError(response.status, f"stat of {path} failed")
                header = response.headers.get("X-Docker-Container-Path-Stat", "")
        stat = json.loads(base64.b64decode(header))
        mode = int(stat["mode"])
        return PathStat(
            mode=mode & 0o7777,
            mtime=_parse_time(stat.get("mtime")) or 0.0,
            is_dir=bool(mode & _MODE_DIR),
            is_symlink=bool(mode & _MODE_SYMLINK),
            link_target=stat.get("linkTarget", ""),
        )

    async def put_archive(self, container_id: str, dest: str, data: bytes) -> None:
        """Extract one tar at dest; the engine refuses to turn a folder into a file or a link into a folder."""
        with self._errors("writing files"):
            async with self._docker._query(
                f"containers/{container_id}/archive",
                method="PUT",
                data=data,
                headers={"content-type": "application/x-tar"},
                params={"path": dest, "noOverwriteDirNonDir": "true"},
            ):
                pass

    async def read_file(self, container_id: str, path: str, max_bytes: int) -> bytes | None:
        """The bytes of one regular file, or None when it does not exist or is not a regular file."""
        try:
            with self._errors(f"reading {path}"):
                archive = await self._docker.containers.container(container_id).get_archive(path)
        except NotFound:
            return None
        with archive:
            member = archive.next()
            if member is None or not member.isreg():
                return None
            if member.size > max_bytes:
                raise Conflict(f"{path} is larger than {max_bytes} bytes; refusing to load it")
            handle = archive.extractfile(member)
            return handle.read() if handle else None

    async def empty_dir(self, container: ContainerState, spec: ContainerSpec) -> None:
        """Delete everything below the workspace folder, in the container if it runs, else in a helper."""
        argv = ["sh", "-c", _EMPTY_DIR, "ide-empty", spec.mount_path]
        if container.running:
            # As the workspace user: a root exec in a container whose user is not root has no capabilities.
            result = await self.exec(
                container.id, argv, user=spec.user, workdir="/", env={}, timeout=300, output_cap=64 * 1024
            )
            code, detail = result.exit_code, result.stderr.decode("utf-8", "replace")
        else:
            code, detail = await self._run_helper(spec, argv)
        if code != 0:
            raise RuntimeFailure(f"Emptying the workspace failed (exit {code}): {detail.strip()[:500]}")

    async def _run_helper(self, spec: ContainerSpec, argv: list[str]) -> tuple[int, str]:
        """Run argv in a short-lived container of the workspace image with the volume mounted, no network."""
        config = _container_config(spec)
        config.update(Cmd=argv, User="0:0", Env=[], ExposedPorts={}, Labels={**spec.labels, "ide-backend.helper": "1"})
        config.update(OpenStdin=False)
        config["HostConfig"].update(NetworkMode="none", PortBindings={}, LogConfig={"Type": "json-file", "Config": {}})
        with self._errors("running a helper container"):
            helper = await self._docker.containers.create(config, name=f"{spec.name}-helper-{uuid.uuid4().hex[:8]}")
            try:
                await helper.start()
                result = await helper.wait(timeout=aiohttp.ClientTimeout(total=300))
                logs = await helper.log(stdout=True, stderr=True)
            finally:
                await helper.delete(force=True)
        return int(result.get("StatusCode", -1)), "".join(logs)


def _container_config(spec: ContainerSpec) -> dict[str, Any]:
    ports: dict[str, dict[str, str]] = {f"{p}/tcp": {} for p in spec.publish_ports}
    return {
        "Image": spec.image,
        "Hostname": "workspace",
        "User": spec.user,
        "WorkingDir": spec.workdir,
        "Env": [f"{k}={v}" for k, v in spec.env.items()],
        "Labels": dict(spec.labels),
        "ExposedPorts": ports,
        # The agent (the image's main process) reads its frames from the container's stdin.
        "OpenStdin": True,
        "StdinOnce": False,
        "HostConfig": {
            "Init": True,
            "Mounts": [{"Type": "volume", "Source": spec.volume, "Target": spec.mount_path}],
            "Memory": spec.memory_bytes,
            "MemorySwap": spec.memory_bytes,
            "NanoCpus": spec.nano_cpus,
            "PidsLimit": spec.pids_limit,
            "SecurityOpt": ["no-new-privileges:true"],
            "CapDrop": ["ALL"],
            "CapAdd": list(_CAPS),
            # Published on loopback only: the backend proxies, nothing is exposed on a public interface.
            "PortBindings": {key: [{"HostIp": "127.0.0.1", "HostPort": ""}] for key in ports},
            "RestartPolicy": {"Name": "no"},
            # The main process is the exec agent: its stdout carries every command's output, not worth a log file.
            "LogConfig": {"Type": "none", "Config": {}},
        },
    }


def _parse_time(value: Any) -> float | None:
    """Seconds since the epoch from Docker's RFC 3339 time (nanoseconds cut to what Python parses)."""
    if not isinstance(value, str) or not value or value.startswith("0001-"):
        return None
    text = re.sub(r"(\.\d{6})\d+", r"\1", value).replace("Z", "+00:00")
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def _iso(value: Any) -> str | None:
    """Docker's timestamp, or None for its zero time."""
    if not value or not isinstance(value, str) or value.startswith("0001-"):
        return None
    return value


def _state(data: Mapping[str, Any]) -> ContainerState:
    state = data.get("State", {})
    ports: dict[str, int] = {}
    for key, bindings in (data.get("NetworkSettings", {}).get("Ports") or {}).items():
        for binding in bindings or []:
            if binding.get("HostPort"):
                ports[key.split("/")[0]] = int(binding["HostPort"])
                break
    running = bool(state.get("Running"))
    networks = data.get("NetworkSettings", {}).get("Networks") or {}
    return ContainerState(
        id=data["Id"],
        name=data.get("Name", "").lstrip("/"),
        image=data.get("Config", {}).get("Image", ""),
        status=state.get("Status", "unknown"),
        running=running,
        created_at=_iso(data.get("Created")),
        started_at=_iso(state.get("StartedAt")),
        finished_at=_iso(state.get("FinishedAt")),
        exit_code=None if running else state.get("ExitCode"),
        oom_killed=bool(state.get("OOMKilled")),
        ports=ports,
        labels=dict(data.get("Config", {}).get("Labels") or {}),
        env=dict(item.split("=", 1) for item in data.get("Config", {}).get("Env") or [] if "=" in item),
        volumes={m["Destination"]: m["Name"] for m in data.get("Mounts") or [] if m.get("Type") == "volume"},
        address=next((n["IPAddress"] for n in networks.values() if n.get("IPAddress")), ""),
    )
