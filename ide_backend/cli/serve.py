"""`ide-backend serve`: the API server under uvicorn, its settings from the flags and IDE_* variables."""

from __future__ import annotations

import argparse
import logging
import re
import sys

import uvicorn

from ..app import create_app
from ..settings import Settings

SETTINGS_FLAGS = ("host", "port", "database_url", "workspace_image", "data_dir")


def run(args: argparse.Namespace) -> int:
    """Run the server until it is stopped (Ctrl-C or SIGTERM); 130 after a Ctrl-C."""
    overrides = {key: value for key, value in vars(args).items() if key in SETTINGS_FLAGS and value is not None}
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
