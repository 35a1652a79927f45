"""`ide-backend exec` over the live channel: the command's output as it is written (stdout to stdout, stderr to
stderr), the local stdin passed on with -i, the first Ctrl-C sent to the command as SIGINT (a second as
SIGKILL), and the command's exit code as this process's. A dropped connection is made good by the SDK (it attaches
again from the last chunk seen), so nothing is printed twice or lost while the server's buffer holds it."""

from __future__ import annotations

import argparse
import asyncio
import codecs
import contextlib
import os
import shlex
import signal
import sys
import threading
from collections.abc import Sequence

from ..client import Client, IDEClientError, InvalidRequestError, LiveChannel, LiveProcess
from . import output

READ_BYTES = 64 * 1024
KILL_TIMEOUT = 2.0  # seconds to pass a second Ctrl-C on as SIGKILL before leaving


def command_text(argv: Sequence[str]) -> str:
    """The shell command to run: one argument as it is (`'make && ./run'`), several quoted word by word
    (`ls -la 'my file'`), so what is typed runs as typed. A leading `--` is dropped."""
    words = list(argv[1:] if argv and argv[0] == "--" else argv)
    if not words:
        raise InvalidRequestError("A command to run is missing", code="usage")
    return words[0] if len(words) == 1 else shlex.join(words)


def environment(items: Sequence[str] | None) -> dict[str, str] | None:
    """`-e NAME=VALUE` (or `-e NAME`, passing this process's own value) as the env mapping."""
    if not items:
        return None
    env: dict[str, str] = {}
    for item in items:
        name, equals, value = item.partition("=")
        if not equals:
            if name not in os.environ:
                raise InvalidRequestError(f"-e {name}: no value given and none in this environment", code="usage")
            value = os.environ[name]
        env[name] = value
    return env


def exec_streaming(client: Client, args: argparse.Namespace, command: str, env: dict[str, str] | None) -> int:
    return asyncio.run(_stream(client, args, command, env))


async def _stream(client: Client, args: argparse.Namespace, command: str, env: dict[str, str] | None) -> int:
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None
    interrupts: list[asyncio.Task[None]] = []
    async with LiveChannel(client.url, client.token, reconnect_timeout=args.reconnect_timeout) as channel:
        process = await channel.exec(args.project, args.workspace, command, cwd=args.cwd, env=env, timeout=args.timeout)
        feeder = asyncio.create_task(_feed_stdin(process) if args.interactive else process.close_stdin())

        def interrupted() -> None:
            if interrupts:  # the second Ctrl-C: the command did not stop for SIGINT
                main.cancel()
            else:
                print("\nide-backend: sent SIGINT to the command (Ctrl-C again to kill it)", file=sys.stderr)
                interrupts.append(asyncio.create_task(process.signal("SIGINT")))

        loop.add_signal_handler(signal.SIGINT, interrupted)
        try:
            async for chunk in process:
                stream = sys.stdout.buffer if chunk.type == "stdout" else sys.stderr.buffer
                stream.write(chunk.data.encode())
                stream.flush()
            exit = await process
        except asyncio.CancelledError:
            if not interrupts:
                raise
            with contextlib.suppress(IDEClientError, TimeoutError):  # best effort: the connection may be what hangs
                await asyncio.wait_for(process.signal("SIGKILL"), KILL_TIMEOUT)
            print("ide-backend: sent SIGKILL to the command", file=sys.stderr)
            return output.INTERRUPTED
        finally:
            loop.remove_signal_handler(signal.SIGINT)
            feeder.cancel()
    if process.missed:
        print(f"ide-backend: {process.missed} chunks of output were lost while reconnecting", file=sys.stderr)
    if exit.reason:
        print(f"ide-backend: the command was ended: {exit.reason}", file=sys.stderr)
    elif exit.timed_out:
        print(f"ide-backend: the command ran out of its {args.timeout:g} s timeout", file=sys.stderr)
    return output.command_exit(exit.exit_code, exit.timed_out)


async def _feed_stdin(process: LiveProcess) -> None:
    """This process's stdin to the command's, then its end. Read by a daemon thread: a blocking read (a file, a
    pipe, a terminal) cannot hold up the loop, nor the exit once the command is done."""
    loop = asyncio.get_running_loop()
    pieces: asyncio.Queue[bytes] = asyncio.Queue()

    def read() -> None:
        while True:
            try:
                data = os.read(sys.stdin.fileno(), READ_BYTES)
            except OSError:
                data = b""
            try:
                loop.call_soon_threadsafe(pieces.put_nowait, data)
            except RuntimeError:  # the loop is gone: the command ended first
                return
            if not data:
                return

    threading.Thread(target=read, name="ide-stdin", daemon=True).start()
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    while data := await pieces.get():
        if text := decoder.decode(data):
            await process.write(text)
    if rest := decoder.decode(b"", final=True):
        await process.write(rest)
    await process.close_stdin()
