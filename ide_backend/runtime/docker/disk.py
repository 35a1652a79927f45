"""(Just over 400 lines on purpose: the host-side script and the Python that drives it change together.)

Bounded workspace disks: everything the workspace user can write (the workspace folder, the home folder, /tmp) on
one filesystem of a fixed size, so one workspace cannot fill the engine's disk. docs/security.md ("Disk") has the
design, its costs and what happens after a reboot.

A disk is a sparse ext4 image file on the engine's host, `<root>/<volume>/disk.img` (root: /var/lib/ide-backend/disks),
mounted through a loop device at `<root>/<volume>/fs`, with three folders: workspace, home, tmp. Three `local`
volumes bind those folders: the workspace volume itself (its name the service's, at the workspace folder) and
`<volume>-home` and `<volume>-tmp` (at the home folder and /tmp). The container's root filesystem is read-only, so
nothing else is writable (docker's 64 MiB /dev/shm aside). Docker copies the image's home folder into the empty home
volume when the container is created, as for any volume.

The host's part (make, attach, remove) is a fixed shell script run as root in the engine's mount namespace, where the
engine's volume mounts see it: by this process itself when it runs as root on the engine's machine, otherwise by a
short-lived helper container (host PID namespace, the loop devices only). Where neither works, workspaces are made
unbounded and one warning says so. Order keeps a sweep safe: a disk's volumes are made before it and removed before
it, so a disk folder older than a minute whose name no volume carries lost its volumes (a killed backend, `docker
volume rm`) and is removed when a backend process next starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiodocker.volumes import DockerVolume

from ...errors import Conflict, IDEError, NotFound, RuntimeFailure
from ..base import ContainerSpec
from . import hosthelper
from .client import DockerClient
from .errors import translate_errors
from .network import own_container_id

log = logging.getLogger(__name__)

DISK_ROOT = "/var/lib/ide-backend/disks"
DISK_LABEL = "ide-backend.disk"  # on each of a disk's volumes: the disk's name (its workspace volume's)
SIZE_LABEL = "ide-backend.disk-bytes"  # on the workspace volume: the size the disk was made with
IMAGE_LABEL = "ide-backend.disk-helper"  # on the workspace volume: an image that can run the helper
HELPER_LABEL = "ide-backend.helper"  # "disk" on a helper container (the archive helper's is "1")
INSTANCE_LABEL = "ide-backend.instance"
TMP = "/tmp"  # noqa: S108 (the container's, bound from its disk)
_LOOP_DEVICES = ["b 7:* rwm", "c 10:237 rwm"]  # the loop devices and /dev/loop-control, for the helper
_FRESH_KEPT = 1024  # plain volumes remembered between ensure_volume() and create()
_SCRIPT_TIMEOUT = 120.0

# Finds the engine (a dockerd process in this PID namespace) and runs the disk script ($1, then its arguments) in its
# mount namespace, entered only when it is not this one.
ENGINE_NS = """set -eu
script=$1
shift
pids=$(readlink /proc/self/ns/pid)
engine=
for p in /proc/[0-9]*; do
    comm=
    read -r comm 2>/dev/null <"$p/comm" || continue
    [ "$comm" = dockerd ] && [ "$(readlink "$p/ns/pid" 2>/dev/null)" = "$pids" ] || continue
    engine=${p#/proc/}
    break
done
if [ -z "$engine" ]; then
    echo "no dockerd process in this PID namespace" >&2
    exit 3
fi
if [ "$(readlink "/proc/$engine/ns/mnt")" = "$(readlink /proc/self/ns/mnt)" ]; then
    exec sh -c "$script" ide-disk "$@"
fi
exec nsenter -t "$engine" -m -- sh -c "$script" ide-disk "$@"
"""

# The host's part, as root in the engine's mount namespace: $1 the disks' root, $2 the action, then its arguments.
# One lock for all disks (every action is short). `mount -o loop` takes a free loop device and frees it on unmount;
# `discard` gives a deleted file's blocks back to the host (holes punched in the image).
DISK_SCRIPT = """set -eu
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
root=$1 action=$2
shift 2
mkdir -p "$root"
exec 9>"$root/.lock"
flock 9
attach() {
    [ -f "$1/disk.img" ] || return 0
    mountpoint -q "$1/fs" || mount -o loop,nosuid,nodev,noatime,discard "$1/disk.img" "$1/fs"
}
detach() {
    if mountpoint -q "$1/fs"; then umount "$1/fs" 2>/dev/null || umount -l "$1/fs"; fi
    rm -rf -- "$1"
}
case $action in
ready)
    # Can disks be made here at all: a small one, made, mounted and removed.
    probe=$root/.probe
    rm -rf "$probe" && mkdir -p "$probe/fs"
    truncate -s 4M "$probe/disk.img"
    mkfs.ext4 -q -F "$probe/disk.img"
    attach "$probe"
    detach "$probe"
    # Every disk named (the ones volumes carry) is attached: a reboot leaves them detached. One nobody names whose
    # folder is over a minute old has lost its volumes: removed.
    for d in "$root"/*/; do
        [ -d "$d" ] || continue
        d=${d%/}
        name=${d##*/}
        case " $* " in
        *" $name "*) attach "$d" || echo "could not attach $name" ;;
        *)
            [ -n "$(find "$d" -maxdepth 0 -mmin +1)" ] || continue
            echo "removed $name: its volumes are gone"
            detach "$d"
            ;;
        esac
    done
    ;;
