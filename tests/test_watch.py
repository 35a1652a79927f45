"""Live file watching over the live channel: a real server, a real engine, the watcher in a real workspace."""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ide_backend.api import protocol
from ide_backend.service import watch
from ide_backend.service.domain import WorkspaceRef
from ide_backend.service.watch_script import WATCH_SCRIPT

from .harness import Server, remove_instance
from .helpers import Call, Channel, run, start_server

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def server(runtime_server: Server) -> Server:
    """Watching runs the same on one engine and on a swarm (in the container, on its node's engine)."""
    return runtime_server


def _watch(channel: Channel, ref: dict[str, str], path: str = "") -> dict[str, Any]:
    channel.send(type="watch", path=path, **ref)
    answer = channel.wait_for(type="watching", path=path)
    assert answer["folders"] >= 1
    return answer


def _changes(channel: Channel, *until: str, timeout: float = 30) -> list[dict[str, Any]]:
    """Every change of the `files` messages received until each path of `until` was named."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    waiting = set(until)
    while waiting:
        message = channel.wait_for(timeout=max(0.1, deadline - time.monotonic()), type="files")
        seen.extend(message["changes"])
        waiting -= {c["path"] for c in message["changes"]} | {c.get("from") for c in message["changes"]}
    return seen


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_changes_made_in_the_workspace_arrive(
    channel: Channel, api: Call, ref: dict[str, str], started: dict[str, Any]
) -> None:
    _watch(channel, ref)
    run(api, ref, "echo one > notes.txt")
    created = _changes(channel, "notes.txt")
    assert created[-1] == {
        "path": "notes.txt",
        "kind": "created",
        "type": "file",
        "version": _sha("one\n"),
    }
    run(api, ref, "echo two >> notes.txt")
    assert _changes(channel, "notes.txt")[-1]["kind"] == "modified"
    run(api, ref, "mv notes.txt renamed.txt")
    moved = _changes(channel, "renamed.txt")[-1]
    assert (moved["kind"], moved["from"], moved["version"]) == ("moved", "notes.txt", _sha("one\ntwo\n"))
    run(api, ref, "rm renamed.txt")
    assert _changes(channel, "renamed.txt")[-1] == {"path": "renamed.txt", "kind": "deleted", "type": "file"}
    # A folder made with files in it in one go is one change (list it for what is inside); then inside it.
    run(api, ref, "mkdir -p src/deep && echo x > src/deep/a.py")
    assert [c for c in _changes(channel, "src") if c["path"].startswith("src")] == [
        {"path": "src", "kind": "created", "type": "dir"}
    ]
    run(api, ref, "echo y > src/deep/b.py && ln -s b.py src/deep/link")
    inside = {c["path"]: c for c in _changes(channel, "src/deep/link")}
    assert inside["src/deep/b.py"]["kind"] == "created"
    assert inside["src/deep/link"]["type"] == "symlink"
    # What happens inside .git is not watched; the folder itself is.
    run(api, ref, "git init -q . && echo change > .git/description && echo after > after.txt")
    paths = {c["path"] for c in _changes(channel, "after.txt")}
    assert ".git" in paths and not any(p.startswith(".git/") for p in paths)


def test_a_folder_watch_sees_its_own_subtree(
    channel: Channel, api: Call, ref: dict[str, str], started: dict[str, Any]
) -> None:
    run(api, ref, "mkdir -p src other")
    _watch(channel, ref, "src")
    run(api, ref, "echo 1 > other/outside.txt; echo 2 > src/inside.txt")
    changes = _changes(channel, "src/inside.txt")
    assert [c["path"] for c in changes] == ["src/inside.txt"]
    # A move across the folder's edge is a deletion (out) or a creation (in) for this watch.
    run(api, ref, "mv src/inside.txt other/ && mv other/outside.txt src/")
    changes = _changes(channel, "src/outside.txt")
    by_path = {c["path"]: c for c in changes}
    assert by_path["src/inside.txt"]["kind"] == "deleted"
    assert by_path["src/outside.txt"]["kind"] == "created" and "from" not in by_path["src/outside.txt"]
    assert all(c["path"].startswith("src/") for c in changes)


def test_a_checkout_of_thousands_of_files_is_a_few_messages(
    channel: Channel, api: Call, ref: dict[str, str], started: dict[str, Any]
) -> None:
    git = "git -c user.email=t@example.com -c user.name=t"
    setup = (
        f"git init -q -b main . && mkdir -p a b c && touch a/keep b/keep c/keep && for i in $(seq 1 1000); do "
        f"echo $i > a/$i.txt; echo $i > b/$i.txt; echo $i > c/$i.txt; done && {git} add -A && {git} commit -qm all "
        f"&& git checkout -q -b empty && git rm -q -- */[0-9]*.txt && {git} commit -qm none"
    )
    assert run(api, ref, setup)["exitCode"] == 0
    _watch(channel, ref)
    assert run(api, ref, "git checkout -q main")["exitCode"] == 0

    # Then marker files until one is named on its own: a marker that fell into an overflowed batch is not, nor one
    # batched with the checkout's last changes (which are counted, as the checkout's).
    def markers_only(message: dict[str, Any]) -> bool:
        return bool(message["changes"]) and all(c["path"].startswith("marker") for c in message["changes"])

    messages: list[dict[str, Any]] = []
    for attempt in range(20):
        run(api, ref, f"echo {attempt} > marker{attempt}")
        with contextlib.suppress(TimeoutError):
            while not (messages and markers_only(messages[-1])):
                messages.append(channel.wait_for(timeout=5, type="files"))
        if messages and markers_only(messages[-1]):
            break
    messages = [m for m in messages if not markers_only(m)]
    # 3,000 files in folders that stay: coalesced into a few batches (one too large becomes one overflow).
    print(f"checkout of 3,000 files: {len(messages)} messages, overflow: {[m.get('reason') for m in messages]}")
    assert len(messages) <= 30, len(messages)
    listed = {c["path"] for m in messages for c in m["changes"]}
    made = {f"{d}/{i}.txt" for d in "abc" for i in range(1, 1001)}
    assert any(m.get("overflow") for m in messages) or made <= listed


def test_own_syncs_are_marked_with_their_request_id(
    channel: Channel, api: Call, client: Any, ref: dict[str, str], started: dict[str, Any]
) -> None:
    _watch(channel, ref)
    answer = client.post(
        "/api/v1/containers/sync",
        json={**ref, "files": {"mine.py": "A = 1\n", "lib/a.py": "B = 2\n"}},
        headers={"X-Request-Id": "page-save-42"},
    )
    assert answer.status_code == 200, answer.text
    mine = [c for c in _changes(channel, "mine.py", "lib") if c["path"] in ("lib", "mine.py")]
    assert len(mine) == 2 and all(c["origin"] == "sync" and c["requestId"] == "page-save-42" for c in mine)
    # The next change of the same file is not the sync's, however soon it comes; nor is one after a refused sync.
    run(api, ref, "echo theirs >> mine.py")
    assert "origin" not in _changes(channel, "mine.py")[-1]
    refused = client.post(
        "/api/v1/containers/sync", json={**ref, "files": {"mine.py": {"content": "", "ifMatch": None}}}
    )
    assert refused.status_code == 409
    run(api, ref, "echo more >> mine.py")
    assert "origin" not in _changes(channel, "mine.py")[-1]
    # A large set goes through the staging folder: its moves into place are the sync's too, the folder never shows.
    big = {f"big/{i}.txt": "x" * 2048 for i in range(700)}
    answer = client.post(
        "/api/v1/containers/sync", json={**ref, "files": big}, headers={"X-Request-Id": "page-save-43"}
    )
    assert answer.status_code == 200, answer.text
    changes = _changes(channel, "big")
    assert not any(c["path"].startswith(".ide-staging") for c in changes)
    assert next(c for c in changes if c["path"] == "big")["requestId"] == "page-save-43"
    # Someone else's change is not marked.
    run(api, ref, "echo theirs > lib/theirs.py")
    theirs = [c for c in _changes(channel, "lib/theirs.py") if c["path"] == "lib/theirs.py"]
    assert "origin" not in theirs[0] and "requestId" not in theirs[0]


def test_unwatch_stops_the_messages_and_the_watcher(
    channel: Channel, api: Call, server: Server, ref: dict[str, str], started: dict[str, Any]
) -> None:
    _watch(channel, ref)
    channel.send(type="unwatch", path="", **ref)
    assert channel.wait_for(type="unwatched")["path"] == ""
    run(api, ref, "echo gone > unseen.txt")
    _watch(channel, ref)  # a new watcher, which starts after unseen.txt was made
    run(api, ref, "echo here > seen.txt")
    _changes(channel, "seen.txt")
    every = [c for m in channel.backlog if m["type"] == "files" for c in m["changes"]]
    assert not any(c["path"] == "unseen.txt" for c in every)
    channel.send(type="unwatch", path="", **ref)
    channel.wait_for(type="unwatched")
    with server.client() as http:
        assert http.get("/api/v1/stats").json()["watchers"] == 0
    _no_watcher_left(lambda command: run(api, ref, command))


def test_a_watcher_left_behind_is_replaced(
    channel: Channel, api: Call, ref: dict[str, str], started: dict[str, Any]
) -> None:
    """A backend that died leaves its watcher running in the workspace: the next one's watcher ends it."""
    orphan = '(sleep 600 | perl -e "$W" /workspace 100 50 1000 1) >/dev/null 2>&1 </dev/null &'
    run(api, ref, orphan, env={"W": WATCH_SCRIPT})
    count = "ps -eo args | grep -c '[i]de-watch: the' || true"
    deadline = time.monotonic() + 30
    while run(api, ref, count)["output"].strip() != "1":
        assert time.monotonic() < deadline, "the stand-in for a watcher left behind did not start"
        time.sleep(0.1)
    _watch(channel, ref)
    assert run(api, ref, count)["output"].strip() == "1"  # its own, the one left behind ended
    channel.send(type="unwatch", path="", **ref)
    channel.wait_for(type="unwatched")
    _no_watcher_left(lambda command: run(api, ref, command))


