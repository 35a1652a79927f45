"""The Python SDK (ide_backend.client) against a real server on the real engine: every method of Client and
AsyncClient, the errors each failure maps to, sync_dir with ignore patterns and the server's body limit, and the
live channel, including connections cut for real (a TCP relay between the SDK and the server aborts its sockets,
stops taking connections, or loses what one direction carries) with every output byte checked to arrive once, in
order."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import uuid
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from ide_backend.api.protocol import FilesMessage
from ide_backend.client import (
    AsyncClient,
    BadRequestError,
    Client,
    ConflictError,
    FileWatch,
    ForbiddenError,
    IDEClientError,
    IDEConnectionError,
    IgnoreRules,
    InvalidRequestError,
    LiveChannel,
    NotFoundError,
    NotRunningError,
    PayloadTooLargeError,
    UnauthorizedError,
    Workspace,
)
from ide_backend.client.calls import DEFAULT_URL

from .harness import Server, free_port, remove_instance
from .helpers import start_server

docker = pytest.mark.docker
TIMEOUT = 120  # seconds for any one async test body


def new_project() -> str:
    return "sdk-" + uuid.uuid4().hex[:8]


@pytest.fixture
def client(server: Server) -> Iterator[Client]:
    with Client(server.url, server.token) as c:
        yield c


@pytest.fixture
def workspace(client: Client) -> Iterator[Workspace]:
    """A running workspace of its own, deleted afterwards."""
    ws = client.workspace(new_project(), "w")
    ws.start()
    yield ws
    ws.delete()


# -- no server needed ---------------------------------------------------------------------------------------


def test_the_package_imports_without_starting_anything() -> None:
    code = "import threading, ide_backend.client as c; assert threading.active_count() == 1; print(len(c.__all__))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr


def test_url_and_token_come_from_arguments_then_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IDE_URL", raising=False)
    monkeypatch.delenv("IDE_TOKEN", raising=False)
    with Client() as c:
        assert (c.url, c.token) == (DEFAULT_URL, None)
    monkeypatch.setenv("IDE_URL", "http://example.test:9000/")
    monkeypatch.setenv("IDE_TOKEN", "from-env")
    with Client() as c:
        assert (c.url, c.token) == ("http://example.test:9000", "from-env")
    with Client("https://other.test", "given") as c:
        assert (c.url, c.token) == ("https://other.test", "given")
    assert LiveChannel().url == "ws://example.test:9000/api/v1/ws"
    assert LiveChannel("https://other.test").url == "wss://other.test/api/v1/ws"
    with pytest.raises(IDEClientError, match="must start with http"):
        Client("example.test")


def test_requests_the_server_would_refuse_fail_before_sending() -> None:
    with Client("http://127.0.0.1:9", "t") as c:  # nothing listens there: any request sent would fail differently
        with pytest.raises(InvalidRequestError):
            c.workspace("../etc", "w")
        ws = c.workspace("p", "w")
        with pytest.raises(InvalidRequestError, match="command"):
            ws.exec("")
        with pytest.raises(InvalidRequestError, match="theme"):
            ws.set_theme("bad\nname")
        with pytest.raises(InvalidRequestError, match="scopes"):
            c.mint_token("p", scopes=["admin"])
        with pytest.raises(IDEConnectionError) as refused:
            ws.status()
        assert refused.value.status is None and refused.value.code == "connection_error"
    with pytest.raises(InvalidRequestError, match="command"):
        asyncio.run(LiveChannel("http://127.0.0.1:9", "t").exec("p", "w", ""))  # checked before it would connect


@pytest.mark.parametrize(
    ("pattern", "path", "is_dir", "ignored"),
    [
        ("*.pyc", "a.pyc", False, True),
        ("*.pyc", "deep/down/a.pyc", False, True),
        ("node_modules/", "web/node_modules", True, True),
        ("node_modules/", "node_modules", False, False),  # a file of that name is not a folder
        ("/dist", "dist", True, True),
        ("/dist", "src/dist", True, False),  # anchored
        ("docs/*.md", "docs/a.md", False, True),
        ("docs/*.md", "docs/sub/a.md", False, False),  # `*` stops at `/`
        ("a/**/z", "a/z", False, True),
        ("a/**/z", "a/b/c/z", False, True),
        ("**/tmp", "x/tmp", True, True),
        ("logs/**", "logs/x/y.txt", False, True),
        ("logs/**", "logs", True, False),
        ("x[0-9].txt", "x7.txt", False, True),
        ("x[!0-9].txt", "x7.txt", False, False),
        ("\\#notes", "#notes", False, True),
        ("# a comment", "# a comment", False, False),
    ],
)
def test_ignore_patterns_follow_gitignore(pattern: str, path: str, is_dir: bool, ignored: bool) -> None:
    assert IgnoreRules([pattern]).ignored(path, is_dir) is ignored


def test_a_later_negation_takes_a_file_back() -> None:
    rules = IgnoreRules(["*.log", "!keep.log", "", "# comment"])
    assert rules.ignored("a.log", False) and not rules.ignored("keep.log", False)
    assert IgnoreRules(["!keep.log", "*.log"]).ignored("keep.log", False)  # the last match decides


# -- the HTTP API, blocking ---------------------------------------------------------------------------------


@docker
def test_every_workspace_method(client: Client) -> None:
    ws = client.workspace(new_project(), "w")
    started = ws.start(
        template="base",
        files={"hello.txt": "hi\n", "bin/run": {"content": "IyEvYmluL3NoCg==", "encoding": "base64", "mode": 0o755}},
    )
    assert started.message == "Container started successfully" and started.data.running
    assert started.data.template == "base"
    try:
        status = ws.status()
        assert status.data.running and status.data.password and status.data.workspace_id == "w"

        ran = ws.exec("cat ../hello.txt; echo $FOO; pwd; echo oops >&2; exit 3", cwd="bin", env={"FOO": "bar"})
        assert (ran.output, ran.error, ran.exit_code) == ("hi\nbar\n/workspace/bin\n", "oops\n", 3)
        assert ws.exec("sleep 5", timeout=0.5).timed_out

        synced = ws.sync({"src/a.js": "1", "src/b.js": "2"})
        assert synced.message == "Files synced successfully" and set(synced.versions) == {"src/a.js", "src/b.js"}
        listed = ws.list_files("src")
        assert sorted((e.path, e.type) for e in listed.entries) == [("src/a.js", "file"), ("src/b.js", "file")]
        assert {e.path: e.version for e in listed.entries} == synced.versions
        assert [e.path for e in ws.list_files(depth=2, limit=1).entries] and ws.list_files(limit=1).truncated

        read = ws.read_file("src/a.js")
        assert (read.content, read.encoding, read.size, read.version) == ("1", "utf-8", 1, synced.versions["src/a.js"])
        ws.sync({"blob.bin": {"content": "AP8=", "encoding": "base64"}})
        assert ws.read_file("blob.bin").encoding == "base64" and ws.read_bytes("blob.bin") == b"\x00\xff"
        assert ws.read_bytes("bin/run") == b"#!/bin/sh\n"

        assert ws.delete_files(["src/b.js"]).deleted == ["src/b.js"]
        assert [e.path for e in ws.list_files("src").entries] == ["src/a.js"]
        cleaned = ws.sync({"only.txt": "x"}, clean=True)
        assert [e.path for e in ws.list_files().entries] == ["only.txt"] and cleaned.versions

        assert ws.set_theme("Default Dark Modern").theme == "Default Dark Modern"
        assert ws.status().data.theme == "Default Dark Modern"

        stopped = ws.stop()
        assert stopped.message == "Container stopped successfully" and not stopped.data.running
        assert stopped.data.stop_reason == "requested"
        assert ws.stop().message == "Container was already stopped"
        assert ws.read_file("only.txt").content == "x"  # files/read works on a stopped workspace too
    finally:
        assert ws.delete().message == "Workspace deleted successfully"
    with pytest.raises(NotFoundError):
        ws.status()


@docker
def test_list_pages_through_every_workspace(client: Client) -> None:
    project = new_project()
    handles = [client.workspace(project, f"w{i}") for i in range(5)]
    try:
        for ws in handles:
            ws.start()
        page = client.list_page(project_id=project, limit=2)
        assert [i.workspace_id for i in page.data] == ["w0", "w1"] and page.next_cursor
        seen = [info.workspace_id for info in client.list(project_id=project, page_size=2)]
        assert seen == ["w0", "w1", "w2", "w3", "w4"]
        handles[1].stop()
        assert [i.workspace_id for i in client.list(project_id=project, status="running")] == ["w0", "w2", "w3", "w4"]
    finally:
        for ws in handles:
            ws.delete()


@docker
def test_fork_templates_and_tokens(client: Client, server: Server, workspace: Workspace) -> None:
    templates = client.templates()
    assert templates.default in {t.name for t in templates.data} and "base" in {t.name for t in templates.data}

    workspace.sync({"notes.txt": "forked\n"})
    forked = workspace.fork("copy")
    assert forked.message == "Workspace forked successfully" and forked.data.workspace_id == "copy"
    copy = client.workspace(workspace.project_id, "copy")
    try:
        copy.start()
        assert copy.exec("cat notes.txt").output == "forked\n"
        with pytest.raises(ConflictError):
            workspace.fork("copy")  # exists already
    finally:
        copy.delete()

    minted = workspace.mint_token(ttl_seconds=600, scopes=["read"])
    assert (minted.project_id, minted.workspace_id, minted.scopes) == (workspace.project_id, "w", ["read"])
    with Client(server.url, minted.token) as reader:
        mine = reader.workspace(workspace.project_id, "w")
        assert mine.status().data.running
        with pytest.raises(ForbiddenError) as denied:
            mine.exec("true")  # read only
        assert denied.value.status == 403 and denied.value.code == "forbidden"
        with pytest.raises(ForbiddenError):
            reader.workspace(workspace.project_id, "other").status()
        with pytest.raises(ForbiddenError):
            reader.mint_token(workspace.project_id)  # scoped tokens mint nothing
        assert [i.workspace_id for i in reader.list()] == ["w"]

        revoked = client.revoke_tokens(workspace.project_id, "w")
        assert revoked.revoked_at.endswith("Z")
        with pytest.raises(UnauthorizedError) as refused:
            mine.status()
        assert refused.value.status == 401 and "revoked" in refused.value.message
    project_token = client.mint_token(workspace.project_id).token
    with Client(server.url, project_token) as project_client:
        assert project_client.workspace(workspace.project_id, "w").exec("echo ok").output == "ok\n"


@docker
def test_a_projects_webhook_is_set_read_and_removed(client: Client) -> None:
    project = new_project()
    assert client.get_webhook(project).url is None
    made = client.set_webhook(project, "http://127.0.0.1:9/hooks")
    assert made.url == "http://127.0.0.1:9/hooks" and made.secret and len(made.secret) >= 32
    given = client.set_webhook(project, "http://127.0.0.1:9/other", secret="a-project-secret-of-its-own")
    assert given.secret == "a-project-secret-of-its-own"
    read = client.get_webhook(project)
    assert read.url == "http://127.0.0.1:9/other" and read.secret is None
    assert client.set_webhook(project, None).url is None
    assert client.get_webhook(project).url is None
    with pytest.raises(InvalidRequestError):
        client.set_webhook(project, "ftp://127.0.0.1/x")


@docker
def test_errors_carry_the_servers_code_message_and_status(client: Client, server: Server) -> None:
    project = new_project()
    ws = client.workspace(project, "w")
    with pytest.raises(NotFoundError) as missing:
        ws.status()
    assert (missing.value.status, missing.value.code) == (404, "not_found")
    assert "does not exist" in missing.value.message and "404" in str(missing.value)
    assert missing.value.request_id and missing.value.request_id in str(missing.value)

    ws.start(files={"a.txt": "one"})
    try:
        version = ws.read_file("a.txt").version
        ws.sync({"a.txt": {"content": "two", "ifMatch": version}})  # saves over the version it read
        with pytest.raises(ConflictError) as stale:
            ws.sync({"a.txt": {"content": "three", "ifMatch": version}, "new.txt": {"content": "n", "ifMatch": None}})
        assert stale.value.status == 409 and stale.value.code == "conflict"
        conflicts = {c.path: c.version for c in stale.value.conflicts}
        assert conflicts == {"a.txt": ws.read_file("a.txt").version}  # new.txt did not exist: no conflict
        assert ws.read_file("a.txt").content == "two"

        with pytest.raises(BadRequestError) as outside:
            ws.read_file("../etc/passwd")
        assert (outside.value.status, outside.value.code) == (400, "invalid_path")
        with pytest.raises(InvalidRequestError) as onto_itself:
            ws.fork("w")
        assert (onto_itself.value.status, onto_itself.value.code) == (422, "validation_error")
        assert onto_itself.value.details.get("fields") is not None

        ws.stop()
        with pytest.raises(NotRunningError) as stopped:
            ws.exec("true")
        assert isinstance(stopped.value, ConflictError) and stopped.value.code == "not_running"
    finally:
        ws.delete()
    with Client(server.url, "wrong-token") as stranger, pytest.raises(UnauthorizedError) as wrong:
        stranger.templates()
    assert (wrong.value.status, wrong.value.code) == (401, "unauthorized")
    with Client(f"http://127.0.0.1:{free_port()}", "t") as nobody, pytest.raises(IDEConnectionError):
        nobody.templates()


# -- sync_dir -----------------------------------------------------------------------------------------------


def make_tree(root: Path) -> dict[str, bytes]:
    """A project folder with things to leave out; returns what should arrive, by path."""
    wanted = {
        "README.md": b"# demo\n",
        "src/app.py": b"print('hi')\n",
        "src/util/ñame ü.txt": "ünïcödé\n".encode(),
        "src/keep.pyc": b"kept by a negation",
        "data/blob.bin": bytes(range(256)) * 40,
        "data/quotes.json": b'{"a": "\\"quoted\\"\\n"}' * 100,
        "run.sh": b"#!/bin/sh\necho run\n",
        "deep/" + "/".join(f"d{i}" for i in range(10)) + "/leaf.txt": b"leaf",
        "src/build/notes.txt": b"build/ at the root is anchored; this one stays",
    }
    wanted.update({f"many/f{i:03}.txt": f"file {i}\n".encode() for i in range(120)})
    left_out = {
        ".git/HEAD": b"ref: refs/heads/main\n",
        "node_modules/x/index.js": b"x",
        "src/node_modules/y.js": b"y",
        "src/a.pyc": b"\x00",
        "build/out.o": b"\x7fELF",
        "logs/today.log": b"log",
    }
    for path, data in {**wanted, **left_out}.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    (root / "run.sh").chmod(0o755)
    (root / "empty").mkdir()
    (root / "link-to-readme").symlink_to("README.md")
    return wanted


IGNORE = [".git/", "node_modules/", "*.pyc", "!keep.pyc", "/build", "*.log"]


def check_tree(ws: Workspace, wanted: dict[str, bytes], dest: str = "") -> None:
    prefix = f"{dest}/" if dest else ""
    found = ws.exec(f"cd /workspace/{dest} && find . -type f | sort", timeout=60).output.splitlines()
    assert sorted(p.removeprefix("./") for p in found) == sorted(wanted)
    for path in ("README.md", "data/blob.bin", "src/util/ñame ü.txt", "data/quotes.json"):
        assert ws.read_bytes(prefix + path) == wanted[path]
    assert ws.exec(f"stat -c %a {prefix}run.sh {prefix}README.md").output.split() == ["755", "644"]
    assert ws.exec(f"test -d {prefix}empty && test -d {prefix}logs && echo folders").output == "folders\n"


@docker
def test_sync_dir_uploads_a_folder_with_ignores_in_few_requests(workspace: Workspace, tmp_path: Path) -> None:
    wanted = make_tree(tmp_path / "project")
    workspace.sync({"stale.txt": "gone after clean"})
    result = workspace.sync_dir(tmp_path / "project", IGNORE, clean=True)
    assert result.requests == 1  # everything fits one body
    assert result.files == len(wanted) and result.folders == 2  # `empty`, and `logs` with its log left out
    assert result.skipped == ["link-to-readme"]
    assert result.bytes == sum(len(v) for v in wanted.values())
    assert set(result.versions) == set(wanted)
    check_tree(workspace, wanted)

    # The same folder under a prefix, with limits that make it take many requests.
    small = workspace.sync_dir(tmp_path / "project", IGNORE, dest="copy", max_body_bytes=16 * 1024, max_entries=25)
    assert small.requests >= 6 and small.files == len(wanted)
    check_tree(workspace, wanted, dest="copy")
    assert workspace.exec("test -e stale.txt || echo cleaned").output == "cleaned\n"


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory, docker_engine: None) -> Iterator[Server]:
    """A server that takes bodies of at most 200 kB."""
    srv = start_server(tmp_path_factory.mktemp("small"), IDE_MAX_BODY_BYTES=str(200_000))
    try:
        yield srv
    finally:
        srv.stop()
        remove_instance(srv.instance)


@docker
def test_sync_dir_splits_what_a_lower_body_limit_refuses(small_server: Server, tmp_path: Path) -> None:
    root = tmp_path / "big"
    wanted = {f"part{i}.txt": (f"{i}" * 50_000).encode() for i in range(10)}  # 500 kB in all
    root.mkdir()
    for name, data in wanted.items():
        (root / name).write_bytes(data)
    with Client(small_server.url, small_server.token) as c:
        ws = c.workspace(new_project(), "w")
        ws.start()
        try:
            result = ws.sync_dir(root)  # planned as one 64 MiB body; the server's 413 makes it split
            assert result.files == 10 and result.requests >= 3
            assert ws.exec("cat part*.txt | wc -c").output.strip() == str(sum(len(v) for v in wanted.values()))
            (root / "huge.txt").write_bytes(b"x" * 300_000)
            with pytest.raises(PayloadTooLargeError) as too_large:
                ws.sync_dir(root)  # one file over the server's limit: refused by the server, no split helps
            assert too_large.value.status == 413
            with pytest.raises(PayloadTooLargeError, match=r"huge\.txt") as before:
                ws.sync_dir(root, max_body_bytes=200_000)  # known here: refused before sending anything
            assert before.value.status is None
        finally:
            ws.delete()


# -- the HTTP API, asyncio ----------------------------------------------------------------------------------


@docker
def test_the_async_client_mirrors_the_blocking_one(server: Server, tmp_path: Path) -> None:
    wanted = make_tree(tmp_path / "project")

    async def scenario() -> None:
        async with AsyncClient(server.url, server.token) as c:
            project = new_project()
            ws = c.workspace(project, "w")
            assert (await ws.start(files={"a.txt": "A"})).data.running
            try:
                assert (await ws.exec("cat a.txt")).output == "A"
                assert (await ws.status()).data.running
                await ws.sync({"b.txt": "B"})
                assert sorted(e.path for e in (await ws.list_files()).entries) == ["a.txt", "b.txt"]
                assert (await ws.read_bytes("b.txt")) == b"B"
                assert (await ws.delete_files(["b.txt"])).deleted == ["b.txt"]
                assert (await ws.set_theme("Default Light Modern")).theme == "Default Light Modern"
                result = await ws.sync_dir(tmp_path / "project", IGNORE, dest="tree", max_body_bytes=16 * 1024)
                assert result.files == len(wanted) and result.requests > 1
                assert [i.workspace_id async for i in c.list(project_id=project, page_size=1)] == ["w"]
                assert (await c.templates()).default
                token = (await ws.mint_token(scopes=["read"])).token
                async with AsyncClient(server.url, token) as reader:
                    with pytest.raises(ForbiddenError):
                        await reader.workspace(project, "w").exec("true")
                    await c.revoke_tokens(project)
                    with pytest.raises(UnauthorizedError):
                        await reader.workspace(project, "w").status()
                await ws.stop()
                with pytest.raises(NotRunningError):
                    await ws.exec("true")
            finally:
                await ws.delete()
        check = Client(server.url, server.token)
        with check, pytest.raises(NotFoundError):
            check.workspace(project, "w").status()

    asyncio.run(asyncio.wait_for(scenario(), TIMEOUT))


# -- the live channel ---------------------------------------------------------------------------------------


class Relay:
    """A TCP relay between the SDK and the server, for faults on real sockets: cut() aborts every connection
    through it (both sockets, as a network failure would), hold() also stops taking new ones until release(), and
    drop_up / drop_down lose whatever one direction carries meanwhile. Nothing in the SDK is patched."""

    def __init__(self, server: Server) -> None:
        self.target_port = int(server.url.rsplit(":", 1)[1])
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.drop_up = False
        self.drop_down = False
        self.accepted = 0
        self._sockets: list[asyncio.StreamWriter] = []
        self._listener: asyncio.Server | None = None

    async def __aenter__(self) -> Relay:
        await self.release()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.hold()

    async def release(self) -> None:
        self._listener = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def hold(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        self.cut()

    def cut(self) -> None:
        for writer in self._sockets:
            writer.transport.abort()
        self._sockets.clear()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._sockets += [writer, up_writer]
        await asyncio.gather(self._pipe(reader, up_writer, "up"), self._pipe(up_reader, writer, "down"))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, direction: str) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                if not (self.drop_up if direction == "up" else self.drop_down):
                    writer.write(data)
                    await writer.drain()
        writer.transport.abort()


async def until(condition: Callable[[], bool], timeout: float = 10) -> None:
    """Until `condition()` is true."""
    for _ in range(int(timeout / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"not within {timeout} s")


def run_async(scenario: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(scenario, TIMEOUT))


@docker
def test_live_exec_stdin_terminals_signals_attach_and_status(server: Server, workspace: Workspace) -> None:
    p, w = workspace.project_id, workspace.workspace_id

    async def scenario() -> None:
        async with LiveChannel(server.url, server.token) as live, LiveChannel(server.url, server.token) as other:
            process = await live.exec(p, w, "echo out; echo err >&2; exit 7")
            chunks = [chunk async for chunk in process]
            assert "".join(c.data for c in chunks if c.type == "stdout") == "out\n"
            assert "".join(c.data for c in chunks if c.type == "stderr") == "err\n"
            assert [c.seq for c in chunks] == list(range(1, len(chunks) + 1))
            exit = await process
            assert (exit.exit_code, exit.timed_out, exit.reason) == (7, False, None)

            cat = await live.exec(p, w, "cat")
            await cat.write("hello\n")
            assert (await anext(cat)).data == "hello\n"
            await cat.close_stdin()
            assert (await cat).exit_code == 0

            terminal = await live.exec(p, w, "read line; stty size", tty=True, cols=100, rows=30)
            await terminal.resize(120, 40)
            await terminal.write("\r")
            assert "40 120" in "".join([c.data async for c in terminal])

            sleeper = await live.exec(p, w, "sleep 60", id="sdk-" + uuid.uuid4().hex)
            with pytest.raises(ConflictError):
                await other.exec(p, w, "true", id=sleeper.id)  # ids are global on the server
            await sleeper.signal("SIGTERM")
            assert (await sleeper).exit_code == 143

            counter = await live.exec(p, w, "for i in 1 2 3 4 5; do echo $i; sleep 0.1; done")
            follower = await other.attach(counter.id)  # another connection, from the start
            seen = [c.data async for c in counter]
            assert "".join(seen) == "".join([c.data async for c in follower]) == "1\n2\n3\n4\n5\n"
            assert (await follower).exit_code == 0 and follower.missed == 0
            listed = {item.id: item for item in await live.processes(p, w)}
            assert listed[counter.id].exit_code == 0 and listed[counter.id].command.startswith("for i")
            with pytest.raises(NotFoundError):
                await live.attach("sdk-never-" + uuid.uuid4().hex)
            await live.ping()

            async with await live.subscribe(p, w) as events:
                snapshot = await anext(events)
                assert (snapshot.status, snapshot.source) == ("running", "snapshot")
                await asyncio.to_thread(workspace.stop)
                statuses = []
                async for event in events:
                    statuses.append(event.status)
                    if event.status == "exited":
                        assert event.reason == "requested"
                        break
                assert "stopping" in statuses
            with pytest.raises(NotRunningError):
                await live.exec(p, w, "true")
            await asyncio.to_thread(workspace.start)

    run_async(scenario())


@docker
def test_live_refusals_map_to_the_same_errors(server: Server, client: Client, workspace: Workspace) -> None:
    p = workspace.project_id
    reader = workspace.mint_token(scopes=["read"]).token
    writer = workspace.mint_token().token

    async def scenario() -> None:
        with pytest.raises(UnauthorizedError) as refused:
            async with LiveChannel(server.url, "wrong-token"):
                pass
        assert refused.value.status == 401 and refused.value.code == "unauthorized"
        async with LiveChannel(server.url, reader) as live:
            with pytest.raises(ForbiddenError) as forbidden:
                await live.exec(p, "w", "true")  # read only
            assert forbidden.value.code == "forbidden" and forbidden.value.status is None
            with pytest.raises(ForbiddenError):
                await live.subscribe(p, "other")
            assert (await anext(await live.subscribe(p, "w"))).status == "running"
        async with LiveChannel(server.url, writer) as live:
            process = await live.exec(p, "w", "sleep 60")
            await asyncio.to_thread(client.revoke_tokens, p, "w")
            with pytest.raises(UnauthorizedError) as revoked:
                await process  # the server closes the channel (4401): the channel ends, and says why
            assert revoked.value.status == 401 and not live.connected
            with pytest.raises(UnauthorizedError):
                await live.ping()

    run_async(scenario())


PACED = 'i=0; while [ $i -lt 4000 ]; do echo "line $i"; i=$((i+1)); [ $((i % 200)) -eq 0 ] && sleep 0.1; done; exit 0'
PACED_OUTPUT = "".join(f"line {i}\n" for i in range(4000))


@docker
def test_output_survives_cut_connections_once_and_in_order(server: Server, workspace: Workspace) -> None:
    p, w = workspace.project_id, workspace.workspace_id

    async def scenario() -> None:
        async with Relay(server) as relay, LiveChannel(relay.url, server.token) as live:
            process = await live.exec(p, w, PACED)
            text, seqs, cuts = "", [], 0
            async for chunk in process:
                text += chunk.data
                seqs.append(chunk.seq)
                if cuts < 3 and text.count("\n") >= (cuts + 1) * 900:
                    relay.cut()  # mid-stream: the process goes on writing meanwhile
                    cuts += 1
            assert (await process).exit_code == 0
            assert cuts == 3 and live.reconnects == 3 and relay.accepted == 4
            assert text == PACED_OUTPUT  # every byte, once, in order
            assert seqs == list(range(1, len(seqs) + 1)) and process.missed == 0

            # At full speed: 589 kB written in a burst, cut twice while it arrives.
            burst = await live.exec(p, w, "seq 1 100000")
            text = ""
            async for chunk in burst:
                text += chunk.data
                if relay.accepted < 6 and len(text) > (relay.accepted - 3) * 100_000:
                    relay.cut()
            assert text == "".join(f"{i}\n" for i in range(1, 100_001)) and burst.missed == 0
            assert relay.accepted >= 5

    run_async(scenario())


@docker
def test_stdin_written_while_the_connection_is_down_waits_for_it(server: Server, workspace: Workspace) -> None:
    p, w = workspace.project_id, workspace.workspace_id

    async def scenario() -> None:
        async with Relay(server) as relay, LiveChannel(relay.url, server.token) as live:
            cat = await live.exec(p, w, "cat")
            await cat.write("one\n")
            assert (await anext(cat)).data == "one\n"
            await relay.hold()  # the connection drops and no new one is taken
            await until(lambda: not live.connected)
            writing = asyncio.create_task(cat.write("two\n"))
            await asyncio.sleep(0.5)
            assert not writing.done()
            await relay.release()
            await writing
            assert (await anext(cat)).data == "two\n"
            await cat.close_stdin()
            assert (await cat).exit_code == 0 and live.reconnects == 1

    run_async(scenario())


@docker
def test_an_exec_lost_on_the_way_is_sent_again_and_runs_once(server: Server, workspace: Workspace) -> None:
    p, w = workspace.project_id, workspace.workspace_id

    async def scenario() -> None:
        async with Relay(server) as relay, LiveChannel(relay.url, server.token) as live:
            for lost in ("up", "down"):  # the exec itself lost, or the server's answers to it
                setattr(relay, f"drop_{lost}", True)
                command = f"echo ran >> runs-{lost}.txt; echo done"
                starting = asyncio.create_task(live.exec(p, w, command))
                await asyncio.sleep(1.0)
                assert not starting.done()
                setattr(relay, f"drop_{lost}", False)
                relay.cut()
                process = await starting
                assert "".join([c.data async for c in process]) == "done\n" and (await process).exit_code == 0
                ran = await asyncio.to_thread(workspace.exec, f"cat runs-{lost}.txt")
                assert ran.output == "ran\n"  # once, not twice, not never

    run_async(scenario())


@docker
def test_a_channel_that_cannot_come_back_says_so(server: Server, workspace: Workspace) -> None:
    p, w = workspace.project_id, workspace.workspace_id

    async def scenario() -> None:
        async with Relay(server) as relay, LiveChannel(relay.url, server.token, reconnect_timeout=1.0) as live:
            process = await live.exec(p, w, "sleep 60")
            await relay.hold()
            with pytest.raises(IDEConnectionError, match="could not be opened again"):
                await process
            with pytest.raises(IDEConnectionError):
                await live.exec(p, w, "true")
            assert not live.connected and process.error is not None

    run_async(scenario())


@docker
def test_live_watch_follows_changes_says_when_some_were_lost_and_ends_with_the_workspace(
    server: Server, client: Client, workspace: Workspace
) -> None:
    p, w = workspace.project_id, workspace.workspace_id

    async def changed(watch: FileWatch, path: str) -> FilesMessage:
        async for message in watch:
            if any(change.path == path for change in message.changes) or message.overflow:
                return message
        raise AssertionError(f"the watch ended before {path} changed ({watch.reason})")

    async def scenario() -> None:
        async with Relay(server) as relay, LiveChannel(relay.url, server.token) as live:
            with pytest.raises(InvalidRequestError):
                await live.watch(p, w, "../etc")
            with pytest.raises(NotFoundError):
                await live.watch(p, w, "src")  # not there yet
            await asyncio.to_thread(workspace.exec, "mkdir src")
            watch = await live.watch(p, w, "./src/")  # named as the server names it: "src"
            assert watch.path == "src" and (watch.folders or 0) >= 2  # the workspace's watcher: /workspace and src
            assert await live.watch(p, w, "src") is watch
            await asyncio.to_thread(workspace.exec, "echo hi > src/a.txt && echo no > b.txt")
            seen = await changed(watch, "src/a.txt")
            assert not seen.overflow
            created = next(c for c in seen.changes if c.path == "src/a.txt")
            assert created.kind in ("created", "modified") and all(c.path.startswith("src") for c in seen.changes)

            relay.cut()  # changes while the connection is down are lost: the watch says so, then goes on
            lost = await changed(watch, "(none)")
            assert lost.overflow and lost.changes == []
            await asyncio.to_thread(workspace.exec, "echo again > src/c.txt")
            assert not (await changed(watch, "src/c.txt")).overflow

            await asyncio.to_thread(workspace.stop)
            async for _ in watch:  # ends when the server ends it
                pass
            assert watch.reason == "container_stopped" and watch.error is None

    run_async(scenario())
