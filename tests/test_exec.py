"""/exec: sh -c in the workspace as the non-root user, stdout and stderr apart, exit codes, timeouts, caps."""

from __future__ import annotations

from typing import Any

import pytest

from .harness import Server
from .helpers import Call, run

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def server(exec_server: Server) -> Server:
    """Every test here runs on both exec paths (agent and Docker exec) and must see the same results."""
    return exec_server


def test_stdout_stderr_and_exit_code_are_kept_apart(api: Call, ref: dict[str, str], started: dict[str, Any]) -> None:
    body = run(api, ref, "echo out; echo err >&2; exit 3")
    assert body["success"] is True
    assert body["output"] == "out\n"
    assert body["error"] == "err\n"
    assert body["exitCode"] == 3
    assert body["timedOut"] is False and body["truncated"] is False


def test_runs_as_the_workspace_user_in_the_workspace(api: Call, ref: dict[str, str], started: dict[str, Any]) -> None:
    body = run(api, ref, "id -u; id -un; pwd")
    assert body["output"] == "1000\ncoder\n/workspace\n"


def test_cwd_and_env(api: Call, ref: dict[str, str], started: dict[str, Any]) -> None:
    run(api, ref, "mkdir -p sub/dir")
    assert run(api, ref, "pwd", cwd="sub/dir")["output"] == "/workspace/sub/dir\n"
    assert run(api, ref, "pwd", cwd="/tmp")["output"] == "/tmp\n"
    body = run(api, ref, 'printf "%s|%s" "$GREETING" "$OTHER"', env={"GREETING": "hello world", "OTHER": "$(id)"})
    assert body["output"] == "hello world|$(id)"


def test_missing_cwd_is_not_found(api: Call, ref: dict[str, str], started: dict[str, Any]) -> None:
    # 404, not 400: the request is well formed (the document allows it); the folder is what is missing.
    response = api("exec", ref, command="true", cwd="does/not/exist")
    assert response.status_code == 404
    assert "could not be started" in response.json()["message"]


def test_cwd_cannot_climb_out_with_dotdot(api: Call, ref: dict[str, str], started: dict[str, Any]) -> None:
    response = api("exec", ref, command="pwd", cwd="../etc")
    assert response.status_code == 400
    assert response.json()["success"] is False


def test_timeout_kills_the_process_tree_and_returns_partial_output(
    api: Call, ref: dict[str, str], started: dict[str, Any]
) -> None:
    body = run(api, ref, "echo before; sleep 30 & sleep 30; echo never", timeout=1)
    assert body["timedOut"] is True
    assert body["output"] == "before\n"
    assert body["exitCode"] != 0
    leftover = run(api, ref, "ps -eo args | grep -c '^sleep 30' || true")
    assert leftover["output"].strip() == "0"


def test_output_is_capped_per_stream(api: Call, ref: dict[str, str], started: dict[str, Any]) -> None:
    body = run(api, ref, "head -c 12000000 /dev/zero | tr '\\0' a; echo small >&2")
    assert body["truncated"] is True
    assert len(body["output"]) == 10 * 1024 * 1024
    assert body["error"] == "small\n"
    assert body["exitCode"] == 0


def test_binary_output_and_no_trailing_newline(api: Call, ref: dict[str, str], started: dict[str, Any]) -> None:
    body = run(api, ref, "printf 'ok\\377\\376'; printf 'tail' >&2")
    assert body["output"] == "ok\ufffd\ufffd"
    assert body["error"] == "tail"


def test_unicode_round_trips(api: Call, ref: dict[str, str], started: dict[str, Any]) -> None:
    assert run(api, ref, "echo 'héllo ✓ 日本'")["output"] == "héllo ✓ 日本\n"


def test_exec_on_stopped_workspace_is_409(api: Call, ref: dict[str, str], started: dict[str, Any]) -> None:
    api("stop", ref)
    response = api("exec", ref, command="true")
    assert response.status_code == 409
    assert response.json()["success"] is False
    assert "not running" in response.json()["message"]


def test_timeout_above_the_maximum_is_refused(api: Call, ref: dict[str, str], started: dict[str, Any]) -> None:
    response = api("exec", ref, command="true", timeout=999999)
    assert response.status_code == 422
    assert "timeout" in response.json()["message"]


def test_the_configured_exec_path_is_the_one_used(
    api: Call, ref: dict[str, str], started: dict[str, Any], server: Server
) -> None:
    parent = run(api, ref, "cat /proc/$PPID/cmdline | tr '\\0' ' '")["output"]
    if server.env["IDE_EXEC_AGENT"] == "true":
        assert "ide-agent" in parent
    else:
        assert "ide-agent" not in parent
