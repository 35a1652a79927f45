"""The server under test as a process, and the Docker CLI that cleans up after it: shared by the tests and the bench.

`launch()` starts `python -m ide_backend serve` as a uvicorn subprocess with its own IDE_INSTANCE, so everything it
creates carries that label and `remove_instance()` can sweep it away afterwards. No pytest and no import of the
package under test here: bench/ imports this module too, and measures the server only from the outside.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
DOCKER = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"
INSTANCE_LABEL = "ide-backend.instance"
DISKS = Path("/var/lib/ide-backend/disks")  # where the runtime keeps bounded workspace disks
DOCKER_CLI_TIMEOUT = 120.0


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the docker CLI: what an operator (or an attacker behind our back) would do."""
    return subprocess.run([DOCKER, *args], capture_output=True, text=True, check=check, timeout=DOCKER_CLI_TIMEOUT)


def docker_json(*args: str) -> Any:
    """The docker CLI's JSON output (inspect, --format json), parsed."""
    return json.loads(docker(*args).stdout)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def leftovers(instance: str) -> tuple[list[str], list[str]]:
    """The ids of the containers and the names of the volumes labelled with this instance."""
    label = f"label={INSTANCE_LABEL}={instance}"
    containers = docker("ps", "-aq", "--filter", label).stdout.split()
    volumes = docker("volume", "ls", "-q", "--filter", label).stdout.split()
    return containers, volumes


def disk_names(instance: str) -> set[str]:
    """The bounded disks the instance's volumes name (a disk is named after its workspace volume)."""
    label = f"label={INSTANCE_LABEL}={instance}"
    names = docker("volume", "ls", "-q", "--filter", label, "--filter", "label=ide-backend.disk").stdout.split()
    if not names:
        return set()
    return {v["Labels"]["ide-backend.disk"] for v in docker_json("volume", "inspect", *names)}


def remove_disks(names: set[str]) -> None:
    """Unmount and delete bounded disks (their loop devices go with the last mount)."""
    for name in names:
        mount = DISKS / name / "fs"
        if mount.is_mount():
            subprocess.run(["umount", "-l", str(mount)], check=False)
        subprocess.run(["rm", "-rf", "--", str(DISKS / name)], check=False)


def remove_instance(instance: str) -> dict[str, int]:
    """Remove every container (with its anonymous volumes), then every volume, labelled with this instance, then
    the bounded disks those volumes were on. Returns what is left: {"containers_left": 0, "volumes_left": 0} when
    the sweep worked."""
    containers, volumes = leftovers(instance)
    disks = disk_names(instance)
    if containers:
        docker("rm", "-f", "-v", *containers, check=False)  # -v: anonymous volumes too (the backend image's /data)
    if volumes:
        docker("volume", "rm", "-f", *volumes, check=False)
    remove_disks(disks)
    containers, volumes = leftovers(instance)
    return {"containers_left": len(containers), "volumes_left": len(volumes)}


@dataclass
class Server:
    """One running ide-backend process and what it was started with."""

    url: str
    instance: str
    token: str
    log_path: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.process.pid

    def client(self, token: str | None = None, timeout: float = 120.0) -> httpx.Client:
        """An HTTP client with the server's token; another `token`, or "" for none at all."""
        token = self.token if token is None else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log().splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    def stop(self) -> None:
        """SIGTERM (a graceful shutdown), SIGKILL when that takes over 20 s."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def launch(
    tmp: Path,
    *,
    token: str,
    instance: str | None = None,
    env: Mapping[str, str] | None = None,
    own_session: bool = False,
    timeout: float = 60.0,
) -> Server:
    """Start `python -m ide_backend serve` on a free port and wait until /healthz answers.

    The data folder is `tmp/data` unless `env` names another IDE_DATA_DIR; the log is `tmp/server-<port>.log`.
    `own_session` puts the server in a session of its own, so a Ctrl-C meant for the caller does not reach it."""
    instance = instance or "t" + uuid.uuid4().hex[:10]
    port = free_port()
    full_env = {
        **os.environ,
        "IDE_API_TOKEN": token,
        "IDE_INSTANCE": instance,
        "IDE_DATA_DIR": str(tmp / "data"),
        **(env or {}),
    }
    tmp.mkdir(parents=True, exist_ok=True)
    log_path = tmp / f"server-{port}.log"
    with log_path.open("wb") as handle:  # the child keeps its own descriptor
        process = subprocess.Popen(
            [sys.executable, "-m", "ide_backend", "serve", "--port", str(port)],
            env=full_env,
            cwd=ROOT,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=own_session,
        )
    url = f"http://127.0.0.1:{port}"
    server = Server(url, instance, token, log_path, full_env, process)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited early (code {process.returncode}):\n{server.log()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return server
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"the server did not answer /healthz within {timeout:.0f} s:\n{server.log()}")
