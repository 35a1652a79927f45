"""Prometheus metrics (`GET /metrics`, text format): what an operator's dashboards and alerts need.

Counted as things happen: HTTP requests by route, method and status, with their latency; Docker calls by operation
(the runtime's methods) and database calls by operation, with their latency; reconnections of the engine's event
stream. Read at each scrape: open websockets, live processes, workspaces by state and template (one inspect each,
at most every SNAPSHOT_TTL seconds), and the warm pools (size, ready, claims, cold creates).

The counters are process-wide (one backend process is one scrape target); each app's registry collects them with the
values read at scrape time. Access: the operator's token, or IDE_METRICS_TOKEN (good for /metrics only).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, MutableMapping
from typing import Any, ParamSpec, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Metrics", "db_call", "docker_timed", "engine_stream_reconnected"]

SNAPSHOT_TTL = 2.0
_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

HTTP_REQUESTS = Counter("ide_http_requests", "HTTP requests answered", ["route", "method", "status"], registry=None)
HTTP_SECONDS = Histogram(
    "ide_http_request_seconds", "Time to answer an HTTP request", ["route", "method"], buckets=_LATENCY, registry=None
)
DOCKER_SECONDS = Histogram(
    "ide_docker_call_seconds", "Docker engine calls by operation", ["operation"], buckets=_LATENCY, registry=None
)
DOCKER_ERRORS = Counter("ide_docker_call_errors", "Docker engine calls that failed", ["operation"], registry=None)
DB_SECONDS = Histogram(
    "ide_database_call_seconds", "Database calls by operation", ["operation"], buckets=_LATENCY, registry=None
)
ENGINE_RECONNECTS = Counter(
    "ide_engine_event_stream_reconnects", "Times the engine's event stream broke and was followed again", registry=None
)
_SHARED = (HTTP_REQUESTS, HTTP_SECONDS, DOCKER_SECONDS, DOCKER_ERRORS, DB_SECONDS, ENGINE_RECONNECTS)

P = ParamSpec("P")
R = TypeVar("R")


def docker_timed(
    operation: str,
) -> Callable[[Callable[P, Coroutine[Any, Any, R]]], Callable[P, Coroutine[Any, Any, R]]]:
    """Time a runtime method as one Docker operation (its failures counted too)."""

    def wrap(method: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
        @functools.wraps(method)
        async def timed(*args: P.args, **kwargs: P.kwargs) -> R:
            began = time.perf_counter()
            try:
                return await method(*args, **kwargs)
            except Exception:
                DOCKER_ERRORS.labels(operation).inc()
                raise
            finally:
                DOCKER_SECONDS.labels(operation).observe(time.perf_counter() - began)

        return timed

    return wrap


@contextlib.contextmanager
def db_call(operation: str) -> Iterator[None]:
    began = time.perf_counter()
    try:
        yield
    finally:
        DB_SECONDS.labels(operation).observe(time.perf_counter() - began)


def engine_stream_reconnected() -> None:
    ENGINE_RECONNECTS.inc()


def route_label(scope: MutableMapping[str, Any]) -> str:
    """A route's label with few values: the API path (only routes that exist), else the area of the site."""
    path: str = scope.get("path", "")
    if "endpoint" not in scope:
        return "unmatched"
    if path.startswith("/api/"):
        return path
    for area in ("/ide/", "/static/", "/vendor/"):
        if path.startswith(area):
            return area.rstrip("/")
    return path if path in ("/", "/docs", "/healthz", "/openapi.json", "/metrics") else "other"


class Metrics:
    """One app's registry: the process-wide counters, and gauges read from the live service at scrape time."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        for collector in _SHARED:
            self.registry.register(collector)
        self.websockets = Gauge("ide_websockets_open", "Open API websockets", registry=self.registry)
        self.processes = Gauge(
            "ide_processes_live", "Processes started over websockets, running", registry=self.registry
        )
        self.workspaces = Gauge(
            "ide_workspaces", "Workspaces by state and template", ["state", "template"], registry=self.registry
        )
        self.pool_size = Gauge("ide_pool_size", "Warm pool target size", ["template"], registry=self.registry)
        self.pool_ready = Gauge("ide_pool_ready", "Warm pool containers ready", ["template"], registry=self.registry)
        self.pool_claims = Gauge(
            "ide_pool_claims",
            "New workspaces served from the warm pool (since start)",
            ["template"],
            registry=self.registry,
        )
        self.pool_misses = Gauge(
            "ide_pool_misses", "New workspaces created cold (since start)", ["template"], registry=self.registry
        )
        self._snapshot_at = 0.0
        self._snapshot_lock = asyncio.Lock()

    async def render(
        self,
        *,
        websockets: int,
        processes: int,
        pool: dict[str, Any],
        workspaces: Callable[[], Awaitable[list[tuple[str, str]]]],
    ) -> bytes:
        """The text exposition, with the gauges set from the service now (workspaces: (state, template) pairs, read
        again when the last reading is older than SNAPSHOT_TTL)."""
        self.websockets.set(websockets)
        self.processes.set(processes)
        for template, stats in pool.get("templates", {}).items():
            self.pool_size.labels(template).set(stats.get("size", 0))
            self.pool_ready.labels(template).set(stats.get("ready", 0))
            self.pool_claims.labels(template).set(stats.get("hits", 0))
            self.pool_misses.labels(template).set(stats.get("misses", 0))
        async with self._snapshot_lock:
            if time.monotonic() - self._snapshot_at > SNAPSHOT_TTL:
                counts: dict[tuple[str, str], int] = {}
                for pair in await workspaces():
                    counts[pair] = counts.get(pair, 0) + 1
                self.workspaces.clear()
                for (state, template), count in counts.items():
                    self.workspaces.labels(state, template).set(count)
                self._snapshot_at = time.monotonic()
        return generate_latest(self.registry)
