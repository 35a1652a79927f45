"""AsyncClient: the HTTP API for asyncio, over httpx, method for method the same as Client (client.py), plus
`live()`, the websocket (live.py). `client.workspace(project_id, workspace_id)` is a handle whose methods are the
workspace endpoints; the client itself has the rest (list, templates, tokens).

Every method returns the endpoint's answer as the server's own pydantic model (ide_backend.api.models) and raises
the SDK's errors (errors.py) for anything else.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from ..api.models import (
    ContainerInfo,
    DeleteResponse,
    ExecResponse,
    FilesDeleteResponse,
    FilesListResponse,
    FilesReadResponse,
    ForkResponse,
    LifecycleResponse,
    ListResponse,
    RevokeResponse,
    StatusResponse,
    SyncResponse,
    TemplatesResponse,
    ThemeResponse,
    TokenResponse,
    WebhookResponse,
)
from . import calls, syncdir
from .calls import Call
from .errors import IDEConnectionError, PayloadTooLargeError
from .ignore import IgnoreRules
from .live import RECONNECT_TIMEOUT, LiveChannel

R = TypeVar("R", bound=BaseModel)

DEFAULT_TIMEOUT = 120.0  # seconds; a cold start or a fork can take a while. exec waits for its own timeout


class AsyncClient:
    """The API of one server. `url` and `token` default to IDE_URL and IDE_TOKEN (and http://127.0.0.1:8000)."""

    def __init__(self, url: str | None = None, token: str | None = None, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.url, self.token = calls.resolve(url, token)
        self._http = httpx.AsyncClient(base_url=self.url, headers=calls.headers(self.token), timeout=timeout)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    def live(self, *, reconnect_timeout: float = RECONNECT_TIMEOUT) -> LiveChannel:
        """The websocket to the same server with the same token: `async with client.live() as channel: ...`."""
        return LiveChannel(self.url, self.token, reconnect_timeout=reconnect_timeout)

    async def send(self, call: Call[R]) -> R:
        """Send one request and parse its answer (every method goes through here)."""
        timeout: Any = httpx.USE_CLIENT_DEFAULT
        if call.timeout is not None:
            timeout = httpx.Timeout(self._http.timeout.connect, read=call.timeout)
        try:
            response = await self._http.request(
                call.method,
                call.path,
                content=call.body,
                headers={"content-type": "application/json"} if call.body is not None else None,
                timeout=timeout,
            )
        except httpx.HTTPError as exc:
            raise IDEConnectionError(f"{call.method} {self.url}{call.path} failed: {exc!r}") from exc
        return calls.parse(call, response.status_code, response.content)

    def workspace(self, project_id: str, workspace_id: str) -> AsyncWorkspace:
        """A handle on one workspace (nothing is sent until a method is called)."""
        return AsyncWorkspace(self, project_id, workspace_id)

    async def list_page(
        self, project_id: str | None = None, status: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> ListResponse:
        """One page of workspaces in (project, workspace) order; `next_cursor` is the next page's `cursor`."""
        return await self.send(calls.list_page(project_id, status, limit, cursor))

    async def list(
        self, project_id: str | None = None, status: str | None = None, page_size: int = 100
    ) -> AsyncIterator[ContainerInfo]:
        """Every workspace the token sees (of one project, in one status), fetched a page at a time."""
        cursor: str | None = None
        while True:
            page = await self.list_page(project_id, status, page_size, cursor)
            for info in page.data:
                yield info
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def templates(self) -> TemplatesResponse:
        return await self.send(calls.templates())

    async def mint_token(
        self,
        project_id: str,
        workspace_id: str | None = None,
        *,
        ttl_seconds: int = 3600,
        scopes: Iterable[str] | None = None,
    ) -> TokenResponse:
        """A token for one project (or one workspace of it), `read` or `write` (the operator's token only)."""
        return await self.send(calls.mint_token(project_id, workspace_id, ttl_seconds, scopes))

    async def revoke_tokens(self, project_id: str, workspace_id: str | None = None) -> RevokeResponse:
        """Void every token of the project (or workspace) issued until now (the operator's token only)."""
        return await self.send(calls.revoke_tokens(project_id, workspace_id))

    async def set_webhook(self, project_id: str, url: str | None, *, secret: str | None = None) -> WebhookResponse:
        """Send the project's lifecycle events to `url` too (None: stop), signed with `secret` (made by the server
        when None and answered once, as `.secret`); the operator's token only."""
        return await self.send(calls.set_webhook(project_id, url, secret))

    async def get_webhook(self, project_id: str) -> WebhookResponse:
        """The project's own webhook URL (`.url`, None when it has none); the operator's token only."""
        return await self.send(calls.get_webhook(project_id))


class AsyncWorkspace:
    """One workspace's endpoints: `client.workspace("p1", "w1").exec("ls")`."""

    def __init__(self, client: AsyncClient, project_id: str, workspace_id: str) -> None:
        self.client = client
        self.ref = calls.ref(project_id, workspace_id)

    @property
    def project_id(self) -> str:
        return self.ref.project_id

    @property
    def workspace_id(self) -> str:
        return self.ref.workspace_id

    def __repr__(self) -> str:
        return f"AsyncWorkspace({self.project_id!r}, {self.workspace_id!r})"

    async def start(self, template: str | None = None, files: dict[str, Any] | None = None) -> LifecycleResponse:
        return await self.client.send(calls.start(self.ref, template, files))

    async def stop(self) -> LifecycleResponse:
        return await self.client.send(calls.stop(self.ref))

    async def status(self) -> StatusResponse:
        return await self.client.send(calls.status(self.ref))

    async def exec(
        self, command: str, *, cwd: str | None = None, env: dict[str, str] | None = None, timeout: float | None = None
    ) -> ExecResponse:
        """Run `sh -c command` to its end; a non-zero exit is an answer (`exit_code`), not an error."""
        return await self.client.send(calls.exec_(self.ref, command, cwd, env, timeout))

    async def sync(self, files: dict[str, Any], *, clean: bool = False) -> SyncResponse:
        """Write files (any shape the server takes, with `ifMatch` where wanted) in one request, all or none."""
        return await self.client.send(calls.sync(self.ref, files, clean))

    async def sync_dir(
        self,
        path: str | Path,
        ignore: Iterable[str] = (),
        *,
        dest: str = "",
        clean: bool = False,
        max_body_bytes: int = syncdir.MAX_BODY_BYTES,
        max_entries: int = syncdir.MAX_ENTRIES,
    ) -> syncdir.SyncDirResult:
        """Upload a local folder (into `dest`), leaving out what `ignore`'s .gitignore-style patterns match, in as
        few requests as `max_body_bytes` and `max_entries` allow; `clean` empties the workspace first."""
        # The walk and the reading of files run in a worker thread, so the event loop goes on meanwhile.
        entries, skipped = await asyncio.to_thread(syncdir.scan, Path(path), IgnoreRules(ignore), dest)
        plan = syncdir.Plan(self.ref, entries, clean=clean, max_body_bytes=max_body_bytes, max_entries=max_entries)
        plan.result.skipped = skipped
        batches = plan.batches()
        refused: deque[syncdir.Batch] = deque()
        while (batch := refused.popleft() if refused else await asyncio.to_thread(next, batches, None)) is not None:
            try:
                answer = await self.client.send(calls.sync_raw(plan.body(batch)))
            except PayloadTooLargeError as exc:
                refused.extendleft(reversed(plan.split(batch, exc)))
                continue
            plan.done(batch, answer)
        return plan.finish()

    async def list_files(self, path: str = "", *, depth: int = 1, limit: int = 5000) -> FilesListResponse:
        return await self.client.send(calls.files_list(self.ref, path, depth, limit))

    async def read_file(self, path: str) -> FilesReadResponse:
        return await self.client.send(calls.files_read(self.ref, path))

    async def read_bytes(self, path: str) -> bytes:
        """A file's bytes, whichever encoding the server chose to send it in."""
        return calls.content(await self.read_file(path))

    async def delete_files(self, paths: Iterable[str]) -> FilesDeleteResponse:
        return await self.client.send(calls.files_delete(self.ref, list(paths)))

    async def set_theme(self, theme: str) -> ThemeResponse:
        """Set VS Code's colour theme in the workspace (kept across re-creation)."""
        return await self.client.send(calls.theme(self.ref, theme))

    async def delete(self) -> DeleteResponse:
        """Remove the workspace: processes, container, volumes, record. A later start begins empty."""
        return await self.client.send(calls.delete(self.ref))

    async def fork(self, to_workspace_id: str, *, to_project_id: str | None = None) -> ForkResponse:
        """A new workspace with a copy of this one's files, template and theme (see README, Fork)."""
        return await self.client.send(calls.fork(self.ref, to_workspace_id, to_project_id))

    async def mint_token(self, *, ttl_seconds: int = 3600, scopes: Iterable[str] | None = None) -> TokenResponse:
        """A token for this workspace alone (the operator's token only)."""
        return await self.client.mint_token(self.project_id, self.workspace_id, ttl_seconds=ttl_seconds, scopes=scopes)
