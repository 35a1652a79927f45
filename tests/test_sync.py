"""/sync: every shape clients send, running or stopped, and nothing outside the workspace.

Every test runs on both write paths: with the agent, small sets go through the container's own writer
(images/workspace/ide-write); with Docker exec only (and for stopped workspaces and large sets), through one archive.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from .harness import Server
from .helpers import Call, run

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def server(exec_server: Server) -> Server:
    return exec_server


def test_flat_map_with_parents_created(api: Call, ref: dict[str, str], started: dict[str, Any]) -> None:
    response = api("sync", ref, files={"a.txt": "A", "deep/er/b.txt": "B"})
    assert response.status_code == 200
    assert response.json()["message"] == "Files synced successfully"
    body = run(api, ref, "cat a.txt deep/er/b.txt; stat -c '%U %a' a.txt deep deep/er")
    assert body["output"] == "ABcoder 644\ncoder 755\ncoder 755\n"


def test_base64_content_and_mode(api: Call, ref: dict[str, str], started: dict[str, Any]) -> None:
    blob = bytes(range(256))
    files = {
        "bin/blob": {"content": base64.b64encode(blob).decode(), "encoding": "base64"},
        "bin/run.sh": {"content": "#!/bin/sh\necho ran\n", "encoding": "utf-8", "mode": 0o755},
    }
    assert api("sync", ref, files=files).status_code == 200
    assert (
        run(api, ref, "sha256sum < bin/blob | cut -c1-64")["output"].strip()
        == __import__("hashlib").sha256(blob).hexdigest()
    )
    assert run(api, ref, "./bin/run.sh; stat -c %a bin/run.sh")["output"] == "ran\n755\n"


def test_every_tar_header_form_round_trips(api: Call, ref: dict[str, str], started: dict[str, Any]) -> None:
    """The archive is packed by hand (plain ustar headers) with tarfile's PAX headers for what ustar cannot say:
    check each form lands with the right name, bytes, owner and mode."""
    blob = bytes(range(256)) * 4096  # 1 MiB, not a multiple of nothing in particular
    files = {
        "n" * 100: "exactly 100 bytes of name",  # fills the ustar name field
        "p" * 120 + "/" + "q" * 90: "split into prefix and name",
        "r/" + "s" * 200: "a last part longer than ustar takes",  # PAX
        "ünïcödé/名前.txt": "non-ASCII",  # PAX
        "/".join(["d"] * 60) + "/end.txt": "deep",
        "empty.txt": "",
        "big.bin": {"content": base64.b64encode(blob).decode(), "encoding": "base64", "mode": 0o600},
    }
    assert api("sync", ref, files=files).status_code == 200, api("sync", ref, files=files).text
    for path, content in files.items():
        if isinstance(content, str):
            quoted = path.replace("'", "'\\''")
            got = run(api, ref, f"cat -- '{quoted}'; echo; stat -c '%U %G %a' -- '{quoted}'")["output"]
            assert got == f"{content}\ncoder coder 644\n", path
    digest = run(api, ref, "sha256sum < big.bin | cut -c1-64; stat -c '%a %s' big.bin")["output"].split()
    assert digest == [__import__("hashlib").sha256(blob).hexdigest(), "600", str(len(blob))]


def test_nested_tree_form(api: Call, ref: dict[str, str], started: dict[str, Any]) -> None:
    tree = {
        "package.json": {"file": {"contents": "{}"}},
        "src": {"directory": {"a.js": {"file": {"contents": "1"}}, "empty": {"directory": {}}}},
    }
    assert api("sync", ref, files=tree).status_code == 200
    assert run(api, ref, "cat package.json src/a.js; test -d src/empty && echo dir")["output"] == "{}1dir\n"


def test_overwrites_existing_files_and_keeps_others(api: Call, ref: dict[str, str], started: dict[str, Any]) -> None:
    api("sync", ref, files={"one.txt": "1", "two.txt": "2"})
    api("sync", ref, files={"one.txt": "uno"})
    assert run(api, ref, "cat one.txt two.txt")["output"] == "uno2"


def test_sync_works_on_a_stopped_container(api: Call, ref: dict[str, str], started: dict[str, Any]) -> None:
    api("stop", ref)
    response = api("sync", ref, files={"offline.txt": "written while stopped"})
    assert response.status_code == 200
    assert response.json()["data"]["running"] is False
    api("start", ref)
    assert run(api, ref, "cat offline.txt")["output"] == "written while stopped"


def test_clean_empties_the_workspace(api: Call, ref: dict[str, str], started: dict[str, Any]) -> None:
    api("sync", ref, files={"old/a.txt": "a", ".hidden": "h"})
    run(api, ref, "chmod a-w old")
    response = api("sync", ref, files={}, clean=True)
    assert response.status_code == 200
    assert response.json()["message"] == "Workspace cleaned successfully"
    assert run(api, ref, "ls -A")["output"] == ""


def test_clean_with_files_replaces_the_tree(api: Call, ref: dict[str, str], started: dict[str, Any]) -> None:
    api("sync", ref, files={"old.txt": "old"})
    response = api("sync", ref, files={"new.txt": "new"}, clean=True)
    assert response.json()["message"] == "Files synced successfully"
    assert run(api, ref, "ls -A")["output"] == "new.txt\n"


def test_clean_on_a_stopped_container(api: Call, ref: dict[str, str], started: dict[str, Any]) -> None:
    api("sync", ref, files={"old.txt": "old"})
    api("stop", ref)
    assert api("sync", ref, files={"fresh.txt": "f"}, clean=True).status_code == 200
    api("start", ref)
    assert run(api, ref, "ls -A")["output"] == "fresh.txt\n"


ESCAPES = [
    "../escape.txt",
    "a/../../escape.txt",
    "/etc/passwd",
    "//etc/passwd",
    "a\x00b",
    "..",
    ".",
    "",
    "a\\..\\b",
    "x/" * 70 + "deep",
    "n" * 300,
]


@pytest.mark.parametrize("bad", ESCAPES)
def test_bad_paths_are_refused_and_nothing_is_written(
    api: Call, ref: dict[str, str], started: dict[str, Any], bad: str
) -> None:
    response = api("sync", ref, files={"good-before.txt": "x", bad: "evil", "good-after.txt": "y"})
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["success"] is False and body["message"]
    assert run(api, ref, "ls -A")["output"] == ""


def test_symlink_made_inside_the_container_is_not_followed(
    api: Call, ref: dict[str, str], started: dict[str, Any]
) -> None:
    run(api, ref, "ln -s /tmp out; mkdir -p real; ln -s /etc real/etc")
    for path in ("out/pwned.txt", "real/etc/pwned.txt"):
        response = api("sync", ref, files={"ok.txt": "ok", path: "pwned"})
        assert response.status_code == 400, response.text
        assert "symbolic link" in response.json()["message"]
    assert run(api, ref, "ls /tmp; ls /etc | grep -c pwned; ls")["output"] == "0\nout\nreal\n"


def test_a_file_through_a_symlinked_file_replaces_the_link(
    api: Call, ref: dict[str, str], started: dict[str, Any]
) -> None:
    run(api, ref, "ln -s /etc/hostname target.txt")
    assert api("sync", ref, files={"target.txt": "mine"}).status_code == 200
    assert run(api, ref, "test -L target.txt || cat target.txt; cat /etc/hostname")["output"] == "mine" + "workspace\n"


def test_file_and_folder_conflicts_are_refused(api: Call, ref: dict[str, str], started: dict[str, Any]) -> None:
    run(api, ref, "mkdir folder; echo x > file")
    assert api("sync", ref, files={"folder": "now a file"}).status_code == 409
    assert api("sync", ref, files={"file/child.txt": "x"}).status_code == 409
    assert api("sync", ref, files={"a": "1", "a/b": "2"}).status_code == 400
    assert run(api, ref, "ls -A; cat file")["output"] == "file\nfolder\nx\n"


@pytest.mark.parametrize(
    "files",
    [
        {"a.txt": 5},
        {"a.txt": {"content": "x", "encoding": "rot13"}},
        {"a.txt": {"content": "%%%", "encoding": "base64"}},
        {"a.txt": {"content": "x", "mode": 0o4755}},
        {"a.txt": {"content": "x", "mode": "755"}},
        {"a.txt": {"file": {"contents": 1}}},
        {"d": {"directory": {"../x": "y"}}},
        ["not", "a", "map"],
    ],
)
def test_bad_file_specs_are_refused(api: Call, ref: dict[str, str], started: dict[str, Any], files: Any) -> None:
    response = api("sync", ref, files=files)
    assert response.status_code in (400, 422), response.text
    assert response.json()["success"] is False
    assert run(api, ref, "ls -A")["output"] == ""


def test_sync_before_start_is_404(api: Call, ref: dict[str, str]) -> None:
    response = api("sync", ref, files={"a": "b"})
    assert response.status_code == 404
    assert "/api/v1/containers/start" in response.json()["message"]


def _writes(server: Server) -> dict[str, int]:
    with server.client() as c:
        writes: dict[str, int] = c.get("/api/v1/stats").json()["writes"]
        return writes


def test_small_sets_use_the_containers_writer_and_large_ones_the_archive(
    api: Call, ref: dict[str, str], started: dict[str, Any], server: Server
) -> None:
    agent = server.env["IDE_EXEC_AGENT"] == "true"
    before = _writes(server)
    assert api("sync", ref, files={"small.txt": "s"}).status_code == 200
    large = {f"big/{i}.txt": "x" * 100_000 for i in range(12)}  # 1.2 MB: over the writer's 1 MiB
    assert api("sync", ref, files=large).status_code == 200
    after = _writes(server)
    assert after["writer"] - before["writer"] == (1 if agent else 0)
    assert after["archive"] - before["archive"] == (1 if agent else 2)
    listing = run(api, ref, "cat small.txt; wc -c < big/11.txt; stat -c '%U %a' small.txt big; ls -A")["output"]
    assert listing == "s100000\ncoder 644\ncoder 755\nbig\nsmall.txt\n"  # no temporary file left behind


def test_a_folder_the_user_cannot_write_is_written_by_the_archive_path(
    api: Call, ref: dict[str, str], started: dict[str, Any], server: Server
) -> None:
    """A folder the workspace user cannot write to (its mode says so): the writer, running as that user, says so
    before writing anything, and the archive upload (root) writes the whole set instead, keeping the folder's mode."""
    run(api, ref, "mkdir locked && chmod 555 locked")
    before = _writes(server)
    assert api("sync", ref, files={"free.txt": "f", "locked/in.txt": "i"}).status_code == 200
    after = _writes(server)
    assert (after["writer"], after["archive"]) == (before["writer"], before["archive"] + 1)
    out = run(api, ref, "cat free.txt locked/in.txt; echo; stat -c '%a %U' locked locked/in.txt")["output"]
    assert out == "fi\n555 coder\n644 coder\n"


def test_a_folder_from_before_1970_takes_an_archive_write(
    api: Call, ref: dict[str, str], started: dict[str, Any]
) -> None:
    """Its negative mtime goes into the archive as a PAX record (the engine refuses a negative ustar field)."""
    run(api, ref, "mkdir old && touch -d 1960-01-01 old")
    large = {f"old/{i}.txt": "y" * 100_000 for i in range(12)}  # over the writer's 1 MiB: the archive path
    assert api("sync", ref, files=large).status_code == 200
    assert run(api, ref, "ls old | wc -l")["output"] == "12\n"
