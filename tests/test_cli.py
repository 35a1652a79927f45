"""`ide-backend serve` as an operator runs it: Ctrl-C ends it quietly once it has shut down."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from .harness import free_port, remove_instance

pytestmark = pytest.mark.docker


def test_ctrl_c_ends_the_server_quietly(tmp_path: Path) -> None:
    port = free_port()
    instance = "cli" + os.urandom(3).hex()
    env = {
        **os.environ,
        "IDE_API_TOKEN": "cli-token",
        "IDE_DATA_DIR": str(tmp_path),
        "IDE_INSTANCE": instance,
        "IDE_POOL_SIZE": "0",
    }
    # SIGINT as a terminal delivers it: the child has Python's default handler (KeyboardInterrupt), as under a shell.
    server = subprocess.Popen(
        [sys.executable, "-m", "ide_backend", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            pytest.fail("the server did not come up")
        server.send_signal(signal.SIGINT)
        _, err = server.communicate(timeout=60)
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()
        remove_instance(instance)
    assert "Application shutdown complete" in err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-2000:]
    assert server.returncode in (0, 130)
