"""Every failure is a JSON answer with success false, a message a person can act on, and the right status.

None of these needs a Docker engine: the server here has none (its socket is absent), which the 503 test wants and
the others never reach, since requests are refused or found unknown before anything asks Docker."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .harness import Server
from .helpers import Call, start_server


@pytest.fixture(scope="module")
def server(server_without_engine: Server) -> Server:
    """This module's `server` (and so its `client` and `api`): a real one whose Docker socket does not exist."""
    return server_without_engine


ENDPOINTS = ["start", "stop", "status", "exec", "sync", "vscode-theme"]


def _assert_error(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, object] = response.json()
    assert body["success"] is False
    assert isinstance(body["message"], str) and len(body["message"]) > 10
    return body


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_missing_and_wrong_token(server: Server, endpoint: str) -> None:
    with server.client(token="") as anonymous:
        body = _assert_error(anonymous.post(f"/api/v1/containers/{endpoint}", json={}), 401)
        assert "Authorization: Bearer" in str(body["message"])
    with server.client(token="wrong") as wrong:
        _assert_error(wrong.post(f"/api/v1/containers/{endpoint}", json={}), 401)


def test_malformed_json_is_400(client: httpx.Client) -> None:
    response = client.post(
        "/api/v1/containers/start", content=b"{not json", headers={"content-type": "application/json"}
    )
    body = _assert_error(response, 400)
    assert "JSON" in str(body["message"])


def test_non_object_body_is_422(client: httpx.Client) -> None:
    _assert_error(client.post("/api/v1/containers/start", json=[1, 2]), 422)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"workspaceId": "w"}, "projectId"),
        ({"projectId": "p"}, "workspaceId"),
        ({"projectId": "../x", "workspaceId": "w"}, "projectId"),
        ({"projectId": "p", "workspaceId": "has space"}, "workspaceId"),
        ({"projectId": "p", "workspaceId": "é"}, "workspaceId"),
        ({"projectId": "p" * 64, "workspaceId": "w"}, "projectId"),
        ({"projectId": 5, "workspaceId": "w"}, "projectId"),
        ({"projectId": "p", "workspaceId": "x" * 10_000}, "workspaceId"),
    ],
)
def test_validation_names_the_field(client: httpx.Client, body: dict[str, object], field: str) -> None:
    result = _assert_error(client.post("/api/v1/containers/start", json=body), 422)
    assert field in str(result["message"])
    assert result["fields"] == [field]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"command": ""}, "command"),
        ({"command": 5}, "command"),
        ({"command": "a\x00b"}, "command"),
        ({"command": "true", "env": {"1BAD": "x"}}, "env"),
        ({"command": "true", "timeout": -1}, "timeout"),
        ({}, "command"),
    ],
)
def test_exec_validation(api: Call, ref: dict[str, str], body: dict[str, object], field: str) -> None:
    result = _assert_error(api("exec", ref, **body), 422)
    assert field in str(result["message"])


def test_theme_validation(api: Call, ref: dict[str, str]) -> None:
    _assert_error(api("vscode-theme", ref, theme=""), 422)
    _assert_error(api("vscode-theme", ref, theme="a\nb"), 422)
    _assert_error(api("vscode-theme", ref), 422)


@pytest.mark.parametrize("endpoint", ["stop", "status", "exec", "sync", "vscode-theme"])
def test_unknown_workspace_is_404(api: Call, ref: dict[str, str], endpoint: str) -> None:
    body = {"command": "true", "files": {}, "theme": "Dark"}
    result = _assert_error(api(endpoint, ref, **body), 404)
    assert ref["workspaceId"] in str(result["message"])


def test_body_too_large_is_413(client: httpx.Client, server: Server, ref: dict[str, str]) -> None:
    big = "x" * (65 * 1024 * 1024)
    _assert_error(client.post("/api/v1/containers/start", json={**ref, "files": {"big": big}}), 413)

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit applies to the stream itself
        yield b'{"projectId": "p", "workspaceId": "w", "files": {"big": "'
        for _ in range(70):
            yield b"y" * (1024 * 1024)
        yield b'"}}'

    _assert_error(client.post("/api/v1/containers/start", content=chunks()), 413)
    assert client.post("/api/v1/containers/status", json=ref).status_code == 404  # nothing was created


def test_unknown_endpoint_and_method(client: httpx.Client) -> None:
    _assert_error(client.post("/api/v1/containers/nope", json={}), 404)
    _assert_error(client.get("/api/v1/containers/start"), 405)


@pytest.fixture
def silent_docker_socket(tmp_path: Path) -> Iterator[str]:
    """A unix socket that accepts connections and never answers: a hung Docker engine, produced for real."""
    path = tmp_path / "hung.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
                held.append(conn)
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"unix://{path}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    listener.close()


def test_docker_engine_that_does_not_answer_is_503(tmp_path: Path, silent_docker_socket: str) -> None:
    srv = start_server(tmp_path, IDE_DOCKER_HOST=silent_docker_socket, IDE_DOCKER_TIMEOUT="0.5")
    try:
        with srv.client() as c:
            began = time.monotonic()
            response = c.post("/api/v1/containers/start", json={"projectId": "p", "workspaceId": "w"})
            elapsed = time.monotonic() - began
            body = _assert_error(response, 503)
            assert "dockerd" in str(body["message"]) and body["hint"]
            assert elapsed < 10  # bounded by the configured timeout (a few of them at most), not hung
            health = c.get("/healthz").json()
            assert health["docker"] != "ok"
    finally:
        srv.stop()


def test_docker_socket_missing_is_503(client: httpx.Client) -> None:
    body = _assert_error(client.post("/api/v1/containers/start", json={"projectId": "p", "workspaceId": "w"}), 503)
    assert "dockerd" in str(body["message"])
