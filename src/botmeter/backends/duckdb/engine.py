"""The DuckDB query engine: the planner chooses which table answers each part of a query (the
rollups kept in ``rollups.py`` where they answer exactly, ``events`` where they cannot), the DuckDB
dialect (``dialect.py``) prints it, and ``SQLEngine`` runs it and shapes the ``Result``. What is
DuckDB's own: the read connection, what the store keeps (``KEEPS``), and the explorer's table sizes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from ...analyse.plan import Keeps
from ...events import HOURLY_KEYS, HOURLY_SUMS
from ..sql.engine import SQLEngine, aware
from ..sql.printer import naive
from .dialect import DuckDBDialect
from .rollups import LATENCY_DIMS, LATENCY_QUANTILES
from .store import damaged_file


class DuckDBEngine(SQLEngine):
    """Runs typed queries against a ``DuckDBStore``; ``use_rollups=False`` reads only ``events``."""

    name = "duckdb"
    printer = DuckDBDialect()
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
    # on its own cursor of the session's connection: most use one core, and DuckDB runs them at once.
    parallel_reads = 2

    @contextmanager
    def _connect(self) -> Iterator[None]:
        with self.store.reading() as con:
            con.execute("SET arrow_lossless_conversion = true")
            self._own(con)
            try:
                yield
            finally:
                self._disown(lambda cursor: cursor.close())

    @staticmethod
    def _cursor(con: Any) -> Any:
        cursor = con.cursor()
        cursor.execute("SET arrow_lossless_conversion = true")
        return cursor

    def _execute(self, sql: str, params: dict[str, Any]) -> tuple[list[str], list[tuple]]:
        with damaged_file(self.store.path):
            cur = self._here(self._cursor).execute(sql, params)
            names = [d[0] for d in cur.description]
            return names, cur.fetchall()

    def inventory(
        self, bot: str | None = None, start: datetime | None = None, end: datetime | None = None
    ) -> dict[str, Any]:
        """The store's contents in brief (``botmeter status``, the demo's totals): events, their
        span and kinds, the drops the writer recorded, the schema version; of one ``bot`` and
        from ``start`` to ``end`` when given. A time beyond Python's datetime (a millisecond
        timestamp stored as seconds) comes as DuckDB's text, never a crash."""
        conds, params = ["TRUE"], {}
        for name, op, value in (("bot", "=", bot), ("ts", ">=", start), ("ts", "<", end)):
            if value is not None:
                key = f"p{len(params)}"
                conds.append(f"{name} {op} ${key}")
                params[key] = naive(value) if isinstance(value, datetime) else value
        where = " AND ".join(conds)
        with self.session():
            rows = self.sql("SELECT value FROM botmeter_meta WHERE key = 'schema_version'")
            total, first, last = self.sql(
                f"SELECT count(*), min(ts), max(ts) FROM events WHERE {where}", params
            )[0]
            kinds = self.sql(
                f"SELECT kind, count(*) FROM events WHERE {where} GROUP BY 1 ORDER BY 2 DESC", params
            )
            dropped = self.sql(
                "SELECT coalesce(sum(units), 0) FROM events "
                f"WHERE {where} AND kind = 'system' AND name = 'dropped'",
                params,
            )[0][0]
        return {
            "schema_version": int(rows[0][0]) if rows else None,
            "events": int(total),
            "first_event": first,
            "last_event": last,
            "by_kind": {k: int(n) for k, n in kinds},
            "dropped_events_recorded": int(dropped),
        }

    def explore(self, top: int = 5) -> dict[str, Any]:
        with self.session():
            out = explore_sql(self, top)
        size = getattr(self.store, "size_bytes", None)
        if size is not None:
            out["storage_bytes"] = size()
            out["bytes_per_event"] = out["storage_bytes"] / out["events"] if out["events"] else None
        return out


# Dimensions the explorer profiles (cardinality and top values); user and conversation ids are
# counted but their values are not listed.
_EXPLORE_DIMS = (
    "bot",
    "kind",
    "channel",
    "direction",
    "country",
    "provider",
    "model",
    "stage",
    "error_category",
    "severity",
    "error_type",
    "name",
    "unit",
    "release",
    "price_version",
)
_EXPLORE_IDS = ("user_id", "conversation_id", "fingerprint")


def explore_sql(engine: DuckDBEngine, top: int = 5) -> dict[str, Any]:
    """What the store holds: kinds, span, events per day, fill rates, dimensions, unpriced models."""
    from ...events import COLUMNS

    total, first, last = engine.sql("SELECT count(*), min(ts), max(ts) FROM events")[0]
    out: dict[str, Any] = {
        "events": int(total),
        "first_event": aware(first),
        "last_event": aware(last),
        "kinds": {
            k: int(n)
            for k, n in engine.sql("SELECT kind, count(*) AS n FROM events GROUP BY 1 ORDER BY n DESC")
        },
        "events_per_day": [
            {"day": aware(d), "events": int(n)}
            for d, n in engine.sql("SELECT CAST(day AS TIMESTAMP), events FROM rollup_days ORDER BY day")
        ],
    }
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
            f"SELECT {col}, count(*) AS n FROM events WHERE {col} IS NOT NULL GROUP BY 1 ORDER BY n DESC, 1"
        )
        dims[col] = {"cardinality": len(rows), "top": [{"value": v, "events": int(n)} for v, n in rows[:top]]}
    out["dimensions"] = dims
    ids = engine.sql("SELECT " + ", ".join(f"count(DISTINCT {c})" for c in _EXPLORE_IDS) + " FROM events")[0]
    out["identifiers"] = {c: {"cardinality": int(n)} for c, n in zip(_EXPLORE_IDS, ids, strict=True)}
    out["unpriced_models"] = [
        {"provider": p, "model": m, "calls": int(n)}
        for p, m, n in engine.sql(
            "SELECT provider, model, count(*) AS n FROM events WHERE kind = 'llm_call' AND cost_usd IS NULL "
            "GROUP BY ALL ORDER BY n DESC"
        )
    ]
    tables = {
        name: int(n)
        for name, n in engine.sql(
            "SELECT table_name, estimated_size FROM duckdb_tables() WHERE table_name LIKE 'rollup_%' "
            "OR table_name = 'events' ORDER BY table_name"
        )
    }
    out["tables"] = tables
    return out
