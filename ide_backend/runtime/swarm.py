"""SwarmRuntime (IDE_RUNTIME=swarm): workspaces placed on the nodes of a Docker Swarm by Swarm's own scheduler.

Each workspace is a Swarm service of one replica, named as its container would be; its volume is created on the node
its task first lands on, and from then on the service is pinned there (a placement constraint), since that is where
its files are. Stopping a workspace stops its task's container on its node, where it stays as a stopped container
does on one engine (its files, exit code and finish time there to read), and marks the service stopped on purpose;
it is not scaled to 0, since Swarm then removes the container of the slot it drops at once (measured). Starting it
forces a new task (scaled to 1 the first time), on the same node: a new container each start, so what a workspace
keeps outside its volume (its home folder) does not outlive a stop. Restarts are ours to decide (restart condition
`none`), as on a single engine.

Swarm schedules, but does not proxy exec, archives or attach streams across nodes: everything that touches a
container goes to the engine of the node it runs on, reached directly (each node's engine listens on TCP,
IDE_SWARM_NODE_PORT, on the cluster's private network) through a DockerRuntime per node. That keeps exec, the agent,
terminals and files exactly the single-engine code, at one network hop; the alternative (the agent over an overlay
network) would need a listening port in every workspace and an authentication of its own.

The engine events of every node are merged into one stream, and container names are reported as the service's
(`name.1.taskid` -> `name`), so the rest of the backend sees one container per workspace. A node that goes down or
is drained is reported for each workspace whose task was there, as an event `node_down` or `node_drained`.

Not here (refused with a clear error where they would be asked for): warm pools (IDE_POOL_SIZE=0), workspace
networks other than the engine's default (IDE_NETWORK=shared), bounded disks (IDE_DISK_LIMIT_MB=0) and forks.

A node's bridge is not reachable from the backend's host, so the /ide/ and /preview/ proxies reach a workspace's
ports through a forward on this host's loopback whose connections are relayed by an exec in the container
(docker/tunnel.py, `reach`): the same path as exec, needing nothing more of the network than the nodes' engines.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

from aiodocker.exceptions import DockerError

from ..errors import Conflict, IDEError, NotFound, RuntimeFailure
from .base import (
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
from .docker import DockerRuntime
from .docker.client import DockerClient
from .docker.errors import translate_errors, unavailable
from .docker.parsing import CAPS, docker_time
from .docker.tunnel import PortForwards

log = logging.getLogger(__name__)

NODE_PORT = 2375
START_TIMEOUT = 120.0  # seconds for a scaled-up task to run (its image may be loading on a fresh node)
NODE_POLL = 2.0  # seconds between two readings of the nodes' states
RESERVE_FRACTION = 8  # a workspace reserves 1/8 of its limits: Swarm's scheduler spreads by reservations
STOPPED_LABEL = "ide-backend.stopped"  # on a service whose workspace was stopped on purpose (its task ended)


def _task_container(task: Mapping[str, Any]) -> str:
    """The id of a task's container ('' while it has none)."""
    return str(task.get("Status", {}).get("ContainerStatus", {}).get("ContainerID") or "")


def _created(task: Mapping[str, Any]) -> datetime.datetime:
    """When the task was made. Not its version: every change of a task's state (an older one's shutdown after the
    next started, say) bumps that, so the newest version may be an old task."""
    stamp = str(task.get("CreatedAt") or "")
    try:  # nanoseconds, which fromisoformat does not take: microseconds order them as well
        return datetime.datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", stamp))
    except ValueError:
        return datetime.datetime.min.replace(tzinfo=datetime.UTC)


def _service_name(container_name: str) -> str:
    """A task container's name (`service.slot.task`) as its service's."""
    return container_name.split(".", 1)[0]


