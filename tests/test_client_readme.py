"""The README's Python SDK examples, run as written against a real server: every ```python block of its
"## Python SDK" section, in order, each in a fresh namespace, with IDE_URL and IDE_TOKEN set the way a reader
would set them and the `my-project` folder the sync_dir example uploads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ide_backend.client import Client

from .harness import ROOT, Server

PROJECT = "demo"  # the project the examples use


def sdk_examples() -> list[str]:
    text = (ROOT / "README.md").read_text()
    assert "\n## Python SDK\n" in text, "README.md has no Python SDK section"
    section = text.split("\n## Python SDK\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^```python\n(.*?)^```", section, re.DOTALL | re.MULTILINE)


def test_the_readme_shows_the_sdk_with_examples_that_compile() -> None:
    examples = sdk_examples()
    assert len(examples) >= 5
    for number, code in enumerate(examples, 1):
        compile(code, f"README.md, Python SDK example {number}", "exec")


@pytest.mark.docker
def test_the_readme_sdk_examples_run_against_a_real_server(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("IDE_URL", server.url)
    monkeypatch.setenv("IDE_TOKEN", server.token)
    monkeypatch.chdir(tmp_path)
    project = tmp_path / "my-project"
    (project / "src").mkdir(parents=True)
    (project / "src" / "main.py").write_text("print('from my-project')\n")
    (project / "src" / "main.pyc").write_bytes(b"\x00")
    (project / "node_modules" / "left").mkdir(parents=True)
    (project / "node_modules" / "left" / "out.js").write_text("x")
    (project / ".gitignore").write_text("# build output\n*.pyc\nnode_modules/\n")
    try:
        for number, code in enumerate(sdk_examples(), 1):
            program = compile(code, f"README.md, Python SDK example {number}", "exec")
            exec(program, {"__name__": "__main__"})  # noqa: S102 - the README's own examples, run as a reader would
        printed = capsys.readouterr().out
        assert "42" in printed and "409 conflict ['src/a.py']" in printed and "forbidden" in printed
        assert "hello" in printed and "exited requested" in printed
        with Client(server.url, server.token) as client:
            assert list(client.list(project_id=PROJECT)) == []  # the last example cleaned up
    finally:
        with Client(server.url, server.token) as client:
            for info in client.list(project_id=PROJECT):
                client.workspace(PROJECT, info.workspace_id).delete()
