"""The IDE reverse proxy: /ide/{projectId}/{workspaceId}/... to the code-server inside that workspace's container.

HTTP requests and responses are streamed both ways (nothing is buffered), websockets are passed through frame by
frame (text and binary), hop-by-hop headers are dropped and the path prefix is stripped: code-server uses relative
URLs only, so it works below any prefix as long as the prefix ends with a slash (/ide/p/w is redirected to
/ide/p/w/). The browser's Host and Origin go upstream unchanged, so code-server's own origin check holds.

Access: the API token opens the IDE once, as `?token=` on a navigation; the answer sets an HttpOnly,
SameSite=Strict cookie scoped to /ide/{projectId}/{workspaceId}/ holding an expiry and an HMAC of it (keyed by a
key derived from the token, never the token itself) and sends the browser to the same URL without the token: a 303
when the navigation started on this site, else a page that navigates by itself (a Strict cookie set during a
redirect chain that began on another site would not be sent on the redirect's next request).
`Authorization: Bearer <token>` works too, for programs. Neither the token nor the cookie is passed upstream, and
code-server's password stays as a second lock.

    proxy = IDEProxy(resolve, token=api_token, limiter=limiter)
    routes = [*api_routes, *proxy.routes()]          # and `await proxy.close()` on shutdown
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import html
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Protocol
from urllib.parse import quote, urlsplit

import aiohttp
from multidict import CIMultiDict
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from yarl import URL

from ..api.models import ID_PATTERN
from ..errors import IDEError, IDETimeout, IDEUnavailable, NotFound, TooManyAttempts, Unauthorized

log = logging.getLogger(__name__)

Resolver = Callable[[str, str], Awaitable[tuple[str, int]]]
"""(projectId, workspaceId) -> (host, port) of the workspace's code-server; raises NotFound, NotRunning, ..."""

PREFIX = "/ide"
COOKIE_NAME = "ide_session"
TOKEN_PARAM = "token"  # noqa: S105 - the name of the query parameter, not a secret
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

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
_REQUEST_DROP = HOP_BY_HOP | {"host", "forwarded", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto"}
_REQUEST_DROP |= {"x-forwarded-prefix", "x-real-ip", "expect"}  # uvicorn has answered any 100-continue
# The handshake headers of the browser's websocket belong to that connection; aiohttp makes its own.
_WS_REQUEST_DROP = _REQUEST_DROP | {
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
    "sec-websocket-protocol",
    "sec-websocket-accept",
    "content-length",
}
_ID = re.compile(ID_PATTERN)


class FailureCounter(Protocol):
    """Throttling of wrong tokens per client address (ide_backend.api.middleware.FailureLimiter fits)."""

    def blocked_for(self, client: str) -> float: ...

    def failed(self, client: str) -> None: ...


# -- headers ---------------------------------------------------------------------------------------------------


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
    drop: frozenset[str] = _REQUEST_DROP,
    token: str = "",
    cookie_name: str = COOKIE_NAME,
) -> list[tuple[str, str]]:
    """The client's headers fit to send upstream: no hop-by-hop or forwarding headers, not our cookie, not the
    API token (neither is the workspace's business)."""
    items = list(headers)
    listed = _connection_listed(items)
    out: list[tuple[str, str]] = []
    for name, value in items:
        lower = name.lower()
        if lower in drop or lower in listed:
            continue
        if lower == "authorization" and token and _bearer(value) is not None:
            presented = _bearer(value) or ""
            if hmac.compare_digest(presented.encode(), token.encode()):
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


def strip_cookie(header: str, name: str) -> str:
    """A Cookie header without the cookies called `name`."""
    kept = [part.strip() for part in header.split(";") if part.strip() and part.split("=", 1)[0].strip() != name]
    return "; ".join(kept)


def rewrite_set_cookie(value: str, prefix: str) -> str | None:
    """Keep upstream's cookie below `prefix` (code-server would scope its session cookie to / otherwise, where every
    workspace would share it) and without a Domain; None drops a cookie that tries to replace ours."""
    parts = [part.strip() for part in value.split(";")]
    if not parts or parts[0].split("=", 1)[0].strip() == COOKIE_NAME:
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
            attr = f"Path={path if _below(path, prefix) else _join(prefix, path)}"
        out.append(attr)
    if not has_path:
        out.append(f"Path={prefix}")
    return "; ".join(out)


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
        target = path if _below(path, prefix) else _join(prefix, path)
        return target + (f"?{parts.query}" if parts.query else "") + (f"#{parts.fragment}" if parts.fragment else "")
    return value


