"""File versions and conflicts: files/read and files/list give each file's version (the SHA-256 of its bytes), sync
writes a file given with `ifMatch` only over that version (or, with null, only where nothing exists), and a call
with one stale version writes nothing at all. Two writers from the same base version: exactly one wins."""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Iterator

import httpx
import pytest

from .harness import Server
from .helpers import post, run

pytestmark = pytest.mark.docker


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def workspace(server: Server) -> Iterator[dict[str, str]]:
    ref = {"projectId": "versions", "workspaceId": "w-" + uuid.uuid4().hex[:6]}
    assert post(server, "start", {**ref, "files": {"notes.md": "one\n", "src/app.py": "x = 1\n"}}).status_code == 200
    yield ref
    post(server, "delete", ref)


def call(server: Server, endpoint: str, ref: dict[str, str], **body: object) -> httpx.Response:
    return post(server, endpoint, {**ref, **body})


def test_read_and_list_give_the_version_of_each_file(server: Server, workspace: dict[str, str]) -> None:
    read = call(server, "files/read", workspace, path="notes.md").json()
    assert read["version"] == sha("one\n")
    run(lambda e, r, **x: call(server, e, r, **x), workspace, "head -c 11000000 /dev/zero > big.bin && mkdir empty")
    entries = {e["path"]: e for e in call(server, "files/list", workspace, depth=3).json()["entries"]}
    assert entries["notes.md"]["version"] == sha("one\n") and entries["src/app.py"]["version"] == sha("x = 1\n")
    assert entries["src"]["version"] is None and entries["empty"]["version"] is None
    assert entries["big.bin"]["version"] is None  # over 10 MiB: more than files/read reads
    only_src = call(server, "files/list", workspace, path="src").json()["entries"]
    assert [(e["path"], e["version"]) for e in only_src] == [("src/app.py", sha("x = 1\n"))]


def test_a_save_over_the_version_read_lands_and_gives_the_new_version(
    server: Server, workspace: dict[str, str]
) -> None:
    saved = call(server, "sync", workspace, files={"notes.md": {"content": "two\n", "ifMatch": sha("one\n")}})
    assert saved.status_code == 200, saved.text
    assert saved.json()["versions"] == {"notes.md": sha("two\n")}
    assert call(server, "files/read", workspace, path="notes.md").json()["content"] == "two\n"
    fresh = call(server, "sync", workspace, files={"new.txt": {"content": "n", "ifMatch": None}})
    assert fresh.status_code == 200 and fresh.json()["versions"] == {"new.txt": sha("n")}


def test_an_edit_made_elsewhere_is_never_overwritten(server: Server, workspace: dict[str, str]) -> None:
    api = lambda e, r, **x: call(server, e, r, **x)  # noqa: E731
    run(api, workspace, "echo 'from the terminal' >> notes.md")
    now = sha("one\nfrom the terminal\n")
    stale = call(
        server,
        "sync",
        workspace,
        files={"notes.md": {"content": "mine\n", "ifMatch": sha("one\n")}, "other.txt": "also mine"},
    )
    assert stale.status_code == 409, stale.text
    body = stale.json()
    assert body["success"] is False and body["code"] == "conflict" and "nothing was written" in body["message"]
    assert body["conflicts"] == [{"path": "notes.md", "version": now}]
    assert run(api, workspace, "cat notes.md; ls other.txt 2>&1 || true")["output"] == (
        "one\nfrom the terminal\nls: cannot access 'other.txt': No such file or directory\n"
    )
    exists = call(server, "sync", workspace, files={"src/app.py": {"content": "y", "ifMatch": None}})
    assert exists.status_code == 409 and exists.json()["conflicts"] == [
        {"path": "src/app.py", "version": sha("x = 1\n")}
    ]
    gone = call(server, "sync", workspace, files={"gone.txt": {"content": "y", "ifMatch": sha("whatever")}})
    assert gone.status_code == 409 and gone.json()["conflicts"] == [{"path": "gone.txt", "version": None}]
    # `clean` with a stale version empties nothing either.
    cleaned = call(server, "sync", workspace, clean=True, files={"notes.md": {"content": "c", "ifMatch": sha("one\n")}})
    assert cleaned.status_code == 409
    assert run(api, workspace, "ls")["output"] == "notes.md\nsrc\n"


def test_two_writers_from_the_same_version_one_wins(server: Server, workspace: dict[str, str]) -> None:
    for round_ in range(6):
        base = call(server, "files/read", workspace, path="notes.md").json()["version"]
        answers: dict[str, httpx.Response] = {}
        threads = [
            threading.Thread(target=_save, args=(server, workspace, who, round_, base, answers))
            for who in ("alice", "bob")
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        codes = sorted(answer.status_code for answer in answers.values())
        assert codes == [200, 409], {who: a.text for who, a in answers.items()}
        winner = next(who for who, answer in answers.items() if answer.status_code == 200)
        loser = "bob" if winner == "alice" else "alice"
        assert answers[loser].json()["conflicts"] == [{"path": "notes.md", "version": sha(f"{winner} {round_}\n")}]
        listed = {e["path"] for e in call(server, "files/list", workspace).json()["entries"]}
        assert f"{winner}-{round_}.txt" in listed and f"{loser}-{round_}.txt" not in listed


def test_versions_hold_for_a_stopped_workspace_and_for_start(server: Server, workspace: dict[str, str]) -> None:
    assert call(server, "stop", workspace).status_code == 200
    assert call(server, "files/read", workspace, path="notes.md").json()["version"] == sha("one\n")
    stale = call(server, "sync", workspace, files={"notes.md": {"content": "s", "ifMatch": sha("nope")}})
    assert stale.status_code == 409 and stale.json()["conflicts"] == [{"path": "notes.md", "version": sha("one\n")}]
    saved = call(server, "sync", workspace, files={"notes.md": {"content": "s\n", "ifMatch": sha("one\n")}})
    assert saved.status_code == 200, saved.text
    started = call(server, "start", workspace, files={"notes.md": {"content": "t", "ifMatch": sha("one\n")}})
    assert started.status_code == 409 and started.json()["conflicts"][0]["version"] == sha("s\n")
    assert call(server, "files/read", workspace, path="notes.md").json()["content"] == "s\n"


@pytest.mark.parametrize("bad", ["abc", 5, "G" * 64, ""])
def test_a_malformed_version_is_refused(server: Server, workspace: dict[str, str], bad: object) -> None:
    answer = call(server, "sync", workspace, files={"notes.md": {"content": "z", "ifMatch": bad}})
    assert answer.status_code == 422 and "ifMatch" in answer.json()["message"]
    assert call(server, "files/read", workspace, path="notes.md").json()["content"] == "one\n"


def _save(
    server: Server, ref: dict[str, str], who: str, round_: int, base: str, answers: dict[str, httpx.Response]
) -> None:
    """One writer's save: the shared file from the base version, and a file of its own in the same set."""
    files = {"notes.md": {"content": f"{who} {round_}\n", "ifMatch": base}, f"{who}-{round_}.txt": who}
    answers[who] = call(server, "sync", ref, files=files)
