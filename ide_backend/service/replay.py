"""A process's output as the live channel replays it: numbered chunks in a bounded buffer, listeners (one outbox per
connection) that are cut off when they fall behind, the exit, and a terminal's screen.

Whoever attaches (the same client after a reconnect, or another tab) gets every chunk after the `seq` it names
replayed from the buffer, then live output, with no gap and no duplicate: replay and registration happen in one
step of the event loop.

Flow control: the process's pump takes no more output from the command while an attached connection has
`PACE_CHARS` characters (or half of `LISTENER_QUEUE` messages) waiting in its outbox, so the slowest attached
connection sets the pace and the command waits (the runtime stops reading it: the agent's credit, or the engine's
stream). A connection that holds back other, faster listeners of the same process for `STALL_SECONDS` is detached
and told so (`slow_consumer`); alone, a slow connection is never detached for being slow. With nobody attached the
command runs on into the bounded replay buffer. A listener that still falls `LISTENER_QUEUE` messages or `lag_limit`
characters behind (a large replay on attach) is detached too; it can attach again with the last seq it saw and lose
nothing the buffer still holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ..runtime import STDOUT, ExecSession
from .domain import WorkspaceRef
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

LISTENER_QUEUE = 4096
PACE_CHARS = 1024 * 1024  # output waiting in one connection's outbox before its processes wait for it
STALL_SECONDS = 10.0  # how long a slow listener may hold back the others of the same process


class Outbox(asyncio.Queue[Mapping[str, object]]):
    """One connection's messages waiting to be sent, with the characters of output among them."""

    def __init__(self, maxsize: int = 0) -> None:
        super().__init__(maxsize)
        self.waiting_chars = 0
        self.wakes: set[asyncio.Event] = set()  # set at every message taken: processes waiting for room here

    def _put(self, item: Mapping[str, object]) -> None:
        self.waiting_chars += _data_chars(item)
        super()._put(item)

    def _get(self) -> Mapping[str, object]:
        item = super()._get()
        self.waiting_chars -= _data_chars(item)
        for wake in self.wakes:
            wake.set()
        return item

    def behind(self) -> bool:
        """Too much waiting here for a process to take more output from its command (flow control)."""
        return self.waiting_chars >= PACE_CHARS or self.qsize() >= LISTENER_QUEUE // 2


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
    held: bool = False  # a terminal held in its workspace: seqs are its holder's, the same on every backend
    moved: asyncio.Event = field(default_factory=asyncio.Event)  # a listener took output, left, or the end came
    grew: asyncio.Event = field(default_factory=asyncio.Event)  # output was recorded, or the end came

    @property
    def running(self) -> bool:
        return self.exit is None

    @property
    def first_seq(self) -> int:
        return self.chunks[0]["seq"] if self.chunks else self.next_seq

    async def room(self) -> None:
        """Wait until every attached connection has room for more output (flow control: the slowest sets the
        pace). One that keeps faster listeners waiting for STALL_SECONDS is detached (`slow_consumer`)."""
        deadline: float | None = None
        while self.ending_reason is None:
            slow = [outbox for outbox in self.listeners if outbox.behind()]
            if not slow:
                return
            if len(slow) < len(self.listeners):  # some listener is held back by the slow ones
                deadline = deadline or time.monotonic() + STALL_SECONDS
                if time.monotonic() >= deadline:
                    for outbox in slow:
                        self._cut_off(outbox)
                    continue
            else:
                deadline = None
            self.moved.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(None if deadline is None else deadline - time.monotonic()):
                    await self.moved.wait()

    def _cut_off(self, outbox: Outbox) -> None:
        self._remove(outbox)
        slow: ErrorMessage = {
            "type": "error",
            "id": self.id,
            "code": "slow_consumer",
            "message": "Output came faster than this connection read it; attach again with the last "
            "seq you received to continue",
        }
        outbox.put_nowait(slow)

    def _remove(self, outbox: Outbox) -> None:
        self.listeners.discard(outbox)
        outbox.wakes.discard(self.moved)
        self.moved.set()
        if not self.listeners and self.running:
            self.detached_since = time.monotonic()

    def _emit(self, message: ProcessMessage) -> None:
        for outbox in list(self.listeners):
            if outbox.qsize() >= LISTENER_QUEUE - 1 or outbox.waiting_chars >= self.lag_limit:
                self._cut_off(outbox)
                continue
            outbox.put_nowait(message)

    def record(self, stream: int, text: str, seq: int | None = None) -> None:
        """Buffer one decoded chunk (dropping the oldest past the limit) and send it to every listener. `seq` is
        the chunk's number when someone else numbers them (a held terminal's holder); by default the next one."""
        if not text:
            return
        chunk: OutputMessage = {
            "type": "stdout" if stream == STDOUT else "stderr",
            "id": self.id,
            "seq": self.next_seq if seq is None else seq,
            "data": text,
        }
        self.next_seq = chunk["seq"] + 1
        self.grew.set()
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
        self.grew.set()
        self._emit(self.exit)
        for outbox in self.listeners:
            outbox.wakes.discard(self.moved)
        self.moved.set()

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
            outbox.wakes.add(self.moved)
            self.detached_since = None
        return attached

    def detach(self, outbox: Outbox) -> None:
        self._remove(outbox)

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
