"""VS Code and previews of workspaces on a Docker Swarm, for real: a node's bridge is not reachable from the backend's
host, so /ide/ and /preview/ reach the workspace's ports through a loopback forward whose connections are relayed
by an exec in the container (ide_backend/runtime/docker/tunnel.py). Checked here: code-server answers through the
proxy and `ideReady` says so, Chromium opens the workbench (its remote connection, a websocket, lists the files), a
preview serves HTTP and echoes over a websocket, a stopped and started workspace (a new container) works again, and
no forward is left open into a stopped one."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect
from websockets.sync.client import connect

from .harness import Server, free_port
from .helpers import TOKEN, chromium_browser, post, serving
from .swarm import SwarmCluster

pytestmark = [pytest.mark.docker, pytest.mark.swarm, pytest.mark.browser]

IMAGE = "ide-backend/code-server:latest"
ECHO_PORT = 8765

# Node's standard library alone: GET answers with its path, an upgrade to a websocket answers every text frame with
# "echo:" + its text (frames under 64 KiB, as here).
ECHO_APP = r"""
const http = require("http"), crypto = require("crypto");
const [host, port] = process.argv.slice(2);
const server = http.createServer((req, res) => {
  res.writeHead(200, { "Content-Type": "text/plain" });
  res.end("hello from " + req.url + " on the swarm\n");
});
server.on("upgrade", (req, socket) => {
  const accept = crypto.createHash("sha1")
    .update(req.headers["sec-websocket-key"] + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest("base64");
  socket.write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
    "Sec-WebSocket-Accept: " + accept + "\r\n\r\n");
  let buf = Buffer.alloc(0);
  socket.on("data", (chunk) => {
    buf = Buffer.concat([buf, chunk]);
    while (buf.length >= 2) {
      let len = buf[1] & 0x7f, off = 2;
      if (len === 126) { if (buf.length < 4) return; len = buf.readUInt16BE(2); off = 4; }
      const masked = (buf[1] & 0x80) !== 0, need = off + (masked ? 4 : 0) + len;
      if (buf.length < need) return;
      const mask = masked ? buf.subarray(off, off + 4) : Buffer.alloc(4);
      const start = off + (masked ? 4 : 0), opcode = buf[0] & 0x0f;
      const data = Buffer.from(buf.subarray(start, need).map((b, i) => b ^ mask[i % 4]));
      buf = buf.subarray(need);
      if (opcode === 8) { socket.end(Buffer.from([0x88, 0])); return; }
      if (opcode !== 1) continue;
      const out = Buffer.concat([Buffer.from("echo:"), data]);
      const head = out.length < 126 ? [0x81, out.length] : [0x81, 126, out.length >> 8, out.length & 255];
      socket.write(Buffer.concat([Buffer.from(head), out]));
    }
  });
});
server.listen(Number(port), host);
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, swarm_cluster: SwarmCluster) -> Iterator[Server]:
    with serving(
        tmp_path_factory.mktemp("swarm-proxy"),
        swarm_cluster,
        IDE_WORKSPACE_IMAGE=IMAGE,
        IDE_MEMORY_LIMIT_MB="1024",
        IDE_PREVIEW_PORT=str(free_port()),
    ) as srv:
        yield srv


