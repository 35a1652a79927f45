"""The workspace network (IDE_NETWORK=isolated): a Docker bridge where no workspace reaches another workspace or the
host, and the wider network stays open. docs/security.md ("Network") says exactly what is and is not blocked.

It is made of three things, all idempotent and shared by every backend instance on the engine:

- One bridge network per egress policy (`ide-workspaces`, or `ide-workspaces-<digest>` for an IDE_EGRESS_ALLOW
  list), made with inter-container traffic off (`enable_icc=false`). Its subnet (chosen by the engine's own address
  allocator) is split in two: workspaces get their addresses from the upper half only; the lower half is for
  backends. A backend that runs in a container on this engine joins the network at a fixed lower-half address, so
  that it reaches code-server at a workspace's address, and the rules below trust that half: no workspace can hold
  such an address (it is never handed out dynamically, and a workspace has no NET_ADMIN to change its own).
- Host firewall rules (firewall.py), written by a helper container on the engine's host wherever the backend runs,
  that keep workspaces off the host and off each other, and apply IDE_EGRESS_ALLOW.
- Nothing is ever removed: other instances use the same network and rules. The engine refuses to remove a network
  that still has endpoints anyway, and rules left for a network removed by hand are keyed to a bridge that no longer
  exists (they are rewritten when it is made again).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import secrets
import time
import uuid
from collections.abc import Mapping
from datetime import datetime
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import aiodocker
from aiodocker.networks import DockerNetwork

from ...errors import Conflict, IDEError, NotFound, RuntimeFailure
from ..base import NetworkPolicy
from . import firewall
from .client import DockerClient
from .errors import translate_errors

log = logging.getLogger(__name__)

NETWORK_LABEL = firewall.HELPER_LABEL  # "workspaces" on the network, "probe" on a probe, "firewall" on a helper
EGRESS_LABEL = "ide-backend.egress-allow"
ICC_OPTION = "com.docker.network.bridge.enable_icc"
BRIDGE_OPTION = "com.docker.network.bridge.name"
_MOUNTINFO = Path("/proc/self/mountinfo")
# A container's own /etc/hostname, /etc/hosts and /etc/resolv.conf are mounted from the engine's folder for it.
_CONTAINER_MOUNT = re.compile(r"/containers/([0-9a-f]{64})/(?:hostname|hosts|resolv\.conf)\s")
_ATTEMPTS = 3
_JOIN_ATTEMPTS = 8
_LEFT_AFTER = 120.0  # seconds after which a probe network is taken as left behind


def _digest(policy: NetworkPolicy) -> str:
    return hashlib.sha256(",".join(sorted(policy.egress_allow)).encode()).hexdigest()[:8]


def network_name(policy: NetworkPolicy) -> str:
    """The Docker network of an isolated policy: one per egress list, so policies never share (or rewrite) rules."""
    return f"ide-workspaces-{_digest(policy)}" if policy.egress_allow else "ide-workspaces"


def bridge_name(policy: NetworkPolicy) -> str:
    """The Linux bridge's name (at most 15 characters): the firewall rules are keyed to it."""
    return f"ide-ws-{_digest(policy)}" if policy.egress_allow else "ide-ws"


def halves(subnet: IPv4Network) -> tuple[IPv4Network, IPv4Network]:
    """(backends, workspaces): the lower half of the subnet for backends' fixed addresses (and the gateway), the
    upper half for workspaces' dynamic ones."""
    lower, upper = subnet.subnets(prefixlen_diff=1)
    return lower, upper


def network_config(policy: NetworkPolicy, subnet: IPv4Network) -> dict[str, Any]:
    """The body of Docker's network create for the policy's network on `subnet`."""
    _, workspaces = halves(subnet)
    return {
        "Name": network_name(policy),
        "CheckDuplicate": True,
        "Driver": "bridge",
        "Internal": False,
        "Attachable": False,
        "EnableIPv6": False,
        "IPAM": {
            "Driver": "default",
            "Config": [{"Subnet": str(subnet), "IPRange": str(workspaces), "Gateway": str(subnet[1])}],
        },
        "Options": {BRIDGE_OPTION: bridge_name(policy), ICC_OPTION: "false"},
        "Labels": {NETWORK_LABEL: "workspaces", EGRESS_LABEL: ",".join(policy.egress_allow)},
    }


