"""Previews (/preview/{projectId}/{workspaceId}/{port}/) on a real server and a real engine: servers of the python
template listening inside a workspace (python3 -m http.server, and a tiny stdlib app with a websocket echo uploaded
by sync), reached through the preview origin (the server's second port) over real HTTP and websockets, `listening`
in /status and the status events when a port opens and closes, and the page's Ports panel in Chromium.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from ide_backend.api.auth import COOKIE_NAME, PREVIEW_COOKIE_NAME
from ide_backend.api.protocol import StatusMessage
from ide_backend.client import LiveChannel

from .harness import Server, free_port, remove_instance
from .helpers import TOKEN, Channel, chromium_browser, post, start_server

pytestmark = pytest.mark.docker

# A page and a websocket echo in the standard library alone: GET / is the page, GET /headers answers what came in,
# GET /ws upgrades and answers every text frame with "echo:" + its text.
ECHO_APP = r'''
import base64, hashlib, json, socketserver, struct, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

PAGE = b"""<!doctype html><title>echo app</title><h1 id=title>preview works</h1><p id=out>waiting</p>
<script>
const ws = new WebSocket(location.href.replace(/^http/, "ws").replace(/[^/]*$/, "") + "ws");
ws.onopen = () => ws.send("hello from the page");
ws.onmessage = (e) => { document.getElementById("out").textContent = e.data; };
ws.onerror = () => { document.getElementById("out").textContent = "websocket failed"; };
</script>"""

class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path.startswith("/ws"):
            return self.websocket()
        if self.path.startswith("/headers"):
            body = json.dumps({"path": self.path, "headers": dict(self.headers.items())}).encode()
            kind = "application/json"
        else:
            body, kind = PAGE, "text/html"
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def websocket(self):
        key = self.headers["Sec-WebSocket-Key"].encode()
        accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.close_connection = True
        while True:
            head = self.rfile.read(2)
            if len(head) < 2:
                return
            opcode, length = head[0] & 0x0F, head[1] & 0x7F
            if length == 126:
                length = struct.unpack(">H", self.rfile.read(2))[0]
            elif length == 127:
                length = struct.unpack(">Q", self.rfile.read(8))[0]
            mask = self.rfile.read(4) if head[1] & 0x80 else b"\0\0\0\0"
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(length)))
            if opcode == 8:
                self.wfile.write(b"\x88\x00")
                return
            if opcode == 1:
                out = b"echo:" + data
                self.wfile.write(bytes([0x81, len(out)]) + out if len(out) < 126 else
                                 bytes([0x81, 126]) + struct.pack(">H", len(out)) + out)
                self.wfile.flush()

class Server(socketserver.ThreadingMixIn, HTTPServer):
    daemon_threads = True

Server((sys.argv[1], int(sys.argv[2])), Handler).serve_forever()
'''

HTTP_PORT, ECHO_PORT = 8000, 8765


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, docker_engine: None) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("preview"), IDE_PREVIEW_PORT=str(free_port()))
    try:
        yield srv
    finally:
        srv.stop()
        remove_instance(srv.instance)


def _preview_origin(server: Server) -> str:
    return f"http://127.0.0.1:{server.env['IDE_PREVIEW_PORT']}"


def _exec(server: Server, ref: dict[str, str], command: str) -> dict[str, Any]:
    response = post(server, "exec", {**ref, "command": command})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _listening(server: Server, ref: dict[str, str]) -> dict[int, dict[str, Any]]:
    response = post(server, "status", ref)
    assert response.status_code == 200, response.text
    return {item["port"]: item for item in response.json()["data"]["listening"]}


def _wait_listening(server: Server, ref: dict[str, str], port: int, present: bool = True) -> dict[int, Any]:
    deadline = time.monotonic() + 30
    while True:
        found = _listening(server, ref)
        if (port in found) == present:
            return found
        assert time.monotonic() < deadline, f"port {port} {'never opened' if present else 'never closed'}: {found}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def app(server: Server) -> dict[str, str]:
    """A running python workspace with `python3 -m http.server 8000` and the echo app on 8765."""
    ref = {"projectId": "prev", "workspaceId": "w-" + uuid.uuid4().hex[:6]}
    files = {"hello.txt": "hello through the preview\n", "app/echo.py": ECHO_APP}
    response = post(server, "start", {**ref, "template": "python", "files": files})
    assert response.status_code == 200, response.text
    _exec(server, ref, f"nohup python3 -m http.server {HTTP_PORT} >/tmp/http.log 2>&1 &")
    _exec(server, ref, f"nohup python3 app/echo.py 0.0.0.0 {ECHO_PORT} >/tmp/echo.log 2>&1 &")
    _wait_listening(server, ref, HTTP_PORT)
    _wait_listening(server, ref, ECHO_PORT)
    return ref


def _path(ref: dict[str, str], port: int, rest: str = "") -> str:
    return f"/preview/{ref['projectId']}/{ref['workspaceId']}/{port}/{rest}"


def _bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _mint(server: Server, ref: dict[str, str], **body: Any) -> str:
    response = httpx.post(f"{server.url}/api/v1/tokens", json={**ref, **body}, headers=_bearer(), timeout=30)
    assert response.status_code == 200, response.text
    token: str = response.json()["token"]
    return token


# --- HTTP and websockets through the preview ---------------------------------------------------------------------


def test_http_through_the_preview_origin(server: Server, app: dict[str, str]) -> None:
    origin = _preview_origin(server)
    response = httpx.get(origin + _path(app, HTTP_PORT, "hello.txt"), headers=_bearer(), timeout=30)
    assert response.status_code == 200, response.text
    assert response.text == "hello through the preview\n"
    # A folder without its slash is redirected by the app itself; the redirect stays below the preview's prefix.
    listing = httpx.get(origin + _path(app, HTTP_PORT, "app"), headers=_bearer(), timeout=30)
    assert listing.status_code == 301 and listing.headers["location"].endswith(_path(app, HTTP_PORT, "app/"))
    # The preview's root without its slash gets one.
    bare = httpx.get(origin + _path(app, HTTP_PORT).rstrip("/"), headers=_bearer(), timeout=30)
    assert bare.status_code == 308 and bare.headers["location"] == _path(app, HTTP_PORT)


def test_the_main_origin_sends_previews_to_their_own_origin(server: Server, app: dict[str, str]) -> None:
    response = httpx.get(server.url + _path(app, HTTP_PORT, "hello.txt?a=1&token=t"), timeout=30)
    assert response.status_code == 307
    assert response.headers["location"] == _preview_origin(server) + _path(app, HTTP_PORT, "hello.txt?a=1&token=t")
    # ...and the preview origin serves previews only: not the page, the API, the docs or the IDE.
    with httpx.Client(base_url=_preview_origin(server), headers=_bearer(), timeout=30) as client:
        for path in ("/", "/api/v1/templates", "/docs", "/static/app.js", f"/ide/{app['projectId']}/x/"):
            answer = client.get(path)
            assert answer.status_code == 404, path
            assert answer.json()["code"] == "not_found"
        assert client.post("/api/v1/containers/status", json=app).status_code == 404
    url = f"{_preview_origin(server).replace('http', 'ws')}/api/v1/ws?token={TOKEN}"
    with pytest.raises(InvalidStatus) as refused:
        connect(url, open_timeout=10).close()
    assert refused.value.response.status_code == 404


def test_a_websocket_echoes_through_the_preview(server: Server, app: dict[str, str]) -> None:
    url = _preview_origin(server).replace("http", "ws") + _path(app, ECHO_PORT, "ws")
    with connect(url, additional_headers=_bearer(), open_timeout=10) as ws:
        for text in ("one", "two " * 100):
            ws.send(text)
            assert ws.recv(timeout=10) == "echo:" + text


# --- access ------------------------------------------------------------------------------------------------------


def test_a_token_once_then_the_previews_own_cookie(server: Server, app: dict[str, str]) -> None:
    origin = _preview_origin(server)
    with httpx.Client(base_url=origin, timeout=30) as browser:
        none = browser.get(_path(app, ECHO_PORT, "headers"))
        assert none.status_code == 401 and none.json()["code"] == "unauthorized"
        page = browser.get(_path(app, ECHO_PORT, "headers"), headers={"Sec-Fetch-Mode": "navigate"})
        assert page.status_code == 401 and page.headers["content-type"].startswith("text/html")

        opened = browser.get(_path(app, ECHO_PORT, f"headers?x=1&token={TOKEN}"))
        assert opened.status_code == 303
        assert opened.headers["location"] == _path(app, ECHO_PORT, "headers?x=1")
        cookie = opened.headers["set-cookie"]
        attrs = [part.strip().lower() for part in cookie.split(";")]
        assert cookie.startswith(f"{PREVIEW_COOKIE_NAME}=") and TOKEN not in cookie
        assert f"path={_path(app, ECHO_PORT)}" in attrs and "httponly" in attrs and "samesite=lax" in attrs

        # The client keeps the cookie, as a browser would: the next request needs no token.
        seen = browser.get(opened.headers["location"])
        assert seen.status_code == 200, seen.text
        came = seen.json()
        assert came["path"] == "/headers?x=1"
        # Neither the token nor the preview's cookie reaches the app.
        assert PREVIEW_COOKIE_NAME not in came["headers"].get("Cookie", "")
        assert TOKEN not in json.dumps(came)
        # The cookie is the port's: another port of the same workspace wants the token again.
        assert browser.get(_path(app, HTTP_PORT, "hello.txt")).status_code == 401


def test_an_ide_cookie_opens_no_preview_and_a_preview_cookie_no_ide(server: Server, app: dict[str, str]) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as main:
        opened = main.get(f"/ide/{app['projectId']}/{app['workspaceId']}/?token={TOKEN}")
        assert opened.status_code == 303, opened.text
        ide_cookie = opened.headers["set-cookie"].split(";")[0]
    assert ide_cookie.startswith(COOKIE_NAME + "=")
    with httpx.Client(base_url=_preview_origin(server), timeout=30) as preview:
        answer = preview.get(_path(app, HTTP_PORT, "hello.txt"), headers={"Cookie": ide_cookie})
        assert answer.status_code == 401
        # The same signed value under the preview's name is still an IDE session, not a preview's.
        forged = ide_cookie.replace(COOKIE_NAME + "=", PREVIEW_COOKIE_NAME + "=", 1)
        assert preview.get(_path(app, HTTP_PORT, "hello.txt"), headers={"Cookie": forged}).status_code == 401
        preview_cookie = preview.get(_path(app, HTTP_PORT, f"hello.txt?token={TOKEN}")).headers["set-cookie"]
    value = preview_cookie.split(";")[0].split("=", 1)[1]
    with httpx.Client(base_url=server.url, timeout=30) as main:
        for name in (PREVIEW_COOKIE_NAME, COOKIE_NAME):
            ide = main.get(f"/ide/{app['projectId']}/{app['workspaceId']}/", headers={"Cookie": f"{name}={value}"})
            assert ide.status_code == 401, name


def test_scoped_tokens_open_their_own_workspace_only(server: Server, app: dict[str, str]) -> None:
    origin = _preview_origin(server)
    own = _mint(server, app)
    other = _mint(server, {"projectId": app["projectId"], "workspaceId": "someone-else"})
    read_only = _mint(server, app, scopes=["read"])
    url = origin + _path(app, HTTP_PORT, "hello.txt")
    assert httpx.get(url, headers=_bearer(own), timeout=30).status_code == 200
    for token in (other, read_only):
        refused = httpx.get(url, headers=_bearer(token), timeout=30)
        assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    ws_url = origin.replace("http", "ws") + _path(app, ECHO_PORT, "ws")
    with pytest.raises(InvalidStatus) as refused_ws:
        connect(ws_url, additional_headers=_bearer(other), open_timeout=10).close()
    assert refused_ws.value.response.status_code == 403


# --- what cannot be previewed ------------------------------------------------------------------------------------


def test_bad_ports_unknown_and_stopped_workspaces(server: Server, app: dict[str, str]) -> None:
    origin = _preview_origin(server)
    with httpx.Client(base_url=origin, headers=_bearer(), timeout=30) as client:
        for port in ("0", "65536", "80a", "-1"):
            bad = client.get(f"/preview/{app['projectId']}/{app['workspaceId']}/{port}/")
            assert bad.status_code == 400, port
            assert "1 to 65535" in bad.json()["message"]
        assert client.get("/preview/prev/no.such/8000/").json()["code"] == "not_found"
        unknown = client.get("/preview/prev/never-started/8000/")
        assert unknown.status_code == 404 and unknown.json()["code"] == "not_found"

        stopped = {"projectId": "prev", "workspaceId": "s-" + uuid.uuid4().hex[:6]}
        assert post(server, "start", stopped).status_code == 200
        assert post(server, "stop", stopped).status_code == 200
        answer = client.get(_path(stopped, 8000))
        assert answer.status_code == 409 and answer.json()["code"] == "not_running"


def test_vscodes_own_port_is_not_previewed(server: Server) -> None:
    ide = {"projectId": "prev", "workspaceId": "v-" + uuid.uuid4().hex[:6]}
    assert post(server, "start", {**ide, "template": "vscode"}).status_code == 200
    answer = httpx.get(_preview_origin(server) + _path(ide, 8080), headers=_bearer(), timeout=30)
    assert answer.status_code == 409 and f"/ide/{ide['projectId']}/{ide['workspaceId']}/" in answer.json()["message"]
    deadline = time.monotonic() + 90
    while ":1F90 00000000:0000 0A" not in _exec(server, ide, "cat /proc/net/tcp /proc/net/tcp6")["output"]:
        assert time.monotonic() < deadline, "code-server did not start listening on 8080"
        time.sleep(0.5)
    time.sleep(1.5)  # past the second for which /status reuses a reading (taken before code-server listened)
    assert 8080 not in _listening(server, ide)  # nor listed: it is the backend's, not the user's
    assert post(server, "delete", ide).status_code == 200


def test_nothing_listening_is_a_502_with_words(server: Server, app: dict[str, str]) -> None:
    origin = _preview_origin(server)
    with httpx.Client(base_url=origin, headers=_bearer(), timeout=30) as client:
        answer = client.get(_path(app, 9))
        assert answer.status_code == 502
        assert answer.json()["code"] == "preview_unavailable"
        assert "Nothing listens on port 9" in answer.json()["message"]
        page = client.get(_path(app, 9), headers={"Sec-Fetch-Mode": "navigate"})
        assert page.status_code == 502 and page.headers["content-type"].startswith("text/html")
        assert "Nothing listens on port 9" in page.text and 'http-equiv="refresh"' in page.text

        # Bound to the workspace's loopback only: listed, but the message says what to change.
        _exec(server, app, "nohup python3 -m http.server 8124 --bind 127.0.0.1 >/dev/null 2>&1 &")
        found = _wait_listening(server, app, 8124)
        assert found[8124]["address"] == "127.0.0.1"
        loopback = client.get(_path(app, 8124))
        assert loopback.status_code == 502 and "127.0.0.1 only" in loopback.json()["message"]
        _exec(server, app, "pkill -f 'http.server 8124'")


# --- listening ports ---------------------------------------------------------------------------------------------


def test_status_lists_listening_ports(server: Server, app: dict[str, str]) -> None:
    found = _listening(server, app)
    assert found[HTTP_PORT] == {
        "port": HTTP_PORT,
        "address": "0.0.0.0",
        "process": "python3",
        "previewUrl": _path(app, HTTP_PORT),
    }
    assert found[ECHO_PORT]["process"] == "python3"
    assert all(item["address"] != "127.0.0.11" for item in found.values())  # the engine's resolver is not listed


def test_a_status_event_when_a_port_opens_and_closes(server: Server, app: dict[str, str]) -> None:
    channel = Channel(server)
    try:
        channel.send(type="subscribe", ports=True, **app)
        channel.wait_for(type="subscribed")
        first = channel.wait_for(type="status", source="ports")  # the first reading of the subscription
        assert {item["port"] for item in first["listening"]} >= {HTTP_PORT, ECHO_PORT}
        assert first["status"] == "running"

        _exec(server, app, "nohup python3 -m http.server 8321 >/dev/null 2>&1 &")
        opened = _next_ports(channel, lambda ports: 8321 in ports)
        item = next(i for i in opened["listening"] if i["port"] == 8321)
        assert item["process"] == "python3" and item["previewUrl"] == _path(app, 8321)

        _exec(server, app, "pkill -f 'http.server 8321'")
        closed = _next_ports(channel, lambda ports: 8321 not in ports)
        assert {HTTP_PORT, ECHO_PORT} <= {i["port"] for i in closed["listening"]}

        # A second subscriber's snapshot already carries what listens.
        second = Channel(server)
        try:
            second.send(type="subscribe", ports=True, **app)
            snapshot = second.wait_for(type="status", source="snapshot")
            assert {HTTP_PORT, ECHO_PORT} <= {i["port"] for i in snapshot["listening"]}
            # A subscription without `ports` gets lifecycle events only, as before.
            plain = Channel(server)
            try:
                plain.send(type="subscribe", **app)
                assert "listening" not in plain.wait_for(type="status", source="snapshot")
                _exec(server, app, "nohup python3 -m http.server 8322 >/dev/null 2>&1 &")
                _next_ports(second, lambda ports: 8322 in ports)
                _exec(server, app, "pkill -f 'http.server 8322'")
                _next_ports(second, lambda ports: 8322 not in ports)
                assert not [m for m in plain.backlog if m.get("source") == "ports"]
                with pytest.raises(TimeoutError):
                    plain.wait_for(timeout=1.5, type="status", source="ports")
            finally:
                plain.close()
        finally:
            second.close()
    finally:
        channel.close()


def test_the_sdk_follows_ports_when_asked(server: Server, app: dict[str, str]) -> None:
    async def first_ports() -> StatusMessage:
        async with LiveChannel(server.url, TOKEN) as live:
            async with await live.subscribe(app["projectId"], app["workspaceId"], ports=True) as events:
                async for event in events:
                    if event.source == "ports":
                        return event
        raise AssertionError("the subscription ended without a ports event")

    event = asyncio.run(asyncio.wait_for(first_ports(), 30))
    assert event.listening is not None
    assert {HTTP_PORT, ECHO_PORT} <= {item.port for item in event.listening}


def _next_ports(channel: Channel, done: Any) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        event = channel.wait_for(timeout=max(0.1, deadline - time.monotonic()), type="status", source="ports")
        if done({item["port"] for item in event["listening"]}):
            return event


# --- the page ----------------------------------------------------------------------------------------------------


@pytest.mark.browser
def test_the_ports_panel_opens_a_preview_that_renders_and_echoes(
    server: Server, app: dict[str, str], tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    with chromium_browser() as browser:
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.set_default_timeout(30_000)
        page.goto(f"{server.url}/?token={TOKEN}")
        page.fill("#project-id", app["projectId"])
        page.fill("#workspace-id", app["workspaceId"])
        page.press("#workspace-id", "Enter")
        panel = page.locator("#ports")
        link = panel.locator(f'a[data-port="{ECHO_PORT}"]')
        expect(link).to_be_visible(timeout=30_000)
        expect(panel.locator(f'[data-port-row="{HTTP_PORT}"]')).to_contain_text("python3")
        page.screenshot(path=str(tmp_path / "ports-panel.png"))

        with context.expect_page() as opened:
            link.click()
        preview = opened.value
        preview.wait_for_load_state()
        expect(preview.locator("#title")).to_have_text("preview works")
        expect(preview.locator("#out")).to_have_text("echo:hello from the page")
        assert preview.url == _preview_origin(server) + _path(app, ECHO_PORT)  # the token is gone from the URL
        # The preview is another origin: the page's token (in its sessionStorage) is not there.
        assert preview.evaluate("() => Object.keys(sessionStorage).length") == 0
        assert preview.evaluate("() => window.opener") is None
        preview.screenshot(path=str(tmp_path / "preview.png"))
        assert not errors, errors
        context.close()
