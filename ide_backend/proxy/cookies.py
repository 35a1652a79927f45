"""Cookies across the proxy: ours never reaches the workspace, and the workspace's stay below its own prefix."""

from __future__ import annotations

from ..api.auth import COOKIE_NAME, PREVIEW_COOKIE_NAME

OURS = frozenset({COOKIE_NAME, PREVIEW_COOKIE_NAME})  # the backend's own cookies: the /ide/ and /preview/ sessions


def strip_cookie(header: str, name: str | frozenset[str]) -> str:
    """A Cookie header without the cookies called `name` (or any of the names)."""
    names = {name} if isinstance(name, str) else name
    kept = [part.strip() for part in header.split(";") if part.strip() and part.split("=", 1)[0].strip() not in names]
    return "; ".join(kept)


def rewrite_set_cookie(value: str, prefix: str) -> str | None:
    """Keep upstream's cookie below `prefix` (code-server would scope its session cookie to / otherwise, where every
    workspace would share it) and without a Domain; None drops a cookie that tries to replace one of ours."""
    parts = [part.strip() for part in value.split(";")]
    if not parts or parts[0].split("=", 1)[0].strip() in OURS:
        return None
    out = [parts[0]]
    has_path = False
    for attr in parts[1:]:
        key, _, val = attr.partition("=")
        key = key.strip().lower()
        if key == "domain" or not attr:
            continue
        if key == "path":
            has_path = True
            path = val.strip()
            attr = f"Path={path if below(path, prefix) else join(prefix, path)}"
        out.append(attr)
    if not has_path:
        out.append(f"Path={prefix}")
    return "; ".join(out)


def below(path: str, prefix: str) -> bool:
    return path == prefix.rstrip("/") or path.startswith(prefix)


def join(prefix: str, path: str) -> str:
    return prefix.rstrip("/") + "/" + path.lstrip("/")