def _ok(server: Server, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = post(server, endpoint, body, timeout=180)
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()
    return data


def _ide(ref: dict[str, str]) -> str:
    return f"/ide/{ref['projectId']}/{ref['workspaceId']}/"


def _wait_ide(server: Server, ref: dict[str, str]) -> None:
    """Until code-server answers through the proxy (about a second after its container starts)."""
    deadline = time.monotonic() + 90
    with server.client() as api:
        while (last := api.get(_ide(ref) + "healthz")).status_code != 200:
            assert time.monotonic() < deadline, f"code-server did not answer through the proxy: {last.text}"
            time.sleep(0.3)


def _forward_ports(server: Server) -> set[int]:
    """The loopback ports the backend process listens on besides its own two (its forwards)."""
    own = {int(server.url.rsplit(":", 1)[1]), int(server.env["IDE_PREVIEW_PORT"])}
    inode_ports = {}
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and local.startswith("0100007F:"):  # LISTEN on 127.0.0.1
                inode_ports[inode] = int(local.split(":")[1], 16)
    found = set()
    for fd in Path(f"/proc/{server.pid}/fd").iterdir():
        try:
            target = fd.readlink().as_posix()
        except OSError:
            continue
        if target.startswith("socket:["):
            port = inode_ports.get(target[8:-1])
            if port is not None and port not in own:
                found.add(port)
    return found


@pytest.fixture(scope="module")
def workspace(server: Server) -> dict[str, str]:
    ref = {"projectId": "swp-" + uuid.uuid4().hex[:6], "workspaceId": "w"}
    files = {"hello.py": "print('hello from the swarm')\n", "app/echo.js": ECHO_APP}
    _ok(server, "start", {**ref, "files": files})
    _ok(server, "exec", {**ref, "command": f"nohup node app/echo.js 0.0.0.0 {ECHO_PORT} >/tmp/echo.log 2>&1 &"})
    return ref


def test_code_server_answers_through_the_proxy_and_is_ready(server: Server, workspace: dict[str, str]) -> None:
    _wait_ide(server, workspace)
    data = _ok(server, "status", workspace)["data"]
    assert data["ideReady"] is True, data
    with httpx.Client(base_url=server.url, timeout=30) as browser:
        opened = browser.get(_ide(workspace) + f"?token={TOKEN}", follow_redirects=True)
        assert opened.status_code == 200, opened.text
        assert "vscode" in opened.text.lower()  # the workbench's page, signed in by the backend


def test_the_workbench_opens_in_chromium(server: Server, workspace: dict[str, str]) -> None:
    _wait_ide(server, workspace)
    with chromium_browser() as browser:
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        try:
            page = context.new_page()
            page.goto(server.url + _ide(workspace) + f"?token={TOKEN}")
            page.wait_for_selector(".monaco-workbench", timeout=90_000)
            # The explorer lists the files: code-server's remote connection, a websocket, works through the forward.
            expect(page.locator(".explorer-folders-view")).to_contain_text("hello.py", timeout=90_000)
        finally:
            context.close()


def test_a_preview_serves_http_and_websockets(server: Server, workspace: dict[str, str]) -> None:
    deadline = time.monotonic() + 30
    while ECHO_PORT not in {p["port"] for p in _ok(server, "status", workspace)["data"]["listening"]}:
        assert time.monotonic() < deadline, "the echo app never listened"
        time.sleep(0.3)
    origin = f"127.0.0.1:{server.env['IDE_PREVIEW_PORT']}"
    path = f"/preview/{workspace['projectId']}/{workspace['workspaceId']}/{ECHO_PORT}/"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    answer = httpx.get(f"http://{origin}{path}some/page?x=1", headers=headers, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.text == "hello from /some/page?x=1 on the swarm\n"
    with connect(f"ws://{origin}{path}ws", additional_headers=headers, open_timeout=30) as ws:
        for text in ("one", "two " * 40):
            ws.send(text)
            assert ws.recv(timeout=10) == "echo:" + text
    # A port nothing listens on: the relay in the container cannot connect, and the proxy says so, not a hang.
    nothing = httpx.get(f"http://{origin}{path.replace(str(ECHO_PORT), '8999')}", headers=headers, timeout=30)
    assert nothing.json()["code"] == "preview_unavailable", nothing.text
    assert "Nothing listens on port 8999" in nothing.json()["message"]


def test_stopped_workspace_has_no_forward_and_started_again_works(server: Server, workspace: dict[str, str]) -> None:
    _wait_ide(server, workspace)
    before = _forward_ports(server)
    assert before, "the IDE was reached, so the backend listens on a forward into the workspace"
    _ok(server, "stop", workspace)
    assert not _forward_ports(server) & before, "a forward into the stopped container is still listening"
    for port in before:
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
    _ok(server, "start", workspace)
    _wait_ide(server, workspace)
    assert _ok(server, "status", workspace)["data"]["ideReady"] is True
