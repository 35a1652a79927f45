"""The bundled demo page, end to end: a real Chromium (Python Playwright) on the real server and a real engine.

Screenshots of every step go to artifacts/page/ (gitignored), so a person can look at what the tests saw.
"""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Playwright,
    ViewportSize,
    expect,
    sync_playwright,
)

from .harness import Server
from .helpers import CHROMIUM, CHROMIUM_ARGS, TOKEN

pytestmark = [pytest.mark.docker, pytest.mark.browser]

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "artifacts" / "page"
WIDE: ViewportSize = {"width": 1280, "height": 800}
NARROW: ViewportSize = {"width": 420, "height": 800}
SETTINGS = "~/.local/share/code-server/User/settings.json"


def new_ref() -> dict[str, str]:
    return {"projectId": "page-" + uuid.uuid4().hex[:6], "workspaceId": "ws-" + uuid.uuid4().hex[:6]}


class IdePage:
    """One browser tab on the demo page, with what it logged and the steps the tests take on it."""

    def __init__(self, page: Page, server: Server) -> None:
        self.page = page
        self.server = server
        self.console: list[str] = []
        self.errors: list[str] = []
        page.on("console", self._on_console)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.set_default_timeout(30_000)

    def _on_console(self, message: ConsoleMessage) -> None:
        self.console.append(f"{message.type}: {message.text}")

    # --- steps -----------------------------------------------------------------------------------------------

    def open(self, token: str | None = TOKEN) -> None:
        url = self.server.url + "/" + (f"?token={token}" if token is not None else "")
        self.page.goto(url)

    def use(self, ref: dict[str, str]) -> None:
        """Type the ids into the top bar and apply them (Enter)."""
        self.page.fill("#project-id", ref["projectId"])
        self.page.fill("#workspace-id", ref["workspaceId"])
        self.page.press("#workspace-id", "Enter")
        expect(self.page.locator("#status-ref")).to_have_text(f"{ref['projectId']} / {ref['workspaceId']}")

    def expect_badge(self, text: str, timeout: float = 60_000) -> None:
        expect(self.page.locator("#status-badge")).to_have_text(text, timeout=timeout)

    def start(self, ref: dict[str, str]) -> None:
        self.use(ref)
        self.expect_badge("not started")
        self.page.click("#start")
        self.expect_badge("running")

    def open_file(self, path: str) -> None:
        """Refresh the tree, open every folder on the way by clicking it, click the file, and see it in the editor."""
        self.page.click("#refresh")
        parts = path.split("/")
        for depth in range(1, len(parts) + 1):
            self.page.click(f'#tree .row[data-path="{"/".join(parts[:depth])}"]')
        expect(self.page.locator("#editor-title")).to_have_attribute("data-path", path)

    def wait_terminal_prompt(self) -> None:
        # xterm.js does not render rows that are scrolled out of view (as on a narrow window), so look at it first.
        self.page.locator("#terminal").scroll_into_view_if_needed()
        expect(self.page.locator("#terminal-state")).to_have_text("bash", timeout=30_000)
        self.page.wait_for_function("() => /\\$\\s*$/m.test(document.querySelector('#terminal .xterm-rows').innerText)")

    def terminal_lines(self) -> list[str]:
        text: str = self.page.locator("#terminal .xterm-rows").inner_text()
        return [line.replace("\xa0", " ").rstrip() for line in text.splitlines()]

    def wait_terminal_line(self, line: str, timeout: float = 30_000) -> None:
        self.page.wait_for_function(
            """(line) => [...document.querySelectorAll('#terminal .xterm-rows > div')]
                 .some((row) => row.textContent.replace(/\\u00a0/g, ' ').trim() === line)""",
            arg=line,
            timeout=timeout,
        )

    def type_in_terminal(self, text: str) -> None:
        self.page.click("#terminal .xterm-screen")
        self.page.keyboard.type(text)
        self.page.keyboard.press("Enter")

    def shot(self, name: str, *, full_page: bool = False) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=full_page, animations="disabled")
        return path

    def check_clean(self) -> None:
        """No uncaught errors in the page, and the token never reached the console."""
        assert not self.errors, f"uncaught errors in the page: {self.errors}"
        assert not [line for line in self.console if TOKEN in line], "the token was written to the console"


class Api:
    """The REST API with the token, to check what the page did."""

    def __init__(self, server: Server, ref: dict[str, str]) -> None:
        self.client = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120.0)
        self.ref = ref

    def post(self, endpoint: str, **body: Any) -> dict[str, Any]:
        response = self.client.post(f"/api/v1/containers/{endpoint}", json={**self.ref, **body})
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    def run(self, command: str) -> dict[str, Any]:
        return self.post("exec", command=command)

    def close(self) -> None:
        self.client.close()


