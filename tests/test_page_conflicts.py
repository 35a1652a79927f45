"""The demo page's editor and file versions: a file changed in the workspace (a line appended through exec, as a
terminal would) after the editor read it makes the save a conflict, whose dialog offers Reload theirs, Keep mine and
Compare (Monaco's diff editor); editor tabs mark unsaved files; a save into a stopped workspace says so without false
errors; and Start/Stop are off while the top bar's ids are not valid ones. A real Chromium (Python Playwright) on a
real server and a real engine.

Screenshots go to artifacts/page-conflicts/ (gitignored), so a person can look at what the tests saw.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Locator, Page, ViewportSize, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from .harness import Server
from .helpers import TOKEN

pytestmark = [pytest.mark.docker, pytest.mark.browser]

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "artifacts" / "page-conflicts"
WIDE: ViewportSize = {"width": 1280, "height": 800}
FIRST = "first line\n"
THEIRS = "from the terminal"
MINE = "typed in the editor"


def new_ref() -> dict[str, str]:
    return {"projectId": "cfl-" + uuid.uuid4().hex[:6], "workspaceId": "ws-" + uuid.uuid4().hex[:6]}


class Rest:
    """The REST API with the operator's token: to set files up, change them behind the page's back, and look."""

    def __init__(self, server: Server) -> None:
        self.client = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120)
        self.made: list[dict[str, str]] = []

    def post(self, endpoint: str, ref: dict[str, str], **body: Any) -> dict[str, Any]:
        response = self.client.post(f"/api/v1/containers/{endpoint}", json={**ref, **body})
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    def start(self, ref: dict[str, str]) -> None:
        self.made.append(ref)
        self.post("start", ref)

    def run(self, ref: dict[str, str], command: str) -> None:
        """What a terminal in the workspace would do."""
        answer = self.post("exec", ref, command=command)
        assert answer["exitCode"] == 0, answer

    def read(self, ref: dict[str, str], path: str) -> str:
        content: str = self.post("files/read", ref, path=path)["content"]
        return content

    def clean(self) -> None:
        for ref in self.made:
            self.client.post("/api/v1/containers/delete", json=ref)
        self.client.close()


class Tab:
    """One tab on the demo page (a context of its own) with what it logged, and the steps the tests take on it."""

    def __init__(self, browser: Browser, server: Server) -> None:
        self.context: BrowserContext = browser.new_context(viewport=WIDE)
        self.page: Page = self.context.new_page()
        self.server = server
        self.errors: list[str] = []
        self.console: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on("console", lambda message: self.console.append(message.text))
        self.page.set_default_timeout(30_000)

    def open(self, ref: dict[str, str], badge: str = "running") -> None:
        """The page on `ref` (typed into the top bar), its status shown and the editor loaded."""
        for attempt in range(3):
            self.page.goto(f"{self.server.url}/?token={TOKEN}")
            # The page's own workspace shown first: ids typed before would be overwritten, an Enter submit the form.
            try:
                self.page.wait_for_function("document.getElementById('status-ref').textContent !== ''", timeout=20_000)
                break
            except PlaywrightTimeout:
                # Chromium drops requests when the host's network interfaces change, as they do whenever the engine
                # starts a container (for any test on this machine): the page's modules may not have loaded.
                if attempt == 2 or not any("ERR_NETWORK_CHANGED" in line for line in self.console):
                    raise AssertionError(f"the page did not start: {self.errors} {self.console}") from None
        self.page.fill("#project-id", ref["projectId"])
        self.page.fill("#workspace-id", ref["workspaceId"])
        self.page.press("#workspace-id", "Enter")
        expect(self.page.locator("#status-ref")).to_have_text(f"{ref['projectId']} / {ref['workspaceId']}")
        self.expect_badge(badge)
        self.page.wait_for_function("window.ide.editorReady")

    def expect_badge(self, text: str, timeout: float = 60_000) -> None:
        expect(self.page.locator("#status-badge")).to_have_text(text, timeout=timeout)

    def open_file(self, path: str) -> None:
        """Click every folder on the way in the tree, then the file; see it in the editor."""
        self.page.click("#refresh")
        parts = path.split("/")
        for depth in range(1, len(parts)):
            folder = self.page.locator(f'#tree .row[data-path="{"/".join(parts[:depth])}"]')
            if folder.get_attribute("aria-expanded") != "true":
                folder.click()
        self.page.click(f'#tree .row[data-path="{path}"]')
        expect(self.page.locator("#editor-title")).to_have_attribute("data-path", path)

    def type_at_end(self, text: str) -> None:
        self.page.click("#editor .view-lines")
        self.page.keyboard.press("Control+End")
        self.page.keyboard.type(text)

    def text(self, path: str) -> str:
        """The editor's text of an open file (its Monaco model)."""
        value: str = self.page.evaluate(
            "(path) => monaco.editor.getModel(monaco.Uri.from({scheme: 'workspace', path: '/' + path})).getValue()",
            path,
        )
        return value

    def tab(self, path: str) -> Locator:
        return self.page.locator(f'#editor-tabs .tab[data-path="{path}"]')

    def save(self) -> None:
        self.page.keyboard.press("Control+s")

    def expect_conflict(self, path: str, *, gone: bool = False) -> None:
        dialog = self.page.locator("#conflict-dialog")
        expect(dialog).to_be_visible()
        expect(dialog.locator("h3")).to_have_text(f"{path} {'was deleted' if gone else 'changed'} in the workspace")

    def shot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), animations="disabled")
        return path

    def check_clean(self) -> None:
        """No uncaught errors, no red toast, and the token never in the console."""
        assert not self.errors, f"uncaught errors in the page: {self.errors}"
        errors = self.page.locator(".toast.error").all_inner_texts()
        assert not errors, f"errors shown: {errors}"
        assert not [line for line in self.console if TOKEN in line], "the token was written to the console"


