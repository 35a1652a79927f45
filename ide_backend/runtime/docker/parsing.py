"""Docker's JSON both ways, with no I/O: the container config we send, and the inspect, event and path-stat
answers we read back as the seam's values."""

from __future__ import annotations

import base64
import json
import re
import stat
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from ..base import ContainerSpec, ContainerState, PathStat, RuntimeEvent
from .disk import disk_mounts
from .network import network_name

# Go's os.FileMode type bits, as Docker reports them in a path stat.
MODE_DIR = 1 << 31
MODE_SYMLINK = 1 << 27
# The capabilities a workspace keeps: Docker's defaults minus raw sockets, device nodes, chroot and the like.
CAPS = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "NET_BIND_SERVICE"]
# The `stat` format whose output stat_records() reads: hex mode, octal permissions, mtime, name; NUL-terminated.
STAT_FORMAT = "%f\\t%a\\t%Y\\t%n\\0"


def container_config(spec: ContainerSpec) -> dict[str, Any]:
    """The body of Docker's container create for one workspace."""
    # No network at all (IDE_NETWORK=none) has nothing to publish on.
    publish = spec.publish_ports if spec.network.mode != "none" else []
    ports: dict[str, dict[str, str]] = {f"{p}/tcp": {} for p in publish}
    config: dict[str, Any] = {
        "Image": spec.image,
        "Hostname": "workspace",
        "User": spec.user,
        "WorkingDir": spec.workdir,
        "Env": [f"{k}={v}" for k, v in spec.env.items()],
        "Labels": dict(spec.labels),
        "ExposedPorts": ports,
        # The agent (the image's main process) reads its frames from the container's stdin.
        "OpenStdin": True,
        "StdinOnce": False,
        "HostConfig": {
            "Init": True,
            "Mounts": [{"Type": "volume", "Source": spec.volume, "Target": spec.mount_path}],
            "Memory": spec.memory_bytes,
            "MemorySwap": spec.memory_bytes,
            "NanoCpus": spec.nano_cpus,
            "PidsLimit": spec.pids_limit,
            "SecurityOpt": ["no-new-privileges:true"],
            "CapDrop": ["ALL"],
            "CapAdd": list(CAPS),
            # Published on loopback only: the backend proxies, nothing is exposed on a public interface.
            "PortBindings": {key: [{"HostIp": "127.0.0.1", "HostPort": ""}] for key in ports},
            "RestartPolicy": {"Name": "no"},
            # The main process is the exec agent: its stdout carries every command's output, not worth a log file.
            "LogConfig": {"Type": "none", "Config": {}},
        },
    }
    # `shared` is the engine's default bridge: no NetworkMode, as before there was a choice.
    if spec.network.mode == "none":
        config["HostConfig"]["NetworkMode"] = "none"
    elif spec.network.mode == "isolated":
        config["HostConfig"]["NetworkMode"] = network_name(spec.network)
    if spec.disk_bytes is not None:
        # Bounded: the home folder and /tmp come from the workspace's disk too, and nothing else is writable.
        config["HostConfig"]["Mounts"] += disk_mounts(spec)
        config["HostConfig"]["ReadonlyRootfs"] = True
    return config


def volumes_helper_config(container: ContainerState, argv: Sequence[str], labels: Mapping[str, str]) -> dict[str, Any]:
    """A short-lived root container of the workspace's image with exactly the workspace's volumes (its files, and on
    a bounded disk its home and /tmp) where the workspace has them, running argv: no network, no ports, the
    capabilities a workspace has, a log to read its output from."""
    return {
        "Image": container.image,
        "Entrypoint": [],
        "Cmd": list(argv),
        "User": "0:0",
        "Env": [],
        "Labels": {**labels, "ide-backend.helper": "1"},
        "HostConfig": {
            "Mounts": [{"Type": "volume", "Source": name, "Target": path} for path, name in container.volumes.items()],
            "NetworkMode": "none",
            "SecurityOpt": ["no-new-privileges:true"],
            "CapDrop": ["ALL"],
            "CapAdd": list(CAPS),
            "Memory": 512 * 1024 * 1024,
            "MemorySwap": 512 * 1024 * 1024,
            "PidsLimit": 64,
            "RestartPolicy": {"Name": "no"},
            "LogConfig": {"Type": "json-file", "Config": {}},
        },
    }


