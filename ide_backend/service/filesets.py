"""Workspace file sets: parse the shapes clients send, check every path, and pack them as one tar archive.

Accepted shapes of a `files` map (keys are workspace-relative paths, or names inside a tree):
  {"a.txt": "text"}                                          UTF-8 text
  {"a.bin": {"content": "...", "encoding": "base64", "mode": 420}}
  {"a.txt": {"content": "...", "ifMatch": "<version>"}}     written only if the file is still that version
  {"a.txt": {"content": "...", "ifMatch": null}}            written only if it does not exist yet
  {"src": {"directory": {"a.js": {"file": {"contents": "..."}}}}}   the nested tree browser IDEs send
Nothing here touches Docker: a rejected file set fails before anything is written.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
import tarfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidPath, PayloadTooLarge, ValidationFailed

MAX_FILES = 10_000
MAX_PATH_CHARS = 1024
MAX_NAME_BYTES = 255
MAX_DEPTH = 64
DEFAULT_FILE_MODE = 0o644
DEFAULT_DIR_MODE = 0o755


VERSION_PATTERN = re.compile(r"^[0-9a-f]{64}$")


def version_of(data: bytes) -> str:
    """A file's version: the SHA-256 of its bytes, in hex (the same content has the same version, wherever and
    however it was written)."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class FileEntry:
    path: str  # normalised, workspace-relative, no leading slash
    data: bytes
    mode: int
    guarded: bool = False  # written only if the file is at `if_match` now
    if_match: str | None = None  # the version it must have; None: it must not exist


@dataclass(frozen=True)
class FileSet:
    files: tuple[FileEntry, ...]
    dirs: tuple[str, ...]  # directories asked for explicitly (empty tree nodes)

    @property
    def guarded(self) -> dict[str, str | None]:
        """The files written only if they are at a version (None: absent) now, by path."""
        return {f.path: f.if_match for f in self.files if f.guarded}

    @property
    def total_bytes(self) -> int:
        return sum(len(f.data) for f in self.files)

    def ancestors(self) -> list[str]:
        """Every directory that must exist for this set, parents before children."""
        needed: set[str] = set(self.dirs)
        for path in [f.path for f in self.files] + list(self.dirs):
            parts = path.split("/")
            for depth in range(1, len(parts)):
                needed.add("/".join(parts[:depth]))
        return sorted(needed, key=lambda p: (p.count("/"), p))


