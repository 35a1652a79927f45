"""The terminal emulator behind `attach` with `screen: true`, in process: a snapshot drawn on a fresh terminal of
the same size shows exactly what the emulator shows, colours and cursor included, after full-screen redraws and
after more output than the replay buffer holds."""

from __future__ import annotations

import pyte

from ide_backend.service.terminal import TerminalScreen


def _redrawn(snapshot: str, cols: int, rows: int) -> pyte.Screen:
    screen = pyte.Screen(cols, rows)
    pyte.Stream(screen).feed(snapshot)
    return screen


def test_a_snapshot_draws_the_same_screen_with_its_attributes_and_cursor() -> None:
    term = TerminalScreen(40, 6)
    term.feed("$ ls\r\nfile-one  file-two\r\n$ vim notes.txt")
    term.feed("\x1b[2J\x1b[H\x1b[1;31m~ notes ~\x1b[0m\r\n\x1b[38;5;33mblue\x1b[0m \x1b[48;2;10;20;30mbg\x1b[0m")
    term.feed("\r\n\x1b[7mreverse\x1b[0m \x1b[4mline\x1b[0m \u4e16\u754c wide")
    term.feed("\x1b[6;1H-- INSERT --\x1b[3;5H")
    again = _redrawn(term.snapshot(), 40, 6)
    assert again.display == term.display()
    assert term.display()[0].startswith("~ notes ~") and "file-one" not in "".join(term.display())
    original = pyte.Screen(40, 6)
    pyte.Stream(original).feed(
        "$ ls\r\nfile-one  file-two\r\n$ vim notes.txt"
        "\x1b[2J\x1b[H\x1b[1;31m~ notes ~\x1b[0m\r\n\x1b[38;5;33mblue\x1b[0m \x1b[48;2;10;20;30mbg\x1b[0m"
        "\r\n\x1b[7mreverse\x1b[0m \x1b[4mline\x1b[0m \u4e16\u754c wide\x1b[6;1H-- INSERT --\x1b[3;5H"
    )
    assert [[again.buffer[y][x] for x in range(40)] for y in range(6)] == [
        [original.buffer[y][x] for x in range(40)] for y in range(6)
    ]
    assert (again.cursor.x, again.cursor.y) == (4, 2)


def test_the_screen_survives_output_past_any_buffer_and_resizes() -> None:
    term = TerminalScreen(30, 5)
    term.feed("\x1b[2J\x1b[1;1HTITLE\x1b[5;1Hstatus line")
    updates = 150_000  # ~1.6 MB of updates to one cell: the frame itself is long gone from a 1 MiB ring
    for i in range(updates):
        term.feed(f"\x1b[3;1H{i % 10}\x1b[3;2H")
    shown = _redrawn(term.snapshot(), 30, 5).display
    assert shown[0].startswith("TITLE") and shown[4].startswith("status line")
    assert shown[2].startswith(str((updates - 1) % 10))
    term.resize(40, 8)
    assert term.size == (40, 8) and _redrawn(term.snapshot(), 40, 8).display[0].startswith("TITLE")


def test_a_hidden_cursor_stays_hidden() -> None:
    term = TerminalScreen(10, 2)
    term.feed("top\x1b[?25l")
    assert term.snapshot().endswith("\x1b[?25l")


def test_a_frame_drawn_right_before_a_flood_and_the_cell_after_it_come_back_whole() -> None:
    """The page test's case, without the page: no pause between the frame and the flood, and a flood whose tail
    is cut wherever the chunks happen to end."""
    term = TerminalScreen(60, 10)
    term.resize(60, 10)  # a parse just happened (the page resizes right after attaching)
    term.feed("\x1b[2J\x1b[1;1H== notes ==\x1b[8;1H-- INSERT --")
    updates = "".join(f"\x1b[4;1H{i % 10}" for i in range(140_001))
    for start in range(0, len(updates), 4093):  # chunk ends fall inside escape sequences
        term.feed(updates[start : start + 4093])
    shown = _redrawn(term.snapshot(), 60, 10).display
    assert shown[0].startswith("== notes ==") and shown[7].startswith("-- INSERT --")
    assert shown[3].rstrip() == str(140_000 % 10)


def test_a_frame_read_in_one_chunk_with_the_start_of_a_flood_comes_back() -> None:
    """Under load the PTY is read less often, so one chunk can hold the frame and more flood than the parse budget:
    the chunk's head (the frame) is parsed, the rest of it dropped."""
    term = TerminalScreen(60, 10)
    updates = "".join(f"\x1b[4;1H{i % 10}" for i in range(140_001))
    first = "\x1b[2J\x1b[1;1H== notes ==\x1b[8;1H-- INSERT --" + updates[:200_000]
    term.feed(first)
    for start in range(200_000, len(updates), 65_536):
        term.feed(updates[start : start + 65_536])
    shown = _redrawn(term.snapshot(), 60, 10).display
    assert shown[0].startswith("== notes ==") and shown[7].startswith("-- INSERT --")
    assert shown[3].rstrip() == str(140_000 % 10)