def _no_watcher_left(run_command: Callable[[str], dict[str, Any]]) -> None:
    """No watcher process is left in the workspace (it ends once the backend lets it go)."""
    deadline = time.monotonic() + 30
    while run_command("ps -eo args | grep -c '[i]de-watch' || true")["output"].strip() != "0":
        assert time.monotonic() < deadline, "a watcher process was left running in the workspace"
        time.sleep(0.2)


def test_a_watch_needs_read_access_and_ends_with_its_connection(
    server: Server, api: Call, ref: dict[str, str], started: dict[str, Any]
) -> None:
    with server.client() as http:
        other = http.post("/api/v1/tokens", json={"projectId": "someone-else", "workspaceId": "w"}).json()["token"]
        reader = http.post("/api/v1/tokens", json={**ref, "scopes": ["read"]}).json()["token"]
    outsider = Channel(server, token=other)
    try:
        outsider.send(type="watch", path="", **ref)
        assert outsider.wait_for(type="error")["code"] == "forbidden"
    finally:
        outsider.close()
    viewer = Channel(server, token=reader)  # reading is enough to watch
    _watch(viewer, ref)
    run(api, ref, "echo seen > by-the-viewer.txt")
    _changes(viewer, "by-the-viewer.txt")
    viewer.close()  # its last client gone: the watcher stops
    with server.client() as http:
        deadline = time.monotonic() + 30
        while http.get("/api/v1/stats").json()["watchers"] != 0:
            assert time.monotonic() < deadline, "the watcher outlived its last connection"
            time.sleep(0.1)


