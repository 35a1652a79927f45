"""The demo page over a workspace's life: scoped tokens, the workspace list and delete, terminals found again after
a reload (a full-screen program included), the status area's words, and an expired token. A real Chromium (Python
Playwright) on a real server and a real engine.

Screenshots of every step go to artifacts/page-life/ (gitignored), so a person can look at what the tests saw.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, expect

from . import pages
from .harness import Server, remove_instance
from .helpers import TOKEN, Channel, start_server
from .pages import REPO, PageTab, Rest, new_project, processes

pytestmark = [pytest.mark.docker, pytest.mark.browser]

ARTIFACTS = REPO / "artifacts" / "page-life"


def full_screen(pause: float) -> str:
    """A vim-like program: a full-screen frame, `pause` seconds of quiet, then over 1 MiB of updates to one cell (more
    than the replay buffer holds) and a last line. The workspace image has perl, not vim."""
    return (
        r"""perl -e '$|=1; print "\e[2J\e[1;1H== notes ==\e[8;1H-- INSERT --"; """
        f"select(undef, undef, undef, {pause}); "
        r"""for (0..200000) { print "\e[4;1H", $_ % 10 } print "\e[6;1Hwritten"; sleep 100'"""
    )


def new_tab(browser: Browser, server: Server, tabs: list[PageTab]) -> PageTab:
    return pages.new_tab(browser, server, tabs, ARTIFACTS)


# --- scoped tokens -----------------------------------------------------------------------------------------------


def test_a_workspace_token_shows_only_its_workspace_and_a_read_only_one_changes_nothing(
    browser: Browser, page_server: Server, rest: Rest, tabs: list[PageTab]
) -> None:
    project = new_project("life")
    mine, other = {"projectId": project, "workspaceId": "mine"}, {"projectId": project, "workspaceId": "other"}
    rest.start(mine)
    rest.start(other)
    token = rest.mint(mine)

    tab = new_tab(browser, page_server, tabs)
    page = tab.page
    tab.open(token)
    tab.expect_ref(mine)
    tab.expect_badge("running")
    tab.expect_terminal()
    expect(page.locator("#project-id")).not_to_be_editable()
    expect(page.locator("#workspace-id")).not_to_be_editable()
    expect(page.locator("#scope")).to_be_visible()
    expect(page.locator("#scope")).to_contain_text("this workspace only")
    expect(page.locator("#scope")).to_have_attribute("title", re.compile(f"workspace {project}/mine only"))
    expect(page.locator("#workspace-list .ws-row")).to_have_count(1)
    expect(tab.row("mine")).to_contain_text("running")
    expect(page.locator("#start")).to_be_visible()
    tab.shot("01-workspace-token")

    # Another workspace cannot be opened: the field is locked, and a value forced into it is refused.
    page.evaluate(
        """() => { const input = document.getElementById('workspace-id'); input.value = 'other';
                   input.dispatchEvent(new Event('change')); }"""
    )
    expect(page.locator(".toast.error").last).to_contain_text(f"workspace {project}/mine only")
    tab.expect_ref(mine)
    expect(page.locator("#workspace-id")).to_have_value("mine")
    assert page.evaluate("window.ide.ref") == mine
    tab.check_clean(token)

    # A read-only token for the whole project: the project's workspaces, and nothing that changes one.
    read_only = rest.mint({"projectId": project}, scopes=["read"])
    viewer = new_tab(browser, page_server, tabs)
    page = viewer.page
    viewer.open(read_only)
    expect(page.locator("#scope")).to_contain_text("read-only")
    expect(page.locator("#workspace-list .ws-row")).to_have_count(2)
    viewer.expect_badge("running")
    for hidden in ("#start", "#stop", "#run", "#run-form", "#new-file", "#delete", "#save", "#terminal-restart"):
        expect(page.locator(hidden)).to_be_hidden()
    expect(page.locator("#run-readonly")).to_be_visible()
    expect(page.locator("#project-id")).not_to_be_editable()
    expect(page.locator("#workspace-id")).to_be_editable()  # any workspace of the project
    expect(page.locator("#workspace-list .ws-delete")).to_have_count(0)
    viewer.row("mine").locator(".ws-open").click()
    viewer.expect_ref(mine)
    viewer.expect_badge("running")
    # It watches the shell the first tab opened, and what it types goes nowhere.
    viewer.expect_terminal()
    assert page.evaluate("window.ide.terminalId") == tab.page.evaluate("window.ide.terminalId")
    tab.type_in_terminal("echo from-the-writer")
    viewer.wait_screen("^from-the-writer$")
    viewer.type_in_terminal("echo from-the-viewer")
    time.sleep(1)
    assert not [row for row in viewer.screen() if "from-the-viewer" in row]
    assert not [row for row in tab.screen() if "from-the-viewer" in row]
    viewer.shot("02-read-only-token")
    viewer.check_clean(read_only)


