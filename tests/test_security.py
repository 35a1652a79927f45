"""Hardening that belongs in the core, checked with docker inspect and the server's own log."""

from __future__ import annotations

import json
from typing import Any

import pytest
from websockets.sync.client import connect

from .harness import Server, docker_json
from .helpers import TOKEN, Call, run

pytestmark = pytest.mark.docker


def test_container_is_hardened(api: Call, ref: dict[str, str], started: dict[str, Any]) -> None:
    info = docker_json("inspect", started["id"])[0]
    host = info["HostConfig"]
    assert info["Config"]["User"] == "1000:1000"
    assert host["Init"] is True
    assert "no-new-privileges:true" in host["SecurityOpt"]
    assert host["CapDrop"] == ["ALL"]
    assert not {"NET_RAW", "SYS_ADMIN", "MKNOD", "SYS_CHROOT"} & set(host["CapAdd"] or [])
    assert host["PidsLimit"] == 256
    assert host["Memory"] == 512 * 1024 * 1024
    assert host["NanoCpus"] > 0
    assert host["Privileged"] is False
    for bindings in host["PortBindings"].values():
        assert all(b["HostIp"] == "127.0.0.1" for b in bindings)
    mounts = [m for m in info["Mounts"] if m["Destination"] == "/workspace"]
    assert mounts and mounts[0]["Type"] == "volume" and mounts[0]["Name"] == started["volume"]


def test_user_cannot_become_root(api: Call, ref: dict[str, str], started: dict[str, Any]) -> None:
    body = run(api, ref, "grep -E '^(CapEff|NoNewPrivs)' /proc/self/status")
    assert "CapEff:\t0000000000000000" in body["output"]
    assert "NoNewPrivs:\t1" in body["output"]


def test_pids_limit_holds(api: Call, ref: dict[str, str], started: dict[str, Any]) -> None:
    body = run(api, ref, "for i in $(seq 400); do sleep 5 & done 2>/dev/null; wait", timeout=20)
    assert "fork" in body["error"] or "Resource temporarily unavailable" in body["error"] or body["exitCode"] != 0


def test_password_never_reaches_the_log(
    api: Call, ref: dict[str, str], started: dict[str, Any], server: Server
) -> None:
    password = api("status", ref).json()["data"]["password"]
    api("vscode-theme", ref, theme="Dark")
    api("stop", ref)
    api("start", ref)
    assert password not in server.log()


def test_token_never_reaches_the_log(server: Server) -> None:
    with server.client(token="") as anonymous:
        anonymous.get(f"/?token={TOKEN}")
    with connect(f"{server.url.replace('http', 'ws')}/api/v1/ws?token={TOKEN}") as ws:
        ws.send('{"type": "ping"}')
        assert json.loads(ws.recv(timeout=10)) == {"type": "pong"}
    log = server.log()
    assert "token=[redacted]" in log
    assert TOKEN not in log
