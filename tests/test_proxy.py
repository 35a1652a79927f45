"""The IDE reverse proxy (ide_backend.proxy) against a small REAL upstream: an aiohttp server on a loopback port,
with the proxy's routes served by a real uvicorn. Both run on one event loop in a background thread; the tests
drive them over real sockets with httpx and the websockets client (and Chromium for the cross-site opening).

No network is mocked: what the upstream receives is what it reports back, byte for byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import uvicorn
from aiohttp import WSMsgType, web
from starlette.applications import Starlette
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from ide_backend.api.answers import EXCEPTION_HANDLERS
from ide_backend.api.auth import COOKIE_NAME, Authenticator, FailureLimiter
from ide_backend.errors import NotFound, NotRunning
from ide_backend.proxy import IDEProxy
from ide_backend.proxy.cookies import rewrite_set_cookie, strip_cookie
from ide_backend.proxy.headers import request_headers, response_headers, rewrite_location, without_param
from ide_backend.service.domain import WorkspaceRef

from .conftest import chromium_browser

TOKEN = "proxy-test-token-0123456789"
P, W = "p1", "w1"
BASE = f"/ide/{P}/{W}/"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the real upstream -------------------------------------------------------------------------------------------


@dataclass
class UpstreamState:
    """What the upstream saw, and the switches the streaming tests flip from the test thread."""

    release_stream: threading.Event = field(default_factory=threading.Event)
    first_chunk_seen: threading.Event = field(default_factory=threading.Event)
    ws_closes: list[int | None] = field(default_factory=list)
    ws_cookies: list[str] = field(default_factory=list)


def upstream_app(state: UpstreamState) -> web.Application:
    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        return web.json_response(
            {
                "method": request.method,
                "rawPath": request.raw_path,
                "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.raw_headers],
                "bodySha256": hashlib.sha256(body).hexdigest(),
                "bodyLength": len(body),
            }
        )

    async def upload(request: web.Request) -> web.Response:
        """Reads the body as it arrives; tells the test when the first chunk is in (before the rest is sent)."""
        total = 0
        digest = hashlib.sha256()
        async for chunk in request.content.iter_any():
            if total == 0:
                state.first_chunk_seen.set()
            total += len(chunk)
            digest.update(chunk)
        return web.json_response({"bodyLength": total, "bodySha256": digest.hexdigest()})

    async def stream(request: web.Request) -> web.StreamResponse:
        """Sends one chunk, then waits for the test (which must already have it) before the next."""
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        await response.write(b"first\n")
        loop = asyncio.get_running_loop()
        released = await loop.run_in_executor(None, state.release_stream.wait, 20)
        await response.write(b"second\n" if released else b"timeout\n")
        await response.write_eof()
        return response

    async def headers(request: web.Request) -> web.Response:
        response = web.Response(text="headers")
        response.headers["X-Hop"] = "1"
        response.headers["Connection"] = "X-Hop"
        response.headers["Keep-Alive"] = "timeout=5"
        response.headers["Proxy-Authenticate"] = "Basic"
        response.headers["X-Kept"] = "yes"
        response.headers.add("Set-Cookie", "code-server-session=abc; Path=/; SameSite=Lax")
        response.headers.add("Set-Cookie", "other=1; Domain=127.0.0.1; Path=/ide/p1/w1/sub; HttpOnly")
        response.headers.add("Set-Cookie", f"{COOKIE_NAME}=forged; Path=/")
        return response

    async def redirect(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": request.query["to"]})

    async def compressed(request: web.Request) -> web.Response:
        body = gzip.compress(b"squeezed " * 1000)
        return web.Response(body=body, headers={"Content-Encoding": "gzip", "Content-Type": "text/plain"})

    async def page(request: web.Request) -> web.Response:
        return web.Response(
            text="<!doctype html><title>upstream</title><p id=up>upstream page</p>", content_type="text/html"
        )

    async def launcher(request: web.Request) -> web.Response:
        """A page on another site (localhost vs 127.0.0.1) that links to the IDE with the token."""
        target = request.query["target"]
        return web.Response(text=f'<!doctype html><a id=go href="{target}">open</a>', content_type="text/html")

    async def websocket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(protocols=("vscode",), max_msg_size=32 * 1024 * 1024)
        await ws.prepare(request)
        state.ws_cookies.append(request.headers.get("Cookie", ""))
        await ws.send_str("hello")
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                if msg.data.startswith("close:"):
                    await ws.close(code=int(msg.data.split(":")[1]), message=b"bye")
                    break
                if msg.data == "headers":
                    await ws.send_str(json.dumps(dict(request.headers)))
                else:
                    await ws.send_str("echo:" + msg.data)
            elif msg.type == WSMsgType.BINARY:
                await ws.send_bytes(msg.data[::-1])
        state.ws_closes.append(ws.close_code)
        return ws

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("GET", "/ws", websocket)
    app.router.add_route("*", "/upload", upload)
    app.router.add_route("GET", "/stream", stream)
    app.router.add_route("GET", "/headers", headers)
    app.router.add_route("GET", "/redirect", redirect)
    app.router.add_route("GET", "/gzip", compressed)
    app.router.add_route("GET", "/page", page)
    app.router.add_route("GET", "/launcher", launcher)
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


# --- the proxy in a real server ----------------------------------------------------------------------------------


@dataclass
class Stack:
    proxy_url: str
    upstream_port: int
    state: UpstreamState
    proxy: IDEProxy
    auth: Authenticator
    resolved: list[tuple[str, str]]
    limiter: FailureLimiter

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.proxy_url, timeout=30, **kwargs)

    def session_cookie(self, project: str = P, workspace: str = W) -> str:
        return f"{COOKIE_NAME}={self.auth.issue_session(WorkspaceRef(project, workspace))}"


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    state = UpstreamState()
    ready = threading.Event()
    holder: dict[str, Any] = {}
    closed_port = _free_port()  # nothing listens here
    resolved: list[tuple[str, str]] = []

    async def resolve(ref: WorkspaceRef) -> tuple[str, int]:
        project_id, workspace_id = ref.project_id, ref.workspace_id
        resolved.append((project_id, workspace_id))
        if workspace_id == "stopped":
            raise NotRunning(f"Workspace {project_id}/{workspace_id} is not running")
        if workspace_id == "down":
            return "127.0.0.1", closed_port
        if project_id == "p1":
            return "127.0.0.1", holder["upstream_port"]
        raise NotFound(f"Workspace {project_id}/{workspace_id} does not exist")

    limiter = FailureLimiter(limit=1000)
    auth = Authenticator(TOKEN, limiter, session_ttl=12 * 3600)
    proxy = IDEProxy(resolve, auth, resolve_ttl=1.0)

    async def enforce() -> None:
        """What the app's lifespan does with the proxy: close websockets whose credential is no longer valid."""
        while True:
            await proxy.close_sockets(auth.still_valid, 4401, "token revoked or expired")
            await asyncio.sleep(0.1)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        enforcer = asyncio.create_task(enforce())
        yield
        enforcer.cancel()
        await proxy.close()

    app = Starlette(routes=proxy.routes(), exception_handlers=dict(EXCEPTION_HANDLERS), lifespan=lifespan)
    proxy_port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=proxy_port, log_level="warning"))

    async def main() -> None:
        runner = web.AppRunner(upstream_app(state), shutdown_timeout=1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        holder["upstream_port"] = runner.addresses[0][1]
        ready.set()
        await server.serve()
        await runner.cleanup()

    thread = threading.Thread(target=lambda: asyncio.run(main()), name="proxy-stack", daemon=True)
    thread.start()
    assert ready.wait(20), "the upstream did not start"
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the proxy did not start"
        time.sleep(0.01)
    try:
        yield Stack(f"http://127.0.0.1:{proxy_port}", holder["upstream_port"], state, proxy, auth, resolved, limiter)
    finally:
        server.should_exit = True
        thread.join(20)


@pytest.fixture
def authed(stack: Stack) -> Iterator[httpx.Client]:
    with stack.client(headers={"Cookie": stack.session_cookie()}) as client:
        yield client


def _echo(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    body["lower"] = {k.lower(): v for k, v in body["headers"]}
    body["names"] = [k.lower() for k, _ in body["headers"]]
    return body


# --- access ------------------------------------------------------------------------------------------------------


def test_token_sets_a_scoped_signed_cookie_and_redirects_without_it(stack: Stack) -> None:
    with stack.client() as client:
        response = client.get(f"{BASE}some/path?a=1&token={TOKEN}&b=two")
        assert response.status_code == 303
        assert response.headers["location"] == f"{BASE}some/path?a=1&b=two"
        assert response.headers["cache-control"] == "no-store"
        cookie = response.headers["set-cookie"]
        attrs = [part.strip().lower() for part in cookie.split(";")]
        assert f"path={BASE}" in attrs
        assert "httponly" in attrs and "samesite=strict" in attrs and "max-age=43200" in attrs
        value = cookie.split(";")[0].split("=", 1)[1]
        assert TOKEN not in cookie and value
        assert stack.auth.session_valid(value, WorkspaceRef(P, W))
        assert not stack.auth.session_valid(value, WorkspaceRef(P, "other"))
        followed = client.get(response.headers["location"], headers={"Cookie": f"{COOKIE_NAME}={value}"})
        echo = _echo(followed)
        assert echo["rawPath"] == "/some/path?a=1&b=two"
        assert COOKIE_NAME not in echo["lower"].get("cookie", "")


def test_token_from_another_site_answers_a_page_that_navigates(stack: Stack) -> None:
    with stack.client() as client:
        response = client.get(f"{BASE}?token={TOKEN}", headers={"Sec-Fetch-Site": "cross-site"})
        assert response.status_code == 200
        assert f'content="0;url={BASE}"' in response.text
        assert "samesite=strict" in response.headers["set-cookie"].lower()
        assert TOKEN not in response.text


def test_no_session_wrong_token_or_foreign_cookie_is_401(stack: Stack) -> None:
    with stack.client() as client:
        assert client.get(BASE).status_code == 401
        assert client.get(f"{BASE}?token=wrong").status_code == 401
        for cookie in (
            stack.session_cookie(P, "w2"),  # another workspace's cookie
            f"{COOKIE_NAME}={stack.auth.issue_session(WorkspaceRef(P, W), now=time.time() - 13 * 3600)}",  # expired
            stack.session_cookie()[:-3] + "AAA",  # tampered
            f"{COOKIE_NAME}={TOKEN}",  # the raw token is not a session
        ):
            response = client.get(BASE, headers={"Cookie": cookie})
            assert response.status_code == 401, cookie
            assert response.json()["code"] == "unauthorized"
        # A person in a browser tab gets words, not JSON.
        page = client.get(BASE, headers={"Sec-Fetch-Mode": "navigate"})
        assert (
            page.status_code == 401 and "?token=" in page.text and page.headers["content-type"].startswith("text/html")
        )


def test_wrong_tokens_are_throttled(stack: Stack) -> None:
    stack.limiter.clear()
    stack.limiter.limit = 2
    try:
        with stack.client() as client:
            assert client.get(f"{BASE}?token=bad1").status_code == 401
            assert client.get(f"{BASE}?token=bad2").status_code == 401
            blocked = client.get(f"{BASE}?token={TOKEN}")  # even the right one, for a while
            assert blocked.status_code == 429 and blocked.json()["code"] == "too_many_attempts"
            bearer = client.get(f"{BASE}x", headers={"Authorization": f"Bearer {TOKEN}"})
            assert bearer.status_code == 429
            # A valid session cookie is not a guess: it still works.
            assert client.get(f"{BASE}x", headers={"Cookie": stack.session_cookie()}).status_code == 200
            assert stack.limiter.count("127.0.0.1") == 2
    finally:
        stack.limiter.limit = 1000
        stack.limiter.clear()


def test_bearer_token_works_and_is_not_forwarded(stack: Stack) -> None:
    with stack.client(headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        echo = _echo(client.get(f"{BASE}x"))
        assert "authorization" not in echo["names"]
    with stack.client(headers={"Authorization": "Bearer nope"}) as client:
        assert client.get(f"{BASE}x").status_code == 401


async def _no_resolver(ref: WorkspaceRef) -> tuple[str, int]:
    raise NotFound("unused")


def test_cookie_values_are_hmac_bound_to_the_token() -> None:
    ref = WorkspaceRef(P, W)
    one = Authenticator("token-one", FailureLimiter(5), session_ttl=3600)
    two = Authenticator("token-two", FailureLimiter(5), session_ttl=3600)
    value = one.issue_session(ref)
    assert one.session_valid(value, ref) and not two.session_valid(value, ref)
    assert "token-one" not in value
    assert not one.session_valid("garbage", ref) and not one.session_valid("", ref)


# --- paths and headers -------------------------------------------------------------------------------------------


def test_path_prefix_is_stripped_with_the_encoding_kept(authed: httpx.Client) -> None:
    echo = _echo(authed.get(f"{BASE}static/a%20b/%2Fc;d.js?folder=/workspace&x=%2F"))
    assert echo["rawPath"] == "/static/a%20b/%2Fc;d.js?folder=/workspace&x=%2F"
    assert _echo(authed.get(BASE))["rawPath"] == "/"


def test_a_token_in_the_query_never_reaches_the_upstream(stack: Stack, authed: httpx.Client) -> None:
    # Not a navigation (POST): no redirect, but the parameter is dropped on the way, the others kept as sent.
    echo = _echo(authed.post(f"{BASE}form?a=%2F&token={TOKEN}&b", content=b"x"))
    assert echo["rawPath"] == "/form?a=%2F&b"


def test_workspace_root_without_slash_redirects(stack: Stack) -> None:
    with stack.client() as client:
        response = client.get(f"/ide/{P}/{W}?token={TOKEN}")
        assert response.status_code == 308
        assert response.headers["location"] == f"/ide/{P}/{W}/?token={TOKEN}"


def test_request_headers_forwarded_and_hop_by_hop_dropped(stack: Stack, authed: httpx.Client) -> None:
    response = authed.get(
        f"{BASE}h",
        headers={
            "Cookie": f"code-server-session=s1; {stack.session_cookie()}; theme=dark",
            "Connection": "keep-alive, X-Drop-Me",
            "X-Drop-Me": "1",
            "TE": "trailers",
            "Proxy-Authorization": "Basic Zm9vOmJhcg==",
            "X-Forwarded-Host": "evil.example",
            "X-Custom": "kept",
            "Origin": "http://127.0.0.1:1234",
            "Accept-Encoding": "gzip",
        },
    )
    echo = _echo(response)
    lower = echo["lower"]
    for gone in ("x-drop-me", "te", "proxy-authorization", "keep-alive", "upgrade"):
        assert gone not in echo["names"], gone
    assert lower["cookie"] == "code-server-session=s1; theme=dark"
    assert lower["x-custom"] == "kept" and lower["origin"] == "http://127.0.0.1:1234"
    assert lower["accept-encoding"] == "gzip"
    proxy_host = stack.proxy_url.removeprefix("http://")
    assert lower["host"] == proxy_host  # the browser's Host: code-server compares Origin with it
    assert lower["x-forwarded-host"] == proxy_host and echo["names"].count("x-forwarded-host") == 1
    assert lower["x-forwarded-proto"] == "http" and lower["x-forwarded-prefix"] == f"/ide/{P}/{W}"
    assert lower["x-forwarded-for"] == "127.0.0.1"
    assert "user-agent" in lower  # httpx's own, passed through; the proxy adds none of its own


def test_response_headers_cookies_scoped_hop_by_hop_dropped(authed: httpx.Client) -> None:
    response = authed.get(f"{BASE}headers")
    assert response.status_code == 200 and response.text == "headers"
    assert response.headers["x-kept"] == "yes"
    for gone in ("x-hop", "keep-alive", "proxy-authenticate"):
        assert gone not in response.headers, gone
    cookies = response.headers.get_list("set-cookie")
    assert cookies == [
        f"code-server-session=abc; Path={BASE}; SameSite=Lax",
        "other=1; Path=/ide/p1/w1/sub; HttpOnly",
    ]


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("./login", "./login"),
        ("/login?to=%2F", f"{BASE}login?to=%2F"),
        ("/", BASE),
        (f"{BASE}already", f"{BASE}already"),
        ("https://example.com/elsewhere", "https://example.com/elsewhere"),
        ("UPSTREAM/abs?x=1", f"{BASE}abs?x=1"),
        ("PROXY/abs", f"{BASE}abs"),
    ],
)
def test_redirects_stay_below_the_prefix(stack: Stack, authed: httpx.Client, location: str, expected: str) -> None:
    location = location.replace("UPSTREAM", f"http://127.0.0.1:{stack.upstream_port}")
    location = location.replace("PROXY", stack.proxy_url)
    response = authed.get(f"{BASE}redirect", params={"to": location})
    assert response.status_code == 302
    assert response.headers["location"] == expected


def test_compressed_body_passes_untouched(authed: httpx.Client) -> None:
    with authed.stream("GET", f"{BASE}gzip", headers={"Accept-Encoding": "gzip"}) as response:
        raw = b"".join(response.iter_raw())
        assert response.headers["content-encoding"] == "gzip"
        assert int(response.headers["content-length"]) == len(raw)
    assert gzip.decompress(raw) == b"squeezed " * 1000


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_methods_and_bodies_pass(authed: httpx.Client, method: str) -> None:
    body = b"x" * 1000 if method != "OPTIONS" else b""
    echo = _echo(authed.request(method, f"{BASE}m", content=body))
    assert echo["method"] == method
    assert echo["bodyLength"] == len(body) and echo["bodySha256"] == hashlib.sha256(body).hexdigest()


def test_head(authed: httpx.Client) -> None:
    response = authed.head(f"{BASE}page")
    assert response.status_code == 200 and response.content == b""
    assert int(response.headers["content-length"]) > 0


# --- streaming ---------------------------------------------------------------------------------------------------


def test_response_is_streamed(stack: Stack, authed: httpx.Client) -> None:
    stack.state.release_stream.clear()
    with authed.stream("GET", f"{BASE}stream") as response:
        chunks = response.iter_bytes()
        assert next(chunks) == b"first\n"  # arrives while upstream is still holding the rest back
        stack.state.release_stream.set()
        assert b"".join(chunks) == b"second\n"


def test_request_body_is_streamed(stack: Stack, authed: httpx.Client) -> None:
    stack.state.first_chunk_seen.clear()
    tail = b"y" * (3 * 1024 * 1024)

    def body() -> Iterator[bytes]:
        yield b"x" * 1024
        # The upstream must have the first chunk before we send the rest: nothing buffers the whole body.
        assert stack.state.first_chunk_seen.wait(20), "the first chunk did not reach the upstream"
        yield tail

    response = authed.post(f"{BASE}upload", content=body())
    assert response.status_code == 200
    assert response.json()["bodyLength"] == 1024 + len(tail)


def test_large_body_round_trip(authed: httpx.Client) -> None:
    payload = bytes(range(256)) * (20 * 4096)  # 20 MiB
    response = authed.post(f"{BASE}upload", content=payload, headers={"Content-Type": "application/octet-stream"})
    assert response.json() == {"bodyLength": len(payload), "bodySha256": hashlib.sha256(payload).hexdigest()}


# --- upstream trouble --------------------------------------------------------------------------------------------


def test_upstream_down_is_502_and_a_retrying_page_for_people(stack: Stack) -> None:
    with stack.client(headers={"Cookie": stack.session_cookie(P, "down")}) as client:
        response = client.get(f"/ide/{P}/down/")
        assert response.status_code == 502 and response.json()["code"] == "ide_unavailable"
        page = client.get(f"/ide/{P}/down/", headers={"Sec-Fetch-Mode": "navigate"})
        assert page.status_code == 502 and 'http-equiv="refresh"' in page.text
        assert page.headers["retry-after"] == "2"


def test_resolver_errors_come_through(stack: Stack) -> None:
    with stack.client(headers={"Cookie": stack.session_cookie(P, "stopped")}) as client:
        response = client.get(f"/ide/{P}/stopped/")
        assert response.status_code == 409 and response.json()["code"] == "not_running"
    with stack.client(headers={"Cookie": stack.session_cookie("p9", W)}) as client:
        assert client.get(f"/ide/p9/{W}/").status_code == 404
    with stack.client(headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        bad = client.get("/ide/bad%3Bid/w1/")
        assert bad.status_code == 404 and "valid" in bad.json()["message"]


def test_resolutions_are_cached_briefly(stack: Stack, authed: httpx.Client) -> None:
    time.sleep(1.1)  # what earlier tests resolved has expired (the stack's resolve_ttl is 1 s)
    stack.resolved.clear()
    for _ in range(10):
        _echo(authed.get(f"{BASE}c"))
    first = stack.resolved.count((P, W))
    assert 1 <= first < 10  # a page load's requests do not each ask the resolver (the engine)
    time.sleep(1.1)
    _echo(authed.get(f"{BASE}c"))
    assert stack.resolved.count((P, W)) == first + 1


def test_ready_probes_the_health_endpoint(stack: Stack) -> None:
    async def probe() -> tuple[bool, bool]:
        proxy = IDEProxy(_no_resolver, Authenticator(TOKEN, FailureLimiter(5), session_ttl=60))
        try:
            up = await proxy.ready("127.0.0.1", stack.upstream_port)
            down = await proxy.ready("127.0.0.1", _free_port(), timeout=0.5)
            return up, down
        finally:
            await proxy.close()

    assert asyncio.run(probe()) == (True, False)


# --- websockets --------------------------------------------------------------------------------------------------


def _ws_url(stack: Stack, path: str = "ws") -> str:
    return stack.proxy_url.replace("http", "ws", 1) + BASE + path


def test_websocket_both_ways_text_and_binary(stack: Stack) -> None:
    headers = {"Cookie": f"code-server-session=s1; {stack.session_cookie()}", "Origin": stack.proxy_url}
    with connect(
        _ws_url(stack, "ws?reconnectionToken=abc&skipWebSocketFrames=false"),
        additional_headers=headers,
        subprotocols=["vscode"],  # type: ignore[list-item]
        max_size=None,
    ) as ws:
        assert ws.subprotocol == "vscode"
        assert ws.recv(timeout=10) == "hello"  # the upstream speaks first
        ws.send("ping")
        assert ws.recv(timeout=10) == "echo:ping"
        ws.send(b"\x00\x01\x02\xff")
        assert ws.recv(timeout=10) == b"\xff\x02\x01\x00"
        big = bytes(range(256)) * 8192  # 2 MiB in one frame
        ws.send(big)
        assert ws.recv(timeout=20) == big[::-1]
        ws.send("headers")
        seen = {k.lower(): v for k, v in json.loads(ws.recv(timeout=10)).items()}
        assert seen["origin"] == stack.proxy_url and seen["host"] == stack.proxy_url.removeprefix("http://")
    assert stack.state.ws_cookies[-1] == "code-server-session=s1"


def test_websocket_close_codes_travel(stack: Stack) -> None:
    headers = {"Cookie": stack.session_cookie()}
    with connect(_ws_url(stack), additional_headers=headers) as ws:
        assert ws.recv(timeout=10) == "hello"
        ws.send("close:4001")
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001
    count = len(stack.state.ws_closes)
    with connect(_ws_url(stack), additional_headers=headers) as ws:
        assert ws.recv(timeout=10) == "hello"
        ws.close(code=4002)
    deadline = time.monotonic() + 10
    while len(stack.state.ws_closes) <= count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stack.state.ws_closes[-1] == 4002


def test_a_session_opened_by_a_revoked_token_ends(stack: Stack) -> None:
    scoped, claims = stack.auth.signer.mint(P, W, ["write"], 600, now=time.time() - 5)
    with stack.client() as client:
        opened = client.get(f"{BASE}?token={scoped}")
        assert opened.status_code == 303
        cookie = f"{COOKIE_NAME}={opened.cookies[COOKIE_NAME]}"
        assert client.get(f"{BASE}x", headers={"Cookie": cookie}).status_code == 200
        with connect(_ws_url(stack), additional_headers={"Cookie": cookie}) as ws:
            assert ws.recv(timeout=10) == "hello"
            stack.auth.revocations.add(P, W, claims.issued_at + 0.001)
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
        assert client.get(f"{BASE}x", headers={"Cookie": cookie}).status_code == 401
        assert client.get(f"{BASE}x", headers={"Cookie": stack.session_cookie()}).status_code == 200  # a newer one


def test_a_read_only_token_cannot_open_the_ide(stack: Stack) -> None:
    reader, _ = stack.auth.signer.mint(P, W, ["read"], 600)
    with stack.client() as client:
        refused = client.get(f"{BASE}?token={reader}")
        assert refused.status_code == 403 and refused.json()["code"] == "forbidden"


def test_websocket_needs_a_session(stack: Stack) -> None:
    with pytest.raises(InvalidStatus) as refused:
        connect(_ws_url(stack), additional_headers={"Cookie": stack.session_cookie(P, "w2")})
    assert refused.value.response.status_code == 401
    with pytest.raises(InvalidStatus) as down:
        connect(
            stack.proxy_url.replace("http", "ws", 1) + f"/ide/{P}/down/ws",
            additional_headers={"Cookie": stack.session_cookie(P, "down")},
        )
    assert down.value.response.status_code == 502


# --- the pieces, directly ----------------------------------------------------------------------------------------


def test_header_helpers() -> None:
    assert strip_cookie(f"a=1; {COOKIE_NAME}=x;b=2", COOKIE_NAME) == "a=1; b=2"
    assert strip_cookie(f"{COOKIE_NAME}=x", COOKIE_NAME) == ""
    assert without_param("a=1&token=x&tokens=2&token&b=%2F", "token") == "a=1&tokens=2&b=%2F"
    assert rewrite_set_cookie("s=1", BASE) == f"s=1; Path={BASE}"
    assert rewrite_set_cookie("s=1; Path=/x; Domain=example.com; Secure", BASE) == f"s=1; Path={BASE}x; Secure"
    assert rewrite_set_cookie(f"{COOKIE_NAME}=1; Path=/", BASE) is None
    assert rewrite_location("//other.example/x", BASE, set()) == "//other.example/x"
    assert rewrite_location("login", BASE, set()) == "login"
    kept = request_headers(
        [("Host", "a"), ("Connection", "Upgrade, X-A"), ("X-A", "1"), ("Authorization", "Bearer t"), ("X-B", "2")],
        is_token=lambda presented: presented == "t",
    )
    assert kept == [("X-B", "2")]
    assert request_headers([("Authorization", "Basic abc")], is_token=lambda p: p == "t") == [
        ("Authorization", "Basic abc")
    ]
    out = response_headers([("Transfer-Encoding", "chunked"), ("Content-Type", "text/html")], BASE, set())
    assert out == [("Content-Type", "text/html")]


# --- in a real browser: opening the IDE from a page on another site ----------------------------------------------


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    with chromium_browser() as browser:
        yield browser


@pytest.mark.browser
@pytest.mark.parametrize("origin", ["direct", "cross-site link"])
def test_browser_opens_the_ide_with_the_token_once(stack: Stack, chromium: Any, origin: str) -> None:
    target = f"{stack.proxy_url}{BASE}page?token={TOKEN}"
    context = chromium.new_context()
    try:
        page = context.new_page()
        if origin == "direct":
            page.goto(target)
        else:
            launcher = f"http://localhost:{stack.upstream_port}/launcher?target={quote(target, safe='')}"
            page.goto(launcher)
            page.click("#go")
        page.wait_for_selector("#up", timeout=15000)
        assert page.url == f"{stack.proxy_url}{BASE}page"
        cookies = context.cookies()
        ours = [c for c in cookies if c["name"] == COOKIE_NAME]
        assert len(ours) == 1 and ours[0]["httpOnly"] and ours[0]["sameSite"] == "Strict"
        assert ours[0]["path"] == BASE.rstrip("/") or ours[0]["path"] == BASE
        # Later loads need no token.
        page.goto(f"{stack.proxy_url}{BASE}page")
        assert page.text_content("#up") == "upstream page"
    finally:
        context.close()
