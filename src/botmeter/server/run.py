"""Runs the collector under uvicorn: ``botmeter serve``."""

from __future__ import annotations

import os

from .logs import configure
from .settings import ServerConfig

# Connections served at once; more get 503 from uvicorn at once rather than queueing in memory.
MAX_CONNECTIONS = 512


def serve(config: ServerConfig) -> None:
    """Serves until SIGINT or SIGTERM, then finishes the requests in progress, writes what they
    queued and closes the store.

    With ``workers`` > 1 each worker process is a writer of its own (its own queue and spool), and
    DuckDB's file is shared the way several bot processes share it: each write takes the file and
    lets go of it. One worker (the default) keeps the file for itself and writes fastest.
    """
    import uvicorn

    configure(config.log_format)
    os.environ.update(config.to_environment())
    uvicorn.run(
        "botmeter.server.app:app_from_environment",
        factory=True,
        host=config.host,
        port=config.port,
        workers=config.workers if config.workers > 1 else None,
        log_config=None,
        access_log=False,
        limit_concurrency=MAX_CONNECTIONS,
        timeout_keep_alive=max(5, int(config.read_timeout)),
        timeout_graceful_shutdown=30,
    )