def network_subnet(policy: NetworkPolicy, data: Mapping[str, Any]) -> IPv4Network:
    """The subnet of an existing network, after checking it is the one network_config() makes: a network of that name
    made otherwise (by hand, or by a version without isolation) would isolate nothing, so it is refused."""
    name = network_name(policy)
    options = data.get("Options") or {}
    configs = (data.get("IPAM") or {}).get("Config") or []
    subnet = None
    with contextlib.suppress(KeyError, ValueError):
        subnet = IPv4Network(configs[0]["Subnet"])
        if configs[0].get("IPRange") != str(halves(subnet)[1]):
            subnet = None
    if (
        data.get("Driver") != "bridge"
        or options.get(ICC_OPTION) != "false"
        or options.get(BRIDGE_OPTION) != bridge_name(policy)
        or subnet is None
    ):
        raise RuntimeFailure(
            f"The Docker network {name} exists but is not one ide-backend made for isolated workspaces (bridge "
            f"{bridge_name(policy)}, enable_icc=false, an IP range in its upper half); remove it with `docker network "
            f"rm {name}` once no container uses it, or set IDE_NETWORK=shared"
        )
    return subnet


def own_container_id(mountinfo: str) -> str | None:
    """The id of the container this process runs in (from its mount table), or None outside a container."""
    found = _CONTAINER_MOUNT.search(mountinfo)
    return found.group(1) if found else None


