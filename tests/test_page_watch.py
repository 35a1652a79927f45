"""The demo page follows the workspace's file changes live (a `watch` on the live channel): the tree gains, renames
and loses rows as files are made in the page's terminal or by an exec, without listing again; an open file without
unsaved changes reloads by itself, one with them shows a bar saying so, and the page's own saves are not news to it.
A real Chromium (Python Playwright) on a real server and a real engine.

Screenshots go to artifacts/page-watch/ (gitignored), so a person can look at what the tests saw.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, Request, ViewportSize, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from .harness import Server
from .helpers import TOKEN, chromium_browser

pytestmark = [pytest.mark.docker, pytest.mark.browser]

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "artifacts" / "page-watch"
WIDE: ViewportSize = {"width": 1280, "height": 800}


class Rest:
    """The REST API with the operator's token: to set files up and change them behind the page's back."""

    def __init__(self, server: Server) -> None:
        self.client = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120)
        self.made: list[dict[str, str]] = []

    def post(self, endpoint: str, ref: dict[str, str], **body: Any) -> dict[str, Any]:
        response = self.client.post(f"/api/v1/containers/{endpoint}", json={**ref, **body})
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    def run(self, ref: dict[str, str], command: str) -> None:
        """What a terminal in the workspace would do."""
        assert self.post("exec", ref, command=command)["exitCode"] == 0

    def clean(self) -> None:
        for ref in self.made:
            self.client.post("/api/v1/containers/delete", json=ref)
        self.client.close()


class Tab:
    """The demo page in a context of its own, what it logged, and the files/list calls it made."""

    def __init__(self, browser: Browser, server: Server) -> None:
        self.context = browser.new_context(viewport=WIDE)
        self.page: Page = self.context.new_page()
        self.server = server
        self.errors: list[str] = []
        self.console: list[str] = []
        self.lists: list[str] = []  # the folders listed (files/list), in order
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on("console", lambda message: self.console.append(message.text))
        self.page.on("request", self._request)
        self.page.set_default_timeout(30_000)

    def _request(self, request: Request) -> None:
        if request.url.endswith("/api/v1/containers/files/list"):
            self.lists.append(str((request.post_data_json or {}).get("path")))

    def open(self, ref: dict[str, str]) -> None:
        for attempt in range(3):
            self.page.goto(f"{self.server.url}/?token={TOKEN}")
            try:
                self.page.wait_for_function("document.getElementById('status-ref').textContent !== ''", timeout=20_000)
                break
            except PlaywrightTimeout:
                # Chromium drops requests when the host's network interfaces change (a container starting).
                if attempt == 2 or not any("ERR_NETWORK_CHANGED" in line for line in self.console):
                    raise AssertionError(f"the page did not start: {self.errors} {self.console}") from None
        self.page.fill("#project-id", ref["projectId"])
        self.page.fill("#workspace-id", ref["workspaceId"])
        self.page.press("#workspace-id", "Enter")
        expect(self.page.locator("#status-ref")).to_have_text(f"{ref['projectId']} / {ref['workspaceId']}")
        expect(self.page.locator("#status-badge")).to_have_text("running", timeout=60_000)
        self.page.wait_for_function("window.ide.editorReady")

    def row(self, path: str) -> Any:
        return self.page.locator(f'#tree .row[data-path="{path}"]')

    def text(self, path: str) -> str:
        value: str = self.page.evaluate(
            "(path) => monaco.editor.getModel(monaco.Uri.from({scheme: 'workspace', path: '/' + path})).getValue()",
            path,
        )
        return value

    def expect_text(self, path: str, text: str) -> None:
        self.page.wait_for_function(
            "([path, text]) => monaco.editor.getModel(monaco.Uri.from({scheme: 'workspace', path: '/' + path}))"
            ".getValue() === text",
            arg=[path, text],
        )

    def type_in_terminal(self, text: str) -> None:
        expect(self.page.locator("#terminal-state")).to_have_text("bash", timeout=30_000)
        self.page.click("#terminal .xterm-screen")
        self.page.keyboard.type(text)
        self.page.keyboard.press("Enter")

    def type_at_end(self, text: str) -> None:
        self.page.click("#editor .view-lines")
        self.page.keyboard.press("Control+End")
        self.page.keyboard.type(text)

    def shot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), animations="disabled")
        return path

    def check_clean(self) -> None:
        assert not self.errors, f"uncaught errors in the page: {self.errors}"
        errors = self.page.locator(".toast.error").all_inner_texts()
        assert not errors, f"errors shown: {errors}"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    for package in ("@xterm/xterm", "monaco-editor"):
        if not (REPO / "node_modules" / package).is_dir():
            pytest.fail(f"node_modules/{package} is missing: run scripts/frontend.sh to install the page's packages")
    expect.set_options(timeout=15_000)  # a loaded machine is slower than the 5 s default
    with chromium_browser() as b:
        yield b


@pytest.fixture(scope="module")
def rest(server: Server) -> Iterator[Rest]:
    api = Rest(server)
    yield api
    api.clean()


@pytest.fixture
def running(rest: Rest) -> dict[str, str]:
    ref = {"projectId": "watch-" + uuid.uuid4().hex[:6], "workspaceId": "ws-" + uuid.uuid4().hex[:6]}
    rest.made.append(ref)
    rest.post("start", ref, files={"readme.md": "# hello\n", "src/main.py": "print(1)\n"})
    return ref


@pytest.fixture
def tab(browser: Browser, server: Server) -> Iterator[Tab]:
    opened = Tab(browser, server)
    yield opened
    opened.context.close()


def test_the_tree_follows_files_made_in_the_terminal(tab: Tab, rest: Rest, running: dict[str, str]) -> None:
    tab.open(running)
    expect(tab.row("readme.md")).to_be_visible()
    tab.row("src").click()
    expect(tab.row("src/main.py")).to_be_visible()
    listed = len(tab.lists)

    began = time.monotonic()
    tab.type_in_terminal("echo made > from-terminal.txt")
    expect(tab.row("from-terminal.txt")).to_be_visible(timeout=5_000)
    print(f"a file made in the terminal showed in the tree after {time.monotonic() - began:.2f} s (typing included)")
    tab.shot("01-made-in-terminal")

    # Renamed, deleted, made in an open folder, a folder made: each shows as it happens.
    rest.run(running, "mv from-terminal.txt renamed.txt")
    expect(tab.row("renamed.txt")).to_be_visible()
    expect(tab.row("from-terminal.txt")).to_have_count(0)
    rest.run(running, "echo 2 > src/second.py && mkdir -p docs/deep && echo x > docs/deep/a.md")
    expect(tab.row("src/second.py")).to_be_visible()
    expect(tab.row("docs")).to_have_attribute("data-type", "dir")
    rest.run(running, "rm renamed.txt src/main.py")
    expect(tab.row("renamed.txt")).to_have_count(0)
    expect(tab.row("src/main.py")).to_have_count(0)
    assert len(tab.lists) == listed, f"the tree was listed again: {tab.lists[listed:]}"
    # A folder made while open lists what is in it; that is the only listing.
    tab.row("docs").click()
    expect(tab.row("docs/deep")).to_be_visible()
    tab.shot("02-followed")
    tab.check_clean()


def test_an_open_file_reloads_or_says_it_changed(tab: Tab, rest: Rest, running: dict[str, str]) -> None:
    page = tab.page
    path = "readme.md"
    tab.open(running)
    tab.row(path).click()
    expect(page.locator("#editor-title")).to_have_attribute("data-path", path)

    # Unmodified: it reloads by itself, with no bar.
    rest.run(running, "echo 'line from the terminal' >> readme.md")
    tab.expect_text(path, "# hello\nline from the terminal\n")
    expect(page.locator(".disk-bar")).to_be_hidden()
    expect(page.locator(f'#editor-tabs .tab[data-path="{path}"]')).to_have_attribute("data-dirty", "false")

    # Modified: the editor keeps its text and a bar says the file changed.
    tab.type_at_end("typed here")
    rest.run(running, "echo 'another line' >> readme.md")
    bar = page.locator(".disk-bar")
    expect(bar).to_be_visible()
    expect(bar).to_contain_text("readme.md changed in the workspace")
    assert tab.text(path).endswith("typed here")
    tab.shot("03-changed-bar")
    bar.locator('[data-action="reload"]').click()
    tab.expect_text(path, "# hello\nline from the terminal\nanother line\n")
    expect(bar).to_be_hidden()

    # Its own save is no news: no bar, no reload, even once the change it made came back over the watch.
    tab.type_at_end("saved by me")
    page.keyboard.press("Control+s")
    expect(page.locator("#note")).to_have_text(f"Saved {path}")
    rest.run(running, "echo later > later.txt")
    expect(tab.row("later.txt")).to_be_visible()  # a change after the save's: the save's echo came before it
    expect(bar).to_be_hidden()
    assert tab.text(path).endswith("saved by me")

    # Deleted while open: the bar says so and offers to close it.
    rest.run(running, "rm readme.md")
    expect(bar).to_contain_text("readme.md was deleted in the workspace")
    tab.shot("04-deleted-bar")
    bar.locator('[data-action="close"]').click()
    expect(page.locator("#editor-title")).to_be_hidden()
    tab.check_clean()
