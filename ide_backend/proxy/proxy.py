"""The IDE reverse proxy: /ide/{projectId}/{workspaceId}/... to the code-server inside that workspace's container.

HTTP requests and responses are streamed both ways (nothing is buffered), websockets are passed through frame by
frame (text and binary), hop-by-hop headers are dropped and the path prefix is stripped: code-server uses relative
URLs only, so it works below any prefix as long as the prefix ends with a slash (/ide/p/w is redirected to
/ide/p/w/). The browser's Host and Origin go upstream unchanged, so code-server's own origin check holds.

Access goes through the same Authenticator as the API (ide_backend.api.auth): the API token opens the IDE once,
as `?token=` on a navigation; the answer sets an HttpOnly, SameSite=Strict cookie scoped to
/ide/{projectId}/{workspaceId}/ (the authenticator's IDE session: an expiry and an HMAC of it, never the token) and
sends the browser to the same URL without the token: a 303 when the navigation started on this site, else a page
that navigates by itself (a Strict cookie set during a redirect chain that began on another site would not be sent
on the redirect's next request). `Authorization: Bearer <token>` works too, for programs. Neither the token nor
the cookie is passed upstream. With `sign_in` the proxy signs in to code-server itself and keeps its session
cookie server-side (signin.py), so code-server's password still locks its port but the user logs in once, and an
open workbench reloads itself when the workspace runs a new code-server (reload.py).

    proxy = IDEProxy(resolve, authenticator)
    routes = [*api_routes, *proxy.routes()]          # and `await proxy.close()` on shutdown
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractContextManager
from typing import Literal
from urllib.parse import quote

import aiohttp
from multidict import CIMultiDict
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from yarl import URL

from ..api.answers import deny, error_page
from ..api.auth import COOKIE_NAME, TOKEN_PARAM, Authenticator, Credential
from ..api.models import ID_PATTERN
from ..errors import IDEError, IDETimeout, IDEUnavailable, NotFound
from ..service.domain import WorkspaceRef
from .headers import WS_REQUEST_DROP, request_headers, response_headers, sendable_close_code, without_param
from .signin import SignIn, TargetLookup

log = logging.getLogger(__name__)

Resolver = Callable[[WorkspaceRef], Awaitable[tuple[str, int]]]
"""A workspace -> (host, port) of its code-server; raises NotFound, NotRunning, ..."""
Activity = Callable[[WorkspaceRef, str], AbstractContextManager[None]]
"""Marks a workspace in use while the block runs (an open VS Code session keeps it from its idle stop)."""
HeaderHook = Callable[[list[tuple[str, str]]], list[tuple[str, str]]]
"""Changes the headers a request sends upstream (the /ide/ proxy's sign-in adds code-server's session cookie)."""

PREFIX = "/ide"
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
_ID = re.compile(ID_PATTERN)


class IDEProxy:
    """Routes for /ide/{projectId}/{workspaceId}/... that stream to the workspace's code-server."""

    def __init__(
        self,
        resolve: Resolver,
        authenticator: Authenticator,
        *,
        activity: Activity | None = None,
        connect_timeout: float = 10.0,
        response_timeout: float = 300.0,
        websocket_heartbeat: float = 30.0,
        max_message_bytes: int = 64 * 1024 * 1024,
        resolve_ttl: float = 2.0,
        sign_in: TargetLookup | None = None,
    ) -> None:
        self._resolve = resolve
        self._auth = authenticator
        self._activity: Activity = activity or (lambda ref, label: contextlib.nullcontext())
        self._connect_timeout = connect_timeout
        self._response_timeout = response_timeout
        self._heartbeat = websocket_heartbeat
        self._max_message = max_message_bytes
        self._resolve_ttl = resolve_ttl
        self._resolved: dict[WorkspaceRef, tuple[float, tuple[str, int]]] = {}
        self._sockets = OpenSockets()
        self._session: aiohttp.ClientSession | None = None
        # With `sign_in`, the proxy signs in to code-server itself (signin.py) and an open workbench reloads after
        # a restart (reload.py); without it, requests pass as the browser sent them.
        self._signin = SignIn(sign_in, self._client, self.ready) if sign_in is not None else None

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
            self._session = new_session(self._connect_timeout)
        return self._session

    # -- resolving ---------------------------------------------------------------------------------------------

    @staticmethod
    def _ref(conn: Request | WebSocket) -> WorkspaceRef:
        project_id, workspace_id = conn.path_params["project_id"], conn.path_params["workspace_id"]
        for value in (project_id, workspace_id):
            if not _ID.match(value) or value.endswith("."):
                raise NotFound(f"No such workspace: {value!r} is not a valid projectId/workspaceId")
        return WorkspaceRef(project_id, workspace_id)

    def _authenticate(self, conn: Request | WebSocket, ref: WorkspaceRef) -> Credential:
        credential = self._auth.authenticate(conn, workspace=ref)
        credential.require(ref, "write")
        return credential

    async def _upstream(self, ref: WorkspaceRef) -> tuple[str, int]:
        """The workspace's code-server address, remembered briefly (a page load is hundreds of requests)."""
        cached = self._resolved.get(ref)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return cached[1]
        address = await self._resolve(ref)
        self._resolved[ref] = (now + self._resolve_ttl, address)
        if len(self._resolved) > 4096:
            self._resolved = {k: v for k, v in self._resolved.items() if v[0] > now}
        return address

    def _forget(self, ref: WorkspaceRef) -> None:
        self._resolved.pop(ref, None)

    @staticmethod
    def _prefix(ref: WorkspaceRef) -> str:
        return f"{PREFIX}/{ref.project_id}/{ref.workspace_id}/"

    # -- HTTP --------------------------------------------------------------------------------------------------

    async def _add_slash(self, request: Request) -> Response:
        """code-server's URLs are relative: its root must end with a slash."""
        self._ref(request)
        query = request.url.query
        return RedirectResponse(request.url.path + "/" + (f"?{query}" if query else ""), status_code=308)

    async def _http(self, request: Request) -> Response:
        try:
            return await self._serve(request)
        except IDEError as exc:
            if is_navigation(request):
                return error_page(exc)
            raise

    async def _serve(self, request: Request) -> Response:
        ref = self._ref(request)
        prefix = self._prefix(ref)
        credential = self._authenticate(request, ref)
        if credential.source == "query" and request.method in ("GET", "HEAD"):
            return self._open(request, ref, prefix, credential)
        target = upstream_target(request, prefix)
        if self._signin is not None and (own := await self._signin.own(request.method, target, ref, prefix)):
            return own
        host, port = await self._upstream(ref)
        with self._activity(ref, "VS Code request"):
            pass  # a request is a use of the workspace
        hook = None if self._signin is None else await self._signin.hook(ref, host, port, request.method, target)
        try:
            response = await forward_http(
                self._client(),
                request,
                host,
                port,
                prefix,
                is_token=self._auth.is_token,
                timeout=self._response_timeout,
                headers_hook=hook,
            )
            if self._signin is not None:
                response = await self._signin.answer(request.method, target, response, ref, prefix)
            return response
        except TimeoutError as exc:
            raise IDETimeout(f"code-server in {ref} did not answer within {self._response_timeout:g} s") from exc
        except aiohttp.ClientError as exc:
            self._forget(ref)
            raise IDEUnavailable(
                f"code-server in {ref} does not answer on port {port} "
                f"({exc.__class__.__name__}); it may still be starting: try again in a moment",
                retryAfter=2,
            ) from exc

    def _open(self, request: Request, ref: WorkspaceRef, prefix: str, credential: Credential) -> Response:
        """A navigation with the right ?token=: set the session cookie and send the browser to the URL without it."""
        value = self._auth.issue_session(ref, credential)
        return open_session(request, COOKIE_NAME, value, int(self._auth.session_ttl), prefix, samesite="strict")

    # -- websockets --------------------------------------------------------------------------------------------

    async def _websocket(self, websocket: WebSocket) -> None:
        try:
            ref = self._ref(websocket)
            credential = self._authenticate(websocket, ref)
            host, port = await self._upstream(ref)
        except IDEError as exc:
            await deny(websocket.scope, websocket.receive, websocket.send, exc)
            return
        prefix = self._prefix(ref)
        try:
            hook = None if self._signin is None else await self._signin.hook(ref, host, port)
            upstream = await connect_websocket(
                self._client(),
                websocket,
                host,
                port,
                prefix,
                is_token=self._auth.is_token,
                heartbeat=self._heartbeat,
                max_message=self._max_message,
                headers_hook=hook,
            )
        except IDEError as exc:  # the sign-in to code-server failed
            await deny(websocket.scope, websocket.receive, websocket.send, exc)
            return
        except aiohttp.WSServerHandshakeError as exc:
            if self._signin is not None and exc.status == 401:
                self._signin.forget(ref)  # code-server no longer takes the cookie: sign in again next time
            refused = IDEUnavailable(f"code-server refused the websocket ({exc.status} {exc.message})")
            await deny(websocket.scope, websocket.receive, websocket.send, refused)
            return
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._forget(ref)
            silent = IDEUnavailable(f"code-server in {ref} does not answer ({exc})")
            await deny(websocket.scope, websocket.receive, websocket.send, silent)
            return
        await self._sockets.relay(websocket, credential, upstream, self._activity(ref, "VS Code open"))

    async def close_sockets(self, keep: Callable[[Credential], bool], code: int, reason: str) -> int:
        """Close the open IDE websockets whose credential `keep` refuses (revoked or expired); returns how many."""
        return await self._sockets.close(keep, code, reason)


