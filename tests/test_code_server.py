"""VS Code in the browser, end to end: a real backend running workspaces from ide-backend/code-server:latest, the
IDE opened through the backend's proxy at /ide/{projectId}/{workspaceId}/ in a real Chromium, logged in with the
workspace password, and a theme set through the API showing up in the workbench.

Skipped (with the reason) when the image is not built: `scripts/build-images.sh --code-server` builds it.
Screenshots of every step go to artifacts/code-server/.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from .harness import Server, docker, remove_instance
from .helpers import TOKEN, chromium_browser, start_server

IMAGE = "ide-backend/code-server:latest"
REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "artifacts" / "code-server"
# Theme name -> (the workbench's base-theme class, the editor background the theme defines).
LIGHT = ("Solarized Light", "vs", "#fdf6e3")
DARK = ("Default Dark Modern", "vs-dark", "#1f1f1f")


def _image_present() -> bool:
    try:
        return docker("image", "inspect", IMAGE, check=False).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _has_agent() -> bool:
    labels = docker("image", "inspect", "-f", "{{json .Config.Labels}}", IMAGE).stdout
    return "ide-backend.agent" in json.loads(labels or "{}")


pytestmark = [pytest.mark.docker, pytest.mark.browser]


@pytest.fixture(scope="module")
def cs_server(tmp_path_factory: pytest.TempPathFactory, docker_engine: None) -> Iterator[Server]:
    if not _image_present():  # asked here, not at collection: `-m "not docker"` never calls the engine
        pytest.skip(f"{IMAGE} is not built; build it with: scripts/build-images.sh --code-server (about 2-3 minutes)")
    srv = start_server(tmp_path_factory.mktemp("code-server"), IDE_WORKSPACE_IMAGE=IMAGE)
    try:
        yield srv
    finally:
        srv.stop()
        remove_instance(srv.instance)


@pytest.fixture(scope="module")
def api(cs_server: Server) -> Iterator[httpx.Client]:
    with cs_server.client() as client:
        yield client


@pytest.fixture(scope="module")
def ref() -> dict[str, str]:
    return {"projectId": "cs-" + uuid.uuid4().hex[:6], "workspaceId": "ws-" + uuid.uuid4().hex[:6]}


def _post(api: httpx.Client, endpoint: str, ref: dict[str, str], **body: Any) -> dict[str, Any]:
    response = api.post(f"/api/v1/containers/{endpoint}", json={**ref, **body})
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


@pytest.fixture(scope="module")
def workspace(api: httpx.Client, ref: dict[str, str], cs_server: Server) -> dict[str, Any]:
    """A started workspace whose code-server answers through the proxy; returns /status's data."""
    _post(api, "start", ref, files={"hello.py": "print('hello from the workspace')\n"})
    base = f"/ide/{ref['projectId']}/{ref['workspaceId']}/"
    deadline = time.monotonic() + 60  # code-server answers about a second after the container starts
    while True:
        last = api.get(base + "healthz")  # the Bearer token works for programs
        if last.status_code == 200:
            break
        if last.status_code == 404 and "No such endpoint" in last.text:
            pytest.fail("the backend has no /ide/ routes: wire ide_backend.proxy into create_app")
        assert time.monotonic() < deadline, f"code-server did not answer through the proxy: {last.text}"
        time.sleep(0.2)
    data: dict[str, Any] = _post(api, "status", ref)["data"]
    return data


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium_browser() as browser:
        yield browser


@pytest.fixture(scope="module")
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    yield context
    context.close()


@pytest.fixture(scope="module")
def page(context: BrowserContext) -> Page:
    page = context.new_page()
    page.set_default_timeout(60_000)
    return page


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def ide_url(server: Server, ref: dict[str, str]) -> str:
    return f"{server.url}/ide/{ref['projectId']}/{ref['workspaceId']}/"


