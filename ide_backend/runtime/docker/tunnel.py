"""Port forwards into containers this process cannot reach on their network (a Swarm node's bridge, say): a
listener on this host's loopback per (container, address, port), each connection it accepts relayed through a Docker
exec of its own that connects to the port from inside the container, as `kubectl port-forward` does through the API.

The proxies (/ide/, /preview/) then connect to the listener as they would to a container's address. The relay in
the container is a fixed Perl script (Perl is in every workspace image); the address and port it connects to are
its arguments, never a shell's input. Each connection costs one exec (tens of milliseconds on a node's engine);
browsers and the proxies' pools keep connections open, so a page load makes a few.

A forward listens on 127.0.0.1 only: what it reaches (code-server behind its password, a preview's port) is what a
local user of the backend's host could reach anyway where containers are on a local bridge (docs/security.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from ..base import STDOUT, ExecSession

log = logging.getLogger(__name__)

# Connects to ARGV[0]:ARGV[1] and relays bytes: stdin to the socket (half-closing it at stdin's end), the socket to
# stdout, until the socket's end. Exit 2 when the connection is refused (nothing listens there).
TUNNEL_SCRIPT = r"""
use strict; use warnings; use IO::Socket::INET; use IO::Select;
my ($host, $port) = @ARGV;
my $sock = IO::Socket::INET->new(PeerAddr => $host, PeerPort => $port, Proto => "tcp", Timeout => 10)
    or do { print STDERR "ide-tunnel: $host:$port: $!\n"; exit 2 };
binmode STDIN; binmode STDOUT; $| = 1;
my $select = IO::Select->new(\*STDIN, $sock);
OUTER: while (1) {
    for my $fh ($select->can_read) {
        my $n = sysread($fh, my $buf, 65536);
        if ($fh == $sock) {
            last OUTER unless $n;
            my $off = 0;
            while ($off < $n) { my $w = syswrite(STDOUT, $buf, $n - $off, $off); last OUTER unless $w; $off += $w }
        } elsif (!$n) {
            $select->remove(\*STDIN); shutdown($sock, 1);
        } else {
            my $off = 0;
            while ($off < $n) { my $w = syswrite($sock, $buf, $n - $off, $off); last OUTER unless $w; $off += $w }
        }
    }
}
"""

OpenRelay = Callable[[], Awaitable[ExecSession]]


class PortForwards:
    """The forwards of one runtime: keyed by (container id, address, port), each a loopback listener, made on first
    use and closed with its container (close_container) or the runtime (close)."""

    def __init__(self) -> None:
        self._servers: dict[tuple[str, str, int], tuple[asyncio.Server, int]] = {}
        self._lock = asyncio.Lock()
        self._relays: set[asyncio.Task[None]] = set()

    async def address(self, container_id: str, host: str, port: int, open_relay: OpenRelay) -> tuple[str, int]:
        """The loopback address whose connections reach host:port from inside the container (made if need be)."""
        key = (container_id, host, port)
        async with self._lock:
            if key not in self._servers:

                async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                    task = asyncio.current_task()
                    assert task is not None
                    self._relays.add(task)
                    try:
                        await _relay(reader, writer, open_relay)
                    finally:
                        self._relays.discard(task)

                server = await asyncio.start_server(accepted, "127.0.0.1", 0)
                self._servers[key] = (server, server.sockets[0].getsockname()[1])
            return "127.0.0.1", self._servers[key][1]

    async def close_container(self, container_id: str) -> None:
        """Close the forwards into one container (it stopped or went): new connections are refused."""
        for key in [k for k in self._servers if k[0] == container_id]:
            server, _ = self._servers.pop(key)
            server.close()

    async def close(self) -> None:
        for server, _ in self._servers.values():
            server.close()
        self._servers.clear()
        for task in list(self._relays):
            task.cancel()
        for task in list(self._relays):
            with contextlib.suppress(BaseException):
                await task


async def _relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, open_relay: OpenRelay) -> None:
    """One accepted connection, relayed both ways through its own exec until either side ends."""
    try:
        session = await open_relay()
    except Exception as exc:  # the container went, or its node: the client sees the connection close
        log.info("port forward: no relay into the container (%s)", exc)
        writer.close()
        return

    async def inbound() -> None:
        while data := await reader.read(65536):
            await session.write(data)
        await session.close_stdin()

    async def outbound() -> None:
        while (chunk := await session.read()) is not None:
            stream, data = chunk
            if stream == STDOUT:
                writer.write(data)
                await writer.drain()
            else:
                log.info("port forward: %s", data.decode("utf-8", "replace").strip())

    sending = asyncio.create_task(inbound())
    try:
        await outbound()
    except Exception as exc:
        log.debug("port forward ended: %s", exc)
    finally:
        sending.cancel()
        with contextlib.suppress(BaseException):
            await sending
        await session.close()
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
