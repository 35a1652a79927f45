"""`ide-backend serve`: the API server under uvicorn, its settings from the flags and IDE_* variables."""

from __future__ import annotations

import argparse
import json
import socket
import sys
from datetime import UTC, datetime

import uvicorn

from .. import logs
from ..app import create_app
from ..settings import Settings

SETTINGS_FLAGS = ("host", "port", "database_url", "workspace_image", "data_dir")


def run(args: argparse.Namespace) -> int:
    """Run the server until it is stopped (Ctrl-C or SIGTERM); 130 after a Ctrl-C."""
    overrides = {key: value for key, value in vars(args).items() if key in SETTINGS_FLAGS and value is not None}
    settings = Settings(**overrides)
    logs.configure(args.log_level, settings.log_format)
    token, generated = settings.ensure_token()
    sockets = _listen(settings)  # before the app: a preview port of 0 becomes the one picked
    app = create_app(settings)
    url = f"http://{settings.host}:{settings.port}/"
    if generated:
        _announce(f"ide-backend: open {url}?token={token}", settings.log_format)
        _announce(f"ide-backend: API token (send as 'Authorization: Bearer ...'): {token}", settings.log_format)
    else:
        _announce(f"ide-backend: serving on {url} (token from IDE_API_TOKEN)", settings.log_format)
    if settings.preview_port > 0:
        where = settings.preview_url or f"http://{settings.host}:{settings.preview_port}"
        _announce(f"ide-backend: previews of workspace ports on {where}/preview/", settings.log_format)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=args.log_level,
        log_config=None,  # logs.configure routes uvicorn's loggers through the server's own handler
        # Behind a load balancer, the client is who it says in X-Forwarded-For, when the peer is one we trust.
        proxy_headers=bool(settings.forwarded_allow_ips),
        forwarded_allow_ips=settings.forwarded_allow_ips or None,
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
        ws_max_size=settings.max_body_bytes,
        # permessage-deflate is off by default on our websockets (the API's and the IDE proxy's): on a large
        # command output it was 40% of the server's CPU. Deployments serving browsers over slow links turn it on.
        ws_per_message_deflate=settings.ws_compression,
        timeout_graceful_shutdown=30,
    )
    try:
        uvicorn.Server(config).run(sockets=sockets)
    except KeyboardInterrupt:
        # uvicorn re-raises the Ctrl-C it caught once it has shut down cleanly: nothing is left to report.
        return 130
    return 0


def _listen(settings: Settings) -> list[socket.socket]:
    """The server's sockets: the API's port, and the previews' own (their own origin) unless IDE_PREVIEW_PORT=-1;
    a preview port of 0 is set to the free one picked."""
    sockets = [_bind(settings.host, settings.port)]
    if settings.preview_port >= 0:
        sockets.append(_bind(settings.host, settings.preview_port))
        settings.preview_port = sockets[-1].getsockname()[1]
    return sockets


def _bind(host: str, port: int) -> socket.socket:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        raise SystemExit(f"ide-backend: cannot listen on {host}:{port}: {exc}") from exc
    sock.set_inheritable(True)
    return sock


def _announce(message: str, fmt: logs.LogFormat) -> None:
    """A line for the person who started the server, on stderr beside the log (in the log's format), never through
    the log's handler: that one redacts tokens, and this line is how a generated token reaches its owner."""
    if fmt == "json":
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        message = json.dumps({"time": now, "level": "info", "logger": "ide_backend", "message": message})
    print(message, file=sys.stderr, flush=True)
