"""The aiodocker adapter: the one module that reaches past aiodocker's documented API.

aiodocker has no public way to call a raw engine endpoint, send a HEAD, see whether a stream already holds
output, or half-close a stream's input. Every such use is here and listed in PRIVATE_API, which
tests/test_docker_adapter.py checks against the installed aiodocker, so a release that renames one fails that test
instead of a workspace. pyproject.toml pins the aiodocker range this was written for.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiodocker
import aiohttp
from aiodocker.stream import Stream

# What this module uses of aiodocker beyond its public API, with the parameters it passes each one by name.
PRIVATE_API: dict[str, tuple[str, ...]] = {
    "aiodocker.docker.Docker._query": ("path", "method", "params", "data", "headers", "timeout"),
    "aiodocker.docker.Docker._query_json": ("path", "params"),
    "aiodocker.docker.Docker._canonicalize_url": ("path",),
    "aiodocker.docker.Docker.session": (),  # instance attribute: the aiohttp.ClientSession
    "aiodocker.stream.Stream._resp": (),  # instance attribute: the upgraded aiohttp.ClientResponse
    "aiodocker.stream.Stream._queue": (),  # instance attribute: the parsed messages not read yet (has len())
}


class DockerClient:
    """One aiodocker client on a connection pool of its own: `api` for aiodocker's public API, the methods here
    for what it does not offer."""

    def __init__(self, docker_host: str = "", timeout: float = 30.0) -> None:
        self.host = docker_host or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        self.timeout = timeout
        # Every running exec and attach holds a connection: the pool must not be the limit (aiohttp's default is
        # 100), and waiting for a pooled connection is not the engine failing to answer, so only the socket
        # connect itself is timed, never the wait for the pool.
        self._connector = (
            aiohttp.UnixConnector(self.host.removeprefix("unix://"), limit=0)
            if self.host.startswith("unix://")
            else None
        )
        self.api = aiodocker.Docker(
            # aiodocker's name for "the socket I was given": its URLs then read unix://localhost/v1.xx/...
            url="unix://localhost" if self._connector is not None else self.host,
            connector=self._connector,
            timeout=aiohttp.ClientTimeout(total=timeout, sock_connect=min(timeout, 10.0)),
        )

    async def close(self) -> None:
        await self.api.close()
        if self._connector is not None:  # ours, so aiodocker leaves it open
            await self._connector.close()

    async def get_json(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        """GET an engine endpoint aiodocker has no method for, as parsed JSON. Error statuses raise DockerError."""
        return await self.api._query_json(path, params=dict(params) if params is not None else None)

    async def send_json(self, path: str, method: str, body: Any = None, params: Mapping[str, str] | None = None) -> Any:
        """Call an engine endpoint aiodocker has no method for with a JSON body (or none); the answer as parsed JSON.
        Error statuses raise DockerError."""
        data = json.dumps(body) if body is not None else None
        headers = {"Content-Type": "application/json"} if body is not None else None
        return await self.api._query_json(
            path, method, params=dict(params) if params is not None else None, data=data, headers=headers
        )

    @contextlib.asynccontextmanager
    async def request(
        self,
        path: str,
        *,
        method: str = "GET",
        params: Mapping[str, str] | None = None,
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: aiohttp.ClientTimeout | None = None,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Any engine endpoint, the response released on leaving. Error statuses raise DockerError. Without a
        timeout the client's own applies."""
        # aiodocker reads timeout=None as "no timeout at all": leave it out to mean the client's.
        limit: dict[str, Any] = {"timeout": timeout} if timeout is not None else {}
        query = self.api._query(
            path, method, params=dict(params) if params is not None else None, data=data, headers=headers, **limit
        )
        # aiodocker's context leaves the response open (an endless event stream stays connected when its reader
        # is cancelled): the response's own context releases it.
        async with query as response, response:
            yield response

    @contextlib.asynccontextmanager
    async def head(self, path: str, params: Mapping[str, str]) -> AsyncIterator[aiohttp.ClientResponse]:
        """HEAD an engine endpoint, every status returned to the caller: Docker answers HEAD with an empty body,
        which aiodocker's error path cannot parse."""
        if self.api.api_version == "auto":
            await self.api.version()  # settles the API version that goes into the URL
        url = self.api._canonicalize_url(path)
        async with self.api.session.head(url, params=dict(params)) as response:
            yield response


class DockerStream:
    """An attach or exec stream (a hijacked HTTP connection): output as (stream number, bytes), raw input."""

    def __init__(self, stream: Stream) -> None:
        self._stream = stream

    @classmethod
    async def open(cls, stack: contextlib.AsyncExitStack, stream: Stream) -> DockerStream:
        """Connect one of aiodocker's streams (from attach() or an exec's start()); `stack` closes it."""
        # aiodocker annotates Stream.__aexit__ without the Nones every context manager is given on a clean exit.
        return cls(await stack.enter_async_context(stream))  # type: ignore[arg-type]

    async def read(self) -> tuple[int, bytes] | None:
        """The next message, or None at the end of the stream."""
        return await self._stream.read_out()

    async def write(self, data: bytes) -> None:
        await self._stream.write_in(data)

    def buffered(self) -> bool:
        """Whether a parsed message is already waiting, so that read() cannot wait. False when the queue cannot
        be seen: callers use it only to merge messages, never to decide whether more will come."""
        queue = getattr(self._stream, "_queue", None)
        return queue is not None and len(queue) > 0

    def close_input(self) -> None:
        """Half-close the connection: the process reads end-of-file, its output keeps flowing."""
        response = self._stream._resp
        transport = response.connection.transport if response is not None and response.connection else None
        if transport is not None and transport.can_write_eof():
            transport.write_eof()
