"""Live processes started over the websocket: each one's output pumped into its replay buffer (replay.py) and out
to its listeners, until it ends.

A process outlives the websocket that started it. A process with nobody attached is killed after `detached_ttl`
seconds; a finished one is kept `finished_ttl` seconds for late attaches. When the engine reports its container
stopped or removed (heard from the status bus), its processes' streams are ended.

A terminal held in its workspace (runtime HeldSession) outlives this backend too: its program, its replay buffer and
its seqs live in the container's holder, which counts its own detached time. Here it is one relay among others:
adopted when a client attaches to it through this backend, released (the relay closed, the terminal left running)
when nobody here has attached to it for HELD_RELEASE seconds (at most `detached_ttl`) or this backend shuts down;
so a terminal nobody attaches to anywhere is killed by its holder within twice `detached_ttl`.

Callers get a ProcessHandle: stdin, resize, signals, attach and detach, and which workspace the process runs in
(so the edge can ask whether a credential may touch it); never the runtime's session itself.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import cast

from ..errors import Conflict, IDEError, NotFound
from ..runtime import STDERR, STDOUT, ExecSession, HeldSession, Runtime
from ..store import HeldTerminalRecord, Store
from .bus import EventBus
from .domain import ExecSpec, WorkspaceRef
from .messages import AttachedMessage, ProcessItem
from .replay import LISTENER_QUEUE, Outbox, Process
from .terminal import TerminalScreen

__all__ = ["LISTENER_QUEUE", "Outbox", "ProcessHandle", "ProcessManager", "unknown_process"]

log = logging.getLogger(__name__)

HELD_RELEASE = 10.0  # seconds a held terminal stays adopted here with nobody here attached
ADOPT_CATCH_UP = 10.0  # seconds to wait for an adopted terminal's replay before answering the attach


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

    @property
    def running(self) -> bool:
        return self._process.running

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
        store: Store,
        *,
        buffer_limit: int,
        lag_limit: int,
        output_cap: int,
        detached_ttl: float,
        finished_ttl: float,
    ) -> None:
        self.runtime = runtime
        self.bus = bus
        self.store = store
        self.buffer_limit = buffer_limit
        self.lag_limit = lag_limit
        self.output_cap = output_cap
        self.detached_ttl = detached_ttl
        self.finished_ttl = finished_ttl
        self._processes: dict[str, Process] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._closing: set[asyncio.Task[None]] = set()
        self._adopting = asyncio.Lock()  # one adoption at a time: two attaches to one terminal make one relay

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
        # Held terminals run on in their workspace for another backend (or this one, restarted) to attach to.
        processes = list(self._processes.values())
        await asyncio.gather(*(self._release(p) for p in processes if p.held and p.running))
        await asyncio.gather(*(self._kill(p, "backend_shutdown") for p in processes if not p.held))

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
        held: HeldTerminalRecord | None = None,
    ) -> ProcessHandle:
        """Register a started exec with its first listener, then start pumping its output. `held`: the session
        is a relay to a terminal held in the workspace, recorded so."""
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
            held=held is not None,
        )
        if held is not None:
            process.started_at = held.started_at
        process.listeners.add(outbox)
        outbox.wakes.add(process.moved)
        outbox.put_nowait({"type": "started", "id": process_id})  # ahead of any output
        self._processes[process_id] = process
        process.task = asyncio.create_task(self._pump(process), name=f"process-{process_id}")
        return ProcessHandle(self, process)

    async def adopt(self, record: HeldTerminalRecord, attach: Callable[[], Awaitable[HeldSession]]) -> ProcessHandle:
        """A terminal held in its workspace that this backend does not relay yet: attach to its holder (which
        replays all it holds, so the screen is whole) and follow it, nobody attached here yet. Returns once the
        replay is in, so an attach with any seq gets exactly what came after it."""
        async with self._adopting:
            known = self._processes.get(record.process_id)
            if known is not None and (known.running or known.started_at == record.started_at):
                return ProcessHandle(self, known)
            session = await attach()
            cols, rows = session.size
            process = Process(
                id=record.process_id,
                ref=WorkspaceRef(record.project_id, record.workspace_id),
                session=session,
                timeout=None,
                command=record.command,
                tty=session.tty,
                screen=TerminalScreen(cols, rows) if session.tty else None,
                buffer_limit=self.buffer_limit,
                lag_limit=self.lag_limit,
                output_cap=self.output_cap,
                held=True,
                next_seq=session.first_seq,
                started_at=record.started_at,
            )
            process.detached_since = time.monotonic()
            self._processes[process.id] = process
            process.task = asyncio.create_task(self._pump(process), name=f"process-{process.id}")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(ADOPT_CATCH_UP):
                    while process.running and process.next_seq < session.next_seq:
                        process.grew.clear()
                        await process.grew.wait()
            log.info("attached to terminal %s held in %s", process.id, process.ref)
            return ProcessHandle(self, process)

    async def _release(self, process: Process) -> None:
        """Stop relaying a held terminal here; it runs on in its workspace."""
        if self._processes.get(process.id) is process:
            del self._processes[process.id]
        if process.task is not None:
            process.task.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await process.task
        await process.session.close()
        for outbox in list(process.listeners):
            process.detach(outbox)

    async def _pump(self, process: Process) -> None:
        """Read the exec to its end, decoding UTF-8 incrementally per stream so no character is split. Each chunk
        waits for room at every attached connection first (flow control): meanwhile nothing more is read, so the
        command itself waits."""
        decoders = {stream: codecs.getincrementaldecoder("utf-8")("replace") for stream in (STDOUT, STDERR)}
        timed_out = False
        try:
            async with asyncio.timeout(process.timeout):
                while (chunk := await process.session.read()) is not None:
                    stream, data = chunk
                    await process.room()
                    room = process.output_cap - process.sent_bytes
                    if room <= 0:
                        process.truncated = True
                        continue
                    if len(data) > room:
                        data, process.truncated = data[:room], True
                    process.sent_bytes += len(data)
                    seq = cast("HeldSession", process.session).seq if process.held else None
                    process.record(stream, decoders[stream].decode(data), seq)
        except TimeoutError:
            timed_out = True
            await _kill_now(process.session)
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
        if reason is None and process.held:
            reason = cast("HeldSession", process.session).reason  # the holder ended it (detached_timeout)
        if reason is None and not timed_out and not process.signalled:
            reason = await self._end_reason(process.session.container_id, exit_code, lambda: process.ending_reason)
        await process.session.close()
        process.finish(exit_code, timed_out=timed_out, reason=reason)
        if process.held:  # it ended (or its container did): no backend will find it again
            with contextlib.suppress(IDEError):
                await self.store.forget_terminal(process.id, process.started_at)

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
        process.moved.set()  # a pump waiting for a slow connection stops waiting
        await _kill_now(process.session)
        if not process.held:  # a holder reports the exit once the program is gone: the relay stays open for it
            await process.session.close()
        if process.task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(process.task), 5)
            if process.running:
                process.task.cancel()
                process.finish(None, timed_out=False, reason=reason)
        if process.held:
            await process.session.close()

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
                process.moved.set()
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
                if process.held and process.running:
                    # Its holder counts its detached time; here the relay goes once nobody here follows it.
                    release = min(HELD_RELEASE, self.detached_ttl)
                    if process.detached_since and now - process.detached_since > release:
                        await self._release(process)
                elif process.running and process.detached_since and now - process.detached_since > self.detached_ttl:
                    log.info("killing process %s: nobody attached for %.0f s", process.id, self.detached_ttl)
                    await self._kill(process, "detached_timeout")
                elif not process.running and process.finished_at and now - process.finished_at > self.finished_ttl:
                    del self._processes[process.id]


async def _kill_now(session: ExecSession) -> None:
    """SIGKILL the command. Through Docker exec the signal's own exec does not finish while this command's output
    waits unread (flow control): after a while, close the stream, which lets the engine finish both."""
    with contextlib.suppress(Exception):
        try:
            await asyncio.wait_for(session.signal("KILL"), 10)
        except TimeoutError:
            await session.close()


def unknown_process(process_id: str) -> NotFound:
    """The one answer for a process that is not there, or that the caller may not see: they must look the same."""
    return NotFound(f"No process {process_id!r} (it never ran here, or finished too long ago)")