def theme_state(page: Page) -> tuple[str, str]:
    """(base-theme class on the workbench, its editor background colour)."""
    state: list[str] = page.evaluate(
        """() => {
            const wb = document.querySelector('.monaco-workbench');
            const kind = ['vs-dark', 'hc-black', 'hc-light', 'vs'].find((c) => wb.classList.contains(c)) || '';
            const bg = getComputedStyle(wb).getPropertyValue('--vscode-editor-background').trim().toLowerCase();
            return [kind, bg];
        }"""
    )
    return state[0], state[1]


def wait_theme(page: Page, kind: str, background: str, timeout: float = 120) -> None:
    """Until the workbench shows the theme; says what it shows instead when it does not."""
    deadline = time.monotonic() + timeout
    while (state := theme_state(page)) != (kind, background):
        if time.monotonic() > deadline:
            shot(page, f"failed-theme-{kind}")
            pytest.fail(f"the workbench shows {state}, not {(kind, background)}")
        page.wait_for_timeout(250)


# --- the image ---------------------------------------------------------------------------------------------------


def test_code_server_runs_as_coder_on_8080_beside_the_agent(
    cs_server: Server, api: httpx.Client, ref: dict[str, str], workspace: dict[str, Any]
) -> None:
    assert workspace["image"] == IMAGE and workspace["running"] is True
    assert "8080" in workspace["ports"] and workspace["password"]
    out = _post(api, "exec", ref, command="ps -eo user:12,args; curl -s localhost:8080/healthz")
    assert out["exitCode"] == 0, out
    processes = out["output"].splitlines()
    server = [line for line in processes if "node /usr/local/bin/code-server" in line]
    assert server and server[0].startswith("coder ") and "--bind-addr 0.0.0.0:8080 --auth password" in server[0]
    assert '"status"' in processes[-1]
    # The workspace image's exec agent is still the main process, so the warm exec path keeps working.
    assert any("ide-agent" in line for line in processes) == _has_agent(), processes
    assert "using Docker exec" not in cs_server.log()


# --- access through the proxy ------------------------------------------------------------------------------------


def test_the_ide_needs_the_api_token(cs_server: Server, ref: dict[str, str], workspace: dict[str, Any]) -> None:
    url = ide_url(cs_server, ref)
    with httpx.Client(timeout=30) as client:
        assert client.get(url).status_code == 401
        assert client.get(url + "?token=wrong").status_code == 401
        opened = client.get(url + f"?token={TOKEN}")
        assert opened.status_code == 303 and opened.headers["location"].endswith(url.split("/", 3)[3])
        assert TOKEN not in opened.headers["set-cookie"]


def test_login_with_the_workspace_password_shows_the_workbench(
    api: httpx.Client, cs_server: Server, ref: dict[str, str], workspace: dict[str, Any], page: Page
) -> None:
    # A theme set before the IDE is opened is what it opens with (headless Chromium would get a light one).
    _post(api, "vscode-theme", ref, theme=DARK[0])
    url = ide_url(cs_server, ref)
    page.goto(url + f"?token={TOKEN}")
    page.wait_for_selector("input[name=password]")
    assert TOKEN not in page.url and page.url.startswith(url)  # the token is gone from the address bar
    shot(page, "01-login")
    page.fill("input[name=password]", workspace["password"])
    page.press("input[name=password]", "Enter")
    page.wait_for_selector(".monaco-workbench", timeout=90_000)
    # The explorer lists the workspace's files: the remote connection (a websocket through the proxy) works.
    expect(page.locator(".explorer-folders-view")).to_contain_text("hello.py", timeout=60_000)
    wait_theme(page, DARK[1], DARK[2])
    shot(page, "02-workbench")
    assert re.match(rf"{re.escape(url)}\?folder=/workspace$", page.url), page.url


