"""The demo page's template picker: the server's templates in the top bar, a workspace started from the one picked,
its template shown again after a reload and in the workspace list, another one picked re-creating the container with
the files kept, and a read-only token seeing the workspace's template only. A real Chromium (Python Playwright) on a
real server and a real engine, with the built-in templates' images (scripts/build-images.sh).

Screenshots go to artifacts/page-templates/ (gitignored), so a person can look at what the tests saw.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, ViewportSize, expect

from .harness import Server
from .helpers import TOKEN

pytestmark = [pytest.mark.docker, pytest.mark.browser]

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "artifacts" / "page-templates"
WIDE: ViewportSize = {"width": 1280, "height": 800}
NARROW: ViewportSize = {"width": 420, "height": 800}
BUILT_IN = ["base", "python", "node", "vscode"]


class Tab:
    """One tab on the demo page (a context of its own: own sessionStorage and localStorage) and what it logged."""

    def __init__(self, browser: Browser, server: Server, viewport: ViewportSize = WIDE) -> None:
        self.context: BrowserContext = browser.new_context(viewport=viewport)
        self.page: Page = self.context.new_page()
        self.server = server
        self.errors: list[str] = []
        self.console: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on("console", lambda message: self.console.append(message.text))
        self.page.set_default_timeout(30_000)

    def open(self, ref: dict[str, str], token: str = TOKEN) -> None:
        """Open the page and the workspace (typed into the top bar, where the token allows)."""
        self.page.goto(f"{self.server.url}/?token={token}")
        if self.page.locator("#workspace-id").is_editable():
            self.page.fill("#project-id", ref["projectId"])
            self.page.fill("#workspace-id", ref["workspaceId"])
            self.page.press("#workspace-id", "Enter")
        self.expect_ref(ref)

    def expect_ref(self, ref: dict[str, str]) -> None:
        expect(self.page.locator("#status-ref")).to_have_text(f"{ref['projectId']} / {ref['workspaceId']}")

    def expect_badge(self, text: str, timeout: float = 60_000) -> None:
        expect(self.page.locator("#status-badge")).to_have_text(text, timeout=timeout)

    def run(self, command: str) -> None:
        """Run a command in the run box; it must exit 0."""
        self.page.fill("#run-command", command)
        self.page.click("#run")
        expect(self.page.locator("#run-exit")).to_have_text("exit 0")

    def row(self, workspace_id: str) -> Any:
        return self.page.locator(f'#workspace-list .ws-row[data-workspace-id="{workspace_id}"]')

    def options(self) -> list[str]:
        values: list[str] = self.page.eval_on_selector_all("#template option", "os => os.map((o) => o.value)")
        return values

    def shot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), animations="disabled")
        return path

    def check_clean(self, *tokens: str) -> None:
        """No uncaught errors in the page, and no token reached the console."""
        assert not self.errors, f"uncaught errors in the page: {self.errors}"
        for token in (TOKEN, *tokens):
            assert not [line for line in self.console if token in line], "a token was written to the console"


class Rest:
    """The REST API with the operator's token: to look at what the page did, mint tokens and clean up."""

    def __init__(self, server: Server) -> None:
        self.client = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120)
        self.made: list[dict[str, str]] = []

    def post(self, endpoint: str, ref: dict[str, str], **body: Any) -> dict[str, Any]:
        response = self.client.post(f"/api/v1/containers/{endpoint}", json={**ref, **body})
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    def templates(self) -> dict[str, Any]:
        response = self.client.get("/api/v1/templates")
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    def mint(self, ref: dict[str, str], **body: Any) -> str:
        response = self.client.post("/api/v1/tokens", json={**ref, **body})
        assert response.status_code == 200, response.text
        token: str = response.json()["token"]
        return token

    def clean(self) -> None:
        for ref in self.made:
            self.client.post("/api/v1/containers/delete", json=ref)
        self.client.close()


@pytest.fixture
def rest(server: Server) -> Iterator[Rest]:
    api = Rest(server)
    yield api
    api.clean()


@pytest.fixture
def tabs(browser: Browser, server: Server) -> Iterator[list[Tab]]:
    """Tabs the test opens; each closed afterwards."""
    opened: list[Tab] = []
    yield opened
    for tab in opened:
        tab.context.close()


def new_ref(workspace_id: str) -> dict[str, str]:
    return {"projectId": "tpl-" + uuid.uuid4().hex[:6], "workspaceId": workspace_id}


