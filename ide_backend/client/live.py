"""LiveChannel: the websocket (GET /api/v1/ws, docs/protocol.md) for asyncio: processes whose output streams as it
is written, terminals, and status subscriptions, over one connection that comes back by itself.

    async with LiveChannel() as live:                      # or AsyncClient(...).live()
        process = await live.exec("p1", "w1", "npm test")
        async for chunk in process:
            print(chunk.data, end="")
        exit = await process

Every message from the server is parsed with the protocol's own models (ide_backend.api.protocol); requests are
checked with them before they are sent.

When the connection drops (not closed by us, and not refused for the credential: a 4401 close or a 401/403 answer
end the channel), the channel connects again with a growing pause, for up to `reconnect_timeout` seconds, then
subscribes again to what it was subscribed to and attaches again to every process it follows, with the last
`seq` each has handed on. The server replays what came after, and what was seen before is dropped by seq, so every
output chunk arrives once and in order. What cannot be made good is said rather than hidden: a process's `missed`
counts chunks that had fallen out of the server's replay buffer (1 MiB per process, IDE_PROCESS_BUFFER_BYTES)
meanwhile; stdin, resizes and signals sent while the connection is down wait for it, but one sent in the very
moment it drops may be lost (the protocol does not acknowledge them); an exec whose `started` had not arrived is
looked for (attach) and sent again when the server does not know it (a `conflict` then means it did after all, and
it is followed instead; one that the server was still starting for the dropped connection and that ended before
the second exec arrived runs twice); and status events during the gap are not replayed (the subscription gets a
new snapshot). Giving up fails every process and subscription with IDEConnectionError.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import uuid
from collections import deque
from types import TracebackType

import pydantic
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from ..api.protocol import (
    AttachedMessage,
    ErrorMessage,
    ExecMessage,
    ExitMessage,
    FilesMessage,
    OutputMessage,
    PongMessage,
    ProcessesMessage,
    ProcessItemModel,
    ScreenMessage,
    ServerMessage,
    StartedMessage,
    StatusMessage,
    SubscribedMessage,
    WatchingMessage,
    server_message,
)
from ..errors import IDEError
from ..service.filesets import normalize_path
from . import calls
from .errors import (
    ConflictError,
    IDEClientError,
    IDEConnectionError,
    InvalidRequestError,
    ServerError,
    error_class,
    from_answer,
    from_message,
)
from .streams import FileWatch, LiveProcess, StatusSubscription

log = logging.getLogger(__name__)

PATH = "/api/v1/ws"
RECONNECT_TIMEOUT = 60.0  # seconds of trying; the server keeps a process nobody follows IDE_PROCESS_DETACHED_TTL (300)
MAX_MESSAGE_BYTES = 4 * 1024 * 1024  # the server keeps its messages under 1 MiB
CLOSE_BASE = 4000  # the server closes with 4000 + an HTTP status when it ends a connection for its credential

Answer = asyncio.Future[ServerMessage | None]  # None: the connection was lost before the answer came


class _Connection:
    """One websocket, and the answers it owes to requests that carry no process id (they come back in order)."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.pending: deque[Answer] = deque()
        self.lost = asyncio.Event()

    def answer(self, message: ServerMessage) -> None:
        if self.pending:
            waiting = self.pending.popleft()
            if not waiting.done():
                waiting.set_result(message)

    def drop(self) -> None:
        while self.pending:
            waiting = self.pending.popleft()
            if not waiting.done():
                waiting.set_result(None)
        self.lost.set()


