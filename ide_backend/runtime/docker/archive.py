"""Files in a container: path stats, tar uploads and single-file reads through Docker's archive API (which works on
stopped containers too), and emptying the workspace folder."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Sequence

import aiohttp
from aiodocker.exceptions import DockerError

from ...errors import Conflict, IDEError, NotFound, RuntimeFailure
from ..base import ContainerSpec, ContainerState, PathStat, Runtime
from .client import DockerClient
from .errors import translate_errors
from .parsing import STAT_FORMAT, helper_config, path_stat, stat_records

# Empties the folder given as $1, making read-only folders writable first (links are not followed).
_EMPTY_DIR = 'chmod -R u+w -- "$1" 2>/dev/null; find "$1" -mindepth 1 -delete'
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

    async def empty_dir(self, container: ContainerState, spec: ContainerSpec) -> None:
        """Delete everything below the workspace folder, in the container if it runs, else in a helper."""
        argv = ["sh", "-c", _EMPTY_DIR, "ide-empty", spec.mount_path]
        if container.running:
            # As the workspace user: a root exec in a container whose user is not root has no capabilities.
            result = await self._runtime.exec(
                container.id, argv, user=spec.user, workdir="/", env={}, timeout=300, output_cap=64 * 1024
            )
            code, detail = result.exit_code, result.stderr.decode("utf-8", "replace")
        else:
            code, detail = await self._run_helper(spec, argv)
        if code != 0:
            raise RuntimeFailure(f"Emptying the workspace failed (exit {code}): {detail.strip()[:500]}")

    async def _run_helper(self, spec: ContainerSpec, argv: list[str]) -> tuple[int, str]:
        """Run argv in a short-lived container of the workspace image with the volume mounted, no network."""
        name = f"{spec.name}-helper-{uuid.uuid4().hex[:8]}"
        with translate_errors("running a helper container", self._client.host):
            helper = await self._client.api.containers.create(helper_config(spec, argv), name=name)
            try:
                await helper.start()
                result = await helper.wait(timeout=aiohttp.ClientTimeout(total=300))
                logs = await helper.log(stdout=True, stderr=True)
            finally:
                await helper.delete(force=True)
        return int(result.get("StatusCode", -1)), "".join(logs)
