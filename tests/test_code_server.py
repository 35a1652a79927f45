"""VS Code in the browser, end to end: a real backend running workspaces from ide-backend/code-server:latest, the
IDE opened through the backend's proxy at /ide/{projectId}/{workspaceId}/ in a real Chromium with one login (the
token; the proxy signs in to code-server itself), a theme set through the API showing up in the workbench, the tab
reloading itself after the workspace is stopped and started, and code-server's password still locking its port.

Skipped (with the reason) when the image is not built: `scripts/build-images.sh --code-server` builds it.
Screenshots of every step go to artifacts/code-server/.
"""

from __future__ import annotations

import contextlib
import html
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
from playwright.sync_api import Error as PlaywrightError
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Origin

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
    assert " --disable-telemetry " in server[0] and " --disable-update-check " in server[0], server[0]
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


def test_telemetry_is_off_in_the_workbench(cs_server: Server, ref: dict[str, str], workspace: dict[str, Any]) -> None:
    """The workbench page's product configuration says telemetry is off (code-server's --disable-telemetry alone
    leaves it on in the browser), and the page carries the proxy's reload script."""
    with httpx.Client(timeout=60, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        page = client.get(ide_url(cs_server, ref) + "?folder=/workspace")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"], page.text[:500]
    found = re.search(r'id="vscode-workbench-web-configuration" data-settings="([^"]*)"', page.text)
    assert found, page.text[:1000]
    product = json.loads(html.unescape(found.group(1)))["productConfiguration"]
    assert product["enableTelemetry"] is False, product
    assert "updateEndpoint" not in product, product
    assert f'src="/ide/{ref["projectId"]}/{ref["workspaceId"]}/__ide-backend/reload.js"' in page.text
    assert "code-server-session" not in page.headers.get("set-cookie", "")


def test_opening_with_the_token_shows_the_workbench_without_a_password(
    api: httpx.Client, cs_server: Server, ref: dict[str, str], workspace: dict[str, Any], page: Page
) -> None:
    # A theme set before the IDE is opened is what it opens with (headless Chromium would get a light one).
    _post(api, "vscode-theme", ref, theme=DARK[0])
    url = ide_url(cs_server, ref)
    forms: list[str] = []
    page.on("framenavigated", lambda frame: forms.append(frame.url) if "/login" in frame.url else None)
    page.goto(url + f"?token={TOKEN}")
    page.wait_for_selector(".monaco-workbench", timeout=90_000)
    assert TOKEN not in page.url and page.url.startswith(url)  # the token is gone from the address bar
    assert page.locator("input[type=password]").count() == 0 and forms == [], forms  # code-server's login never shows
    # code-server's session is the proxy's: the browser never holds it (nor the password it stands for).
    assert [c["name"] for c in page.context.cookies() if c["name"] == "code-server-session"] == []
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
    # The terminal draws on a canvas, so what it ran is checked by its effect (and seen in the screenshot).
    # Keys typed before the workbench has connected the terminal to its shell are dropped (seen once in CI on a
    # loaded machine): the line is typed again, into a focused terminal, until one of the attempts has run.
    out = ""
    for _attempt in range(4):
        terminal.click()
        expect(page.locator(".terminal-wrapper textarea.xterm-helper-textarea").first).to_be_focused()
        page.keyboard.type("echo from-$(whoami)-in-$(pwd) | tee typed.txt")
        page.keyboard.press("Enter")
        deadline = time.monotonic() + 15
        while (out := _post(api, "exec", ref, command="cat typed.txt 2>/dev/null")["output"]) == "":
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
        if out:
            break
    assert out == "from-coder-in-/workspace\n", "the command typed into the terminal did not run"
    shot(page, "05-terminal")


def test_reload_needs_neither_token_nor_password(cs_server: Server, ref: dict[str, str], page: Page) -> None:
    page.goto(ide_url(cs_server, ref))
    page.wait_for_selector(".monaco-workbench", timeout=90_000)
    wait_theme(page, DARK[1], DARK[2])  # and the theme is still the one last set
    # code-server's own login and logout pages are not shown through the proxy: both lead back to the workbench.
    for own in ("login", "logout"):
        answer = page.request.get(ide_url(cs_server, ref) + own, max_redirects=0)
        back = f"/ide/{ref['projectId']}/{ref['workspaceId']}/"
        assert (answer.status, answer.headers.get("location")) == (303, back), (own, answer.headers)


def _still_the_old_page(page: Page) -> bool:
    try:
        return bool(page.evaluate("() => window.__beforeRestart === true"))
    except PlaywrightError:  # asked while the tab was navigating: it is reloading
        return True


def test_the_tab_reloads_itself_after_a_stop_and_start(
    api: httpx.Client, cs_server: Server, ref: dict[str, str], page: Page
) -> None:
    """The workspace is stopped and started through the API while VS Code is open: a new code-server process that
    knows nothing of this window. The same tab shows a working workbench again with no manual step."""
    expect(page.locator(".explorer-folders-view")).to_contain_text("hello.py", timeout=60_000)
    before = _post(api, "status", ref)["data"]
    page.evaluate("() => { window.__beforeRestart = true; }")  # gone once the tab has reloaded
    shot(page, "08-before-restart")
    _post(api, "stop", ref)
    # For the screenshot only: a moment for VS Code to notice the lost connection (it retries quietly meanwhile,
    # and says "cannot reconnect, reload the window" only once a new code-server refuses it).
    with contextlib.suppress(PlaywrightError):
        page.wait_for_selector(".monaco-dialog-box", timeout=8_000)
    shot(page, "09-stopped")
    _post(api, "start", ref)
    deadline = time.monotonic() + 120
    while _still_the_old_page(page):
        if time.monotonic() > deadline:
            shot(page, "failed-no-reload")
            pytest.fail("the VS Code tab did not reload itself after the workspace was started again")
        page.wait_for_timeout(500)
    page.wait_for_selector(".monaco-workbench", timeout=90_000)
    # A working workbench: the explorer lists the files over the new code-server's remote connection.
    expect(page.locator(".explorer-folders-view")).to_contain_text("hello.py", timeout=90_000)
    after = _post(api, "status", ref)["data"]
    assert after["startedAt"] != before["startedAt"]
    assert page.locator("input[type=password]").count() == 0
    page.locator(".explorer-folders-view").get_by_text("hello.py").click()
    expect(page.locator("#status\\.editor\\.mode")).to_contain_text("Python", timeout=60_000)
    shot(page, "10-after-restart")


def test_the_password_still_locks_code_servers_port(
    api: httpx.Client, cs_server: Server, ref: dict[str, str], page: Page
) -> None:
    """Straight to the container's published port, without the proxy: code-server asks for its password, takes no
    websocket, and a wrong password does not let anyone in."""
    data = _post(api, "status", ref)["data"]
    direct = f"http://127.0.0.1:{data['ports']['8080']}"
    with httpx.Client(timeout=30) as client:
        root = client.get(direct + "/?folder=/workspace")
        assert root.status_code == 302 and root.headers["location"].startswith("./login"), root.headers
        login = client.get(direct + "/login")
        assert login.status_code == 200 and 'name="password"' in login.text
        wrong = client.post(direct + "/login", data={"password": "not-" + data["password"]})
        assert wrong.status_code == 200 and "code-server-session" not in wrong.headers.get("set-cookie", "")
        assert client.get(direct + "/?folder=/workspace").status_code == 302
    with pytest.raises(InvalidStatus) as refused:
        connect(
            f"ws://127.0.0.1:{data['ports']['8080']}/?reconnectionToken=x", origin=Origin(direct), open_timeout=30
        ).close()
    assert refused.value.response.status_code == 401
    # ...while through the proxy the same tab still works (the wrong password did not lock the backend out).
    page.reload()
    expect(page.locator(".explorer-folders-view")).to_contain_text("hello.py", timeout=90_000)


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
    api: httpx.Client, cs_server: Server, ref: dict[str, str], workspace: dict[str, Any], browser: Browser
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
        ide.wait_for_selector(".monaco-workbench", timeout=90_000)
        expect(ide.locator(".explorer-folders-view")).to_contain_text("hello.py", timeout=60_000)
        assert ide.locator("input[type=password]").count() == 0
        assert f"/ide/{ref['projectId']}/{ref['workspaceId']}/" in ide.url and "token=" not in ide.url
        shot(ide, "07-opened-from-demo-page")
        expect(page.locator("#note")).to_contain_text("VS Code", timeout=10_000)
        password = _post(api, "status", ref)["data"]["password"]
        assert password not in page.locator("body").inner_text()  # the page no longer shows the password
    finally:
        context.close()
