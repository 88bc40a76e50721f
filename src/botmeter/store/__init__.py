"""The store seam: write a batch (idempotent on event_id), read, close.

A backend is one module with a class that takes the parsed URL; ``BACKENDS`` maps URL schemes
to it, so adding one is a module and a line here (or a ``botmeter.stores`` entry point).
"""

from __future__ import annotations

import importlib
from datetime import datetime
from importlib.metadata import entry_points
from pathlib import Path
from typing import Protocol, runtime_checkable
from urllib.parse import urlsplit

import pyarrow as pa

from ..exceptions import ConfigError

BACKENDS: dict[str, str] = {
    "duckdb": "botmeter.store.duckdb_store:DuckDBStore",
    "cloudwatch": "botmeter.store.cloudwatch:CloudWatchStore",
    "clickhouse": "botmeter.backends.clickhouse.store:ClickHouseStore",
    "chdb": "botmeter.backends.clickhouse.store:ClickHouseStore",
}


@runtime_checkable
class Store(Protocol):
    url: str

    def write(self, batch: pa.Table, *, fresh: bool = False, keep_open: bool = False) -> int:
        """Stores the batch; events already stored (same event_id) are skipped. Returns rows added.

        ``fresh``: the writer's first attempt at a batch whose ids it just made; a backend may
        skip the duplicate check for it. ``keep_open``: another batch follows at once.

        Raises ``StoreUnavailable`` when the store cannot take the batch now (the writer spools it);
        any other error says the batch's content is refused, and the writer writes it in halves to
        find the event(s) at fault, which it sets aside.
        """
        ...

    def count(self) -> int:
        """How many events are stored."""
        ...

    def last_event_at(self) -> datetime | None:
        """When the newest stored event happened (UTC), or None when unknown or empty."""
        ...

    def default_spool_dir(self) -> Path:
        """Where batches wait while this store fails, unless configured."""
        ...

    def default_key_path(self) -> Path:
        """Where the user-id hash key is kept, unless configured."""
        ...

    def release(self) -> None:
        """Lets go of anything kept open between writes (other processes may want it)."""
        ...

    def before_fork(self) -> None:
        """Closes what a child process must not inherit."""
        ...

    def after_fork(self) -> None:
        """Drops anything the parent process held open."""
        ...

    def close(self) -> None: ...


def open_store(url: str, **options: object) -> Store:
    """Opens the store a URL names: ``duckdb://botmeter.duckdb`` (relative), ``duckdb:///abs/file.duckdb``,
    ``cloudwatch://?namespace=MyBot&region=us-east-1``."""
    scheme = urlsplit(url).scheme if "://" in url else ""
    if not scheme:
        # A bare path is a DuckDB file: the embedded default.
        scheme, url = "duckdb", f"duckdb://{url}"
    target = BACKENDS.get(scheme)
    if target is None:
        for ep in entry_points(group="botmeter.stores"):
            if ep.name == scheme:
                return ep.load()(url, **options)
        valid = ", ".join(sorted(BACKENDS))
        raise ConfigError(f"store URL {url!r}: unknown scheme {scheme!r}; valid schemes: {valid}")
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name), class_name)(url, **options)