@pytest.fixture(scope="module")
def docker_exec_server(tmp_path_factory: pytest.TempPathFactory, docker_engine: None) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("docker-exec"), IDE_EXEC_AGENT="false")
    try:
        yield srv
    finally:
        srv.stop()
        remove_instance(srv.instance)


def test_the_watcher_runs_through_docker_exec_too(docker_exec_server: Server, ref: dict[str, str]) -> None:
    """Without the agent (IDE_EXEC_AGENT=false, or an image without it) the watcher runs as a Docker exec."""
    with docker_exec_server.client() as http:
        assert http.post("/api/v1/containers/start", json=ref).status_code == 200
        channel = Channel(docker_exec_server)
        try:
            _watch(channel, ref)
            command = {**ref, "command": "mkdir d && echo 1 > d/x && mv d/x d/y"}
            assert http.post("/api/v1/containers/exec", json=command).json()["exitCode"] == 0
            assert {"path": "d", "kind": "created", "type": "dir"} in _changes(channel, "d")
            channel.send(type="unwatch", path="", **ref)
            channel.wait_for(type="unwatched")
            assert http.get("/api/v1/stats").json()["watchers"] == 0
            _no_watcher_left(lambda c: http.post("/api/v1/containers/exec", json={**ref, "command": c}).json())
        finally:
            channel.close()


