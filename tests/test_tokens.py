"""Scoped, expiring tokens against a real server: minted with the operator's token, good for their own workspace (or
project) on every endpoint and on the websocket, 403 elsewhere, narrowed by scopes, 401 once expired or revoked,
and revocation reaching every process that shares the database and closing what the token had open."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from .harness import Server, remove_instance
from .helpers import TOKEN, Channel, new_process_id, start_server

pytestmark = pytest.mark.docker

PG_URL = os.environ.get("IDE_TEST_POSTGRES_URL", "")


def mint(server: Server, **body: Any) -> dict[str, Any]:
    response = httpx.post(f"{server.url}/api/v1/tokens", json=body, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def call(server: Server, token: str, endpoint: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{server.url}/api/v1/containers/{endpoint}",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )


@pytest.fixture
def project() -> str:
    return "tok-" + uuid.uuid4().hex[:6]


def test_a_token_minted_for_a_workspace_works_there_and_nowhere_else(server: Server, project: str) -> None:
    own, other = {"projectId": project, "workspaceId": "mine"}, {"projectId": project, "workspaceId": "theirs"}
    minted = mint(server, projectId=project, workspaceId="mine", ttlSeconds=600)
    assert minted["projectId"] == project and minted["workspaceId"] == "mine"
    assert minted["scopes"] == ["read", "write"]
    expires = datetime.fromisoformat(minted["expiresAt"].replace("Z", "+00:00"))
    assert 590 < (expires - datetime.now(UTC)).total_seconds() <= 601
    token = minted["token"]
    assert TOKEN not in token

    assert call(server, token, "start", {**own, "files": {"a.txt": "one"}}).status_code == 200
    answers = {
        "status": call(server, token, "status", own),
        "exec": call(server, token, "exec", {**own, "command": "cat a.txt"}),
        "sync": call(server, token, "sync", {**own, "files": {"b.txt": "two"}}),
        "files/list": call(server, token, "files/list", own),
        "files/read": call(server, token, "files/read", {**own, "path": "b.txt"}),
        "files/delete": call(server, token, "files/delete", {**own, "paths": ["b.txt"]}),
        "vscode-theme": call(server, token, "vscode-theme", {**own, "theme": "Default Dark Modern"}),
    }
    assert {name: r.status_code for name, r in answers.items()} == dict.fromkeys(answers, 200)
    assert answers["exec"].json()["output"] == "one"

    for endpoint in ("start", "status", "exec", "stop"):
        refused = call(server, token, endpoint, {**other, "command": "true"})
        assert refused.status_code == 403, (endpoint, refused.text)
        assert refused.json()["success"] is False and refused.json()["code"] == "forbidden"
    elsewhere = call(server, token, "status", {"projectId": project + "x", "workspaceId": "mine"})
    assert elsewhere.status_code == 403
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as scoped:
        assert scoped.get("/api/v1/stats").status_code == 403
        assert scoped.post("/api/v1/tokens", json={"projectId": project}).status_code == 403
        assert scoped.post("/api/v1/tokens/revoke", json={"projectId": project}).status_code == 403
    assert call(server, token, "stop", own).status_code == 200


def test_project_tokens_and_read_only_scopes(server: Server, project: str) -> None:
    one, two = {"projectId": project, "workspaceId": "one"}, {"projectId": project, "workspaceId": "two"}
    whole = mint(server, projectId=project)["token"]
    assert call(server, whole, "start", one).status_code == 200
    assert call(server, whole, "start", two).status_code == 200
    assert call(server, whole, "status", {"projectId": "not-" + project, "workspaceId": "one"}).status_code == 403
    reader = mint(server, projectId=project, workspaceId="one", scopes=["read"])
    assert reader["scopes"] == ["read"]
    token = reader["token"]
    assert call(server, token, "status", one).status_code == 200
    assert call(server, token, "files/list", one).status_code == 200
    for endpoint, extra in (("exec", {"command": "true"}), ("sync", {"files": {"x": "1"}}), ("stop", {})):
        refused = call(server, token, endpoint, {**one, **extra})
        assert refused.status_code == 403 and "read" in refused.json()["message"], refused.text
    for ref in (one, two):
        call(server, whole, "stop", ref)


def test_bad_token_requests_and_tokens_are_refused_clearly(server: Server, project: str) -> None:
    admin = {"Authorization": f"Bearer {TOKEN}"}
    too_long = httpx.post(
        f"{server.url}/api/v1/tokens", json={"projectId": project, "ttlSeconds": 10**9}, headers=admin
    )
    assert too_long.status_code == 422 and too_long.json()["fields"] == ["ttlSeconds"]
    unknown = httpx.post(f"{server.url}/api/v1/tokens", json={"projectId": project, "scopes": ["root"]}, headers=admin)
    assert unknown.status_code == 422 and "scopes" in unknown.json()["fields"]
    missing = httpx.post(f"{server.url}/api/v1/tokens", json={}, headers=admin)
    assert missing.status_code == 422 and missing.json()["fields"] == ["projectId"]
    ref = {"projectId": project, "workspaceId": "w"}
    for bad in ("eyJhbGciOiJIUzI1NiJ9.e30.x", "not-a-token", mint(server, projectId=project)["token"][:-3] + "abc"):
        refused = call(server, bad, "status", ref)
        assert refused.status_code == 401 and refused.json()["code"] == "unauthorized", refused.text
    short = mint(server, projectId=project, ttlSeconds=1)["token"]
    time.sleep(2.1)
    expired = call(server, short, "status", ref)
    assert expired.status_code == 401 and "expired" in expired.json()["message"]
    assert short not in server.log() and TOKEN not in server.log()


def test_the_channel_answers_other_workspaces_per_message(server: Server, project: str) -> None:
    own, other = {"projectId": project, "workspaceId": "mine"}, {"projectId": project, "workspaceId": "theirs"}
    admin = Channel(server)
    token = mint(server, projectId=project, workspaceId="mine")["token"]
    scoped = Channel(server, token=token)
    try:
        for ref in (own, other):
            assert call(server, TOKEN, "start", ref).status_code == 200
        theirs = new_process_id()
        admin.send(type="exec", id=theirs, command="sleep 30", **other)
        admin.wait_for(type="started", id=theirs)

        mine = new_process_id()
        scoped.send(type="exec", id=mine, command="echo hello", **own)
        assert "".join(m.get("data", "") for m in scoped.process(mine)) == "hello\n"
        refused = new_process_id()
        scoped.send(type="exec", id=refused, command="echo no", **other)
        assert scoped.wait_for(type="error", id=refused)["code"] == "forbidden"
        scoped.send(type="subscribe", **other)
        assert scoped.wait_for(type="error")["code"] == "forbidden"
        # Another workspace's process is as unknown as one that never ran.
        scoped.send(type="attach", id=theirs)
        hidden = scoped.wait_for(type="error", id=theirs)
        never = new_process_id()
        scoped.send(type="signal", id=never, signal="SIGKILL")
        unknown = scoped.wait_for(type="error", id=never)
        assert hidden["code"] == unknown["code"] == "not_found"
        assert hidden["message"].replace(theirs, "?") == unknown["message"].replace(never, "?")
        scoped.send(type="stdin", id=theirs, data="x")
        assert scoped.wait_for(type="error", id=theirs)["code"] == "not_found"
        scoped.send(type="ping")
        scoped.wait_for(type="pong")  # the connection is still up
        admin.send(type="signal", id=theirs, signal="SIGKILL")
        admin.wait_for(type="exit", id=theirs)
    finally:
        scoped.close()
        admin.close()
        for ref in (own, other):
            call(server, TOKEN, "stop", ref)


@pytest.fixture
def shared_pair(tmp_path: Path, docker_engine: None) -> Iterator[tuple[Server, Server]]:
    """Two backend processes on one PostgreSQL database, as behind a load balancer."""
    if not PG_URL:
        pytest.skip("IDE_TEST_POSTGRES_URL is not set (scripts/test.sh sets it up when run as root)")
    secret = "shared-secret-" + uuid.uuid4().hex + uuid.uuid4().hex
    env = {"IDE_DATABASE_URL": PG_URL, "IDE_TOKEN_SECRET": secret, "IDE_REVOCATION_POLL": "0.2"}
    first = start_server(tmp_path / "a", **env)
    second = start_server(tmp_path / "b", **env)
    try:
        yield first, second
    finally:
        for srv in (first, second):
            srv.stop()
            remove_instance(srv.instance)


@pytest.mark.postgres
def test_revocation_reaches_every_process_and_closes_what_the_token_opened(
    shared_pair: tuple[Server, Server], project: str
) -> None:
    first, second = shared_pair
    ref = {"projectId": project, "workspaceId": "w"}
    token = mint(first, projectId=project, workspaceId="w")["token"]
    assert call(second, token, "start", ref).status_code == 200  # minted on one, good on the other
    channel = Channel(second, token=token)
    try:
        channel.send(type="subscribe", **ref)
        channel.wait_for(type="subscribed")
        other_project = mint(first, projectId=project + "o")["token"]
        revoked = httpx.post(
            f"{first.url}/api/v1/tokens/revoke",
            json={"projectId": project},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert revoked.status_code == 200 and revoked.json()["revokedAt"].endswith("Z")
        began = time.monotonic()
        assert call(first, token, "status", ref).status_code == 401  # at once where it was revoked
        while call(second, token, "status", ref).status_code != 401:
            assert time.monotonic() - began < 1.0, "the other process still accepts the revoked token"
            time.sleep(0.05)
        with pytest.raises(ConnectionClosed) as closed:
            while time.monotonic() - began < 5:
                channel.recv(timeout=5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
        assert time.monotonic() - began < 2.0
        assert call(second, other_project, "status", {"projectId": project + "o", "workspaceId": "w"}).status_code in (
            200,
            404,
        )  # another project's token is untouched
        fresh = mint(first, projectId=project, workspaceId="w")["token"]
        assert call(second, fresh, "status", ref).status_code == 200  # issued after the revocation
    finally:
        channel.close()
        call(first, TOKEN, "stop", ref)


def test_tokens_survive_a_restart_with_the_secret_kept_in_the_data_folder(tmp_path: Path, docker_engine: None) -> None:
    srv = start_server(tmp_path)
    try:
        token = mint(srv, projectId="keep", workspaceId="w")["token"]
        assert call(srv, token, "status", {"projectId": "keep", "workspaceId": "w"}).status_code == 404
        secret = tmp_path / "data" / "token-secret"
        assert secret.stat().st_mode & 0o777 == 0o600 and secret.read_bytes().strip() not in srv.log().encode()
    finally:
        srv.stop()
    again = start_server(tmp_path, instance=srv.instance)
    try:
        assert call(again, token, "status", {"projectId": "keep", "workspaceId": "w"}).status_code == 404  # not 401
    finally:
        again.stop()
        remove_instance(srv.instance)