# --- fixtures ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    if not (REPO / "node_modules" / "@xterm" / "xterm").is_dir():
        pytest.fail("node_modules/@xterm/xterm is missing: run scripts/frontend.sh to install the page's packages")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y --no-install-recommends chromium")
    expect.set_options(timeout=15_000)  # a loaded machine (the whole suite, two cores) is slower than 5 s default
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


def _tab(browser: Browser, server: Server, viewport: ViewportSize) -> tuple[IdePage, BrowserContext]:
    context = browser.new_context(viewport=viewport)
    return IdePage(context.new_page(), server), context


@pytest.fixture
def tab(browser: Browser, server: Server) -> Iterator[IdePage]:
    """A fresh tab (own sessionStorage and localStorage) at 1280x800."""
    ide, context = _tab(browser, server, WIDE)
    yield ide
    context.close()


@pytest.fixture(scope="module")
def workspace_ref() -> dict[str, str]:
    return new_ref()


@pytest.fixture(scope="module")
def ide(browser: Browser, server: Server, workspace_ref: dict[str, str]) -> Iterator[IdePage]:
    """One tab with a started workspace, shared by the steps below (each step leaves it running)."""
    ide, context = _tab(browser, server, WIDE)
    ide.open()
    ide.start(workspace_ref)
    ide.wait_terminal_prompt()
    ide.page.wait_for_function("window.ide.editorReady")
    yield ide
    context.close()


@pytest.fixture
def rest(server: Server, workspace_ref: dict[str, str]) -> Iterator[Api]:
    api = Api(server, workspace_ref)
    yield api
    api.close()


# --- the steps ---------------------------------------------------------------------------------------------------


def test_start_and_stop_drive_the_status_badge(tab: IdePage, server: Server) -> None:
    ref = new_ref()
    tab.open()
    assert "token" not in tab.page.url, "the token stays in the address bar"
    tab.use(ref)
    tab.expect_badge("not started")
    expect(tab.page.locator("#conn")).to_have_attribute("data-state", "open")
    expect(tab.page.locator("#open-vscode")).to_be_disabled()
    expect(tab.page.locator("#open-vscode")).to_have_attribute("title", "needs the code-server image")
    tab.shot("01-not-started")

    tab.page.click("#start")
    tab.expect_badge("running")
    expect(tab.page.locator("#stop")).to_be_enabled()
    expect(tab.page.locator("#start")).to_be_disabled()
    tab.wait_terminal_prompt()
    tab.shot("02-running")

    tab.page.click("#stop")
    tab.expect_badge("exited", timeout=30_000)
    expect(tab.page.locator("#start")).to_be_enabled()
    expect(tab.page.locator("#terminal-state")).to_have_text("exited")
    tab.shot("03-stopped")
    api = Api(server, ref)
    try:
        assert api.post("status")["data"]["running"] is False
    finally:
        api.close()
    tab.check_clean()


def test_new_file_typed_and_saved_lands_in_the_workspace(ide: IdePage, rest: Api) -> None:
    page = ide.page
    page.click("#new-file")
    page.fill("#new-file-path", "notes/hello.txt")
    page.press("#new-file-path", "Enter")
    expect(page.locator("#editor-title")).to_have_attribute("data-path", "notes/hello.txt")
    expect(page.locator('#tree .row[data-path="notes/hello.txt"]')).to_be_visible()

    page.click("#editor .view-lines")
    page.keyboard.type("Hello from the page")
    page.keyboard.press("Enter")
    page.keyboard.type("second line")
    expect(page.locator("#editor-title")).to_have_attribute("data-dirty", "true")
    page.keyboard.press("Control+s")
    expect(page.locator("#editor-title")).to_have_attribute("data-dirty", "false")
    expect(page.locator("#note")).to_have_text("Saved notes/hello.txt")
    expect(page.locator('#tree .row[data-path="notes"]')).to_have_attribute("aria-expanded", "true")
    expect(page.locator('#tree .row[data-path="notes/hello.txt"]')).to_have_class(re.compile(r"\bactive\b"))
    ide.shot("04-file-saved")

    answer = rest.run("cat notes/hello.txt")
    assert answer["exitCode"] == 0, answer
    assert answer["output"] == "Hello from the page\nsecond line"
    ide.check_clean()


