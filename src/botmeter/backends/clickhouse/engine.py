"""The ClickHouse query engine: the planner (``analyse/plan.py``) chooses which table answers each
part of a query from what the ClickHouse store keeps (``KEEPS``), the ClickHouse dialect
(``dialect.py``) prints it, and ``SQLEngine`` runs it and shapes the ``Result``, as for DuckDB.

What ClickHouse keeps: the materialized views keep the hourly, per user-day, per conversation-day
cost and per day rollups and the conversations with an id; the writer keeps the sessions of
messages without one and the per-day latency percentiles after each insert (``upkeep.py``), as
the DuckDB store does, and the turns behind failed replies (``turns.py``; read from ``events``
while a fold is missing). Every figure is exact: distinct counts with
``uniqExact``, percentiles with ``quantilesExactInclusive``.

What is ClickHouse's own here: the read connection (the store's client; the embedded engine lets go
of its folder once idle for the store's ``idle_hold``, or at once when another process waits for
it), the read settings, and the explorer's table sizes and parts from ``system.parts``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from ...analyse.plan import Keeps
from ...events import HOURLY_KEYS, HOURLY_SUMS
from ..duckdb.engine import _EXPLORE_DIMS, _EXPLORE_IDS
from ..duckdb.rollups import LATENCY_DIMS, LATENCY_QUANTILES
from ..sql.engine import SQLEngine, aware
from .dialect import READ_SETTINGS, ClickHouseDialect


class ClickHouseEngine(SQLEngine):
    """Runs typed queries against a ``ClickHouseStore``; ``use_rollups=False`` reads only ``events``."""

    name = "clickhouse"
    printer = ClickHouseDialect()
    KEEPS = Keeps(
        hourly=frozenset(HOURLY_KEYS),
        hourly_sums=HOURLY_SUMS,
        hourly_latency=True,
        user_days=True,
        conversation_cost_days=True,
        conversation_days=True,
        conversation_totals=True,
        turns=True,
        latency_days=LATENCY_DIMS,
        latency_quantiles=LATENCY_QUANTILES,
    )

    # Independent queries of one session (a dashboard's panels) may run on this many threads, each
    # with a client of its own on the embedded engine (one client runs one query at a time): the
    # many small statements use one core each (BENCHMARKS.md).
    parallel_reads = 2

    @contextmanager
    def _connect(self) -> Iterator[None]:
        try:
            with self.store.client() as client:
                self._own(client)
                try:
                    yield
                finally:
                    self._disown(self.store.close_reader_client)
        finally:
            self.store.release()

    def _execute(self, sql: str, params: dict[str, Any]) -> tuple[list[str], list[tuple]]:
        try:
            client = self._here(self.store.reader_client)
            result = client.query(self.printer.finish(sql), parameters=params, settings=READ_SETTINGS)
        except Exception as exc:
            raise self.store._mapped(exc, "query") from exc
        rows = [tuple(_plain(v) for v in row) for row in result.result_rows]
        return list(result.column_names), rows

    def explore(self, top: int = 5) -> dict[str, Any]:
        with self.session():
            out = explore_sql(self, top)
        out["storage_bytes"] = sum(t["bytes_on_disk"] for t in out["parts"].values())
        out["bytes_per_event"] = out["storage_bytes"] / out["events"] if out["events"] else None
        return out

    def inventory(
        self, bot: str | None = None, start: datetime | None = None, end: datetime | None = None
    ) -> dict[str, Any]:
        """The store's contents in brief (``botmeter status``, the demo's totals): events, their
        span and kinds, the drops the writer recorded, the schema version; of one ``bot`` and
        from ``start`` to ``end`` when given."""
        p = self.printer.params()
        conds = ["1"]
        for name, op, value in (("bot", "=", bot), ("ts", ">=", start), ("ts", "<", end)):
            if value is not None:
                conds.append(f"{name} {op} {p.time(value) if isinstance(value, datetime) else p.add(value)}")
        where = " AND ".join(conds)
        with self.session():
            version = self.sql(
                "SELECT argMax(value, updated), count() FROM botmeter_meta WHERE key = 'schema_version'"
            )[0]
            total, first, last = self.sql(
                f"SELECT count(), min(ts), max(ts) FROM events WHERE {where}", p.values
            )[0]
            kinds = self.sql(
                f"SELECT kind, count() AS n FROM events WHERE {where} GROUP BY kind ORDER BY n DESC", p.values
            )
            dropped = self.sql(
                "SELECT toInt64(sum(coalesce(units, 0))) FROM events "
                f"WHERE {where} AND kind = 'system' AND name = 'dropped'",
                p.values,
            )[0][0]
        return {
            "schema_version": int(version[0]) if version[1] else None,
            "events": int(total),
            # Over no rows ClickHouse gives the type's zero, not null.
            "first_event": first if total else None,
            "last_event": last if total else None,
            "by_kind": {k: int(n) for k, n in kinds},
            "dropped_events_recorded": int(dropped or 0),
        }


def _plain(value: Any) -> Any:
    """Python values as the DuckDB engine gives them: null where ClickHouse says NaN (the
    percentiles of no values)."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def explore_sql(engine: ClickHouseEngine, top: int = 5) -> dict[str, Any]:
    """What the store holds, as the DuckDB explorer says it, with each table's rows, bytes and
    parts from ``system.parts``."""
    from ...events import COLUMNS

    total, first, last = engine.sql("SELECT count(), min(ts), max(ts) FROM events")[0]
    out: dict[str, Any] = {
        "events": int(total),
        "first_event": aware(first) if total else None,
        "last_event": aware(last) if total else None,
        "kinds": {
            k: int(n)
            for k, n in engine.sql("SELECT kind, count() AS n FROM events GROUP BY kind ORDER BY n DESC")
        },
        "events_per_day": [
            {"day": aware(d), "events": int(n)}
            for d, n in engine.sql(
                "SELECT toDateTime64(day, 6, 'UTC'), sum(events) FROM rollup_days GROUP BY day ORDER BY day"
            )
        ],
    }
    parts = engine.sql(
        "SELECT table, count() AS parts, sum(rows), sum(bytes_on_disk), sum(data_uncompressed_bytes) "
        "FROM system.parts WHERE active AND database = currentDatabase() "
        "AND (table = 'events' OR startsWith(table, 'rollup_')) GROUP BY table ORDER BY table"
    )
    out["parts"] = {
        name: {"parts": int(n), "rows": int(rows), "bytes_on_disk": int(size), "uncompressed_bytes": int(raw)}
        for name, n, rows, size, raw in parts
    }
    # As the DuckDB explorer's: rows per table (a rollup's rows before merges may repeat a key).
    out["tables"] = {name: info["rows"] for name, info in out["parts"].items()}
    if not total:
        out.update(fields={}, dimensions={}, identifiers={}, unpriced_models=[])
        return out
    counts = engine.sql("SELECT " + ", ".join(f"count({c})" for c in COLUMNS) + " FROM events")[0]
    out["fields"] = {
        c: {"filled": int(n), "fill_rate": n / total, "type": COLUMNS[c][0], "description": COLUMNS[c][1]}
        for c, n in zip(COLUMNS, counts, strict=True)
    }
    dims: dict[str, Any] = {}
    for col in _EXPLORE_DIMS:
        rows = engine.sql(
            f"SELECT toString({col}) AS v, count() AS n FROM events WHERE {col} IS NOT NULL "
            "GROUP BY v ORDER BY n DESC, v"
        )
        dims[col] = {"cardinality": len(rows), "top": [{"value": v, "events": int(n)} for v, n in rows[:top]]}
    out["dimensions"] = dims
    ids = engine.sql("SELECT " + ", ".join(f"uniqExact({c})" for c in _EXPLORE_IDS) + " FROM events")[0]
    out["identifiers"] = {c: {"cardinality": int(n)} for c, n in zip(_EXPLORE_IDS, ids, strict=True)}
    out["unpriced_models"] = [
        {"provider": p, "model": m, "calls": int(n)}
        for p, m, n in engine.sql(
            "SELECT provider, model, count() AS n FROM events WHERE kind = 'llm_call' AND cost_usd IS NULL "
            "GROUP BY provider, model ORDER BY n DESC"
        )
    ]
    return out
