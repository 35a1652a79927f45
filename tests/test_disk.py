"""Bounded disks (docs/security.md, "Disk") on a real engine, with a small limit (IDE_DISK_LIMIT_MB=64): writing past it
fails inside the workspace in each place the user can write (/workspace, the home folder, /tmp, which share it), the
rest of the root filesystem is read-only, other workspaces and the API keep working meanwhile, what was written
survives, delete removes the disk (image file and loop device), a detached disk (a reboot) is attached again, warm
pool containers are bounded too, a workspace made before disks keeps working unbounded, git, pip --user and npm -g
work on the read-only root, and the backend's own image bounds disks through its helper container.

The disks live on this machine (the engine's host) under /var/lib/ide-backend/disks; every test removes the ones it
made, with their volumes and loop devices (`_clean`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ide_backend.runtime import ContainerSpec
from ide_backend.runtime.docker import DockerRuntime
from ide_backend.runtime.docker.parsing import container_config

from .harness import DISKS, Server, disk_names, docker, docker_json, free_port, remove_disks, remove_instance
from .helpers import TOKEN, base_only, post, start_server, wait_for_pool

pytestmark = pytest.mark.docker

LIMIT_MB = 64
MIB = 1024 * 1024
FULL = ("No space left on device", "Disk quota exceeded")
BACKEND_IMAGE = "ide-backend/server:latest"


# -- what the tests look at -----------------------------------------------------------------------------------------


def _loops(volume: str) -> list[str]:
    """The loop devices backed by the disk's image file."""
    image = DISKS / volume / "disk.img"
    out = subprocess.run(["losetup", "-j", str(image)], capture_output=True, text=True, check=False).stdout
    return [line.split(":")[0] for line in out.splitlines() if line.strip()]


def _clean(server: Server) -> None:
    """Stop the server, remove its containers and volumes, then the disks they named."""
    names = disk_names(server.instance)
    server.stop()
    names |= disk_names(server.instance)
    remove_instance(server.instance)
    remove_disks(names)
    assert not [name for name in names if _loops(name) or (DISKS / name).exists()]


def _new_ref() -> dict[str, str]:
    return {"projectId": "disk", "workspaceId": "w-" + uuid.uuid4().hex[:8]}


def _start(server: Server, ref: dict[str, str], **body: Any) -> dict[str, Any]:
    response = post(server, "start", {**ref, **body})
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def _sh(server: Server, ref: dict[str, str], command: str, timeout: float = 120) -> dict[str, Any]:
    """Run a command in the workspace; its answer (exitCode, output, error)."""
    response = post(server, "exec", {**ref, "command": command, "timeout": timeout}, timeout=timeout + 30)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def _ok(server: Server, ref: dict[str, str], command: str) -> str:
    answer = _sh(server, ref, command)
    assert answer["exitCode"] == 0, answer
    return str(answer["output"]).strip()


def _fill(server: Server, ref: dict[str, str], path: str) -> dict[str, Any]:
    """Write twice the limit to `path`: it must fail with the disk full."""
    answer = _sh(server, ref, f'head -c {2 * LIMIT_MB}M /dev/zero > "{path}"')
    assert answer["exitCode"] != 0 and any(text in answer["error"] for text in FULL), answer
    return answer


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, docker_engine: None) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("disk")
    srv = start_server(tmp, IDE_DISK_LIMIT_MB=str(LIMIT_MB), IDE_TEMPLATES=base_only(tmp))
    try:
        yield srv
    finally:
        _clean(srv)


def _spec(name: str, disk_bytes: int | None) -> ContainerSpec:
    return ContainerSpec(
        name=name,
        image="ide-backend/workspace:latest",
        volume=f"{name}-data",
        labels={"ide-backend.instance": name},
        env={},
        user="1000:1000",
        workdir="/workspace",
        mount_path="/workspace",
        publish_ports=[],
        memory_bytes=256 * MIB,
        nano_cpus=1_000_000_000,
        pids_limit=64,
        disk_bytes=disk_bytes,
    )


# -- the container config -------------------------------------------------------------------------------------------