@pytest.fixture(scope="module")
def rest(server: Server) -> Iterator[Rest]:
    api = Rest(server)
    yield api
    api.clean()


@pytest.fixture(scope="module")
def running(rest: Rest) -> dict[str, str]:
    """A running workspace the conflict tests share; each uses files of its own."""
    ref = new_ref()
    rest.start(ref)
    return ref


@pytest.fixture
def tab(browser: Browser, server: Server) -> Iterator[Tab]:
    opened = Tab(browser, server)
    yield opened
    opened.context.close()


def conflict_on(tab: Tab, rest: Rest, ref: dict[str, str], path: str) -> None:
    """Open `path` in the editor, type in it, append a line to it through exec and save: the conflict. (Typed first:
    a file without unsaved changes takes a change in the workspace in by itself, with no conflict to resolve.)"""
    rest.post("sync", ref, files={path: FIRST})
    tab.open_file(path)
    tab.type_at_end(MINE)
    expect(tab.tab(path)).to_have_attribute("data-dirty", "true")
    rest.run(ref, f"echo '{THEIRS}' >> {path}")
    tab.save()
    tab.expect_conflict(path)


# --- conflicts ---------------------------------------------------------------------------------------------------


def test_reload_theirs_shows_the_terminals_line(tab: Tab, rest: Rest, running: dict[str, str]) -> None:
    path = "conflict/reload.txt"
    tab.open(running)
    conflict_on(tab, rest, running, path)
    tab.shot("01-conflict-dialog")
    assert rest.read(running, path) == FIRST + THEIRS + "\n", "the refused save wrote something"

    tab.page.click("#conflict-reload")
    expect(tab.page.locator("#conflict-dialog")).to_be_hidden()
    expect(tab.page.locator("#editor .view-lines")).to_contain_text(THEIRS)
    assert tab.text(path) == FIRST + THEIRS + "\n"
    expect(tab.tab(path)).to_have_attribute("data-dirty", "false")
    expect(tab.page.locator("#editor-title")).to_have_attribute("data-dirty", "false")

    # One undo brings the edits back (unsaved), a redo theirs again.
    tab.page.keyboard.press("Control+z")
    expect(tab.page.locator("#editor .view-lines")).to_contain_text(MINE)
    expect(tab.tab(path)).to_have_attribute("data-dirty", "true")
    tab.page.keyboard.press("Control+y")
    expect(tab.page.locator("#editor .view-lines")).not_to_contain_text(MINE)
    expect(tab.tab(path)).to_have_attribute("data-dirty", "false")
    assert tab.text(path) == FIRST + THEIRS + "\n"

    # Reloaded at its version now: the next save goes through.
    tab.type_at_end("after the reload")
    tab.save()
    expect(tab.page.locator("#note")).to_have_text(f"Saved {path}")
    assert rest.read(running, path) == FIRST + THEIRS + "\nafter the reload"
    tab.check_clean()