def test_a_file_written_elsewhere_opens_edits_and_saves_with_the_button(ide: IdePage, rest: Api) -> None:
    page = ide.page
    rest.post("sync", files={"src/app.py": "def main():\n    return 42\n"})
    ide.open_file("src/app.py")
    expect(page.locator("#editor .view-lines")).to_contain_text("return 42")
    expect(page.locator("#language")).to_have_text("Python")

    page.click("#editor .view-lines")
    page.keyboard.press("Control+End")
    page.keyboard.type("print(main())")
    page.click("#save")
    expect(page.locator("#editor-title")).to_have_attribute("data-dirty", "false")
    ide.shot("05-file-opened-and-saved")
    assert rest.run("python3 src/app.py || cat src/app.py")["output"].endswith("print(main())")
    ide.check_clean()


def test_delete_removes_the_file_from_workspace_and_tree(ide: IdePage, rest: Api) -> None:
    page = ide.page
    rest.post("sync", files={"trash/old.txt": "bye"})
    ide.open_file("trash/old.txt")
    page.click("#delete")
    expect(page.locator("#confirm-dialog")).to_be_visible()
    ide.shot("06-delete-confirm")
    page.click("#confirm-ok")
    expect(page.locator('#tree .row[data-path="trash/old.txt"]')).to_have_count(0)
    expect(page.locator("#editor-title")).not_to_have_attribute("data-path", "trash/old.txt")
    assert rest.run("test -e trash/old.txt")["exitCode"] == 1
    ide.check_clean()


def test_terminal_runs_what_is_typed(ide: IdePage) -> None:
    ide.type_in_terminal("echo hello")
    ide.wait_terminal_line("hello")
    ide.shot("07-terminal-hello")
    ide.check_clean()


def test_terminal_follows_the_window_size(ide: IdePage) -> None:
    page = ide.page
    before = page.evaluate("window.ide.terminalSize")
    page.set_viewport_size({"width": 1100, "height": 700})
    try:
        page.wait_for_function("(b) => window.ide.terminalSize.cols !== b.cols", arg=before)
        size = page.evaluate("window.ide.terminalSize")
        ide.type_in_terminal("stty size")
        ide.wait_terminal_line(f"{size['rows']} {size['cols']}")
    finally:
        page.set_viewport_size(WIDE)
    page.wait_for_function("(b) => window.ide.terminalSize.cols === b.cols", arg=before)
    ide.check_clean()


def test_terminal_survives_a_dropped_websocket_without_losing_or_repeating_output(ide: IdePage) -> None:
    page = ide.page
    connects = page.evaluate("window.ide.connects")
    # Output written while the socket is down must arrive once after the reconnect (attach with the last seq).
    ide.type_in_terminal("sleep 1; echo after-$((40 + 2))")
    page.wait_for_function("() => document.querySelector('#terminal .xterm-rows').innerText.includes('sleep 1;')")
    page.evaluate("window.ide.drop()")
    page.wait_for_function("(n) => window.ide.connects > n", arg=connects, timeout=20_000)
    ide.wait_terminal_line("after-42")
    expect(page.locator("#terminal-state")).to_have_text("bash")
    expect(page.locator("#conn")).to_have_attribute("data-state", "open")
    ide.type_in_terminal("echo still-$((1 + 1))")
    ide.wait_terminal_line("still-2")
    lines = ide.terminal_lines()
    assert lines.count("after-42") == 1, lines
    assert sum("sleep 1; echo after-" in line for line in lines) == 1, lines
    ide.shot("08-terminal-after-reconnect")
    ide.check_clean()