def parse_time(value: Any) -> float | None:
    """Seconds since the epoch from Docker's RFC 3339 time (nanoseconds cut to what Python parses); None for
    Docker's zero time or anything unreadable."""
    if not isinstance(value, str) or not value or value.startswith("0001-"):
        return None
    text = re.sub(r"(\.\d{6})\d+", r"\1", value).replace("Z", "+00:00")
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def docker_time(value: Any) -> str | None:
    """Docker's timestamp as it gave it, or None for its zero time (0001-01-01...)."""
    if not value or not isinstance(value, str) or value.startswith("0001-"):
        return None
    return value


def container_state(data: Mapping[str, Any]) -> ContainerState:
    """One container's `docker inspect` answer as the seam's ContainerState."""
    state = data.get("State", {})
    ports: dict[str, int] = {}
    for key, bindings in (data.get("NetworkSettings", {}).get("Ports") or {}).items():
        for binding in bindings or []:
            if binding.get("HostPort"):
                ports[key.split("/")[0]] = int(binding["HostPort"])
                break
    running = bool(state.get("Running"))
    networks = data.get("NetworkSettings", {}).get("Networks") or {}
    return ContainerState(
        id=data["Id"],
        name=data.get("Name", "").lstrip("/"),
        image=data.get("Config", {}).get("Image", ""),
        status=state.get("Status", "unknown"),
        running=running,
        created_at=docker_time(data.get("Created")),
        started_at=docker_time(state.get("StartedAt")),
        finished_at=docker_time(state.get("FinishedAt")),
        exit_code=None if running else state.get("ExitCode"),
        oom_killed=bool(state.get("OOMKilled")),
        ports=ports,
        labels=dict(data.get("Config", {}).get("Labels") or {}),
        env=dict(item.split("=", 1) for item in data.get("Config", {}).get("Env") or [] if "=" in item),
        volumes={m["Destination"]: m["Name"] for m in data.get("Mounts") or [] if m.get("Type") == "volume"},
        address=next((n["IPAddress"] for n in networks.values() if n.get("IPAddress")), ""),
    )


def runtime_event(event: Mapping[str, Any]) -> RuntimeEvent:
    """One message of Docker's event stream (a container event) as the seam's RuntimeEvent."""
    attrs = event.get("Actor", {}).get("Attributes", {})
    code = attrs.get("exitCode")
    return RuntimeEvent(
        name=attrs.get("name", ""),
        project_id=attrs.get("ide-backend.project", ""),
        workspace_id=attrs.get("ide-backend.workspace", ""),
        action=str(event.get("Action", "")).split(":", 1)[0],  # "exec_start: sh -c ..." -> "exec_start"
        container_id=event.get("Actor", {}).get("ID", ""),
        exit_code=int(code) if code is not None and str(code).lstrip("-").isdigit() else None,
        time=int(event.get("timeNano", 0)) / 1e9 or float(event.get("time", 0)),
    )


def path_stat(header: str) -> PathStat:
    """The X-Docker-Container-Path-Stat header of an archive HEAD (base64 JSON) as a PathStat."""
    found = json.loads(base64.b64decode(header))
    mode = int(found["mode"])
    return PathStat(
        mode=mode & 0o7777,
        mtime=parse_time(found.get("mtime")) or 0.0,
        is_dir=bool(mode & MODE_DIR),
        is_symlink=bool(mode & MODE_SYMLINK),
        link_target=found.get("linkTarget", ""),
    )


def stat_records(output: bytes) -> dict[str, PathStat]:
    """The paths `stat --printf STAT_FORMAT` found, by name (what it could not stat is missing). The shell's
    stat cannot tell a link's target cheaply: link_target stays empty."""
    found: dict[str, PathStat] = {}
    for record in output.split(b"\0"):
        fields = record.split(b"\t", 3)
        if len(fields) != 4:
            continue
        raw_mode, perm, mtime, name = fields
        mode = int(raw_mode, 16)
        found[name.decode("utf-8", "surrogateescape")] = PathStat(
            mode=int(perm, 8),
            mtime=float(mtime),
            is_dir=stat.S_ISDIR(mode),
            is_symlink=stat.S_ISLNK(mode),
            link_target="",
        )
    return found