def test_an_expired_token_asks_for_a_new_one(
    browser: Browser, page_server: Server, rest: Rest, tabs: list[PageTab]
) -> None:
    ref = {"projectId": new_project("life"), "workspaceId": "brief"}
    rest.start(ref)
    short = rest.mint(ref, ttlSeconds=4)
    tab = new_tab(browser, page_server, tabs)
    page = tab.page
    tab.open(short)
    tab.expect_badge("running")
    expect(page.locator("#token-dialog")).to_be_visible(timeout=20_000)
    expect(page.locator("#token-error")).to_contain_text("expired at")
    expect(page.locator("#token-error")).to_contain_text("Ask whoever gave you this link for a new one")
    tab.shot("03-token-expired")

    fresh = rest.mint(ref)
    page.fill("#token-input", fresh)
    page.press("#token-input", "Enter")
    expect(page.locator("#token-dialog")).to_be_hidden()
    expect(page.locator("#conn")).to_have_attribute("data-state", "open")
    tab.expect_badge("running")

    # Opened when it has expired already: the dialog says so before anything else.
    late = new_tab(browser, page_server, tabs)
    late.open(short)
    expect(late.page.locator("#token-dialog")).to_be_visible()
    expect(late.page.locator("#token-error")).to_contain_text("expired at")
    tab.check_clean(short, fresh)
    late.check_clean(short)


# --- the workspace list ------------------------------------------------------------------------------------------


def test_the_list_shows_the_projects_workspaces_and_delete_removes_one(
    browser: Browser, page_server: Server, rest: Rest, tabs: list[PageTab]
) -> None:
    project = new_project("life")
    first, second = {"projectId": project, "workspaceId": "first"}, {"projectId": project, "workspaceId": "second"}
    rest.start(first)
    rest.start(second, files={"notes/todo.txt": "write the tests\n"})
    rest.call("stop", first)
    tab = new_tab(browser, page_server, tabs)
    page = tab.page
    tab.open()
    tab.use(second)
    tab.expect_badge("running")
    expect(page.locator("#workspace-list .ws-row")).to_have_count(2)
    expect(tab.row("first")).to_have_attribute("data-status", "exited")
    expect(tab.row("first")).to_contain_text("stopped")
    expect(tab.row("second")).to_have_attribute("data-status", "running")
    expect(tab.row("second")).to_have_class(re.compile(r"\bcurrent\b"))
    tab.expect_terminal()
    tab.shot("04-workspace-list")

    # Click to switch, and back.
    tab.row("first").locator(".ws-open").click()
    tab.expect_ref(first)
    tab.expect_badge("exited")
    expect(page.locator("#status-detail")).to_have_text("stopped on request")
    tab.row("second").locator(".ws-open").click()
    tab.expect_ref(second)
    tab.expect_badge("running")

    # Delete one that is not open: asked first, then gone from the list and from the server.
    tab.row("first").locator(".ws-delete").click()
    expect(page.locator("#confirm-dialog")).to_be_visible()
    expect(page.locator("#confirm-title")).to_have_text(f"Delete workspace {project}/first?")
    tab.shot("05-delete-confirm")
    page.click("#confirm-ok")
    expect(tab.row("first")).to_have_count(0)
    assert rest.call("status", first).status_code == 404

    # Delete the open one: its file, tree and terminal are cleared, and the page says why.
    page.click("#refresh")
    page.click('#tree .row[data-path="notes"]')
    page.click('#tree .row[data-path="notes/todo.txt"]')
    expect(page.locator("#editor-title")).to_have_attribute("data-path", "notes/todo.txt")
    tab.row("second").locator(".ws-delete").click()
    expect(page.locator("#confirm-text")).to_contain_text("open in this page")
    page.click("#confirm-ok")
    tab.expect_badge("not started")
    expect(page.locator("#editor-title")).to_have_text("No file open")
    expect(page.locator("#tree")).to_contain_text("This workspace was deleted")
    tab.wait_screen("the workspace was deleted")
    expect(page.locator("#status-detail")).to_have_text("deleted")
    expect(tab.row("second")).to_have_attribute("data-status", "missing")
    assert rest.call("status", second).status_code == 404
    tab.shot("06-open-workspace-deleted")
    tab.check_clean()


