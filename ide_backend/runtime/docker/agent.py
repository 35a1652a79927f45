"""The warm exec path: one stream per container to its ide-agent (images/workspace/ide-agent), carrying many
commands at once: the attach stream to the container's main process, or where several backend processes share the
workspaces, an agent of each process's own started through a Docker exec. A command costs one frame each way
instead of a Docker exec create, start and inspect.

Frames are `type (1 byte) | id (u32) | length (u32) | payload`; towards the agent each goes hex-encoded on its own
line, since Docker scans attach input for a detach key sequence and hex never contains one.

Flow control (agent version 2, asked for in the ping): the agent sends at most its window (4 MiB) of a command's
output beyond what this side acknowledged, then stops reading that command's pipes, so the command blocks on write.
A session acknowledges what its reader has taken (read()), every ACK_EVERY bytes: a reader that stops reading (the
process pump pacing a slow websocket) makes the command wait, with at most the window held here.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import struct
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence

from ...errors import IDEError, NotFound, RuntimeFailure
from ..base import STDERR, STDOUT, ContainerState
from .client import DockerClient, DockerStream
from .errors import translate_errors
from .exec import MAX_CHUNK, start_exec_stream

log = logging.getLogger(__name__)

AGENT_LABEL = "ide-backend.agent"  # on images whose main process is the agent
AGENT = "ide-agent"  # the agent's program, on the image's PATH
HEADER = struct.Struct(">cII")
PING_TIMEOUT = 2.0
RETRY_AFTER = 60.0  # seconds before a container whose agent did not answer is tried again
ACK_EVERY = 1024 * 1024  # bytes read between acknowledgements; well under the agent's 4 MiB window, so it never waits
RELEASE = 2**62  # an acknowledgement meaning "no longer read": the agent lets the command run free


class AgentSession:
    """One command run by the agent; implements runtime.base.ExecSession."""

    tty = False

    def __init__(self, channel: AgentChannel, process_id: int, container_id: str) -> None:
        self._channel = channel
        self.id = process_id
        self.container_id = container_id
        # Output not read yet, oldest first. Frames of one stream that arrive before the reader gets to them are
        # merged (up to MAX_CHUNK), so a fast producer costs one read() per batch rather than one per frame.
        self._pending: deque[tuple[int, bytearray]] = deque()
        self._ended = False
        self._wakeup = asyncio.Event()
        self.exit: int | None = None
        self.start_error: str | None = None
        self._consumed = 0  # output bytes handed to the reader
        self._acked = 0  # ... of which the agent was told

    async def read(self) -> tuple[int, bytes] | None:
        """Whatever output has arrived (waiting only when there is none yet): one stream's bytes, up to
        MAX_CHUNK, in the order the agent sent them; None at the end."""
        while not self._pending:
            if self._ended:
                if self.start_error is not None:
                    raise NotFound(
                        f"The command could not be started: {self.start_error}",
                        hint="check cwd and that the program exists",
                    )
                return None
            self._wakeup.clear()
            await self._wakeup.wait()
        stream, data = self._pending.popleft()
        self._consumed += len(data)
        if self._channel.flow and self._consumed - self._acked >= ACK_EVERY:
            await self._ack(self._consumed)
        return stream, bytes(data)

    async def _ack(self, count: int) -> None:
        """Tell the agent how much output was consumed (flow control); a channel that broke has nobody to tell."""
        self._acked = count
        with contextlib.suppress(IDEError):
            await self._channel.send(b"A", self.id, str(count).encode())

    async def write(self, data: bytes) -> None:
        await self._channel.send(b"I", self.id, data)

    async def close_stdin(self) -> None:
        await self._channel.send(b"C", self.id)

    async def resize(self, cols: int, rows: int) -> None:
        """Not a terminal: nothing to resize (terminals use the Docker exec path)."""

    async def signal(self, name: str) -> None:
        await self._channel.send(b"K", self.id, name.removeprefix("SIG").encode())

    async def exit_code(self, *, killed: bool = False) -> int | None:
        """The exit code; waits briefly for the agent's report when the output was not read to its end."""
        if not self._ended and self._acked < RELEASE:
            await self._ack(RELEASE)  # the rest is not read: a command held back by flow control must run on
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5.0):
                while self.exit is None and self._channel.alive and not self._ended:
                    self._pending.clear()  # nobody reads it any more
                    self._wakeup.clear()
                    await self._wakeup.wait()
        return self.exit

    async def close(self) -> None:
        if not self._ended and self._acked < RELEASE and self._channel.alive:
            await self._ack(RELEASE)  # closed while running (killed): let the agent drain its pipes to the exit
        self._channel.forget(self.id)

    def deliver(self, kind: bytes, payload: memoryview) -> None:
        """One frame for this command. The payload is a view into the channel's buffer: copy what is kept."""
        if kind == b"O" or kind == b"E":
            stream = STDOUT if kind == b"O" else STDERR
            start = 0
            if self._pending and self._pending[-1][0] == stream:
                last = self._pending[-1][1]
                start = min(len(payload), MAX_CHUNK - len(last))
                last += payload[:start]
            for offset in range(start, len(payload), MAX_CHUNK):
                self._pending.append((stream, bytearray(payload[offset : offset + MAX_CHUNK])))
        elif kind == b"X":
            self.exit = int(bytes(payload))
            self._ended = True
        elif kind == b"F":
            self.start_error = bytes(payload).decode("utf-8", "replace")
            self.exit = 126
            self._ended = True
        else:
            return
        self._wakeup.set()

    def lost(self) -> None:
        """The channel broke: the command's fate is unknown (exit stays None)."""
        self._ended = True
        self._wakeup.set()


