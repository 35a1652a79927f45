"""A terminal attached again gets its screen back (`attach` with `screen: true`), even when the program drew its
frame long before the last 1 MiB of output: a real PTY in a real workspace, over the real websocket."""

from __future__ import annotations

import pyte
import pytest

from .harness import Server
from .helpers import Channel, new_process_id, post

pytestmark = pytest.mark.docker

# Draws a frame once, then ~1.5 MB of updates to a single cell (as a clock or a progress counter would), then waits.
PROGRAM = r"""
$| = 1;
print "\e[2J\e[1;1H== notes.txt ==\e[8;1H-- INSERT --";
for my $i (0 .. 140000) { print "\e[4;1H", $i % 10, "\e[4;2H"; }
print "\e[4;3Hdone";
sleep 120;
"""


def test_a_reattached_terminal_gets_its_screen_back(server: Server, ref: dict[str, str]) -> None:
    assert post(server, "start", ref).status_code == 200
    first = Channel(server)
    terminal = new_process_id()
    try:
        first.send(type="exec", id=terminal, command=f"perl -e '{PROGRAM}'", tty=True, cols=60, rows=10, **ref)
        first.wait_for(type="started", id=terminal)
        seen = ""
        while "done" not in seen:
            message = first.wait_for(id=terminal, timeout=60)
            seen = (seen + message.get("data", ""))[-100:]
    finally:
        first.close()  # the page reloads
    second = Channel(server)
    try:
        second.send(type="attach", id=terminal, since=0)
        attached = second.wait_for(type="attached", id=terminal)
        assert attached["firstSeq"] > 1  # the replay buffer no longer holds the frame
        second.send(type="detach", id=terminal)
        second.send(type="attach", id=terminal, since=0, screen=True)
        second.wait_for(type="attached", id=terminal)
        screen_message = second.wait_for(type="screen", id=terminal)
        assert (screen_message["cols"], screen_message["rows"]) == (60, 10)
        assert screen_message["seq"] == attached["nextSeq"] - 1
        shown = pyte.Screen(60, 10)
        pyte.Stream(shown).feed(screen_message["data"])
        assert shown.display[0].startswith("== notes.txt ==")
        assert shown.display[7].startswith("-- INSERT --")
        assert shown.display[3].startswith(f"{140000 % 10}"[0]) and "done" in shown.display[3]
        second.send(type="signal", id=terminal, signal="SIGKILL")
        second.wait_for(type="exit", id=terminal)
    finally:
        second.close()
        post(server, "stop", ref)


def _read_until(channel: Channel, terminal: str, marker: str) -> str:
    """The terminal's output on `channel` until `marker` shows in it (as output, not only as the echo of typing)."""
    seen = ""
    while marker not in seen:
        seen += channel.wait_for(id=terminal, type="stdout", timeout=30)["data"]
    return seen


def test_two_connections_share_one_terminal(server: Server, ref: dict[str, str]) -> None:
    """Two tabs on one shell: the one that started it and one that attached both type, and both see both."""
    assert post(server, "start", ref).status_code == 200
    first, second = Channel(server), Channel(server)
    terminal = new_process_id()
    try:
        first.send(type="exec", id=terminal, command="bash -l", tty=True, cols=80, rows=24, **ref)
        first.wait_for(type="started", id=terminal)
        second.send(type="attach", id=terminal, since=0)
        assert second.wait_for(type="attached", id=terminal)["running"] is True
        # The shell prints what it computes, so the echo of the typed line (`$((6*7))`) does not match the output.
        first.send(type="stdin", id=terminal, data="echo from-first-$((6*7))\r")
        for channel in (first, second):
            _read_until(channel, terminal, "from-first-42")
        second.send(type="stdin", id=terminal, data="echo from-second-$((7*8))\r")
        for channel in (first, second):
            _read_until(channel, terminal, "from-second-56")
        second.send(type="list", **ref)
        (item,) = [p for p in second.wait_for(type="processes")["items"] if p["id"] == terminal]
        assert item["attached"] == 2
        second.send(type="stdin", id=terminal, data="exit 4\r")
        assert first.wait_for(type="exit", id=terminal)["exitCode"] == 4
        assert second.wait_for(type="exit", id=terminal)["exitCode"] == 4
    finally:
        first.close()
        second.close()
        post(server, "stop", ref)
