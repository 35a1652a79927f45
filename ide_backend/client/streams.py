"""What the live channel hands out: a LiveProcess (output to iterate, stdin, resize, signals, its exit) and a
StatusSubscription (a workspace's status events). Both are fed by the channel's reader (live.py), which also tells
a process what to send when the connection comes back.

A process counts the `seq` of what it has handed on: output seen before (replayed after a reconnect) is dropped,
and output that fell out of the server's replay buffer meanwhile is counted in `missed`, never silently skipped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Generator
from typing import TYPE_CHECKING, Generic, Literal, TypeVar

from ..api.protocol import (
    AttachedMessage,
    ErrorMessage,
    ExitMessage,
    FilesMessage,
    OutputMessage,
    ServerMessage,
    StartedMessage,
    StatusMessage,
)
from .errors import IDEClientError, from_message

if TYPE_CHECKING:
    from .live import LiveChannel

log = logging.getLogger(__name__)
E = TypeVar("E")

Signal = Literal["SIGINT", "SIGTERM", "SIGKILL", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2"]
STDIN_PIECE = 256 * 1024  # characters per stdin message (the server takes up to 1 MiB of JSON-escaped text)


class LiveProcess:
    """A process over the websocket. `async for chunk in process` gives its output (`OutputMessage`: `type` is
    "stdout" or "stderr", `data`, `seq`) until it exits; `await process` (or `wait()`) gives its `ExitMessage`.
    Output is kept until it is iterated, so a process whose output nobody reads holds all of it in memory."""

    def __init__(self, channel: LiveChannel, process_id: str, exec_message: str | None) -> None:
        self.channel = channel
        self.id = process_id
        self.last_seq = 0  # the last chunk handed on (or skipped as missed)
        self.missed = 0  # chunks the server no longer had when this attached again
        self.exit: ExitMessage | None = None
        self.error: IDEClientError | None = None  # why it ended without an exit (lost, detached, channel closed)
        self.errors: list[IDEClientError] = []  # errors about it later on (e.g. stdin after it ended)
        self._exec = exec_message  # sent again if the server never got it
        self.sent = False  # its exec (or attach) has been sent: a reconnect attaches again
        self._known = False  # the server has answered about it (started or attached)
        self._resuming = False  # an attach after a reconnect is on its way
        self._sent_again = False
        self._items: asyncio.Queue[OutputMessage | None] = asyncio.Queue()
        self._answered = asyncio.Event()  # started, attached, or refused
        self._done = asyncio.Event()
        self._drained = False

    def __repr__(self) -> str:
        state = "running" if not self._done.is_set() else f"exit={self.exit.exit_code if self.exit else None}"
        return f"LiveProcess({self.id!r}, {state}, last_seq={self.last_seq})"

    # -- for the caller ---------------------------------------------------------------------------------------

    def __aiter__(self) -> LiveProcess:
        return self

    async def __anext__(self) -> OutputMessage:
        if not self._drained:
            item = await self._items.get()
            if item is not None:
                return item
            self._drained = True
        if self.error is not None and self.error.code != "detached":
            raise self.error
        raise StopAsyncIteration

    async def wait(self) -> ExitMessage:
        """The exit (its code, whether it timed out, and the reason when the command did not end by itself)."""
        await self._done.wait()
        if self.exit is None:
            assert self.error is not None
            raise self.error
        return self.exit

    def __await__(self) -> Generator[None, None, ExitMessage]:
        return self.wait().__await__()

    @property
    def running(self) -> bool:
        return not self._done.is_set()

    async def write(self, data: str) -> None:
        """Send stdin (in a terminal, "\\r" is Enter and "\\x03" Ctrl-C). Written while the connection is down,
        it waits for the reconnect."""
        for start in range(0, max(len(data), 1), STDIN_PIECE):
            await self.channel.send({"type": "stdin", "id": self.id, "data": data[start : start + STDIN_PIECE]})

    async def close_stdin(self) -> None:
        await self.channel.send({"type": "close_stdin", "id": self.id})

    async def resize(self, cols: int, rows: int) -> None:
        await self.channel.send({"type": "resize", "id": self.id, "cols": cols, "rows": rows})

    async def signal(self, name: Signal = "SIGINT") -> None:
        """Signal every process the command started."""
        await self.channel.send({"type": "signal", "id": self.id, "signal": name})

    async def detach(self) -> None:
        """Stop following it (it keeps running on the server; attach again with `last_seq`). Iteration ends, and
        `wait()` raises an error with code "detached"."""
        self._finish(error=IDEClientError(f"Detached from process {self.id}", code="detached"))
        await self.channel.send({"type": "detach", "id": self.id})

    # -- for the channel --------------------------------------------------------------------------------------

    async def answered(self) -> None:
        """Until the server has started it (or attached this channel to it); its refusal raised."""
        await self._answered.wait()
        if self.exit is None and self.error is not None:
            raise self.error

    def resume(self) -> dict[str, object]:
        """What to send on a new connection: attach with the last seq seen."""
        self._resuming = True
        return attach(self.id, self.last_seq)

    def receive(self, message: ServerMessage) -> dict[str, object] | str | None:
        """Take one message about this process; returns what to send in answer, if anything."""
        if isinstance(message, StartedMessage):
            self._known = True
            self._answered.set()
        elif isinstance(message, AttachedMessage):
            self._known, self._resuming = True, False
            self._answered.set()
            if message.first_seq > self.last_seq + 1:  # the server's buffer no longer holds what came between
                self.missed += message.first_seq - self.last_seq - 1
                self.last_seq = message.first_seq - 1
        elif isinstance(message, OutputMessage):
            if message.seq <= self.last_seq:
                return None  # seen before the reconnect
            self.missed += message.seq - self.last_seq - 1
            self.last_seq = message.seq
            self._items.put_nowait(message)
        elif isinstance(message, ExitMessage):
            self._finish(exit=message)
        elif isinstance(message, ErrorMessage):
            return self._refused(message)
        return None

    def _refused(self, message: ErrorMessage) -> dict[str, object] | str | None:
        if message.code == "slow_consumer":  # detached by the server for reading too slowly: attach again
            return attach(self.id, self.last_seq)
        if not self._known and self._exec is not None:
            if message.code == "not_found" and self._resuming:  # the exec never reached the server: send it again
                self._resuming, self._sent_again = False, True
                return self._exec
            if message.code == "conflict" and self._sent_again:  # it did reach it after all: follow that one
                self._sent_again = False
                return self.resume()
        error = from_message(message.code, message.message)
        if not self._known or self._resuming:
            self._finish(error=error)
        else:
            log.debug("process %s: %s", self.id, error)
            self.errors.append(error)
        return None

    def fail(self, error: IDEClientError) -> None:
        """The channel gave up (or was closed) before this process exited."""
        self._finish(error=error)

    def _finish(self, *, exit: ExitMessage | None = None, error: IDEClientError | None = None) -> None:
        if self._done.is_set():
            return
        self.exit, self.error = exit, error
        self._items.put_nowait(None)
        self._done.set()
        self._answered.set()
        self.channel.forget(self)


def attach(process_id: str, since: int) -> dict[str, object]:
    return {"type": "attach", "id": process_id, "since": since}


class _Events(Generic[E]):
    """Messages of one kind from the live channel, iterated as they come, until the stream ends (with an error, or
    None for a normal end)."""

    def __init__(self, channel: LiveChannel, project_id: str, workspace_id: str) -> None:
        self.channel = channel
        self.project_id = project_id
        self.workspace_id = workspace_id
        self.active = False  # the server has confirmed it (a reconnect asks again only for these)
        self.error: IDEClientError | None = None
        self._items: asyncio.Queue[E | None] = asyncio.Queue()
        self._ended = False

    def __aiter__(self) -> _Events[E]:
        return self

    async def __anext__(self) -> E:
        if not self._ended:
            item = await self._items.get()
            if item is not None:
                return item
            self._ended = True
        if self.error is not None:
            raise self.error
        raise StopAsyncIteration

    def push(self, message: E) -> None:
        self._items.put_nowait(message)

    def end(self, error: IDEClientError | None = None) -> None:
        if self.error is None:
            self.error = error
        self._items.put_nowait(None)


class StatusSubscription(_Events[StatusMessage]):
    """A workspace's status events (`StatusMessage`), the first a snapshot; after a reconnect, a new snapshot
    (events while the connection was down are not replayed). `close()` unsubscribes."""

    def __init__(self, channel: LiveChannel, project_id: str, workspace_id: str, *, ports: bool = False) -> None:
        super().__init__(channel, project_id, workspace_id)
        self.ports = ports  # listening ports' events too (subscribe with ports)

    async def __aenter__(self) -> StatusSubscription:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.channel.unsubscribe(self)


class FileWatch(_Events[FilesMessage]):
    """The file changes below `path` of a running workspace (`FilesMessage`s, batched by the server). A message
    with `overflow` means changes were lost: list the folder again. That is also what follows a reconnect (changes
    while the connection was down are not replayed). Iteration ends when the server ends the watch (the workspace
    stopped: `reason` says so) or on `close()`."""

    def __init__(self, channel: LiveChannel, project_id: str, workspace_id: str, path: str) -> None:
        super().__init__(channel, project_id, workspace_id)
        self.path = path
        self.folders: int | None = None  # how many folders the workspace's watcher watches
        self.reason: str | None = None  # why the server ended it (container_stopped, watcher_ended)

    async def __aenter__(self) -> FileWatch:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.channel.unwatch(self)

    def lost_changes(self) -> None:
        """The connection came back: say so as an overflow (the client lists again)."""
        self.push(
            FilesMessage(
                type="files",
                project_id=self.project_id,
                workspace_id=self.workspace_id,
                path=self.path,
                changes=[],
                overflow=True,
            )
        )
