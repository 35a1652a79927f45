"""/vscode-theme: the setting lands in code-server's settings.json as data, other settings kept, re-applied."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .harness import Server
from .helpers import Call, run
from .swarm import remove_behind_its_back

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def server(exec_server: Server) -> Server:
    """Both write paths: the container's own writer (agent) and the archive upload (Docker exec only)."""
    return exec_server


SETTINGS = "~/.local/share/code-server/User/settings.json"


def _settings(api: Call, ref: dict[str, str]) -> dict[str, Any]:
    body = run(api, ref, f"cat {SETTINGS}")
    assert body["exitCode"] == 0, body
    parsed: dict[str, Any] = json.loads(body["output"])
    return parsed


def test_sets_theme_and_creates_the_file(api: Call, ref: dict[str, str], started: dict[str, Any]) -> None:
    run(api, ref, f"rm -f {SETTINGS}")
    response = api("vscode-theme", ref, theme="Default Dark Modern")
    assert response.status_code == 200 and response.json()["success"] is True
    assert _settings(api, ref) == {"workbench.colorTheme": "Default Dark Modern"}
    assert run(api, ref, f"stat -c %U {SETTINGS}")["output"] == "coder\n"


def test_keeps_other_settings_even_with_comments(api: Call, ref: dict[str, str], started: dict[str, Any]) -> None:
    original = '{\n  // my font\n  "editor.fontSize": 15, /* keep */\n  "files.autoSave": "afterDelay",\n}\n'
    api("sync", ref, files={"settings.json": original})
    run(api, ref, f"mkdir -p $(dirname {SETTINGS}) && mv settings.json {SETTINGS}")
    api("vscode-theme", ref, theme="Solarized Light")
    assert _settings(api, ref) == {
        "editor.fontSize": 15,
        "files.autoSave": "afterDelay",
        "workbench.colorTheme": "Solarized Light",
    }


@pytest.mark.parametrize("theme", ['"; touch /tmp/x; "', "$(id)", "`id`", "' && touch /tmp/x '", 'Thème ✓ "quoted"'])
def test_injection_attempts_are_stored_as_data(
    api: Call, ref: dict[str, str], started: dict[str, Any], theme: str
) -> None:
    assert api("vscode-theme", ref, theme=theme).status_code == 200
    assert _settings(api, ref)["workbench.colorTheme"] == theme
    assert run(api, ref, "ls /tmp")["output"] == ""


def test_invalid_settings_file_is_not_clobbered(api: Call, ref: dict[str, str], started: dict[str, Any]) -> None:
    run(api, ref, f"mkdir -p $(dirname {SETTINGS}) && echo '[1, 2' > {SETTINGS}")
    response = api("vscode-theme", ref, theme="Dark")
    assert response.status_code == 409
    assert "settings.json" in response.json()["message"]
    assert run(api, ref, f"cat {SETTINGS}")["output"] == "[1, 2\n"


def test_settings_dir_symlinked_out_is_refused(api: Call, ref: dict[str, str], started: dict[str, Any]) -> None:
    run(api, ref, "rm -rf ~/.local/share/code-server/User && ln -s /tmp ~/.local/share/code-server/User")
    response = api("vscode-theme", ref, theme="Dark")
    assert response.status_code == 400
    assert run(api, ref, "ls /tmp")["output"] == ""


def test_theme_is_remembered_and_reapplied_on_recreation(
    api: Call, ref: dict[str, str], started: dict[str, Any], server: Server
) -> None:
    api("vscode-theme", ref, theme="Monokai")
    remove_behind_its_back(server, started)
    again = api("start", ref).json()["data"]
    assert again["id"] != started["id"]
    assert again["theme"] == "Monokai"
    assert _settings(api, ref) == {"workbench.colorTheme": "Monokai"}


def test_theme_works_on_a_stopped_container(api: Call, ref: dict[str, str], started: dict[str, Any]) -> None:
    """On a swarm a start runs a new container with a new home folder: the theme is written into it again."""
    api("stop", ref)
    assert api("vscode-theme", ref, theme="Red").status_code == 200
    api("start", ref)
    assert _settings(api, ref)["workbench.colorTheme"] == "Red"
