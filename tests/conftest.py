"""Fixtures and collection hooks: a real ide-backend server (a uvicorn subprocess) on a real Docker engine, and
clean-up by label.

Every server started here runs with its own IDE_INSTANCE, so everything it creates carries that label and is
removed at the end, even when a test fails half-way. What test modules share besides fixtures is in helpers.py
(and the process harness, shared with bench/, in harness.py; the demo page's tab and REST helpers in pages.py, used
by the browser, page_server, rest and tabs fixtures here); import it from there.

Test tiers, by marker (pyproject.toml): `docker` needs a Docker engine, `browser` needs Chromium, `postgres` needs
IDE_TEST_POSTGRES_URL, `swarm` the three-engine swarm of tests/swarm.py (the `swarm_cluster` fixture, brought up
only for the tests that ask for it). `pytest -m "not docker and not browser"` runs the rest in seconds.
`engine_restart` stops every container on the engine, so the hook below runs it last.

The REST contract and live-channel modules run on each runtime: `exec_server` and `runtime_server` have a `swarm`
param (marked `swarm`) whose server puts its workspaces on the swarm; tests that reach a container behind the
server's back do it on the engine that really has it (swarm.docker_at).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from .harness import Server, docker, remove_instance
from .helpers import SWARM, Call, Channel, chromium_browser, post, serving, start_server, swarm_for
from .swarm import on_swarm, swarm_cluster

if TYPE_CHECKING:
    from playwright.sync_api import Browser

    from .pages import PageTab, Rest

# test_proxy.py imports chromium_browser from here; its home is helpers.py, with everything else modules share.
# swarm_cluster is a fixture (tests/swarm.py), imported so every module may use it.
__all__ = ["chromium_browser", "swarm_cluster"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run `engine_restart` tests after all others; refuse a test that uses the engine without the `docker` mark,
    so `-m "not docker"` never needs one."""
    unmarked = [
        item.nodeid
        for item in items
        if "docker_engine" in getattr(item, "fixturenames", ()) and item.get_closest_marker("docker") is None
    ]
    if unmarked:
        raise pytest.UsageError("these tests use the Docker engine but are not marked `docker`: " + ", ".join(unmarked))
    items.sort(key=lambda item: item.get_closest_marker("engine_restart") is not None)  # stable: order kept otherwise


@pytest.fixture(scope="session")
def docker_engine() -> None:
    """The suite needs a real engine; scripts/test.sh starts one. Failing loudly beats skipping silently."""
    result = docker("info", "--format", "{{.ServerVersion}}", check=False)
    if result.returncode != 0:
        pytest.fail(f"No Docker engine answers ({result.stderr.strip()}); run scripts/docker-engine.sh")


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory, docker_engine: None) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("server"))
    try:
        yield srv
    finally:
        srv.stop()
        remove_instance(srv.instance)


@pytest.fixture(scope="session")
def server_without_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real server whose Docker socket does not exist: for what needs no engine (validation, auth, the OpenAPI
    document) and for the clear 503 when there is none. Nothing is created, so there is nothing to clean up."""
    tmp = tmp_path_factory.mktemp("no-engine")
    srv = start_server(tmp, IDE_DOCKER_HOST=f"unix://{tmp}/absent.sock")
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Chromium for the demo page's tests (tests/pages.py), one per module."""
    from .pages import page_browser

    with page_browser() as b:
        yield b


@pytest.fixture(scope="module")
def page_server(tmp_path_factory: pytest.TempPathFactory, docker_engine: None) -> Iterator[Server]:
    """A server for the page's tests (one per module) that keeps a shell nobody follows for 120 s, not the tests' 3 s:
    a reload takes a moment, and the machine may be busy."""
    srv = start_server(tmp_path_factory.mktemp("page"), IDE_PROCESS_DETACHED_TTL="120")
    try:
        yield srv
    finally:
        srv.stop()
        remove_instance(srv.instance)


@pytest.fixture
def rest(page_server: Server) -> Iterator[Rest]:
    """The REST API of page_server with the operator's token; deletes the workspaces the test started."""
    from .pages import Rest

    api = Rest(page_server)
    yield api
    api.clean()


@pytest.fixture
def tabs(browser: Browser) -> Iterator[list[PageTab]]:
    """The tabs a test opens with pages.new_tab(); their contexts are closed afterwards."""
    opened: list[PageTab] = []
    yield opened
    for context in {id(tab.context): tab.context for tab in opened}.values():
        # A request still being fetched for the page (pages.fetch_outside_chromium) would fail a later test.
        context.unroute_all(behavior="ignoreErrors")
        context.close()


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


@pytest.fixture
def ref(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """A workspace no other test uses. On a swarm it is stopped afterwards: a running one reserves an eighth of a
    core there, and a module's worth of them would fill the test cluster (another session may share it). Stopped,
    not deleted: a stop takes a fifth of the time, and the module's server sweeps everything away at its end."""
    workspace = {"projectId": "proj-" + uuid.uuid4().hex[:6], "workspaceId": "ws-" + uuid.uuid4().hex[:6]}
    yield workspace
    if "server" in request.fixturenames:
        srv: Server = request.getfixturevalue("server")
        if on_swarm(srv):
            post(srv, "stop", workspace)


@pytest.fixture
def api(client: httpx.Client) -> Call:
    """POST one endpoint: api("start", ref, files=...) -> response."""

    def call(endpoint: str, ref: dict[str, str], **body: Any) -> httpx.Response:
        return client.post(f"/api/v1/containers/{endpoint}", json={**ref, **body})

    return call


@pytest.fixture
def started(api: Call, ref: dict[str, str]) -> dict[str, Any]:
    """A running workspace; returns the start answer's data."""
    response = api("start", ref)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


@pytest.fixture
def channel(server: Server) -> Iterator[Channel]:
    """A websocket to `server`'s live channel."""
    ch = Channel(server)
    yield ch
    ch.close()


@pytest.fixture(scope="module", params=["agent", "docker-exec", SWARM])
def exec_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, docker_engine: None
) -> Iterator[Server]:
    """A server per exec path: the in-container agent (the default) and plain Docker exec (the fallback), and one on
    the swarm (through the agent, on the engine of each workspace's node). Modules that must give identical results
    on all of them use it as their `server`."""
    agent = str(request.param != "docker-exec").lower()
    with serving(tmp_path_factory.mktemp(request.param), swarm_for(request), IDE_EXEC_AGENT=agent) as srv:
        yield srv


@pytest.fixture(scope="module", params=["docker", SWARM])
def runtime_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, docker_engine: None
) -> Iterator[Server]:
    """A server per runtime (one engine, the swarm), for modules whose results must not depend on it and that the
    exec paths do not change."""
    with serving(tmp_path_factory.mktemp(request.param), swarm_for(request)) as srv:
        yield srv
