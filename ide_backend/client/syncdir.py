"""sync_dir's plan: a local folder as few /sync bodies as the server's limits allow.

The server takes a body of at most IDE_MAX_BODY_BYTES (64 MiB unless its operator says otherwise) and at most
10,000 entries per request. The folder is walked once (ignore.py leaves files out), every path is checked the way
the server checks it before anything is sent, then files are read and packed one batch at a time, so at most one
body is in memory. Each file goes as plain UTF-8 text or as base64, whichever is shorter in JSON, with its
permission bits. Folders with nothing to send in them are sent as empty folders. Symbolic links and special
files are not followed nor sent: the result names them in `skipped`.

A body the server still refuses as too large (its limit is lower than the one assumed here) is split in two and
sent again, and later batches are made no larger. Each request is written whole or not at all, but the folder as a
whole is not one write: a failure half-way leaves the batches before it written.
"""

from __future__ import annotations

import base64
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..api.models import SyncResponse, WorkspaceRef
from ..errors import InvalidPath
from ..service.filesets import MAX_FILES, normalize_path
from .errors import BadRequestError, PayloadTooLargeError
from .ignore import IgnoreRules

MAX_BODY_BYTES = 64 * 1024 * 1024  # the server's default IDE_MAX_BODY_BYTES
MAX_ENTRIES = MAX_FILES  # files and folders per request (the server's own limit)
DEFAULT_MODE = 0o644  # what the server gives a file sent without a mode


@dataclass(frozen=True)
class LocalEntry:
    path: str  # in the workspace
    source: Path | None  # None: an empty folder
    size: int = 0
    mode: int = DEFAULT_MODE


@dataclass
class SyncDirResult:
    """What sync_dir sent: files and empty folders, bytes of content, requests made, what it left out."""

    files: int = 0
    folders: int = 0
    bytes: int = 0
    requests: int = 0
    skipped: list[str] = field(default_factory=list)  # links and special files, relative to the local folder
    versions: dict[str, str] = field(default_factory=dict)  # each file's version now, by workspace path


@dataclass
class Batch:
    pieces: list[tuple[bytes, bool]]  # `"path":value` pieces of the `files` object, and whether each is a folder
    clean: bool

    @property
    def folders(self) -> int:
        return sum(1 for _, folder in self.pieces if folder)

    @property
    def files(self) -> int:
        return len(self.pieces) - self.folders


def scan(root: Path, rules: IgnoreRules, dest: str = "") -> tuple[list[LocalEntry], list[str]]:
    """Every file and empty folder under `root` that the rules keep, in a stable order, and what was skipped."""
    if not root.is_dir():
        raise BadRequestError(f"{root} is not a folder", code="not_a_folder")
    prefix = _checked(dest) + "/" if dest.strip("/") else ""
    entries: list[LocalEntry] = []
    skipped: list[str] = []

    def walk(folder: Path, rel: str) -> None:
        kept = 0
        with os.scandir(folder) as listing:
            children = sorted(listing, key=lambda e: e.name)
        for child in children:
            path = f"{rel}{child.name}"
            info = child.stat(follow_symlinks=False)
            if stat.S_ISDIR(info.st_mode):
                if not rules.ignored(path, True):
                    kept += 1
                    walk(Path(child.path), path + "/")
            elif rules.ignored(path, False):
                continue
            elif stat.S_ISREG(info.st_mode):
                kept += 1
                entries.append(
                    LocalEntry(_checked(prefix + path), Path(child.path), info.st_size, info.st_mode & 0o777)
                )
            else:
                skipped.append(path)
        if kept == 0 and rel:
            entries.append(LocalEntry(_checked(prefix + rel.rstrip("/")), None))

    walk(root, "")
    return entries, skipped


def _checked(path: str) -> str:
    """The path as the server will take it; BadRequestError before anything is sent if it would refuse it."""
    try:
        normal = normalize_path(path)
    except InvalidPath as exc:
        raise BadRequestError(exc.message, code=exc.code, path=path) from exc
    return normal