def test_a_bounded_container_mounts_home_and_tmp_from_its_disk_on_a_read_only_root() -> None:
    bounded, unbounded = _spec("c", LIMIT_MB * MIB), _spec("c", None)
    host = container_config(bounded)["HostConfig"]
    assert host["ReadonlyRootfs"] is True
    assert host["Mounts"] == [
        {"Type": "volume", "Source": "c-data", "Target": "/workspace"},
        {"Type": "volume", "Source": "c-data-home", "Target": "/home/coder"},
        {"Type": "volume", "Source": "c-data-tmp", "Target": "/tmp"},
    ]
    # Otherwise the same config; unbounded, as before disks: the workspace volume alone, a writable root.
    assert {**container_config(bounded), "HostConfig": {}} == {**container_config(unbounded), "HostConfig": {}}
    assert "ReadonlyRootfs" not in container_config(unbounded)["HostConfig"]


# -- the limit ------------------------------------------------------------------------------------------------------


def test_the_workspace_home_and_tmp_share_one_disk_of_the_limits_size(server: Server) -> None:
    ref = _new_ref()
    _start(server, ref)
    # One filesystem (one device) under the three places, of about the limit's size (ext4 keeps a little for itself).
    devices = _ok(server, ref, 'stat -c %d /workspace "$HOME" /tmp').split()
    assert len(devices) == 3 and len(set(devices)) == 1
    size = int(_ok(server, ref, "df -B1 --output=size /workspace | tail -1"))
    assert 0.8 * LIMIT_MB * MIB < size <= LIMIT_MB * MIB
    # The engine copied the image's home folder in, and the folders have their usual owners and modes.
    assert ".bashrc" in _ok(server, ref, "ls -A ~")
    modes = _ok(server, ref, 'stat -c "%U %a" /workspace "$HOME" /tmp').splitlines()
    assert modes == ["coder 755", "coder 755", "root 1777"]
    # Nothing else is writable: the root filesystem is read-only.
    for place in ("/etc", "/var/tmp", "/usr/local", "/opt", "/"):
        answer = _sh(server, ref, f"touch {place}/.probe")
        assert answer["exitCode"] != 0 and "Read-only file system" in answer["error"], (place, answer)


def test_writing_past_the_limit_fails_in_each_place_and_works_again_once_space_is_freed(server: Server) -> None:
    ref = _new_ref()
    volume = _start(server, ref, files={"kept.txt": "written before"})["volume"]
    for place in ("/workspace", "$HOME", "/tmp"):
        _fill(server, ref, f"{place}/big")
        written = int(_ok(server, ref, f'stat -c %s "{place}/big"'))
        assert 0.5 * LIMIT_MB * MIB < written < LIMIT_MB * MIB, (place, written)
        # Full stays full (a few blocks the filesystem held back for the big file may come free: not megabytes).
        assert _sh(server, ref, f'head -c 4M /dev/zero > "{place}/more"')["exitCode"] != 0
        _ok(server, ref, f'rm -f "{place}/more"')
        _ok(server, ref, f'rm "{place}/big"')
        _ok(server, ref, f'head -c 8M /dev/zero > "{place}/after" && rm "{place}/after"')
    # The limit is over the three together: 25 MiB in each does not fit in 64.
    answer = _sh(server, ref, 'for p in /workspace "$HOME" /tmp; do head -c 25M /dev/zero > "$p/part" || exit 1; done')
    assert answer["exitCode"] != 0 and any(text in answer["error"] for text in FULL), answer
    _ok(server, ref, 'rm -f /workspace/part "$HOME/part" /tmp/part')
    assert _ok(server, ref, "cat kept.txt") == "written before"
    # Deleted files give their space back to the engine's host too (the disk is mounted with `discard`), once the
    # filesystem commits (every 5 s, or at a sync) and the loop device has punched the holes.
    _ok(server, ref, "sync")
    deadline = time.monotonic() + 30
    while (used := (DISKS / volume / "disk.img").stat().st_blocks * 512) >= 16 * MIB:
        assert time.monotonic() < deadline, f"the disk image still holds {used} bytes"
        time.sleep(0.2)