class LiveChannel:
    """The live channel of one server. `url` and `token` default to IDE_URL and IDE_TOKEN, as Client's do."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        reconnect_timeout: float = RECONNECT_TIMEOUT,
        open_timeout: float = 10.0,
    ) -> None:
        base, self.token = calls.resolve(url, token)
        self.url = "ws" + base.removeprefix("http") + PATH
        self.reconnect_timeout = reconnect_timeout
        self.open_timeout = open_timeout
        self.reconnects = 0  # how many times the connection came back
        self._conn: _Connection | None = None
        self._ready = asyncio.Event()  # a connection is up and resumed (or the channel has failed)
        self._reader: asyncio.Task[None] | None = None
        self._processes: dict[str, LiveProcess] = {}
        self._subscriptions: dict[tuple[str, str], StatusSubscription] = {}
        self._watches: dict[tuple[str, str, str], FileWatch] = {}
        self._failure: IDEClientError | None = None
        self._closing = False

    @property
    def connected(self) -> bool:
        """Whether a connection is up now (False while it is being opened again, and once the channel is done)."""
        return self._ready.is_set() and self._failure is None

    async def __aenter__(self) -> LiveChannel:
        await self.connect()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.close()

    async def connect(self) -> None:
        """Open the connection (a failure here is raised at once; only a connection that was up is retried)."""
        if self._reader is not None:
            return
        self._conn = _Connection(await self._open())
        self._ready.set()
        self._reader = asyncio.create_task(self._read_forever(), name="ide-live-reader")

    async def close(self) -> None:
        """Close the connection. Processes keep running on the server (until IDE_PROCESS_DETACHED_TTL)."""
        self._closing = True
        if self._conn is not None:
            await self._conn.ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        self._fail(IDEConnectionError("The live channel was closed", code="closed"))

    # -- requests ---------------------------------------------------------------------------------------------

    async def exec(
        self,
        project_id: str,
        workspace_id: str,
        command: str,
        *,
        id: str | None = None,
        tty: bool = False,
        cols: int = 80,
        rows: int = 24,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> LiveProcess:
        """Start `sh -c command` (a PTY of cols x rows with `tty`); returns once the server has started it.
        `id` defaults to a new UUID (ids are global on the server)."""
        process_id = id or uuid.uuid4().hex
        fields: dict[str, object] = {"type": "exec", "id": process_id, "command": command, "tty": tty}
        fields.update(project_id=project_id, workspace_id=workspace_id, cols=cols, rows=rows)
        fields.update(cwd=cwd, env=env, timeout=timeout)
        message = calls.build(ExecMessage, **fields).decode()
        if process_id in self._processes:
            raise ConflictError(f"This channel already follows a process {process_id!r}")
        process = LiveProcess(self, process_id, message)
        self._processes[process_id] = process
        await self._first_send(process, message)
        await process.answered()
        return process

    async def attach(self, process_id: str, *, since: int = 0) -> LiveProcess:
        """Follow a process started elsewhere (another connection, a page before its reload): what came after
        `since` is replayed, then live output."""
        if process_id in self._processes:
            return self._processes[process_id]
        process = LiveProcess(self, process_id, None)
        process.last_seq = since
        self._processes[process_id] = process
        await self._first_send(process, process.resume())
        await process.answered()
        return process

    async def _first_send(self, process: LiveProcess, message: dict[str, object] | str) -> None:
        """Send a process's exec or attach. Until it is on its way, a reconnect leaves the process alone (this
        sends it on the new connection), so an exec is never sent twice by the two of them."""
        try:
            await self.send(message)
        except IDEClientError as exc:
            process.fail(exc)
            raise
        process.sent = True

    async def subscribe(self, project_id: str, workspace_id: str, *, ports: bool = False) -> StatusSubscription:
        """A workspace's status events, from a snapshot of now on (the same object for a second call); with `ports`,
        also an event (`source: "ports"`, with `listening`) whenever a TCP port opens or closes in it."""
        key = (project_id, workspace_id)
        if key in self._subscriptions:
            return self._subscriptions[key]
        message: dict[str, object] = {"type": "subscribe", "projectId": project_id, "workspaceId": workspace_id}
        if ports:
            message["ports"] = True
        subscription = StatusSubscription(self, project_id, workspace_id, ports=ports)
        self._subscriptions[key] = subscription  # before asking: the snapshot follows the answer at once
        try:
            await self._request(message)
        except IDEClientError:
            self._subscriptions.pop(key, None)
            raise
        subscription.active = True
        return subscription

    async def unsubscribe(self, subscription: StatusSubscription) -> None:
        key = (subscription.project_id, subscription.workspace_id)
        if self._subscriptions.get(key) is not subscription:
            return
        del self._subscriptions[key]
        subscription.end()
        if self._failure is None:
            await self._request({"type": "unsubscribe", "projectId": key[0], "workspaceId": key[1]})

    async def watch(self, project_id: str, workspace_id: str, path: str = "") -> FileWatch:
        """The file changes below `path` ("" = the whole workspace) of a running workspace, as they happen (the same
        object for a second call on the same folder)."""
        path = _folder(path)
        key = (project_id, workspace_id, path)
        if key in self._watches:
            return self._watches[key]
        watch = FileWatch(self, project_id, workspace_id, path)
        self._watches[key] = watch  # before asking: changes may follow the answer at once
        try:
            answer = await self._request(_watch_message("watch", watch))
        except IDEClientError:
            self._watches.pop(key, None)
            raise
        assert isinstance(answer, WatchingMessage)
        watch.folders = answer.folders
        watch.active = True
        return watch

    async def unwatch(self, watch: FileWatch) -> None:
        key = (watch.project_id, watch.workspace_id, watch.path)
        if self._watches.get(key) is not watch:
            return
        del self._watches[key]
        watch.end()
        if self._failure is None:
            await self._request(_watch_message("unwatch", watch))

    async def processes(self, project_id: str, workspace_id: str) -> list[ProcessItemModel]:
        """The workspace's processes the server knows, running or recently finished (to attach to them)."""
        answer = await self._request({"type": "list", "projectId": project_id, "workspaceId": workspace_id})
        assert isinstance(answer, ProcessesMessage)
        return answer.items

    async def ping(self) -> None:
        """A round trip through the server's message loop."""
        await self._request({"type": "ping"})

    # -- sending ----------------------------------------------------------------------------------------------

    async def send(self, message: dict[str, object] | str) -> None:
        """Send one message, waiting for the connection to come back if it is down."""
        text = message if isinstance(message, str) else json.dumps(message)
        while True:
            conn = await self._connection()
            try:
                await conn.ws.send(text)
                return
            except ConnectionClosed:
                await conn.lost.wait()

    async def _request(self, message: dict[str, object]) -> ServerMessage:
        """Send a message without a process id and wait for its answer; sent again if the connection drops first."""
        text = json.dumps(message)
        while True:
            conn = await self._connection()
            answer: Answer = asyncio.get_running_loop().create_future()
            conn.pending.append(answer)
            with contextlib.suppress(ConnectionClosed):
                await conn.ws.send(text)
            result = await answer
            if isinstance(result, ErrorMessage):
                raise from_message(result.code, result.message)
            if result is not None:
                return result

    async def _connection(self) -> _Connection:
        while True:
            if self._failure is not None:
                raise self._failure
            if self._reader is None:
                raise IDEClientError("The live channel is not open: use `async with` or connect()", code="not_open")
            await self._ready.wait()
            conn = self._conn
            if self._failure is None and conn is not None and not conn.lost.is_set():
                return conn
            await asyncio.sleep(0)

    def _rewatched(self, watch: FileWatch, done: Answer) -> None:
        """A watch asked for again on a new connection: from now on changes are seen again, and those made while
        the connection was down are lost, which the watch says (an overflow: list again)."""
        result = done.result()
        if isinstance(result, ErrorMessage):  # the workspace stopped while the connection was down, say
            self._watches.pop((watch.project_id, watch.workspace_id, watch.path), None)
            watch.end(from_message(result.code, result.message))
        elif result is not None:
            watch.lost_changes()

    def forget(self, process: LiveProcess) -> None:
        """A process ended (or was detached): its messages are no longer routed."""
        if self._processes.get(process.id) is process:
            del self._processes[process.id]

    # -- the connection ---------------------------------------------------------------------------------------

    async def _open(self) -> ClientConnection:
        try:
            return await connect(
                self.url,
                additional_headers=calls.headers(self.token),
                open_timeout=self.open_timeout,
                max_size=MAX_MESSAGE_BYTES,
            )
        except InvalidStatus as exc:
            body = exc.response.body or b""
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
            raise from_answer(exc.response.status_code, parsed, body.decode("utf-8", "replace")) from exc
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
            raise IDEConnectionError(f"Could not open {self.url}: {exc!r}") from exc

    async def _read_forever(self) -> None:
        while True:
            conn = self._conn
            assert conn is not None
            with contextlib.suppress(ConnectionClosed):
                async for text in conn.ws:
                    await self._dispatch(conn, text if isinstance(text, str) else text.decode())
            self._ready.clear()
            conn.drop()
            if self._closing:
                return
            code = conn.ws.close_code
            if code is not None and CLOSE_BASE <= code < CLOSE_BASE + 1000:
                reason = conn.ws.close_reason or "no reason given"
                status = code - CLOSE_BASE
                self._fail(error_class("", status)(f"The server closed the live channel: {reason}", status=status))
                return
            try:
                await self._reconnect()
            except IDEClientError as exc:
                self._fail(exc)
                return

    async def _reconnect(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.reconnect_timeout
        delay = 0.05
        while True:
            try:
                conn = _Connection(await self._open())
                self._conn = conn
                await self._resume(conn)
            except (IDEConnectionError, ServerError, ConnectionClosed) as exc:
                log.info("live channel: connecting again failed: %s", exc)
                if loop.time() + delay > deadline:
                    raise IDEConnectionError(
                        f"The live channel dropped and could not be opened again within {self.reconnect_timeout} s: "
                        f"{exc.message if isinstance(exc, IDEClientError) else exc}"  # its code is said once, after
                    ) from exc
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            self.reconnects += 1
            log.info("live channel: connected again (%d)", self.reconnects)
            self._ready.set()
            return

    async def _resume(self, conn: _Connection) -> None:
        """On a new connection: subscribe again, and attach again to every process from its last seq."""
        for subscription in list(self._subscriptions.values()):
            if not subscription.active:
                continue  # its own request is still on its way and will be sent again
            answer: Answer = asyncio.get_running_loop().create_future()
            answer.add_done_callback(functools.partial(_resubscribed, subscription))
            conn.pending.append(answer)
            message: dict[str, object] = {"type": "subscribe", "projectId": subscription.project_id}
            if subscription.ports:
                message["ports"] = True
            await conn.ws.send(json.dumps({**message, "workspaceId": subscription.workspace_id}))
        for watch in list(self._watches.values()):
            if watch.active:
                answer = asyncio.get_running_loop().create_future()
                answer.add_done_callback(functools.partial(self._rewatched, watch))
                conn.pending.append(answer)
                await conn.ws.send(json.dumps(_watch_message("watch", watch)))
        for process in list(self._processes.values()):
            if process.sent:
                await conn.ws.send(json.dumps(process.resume()))

    async def _dispatch(self, conn: _Connection, text: str) -> None:
        try:
            message = server_message.validate_json(text)
        except pydantic.ValidationError as exc:
            log.warning("live channel: a message this SDK does not know: %s (%s)", text[:200], exc)
            return
        if isinstance(message, StatusMessage):
            subscription = self._subscriptions.get((message.project_id, message.workspace_id))
            if subscription is not None:
                subscription.push(message)
        elif isinstance(message, FilesMessage):
            watch = self._watches.get((message.project_id, message.workspace_id, message.path))
            if watch is not None:
                watch.push(message)
        elif isinstance(message, WatchingMessage) and message.reason is not None:  # the server ended a watch
            ended = self._watches.pop((message.project_id, message.workspace_id, message.path), None)
            if ended is not None:
                ended.reason = message.reason
                ended.end()
        elif isinstance(message, SubscribedMessage | ProcessesMessage | PongMessage | WatchingMessage) or (
            isinstance(message, ErrorMessage) and message.id is None
        ):
            conn.answer(message)
        elif isinstance(
            message, StartedMessage | OutputMessage | ExitMessage | AttachedMessage | ErrorMessage | ScreenMessage
        ):
            process = self._processes.get(message.id or "")
            reply = process.receive(message) if process is not None else None
            if reply is not None:
                with contextlib.suppress(ConnectionClosed):  # lost: the reconnect attaches again anyway
                    await conn.ws.send(reply if isinstance(reply, str) else json.dumps(reply))

    def _fail(self, error: IDEClientError) -> None:
        """The channel is done: every process and subscription ends with `error`, every waiting call raises it."""
        if self._failure is None:
            self._failure = error
        for process in list(self._processes.values()):
            process.fail(error)
        for subscription in list(self._subscriptions.values()):
            subscription.end(error)
        self._subscriptions.clear()
        for watch in list(self._watches.values()):
            watch.end(error)
        self._watches.clear()
        if self._conn is not None:
            self._conn.drop()
        self._ready.set()


def _resubscribed(subscription: StatusSubscription, done: Answer) -> None:
    result = done.result()
    if isinstance(result, ErrorMessage):
        subscription.end(from_message(result.code, result.message))


def _watch_message(kind: str, watch: FileWatch) -> dict[str, object]:
    return {"type": kind, "projectId": watch.project_id, "workspaceId": watch.workspace_id, "path": watch.path}


def _folder(raw: str) -> str:
    """A watched folder as the server names it in its messages ("" for the whole workspace)."""
    try:
        return "" if raw.strip("/.") == "" else normalize_path(raw, where="path")
    except IDEError as exc:
        raise InvalidRequestError(exc.message, code=exc.code) from None
