"""The backend's own image (the root Dockerfile, `scripts/build-images.sh --backend`) run the way its header says:
in a container, driving the host's engine through its socket. The demo page and its front-end packages are served,
a workspace starts, a command runs, and with the code-server image the /ide/ proxy reaches code-server at the
workspace container's own address (IDE_IDE_UPSTREAM=container), since the backend's loopback is not the host's.
And, without an engine: the Dockerfile needs no file a fresh clone lacks, so a plain `docker build .` works too."""

from __future__ import annotations

import fnmatch
import shlex
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .harness import ROOT, docker, free_port, remove_instance
from .helpers import TOKEN

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


def _instructions(dockerfile: str) -> list[list[str]]:
    """The Dockerfile's instructions as words, continuation lines joined and comments dropped."""
    lines = [line for line in dockerfile.splitlines() if not line.lstrip().startswith("#")]
    joined = "\n".join(lines).replace("\\\n", " ")
    return [shlex.split(line, posix=False) for line in joined.splitlines() if line.strip()]


def test_the_dockerfile_needs_only_files_a_fresh_clone_has() -> None:
    """Every COPY/ADD source of the root Dockerfile is in the repository (the build script stages build/ca/*.crt and
    build/vendor/, but a plain `docker build .` has only what `git clone` gives), and .dockerignore keeps none out."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    ignored = [
        line.strip().rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = []
    for words in _instructions((ROOT / "Dockerfile").read_text()):
        if words[0].upper() in ("COPY", "ADD") and not any(w.startswith("--from=") for w in words):
            sources += [w for w in words[1:-1] if not w.startswith("--")]
    assert "build/ca/" in sources and "pyproject.toml" in sources, sources
    for source in sources:
        path = source.rstrip("/").removeprefix("./")
        assert any(fnmatch.fnmatch(name, path) or name.startswith(path + "/") for name in tracked), (
            f"COPY {source}: not in a fresh clone (git ls-files)"
        )
        assert not any(fnmatch.fnmatch(path, pattern) for pattern in ignored), f"COPY {source}: in .dockerignore"


def _post(url: str, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(
        f"{url}/api/v1/containers/{endpoint}", json=body, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


@pytest.mark.docker
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
        "/docs",
        "/vendor/swagger-ui-dist/swagger-ui-bundle.js",
        "/vendor/swagger-ui-dist/swagger-ui.css",
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


@pytest.mark.docker
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