def test_a_stopped_workspace_ends_the_watch(
    channel: Channel, api: Call, ref: dict[str, str], started: dict[str, Any]
) -> None:
    _watch(channel, ref)
    assert api("stop", ref).status_code == 200
    ended = channel.wait_for(type="unwatched")
    assert ended["reason"] == "container_stopped"
    channel.send(type="watch", path="", **ref)
    refused = channel.wait_for(type="error")
    assert refused["code"] == "not_running"


@pytest.mark.parametrize(
    ("path", "code", "words"),
    [
        ("../etc", "invalid_path", "leaves the workspace"),
        ("/etc", "invalid_path", "absolute"),
        ("missing", "not_found", "does not exist"),
        ("file.txt", "conflict", "is a file"),
        ("link", "invalid_path", "symbolic link"),
    ],
)
def test_a_bad_path_is_refused_clearly(
    channel: Channel, api: Call, ref: dict[str, str], started: dict[str, Any], path: str, code: str, words: str
) -> None:
    run(api, ref, "echo 1 > file.txt && mkdir real && ln -s real link")
    channel.send(type="watch", path=path, **ref)
    error = channel.wait_for(type="error")
    assert error["code"] == code and words in error["message"], error


def test_a_full_event_queue_says_overflow_and_watching_goes_on(
    channel: Channel, api: Call, ref: dict[str, str], started: dict[str, Any]
) -> None:
    """The kernel's queue of events (fs.inotify.max_queued_events, 16,384 here) overflows for real while the
    watcher is held stopped (SIGSTOP) and 7,000 files are made (three events each)."""
    _watch(channel, ref)
    run(api, ref, "mkdir q")
    _changes(channel, "q")  # watched from now on
    burst = (
        'pid=$(cat /tmp/.ide-watch.pid) && kill -STOP "$pid" && '
        'for i in $(seq 1 7000); do echo $i > q/$i; done; kill -CONT "$pid"'
    )
    assert run(api, ref, burst, timeout=600)["exitCode"] == 0
    assert channel.wait_for(type="files", reason="queue", timeout=60)["overflow"] is True
    # It walked the workspace again and goes on: a change after it is reported as usual.
    run(api, ref, "echo after > q/after.txt")
    assert {"path": "q/after.txt", "kind": "created"}.items() <= _changes(channel, "q/after.txt")[-1].items()


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory, docker_engine: None) -> Iterator[Server]:
    """A server whose watchers watch at most 3 folders and carry at most 50 paths per batch."""
    srv = start_server(tmp_path_factory.mktemp("limited"), IDE_WATCH_MAX_FOLDERS="3", IDE_WATCH_MAX_BATCH="50")
    try:
        yield srv
    finally:
        srv.stop()
        remove_instance(srv.instance)


def test_past_its_limits_the_watcher_says_overflow(limited: Server, ref: dict[str, str]) -> None:
    with limited.client() as http:
        answer = http.post("/api/v1/containers/start", json={**ref, "files": {f"{d}/x": "1" for d in "abcd"}})
        assert answer.status_code == 200, answer.text
        channel = Channel(limited)
        try:
            _watch(channel, ref)
            # Five folders (the workspace and a-d) for three watches: the client is told some are not watched.
            assert channel.wait_for(type="files", overflow=True)["reason"] == "limit"
            # More paths in one batch than it may carry: one overflow instead of the paths.
            command = "for i in $(seq 1 200); do echo $i > f$i; done"
            result = http.post("/api/v1/containers/exec", json={**ref, "command": command}).json()
            assert result["exitCode"] == 0
            too_many = channel.wait_for(type="files", reason="too_many")
            assert too_many["overflow"] is True and too_many["changes"] == []
        finally:
            channel.close()


def test_the_messages_match_their_models() -> None:
    """What watch.py builds and what protocol.py documents are the same JSON."""
    sent = watch.Watch(WorkspaceRef("p1", "w1"), "src", lambda m: None).message("watching", folders=3)
    assert protocol.server_message.validate_python(sent).type == "watching"
    message = {"type": "files", "projectId": "p", "workspaceId": "w", "path": "", "changes": []}
    change = {"path": "b", "kind": "moved", "type": "file", "from": "a", "version": "0" * 64}
    model = protocol.server_message.validate_python({**message, "changes": [change]})
    assert isinstance(model, protocol.FilesMessage) and model.changes[0].from_ == "a"
