"""``botmeter copy``: events from one store to another (DuckDB to ClickHouse when a team outgrows the
file, ClickHouse back to DuckDB for a laptop).

Events are read in (time, event id) order, a page at a time, and written to the destination as a
replayed batch would be: ids it already holds are skipped, so running a copy twice, or again after
an interruption, stores each event once. The destination keeps its own rollups as it takes the
events (DuckDB in the same transaction, ClickHouse through its views), so they are rebuilt there
from the copied events, in time order. After each page the last key copied is written to a
checkpoint file; an interrupted copy started again with the same arguments resumes after it, and a
finished copy removes it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..events import COLUMNS, EVENT_SCHEMA
from ..exceptions import ConfigError
from . import Store

PAGE_ROWS = 100_000


@dataclass
class CopyResult:
    read: int  # events read from the source
    added: int  # events the destination did not have
    resumed_from: str | None  # the key an interrupted copy had reached, if it resumed





def _schema() -> pa.Schema:
    return EVENT_SCHEMA


def pages(
    store: Store, since: datetime | None, after: tuple[datetime, bytes] | None, rows: int
) -> Iterator[pa.Table]:
    """The store's events from ``since``, after the ``after`` key, in (ts, event_id) order."""
    read = getattr(store, "read_events", None)
    if read is None and hasattr(store, "reading"):
        read = _duckdb_reader(store)
    if read is None:
        raise ConfigError(f"{store.url}: botmeter cannot read events back from this store to copy them")
    while True:
        page = read(since=since, after=after, limit=rows)
        if page.num_rows == 0:
            return
        yield page
        if page.num_rows < rows:
            return
        last = page.slice(page.num_rows - 1)
        ts = last.column("ts")[0].as_py()
        event_id = last.column("event_id").chunks[-1].storage[-1].as_py()
        after = (ts, event_id)


def count(store: Store, since: datetime | None) -> int | None:
    """How many events a copy from ``since`` reads (None: the store cannot say cheaply)."""
    if since is None:
        return store.count()
    counter = getattr(store, "count_since", None)
    if counter is not None:
        return counter(since)
    if hasattr(store, "reading"):
        with store.reading() as con:  # type: ignore[attr-defined]
            return int(
                con.execute("SELECT count(*) FROM events WHERE ts >= ?", [_naive(since)]).fetchall()[0][0]
            )
    return None


def _duckdb_reader(store: Any) -> Callable[..., pa.Table]:
    columns = ", ".join(
        "CAST(properties AS VARCHAR) AS properties" if n == "properties" else n for n in COLUMNS
    )

    def read(since: datetime | None, after: tuple[datetime, bytes] | None, limit: int) -> pa.Table:
        where, params = ["true"], {}
        if since is not None:
            where.append("ts >= $since")
            params["since"] = _naive(since)
        if after is not None:
            where.append("(ts, event_id) > ($ts, $id)")
            params["ts"], params["id"] = _naive(after[0]), uuid.UUID(bytes=after[1])
        if not store.path.exists():
            return _schema().empty_table()
        with store.reading() as con:
            con.execute("SET arrow_lossless_conversion = true")  # event ids as UUIDs, not text
            sql = f"SELECT {columns} FROM events WHERE {' AND '.join(where)} ORDER BY ts, event_id"
            table = con.sql(f"{sql} LIMIT {int(limit)}", params=params).to_arrow_table()
        return table.cast(_schema())

    return read


def _naive(ts: datetime) -> datetime:
    from datetime import UTC

    return ts.astimezone(UTC).replace(tzinfo=None) if ts.tzinfo else ts


def checkpoint_path(source: Store, destination: Store, since: datetime | None) -> Path:
    """Where a copy between these two stores keeps the last key it copied."""
    key = hashlib.sha256(f"{source.url}\x00{destination.url}\x00{since}".encode()).hexdigest()[:16]
    spool = destination.default_spool_dir()
    return spool.with_name(f"{spool.name.removesuffix('.spool')}.copy-{key}.json")


def copy_events(
    source: Store,
    destination: Store,
    since: datetime | None = None,
    progress: Callable[[int], None] | None = None,
    page_rows: int = PAGE_ROWS,
) -> CopyResult:
    """Copies the events with ``ts >= since`` (all when None); ``progress`` is told each page's size."""
    checkpoint = checkpoint_path(source, destination, since)
    after: tuple[datetime, bytes] | None = None
    resumed = None
    if checkpoint.exists():
        state = json.loads(checkpoint.read_text())
        after = (datetime.fromisoformat(state["ts"]), bytes.fromhex(state["event_id"]))
        resumed = f"{state['ts']} {uuid.UUID(bytes=after[1])}"
    read = added = 0
    for page in pages(source, since, after, page_rows):
        added += destination.write(page, fresh=False, keep_open=True)
        read += page.num_rows
        last = page.slice(page.num_rows - 1)
        state = {
            "ts": last.column("ts")[0].as_py().isoformat(),
            "event_id": last.column("event_id").chunks[-1].storage[-1].as_py().hex(),
        }
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        tmp = checkpoint.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(checkpoint)
        if progress is not None:
            progress(page.num_rows)
    destination.release()
    with contextlib.suppress(FileNotFoundError):
        checkpoint.unlink()
    return CopyResult(read=read, added=added, resumed_from=resumed)
