"""Reading VS Code's JSON-with-comments settings and setting the theme in it."""

from __future__ import annotations

import json

import pytest

from ide_backend.errors import Conflict
from ide_backend.service.vscode import THEME_KEY, set_theme, strip_jsonc


def test_strips_comments_and_trailing_commas_but_not_inside_strings() -> None:
    text = '{\n // c\n "url": "http://x//y", /* b */ "s": "a,}", "list": [1, 2,],\n}'
    assert json.loads(strip_jsonc(text)) == {"url": "http://x//y", "s": "a,}", "list": [1, 2]}


def test_escaped_quotes_inside_strings() -> None:
    assert json.loads(strip_jsonc('{"a": "say \\"hi\\" // not a comment"}')) == {"a": 'say "hi" // not a comment'}


def test_set_theme_keeps_other_keys() -> None:
    out = json.loads(set_theme(b'{"editor.fontSize": 14, "workbench.colorTheme": "Old"}', "New"))
    assert out == {"editor.fontSize": 14, THEME_KEY: "New"}


def test_missing_or_empty_file() -> None:
    assert json.loads(set_theme(None, "T")) == {THEME_KEY: "T"}
    assert json.loads(set_theme(b"  \n", "T")) == {THEME_KEY: "T"}


@pytest.mark.parametrize("bad", [b"[1, 2]", b"{not json", b"\xff\xfe"])
def test_refuses_to_clobber_what_it_cannot_read(bad: bytes) -> None:
    with pytest.raises(Conflict):
        set_theme(bad, "T")
