"""Request ids and the JSON log: a user's error report (its requestId) finds the server's lines about it.

Real servers (uvicorn subprocesses) whose log is read as the operator would read it; no engine is needed, since the
answers checked here (validation errors, the 503 of an absent engine, unknown endpoints) never reach one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets.sync.client

from .harness import Server
from .helpers import TOKEN, start_server

STATUS = "/api/v1/containers/start"  # with no engine behind the server: a 503
REF = {"projectId": "p1", "workspaceId": "w1"}


def _serve(tmp: Path, **settings: str) -> Server:
    return start_server(tmp, IDE_DOCKER_HOST=f"unix://{tmp}/absent.sock", **settings)


@pytest.fixture(scope="module")
def json_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("json-log")
    srv = _serve(tmp, IDE_LOG_FORMAT="json")
    try:
        yield srv
    finally:
        srv.stop()


def _lines(server: Server) -> list[dict[str, Any]]:
    """Every line of the server's output, each of which must be one JSON object."""
    out = []
    for line in server.log().splitlines():
        try:
            parsed = json.loads(line)
        except ValueError:
            pytest.fail(f"a log line that is not JSON: {line!r}")
        assert isinstance(parsed, dict), line
        out.append(parsed)
    return out


def _lines_of(server: Server, rid: str, wait: float = 5.0) -> list[dict[str, Any]]:
    """The log lines carrying `rid`, waited for a little (the access line is written as the answer goes out)."""
    deadline = time.monotonic() + wait
    while True:
        found = [line for line in _lines(server) if line.get("requestId") == rid]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_a_callers_id_comes_back_in_the_header_the_error_and_the_log(json_server: Server) -> None:
    with json_server.client() as client:
        answer = client.post(STATUS, json=REF, headers={"X-Request-Id": "report-1234"})
    assert answer.status_code == 503, answer.text  # no engine behind this server
    assert answer.headers["x-request-id"] == "report-1234"
    body = answer.json()
    assert body["success"] is False and body["requestId"] == "report-1234"
    lines = _lines_of(json_server, "report-1234")
    warning = [line for line in lines if line["level"] == "warning"]
    assert warning and "Docker" in warning[0]["message"], lines
    access = [line for line in lines if line["logger"] == "uvicorn.access"]
    assert access, lines
    assert access[0]["method"] == "POST" and access[0]["path"] == STATUS and access[0]["status"] == 503


def test_an_id_is_made_when_none_or_a_bad_one_is_sent(json_server: Server) -> None:
    with json_server.client() as client:
        plain = client.post(STATUS, json={"projectId": "bad id"})
        odd = client.post(STATUS, json={"projectId": "bad id"}, headers={"X-Request-Id": "no spaces\tor tabs"})
        fine = client.get("/healthz")
    for answer in (plain, odd):
        assert answer.status_code == 422, answer.text
        rid = answer.headers["x-request-id"]
        assert rid and rid == answer.json()["requestId"]
        assert " " not in rid and "\t" not in rid
        assert _lines_of(json_server, rid), f"no log line with {rid}"
    assert plain.headers["x-request-id"] != odd.headers["x-request-id"]
    assert fine.status_code == 200 and fine.headers["x-request-id"]


def test_unknown_endpoints_and_auth_refusals_carry_the_id_too(json_server: Server) -> None:
    with httpx.Client(base_url=json_server.url) as client:
        unknown = client.get("/api/v1/nothing", headers={"Authorization": f"Bearer {TOKEN}"})
        refused = client.post(STATUS, json=REF, headers={"X-Request-Id": "no-token-1"})
    assert unknown.status_code == 404 and unknown.json()["requestId"] == unknown.headers["x-request-id"]
    assert refused.status_code == 401 and refused.json()["requestId"] == "no-token-1"
    assert refused.headers["x-request-id"] == "no-token-1"


def test_a_websocket_gets_an_id_in_its_handshake(json_server: Server) -> None:
    url = json_server.url.replace("http", "ws", 1) + "/api/v1/ws"
    headers = {"Authorization": f"Bearer {TOKEN}", "X-Request-Id": "socket-77"}
    with websockets.sync.client.connect(url, additional_headers=headers) as ws:
        assert ws.response is not None
        assert ws.response.headers["x-request-id"] == "socket-77"


def test_tokens_never_reach_the_json_log(json_server: Server) -> None:
    with httpx.Client(base_url=json_server.url) as client:
        client.get(f"/?token={TOKEN}", headers={"X-Request-Id": "page-with-token"})
    lines = _lines_of(json_server, "page-with-token")
    assert lines and all(TOKEN not in json.dumps(line) for line in lines)
    assert TOKEN not in json_server.log()


def test_the_text_log_tags_lines_with_the_id(tmp_path: Path) -> None:
    server = _serve(tmp_path)
    try:
        with server.client() as client:
            client.post(STATUS, json=REF, headers={"X-Request-Id": "text-42"})
        deadline = time.monotonic() + 5
        while "[text-42]" not in server.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        tagged = [line for line in server.log().splitlines() if "[text-42]" in line]
        assert any("uvicorn.access" in line and "503" in line for line in tagged), server.log_tail()
        with pytest.raises(ValueError):
            json.loads(tagged[0])
    finally:
        server.stop()


@pytest.mark.parametrize("trusted", [True, False])
def test_behind_a_trusted_proxy_the_forwarded_client_is_the_one_limited(tmp_path: Path, trusted: bool) -> None:
    settings = {"IDE_AUTH_FAILURE_LIMIT": "3", "IDE_LOG_FORMAT": "json"}
    if trusted:
        settings["IDE_FORWARDED_ALLOW_IPS"] = "127.0.0.1"
    server = _serve(tmp_path, **settings)
    try:
        with httpx.Client(base_url=server.url) as client:
            guesser = {"Authorization": "Bearer wrong", "X-Forwarded-For": "10.0.0.1"}
            answers = [client.get("/api/v1/stats", headers=guesser).status_code for _ in range(4)]
            assert answers == [401, 401, 401, 429]
            other = {"Authorization": f"Bearer {TOKEN}", "X-Forwarded-For": "10.0.0.2", "X-Request-Id": "other-1"}
            answer = client.get("/api/v1/stats", headers=other)
        if trusted:  # another client behind the same proxy is not held up by the guesser
            assert answer.status_code == 200, answer.text
            (access,) = [line for line in _lines_of(server, "other-1") if line["logger"] == "uvicorn.access"]
            assert str(access["client"]).startswith("10.0.0.2")
        else:  # no proxy is believed: everyone behind it is one client (the header is anyone's to send)
            assert answer.status_code == 429, answer.text
    finally:
        server.stop()