def test_keep_mine_writes_the_editors_text(tab: Tab, rest: Rest, running: dict[str, str]) -> None:
    path = "conflict/keep.txt"
    tab.open(running)
    conflict_on(tab, rest, running, path)
    tab.page.click("#conflict-keep")
    expect(tab.page.locator("#conflict-dialog")).to_be_hidden()
    expect(tab.page.locator("#note")).to_have_text(f"Saved {path}")
    assert rest.read(running, path) == FIRST + MINE
    expect(tab.tab(path)).to_have_attribute("data-dirty", "false")

    # Saved as the version the server answered: the next save needs no dialog.
    tab.type_at_end(" again")
    tab.save()
    expect(tab.tab(path)).to_have_attribute("data-dirty", "false")
    assert rest.read(running, path) == FIRST + MINE + " again"
    expect(tab.page.locator("#conflict-dialog")).to_be_hidden()
    tab.check_clean()


def test_compare_shows_theirs_beside_mine_and_decides_from_there(tab: Tab, rest: Rest, running: dict[str, str]) -> None:
    page = tab.page
    path = "conflict/compare.txt"
    tab.open(running)
    conflict_on(tab, rest, running, path)
    page.click("#conflict-compare")
    diff = page.locator("#diff")
    expect(diff).to_be_visible()
    expect(diff.locator(".monaco-diff-editor")).to_be_visible()
    original = diff.locator(".editor.original .view-lines")
    modified = diff.locator(".editor.modified .view-lines")
    expect(original).to_contain_text(THEIRS)
    expect(original).not_to_contain_text(MINE)
    expect(modified).to_contain_text(MINE)
    expect(modified).not_to_contain_text(THEIRS)
    expect(page.locator("#diff-title")).to_have_text(path)
    original_box, modified_box = original.bounding_box(), modified.bounding_box()
    assert original_box and modified_box and original_box["x"] + original_box["width"] <= modified_box["x"] + 1, (
        "theirs and mine are not side by side"
    )
    expect(diff.locator(".line-insert, .char-insert").first).to_be_visible()  # the differences are marked
    tab.shot("02-compare")

    # Closing it is back to the editor, nothing decided; the next save asks again.
    page.click("#diff-close")
    expect(diff).to_be_hidden()
    expect(page.locator("#editor")).to_be_visible()
    expect(tab.tab(path)).to_have_attribute("data-dirty", "true")
    assert rest.read(running, path) == FIRST + THEIRS + "\n"
    page.click("#editor .view-lines")
    tab.save()
    tab.expect_conflict(path)
    page.click("#conflict-compare")
    expect(diff).to_be_visible()
    page.click("#diff-keep")
    expect(diff).to_be_hidden()
    expect(page.locator("#note")).to_have_text(f"Saved {path}")
    assert rest.read(running, path) == FIRST + MINE
    expect(tab.tab(path)).to_have_attribute("data-dirty", "false")

    # Reload theirs from the comparison.
    other = "conflict/compare-reload.txt"
    conflict_on(tab, rest, running, other)
    page.click("#conflict-compare")
    expect(diff.locator(".editor.original .view-lines")).to_contain_text(THEIRS)
    page.click("#diff-reload")
    expect(diff).to_be_hidden()
    expect(tab.tab(other)).to_have_attribute("data-dirty", "false")
    assert tab.text(other) == FIRST + THEIRS + "\n"
    assert rest.read(running, other) == FIRST + THEIRS + "\n"
    tab.check_clean()