def test_theme_set_through_the_api_is_applied_in_the_workbench(
    api: httpx.Client, ref: dict[str, str], page: Page
) -> None:
    # The editor works: a file opens and its language is known (the built-in extensions are registered).
    page.locator(".explorer-folders-view").get_by_text("hello.py").click()
    expect(page.locator("#status\\.editor\\.mode")).to_contain_text("Python", timeout=60_000)
    for (name, kind, background), step in ((LIGHT, "03-theme-solarized-light"), (DARK, "04-theme-dark-modern")):
        assert theme_state(page) != (kind, background)
        assert _post(api, "vscode-theme", ref, theme=name)["theme"] == name
        # Live, without a reload: the image's settings-sync extension hands the file change to the workbench.
        wait_theme(page, kind, background)
        shot(page, step)
    # The workbench wrote the same value back once; nothing keeps rewriting the file.
    stat = "stat -c %Y.%s ~/.local/share/code-server/User/settings.json"
    first = _post(
        api, "exec", ref, command=f"{stat}; sleep 2; {stat}; cat ~/.local/share/code-server/User/settings.json"
    )
    lines = first["output"].splitlines()
    assert lines[0] == lines[1], first
    assert json.loads("\n".join(lines[2:])) == {"workbench.colorTheme": DARK[0]}


def test_terminal_in_the_workbench_runs_in_the_workspace(api: httpx.Client, ref: dict[str, str], page: Page) -> None:
    page.keyboard.press("Control+Backquote")
    terminal = page.locator(".terminal-wrapper .xterm").first
    terminal.wait_for(timeout=60_000)
    terminal.click()
    # The terminal draws on a canvas, so what it ran is checked by its effect (and seen in the screenshot).
    page.keyboard.type("echo from-$(whoami)-in-$(pwd) | tee typed.txt")
    page.keyboard.press("Enter")
    deadline = time.monotonic() + 30
    while (out := _post(api, "exec", ref, command="cat typed.txt 2>/dev/null")["output"]) == "":
        assert time.monotonic() < deadline, "the command typed into the terminal did not run"
        time.sleep(0.5)
    assert out == "from-coder-in-/workspace\n"
    shot(page, "05-terminal")


def test_reload_needs_neither_token_nor_password(cs_server: Server, ref: dict[str, str], page: Page) -> None:
    page.goto(ide_url(cs_server, ref))
    page.wait_for_selector(".monaco-workbench", timeout=90_000)
    wait_theme(page, DARK[1], DARK[2])  # and the theme is still the one last set


def test_a_browser_without_the_session_is_refused(cs_server: Server, ref: dict[str, str], browser: Browser) -> None:
    other = browser.new_context()
    try:
        tab = other.new_page()
        response = tab.goto(ide_url(cs_server, ref))
        assert response is not None and response.status == 401
        expect(tab.locator("body")).to_contain_text("?token=")
        shot(tab, "06-no-session")
    finally:
        other.close()


def test_the_demo_page_opens_vs_code(
    cs_server: Server, ref: dict[str, str], workspace: dict[str, Any], browser: Browser
) -> None:
    """The demo page's "Open VS Code" button comes alive for an IDE workspace and opens it through the proxy."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = context.new_page()
        page.goto(f"{cs_server.url}/?token={TOKEN}")
        page.fill("#project-id", ref["projectId"])
        page.fill("#workspace-id", ref["workspaceId"])
        page.press("#workspace-id", "Enter")
        button = page.locator("#open-vscode")
        expect(button).to_be_enabled(timeout=30_000)
        with context.expect_page() as opened:
            button.click()
        ide = opened.value
        ide.wait_for_load_state()
        expect(ide.locator("input[type=password]")).to_be_visible(timeout=60_000)
        assert f"/ide/{ref['projectId']}/{ref['workspaceId']}/" in ide.url and "token=" not in ide.url
        shot(ide, "07-opened-from-demo-page")
        expect(page.locator("#note")).to_contain_text("password", timeout=10_000)
    finally:
        context.close()
