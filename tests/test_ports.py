"""Listening ports from /proc/net/tcp{,6} as the workspace's program prints them (ide_backend.service.ports), and the
backend's preview cookie kept out of workspaces (ide_backend.proxy.cookies, headers), and the preview origin's
settings on servers without an engine."""

from __future__ import annotations

from pathlib import Path

import httpx

from ide_backend.api.auth import COOKIE_NAME, PREVIEW_COOKIE_NAME
from ide_backend.proxy.cookies import rewrite_set_cookie, strip_cookie
from ide_backend.proxy.headers import request_headers
from ide_backend.service.domain import WorkspaceRef
from ide_backend.service.ports import ListeningPort, listening_items, parse_listening

from .harness import free_port
from .helpers import TOKEN, start_server

HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode"
# Real lines, from a workspace running `python3 -m http.server 8000`, code-server on 8080, a server on 127.0.0.1:5173,
# Docker's resolver (127.0.0.11:43787), one established connection, and a server on [::]:3000 (tcp6).
TCP = [
    "   0: 00000000:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 40101 1 0 100 0 0 10 0",
    "   1: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 40102 1 0 100 0 0 10 0",
    "   2: 0100007F:1435 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 40103 1 0 100 0 0 10 0",
    "   3: 0B00007F:AB0B 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 30001 1 0 100 0 0 10 0",
    "   4: 0200110A:1F40 0100110A:C350 01 00000000:00000000 00:00000000 00000000  1000        0 40104 1 0 20 4 30 10 -1",
]
TCP6 = [
    "   0: 00000000000000000000000000000000:0BB8 00000000000000000000000000000000:0000 0A 00000000:00000000 "
    "00:00000000 00000000  1000        0 40105 1 0 100 0 0 10 0",
    "   1: 0000000000000000FFFF00000100007F:1F41 00000000000000000000000000000000:0000 0A 00000000:00000000 "
    "00:00000000 00000000  1000        0 40106 1 0 100 0 0 10 0",
]
FDS = ["40101 31 python3", "40101 32 python3", "40103 40 node", "40105 50 ruby", "40102 7 node"]


def _output() -> str:
    return "\n".join(["#/proc/net/tcp", HEADER, *TCP, "#/proc/net/tcp6", HEADER, *TCP6, "#fds", *FDS]) + "\n"


def test_listening_ports_from_proc() -> None:
    found = parse_listening(_output(), exclude=frozenset({8080}))
    assert found == [
        ListeningPort(port=3000, address="::", process="ruby"),
        ListeningPort(port=5173, address="127.0.0.1", process="node"),
        ListeningPort(port=8000, address="0.0.0.0", process="python3"),
        ListeningPort(port=8001, address="127.0.0.1", process=None),  # ::ffff:127.0.0.1, nobody we may see
    ]
    assert [p.loopback_only for p in found] == [False, True, False, True]
    # Not excluded, 8080 is listed; the engine's resolver and the established connection never are.
    assert 8080 in {p.port for p in parse_listening(_output())}


def test_the_widest_address_of_a_port_wins() -> None:
    lines = [
        "   0: 0100007F:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000 0 1 1 0 100 0 0 10 0",
        "   1: 00000000:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000 0 2 1 0 100 0 0 10 0",
    ]
    output = "\n".join(["#/proc/net/tcp", HEADER, *lines, "#fds", "2 9 app"])
    assert parse_listening(output) == [ListeningPort(port=8000, address="0.0.0.0", process="app")]
    assert parse_listening("") == []
    assert parse_listening("#/proc/net/tcp\ngarbage line\n#fds\n") == []


def test_listening_items_carry_their_preview_path() -> None:
    items = listening_items(WorkspaceRef("p1", "w1"), [ListeningPort(port=5173, address="0.0.0.0", process="node")])
    assert items == [{"port": 5173, "address": "0.0.0.0", "process": "node", "previewUrl": "/preview/p1/w1/5173/"}]


def test_the_backends_cookies_never_reach_a_workspace_and_cannot_be_set_by_one() -> None:
    header = f"a=1; {PREVIEW_COOKIE_NAME}=secret; {COOKIE_NAME}=other; b=2"
    sent = dict(request_headers([("Cookie", header), ("Accept", "*/*")]))
    assert sent["Cookie"] == "a=1; b=2"
    assert strip_cookie(header, PREVIEW_COOKIE_NAME) == f"a=1; {COOKIE_NAME}=other; b=2"
    prefix = "/preview/p1/w1/8000/"
    for name in (PREVIEW_COOKIE_NAME, COOKIE_NAME):
        assert rewrite_set_cookie(f"{name}=forged; Path=/", prefix) is None
    assert rewrite_set_cookie("app=1; Path=/; Domain=example.com", prefix) == f"app=1; Path={prefix}"


# --- the preview origin's settings, on real servers without an engine ---------------------------------------------


def test_previews_off_and_a_preview_url_behind_a_proxy(tmp_path: Path) -> None:
    off = start_server(tmp_path / "off", IDE_PREVIEW_PORT="-1", IDE_DOCKER_HOST=f"unix://{tmp_path}/absent.sock")
    try:
        answer = httpx.get(f"{off.url}/preview/p1/w1/8000/", timeout=30)
        assert answer.status_code == 404 and "Previews are off" in answer.json()["message"]
    finally:
        off.stop()
    port = free_port()
    env = {"IDE_PREVIEW_PORT": str(port), "IDE_PREVIEW_URL": "https://preview.example.com"}
    behind = start_server(tmp_path / "behind", IDE_DOCKER_HOST=f"unix://{tmp_path}/absent.sock", **env)
    try:
        moved = httpx.get(f"{behind.url}/preview/p1/w1/8000/a%20b?x=1", timeout=30)
        assert moved.status_code == 307
        assert moved.headers["location"] == "https://preview.example.com/preview/p1/w1/8000/a%20b?x=1"
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as preview:
            assert preview.get("/preview/p1/w1/80/").status_code == 401  # no credential
            assert preview.get("/preview/p1/w1/0/", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 400
            unknown = preview.get("/preview/p1/w1/80/", headers={"Authorization": f"Bearer {TOKEN}"})
            assert unknown.status_code == 404 and unknown.json()["code"] == "not_found"
            assert preview.get("/healthz").status_code == 404  # nothing but previews on this origin
    finally:
        behind.stop()
