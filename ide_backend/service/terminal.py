"""A terminal emulator per PTY process (pyte), so a terminal attached again gets its screen back: a snapshot of what a
terminal showing all of the output would show now, drawn with escape sequences, rather than the tail of the replay
buffer (which for a full-screen program such as vim or top rarely holds the whole screen).

pyte parses about 0.3 MB of output a second, far slower than a terminal can write, so output is parsed lazily and
within a budget: chunks wait until a snapshot or a resize needs the screen, or until STEP_CHARS of them have gathered
and STEP_INTERVAL has passed since the last parse (so a quiet full-screen program such as vim is parsed as it goes,
at a few milliseconds a step). Of a flood, only the last TAIL_CHARS wait. Older chunks are parsed while a budget
allows (BUDGET_RATE characters a second, up to BUDGET_BURST at once: what a program drew just before it began to
flood is parsed, not lost, even when one read holds it and much of the flood) and dropped unparsed beyond it. After a
gap the parse starts at the next escape sequence or line, never in the middle of one, so the screen is what its state
before the gap plus what followed make of it: for plain output the screen exactly, and never worse than the replay
buffer's tail.
"""

from __future__ import annotations

import time
from collections import deque

import pyte

STEP_CHARS = 16 * 1024
STEP_INTERVAL = 2.0
TAIL_CHARS = 64 * 1024
BUDGET_RATE = 16 * 1024  # characters a second parsed from a flood's head rather than dropped
BUDGET_BURST = 64 * 1024
_RESYNC_WINDOW = 4096  # how far after a gap the next escape sequence or line is looked for

_NAMED = {"black": 0, "red": 1, "green": 2, "brown": 3, "yellow": 3, "blue": 4, "magenta": 5, "cyan": 6, "white": 7}


def _color(value: str, base: int) -> str:
    """The SGR parameters for one of pyte's colours: a name (`red`, `brightred`), or six hex digits."""
    if value == "default":
        return str(base + 9)
    bright = value.startswith("bright")
    name = value.removeprefix("bright")
    if name in _NAMED:
        return str(base + 60 + _NAMED[name]) if bright else str(base + _NAMED[name])
    if len(value) == 6:
        try:
            r, g, b = (int(value[i : i + 2], 16) for i in (0, 2, 4))
        except ValueError:
            return str(base + 9)
        return f"{base + 8};2;{r};{g};{b}"
    return str(base + 9)


def _sgr(char: pyte.screens.Char) -> str:
    parts = ["0", _color(char.fg, 30), _color(char.bg, 40)]
    for flag, code in (
        (char.bold, "1"),
        (char.italics, "3"),
        (char.underscore, "4"),
        (char.blink, "5"),
        (char.reverse, "7"),
        (char.strikethrough, "9"),
    ):
        if flag:
            parts.append(code)
    return "\x1b[" + ";".join(parts) + "m"


def _resynced(text: str) -> str:
    """Text that follows a gap, from the first place a parse can start cleanly: the next escape sequence or line
    (the text before it may be the end of a sequence whose start was dropped)."""
    window = text[:_RESYNC_WINDOW]
    starts = [i for i in (window.find("\x1b"), window.find("\n")) if i >= 0]
    if starts:
        return text[min(starts) :]
    return text if len(text) > _RESYNC_WINDOW else ""  # a short piece with no clean start: nothing to parse


class TerminalScreen:
    """The screen of one PTY, kept from its output."""

    def __init__(self, cols: int, rows: int) -> None:
        self._screen = pyte.Screen(cols, rows)
        self._stream = pyte.Stream(self._screen)
        self._pending: deque[str] = deque()
        self._pending_chars = 0
        self._parsed_at = 0.0
        self._gap = False  # output was dropped before the oldest pending chunk
        self._budget = float(BUDGET_BURST)
        self._budget_at = time.monotonic()

    @property
    def size(self) -> tuple[int, int]:
        return self._screen.columns, self._screen.lines

    def feed(self, text: str) -> None:
        """Output the PTY wrote (decoded); applied to the screen when it is next needed."""
        self._pending.append(text)
        self._pending_chars += len(text)
        if self._pending_chars > TAIL_CHARS:
            now = time.monotonic()
            self._budget = min(BUDGET_BURST, self._budget + (now - self._budget_at) * BUDGET_RATE)
            self._budget_at = now
            while self._pending_chars > TAIL_CHARS and len(self._pending) > 1:
                oldest = self._pending.popleft()
                self._pending_chars -= len(oldest)
                head = oldest[: int(self._budget)]
                self._budget -= len(head)
                if head:
                    self._parse(head)
                if len(head) < len(oldest):
                    self._gap = True
        elif self._pending_chars >= STEP_CHARS and time.monotonic() - self._parsed_at >= STEP_INTERVAL:
            self._apply()

    def resize(self, cols: int, rows: int) -> None:
        self._apply()
        self._screen.resize(rows, cols)

    def _apply(self) -> None:
        text = "".join(self._pending)
        self._pending.clear()
        self._pending_chars = 0
        self._parsed_at = time.monotonic()
        if len(text) > TAIL_CHARS:
            text, self._gap = text[-TAIL_CHARS:], True
        self._parse(text)

    def _parse(self, text: str) -> None:
        if self._gap:
            # The parser may have stopped inside a sequence whose end was dropped: a new one, on the same screen.
            self._stream = pyte.Stream(self._screen)
            text = _resynced(text)
            self._gap = False
        self._stream.feed(text)

    def snapshot(self) -> str:
        """Escape sequences that draw the screen as it is now on a terminal of the same size: cleared, each row
        with its colours and attributes, then the cursor where it is (hidden if the program hid it)."""
        self._apply()
        screen = self._screen
        out = ["\x1b[0m\x1b[H\x1b[2J"]
        default = screen.default_char
        for y in range(screen.lines):
            row = screen.buffer[y]
            last = max((x for x in range(screen.columns) if row[x] != default), default=-1)
            if last < 0:
                continue
            out.append(f"\x1b[{y + 1};1H")
            current = ""
            for x in range(last + 1):
                char = row[x]
                if char.data == "":
                    continue  # the right half of a wide character
                sgr = _sgr(char)
                if sgr != current:
                    out.append(sgr)
                    current = sgr
                out.append(char.data)
        out.append(f"\x1b[0m\x1b[{screen.cursor.y + 1};{screen.cursor.x + 1}H")
        out.append("\x1b[?25l" if screen.cursor.hidden else "\x1b[?25h")
        return "".join(out)

    def display(self) -> list[str]:
        """The screen's text, row by row (for tests and logs)."""
        self._apply()
        return list(self._screen.display)
