"""Live file watching: one watcher per watched workspace (watch_script.py, run as the workspace user through the
runtime's exec path), shared by every client watching that workspace or a folder in it.

The watcher sends batches of coalesced changes (one per path, ~50 ms each); here each batch is cut to each client's
folder, changes the backend's own writes caused are marked with the request that wrote them (`origin: "sync"`,
`requestId`), and the result is handed to the client's `deliver` (the websocket's outbox: never blocks). A watcher
starts with its first client and stops with its last; when the workspace stops, or the watcher ends, every client
gets `unwatched` with the reason and watches again once the workspace runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal, NotRequired, TypedDict

from ..errors import IDEError, RuntimeFailure
from ..runtime import STDOUT, ExecSession, Runtime
from .bus import EventBus
from .domain import WorkspaceRef
from .filesets import normalize_path
from .watch_script import WATCH_SCRIPT

log = logging.getLogger(__name__)

VERSION_BYTES = 1024 * 1024  # changes carry the version of regular files up to this size (64 per batch at most)
MARK_SECONDS = 2.0  # how long after a write its changes may still come back (marked as its own)
_KINDS = {"C": "created", "M": "modified", "D": "deleted", "V": "moved"}
_TYPES = {"f": "file", "d": "dir", "l": "symlink", "o": "other"}

# One change: path, kind (created, modified, deleted, moved), type (file, dir, symlink, other), and where they apply
# from (moved), version (sha256 hex of a regular file up to VERSION_BYTES), origin "sync" and requestId (a write
# through this backend made it). A plain dict: `from` is a Python keyword.
FileChangeWire = dict[str, object]


class FilesMessage(TypedDict):
    type: Literal["files"]
    projectId: str
    workspaceId: str
    path: str
    changes: list[FileChangeWire]
    overflow: NotRequired[bool]
    reason: NotRequired[str]


class WatchingMessage(TypedDict):
    type: Literal["watching", "unwatched"]
    projectId: str
    workspaceId: str
    path: str
    folders: NotRequired[int]  # watching: how many folders the workspace's watcher watches
    reason: NotRequired[str]  # unwatched, when the server ended it: container_stopped, watcher_ended


Deliver = Callable[[Mapping[str, object]], None]


@dataclass(eq=False)
class Watch:
    """One client's watch of a folder ("" = the whole workspace)."""

    ref: WorkspaceRef
    path: str
    deliver: Deliver

    def covers(self, path: str) -> bool:
        return not self.path or path == self.path or path.startswith(self.path + "/")

    def message(self, type_: Literal["watching", "unwatched"], **extra: object) -> WatchingMessage:
        message: WatchingMessage = {
            "type": type_,
            "projectId": self.ref.project_id,
            "workspaceId": self.ref.workspace_id,
            "path": self.path,
        }
        message.update(extra)  # type: ignore[typeddict-item]
        return message


@dataclass
class _Mark:
    """Paths a write through this backend is changing, and which request wrote them. Each path's first change is
    the write's own (its files are put in place by one rename each); a later one is someone else's."""

    paths: frozenset[str]
    clean: bool
    request_id: str | None
    until: float = float("inf")
    seen: set[str] = field(default_factory=set)

    def claims(self, kind: str, path: str, source: str) -> bool:
        """Whether the change is this write's own (and, if so, the last of its path that is)."""
        if path in self.seen or not (path in self.paths or source in self.paths or (self.clean and kind in "DV")):
            return False
        self.seen.add(path)
        return True


@dataclass(eq=False)
class _Watcher:
    ref: WorkspaceRef
    container_id: str
    session: ExecSession | None = None
    task: asyncio.Task[None] | None = None
    ready: asyncio.Future[int] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    clients: list[Watch] = field(default_factory=list)
    stopping: bool = False


