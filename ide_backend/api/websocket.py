"""GET /api/v1/ws: the live channel. One connection multiplexes processes and status subscriptions.

Authentication happens before the upgrade is accepted (HTTP 401, or close code 4401 where the server cannot send
an HTTP denial). After that, a reader task parses client messages and a writer task drains one outbox; processes
and subscriptions only ever put messages into that outbox, so a slow client cannot block them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from typing import Any

import pydantic_core
from pydantic import ValidationError
from starlette.responses import JSONResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from ..errors import IDEError, TooManyAttempts, Unauthorized
from ..service.processes import LISTENER_QUEUE, Outbox, Process
from ..service.workspaces import WorkspaceService
from .middleware import FailureLimiter, client_address, token_matches
from .models import WorkspaceRef
from .protocol import (
    AttachMessage,
    ClientMessage,
    CloseStdinMessage,
    DetachMessage,
    ExecMessage,
    PingMessage,
    ResizeMessage,
    SignalMessage,
    StdinMessage,
    SubscribeMessage,
    UnsubscribeMessage,
    client_message,
)

log = logging.getLogger(__name__)
CLOSE_UNAUTHORIZED = 4401
MAX_MESSAGE_CHARS = 2 * 1024 * 1024


def _presented_token(websocket: WebSocket) -> str | None:
    header = websocket.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return websocket.query_params.get("token")


async def _refuse(websocket: WebSocket, error: IDEError) -> None:
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(JSONResponse(error.to_json(), status_code=error.status_code))
    else:
        await websocket.accept()
        await websocket.close(code=CLOSE_UNAUTHORIZED, reason=error.code)


def _error(code: str, message: str, process_id: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if process_id is not None:
        error["id"] = process_id
    return error


class Connection:
    """The state of one websocket: its outbox, the processes it follows, its subscriptions."""

    def __init__(self, websocket: WebSocket, service: WorkspaceService) -> None:
        self.websocket = websocket
        self.service = service
        self.outbox = Outbox(LISTENER_QUEUE)
        self.following: dict[str, Process] = {}
        self.subscriptions: dict[tuple[str, str], asyncio.Task[None]] = {}
        self.starting: dict[str, asyncio.Task[None]] = {}

    def send(self, message: dict[str, Any]) -> None:
        if self.outbox.full():
            # Only control messages land here; output listeners are cut off by the process before this happens.
            log.warning("websocket outbox full; dropping a %s message", message.get("type"))
            return
        self.outbox.put_nowait(message)

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
                self.send(_error("too_large", f"Messages are limited to {MAX_MESSAGE_CHARS} characters"))
                continue
            try:
                message = client_message.validate_json(text)
            except ValidationError as exc:
                self.send(_error("invalid_message", _describe(exc), _guess_id(text)))
                continue
            if isinstance(message, ExecMessage):
                # Starting waits on Docker: run it beside the reader so other processes' stdin keeps flowing.
                task = asyncio.create_task(self._exec(message))
                self.starting[message.id] = task
                task.add_done_callback(functools.partial(self._started, message.id))
                continue
            pending = self.starting.get(getattr(message, "id", None) or "")
            if pending is not None:
                # stdin or a resize sent right behind its exec: keep the order the client sent them in.
                await asyncio.wait([pending])
            await self._handle(message)

    def _started(self, process_id: str, _: object) -> None:
        self.starting.pop(process_id, None)

    async def _exec(self, message: ExecMessage) -> None:
        try:
            process = await self.service.open_process(message, self.outbox)
        except IDEError as exc:
            self.send(_error(exc.code, exc.message, message.id))
            return
        self.following[message.id] = process

    async def _handle(self, message: ClientMessage) -> None:
        try:
            if isinstance(message, PingMessage):
                self.send({"type": "pong"})
            elif isinstance(message, StdinMessage):
                await self.service.processes.get(message.id).session.write(message.data.encode("utf-8"))
            elif isinstance(message, ResizeMessage):
                await self.service.processes.get(message.id).session.resize(message.cols, message.rows)
            elif isinstance(message, SignalMessage):
                await self.service.processes.signal(message.id, message.signal)
            elif isinstance(message, CloseStdinMessage):
                await self.service.processes.get(message.id).session.close_stdin()
            elif isinstance(message, AttachMessage):
                process = self.service.processes.get(message.id)
                process.attach(self.outbox, message.since)
                self.following[message.id] = process
            elif isinstance(message, DetachMessage):
                process = self.service.processes.get(message.id)
                process.detach(self.outbox)
                self.following.pop(message.id, None)
            elif isinstance(message, SubscribeMessage):
                await self._subscribe(message)
            elif isinstance(message, UnsubscribeMessage):
                task = self.subscriptions.pop((message.project_id, message.workspace_id), None)
                if task is not None:
                    task.cancel()
                self.send(
                    {"type": "unsubscribed", "projectId": message.project_id, "workspaceId": message.workspace_id}
                )
        except IDEError as exc:
            self.send(_error(exc.code, exc.message, getattr(message, "id", None)))

    async def _subscribe(self, message: SubscribeMessage) -> None:
        key = (message.project_id, message.workspace_id)
        snapshot = await self.service.status_event(WorkspaceRef(project_id=key[0], workspace_id=key[1]))
        if key in self.subscriptions:
            self.send(snapshot)
            return
        ready = asyncio.Event()
        self.subscriptions[key] = asyncio.create_task(self._forward(key, ready), name=f"ws-sub-{key}")
        await ready.wait()
        self.send({"type": "subscribed", "projectId": key[0], "workspaceId": key[1]})
        self.send(snapshot)

    async def _forward(self, key: tuple[str, str], ready: asyncio.Event) -> None:
        async with self.service.bus.subscribe(*key) as subscription:
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
        for process in self.following.values():
            process.detach(self.outbox)
        self.following.clear()


def encode(message: dict[str, Any]) -> str:
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
    service: WorkspaceService = websocket.app.state.service
    limiter: FailureLimiter = websocket.app.state.limiter
    client = client_address(websocket.scope)
    wait = limiter.blocked_for(client)
    if wait:
        await _refuse(websocket, TooManyAttempts(wait))
        return
    if not token_matches(_presented_token(websocket), websocket.app.state.token):
        limiter.failed(client)
        await _refuse(
            websocket,
            Unauthorized("The API token is missing or wrong: pass ?token=<token> or 'Authorization: Bearer <token>'"),
        )
        return
    await websocket.accept()
    connection = Connection(websocket, service)
    connections: set[Connection] = websocket.app.state.connections
    connections.add(connection)
    try:
        await connection.run()
    finally:
        connections.discard(connection)
