"""Short-lived helper containers that act on the engine's host (its firewall rules, its workspace disks): one is run to
its end and its output read back, and the ones a backend killed while one ran left behind are removed by age.

What a helper may do on the host is in its config, made by its user (firewall.py, disk.py); this module only runs it.
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

import aiohttp

from ...errors import IDEError, NotFound
from .client import DockerClient
from .errors import missing_image, translate_errors

_LEFT_AFTER = 120.0  # seconds after which a finished helper is taken as left behind


async def run(
    client: DockerClient, config: dict[str, Any], *, name: str, doing: str, timeout: float = 120.0
) -> tuple[int, str]:
    """Create, start and wait for the helper, then remove it: its exit code and output (stdout and stderr). A missing
    image is the clear 503 that says how to build it."""
    try:
        with translate_errors(doing, client.host):
            helper = await client.api.containers.create(config, name=name)
    except NotFound as exc:
        raise missing_image(str(config.get("Image", ""))) from exc
    with translate_errors(doing, client.host):
        try:
            await helper.start()
            result = await helper.wait(timeout=aiohttp.ClientTimeout(total=timeout))
            output = "".join(await helper.log(stdout=True, stderr=True))
        finally:
            await helper.delete(force=True)
    return int(result.get("StatusCode", -1)), output


async def remove_left(client: DockerClient, label: str, value: str) -> None:
    """Remove finished helpers labelled `label=value` that are older than a couple of minutes: left by a backend
    killed while they ran (a running one, or one another backend is reading right now, is younger or not finished)."""
    filters = json.dumps({"label": [f"{label}={value}"], "status": ["exited", "created"]})
    with translate_errors("listing helper containers", client.host):
        found = await client.get_json("containers/json", {"all": "1", "filters": filters})
    for item in found:
        if time.time() - float(item.get("Created") or 0) > _LEFT_AFTER:
            with contextlib.suppress(IDEError), translate_errors("removing a helper left behind", client.host):
                await client.api.containers.container(item["Id"]).delete(force=True)
