"""The file-set parser and tar builder on their own: every accepted shape and every refused path."""

from __future__ import annotations

import io
import tarfile

import pytest

from ide_backend.errors import IDEError, InvalidPath, PayloadTooLarge, ValidationFailed
from ide_backend.service.filesets import (
    MAX_FILES,
    normalize_path,
    parse_files,
    tar_staged,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("a.txt", "a.txt"), ("./a/./b", "a/b"), ("a//b/", "a/b"), ("%2e%2e/x", "%2e%2e/x"), ("é/✓", "é/✓")],
)
def test_normal_paths(raw: str, expected: str) -> None:
    assert normalize_path(raw) == expected


@pytest.mark.parametrize("raw", ["", "/abs", "../x", "a/../../x", "a/..", "a\x00", "a\\b", ".", "./", "a\nb"])
def test_refused_paths(raw: str) -> None:
    with pytest.raises(InvalidPath):
        normalize_path(raw)


def test_shapes_parse_to_the_same_entries() -> None:
    fileset = parse_files(
        {
            "plain.txt": "p",
            "b64.bin": {"content": "AAE=", "encoding": "base64", "mode": 0o600},
            "tree": {"directory": {"x.js": {"file": {"contents": "x"}}, "empty": {"directory": {}}}},
        }
    )
    files = {f.path: (f.data, f.mode) for f in fileset.files}
    assert files == {"plain.txt": (b"p", 0o644), "b64.bin": (b"\x00\x01", 0o600), "tree/x.js": (b"x", 0o644)}
    assert set(fileset.dirs) == {"tree", "tree/empty"}
    assert fileset.ancestors() == ["tree", "tree/empty"]


@pytest.mark.parametrize(
    "raw",
    [
        {"a": "1", "./a": "2"},
        {"a": "1", "a/b": "2"},
        {"a": {"directory": {}}, "a/": "x"},
    ],
)
def test_conflicting_entries(raw: dict[str, object]) -> None:
    with pytest.raises(InvalidPath):
        parse_files(raw)


def test_bad_specs() -> None:
    for raw in ({"a": None}, {"a": {"content": "x", "extra": 1}}, {"a": {"content": "x", "mode": True}}):
        with pytest.raises(ValidationFailed):
            parse_files(raw)


def test_too_many_files() -> None:
    with pytest.raises(PayloadTooLarge):
        parse_files({f"f{i}": "" for i in range(MAX_FILES + 1)})


def test_the_staged_archive_puts_the_staging_folders_then_folders_then_files() -> None:
    fileset = parse_files({"a/b/c.txt": "c", "a/d.txt": "d"})
    data = tar_staged(fileset, prefix=".ide-staging/tx.part", uid=1000, gid=1000)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
        content = {m.name: tar.extractfile(m).read() for m in members if m.isfile()}  # type: ignore[union-attr]
    assert [(m.name, m.isdir()) for m in members] == [
        (".ide-staging", True),
        (".ide-staging/tx.part", True),
        (".ide-staging/tx.part/a", True),
        (".ide-staging/tx.part/a/b", True),
        (".ide-staging/tx.part/a/b/c.txt", False),
        (".ide-staging/tx.part/a/d.txt", False),
    ]
    assert members[0].mode == members[1].mode == 0o700 and members[2].mode == 0o755 and members[4].mode == 0o644
    assert all(m.uid == 1000 and m.gid == 1000 for m in members)
    assert content == {".ide-staging/tx.part/a/b/c.txt": b"c", ".ide-staging/tx.part/a/d.txt": b"d"}


def test_tar_numbers_and_names_ustar_cannot_hold_go_through_pax() -> None:
    """Ids past ustar's 7 octal digits and names that are long or not ASCII: PAX records, not garbage."""
    long_name = "x" * 150 + "/é.txt"
    fileset = parse_files({"old/new.txt": "n", long_name: "l"})
    data = tar_staged(fileset, prefix="s/t.part", uid=8**7 + 5, gid=1000)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["s/t.part/old/new.txt"].uid == 8**7 + 5 and members["s/t.part/old/new.txt"].gid == 1000
    assert f"s/t.part/{long_name}" in members


def test_errors_carry_status_and_json() -> None:
    error: IDEError = InvalidPath("nope", path="x")
    assert error.status_code == 400
    assert error.to_json() == {"success": False, "message": "nope", "code": "invalid_path", "path": "x"}