def encode(entry: LocalEntry) -> bytes:
    """One `"path":value` piece of the `files` object."""
    key = json.dumps(entry.path, ensure_ascii=False)
    if entry.source is None:
        return f'{key}:{{"directory":{{}}}}'.encode()
    data = entry.source.read_bytes()
    encoded = base64.b64encode(data).decode("ascii")
    value = json.dumps({"content": encoded, "encoding": "base64", "mode": entry.mode})
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        plain: object = text if entry.mode == DEFAULT_MODE else {"content": text, "mode": entry.mode}
        as_text = json.dumps(plain, ensure_ascii=False)
        if len(as_text.encode()) <= len(value):
            value = as_text
    return f"{key}:{value}".encode()


class Plan:
    """The batches for one sync_dir, made lazily; `done()` records each answer, `split()` a refused batch."""

    def __init__(
        self,
        ref: WorkspaceRef,
        entries: list[LocalEntry],
        *,
        clean: bool,
        max_body_bytes: int = MAX_BODY_BYTES,
        max_entries: int = MAX_ENTRIES,
    ) -> None:
        self.ref = ref
        self.entries = entries
        self.clean = clean
        self.max_body_bytes = max_body_bytes
        self.max_entries = max(1, min(max_entries, MAX_ENTRIES))
        self.result = SyncDirResult()
        overhead = len(self._head(True)) + 2
        for entry in entries:  # fail before sending anything when one file can never fit
            worst = len(json.dumps(entry.path)) + 4 * (entry.size // 3 + 1) + 64
            if entry.source is not None and worst + overhead > max_body_bytes:
                raise PayloadTooLargeError(
                    f"{entry.path} ({entry.size} bytes) does not fit in one request of at most {max_body_bytes} "
                    "bytes; sync it another way or raise the limit (IDE_MAX_BODY_BYTES)",
                    path=entry.path,
                )

    def _head(self, clean: bool) -> bytes:
        ids = json.dumps({"projectId": self.ref.project_id, "workspaceId": self.ref.workspace_id})[:-1]
        return f'{ids},"clean":{"true" if clean else "false"},"files":{{'.encode()

    def body(self, batch: Batch) -> bytes:
        return self._head(batch.clean) + b",".join(piece for piece, _ in batch.pieces) + b"}}"

    def batches(self) -> Iterator[Batch]:
        """Batches in order; the files of one are read only when the one before has been sent."""
        batch = Batch([], self.clean)
        used = len(self._head(self.clean)) + 2
        for entry in self.entries:
            piece = encode(entry)
            full = len(batch.pieces) >= self.max_entries or used + len(piece) + 1 > self.max_body_bytes
            if batch.pieces and full:
                yield batch
                batch = Batch([], False)
                used = len(self._head(False)) + 2
            if used + len(piece) > self.max_body_bytes:
                raise PayloadTooLargeError(
                    f"{entry.path} does not fit in one request of at most {self.max_body_bytes} bytes", path=entry.path
                )
            batch.pieces.append((piece, entry.source is None))
            used += len(piece) + 1
        if batch.pieces or self.clean:
            yield batch

    def split(self, batch: Batch, refused: PayloadTooLargeError) -> list[Batch]:
        """A batch the server refused as too large, as two halves (clean goes with the first); later batches are
        made no larger than half of it. A batch of one entry cannot be split: the refusal is raised."""
        if len(batch.pieces) <= 1:
            raise refused
        self.max_body_bytes = min(self.max_body_bytes, len(self.body(batch)) // 2)
        half = len(batch.pieces) // 2
        return [Batch(batch.pieces[:half], batch.clean), Batch(batch.pieces[half:], False)]

    def done(self, batch: Batch, answer: SyncResponse) -> None:
        self.result.requests += 1
        self.result.files += batch.files
        self.result.folders += batch.folders
        self.result.versions.update(answer.versions)

    def finish(self) -> SyncDirResult:
        self.result.bytes = sum(entry.size for entry in self.entries)
        return self.result
