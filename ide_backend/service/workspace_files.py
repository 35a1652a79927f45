"""Safe file operations inside a workspace container: writes and reads that never pass through a link, listings
and deletions that run as the workspace user.

The engine's archive API acts as root, so everything done through it (writes, and reads of stopped containers) is
checked first: every folder on the way must be a real folder, never a symlink a user made with exec. What runs
as an exec (list, delete) has only the workspace user's rights, and needs no such check.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from dataclasses import dataclass
from typing import Literal

from ..errors import Conflict, IDEError, InvalidPath, NotFound, PayloadTooLarge, RuntimeFailure
from ..runtime import ContainerState, PathStat, Runtime
from ..settings import Settings
from .filesets import VERSION_PATTERN, FileSet, pack_for_writer, tar_staged, version_of
from .staging import COMMIT_SCRIPT, STAGING, new_transaction

log = logging.getLogger(__name__)

# Sets up to this size go through the container's own writer (images/workspace/ide-write), which costs a fork and an
# exec; larger ones through Docker's archive upload, whose fixed ~70 ms then matters less than moving the bytes.
WRITER_MAX_BYTES = 1024 * 1024
WRITER_MAX_ENTRIES = 1000
WRITER_TIMEOUT = 120.0
VERSIONED_MAX_BYTES = 10 * 1024 * 1024  # files/list gives versions of files up to this size (what files/read reads)
_GUARD_READ_BYTES = 256 * 1024 * 1024  # a guarded file read through the archive API to learn its version
# Lists as the workspace user: one record per entry, then the versions of the regular files up to a size ($3 bytes).
# Paths come in as arguments, never as part of the script.
_LIST = (
    'find "$1" -mindepth 1 -maxdepth "$2" -printf "E\\t%y\\t%s\\t%m\\t%T@\\t%P\\0"; '
    'find "$1" -mindepth 1 -maxdepth "$2" -type f -size -"$3"c -exec sha256sum -z -- {} +'
)
# ide-write's exit codes (Perl's own failures exit with 1 or 2 before its commit, 12 after it)
_WRITER_REFUSED, _WRITER_CANNOT, _WRITER_COMMITTED = 10, 11, 12
_COMMIT_AS_ROOT = 11  # the staging program's: the workspace user may not finish it
EntryType = Literal["file", "dir", "symlink", "other"]
_FIND_TYPES: dict[str, EntryType] = {"f": "file", "d": "dir", "l": "symlink"}


@dataclass(frozen=True)
class Entry:
    path: str
    type: EntryType
    size: int
    mode: int
    mtime: float
    version: str | None = None  # of a regular file the workspace user can read, up to VERSIONED_MAX_BYTES


@dataclass(frozen=True)
class FileContent:
    path: str
    content: str
    encoding: Literal["utf-8", "base64"]
    size: int
    version: str


class WorkspaceFiles:
    """File operations for the workspace service; paths given here are already normalised and relative."""

    def __init__(self, runtime: Runtime, settings: Settings) -> None:
        self.runtime = runtime
        self.settings = settings
        self.writes = {"writer": 0, "archive": 0}  # which path wrote each set, for /api/v1/stats
        self._settled: set[tuple[str, str]] = set()  # (container, folder) where nothing is left staged

    async def write(
        self, container: ContainerState, base: str, fileset: FileSet, *, checked: bool = False, clean: bool = False
    ) -> None:
        """Write the set below `base` (after emptying `base` when `clean`), all or nothing, never through a link or
        over a folder, staged and committed (staging.py) so even a crash leaves the old set or the new one: a small
        set by the container's own writer when its agent answers, else (or when the writer cannot serve it, or for
        `clean`) through the engine's archive upload and the staging program. Files given with `ifMatch` are
        checked first: when one is not at its version, nothing is written (409 naming each such file with its
        version now) unless the caller has `checked` them. The caller holds the workspace's lock, so two writers
        from the same base version cannot both pass."""
        await self.finish_staged(container, base)
        if fileset.guarded and not checked:
            await self.check_versions(container, base, fileset.guarded)
        try:
            await self._write(container, base, fileset, clean)
        except BaseException:
            # Something may be left staged (a killed writer, a container stopped under the call): the next call
            # looks again, finishes or undoes it.
            self._settled.discard((container.id, base))
            raise

    async def _write(self, container: ContainerState, base: str, fileset: FileSet, clean: bool) -> None:
        small = fileset.total_bytes <= WRITER_MAX_BYTES and len(fileset.files) + len(fileset.dirs) <= WRITER_MAX_ENTRIES
        if (
            not clean
            and small
            and container.running
            and await self.runtime.agent_ready(container.id)
            and await self._write_in_container(container, base, fileset)
        ):
            self.writes["writer"] += 1
            return
        s = self.settings
        tx = new_transaction()
        archive = tar_staged(fileset, prefix=f"{STAGING}/{tx}.part", uid=s.workspace_uid, gid=s.workspace_gid)
        await self.runtime.put_archive(container.id, base, archive)
        await self._commit(container, base, [tx, "clean" if clean else "keep"])
        self.writes["archive"] += 1

    def settled(self, container_id: str, base: str) -> bool:
        """Whether this process knows nothing is left staged below `base` in that container."""
        return (container_id, base) in self._settled

    async def finish_staged(self, container: ContainerState, base: str) -> None:
        """Finish (or undo) what a crashed call left staged below `base`, before anything else reads or writes there.
        Looked for once per container and folder by this process (only a crash leaves anything). Call with the
        workspace's lock held: a write of this process in flight is never taken for a crashed one."""
        key = (container.id, base)
        if key in self._settled:
            return
        found = (await self.runtime.stat_paths(container.id, [f"{base}/{STAGING}"]))[f"{base}/{STAGING}"]
        if found is not None:
            if found.is_symlink or not found.is_dir:
                raise Conflict(
                    f"{STAGING!r} in the workspace is not the backend's staging folder; remove or rename it",
                    path=STAGING,
                )
            log.warning("finishing what a crashed write left below %s in container %s", base, container.name)
            await self._commit(container, base, [])
        self._settled.add(key)

    async def _commit(self, container: ContainerState, base: str, args: list[str]) -> None:
        """Run the staging program (commit `args` = [TX, clean|keep], or finish what is left with no args): as the
        workspace user in a running container, as root in a helper when it is stopped or the user may not."""
        argv = ["perl", "-e", COMMIT_SCRIPT, base, *args]
        result = await self.runtime.run_on_files(container, argv, user=self._user, root=not container.running)
        if result.exit_code == _COMMIT_AS_ROOT and container.running:
            result = await self.runtime.run_on_files(container, argv, user=self._user, root=True)
        if result.exit_code == 0:
            return
        self._settled.discard((container.id, base))
        reason, _, path = result.stdout.decode("utf-8", "replace").strip().partition("\t")
        if result.exit_code == _WRITER_REFUSED and reason in ("symlink", "notdir", "isdir") and path:
            raise _refusal(reason, path)
        detail = (result.stderr or result.stdout).decode("utf-8", "replace").strip()[-500:]
        raise RuntimeFailure(
            f"The files could not be put in place (exit {result.exit_code}: {detail}); they stay staged, and the "
            "next write to this workspace finishes or undoes them"
        )

    async def check_versions(self, container: ContainerState, base: str, expected: dict[str, str | None]) -> None:
        """Raise the 409 that names each file not at its expected version (None: absent), with its version now."""
        await self.finish_staged(container, base)
        now = await self.versions(container.id, base, list(expected))
        changed = [
            {"path": path, "version": now[path]} for path, want in expected.items() if path in now and now[path] != want
        ]
        if changed:
            names = ", ".join(repr(item["path"]) for item in changed[:5]) + (" ..." if len(changed) > 5 else "")
            raise Conflict(
                f"{len(changed)} file(s) changed since you read them ({names}); nothing was written. Read them "
                "again (or merge), then save with their new versions",
                conflicts=changed,
            )

    async def versions(self, container_id: str, base: str, paths: list[str]) -> dict[str, str | None]:
        """The version of each path now, None where nothing exists; a path that exists but is no regular file the
        workspace user can read is left out (writing it is refused or decided by the write itself)."""
        if await self.runtime.agent_ready(container_id):
            argv = ["sha256sum", "-z", "--", *(f"{base}/{p}" for p in paths)]
            result = await self.runtime.exec(
                container_id, argv, user=self._user, workdir="/", env={}, timeout=120, output_cap=1024 * 1024
            )
            found = _hashes(result.stdout, f"{base}/")
        else:
            limit = asyncio.Semaphore(8)

            async def one(path: str) -> tuple[str, str | None]:
                async with limit:
                    data = await self.runtime.read_file(container_id, f"{base}/{path}", _GUARD_READ_BYTES)
                return path, None if data is None else version_of(data)

            found = {p: v for p, v in await asyncio.gather(*(one(p) for p in paths)) if v is not None}
        missing = [p for p in paths if p not in found]
        if not missing:
            return dict(found)
        stats = await self.runtime.stat_paths(container_id, [f"{base}/{p}" for p in missing])
        return {**found, **{p: None for p in missing if stats[f"{base}/{p}"] is None}}

    async def _write_in_container(self, container: ContainerState, base: str, fileset: FileSet) -> bool:
        """Run images/workspace/ide-write as the workspace user with the set on stdin: it stages the set and commits
        it with the staging program's record (staging.py), so a crash anywhere leaves something the next call
        finishes or undoes. True when it wrote the set; False when it cannot serve it (a folder the user may not
        write to, an image without it, a failure before its commit), so the archive path writes it instead (whose
        commit first finishes or undoes anything it left); raises when the set goes through a link or puts a file
        over a folder."""
        pause = self.settings.writer_pause  # tests only: 0 in production, and then no variable is passed
        env = {"IDE_WRITE_PAUSE": str(pause)} if pause else {}
        try:
            session = await self.runtime.open_exec(
                container.id, ["ide-write", base, new_transaction()], user=self._user, workdir="/", env=env, stdin=True
            )
        except IDEError:
            return False
        out, err = bytearray(), bytearray()
        try:
            await session.write(pack_for_writer(fileset))
            await session.close_stdin()
            async with asyncio.timeout(WRITER_TIMEOUT):
                while (chunk := await session.read()) is not None:
                    buf = out if chunk[0] == 1 else err
                    buf.extend(chunk[1][: max(0, 65536 - len(buf))])
            code = await session.exit_code()
        except (IDEError, TimeoutError) as exc:
            # Stop it before the archive path writes the set, so a late rename cannot land over newer files.
            with contextlib.suppress(IDEError):
                await session.signal("KILL")
            log.warning("the in-container writer did not finish (%s); using the archive upload", exc)
            return False
        finally:
            await session.close()
        if code == 0:
            return True
        if code == _WRITER_COMMITTED:
            # The set is decided but not all in place (a folder it may not write to after all, say): finish it.
            log.warning("the in-container writer committed but did not finish (%s); finishing it", bytes(err[:300]))
            await self._commit(container, base, [])
            return True
        reason, _, path = out.decode("utf-8", "replace").rstrip("\n").partition("\t")
        if code == _WRITER_REFUSED and reason in ("symlink", "notdir", "isdir") and path:
            raise _refusal(reason, path)
        if code != _WRITER_CANNOT:
            log.warning(
                "the in-container writer failed (exit %s: %s); using the archive upload", code, bytes(err[:300])
            )
        return False

    async def read(self, container_id: str, path: str, max_bytes: int) -> FileContent:
        """One regular file of the workspace; UTF-8 text as is, anything else as base64."""
        base = self.settings.workspace_dir
        parts = path.split("/")
        folders = ["/".join(parts[:depth]) for depth in range(1, len(parts))]
        found = await self._survey(container_id, base, folders, {path})
        for folder in folders:
            if folder not in found:
                raise NotFound(f"{path!r} does not exist in the workspace", path=path)
            _require_real_folder(folder, found[folder], "read")
        stat = found.get(path)
        if stat is None:
            raise NotFound(f"{path!r} does not exist in the workspace", path=path)
        if stat.is_symlink:
            raise InvalidPath(f"{path!r} is a symbolic link{_target(stat)}; read its target", path=path)
        if stat.is_dir:
            raise Conflict(f"{path!r} is a folder; list it with /api/v1/containers/files/list", path=path)
        data = await self.runtime.read_file(container_id, f"{base}/{path}", max_bytes)
        if data is None:
            raise Conflict(f"{path!r} is not a regular file", path=path)
        version = version_of(data)
        try:
            return FileContent(path, data.decode("utf-8"), "utf-8", len(data), version)
        except UnicodeDecodeError:
            return FileContent(path, base64.b64encode(data).decode("ascii"), "base64", len(data), version)

    async def require_folder(self, container_id: str, path: str) -> None:
        """`path` is a real folder of the workspace, reached through real folders (to watch it)."""
        parts = path.split("/")
        chain = ["/".join(parts[:depth]) for depth in range(1, len(parts) + 1)]
        found = await self._survey(container_id, self.settings.workspace_dir, chain[:-1], {path})
        for folder in chain:
            if folder not in found:
                raise NotFound(f"{path!r} does not exist in the workspace", path=path)
            _require_real_folder(folder, found[folder], "watched")

    async def listing(self, container: ContainerState, path: str, depth: int, limit: int) -> tuple[list[Entry], bool]:
        """Entries below `path` (the workspace itself when empty), `depth` levels down, as the workspace user."""
        base = self.settings.workspace_dir
        start = f"{base}/{path}" if path else base
        argv = ["sh", "-c", _LIST, "ide-list", start, str(depth), str(VERSIONED_MAX_BYTES)]
        result = await self.runtime.exec(
            container.id,
            argv,
            user=self._user,
            workdir="/",
            env={},
            timeout=60,
            output_cap=self.settings.exec_output_cap,
        )
        if result.exit_code != 0 and not result.stdout:
            if b"No such file" in result.stderr:
                raise NotFound(f"{path!r} does not exist in the workspace", path=path)
            raise Conflict(f"Listing {path or '/'!r} failed: {result.stderr.decode('utf-8', 'replace').strip()[:300]}")
        versions = _hashes(result.stdout, f"{start}/")
        entries: list[Entry] = []
        for record in result.stdout.split(b"\0"):
            fields = record.split(b"\t", 5)
            if len(fields) != 6 or fields[0] != b"E":
                continue
            _, kind, size, mode, mtime, name = fields
            relative = name.decode("utf-8", "replace")
            if not path and (relative == STAGING or relative.startswith(f"{STAGING}/")):
                continue  # a write being staged (staging.py): not the workspace's own
            entries.append(
                Entry(
                    path=f"{path}/{relative}" if path else relative,
                    type=_FIND_TYPES.get(kind.decode(), "other"),
                    size=int(size),
                    mode=int(mode, 8),
                    mtime=float(mtime),
                    version=versions.get(relative) if kind == b"f" else None,
                )
            )
        entries.sort(key=lambda e: (e.path.count("/"), e.type != "dir", e.path.lower()))
        truncated = len(entries) > limit or result.truncated
        return entries[:limit], truncated

    async def delete(self, container: ContainerState, paths: list[str]) -> None:
        """Remove files and folders (a link itself, never its target) as the workspace user."""
        if len(paths) > 1000:
            raise PayloadTooLarge("Delete at most 1000 paths per call")
        base = self.settings.workspace_dir
        argv = ["rm", "-rf", "--", *(f"{base}/{p}" for p in paths)]
        result = await self.runtime.exec(
            container.id, argv, user=self._user, workdir="/", env={}, timeout=120, output_cap=64 * 1024
        )
        if result.exit_code != 0:
            detail = result.stderr.decode("utf-8", "replace").strip()[:300]
            raise Conflict(f"Some paths could not be deleted: {detail}")

    @property
    def _user(self) -> str:
        return f"{self.settings.workspace_uid}:{self.settings.workspace_gid}"

    async def _survey(self, container_id: str, base: str, folders: list[str], targets: set[str]) -> dict[str, PathStat]:
        """Stat the folders (parents first) and targets that could exist: shallow to deep, and only below folders
        that exist, so a new tree costs one round of stats. Returns what exists."""
        by_depth: dict[int, list[str]] = {}
        for path in sorted(set(folders) | targets):
            by_depth.setdefault(path.count("/"), []).append(path)
        found: dict[str, PathStat] = {}
        real_folders: set[str] = set()
        # When the container answers for any number of paths in one call, ask once and apply the same rule
        # (a path counts only below real folders) to the answer instead of asking level by level.
        every = sorted(set(folders) | targets) if await self.runtime.agent_ready(container_id) else []
        answered = await self.runtime.stat_paths(container_id, [f"{base}/{p}" for p in every]) if every else {}
        for depth in sorted(by_depth):
            level = [p for p in by_depth[depth] if depth == 0 or p.rsplit("/", 1)[0] in real_folders]
            if not level:
                continue
            stats = answered or await self.runtime.stat_paths(container_id, [f"{base}/{p}" for p in level])
            for path in level:
                stat = stats[f"{base}/{path}"]
                if stat is not None:
                    found[path] = stat
                    if stat.is_dir and not stat.is_symlink:
                        real_folders.add(path)
        return found