# --- terminals after a reload ------------------------------------------------------------------------------------


def test_a_reload_finds_the_same_shell_again(
    browser: Browser, page_server: Server, rest: Rest, tabs: list[PageTab]
) -> None:
    ref = {"projectId": new_project("life"), "workspaceId": "shell"}
    rest.start(ref)
    tab = new_tab(browser, page_server, tabs)
    page = tab.page
    tab.open()
    tab.use(ref)
    tab.expect_terminal()
    tab.wait_screen(r"\$$")
    expect(page.locator("#status-detail")).to_contain_text("kept running by: this page's terminal")
    before = tab.shell_pid("before-reload")
    terminal_id = page.evaluate("window.ide.terminalId")

    page.reload()
    tab.expect_terminal()
    assert page.evaluate("window.ide.terminalId") == terminal_id
    rows = tab.screen()
    assert f"before-reload={before}" in rows, f"the screen did not come back: {rows}"
    assert page.locator("#terminal .xterm-rows").inner_text().count("before-reload=") == 2  # the command, its output
    tab.shot("07-reload-same-shell")
    assert tab.shell_pid("after") == before
    shells = [p for p in processes(page_server, ref) if p["tty"] and p["running"]]
    assert [p["id"] for p in shells] == [terminal_id], "a second shell was started"
    tab.check_clean()


def run_full_screen(tab: PageTab, server: Server, pause: float) -> list[str]:
    """Run full_screen(pause) in the tab's shell, reload the page, and return the terminal's rows after it."""
    page = tab.page
    tab.expect_terminal()
    tab.wait_screen(r"\$$")
    tab.type_in_terminal(full_screen(pause))
    tab.wait_screen("^written$", timeout=60_000)
    drawn = tab.screen()
    assert drawn[0] == "== notes ==" and drawn[3] == "0" and drawn[7] == "-- INSERT --", drawn
    terminal_id = page.evaluate("window.ide.terminalId")
    # The replay buffer (1 MiB) no longer holds the frame: only the screen can bring it back.
    channel = Channel(server)
    try:
        channel.send(type="attach", id=terminal_id, since=0)
        assert channel.wait_for(type="attached", id=terminal_id)["firstSeq"] > 1
        channel.send(type="detach", id=terminal_id)
    finally:
        channel.close()

    page.reload()
    tab.expect_terminal()
    assert page.evaluate("window.ide.terminalId") == terminal_id
    tab.wait_screen("^written$")
    rows = tab.screen()
    assert not [row for row in rows if "chunks of output were lost" in row], rows
    return rows


def test_a_full_screen_program_looks_the_same_after_a_reload(
    browser: Browser, page_server: Server, rest: Rest, tabs: list[PageTab]
) -> None:
    ref = {"projectId": new_project("life"), "workspaceId": "vim"}
    rest.start(ref)
    tab = new_tab(browser, page_server, tabs)
    tab.open()
    tab.use(ref)
    # As with vim: the frame is drawn, the user reads it a moment, then the flood.
    rows = run_full_screen(tab, page_server, pause=3)
    assert rows[0] == "== notes ==", rows
    assert rows[5] == "written", rows
    assert rows[7] == "-- INSERT --", rows
    # rows[3], the cell the flood wrote to, is checked in the test below, where the flood's last digit is known.
    tab.shot("08-full-screen-after-reload")
    tab.check_clean()


def test_a_frame_drawn_right_before_a_flood_comes_back_whole(
    browser: Browser, page_server: Server, rest: Rest, tabs: list[PageTab]
) -> None:
    ref = {"projectId": new_project("life"), "workspaceId": "flood"}
    rest.start(ref)
    tab = new_tab(browser, page_server, tabs)
    tab.open()
    tab.use(ref)
    rows = run_full_screen(tab, page_server, pause=0)
    tab.shot("08b-frame-before-flood-after-reload")
    assert rows[0] == "== notes ==", rows
    assert rows[3] == "0", rows  # 200000 % 10, the last digit written there
    assert rows[5] == "written", rows
    assert rows[7] == "-- INSERT --", rows