def normalize_path(raw: object, *, where: str = "files") -> str:
    """Check one workspace-relative path and return its normal form, or raise InvalidPath naming it."""
    if not isinstance(raw, str):
        raise InvalidPath(f"{where}: a path must be a string", path=repr(raw))
    shown = raw if len(raw) <= 200 else raw[:200] + "..."
    if raw == "":
        raise InvalidPath(f"{where}: a path must not be empty", path=shown)
    if len(raw) > MAX_PATH_CHARS:
        raise InvalidPath(f"{where}: path is longer than {MAX_PATH_CHARS} characters", path=shown)
    if "\x00" in raw:
        raise InvalidPath(f"{where}: path {shown!r} contains a NUL byte", path=shown)
    if "\\" in raw:
        raise InvalidPath(f"{where}: path {shown!r} contains '\\'; use '/' between folders", path=shown)
    if raw.startswith("/"):
        raise InvalidPath(f"{where}: path {shown!r} is absolute; give it relative to the workspace folder", path=shown)
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidPath(f"{where}: path {shown!r} leaves the workspace ('..' is not allowed)", path=shown)
    if not parts:
        raise InvalidPath(f"{where}: path {shown!r} names the workspace itself, not a file in it", path=shown)
    if len(parts) > MAX_DEPTH:
        raise InvalidPath(f"{where}: path {shown!r} is nested deeper than {MAX_DEPTH} folders", path=shown)
    for part in parts:
        if len(part.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
            raise InvalidPath(f"{where}: a name in {shown!r} is longer than {MAX_NAME_BYTES} bytes", path=shown)
        if any(ord(ch) < 0x20 for ch in part):
            raise InvalidPath(f"{where}: path {shown!r} contains control characters", path=shown)
    return "/".join(parts)


def _entry(path: str, spec: Mapping[str, Any]) -> FileEntry:
    data, mode = _decode_content(path, spec)
    if "ifMatch" not in spec:
        return FileEntry(path, data, mode)
    expected = spec["ifMatch"]
    if expected is not None and not (isinstance(expected, str) and VERSION_PATTERN.match(expected)):
        raise ValidationFailed(
            f"files[{path!r}].ifMatch must be a version from files/read or files/list (64 hex digits), "
            "or null for a file that must not exist yet",
            path=path,
        )
    return FileEntry(path, data, mode, guarded=True, if_match=expected)


def _decode_content(path: str, spec: Mapping[str, Any]) -> tuple[bytes, int]:
    unknown = set(spec) - {"content", "contents", "encoding", "mode", "ifMatch"}
    if unknown:
        raise ValidationFailed(f"files[{path!r}]: unknown keys {sorted(unknown)}", path=path)
    content = spec.get("content", spec.get("contents"))
    encoding = spec.get("encoding", "utf-8")
    mode = spec.get("mode", DEFAULT_FILE_MODE)
    if not isinstance(content, str):
        raise ValidationFailed(f"files[{path!r}].content must be a string", path=path)
    if encoding not in ("utf-8", "utf8", "base64"):
        raise ValidationFailed(f"files[{path!r}].encoding must be 'utf-8' or 'base64'", path=path)
    if isinstance(mode, bool) or not isinstance(mode, int) or not 0 <= mode <= 0o777:
        raise ValidationFailed(
            f"files[{path!r}].mode must be permission bits between 0 and 511 (0o777), e.g. 420 for 0o644",
            path=path,
        )
    if encoding == "base64":
        try:
            data = base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValidationFailed(f"files[{path!r}].content is not valid base64", path=path) from exc
    else:
        try:
            data = content.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValidationFailed(f"files[{path!r}].content is not valid UTF-8 text", path=path) from exc
    return data, mode


def _walk(prefix: str, tree: Mapping[str, Any], files: list[FileEntry], dirs: list[str], *, flat: bool) -> None:
    for key, value in tree.items():
        if not flat and ("/" in key or key in ("", ".", "..")):
            raise InvalidPath(f"files: {key!r} in the tree under {prefix or '/'!r} must be a plain name", path=key)
        path = normalize_path(f"{prefix}/{key}" if prefix else key)
        if isinstance(value, str):
            try:
                files.append(FileEntry(path, value.encode("utf-8"), DEFAULT_FILE_MODE))
            except UnicodeEncodeError as exc:
                raise ValidationFailed(f"files[{path!r}] is not valid UTF-8 text", path=path) from exc
        elif isinstance(value, Mapping) and "directory" in value and len(value) == 1:
            sub = value["directory"]
            if not isinstance(sub, Mapping):
                raise ValidationFailed(f"files[{path!r}].directory must be an object", path=path)
            dirs.append(path)
            _walk(path, sub, files, dirs, flat=False)
        elif isinstance(value, Mapping) and "file" in value and len(value) == 1:
            if not isinstance(value["file"], Mapping):
                raise ValidationFailed(f"files[{path!r}].file must be an object", path=path)
            files.append(_entry(path, value["file"]))
        elif isinstance(value, Mapping) and ("content" in value or "contents" in value):
            files.append(_entry(path, value))
        else:
            raise ValidationFailed(
                f"files[{path!r}] must be a string, an object with 'content', or a tree node "
                "({'file': {'contents': ...}} or {'directory': {...}})",
                path=path,
            )
        if len(files) + len(dirs) > MAX_FILES:
            raise PayloadTooLarge(f"files: more than {MAX_FILES} entries in one request; split it up")


def parse_files(raw: object) -> FileSet:
    """Turn a client's `files` value into a checked FileSet; raise before anything is written."""
    if not isinstance(raw, Mapping):
        raise ValidationFailed("files must be an object mapping paths to contents")
    files: list[FileEntry] = []
    dirs: list[str] = []
    _walk("", raw, files, dirs, flat=True)
    seen: dict[str, str] = {}
    for entry in files:
        if entry.path in seen:
            raise InvalidPath(f"files: {entry.path!r} is given more than once", path=entry.path)
        seen[entry.path] = "file"
    for d in dirs:
        if seen.get(d) == "file":
            raise InvalidPath(f"files: {d!r} is given both as a file and as a folder", path=d)
        seen.setdefault(d, "dir")
    fileset = FileSet(tuple(files), tuple(dict.fromkeys(dirs)))
    for ancestor in fileset.ancestors():
        if seen.get(ancestor) == "file":
            raise InvalidPath(f"files: {ancestor!r} is a file and also a folder of other files", path=ancestor)
    return fileset


def tar_staged(fileset: FileSet, *, prefix: str, uid: int, gid: int) -> bytes:
    """The set as one archive below `prefix` (a staging folder; staging.py): the folders of `prefix` itself (0700),
    then every folder the set needs, parents first, then every file, then the end-of-archive marker."""
    now = int(time.time())
    parts: list[bytes] = []
    head = ""
    for part in prefix.split("/"):
        head = f"{head}/{part}" if head else part
        parts.append(_header(head, 0, 0o700, now, uid, gid, tarfile.DIRTYPE))
    for path in fileset.ancestors():
        parts.append(_header(f"{prefix}/{path}", 0, DEFAULT_DIR_MODE, now, uid, gid, tarfile.DIRTYPE))
    for entry in fileset.files:
        parts.append(_header(f"{prefix}/{entry.path}", len(entry.data), entry.mode, now, uid, gid, tarfile.REGTYPE))
        parts.append(entry.data)
        if pad := -len(entry.data) % tarfile.BLOCKSIZE:
            parts.append(bytes(pad))
    parts.append(bytes(tarfile.BLOCKSIZE * 2))
    return b"".join(parts)


_WRITER_RECORD = struct.Struct(">cIII")


def pack_for_writer(fileset: FileSet) -> bytes:
    """The set as images/workspace/ide-write reads it on stdin: a magic line, then kind, mode, path and data
    lengths, path, data for every folder asked for and every file."""
    parts = [b"IDEW1\n"]
    for path in fileset.dirs:
        name = path.encode("utf-8", "surrogateescape")
        parts += [_WRITER_RECORD.pack(b"D", DEFAULT_DIR_MODE, len(name), 0), name]
    for entry in fileset.files:
        name = entry.path.encode("utf-8", "surrogateescape")
        parts += [_WRITER_RECORD.pack(b"F", entry.mode, len(name), len(entry.data)), name, entry.data]
    return b"".join(parts)


_USTAR = struct.Struct("100s8s8s8s12s12s8s1s100s6s2s32s32s8s8s155s12x")


def _header(path: str, size: int, mode: int, mtime: int, uid: int, gid: int, kind: bytes) -> bytes:
    """One member header. Plain ustar, built directly (tarfile spends ~20 us per member, most of a sync's
    packing time); names that do not fit ustar, or are not ASCII, go through tarfile's PAX headers."""
    name, prefix = path.encode("utf-8", "surrogateescape"), b""
    if len(name) > 100:
        cut = name.find(b"/", len(name) - 101)
        name, prefix = (name[cut + 1 :], name[:cut]) if 0 < cut <= 155 else (b"", b"")
    fits = 0 <= mtime < 8**11 and size < 8**11 and 0 <= uid < 8**7 and 0 <= gid < 8**7
    if not name or not path.isascii() or not fits:
        info = tarfile.TarInfo(path)
        info.size, info.mode, info.mtime, info.uid, info.gid, info.type = size, mode, mtime, uid, gid, kind
        return info.tobuf(tarfile.PAX_FORMAT)
    fields = [
        name,
        b"%07o\0" % mode,
        b"%07o\0" % uid,
        b"%07o\0" % gid,
        b"%011o\0" % size,
        b"%011o\0" % mtime,
        b" " * 8,  # the checksum counts its own field as spaces
        kind,
        b"",
        b"ustar\0",
        b"00",
        b"",
        b"",
        b"",
        b"",
        prefix,
    ]
    header = bytearray(_USTAR.pack(*fields))
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header)
