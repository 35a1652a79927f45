"""`ide-backend shell`: a terminal in a workspace, in your own terminal, as `docker exec -it` gives one.

The local terminal goes to raw mode for the session, so every key (Ctrl-C, Ctrl-Z, Ctrl-D, arrows) goes to the
remote program as the bytes it is, and the remote PTY's output is written back as it comes. A window resize
(SIGWINCH) resizes the remote PTY. The terminal's settings are put back on the way out, however the session ends:
the program exits, the workspace stops, the connection cannot be made again, SIGTERM or SIGHUP. A network blip is
the SDK's business: the live channel connects again and attaches from the last chunk seen, so the screen goes on
where it was.
"""

from __future__ import annotations

import argparse
import asyncio
import codecs
import contextlib
import os
import select
import signal
import sys
import termios
import tty
from types import TracebackType

from ..client import Client, IDEClientError, LiveChannel, LiveProcess
from . import live, output

DEFAULT_COMMAND = "bash -l"
READ_BYTES = 64 * 1024
HANG_UP_TIMEOUT = 2.0  # seconds to pass a hang-up on before leaving
# Written after a session that did not end by its program's own exit, which may have left modes on that the local
# shell does not expect: attributes reset, cursor shown, bracketed paste, mouse reports, application cursor keys and
# keypad off, then a fresh line. (The alternate screen is left alone: leaving it also moves the cursor.)
RESET = b"\x1b[0m\x1b[?25h\x1b[?2004l\x1b[?1000l\x1b[?1002l\x1b[?1003l\x1b[?1006l\x1b[?1l\x1b>\r\n"


class RawTerminal:
    """The local terminal in raw mode between enter and exit; exit restores the settings found at enter."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.saved = termios.tcgetattr(fd)

    def __enter__(self) -> RawTerminal:
        # TCSADRAIN, not tty's default TCSAFLUSH: what was typed ahead is kept for the remote program.
        tty.setraw(self.fd, termios.TCSADRAIN)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        with contextlib.suppress(termios.error):  # the terminal may be gone (SIGHUP)
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)


def window_size(*fds: int) -> tuple[int, int]:
    """The terminal's (columns, rows), from the first of `fds` that is one; 80x24 when none is."""
    for fd in fds:
        with contextlib.suppress(OSError):
            size = os.get_terminal_size(fd)
            if size.columns and size.lines:
                return size.columns, size.lines
    return 80, 24


def run(client: Client, args: argparse.Namespace, command: str) -> int:
    if not os.isatty(sys.stdin.fileno()):
        print("ide-backend: shell needs a terminal (stdin is not one); for pipes use `exec -i`", file=sys.stderr)
        return output.USAGE
    return asyncio.run(_session(client, args, command))


async def _session(client: Client, args: argparse.Namespace, command: str) -> int:
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None
    fd_in, fd_out = sys.stdin.fileno(), sys.stdout.fileno()
    ended_by: list[int] = []

    def end(signum: int) -> None:
        ended_by.append(signum)
        main.cancel()

    cols, rows = window_size(fd_out, fd_in)
    env = live.environment(args.env)
    async with LiveChannel(client.url, client.token, reconnect_timeout=args.reconnect_timeout) as channel:
        process = await channel.exec(
            args.project, args.workspace, command, tty=True, cols=cols, rows=rows, cwd=args.cwd, env=env
        )
        keys = Keys(process, fd_in, fd_out)
        clean = False
        try:
            with RawTerminal(fd_in):
                loop.add_reader(fd_in, keys.typed)
                loop.add_signal_handler(signal.SIGWINCH, keys.resized)
                for signum in (signal.SIGTERM, signal.SIGHUP):
                    loop.add_signal_handler(signum, end, signum)
                try:
                    async for chunk in process:
                        write_all(fd_out, chunk.data.encode())
                    exit = await process
                    clean = exit.reason is None  # else it was ended from outside, midway through who knows what
                finally:
                    loop.remove_reader(fd_in)
                    for signum in (signal.SIGWINCH, signal.SIGTERM, signal.SIGHUP):
                        loop.remove_signal_handler(signum)
                    await keys.close()
                    if not clean:
                        with contextlib.suppress(OSError):
                            write_all(fd_out, RESET)
        except asyncio.CancelledError:
            if not ended_by:
                raise
            # This end of the terminal hung up (SIGHUP, SIGTERM): so does the remote one, as a closed window's would,
            # rather than leaving its shell to the server's detached-process timeout.
            with contextlib.suppress(IDEClientError, TimeoutError):
                await asyncio.wait_for(process.signal("SIGHUP"), HANG_UP_TIMEOUT)
            return 128 + ended_by[0]
    if process.missed:
        print(f"ide-backend: {process.missed} chunks of output were lost while reconnecting", file=sys.stderr)
    if exit.reason:
        print(f"ide-backend: the shell was ended: {exit.reason}", file=sys.stderr)
    return output.command_exit(exit.exit_code, exit.timed_out)


class Keys:
    """What the local terminal sends (keys, and resizes by SIGWINCH) to the remote PTY, in order, by one task."""

    def __init__(self, process: LiveProcess, fd_in: int, fd_out: int) -> None:
        self.process = process
        self.fd_in, self.fd_out = fd_in, fd_out
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._queue: asyncio.Queue[str | tuple[int, int] | None] = asyncio.Queue()
        self._sender = asyncio.create_task(self._send(), name="ide-shell-keys")

    def typed(self) -> None:
        try:
            data = os.read(self.fd_in, READ_BYTES)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the terminal hung up: nothing more will be typed
            asyncio.get_running_loop().remove_reader(self.fd_in)
            self._queue.put_nowait(None)
            return
        if text := self._decoder.decode(data):
            self._queue.put_nowait(text)

    def resized(self) -> None:
        self._queue.put_nowait(window_size(self.fd_out, self.fd_in))

    async def close(self) -> None:
        self._sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._sender

    async def _send(self) -> None:
        try:
            while (item := await self._queue.get()) is not None:
                if isinstance(item, str):
                    await self.process.write(item)
                else:
                    await self.process.resize(*item)
            await self.process.close_stdin()
        except IDEClientError:
            return  # the channel has failed: the session is ending with that error already


def write_all(fd: int, data: bytes) -> None:
    """All of `data` to a file descriptor (a terminal may take a large write in parts)."""
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:  # a descriptor left non-blocking by someone else: wait until it takes more
            select.select([], [fd], [])
            continue
        view = view[written:]
