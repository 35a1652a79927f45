"""GET /metrics on a real server: Prometheus text that the official parser reads, guarded by the operator's token or
IDE_METRICS_TOKEN (which opens nothing else), and numbers that move with what the server does."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ide_backend.metrics import SNAPSHOT_TTL

from .harness import Server, remove_instance
from .helpers import TOKEN, Channel, new_process_id, post, start_server

pytestmark = pytest.mark.docker

METRICS_TOKEN = "metrics-only-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def watched(tmp_path_factory: pytest.TempPathFactory, docker_engine: None) -> Iterator[Server]:
    server = start_server(tmp_path_factory.mktemp("metrics"), IDE_METRICS_TOKEN=METRICS_TOKEN)
    yield server
    server.stop()
    remove_instance(server.instance)


def scrape(server: Server, token: str = TOKEN) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = httpx.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=")
    found = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_need_a_token_and_the_metrics_token_opens_nothing_else(watched: Server) -> None:
    assert httpx.get(f"{watched.url}/metrics").status_code == 401
    assert httpx.get(f"{watched.url}/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    scrape(watched, METRICS_TOKEN)
    api = httpx.post(
        f"{watched.url}/api/v1/containers/list", json={}, headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    )
    assert api.status_code == 401
    scoped = httpx.post(
        f"{watched.url}/api/v1/tokens", json={"projectId": "p"}, headers={"Authorization": f"Bearer {TOKEN}"}
    ).json()["token"]
    assert httpx.get(f"{watched.url}/metrics", headers={"Authorization": f"Bearer {scoped}"}).status_code == 403


def test_the_numbers_move_with_what_the_server_does(watched: Server) -> None:
    ref = {"projectId": "metrics", "workspaceId": "w" + uuid.uuid4().hex[:6]}
    before = scrape(watched)
    assert post(watched, "start", ref).status_code == 200
    for _ in range(3):
        assert post(watched, "exec", {**ref, "command": "true"}).status_code == 200
    assert post(watched, "status", {"projectId": "metrics", "workspaceId": "never"}).status_code == 404
    channel = Channel(watched)
    try:
        process = new_process_id()
        channel.send(type="exec", id=process, command="sleep 30", **ref)
        channel.wait_for(type="started", id=process)
        time.sleep(SNAPSHOT_TTL + 0.2)  # the workspaces' states are read again once the last reading is this old
        during = scrape(watched)
        channel.send(type="signal", id=process, signal="SIGKILL")
        channel.wait_for(type="exit", id=process)
    finally:
        channel.close()

    route = "/api/v1/containers/exec"
    exec_count = value(during, "ide_http_requests_total", route=route, method="POST", status="200")
    assert exec_count - value(before, "ide_http_requests_total", route=route, method="POST", status="200") == 3
    assert value(during, "ide_http_requests_total", route="/api/v1/containers/status", method="POST", status="404") >= 1
    assert value(during, "ide_http_request_seconds_count", route=route, method="POST") >= 3
    assert value(during, "ide_websockets_open") >= 1 and value(during, "ide_processes_live") >= 1
    assert value(during, "ide_docker_call_seconds_count", operation="inspect") > value(
        before, "ide_docker_call_seconds_count", operation="inspect"
    )
    assert value(during, "ide_database_call_seconds_count", operation="reading a workspace") > 0
    assert value(during, "ide_workspaces", state="running", template="base") >= 1
    assert ("ide_pool_size", (("template", "base"),)) in during
    assert value(during, "ide_engine_event_stream_reconnects_total") == 0
    post(watched, "delete", ref)


def test_unknown_paths_share_one_label(watched: Server, tmp_path: Path) -> None:
    for i in range(5):
        httpx.get(f"{watched.url}/no/such/{i}")
    samples = scrape(watched)
    assert value(samples, "ide_http_requests_total", route="unmatched", method="GET", status="404") >= 5
    assert not [key for key in samples if "/no/such" in str(key)]
