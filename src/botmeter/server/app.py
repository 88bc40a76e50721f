"""The Starlette application: route lists from ``ingest``, ``otlp``, ``read`` and ``service``, the
collector started and flushed by the lifespan, errors answered as JSON, latency counted per route."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio.to_thread
import pyarrow as pa
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from . import ingest, otlp, read, service
from .auth import TokenFile, tokens_path
from .collector import Collector
from .ingest import RateLimiter
from .settings import ServerConfig

log = logging.getLogger("botmeter.server")
access = logging.getLogger("botmeter.server.access")
ROUTE_MODULES = (service, ingest, otlp, read)
_SWITCH_S = 0.0005  # how often the server's threads hand the GIL over (Python's default: 0.005)


def create_app(config: ServerConfig) -> Starlette:
    """The collector's application; ``app.state.collector`` is the store's single writer."""
    collector = Collector(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        collector.start()
        await anyio.to_thread.run_sync(collector.warm_up)
        log.info("botmeter: collecting into %s", collector.store.url)
        try:
            yield
        finally:
            # uvicorn has finished the requests in progress: write what they queued, then close.
            collector.close()
            log.info("botmeter: collector stopped; everything acknowledged is stored or spooled")

    routes = [route for module in ROUTE_MODULES for route in module.routes]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error},
    )
    app.state.config = config
    app.state.collector = collector
    app.state.tokens = TokenFile(tokens_path(collector.store, config.tokens_file))
    app.state.rate_limiter = RateLimiter(config.rate_limit, burst=config.max_batch_events)
    paths: dict[str, Any] = {}
    for module in ROUTE_MODULES:
        paths.update(getattr(module, "openapi_paths", {}))
    app.state.openapi = service.openapi_document(paths)
    app.add_middleware(_Timed, collector=collector)
    return app


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)


class _Timed:
    """Counts each request's latency under its route's path (not the raw URL: bounded labels)."""

    def __init__(self, app: ASGIApp, collector: Collector) -> None:
        self.app = app
        self.collector = collector

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [0]

        async def sending(message: Any) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "other"
            took = time.perf_counter() - start
            self.collector.observe_latency(path, took)
            self.collector.count(f"responses_{status[0] // 100}xx")
            # Method, route and status only: never a header or a query string (a token may be there).
            access.info("%s %s %d %.1fms", scope.get("method", ""), path, status[0], took * 1000)


def app_from_environment() -> Starlette:
    """For uvicorn's worker processes: the settings ``botmeter serve`` put in the environment."""
    _tune_process()
    return create_app(ServerConfig.from_environment())


def _tune_process() -> None:
    """Settings for a process that runs the collector and nothing else.

    Python threads hand the GIL over every 0.5 ms rather than 5: the store's thread releases it
    for each DuckDB statement and must get it back after each, and while the request and
    processing threads kept it busy, every one of those returns waited up to the full interval;
    a group's write took twice as long (in wall time, the same CPU) and the store fell behind.

    Arrow allocates from jemalloc rather than pyarrow's default (mimalloc), unless
    ``ARROW_DEFAULT_MEMORY_POOL`` says otherwise: the collector's large short-lived buffers (a
    group's columns, its spooled copy) then reuse freed pages instead of taking fresh ones from
    the kernel each time, whose zeroing took about a tenth of the server's CPU.
    """
    sys.setswitchinterval(_SWITCH_S)
    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        return
    try:
        pa.set_memory_pool(pa.jemalloc_memory_pool())
    except NotImplementedError:  # a pyarrow built without jemalloc: its default stays
        pass
