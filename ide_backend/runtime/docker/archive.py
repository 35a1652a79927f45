"""Files in a container: path stats, tar uploads and single-file reads through Docker's archive API (which works on
stopped containers too), and commands on its files, run in it or in a helper holding its volumes."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Sequence

import aiohttp
from aiodocker.exceptions import DockerError

from ...errors import Conflict, IDEError, NotFound, RuntimeFailure
from ..base import ContainerState, ExecOutput, PathStat, Runtime
from .client import DockerClient
from .errors import translate_errors
from .parsing import STAT_FORMAT, path_stat, stat_records, volumes_helper_config

_STAT_CONCURRENCY = 16
_ARGV_BUDGET = 96 * 1024  # bytes of paths per `stat` command, well under the kernel's argument limit
_FULL = "no space left on device"  # the engine's words when a write hits the end of the disk


class ContainerFiles:
    """The file operations of DockerRuntime. Commands in a running container go through `runtime` (its agent
    when it has one), the rest through the engine's archive endpoints."""

    def __init__(self, client: DockerClient, runtime: Runtime) -> None:
        self._client = client
        self._runtime = runtime

    async def stat_paths(self, container_id: str, paths: Sequence[str]) -> dict[str, PathStat | None]:
        """Stat each absolute path (not following a final symlink); None where nothing exists. A running
        container with the agent answers for all paths in one `stat` command; otherwise one archive stat each."""
        if paths and await self._runtime.agent_ready(container_id):
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
            argv = ["stat", "--printf", STAT_FORMAT, "--", *batch]
            result = await self._runtime.exec(
                container_id, argv, user="", workdir="/", env={}, timeout=60, output_cap=64 * 1024 * 1024
            )
            found.update(stat_records(result.stdout))
            batch, size = ([path], len(path) + 1) if path is not None else ([], 0)
        return found

    async def _stat(self, container_id: str, path: str) -> PathStat | None:
        with translate_errors(f"looking at {path}", self._client.host):
            async with self._client.head(f"containers/{container_id}/archive", {"path": path}) as response:
                if response.status == 404:
                    return None
                if response.status >= 400:
                    raise DockerError(response.status, f"stat of {path} failed")
                header = response.headers.get("X-Docker-Container-Path-Stat", "")
        return path_stat(header)

    async def put_archive(self, container_id: str, dest: str, data: bytes) -> None:
        """Extract one tar at dest; the engine refuses to turn a folder into a file or a link into a folder. A full
        disk (the workspace's own, past its limit) is a 409 that says what to do."""
        try:
            with translate_errors("writing files", self._client.host):
                async with self._client.request(
                    f"containers/{container_id}/archive",
                    method="PUT",
                    data=data,
                    headers={"content-type": "application/x-tar"},
                    params={"path": dest, "noOverwriteDirNonDir": "true"},
                ):
                    pass
        except RuntimeFailure as exc:
            if _FULL not in exc.message.lower():
                raise
            raise Conflict(
                f"The workspace's disk is full ({exc.message}); delete files in the workspace and retry",
                hint="free space in the workspace: its disk is limited (IDE_DISK_LIMIT_MB)",
            ) from exc

    async def read_file(self, container_id: str, path: str, max_bytes: int) -> bytes | None:
        """The bytes of one regular file, or None when it does not exist or is not a regular file."""
        try:
            with translate_errors(f"reading {path}", self._client.host):
                archive = await self._client.api.containers.container(container_id).get_archive(path)
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

    async def run_on_files(
        self, container: ContainerState, argv: Sequence[str], *, user: str, root: bool, timeout: float
    ) -> ExecOutput:
        """argv on the workspace's files: in the running container as `user`, or (stopped, or `root`) as root in a
        helper container of its image holding its volumes. A helper's stdout and stderr come back together."""
        if container.running and not root:
            return await self._runtime.exec(
                container.id, argv, user=user, workdir="/", env={}, timeout=timeout, output_cap=1024 * 1024
            )
        name = f"{container.name}-files-{uuid.uuid4().hex[:8]}"
        labels = {k: v for k, v in container.labels.items() if k == "ide-backend.instance"}
        with translate_errors("running a helper container on the workspace's files", self._client.host):
            helper = await self._client.api.containers.create(volumes_helper_config(container, argv, labels), name=name)
            try:
                await helper.start()
                result = await helper.wait(timeout=aiohttp.ClientTimeout(total=timeout))
                logs = "".join(await helper.log(stdout=True, stderr=True)).encode()
            finally:
                await helper.delete(force=True)
        return ExecOutput(logs, b"", int(result.get("StatusCode", -1)), False, False)
