"""The host firewall around an isolated workspace network: three chains of its own, written on the engine's host by a
short-lived helper container. network.py puts the network in place and calls write(); docs/security.md ("Network")
says what the rules block.

- `<bridge>-in` (jumped to from INPUT for packets from the bridge): to any of the host's own addresses.
- `<bridge>-out` and `<bridge>-into` (from DOCKER-USER, which the engine runs first in FORWARD): forwarded out of and
  into the bridge.

The helper runs in the engine host's network namespace and chroots into the host's root (mounted read-only), so the
rules are written with the host's own iptables, in the flavour (nft or legacy) the engine uses, wherever the backend
runs. Each write replaces the three chains' whole contents in one transaction (`iptables-restore --noflush`), so
every backend writes the same rules and a second write changes nothing; the jumps to them are added only when missing.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from ipaddress import IPv4Network
from typing import Any

from ...errors import RuntimeFailure
from . import hosthelper
from .client import DockerClient

HELPER_LABEL = "ide-backend.network"  # "firewall" on a helper (network.py labels its networks with the same key)
# A helper carries its backend's instance label too, so that sweeping an instance (tests do) removes one left behind by
# a backend killed while it ran.
INSTANCE_LABEL = "ide-backend.instance"
# Link-local addresses: the cloud's metadata service (169.254.169.254) and the like. Closed unless listed.
LINK_LOCAL = "169.254.0.0/16"

# Runs in the helper, chrooted into the engine host's root: the host's own shell and iptables. Its values come as
# arguments: the bridge, the three chains, and the rules (iptables-restore input) for those chains.
FIREWALL_SCRIPT = """set -eu
bridge=$1 in_chain=$2 out_chain=$3 into_chain=$4
printf '%s\\n' "$5" | iptables-restore -w --noflush
forward=DOCKER-USER
iptables -w -n -L DOCKER-USER >/dev/null 2>&1 || forward=FORWARD
jump() { chain=$1; shift; iptables -w -C "$chain" "$@" 2>/dev/null || iptables -w -I "$chain" 1 "$@"; }
jump INPUT -i "$bridge" -j "$in_chain"
jump "$forward" -o "$bridge" -j "$into_chain"
jump "$forward" -i "$bridge" -j "$out_chain"
"""


def chains(bridge: str) -> tuple[str, str, str]:
    """The firewall chains: from the bridge to the host, forwarded out of the bridge, forwarded into it."""
    return f"{bridge}-in", f"{bridge}-out", f"{bridge}-into"


def firewall_rules(bridge: str, backends: IPv4Network, egress_allow: Sequence[str]) -> str:
    """The contents of the bridge's three chains, as iptables-restore input (it replaces them whole). `backends` is
    the part of the subnet only backends have addresses in; `egress_allow`, when not empty, the only CIDRs workspaces
    may open connections to outside the host (DNS aside)."""
    in_chain, out_chain, into_chain = chains(bridge)
    replies = "-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN"
    dns = ["-p udp -m udp --dport 53 -j RETURN", "-p tcp -m tcp --dport 53 -j RETURN"]
    reject = ["-p tcp -j REJECT --reject-with tcp-reset", "-j REJECT --reject-with icmp-port-unreachable"]
    rules: dict[str, list[str]] = {
        # Into the host itself (any of its addresses): only replies to connections the host opened (the published
        # port's proxy, a backend on the host), the backends' own traffic, and DNS.
        in_chain: [replies, f"-s {backends} -j RETURN", *dns, *reject],
        # Out of the bridge: a backend goes anywhere (past the engine's inter-container DROP, to reach workspaces);
        # a workspace reaches no other workspace, then only the allowed addresses (when a list is set) or anything
        # but link-local addresses.
        out_chain: [
            replies,
            f"-s {backends} -j ACCEPT",
            *(f"-o {bridge} {rule}" for rule in reject),
            *(f"-d {cidr} -j RETURN" for cidr in egress_allow),
            *dns,
            *(f"-d {LINK_LOCAL} {rule}" for rule in reject),
            *(reject if egress_allow else []),
        ],
        # Into the bridge from anywhere else (another network, the LAN routing to the subnet): nothing opens a
        # connection to a workspace but a backend.
        into_chain: [replies, f"-s {backends} -j RETURN", *reject],
    }
    lines = ["*filter", *(f":{chain} - [0:0]" for chain in rules)]
    lines += [f"-A {chain} {rule}" for chain, chain_rules in rules.items() for rule in chain_rules]
    lines.append("COMMIT")
    return "\n".join(lines)


def helper_config(image: str, bridge: str, rules: str, labels: Mapping[str, str]) -> dict[str, Any]:
    """A short-lived container in the engine host's network namespace that writes `rules` with the host's own
    iptables: the host's root is mounted read-only (/run writable, for iptables' lock) and entered with chroot."""
    argv = ["chroot", "/host", "/bin/sh", "-c", FIREWALL_SCRIPT, "ide-network", bridge, *chains(bridge), rules]
    return {
        "Image": image,
        "Entrypoint": [],
        "Cmd": argv,
        "User": "0:0",
        "Labels": {**{k: v for k, v in labels.items() if k == INSTANCE_LABEL}, HELPER_LABEL: "firewall"},
        "HostConfig": {
            "NetworkMode": "host",
            "UsernsMode": "host",
            "Binds": ["/:/host:ro", "/run:/host/run"],
            "CapDrop": ["ALL"],
            "CapAdd": ["NET_ADMIN", "NET_RAW", "SYS_CHROOT"],
            "SecurityOpt": ["no-new-privileges:true"],
            "RestartPolicy": {"Name": "no"},
            "LogConfig": {"Type": "json-file", "Config": {}},
        },
    }


async def write(
    client: DockerClient,
    bridge: str,
    backends: IPv4Network,
    egress_allow: Sequence[str],
    *,
    image: str,
    labels: Mapping[str, str],
) -> None:
    """Write the bridge's rules on the engine's host, through the helper (of `image`, the workspace image). Fails
    (and so does creating a workspace) when they cannot be written: an isolated workspace never runs without them."""
    await hosthelper.remove_left(client, HELPER_LABEL, "firewall")
    config = helper_config(image, bridge, firewall_rules(bridge, backends, egress_allow), labels)
    code, output = await hosthelper.run(
        client,
        config,
        name=f"ide-network-firewall-{uuid.uuid4().hex[:12]}",
        doing="writing the workspace network's firewall rules",
    )
    if code != 0:
        raise RuntimeFailure(
            f"The firewall rules that isolate workspaces could not be written on the engine's host (exit {code}: "
            f"{output.strip()[-500:]}). The engine's host needs iptables and the helper container NET_ADMIN in "
            "its network namespace; set IDE_NETWORK=shared to run workspaces without isolation"
        )
