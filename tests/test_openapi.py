"""The published OpenAPI document, and whether it tells the truth: a server without an engine (which still checks
every request before it would reach Docker) refuses as malformed (400/422) exactly the bodies the document
forbids, for the cases that once disagreed and their neighbours. schemathesis fuzzes the same question with every
check against a live server with an engine in tests/test_schemathesis.py."""

from __future__ import annotations

from typing import Any

import httpx
import jsonschema_rs
import pytest

from ide_backend.api import models

from .harness import Server
from .helpers import TOKEN

SHA = "0" * 64


def test_openapi_lists_every_endpoint_with_its_models(server_without_engine: Server) -> None:
    spec = httpx.get(f"{server_without_engine.url}/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    paths = spec["paths"]
    for name in ("start", "stop", "status", "exec", "sync", "vscode-theme", "files/list", "files/read", "files/delete"):
        operation = paths[f"/api/v1/containers/{name}"]["post"]
        assert {"200", "400", "401", "404", "422", "503"} <= set(operation["responses"])
    schemas = spec["components"]["schemas"]
    assert schemas["WorkspaceRef"]["properties"]["projectId"]["pattern"] == models.ID_PATTERN
    assert set(schemas["ExecRequest"]["required"]) == {"projectId", "workspaceId", "command"}
    # The server's own limits: its templates, its longest exec timeout and token life.
    template = schemas["StartRequest"]["properties"]["template"]["anyOf"][0]
    assert template["enum"] == ["base", "python", "node", "vscode"]
    assert schemas["ExecRequest"]["properties"]["timeout"]["anyOf"][0]["maximum"] == 3600
    assert schemas["TokenRequest"]["properties"]["ttlSeconds"]["maximum"] == 7 * 24 * 3600


def test_a_method_not_allowed_says_which_are(server_without_engine: Server) -> None:
    for method in ("GET", "PUT", "TRACE"):
        response = httpx.request(
            method, f"{server_without_engine.url}/api/v1/containers/start", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert response.status_code == 405 and response.headers["allow"] == "POST", method
    response = httpx.post(f"{server_without_engine.url}/openapi.json")
    assert response.status_code == 405 and set(response.headers["allow"].split(", ")) == {"GET", "HEAD"}


REF = {"projectId": "p", "workspaceId": "w"}
# (endpoint, body beyond projectId/workspaceId, whether the document allows it)
CASES: list[tuple[str, dict[str, Any], bool]] = [
    # ids: a trailing newline once passed re.match
    ("status", {"projectId": "p\n"}, False),
    ("status", {"workspaceId": "a" * 63}, True),
    ("status", {"workspaceId": "a."}, False),
    # exec: variable names and values, cwd, timeout
    ("exec", {"command": "true", "env": {"A_1": "x", "_b": ""}}, True),
    ("exec", {"command": "true", "env": {"1A": "x"}}, False),
    ("exec", {"command": "true", "env": {"A\n": "x"}}, False),
    ("exec", {"command": "true", "env": {"A-B": "x"}}, False),
    ("exec", {"command": "true", "env": {"A": "a\x00b"}}, False),
    ("exec", {"command": "a\x00b"}, False),
    ("exec", {"command": "true", "cwd": "does/not/exist"}, True),
    ("exec", {"command": "true", "cwd": "/"}, True),
    ("exec", {"command": "true", "cwd": "/tmp/./x//"}, True),
    ("exec", {"command": "true", "cwd": "."}, True),
    ("exec", {"command": "true", "cwd": "../x"}, False),
    ("exec", {"command": "true", "cwd": "a\x01"}, False),
    ("exec", {"command": "true", "cwd": "a" * 1025}, False),
    ("exec", {"command": "true", "timeout": 3600}, True),
    ("exec", {"command": "true", "timeout": 0.5}, True),
    ("exec", {"command": "true", "timeout": 3600.5}, False),
    ("exec", {"command": "true", "timeout": 0}, False),
    ("exec", {"command": "true", "timeout": "5"}, False),
    # paths of files/read and files/delete (the service's rules, stated as patterns)
    ("files/read", {"path": ""}, False),
    ("files/read", {"path": "a"}, True),
    ("files/read", {"path": "./a/"}, True),
    ("files/read", {"path": "a//b/."}, True),
    ("files/read", {"path": "..."}, True),
    ("files/read", {"path": "a\x7f"}, True),
    ("files/read", {"path": "é" * 63}, True),
    ("files/read", {"path": "a" * 255}, True),
    ("files/read", {"path": "a" * 256}, False),
    ("files/read", {"path": "/".join(["x"] * 64)}, True),
    ("files/read", {"path": "/".join(["x"] * 65)}, False),
    ("files/read", {"path": "/".join(["a" * 200] * 6)}, False),  # over 1024 characters
    ("files/read", {"path": "."}, False),
    ("files/read", {"path": "/a"}, False),
    ("files/read", {"path": "a/../b"}, False),
    ("files/read", {"path": "a\\b"}, False),
    ("files/read", {"path": "a\x1fb"}, False),
    ("files/delete", {"paths": [""]}, False),
    ("files/delete", {"paths": ["a", "b/c"]}, True),
    # files/list: integral floats are integers in JSON Schema; only slashes and dots is the workspace folder
    ("files/list", {"limit": 5.0, "depth": 2.0}, True),
    ("files/list", {"limit": 5.5}, False),
    ("files/list", {"limit": "5"}, False),
    ("files/list", {"depth": True}, False),
    ("files/list", {"path": ".."}, True),
    ("files/list", {"path": "/"}, True),
    ("files/list", {"path": "/a"}, False),
    ("files/list", {"path": "/" * 1025}, False),
    # list: a cursor is "projectId/workspaceId"
    ("list", {"limit": 2.0, "cursor": "p/w"}, True),
    ("list", {"cursor": "not-a-cursor"}, False),
    ("list", {"cursor": "p/w\n"}, False),
    # tokens: at most the server's IDE_TOKEN_MAX_TTL
    ("/api/v1/tokens", {"ttlSeconds": 60.0}, True),
    ("/api/v1/tokens", {"ttlSeconds": 10**9}, False),
    # theme
    ("vscode-theme", {"theme": "Default Dark+"}, True),
    ("vscode-theme", {"theme": "a\x7f"}, False),
    # fork (onto itself is a 422 the document can only say in words)
    ("fork", {"toWorkspaceId": "copy"}, True),
    ("fork", {"toWorkspaceId": "w", "toProjectId": "other"}, True),
    ("fork", {"toWorkspaceId": "a."}, False),
    # start: templates, and the shapes of `files`
    ("start", {"template": "python"}, True),
    ("start", {"template": "nope"}, False),
    ("start", {"files": None}, True),
    ("start", {"files": {"a": None}}, False),
    ("start", {"files": {"a": 1}}, False),
    ("start", {"files": {"a": "x", "b/c.txt": "y"}}, True),
    ("start", {"files": {"a": {"content": "x", "mode": 420.0}}}, True),
    ("start", {"files": {"a": {"content": "x", "mode": 512}}}, False),
    ("start", {"files": {"a": {"content": "x", "mode": True}}}, False),
    ("start", {"files": {"a": {"content": "QQ==", "encoding": "base64"}}}, True),
    ("start", {"files": {"a": {"contents": "QUI=", "encoding": "base64"}}}, True),
    ("start", {"files": {"a": {"content": "QQ=", "encoding": "base64"}}}, False),
    ("start", {"files": {"a": {"content": "x", "encoding": "latin-1"}}}, False),
    ("start", {"files": {"a": {"content": "x", "encoding": None}}}, False),
    ("start", {"files": {"a": {"content": "x", "contents": "y"}}}, False),
    ("start", {"files": {"a": {"contents": "x"}}}, True),
    ("start", {"files": {"a": {"content": "x", "other": 1}}}, False),
    ("start", {"files": {"a": {"content": "x", "ifMatch": None}}}, True),
    ("start", {"files": {"a": {"content": "x", "ifMatch": SHA}}}, True),
    ("start", {"files": {"a": {"content": "x", "ifMatch": SHA + "\n"}}}, False),
    ("start", {"files": {"a": {"content": "x", "ifMatch": "abc"}}}, False),
    ("start", {"files": {"a": {"file": {"contents": "x", "mode": 493}}}}, True),
    ("start", {"files": {"a": {"file": {"mode": 493}}}}, False),
    ("start", {"files": {"a": {"file": "x"}}}, False),
    ("start", {"files": {"src": {"directory": {"a.js": "1", "lib": {"directory": {}}}}}}, True),
    ("start", {"files": {"src": {"directory": {"..": "x"}}}}, False),
    ("start", {"files": {"src": {"directory": {"a/b": "x"}}}}, False),
    ("start", {"files": {"src": {"directory": []}}}, False),
    ("start", {"files": {"/abs": "x"}}, False),
    ("start", {"files": {"": "x"}}, False),
    ("sync", {"files": {"a": "x"}, "clean": True}, True),
    ("sync", {"files": {"a": "x"}, "clean": None}, False),
]


@pytest.mark.parametrize(("endpoint", "extra", "allowed"), CASES)
def test_the_server_refuses_exactly_what_the_document_forbids(
    server_without_engine: Server, endpoint: str, extra: dict[str, Any], allowed: bool
) -> None:
    spec = _spec(server_without_engine)
    path = endpoint if endpoint.startswith("/") else f"/api/v1/containers/{endpoint}"
    schema = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    body = {**REF, **extra}
    validator = jsonschema_rs.validator_for({**schema, "components": spec["components"]})
    assert validator.is_valid(body) is allowed, "the document"
    response = httpx.post(f"{server_without_engine.url}{path}", json=body, headers={"Authorization": f"Bearer {TOKEN}"})
    # Without an engine a well-formed request ends in 404 (no such workspace), 409 or 503, or 200 (list, tokens).
    assert (response.status_code not in (400, 422)) is allowed, response.text


_SPECS: dict[str, dict[str, Any]] = {}


def _spec(server: Server) -> dict[str, Any]:
    if server.url not in _SPECS:
        _SPECS[server.url] = httpx.get(f"{server.url}/openapi.json").json()
    return _SPECS[server.url]