# --- the status area ---------------------------------------------------------------------------------------------


def test_the_status_area_says_when_an_idle_workspace_stops_and_why_it_stopped(
    browser: Browser, tmp_path: Path, docker_engine: None, tabs: list[PageTab]
) -> None:
    server = start_server(tmp_path, IDE_IDLE_TIMEOUT="10", IDE_IDLE_SWEEP="1")
    rest = Rest(server)
    try:
        ref = {"projectId": new_project("life"), "workspaceId": "idle"}
        rest.start(ref)
        watcher = rest.mint(ref, scopes=["read"])  # it starts no shell, so nothing keeps the workspace running
        tab = new_tab(browser, server, tabs)
        page = tab.page
        tab.open(watcher)
        tab.expect_badge("running")
        expect(page.locator("#status-detail")).to_have_text(re.compile(r"^stops when idle at \d\d:\d\d$"))
        tab.shot("09-stops-when-idle")
        tab.expect_badge("exited", timeout=30_000)
        expect(page.locator("#status-detail")).to_have_text("stopped: idle")
        expect(tab.row("idle")).to_contain_text("stopped")
        tab.shot("10-stopped-idle")
        tab.check_clean(watcher)
    finally:
        for tab in tabs:
            tab.context.close()
        tabs.clear()
        rest.clean()
        server.stop()
        remove_instance(server.instance)


# --- the page's reading of tokens and status, in Node -----------------------------------------------------------

NODE_SCRIPT = """
import { readFileSync } from "node:fs";
const { static: dir, tokens, statuses } = JSON.parse(readFileSync(0, "utf8"));
const { readScope, describeScope, isExpired, rejectedMessage } = await import(`${dir}/scope.js`);
const { describeStatus } = await import(`${dir}/status-detail.js`);
const scopes = tokens.map((t) => readScope(t));
console.log(JSON.stringify({
  scopes,
  described: scopes.map((s) => describeScope(s).long),
  expired: scopes.map((s) => isExpired(s, Date.now() + 10 * 86400 * 1000)),
  rejected: scopes.map((s) => rejectedMessage(s, Date.now() + 10 * 86400 * 1000)),
  words: statuses.map((d) => describeStatus(d, { ownTerminalId: "term-mine" }).text),
}));
"""


def test_the_page_reads_minted_tokens_and_words_the_status(page_server: Server, rest: Rest) -> None:
    """static/scope.js and static/status-detail.js under Node, on tokens the server minted."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is missing: install Node.js 20 to run the page's modules outside the browser")
    project = new_project("life")
    tokens = [
        rest.mint({"projectId": project, "workspaceId": "w1"}, ttlSeconds=60),
        rest.mint({"projectId": project}, scopes=["read"]),
        TOKEN,
    ]
    statuses = [
        {"running": True, "keptAliveBy": ["terminal term-mine attached", "process c1 running"], "idleStopAt": None},
        {"running": True, "keptAliveBy": [], "idleStopAt": "2026-11-29T10:30:00+00:00"},
        {"running": False, "stopReason": "idle"},
        {"running": False, "stopReason": "oom_killed"},
        {"running": False, "stopReason": None},
    ]
    proc = subprocess.run(
        [node, "--input-type=module", "-e", NODE_SCRIPT],
        input=json.dumps({"static": (REPO / "static").as_uri(), "tokens": tokens, "statuses": statuses}),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    one, read, operator = result["scopes"]
    assert one["projectId"] == project and one["workspaceId"] == "w1" and one["canWrite"] is True
    assert abs(one["expiresAt"] / 1000 - time.time() - 60) < 30
    assert read["projectId"] == project and read["workspaceId"] is None and read["canWrite"] is False
    assert operator is None
    assert result["described"][0].startswith(f"This token opens workspace {project}/w1 only.")
    assert "It may only read" in result["described"][1]
    assert result["described"][2] == ""
    assert result["expired"] == [True, True, False]
    assert result["rejected"][0].startswith("Your token expired at ")
    assert result["rejected"][2] == "That token was not accepted. Paste the current one."
    words = result["words"]
    assert words[0] == "kept running by: this page's terminal, process c1 running"
    assert re.fullmatch(r"stops when idle at (\d+ \w+, )?\d\d:\d\d", words[1]), words[1]
    assert words[2:] == ["stopped: idle", "stopped: out of memory", ""]
