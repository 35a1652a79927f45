"""Workspace networking for real (docs/security.md, "Network"): on the default `isolated` network a workspace reaches
no other workspace (by address or by name), no service of the host (a listener of the test's own on every host
address, the backend's port, PostgreSQL's), yet the wider network (Debian's package mirror, read from this machine's
apt sources); warm pool containers are on it too; containers made on the default bridge move to it when they start
again; IDE_EGRESS_ALLOW narrows the way out; `none` has no network at all. Each "cannot" is paired with the same
probe succeeding on the `shared` network (Docker's default bridge), so a probe that could never succeed proves
nothing by failing."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from ide_backend.runtime import NetworkPolicy
from ide_backend.runtime.docker.firewall import chains, firewall_rules
from ide_backend.runtime.docker.network import bridge_name, halves, network_config, network_name, own_container_id

from .harness import Server, docker, docker_json, free_port, remove_instance
from .helpers import TOKEN, post, start_server, wait_for_pool

pytestmark = pytest.mark.docker

ISOLATED = NetworkPolicy("isolated")
PORT = 7000  # where a workspace listens in these tests
# Listens on 0.0.0.0:$ARGV[0] and greets every connection with $ARGV[1], so a probe knows whom it reached.
LISTEN = (
    'my $s = IO::Socket::INET->new(LocalAddr => "0.0.0.0", LocalPort => $ARGV[0], Listen => 16, ReuseAddr => 1)'
    ' or die "listen: $!"; while (my $c = $s->accept) { print $c "$ARGV[1]\\n"; close $c }'
)
# Connects to $ARGV[0]:$ARGV[1] (3 s at most) and prints "open: <greeting>" or "closed: <why>".
PROBE = (
    "my $c = IO::Socket::INET->new(PeerAddr => $ARGV[0], PeerPort => $ARGV[1], Timeout => 3);"
    ' if (!$c) { print "closed: $!"; exit 0 } $c->timeout(3); my $line = <$c> // ""; chomp $line;'
    ' print "open: $line"'
)


# -- helpers ------------------------------------------------------------------------------------------------------


def _sh(server: Server, ref: dict[str, str], command: str) -> str:
    answer = post(server, "exec", {**ref, "command": command, "timeout": 60}).json()
    assert answer.get("success") and answer["exitCode"] == 0, answer
    return str(answer["output"])


def _probe(server: Server, ref: dict[str, str], host: str, port: int) -> str:
    return _sh(server, ref, f"perl -MIO::Socket::INET -e {shlex.quote(PROBE)} {shlex.quote(host)} {port}")


def _start(server: Server, workspace: str) -> tuple[dict[str, str], dict[str, Any]]:
    ref = {"projectId": "net", "workspaceId": workspace}
    answer = post(server, "start", ref)
    assert answer.status_code == 200, answer.text
    return ref, answer.json()["data"]


def _listen(server: Server, ref: dict[str, str], greeting: str) -> None:
    """A listener on PORT in the workspace, checked from inside it."""
    _sh(server, ref, f"setsid perl -MIO::Socket::INET -e {shlex.quote(LISTEN)} {PORT} {greeting} >/dev/null 2>&1 &")
    deadline = time.monotonic() + 10
    while _probe(server, ref, "127.0.0.1", PORT) != f"open: {greeting}":
        assert time.monotonic() < deadline, "the workspace's listener did not come up"
        time.sleep(0.1)


def _networks(container: str) -> dict[str, str]:
    """A container's networks and its address on each."""
    settings = docker_json("inspect", container)[0]["NetworkSettings"]["Networks"] or {}
    return {name: endpoint["IPAddress"] for name, endpoint in settings.items()}


def _host_addresses() -> list[str]:
    """Every IPv4 address of this host but loopback: the bridges' gateways, the machine's own."""
    out = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, check=True).stdout
    return [a for a in re.findall(r"\binet (\d+\.\d+\.\d+\.\d+)/", out) if not a.startswith("127.")]


def _gateway(network: str) -> str:
    """The host's address on a Docker network's bridge."""
    bridge = docker_json("network", "inspect", network)[0]["Options"]["com.docker.network.bridge.name"]
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", bridge], capture_output=True, text=True, check=True)
    return str(re.findall(r"\binet (\d+\.\d+\.\d+\.\d+)/", out.stdout)[0])


