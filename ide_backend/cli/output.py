"""What the client commands print and the exit codes they end with: tables for people, JSON for scripts, and the
SDK's error tree folded into a few codes a shell script can test.

    0  done                      4  conflict (409: not running, a fork's target exists, a file changed)
    1  any other failure         5  credential (401, 403, 429: no, wrong, expired or narrower token)
    2  usage (bad arguments; 400, 422)    6  unavailable (the server cannot be reached, or answers 503)
    3  not found (404)           130  interrupted (Ctrl-C)

`exec` and `shell` end with the command's own exit code instead once it has run (124 when its --timeout ran out).
"""

from __future__ import annotations

import datetime
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TextIO

from pydantic import BaseModel

from ..client.errors import (
    BadRequestError,
    ConflictError,
    ForbiddenError,
    IDEClientError,
    IDEConnectionError,
    InvalidRequestError,
    NotFoundError,
    TooManyAttemptsError,
    UnauthorizedError,
    UnavailableError,
)

OK = 0
FAILED = 1
USAGE = 2
NOT_FOUND = 3
CONFLICT = 4
AUTH = 5
UNAVAILABLE = 6
TIMED_OUT = 124  # exec/shell: the command's --timeout ran out (as timeout(1) says it)
INTERRUPTED = 130

_BY_CLASS: list[tuple[type[IDEClientError] | tuple[type[IDEClientError], ...], int]] = [
    ((IDEConnectionError, UnavailableError), UNAVAILABLE),
    ((UnauthorizedError, ForbiddenError, TooManyAttemptsError), AUTH),
    (NotFoundError, NOT_FOUND),
    (ConflictError, CONFLICT),
    ((BadRequestError, InvalidRequestError), USAGE),
]
_USAGE_CODES = {"bad_url"}  # errors the SDK raises on this side for a bad argument, with no class of their own


def exit_code(error: IDEClientError) -> int:
    """The exit code for an SDK error (see the module's table)."""
    for kinds, code in _BY_CLASS:
        if isinstance(error, kinds):
            return code
    return USAGE if error.code in _USAGE_CODES else FAILED


def command_exit(exit_code: int | None, timed_out: bool) -> int:
    """A remote command's exit code as this process's (a shell's range, 0-255); 124 when it timed out."""
    if timed_out:
        return TIMED_OUT
    if exit_code is None or not 0 <= exit_code <= 255:
        return FAILED
    return exit_code


def error(problem: IDEClientError, *, as_json: bool, hint: str | None = None) -> int:
    """Report an SDK error (JSON on stdout with --json, the server's error shape; else a line on stderr) and
    return its exit code."""
    if as_json:
        body: dict[str, Any] = {"success": False, "code": problem.code, "message": problem.message}
        body.update(status=problem.status, **problem.details)
        if hint:
            body["hint"] = hint
        print(json.dumps(body), flush=True)
    else:
        print(f"ide-backend: {problem}", file=sys.stderr)
        if hint:
            print(f"ide-backend: {hint}", file=sys.stderr)
    return exit_code(problem)


def emit_json(value: BaseModel | Sequence[BaseModel] | Mapping[str, Any]) -> None:
    """A model (or a list of them) as the server sends it: camelCase, one document on stdout."""
    print(json.dumps(jsonable(value), indent=2), flush=True)


def jsonable(value: BaseModel | Sequence[BaseModel] | Mapping[str, Any]) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    if isinstance(value, Mapping):
        return {key: jsonable(item) if isinstance(item, BaseModel) else item for key, item in value.items()}
    return [item.model_dump(mode="json", by_alias=True) for item in value]


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], out: TextIO | None = None) -> None:
    """Rows in aligned columns under upper-case headers, as `docker ps` prints them (the last column unpadded)."""
    cells = [list(headers)] + [[cell_text(cell) for cell in row] for row in rows]
    widths = [max(len(row[column]) for row in cells) for column in range(len(headers))]
    for row in cells:
        padded = [text.ljust(width) for text, width in zip(row[:-1], widths, strict=False)]
        print("  ".join([*padded, row[-1]]).rstrip(), file=out or sys.stdout)


def pairs(items: Iterable[tuple[str, object]], out: TextIO | None = None) -> None:
    """One object as two columns, field and value (fields with no value are left out)."""
    kept = [(name, cell_text(value)) for name, value in items if value not in (None, "", [], {})]
    width = max((len(name) for name, _ in kept), default=0)
    for name, text in kept:
        print(f"{name.ljust(width)}  {text}", file=out or sys.stdout)


def cell_text(value: object) -> str:
    """A value as a table shows it: '-' for nothing, lists joined, mappings as k:v, ISO times to the second."""
    if value is None or value == "" or value == [] or value == {}:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Mapping):
        return ",".join(f"{key}:{item}" for key, item in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(str(item) for item in value)
    if isinstance(value, str):
        return when(value) or value
    return str(value)


def when(text: str) -> str | None:
    """An ISO 8601 time as 'YYYY-MM-DD HH:MM:SS' UTC, or None for anything that is not one."""
    if len(text) < 19 or text[4] != "-" or text[10] != "T":
        return None
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S")