def _below(path: str, prefix: str) -> bool:
    return path == prefix.rstrip("/") or path.startswith(prefix)


def _join(prefix: str, path: str) -> str:
    return prefix.rstrip("/") + "/" + path.lstrip("/")


def _bearer(value: str) -> str | None:
    scheme, _, credentials = value.partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else None


def without_param(query: str, name: str) -> str:
    """The raw query string without the `name` parameters; the others stay exactly as they were sent."""
    return "&".join(part for part in query.split("&") if part and part.split("=", 1)[0] != name)


def _sendable_close_code(code: int | None) -> int:
    """A close code that may go on the wire (1005/1006/1015 are reserved for reporting)."""
    if code is None or code in (1005, 1006, 1015) or not (1000 <= code <= 4999):
        return 1000 if code in (None, 1005) else 1011
    return code


# -- the proxy -------------------------------------------------------------------------------------------------


class IDEProxy:
    """Routes for /ide/{projectId}/{workspaceId}/... that stream to the workspace's code-server."""

    def __init__(
        self,
        resolve: Resolver,
        *,
        token: str,
        limiter: FailureCounter | None = None,
        cookie_ttl: float = 12 * 3600,
        connect_timeout: float = 10.0,
        response_timeout: float = 300.0,
        websocket_heartbeat: float = 30.0,
        max_message_bytes: int = 64 * 1024 * 1024,
        resolve_ttl: float = 2.0,
    ) -> None:
        if not token:
            raise ValueError("the proxy needs the API token")
        self._resolve = resolve
        self._token = token
        # The cookie key is derived from the token: rotating the token ends every IDE session.
        self._key = hmac.new(token.encode(), b"ide-backend proxy cookie v1", hashlib.sha256).digest()
        self._limiter = limiter
        self.cookie_ttl = cookie_ttl
        self._connect_timeout = connect_timeout
        self._response_timeout = response_timeout
        self._heartbeat = websocket_heartbeat
        self._max_message = max_message_bytes
        self._resolve_ttl = resolve_ttl
        self._resolved: dict[tuple[str, str], tuple[float, tuple[str, int]]] = {}
        self._session: aiohttp.ClientSession | None = None

    def routes(self) -> list[BaseRoute]:
        path = PREFIX + "/{project_id}/{workspace_id}"
        return [
            Route(path, self._add_slash, methods=METHODS),
            Route(path + "/{path:path}", self._http, methods=METHODS),
            WebSocketRoute(path + "/{path:path}", self._websocket),
        ]

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def ready(self, host: str, port: int, timeout: float = 1.0) -> bool:
        """Whether code-server answers its health check at host:port (for a readiness flag in status)."""
        try:
            async with asyncio.timeout(timeout), self._client().get(f"http://{host}:{port}/healthz") as response:
                await response.read()
                return response.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=15),
                cookie_jar=aiohttp.DummyCookieJar(),  # cookies belong to the browsers, never to this process
                auto_decompress=False,  # bytes pass as they came, Content-Encoding and Content-Length stay right
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout, sock_read=None),
            )
        return self._session

    # -- the session cookie --------------------------------------------------------------------------------------

    def _sign(self, project_id: str, workspace_id: str, expires: int) -> str:
        message = f"{project_id}\0{workspace_id}\0{expires}".encode()
        digest = hmac.new(self._key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def issue_cookie(self, project_id: str, workspace_id: str, now: float | None = None) -> str:
        """The cookie value for one workspace: `<expiry>.<HMAC(project, workspace, expiry)>`."""
        expires = int((time.time() if now is None else now) + self.cookie_ttl)
        return f"{expires}.{self._sign(project_id, workspace_id, expires)}"

    def cookie_valid(self, value: str, project_id: str, workspace_id: str, now: float | None = None) -> bool:
        expires_raw, _, signature = value.partition(".")
        if not expires_raw.isdigit() or not signature:
            return False
        expires = int(expires_raw)
        if expires < (time.time() if now is None else now):
            return False
        return hmac.compare_digest(signature.encode(), self._sign(project_id, workspace_id, expires).encode())

    def _cookie_values(self, headers: Iterable[tuple[str, str]]) -> list[str]:
        """Every value of our cookie (a browser may send more than one)."""
        values = []
        for name, header in headers:
            if name.lower() != "cookie":
                continue
            for part in header.split(";"):
                key, _, value = part.strip().partition("=")
                if key == COOKIE_NAME:
                    values.append(value)
        return values

    def _authenticated(self, conn: Request | WebSocket, project_id: str, workspace_id: str) -> bool:
        items = conn.headers.items()
        if any(self.cookie_valid(v, project_id, workspace_id) for v in self._cookie_values(items)):
            return True
        authorization = conn.headers.get("authorization")
        presented = _bearer(authorization) if authorization else None
        if presented is None:
            return False
        if wait := self._blocked(conn):
            raise TooManyAttempts(wait)
        return self._token_ok(conn, presented)

    def _token_ok(self, conn: Request | WebSocket, presented: str) -> bool:
        client = conn.client.host if conn.client else "unknown"
        if hmac.compare_digest(presented.encode(), self._token.encode()):
            return True
        if self._limiter is not None:
            self._limiter.failed(client)
        return False

    def _blocked(self, conn: Request | WebSocket) -> float:
        if self._limiter is None:
            return 0.0
        return self._limiter.blocked_for(conn.client.host if conn.client else "unknown")

    # -- resolving ---------------------------------------------------------------------------------------------

    @staticmethod
    def _ids(conn: Request | WebSocket) -> tuple[str, str]:
        project_id, workspace_id = conn.path_params["project_id"], conn.path_params["workspace_id"]
        for value in (project_id, workspace_id):
            if not _ID.match(value) or value.endswith("."):
                raise NotFound(f"No such workspace: {value!r} is not a valid projectId/workspaceId")
        return project_id, workspace_id

    async def _upstream(self, project_id: str, workspace_id: str) -> tuple[str, int]:
        """The workspace's code-server address, remembered briefly (a page load is hundreds of requests)."""
        key = (project_id, workspace_id)
        cached = self._resolved.get(key)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return cached[1]
        address = await self._resolve(project_id, workspace_id)
        self._resolved[key] = (now + self._resolve_ttl, address)
        if len(self._resolved) > 4096:
            self._resolved = {k: v for k, v in self._resolved.items() if v[0] > now}
        return address

    def _forget(self, project_id: str, workspace_id: str) -> None:
        self._resolved.pop((project_id, workspace_id), None)

    @staticmethod
    def _prefix(project_id: str, workspace_id: str) -> str:
        return f"{PREFIX}/{project_id}/{workspace_id}/"

    @staticmethod
    def _upstream_target(conn: Request | WebSocket, prefix: str) -> str:
        """Path and query as the browser sent them (still percent-encoded), below the prefix."""
        raw: bytes = conn.scope.get("raw_path") or quote(conn.scope["path"]).encode()
        path = raw.decode("latin-1")
        rest = path[len(prefix) :] if path.startswith(prefix) else quote(conn.path_params.get("path", ""))
        query = without_param(conn.scope.get("query_string", b"").decode("latin-1"), TOKEN_PARAM)
        return "/" + rest + (f"?{query}" if query else "")

    # -- HTTP --------------------------------------------------------------------------------------------------

    async def _add_slash(self, request: Request) -> Response:
        """code-server's URLs are relative: its root must end with a slash."""
        self._ids(request)
        query = request.url.query
        return RedirectResponse(request.url.path + "/" + (f"?{query}" if query else ""), status_code=308)

    async def _http(self, request: Request) -> Response:
        try:
            return await self._serve(request)
        except IDEError as exc:
            if _is_navigation(request):
                return _error_page(exc)
            raise

    async def _serve(self, request: Request) -> Response:
        project_id, workspace_id = self._ids(request)
        prefix = self._prefix(project_id, workspace_id)
        presented = request.query_params.get(TOKEN_PARAM)
        if presented is not None and request.method in ("GET", "HEAD"):
            return self._open(request, presented, project_id, workspace_id, prefix)
        if not self._authenticated(request, project_id, workspace_id):
            raise Unauthorized(
                f"Open the IDE with the API token once: {prefix}?token=<API token>; that sets a session cookie for "
                "this workspace (or send 'Authorization: Bearer <token>')"
            )
        host, port = await self._upstream(project_id, workspace_id)
        target = self._upstream_target(request, prefix)
        headers = request_headers(request.headers.items(), token=self._token)
        headers += _forwarded(request, prefix)
        headers.append(("Host", request.headers.get("host", f"{host}:{port}")))
        has_body = "transfer-encoding" in request.headers or request.headers.get("content-length", "0") != "0"
        url = URL(f"http://{host}:{port}{target}", encoded=True)
        try:
            async with asyncio.timeout(self._response_timeout):
                upstream = await self._client().request(
                    request.method,
                    url,
                    headers=CIMultiDict(headers),
                    data=_body(request) if has_body else None,
                    allow_redirects=False,
                    compress=None,
                )
        except TimeoutError as exc:
            raise IDETimeout(
                f"code-server in {project_id}/{workspace_id} did not answer within {self._response_timeout:g} s"
            ) from exc
        except aiohttp.ClientError as exc:
            self._forget(project_id, workspace_id)
            raise IDEUnavailable(
                f"code-server in {project_id}/{workspace_id} does not answer on port {port} "
                f"({exc.__class__.__name__}); it may still be starting: try again in a moment",
                retryAfter=2,
            ) from exc
        upstream_hosts = {f"{host}:{port}", request.headers.get("host", "")}
        response = StreamingResponse(_stream(upstream), status_code=upstream.status)
        response.raw_headers = [
            (name.encode("latin-1"), value.encode("latin-1"))
            for name, value in response_headers(_raw_items(upstream), prefix, upstream_hosts)
        ]
        return response

    def _open(self, request: Request, presented: str, project_id: str, workspace_id: str, prefix: str) -> Response:
        """?token=: check it, set the session cookie, and send the browser to the URL without the token."""
        if wait := self._blocked(request):
            raise TooManyAttempts(wait)
        if not self._token_ok(request, presented):
            raise Unauthorized("The token is wrong; open the IDE with ?token=<API token>")
        query = without_param(request.url.query, TOKEN_PARAM)
        target = request.url.path + (f"?{query}" if query else "")
        # A SameSite=Strict cookie set on a redirect that began on another site is not sent on the redirect's next
        # request; a page that navigates by itself starts a same-site navigation, which does carry it.
        if request.headers.get("sec-fetch-site", "none") in ("none", "same-origin"):
            response: Response = RedirectResponse(target, status_code=303)
        else:
            link = html.escape(target, quote=True)
            response = HTMLResponse(
                f'<!doctype html><meta http-equiv="refresh" content="0;url={link}">'
                f'<title>Opening the IDE</title><a href="{link}">Open the IDE</a>\n'
            )
        response.headers["cache-control"] = "no-store"
        response.headers["referrer-policy"] = "no-referrer"
        response.set_cookie(
            COOKIE_NAME,
            self.issue_cookie(project_id, workspace_id),
            max_age=int(self.cookie_ttl),
            path=prefix,
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )
        return response

    # -- websockets --------------------------------------------------------------------------------------------

    async def _websocket(self, websocket: WebSocket) -> None:
        try:
            project_id, workspace_id = self._ids(websocket)
            if not self._authenticated(websocket, project_id, workspace_id):
                raise Unauthorized("No valid IDE session for this workspace; open the IDE with ?token= first")
            host, port = await self._upstream(project_id, workspace_id)
        except IDEError as exc:
            await _deny(websocket, exc)
            return
        prefix = self._prefix(project_id, workspace_id)
        target = self._upstream_target(websocket, prefix)
        headers = request_headers(websocket.headers.items(), drop=_WS_REQUEST_DROP, token=self._token)
        headers += _forwarded(websocket, prefix)
        headers.append(("Host", websocket.headers.get("host", f"{host}:{port}")))
        url = URL(f"http://{host}:{port}{target}", encoded=True)
        try:
            upstream = await self._client().ws_connect(
                url,
                headers=CIMultiDict(headers),
                protocols=websocket.scope.get("subprotocols") or (),
                heartbeat=self._heartbeat,
                max_msg_size=self._max_message,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=10.0),
            )
        except aiohttp.WSServerHandshakeError as exc:
            await _deny(websocket, IDEUnavailable(f"code-server refused the websocket ({exc.status} {exc.message})"))
            return
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._forget(project_id, workspace_id)
            await _deny(
                websocket, IDEUnavailable(f"code-server in {project_id}/{workspace_id} does not answer ({exc})")
            )
            return
        try:
            await websocket.accept(subprotocol=upstream.protocol)
            await _pump(websocket, upstream)
        finally:
            await upstream.close()


