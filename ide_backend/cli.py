"""The command line: `ide-backend serve` runs the API server."""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Sequence

import uvicorn

from .app import create_app
from .settings import Settings
from .version import __version__


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ide-backend", description="Workspace containers for a browser IDE.")
    parser.add_argument("--version", action="version", version=f"ide-backend {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the API server (settings also from IDE_* variables)")
    serve.add_argument("--host", help="address to listen on (IDE_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (IDE_PORT, default 8000)")
    serve.add_argument("--database-url", help="sqlite:///file or postgresql://... (IDE_DATABASE_URL)")
    serve.add_argument("--workspace-image", help="image for workspace containers (IDE_WORKSPACE_IMAGE)")
    serve.add_argument("--data-dir", help="where the default SQLite file lives (IDE_DATA_DIR)")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    overrides = {
        key: value
        for key, value in vars(args).items()
        if key in {"host", "port", "database_url", "workspace_image", "data_dir"} and value is not None
    }
    settings = Settings(**overrides)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    token, generated = settings.ensure_token()
    app = create_app(settings)
    url = f"http://{settings.host}:{settings.port}/"
    if generated:
        print(f"ide-backend: open {url}?token={token}", file=sys.stderr, flush=True)
        print(f"ide-backend: API token (send as 'Authorization: Bearer ...'): {token}", file=sys.stderr, flush=True)
    else:
        print(f"ide-backend: serving on {url} (token from IDE_API_TOKEN)", file=sys.stderr, flush=True)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=args.log_level,
        proxy_headers=False,
        ws_ping_interval=20.0,
        ws_ping_timeout=20.0,
        ws_max_size=settings.max_body_bytes,
        # permessage-deflate is off by default on our websockets (the API's and the IDE proxy's): on a large
        # command output it was 40% of the server's CPU. Deployments serving browsers over slow links turn it on.
        ws_per_message_deflate=settings.ws_compression,
        timeout_graceful_shutdown=30,
    )
    # uvicorn has configured its loggers by now; the filter keeps `?token=` out of access lines.
    for name in ("uvicorn.access", "uvicorn.error"):
        logging.getLogger(name).addFilter(RedactTokens())
    try:
        uvicorn.Server(config).run()
    except KeyboardInterrupt:
        # uvicorn re-raises the Ctrl-C it caught once it has shut down cleanly: nothing is left to report.
        return 130
    return 0


class RedactTokens(logging.Filter):
    """Replaces the value of every `token=` in a log record's arguments (request lines carry the query)."""

    _pattern = re.compile(r"(token=)[^&\s\"']+")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                self._pattern.sub(r"\1[redacted]", arg) if isinstance(arg, str) else arg for arg in record.args
            )
        if isinstance(record.msg, str):
            record.msg = self._pattern.sub(r"\1[redacted]", record.msg)
        return True