def _mirror() -> str:
    """The host of this machine's Debian package mirror (plain HTTP), from its apt sources."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        text = path.read_text(errors="replace") if path.is_file() else ""
        found = re.search(r"^(?:deb\s+(?:\[[^]]*\]\s+)?|URIs:\s*)http://([^/\s]+)", text, re.MULTILINE)
        if found:
            return found.group(1)
    pytest.fail("no plain-HTTP Debian mirror in /etc/apt/sources.list*: nothing outside this host to reach")


def _iptables(*args: str) -> str:
    return subprocess.run(["iptables", "-w", *args], capture_output=True, text=True, check=True).stdout


def _remove_network(policy: NetworkPolicy) -> None:
    """Remove a network these tests made for an egress list, and its rules, once nothing uses it (the engine refuses
    to remove a network that still has endpoints, so another run's is never taken away)."""
    if docker("network", "rm", network_name(policy), check=False).returncode != 0:
        return
    bridge = bridge_name(policy)
    in_chain, out_chain, into_chain = chains(bridge)
    for chain, rule in (("INPUT", ["-i", bridge, "-j", in_chain]), ("DOCKER-USER", ["-i", bridge, "-j", out_chain])):
        subprocess.run(["iptables", "-w", "-D", chain, *rule], capture_output=True, check=False)
    subprocess.run(["iptables", "-w", "-D", "DOCKER-USER", "-o", bridge, "-j", into_chain], check=False)
    for chain in (in_chain, out_chain, into_chain):
        subprocess.run(["iptables", "-w", "-F", chain], capture_output=True, check=False)
        subprocess.run(["iptables", "-w", "-X", chain], capture_output=True, check=False)


@pytest.fixture(scope="module")
def host_listener() -> Iterator[int]:
    """A TCP listener of the test's own on every address of the host (a stand-in for any host service: a database,
    the Docker API over TCP): it greets with "host-listener"."""
    server = socket.create_server(("0.0.0.0", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            with connection:
                connection.sendall(b"host-listener\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    stop.set()
    thread.join(5)
    server.close()


@contextlib.contextmanager
def _server(tmp_path_factory: pytest.TempPathFactory, name: str, **settings: str) -> Iterator[Server]:
    """A backend listening on every address (so that its port is there to be probed), removed with all it made."""
    srv = start_server(tmp_path_factory.mktemp(name), IDE_HOST="0.0.0.0", **settings)
    try:
        yield srv
    finally:
        srv.stop()
        remove_instance(srv.instance)


@pytest.fixture(scope="module")
def isolated(tmp_path_factory: pytest.TempPathFactory, docker_engine: None) -> Iterator[Server]:
    """A backend on the defaults (IDE_NETWORK=isolated) with a warm pool of one, listening on every address."""
    with _server(tmp_path_factory, "isolated", IDE_POOL_SIZE="1") as srv:
        yield srv


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, docker_engine: None) -> Iterator[Server]:
    with _server(tmp_path_factory, "shared", IDE_NETWORK="shared") as srv:
        yield srv


# -- what is blocked, and the same probes on the shared network ---------------------------------------------------


def test_a_workspace_reaches_no_other_workspace_by_address_or_by_name(isolated: Server) -> None:
    one, first = _start(isolated, "one")
    two, second = _start(isolated, "two")
    _listen(isolated, one, "one")
    address = _networks(first["id"])["ide-workspaces"]
    assert _networks(second["id"]).keys() == {"ide-workspaces"}
    assert _probe(isolated, two, address, PORT) == "closed: Connection refused"
    # Docker's own resolver answers other containers' names on the network: the name leads nowhere either.
    assert _sh(isolated, two, f"getent hosts {first['name']} || true").split()[:1] in ([address], [])
    assert _probe(isolated, two, first["name"], PORT).startswith("closed: ")
    # ... nor the code-server port, nor any other: the workspace itself sees its listener.
    assert _probe(isolated, two, address, 8080).startswith("closed: ")
    assert _probe(isolated, one, address, PORT) == "open: one"


def test_on_the_shared_network_the_same_probe_reaches_the_other_workspace(shared: Server) -> None:
    one, first = _start(shared, "one")
    two, _ = _start(shared, "two")
    _listen(shared, one, "one")
    assert _probe(shared, two, _networks(first["id"])["bridge"], PORT) == "open: one"


def test_a_workspace_reaches_no_service_of_the_host(isolated: Server, host_listener: int) -> None:
    ref, _ = _start(isolated, "host")
    backend_port = int(urlsplit(isolated.url).port or 0)
    database = urlsplit(os.environ.get("IDE_TEST_POSTGRES_URL") or "postgresql://127.0.0.1:5432/")
    addresses = _host_addresses()
    assert _gateway("ide-workspaces") in addresses and _gateway("bridge") in addresses
    for address in addresses:
        assert _probe(isolated, ref, address, host_listener) == "closed: Connection refused", address
        assert _probe(isolated, ref, address, backend_port) == "closed: Connection refused", address
        assert _probe(isolated, ref, address, database.port or 5432).startswith("closed: "), address
    # The host's loopback is out of reach too: 127.0.0.1 is the workspace's own.
    assert _probe(isolated, ref, "127.0.0.1", host_listener) == "closed: Connection refused"
    # No IPv6 address at all, so there is no way around the IPv4 rules.
    assert _sh(isolated, ref, "cat /proc/net/if_inet6") == ""


def test_on_the_shared_network_the_same_probes_reach_the_host(shared: Server, host_listener: int) -> None:
    ref, _ = _start(shared, "host")
    gateway = _gateway("bridge")
    assert _probe(shared, ref, gateway, host_listener) == "open: host-listener"
    health = _sh(shared, ref, f"curl -sS -m 10 http://{gateway}:{urlsplit(shared.url).port}/healthz")
    assert '"status":"ok"' in health.replace(" ", "")


def test_the_wider_network_stays_open(isolated: Server) -> None:
    ref, _ = _start(isolated, "out")
    mirror = _mirror()
    assert _sh(isolated, ref, f"getent hosts {mirror}").strip()
    # Any HTTP answer (even a 404) is the mirror's: it was reached.
    code = _sh(isolated, ref, f"curl -sS -o /dev/null -w '%{{http_code}}' -m 30 http://{mirror}/")
    assert re.fullmatch("[1-5][0-9][0-9]", code), code


def test_warm_pool_containers_are_on_the_isolated_network(isolated: Server, host_listener: int) -> None:
    wait_for_pool(isolated)
    ready = docker(
        "ps", "-q", "--filter", "label=ide-backend.pool=1", "--filter", f"name=ide-{isolated.instance}.pool-"
    )
    containers = ready.stdout.split()
    assert containers and all(_networks(c).keys() == {"ide-workspaces"} for c in containers)  # one per template
    with isolated.client() as client:
        hits = client.get("/api/v1/stats").json()["pool"]["hits"]
        ref, data = _start(isolated, "pooled")
        assert client.get("/api/v1/stats").json()["pool"]["hits"] == hits + 1
    assert _networks(data["id"]).keys() == {"ide-workspaces"}
    assert _probe(isolated, ref, _gateway("ide-workspaces"), host_listener) == "closed: Connection refused"


def test_with_no_network_nothing_resolves_and_nothing_is_reached(
    tmp_path_factory: pytest.TempPathFactory, docker_engine: None, host_listener: int
) -> None:
    with _server(tmp_path_factory, "none", IDE_NETWORK="none") as srv:
        ref, data = _start(srv, "none")
        inspected = docker_json("inspect", data["id"])[0]
        assert inspected["HostConfig"]["NetworkMode"] == "none" and data["ports"] == {}
        assert _sh(srv, ref, "getent hosts " + _mirror() + " || echo unresolved") == "unresolved\n"
        address = socket.gethostbyname(_mirror())
        assert _probe(srv, ref, address, 80) == "closed: Network is unreachable"
        assert _probe(srv, ref, _gateway("bridge"), host_listener) == "closed: Network is unreachable"
        assert _sh(srv, ref, "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '") == "lo\n"
        assert post(srv, "exec", {**ref, "command": "echo still works"}).json()["output"] == "still works\n"


def test_a_backend_in_its_own_image_joins_the_network_where_only_it_reaches_workspaces(
    docker_engine: None, host_listener: int
) -> None:
    """The backend's image (IDE_IDE_UPSTREAM=container) joins the network at an address of the backends' half: from
    there it opens connections to a workspace (what the /ide/ proxy does; tests/test_backend_image.py goes through
    code-server), while the workspace cannot open one back to it."""
    image = "ide-backend/server:latest"
    if docker("image", "inspect", image, check=False).returncode != 0:
        pytest.fail(f"{image} is missing: scripts/build-images.sh --backend builds it")
    instance = "img" + uuid.uuid4().hex[:8]
    port = free_port()
    name = f"{instance}-server"
    docker(
        "run", "-d", "--name", name, "--label", f"ide-backend.instance={instance}",
        "-v", "/var/run/docker.sock:/var/run/docker.sock", "-e", f"IDE_API_TOKEN={TOKEN}",
        "-e", f"IDE_INSTANCE={instance}", "-e", "IDE_POOL_SIZE=0", "-p", f"127.0.0.1:{port}:8000", image,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not _answers(f"http://127.0.0.1:{port}/healthz"):
            assert time.monotonic() < deadline, docker("logs", name, check=False).stderr[-3000:]
            time.sleep(0.2)
        ref = {"projectId": "img", "workspaceId": "net"}
        started = httpx.post(
            f"http://127.0.0.1:{port}/api/v1/containers/start",
            json=ref,
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=120,
        )
        assert started.status_code == 200, started.text
        workspace = started.json()["data"]["id"]
        subnet = IPv4Network(docker_json("network", "inspect", "ide-workspaces")[0]["IPAM"]["Config"][0]["Subnet"])
        backends, workspaces = subnet.subnets(prefixlen_diff=1)
        backend_address = _networks(name)["ide-workspaces"]
        workspace_address = _networks(workspace)["ide-workspaces"]
        assert IPv4Address(backend_address) in backends and IPv4Address(workspace_address) in workspaces
        as_user = ["exec", "-u", "1000:1000", workspace, "perl", "-MIO::Socket::INET", "-e"]
        docker("exec", "-d", *as_user[1:], LISTEN, str(PORT), "ws")
        reach = f"import socket; s = socket.create_connection(('{workspace_address}', {PORT}), 5); print(s.recv(9))"
        deadline = time.monotonic() + 10
        while (out := docker("exec", name, "python3", "-c", reach, check=False)).returncode != 0:
            assert time.monotonic() < deadline, out.stderr
            time.sleep(0.2)
        assert out.stdout.strip() == "b'ws\\n'"
        for address in (backend_address, _gateway("ide-workspaces")):
            probe = docker(*as_user, PROBE, address, "8000").stdout
            assert probe == "closed: Connection refused", (address, probe)
        assert docker(*as_user, PROBE, _gateway("ide-workspaces"), str(host_listener)).stdout.startswith("closed")
    finally:
        docker("stop", "-t", "10", name, check=False)
        remove_instance(instance)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


# -- containers of an earlier version, egress lists, the rules themselves -----------------------------------------


def test_containers_made_on_the_default_bridge_move_when_they_start_again(
    tmp_path: Path, docker_engine: None, host_listener: int
) -> None:
    """An earlier version put every workspace on the default bridge: a stopped one moves to the isolated network
    when it starts again (same container, same files); a running one is left until it stops."""
    instance = "t" + uuid.uuid4().hex[:10]
    old = start_server(tmp_path, instance=instance, IDE_NETWORK="shared")
    try:
        stopped, before = _start(old, "stopped")
        _sh(old, stopped, "echo kept > file.txt")
        assert post(old, "stop", stopped).status_code == 200
        running, _ = _start(old, "running")
        old.stop()
        new = start_server(tmp_path, instance=instance)
        try:
            _, after = _start(new, "stopped")
            assert after["id"] == before["id"] and _networks(after["id"]).keys() == {"ide-workspaces"}
            assert after["ports"].keys() == {"8080"}  # still published, now from the isolated network
            assert _sh(new, stopped, "cat file.txt") == "kept\n"
            assert _probe(new, stopped, _gateway("ide-workspaces"), host_listener) == "closed: Connection refused"
            _, left = _start(new, "running")
            assert _networks(left["id"]).keys() == {"bridge"}
            assert post(new, "stop", running).status_code == 200
            _, moved = _start(new, "running")
            assert moved["id"] == left["id"] and _networks(moved["id"]).keys() == {"ide-workspaces"}
        finally:
            new.stop()
    finally:
        old.stop()
        remove_instance(instance)


def test_an_egress_list_lets_out_only_what_it_names(
    tmp_path_factory: pytest.TempPathFactory, docker_engine: None
) -> None:
    mirror = _mirror()
    address = socket.gethostbyname(mirror)
    fetch = f"curl -sS -o /dev/null -w '%{{http_code}}' -m 30 --resolve {mirror}:80:{address} http://{mirror}/"
    allowed = NetworkPolicy("isolated", (f"{address}/32",))
    elsewhere = NetworkPolicy("isolated", ("198.51.100.0/24",))
    try:
        for policy in (allowed, elsewhere):
            setting = f'["{policy.egress_allow[0]}"]'
            with _server(tmp_path_factory, "egress", IDE_EGRESS_ALLOW=setting) as srv:
                ref, data = _start(srv, "egress")
                assert _networks(data["id"]).keys() == {network_name(policy)}
                # Names resolve either way (DNS is let through), so a list needs no resolver in it.
                assert _sh(srv, ref, f"getent hosts {mirror}").strip()
                answer = post(srv, "exec", {**ref, "command": fetch, "timeout": 60}).json()
                if policy is allowed:
                    assert re.fullmatch("[1-5][0-9][0-9]", answer["output"]), answer
                else:
                    assert answer["exitCode"] == 7, answer  # curl: could not connect
    finally:
        for policy in (allowed, elsewhere):
            _remove_network(policy)


def test_the_rules_are_written_once_and_are_the_ones_the_code_states(isolated: Server) -> None:
    """However many backends started (the suite starts many, each with its own instance), each jump is there once
    and the chains hold exactly what firewall_rules() says for the network's subnet."""
    _start(isolated, "rules")
    subnet = IPv4Network(docker_json("network", "inspect", "ide-workspaces")[0]["IPAM"]["Config"][0]["Subnet"])
    in_chain, out_chain, into_chain = chains("ide-ws")
    assert _iptables("-S", "INPUT").count(f"-i ide-ws -j {in_chain}\n") == 1
    forward = _iptables("-S", "DOCKER-USER")
    assert forward.count(f"-i ide-ws -j {out_chain}\n") == 1 and forward.count(f"-o ide-ws -j {into_chain}\n") == 1
    expected = [
        line[3:] for line in firewall_rules("ide-ws", halves(subnet)[0], ()).splitlines() if line.startswith("-A ")
    ]
    installed = [line[3:] for chain in chains("ide-ws") for line in _iptables("-S", chain).splitlines()[1:]]
    assert sorted(installed) == sorted(expected)


# -- the parts without I/O ----------------------------------------------------------------------------------------


def test_the_network_config_and_the_rules_for_an_egress_list() -> None:
    policy = NetworkPolicy("isolated", ("10.1.0.0/16", "192.0.2.7/32"))
    subnet = IPv4Network("172.30.0.0/16")
    config = network_config(policy, subnet)
    assert config["Name"] == network_name(policy) != network_name(ISOLATED)
    assert len(bridge_name(policy)) <= 15 and config["Options"] == {
        "com.docker.network.bridge.name": bridge_name(policy),
        "com.docker.network.bridge.enable_icc": "false",
    }
    assert config["IPAM"]["Config"] == [
        {"Subnet": "172.30.0.0/16", "IPRange": "172.30.128.0/17", "Gateway": "172.30.0.1"}
    ]
    out = [
        line
        for line in firewall_rules(bridge_name(policy), halves(subnet)[0], policy.egress_allow).splitlines()
        if line.startswith(f"-A {chains(bridge_name(policy))[1]} ")
    ]
    rules = [line.split(" ", 2)[2] for line in out]
    assert rules == [
        "-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
        "-s 172.30.0.0/17 -j ACCEPT",
        f"-o {bridge_name(policy)} -p tcp -j REJECT --reject-with tcp-reset",
        f"-o {bridge_name(policy)} -j REJECT --reject-with icmp-port-unreachable",
        "-d 10.1.0.0/16 -j RETURN",
        "-d 192.0.2.7/32 -j RETURN",
        "-p udp -m udp --dport 53 -j RETURN",
        "-p tcp -m tcp --dport 53 -j RETURN",
        "-d 169.254.0.0/16 -p tcp -j REJECT --reject-with tcp-reset",
        "-d 169.254.0.0/16 -j REJECT --reject-with icmp-port-unreachable",
        "-p tcp -j REJECT --reject-with tcp-reset",
        "-j REJECT --reject-with icmp-port-unreachable",
    ]


def test_the_backend_knows_its_own_container_from_its_mounts() -> None:
    cid = "c3a4" * 16
    inside = (
        f"612 590 254:1 /var/lib/docker/containers/{cid}/resolv.conf /etc/resolv.conf rw,relatime - ext4 /dev/vda rw\n"
        f"613 590 254:1 /var/lib/docker/containers/{cid}/hostname /etc/hostname rw,relatime - ext4 /dev/vda rw\n"
    )
    assert own_container_id(inside) == cid
    assert own_container_id(Path("/proc/self/mountinfo").read_text()) is None  # the tests run on the host