# -- helpers the handlers share ----------------------------------------------------------------------------------


def _forwarded(conn: Request | WebSocket, prefix: str) -> list[tuple[str, str]]:
    scheme = conn.url.scheme.replace("ws", "http", 1) if conn.url.scheme.startswith("ws") else conn.url.scheme
    out = [("X-Forwarded-Proto", scheme), ("X-Forwarded-Prefix", prefix.rstrip("/"))]
    if conn.client:
        out.append(("X-Forwarded-For", conn.client.host))
    if "host" in conn.headers:
        out.append(("X-Forwarded-Host", conn.headers["host"]))
    return out


def _raw_items(response: aiohttp.ClientResponse) -> list[tuple[str, str]]:
    return [(name.decode("latin-1"), value.decode("latin-1")) for name, value in response.raw_headers]


async def _body(request: Request) -> AsyncIterator[bytes]:
    async for chunk in request.stream():
        if chunk:
            yield chunk


async def _stream(upstream: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    try:
        async for chunk in upstream.content.iter_any():
            yield chunk
    finally:
        upstream.release()  # back to the pool when read to the end, closed otherwise


def _is_navigation(request: Request) -> bool:
    mode = request.headers.get("sec-fetch-mode")
    if mode is not None:
        return mode == "navigate"
    return request.method == "GET" and "text/html" in request.headers.get("accept", "")


def _error_page(exc: IDEError) -> Response:
    """A failure a person sees in the browser tab: said in words; a starting code-server is retried by itself."""
    refresh = '<meta http-equiv="refresh" content="2">' if isinstance(exc, IDEUnavailable) else ""
    page = f"<!doctype html>{refresh}<title>IDE: {exc.code}</title><p>{html.escape(exc.message)}</p>\n"
    response = HTMLResponse(page, status_code=exc.status_code, headers={"cache-control": "no-store"})
    if isinstance(exc, IDEUnavailable):
        response.headers["retry-after"] = "2"
    return response


async def _deny(websocket: WebSocket, error: IDEError) -> None:
    """Refuse a websocket handshake with the error's HTTP status where the server can, else close it (1008)."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(JSONResponse(error.to_json(), status_code=error.status_code))
    else:
        await websocket.close(code=1008, reason=error.message[:120])


async def _pump(websocket: WebSocket, upstream: aiohttp.ClientWebSocketResponse) -> None:
    """Frames both ways until either side closes; the close code travels to the other side."""

    async def browser_to_upstream() -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                await upstream.close(code=_sendable_close_code(message.get("code")))
                return
            if message.get("text") is not None:
                await upstream.send_str(message["text"])
            elif message.get("bytes") is not None:
                await upstream.send_bytes(message["bytes"])

    async def upstream_to_browser() -> None:
        async for msg in upstream:
            if msg.type == aiohttp.WSMsgType.TEXT:
                await websocket.send_text(msg.data)
            elif msg.type == aiohttp.WSMsgType.BINARY:
                await websocket.send_bytes(msg.data)
            elif msg.type == aiohttp.WSMsgType.ERROR:
                log.debug("upstream websocket error: %s", upstream.exception())
                break
        with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):
            await websocket.close(code=_sendable_close_code(upstream.close_code))

    tasks = [asyncio.create_task(browser_to_upstream()), asyncio.create_task(upstream_to_browser())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, Exception) and not isinstance(
            result, (WebSocketDisconnect, aiohttp.ClientError, ConnectionError, RuntimeError)
        ):
            log.warning("websocket proxy: %r", result)


__all__ = [
    "COOKIE_NAME",
    "PREFIX",
    "FailureCounter",
    "IDEProxy",
    "Resolver",
    "request_headers",
    "response_headers",
    "rewrite_location",
    "rewrite_set_cookie",
    "strip_cookie",
    "without_param",
]
