"""The backend's own image (the root Dockerfile, `scripts/build-images.sh --backend`) run the way its header says:
in a container, driving the host's engine through its socket. The demo page and its front-end packages are served,
a workspace starts, a command runs, and with the code-server image the /ide/ proxy reaches code-server at the
workspace container's own address (IDE_IDE_UPSTREAM=container), since the backend's loopback is not the host's."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .harness import docker, free_port, remove_instance
from .helpers import TOKEN

pytestmark = pytest.mark.docker

IMAGE = "ide-backend/server:latest"
CODE_SERVER = "ide-backend/code-server:latest"


def _present(image: str) -> bool:
    return docker("image", "inspect", image, check=False).returncode == 0


@pytest.fixture(scope="module")
def backend(docker_engine: None) -> Iterator[tuple[str, str]]:
    if not _present(IMAGE):
        pytest.fail(f"{IMAGE} is missing: scripts/build-images.sh --backend builds it (scripts/setup.sh --test does)")
    instance = "img" + uuid.uuid4().hex[:8]
    port = free_port()
    image = CODE_SERVER if _present(CODE_SERVER) else "ide-backend/workspace:latest"
    name = f"{instance}-server"
    docker(
        "run", "-d", "--name", name, "--label", f"ide-backend.instance={instance}",
        "-v", "/var/run/docker.sock:/var/run/docker.sock",
        "-e", f"IDE_API_TOKEN={TOKEN}", "-e", f"IDE_INSTANCE={instance}", "-e", f"IDE_WORKSPACE_IMAGE={image}",
        "-e", "IDE_POOL_SIZE=1", "-e", "IDE_STOP_TIMEOUT=1",
        "-p", f"127.0.0.1:{port}:8000", IMAGE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, docker("logs", name, check=False).stderr[-3000:]
            time.sleep(0.2)
        yield url, image
    finally:
        docker("stop", "-t", "10", name, check=False)  # a graceful stop: it removes its idle pool container
        remove_instance(instance)


def _post(url: str, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(
        f"{url}/api/v1/containers/{endpoint}", json=body, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def test_the_page_and_its_packages_are_served(backend: tuple[str, str]) -> None:
    url, _ = backend
    page = httpx.get(f"{url}/", timeout=30)
    assert page.status_code == 200 and "/vendor/monaco-editor/min/vs/loader.js" in page.text
    for asset in (
        "/vendor/monaco-editor/min/vs/loader.js",
        "/vendor/@xterm/xterm/lib/xterm.js",
        "/vendor/@xterm/addon-fit/lib/addon-fit.js",
        "/vendor/@xterm/xterm/css/xterm.css",
        "/static/app.js",
        "/static/style.css",
    ):
        assert httpx.get(url + asset, timeout=30).status_code == 200, asset


def _ide_health(url: str) -> httpx.Response:
    """code-server's /healthz through the backend's /ide/ proxy, once it answers 200 (within a minute)."""
    deadline = time.monotonic() + 60
    while True:
        answer = httpx.get(f"{url}/ide/img/one/healthz", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        if answer.status_code == 200:
            return answer
        assert time.monotonic() < deadline, f"code-server did not answer through the proxy: {answer.text}"
        time.sleep(0.3)


def test_workspaces_run_and_the_ide_is_proxied_from_inside_a_container(backend: tuple[str, str]) -> None:
    url, image = backend
    ref = {"projectId": "img", "workspaceId": "one"}
    started = _post(url, "start", {**ref, "files": {"a.txt": "from the image"}})["data"]
    assert started["running"] is True
    assert _post(url, "exec", {**ref, "command": "cat a.txt"})["output"] == "from the image"
    status = _post(url, "status", ref)
    assert status["success"] is True
    data = status["data"]
    assert (data["projectId"], data["workspaceId"]) == ("img", "one")
    assert data["id"] == started["id"] and data["image"] == image
    assert data["status"] == "running" and data["running"] is True
    assert isinstance(data["password"], str) and len(data["password"]) >= 16
    if image != CODE_SERVER:
        pytest.skip(f"{CODE_SERVER} is not built, so there is no IDE to proxy (scripts/build-images.sh --code-server)")
    assert data["ideUrl"] == "/ide/img/one/"
    # code-server's own health answer, from inside the workspace container.
    health = _ide_health(url).json()
    assert health["status"] in ("alive", "expired") and isinstance(health["lastHeartbeat"], int), health
    # ... and /status says so: it asks code-server where the proxy reaches it (the container's own address here).
    ready = _post(url, "status", ref)["data"]
    assert ready["ideReady"] is True and ready["running"] is True
