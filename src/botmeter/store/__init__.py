"""The store seam: the two protocols every backend implements and the registry that finds them.

A backend is one folder (``botmeter/backends/duckdb/``, ``botmeter/backends/cloudwatch/``) holding
its ``Store`` (write, count, release, fork hooks, close) and its ``QueryEngine`` (session, run a
typed query, error groups, explore). ``BACKENDS`` maps a URL scheme to the pair, named as
``module:Class`` so that recording never imports the reading side; a plugin registers a
``Backend`` under the ``botmeter.backends`` entry-point group.
"""

from __future__ import annotations

import importlib
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

from ..exceptions import ConfigError

if TYPE_CHECKING:
    import pyarrow as pa

    from ..analyse.query import Query, Result


@dataclass(frozen=True)
class Backend:
    """One backend: its store class and its query engine class, each as ``module:Class``."""

    store: str
    engine: str | None = None

    def store_class(self) -> type[Store]:
        return _load(self.store)

    def engine_class(self) -> type[QueryEngine] | None:
        return _load(self.engine) if self.engine else None


BACKENDS: dict[str, Backend] = {
    "duckdb": Backend(
        "botmeter.backends.duckdb.store:DuckDBStore", "botmeter.backends.duckdb.engine:DuckDBEngine"
    ),
    "cloudwatch": Backend(
        "botmeter.backends.cloudwatch.store:CloudWatchStore",
        "botmeter.backends.cloudwatch.engine:CloudWatchEngine",
    ),
    # ClickHouse: a server, or the embedded engine in the bot's process; one store for both.
    "clickhouse": Backend(
        "botmeter.backends.clickhouse.store:ClickHouseStore",
        "botmeter.backends.clickhouse.engine:ClickHouseEngine",
    ),
    "chdb": Backend(
        "botmeter.backends.clickhouse.store:ClickHouseStore",
        "botmeter.backends.clickhouse.engine:ClickHouseEngine",
    ),
    # A collector (`botmeter serve`): the remote Meter sends its batches there; it reads nothing yet.
    "http": Backend("botmeter.backends.http.store:HttpStore"),
    "https": Backend("botmeter.backends.http.store:HttpStore"),
}
ENTRY_POINT_GROUP = "botmeter.backends"


def _load(target: str) -> Any:
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name), class_name)


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


@runtime_checkable
class QueryEngine(Protocol):
    """Answers typed queries over one store (see ``botmeter.analyse.query``)."""

    def session(self) -> AbstractContextManager[Any]:
        """Holds one connection (or one set of fetched figures) for several queries."""
        ...

    def run(self, query: Query) -> Result:
        """Answers a checked query; raises ``FigureUnavailable`` for a figure it cannot give."""
        ...

    def error_groups(
        self, start: datetime, end: datetime, quiet_days: int, bot: str | None = None
    ) -> list[dict[str, Any]]:
        """Errors grouped by fingerprint over the window (of one ``bot`` when given), with trend and
        first/last seen."""
        ...

    def explore(self, top: int = 5) -> dict[str, Any]:
        """What the store holds: sizes, kinds, the top values of each dimension."""
        ...


def scheme_of(url: str) -> tuple[str, str]:
    """The URL's scheme and the URL itself; a bare path is a DuckDB file (the embedded default)."""
    scheme = urlsplit(url).scheme if "://" in url else ""
    if not scheme:
        return "duckdb", f"duckdb://{url}"
    return scheme, url


def backend_for(scheme: str, url: str = "") -> Backend:
    """The registered backend for a URL scheme, from ``BACKENDS`` or a plugin's entry point."""
    backend = BACKENDS.get(scheme)
    if backend is not None:
        return backend
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == scheme:
            return ep.load()
    valid = ", ".join(sorted(BACKENDS))
    raise ConfigError(f"store URL {url or scheme!r}: unknown scheme {scheme!r}; valid schemes: {valid}")


def open_store(url: str, **options: object) -> Store:
    """Opens the store a URL names: ``duckdb://botmeter.duckdb`` (relative), ``duckdb:///abs/file.duckdb``,
    ``cloudwatch://?namespace=MyBot&region=us-east-1``."""
    scheme, url = scheme_of(url)
    return backend_for(scheme, url).store_class()(url, **options)


def engine_for(store: Store, **options: Any) -> QueryEngine:
    """The query engine of the store's backend."""
    scheme, url = scheme_of(store.url)
    engine = backend_for(scheme, url).engine_class()
    if engine is None:
        # A store may say where its events are read instead (a collector's: on the collector).
        hint = getattr(store, "read_hint", "")
        raise ConfigError(f"{url}: this store cannot answer queries" + (f"; {hint}" if hint else ""))
    return engine(store, **options)
