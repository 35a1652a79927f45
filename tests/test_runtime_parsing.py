"""Docker's JSON to the seam's values and back, in process (no Docker): inspect -> ContainerState, events ->
RuntimeEvent, path stats -> PathStat, Docker's times, and the container configs we send.

The samples are real answers of a Docker 20.10 engine (`docker inspect`, `GET /events`, an archive HEAD, the
container's `stat`), trimmed; see each literal's comment for how it was made.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from ide_backend.runtime import ContainerSpec, ContainerState, PathStat, RuntimeEvent
from ide_backend.runtime.docker.parsing import (
    CAPS,
    container_config,
    container_state,
    docker_time,
    parse_time,
    path_stat,
    runtime_event,
    stat_records,
    volumes_helper_config,
)

# `docker inspect` of a workspace container (ide-backend/workspace:latest, started with -i, a published port, a
# volume and our labels) on Docker 20.10, trimmed to the fields around the ones read.
RUNNING = json.loads(
    r"""
{
    "Id": "f93ef83a5df0bea711a433394ac4655391ecc4bd4e2642e60c5abb62b334fd59",
    "Created": "2026-11-29T09:45:53.001949198Z",
    "Path": "/usr/local/bin/ide-agent",
    "Args": [],
    "State": {
        "Status": "running",
        "Running": true,
        "Paused": false,
        "Restarting": false,
        "OOMKilled": false,
        "Dead": false,
        "Pid": 6667,
        "ExitCode": 0,
        "Error": "",
        "StartedAt": "2026-11-29T09:45:53.262687793Z",
        "FinishedAt": "0001-01-01T00:00:00Z"
    },
    "Image": "sha256:240748f223228cc7e68fa07cfa5ec19935f8221b84389cf49a21d9dfa461cb60",
    "Name": "/ide-parse-sample",
    "RestartCount": 0,
    "Driver": "overlay2",
    "Mounts": [
        {
            "Type": "volume",
            "Name": "ide-parse-sample-vol",
            "Source": "/var/lib/docker/volumes/ide-parse-sample-vol/_data",
            "Destination": "/workspace",
            "Driver": "local",
            "Mode": "z",
            "RW": true,
            "Propagation": ""
        }
    ],
    "Config": {
        "Hostname": "f93ef83a5df0",
        "User": "1000:1000",
        "ExposedPorts": {
            "8080/tcp": {}
        },
        "Tty": false,
        "OpenStdin": true,
        "StdinOnce": false,
        "Env": [
            "IDE_WORKSPACE=w1",
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt",
            "LANG=C.UTF-8",
            "SHELL=/bin/bash"
        ],
        "Cmd": [
            "/usr/local/bin/ide-agent"
        ],
        "Image": "ide-backend/workspace:latest",
        "WorkingDir": "/workspace",
        "Labels": {
            "ide-backend.agent": "1",
            "ide-backend.input-hash": "4bae91a09c12fdc2-79f2dc227fea",
            "ide-backend.instance": "parse-sample",
            "ide-backend.project": "p1",
            "ide-backend.workspace": "w1"
        }
    },
    "NetworkSettings": {
        "Ports": {
            "8080/tcp": [
                {
                    "HostIp": "127.0.0.1",
                    "HostPort": "32863"
                }
            ]
        },
        "Gateway": "172.17.0.1",
        "IPAddress": "172.17.0.2",
        "Networks": {
            "bridge": {
                "NetworkID": "fda8d5e86589c987bc7f73a3b917591f0e075932137917aaca4177038f48da64",
                "Gateway": "172.17.0.1",
                "IPAddress": "172.17.0.2",
                "IPPrefixLen": 16,
                "MacAddress": "02:42:ac:11:00:02"
            }
        }
    }
}
"""
)

# `docker inspect` of `docker run debian:bookworm-slim sh -c 'exit 3'` after it ended, trimmed the same way.
EXITED = json.loads(
    r"""
{
    "Id": "450dbf5cbb08ad9f2d0b41eb8e663bbe5275bd2861835788310a068d6eb1c761",
    "Created": "2026-11-29T09:45:54.318565635Z",
    "Path": "sh",
    "Args": [
        "-c",
        "exit 3"
    ],
    "State": {
        "Status": "exited",
        "Running": false,
        "Paused": false,
        "Restarting": false,
        "OOMKilled": false,
        "Dead": false,
        "Pid": 0,
        "ExitCode": 3,
        "Error": "",
        "StartedAt": "2026-11-29T09:45:54.578561654Z",
        "FinishedAt": "2026-11-29T09:45:54.579133124Z"
    },
    "Image": "sha256:79f2dc227feaf79f6c230c20d5af418e300f0ccc7ef204532440c9953d62f9fa",
    "Name": "/ide-parse-exited",
    "RestartCount": 0,
    "Driver": "overlay2",
    "Mounts": [],
    "Config": {
        "Hostname": "450dbf5cbb08",
        "User": "",
        "Tty": false,
        "OpenStdin": false,
        "StdinOnce": false,
        "Env": null,
        "Cmd": [
            "sh",
            "-c",
            "exit 3"
        ],
        "Image": "debian:bookworm-slim",
        "WorkingDir": "",
        "Labels": {
            "ide-backend.instance": "parse-sample"
        }
    },
    "NetworkSettings": {
        "Ports": {},
        "Gateway": "",
        "IPAddress": "",
        "Networks": {
            "bridge": {
                "NetworkID": "fda8d5e86589c987bc7f73a3b917591f0e075932137917aaca4177038f48da64",
                "Gateway": "",
                "IPAddress": "",
                "IPPrefixLen": 0,
                "MacAddress": ""
            }
        }
    }
}
"""
)

# Two messages of `GET /events` (type=container, label filter) for one container run: its creation and its end.
CREATE_EVENT = json.loads(
    r"""{"status":"create","id":"316499a94da91184d8f09fdc4181f73c1149c6818a2e02e1e9c0445f7bd2df1a","from":"debian:bookworm-slim","Type":"container","Action":"create","Actor":{"ID":"316499a94da91184d8f09fdc4181f73c1149c6818a2e02e1e9c0445f7bd2df1a","Attributes":{"ide-backend.instance":"evsample","ide-backend.project":"p1","ide-backend.workspace":"w1","image":"debian:bookworm-slim","name":"ide-ev-sample"}},"scope":"local","time":1795945561,"timeNano":1795945561499955049}"""
)
DIE_EVENT = json.loads(
    r"""{"status":"die","id":"316499a94da91184d8f09fdc4181f73c1149c6818a2e02e1e9c0445f7bd2df1a","from":"debian:bookworm-slim","Type":"container","Action":"die","Actor":{"ID":"316499a94da91184d8f09fdc4181f73c1149c6818a2e02e1e9c0445f7bd2df1a","Attributes":{"exitCode":"7","ide-backend.instance":"evsample","ide-backend.project":"p1","ide-backend.workspace":"w1","image":"debian:bookworm-slim","name":"ide-ev-sample"}},"scope":"local","time":1795945561,"timeNano":1795945561847700924}"""
)

# X-Docker-Container-Path-Stat of HEAD /containers/{id}/archive?path=... in a debian:bookworm-slim container:
# /etc (a folder), /etc/passwd (a file), /bin (bookworm's link to /usr/bin).
ETC_HEADER = "eyJuYW1lIjoiZXRjIiwic2l6ZSI6NDA5NiwibW9kZSI6MjE0NzQ4NDE0MSwibXRpbWUiOiIyMDI2LTExLTI5VDA5OjQ2OjEyLjEwNjc4MzEwOVoiLCJsaW5rVGFyZ2V0IjoiIn0="
PASSWD_HEADER = "eyJuYW1lIjoicGFzc3dkIiwic2l6ZSI6ODM5LCJtb2RlIjo0MjAsIm10aW1lIjoiMjAyNi0xMS0yOVQwOTo0MDowMVoiLCJsaW5rVGFyZ2V0IjoiIn0="
BIN_HEADER = "eyJuYW1lIjoiYmluIiwic2l6ZSI6NywibW9kZSI6MTM0MjE4MjM5LCJtdGltZSI6IjIwMjYtMTEtMjlUMDk6Mzk6NTJaIiwibGlua1RhcmdldCI6Ii91c3IvYmluIn0="
# `stat --printf STAT_FORMAT -- /etc /etc/passwd /bin /nonexist` in the same image (the last one fails, on stderr).
STAT_OUTPUT = b"41ed\t755\t1795945576\t/etc\x0081a4\t644\t1795945201\t/etc/passwd\x00a1ff\t777\t1795945192\t/bin\x00"

SPEC = ContainerSpec(
    name="ide-p1-w1",
    image="ide-backend/workspace:latest",
    volume="ide-p1-w1-files",
    labels={"ide-backend.instance": "i1", "ide-backend.project": "p1", "ide-backend.workspace": "w1"},
    env={"IDE_WORKSPACE": "w1", "GREETING": "a=b c"},
    user="1000:1000",
    workdir="/workspace",
    mount_path="/workspace",
    publish_ports=[8080, 3000],
    memory_bytes=512 * 1024 * 1024,
    nano_cpus=1_000_000_000,
    pids_limit=256,
)


def utc(year: int, month: int, day: int, hour: int, minute: int, second: int, micro: int = 0) -> float:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC).timestamp()


def test_a_running_workspace_container() -> None:
    assert container_state(RUNNING) == ContainerState(
        id="f93ef83a5df0bea711a433394ac4655391ecc4bd4e2642e60c5abb62b334fd59",
        name="ide-parse-sample",
        image="ide-backend/workspace:latest",
        status="running",
        running=True,
        created_at="2026-11-29T09:45:53.001949198Z",
        started_at="2026-11-29T09:45:53.262687793Z",
        finished_at=None,  # Docker's zero time
        exit_code=None,  # Docker says 0 while it runs: no exit yet
        oom_killed=False,
        ports={"8080": 32863},
        labels={
            "ide-backend.agent": "1",
            "ide-backend.input-hash": "4bae91a09c12fdc2-79f2dc227fea",
            "ide-backend.instance": "parse-sample",
            "ide-backend.project": "p1",
            "ide-backend.workspace": "w1",
        },
        env={
            "IDE_WORKSPACE": "w1",
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "NODE_EXTRA_CA_CERTS": "/etc/ssl/certs/ca-certificates.crt",
            "LANG": "C.UTF-8",
            "SHELL": "/bin/bash",
        },
        volumes={"/workspace": "ide-parse-sample-vol"},
        address="172.17.0.2",
    )


def test_an_exited_container() -> None:
    state = container_state(EXITED)
    assert (state.name, state.status, state.running, state.exit_code) == ("ide-parse-exited", "exited", False, 3)
    assert state.started_at == "2026-11-29T09:45:54.578561654Z"
    assert state.finished_at == "2026-11-29T09:45:54.579133124Z"
    # Env null, no mounts, no published ports, no address once stopped.
    assert (state.env, state.volumes, state.ports, state.address) == ({}, {}, {}, "")
    assert state.labels == {"ide-backend.instance": "parse-sample"}


def test_an_oom_killed_container_with_an_exposed_but_unpublished_port() -> None:
    """Derived from the running sample: what Docker reports after the kernel killed the main process for memory,
    and a port that is exposed but bound to nothing (its bindings are null)."""
    data = json.loads(json.dumps(RUNNING))
    data["State"].update(Status="exited", Running=False, OOMKilled=True, ExitCode=137, Pid=0)
    data["State"]["FinishedAt"] = "2026-11-29T09:47:00.5Z"
    data["NetworkSettings"]["Ports"] = {"8080/tcp": None, "3000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "32870"}]}
    data["NetworkSettings"]["Networks"]["bridge"]["IPAddress"] = ""
    state = container_state(data)
    assert (state.running, state.oom_killed, state.exit_code) == (False, True, 137)
    assert state.finished_at == "2026-11-29T09:47:00.5Z"
    assert state.ports == {"3000": 32870}
    assert state.address == ""


def test_an_inspect_answer_with_little_in_it() -> None:
    state = container_state({"Id": "abc"})
    assert state == ContainerState(
        id="abc",
        name="",
        image="",
        status="unknown",
        running=False,
        created_at=None,
        started_at=None,
        finished_at=None,
        exit_code=None,
        oom_killed=False,
    )


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("2026-11-29T09:45:53.262687793Z", utc(2026, 11, 29, 9, 45, 53, 262687)),  # nanoseconds, cut to micro
        ("2026-11-29T09:45:54.5Z", utc(2026, 11, 29, 9, 45, 54, 500000)),
        ("2026-11-29T09:40:01Z", utc(2026, 11, 29, 9, 40, 1)),
        ("2026-11-29T10:40:01.000000001+01:00", utc(2026, 11, 29, 9, 40, 1)),
        ("0001-01-01T00:00:00Z", None),  # Docker's zero time: never happened
        ("", None),
        ("yesterday", None),
        (None, None),
        (1795945201, None),
    ],
)
def test_docker_times(text: object, seconds: float | None) -> None:
    assert parse_time(text) == seconds


def test_docker_time_kept_as_text() -> None:
    assert docker_time("2026-11-29T09:45:53.262687793Z") == "2026-11-29T09:45:53.262687793Z"
    assert docker_time("0001-01-01T00:00:00Z") is None
    assert docker_time("") is None
    assert docker_time(None) is None


def test_events() -> None:
    cid = "316499a94da91184d8f09fdc4181f73c1149c6818a2e02e1e9c0445f7bd2df1a"
    assert runtime_event(CREATE_EVENT) == RuntimeEvent(
        project_id="p1",
        workspace_id="w1",
        action="create",
        container_id=cid,
        name="ide-ev-sample",
        exit_code=None,
        time=1795945561499955049 / 1e9,
    )
    died = runtime_event(DIE_EVENT)
    assert (died.action, died.exit_code, died.name) == ("die", 7, "ide-ev-sample")
    assert died.time == pytest.approx(1795945561.8477, abs=1e-4)


def test_event_actions_with_details_and_events_without_nanoseconds() -> None:
    event = json.loads(json.dumps(DIE_EVENT))
    event["Action"] = "exec_start: sh -c echo hi"
    event["Actor"]["Attributes"]["exitCode"] = "-1"
    del event["timeNano"]
    parsed = runtime_event(event)
    assert (parsed.action, parsed.exit_code, parsed.time) == ("exec_start", -1, 1795945561.0)
    # A container claimed from the warm pool carries no project label.
    assert runtime_event({"Action": "start", "Actor": {"ID": "x", "Attributes": {}}}) == RuntimeEvent(
        project_id="", workspace_id="", action="start", container_id="x"
    )


def test_archive_path_stats() -> None:
    assert path_stat(ETC_HEADER) == PathStat(
        mode=0o755, mtime=utc(2026, 11, 29, 9, 46, 12, 106783), is_dir=True, is_symlink=False, link_target=""
    )
    assert path_stat(PASSWD_HEADER) == PathStat(
        mode=0o644, mtime=utc(2026, 11, 29, 9, 40, 1), is_dir=False, is_symlink=False, link_target=""
    )
    assert path_stat(BIN_HEADER) == PathStat(
        mode=0o777, mtime=utc(2026, 11, 29, 9, 39, 52), is_dir=False, is_symlink=True, link_target="/usr/bin"
    )


def test_stat_output_from_the_container() -> None:
    assert stat_records(STAT_OUTPUT) == {
        "/etc": PathStat(mode=0o755, mtime=1795945576.0, is_dir=True, is_symlink=False, link_target=""),
        "/etc/passwd": PathStat(mode=0o644, mtime=1795945201.0, is_dir=False, is_symlink=False, link_target=""),
        "/bin": PathStat(mode=0o777, mtime=1795945192.0, is_dir=False, is_symlink=True, link_target=""),
    }
    # A name that is not UTF-8 survives the round trip; an empty answer is nothing found.
    odd = stat_records(b"81a4\t600\t1\t/w/caf\xe9\x00")
    assert list(odd) == ["/w/caf\udce9"] and "/w/caf\udce9".encode("utf-8", "surrogateescape") == b"/w/caf\xe9"
    assert stat_records(b"") == {}


def test_the_container_config_of_a_workspace() -> None:
    assert container_config(SPEC) == {
        "Image": "ide-backend/workspace:latest",
        "Hostname": "workspace",
        "User": "1000:1000",
        "WorkingDir": "/workspace",
        "Env": ["IDE_WORKSPACE=w1", "GREETING=a=b c"],
        "Labels": {"ide-backend.instance": "i1", "ide-backend.project": "p1", "ide-backend.workspace": "w1"},
        "ExposedPorts": {"8080/tcp": {}, "3000/tcp": {}},
        "OpenStdin": True,
        "StdinOnce": False,
        "HostConfig": {
            "Init": True,
            "Mounts": [{"Type": "volume", "Source": "ide-p1-w1-files", "Target": "/workspace"}],
            "Memory": 512 * 1024 * 1024,
            "MemorySwap": 512 * 1024 * 1024,
            "NanoCpus": 1_000_000_000,
            "PidsLimit": 256,
            "SecurityOpt": ["no-new-privileges:true"],
            "CapDrop": ["ALL"],
            "CapAdd": CAPS,
            "PortBindings": {
                "8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}],
                "3000/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}],
            },
            "RestartPolicy": {"Name": "no"},
            "LogConfig": {"Type": "none", "Config": {}},
        },
    }
    assert not {"SYS_ADMIN", "NET_RAW", "MKNOD", "SYS_CHROOT"} & set(CAPS)


def test_the_container_config_of_a_helper_on_a_workspaces_files() -> None:
    argv = ["perl", "-e", "1", "/workspace"]
    state = container_state(RUNNING)
    config = volumes_helper_config(state, argv, {"ide-backend.instance": "t1"})
    assert (config["Image"], config["Entrypoint"], config["Cmd"]) == (state.image, [], argv)
    assert (config["User"], config["Env"]) == ("0:0", [])
    assert config["Labels"] == {"ide-backend.instance": "t1", "ide-backend.helper": "1"}
    host = config["HostConfig"]
    assert host["NetworkMode"] == "none" and "PortBindings" not in host
    assert host["LogConfig"] == {"Type": "json-file", "Config": {}}  # its output is read back
    # Exactly the workspace's volumes, where the workspace has them; a workspace's capabilities, nothing more.
    assert host["Mounts"] == [{"Type": "volume", "Source": n, "Target": p} for p, n in state.volumes.items()]
    assert host["Mounts"] and host["CapDrop"] == ["ALL"] and host["CapAdd"] == list(CAPS)