class AgentChannel:
    """The attach stream to one container's agent and the commands running over it."""

    def __init__(self, container_id: str, stream: DockerStream, stack: contextlib.AsyncExitStack, host: str) -> None:
        self._host = host
        self.container_id = container_id
        self._stream = stream
        self._stack = stack  # holds the attach stream open until close()
        # Random start: frames of commands an earlier backend process started must not reach this one's sessions.
        self._ids = itertools.count(1 + secrets.randbelow(2**31))
        self._sessions: dict[int, AgentSession] = {}
        self._pong: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._send_lock = asyncio.Lock()
        self._reader = asyncio.create_task(self._read_forever(), name=f"agent-{container_id[:12]}")
        self.alive = True
        self.flow = False  # the agent paces each command's output by our acknowledgements (agent version >= 2)

    @classmethod
    async def connect(cls, client: DockerClient, container_id: str, *, own: bool = False) -> AgentChannel | None:
        """Attach to the container's agent (or, `own`, start an agent of this process's own through a Docker exec)
        and ping; None when the container runs no agent (another image, or it is not up yet)."""
        async with contextlib.AsyncExitStack() as stack:
            if own:
                _, stream = await start_exec_stream(
                    stack, client, container_id, [AGENT, "--exec"], stdin=True, connect_timeout=client.timeout
                )
            else:
                container = client.api.containers.container(container_id)
                with translate_errors("attaching to the workspace agent", client.host):
                    attach = container.attach(stdin=True, stdout=True, stderr=True, detach_keys="ctrl-^")
                    stream = await DockerStream.open(stack, attach)
            channel = cls(container_id, stream, stack.pop_all(), client.host)
        try:
            await channel.send(b"P", 0, b"flow")
            version = await asyncio.wait_for(asyncio.shield(channel._pong), PING_TIMEOUT)
            channel.flow = version.isdigit() and int(version) >= 2
        except (TimeoutError, OSError, IDEError):  # OSError: the pong future fails when the channel closes
            await channel.close()
            return None
        log.info("agent %s ready in container %s", version.decode(errors="replace"), container_id[:12])
        return channel

    async def send(self, kind: bytes, process_id: int, payload: bytes = b"") -> None:
        if not self.alive:
            raise RuntimeFailure("The connection to the workspace's agent is closed; run the command again")
        line = (HEADER.pack(kind, process_id, len(payload)) + payload).hex().encode() + b"\n"
        async with self._send_lock:
            with translate_errors("talking to the workspace's agent", self._host):
                await self._stream.write(line)

    async def run(self, argv: Sequence[str], *, workdir: str, env: Mapping[str, str]) -> AgentSession:
        session = AgentSession(self, next(self._ids), self.container_id)
        self._sessions[session.id] = session
        fields = [workdir, str(len(env)), *(f"{k}={v}" for k, v in env.items()), *argv]
        await self.send(b"R", session.id, b"\0".join(f.encode() for f in fields))
        return session

    def forget(self, process_id: int) -> None:
        self._sessions.pop(process_id, None)

    async def _read_forever(self) -> None:
        buffer = bytearray()
        try:
            while (message := await self._stream.read()) is not None:
                stream, data = message
                if stream != STDOUT:
                    continue  # the agent never writes to stderr on purpose; perl warnings are not frames
                buffer += data
                # Walk the whole frames by offset and drop them in one go: payloads are handed on as views, so
                # no frame is copied out of the buffer on its own.
                offset = 0
                with memoryview(buffer) as view:
                    while len(buffer) - offset >= HEADER.size:
                        kind, process_id, length = HEADER.unpack_from(buffer, offset)
                        end = offset + HEADER.size + length
                        if len(buffer) < end:
                            break
                        with view[offset + HEADER.size : end] as payload:
                            self._dispatch(kind, process_id, payload)
                        offset = end
                del buffer[:offset]
        except Exception as exc:
            log.info("agent channel to %s ended: %s", self.container_id[:12], exc)
        finally:
            self.alive = False
            for session in self._sessions.values():
                session.lost()
            if not self._pong.done():
                self._pong.set_exception(ConnectionError("agent channel closed"))

    def _dispatch(self, kind: bytes, process_id: int, payload: memoryview) -> None:
        if kind == b"Q":
            if not self._pong.done():
                self._pong.set_result(bytes(payload))
            return
        session = self._sessions.get(process_id)
        if session is not None:
            session.deliver(kind, payload)

    async def close(self) -> None:
        self.alive = False
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader
        with contextlib.suppress(Exception):
            await self._stack.aclose()


