"""Live processes started over the websocket: output pumped into a bounded replay buffer and out to listeners.

A process outlives the websocket that started it. Whoever attaches (the same client after a reconnect, or another
tab) gets every chunk after the `seq` it names replayed from the buffer, then live output, with no gap and no
duplicate: replay and registration happen in one step of the event loop. A process with nobody attached is killed
after `detached_ttl` seconds; a finished one is kept `finished_ttl` seconds for late attaches.

Listeners are bounded queues too. One that falls `LISTENER_QUEUE` messages or `lag_limit` characters of output
(setting process_lag_chars) behind is detached and told so (`slow_consumer`); it can attach again with the last seq
it saw and lose nothing the buffer still holds.

Callers get a ProcessHandle: stdin, resize, signals, attach and detach, and which workspace the process runs in
(so the edge can ask whether a credential may touch it); never the runtime's session itself.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ..errors import Conflict, IDEError, NotFound
from ..runtime import STDERR, STDOUT, ExecSession, Runtime
from .bus import EventBus
from .domain import ExecSpec, WorkspaceRef
from .messages import (
    AttachedMessage,
    ErrorMessage,
    ExitMessage,
    OutputMessage,
    ProcessItem,
    ProcessMessage,
    ScreenMessage,
)
from .terminal import TerminalScreen

log = logging.getLogger(__name__)

LISTENER_QUEUE = 4096


class Outbox(asyncio.Queue[Mapping[str, object]]):
    """One connection's messages waiting to be sent, with the characters of output among them."""

    def __init__(self, maxsize: int = 0) -> None:
        super().__init__(maxsize)
        self.waiting_chars = 0

    def _put(self, item: Mapping[str, object]) -> None:
        self.waiting_chars += _data_chars(item)
        super()._put(item)

    def _get(self) -> Mapping[str, object]:
        item = super()._get()
        self.waiting_chars -= _data_chars(item)
        return item


def _data_chars(item: Mapping[str, object]) -> int:
    data = item.get("data")
    return len(data) if isinstance(data, str) else 0


@dataclass(eq=False)
class Process:
    """One exec and everything needed to replay its output."""

    id: str
    ref: WorkspaceRef
    session: ExecSession
    timeout: float | None
    command: str
    tty: bool
    buffer_limit: int
    lag_limit: int  # characters of output one listener may fall behind before it is detached
    output_cap: int
    chunks: deque[OutputMessage] = field(default_factory=deque)
    buffered: int = 0
    next_seq: int = 1
    sent_bytes: int = 0
    truncated: bool = False
    exit: ExitMessage | None = None
    listeners: set[Outbox] = field(default_factory=set)
    detached_since: float | None = None
    finished_at: float | None = None
    task: asyncio.Task[None] | None = None
    ending_reason: str | None = None
    signalled: bool = False  # a client sent it a signal: a death by signal is then no news about the container
    started_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="milliseconds"))
    screen: TerminalScreen | None = None  # a PTY's screen, kept for attaches that ask for it

    @property
    def running(self) -> bool:
        return self.exit is None

    @property
    def first_seq(self) -> int:
        return self.chunks[0]["seq"] if self.chunks else self.next_seq

    def _emit(self, message: ProcessMessage) -> None:
        for outbox in list(self.listeners):
            if outbox.qsize() >= LISTENER_QUEUE - 1 or outbox.waiting_chars >= self.lag_limit:
                self.listeners.discard(outbox)
                slow: ErrorMessage = {
                    "type": "error",
                    "id": self.id,
                    "code": "slow_consumer",
                    "message": "Output came faster than this connection read it; attach again with the last "
                    "seq you received to continue",
                }
                outbox.put_nowait(slow)
                if not self.listeners:
                    self.detached_since = time.monotonic()
                continue
            outbox.put_nowait(message)

    def record(self, stream: int, text: str) -> None:
        """Buffer one decoded chunk (dropping the oldest past the limit) and send it to every listener."""
        if not text:
            return
        chunk: OutputMessage = {
            "type": "stdout" if stream == STDOUT else "stderr",
            "id": self.id,
            "seq": self.next_seq,
            "data": text,
        }
        self.next_seq += 1
        if self.screen is not None:
            self.screen.feed(text)
        self.chunks.append(chunk)
        self.buffered += len(text)
        while self.buffered > self.buffer_limit and len(self.chunks) > 1:
            self.buffered -= len(self.chunks.popleft()["data"])
        self._emit(chunk)

    def finish(self, exit_code: int | None, *, timed_out: bool, reason: str | None) -> None:
        self.exit = {
            "type": "exit",
            "id": self.id,
            "exitCode": exit_code,
            "timedOut": timed_out,
            "truncated": self.truncated,
        }
        if reason:
            self.exit["reason"] = reason
        self.finished_at = time.monotonic()
        self._emit(self.exit)

    def attach(self, outbox: Outbox, since: int, screen: bool = False) -> AttachedMessage:
        """Replay what came after `since`, then follow live; returns the `attached` message sent first. With
        `screen`, a terminal sends its screen as it is now instead of the replay (when anything was missed)."""
        attached: AttachedMessage = {
            "type": "attached",
            "id": self.id,
            "firstSeq": self.first_seq,
            "nextSeq": self.next_seq,
            "running": self.running,
        }
        outbox.put_nowait(attached)
        if screen and self.screen is not None and since < self.next_seq - 1:
            cols, rows = self.screen.size
            snapshot: ScreenMessage = {
                "type": "screen",
                "id": self.id,
                "seq": self.next_seq - 1,
                "cols": cols,
                "rows": rows,
                "data": self.screen.snapshot(),
            }
            outbox.put_nowait(snapshot)
        else:
            for chunk in self.chunks:
                if chunk["seq"] > since:
                    outbox.put_nowait(chunk)
        if self.exit is not None:
            outbox.put_nowait(self.exit)
        else:
            self.listeners.add(outbox)
            self.detached_since = None
        return attached

    def detach(self, outbox: Outbox) -> None:
        self.listeners.discard(outbox)
        if not self.listeners and self.running:
            self.detached_since = time.monotonic()

    def describe(self) -> ProcessItem:
        """What a page needs to find this process again after a reload."""
        return {
            "id": self.id,
            "command": self.command,
            "tty": self.tty,
            "running": self.running,
            "exitCode": self.exit["exitCode"] if self.exit is not None else None,
            "startedAt": self.started_at,
            "nextSeq": self.next_seq,
            "attached": len(self.listeners),
        }


