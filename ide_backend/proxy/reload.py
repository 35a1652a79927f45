"""An open VS Code tab reloads itself when its workspace runs a new code-server (after a stop and start).

A started workspace's code-server is a new process that knows nothing of the windows the old one served, so VS
Code in the browser can only say "cannot reconnect, reload the window". The proxy adds one script tag of ours to
the workbench page (code-server's Content-Security-Policy allows scripts from 'self', which the proxy is), carrying
which start of the container served the page. The script (reload.js, served by the proxy) watches the workbench's
websockets; when one closes it asks the proxy's small status endpoint, below the workspace's /ide/ path so the
tab's session cookie authenticates it, until the workspace runs again: a new start whose code-server answers means
a reload, the same start means VS Code reconnects by itself. Asking the status does not count as using the
workspace, so a tab left open on a stopped workspace keeps nothing alive.

    reload = Reload(lookup, ready)
    if reload.owns(path): return await reload.answer(method, path, ref)   # <prefix>__ide-backend/{reload.js,status}
    reload.wants(method, path)              # may be the workbench page: fetch it uncompressed
    reload.inject(page, prefix, generation) # with our script tag
"""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable
from importlib.resources import files

from starlette.responses import JSONResponse, Response

from ..errors import IDEError, NotRunning
from ..service.domain import IDETarget, WorkspaceRef

OWN = "/__ide-backend/"  # below the workspace's prefix, answered by the proxy itself, never by code-server
SCRIPT = files(__package__).joinpath("reload.js").read_bytes()
# Where code-server serves the workbench page ("/vscode" is its historic second root).
_WORKBENCH_PATHS = ("/", "/vscode", "/vscode/")
_MARKER = b'id="vscode-workbench-web-configuration"'
MAX_PAGE = 1024 * 1024

TargetLookup = Callable[[WorkspaceRef], Awaitable[IDETarget]]
"""A running workspace -> its code-server's address, password and start; raises NotFound, NotRunning, ..."""
Ready = Callable[[str, int], Awaitable[bool]]
"""Whether code-server at host:port answers its health check."""


class Reload:
    """The status endpoint and the script an open workbench uses to reload itself after a restart."""

    def __init__(self, lookup: TargetLookup, ready: Ready) -> None:
        self._lookup = lookup
        self._ready = ready

    @staticmethod
    def owns(path: str) -> bool:
        return path.startswith(OWN)

    async def answer(self, method: str, path: str, ref: WorkspaceRef) -> Response:
        """The proxy's own answers below `<prefix>__ide-backend/`."""
        name = path[len(OWN) :]
        if method not in ("GET", "HEAD"):
            return JSONResponse({"success": False, "message": "Only GET is answered here"}, status_code=405)
        if name == "reload.js":
            return Response(
                SCRIPT,
                media_type="text/javascript",
                headers={"cache-control": "no-cache", "x-content-type-options": "nosniff"},
            )
        if name == "status":
            return JSONResponse(await self.status(ref), headers={"cache-control": "no-store"})
        return JSONResponse({"success": False, "message": f"No such endpoint: {path}"}, status_code=404)

    async def status(self, ref: WorkspaceRef) -> dict[str, object]:
        """Whether the workspace runs, which start of its container it is, and whether code-server answers."""
        try:
            target = await self._lookup(ref)
        except NotRunning:
            return {"success": True, "running": False, "ready": False, "generation": None}
        ready = await self._ready(target.host, target.port)
        return {"success": True, "running": True, "ready": ready, "generation": target.generation}

    async def generation(self, ref: WorkspaceRef) -> str | None:
        """Which start of the workspace's container serves now (None when that cannot be told)."""
        try:
            return (await self._lookup(ref)).generation
        except IDEError:
            return None

    @staticmethod
    def wants(method: str, path: str) -> bool:
        """Whether this request may be for the workbench page (read whole, uncompressed, to add the tag)."""
        return method == "GET" and path.split("?", 1)[0] in _WORKBENCH_PATHS

    @staticmethod
    def fits(status: int, headers: dict[str, str]) -> bool:
        """Whether upstream's answer is a page the tag can be added to."""
        return (
            status == 200
            and headers.get("content-type", "").startswith("text/html")
            and headers.get("content-encoding", "identity") == "identity"
            and int(headers.get("content-length") or 0) <= MAX_PAGE
        )

    @staticmethod
    def inject(page: bytes, prefix: str, generation: str | None) -> bytes:
        """The workbench page with our script at the end of its head (it runs before the workbench's modules); any
        other page as it was."""
        if _MARKER not in page or b"</head>" not in page:
            return page
        src = html.escape(prefix + OWN.lstrip("/") + "reload.js", quote=True)
        data = html.escape(generation or "", quote=True)
        tag = f'<script src="{src}" data-generation="{data}"></script>\n'.encode()
        return page.replace(b"</head>", tag + b"</head>", 1)


__all__ = ["MAX_PAGE", "OWN", "Ready", "Reload", "TargetLookup"]
