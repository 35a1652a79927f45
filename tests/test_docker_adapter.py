"""aiodocker's private API, as ide_backend/runtime/docker/client.py (the adapter) uses it, still exists.

No Docker needed: every name in client.PRIVATE_API is looked up in the installed aiodocker and checked for the
parameters the adapter passes. A newer aiodocker that renames or reshapes one fails here, naming what changed,
instead of failing in a running workspace. And nothing else in the package reaches into aiodocker's private API.
"""

from __future__ import annotations

import ast
import asyncio
import importlib
import inspect
import re
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp
import pytest
from aiodocker.stream import Stream
from yarl import URL

from ide_backend.runtime.docker import client as adapter

ADAPTER = "ide_backend/runtime/docker/client.py"
PACKAGE = Path(__file__).resolve().parent.parent / "ide_backend"
NOT_A_SOCKET = "unix:///nonexistent/ide-backend-adapter-test.sock"  # nothing connects: no request is made


def changed(name: str, what: str) -> str:
    return (
        f"aiodocker {aiodocker.__version__} changed {name}: {what}. The adapter {ADAPTER} relies on it (see "
        f"PRIVATE_API there): adapt the adapter to the new aiodocker, update PRIVATE_API, and move the aiodocker "
        f"pin in pyproject.toml."
    )


def resolve(dotted: str) -> tuple[type[Any], str]:
    module_name, class_name, attribute = dotted.rsplit(".", 2)
    module = importlib.import_module(module_name)
    owner = getattr(module, class_name, None)
    assert isinstance(owner, type), changed(dotted, f"{module_name} has no class {class_name} any more")
    return owner, attribute


def instance_attributes(owner: type[Any]) -> dict[str, Any]:
    """The attributes a fresh instance of aiodocker's Docker or Stream carries (made without touching a socket)."""

    async def make() -> dict[str, Any]:
        docker = aiodocker.Docker(url=NOT_A_SOCKET)
        try:
            if owner is aiodocker.Docker:
                return dict(vars(docker))
            assert owner is Stream, f"no recipe for an instance of {owner.__qualname__}: add one here"

            async def setup() -> tuple[URL, bytes | None, bool]:
                raise AssertionError("never connected")

            return dict(vars(Stream(docker, setup)))
        finally:
            await docker.close()

    return asyncio.run(make())


@pytest.mark.parametrize("dotted", sorted(adapter.PRIVATE_API))
def test_each_private_name_the_adapter_uses_still_exists(dotted: str) -> None:
    owner, attribute = resolve(dotted)
    params = adapter.PRIVATE_API[dotted]
    member = inspect.getattr_static(owner, attribute, None)
    if member is None:  # an instance attribute
        assert not params, changed(dotted, "the method is gone")
        assert attribute in instance_attributes(owner), changed(dotted, "a new instance no longer has it")
        return
    assert callable(member), changed(dotted, "it is no longer a method")
    signature = inspect.signature(getattr(owner, attribute))  # follows the asynccontextmanager wrapper of _query
    missing = [p for p in params if p not in signature.parameters]
    assert not missing, changed(dotted, f"no parameter {', '.join(missing)} any more (its signature: {signature})")


def test_the_private_api_list_names_every_private_use_in_the_adapter() -> None:
    """PRIVATE_API is what gets checked: a private name the adapter uses but does not list would go unchecked."""
    listed = {dotted.rsplit(".", 1)[1] for dotted in adapter.PRIVATE_API}
    tree = ast.parse(Path(adapter.__file__).read_text())
    used = {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and not (isinstance(node.value, ast.Name) and node.value.id in {"self", "cls"})  # the adapter's own
    }
    used |= {"session"} if "api.session" in ast.unparse(tree) else set()
    assert used <= listed, f"{ADAPTER} uses {sorted(used - listed)} of aiodocker without listing it in PRIVATE_API"


def test_urls_are_built_for_the_socket_the_adapter_was_given() -> None:
    """The adapter hands aiodocker its own Unix connector and the URL unix://localhost; aiodocker must then build
    its request URLs on that host, with the API version in the path once it is known."""

    async def build() -> tuple[str, str]:
        client = adapter.DockerClient(NOT_A_SOCKET, timeout=5.0)
        try:
            assert client.api.api_version == "auto", changed("Docker.api_version", "it no longer starts as 'auto'")
            before = str(client.api._canonicalize_url("containers/c1/archive"))
            client.api.api_version = "v1.41"  # as version() leaves it
            return before, str(client.api._canonicalize_url("containers/c1/archive"))
        finally:
            await client.close()

    before, after = asyncio.run(build())
    assert before == "unix://localhost/auto/containers/c1/archive", changed("Docker._canonicalize_url", before)
    assert after == "unix://localhost/v1.41/containers/c1/archive", changed("Docker._canonicalize_url", after)


def test_the_client_has_an_aiohttp_session() -> None:
    """DockerClient.head() sends its HEAD through aiodocker's aiohttp session."""

    async def session_of_client() -> Any:
        client = adapter.DockerClient(NOT_A_SOCKET, timeout=5.0)
        try:
            return client.api.session
        finally:
            await client.close()

    session = asyncio.run(session_of_client())
    assert isinstance(session, aiohttp.ClientSession), changed("Docker.session", f"it is a {type(session)}")


def test_a_stream_keeps_its_response_and_a_countable_queue_of_parsed_messages() -> None:
    """DockerStream.close_input() half-closes `_resp`'s transport; DockerStream.buffered() takes len() of
    `_queue`. Both are set when the stream connects (Stream._init)."""
    source = inspect.getsource(Stream)
    assert "self._resp = " in source, changed("Stream._resp", "Stream no longer assigns it")
    assert "self._queue = " in source, changed("Stream._queue", "Stream no longer assigns it")
    assert "_resp" in Stream.__annotations__, changed("Stream._resp", "no longer declared on the class")
    made = re.search(r"queue: (\w+)\[Message\] = \1\(", inspect.getsource(Stream._init))
    assert made is not None, changed("Stream._queue", "its type can no longer be read from Stream._init")
    queue_type = getattr(importlib.import_module(Stream.__module__), made.group(1))
    assert hasattr(queue_type, "__len__"), changed("Stream._queue", f"{queue_type.__qualname__} has no len()")
    response_type = aiohttp.ClientResponse
    assert isinstance(inspect.getattr_static(response_type, "connection"), property), "aiohttp: no .connection"


def test_streams_are_context_managers() -> None:
    """DockerStream.open() hands a stream to an AsyncExitStack: entering connects it, leaving closes it."""
    for name in ("__aenter__", "__aexit__", "read_out", "write_in"):
        assert callable(getattr(Stream, name, None)), changed(f"Stream.{name}", "gone")


def test_nothing_else_in_the_package_uses_aiodocker_private_names() -> None:
    """Every private use lives in the adapter; streams are entered with async with / AsyncExitStack."""
    private = {dotted.rsplit(".", 1)[1] for dotted in adapter.PRIVATE_API} - {"session"}
    for owner in (aiodocker.Docker, Stream):
        private |= {name for name in dir(owner) if name.startswith("_") and not name.startswith("__")}
    private |= {"__aenter__", "__aexit__"}
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == Path(adapter.__file__).resolve():
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in private
                and not (isinstance(node.value, ast.Name) and node.value.id in {"self", "cls"})
            ):
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} .{node.attr}")
    assert not found, f"aiodocker's private API used outside {ADAPTER}: {found}"
