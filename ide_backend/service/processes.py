"""Live processes started over the websocket: output pumped into a bounded replay buffer and out to listeners.

A process outlives the websocket that started it. Whoever attaches (the same client after a reconnect, or another
tab) gets every chunk after the `seq` it names replayed from the buffer, then live output, with no gap and no
duplicate: replay and registration happen in one step of the event loop. A process with nobody attached is killed
after `detached_ttl` seconds; a finished one is kept `finished_ttl` seconds for late attaches.

Listeners are bounded queues too. One that falls `LISTENER_QUEUE` messages or `lag_limit` characters of output
(setting process_lag_chars) behind is detached and told so (`slow_consumer`); it can attach again with the last seq
it saw and lose nothing the buffer still holds.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import Conflict, IDEError, NotFound
from ..runtime import STDERR, STDOUT, ExecSession

log = logging.getLogger(__name__)

LISTENER_QUEUE = 4096


class Outbox(asyncio.Queue[dict[str, Any]]):
    """One connection's messages waiting to be sent, with the characters of output among them."""

    def __init__(self, maxsize: int = 0) -> None:
        super().__init__(maxsize)
        self.waiting_chars = 0

    def _put(self, item: dict[str, Any]) -> None:
        self.waiting_chars += len(item.get("data", ""))
        super()._put(item)

    def _get(self) -> dict[str, Any]:
        item = super()._get()
        self.waiting_chars -= len(item.get("data", ""))
        return item


@dataclass(eq=False)
class Process:
    """One exec and everything needed to replay its output."""

    id: str
    project_id: str
    workspace_id: str
    session: ExecSession
    timeout: float | None
    buffer_limit: int
    lag_limit: int  # characters of output one listener may fall behind before it is detached
    output_cap: int
    chunks: deque[dict[str, Any]] = field(default_factory=deque)
    buffered: int = 0
    next_seq: int = 1
    sent_bytes: int = 0
    truncated: bool = False
    exit: dict[str, Any] | None = None
    listeners: set[Outbox] = field(default_factory=set)
    detached_since: float | None = None
    finished_at: float | None = None
    task: asyncio.Task[None] | None = None
    ending_reason: str | None = None
    signalled: bool = False  # a client sent it a signal: a death by signal is then no news about the container

    @property
    def running(self) -> bool:
        return self.exit is None

    @property
    def first_seq(self) -> int:
        return int(self.chunks[0]["seq"]) if self.chunks else self.next_seq

    def _emit(self, message: dict[str, Any]) -> None:
        for outbox in list(self.listeners):
            if outbox.qsize() >= LISTENER_QUEUE - 1 or outbox.waiting_chars >= self.lag_limit:
                self.listeners.discard(outbox)
                outbox.put_nowait(
                    {
                        "type": "error",
                        "id": self.id,
                        "code": "slow_consumer",
                        "message": "Output came faster than this connection read it; attach again with the last "
                        "seq you received to continue",
                    }
                )
                if not self.listeners:
                    self.detached_since = time.monotonic()
                continue
            outbox.put_nowait(message)

    def record(self, stream: int, text: str) -> None:
        """Buffer one decoded chunk (dropping the oldest past the limit) and send it to every listener."""
        if not text:
            return
        chunk = {"type": "stdout" if stream == STDOUT else "stderr", "id": self.id, "seq": self.next_seq, "data": text}
        self.next_seq += 1
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

    def attach(self, outbox: Outbox, since: int) -> dict[str, Any]:
        """Replay what came after `since`, then follow live; returns the `attached` message to send first."""
        attached = {
            "type": "attached",
            "id": self.id,
            "firstSeq": self.first_seq,
            "nextSeq": self.next_seq,
            "running": self.running,
        }
        outbox.put_nowait(attached)
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


ReasonLookup = Callable[[str, int | None, Callable[[], str | None]], Awaitable[str | None]]


class ProcessManager:
    """All live and recently finished processes, by the client's id (ids are global on this server)."""

    def __init__(
        self,
        *,
        buffer_limit: int,
        lag_limit: int,
        output_cap: int,
        detached_ttl: float,
        finished_ttl: float,
        end_reason: ReasonLookup,
    ) -> None:
        self.buffer_limit = buffer_limit
        self.lag_limit = lag_limit
        self.output_cap = output_cap
        self.detached_ttl = detached_ttl
        self.finished_ttl = finished_ttl
        self._end_reason = end_reason
        self._processes: dict[str, Process] = {}
        self._reaper: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._reaper = asyncio.create_task(self._reap_forever(), name="process-reaper")

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        await asyncio.gather(*(self._kill(p, "backend_shutdown") for p in list(self._processes.values())))

    def get(self, process_id: str) -> Process:
        process = self._processes.get(process_id)
        if process is None:
            raise NotFound(f"No process {process_id!r} (it never ran here, or finished too long ago)")
        return process

    async def signal(self, process_id: str, name: str) -> None:
        process = self.get(process_id)
        process.signalled = True
        await process.session.signal(name)

    def check_free(self, process_id: str) -> None:
        existing = self._processes.get(process_id)
        if existing is not None and existing.running:
            raise Conflict(f"Process id {process_id!r} is already running; choose a unique id per exec")

    def running_count(self) -> int:
        return sum(1 for p in self._processes.values() if p.running)

    def add(
        self,
        process_id: str,
        project_id: str,
        workspace_id: str,
        session: ExecSession,
        timeout: float | None,
        outbox: Outbox,
    ) -> Process:
        """Register a started exec with its first listener, then start pumping its output."""
        self.check_free(process_id)
        process = Process(
            id=process_id,
            project_id=project_id,
            workspace_id=workspace_id,
            session=session,
            timeout=timeout,
            buffer_limit=self.buffer_limit,
            lag_limit=self.lag_limit,
            output_cap=self.output_cap,
        )
        process.listeners.add(outbox)
        outbox.put_nowait({"type": "started", "id": process_id})  # ahead of any output
        self._processes[process_id] = process
        process.task = asyncio.create_task(self._pump(process), name=f"process-{process_id}")
        return process

    async def _pump(self, process: Process) -> None:
        """Read the exec to its end, decoding UTF-8 incrementally per stream so no character is split."""
        decoders = {stream: codecs.getincrementaldecoder("utf-8")("replace") for stream in (1, 2)}
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

    def workspace_ended(self, project_id: str, workspace_id: str, reason: str) -> None:
        """The container stopped or died: end its processes' streams even if the engine leaves them open."""
        for process in list(self._processes.values()):
            if process.running and (process.project_id, process.workspace_id) == (project_id, workspace_id):
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
