"""Docker exec: one live exec in a container (its output stream, stdin, terminal size, signals and exit code),
and running a command to its end with its output collected."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping, Sequence

import aiohttp
from aiodocker.execs import Exec

from ...errors import NotFound
from ..base import STDERR, STDOUT, ExecOutput, ExecSession
from .client import DockerClient, DockerStream
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
    """Created by open_docker_exec(); implements runtime.base.ExecSession. read() until None, then exit_code()."""

    def __init__(
        self,
        client: DockerClient,
        container_id: str,
        execution: Exec,
        stream: DockerStream,
        stack: contextlib.AsyncExitStack,
        marker: str,
        user: str,
        tty: bool,
    ) -> None:
        self._client = client
        self._host = client.host
        self.container_id = container_id
        self._execution = execution
        self._stream = stream
        self._stack = stack  # holds the stream open until close()
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
        while size < MAX_CHUNK and self._stream.buffered():
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
            message = await self._stream.read()
        if message is None:
            return None
        stream, data = message
        return (STDOUT if self.tty else int(stream)), bytes(data)

    async def write(self, data: bytes) -> None:
        with translate_errors("writing to the command's input", self._host):
            await self._stream.write(data)

    async def close_stdin(self) -> None:
        """Half-close the connection: the process reads end-of-file, its output keeps flowing."""
        self._stream.close_input()

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
        container = self._client.api.containers.container(self.container_id)
        with translate_errors(f"sending SIG{name}", self._host):
            sender = await container.exec(
                ["sh", "-c", _SIGNAL_MARKED, "ide-signal", self.marker, name], user=self._user
            )
            async with contextlib.AsyncExitStack() as stack:
                stream = await DockerStream.open(
                    stack, sender.start(detach=False, timeout=aiohttp.ClientTimeout(total=30))
                )
                while await stream.read() is not None:
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
                await self._stack.aclose()


async def open_docker_exec(
    client: DockerClient,
    container_id: str,
    argv: Sequence[str],
    *,
    user: str,
    workdir: str,
    env: Mapping[str, str],
    tty: bool,
    stdin: bool,
    marker: str,
    connect_timeout: float,
) -> DockerExecSession:
    """Create and start a Docker exec of argv, its output stream connected. `marker` goes into its environment
    as IDE_EXEC_ID: signals find every process the command starts by it."""
    async with contextlib.AsyncExitStack() as stack:
        execution, stream = await start_exec_stream(
            stack,
            client,
            container_id,
            argv,
            stdin=stdin,
            tty=tty,
            user=user,
            workdir=workdir,
            env={**env, "IDE_EXEC_ID": marker},
            connect_timeout=connect_timeout,
        )
        return DockerExecSession(client, container_id, execution, stream, stack.pop_all(), marker, user, tty)


async def start_exec_stream(
    stack: contextlib.AsyncExitStack,
    client: DockerClient,
    container_id: str,
    argv: Sequence[str],
    *,
    stdin: bool,
    connect_timeout: float,
    tty: bool = False,
    user: str = "",
    workdir: str | None = None,
    env: Mapping[str, str] | None = None,
) -> tuple[Exec, DockerStream]:
    """Create and start a Docker exec of argv (as the container's user and in its folder unless told), its stream
    held open by `stack`. Only the connect is timed: a long command's output (or a channel's) may be minutes apart."""
    container = client.api.containers.container(container_id)
    with translate_errors("creating the exec", client.host):
        execution = await container.exec(
            list(argv), stdout=True, stderr=True, stdin=stdin, tty=tty, user=user, workdir=workdir, environment=env
        )
    with translate_errors("starting the exec", client.host):
        start = execution.start(detach=False, timeout=aiohttp.ClientTimeout(sock_connect=connect_timeout))
        stream = await DockerStream.open(stack, start)
    return execution, stream


async def run_to_end(session: ExecSession, *, timeout: float, output_cap: int) -> ExecOutput | None:
    """Read the session to its end, stdout and stderr apart (each capped at output_cap bytes), then close it; on
    timeout kill the whole process tree. None when the engine cannot say how the command ended."""
    buffers = {STDOUT: bytearray(), STDERR: bytearray()}
    truncated = timed_out = False
    try:
        try:
            async with asyncio.timeout(timeout):
                while (chunk := await session.read()) is not None:
                    buf = buffers[chunk[0]]
                    room = output_cap - len(buf)
                    if room > 0:
                        buf += chunk[1][:room]
                    if len(chunk[1]) > room:
                        truncated = True
        except TimeoutError:
            timed_out = True
            await session.signal("KILL")
        exit_code = await session.exit_code(killed=timed_out)
    finally:
        await session.close()
    out, err = bytes(buffers[STDOUT]), bytes(buffers[STDERR])
    if exit_code == 126 and out.startswith(b"OCI runtime exec failed"):  # Docker exec's way of saying it
        # The engine could not start the process at all (a missing folder, most often): not the command's fault.
        detail = out.decode("utf-8", "replace").strip()
        raise NotFound(f"The command could not be started: {detail}", hint="check cwd and that the program exists")
    if exit_code is None:
        return None
    return ExecOutput(out, err, exit_code, timed_out, truncated)
