"""A copy of one workspace's files onto a new workspace's volumes, consistent at one moment (for a fork).

A short-lived root helper container of the source's image mounts the source's volumes read-only and the target's
writable, and runs `cp -a` (owners, modes, times, links and hard links kept). A running source is paused (the
engine's cgroup freezer) from just before the helper starts until it has exited, so nothing in the workspace writes
while the copy reads: every file is as it was at the moment of the pause, as from a snapshot. Local volumes have no
snapshots to copy from; the pause is the cost, and the caller is told how long it lasted. The workspace folder is
copied, and the home folder too when both workspaces have one of their own (a bounded disk); /tmp is not.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Mapping
from typing import Any

import aiohttp

from ...errors import Conflict, IDEError, NotFound, RuntimeFailure
from ..base import ContainerSpec, CopyResult
from .client import DockerClient
from .disk import HELPER_LABEL, INSTANCE_LABEL, view_volumes
from .errors import missing_image, translate_errors

TARGET_LABEL = "ide-backend.copy-to"  # on a copy helper: the volume it writes
# $1: whether the home folders are mounted too. `set -e`: the first failure (a full disk) ends the copy.
COPY_SCRIPT = (
    'set -e; cp -a /from/workspace/. /to/workspace/; if [ "$1" = home ]; then cp -a /from/home/. /to/home/; fi'
)
_FULL = "No space left on device"


def copy_config(source: ContainerSpec, target: ContainerSpec, *, with_home: bool) -> dict[str, Any]:
    """The helper: root (to keep every owner), no network, only the capabilities a faithful copy needs. It names the
    volume it writes, so a copy a killed backend left unfinished is undone (left_copies)."""
    mounts = [
        {"Type": "volume", "Source": source.volume, "Target": "/from/workspace", "ReadOnly": True},
        {"Type": "volume", "Source": target.volume, "Target": "/to/workspace"},
    ]
    if with_home:
        mounts += [
            {"Type": "volume", "Source": view_volumes(source.volume)["home"], "Target": "/from/home", "ReadOnly": True},
            {"Type": "volume", "Source": view_volumes(target.volume)["home"], "Target": "/to/home"},
        ]
    labels: Mapping[str, str] = target.labels
    return {
        "Image": source.image,
        "Entrypoint": ["sh", "-c", COPY_SCRIPT, "ide-copy", "home" if with_home else "workspace"],
        "Cmd": [],
        "User": "0:0",
        "Env": [],
        "Labels": {
            **{k: v for k, v in labels.items() if k == INSTANCE_LABEL},
            HELPER_LABEL: "copy",
            TARGET_LABEL: target.volume,
        },
        "HostConfig": {
            "Mounts": mounts,
            "NetworkMode": "none",
            "CapDrop": ["ALL"],
            "CapAdd": ["CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID"],
            "SecurityOpt": ["no-new-privileges:true"],
            "RestartPolicy": {"Name": "no"},
            "LogConfig": {"Type": "json-file", "Config": {}},
        },
    }


async def copy_volumes(
    client: DockerClient,
    source: ContainerSpec,
    target: ContainerSpec,
    *,
    with_home: bool,
    freeze: str | None,
    timeout: float,
) -> CopyResult:
    """Copy source's files onto target's (made, empty) volumes; `freeze`: the running source container, paused for
    the copy. The helper is made before the pause, so the pause covers its start, the copy and its exit only."""
    doing = "copying the workspace's files"
    try:
        with translate_errors(doing, client.host):
            config = copy_config(source, target, with_home=with_home)
            helper = await client.api.containers.create(config, name=f"{target.name}-copy-{uuid.uuid4().hex[:8]}")
    except NotFound as exc:
        raise missing_image(source.image) from exc
    began = time.monotonic()
    paused = 0.0
    try:
        frozen = freeze is not None and await _pause(client, freeze)
        paused_at = time.monotonic()
        try:
            with translate_errors(doing, client.host):
                await helper.start()
                result = await helper.wait(timeout=aiohttp.ClientTimeout(total=timeout))
        finally:
            if frozen and freeze is not None:
                await asyncio.shield(_unpause(client, freeze))
                paused = time.monotonic() - paused_at
        with translate_errors(doing, client.host):
            output = "".join(await helper.log(stdout=True, stderr=True))
    finally:
        with contextlib.suppress(IDEError), translate_errors("removing the copy helper", client.host):
            await helper.delete(force=True)
    code = int(result.get("StatusCode", -1))
    if code != 0:
        if _FULL in output:
            raise Conflict(f"The new workspace's disk is full: the files do not fit ({output.strip()[-300:]})")
        raise RuntimeFailure(f"Copying the workspace's files failed (exit {code}): {output.strip()[-500:]}")
    return CopyResult(seconds=time.monotonic() - began, paused_seconds=paused)


async def _pause(client: DockerClient, container_id: str) -> bool:
    """Pause the container; False when it is not running (stopped meanwhile, or paused by someone else: left so)."""
    try:
        with translate_errors("pausing the workspace for the copy", client.host):
            await client.api.containers.container(container_id).pause()
    except (Conflict, NotFound):
        return False
    return True


async def _unpause(client: DockerClient, container_id: str) -> None:
    try:
        with translate_errors("resuming the workspace after the copy", client.host):
            await client.api.containers.container(container_id).unpause()
    except (Conflict, NotFound):
        pass  # gone or stopped meanwhile: nothing left paused


async def left_copies(client: DockerClient, instance: str) -> tuple[list[str], list[str]]:
    """Undo the copies of this instance's backend that never finished (it was killed during one): their helpers are
    removed (a running one stopped), and every container of the instance left paused is resumed (nothing else pauses
    them). Returns the names of the containers resumed and the volumes the unfinished copies were writing, which the
    caller removes (no workspace was recorded for them: that happens after the copy)."""
    with translate_errors("looking for unfinished copies", client.host):
        helpers = await client.get_json(
            "containers/json",
            {"all": "1", "filters": json.dumps({"label": [f"{HELPER_LABEL}=copy", f"{INSTANCE_LABEL}={instance}"]})},
        )
        paused = await client.get_json(
            "containers/json",
            {"filters": json.dumps({"label": [f"{INSTANCE_LABEL}={instance}"], "status": ["paused"]})},
        )
    targets = []
    for item in helpers:
        if target := (item.get("Labels") or {}).get(TARGET_LABEL):
            targets.append(target)
        with contextlib.suppress(NotFound), translate_errors("removing an unfinished copy", client.host):
            await client.api.containers.container(item["Id"]).delete(force=True)
    resumed = []
    for item in paused:
        await _unpause(client, item["Id"])
        resumed.append(str((item.get("Names") or [item["Id"]])[0]).lstrip("/"))
    return resumed, targets