def test_a_full_workspace_leaves_the_others_and_the_api_working(server: Server) -> None:
    full, other = _new_ref(), _new_ref()
    _start(server, full, files={"a.txt": "a"})
    _start(server, other)
    _fill(server, full, "/workspace/big")
    # The full workspace still runs commands and answers status; a sync into it fails with a 409 that says why.
    assert _ok(server, full, "echo still here; cat a.txt") == "still here\na"
    assert post(server, "status", full).json()["data"]["running"] is True
    synced = post(server, "sync", {**full, "files": {"b.txt": "x" * 100_000}})
    assert synced.status_code == 409 and "The workspace's disk is full" in synced.json()["message"], synced.text
    staged = post(server, "sync", {**full, "files": {f"many/{i}.txt": "y" * 100_000 for i in range(20)}})
    assert staged.status_code == 409 and "The workspace's disk is full" in staged.json()["message"], staged.text
    # Another workspace writes, syncs and answers as if nothing happened; so does the API.
    _ok(server, other, "head -c 16M /dev/zero > /workspace/data && rm /workspace/data")
    assert post(server, "sync", {**other, "files": {"c.txt": "c"}}).status_code == 200
    assert _ok(server, other, "cat c.txt") == "c"
    assert post(server, "status", other).json()["data"]["running"] is True
    assert httpx.get(f"{server.url}/healthz", timeout=10).json()["status"] == "ok"
    # Space freed: the full one writes again, through exec and sync.
    _ok(server, full, "rm /workspace/big")
    assert post(server, "sync", {**full, "files": {"b.txt": "b"}}).status_code == 200
    assert _ok(server, full, "cat a.txt b.txt") == "ab"
    # The large sync that hit the full disk left nothing behind once the next write came (its part undone).
    assert _ok(server, full, "ls -A /workspace") == "a.txt\nb.txt"


def test_what_was_written_survives_a_stop_and_start(server: Server) -> None:
    ref = _new_ref()
    _start(server, ref, files={"w.txt": "workspace"})
    _ok(server, ref, 'echo home > "$HOME/h.txt"; echo tmp > /tmp/t.txt; git config --global user.name Coder')
    assert post(server, "stop", ref).status_code == 200
    # Stopped: the engine mounts the disk's volume to read a file.
    read = post(server, "files/read", {**ref, "path": "w.txt"}).json()
    assert read["content"] == "workspace"
    _start(server, ref)
    found = _ok(server, ref, 'cat w.txt; echo; cat "$HOME/h.txt" /tmp/t.txt; git config --global user.name')
    assert found.split() == ["workspace", "home", "tmp", "Coder"]


def test_delete_removes_the_disk_its_volumes_and_its_loop_device(server: Server) -> None:
    ref = _new_ref()
    volume = _start(server, ref)["volume"]
    assert (DISKS / volume / "fs").is_mount() and len(_loops(volume)) == 1
    listed = set(docker("volume", "ls", "-q").stdout.split())
    assert {volume, f"{volume}-home", f"{volume}-tmp"} <= listed
    assert post(server, "delete", ref).status_code == 200
    assert not (DISKS / volume).exists() and _loops(volume) == []
    assert not {volume, f"{volume}-home", f"{volume}-tmp"} & set(docker("volume", "ls", "-q").stdout.split())


def test_a_detached_disk_is_attached_again(server: Server) -> None:
    """What a reboot does to a disk (its loop device and mount gone), done by hand while the workspace is stopped:
    the next start attaches it again, files intact."""
    ref = _new_ref()
    volume = _start(server, ref, files={"f.txt": "still there"})["volume"]
    assert post(server, "stop", ref).status_code == 200
    subprocess.run(["umount", str(DISKS / volume / "fs")], check=True)
    assert _loops(volume) == []
    _start(server, ref)
    assert _ok(server, ref, "cat f.txt") == "still there"
    assert (DISKS / volume / "fs").is_mount() and len(_loops(volume)) == 1
    assert "a workspace disk was detached" in server.log()  # the engine's failure to mount it, then attach and retry


# -- other ways a workspace container is made ------------------------------------------------------------------------


def test_a_new_backend_process_attaches_the_disks_a_reboot_detached(tmp_path: Path, docker_engine: None) -> None:
    settings = {"IDE_DISK_LIMIT_MB": str(LIMIT_MB), "IDE_TEMPLATES": base_only(tmp_path)}
    first = start_server(tmp_path / "a", **settings)
    try:
        ref = _new_ref()
        volume = _start(first, ref, files={"f.txt": "kept"})["volume"]
        assert post(first, "stop", ref).status_code == 200
        first.stop()
        subprocess.run(["umount", str(DISKS / volume / "fs")], check=True)
        second = start_server(tmp_path / "a", instance=first.instance, **settings)
        try:
            _start(second, ref)
            assert _ok(second, ref, "cat f.txt") == "kept"
        finally:
            _clean(second)
    finally:
        _clean(first)


