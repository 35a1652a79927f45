"""Previews: /preview/{projectId}/{workspaceId}/{port}/... to whatever listens on that port inside the workspace,
HTTP and websockets, on an origin of their own.

A previewed app is the user's code, and its pages run in the browser that holds the demo page's API token (in that
page's sessionStorage). Served from the page's origin, the app's scripts could read the token (through an opener or
a frame of the page). So previews are served on a second port of the server (IDE_PREVIEW_PORT), a different origin,
and nothing else is: a request that arrives on that port's socket for any path outside /preview/ is a 404, and a
/preview/ request on the main port is redirected there (IDE_PREVIEW_URL, or the page's host with the preview port).
Which origin a request came through is told by the socket it arrived on, never by a header.

Access is that of /ide/: the API token or a scoped token once (`?token=` on a navigation, then a cookie), or
`Authorization: Bearer`. The cookie is a preview session (ide_backend.api.auth, kind "preview"), named
`ide_preview`, HttpOnly, SameSite=Lax (so a redirect back from another site, an OAuth sign-in, keeps it), with the
path /preview/{p}/{w}/{port}/; the IDE's cookie opens no preview and a preview's cookie opens no IDE. Neither
cookie, nor the token, reaches the app.

The upstream is the container's own address on its Docker network (no published port). The machinery (streaming,
hop-by-hop headers, redirects and cookies kept below the prefix, websocket relay) is the /ide/ proxy's.

    preview = PreviewProxy(resolve, listening, authenticator, port=settings.preview_port, url=settings.preview_url)
    routes = [..., *preview.routes()]; middleware: PreviewOriginGuard(app, preview.port) outermost
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from urllib.parse import quote

import aiohttp
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from ..api.answers import deny, error_page
from ..api.auth import PREVIEW_COOKIE_NAME, Authenticator, Credential
from ..api.models import ID_PATTERN
from ..errors import BadRequest, IDEError, IDETimeout, NotFound, PreviewUnavailable
from ..service.domain import WorkspaceRef
from ..service.ports import ListeningPort
from .proxy import OpenSockets, connect_websocket, forward_http, is_navigation, new_session, open_session

PREFIX = "/preview"
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
_ID = re.compile(ID_PATTERN)
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:\d+)?$")
# Response headers a previewed app may not send: Clear-Site-Data "cookies" reaches the cookies of the whole site,
# the page's IDE sessions included (cookies ignore ports).
_DROP = frozenset({b"clear-site-data"})

Resolver = Callable[[WorkspaceRef, int], Awaitable[tuple[str, int]]]
"""(workspace, port) -> (host, port) to connect to; raises NotFound, NotRunning, Conflict."""
Listening = Callable[[WorkspaceRef], Awaitable[list[ListeningPort]]]
"""What listens in the workspace now (to say why a connection was refused)."""
Activity = Callable[[WorkspaceRef, str], AbstractContextManager[None]]


class PreviewProxy:
    """Routes for /preview/{projectId}/{workspaceId}/{port}/... served on the preview origin only."""

    def __init__(
        self,
        resolve: Resolver,
        listening: Listening,
        authenticator: Authenticator,
        *,
        port: int,
        url: str = "",
        activity: Activity | None = None,
        connect_timeout: float = 10.0,
        response_timeout: float = 300.0,
        websocket_heartbeat: float = 30.0,
        max_message_bytes: int = 64 * 1024 * 1024,
        resolve_ttl: float = 2.0,
    ) -> None:
        self._resolve = resolve
        self._listening = listening
        self._auth = authenticator
        self.port = port  # the preview socket's port; -1: previews are off
        self._url = url.rstrip("/")
        self._activity: Activity = activity or (lambda ref, label: contextlib.nullcontext())
        self._connect_timeout = connect_timeout
        self._response_timeout = response_timeout
        self._heartbeat = websocket_heartbeat
        self._max_message = max_message_bytes
        self._resolve_ttl = resolve_ttl
        self._resolved: dict[tuple[WorkspaceRef, int], tuple[float, tuple[str, int]]] = {}
        self._sockets = OpenSockets()
        self._session: aiohttp.ClientSession | None = None

    def routes(self) -> list[BaseRoute]:
        path = PREFIX + "/{project_id}/{workspace_id}/{port}"
        return [
            Route(path, self._add_slash, methods=METHODS),
            Route(path + "/{path:path}", self._http, methods=METHODS),
            WebSocketRoute(path + "/{path:path}", self._websocket),
        ]

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = new_session(self._connect_timeout)
        return self._session

    # -- where -------------------------------------------------------------------------------------------------

    def on_preview_origin(self, conn: HTTPConnection) -> bool:
        """Whether the request came in through the preview socket (the socket, not a header, says so)."""
        server = conn.scope.get("server")
        return self.port > 0 and server is not None and server[1] == self.port

    def origin(self, conn: HTTPConnection) -> str:
        """The preview origin as the browser reaches it: IDE_PREVIEW_URL, else the page's host on the preview port."""
        if self._url:
            return self._url
        host = conn.headers.get("host", "")
        if not _HOST.match(host):
            host = "127.0.0.1"
        hostname = host.rsplit(":", 1)[0] if not host.endswith("]") and ":" in host else host
        return f"{conn.url.scheme.replace('ws', 'http', 1)}://{hostname}:{self.port}"

    @staticmethod
    def _target(conn: HTTPConnection) -> tuple[WorkspaceRef, int, str]:
        """The workspace, the port and the prefix the path names; 404 for an impossible id, 400 for a bad port."""
        params = conn.path_params
        for value in (params["project_id"], params["workspace_id"]):
            if not _ID.match(value) or value.endswith("."):
                raise NotFound(f"No such workspace: {value!r} is not a valid projectId/workspaceId")
        raw = params["port"]
        if not raw.isdigit() or not 1 <= int(raw) <= 65535:
            raise BadRequest(f"The port in a preview's path must be a number from 1 to 65535, not {raw!r}")
        ref = WorkspaceRef(params["project_id"], params["workspace_id"])
        port = int(raw)
        return ref, port, f"{PREFIX}/{ref.project_id}/{ref.workspace_id}/{port}/"

    def _authenticate(self, conn: HTTPConnection, ref: WorkspaceRef) -> Credential:
        credential = self._auth.authenticate(conn, workspace=ref, kind="preview")
        credential.require(ref, "write")  # an app can do anything its workspace can: as much as VS Code
        return credential

    async def _upstream(self, ref: WorkspaceRef, port: int) -> tuple[str, int]:
        """The address to connect to, remembered briefly (a page load is many requests)."""
        key = (ref, port)
        cached = self._resolved.get(key)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return cached[1]
        address = await self._resolve(ref, port)
        self._resolved[key] = (now + self._resolve_ttl, address)
        if len(self._resolved) > 4096:
            self._resolved = {k: v for k, v in self._resolved.items() if v[0] > now}
        return address

    async def _unreachable(self, ref: WorkspaceRef, port: int, exc: Exception) -> PreviewUnavailable:
        """Why nothing answered, in words: nothing listens, or only on the workspace's own loopback."""
        self._resolved.pop((ref, port), None)
        found: ListeningPort | None = None
        with contextlib.suppress(IDEError):
            found = next((p for p in await self._listening(ref) if p.port == port), None)
        if found is not None and found.loopback_only:
            return PreviewUnavailable(
                f"{found.process or 'A process'} listens on port {port} in workspace {ref} on {found.address} only, "
                f"which the preview cannot reach: start it on 0.0.0.0 (e.g. --host 0.0.0.0)",
                retryAfter=2,
            )
        if found is not None:
            return PreviewUnavailable(
                f"{found.process or 'A process'} listens on port {port} in workspace {ref} but does not answer "
                f"({exc.__class__.__name__}); this page tries again by itself",
                retryAfter=2,
            )
        return PreviewUnavailable(
            f"Nothing listens on port {port} in workspace {ref} ({exc.__class__.__name__}): start your server on it "
            f"(on 0.0.0.0); this page tries again by itself",
            retryAfter=2,
        )

    # -- HTTP --------------------------------------------------------------------------------------------------

    async def _add_slash(self, request: Request) -> Response:
        """A preview's root ends with a slash, so that relative URLs stay below it."""
        self._target(request)
        query = request.url.query
        return RedirectResponse(request.url.path + "/" + (f"?{query}" if query else ""), status_code=308)

    async def _http(self, request: Request) -> Response:
        try:
            if not self.on_preview_origin(request):
                return self._elsewhere(request)
            return await self._serve(request)
        except IDEError as exc:
            if is_navigation(request):
                return error_page(exc)
            raise

    def _elsewhere(self, request: Request) -> Response:
        """A preview asked of the main origin: sent to the preview origin, path and query as they were."""
        self._target(request)
        if self.port <= 0:
            raise NotFound("Previews are off on this server (IDE_PREVIEW_PORT=-1)")
        raw: bytes = request.scope.get("raw_path") or quote(request.url.path).encode()
        query = request.url.query
        location = self.origin(request) + raw.decode("latin-1") + (f"?{query}" if query else "")
        response = RedirectResponse(location, status_code=307)
        response.headers["cache-control"] = "no-store"
        response.headers["referrer-policy"] = "no-referrer"
        return response

    async def _serve(self, request: Request) -> Response:
        ref, port, prefix = self._target(request)
        credential = self._authenticate(request, ref)
        if credential.source == "query" and request.method in ("GET", "HEAD"):
            value = self._auth.issue_session(ref, credential, kind="preview")
            return open_session(
                request, PREVIEW_COOKIE_NAME, value, int(self._auth.session_ttl), prefix, samesite="lax"
            )
        host, upstream_port = await self._upstream(ref, port)
        with self._activity(ref, "preview request"):
            pass  # a request is a use of the workspace
        try:
            response = await forward_http(
                self._client(),
                request,
                host,
                upstream_port,
                prefix,
                is_token=self._auth.is_token,
                timeout=self._response_timeout,
            )
        except TimeoutError as exc:
            raise IDETimeout(
                f"Port {port} of workspace {ref} did not answer within {self._response_timeout:g} s"
            ) from exc
        except aiohttp.ClientError as exc:
            raise await self._unreachable(ref, port, exc) from exc
        response.raw_headers = [(name, value) for name, value in response.raw_headers if name.lower() not in _DROP]
        return response

    # -- websockets --------------------------------------------------------------------------------------------

    async def _websocket(self, websocket: WebSocket) -> None:
        try:
            ref, port, prefix = self._target(websocket)
            if not self.on_preview_origin(websocket):
                raise NotFound(f"Previews are served on their own origin: {self.origin(websocket)}{prefix}")
            credential = self._authenticate(websocket, ref)
            host, upstream_port = await self._upstream(ref, port)
        except IDEError as exc:
            await deny(websocket.scope, websocket.receive, websocket.send, exc)
            return
        try:
            upstream = await connect_websocket(
                self._client(),
                websocket,
                host,
                upstream_port,
                prefix,
                is_token=self._auth.is_token,
                heartbeat=self._heartbeat,
                max_message=self._max_message,
            )
        except aiohttp.WSServerHandshakeError as exc:
            refused = PreviewUnavailable(f"Port {port} of workspace {ref} refused the websocket ({exc.status})")
            await deny(websocket.scope, websocket.receive, websocket.send, refused)
            return
        except (aiohttp.ClientError, TimeoutError) as exc:
            await deny(websocket.scope, websocket.receive, websocket.send, await self._unreachable(ref, port, exc))
            return
        await self._sockets.relay(websocket, credential, upstream, self._activity(ref, "preview open"))

    async def close_sockets(self, keep: Callable[[Credential], bool], code: int, reason: str) -> int:
        """Close the open preview websockets whose credential `keep` refuses (revoked or expired); returns how many."""
        return await self._sockets.close(keep, code, reason)


class PreviewOriginGuard:
    """On the preview socket, /preview/ only: the page, the API and the IDE are never served on a preview's
    origin (an app there could otherwise load them beside itself)."""

    def __init__(self, app: ASGIApp, port: int) -> None:
        self.app = app
        self.port = port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        server = scope.get("server")
        if (
            scope["type"] in ("http", "websocket")
            and self.port > 0
            and server is not None
            and server[1] == self.port
            and not scope["path"].startswith(PREFIX + "/")
        ):
            error = NotFound(
                "This origin serves workspace previews only, at /preview/{projectId}/{workspaceId}/{port}/ (an app "
                "that asks for /... from its root needs its base path set to that prefix)"
            )
            if scope["type"] == "http":
                await JSONResponse(error.to_json(), status_code=404)(scope, receive, send)
            else:
                await deny(scope, receive, send, error)
            return
        await self.app(scope, receive, send)


__all__ = ["PREFIX", "PreviewOriginGuard", "PreviewProxy"]