create)
    # $1 name, $2 size in bytes, $3 the owner (uid:gid) of the workspace and home folders, or empty. Sparse, and
    # made so it stays sparse (no table or journal written ahead of use); no blocks kept for root. Doing it again (a
    # retry) keeps what is there. The engine copies the image's folders' owner and mode over these when it first
    # mounts them.
    d=$root/$1
    mkdir -p "$d/fs"
    if [ ! -f "$d/disk.img" ]; then
        rm -f "$d/disk.new"
        truncate -s "$2" "$d/disk.new"
        mkfs.ext4 -q -F -m 0 -E lazy_itable_init=1,lazy_journal_init=1 "$d/disk.new"
        mv "$d/disk.new" "$d/disk.img"
    fi
    attach "$d"
    if [ ! -d "$d/fs/tmp" ]; then
        mkdir -p "$d/fs/workspace" "$d/fs/home"
        if [ -n "${3:-}" ]; then chown "$3" "$d/fs/workspace" "$d/fs/home"; fi
        mkdir -p "$d/fs/tmp"
        chmod 1777 "$d/fs/tmp"
    fi
    ;;
remove)
    for name in "$@"; do detach "$root/$name"; done
    ;;
*)
    echo "unknown action $action" >&2
    exit 2
    ;;
esac
"""


def view_volumes(volume: str) -> dict[str, str]:
    """The volumes of a disk besides the workspace volume: the home folder's and /tmp's, by folder on the disk."""
    return {"home": f"{volume}-home", "tmp": f"{volume}-tmp"}


def disk_mounts(spec: ContainerSpec) -> list[dict[str, str]]:
    """The mounts of a bounded workspace container beyond its workspace volume."""
    views = view_volumes(spec.volume)
    return [
        {"Type": "volume", "Source": views["home"], "Target": spec.home},
        {"Type": "volume", "Source": views["tmp"], "Target": TMP},
    ]


def volume_config(name: str, labels: Mapping[str, str], device: str) -> dict[str, Any]:
    """A `local` volume that binds one folder of a disk (the engine mounts it when a container needs it)."""
    return {
        "Name": name,
        "Driver": "local",
        "DriverOpts": {"type": "none", "o": "bind", "device": device},
        "Labels": dict(labels),
    }


def helper_config(image: str, argv: list[str], labels: Mapping[str, str]) -> dict[str, Any]:
    """A short-lived root container that runs argv in the host's PID namespace, able to enter the engine's mount
    namespace (SYS_ADMIN, SYS_PTRACE, SYS_CHROOT, no seccomp or AppArmor profile, which forbid mounts), to use the
    loop devices and to own the files it makes (CHOWN, DAC_OVERRIDE, FOWNER), and nothing else: no network, no other
    device."""
    return {
        "Image": image,
        "Entrypoint": [],
        "Cmd": argv,
        "User": "0:0",
        "Labels": {**{k: v for k, v in labels.items() if k == INSTANCE_LABEL}, HELPER_LABEL: "disk"},
        "HostConfig": {
            "PidMode": "host",
            "NetworkMode": "none",
            "UsernsMode": "host",
            "CapDrop": ["ALL"],
            "CapAdd": ["SYS_ADMIN", "SYS_PTRACE", "SYS_CHROOT", "CHOWN", "DAC_OVERRIDE", "FOWNER"],
            "SecurityOpt": ["seccomp=unconfined", "apparmor=unconfined", "no-new-privileges:true"],
            "DeviceCgroupRules": list(_LOOP_DEVICES),
            "RestartPolicy": {"Name": "no"},
            "LogConfig": {"Type": "json-file", "Config": {}},
        },
    }


def runs_on_engine_host(docker_host: str, mountinfo: str) -> bool:
    """Whether this process can do the host's part itself: root, outside any container, talking to an engine on
    this machine (a local socket)."""
    socket = docker_host.removeprefix("unix://")
    return (
        os.geteuid() == 0
        and docker_host.startswith("unix://")
        and os.path.exists(socket)
        and own_container_id(mountinfo) is None
    )


class WorkspaceDisks:
    """Makes, attaches and removes bounded disks for DockerRuntime."""

    def __init__(self, client: DockerClient, root: str = DISK_ROOT) -> None:
        self._client = client
        self.root = root.rstrip("/")
        self._local: bool | None = None  # whether this process does the host's part itself (decided once)
        self._available: bool | None = None  # whether disks can be made here; None: not tried yet
        self._attached = False  # every disk has been attached once by this process
        self._lock = asyncio.Lock()
        self._fresh: OrderedDict[str, dict[str, str]] = OrderedDict()
        self._unbounded_said: set[str] = set()

    def _errors(self, doing: str) -> contextlib.AbstractContextManager[None]:
        return translate_errors(doing, self._client.host)

    def made_plain(self, name: str, labels: Mapping[str, str]) -> None:
        """ensure_volume() has just made this volume, plain and unused: create() may still make it a disk."""
        self._fresh[name] = dict(labels)
        while len(self._fresh) > _FRESH_KEPT:
            self._fresh.popitem(last=False)

    # -- what the runtime calls -------------------------------------------------------------------------------

    async def prepare(self, spec: ContainerSpec) -> ContainerSpec:
        """The spec to create the container with. With a disk limit: its disk exists and is attached (made now for
        a new volume, or for one ensure_volume() just made plain), or, where disks cannot be had, the spec without
        the limit. A volume that already holds files without a disk keeps them, unbounded."""
        if spec.disk_bytes is None:
            return spec
        unbounded = dataclasses.replace(spec, disk_bytes=None)
        if not await self.available(spec.image):
            return unbounded
        labels = await self.volume_labels(spec.volume)
        if labels is not None and DISK_LABEL not in labels:
            fresh = self._fresh.pop(spec.volume, None)
            if fresh is None or not await self._delete_volume(spec.volume, in_use_ok=True):
                self._say_unbounded(spec.volume, "it was made without a disk (before IDE_DISK_LIMIT_MB, or with 0)")
                return unbounded
            labels = fresh
        elif labels is None:
            labels = dict(spec.labels)
        await self._make(spec, labels)
        return spec

    async def remove(self, name: str) -> bool:
        """Remove a disk's volumes (the home and /tmp ones first) and the disk itself; False when `name` is no
        disk's workspace volume (the caller removes it as a plain volume). A volume in use is a Conflict, and the
        disk then stays."""
        labels = await self.volume_labels(name)
        if labels is None or labels.get(DISK_LABEL) != name:
            return False
        for volume in [*view_volumes(name).values(), name]:
            await self._delete_volume(volume)
        code, output = await self._run("remove", name, image=labels.get(IMAGE_LABEL), labels=labels)
        if code != 0:
            raise RuntimeFailure(f"The disk of volume {name} could not be removed (exit {code}): {output[-500:]}")
        log.info("removed the disk of volume %s", name)
        return True

    async def available(self, image: str | None = None) -> bool:
        """Whether disks can be made here (`image` runs the helper where one is needed). Found out once per
        process, together with attach_all()."""
        if self._available is None:
            async with self._lock:
                if self._available is None:
                    await self._ready(image)
        return bool(self._available)

    async def attach_all(self) -> None:
        """Once per process, before a container that may use a disk starts or its files are touched while it is
        stopped: attach every disk (a reboot leaves them detached) and remove the ones whose volumes are gone."""
        if not self._attached:
            async with self._lock:
                if not self._attached:
                    await self._ready(None)

    def detached(self, exc: IDEError) -> bool:
        """Whether the engine failed because a disk was not attached (the engine's host rebooted since)."""
        return f"{self.root}/" in exc.message

    async def reattach(self) -> None:
        """Attach every disk again, now."""
        async with self._lock:
            await self._ready(None)

    # -- the steps ----------------------------------------------------------------------------------------------

    async def _ready(self, image: str | None) -> None:
        """Run the script's `ready` (can disks be made, attach every disk, remove lost ones) when there is a disk or
        one is wanted; with neither, there is nothing to do yet."""
        disks = await self._disks()
        image = image or next((labels[IMAGE_LABEL] for labels in disks.values() if IMAGE_LABEL in labels), None)
        if not disks and image is None:
            self._attached = True
            return
        labels = next(iter(disks.values()), {})
        code, output = await self._run("ready", *sorted(disks), image=image, labels=labels)
        self._available = code == 0
        self._attached = True
        for line in output.splitlines():
            if line.startswith(("removed ", "could not attach ")):
                log.warning("disk: %s", line)
        if self._available:
            how = "by this process" if self._local else "by helper containers"
            log.info("workspace disks: bounded, in %s on the engine's host (attached %s)", self.root, how)
            return
        log.warning(
            "workspace disks cannot be bounded on this engine (%s); IDE_DISK_LIMIT_MB is not applied and workspaces "
            "write to the engine's own disk without a limit (docs/security.md, Disk)",
            output.strip().splitlines()[-1] if output.strip() else f"exit {code}",
        )

    async def _make(self, spec: ContainerSpec, labels: Mapping[str, str]) -> None:
        """The disk's three volumes, then the disk (in this order: see the module's docstring). Made again, it keeps
        what is there."""
        name = spec.volume
        base = {**labels, DISK_LABEL: name}
        own = {**base, SIZE_LABEL: str(spec.disk_bytes), IMAGE_LABEL: spec.image}
        configs = [volume_config(v, base, f"{self.root}/{name}/fs/{f}") for f, v in view_volumes(name).items()]
        configs.append(volume_config(name, own, f"{self.root}/{name}/fs/workspace"))
        with self._errors(f"creating the volumes of disk {name}"):
            for config in configs:
                await self._client.api.volumes.create(config)  # type: ignore[no-untyped-call]
        made = await self.volume_labels(name)
        if made is None or made.get(DISK_LABEL) != name:
            raise Conflict(f"The volume {name} was made again meanwhile, without a disk; retry")
        owner = spec.user if all(part.isdigit() for part in spec.user.split(":")) else ""
        code, output = await self._run("create", name, str(spec.disk_bytes), owner, image=spec.image, labels=labels)
        if code != 0:
            raise RuntimeFailure(
                f"The disk of volume {name} could not be made on the engine's host (exit {code}): {output[-500:]}"
            )

    async def _delete_volume(self, name: str, *, in_use_ok: bool = False) -> bool:
        """Remove a volume (gone already is fine); False when it is in use and `in_use_ok`, else that Conflict."""
        try:
            with self._errors(f"removing volume {name}"):
                await DockerVolume(self._client.api, name).delete()  # type: ignore[no-untyped-call]
        except NotFound:
            pass
        except Conflict:
            if not in_use_ok:
                raise
            return False
        return True

    async def volume_labels(self, name: str) -> dict[str, str] | None:
        """The volume's labels, or None when there is no such volume."""
        try:
            with self._errors(f"inspecting volume {name}"):
                data = await self._client.get_json(f"volumes/{name}")
        except NotFound:
            return None
        return dict(data.get("Labels") or {})

    async def _disks(self) -> dict[str, dict[str, str]]:
        """Every disk some volume on the engine names (every instance's: the root is the engine's), with the labels
        of its workspace volume where that still exists."""
        with self._errors("listing disk volumes"):
            found = await self._client.get_json("volumes", {"filters": json.dumps({"label": [DISK_LABEL]})})
        disks: dict[str, dict[str, str]] = {}
        for volume in found.get("Volumes") or []:
            labels = dict(volume.get("Labels") or {})
            name = labels.get(DISK_LABEL, "")
            if name and (name not in disks or volume.get("Name") == name):
                disks[name] = labels
        return disks

    def _say_unbounded(self, volume: str, why: str) -> None:
        if volume not in self._unbounded_said:
            self._unbounded_said.add(volume)
            log.warning("volume %s stays without a disk limit: %s", volume, why)

    async def _run(
        self, action: str, *args: str, image: str | None, labels: Mapping[str, str] | None = None
    ) -> tuple[int, str]:
        """Run the disk script on the engine's host, here or in a helper container of `image`: its exit code and
        output. The engine refusing the helper is a failure like the script's own (-1); the engine not answering
        raises."""
        argv = ["sh", "-c", ENGINE_NS, "ide-disk", DISK_SCRIPT, self.root, action, *args]
        if self._local is None:
            try:
                mountinfo = await asyncio.to_thread(Path("/proc/self/mountinfo").read_text)
            except OSError:
                mountinfo = ""
            self._local = runs_on_engine_host(self._client.host, mountinfo)
        if self._local:
            return await _run_here(argv, action)
        if image is None:
            return -1, "no image to run the disk helper with"
        try:
            await hosthelper.remove_left(self._client, HELPER_LABEL, "disk")
            return await hosthelper.run(
                self._client,
                helper_config(image, argv, labels or {}),
                name=f"ide-disk-{action}-{uuid.uuid4().hex[:12]}",
                doing="running the disk helper on the engine's host",
            )
        except RuntimeFailure as exc:  # the engine refused the helper: its capabilities, its devices
            return -1, exc.message


async def _run_here(argv: list[str], action: str) -> tuple[int, str]:
    try:
        process = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
    except OSError as exc:
        return -1, f"the disk script could not be started: {exc}"
    try:
        out, _ = await asyncio.wait_for(process.communicate(), timeout=_SCRIPT_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        return -1, f"the disk script ({action}) did not finish within {_SCRIPT_TIMEOUT:.0f} s"
    return process.returncode or 0, out.decode("utf-8", "replace")
