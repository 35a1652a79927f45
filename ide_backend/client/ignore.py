"""Which local files sync_dir leaves out: a list of .gitignore-style patterns, matched the way git does for one
.gitignore at the folder's root.

Supported:
  - blank lines and lines starting with `#` are skipped; `\\#` and `\\!` start a pattern with a literal `#` / `!`
  - `*` matches anything but `/`, `?` one character but `/`, `[abc]`, `[a-z]` and `[!abc]` one of (or none of) a set
  - `**/` at the start or in the middle matches zero or more folders, `/**` at the end everything inside
  - a pattern with no `/` other than a trailing one (`*.pyc`, `node_modules/`) matches a name at any depth; any other
    (`/dist`, `docs/*.md`) is anchored at the synced folder
  - a trailing `/` matches folders only
  - `!pattern` takes back an earlier match; the last pattern that matches decides. As in git, a file inside an
    ignored folder cannot be taken back (the folder is not even walked).
Not supported: .gitignore files of subfolders, `.git/info/exclude`, core.excludesFile, trailing-space escapes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    pattern: str  # as written
    regex: re.Pattern[str]
    negate: bool
    dir_only: bool


def _char_class(pattern: str, start: int) -> tuple[str, int] | None:
    """The regex for a `[...]` set opening at `start`, and the index after it; None when it never closes."""
    end = start + 1
    if end < len(pattern) and pattern[end] in "!^":
        end += 1
    if end < len(pattern) and pattern[end] == "]":
        end += 1  # a `]` first in the set is one of its characters
    while end < len(pattern) and pattern[end] != "]":
        end += 1
    if end >= len(pattern):
        return None
    body = pattern[start + 1 : end]
    if body[:1] in ("!", "^"):
        body = "^" + body[1:]
    body = body.replace("\\", "\\\\")
    return f"(?!/)[{body}]", end + 1


def translate(pattern: str) -> str:
    """The regex body for one glob (without anchors): `*` and `?` stop at `/`, `**` crosses folders."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if pattern.startswith("**", i) and (i == 0 or pattern[i - 1] == "/"):
            if pattern.startswith("**/", i):
                out.append("(?:.*/)?")
                i += 3
                continue
            if i + 2 == n:
                out.append(".*")
                i += 2
                continue
        if c == "*":
            while i + 1 < n and pattern[i + 1] == "*":
                i += 1  # `**` anywhere else is a plain `*`
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            found = _char_class(pattern, i)
            if found is not None:
                regex, i = found
                out.append(regex)
                continue
            out.append(re.escape(c))
        elif c == "\\" and i + 1 < n:
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def parse_rule(line: str) -> Rule | None:
    """One line of an ignore list as a rule; None for a blank line or a comment."""
    text = line.rstrip("\r\n").rstrip(" ")
    if not text or text.startswith("#"):
        return None
    negate = text.startswith("!")
    body = text[1:] if negate else text
    if body.startswith(("\\#", "\\!")):
        body = body[1:]
    dir_only = body.endswith("/")
    body = body.rstrip("/")
    if not body:
        return None
    anchored = "/" in body
    body = body.lstrip("/")
    prefix = "^" if anchored else "^(?:.*/)?"
    return Rule(text, re.compile(prefix + translate(body) + "$", re.DOTALL), negate, dir_only)


class IgnoreRules:
    """A list of patterns; `ignored(path, is_dir)` for a path relative to the synced folder, `/`-separated."""

    def __init__(self, patterns: Iterable[str] = ()) -> None:
        self.rules = [rule for line in patterns if (rule := parse_rule(line)) is not None]

    def ignored(self, path: str, is_dir: bool) -> bool:
        verdict = False
        for rule in self.rules:
            if rule.dir_only and not is_dir:
                continue
            if rule.regex.match(path):
                verdict = not rule.negate
        return verdict