class Watches:
    """Every live watcher, by workspace, and the marks of the backend's own writes."""

    def __init__(
        self,
        runtime: Runtime,
        bus: EventBus,
        *,
        user: str,
        root: str,
        max_folders: int,
        batch_ms: int,
        max_batch: int,
    ) -> None:
        self.runtime = runtime
        self.bus = bus
        self.user = user
        self.root = root
        self.max_folders = max_folders
        self.batch_ms = batch_ms
        self.max_batch = max_batch
        self._watchers: dict[WorkspaceRef, _Watcher] = {}
        self._marks: dict[WorkspaceRef, list[_Mark]] = {}
        self._follower: asyncio.Task[None] | None = None

    async def start(self) -> None:
        ready = asyncio.Event()
        self._follower = asyncio.create_task(self._follow_containers(ready), name="watch-container-ends")
        await ready.wait()

    async def close(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
        await asyncio.gather(*(self._stop(w) for w in list(self._watchers.values())))

    def count(self) -> int:
        """Watchers running (for /api/v1/stats)."""
        return len(self._watchers)

    async def add(self, watch: Watch, container_id: str) -> int:
        """Start delivering the changes below `watch.path`; returns how many folders the workspace's watcher
        watches. The first client of a workspace starts its watcher (and waits for its first walk)."""
        watcher = self._watchers.get(watch.ref)
        if watcher is None or watcher.container_id != container_id or watcher.stopping:
            watcher = _Watcher(watch.ref, container_id)
            self._watchers[watch.ref] = watcher
            watcher.task = asyncio.create_task(self._run(watcher), name=f"watch-{watch.ref}")
        watcher.clients.append(watch)
        try:
            return await asyncio.shield(watcher.ready)
        except BaseException:
            await self.remove(watch)
            raise

    async def remove(self, watch: Watch) -> None:
        """Stop delivering to `watch`; the watcher stops with its last client."""
        watcher = self._watchers.get(watch.ref)
        if watcher is None or watch not in watcher.clients:
            return
        watcher.clients.remove(watch)
        if not watcher.clients:
            await self._stop(watcher)

    @contextlib.contextmanager
    def writing(
        self, ref: WorkspaceRef, paths: Iterable[str], *, clean: bool, request_id: str | None
    ) -> Iterator[None]:
        """Mark the changes of a write through this backend as its own (`origin: "sync"`, `requestId`) while it
        runs and for MARK_SECONDS after, the time its changes take to come back from the watcher. Only where a
        watcher runs (one started later never sees the write), and only a write that happened (one refused, a
        conflict, wrote nothing: its paths' next changes are someone else's)."""
        if ref not in self._watchers:
            yield
            return
        mark = _Mark(frozenset(paths), clean, request_id)
        self._marks.setdefault(ref, []).append(mark)
        try:
            yield
        except BaseException:
            self._marks[ref].remove(mark)
            raise
        mark.until = time.monotonic() + MARK_SECONDS

    async def end_workspace(self, ref: WorkspaceRef, reason: str) -> None:
        """The workspace stopped (or went away): its clients are told, and its watcher ends."""
        watcher = self._watchers.get(ref)
        if watcher is not None:
            self._tell_ended(watcher, reason)
            await self._stop(watcher)

    # -- the watcher process ----------------------------------------------------------------------------------

    async def _run(self, watcher: _Watcher) -> None:
        argv = [
            "perl",
            "-e",
            WATCH_SCRIPT,
            self.root,
            str(self.max_folders),
            str(self.batch_ms),
            str(self.max_batch),
            str(VERSION_BYTES),
        ]
        errors = bytearray()
        try:
            watcher.session = await self.runtime.open_exec(
                watcher.container_id, argv, user=self.user, workdir="/", env={}, stdin=True
            )
            await self._pump(watcher, watcher.session, errors)
        except asyncio.CancelledError:
            raise
        except IDEError as exc:
            if not watcher.ready.done():
                watcher.ready.set_exception(exc)
            else:
                log.warning("file watcher of %s failed: %s", watcher.ref, exc.message)
        except Exception as exc:  # a broken stream: the clients are told below
            log.warning("file watcher of %s failed: %s", watcher.ref, exc)
        finally:
            if self._watchers.get(watcher.ref) is watcher:
                del self._watchers[watcher.ref]
            if watcher.session is not None:
                with contextlib.suppress(Exception):
                    await watcher.session.close()
        detail = errors.decode("utf-8", "replace").strip()[-300:]
        if not watcher.ready.done():
            watcher.ready.set_exception(
                RuntimeFailure(f"The file watcher did not start in the workspace: {detail or 'it ended at once'}")
            )
        if watcher.ready.exception() is not None:  # (retrieved here too: a client that went away never will)
            return
        if not watcher.stopping:
            reason = await self._end_reason(watcher.container_id)
            log.info("file watcher of %s ended (%s): %s", watcher.ref, reason, detail or "no message")
            if not watcher.stopping:
                self._tell_ended(watcher, reason)

    async def _end_reason(self, container_id: str) -> str:
        """Why a watcher's stream ended: its container stopped (which the engine may say a moment later than the
        stream ends), or the watcher alone did."""
        for _ in range(40):
            try:
                state = await self.runtime.inspect(container_id)
            except IDEError:
                return "watcher_ended"
            if state is None or not state.running:
                return "container_stopped"
            await asyncio.sleep(0.05)
        return "watcher_ended"

    async def _pump(self, watcher: _Watcher, session: ExecSession, errors: bytearray) -> None:
        """Read the watcher's records (five NUL-terminated fields each) and hand out each batch as it ends."""
        pending = b""
        batch: list[tuple[str, ...]] = []
        overflow: list[str] = []
        while (chunk := await session.read()) is not None:
            stream, data = chunk
            if stream != STDOUT:
                errors.extend(data[: max(0, 4096 - len(errors))])
                continue
            pending += data
            fields = pending.split(b"\0")
            complete = (len(fields) - 1) // 5 * 5
            pending = b"\0".join(fields[complete:])
            for start in range(0, complete, 5):
                record = tuple(f.decode("utf-8", "surrogateescape") for f in fields[start : start + 5])
                kind = record[0]
                if kind == "R":
                    if not watcher.ready.done():
                        watcher.ready.set_result(int(record[2]))
                elif kind == "O":
                    overflow.append(record[2])
                elif kind == "B":
                    if batch or overflow:
                        self._dispatch(watcher, batch, overflow)
                    batch, overflow = [], []
                else:
                    batch.append(record)

    def _dispatch(self, watcher: _Watcher, records: list[tuple[str, ...]], overflow: list[str]) -> None:
        """One batch to every client: its folder's changes, each marked when a write of ours made it."""
        marks = self._live_marks(watcher.ref)
        changes: list[FileChangeWire] = []
        for kind, type_, path, source, version in records:
            change: FileChangeWire = {"path": _text(path), "kind": _KINDS[kind], "type": _TYPES.get(type_, "other")}
            if kind == "V":
                change["from"] = _text(source)
            if version != "-":
                change["version"] = version
            for mark in reversed(marks):  # the latest write first
                if mark.claims(kind, path, source):
                    change["origin"] = "sync"
                    change["requestId"] = mark.request_id
                    break
            changes.append(change)
        for watch in list(watcher.clients):
            mine = [c for c in (_seen_from(watch, change) for change in changes) if c is not None]
            if not mine and not overflow:
                continue
            message: FilesMessage = {
                "type": "files",
                "projectId": watch.ref.project_id,
                "workspaceId": watch.ref.workspace_id,
                "path": watch.path,
                "changes": mine,
            }
            if overflow:
                message["overflow"] = True
                message["reason"] = overflow[0]
            watch.deliver(message)

    def _live_marks(self, ref: WorkspaceRef) -> list[_Mark]:
        now = time.monotonic()
        marks = [m for m in self._marks.get(ref, []) if m.until > now]
        if marks:
            self._marks[ref] = marks
        else:
            self._marks.pop(ref, None)
        return marks

    def _tell_ended(self, watcher: _Watcher, reason: str) -> None:
        watcher.stopping = True
        for watch in watcher.clients:
            watch.deliver(watch.message("unwatched", reason=reason))
        watcher.clients.clear()

    async def _stop(self, watcher: _Watcher) -> None:
        watcher.stopping = True
        if self._watchers.get(watcher.ref) is watcher:
            del self._watchers[watcher.ref]
            self._marks.pop(watcher.ref, None)
        session = watcher.session
        if session is not None:
            with contextlib.suppress(Exception):
                await session.close_stdin()  # the watcher exits when its stdin closes
            with contextlib.suppress(Exception):
                await session.signal("KILL")
        if watcher.task is not None and watcher.task is not asyncio.current_task():
            try:
                await asyncio.wait_for(asyncio.shield(watcher.task), 5)
            except (TimeoutError, Exception):
                watcher.task.cancel()

    async def _follow_containers(self, ready: asyncio.Event) -> None:
        """End the watchers of workspaces whose container the engine reports stopped or removed."""
        async with self.bus.subscribe_all() as events:
            ready.set()
            while True:
                event = await events.get()
                if event["source"] == "docker" and event["status"] in ("exited", "died", "removed"):
                    ref = WorkspaceRef(event["projectId"], event["workspaceId"])
                    if ref in self._watchers:
                        await self.end_workspace(ref, "container_stopped")


def folder_path(raw: str) -> str:
    """A watched folder's normal form: "" for the whole workspace, else checked as any workspace path."""
    return "" if raw.strip("/.") == "" else normalize_path(raw, where="path")


def _seen_from(watch: Watch, change: FileChangeWire) -> FileChangeWire | None:
    """The change as a client watching `watch.path` sees it: a move across its folder's edge is a creation or a
    deletion; a change elsewhere is nothing."""
    path = str(change["path"])
    source = change.get("from")
    inside = watch.covers(path)
    if source is None:
        return change if inside else None
    came_from_inside = watch.covers(str(source))
    if inside and came_from_inside:
        return change
    if inside:
        seen = {k: v for k, v in change.items() if k != "from"}
        seen["kind"] = "created"
        return seen
    if came_from_inside:
        seen = {k: v for k, v in change.items() if k not in ("from", "version")}
        seen.update(path=source, kind="deleted")
        return seen
    return None


def _text(path: str) -> str:
    """A path as JSON can carry it: bytes that are not UTF-8 become U+FFFD (as in output)."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
