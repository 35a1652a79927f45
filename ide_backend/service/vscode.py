"""VS Code (code-server) user settings: read the JSON-with-comments file it keeps, set the colour theme."""

from __future__ import annotations

import json
from typing import Any

from ..errors import Conflict

SETTINGS_PATH = ".local/share/code-server/User/settings.json"  # relative to the workspace user's home
THEME_KEY = "workbench.colorTheme"


def strip_jsonc(text: str) -> str:
    """Remove // and /* */ comments and trailing commas outside strings, as VS Code's own parser allows."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            i = j + 1
        elif text.startswith("//", i):
            nl = text.find("\n", i)
            i = n if nl < 0 else nl
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif ch == ",":
            j = i + 1
            while j < n and text[j] in " \t\r\n":
                j += 1
            if j < n and text[j] in "}]":
                i += 1  # trailing comma
            else:
                out.append(ch)
                i += 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def set_theme(existing: bytes | None, theme: str) -> bytes:
    """The settings file with the theme set and every other setting kept (comments are not kept)."""
    settings: dict[str, Any] = {}
    if existing is not None and existing.strip():
        try:
            parsed = json.loads(strip_jsonc(existing.decode("utf-8-sig")))
        except (UnicodeDecodeError, ValueError) as exc:
            raise Conflict(
                f"The VS Code settings file ~/{SETTINGS_PATH} is not valid JSON ({exc}); fix or delete it, "
                "then set the theme again"
            ) from exc
        if not isinstance(parsed, dict):
            raise Conflict(f"The VS Code settings file ~/{SETTINGS_PATH} holds no JSON object; fix or delete it")
        settings = parsed
    settings[THEME_KEY] = theme
    return (json.dumps(settings, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
