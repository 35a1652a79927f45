"""schemathesis against a live server with every check: the OpenAPI document and the server agree.

No server error and no answer outside the document (status, content type, body, headers), a request the document
allows is never refused as malformed (400/422) and one it forbids is never accepted, an undeclared method gets 405
with `Allow`, and a request without the token gets 401. Any finding fails the test.

Nothing is excluded but what JSON Schema cannot state (tests/schemathesis_hooks.py says what and why). The run is
bounded (a fixed seed and a fixed number of examples per operation) and really creates containers on a server of
its own; everything it made is removed by that server's instance label.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .harness import leftovers, remove_instance
from .helpers import TOKEN, start_server

pytestmark = pytest.mark.docker

HOOKS = Path(__file__).with_name("schemathesis_hooks.py")
SEED = 20261128
# Per operation and phase: about 1,850 requests in a minute and a half (three other seeds at 100 found nothing).
MAX_EXAMPLES = 60


def test_schemathesis_with_every_check_finds_nothing(tmp_path: Path) -> None:
    cli = Path(sys.executable).with_name("st")
    if not cli.exists():
        pytest.fail("schemathesis is not installed: scripts/setup.sh --test installs the test extras")
    # A fuzzer sends many wrong tokens on purpose (ignored_auth): the limiter must not turn them into 429s.
    srv = start_server(tmp_path, IDE_AUTH_FAILURE_LIMIT="1000000")
    try:
        began = time.monotonic()
        result = subprocess.run(
            [
                str(cli),
                "run",
                f"{srv.url}/openapi.json",
                "--header",
                f"Authorization: Bearer {TOKEN}",
                "--checks",
                "all",
                "--max-examples",
                str(MAX_EXAMPLES),
                "--seed",
                str(SEED),
                "--generation-database",
                "none",  # no replay of earlier runs' failures: the same cases every time
                "--workers",
                "2",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "SCHEMATHESIS_HOOKS": str(HOOKS)},
            cwd=tmp_path,
        )
        seconds = time.monotonic() - began
        report = result.stdout[-8000:] + result.stderr[-2000:]
        summary = result.stdout.split("SUMMARY")[-1]
        assert result.returncode == 0, report
        assert " passed" in summary and "failed" not in summary, report
        print(f"schemathesis: {_cases(summary)} in {seconds:.0f} s")
        assert " 500 " not in srv.log()
    finally:
        srv.stop()
        remove_instance(srv.instance)
    assert leftovers(srv.instance) == ([], [])


def _cases(summary: str) -> str:
    """The summary's count of test cases ("1234 generated, 1234 passed, 27 skipped")."""
    lines = [line.strip() for line in summary.splitlines() if " generated" in line]
    return lines[0] if lines else summary[-200:]