class SwarmRuntime:
    """Implements ide_backend.runtime.base.Runtime on a Docker Swarm: lifecycle through the manager, everything
    inside a container through the engine of its node."""

    def __init__(
        self,
        manager_host: str,
        timeout: float = 30.0,
        node_port: int = NODE_PORT,
        use_agent: bool = True,
        *,
        own_agents: bool = False,
    ):
        self._timeout = timeout
        self._node_port = node_port
        self.use_agent = use_agent
        self._own_agents = own_agents
        self._manager = DockerClient(manager_host, timeout)
        self.host = self._manager.host
        self._nodes: dict[str, DockerRuntime] = {}  # node id -> its engine
        self._where: dict[str, str] = {}  # container id -> node id
        self._owner: dict[str, str] = {}  # container id -> the id of its service
        self._node_lock = asyncio.Lock()
        self._node_states: dict[str, tuple[str, str]] = {}  # node id -> (state, availability) last seen
        self._listed: tuple[float, list[dict[str, Any]]] = (0.0, [])
        self._forwards = PortForwards()

    async def close(self) -> None:
        await self._forwards.close()
        for node in self._nodes.values():
            await node.close()
        await self._manager.close()

    def _errors(self, doing: str) -> contextlib.AbstractContextManager[None]:
        return translate_errors(doing, self.host)

    async def _call(
        self, path: str, method: str = "GET", body: Any = None, params: Mapping[str, str] | None = None
    ) -> Any:
        return await self._manager.send_json(path, method, body, params)

    # -- nodes -------------------------------------------------------------------------------------------------

    async def _node_list(self, max_age: float = 0.0) -> list[dict[str, Any]]:
        """The swarm's nodes (an answer up to `max_age` seconds old will do)."""
        at, nodes = self._listed
        if time.monotonic() - at <= max_age:
            return nodes
        with self._errors("listing the swarm's nodes"):
            nodes = list(await self._call("nodes"))
        self._listed = (time.monotonic(), nodes)
        return nodes

    async def _node_ready(self, node_id: str) -> bool:
        nodes = await self._node_list(max_age=1.0)
        return any(n["ID"] == node_id and n.get("Status", {}).get("State") == "ready" for n in nodes)

    async def node(self, node_id: str) -> DockerRuntime:
        """The engine of one node (reached at its swarm address on IDE_SWARM_NODE_PORT)."""
        runtime = self._nodes.get(node_id)
        if runtime is not None:
            return runtime
        async with self._node_lock:
            if node_id not in self._nodes:
                with self._errors("looking up a swarm node"):
                    info = await self._call(f"nodes/{node_id}")
                address = info.get("Status", {}).get("Addr", "")
                if not address:
                    raise RuntimeFailure(f"Swarm node {node_id} has no address")
                self._nodes[node_id] = DockerRuntime(
                    f"tcp://{address}:{self._node_port}",
                    self._timeout,
                    use_agent=self.use_agent,
                    own_agents=self._own_agents,
                )
            return self._nodes[node_id]

    async def _locate(self, container_id: str) -> tuple[DockerRuntime, str]:
        """The engine a container runs on and its id there. `container_id` is a task's container id, or the id of
        a service (what create() answered before its first task existed): then its newest task's container."""
        node_id = self._where.get(container_id)
        if node_id is not None:
            return await self.node(node_id), container_id
        service = await self._service(container_id)
        if service is not None:
            for task in await self._tasks(service["ID"]):
                if (cid := _task_container(task)) and task.get("NodeID"):
                    return await self.node(task["NodeID"]), cid
            raise Conflict(
                f"Workspace {service['Spec']['Name']} has no container while it is stopped on the swarm: start it to "
                "change or read its files"
            )
        with self._errors("looking up a container's task"):
            self._learn(await self._call("tasks"))
        if container_id not in self._where:
            raise NotFound(f"No container {container_id[:12]} on any node of the swarm")
        return await self.node(self._where[container_id]), container_id

    async def ping(self) -> None:
        with self._errors("checking the swarm's manager"):
            info = await self._manager.api.system.info()
        if info.get("Swarm", {}).get("ControlAvailable") is not True:
            raise RuntimeFailure(f"The engine at {self.host} is not a swarm manager (IDE_RUNTIME=swarm needs one)")

    # -- services as workspace containers ---------------------------------------------------------------------

    async def _service(self, name_or_id: str) -> dict[str, Any] | None:
        try:
            with self._errors("looking up a workspace's service"):
                service: dict[str, Any] = await self._call(f"services/{name_or_id}")
        except NotFound:
            return None
        return service

    async def _tasks(self, service_id: str) -> list[dict[str, Any]]:
        """The service's tasks, newest first."""
        params = {"filters": json.dumps({"service": [service_id]})}
        with self._errors("listing a workspace's tasks"):
            tasks: list[dict[str, Any]] = await self._call("tasks", params=params)
        tasks.sort(key=_created, reverse=True)
        self._learn(tasks)
        return tasks

    def _learn(self, tasks: list[dict[str, Any]]) -> None:
        """Remember the node and the service of each task's container."""
        for task in tasks:
            if (cid := _task_container(task)) and task.get("NodeID"):
                self._where[cid] = task["NodeID"]
                self._owner[cid] = task["ServiceID"]

    async def inspect(self, name_or_id: str) -> ContainerState | None:
        service = await self._service(self._owner.get(name_or_id, name_or_id))  # a task's container: its service
        if service is None:
            if name_or_id in self._where:  # a task's container id
                node, cid = await self._locate(name_or_id)
                state = await node.inspect(cid)
                return None if state is None else dataclasses.replace(state, name=_service_name(state.name))
            return None
        return await self._state(service)

    async def _state(self, service: dict[str, Any]) -> ContainerState:
        """The workspace's state: its newest task's container as its node's engine sees it, or (no container, or
        its node unreachable) what the swarm says of the task."""
        name = service["Spec"]["Name"]
        tasks = await self._tasks(service["ID"])
        for task in tasks:
            if not (cid := _task_container(task)):
                continue
            if await self._node_ready(task["NodeID"]):  # a node that is down is not asked (it would time out)
                node = await self.node(task["NodeID"])
                with contextlib.suppress(IDEError):
                    state = await node.inspect(cid)
                    if state is not None:
                        return dataclasses.replace(state, name=name)
            break
        spec = service["Spec"]["TaskTemplate"]["ContainerSpec"]
        return ContainerState(
            id=service["ID"],
            name=name,
            image=spec.get("Image", ""),
            status="created" if not tasks else "exited",
            running=False,
            created_at=docker_time(service.get("CreatedAt")),
            started_at=None,
            finished_at=None,
            exit_code=None,
            oom_killed=False,
            labels=dict(spec.get("Labels") or {}),
            env=dict(item.split("=", 1) for item in spec.get("Env") or [] if "=" in item),
            volumes={m["Target"]: m["Source"] for m in spec.get("Mounts") or [] if m.get("Type") == "volume"},
        )

    async def create(self, spec: ContainerSpec) -> ContainerState:
        """A service of 0 replicas (created, not started), on the node of its volume if it has one already."""
        if spec.network.mode != "shared":
            raise Conflict("IDE_RUNTIME=swarm runs workspaces on each node's default network: set IDE_NETWORK=shared")
        if spec.disk_bytes is not None:
            raise Conflict("IDE_RUNTIME=swarm has no bounded disks yet: set IDE_DISK_LIMIT_MB=0")
        constraints = []
        home = await self._volume_node(spec.volume)
        if home is not None:
            constraints.append(f"node.id=={home}")
        body = {
            "Name": spec.name,
            "Labels": dict(spec.labels),
            "TaskTemplate": {
                "ContainerSpec": {
                    "Image": spec.image,
                    "Hostname": "workspace",
                    "User": spec.user,
                    "Dir": spec.workdir,
                    "Env": [f"{k}={v}" for k, v in spec.env.items()],
                    "Labels": dict(spec.labels),
                    "Init": True,
                    "OpenStdin": True,  # the agent reads its frames from the container's stdin
                    "Mounts": [
                        {
                            "Type": "volume",
                            "Source": spec.volume,
                            "Target": spec.mount_path,
                            "VolumeOptions": {"Labels": dict(spec.labels)},
                        }
                    ],
                    "CapabilityDrop": ["ALL"],
                    "CapabilityAdd": [f"CAP_{c}" for c in CAPS],
                    "StopGracePeriod": 10_000_000_000,
                },
                "Resources": {
                    "Limits": {"NanoCPUs": spec.nano_cpus, "MemoryBytes": spec.memory_bytes, "Pids": spec.pids_limit},
                    "Reservations": {
                        "NanoCPUs": spec.nano_cpus // RESERVE_FRACTION,
                        "MemoryBytes": spec.memory_bytes // RESERVE_FRACTION,
                    },
                },
                "RestartPolicy": {"Condition": "none"},
                "Placement": {"Constraints": constraints},
                "LogDriver": {"Name": "none"},
            },
            "Mode": {"Replicated": {"Replicas": 0}},
            "UpdateConfig": {"Parallelism": 1, "Order": "stop-first"},
        }
        with self._errors(f"creating service {spec.name}"):
            try:
                await self._call("services/create", "POST", body)
            except DockerError as exc:
                if exc.status == 409:
                    raise Conflict(f"A workspace service named {spec.name} exists already") from exc
                raise
        service = await self._service(spec.name)
        if service is None:
            raise RuntimeFailure(f"Service {spec.name} vanished as it was created")
        return await self._state(service)

    async def _service_of(self, container_id: str) -> dict[str, Any]:
        """The service a state's id names: a service id (no container yet) or a task's container id."""
        service = await self._service(self._owner.get(container_id, container_id))
        if service is not None:
            return service
        node, cid = await self._locate(container_id)
        state = await node.inspect(cid)
        name = state.labels.get("com.docker.swarm.service.name") if state is not None else None
        service = await self._service(name) if name else None
        if service is None:
            raise NotFound(f"No workspace service for container {container_id[:12]}")
        return service

    async def _update(
        self, service: dict[str, Any], replicas: int, pin: str | None, force: bool = False, stopped: bool = False
    ) -> None:
        """Set the replicas and whether it is stopped on purpose (and pin the service to a node, and force a new
        task, when asked) in one update."""
        spec = service["Spec"]
        spec["Mode"] = {"Replicated": {"Replicas": replicas}}
        labels = spec.get("Labels") or {}
        spec["Labels"] = (
            {**labels, STOPPED_LABEL: "true"} if stopped else {k: labels[k] for k in labels if k != STOPPED_LABEL}
        )
        if pin is not None:
            spec["TaskTemplate"]["Placement"] = {"Constraints": [f"node.id=={pin}"]}
        if force:
            spec["TaskTemplate"]["ForceUpdate"] = int(spec["TaskTemplate"].get("ForceUpdate", 0)) + 1
        params = {"version": str(service["Version"]["Index"])}
        with self._errors(f"scaling service {spec['Name']}"):
            await self._call(f"services/{service['ID']}/update", "POST", spec, params)

    async def _pin(self, service: dict[str, Any]) -> tuple[str | None, str | None]:
        """(the node the service is pinned to, the node to pin it to now): a service is pinned to the node of its
        first task, where its volume is, by the next update after that task (a stop or a start)."""
        constraints = service["Spec"]["TaskTemplate"].get("Placement", {}).get("Constraints") or []
        pinned = next((c.split("==", 1)[1] for c in constraints if c.startswith("node.id==")), None)
        if pinned is not None:
            return pinned, None
        tasks = await self._tasks(service["ID"])
        first = next((t["NodeID"] for t in tasks if t.get("NodeID")), None)
        return first, first

    async def start(self, container_id: str) -> None:
        """Scale to one (or, already at one with its task ended, a new task) on its node, no longer stopped on
        purpose, and wait until it runs."""
        service = await self._service_of(container_id)
        home, pin = await self._pin(service)
        if home is not None and not await self._node_ready(home):
            raise Conflict(f"The node this workspace's files are on ({home[:12]}) is down; start it once it is back")
        # Always a forced update: with restart condition `none`, Swarm makes no new task for a slot whose task
        # ended, even when scaled from 0 to 1 (measured), and a forced one it does make.
        before = {task["ID"] for task in await self._tasks(service["ID"])}
        await self._update(service, 1, pin, force=True)
        try:
            await self._running_task(service["ID"], before)
        except IDEError:
            with contextlib.suppress(IDEError):  # not left pending, to start by itself some time later
                await self._update(await self._service_of(service["ID"]), 0, None)
            raise

    async def _running_task(self, service_id: str, before: set[str]) -> dict[str, Any]:
        """The new task (none of `before`) once it runs. Not an older one: until the manager hears from its node,
        the task of a container that just died still reads as meant to run and running."""
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            tasks = await self._tasks(service_id)
            current = [t for t in tasks if t.get("DesiredState") == "running" and t["ID"] not in before]
            if current:
                status = current[0].get("Status", {})
                if status.get("State") == "running":
                    return current[0]
                if status.get("State") in ("failed", "rejected", "shutdown", "orphaned"):
                    raise RuntimeFailure(
                        f"The workspace's task did not start: {status.get('Err') or status.get('State')}"
                    )
            if time.monotonic() > deadline:
                status = current[0].get("Status", {}) if current else {}
                said = status.get("Err") or status.get("Message") or "no task"
                raise RuntimeFailure(f"The workspace's task did not run within {START_TIMEOUT:.0f} s ({said})")
            await asyncio.sleep(0.2)

    async def stop(self, container_id: str, timeout: int) -> None:
        """Stop its container on its node (kept there, stopped, files and all) and mark the service stopped on
        purpose. Not scaled to zero: Swarm would remove that container at once. A task not running yet is dropped."""
        service = await self._service_of(container_id)
        await self._close_forwards(service["ID"], container_id)
        state = await self._state(service)
        if state.running:
            node, cid = await self._locate(state.id)
            await node.stop(cid, timeout)  # its task ends; with restart condition `none`, Swarm makes no other
            service = await self._service_of(service["ID"])  # read again: a start's rollout may have ended since
        await self._update(service, 1 if state.running else 0, (await self._pin(service))[1], stopped=True)

    async def remove(self, container_id: str) -> None:
        with contextlib.suppress(NotFound):
            service = await self._service_of(container_id)
            await self._close_forwards(service["ID"], container_id)
            with self._errors("removing a workspace's service"):
                await self._call(f"services/{service['ID']}", "DELETE")
            for cid in [c for c, owner in self._owner.items() if owner == service["ID"]]:
                del self._owner[cid]
                self._where.pop(cid, None)

    # -- volumes: on the node where the workspace's task made them --------------------------------------------

    async def _volume_node(self, name: str) -> str | None:
        for node in await self._node_list():
            if node.get("Status", {}).get("State") != "ready":
                continue
            runtime = await self.node(node["ID"])
            if await runtime.volume_labels(name) is not None:
                return str(node["ID"])
        return None

    async def ensure_volume(self, name: str, labels: Mapping[str, str]) -> None:
        """Made by Swarm on the node where the workspace's task lands (with the service's labels)."""

    async def volume_labels(self, name: str) -> dict[str, str] | None:
        node = await self._volume_node(name)
        return None if node is None else await (await self.node(node)).volume_labels(name)

    async def remove_volume(self, name: str) -> None:
        for node in await self._node_list():
            with contextlib.suppress(NotFound, Conflict):
                await (await self.node(node["ID"])).remove_volume(name)

    async def container_names(self, labels: Mapping[str, str]) -> list[str]:
        params = {"filters": json.dumps({"label": [f"{k}={v}" for k, v in labels.items()]})}
        with self._errors("listing services"):
            services = await self._call("services", params=params)
        return [str(s["Spec"]["Name"]) for s in services]

    # -- what a single engine does that the swarm runtime does not ---------------------------------------------

    async def move_to_network(self, container_id: str, policy: NetworkPolicy) -> bool:
        return False

    async def rename(self, name: str, new_name: str) -> bool:
        return False

    async def copy_workspace(self, source: ContainerSpec, target: ContainerSpec, freeze: str | None) -> CopyResult:
        raise Conflict("Forking a workspace is not available on IDE_RUNTIME=swarm yet")

    async def resume_left(self, instance: str) -> list[str]:
        return []

    # -- inside a container: its node's engine -----------------------------------------------------------------

    async def agent_ready(self, container_id: str) -> bool:
        node, cid = await self._locate(container_id)
        return await node.agent_ready(cid)

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
        node, cid = await self._locate(container_id)
        return await node.open_exec(cid, argv, user=user, workdir=workdir, env=env, tty=tty, stdin=stdin)

    async def open_held(
        self, container_id: str, terminal: HeldTerminal, *, user: str, workdir: str, env: Mapping[str, str]
    ) -> HeldSession | None:
        node, cid = await self._locate(container_id)
        return await node.open_held(cid, terminal, user=user, workdir=workdir, env=env)

    async def attach_held(self, container_id: str, key: str, *, user: str, since: int) -> HeldSession:
        node, cid = await self._locate(container_id)
        return await node.attach_held(cid, key, user=user, since=since)

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
        node, cid = await self._locate(container_id)
        return await node.exec(cid, argv, user=user, workdir=workdir, env=env, timeout=timeout, output_cap=output_cap)

    async def stat_paths(self, container_id: str, paths: Sequence[str]) -> dict[str, PathStat | None]:
        node, cid = await self._locate(container_id)
        return await node.stat_paths(cid, paths)

    async def put_archive(self, container_id: str, dest: str, data: bytes) -> None:
        node, cid = await self._locate(container_id)
        await node.put_archive(cid, dest, data)

    async def read_file(self, container_id: str, path: str, max_bytes: int) -> bytes | None:
        node, cid = await self._locate(container_id)
        return await node.read_file(cid, path, max_bytes)

    async def run_on_files(
        self, container: ContainerState, argv: Sequence[str], *, user: str, root: bool = False, timeout: float = 600
    ) -> ExecOutput:
        if not container.running and (service := await self._service(container.name)) is not None:
            home, _ = await self._pin(service)
            if home is not None:  # a helper holding its volume, on the node where the volume is
                node = await self.node(home)
                return await node.run_on_files(container, argv, user=user, root=root, timeout=timeout)
        node, cid = await self._locate(container.id)
        return await node.run_on_files(
            dataclasses.replace(container, id=cid), argv, user=user, root=root, timeout=timeout
        )

    # -- events: every node's, merged, plus the nodes' own ----------------------------------------------------

    async def events(
        self, labels: Mapping[str, str], since: float | None = None, opened: Callable[[], None] | None = None
    ) -> AsyncIterator[RuntimeEvent]:
        """The container events of every ready node (names as their services'), and `node_down`/`node_drained`
        for the workspaces whose task was on a node that went down or was drained. Ends (raising) when the
        manager or a node's stream goes away; the caller subscribes again with `since`."""
        queue: asyncio.Queue[RuntimeEvent | BaseException] = asyncio.Queue()
        nodes = [n for n in await self._node_list() if n.get("Status", {}).get("State") == "ready"]
        waiting = {n["ID"] for n in nodes}
        all_open = asyncio.Event()

        def one_opened(node_id: str) -> None:
            waiting.discard(node_id)
            if not waiting:
                all_open.set()

        async def follow(node_id: str) -> None:
            try:
                runtime = await self.node(node_id)
                async for event in runtime.events(labels, since, lambda: one_opened(node_id)):
                    if event.container_id:
                        self._where[event.container_id] = node_id
                        if event.action in ("die", "destroy"):  # a container that ended by itself
                            await self._forwards.close_container(event.container_id)
                    queue.put_nowait(dataclasses.replace(event, name=_service_name(event.name)))
            except BaseException as exc:  # handed to the reader, who raises it
                queue.put_nowait(exc)
                all_open.set()  # a node that cannot be followed ends the wait too: the reader raises at once

        tasks = [asyncio.create_task(follow(n["ID"]), name=f"swarm-events-{n['ID'][:8]}") for n in nodes]
        tasks.append(asyncio.create_task(self._watch_nodes(labels, queue), name="swarm-nodes"))
        try:
            if nodes:
                await all_open.wait()
            if opened is not None:
                opened()
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    if isinstance(item, asyncio.CancelledError):
                        raise unavailable("following engine events", "a node's stream was cancelled", self.host)
                    raise item
                yield item
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _watch_nodes(self, labels: Mapping[str, str], queue: asyncio.Queue[RuntimeEvent | BaseException]) -> None:
        """Poll the nodes; when one stops being ready and active, report each of our workspaces running there. A
        node that answers again ends the stream (its engine's events are followed again by the caller's
        re-subscription). What each node was is kept across subscriptions: a node going down breaks its event
        stream first, and its fall must still be seen by the next subscription."""
        try:
            known = self._node_states
            while True:
                for node in await self._node_list():
                    state = (node.get("Status", {}).get("State", ""), node.get("Spec", {}).get("Availability", ""))
                    before = known.get(node["ID"])
                    known[node["ID"]] = state
                    if before is None or before == state:
                        continue
                    if state[0] != "ready" or state[1] == "drain":
                        action = "node_drained" if state[0] == "ready" else "node_down"
                        for event in await self._workspaces_on(node["ID"], labels, action):
                            queue.put_nowait(event)
                    elif before[0] != "ready":
                        raise unavailable("following engine events", f"node {node['ID'][:12]} is back", self.host)
                await asyncio.sleep(NODE_POLL)
        except BaseException as exc:  # handed to the reader
            queue.put_nowait(exc)

    async def _workspaces_on(self, node_id: str, labels: Mapping[str, str], action: str) -> list[RuntimeEvent]:
        """One `action` event per workspace of ours that was running on the node: a service meant to run (one
        replica) whose newest task is there. (The manager shuts a lost node's tasks down at once: their desired
        state says nothing any more.)"""
        params = {"filters": json.dumps({"node": [node_id]})}
        with self._errors("listing a node's tasks"):
            tasks = await self._call("tasks", params=params)
        newest: dict[str, dict[str, Any]] = {}
        for task in tasks:
            known = newest.get(task["ServiceID"])
            if known is None or _created(task) > _created(known):
                newest[task["ServiceID"]] = task
        found = []
        for service_id, task in newest.items():
            spec_labels = task.get("Spec", {}).get("ContainerSpec", {}).get("Labels") or {}
            if any(spec_labels.get(k) != v for k, v in labels.items()):
                continue
            service = await self._service(service_id)
            if (
                service is None
                or service["Spec"]["Mode"].get("Replicated", {}).get("Replicas") != 1
                or STOPPED_LABEL in (service["Spec"].get("Labels") or {})
            ):
                continue  # removed, or stopped on purpose
            found.append(
                RuntimeEvent(
                    project_id=spec_labels.get("ide-backend.project", ""),
                    workspace_id=spec_labels.get("ide-backend.workspace", ""),
                    action=action,
                    container_id=_task_container(task),
                    name=service["Spec"]["Name"],
                    time=time.time(),
                )
            )
        return found

    # -- ports: forwarded through an exec, since a node's bridge is not reachable from here --------------------

    async def reach(self, container: ContainerState, port: int) -> tuple[str, int]:
        """A loopback forward whose connections reach the container's address and port from inside it."""
        node, cid = await self._locate(container.id)
        return await self._forwards.address(
            cid, container.address, port, lambda: node.open_tunnel(cid, container.address, port)
        )

    async def _close_forwards(self, service_id: str, container_id: str) -> None:
        """The forwards into a service's containers end as it stops (a started one has a new container)."""
        for cid in [container_id, *(c for c, owner in self._owner.items() if owner == service_id)]:
            await self._forwards.close_container(cid)