LIVE_CHANNEL_SCRIPT = """
async () => {
  const { LiveChannel } = await import("/static/live.js");
  const sockets = [];
  class FakeSocket {
    static CONNECTING = 0; static OPEN = 1; static CLOSING = 2; static CLOSED = 3;
    constructor(url) {
      this.url = url; this.readyState = 0; this.sent = []; sockets.push(this);
      setTimeout(() => { this.readyState = 1; this.onopen(); }, 0);
    }
    send(text) { this.sent.push(JSON.parse(text)); }
    close(code) { this.readyState = 3; setTimeout(() => this.onclose({ code: code || 1006 }), 0); }
    feed(message) { this.onmessage({ data: JSON.stringify(message) }); }
  }
  window.WebSocket = FakeSocket;
  const until = async (ok) => {
    for (let i = 0; i < 500 && !ok(); i++) await new Promise((r) => setTimeout(r, 10));
    if (!ok()) throw new Error("timed out");
  };
  const seen = [];
  const gaps = [];
  const live = new LiveChannel({ url: () => "ws://fake/api/v1/ws" });
  live.connect();
  await until(() => live.isOpen);
  live.subscribe({ projectId: "p", workspaceId: "w" });
  const ref = { projectId: "p", workspaceId: "w" };
  live.exec({ id: "t1", ...ref, command: "bash -l", tty: true }, {
    onData: (data) => seen.push(data), onGap: (first, since) => gaps.push([first, since]),
  });
  const [one] = sockets;
  one.feed({ type: "started", id: "t1" });
  one.feed({ type: "stdout", id: "t1", seq: 1, data: "a" });
  one.feed({ type: "stdout", id: "t1", seq: 2, data: "b" });
  one.feed({ type: "stdout", id: "t1", seq: 2, data: "b" });
  one.close();
  await until(() => sockets.length === 2 && live.isOpen);
  const two = sockets[1];
  const afterFirstDrop = [...two.sent];
  two.feed({ type: "attached", id: "t1", firstSeq: 1, nextSeq: 4, running: true });
  two.feed({ type: "stdout", id: "t1", seq: 1, data: "a" });
  two.feed({ type: "stdout", id: "t1", seq: 2, data: "b" });
  two.feed({ type: "stdout", id: "t1", seq: 3, data: "c" });
  two.close();
  live.send({ type: "stdin", id: "t1", data: "typed while offline" });
  await until(() => sockets.length === 3 && live.isOpen);
  const three = sockets[2];
  three.feed({ type: "attached", id: "t1", firstSeq: 6, nextSeq: 7, running: true });
  three.feed({ type: "stdout", id: "t1", seq: 6, data: "f" });
  live.close();
  return { first: one.sent, afterFirstDrop, afterSecondDrop: three.sent, seen, gaps, connects: live.connects };
}
"""


def test_live_channel_reattaches_with_the_last_seq_and_drops_repeats(tab: IdePage) -> None:
    """The page's websocket client (static/live.js) in the browser, fed by a scripted socket: what it sends after
    each reconnect and which chunks it lets through."""
    tab.page.goto(tab.server.url + "/healthz")  # same origin, without the app running
    result = tab.page.evaluate(LIVE_CHANNEL_SCRIPT)
    ref = {"projectId": "p", "workspaceId": "w"}
    assert result["first"] == [
        {"type": "subscribe", **ref},
        {"type": "exec", "id": "t1", **ref, "command": "bash -l", "tty": True},
    ]
    assert result["afterFirstDrop"] == [{"type": "attach", "id": "t1", "since": 2}, {"type": "subscribe", **ref}]
    assert result["afterSecondDrop"] == [
        {"type": "attach", "id": "t1", "since": 3},
        {"type": "subscribe", **ref},
        {"type": "stdin", "id": "t1", "data": "typed while offline"},
    ]
    assert result["seen"] == ["a", "b", "c", "f"], "a chunk was shown twice or lost"
    assert result["gaps"] == [[6, 3]], "output the server no longer had was not reported"
    assert result["connects"] == 3
    tab.check_clean()


def test_run_box_shows_stdout_stderr_and_exit_code_apart(ide: IdePage) -> None:
    page = ide.page
    page.fill("#run-command", "echo out; echo err >&2; exit 3")
    page.click("#run")
    expect(page.locator("#run-exit")).to_have_text("exit 3")
    expect(page.locator("#run-stdout")).to_have_text("out\n")
    expect(page.locator("#run-stderr")).to_have_text("err\n")
    ide.shot("09-run-box")
    page.fill("#run-command", "uname -s")
    page.press("#run-command", "Enter")
    expect(page.locator("#run-exit")).to_have_text("exit 0")
    expect(page.locator("#run-stdout")).to_have_text("Linux\n")
    expect(page.locator("#run-stderr")).to_have_text("")
    ide.check_clean()


def test_api_errors_are_shown(ide: IdePage) -> None:
    page = ide.page
    page.click("#new-file")
    page.fill("#new-file-path", "../outside.txt")
    page.press("#new-file-path", "Enter")
    toast = page.locator(".toast.error").last
    expect(toast).to_be_visible()
    expect(toast).to_contain_text("..")
    ide.shot("10-api-error")
    toast.locator(".toast-close").click()
    expect(page.locator(".toast.error")).to_have_count(0)
    page.press("#new-file-path", "Escape")
    ide.check_clean()


