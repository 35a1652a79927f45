"""`ide-backend shell` in a real pseudo-terminal (pexpect), as a person at a terminal uses it: typing commands,
resizing the window, Ctrl-C for a remote `sleep`, full-screen programs (less, top), and the local terminal's
settings (`stty -a`) the same after the session as before it, also when it ends badly (the workspace stopped under
it, the connection gone for good, SIGTERM). A network blip is made for real by a TCP relay between the command and
the server that drops its connections: the session goes on, and output written meanwhile arrives once."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import signal
import socket
import struct
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pexpect
import pytest

from ide_backend.client import Client

from .harness import ROOT, Server, remove_instance
from .helpers import start_server

pytestmark = pytest.mark.docker

PROMPT = r"\$ "  # the end of bash's prompt in the workspace image (colours before it)


class Session:
    """`ide-backend shell` started by `sh` in a pty of its own; `sh` prints `stty -a` before it and after it."""

    def __init__(self, url: str, token: str, project: str, *options: str, rows: int = 24, cols: int = 80) -> None:
        self.project = project
        shell = [sys.executable, "-m", "ide_backend", "shell", *options, project, "w"]
        script = f"echo BEFORE; stty -a; echo END; {shlex.join(shell)}; echo EXIT=$?; echo AFTER; stty -a; echo END"
        env = {**os.environ, "IDE_URL": url, "IDE_TOKEN": token, "TERM": "xterm-256color"}
        self.seen = io.StringIO()
        self.child: Any = pexpect.spawn(
            "/bin/sh", ["-c", script], env=env, cwd=str(ROOT), dimensions=(rows, cols), encoding="utf-8", timeout=30
        )
        self.child.logfile_read = self.seen
        self.child.expect("BEFORE")
        self.child.expect("END")
        self.before = settings(self.child.before)

    def expect(self, pattern: str, timeout: float = 30) -> None:
        self.child.expect(pattern, timeout=timeout)

    def run(self, line: str, output: str, timeout: float = 30) -> None:
        """Type a line and wait for `output` (a regex) to show."""
        self.child.send(line + "\r")
        self.expect(output, timeout)

    def finish(self, timeout: float = 30) -> int:
        """Until the shell command has ended: its exit code; the terminal's settings must be as before it."""
        self.expect(r"EXIT=(\d+)", timeout)
        code = int(self.child.match.group(1))
        self.expect("AFTER")
        self.expect("END")
        after = settings(self.child.before)
        self.child.expect(pexpect.EOF)
        assert after == self.before, f"the terminal was not restored:\nbefore {self.before}\nafter  {after}"
        return code

    def close(self) -> None:
        if self.child.isalive():
            self.child.terminate(force=True)

    def cli_pid(self) -> int:
        """The pid of the `ide-backend shell` process (sh's child)."""
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    argv = (entry / "cmdline").read_bytes().split(b"\0")
                    if b"shell" in argv and self.project.encode() in argv:
                        return int(entry.name)
        raise AssertionError("no ide-backend shell process")


def settings(stty: str) -> str:
    """`stty -a` without the window size (which the tests change on purpose) and its line breaks (which follow it)."""
    return " ".join(re.sub(r"rows \d+; columns \d+;", "", stty).split())


