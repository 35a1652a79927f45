"""A Python SDK for ide-backend: `Client` (blocking) and `AsyncClient` (asyncio) for the HTTP API, over httpx, and
`LiveChannel` for the websocket (live output, stdin, terminals, status), over websockets, which reconnects by
itself and loses no output. Requests and answers are the server's own pydantic models (ide_backend.api.models and
ide_backend.api.protocol); failures are one exception tree (errors.py).

    from ide_backend.client import Client

    with Client() as client:                               # IDE_URL and IDE_TOKEN, or Client(url, token)
        ws = client.workspace("p1", "w1")
        ws.start(template="python", files={"hello.py": "print(6 * 7)"})
        print(ws.exec("python3 hello.py").output)

Modules: client.py (Client, Workspace), aio.py (AsyncClient, AsyncWorkspace), live.py (LiveChannel), streams.py
(LiveProcess, StatusSubscription, FileWatch), calls.py (the endpoints as data, shared by both clients), syncdir.py and
ignore.py (sync_dir), errors.py. Importing this package starts nothing.
"""

from .aio import AsyncClient, AsyncWorkspace
from .client import Client, Workspace
from .errors import (
    BadRequestError,
    ConflictError,
    ForbiddenError,
    IDEClientError,
    IDEConnectionError,
    InvalidRequestError,
    NotFoundError,
    NotRunningError,
    PayloadTooLargeError,
    ServerError,
    TooManyAttemptsError,
    UnauthorizedError,
    UnavailableError,
)
from .ignore import IgnoreRules
from .live import LiveChannel
from .streams import FileWatch, LiveProcess, StatusSubscription
from .syncdir import SyncDirResult

__all__ = [
    "AsyncClient",
    "AsyncWorkspace",
    "BadRequestError",
    "Client",
    "ConflictError",
    "FileWatch",
    "ForbiddenError",
    "IDEClientError",
    "IDEConnectionError",
    "IgnoreRules",
    "InvalidRequestError",
    "LiveChannel",
    "LiveProcess",
    "NotFoundError",
    "NotRunningError",
    "PayloadTooLargeError",
    "ServerError",
    "StatusSubscription",
    "SyncDirResult",
    "TooManyAttemptsError",
    "UnauthorizedError",
    "UnavailableError",
    "Workspace",
]
