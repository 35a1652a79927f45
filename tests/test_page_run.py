"""The demo page's run box in a real Chromium on a real server and engine: output streams in while the command
runs, the exit code and duration show when it ends, Stop sends SIGINT (then SIGKILL), a reload follows the command
again, the box never acts on a workspace the fields do not show, and a flood of output is cut, saying so.

Screenshots go to artifacts/page-run/ (gitignored), so a person can look at what the tests saw.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, expect

from . import pages
from .harness import Server
from .pages import REPO, PageTab, Rest, new_project, processes

pytestmark = [pytest.mark.docker, pytest.mark.browser]

ARTIFACTS = REPO / "artifacts" / "page-run"
DURATION = re.compile(r"^\d+(\.\d)? s\b|^\d+ ms\b|^\d+ min")


def open_running(browser: Browser, server: Server, rest: Rest, tabs: list[PageTab], name: str) -> PageTab:
    ref = {"projectId": new_project("run"), "workspaceId": name}
    rest.start(ref)
    tab = pages.new_tab(browser, server, tabs, ARTIFACTS)
    tab.open()
    tab.use(ref)
    tab.expect_badge("running")
    expect(tab.page.locator("#run")).to_be_enabled()
    return tab


def run(tab: PageTab, command: str) -> None:
    tab.page.fill("#run-command", command)
    tab.page.click("#run")


def running_commands(server: Server, ref: dict[str, str]) -> list[str]:
    return [p["command"] for p in processes(server, ref) if not p["tty"] and p["running"]]


def test_output_streams_in_before_the_command_ends(
    browser: Browser, page_server: Server, rest: Rest, tabs: list[PageTab]
) -> None:
    tab = open_running(browser, page_server, rest, tabs, "stream")
    page = tab.page
    expect(page.locator("#run-stop")).to_be_disabled()
    run(tab, "for i in $(seq 1 100); do echo $i; sleep 0.1; done; echo done >&2")
    # Ten lines are in the box while the command still runs (it takes ten seconds, printing one line a tenth).
    page.wait_for_function(
        """() => document.getElementById('run-stdout').textContent.startsWith('1\\n2\\n3\\n4\\n5\\n6\\n7\\n8\\n9\\n10\\n')
                 && document.getElementById('run-exit').textContent === 'running…'"""
    )
    expect(page.locator("#run-stop")).to_be_enabled()
    expect(page.locator("#run")).to_be_disabled()
    assert page.locator("#run-stderr").text_content() == ""
    tab.shot("01-streaming")
    expect(page.locator("#run-exit")).to_have_text("exit 0", timeout=60_000)
    expect(page.locator("#run-stdout")).to_have_text("".join(f"{i}\n" for i in range(1, 101)))
    expect(page.locator("#run-stderr")).to_have_text("done\n")
    expect(page.locator("#run-time")).to_have_text(DURATION)
    assert int(page.locator("#run-time").get_attribute("data-duration-ms") or 0) >= 5_000  # 100 sleeps of 0.1 s
    expect(page.locator("#run-stop")).to_be_disabled()
    expect(page.locator("#run-truncated")).to_be_hidden()
    tab.shot("02-done")
    tab.check_clean()


def test_stop_interrupts_and_kills_what_ignores_the_interrupt(
    browser: Browser, page_server: Server, rest: Rest, tabs: list[PageTab]
) -> None:
    tab = open_running(browser, page_server, rest, tabs, "stop")
    page = tab.page
    ref = page.evaluate("window.ide.ref")
    run(tab, "echo begun; sleep 600")
    expect(page.locator("#run-stdout")).to_have_text("begun\n")
    stop = page.locator("#run-stop")
    expect(stop).to_be_enabled()
    expect(stop).to_have_attribute("title", re.compile("SIGINT, then SIGKILL"))

    # A reload follows the command again: its output so far, still running, and Stop still works.
    page.reload()
    tab.expect_badge("running")
    expect(page.locator("#run-stdout")).to_have_text("begun\n")
    expect(page.locator("#run-exit")).to_have_text("running…")
    expect(page.locator("#run-command")).to_have_value("echo begun; sleep 600")
    expect(stop).to_be_enabled()
    tab.shot("03-running-after-reload")
    stop.click()
    expect(page.locator("#run-exit")).to_have_text("exit 130")
    expect(page.locator("#run-time")).to_have_text(DURATION)
    expect(stop).to_be_disabled()
    assert running_commands(page_server, ref) == []
    tab.shot("04-stopped")

    # One that ignores SIGINT is killed a few seconds later.
    run(tab, "trap '' INT; echo stubborn; sleep 600")
    expect(page.locator("#run-stdout")).to_have_text("stubborn\n")
    stop.click()
    expect(page.locator("#run-stop-label")).to_have_text("Kill")
    expect(page.locator("#run-exit")).to_have_text("exit 137", timeout=30_000)
    expect(page.locator("#run-time")).to_contain_text("killed by Stop")
    assert running_commands(page_server, ref) == []
    tab.shot("05-killed")
    tab.check_clean()


def test_the_box_acts_only_on_the_workspace_the_fields_show(
    browser: Browser, page_server: Server, rest: Rest, tabs: list[PageTab]
) -> None:
    tab = open_running(browser, page_server, rest, tabs, "fields")
    page = tab.page
    ref = page.evaluate("window.ide.ref")
    other = {"projectId": ref["projectId"], "workspaceId": "other"}
    rest.start(other)
    run(tab, "echo here; sleep 600")
    expect(page.locator("#run-stdout")).to_have_text("here\n")

    # Another id typed, not applied: Stop would act on a workspace the fields do not show, so it is off.
    page.fill("#workspace-id", "other")
    stop = page.locator("#run-stop")
    expect(stop).to_be_disabled()
    expect(stop).to_have_attribute("title", re.compile(f"runs in {ref['projectId']}/fields: switch back"))
    tab.shot("06-fields-changed")
    # Applied: the box is the other workspace's (empty); the command runs on where it was.
    page.press("#workspace-id", "Enter")
    tab.expect_ref(other)
    tab.expect_badge("running")
    expect(page.locator("#run-stdout")).to_have_text("")
    expect(page.locator("#run-exit")).to_be_hidden()
    expect(stop).to_be_disabled()
    assert running_commands(page_server, ref) == ["echo here; sleep 600"]
    assert running_commands(page_server, other) == []
    # Back: followed again, and stopped there.
    tab.use(ref)
    expect(page.locator("#run-stdout")).to_have_text("here\n")
    expect(stop).to_be_enabled()
    stop.click()
    expect(page.locator("#run-exit")).to_have_text("exit 130")
    tab.check_clean()


def test_a_flood_of_output_is_cut_and_the_page_says_so(
    browser: Browser, page_server: Server, rest: Rest, tabs: list[PageTab]
) -> None:
    tab = open_running(browser, page_server, rest, tabs, "flood")
    page = tab.page
    run(tab, "seq 1 1000000")  # 6.9 MB
    expect(page.locator("#run-exit")).to_have_text("exit 0", timeout=120_000)
    truncated = page.locator("#run-truncated")
    expect(truncated).to_be_visible()
    expect(truncated).to_contain_text("output truncated")
    expect(truncated).to_contain_text("of stdout dropped")
    shown: str = page.evaluate("document.getElementById('run-stdout').textContent")
    assert shown.endswith("\n999999\n1000000\n")
    assert len(shown) <= 256 * 1024
    tab.shot("07-flood")
    # The page still answers: a next command runs and shows, and the note goes.
    run(tab, "echo after")
    expect(page.locator("#run-stdout")).to_have_text("after\n")
    expect(truncated).to_be_hidden()
    tab.check_clean()