def test_a_file_deleted_meanwhile_is_written_again_with_keep_mine(
    tab: Tab, rest: Rest, running: dict[str, str]
) -> None:
    path = "conflict/gone.txt"
    rest.post("sync", running, files={path: FIRST})
    tab.open(running)
    tab.open_file(path)
    rest.run(running, f"rm {path}")
    tab.type_at_end(MINE)
    tab.save()
    tab.expect_conflict(path, gone=True)
    expect(tab.page.locator("#conflict-reload")).to_have_text("Close it")
    tab.page.click("#conflict-keep")
    expect(tab.page.locator("#note")).to_have_text(f"Saved {path}")
    assert rest.read(running, path) == FIRST + MINE
    tab.check_clean()


def test_a_new_file_is_saved_only_where_nothing_replaced_it(tab: Tab, rest: Rest, running: dict[str, str]) -> None:
    """New file makes it empty and remembers that version: a file written there since is a conflict, not lost."""
    page = tab.page
    path = "conflict/new.txt"
    tab.open(running)
    page.click("#new-file")
    page.fill("#new-file-path", path)
    page.press("#new-file-path", "Enter")
    expect(page.locator("#editor-title")).to_have_attribute("data-path", path)
    tab.type_at_end(MINE)
    expect(tab.tab(path)).to_have_attribute("data-dirty", "true")
    rest.run(running, f"echo '{THEIRS}' > {path}")
    tab.save()
    tab.expect_conflict(path)
    page.keyboard.press("Escape")  # dismissed: the edits stay, unsaved
    expect(page.locator("#conflict-dialog")).to_be_hidden()
    expect(tab.tab(path)).to_have_attribute("data-dirty", "true")
    assert rest.read(running, path) == THEIRS + "\n"
    tab.check_clean()


# --- tabs --------------------------------------------------------------------------------------------------------


def test_tabs_mark_unsaved_files_and_ask_before_dropping_them(tab: Tab, rest: Rest, running: dict[str, str]) -> None:
    page = tab.page
    rest.post("sync", running, files={"tabs/a.txt": "alpha\n", "tabs/b.txt": "beta\n", "other/a.txt": "gamma\n"})
    tab.open(running)
    for path in ("tabs/a.txt", "tabs/b.txt", "other/a.txt"):
        tab.open_file(path)
    tabs = page.locator("#editor-tabs .tab")
    expect(tabs).to_have_count(3)
    expect(tab.tab("other/a.txt")).to_have_attribute("aria-selected", "true")
    expect(tab.tab("tabs/a.txt").locator(".tab-dir")).to_have_text("tabs")  # two a.txt: each says its folder
    expect(tab.tab("tabs/b.txt").locator(".tab-dir")).to_have_count(0)

    tab.tab("tabs/a.txt").click()
    expect(page.locator("#editor-title")).to_have_attribute("data-path", "tabs/a.txt")
    expect(page.locator('#tree .row[data-path="tabs/a.txt"]')).to_have_class(re.compile(r"\bactive\b"))
    tab.type_at_end("edited")
    expect(tab.tab("tabs/a.txt")).to_have_attribute("data-dirty", "true")
    expect(tab.tab("tabs/a.txt").locator(".tab-dot")).to_be_visible()
    expect(tab.tab("tabs/b.txt")).to_have_attribute("data-dirty", "false")
    expect(tab.tab("tabs/b.txt").locator(".tab-dot")).to_be_hidden()
    tab.shot("03-tabs-unsaved")

    # Another tab and back: the edit is kept, unsaved.
    tab.tab("tabs/b.txt").click()
    expect(page.locator("#editor .view-lines")).to_contain_text("beta")
    tab.tab("tabs/a.txt").click()
    expect(page.locator("#editor .view-lines")).to_contain_text("alphaedited")
    expect(page.locator("#editor-title")).to_have_attribute("data-dirty", "true")

    # A clean tab closes at once; an unsaved one asks, and Cancel keeps it.
    tab.tab("tabs/b.txt").locator(".tab-close").click()
    expect(tabs).to_have_count(2)
    tab.tab("tabs/a.txt").hover()
    tab.tab("tabs/a.txt").locator(".tab-close").click()
    expect(page.locator("#confirm-dialog")).to_be_visible()
    expect(page.locator("#confirm-title")).to_have_text("Close a.txt without saving?")
    page.click('#confirm-dialog button[value="cancel"]')
    expect(tabs).to_have_count(2)
    tab.save()
    expect(tab.tab("tabs/a.txt")).to_have_attribute("data-dirty", "false")
    assert rest.read(running, "tabs/a.txt") == "alpha\nedited"
    tab.tab("tabs/a.txt").locator(".tab-close").click()
    expect(tabs).to_have_count(1)
    expect(page.locator("#editor-title")).to_have_attribute("data-path", "other/a.txt")
    tab.check_clean()


