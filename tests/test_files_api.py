"""files/list, files/read, files/delete: what the demo page's tree and editor use, with the same path safety."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest

from .harness import Server
from .helpers import Call, run

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def server(runtime_server: Server) -> Server:
    """The same answers on one engine and on a swarm."""
    return runtime_server


def test_list_read_delete(api: Call, ref: dict[str, str], started: dict[str, Any]) -> None:
    api("sync", ref, files={"src/a.js": "A", "src/lib/b.js": "BB", "README.md": "# hi", ".hidden": ""})
    top = api("files/list", ref).json()
    assert top["success"] is True and top["truncated"] is False
    assert [(e["path"], e["type"]) for e in top["entries"]] == [
        ("src", "dir"),
        (".hidden", "file"),
        ("README.md", "file"),
    ]
    deep = api("files/list", ref, path="src", depth=5).json()["entries"]
    assert [(e["path"], e["type"], e["size"]) for e in deep] == [
        ("src/lib", "dir", deep[0]["size"]),
        ("src/a.js", "file", 1),
        ("src/lib/b.js", "file", 2),
    ]
    assert deep[1]["mode"] == 0o644
    read = api("files/read", ref, path="src/lib/b.js").json()
    assert read == {
        "success": True,
        "path": "src/lib/b.js",
        "content": "BB",
        "encoding": "utf-8",
        "size": 2,
        "version": hashlib.sha256(b"BB").hexdigest(),
    }
    deleted = api("files/delete", ref, paths=["src/lib", "README.md"])
    assert deleted.json()["deleted"] == ["src/lib", "README.md"]
    assert run(api, ref, "find . | sort")["output"] == ".\n./.hidden\n./src\n./src/a.js\n"


def test_binary_files_read_as_base64(api: Call, ref: dict[str, str], started: dict[str, Any]) -> None:
    run(api, ref, "printf '\\377\\000\\001' > blob")
    body = api("files/read", ref, path="blob").json()
    assert body["encoding"] == "base64" and base64.b64decode(body["content"]) == b"\xff\x00\x01"


def test_read_works_on_a_stopped_workspace(api: Call, ref: dict[str, str], started: dict[str, Any]) -> None:
    api("sync", ref, files={"keep.txt": "kept"})
    api("stop", ref)
    assert api("files/read", ref, path="keep.txt").json()["content"] == "kept"
    assert api("files/list", ref).status_code == 409


def test_read_never_follows_a_link_out(api: Call, ref: dict[str, str], started: dict[str, Any]) -> None:
    run(api, ref, "ln -s /etc etc; ln -s /etc/shadow shadow; mkdir d")
    for path in ("etc/shadow", "shadow"):
        response = api("files/read", ref, path=path)
        assert response.status_code == 400, response.text
        assert "symbolic link" in response.json()["message"]
    assert api("files/read", ref, path="d").status_code == 409
    assert api("files/read", ref, path="missing.txt").status_code == 404
    assert api("files/read", ref, path="nope/missing.txt").status_code == 404


def test_delete_removes_links_not_their_targets(api: Call, ref: dict[str, str], started: dict[str, Any]) -> None:
    run(api, ref, "mkdir -p /tmp/outside && touch /tmp/outside/precious && ln -s /tmp/outside link")
    assert api("files/delete", ref, paths=["link"]).status_code == 200
    assert run(api, ref, "ls /tmp/outside; ls -A")["output"] == "precious\n"


@pytest.mark.parametrize("path", ["../etc/passwd", "/etc/passwd", "a/../../x", "a\x00b"])
def test_paths_outside_the_workspace_are_refused(
    api: Call, ref: dict[str, str], started: dict[str, Any], path: str
) -> None:
    for endpoint, body in (("files/read", {"path": path}), ("files/delete", {"paths": [path]})):
        response = api(endpoint, ref, **body)
        assert response.status_code == 400, (endpoint, response.text)
        assert response.json()["success"] is False
    assert api("files/list", ref, path=path).status_code == 400


def test_unknown_workspace_and_validation(api: Call, ref: dict[str, str]) -> None:
    assert api("files/list", ref).status_code == 404
    assert api("files/read", ref, path="x").status_code == 404
    assert api("files/delete", ref, paths=[]).status_code == 422
    assert api("files/list", ref, depth=0).status_code == 422
