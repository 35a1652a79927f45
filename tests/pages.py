"""The demo page in a real Chromium, for the test_page_*.py modules: a tab and the steps tests take on it, the REST
API to set workspaces up and look at what the page did, and the browser itself (the `browser` fixture in conftest.py
uses page_browser). Screenshots go to artifacts/<module>/ (gitignored), so a person can look at what the tests saw."""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, Route, ViewportSize, expect

from .harness import Server
from .helpers import TOKEN, Channel, chromium_browser

REPO = Path(__file__).resolve().parent.parent
WIDE: ViewportSize = {"width": 1280, "height": 800}


@contextlib.contextmanager
def page_browser() -> Iterator[Browser]:
    """Chromium for the page, which needs its front-end packages installed; expect() waits longer than its 5 s."""
    for package in ("@xterm/xterm", "monaco-editor"):
        if not (REPO / "node_modules" / package).is_dir():
            pytest.fail(f"node_modules/{package} is missing: run scripts/frontend.sh to install the page's packages")
    expect.set_options(timeout=15_000)  # a loaded machine is slower than the default
    with chromium_browser() as browser:
        yield browser


class PageTab:
    """One tab on the demo page, what it logged, and the steps the tests take on it."""

    def __init__(self, context: BrowserContext, server: Server, artifacts: Path) -> None:
        self.context = context
        self.page: Page = context.new_page()
        self.server = server
        self.artifacts = artifacts
        self.errors: list[str] = []
        self.console: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on("console", self._on_console)
        self.page.set_default_timeout(30_000)

    def _on_console(self, message: ConsoleMessage) -> None:
        self.console.append(f"{message.type}: {message.text}")

    def open(self, token: str = TOKEN) -> None:
        self.page.goto(f"{self.server.url}/?token={token}")

    def use(self, ref: dict[str, str]) -> None:
        """Type the ids into the top bar and apply them (Enter)."""
        self.page.fill("#project-id", ref["projectId"])
        self.page.fill("#workspace-id", ref["workspaceId"])
        self.page.press("#workspace-id", "Enter")
        self.expect_ref(ref)

    def expect_ref(self, ref: dict[str, str]) -> None:
        expect(self.page.locator("#status-ref")).to_have_text(f"{ref['projectId']} / {ref['workspaceId']}")

    def expect_badge(self, text: str, timeout: float = 60_000) -> None:
        expect(self.page.locator("#status-badge")).to_have_text(text, timeout=timeout)

    def expect_terminal(self, state: str = "bash") -> None:
        expect(self.page.locator("#terminal-state")).to_have_text(state, timeout=30_000)

    def screen(self) -> list[str]:
        """The terminal's rows as xterm.js holds them (window.ide.terminalScreen), trailing blanks cut."""
        rows: list[str] = self.page.evaluate("window.ide.terminalScreen")
        return [row.rstrip() for row in rows]

    def wait_screen(self, pattern: str, timeout: float = 30_000) -> list[str]:
        """Until some row of the terminal matches the regular expression; returns the rows."""
        try:
            self.page.wait_for_function(
                "(p) => window.ide.terminalScreen.some((row) => new RegExp(p).test(row.trimEnd()))",
                arg=pattern,
                timeout=timeout,
            )
        except Exception:
            self.shot("failed-wait-screen")
            raise AssertionError(f"no row of the terminal matches {pattern!r}: {self.screen()}") from None
        return self.screen()

    def type_in_terminal(self, text: str) -> None:
        self.page.click("#terminal .xterm-screen")
        self.page.keyboard.type(text)
        self.page.keyboard.press("Enter")

    def shell_pid(self, marker: str) -> str:
        """Type `echo <marker>=$$` into the terminal; the shell's pid it prints."""
        self.type_in_terminal(f"echo {marker}=$$")
        rows = self.wait_screen(f"^{marker}=\\d+$")
        return next(row.split("=")[1] for row in rows if re.fullmatch(f"{marker}=\\d+", row))

    def row(self, workspace_id: str) -> Any:
        return self.page.locator(f'#workspace-list .ws-row[data-workspace-id="{workspace_id}"]')

    def shot(self, name: str) -> Path:
        self.artifacts.mkdir(parents=True, exist_ok=True)
        path = self.artifacts / f"{name}.png"
        self.page.screenshot(path=str(path), animations="disabled")
        return path

    def check_clean(self, *tokens: str) -> None:
        """No uncaught errors in the page, and no token reached the console."""
        assert not self.errors, f"uncaught errors in the page: {self.errors}"
        for token in (TOKEN, *tokens):
            assert not [line for line in self.console if token in line], "a token was written to the console"


class Rest:
    """The REST API with the operator's token: to set up workspaces, mint tokens and check what the page did."""

    def __init__(self, server: Server) -> None:
        self.client = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120)
        self.made: list[dict[str, str]] = []

    def call(self, endpoint: str, ref: dict[str, str], **body: Any) -> httpx.Response:
        return self.client.post(f"/api/v1/containers/{endpoint}", json={**ref, **body})

    def start(self, ref: dict[str, str], **body: Any) -> dict[str, Any]:
        self.made.append(ref)
        response = self.call("start", ref, **body)
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()["data"]
        return data

    def mint(self, ref: dict[str, str], **body: Any) -> str:
        response = self.client.post("/api/v1/tokens", json={**ref, **body})
        assert response.status_code == 200, response.text
        token: str = response.json()["token"]
        return token

    def clean(self) -> None:
        """Delete every workspace this test started (deleted already is fine)."""
        for ref in self.made:
            self.call("delete", ref)
        self.client.close()


def new_project(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def processes(server: Server, ref: dict[str, str]) -> list[dict[str, Any]]:
    """The workspace's processes, as the websocket lists them."""
    channel = Channel(server)
    try:
        channel.send(type="list", **ref)
        items: list[dict[str, Any]] = channel.wait_for(type="processes")["items"]
        return items
    finally:
        channel.close()


def fetch_outside_chromium(context: BrowserContext) -> None:
    """Load the page's HTTP requests through Playwright's own client rather than Chromium's socket pool.

    When Docker adds or removes an interface (every container start and stop does), Chromium fails every request
    still waiting for one of its 6 connections per host with net::ERR_NETWORK_CHANGED; a page load asks for more at
    once, so a module or an API call is lost now and then while other tests make containers. No switch turns that
    off; fetched by the driver and handed to the page, a request never waits in that queue. The websocket still
    goes through Chromium (the page reconnects it by itself), and so does the document itself: fulfilled by the
    driver, it would have no address, and Chromium would refuse its websocket to 127.0.0.1 as a public page's
    (net::ERR_BLOCKED_BY_LOCAL_NETWORK_ACCESS_CHECKS). A navigation is one request, so it waits in no queue."""

    def handle(route: Route) -> None:
        if route.request.resource_type == "document":
            route.continue_()
        else:
            route.fulfill(response=route.fetch())

    context.route("**/*", handle)


def new_context(browser: Browser) -> BrowserContext:
    """A browser context (own localStorage and sessionStorage; its tabs share them) whose requests cannot be lost."""
    context = browser.new_context(viewport=WIDE)
    fetch_outside_chromium(context)
    return context


def new_tab(
    browser: Browser, server: Server, tabs: list[PageTab], artifacts: Path, context: BrowserContext | None = None
) -> PageTab:
    """A tab in a context of its own, or another tab in `context` (closed with the first tab's context)."""
    tab = PageTab(context or new_context(browser), server, artifacts)
    tabs.append(tab)
    return tab
