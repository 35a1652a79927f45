"""Which headers cross the proxy, and how: hop-by-hop and forwarding headers dropped (RFC 9110 7.6.1), our cookie
and the API token kept from the workspace, upstream's redirects and cookies kept below the workspace's prefix."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

from ..api.auth import bearer
from .cookies import OURS, below, join, rewrite_set_cookie, strip_cookie

# RFC 9110 7.6.1 hop-by-hop headers, plus what this proxy sets itself.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
REQUEST_DROP = HOP_BY_HOP | {"host", "forwarded", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto"}
REQUEST_DROP |= {"x-forwarded-prefix", "x-real-ip", "expect"}  # uvicorn has answered any 100-continue
# The handshake headers of the browser's websocket belong to that connection; aiohttp makes its own.
WS_REQUEST_DROP = REQUEST_DROP | {
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
    "sec-websocket-protocol",
    "sec-websocket-accept",
    "content-length",
}


def _connection_listed(headers: Iterable[tuple[str, str]]) -> set[str]:
    """Header names a Connection header declares hop-by-hop."""
    names: set[str] = set()
    for name, value in headers:
        if name.lower() == "connection":
            names.update(part.strip().lower() for part in value.split(",") if part.strip())
    return names


def request_headers(
    headers: Iterable[tuple[str, str]],
    *,
    drop: frozenset[str] = REQUEST_DROP,
    is_token: Callable[[str], bool] | None = None,
    cookie_name: str | frozenset[str] = OURS,
) -> list[tuple[str, str]]:
    """The client's headers fit to send upstream: no hop-by-hop or forwarding headers, not our cookies, not the
    API token (neither is the workspace's business)."""
    items = list(headers)
    listed = _connection_listed(items)
    out: list[tuple[str, str]] = []
    for name, value in items:
        lower = name.lower()
        if lower in drop or lower in listed:
            continue
        if lower == "authorization" and is_token is not None and is_token(bearer(value) or ""):
            continue
        if lower == "cookie":
            value = strip_cookie(value, cookie_name)
            if not value:
                continue
        out.append((name, value))
    return out


def response_headers(
    headers: Iterable[tuple[str, str]], prefix: str, upstream_hosts: Iterable[str]
) -> list[tuple[str, str]]:
    """Upstream's headers fit for the browser: no hop-by-hop, cookies and redirects kept below `prefix`."""
    items = list(headers)
    listed = _connection_listed(items)
    hosts = {h.lower() for h in upstream_hosts}
    out: list[tuple[str, str]] = []
    for name, value in items:
        lower = name.lower()
        if lower in HOP_BY_HOP or lower in listed:
            continue
        if lower == "set-cookie":
            rewritten = rewrite_set_cookie(value, prefix)
            if rewritten is None:
                continue
            value = rewritten
        elif lower in ("location", "content-location"):
            value = rewrite_location(value, prefix, hosts)
        out.append((name, value))
    return out


def rewrite_location(value: str, prefix: str, upstream_hosts: set[str]) -> str:
    """A redirect upstream meant for its own root, put below `prefix`; relative ones ('./login') are fine as they
    are, and so are redirects to other sites."""
    parts = urlsplit(value)
    if parts.netloc and parts.netloc.lower() not in upstream_hosts:
        return value
    if parts.netloc or value.startswith("/"):
        if value.startswith("//"):
            return value
        path = parts.path or "/"
        target = path if below(path, prefix) else join(prefix, path)
        return target + (f"?{parts.query}" if parts.query else "") + (f"#{parts.fragment}" if parts.fragment else "")
    return value


def without_param(query: str, name: str) -> str:
    """The raw query string without the `name` parameters; the others stay exactly as they were sent."""
    return "&".join(part for part in query.split("&") if part and part.split("=", 1)[0] != name)


def sendable_close_code(code: int | None) -> int:
    """A close code that may go on the wire (1005/1006/1015 are reserved for reporting)."""
    if code is None or code in (1005, 1006, 1015) or not (1000 <= code <= 4999):
        return 1000 if code in (None, 1005) else 1011
    return code