class AgentChannels:
    """One channel per running container with the agent: connected on first use, again after the container
    restarted; None for stopped containers and images without the agent (they use Docker exec).

    A channel is the container's attach stream to its main process, the agent; or (`own`, when several backend
    processes may use one workspace) an agent this process starts for itself through a Docker exec: the container's
    stdin is one for every attached process, and two of them writing frames at once would mix them."""

    def __init__(
        self, client: DockerClient, inspect: Callable[[str], Awaitable[ContainerState | None]], own: bool = False
    ) -> None:
        self._client = client
        self._inspect = inspect
        self._own = own
        self._channels: dict[str, AgentChannel | None] = {}  # None: the container's image has no agent
        self._locks: dict[str, asyncio.Lock] = {}
        self._retry_at: dict[str, float] = {}

    async def get(self, container_id: str) -> AgentChannel | None:
        """The container's live channel, connecting it if need be; None when it has none to offer."""
        channel = self._channels.get(container_id)
        if channel is not None and channel.alive:
            return channel
        if container_id in self._channels and channel is None:
            return None
        if time.monotonic() < self._retry_at.get(container_id, 0.0):
            return None
        lock = self._locks.setdefault(container_id, asyncio.Lock())
        async with lock:  # one channel per container: two attach streams would interleave on its stdin
            channel = self._channels.get(container_id)
            if channel is not None and channel.alive:
                return channel
            state = await self._inspect(container_id)
            if state is None or not state.running:
                return None
            if AGENT_LABEL not in state.labels:
                self._channels[container_id] = None
                return None
            channel = await AgentChannel.connect(self._client, container_id, own=self._own)
            if channel is None:
                log.warning("container %s should run the agent but does not answer; using Docker exec", container_id)
                self._retry_at[container_id] = time.monotonic() + RETRY_AFTER
                return None
            self._channels[container_id] = channel
            return channel

    async def close(self) -> None:
        for channel in self._channels.values():
            if channel is not None:
                await channel.close()