def _hashes(output: bytes, prefix: str) -> dict[str, str]:
    """`sha256sum -z` records ("<hex>  <path>", NUL-terminated) of paths starting with prefix: the rest of each path
    to its version. Other records are skipped."""
    found: dict[str, str] = {}
    for record in output.split(b"\0"):
        digest, sep, name = record.partition(b"  ")
        if sep and len(digest) == 64 and VERSION_PATTERN.match(digest.decode("ascii", "replace")):
            path = name.decode("utf-8", "replace")
            if path.startswith(prefix):
                found[path.removeprefix(prefix)] = digest.decode("ascii")
    return found


def _require_real_folder(path: str, stat: PathStat, verb: str) -> None:
    if stat.is_symlink:
        raise _refusal("symlink", path, verb, _target(stat))
    if not stat.is_dir:
        raise _refusal("notdir", path, verb)


def _refusal(reason: str, path: str, verb: str = "written", target: str = "") -> IDEError:
    """Why a path cannot be used, worded the same whichever way the problem was found."""
    if reason == "symlink":
        return InvalidPath(
            f"{path!r} is a symbolic link{target}; files are never {verb} through links, use the real folder instead",
            path=path,
        )
    if reason == "notdir":
        return Conflict(f"{path!r} is a file in the workspace, so nothing can be {verb} below it", path=path)
    return Conflict(f"{path!r} is a folder in the workspace; it cannot be replaced by a file", path=path)


def _target(stat: PathStat) -> str:
    return f" (to {stat.link_target!r})" if stat.link_target else ""
