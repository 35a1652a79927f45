"""One live exec in a container: its output stream, stdin, terminal size, signals and exit code."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import aiodocker
import aiohttp

from ..base import STDOUT
from .errors import translate_errors

# Signals every process that inherited one exec's marker: a fixed script; the marker and the signal name (from a
# fixed list) are passed as arguments. For KILL all are stopped first, so none can react (a shell running on after
# its child died) before all are gone.
_SIGNAL_MARKED = (
    'p=""; for d in /proc/[0-9]*; do if tr "\\0" "\\n" < "$d/environ" 2>/dev/null | grep -qx "IDE_EXEC_ID=$1"; '
    'then p="$p ${d#/proc/}"; fi; done; [ -z "$p" ] && exit 0; '
    '[ "$2" = KILL ] && kill -STOP $p 2>/dev/null; kill -s "$2" $p 2>/dev/null; exit 0'
)
ALLOWED_SIGNALS = frozenset({"INT", "TERM", "KILL", "HUP", "QUIT", "USR1", "USR2"})
# At most this many bytes per read(): output that is already waiting is merged up to it, so a fast producer costs
# few large websocket messages instead of many small ones. 128 KiB keeps a message under 1 MiB (a common client
# limit) even when every byte becomes a six-character JSON escape.
MAX_CHUNK = 128 * 1024


class DockerExecSession:
    """Created by DockerRuntime.open_exec. read() until None, then exit_code()."""

    def __init__(
        self,
        docker: aiodocker.Docker,
        host: str,
        container_id: str,
        execution: Any,
        stream: Any,
        marker: str,
        user: str,
        tty: bool,
    ) -> None:
        self._docker = docker
        self._host = host
        self.container_id = container_id
        self._execution = execution
        self._stream = stream
        self.marker = marker
        self._user = user
        self.tty = tty
        self._closed = False
        self._held: tuple[int, bytes] | None = None  # read from the engine, not returned yet

    async def read(self) -> tuple[int, bytes] | None:
        """The next chunk as (1 for stdout / 2 for stderr, bytes), or None at the end of the stream. Waits only
        for the first message; what the engine has sent since (of the same stream) is merged in, up to MAX_CHUNK."""
        item = self._held or await self._next()
        self._held = None
        if item is None:
            return None
        stream, data = item
        parts, size = [data], len(data)
        while size < MAX_CHUNK and self._buffered():
            following = await self._next()  # already there: no wait
            if following is None or following[0] != stream:
                self._held = following
                break
            parts.append(following[1])
            size += len(following[1])
        data = b"".join(parts) if len(parts) > 1 else data
        if len(data) > MAX_CHUNK:
            self._held, data = (stream, data[MAX_CHUNK:]), data[:MAX_CHUNK]
        return stream, data

    async def _next(self) -> tuple[int, bytes] | None:
        with translate_errors("reading command output", self._host):
            message = await self._stream.read_out()
        if message is None:
            return None
        return (STDOUT if self.tty else int(message.stream)), bytes(message.data)

    def _buffered(self) -> bool:
        """Whether aiodocker holds a parsed message already, so that reading it cannot wait (its queue is not
        public: without it, nothing is merged)."""
        queue = getattr(self._stream, "_queue", None)
        return queue is not None and len(queue) > 0

    async def write(self, data: bytes) -> None:
        with translate_errors("writing to the command's input", self._host):
            await self._stream.write_in(data)

    async def close_stdin(self) -> None:
        """Half-close the connection: the process reads end-of-file, its output keeps flowing."""
        response = self._stream._resp
        transport = response.connection.transport if response is not None and response.connection else None
        if transport is not None and transport.can_write_eof():
            transport.write_eof()

    async def resize(self, cols: int, rows: int) -> None:
        """Set the terminal size; retried briefly, since the engine refuses until the process exists."""
        deadline = time.monotonic() + 2.0
        while True:
            try:
                with translate_errors("resizing the terminal", self._host):
                    await self._execution.resize(h=rows, w=cols)
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.02)

    async def signal(self, name: str) -> None:
        """Send a signal (INT, TERM, KILL, ...) to every process the command started."""
        name = name.removeprefix("SIG")
        if name not in ALLOWED_SIGNALS:
            raise ValueError(f"signal {name} is not allowed")
        await self._wait_until_created()
        container = self._docker.containers.container(self.container_id)
        with translate_errors(f"sending SIG{name}", self._host):
            sender = await container.exec(
                ["sh", "-c", _SIGNAL_MARKED, "ide-signal", self.marker, name], user=self._user
            )
            async with sender.start(detach=False, timeout=aiohttp.ClientTimeout(total=30)) as stream:
                while await stream.read_out() is not None:
                    pass

    async def _wait_until_created(self) -> None:
        """The engine answers `start` before runc has made the process: a signal sent in between would find
        nothing carrying the marker. Wait (briefly) until the engine reports a pid or an exit."""
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            with translate_errors("looking up the command", self._host):
                info = await self._execution.inspect()
            if info.get("Pid") or (not info.get("Running") and info.get("ExitCode") is not None):
                return
            await asyncio.sleep(0.01)

    async def exit_code(self, *, killed: bool = False) -> int | None:
        """The exit code once the process is gone; None if the engine cannot tell (the container vanished).
        Under load the engine can report an exec running for a while after its output ended: wait long enough."""
        deadline = time.monotonic() + 15.0
        while True:
            try:
                with translate_errors("reading the exit code", self._host):
                    info = await self._execution.inspect()
            except Exception:
                return None
            if not info.get("Running") and info.get("ExitCode") is not None:
                return int(info["ExitCode"])
            if time.monotonic() > deadline:
                return 137 if killed else None
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            with contextlib.suppress(Exception):
                await self._stream.close()