def test_warm_pool_containers_are_bounded_and_their_disks_go_with_them(tmp_path: Path, docker_engine: None) -> None:
    srv = start_server(tmp_path, IDE_DISK_LIMIT_MB=str(LIMIT_MB), IDE_POOL_SIZE="1", IDE_TEMPLATES=base_only(tmp_path))
    try:
        wait_for_pool(srv)
        ref = _new_ref()
        volume = _start(srv, ref)["volume"]
        assert ".pool-" in volume  # claimed: it keeps the pool's volume
        with srv.client() as client:
            assert client.get("/api/v1/stats").json()["pool"]["hits"] == 1
        _fill(srv, ref, "$HOME/big")
        assert post(srv, "delete", ref).status_code == 200
        assert not (DISKS / volume).exists() and _loops(volume) == []
        wait_for_pool(srv)
        ready = disk_names(srv.instance)
        assert ready and all((DISKS / name / "fs").is_mount() for name in ready)
        srv.stop()  # a graceful stop removes the ready containers, their volumes and disks
        assert not [name for name in ready if (DISKS / name).exists() or _loops(name)]
    finally:
        _clean(srv)


def test_a_workspace_made_before_disks_keeps_working_unbounded(tmp_path: Path, docker_engine: None) -> None:
    templates = base_only(tmp_path)
    before = start_server(tmp_path / "a", IDE_DISK_LIMIT_MB="0", IDE_TEMPLATES=templates)
    instance = before.instance
    try:
        ref = _new_ref()
        data = _start(before, ref, files={"old.txt": "old"})
        before.stop()
        after = start_server(
            tmp_path / "a", instance=instance, IDE_DISK_LIMIT_MB=str(LIMIT_MB), IDE_TEMPLATES=templates
        )
        try:
            # Its container is removed, so a new one is made on the volume that holds its files: kept, unbounded.
            docker("rm", "-f", data["name"])
            _start(after, ref)
            assert _ok(after, ref, "cat old.txt") == "old"
            assert int(_ok(after, ref, "df -B1 --output=size /workspace | tail -1")) > 2 * LIMIT_MB * MIB
            assert data["volume"] not in disk_names(instance)
            assert f"volume {data['volume']} stays without a disk limit" in after.log()
            # A new workspace on the same server is bounded.
            fresh = _new_ref()
            _start(after, fresh)
            _fill(after, fresh, "/workspace/big")
        finally:
            _clean(after)
    finally:
        _clean(before)


def test_where_disks_cannot_be_made_workspaces_run_unbounded_and_one_line_says_so(
    caplog: pytest.LogCaptureFixture, docker_engine: None
) -> None:
    """A real failure of the host's part (a disk root that cannot be made: under /proc), not a fake one."""
    spec = _spec("dunb" + uuid.uuid4().hex[:8], LIMIT_MB * MIB)

    async def make() -> dict[str, Any]:
        runtime = DockerRuntime(disk_root="/proc/ide-backend-disks")
        try:
            await runtime.ensure_volume(spec.volume, spec.labels)
            state = await runtime.create(spec)
            second = dataclasses.replace(spec, name=f"{spec.name}-2", volume=f"{spec.name}-2-data")
            await runtime.ensure_volume(second.volume, second.labels)
            await runtime.create(second)
            found: dict[str, Any] = docker_json("inspect", state.id)[0]
            return found
        finally:
            await runtime.close()

    try:
        with caplog.at_level(logging.INFO, logger="ide_backend.runtime.docker.disk"):
            inspected = asyncio.run(make())
        assert not inspected["HostConfig"].get("ReadonlyRootfs")
        assert [m["Destination"] for m in inspected["Mounts"]] == ["/workspace"]
        said = [r.getMessage() for r in caplog.records if "cannot be bounded" in r.getMessage()]
        assert len(said) == 1 and "IDE_DISK_LIMIT_MB is not applied" in said[0], caplog.text
        assert not disk_names(spec.name)
    finally:
        remove_instance(spec.name)


# -- tools on a read-only root ---------------------------------------------------------------------------------------


