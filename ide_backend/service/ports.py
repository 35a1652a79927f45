"""The TCP ports something listens on inside a workspace, and a watcher that tells subscribers when one opens or
closes.

What listens is read from the workspace's own /proc, through the runtime's exec path as the workspace user, by a
fixed Perl program (Perl is in every workspace image; the program takes no argument): /proc/net/tcp and tcp6 (the
container's network namespace, readable by anyone in it), then every socket inode it can see under /proc/*/fd with
the process's name. The workspace user sees its own processes' descriptors, not root's: a port opened by a process
of another user is listed without a `process`. The engine's resolver (127.0.0.11, on user-defined networks) is not
listed, nor code-server's port in an IDE image.

The watcher polls only workspaces someone subscribes to on the live channel, every `interval` seconds (one exec,
a few milliseconds through the agent), and publishes a status event (`source: "ports"`) when the set changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

from ..errors import IDEError
from .bus import EventBus
from .domain import WorkspaceRef
from .messages import ListeningItem

log = logging.getLogger(__name__)

LISTEN = "0A"  # the TCP state LISTEN in /proc/net/tcp
DOCKER_DNS = "127.0.0.11"  # the engine's own resolver in a container on a user-defined network: not the user's
FDS_MARK = "#fds"
STATUS_STALE = 5.0  # seconds a /status reading of the ports is answered for, while it is read again behind it
# Reads /proc/net/tcp{,6}, then prints "inode pid name" for every socket descriptor it may look at.
SCRIPT = r"""
for my $f ('/proc/net/tcp', '/proc/net/tcp6') {
  open(my $h, '<', $f) or next;
  print "#$f\n";
  print while <$h>;
}
print "#fds\n";
opendir(my $d, '/proc') or exit 0;
for my $pid (sort { $a <=> $b } grep { /^\d+$/ } readdir $d) {
  opendir(my $fd, "/proc/$pid/fd") or next;
  my $name = '';
  if (open(my $c, '<', "/proc/$pid/comm")) { $name = <$c> // ''; chomp $name; }
  for my $n (readdir $fd) {
    my $l = readlink("/proc/$pid/fd/$n") // next;
    print "$1 $pid $name\n" if $l =~ /^socket:\[(\d+)\]$/;
  }
}
"""


@dataclass(frozen=True)
class ListeningPort:
    """A TCP port something listens on: the widest address it is bound to, and the process, when visible."""

    port: int
    address: str  # "0.0.0.0" or "::" (every address), or one address (127.0.0.1: reachable from inside only)
    process: str | None

    @property
    def loopback_only(self) -> bool:
        return ipaddress.ip_address(self.address).is_loopback


def _address(hex_address: str) -> str:
    """An address as /proc/net/tcp{,6} writes it (32-bit words in host order, little-endian here)."""
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    if len(words) == 4:
        return str(ipaddress.IPv4Address(words))
    address = ipaddress.IPv6Address(words)
    return str(address.ipv4_mapped) if address.ipv4_mapped else str(address)


def _rank(address: str) -> int:
    """Wider first: every address, then an outside one, then loopback."""
    if address in ("0.0.0.0", "::"):
        return 0
    return 2 if ipaddress.ip_address(address).is_loopback else 1


def parse_listening(output: str, exclude: frozenset[int] = frozenset()) -> list[ListeningPort]:
    """The listening ports the program's output names, one per port, in port order; `exclude`d ports left out."""
    sockets: dict[int, list[tuple[str, str]]] = {}  # port -> (address, inode)
    owners: dict[str, str] = {}
    in_fds = False
    for line in output.splitlines():
        if line.startswith("#"):
            in_fds = line == FDS_MARK
            continue
        fields = line.split()
        if in_fds:
            if len(fields) >= 2:
                owners.setdefault(fields[0], " ".join(fields[2:]) or "")
            continue
        if len(fields) < 10 or fields[3] != LISTEN or ":" not in fields[1]:
            continue  # the header line, or a socket that does not listen
        hex_address, _, hex_port = fields[1].partition(":")
        try:
            port, address = int(hex_port, 16), _address(hex_address)
        except ValueError:
            continue
        if 0 < port and port not in exclude and address != DOCKER_DNS:
            sockets.setdefault(port, []).append((address, fields[9]))
    found = []
    for port in sorted(sockets):
        bound = sorted(sockets[port], key=lambda item: _rank(item[0]))
        process = next((owners[inode] for _, inode in bound if owners.get(inode)), None)
        found.append(ListeningPort(port=port, address=bound[0][0], process=process))
    return found


def listening_items(ref: WorkspaceRef, ports: list[ListeningPort]) -> list[ListeningItem]:
    """The ports as /status and the status event show them, each with the path of its preview."""
    return [
        {
            "port": p.port,
            "address": p.address,
            "process": p.process,
            "previewUrl": f"/preview/{ref.project_id}/{ref.workspace_id}/{p.port}/",
        }
        for p in ports
    ]


Reader = Callable[[WorkspaceRef], Awaitable[list[ListeningPort] | None]]
"""Reads a workspace's listening ports now; None when it is not running."""


class PortWatcher:
    """Polls the listening ports of the workspaces someone subscribes to; publishes a status event on a change."""

    def __init__(self, read: Reader, bus: EventBus, interval: float = 1.0) -> None:
        self._read = read
        self._bus = bus
        self._interval = interval
        self._watchers: dict[WorkspaceRef, int] = {}
        self._tasks: dict[WorkspaceRef, asyncio.Task[None]] = {}
        self._last: dict[WorkspaceRef, tuple[float, list[ListeningPort]]] = {}
        # /status's readings, by workspace: (the container's run they were read in, when, what)
        self._status: dict[WorkspaceRef, tuple[str, float, list[ListeningPort]]] = {}
        self._refreshing: dict[WorkspaceRef, asyncio.Task[None]] = {}

    @contextlib.contextmanager
    def watch(self, ref: WorkspaceRef) -> Iterator[None]:
        """Poll this workspace while the block runs (and while any other watch of it does)."""
        self._watchers[ref] = self._watchers.get(ref, 0) + 1
        if ref not in self._tasks:
            self._tasks[ref] = asyncio.create_task(self._poll(ref), name=f"ports-{ref}")
        try:
            yield
        finally:
            self._watchers[ref] -= 1
            if not self._watchers[ref]:
                del self._watchers[ref]
                task = self._tasks.pop(ref, None)
                if task is not None:
                    task.cancel()
                self._last.pop(ref, None)

    def remember(self, ref: WorkspaceRef, found: list[ListeningPort]) -> None:
        """A reading made elsewhere (/status of a workspace nobody watches), for the next second's /status."""
        self._last[ref] = (time.monotonic(), found)
        if len(self._last) > 4096:
            cutoff = time.monotonic() - 60
            self._last = {k: v for k, v in self._last.items() if v[0] > cutoff or k in self._tasks}

    def last(self, ref: WorkspaceRef, max_age: float | None = None) -> list[ListeningPort] | None:
        """The last reading of a workspace (no older than `max_age` seconds), or None."""
        found = self._last.get(ref)
        if found is None or (max_age is not None and time.monotonic() - found[0] > max_age):
            return None
        return found[1]

    async def for_status(
        self, ref: WorkspaceRef, run: str, read: Callable[[], Awaitable[list[ListeningPort]]]
    ) -> list[ListeningPort]:
        """What /status says listens in the running workspace (`run`: its container's id and start): a reading of
        the last second (the watcher's, or an earlier /status's) as it is; one of the same run no older than
        STATUS_STALE seconds as it is too, read again in the background (one reading at a time per workspace);
        else one read now."""
        recent = self.last(ref, max_age=self._interval)
        if recent is not None:
            return recent
        known = self._status.get(ref)
        if known is not None and known[0] == run and time.monotonic() - known[1] <= STATUS_STALE:
            if ref not in self._refreshing:
                self._refreshing[ref] = asyncio.create_task(self._refresh(ref, run, read), name=f"status-ports-{ref}")
            return known[2]
        found = await read()
        self._keep(ref, run, found)
        return found

    async def _refresh(self, ref: WorkspaceRef, run: str, read: Callable[[], Awaitable[list[ListeningPort]]]) -> None:
        try:
            self._keep(ref, run, await read())
        except IDEError as exc:  # stopped meanwhile: the next /status says so, and reads again if it runs
            log.debug("cannot read the listening ports of %s: %s", ref, exc.message)
            self._status.pop(ref, None)
        finally:
            self._refreshing.pop(ref, None)

    def _keep(self, ref: WorkspaceRef, run: str, found: list[ListeningPort]) -> None:
        now = time.monotonic()
        self._status[ref] = (run, now, found)
        self.remember(ref, found)
        if len(self._status) > 4096:
            self._status = {k: v for k, v in self._status.items() if now - v[1] <= STATUS_STALE}

    async def close(self) -> None:
        tasks = [*self._tasks.values(), *self._refreshing.values()]
        self._tasks.clear()
        self._refreshing.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _poll(self, ref: WorkspaceRef) -> None:
        known: list[ListeningPort] | None = None
        while True:
            try:
                found = await self._read(ref)
            except IDEError as exc:
                log.debug("cannot read the listening ports of %s: %s", ref, exc.message)
                found = None
            if found is None:
                known = None  # stopped: the status events say so; the next start's first reading is news
                self._last.pop(ref, None)
            else:
                self._last[ref] = (time.monotonic(), found)
                if found != known and self._bus.publish_ports(ref, listening_items(ref, found)):
                    known = found
            await asyncio.sleep(self._interval)


__all__ = ["SCRIPT", "ListeningPort", "PortWatcher", "listening_items", "parse_listening"]