@pytest.mark.parametrize(
    ("theme", "kind", "background"),
    [("Default Light Modern", "light", "rgb(255, 255, 255)"), ("Monokai", "dark", "rgb(39, 40, 34)")],
)
def test_theme_sets_vscode_settings_editor_terminal_and_page(
    ide: IdePage, rest: Api, theme: str, kind: str, background: str
) -> None:
    page = ide.page
    rest.post("sync", files={"themed.js": "// a comment\nconst answer = { value: 42, text: 'forty-two' };\n"})
    ide.open_file("themed.js")
    page.select_option("#theme", theme)
    expect(page.locator("#note")).to_have_text(f"VS Code theme set to {theme}")
    settings = rest.run(f"cat {SETTINGS}")
    assert f'"workbench.colorTheme": "{theme}"' in settings["output"], settings

    assert page.evaluate("document.documentElement.dataset.theme") == kind
    colours = page.evaluate(
        """() => ({
            editor: getComputedStyle(document.querySelector('#editor .monaco-editor-background')).backgroundColor,
            terminal: getComputedStyle(document.querySelector('#terminal .xterm-scrollable-element')).backgroundColor,
            page: getComputedStyle(document.querySelector('.editor')).backgroundColor,
        })"""
    )
    assert colours == {"editor": background, "terminal": background, "page": background}
    ide.shot(f"11-theme-{kind}-{theme.split()[-1].lower()}")
    ide.check_clean()


def test_narrow_window_stacks_the_panels(
    browser: Browser, server: Server, workspace_ref: dict[str, str], rest: Api, ide: IdePage
) -> None:
    rest.post("sync", files={"narrow/readme.md": "# narrow\n"})
    narrow, context = _tab(browser, server, NARROW)
    try:
        narrow.open()
        narrow.use(workspace_ref)
        narrow.expect_badge("running")
        narrow.wait_terminal_prompt()
        expect(narrow.page.locator('#tree .row[data-path="narrow"]')).to_be_visible()
        page = narrow.page
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"the page scrolls sideways by {overflow}px"
        boxes = {
            name: page.locator(f"section.{name}").bounding_box() for name in ("files", "editor", "terminal", "run")
        }
        order = ["files", "editor", "terminal", "run"]
        for name in order:
            box = boxes[name]
            assert box is not None, name
            assert box["x"] >= 0 and box["x"] + box["width"] <= NARROW["width"] + 0.5, (name, box)
            assert box["width"] >= NARROW["width"] - 2, f"{name} does not take the full width: {box}"
        for upper, lower in itertools.pairwise(order):
            a, b = boxes[upper], boxes[lower]
            assert a is not None and b is not None
            assert a["y"] + a["height"] <= b["y"] + 1, f"{lower} is not below {upper}: {a} {b}"
        wide = page.evaluate(
            """() => [...document.querySelectorAll('header *, footer *, section .panel-head *, .run-form *')]
                 .filter((el) => el.getClientRects().length && el.getBoundingClientRect().right > innerWidth + 0.5)
                 .map((el) => el.id || el.className || el.tagName)"""
        )
        assert wide == [], f"elements reach past the right edge: {wide}"
        page.evaluate("window.scrollTo(0, 0)")
        narrow.shot("12-narrow-top")
        page.locator("section.terminal").scroll_into_view_if_needed()
        narrow.shot("13-narrow-terminal")
        narrow.check_clean()
    finally:
        context.close()


def test_token_prompt_when_the_url_has_none(tab: IdePage) -> None:
    page = tab.page
    tab.open(token=None)
    expect(page.locator("#token-dialog")).to_be_visible()
    tab.shot("14-token-prompt")
    page.fill("#token-input", "not-the-token")
    page.press("#token-input", "Enter")
    expect(page.locator("#token-error")).to_contain_text("not accepted")
    page.fill("#token-input", TOKEN)
    page.press("#token-input", "Enter")
    expect(page.locator("#token-dialog")).to_be_hidden()
    expect(page.locator("#conn")).to_have_attribute("data-state", "open")
    tab.expect_badge("not started")
    assert page.evaluate("sessionStorage.length") == 1
    tab.check_clean()


def test_token_is_not_logged_by_page_or_server(tab: IdePage, server: Server) -> None:
    before = len(server.log())
    tab.open()
    tab.use(new_ref())
    tab.expect_badge("not started")
    expect(tab.page.locator("#conn")).to_have_attribute("data-state", "open")
    page = tab.page
    assert TOKEN not in page.url
    assert page.evaluate("location.search") == ""
    assert page.evaluate("sessionStorage.getItem('ide-backend.token')") == TOKEN
    page.reload()  # the token comes from sessionStorage now
    expect(page.locator("#conn")).to_have_attribute("data-state", "open")
    expect(page.locator("#token-dialog")).to_be_hidden()
    tab.check_clean()
    written = server.log()[before:]
    assert "/api/v1/ws" in written, f"the websocket connection was not logged, so this proves nothing:\n{written}"
    assert TOKEN not in written, "the server log holds the token (uvicorn prints the websocket's ?token= query)"