def _template_server(tmp: Path) -> Server:
    for image in ("ide-backend/python:latest", "ide-backend/node:latest"):
        if docker("image", "inspect", image, check=False).returncode != 0:
            pytest.fail(f"{image} is missing: scripts/build-images.sh builds it")
    return start_server(tmp, IDE_DISK_LIMIT_MB=str(LIMIT_MB))


def test_git_pip_user_and_npm_global_work_on_the_read_only_root(tmp_path: Path, docker_engine: None) -> None:
    srv = _template_server(tmp_path)
    try:
        python = _new_ref()
        package = {
            "pkg/pyproject.toml": '[project]\nname = "ide-probe"\nversion = "1.0"\n[project.scripts]\n'
            'ide-probe = "ide_probe:main"\n',
            "pkg/ide_probe.py": "def main():\n    print('installed for the user')\n",
        }
        _start(srv, python, template="python", files=package)
        _ok(srv, python, "git init -q && git add -A && git -c user.email=c@x -c user.name=c commit -qm one")
        assert _ok(srv, python, "git log --format=%s") == "one"
        _ok(srv, python, "pip install --user --no-index --no-build-isolation -q ./pkg")
        assert _ok(srv, python, "ide-probe") == "installed for the user"
        assert _ok(srv, python, "python3 -c 'import ide_probe; print(ide_probe.__file__)'").startswith("/home/coder/")

        node = _new_ref()
        _start(srv, node, template="node", files={"tool/package.json": '{"name":"ide-probe","version":"1.0.0",'
               '"bin":{"ide-probe":"cli.js"}}', "tool/cli.js": "#!/usr/bin/env node\nconsole.log('global')\n"})  # fmt: skip
        _ok(srv, node, "cd tool && npm pack -q >/dev/null && npm install -g --offline ./ide-probe-1.0.0.tgz")
        assert _ok(srv, node, "ide-probe") == "global"
        assert _ok(srv, node, "command -v ide-probe").startswith("/home/coder/.npm-global/")
    finally:
        _clean(srv)


# -- the backend in its own image: the helper container does the host's part ---------------------------------------


def test_the_backend_image_bounds_disks_through_its_helper(docker_engine: None) -> None:
    if docker("image", "inspect", BACKEND_IMAGE, check=False).returncode != 0:
        pytest.fail(f"{BACKEND_IMAGE} is missing: scripts/build-images.sh --backend builds it")
    instance = "dimg" + uuid.uuid4().hex[:8]
    port = free_port()
    name = f"{instance}-server"
    docker(
        "run", "-d", "--name", name, "--label", f"ide-backend.instance={instance}",
        "-v", "/var/run/docker.sock:/var/run/docker.sock",
        "-e", f"IDE_API_TOKEN={TOKEN}", "-e", f"IDE_INSTANCE={instance}", "-e", f"IDE_DISK_LIMIT_MB={LIMIT_MB}",
        "-e", "IDE_POOL_SIZE=0", "-e", "IDE_STOP_TIMEOUT=1", "-p", f"127.0.0.1:{port}:8000", BACKEND_IMAGE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    names: set[str] = set()
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, docker("logs", name, check=False).stderr[-3000:]
            time.sleep(0.2)
        headers = {"Authorization": f"Bearer {TOKEN}"}

        def call(endpoint: str, body: dict[str, Any]) -> httpx.Response:
            return httpx.post(f"{url}/api/v1/containers/{endpoint}", json=body, headers=headers, timeout=120)

        ref = _new_ref()
        started = call("start", {**ref, "files": {"a.txt": "a"}})
        assert started.status_code == 200, started.text
        volume = started.json()["data"]["volume"]
        names = disk_names(instance)
        assert names == {volume} and (DISKS / volume / "fs").is_mount()
        answer = call("exec", {**ref, "command": f"head -c {2 * LIMIT_MB}M /dev/zero > big"}).json()
        assert answer["exitCode"] != 0 and any(text in answer["error"] for text in FULL), answer
        assert call("exec", {**ref, "command": "cat a.txt"}).json()["output"] == "a"
        assert call("delete", ref).status_code == 200
        assert not (DISKS / volume).exists() and _loops(volume) == []
        logs = docker("logs", name, check=False)
        log = logs.stdout + logs.stderr
        assert "workspace disks: bounded" in log and "by helper containers" in log, log[-3000:]
    finally:
        docker("stop", "-t", "10", name, check=False)
        names |= disk_names(instance)
        remove_instance(instance)
        remove_disks(names)