class Relay:
    """A TCP relay (threads) between the command and the server: cut() drops every connection through it as a
    network failure would (a reset), hold() also refuses new ones until release()."""

    def __init__(self, server: Server) -> None:
        self.target = ("127.0.0.1", int(server.url.rsplit(":", 1)[1]))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.accepted = 0
        self.held = False
        self.closed = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.held:
                conn.close()
                continue
            up = socket.create_connection(self.target)
            self.accepted += 1
            with self._lock:
                self._sockets += [conn, up]
            for source, sink in ((conn, up), (up, conn)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def cut(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # a reset, not a FIN
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def hold(self) -> None:
        self.held = True
        self.cut()

    def release(self) -> None:
        self.held = False

    def close(self) -> None:
        self.closed = True
        self.hold()
        self.listener.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, docker_engine: None) -> Iterator[Server]:
    """A server of this module's own that keeps a process nobody follows for 30 s (the tests' 3 s would end a
    shell during a blip of a few seconds, and could not tell the shell's own hang-up from the server's clean-up)."""
    srv = start_server(tmp_path_factory.mktemp("shell"), IDE_PROCESS_DETACHED_TTL="30")
    try:
        yield srv
    finally:
        srv.stop()
        remove_instance(srv.instance)


@pytest.fixture
def project(server: Server) -> Iterator[str]:
    """A project with a running workspace `w`, deleted afterwards."""
    name = "sh-" + uuid.uuid4().hex[:8]
    with Client(server.url, server.token) as client:
        client.workspace(name, "w").start()
        yield name
        client.workspace(name, "w").delete()


@pytest.fixture
def relay(server: Server) -> Iterator[Relay]:
    r = Relay(server)
    yield r
    r.close()


@contextlib.contextmanager
def session(url: str, token: str, project: str, *options: str, rows: int = 24, cols: int = 80) -> Iterator[Session]:
    s = Session(url, token, project, *options, rows=rows, cols=cols)
    try:
        yield s
    except BaseException:
        print("the terminal showed:", repr(s.seen.getvalue()[-3000:]))  # pytest shows it with the failure
        raise
    finally:
        s.close()


def test_typing_resizing_ctrl_c_full_screen_programs_and_the_terminal_restored(server: Server, project: str) -> None:
    with session(server.url, server.token, project) as s:
        s.expect(PROMPT)
        s.run("echo hello-$((6 * 7))", "hello-42")
        s.run("stty size", "24 80")
        s.child.setwinsize(30, 100)  # the kernel sends the shell command SIGWINCH, as a window resize does
        s.run("stty size", "30 100")
        s.child.setwinsize(40, 132)
        s.run("stty size", "40 132")

        s.run("sleep 100", "sleep 100")
        time.sleep(0.5)
        began = time.monotonic()
        s.child.send("\x03")  # a byte in raw mode: the remote terminal turns it into SIGINT for sleep
        s.expect(PROMPT, timeout=10)
        assert time.monotonic() - began < 5
        s.run("echo status-$?", "status-130")

        s.run("seq 1 500 > numbers.txt; less numbers.txt", re.escape("\x1b[?1049h"))  # the alternate screen
        s.expect(r"\r\n39\r\n")  # 40 rows: lines 1-39 and less's own
        s.child.send("G")  # to the end
        s.expect(r"500")
        s.child.send("q")
        s.expect(re.escape("\x1b[?1049l"))
        s.expect(PROMPT)

        s.run("top -d 0.5", "Tasks:")
        s.child.send("q")
        s.expect(PROMPT)
        s.run("echo after-top-$((2 + 3))", "after-top-5")

        s.child.send("exit 7\r")
        assert s.finish() == 7


def test_the_terminal_is_restored_when_the_workspace_stops_under_the_shell(server: Server, project: str) -> None:
    with session(server.url, server.token, project) as s:
        s.expect(PROMPT)
        s.run("tput civis; printf '\\033[31mred'", "red")  # cursor hidden, colour on: the end puts them back
        with Client(server.url, server.token) as client:
            client.workspace(project, "w").stop()
        s.expect("the shell was ended: container_stopped")
        assert s.finish() != 0
        assert "\x1b[0m\x1b[?25h\x1b[?2004l" in s.seen.getvalue()  # after the colour and cursor, bash's paste mode


def test_the_terminal_is_restored_on_sigterm(server: Server, project: str) -> None:
    with session(server.url, server.token, project) as s:
        s.expect(PROMPT)
        os.kill(s.cli_pid(), signal.SIGTERM)
        assert s.finish() == 128 + signal.SIGTERM
    # and the remote shell was hung up too, at once (the server's own clean-up of a process nobody follows would
    # take IDE_PROCESS_DETACHED_TTL, 30 s here)
    with Client(server.url, server.token) as client:
        deadline = time.monotonic() + 10
        while "bash -l" in (shells := client.workspace(project, "w").exec("ps -eo args").output):
            assert time.monotonic() < deadline, shells
            time.sleep(0.1)


def test_a_network_blip_is_made_good_and_output_meanwhile_arrives_once(
    server: Server, project: str, relay: Relay
) -> None:
    with session(relay.url, server.token, project) as s:
        s.expect(PROMPT)
        s.run("sleep 0.5; echo blip-$((1 + 1))", re.escape("sleep 0.5; echo blip-$((1 + 1))"))
        relay.hold()  # the connection drops, and none is taken for 2 s: the output is written meanwhile
        time.sleep(2)
        relay.release()
        s.expect("blip-2", timeout=20)
        s.expect(PROMPT)
        s.run("echo still-$((2 + 2))", "still-4")
        relay.cut()  # dropped again, this time taken back at once
        s.run("echo again-$((3 + 3))", "again-6")
        s.child.send("exit\r")
        assert s.finish() == 0
    assert relay.accepted >= 3
    assert s.seen.getvalue().count("blip-2") == 1


def test_a_connection_gone_for_good_ends_the_shell_with_6(server: Server, project: str, relay: Relay) -> None:
    with session(relay.url, server.token, project, "--reconnect-timeout", "2") as s:
        s.expect(PROMPT)
        relay.hold()
        s.expect("could not be opened again", timeout=30)
        assert s.finish() == 6