class ProcessHandle:
    """What a caller may do with one process: the only way in from outside the service."""

    def __init__(self, manager: ProcessManager, process: Process) -> None:
        self._manager = manager
        self._process = process

    @property
    def id(self) -> str:
        return self._process.id

    @property
    def ref(self) -> WorkspaceRef:
        return self._process.ref

    async def write(self, data: bytes) -> None:
        await self._process.session.write(data)

    async def close_stdin(self) -> None:
        await self._process.session.close_stdin()

    async def resize(self, cols: int, rows: int) -> None:
        await self._process.session.resize(cols, rows)
        if self._process.screen is not None:
            self._process.screen.resize(cols, rows)

    async def signal(self, name: str) -> None:
        self._process.signalled = True
        await self._process.session.signal(name)

    def attach(self, outbox: Outbox, since: int, screen: bool = False) -> AttachedMessage:
        return self._process.attach(outbox, since, screen)

    def detach(self, outbox: Outbox) -> None:
        self._process.detach(outbox)


class ProcessManager:
    """All live and recently finished processes, by the client's id (ids are global on this server). It hears of
    containers that stop from the status bus, and ends their processes' streams."""

    def __init__(
        self,
        runtime: Runtime,
        bus: EventBus,
        *,
        buffer_limit: int,
        lag_limit: int,
        output_cap: int,
        detached_ttl: float,
        finished_ttl: float,
    ) -> None:
        self.runtime = runtime
        self.bus = bus
        self.buffer_limit = buffer_limit
        self.lag_limit = lag_limit
        self.output_cap = output_cap
        self.detached_ttl = detached_ttl
        self.finished_ttl = finished_ttl
        self._processes: dict[str, Process] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._closing: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._reap_forever(), name="process-reaper"))
        ready = asyncio.Event()
        self._tasks.append(asyncio.create_task(self._follow_containers(ready), name="process-container-ends"))
        await ready.wait()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        await asyncio.gather(*(self._kill(p, "backend_shutdown") for p in list(self._processes.values())))

    def get(self, process_id: str) -> ProcessHandle:
        process = self._processes.get(process_id)
        if process is None:
            raise unknown_process(process_id)
        return ProcessHandle(self, process)

    def check_free(self, process_id: str) -> None:
        existing = self._processes.get(process_id)
        if existing is not None and existing.running:
            raise Conflict(f"Process id {process_id!r} is already running; choose a unique id per exec")

    def running_count(self) -> int:
        return sum(1 for p in self._processes.values() if p.running)

    def of_workspace(self, ref: WorkspaceRef) -> list[ProcessItem]:
        """The workspace's processes, running and recently finished, oldest first."""
        return [p.describe() for p in self._processes.values() if p.ref == ref]

    async def end_workspace(self, ref: WorkspaceRef, reason: str) -> None:
        """Kill the workspace's running processes; their exit says `reason`."""
        await asyncio.gather(*(self._kill(p, reason) for p in list(self._processes.values()) if p.ref == ref))

    def add(
        self,
        process_id: str,
        ref: WorkspaceRef,
        session: ExecSession,
        spec: ExecSpec,
        outbox: Outbox,
    ) -> ProcessHandle:
        """Register a started exec with its first listener, then start pumping its output."""
        self.check_free(process_id)
        process = Process(
            id=process_id,
            ref=ref,
            session=session,
            timeout=spec.timeout,
            command=spec.command,
            tty=spec.tty,
            screen=TerminalScreen(spec.cols, spec.rows) if spec.tty else None,
            buffer_limit=self.buffer_limit,
            lag_limit=self.lag_limit,
            output_cap=self.output_cap,
        )
        process.listeners.add(outbox)
        outbox.put_nowait({"type": "started", "id": process_id})  # ahead of any output
        self._processes[process_id] = process
        process.task = asyncio.create_task(self._pump(process), name=f"process-{process_id}")
        return ProcessHandle(self, process)

    async def _pump(self, process: Process) -> None:
        """Read the exec to its end, decoding UTF-8 incrementally per stream so no character is split."""
        decoders = {stream: codecs.getincrementaldecoder("utf-8")("replace") for stream in (STDOUT, STDERR)}
        timed_out = False
        try:
            async with asyncio.timeout(process.timeout):
                while (chunk := await process.session.read()) is not None:
                    stream, data = chunk
                    room = process.output_cap - process.sent_bytes
                    if room <= 0:
                        process.truncated = True
                        continue
                    if len(data) > room:
                        data, process.truncated = data[:room], True
                    process.sent_bytes += len(data)
                    process.record(stream, decoders[stream].decode(data))
        except TimeoutError:
            timed_out = True
            with contextlib.suppress(Exception):
                await process.session.signal("KILL")
        except asyncio.CancelledError:
            raise
        except IDEError as exc:  # e.g. the command could not be started: tell whoever watches, on stderr
            process.record(STDERR, exc.message + "\n")
        except Exception as exc:
            log.info("process %s stream ended: %s", process.id, exc)
        for stream, decoder in decoders.items():
            process.record(stream, decoder.decode(b"", final=True))
        exit_code = await process.session.exit_code(killed=timed_out or process.ending_reason is not None)
        reason = process.ending_reason
        if reason is None and not timed_out and not process.signalled:
            reason = await self._end_reason(process.session.container_id, exit_code, lambda: process.ending_reason)
        await process.session.close()
        process.finish(exit_code, timed_out=timed_out, reason=reason)

    async def _end_reason(
        self, container_id: str, exit_code: int | None, known: Callable[[], str | None]
    ) -> str | None:
        """Why a process's stream ended, when its container is the reason. A process killed by a signal may have
        died with its container a moment before the engine says so: look again for a while, and take the engine's
        die event (`known`, set when the bus reports it) as soon as it arrives."""
        deadline = time.monotonic() + (3.0 if exit_code is None or exit_code >= 128 else 0.0)
        while True:
            if known() is not None:
                return known()
            try:
                state = await self.runtime.inspect(container_id)
            except IDEError:
                return "runtime_unavailable"
            if state is None:
                return "container_removed"
            if not state.running:
                return "oom_killed" if state.oom_killed else "container_stopped"
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(0.05)

    async def _kill(self, process: Process, reason: str) -> None:
        if not process.running:
            return
        process.ending_reason = reason
        with contextlib.suppress(Exception):
            await process.session.signal("KILL")
        await process.session.close()
        if process.task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(process.task), 5)
            if process.running:
                process.task.cancel()
                process.finish(None, timed_out=False, reason=reason)

    async def _follow_containers(self, ready: asyncio.Event) -> None:
        """End the streams of processes whose container the engine reports stopped or removed."""
        async with self.bus.subscribe_all() as events:
            ready.set()
            while True:
                event = await events.get()
                if event["source"] != "docker":
                    continue
                ref = WorkspaceRef(event["projectId"], event["workspaceId"])
                if event["status"] in ("exited", "died"):
                    self._workspace_ended(ref, "container_stopped")
                elif event["status"] == "removed":
                    self._workspace_ended(ref, "container_removed")

    def _workspace_ended(self, ref: WorkspaceRef, reason: str) -> None:
        """The container stopped or died: end its processes' streams even if the engine leaves them open."""
        for process in list(self._processes.values()):
            if process.running and process.ref == ref:
                process.ending_reason = reason
                asyncio.get_running_loop().call_later(1.0, self._close_if_open, process)

    def _close_if_open(self, process: Process) -> None:
        if process.running:
            task = asyncio.create_task(process.session.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for process in list(self._processes.values()):
                if process.running and process.detached_since and now - process.detached_since > self.detached_ttl:
                    log.info("killing process %s: nobody attached for %.0f s", process.id, self.detached_ttl)
                    await self._kill(process, "detached_timeout")
                elif not process.running and process.finished_at and now - process.finished_at > self.finished_ttl:
                    del self._processes[process.id]


def unknown_process(process_id: str) -> NotFound:
    """The one answer for a process that is not there, or that the caller may not see: they must look the same."""
    return NotFound(f"No process {process_id!r} (it never ran here, or finished too long ago)")
