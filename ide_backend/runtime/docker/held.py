"""Terminals (and, with several backend processes, commands) held in their workspace (images/workspace/ide-hold): a
holder process in the container owns the PTY (or the program's pipes), the program and a numbered replay buffer;
this backend reaches it through a relay it starts with a Docker exec of its own (stdin and stdout private to this
backend). When this backend goes, the relay goes with it and the program runs on; any backend attaches again with
a seq.

Why an exec per relay and not the agent: a backend's agent (its own or the container's) ends its commands' output
with the backend; the holder keeps the output, numbered, for whichever backend attaches next. A held process costs
one exec when it starts or is attached, never one per keystroke."""

from __future__ import annotations

import asyncio
import contextlib
import struct

from ...errors import NotFound, RuntimeFailure
from ..base import STDERR, STDOUT
from .exec import ALLOWED_SIGNALS, DockerExecSession

HOLD_LABEL = "ide-backend.hold"  # on images that have ide-hold
HOLD = "/usr/local/bin/ide-hold"
HEADER = struct.Struct(">cI")
ATTACH_TIMEOUT = 15.0  # seconds for the holder's first answer (it may be replaying a megabyte)
INPUT_CHUNK = 32 * 1024


class HeldRelay:
    """One relay to a holder; implements runtime.base.HeldSession. `tty`: the holder runs its program on a PTY
    (else on pipes, its stderr apart), as it says when the relay attaches."""

    def __init__(self, session: DockerExecSession) -> None:
        self.tty = True
        self._session = session
        self.container_id = session.container_id
        self._buffer = bytearray()
        self._stderr = bytearray()
        self._ended = False
        self.seq = 0
        self.first_seq = 1
        self.next_seq = 1
        self.size = (80, 24)
        self.exit: int | None = None
        self.reason: str | None = None

    async def hello(self, since: int) -> None:
        """Ask for every frame after `since` and read the holder's answer (what it holds, the terminal's size)."""
        await self._send(b"H", str(since).encode())
        try:
            async with asyncio.timeout(ATTACH_TIMEOUT):
                frame = await self._frame()
        except TimeoutError:
            frame = None
        if frame is None:
            said = self._stderr.decode("utf-8", "replace").strip() or "the terminal's holder did not answer"
            raise RuntimeFailure(f"The terminal could not be started: {said}")
        kind, payload = frame
        if kind == b"N":
            raise NotFound(bytes(payload).decode("utf-8", "replace"))
        fields = bytes(payload).split()
        if kind != b"A" or len(fields) != 4:
            raise RuntimeFailure("The terminal's holder answered something unexpected")
        self.first_seq, self.next_seq, cols, rows = (int(f) for f in fields)
        self.size = (cols, rows)
        self.tty = cols > 0

    async def _frame(self) -> tuple[bytes, bytes] | None:
        """The next whole frame from the holder; None when the relay's stream ended."""
        while True:
            if len(self._buffer) >= HEADER.size:
                kind, length = HEADER.unpack_from(self._buffer)
                end = HEADER.size + length
                if len(self._buffer) >= end:
                    payload = bytes(self._buffer[HEADER.size : end])
                    del self._buffer[:end]
                    return kind, payload
            chunk = await self._session.read()
            if chunk is None:
                return None
            stream, data = chunk
            if stream == STDERR:
                self._stderr += data[: 4096 - len(self._stderr)]
                continue
            self._buffer += data

    async def read(self) -> tuple[int, bytes] | None:
        """The next output frame's bytes (its seq in `self.seq`); None at the exit or when the relay ended."""
        while not self._ended:
            frame = await self._frame()
            if frame is None:
                break
            kind, payload = frame
            if kind in (b"O", b"E") and len(payload) > 4:
                self.seq = int.from_bytes(payload[:4], "big")
                return (STDOUT if kind == b"O" else STDERR), payload[4:]
            if kind == b"X":
                code, _, reason = payload.decode("ascii", "replace").partition(" ")
                self.exit = int(code) if code.isdigit() else None
                self.reason = reason or None
                break
        self._ended = True
        return None

    async def _send(self, kind: bytes, payload: bytes = b"") -> None:
        await self._session.write((HEADER.pack(kind, len(payload)) + payload).hex().encode() + b"\n")

    async def write(self, data: bytes) -> None:
        for start in range(0, len(data), INPUT_CHUNK):
            await self._send(b"I", data[start : start + INPUT_CHUNK])

    async def close_stdin(self) -> None:
        """End the program's input: on pipes, once what was sent is written; a terminal has no end of input of
        its own, so there Ctrl-D, as a person would type it."""
        if self.tty:
            await self._send(b"I", b"\x04")
        else:
            await self._send(b"C")

    async def resize(self, cols: int, rows: int) -> None:
        await self._send(b"W", f"{cols} {rows}".encode())

    async def signal(self, name: str) -> None:
        name = name.removeprefix("SIG")
        if name not in ALLOWED_SIGNALS:
            raise ValueError(f"signal {name} is not allowed")
        await self._send(b"K", name.encode())

    async def exit_code(self, *, killed: bool = False) -> int | None:
        """The program's exit code; when output was left unread (a killed program), read on to the exit briefly."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5.0):
                while await self.read() is not None:
                    pass
        return self.exit

    async def close(self) -> None:
        """End this relay; the terminal runs on in its holder."""
        with contextlib.suppress(Exception):
            await self._session.close()


async def open_relay(session: DockerExecSession, since: int) -> HeldRelay:
    """A relay over an exec of ide-hold that is running: attached, or closed again when the holder refused."""
    relay = HeldRelay(session)
    try:
        await relay.hello(since)
    except BaseException:
        await session.close()
        raise
    return relay
