"""The demo page's terminal in a real Chromium on a real server and engine: a reload finds its shell again even when
the browser lost the shell's id, and two tabs of one workspace share one shell (both type, both see); New shell in
one of them leaves the shared one to the other.

Screenshots go to artifacts/page-terminals/ (gitignored), so a person can look at what the tests saw.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser

from . import pages
from .harness import Server
from .pages import REPO, PageTab, Rest, new_project, processes

pytestmark = [pytest.mark.docker, pytest.mark.browser]

ARTIFACTS = REPO / "artifacts" / "page-terminals"


def shells(server: Server, ref: dict[str, str]) -> list[dict[str, object]]:
    return [p for p in processes(server, ref) if p["tty"] and p["running"]]


def test_a_reload_finds_the_shell_even_when_its_id_was_lost(
    browser: Browser, page_server: Server, rest: Rest, tabs: list[PageTab]
) -> None:
    ref = {"projectId": new_project("term"), "workspaceId": "lost"}
    rest.start(ref)
    tab = pages.new_tab(browser, page_server, tabs, ARTIFACTS)
    page = tab.page
    tab.open()
    tab.use(ref)
    tab.expect_terminal()
    tab.wait_screen(r"\$$")
    before = tab.shell_pid("before")
    terminal_id = page.evaluate("window.ide.terminalId")

    # The browser forgets which shell it opened (storage cleared, say), then reloads.
    page.evaluate(
        """() => Object.keys(localStorage).filter((k) => k.startsWith('ide-backend.terminal.'))
                                           .forEach((k) => localStorage.removeItem(k))"""
    )
    page.reload()
    tab.expect_terminal()
    assert page.evaluate("window.ide.terminalId") == terminal_id
    assert f"before={before}" in tab.wait_screen(f"^before={before}$")  # its earlier output is back
    assert tab.shell_pid("after") == before
    assert [p["id"] for p in shells(page_server, ref)] == [terminal_id], "a second shell was started"
    tab.shot("01-reload-lost-id")
    tab.check_clean()


def test_two_tabs_type_into_one_shell_and_both_see_both(
    browser: Browser, page_server: Server, rest: Rest, tabs: list[PageTab]
) -> None:
    ref = {"projectId": new_project("term"), "workspaceId": "shared"}
    rest.start(ref)
    first = pages.new_tab(browser, page_server, tabs, ARTIFACTS)
    first.open()
    first.use(ref)
    first.expect_terminal()
    first.wait_screen(r"\$$")
    terminal_id = first.page.evaluate("window.ide.terminalId")
    # A second tab of the same browser (one context: the same localStorage).
    second = pages.new_tab(browser, page_server, tabs, ARTIFACTS, context=first.context)
    second.open()
    second.use(ref)
    second.expect_terminal()
    assert second.page.evaluate("window.ide.terminalId") == terminal_id

    # The shell prints what it computes, so a row `from-first-42` is output, not the echo of the typed line.
    first.type_in_terminal("echo from-first-$((6*7))")
    for tab in (first, second):
        tab.wait_screen("^from-first-42$")
    second.type_in_terminal("echo from-second-$((7*8))")
    for tab in (first, second):
        tab.wait_screen("^from-second-56$")
    (shell,) = shells(page_server, ref)
    assert shell["id"] == terminal_id and shell["attached"] == 2
    first.shot("02-shared-first-tab")
    second.shot("03-shared-second-tab")

    # New shell in one tab: a shell of its own, and the shared one goes on in the other.
    first.page.click("#terminal-restart")
    first.page.wait_for_function("(old) => window.ide.terminalId && window.ide.terminalId !== old", arg=terminal_id)
    first.expect_terminal()
    second.type_in_terminal("echo still-$((8*9))")
    second.wait_screen("^still-72$")
    assert second.page.evaluate("window.ide.terminalId") == terminal_id
    assert len(shells(page_server, ref)) == 2
    first.check_clean()
    second.check_clean()


def test_a_tab_in_another_browser_joins_the_running_shell(
    browser: Browser, page_server: Server, rest: Rest, tabs: list[PageTab]
) -> None:
    ref = {"projectId": new_project("term"), "workspaceId": "joined"}
    rest.start(ref)
    first = pages.new_tab(browser, page_server, tabs, ARTIFACTS)
    first.open()
    first.use(ref)
    first.expect_terminal()
    pid = first.shell_pid("first")
    # Another context: nothing in its localStorage names the shell; the process list finds it.
    other = pages.new_tab(browser, page_server, tabs, ARTIFACTS)
    other.open()
    other.use(ref)
    other.expect_terminal()
    assert other.page.evaluate("window.ide.terminalId") == first.page.evaluate("window.ide.terminalId")
    assert other.shell_pid("other") == pid
    first.wait_screen(f"^other={pid}$")
    assert len(shells(page_server, ref)) == 1
    first.check_clean()
    other.check_clean()