class WorkspaceNetworks:
    """Puts a policy's network in place (once per process and policy) and moves containers onto it."""

    def __init__(self, client: DockerClient) -> None:
        self._client = client
        self._docker = client.api
        self._ready: set[NetworkPolicy] = set()
        self._lock = asyncio.Lock()

    def _errors(self, doing: str) -> contextlib.AbstractContextManager[None]:
        return translate_errors(doing, self._client.host)

    async def ensure(self, policy: NetworkPolicy, image: str, labels: Mapping[str, str]) -> None:
        """Make sure the policy's network, its firewall rules and (in a container) this backend's place on it exist.
        Nothing to do for `shared` and `none`. `image` (the workspace image) runs the firewall helper; `labels` are
        the workspace container's (the helper takes its instance label)."""
        if policy.mode != "isolated" or policy in self._ready:
            return
        async with self._lock:
            if policy in self._ready:
                return
            subnet = await self._ensure_network(policy)
            backends, _ = halves(subnet)
            bridge = bridge_name(policy)
            await firewall.write(self._client, bridge, backends, policy.egress_allow, image=image, labels=labels)
            await self._join_self(policy, subnet)
            self._ready.add(policy)
            log.info("workspace network %s ready (%s, bridge %s)", network_name(policy), subnet, bridge_name(policy))

    async def move(self, container_id: str, policy: NetworkPolicy) -> bool:
        """Put a stopped container on the policy's networks (one made by an earlier version on the default bridge, or
        under another IDE_NETWORK): its id, volume and home folder stay. Running containers are left as they are
        (moving one would cut its connections), and so is one made with no network at all (the engine cannot connect
        it to any network: it takes `docker rm`, the files live on the volume). True when it was moved."""
        with self._errors("inspecting the container"):
            data = await self._client.get_json(f"containers/{container_id}/json")
        if (data.get("State") or {}).get("Running") or (data.get("HostConfig") or {}).get("NetworkMode") == "none":
            return False
        current = set((data.get("NetworkSettings") or {}).get("Networks") or {})
        wanted = {"isolated": {network_name(policy)}, "shared": {"bridge"}, "none": set()}[policy.mode]
        if current == wanted:
            return False
        config = data.get("Config") or {}
        await self.ensure(policy, config.get("Image") or "", config.get("Labels") or {})
        for name in sorted(current - wanted):
            with contextlib.suppress(NotFound), self._errors(f"disconnecting the container from network {name}"):
                await _docker_network(self._docker, name).disconnect({"Container": container_id, "Force": True})
        for name in sorted(wanted - current):
            with self._errors(f"connecting the container to network {name}"):
                await _docker_network(self._docker, name).connect({"Container": container_id})
        shown = str(data.get("Name", container_id)).lstrip("/")
        log.info("moved container %s from networks %s to %s", shown, sorted(current), sorted(wanted))
        return True

    async def repair(self, policy: NetworkPolicy, image: str, labels: Mapping[str, str]) -> bool:
        """After the engine could not find something a create needed: when it was the policy's network (removed by
        hand since it was put in place), make it again and say True."""
        if policy.mode != "isolated" or await self._inspect_network(network_name(policy)) is not None:
            return False
        log.warning("the network %s was removed behind the backend's back: making it again", network_name(policy))
        self._ready.discard(policy)
        await self.ensure(policy, image, labels)
        return True

    # -- the network ------------------------------------------------------------------------------------------

    async def _ensure_network(self, policy: NetworkPolicy) -> IPv4Network:
        """The policy's network, made when missing; returns its subnet."""
        name = network_name(policy)
        for _ in range(_ATTEMPTS):
            data = await self._inspect_network(name)
            if data is not None:
                return network_subnet(policy, data)
            subnet = await self._free_subnet()
            try:
                with self._errors(f"creating network {name}"):
                    await self._docker.networks.create(network_config(policy, subnet))
                log.info("created network %s on %s", name, subnet)
            except Conflict:  # another backend made it meanwhile: use that one
                pass
            except RuntimeFailure as exc:  # the subnet was taken meanwhile ("Pool overlaps"): choose again
                log.warning("creating network %s on %s failed, trying again: %s", name, subnet, exc.message)
        data = await self._inspect_network(name)
        if data is None:
            raise RuntimeFailure(f"The Docker network {name} could not be created; see the backend's log")
        return network_subnet(policy, data)

    async def _inspect_network(self, name: str) -> dict[str, Any] | None:
        try:
            with self._errors(f"inspecting network {name}"):
                data: dict[str, Any] = await self._client.get_json(f"networks/{name}")
        except NotFound:
            return None
        return data

    async def _free_subnet(self) -> IPv4Network:
        """A subnet the engine considers free (its address pools, minus what its networks and the host's routes
        use): it is asked for one by making a probe network, read and removed at once."""
        name = f"ide-network-probe-{uuid.uuid4().hex[:12]}"
        await self._remove_left_probes()
        with self._errors("choosing a subnet for the workspace network"):
            probe = await self._docker.networks.create(
                {"Name": name, "Driver": "bridge", "Labels": {NETWORK_LABEL: "probe"}}
            )
            try:
                data = await probe.show()
            finally:
                await probe.delete()
        subnet = IPv4Network(data["IPAM"]["Config"][0]["Subnet"])
        if subnet.prefixlen > 28:
            raise RuntimeFailure(f"The engine offered the subnet {subnet} for the workspace network: too small")
        return subnet

    async def _remove_left_probes(self) -> None:
        """Probe networks a backend killed between making and removing one left behind (by their age)."""
        with self._errors("listing probe networks"):
            probes = await self._docker.networks.list(filters={"label": f"{NETWORK_LABEL}=probe"})
        for probe in probes:
            created = _seconds(probe.get("Created"))
            if created is not None and time.time() - created > _LEFT_AFTER:
                with contextlib.suppress(IDEError), self._errors("removing a probe network left behind"):
                    await _docker_network(self._docker, probe["Id"]).delete()

    # -- a backend in a container -----------------------------------------------------------------------------

    async def _join_self(self, policy: NetworkPolicy, subnet: IPv4Network) -> None:
        """When this backend runs in a container of this engine, join the network at a lower-half address, so that it
        reaches workspaces at their addresses (IDE_IDE_UPSTREAM=container) past the rules."""
        try:
            me = own_container_id(await asyncio.to_thread(_MOUNTINFO.read_text))
        except OSError:
            me = None
        if me is None:
            return
        try:
            with self._errors("inspecting the backend's own container"):
                data = await self._client.get_json(f"containers/{me}/json")
        except NotFound:  # a container of another engine: workspaces are not reachable by address from here
            return
        name = network_name(policy)
        backends, _ = halves(subnet)
        endpoint = ((data.get("NetworkSettings") or {}).get("Networks") or {}).get(name)
        network = _docker_network(self._docker, name)
        if endpoint is not None:
            with contextlib.suppress(ValueError):
                if IPv4Address(endpoint.get("IPAddress") or "") in backends:
                    return
            with contextlib.suppress(NotFound), self._errors(f"disconnecting the backend from network {name}"):
                await network.disconnect({"Container": me, "Force": True})
        for _ in range(_JOIN_ATTEMPTS):
            address = _backend_address(subnet)
            try:
                with self._errors(f"connecting the backend to network {name}"):
                    await network.connect(
                        {"Container": me, "EndpointConfig": {"IPAMConfig": {"IPv4Address": str(address)}}}
                    )
            except IDEError as exc:  # the address is taken by another backend: another one
                log.info("joining network %s at %s failed: %s", name, address, exc.message)
                continue
            log.info("this backend (container %s) joined network %s at %s", me[:12], name, address)
            return
        raise RuntimeFailure(f"This backend's container could not join the network {name}; see its log")


def _backend_address(subnet: IPv4Network) -> IPv4Address:
    """A random address of the lower half, past the network's own address and the gateway."""
    backends, _ = halves(subnet)
    return backends[2 + secrets.randbelow(backends.num_addresses - 2)]


def _seconds(value: Any) -> float | None:
    """Seconds since the epoch from Docker's RFC 3339 time (a network's Created); None when unreadable."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _docker_network(docker: aiodocker.Docker, name: str) -> DockerNetwork:
    return DockerNetwork(docker, name)  # type: ignore[no-untyped-call]
