"""`POST /containers/fork`: a new workspace with a copy of another's files, home folder, template and theme, made
without stopping the source and consistent at one moment (the source is paused for the copy); every refusal
changes nothing; a backend killed during a copy leaves nothing paused and nothing half-made once it is back."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

import httpx
import pytest

from .harness import DOCKER, Server, docker, docker_json, remove_instance
from .helpers import TOKEN, post, run, start_server

pytestmark = pytest.mark.docker

# A counter written to 50 files in turn, with shell builtins only: at any one moment the files hold two consecutive
# values (an empty one where the writer was cut between truncating and writing). The files were made among 300
# others of 300 KB (cp copies in inode order), so a copy that reads while the loop runs reads them far apart in time
# and finds many values.
COUNTER = (
    "i=0; while [ $i -lt 10000000 ]; do i=$((i+1)); k=0; while [ $k -lt 50 ]; do echo $i > f$k; k=$((k+1)); done; done"
)


def _api(server: Server, endpoint: str, body: Mapping[str, object]) -> httpx.Response:
    return post(server, endpoint, body, timeout=300)


def _listing(server: Server, ref: dict[str, str]) -> str:
    """Every file under the workspace (and the settings in the home folder) with owner, mode, link target, size."""
    return str(
        run(
            lambda endpoint, r, **extra: _api(server, endpoint, {**r, **extra}),
            ref,
            "cd /workspace && find . -path ./counters -prune -o -printf '%p %u:%g %m %l %s\\n' | sort",
        )["output"]
    )


def test_a_running_workspace_forks_with_its_files_home_template_and_theme(server: Server) -> None:
    project = "fork-" + uuid.uuid4().hex[:6]
    source = {"projectId": project, "workspaceId": "src"}
    target = {"projectId": project, "workspaceId": "copy"}
    try:
        assert _api(server, "start", {**source, "files": {"src/main.py": "print('hi')\n"}}).status_code == 200
        made = _api(
            server,
            "exec",
            {
                **source,
                "command": "mkdir -p counters && for i in $(seq 300); do head -c 300000 /dev/urandom > counters/$i;"
                " [ $((i % 6)) -ne 0 ] || : > counters/f$((i / 6 - 1)); done"
                " && ln -s src/main.py link && chmod 750 src && echo kept > ~/.home-note",
            },
        )
        assert made.status_code == 200 and made.json()["exitCode"] == 0, made.text
        assert _api(server, "vscode-theme", {**source, "theme": "Solarized Light"}).status_code == 200
        writer = subprocess.Popen(
            [
                DOCKER,
                "exec",
                "-u",
                "1000:1000",
                "-w",
                "/workspace/counters",
                _container(server, source),
                "sh",
                "-c",
                COUNTER,
            ],
        )
        try:
            time.sleep(1.0)
            forked = _api(server, "fork", {**source, "toWorkspaceId": "copy"})
            assert forked.status_code == 200, forked.text
            body = forked.json()
            assert body["message"] == "Workspace forked successfully"
            assert body["data"]["workspaceId"] == "copy" and body["data"]["running"] is False
            assert body["data"]["theme"] == "Solarized Light" and body["data"]["template"] == "base"
            assert 0 < body["pausedMs"] <= body["copyMs"]
            # The source went on: running, and its loop still counting.
            counted = _counter_values(server, source)
            time.sleep(0.5)
            assert min(_counter_values(server, source)) > max(counted)
        finally:
            writer.kill()
            writer.wait()
        assert _api(server, "start", target).status_code == 200
        assert _listing(server, target) == _listing(server, source)
        copy = lambda e, r, **x: _api(server, e, {**r, **x})  # noqa: E731
        values = _counter_values(server, target)
        assert len(values) >= 49 and max(values) - min(values) <= 1, values  # one moment, not read while it ran
        assert run(copy, target, "cat ~/.home-note")["output"] == "kept\n"
        assert "Solarized Light" in run(copy, target, "cat ~/.local/share/code-server/User/settings.json")["output"]
        assert run(copy, target, "readlink link")["output"] == "src/main.py\n"
        for name in ("counters/7", "counters/300"):
            assert run(copy, target, f"md5sum {name}")["output"] == run(copy, source, f"md5sum {name}")["output"]
        # Two workspaces from here on: a write in the copy leaves the source alone, and each has its own password.
        run(copy, target, "echo changed > src/main.py")
        assert run(copy, source, "cat src/main.py")["output"] == "print('hi')\n"
        passwords = {_api(server, "status", ref).json()["data"]["password"] for ref in (source, target)}
        assert len(passwords) == 2
    finally:
        for ref in (source, target):
            _api(server, "delete", ref)
    assert not _volumes(server.instance, project)


def test_a_stopped_workspace_forks_to_another_project_and_refusals_change_nothing(server: Server) -> None:
    project = "fork-" + uuid.uuid4().hex[:6]
    other = project + "-b"
    source = {"projectId": project, "workspaceId": "src"}
    target = {"projectId": other, "workspaceId": "dst"}
    try:
        assert _api(server, "start", {**source, "files": {"notes.txt": "stopped\n"}}).status_code == 200
        assert _api(server, "stop", source).status_code == 200
        forked = _api(server, "fork", {**source, "toProjectId": other, "toWorkspaceId": "dst"})
        assert forked.status_code == 200, forked.text
        assert forked.json()["pausedMs"] == 0 and forked.json()["data"]["projectId"] == other
        volumes = _volumes(server.instance, project) + _volumes(server.instance, other)

        refusals = [
            ({**source, "toProjectId": other, "toWorkspaceId": "dst"}, 409, "conflict"),  # exists already
            ({**source, "toWorkspaceId": "src"}, 422, "validation_error"),  # onto itself
            ({"projectId": project, "workspaceId": "never", "toWorkspaceId": "x"}, 404, "not_found"),
            ({**source, "toWorkspaceId": "../x"}, 422, "validation_error"),
            ({**source}, 422, "validation_error"),  # no toWorkspaceId
        ]
        for request, code, kind in refusals:
            answer = _api(server, "fork", request)
            assert answer.status_code == code and answer.json()["code"] == kind, (request, answer.text)
            assert answer.json()["success"] is False and answer.json()["message"]
        admin = {"Authorization": f"Bearer {TOKEN}"}
        minted = httpx.post(f"{server.url}/api/v1/tokens", json=source, headers=admin, timeout=30)
        scoped = {"Authorization": f"Bearer {minted.json()['token']}"}
        denied = httpx.post(
            f"{server.url}/api/v1/containers/fork", json={**source, "toWorkspaceId": "mine"}, headers=scoped
        )
        assert denied.status_code == 403 and denied.json()["code"] == "forbidden"
        assert _volumes(server.instance, project) + _volumes(server.instance, other) == volumes
        assert _api(server, "status", {"projectId": project, "workspaceId": "mine"}).status_code == 404

        assert _api(server, "start", target).status_code == 200
        copy = lambda e, r, **x: _api(server, e, {**r, **x})  # noqa: E731
        assert run(copy, target, "cat notes.txt")["output"] == "stopped\n"
        assert _api(server, "status", source).json()["data"]["running"] is False  # the source stays stopped
    finally:
        for ref in (source, target):
            _api(server, "delete", ref)


def test_a_backend_killed_during_a_copy_leaves_nothing_paused_or_half_made(tmp_path: Path) -> None:
    first = start_server(tmp_path / "first")
    source = {"projectId": "fork", "workspaceId": "big"}
    try:
        assert _api(first, "start", source).status_code == 200
        fill = _api(first, "exec", {**source, "command": "head -c 400000000 /dev/urandom > big.bin"})
        assert fill.status_code == 200 and fill.json()["exitCode"] == 0
        container = _container(first, source)
        # Never answered: the backend dies during the copy.
        request = threading.Thread(target=lambda: _quietly(first, {**source, "toWorkspaceId": "half"}))
        request.start()
        deadline = time.monotonic() + 60
        while not docker(
            "ps",
            "-q",
            "--filter",
            "label=ide-backend.helper=copy",
            "--filter",
            f"label=ide-backend.instance={first.instance}",
        ).stdout.strip():
            assert time.monotonic() < deadline, first.log_tail()
            time.sleep(0.02)
        assert docker_json("inspect", container)[0]["State"]["Paused"] is True
        os.kill(first.pid, signal.SIGKILL)
        request.join(timeout=60)
        first.process.wait(timeout=30)

        again = start_server(tmp_path / "again", instance=first.instance, IDE_DATA_DIR=str(tmp_path / "first" / "data"))
        try:
            assert docker_json("inspect", container)[0]["State"]["Paused"] is False
            assert not docker(
                "ps",
                "-aq",
                "--filter",
                "label=ide-backend.helper=copy",
                "--filter",
                f"label=ide-backend.instance={first.instance}",
            ).stdout.strip()
            assert not [v for v in _volumes(first.instance, "fork") if "-half-" in v]
            assert _api(again, "status", {"projectId": "fork", "workspaceId": "half"}).status_code == 404
            copy = lambda e, r, **x: _api(again, e, {**r, **x})  # noqa: E731
            assert run(copy, source, "echo alive")["output"] == "alive\n"
            retried = _api(again, "fork", {**source, "toWorkspaceId": "half"})
            assert retried.status_code == 200, retried.text
        finally:
            again.stop()
    finally:
        first.stop()
        remove_instance(first.instance)


def _quietly(server: Server, body: dict[str, str]) -> None:
    try:
        _api(server, "fork", body)
    except httpx.HTTPError:
        pass  # the backend was killed: no answer


def _counter_values(server: Server, ref: dict[str, str]) -> list[int]:
    """The counter's values in the files that hold one (not the one cut between truncating and writing)."""
    answer = _api(server, "exec", {**ref, "command": "cd counters && for k in $(seq 0 49); do cat f$k; echo; done"})
    return [int(line) for line in answer.json()["output"].split() if line.strip()]


def _container(server: Server, ref: dict[str, str]) -> str:
    return str(post(server, "status", ref).json()["data"]["id"])


def _volumes(instance: str, project: str) -> list[str]:
    names = docker("volume", "ls", "-q", "--filter", f"label=ide-backend.instance={instance}").stdout.split()
    return sorted(name for name in names if f"-{project}-" in name)