# --- the user's report: a save into a stopped workspace, and ids that are not valid ---------------------------------


def test_a_save_into_a_stopped_workspace_says_so_without_errors(tab: Tab, rest: Rest) -> None:
    page = tab.page
    ref = new_ref()
    rest.start(ref)
    rest.post("sync", ref, files={"notes.md": "# notes\n"})
    tab.open(ref)
    tab.open_file("notes.md")
    page.click("#stop")
    tab.expect_badge("exited", timeout=30_000)
    tab.type_at_end("written while stopped")
    tab.save()
    expect(page.locator("#note")).to_have_text("Saved notes.md (workspace stopped)")
    expect(tab.tab("notes.md")).to_have_attribute("data-dirty", "false")
    page.wait_for_timeout(1500)  # the errors came just after the save
    tab.expect_badge("exited")
    tab.shot("04-saved-while-stopped")
    tab.check_clean()
    assert rest.read(ref, "notes.md") == "# notes\nwritten while stopped"
    assert rest.post("status", ref)["data"]["running"] is False


def test_start_and_stop_are_off_while_an_id_is_not_valid(tab: Tab, rest: Rest, running: dict[str, str]) -> None:
    page = tab.page
    tab.open(running)
    start, stop = page.locator("#start"), page.locator("#stop")
    expect(stop).to_be_enabled()
    expect(stop).to_have_attribute("title", re.compile(re.escape(f"Stop {running['projectId']}/")))

    for bad, why in [("bad id!", 'Workspace id "bad id!" is not valid'), ("ws.", 'Workspace id "ws." is not valid')]:
        page.fill("#workspace-id", bad)
        expect(stop).to_be_disabled()
        expect(start).to_be_disabled()
        expect(stop).to_have_attribute("title", re.compile(re.escape(why)))
        expect(start).to_have_attribute("title", re.compile(re.escape(why)))
    tab.shot("05-invalid-id")
    page.fill("#workspace-id", "")
    expect(stop).to_have_attribute("title", re.compile("Workspace id is empty"))
    page.fill("#project-id", "-x")
    expect(stop).to_have_attribute("title", re.compile(re.escape('Project id "-x" is not valid')))
    stop.click(force=True)  # a disabled button: nothing happens
    page.fill("#project-id", running["projectId"])
    page.fill("#workspace-id", "bad id!")
    page.press("#workspace-id", "Enter")
    expect(page.locator(".toast.error").last).to_contain_text("Workspace id")
    expect(page.locator("#status-ref")).to_have_text(f"{running['projectId']} / {running['workspaceId']}")
    page.evaluate("document.querySelectorAll('.toast').forEach((toast) => toast.remove())")  # meant, seen
    assert rest.post("status", running)["data"]["running"] is True

    # Valid ids of another workspace, typed but not applied: Stop switches to it and stops nothing.
    other = "other-" + uuid.uuid4().hex[:6]
    page.fill("#workspace-id", other)
    expect(stop).to_be_enabled()
    stop.click()
    expect(page.locator("#status-ref")).to_have_text(f"{running['projectId']} / {other}")
    tab.expect_badge("not started")
    expect(stop).to_be_disabled()
    assert rest.post("status", running)["data"]["running"] is True
    tab.check_clean()
