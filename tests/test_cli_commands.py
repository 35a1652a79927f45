"""The client commands of `ide-backend` (start, stop, status, exec, sync, ls, rm, fork, templates, token) run as a
person or a script runs them: `python -m ide_backend ...` as a process, against a real server on the real engine,
with IDE_URL and IDE_TOKEN in its environment. Each command's table, its --json (the server's own answer) and its
exit codes, the failures included: usage 2, not found 3, conflict 4, credential 5, unavailable 6, and exec's own."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ide_backend.client import Client

from .harness import ROOT, Server, free_port

docker = pytest.mark.docker


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def rows(self) -> list[list[str]]:
        """A table's lines split into cells (cells are separated by two spaces or more)."""
        return [re.split(r"\s{2,}", line.strip()) for line in self.out.splitlines() if line.strip()]

    def pairs(self) -> dict[str, str]:
        return {row[0]: row[1] for row in self.rows() if len(row) == 2}


def environment(url: str | None, token: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("IDE_URL", "IDE_TOKEN")}
    if url is not None:
        env["IDE_URL"] = url
    if token is not None:
        env["IDE_TOKEN"] = token
    return env


def cli(server: Server | None, *args: str, token: str | None = None, stdin: str | None = None) -> Result:
    """`python -m ide_backend ARGS` with the server's URL and token (or `token`) in IDE_URL / IDE_TOKEN."""
    url = server.url if server is not None else None
    env = environment(url, token if token is not None else server.token if server is not None else None)
    done = subprocess.run(
        [sys.executable, "-m", "ide_backend", *args],
        env=env,
        cwd=ROOT,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def new_project() -> str:
    return "cli-" + uuid.uuid4().hex[:8]


@pytest.fixture
def project(server: Server) -> Iterator[str]:
    """A project of its own; every workspace of it is deleted afterwards."""
    name = new_project()
    yield name
    with Client(server.url, server.token) as client:
        for info in client.list(project_id=name):
            client.workspace(name, info.workspace_id).delete()


@pytest.fixture
def running(server: Server, project: str) -> str:
    """A running workspace `w` of `project`."""
    with Client(server.url, server.token) as client:
        client.workspace(project, "w").start()
    return project


# -- no engine needed -----------------------------------------------------------------------------------------


def test_usage_errors_are_2_and_say_what_is_wrong() -> None:
    assert cli(None).code == 2  # no command
    assert cli(None, "start", "p1").code == 2  # WORKSPACE missing
    assert cli(None, "ls", "--bogus").code == 2
    missing = cli(None, "exec", "p1", "w1")
    assert missing.code == 2 and "command to run is missing" in missing.err
    bad_id = cli(None, "--url", f"http://127.0.0.1:{free_port()}", "status", "p 1", "w1")  # refused before sending
    assert bad_id.code == 2 and "Invalid workspace id" in bad_id.err
    bad_url = cli(None, "--url", "ftp://example", "ls")
    assert bad_url.code == 2 and "http://" in bad_url.err
    no_env = cli(None, "--url", f"http://127.0.0.1:{free_port()}", "exec", "-e", "NOT_SET_ANYWHERE_42", "p", "w", "x")
    assert no_env.code == 2 and "NOT_SET_ANYWHERE_42" in no_env.err
    not_a_terminal = cli(None, "shell", "p1", "w1")  # stdin is /dev/null
    assert not_a_terminal.code == 2 and "needs a terminal" in not_a_terminal.err
    version = cli(None, "--version")
    assert version.code == 0 and version.out.startswith("ide-backend ")


def test_help_lists_every_command_and_the_exit_codes() -> None:
    shown = cli(None, "--help")
    assert shown.code == 0
    for command in ("serve", "start", "stop", "status", "exec", "sync", "ls", "rm", "fork", "templates", "token"):
        assert f"    {command} " in shown.out, command
    assert "3 not found" in shown.out and "6 unavailable" in shown.out


def test_a_server_that_cannot_be_reached_is_6(tmp_path: Path) -> None:
    gone = cli(None, "--url", f"http://127.0.0.1:{free_port()}", "ls")
    assert gone.code == 6 and "Connection refused" in gone.err
    as_json = cli(None, "--url", f"http://127.0.0.1:{free_port()}", "ls", "--json")
    assert as_json.code == 6 and as_json.json()["code"] == "connection_error" and as_json.err == ""
    # exec and shell go through the live channel: the same code when it cannot be opened
    live = cli(None, "--url", f"http://127.0.0.1:{free_port()}", "exec", "p1", "w1", "true")
    assert live.code == 6 and "Could not open" in live.err


def test_credentials_are_5_and_a_missing_one_says_how(server_without_engine: Server) -> None:
    wrong = cli(server_without_engine, "ls", token="wrong")
    assert wrong.code == 5 and "(401 unauthorized, request " in wrong.err
    missing = cli(server_without_engine, "ls", token="")
    assert missing.code == 5 and "set IDE_TOKEN or pass --token" in missing.err
    as_json = cli(server_without_engine, "ls", "--json", token="")
    assert as_json.code == 5 and as_json.json()["status"] == 401 and "IDE_TOKEN" in as_json.json()["hint"]
    # --token overrides IDE_TOKEN, before or after the command's name
    assert cli(server_without_engine, "--token", server_without_engine.token, "templates", token="wrong").code == 0
    assert cli(server_without_engine, "templates", "--token", server_without_engine.token, token="wrong").code == 0


def test_an_engine_that_does_not_answer_is_6(server_without_engine: Server) -> None:
    down = cli(server_without_engine, "start", "p1", "w1")
    assert down.code == 6 and "503" in down.err
    as_json = cli(server_without_engine, "status", "p1", "w1", "--json")
    assert as_json.code == 6 and as_json.json()["status"] == 503 and as_json.json()["success"] is False


def test_templates_table_and_json(server_without_engine: Server) -> None:
    table = cli(server_without_engine, "templates")
    assert table.code == 0, table.err
    rows = table.rows()
    assert rows[0][:3] == ["NAME", "IMAGE", "MEMORY"]
    names = [row[0] for row in rows[1:]]
    assert "base *" in names and "python" in names
    answer = cli(server_without_engine, "templates", "--json").json()
    assert answer["default"] == "base" and {t["name"] for t in answer["data"]} >= {"base", "python", "node"}


def test_client_commands_load_no_server_and_serve_needs_no_client() -> None:
    code = (
        "import sys, ide_backend.cli.commands; "
        "assert not {'uvicorn', 'starlette', 'aiodocker', 'ide_backend.app'} & set(sys.modules), sys.modules.keys()"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    code = "import sys, ide_backend.cli.serve; assert 'httpx' not in sys.modules and 'websockets.asyncio' not in sys.modules"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr


# -- against the engine ---------------------------------------------------------------------------------------


@docker
def test_start_status_ls_stop_rm_as_tables_and_json(server: Server, project: str) -> None:
    started = cli(server, "start", project, "w1", "--template", "python")
    assert started.code == 0, started.err
    assert started.out.splitlines()[0] == "Container started successfully"
    fields = started.pairs()
    assert (fields["project"], fields["workspace"], fields["template"], fields["status"]) == (
        project,
        "w1",
        "python",
        "running",
    )
    assert fields["ports"].startswith("8080:")
    again = cli(server, "start", project, "w1", "--json")
    assert again.code == 0 and again.json()["data"]["running"] is True and again.json()["data"]["projectId"] == project

    status = cli(server, "status", project, "w1")
    assert status.code == 0
    fields = status.pairs()
    assert fields["status"] == "running" and len(fields["password"]) >= 16 and "idle stop at" in fields
    as_json = cli(server, "status", project, "w1", "--json").json()
    assert as_json["data"]["password"] == fields["password"] and as_json["data"]["template"] == "python"

    assert cli(server, "start", project, "w2").code == 0
    listed = cli(server, "ls", project)
    assert listed.code == 0
    rows = listed.rows()
    assert rows[0] == ["PROJECT", "WORKSPACE", "TEMPLATE", "STATUS", "PORTS", "STARTED"]
    assert [row[:4] for row in rows[1:]] == [[project, "w1", "python", "running"], [project, "w2", "base", "running"]]
    everything = cli(server, "ls", "--json").json()
    assert {(i["projectId"], i["workspaceId"]) for i in everything} >= {(project, "w1"), (project, "w2")}

    stopped = cli(server, "stop", project, "w2")
    assert stopped.code == 0 and stopped.out.startswith("Container stopped successfully")
    assert stopped.pairs()["status"] == "exited (requested)"
    already = cli(server, "stop", project, "w2", "--json")
    assert already.code == 0 and already.json()["message"] == "Container was already stopped"
    only_running = cli(server, "--json", "ls", project, "--status", "running").json()
    assert [i["workspaceId"] for i in only_running] == ["w1"]

    removed = cli(server, "rm", project, "w2")
    assert removed.code == 0 and removed.out.strip() == f"Workspace deleted successfully: {project}/w2"
    assert cli(server, "rm", project, "w1", "--json").json()["success"] is True
    assert cli(server, "ls", project).rows() == [["PROJECT", "WORKSPACE", "TEMPLATE", "STATUS", "PORTS", "STARTED"]]
    assert cli(server, "ls", project, "--json").json() == []


@docker
def test_not_found_is_3_and_conflict_is_4(server: Server, project: str) -> None:
    for command in ("status", "stop", "rm"):
        gone = cli(server, command, project, "never")
        assert gone.code == 3 and "(404 not_found, request " in gone.err, (command, gone)
    as_json = cli(server, "status", project, "never", "--json")
    assert as_json.code == 3 and as_json.err == ""
    assert as_json.json() == {
        "success": False,
        "code": "not_found",
        "message": as_json.json()["message"],
        "status": 404,
        "requestId": as_json.json()["requestId"],
    }
    assert as_json.json()["requestId"]
    assert cli(server, "exec", project, "never", "true").code == 3  # over the live channel
    assert cli(server, "exec", "--json", project, "never", "true").code == 3  # over POST /exec

    assert cli(server, "start", project, "w").code == 0
    assert cli(server, "stop", project, "w").code == 0
    not_running = cli(server, "exec", project, "w", "true")
    assert not_running.code == 4 and "not running" in not_running.err
    assert cli(server, "exec", "--json", project, "w", "true").json()["code"] == "not_running"

    forked = cli(server, "fork", project, "w", "w2")
    assert forked.code == 0, forked.err
    assert forked.out.startswith("Workspace forked successfully")
    assert forked.pairs()["workspace"] == "w2" and forked.pairs()["status"] == "removed"
    assert int(forked.pairs()["copy ms"]) >= 0
    taken = cli(server, "fork", project, "w", "w2")
    assert taken.code == 4 and "already exists" in taken.err
    elsewhere = cli(server, "fork", "--json", project, "w", "w3", "--to-project", project + "b")
    assert elsewhere.code == 0 and elsewhere.json()["data"]["projectId"] == project + "b"
    assert cli(server, "rm", project + "b", "w3").code == 0


@docker
def test_exec_streams_output_and_ends_with_the_commands_exit_code(server: Server, running: str) -> None:
    done = cli(server, "exec", running, "w", "echo out; echo err >&2; exit 3")
    assert (done.code, done.out, done.err) == (3, "out\n", "err\n")
    words = cli(server, "exec", running, "w", "printf", "[%s]", "two words", "$HOME")  # each word quoted
    assert words.out == "[two words][$HOME]"
    no_folder = cli(server, "exec", "--cwd", "sub", running, "w", "pwd")  # the agent says so as the command would
    assert no_folder.code == 126 and "chdir to /workspace/sub failed" in no_folder.err
    refused = cli(server, "exec", "--json", "--cwd", "sub", running, "w", "pwd")  # POST /exec answers 404
    assert refused.code == 3 and refused.json()["status"] == 404 and "cwd" in refused.json()["hint"]
    cli(server, "exec", running, "w", "mkdir -p sub")
    options = cli(server, "exec", "--cwd", "sub", "-e", "GREETING=hi there", running, "w", "echo $GREETING; pwd")
    assert (options.code, options.out) == (0, "hi there\n/workspace/sub\n")
    piped = cli(server, "exec", "-i", running, "w", "wc -l; cat > got.txt", stdin="a\nb\nc\n")
    assert (piped.code, piped.out.strip()) == (0, "3")
    no_stdin = cli(server, "exec", running, "w", "cat; echo ended")  # without -i its stdin is closed at once
    assert (no_stdin.code, no_stdin.out) == (0, "ended\n")
    timed_out = cli(server, "exec", "--timeout", "1", running, "w", "echo started; sleep 30")
    assert timed_out.code == 124 and timed_out.out == "started\n" and "timeout" in timed_out.err


@docker
def test_exec_json_is_the_servers_answer_and_keeps_the_exit_code(server: Server, running: str) -> None:
    done = cli(server, "exec", "--json", running, "w", "echo out; echo err >&2; exit 5")
    assert done.code == 5
    answer = done.json()
    assert (answer["output"], answer["error"], answer["exitCode"], answer["success"]) == ("out\n", "err\n", 5, True)
    timed_out = cli(server, "--json", "exec", "--timeout", "1", running, "w", "sleep 30")
    assert timed_out.code == 124 and timed_out.json()["timedOut"] is True


def interrupted(server: Server, running: str, command: str, presses: int) -> tuple[int, str]:
    """`exec COMMAND` (which prints `ready` first) given `presses` Ctrl-Cs: its exit code and stderr."""
    process = subprocess.Popen(
        [sys.executable, "-m", "ide_backend", "exec", running, "w", command],
        env=environment(server.url, server.token),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "ready\n"
        for _ in range(presses):
            process.send_signal(signal.SIGINT)  # what a Ctrl-C in the terminal sends it
            time.sleep(0.5)
        _, err = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return process.returncode, err


@docker
def test_ctrl_c_during_exec_interrupts_the_remote_command_and_a_second_kills_it(server: Server, running: str) -> None:
    code, err = interrupted(server, running, "echo ready; sleep 100", presses=1)
    assert code == 130 and "sent SIGINT" in err  # sh -c ends with 128 + SIGINT: interrupted over there
    deaf = "trap '' INT; echo ready; sleep 101"  # SIGINT ignored: the second Ctrl-C kills it
    code, err = interrupted(server, running, deaf, presses=2)
    assert code == 130 and "sent SIGKILL" in err
    left = cli(server, "exec", running, "w", "ps -eo args | grep -c '^sleep 10[01]' || true")
    assert left.out.strip() == "0"


@docker
def test_sync_uploads_a_folder_with_its_gitignore(server: Server, running: str, tmp_path: Path) -> None:
    folder = tmp_path / "my-project"
    (folder / "src").mkdir(parents=True)
    (folder / "src" / "main.py").write_text("print('from my-project')\n")
    (folder / "src" / "main.pyc").write_bytes(b"\x00")
    (folder / ".git").mkdir()
    (folder / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (folder / "build").mkdir()
    (folder / "build" / "out.txt").write_text("built\n")
    (folder / ".gitignore").write_text("*.pyc\n")
    (folder / "src" / "link").symlink_to("main.py")

    synced = cli(server, "sync", running, "w", str(folder), "--dest", "app", "--ignore", "build/")
    assert synced.code == 0, synced.err
    assert synced.pairs() == {
        "files": "2",
        "folders": "0",
        "bytes": str(25 + 6),
        "requests": "1",
        "skipped": "src/link",
    }
    listing = cli(server, "exec", running, "w", "cd app && find . -type f | sort")
    assert listing.out.split() == ["./.gitignore", "./src/main.py"]

    everything = cli(server, "sync", "--json", "--no-ignore", "--clean", running, "w", str(folder))
    assert everything.code == 0, everything.err
    answer = everything.json()
    assert answer["files"] == 5 and answer["skipped"] == ["src/link"] and "build/out.txt" in answer["versions"]
    listing = cli(server, "exec", running, "w", "find . -type f -not -path './.ide*' | sort")
    assert "./.git/HEAD" in listing.out.split() and "./app/src/main.py" not in listing.out  # clean emptied it first

    missing = cli(server, "sync", running, "w", str(tmp_path / "absent"))
    assert missing.code == 2 and "is not a folder" in missing.err
    refused = cli(server, "sync", "--json", running, "never", str(folder))
    assert refused.code == 3 and refused.json()["code"] == "not_found"


@docker
def test_token_mints_revokes_and_a_narrow_token_is_5(server: Server, running: str) -> None:
    minted = cli(server, "token", running, "w", "--ttl", "600")
    assert minted.code == 0
    fields = minted.pairs()
    assert (fields["project"], fields["workspace"], fields["scopes"]) == (running, "w", "read, write")
    quiet = cli(server, "token", "-q", "--read-only", running, "w")
    token = quiet.out.strip()
    assert quiet.code == 0 and token.count(".") == 2 and "\n" not in token
    assert cli(server, "status", running, "w", token=token).code == 0
    write = cli(server, "exec", running, "w", "true", token=token)
    assert write.code == 5 and "may only read" in write.err
    other = cli(server, "status", running, "elsewhere", token=token)
    assert other.code == 5 and "(403 forbidden, request " in other.err
    cannot_mint = cli(server, "token", running, token=token)
    assert cannot_mint.code == 5
    as_json = cli(server, "token", running, "--json").json()
    assert as_json["workspaceId"] is None and as_json["scopes"] == ["read", "write"]

    revoked = cli(server, "token", "--revoke", running, "w")
    assert revoked.code == 0 and "revoked at" in revoked.pairs()
    deadline = time.monotonic() + 10
    while (after := cli(server, "status", running, "w", token=token)).code == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert after.code == 5 and "(401 unauthorized, request " in after.err
    assert cli(server, "token", "--revoke", running, "--json").json()["success"] is True


def test_the_readme_documents_every_command_and_exit_code() -> None:
    text = (ROOT / "README.md").read_text()
    assert "\n## Command line\n" in text
    section = text.split("\n## Command line\n", 1)[1].split("\n## ", 1)[0]
    for command in ("start", "stop", "status", "exec", "sync", "ls", "rm", "fork", "templates", "token", "shell"):
        assert f"\n| `{command}" in section, command
    for code in (0, 1, 2, 3, 4, 5, 6, 130):
        assert f"\n| {code} | " in section, code
    assert "124" in section and "126" in section
