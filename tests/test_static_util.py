"""The page's id check (static/util.js, and the pattern on the id inputs in static/index.html) against the server's rule.

The real util.js runs under Node, as an ES module the way the browser loads it; an id the page lets through but the
server refuses would only show up as an error after the switch.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ide_backend.api.models import ID_PATTERN as SERVER_ID_PATTERN

STATIC = Path(__file__).resolve().parent.parent / "static"

# The rule in words: 1-63 letters, digits, '_', '-' or '.' (ASCII), starting with a letter or digit, not ending with '.'.
IDS: list[tuple[str, bool]] = [
    ("demo", True),
    ("main", True),
    ("a", True),
    ("7", True),
    ("My_Project-2.0", True),
    ("v1.2.3", True),
    ("a..b", True),
    ("ends-with-dash-", True),
    ("ends_with_underscore_", True),
    ("a" * 63, True),
    ("a" * 62 + "_", True),
    ("", False),
    ("demo.", False),
    ("a.", False),
    ("a..", False),
    (".", False),
    ("a" * 62 + ".", False),
    ("-demo", False),
    ("_demo", False),
    (".demo", False),
    ("a" * 64, False),
    ("a" * 63 + "_", False),
    ("two words", False),
    ("a/b", False),
    ("a:b", False),
    ("demo\n", False),
    (" demo", False),
    ("café", False),
    ("é", False),
    ("\uff44\uff45\uff4d\uff4f", False),  # "demo" in fullwidth letters
    ("\u0663", False),  # an Arabic-Indic digit
    ("demo\u200b", False),  # zero-width space
    ("😀", False),
]

# Reads {"module": a file URL, "ids": [...], "patterns": [...]} on stdin; prints which ids the module's ID_PATTERN
# accepts, and which each pattern accepts compiled as the HTML spec does for a pattern attribute: ^(?:p)$ with flag "v".
SCRIPT = """
import { readFileSync } from "node:fs";
const { module, ids, patterns } = JSON.parse(readFileSync(0, "utf8"));
const { ID_PATTERN } = await import(module);
const accepts = (re) => ids.map((id) => re.test(id));
const asInputDoes = (p) => new RegExp(`^(?:${p})$`, "v");
console.log(JSON.stringify({ util: accepts(ID_PATTERN), patterns: patterns.map((p) => accepts(asInputDoes(p))) }));
"""


def run_node(util_js: Path, patterns: tuple[str, ...] = ()) -> dict[str, Any]:
    """Import util_js in Node and ask it (and the given input patterns) about every id in IDS."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is missing: install Node.js 20 to run the page's modules outside the browser")
    proc = subprocess.run(
        [node, "--input-type=module", "-e", SCRIPT],
        input=json.dumps({"module": util_js.as_uri(), "ids": [value for value, _ in IDS], "patterns": list(patterns)}),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def disagreements(accepted: list[bool]) -> list[tuple[str, bool]]:
    """The ids whose answer differs from the server's, each with the server's answer."""
    return [(value, ok) for (value, ok), got in zip(IDS, accepted, strict=True) if got != ok]


def test_the_table_is_the_servers_rule() -> None:
    accepted = [re.fullmatch(SERVER_ID_PATTERN, value) is not None for value, _ in IDS]
    assert disagreements(accepted) == []


def test_util_id_pattern_accepts_exactly_what_the_server_accepts() -> None:
    wrong = disagreements(run_node(STATIC / "util.js")["util"])
    assert wrong == [], f"static/util.js ID_PATTERN gets these wrong (id, server's answer): {wrong}"


def test_id_inputs_pattern_accepts_exactly_what_the_server_accepts() -> None:
    html = (STATIC / "index.html").read_text()
    patterns = dict(re.findall(r'<input id="(project-id|workspace-id)"[^>]*?\spattern="([^"]*)"', html))
    assert set(patterns) == {"project-id", "workspace-id"}, patterns
    answers = run_node(STATIC / "util.js", tuple(patterns.values()))["patterns"]
    for name, accepted in zip(patterns, answers, strict=True):
        wrong = disagreements(accepted)
        assert wrong == [], (
            f"the pattern on #{name} in static/index.html gets these wrong (id, server's answer): {wrong}"
        )