def test_a_workspace_started_from_the_picked_template_keeps_it(
    browser: Browser, server: Server, rest: Rest, tabs: list[Tab]
) -> None:
    known = rest.templates()
    assert [t["name"] for t in known["data"]] == BUILT_IN, "the server is not on the built-in templates"
    ref = new_ref("py")
    rest.made.append(ref)
    tab = Tab(browser, server)
    tabs.append(tab)
    page = tab.page
    tab.open(ref)
    tab.expect_badge("not started")

    # The server's templates, each with its description; the server's default picked for a new workspace.
    picker = page.locator("#template")
    expect(picker).to_be_enabled()
    expect(picker).to_have_value(known["default"])
    assert tab.options() == BUILT_IN
    expect(page.locator('#template option[value="python"]')).to_contain_text("Python 3 with pip")
    expect(page.locator("#start-label")).to_have_text("Start")
    page.click("#template")  # opened, for the screenshot
    expect(page.locator('#template option[value="vscode"]')).to_be_visible()
    tab.shot("01-picker-open")
    page.keyboard.press("Escape")

    page.select_option("#template", "python")
    expect(page.locator("#start")).to_have_attribute("title", "Start a new workspace from the python template")
    page.click("#start")
    tab.expect_badge("running")
    status = rest.post("status", ref)["data"]
    assert status["template"] == "python" and status["image"] == "ide-backend/python:latest", status

    tab.run("python3 -c 'print(6*7)'")
    expect(page.locator("#run-stdout")).to_have_text("42\n")
    expect(tab.row("py")).to_have_attribute("data-template", "python")
    expect(tab.row("py").locator(".ws-template")).to_have_text("python")
    expect(page.locator("#terminal-state")).to_have_text("bash", timeout=30_000)
    tab.shot("02-python-running")

    # A reload shows the workspace's own template, whatever the default.
    page.reload()
    tab.expect_ref(ref)
    tab.expect_badge("running")
    expect(picker).to_have_value("python")
    expect(page.locator("#start")).to_be_disabled()
    expect(page.locator("#start-label")).to_have_text("Start")

    # Another template for the running workspace: Start says it re-creates the container, files kept.
    rest.post("sync", ref, files={"hello.js": "console.log(6 * 7)\n"})
    page.select_option("#template", "node")
    expect(page.locator("#start")).to_be_enabled()
    expect(page.locator("#start-label")).to_have_text("Restart as node")
    expect(page.locator("#start")).to_have_attribute("title", re.compile("the files in /workspace are kept"))
    tab.shot("03-restart-as-node")
    page.select_option("#template", "python")  # back to its own: nothing to do
    expect(page.locator("#start-label")).to_have_text("Start")
    expect(page.locator("#start")).to_be_disabled()

    page.select_option("#template", "node")
    page.click("#start")
    expect(page.locator("#note")).to_have_text("Workspace re-created from the node template, files kept")
    tab.expect_badge("running")
    expect(page.locator("#start-label")).to_have_text("Start")
    expect(picker).to_have_value("node")
    assert rest.post("status", ref)["data"]["template"] == "node"
    tab.run("node hello.js")
    expect(page.locator("#run-stdout")).to_have_text("42\n")
    expect(tab.row("py")).to_have_attribute("data-template", "node")
    expect(page.locator("#terminal-state")).to_have_text("bash", timeout=30_000)  # a new shell in the new container
    expect(page.locator('#tree .row[data-path="hello.js"]')).to_be_visible()
    tab.shot("04-restarted-as-node")
    tab.check_clean()

    # A narrow window: the picker takes a row of its own, and nothing reaches past the right edge.
    narrow = Tab(browser, server, NARROW)
    tabs.append(narrow)
    narrow.open(ref)
    narrow.expect_badge("running")
    expect(narrow.page.locator("#template")).to_have_value("node")
    box = narrow.page.locator("#template").bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= NARROW["width"], box
    wide = narrow.page.evaluate(
        """() => [...document.querySelectorAll('header *, #workspace-list *')]
             .filter((el) => el.getClientRects().length && el.getBoundingClientRect().right > innerWidth + 0.5)
             .map((el) => el.id || el.className || el.tagName)"""
    )
    assert wide == [], f"elements reach past the right edge: {wide}"
    narrow.shot("05-narrow")
    narrow.check_clean()


def test_a_read_only_token_sees_the_workspaces_template_only(
    browser: Browser, server: Server, rest: Rest, tabs: list[Tab]
) -> None:
    ref = new_ref("viewed")
    rest.made.append(ref)
    rest.post("start", ref, template="python")
    read_only = rest.mint(ref, scopes=["read"])
    viewer = Tab(browser, server)
    tabs.append(viewer)
    viewer.open(ref, token=read_only)
    viewer.expect_badge("running")
    picker = viewer.page.locator("#template")
    expect(picker).to_have_value("python")
    expect(picker).to_be_disabled()
    expect(picker).to_have_attribute("title", re.compile("This token may only read"))
    expect(viewer.page.locator("#start")).to_be_hidden()
    expect(viewer.row("viewed").locator(".ws-template")).to_have_text("python")
    viewer.shot("06-read-only")
    viewer.check_clean(read_only)

    # A token that may write this workspace picks like the operator's.
    writer_token = rest.mint(ref)
    writer = Tab(browser, server)
    tabs.append(writer)
    writer.open(ref, token=writer_token)
    writer.expect_badge("running")
    expect(writer.page.locator("#template")).to_be_enabled()
    expect(writer.page.locator("#template")).to_have_value("python")
    assert writer.options() == BUILT_IN
    writer.page.select_option("#template", "base")
    expect(writer.page.locator("#start-label")).to_have_text("Restart as base")
    writer.check_clean(writer_token)