# -- the machinery both proxies share (/ide/ here, /preview/ in preview.py) ---------------------------------------


class OpenSockets:
    """A proxy's open websockets and the credential each was opened with, so revoked ones can be closed."""

    def __init__(self) -> None:
        self._open: dict[WebSocket, Credential] = {}

    async def relay(
        self,
        websocket: WebSocket,
        credential: Credential,
        upstream: aiohttp.ClientWebSocketResponse,
        in_use: AbstractContextManager[None],
    ) -> None:
        """Accept the browser's websocket and pass frames both ways until either side closes, `in_use` held."""
        self._open[websocket] = credential
        try:
            await websocket.accept(subprotocol=upstream.protocol)
            with in_use:
                await pump(websocket, upstream)
        finally:
            self._open.pop(websocket, None)
            await upstream.close()

    async def close(self, keep: Callable[[Credential], bool], code: int, reason: str) -> int:
        """Close the open websockets whose credential `keep` refuses (revoked or expired); returns how many."""
        closing = [ws for ws, credential in list(self._open.items()) if not keep(credential)]
        for websocket in closing:
            self._open.pop(websocket, None)
            with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):
                await websocket.close(code=code, reason=reason)
        return len(closing)


def new_session(connect_timeout: float) -> aiohttp.ClientSession:
    """The client a proxy reaches its upstreams with: no cookie jar, bytes as they came, no timeout but connect's."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=15),
        cookie_jar=aiohttp.DummyCookieJar(),  # cookies belong to the browsers, never to this process
        auto_decompress=False,  # bytes pass as they came, Content-Encoding and Content-Length stay right
        skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout, sock_read=None),
    )


def upstream_target(conn: Request | WebSocket, prefix: str) -> str:
    """Path and query as the browser sent them (still percent-encoded), below the prefix."""
    raw: bytes = conn.scope.get("raw_path") or quote(conn.scope["path"]).encode()
    path = raw.decode("latin-1")
    rest = path[len(prefix) :] if path.startswith(prefix) else quote(conn.path_params.get("path", ""))
    query = without_param(conn.scope.get("query_string", b"").decode("latin-1"), TOKEN_PARAM)
    return "/" + rest + (f"?{query}" if query else "")


async def forward_http(
    session: aiohttp.ClientSession,
    request: Request,
    host: str,
    port: int,
    prefix: str,
    *,
    is_token: Callable[[str], bool],
    timeout: float,
    headers_hook: HeaderHook | None = None,
) -> Response:
    """The request, below `prefix`, sent to host:port and its answer streamed back (redirects and cookies kept below
    `prefix`). Raises TimeoutError when no answer starts within `timeout`, aiohttp.ClientError when unreachable.
    `headers_hook` may change the headers that go upstream."""
    target = upstream_target(request, prefix)
    headers = request_headers(request.headers.items(), is_token=is_token)
    headers += _forwarded(request, prefix)
    headers.append(("Host", request.headers.get("host", f"{host}:{port}")))
    if headers_hook is not None:
        headers = headers_hook(headers)
    has_body = "transfer-encoding" in request.headers or request.headers.get("content-length", "0") != "0"
    url = URL(f"http://{host}:{port}{target}", encoded=True)
    async with asyncio.timeout(timeout):
        upstream = await session.request(
            request.method,
            url,
            headers=CIMultiDict(headers),
            data=_body(request) if has_body else None,
            allow_redirects=False,
            compress=None,
        )
    upstream_hosts = {f"{host}:{port}", request.headers.get("host", "")}
    response = StreamingResponse(_stream(upstream), status_code=upstream.status)
    response.raw_headers = [
        (name.encode("latin-1"), value.encode("latin-1"))
        for name, value in response_headers(_raw_items(upstream), prefix, upstream_hosts)
    ]
    return response


def open_session(
    request: Request, cookie: str, value: str, max_age: int, prefix: str, *, samesite: Literal["strict", "lax"]
) -> Response:
    """A navigation with the right ?token=: set the session cookie `cookie` below `prefix` and send the browser to the
    same URL without the token."""
    query = without_param(request.url.query, TOKEN_PARAM)
    target = request.url.path + (f"?{query}" if query else "")
    # A SameSite=Strict cookie set on a redirect that began on another site is not sent on the redirect's next
    # request; a page that navigates by itself starts a same-site navigation, which does carry it.
    if samesite == "lax" or request.headers.get("sec-fetch-site", "none") in ("none", "same-origin"):
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
        cookie,
        value,
        max_age=max_age,
        path=prefix,
        secure=request.url.scheme == "https",
        httponly=True,
        samesite=samesite,
    )
    return response


async def connect_websocket(
    session: aiohttp.ClientSession,
    websocket: WebSocket,
    host: str,
    port: int,
    prefix: str,
    *,
    is_token: Callable[[str], bool],
    heartbeat: float,
    max_message: int,
    headers_hook: HeaderHook | None = None,
) -> aiohttp.ClientWebSocketResponse:
    """The browser's websocket, below `prefix`, opened at host:port (not yet accepted on the browser's side).
    Raises aiohttp.WSServerHandshakeError when upstream refuses it, aiohttp.ClientError or TimeoutError otherwise.
    `headers_hook` may change the headers that go upstream."""
    target = upstream_target(websocket, prefix)
    headers = request_headers(websocket.headers.items(), drop=WS_REQUEST_DROP, is_token=is_token)
    headers += _forwarded(websocket, prefix)
    headers.append(("Host", websocket.headers.get("host", f"{host}:{port}")))
    if headers_hook is not None:
        headers = headers_hook(headers)
    url = URL(f"http://{host}:{port}{target}", encoded=True)
    return await session.ws_connect(
        url,
        headers=CIMultiDict(headers),
        protocols=websocket.scope.get("subprotocols") or (),
        heartbeat=heartbeat,
        max_msg_size=max_message,
        timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=10.0),
    )


def is_navigation(request: Request) -> bool:
    """Whether a person's browser tab asked (it gets a page rather than JSON)."""
    mode = request.headers.get("sec-fetch-mode")
    if mode is not None:
        return mode == "navigate"
    return request.method == "GET" and "text/html" in request.headers.get("accept", "")


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


async def pump(websocket: WebSocket, upstream: aiohttp.ClientWebSocketResponse) -> None:
    """Frames both ways until either side closes; the close code travels to the other side."""

    async def browser_to_upstream() -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                await upstream.close(code=sendable_close_code(message.get("code")))
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
            await websocket.close(code=sendable_close_code(upstream.close_code))

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


__all__ = ["PREFIX", "IDEProxy", "Resolver"]
