"""GET /api/v1/ws: the live channel. One connection multiplexes processes and status subscriptions.

AuthMiddleware has checked the credential before the upgrade; every message that touches a workspace asks it again
for that workspace (a process another credential may not see is answered as unknown). A reader task parses client
messages into domain values and calls the service; a writer task drains one outbox; processes and subscriptions
only ever put messages into that outbox, so a slow client cannot block them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import Awaitable, Callable, Mapping

import pydantic_core
from pydantic import ValidationError
from starlette.websockets import WebSocket, WebSocketDisconnect

from ..errors import IDEError
from ..service.domain import ExecSpec, WorkspaceRef
from ..service.messages import ProcessesMessage, error_message
from ..service.processes import LISTENER_QUEUE, Outbox, ProcessHandle
from ..service.watch import Watch, folder_path
from ..service.workspaces import WorkspaceService
from .answers import channel_error
from .auth import Credential, credential
from .protocol import (
    AttachMessage,
    ClientMessage,
    CloseStdinMessage,
    DetachMessage,
    ExecMessage,
    ListMessage,
    PingMessage,
    Pong,
    ResizeMessage,
    SignalMessage,
    StdinMessage,
    Subscribed,
    SubscribeMessage,
    UnsubscribeMessage,
    UnwatchMessage,
    WatchMessage,
    client_message,
)
from .tokens import Action

log = logging.getLogger(__name__)
MAX_MESSAGE_CHARS = 2 * 1024 * 1024


class Connection:
    """The state of one websocket: its credential, outbox, the processes it follows, its subscriptions."""

    def __init__(self, websocket: WebSocket, service: WorkspaceService, credential: Credential) -> None:
        self.websocket = websocket
        self.service = service
        self.credential = credential
        self.outbox = Outbox(LISTENER_QUEUE)
        self.following: dict[str, ProcessHandle] = {}
        self.subscriptions: dict[WorkspaceRef, asyncio.Task[None]] = {}
        self.starting: dict[str, asyncio.Task[None]] = {}
        self.watches: dict[tuple[WorkspaceRef, str], Watch] = {}

    def send(self, message: Mapping[str, object]) -> None:
        if self.outbox.full():
            # Only control messages land here; output listeners are cut off by the process before this happens.
            log.warning("websocket outbox full; dropping a %s message", message.get("type"))
            return
        self.outbox.put_nowait(message)

    async def close(self, code: int, reason: str) -> None:
        """End the connection from the server's side (its credential was revoked or expired)."""
        with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):
            await self.websocket.close(code=code, reason=reason)

    async def run(self) -> None:
        writer = asyncio.create_task(self._write_loop(), name="ws-writer")
        try:
            await self._read_loop()
        finally:
            writer.cancel()
            await self._cleanup()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer

    async def _write_loop(self) -> None:
        while True:
            message = await self.outbox.get()
            await self.websocket.send_text(encode(message))

    async def _read_loop(self) -> None:
        while True:
            try:
                text = await self.websocket.receive_text()
            except (WebSocketDisconnect, RuntimeError):
                return
            if len(text) > MAX_MESSAGE_CHARS:
                self.send(error_message("too_large", f"Messages are limited to {MAX_MESSAGE_CHARS} characters"))
                continue
            try:
                message = client_message.validate_json(text)
            except ValidationError as exc:
                self.send(error_message("invalid_message", _describe(exc), _guess_id(text)))
                continue
            if isinstance(message, ExecMessage):
                # Starting waits on Docker: run it beside the reader so other processes' stdin keeps flowing.
                task = asyncio.create_task(self._answering(message.id, functools.partial(self._exec, message)))
                self.starting[message.id] = task
                task.add_done_callback(functools.partial(self._started, message.id))
                continue
            pending = self.starting.get(getattr(message, "id", None) or "")
            if pending is not None:
                # stdin or a resize sent right behind its exec: keep the order the client sent them in.
                await asyncio.wait([pending])
            await self._answering(getattr(message, "id", None), functools.partial(self._handle, message))

    async def _answering(self, process_id: str | None, handle: Callable[[], Awaitable[None]]) -> None:
        """Handle one client message; an error answers that message alone, and the connection stays up."""
        try:
            await handle()
        except IDEError as exc:
            self.send(channel_error(exc, process_id))

    def _started(self, process_id: str, _: object) -> None:
        self.starting.pop(process_id, None)

    async def _exec(self, message: ExecMessage) -> None:
        ref = WorkspaceRef(message.project_id, message.workspace_id)
        spec = ExecSpec(
            command=message.command,
            cwd=message.cwd,
            env=message.env or {},
            timeout=message.timeout,
            tty=message.tty,
            cols=message.cols,
            rows=message.rows,
        )
        self.credential.require(ref, "write")
        self.following[message.id] = await self.service.open_process(ref, message.id, spec, self.outbox)

    async def _process(self, process_id: str, action: Action) -> ProcessHandle:
        """A process this connection's credential may touch; any other is as good as unknown."""
        return await self.service.process(process_id, lambda ref: self.credential.may(ref, action))

    async def _handle(self, message: ClientMessage) -> None:
        if isinstance(message, PingMessage):
            self.send(Pong(type="pong"))
        elif isinstance(message, StdinMessage):
            await (await self._process(message.id, "write")).write(message.data.encode("utf-8"))
        elif isinstance(message, ResizeMessage):
            await (await self._process(message.id, "write")).resize(message.cols, message.rows)
        elif isinstance(message, SignalMessage):
            await (await self._process(message.id, "write")).signal(message.signal)
        elif isinstance(message, CloseStdinMessage):
            await (await self._process(message.id, "write")).close_stdin()
        elif isinstance(message, AttachMessage):
            handle = await self._process(message.id, "read")
            handle.attach(self.outbox, message.since, message.screen)
            self.following[message.id] = handle
        elif isinstance(message, DetachMessage):
            (await self._process(message.id, "read")).detach(self.outbox)
            self.following.pop(message.id, None)
        elif isinstance(message, ListMessage):
            ref = WorkspaceRef(message.project_id, message.workspace_id)
            self.credential.require(ref, "read")
            items = await self.service.processes_of(ref)
            self.send(
                ProcessesMessage(type="processes", projectId=ref.project_id, workspaceId=ref.workspace_id, items=items)
            )
        elif isinstance(message, WatchMessage):
            await self._watch(WorkspaceRef(message.project_id, message.workspace_id), message.path)
        elif isinstance(message, UnwatchMessage):
            ref = WorkspaceRef(message.project_id, message.workspace_id)
            path = folder_path(message.path)
            watch = self.watches.pop((ref, path), None)
            if watch is not None:
                await self.service.unwatch(watch)
            self.send(Watch(ref, path, self.send).message("unwatched"))
        elif isinstance(message, SubscribeMessage):
            await self._subscribe(WorkspaceRef(message.project_id, message.workspace_id), message.ports)
        elif isinstance(message, UnsubscribeMessage):
            ref = WorkspaceRef(message.project_id, message.workspace_id)
            task = self.subscriptions.pop(ref, None)
            if task is not None:
                task.cancel()
            self.send(Subscribed(type="unsubscribed", projectId=ref.project_id, workspaceId=ref.workspace_id))

    async def _subscribe(self, ref: WorkspaceRef, ports: bool = False) -> None:
        self.credential.require(ref, "read")
        snapshot = await self.service.status_snapshot(ref, ports=ports)
        if ref in self.subscriptions:
            if not ports:
                self.send(snapshot)
                return
            self.subscriptions.pop(ref).cancel()  # subscribed again for the ports too: a subscription with them
        ready = asyncio.Event()
        self.subscriptions[ref] = asyncio.create_task(self._forward(ref, ready, ports), name=f"ws-sub-{ref}")
        await ready.wait()
        self.send(Subscribed(type="subscribed", projectId=ref.project_id, workspaceId=ref.workspace_id))
        self.send(snapshot)

    async def _watch(self, ref: WorkspaceRef, path: str) -> None:
        """Follow the file changes below `path`; watching the same folder again keeps one watch."""
        self.credential.require(ref, "read")
        watch, folders = await self.service.watch(ref, path, self._deliver_files)
        old = self.watches.pop((ref, watch.path), None)
        if old is not None:
            await self.service.unwatch(old)
        self.watches[(ref, watch.path)] = watch
        self.send(watch.message("watching", folders=folders))

    def _deliver_files(self, message: Mapping[str, object]) -> None:
        if message.get("type") == "unwatched":  # the server ended it (the workspace stopped)
            ref = WorkspaceRef(str(message["projectId"]), str(message["workspaceId"]))
            self.watches.pop((ref, str(message["path"])), None)
        self.send(message)

    async def _forward(self, ref: WorkspaceRef, ready: asyncio.Event, ports: bool = False) -> None:
        async with self.service.subscribe(ref, ports=ports) as subscription:
            ready.set()
            while True:
                self.send(await subscription.get())

    async def _cleanup(self) -> None:
        tasks = list(self.subscriptions.values()) + list(self.starting.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.subscriptions.clear()
        for watch in self.watches.values():
            with contextlib.suppress(Exception):
                await self.service.unwatch(watch)
        self.watches.clear()
        for handle in self.following.values():
            handle.detach(self.outbox)
        self.following.clear()


def encode(message: Mapping[str, object]) -> str:
    """Compact JSON. pydantic-core's encoder is several times faster than the json module's on large strings,
    which is most of the cost of streaming output; text it cannot encode (a lone surrogate) is escaped instead."""
    try:
        return pydantic_core.to_json(message).decode()
    except pydantic_core.PydanticSerializationError:
        return json.dumps(message, separators=(",", ":"))


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(p) for p in err["loc"]) or "message"
        parts.append(f"{where}: {str(err['msg']).removeprefix('Value error, ')}")
    return "Invalid message: " + "; ".join(parts[:5])


def _guess_id(text: str) -> str | None:
    with contextlib.suppress(ValueError, AttributeError):
        value = json.loads(text).get("id")
        if isinstance(value, str) and len(value) <= 128:
            return value
    return None


async def websocket_endpoint(websocket: WebSocket) -> None:
    """The live channel, for a websocket AuthMiddleware let through."""
    connection = Connection(websocket, websocket.app.state.service, credential(websocket))
    await websocket.accept()
    connections: set[Connection] = websocket.app.state.connections
    connections.add(connection)
    try:
        await connection.run()
    finally:
        connections.discard(connection)
