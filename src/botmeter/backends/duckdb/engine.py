"""The DuckDB dialect: compiles a checked ``Query`` to SQL over the rollups where they can answer
exactly, and over ``events`` where they cannot (a per-user breakdown, exact percentiles, hourly
distinct counts, a window edge inside a day, another session gap).

Identifiers in the SQL come from the catalogue and from ``HOURLY_KEYS``; every value is a bound
parameter. Each function returns rows as dicts (``bucket`` first), which ``run`` fills so that
empty buckets appear.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from ...analyse.catalogue import DIMENSIONS, PERCENTILES, Metric
from ...analyse.query import Query, Result, fill_buckets, ratio_result, top_groups
from .rollups import (
    HOURLY_KEYS,
    LATENCY_DIMS,
    LATENCY_QUANTILES,
    TURN_EVENT,
    TURN_EVENT_WHERE,
    TURNS_FROM_EVENTS,
)
from .store import damaged_file

_SUM_COLUMNS = {"cost_usd", "input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens", "units"}
_USER_TABLE_DIMS = {"bot"}


class Params:
    """Collects bound values; ``add`` returns the placeholder."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def add(self, value: Any) -> str:
        name = f"p{len(self.values)}"
        self.values[name] = value
        return f"${name}"


def _naive(ts: datetime) -> datetime:
    return ts.astimezone(UTC).replace(tzinfo=None)


def _aware(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value


def _ceil_hour(ts: datetime) -> datetime:
    floor = ts.replace(minute=0, second=0, microsecond=0)
    return floor if floor == ts else floor + timedelta(hours=1)


class DuckDBEngine:
    """Runs typed queries against a ``DuckDBStore``; ``use_rollups=False`` reads only ``events``."""

    name = "duckdb"

    def __init__(self, store: Any, *, use_rollups: bool = True) -> None:
        self.store = store
        self.use_rollups = use_rollups
        self._con: Any = None

    @contextmanager
    def session(self) -> Iterator[DuckDBEngine]:
        """One read connection for several queries (a dashboard, a summary)."""
        if self._con is not None:
            yield self
            return
        with self.store.reading() as con:
            con.execute("SET arrow_lossless_conversion = true")
            self._con = con
            # Facts about the store that do not change while the file is open for reading.
            self._facts: dict[Any, Any] = {}
            try:
                yield self
            finally:
                self._con = None
                self._facts = {}

    def sql(self, text: str, params: dict[str, Any] | None = None) -> list[tuple]:
        """Runs read-only SQL in the current session (or a short one)."""
        if self._con is None:
            with self.session():
                return self.sql(text, params)
        with damaged_file(self.store.path):
            return self._con.execute(text, params or {}).fetchall()

    def _dicts(self, text: str, params: Params) -> list[dict[str, Any]]:
        if self._con is None:
            with self.session():
                return self._dicts(text, params)
        with damaged_file(self.store.path):
            cur = self._con.execute(text, params.values)
            names = [d[0] for d in cur.description]
            rows = cur.fetchall()
        return [{n: _aware(v) for n, v in zip(names, row, strict=True)} for row in rows]

    # -- entry ----------------------------------------------------------------------------------

    def run(self, query: Query) -> Result:
        with self.session():
            metric = query.definition
            if metric.aggregation == "ratio":
                return self._ratio(query, metric)
            if metric.aggregation == "retention":
                return self._retention(query)
            runner = {
                "count": self._additive,
                "sum": self._additive,
                "distribution": self._distribution,
                "active_users": self._users,
                "new_users": self._users,
                "returning_users": self._users,
                "conversations": self._conversations,
                "per_conversation": self._per_conversation,
                "failed_replies": self._failed_replies,
            }[metric.aggregation]
            rows, source = runner(query, metric)
            notes = []
            if metric.aggregation in ("conversations", "per_conversation") and self._splits_sessions(query):
                notes.append(_gap_note(query))
            return Result(
                query, top_groups(query, fill_buckets(query, rows, _empty_for(metric))), source, notes
            )

    # -- pieces of SQL --------------------------------------------------------------------------

    def _bucket(self, q: Query, column: str, p: Params) -> str:
        if q.interval is None:
            return f"CAST({p.add(_naive(q.start))} AS TIMESTAMP)"
        return f"date_trunc('{q.interval}', CAST({column} AS TIMESTAMP))"

    @staticmethod
    def _dims(q: Query, rollup: bool) -> str:
        cols = []
        for dim in q.by:
            col = DIMENSIONS[dim]
            cols.append(f"nullif({col}, '') AS {dim}" if rollup else f"{col} AS {dim}")
        return "".join(f", {c}" for c in cols)

    @staticmethod
    def _conditions(q: Query, metric: Metric, p: Params, *, rollup: bool = False) -> list[str]:
        conds = []
        if metric.kinds:
            conds.append(f"kind IN ({', '.join(p.add(k) for k in metric.kinds)})")
        for dim, value in metric.where:
            if value is None:
                if not rollup:  # the rollup counts unpriced events through its own measure
                    conds.append(f"{dim} IS NULL")
                continue
            col = DIMENSIONS[dim]
            if value.endswith("*"):
                conds.append(f"starts_with({col}, {p.add(value[:-1])})")
            else:
                conds.append(f"{col} = {p.add(value)}")
        for dim, values in q.filters:
            conds.append(f"{DIMENSIONS[dim]} IN ({', '.join(p.add(v) for v in values)})")
        return conds

    @staticmethod
    def _in_hourly(q: Query, metric: Metric) -> bool:
        names = set(q.by) | {d for d, _ in q.filters} | {d for d, v in metric.where if v is not None}
        return all(DIMENSIONS[d] in HOURLY_KEYS for d in names)

    def _split_days(
        self, start: datetime, end: datetime
    ) -> tuple[datetime, datetime, list[tuple[datetime, datetime]]]:
        """Whole days [lo, hi) the day rollups answer exactly, and the partial edges to read from events.

        An edge day counts as whole when all of its events lie inside the window (a window ending
        now, say); otherwise its part inside the window is read from ``events``.
        """
        day = timedelta(days=1)
        lo = start.replace(hour=0, minute=0, second=0, microsecond=0)
        end_floor = end.replace(hour=0, minute=0, second=0, microsecond=0)
        hi = end_floor if end == end_floor else end_floor + day
        edges: list[tuple[datetime, datetime]] = []
        if start != lo and not self._day_within(lo, start, end):
            edges.append((start, min(lo + day, end)))
            lo += day
        if end != end_floor and end_floor >= lo and not self._day_within(end_floor, start, end):
            edges.append((max(end_floor, start), end))
            hi = end_floor
        return lo, max(lo, hi), edges

    @staticmethod
    def _whole_days(
        start: datetime, end: datetime
    ) -> tuple[datetime, datetime, list[tuple[datetime, datetime]]]:
        """Whole days inside [start, end) and the partial edges around them (by the clock alone)."""
        day = timedelta(days=1)
        lo = start.replace(hour=0, minute=0, second=0, microsecond=0)
        lo = lo if lo == start else lo + day
        hi = end.replace(hour=0, minute=0, second=0, microsecond=0)
        if lo >= hi:
            return lo, lo, [(start, end)]
        return lo, hi, [(start, lo), (hi, end)]

    def _fact(self, key: Any, compute: Any) -> Any:
        facts = getattr(self, "_facts", None)
        if facts is None or self._con is None:
            return compute()
        if key not in facts:
            facts[key] = compute()
        return facts[key]

    def _day_within(self, day: datetime, start: datetime, end: datetime) -> bool:
        return self._fact(("day_within", day, start, end), lambda: self._day_within_now(day, start, end))

    def _day_within_now(self, day: datetime, start: datetime, end: datetime) -> bool:
        rows = self.sql(
            "SELECT count(*) FROM rollup_days WHERE day = CAST($d AS DATE) AND (first_ts < $s OR "
            "last_ts >= $e)",
            {"d": _naive(day), "s": _naive(start), "e": _naive(end)},
        )
        return not rows[0][0]

    def _splits_sessions(self, q: Query) -> bool:
        """Whether messages without a conversation id (split into sessions) fall in the window."""
        p = Params()
        if self.use_rollups:
            sql = (
                "SELECT count(*) FROM rollup_hourly WHERE kind = 'message' AND no_conversation_events > 0 "
                f"AND hour >= date_trunc('hour', CAST({p.add(_naive(q.start))} AS TIMESTAMP)) "
                f"AND hour < {p.add(_naive(q.end))}"
            )
        else:
            sql = (
                "SELECT count(*) FROM events WHERE kind = 'message' AND conversation_id IS NULL "
                f"AND user_id IS NOT NULL AND ts >= {p.add(_naive(q.start))} AND ts < {p.add(_naive(q.end))}"
            )
        return bool(self.sql(sql, p.values)[0][0])

    def _one_bot(self) -> bool:
        return self._fact(
            "one_bot", lambda: self.sql("SELECT count(DISTINCT bot) FROM rollup_hourly")[0][0] <= 1
        )

    def _stored_gap(self) -> int:
        rows = self._fact(
            "gap", lambda: self.sql("SELECT value FROM botmeter_meta WHERE key = 'session_gap_s'")
        )
        return int(rows[0][0]) if rows else -1

    # -- count, sum -----------------------------------------------------------------------------

    def _additive(self, q: Query, metric: Metric) -> tuple[list[dict[str, Any]], str]:
        stat = q.stats[0]
        p = Params()
        unpriced = any(v is None for _, v in metric.where)
        raw_measure = "count(*)" if metric.aggregation == "count" else f"sum({metric.column})"
        # Cost groups carry how many of their events were priced and how many LLM calls were not.
        # Per user and per conversation (top lists) they are not told apart: the day rollups of
        # those do not know.
        costs = metric.column == "cost_usd" and not {"user", "conversation"} & set(q.by)
        no_pricing = ", 1 AS priced, 0 AS unpriced" if costs else ""
        hourly_pricing = (
            ", sum(priced) AS priced, sum(events - priced) FILTER (WHERE kind = 'llm_call') AS unpriced"
            if costs
            else ""
        )
        events_pricing = (
            ", count(cost_usd) AS priced, count(*) FILTER (WHERE kind = 'llm_call' AND cost_usd IS NULL) "
            "AS unpriced"
            if costs
            else ""
        )
        hs, he = _ceil_hour(q.start), q.end.replace(minute=0, second=0, microsecond=0)
        parts = []
        source = "events"
        names = set(q.by) | {d for d, _ in q.filters}
        # Cost per user or per conversation id: whole days from their per-day rollups, the events
        # without one from the hourly rollup, partial days from the events.
        keyed = next((k for k in ("user", "conversation") if k in q.by), None)
        per_key = (
            self.use_rollups
            and keyed is not None
            and metric.column == "cost_usd"
            and not metric.kinds
            and not metric.where
            and names <= {keyed, "bot"}
            and q.interval != "hour"
        )
        if per_key:
            table, column, none = {
                "user": ("rollup_users", "user_id", "no_user"),
                "conversation": ("rollup_conversation_costs", "conversation_id", "no_conversation"),
            }[keyed]
            lo, hi, edges = self._whole_days(q.start, q.end)
            conds = [c for c in self._conditions(q, metric, p) if c.startswith("bot ")]
            conds.append(
                f"day >= CAST({p.add(_naive(lo))} AS DATE) AND day < CAST({p.add(_naive(hi))} AS DATE)"
            )
            dims = "".join(f", nullif(bot, '') AS {d}" if d == "bot" else f", {column} AS {d}" for d in q.by)
            parts.append(
                f"SELECT {self._bucket(q, 'day', p)} AS bucket{dims}, sum(cost_usd) AS v{no_pricing} "
                f"FROM {table} WHERE {' AND '.join(conds)} GROUP BY ALL"
            )
            nones = [c for c in self._conditions(q, metric, p, rollup=True) if c.startswith("bot ")]
            nones.append(f"hour >= {p.add(_naive(lo))} AND hour < {p.add(_naive(hi))}")
            none_dims = "".join(f", nullif(bot, '') AS {d}" if d == "bot" else f", NULL AS {d}" for d in q.by)
            parts.append(
                f"SELECT {self._bucket(q, 'hour', p)} AS bucket{none_dims}, sum({none}_cost) AS v"
                f"{no_pricing} FROM rollup_hourly WHERE {' AND '.join(nones)} GROUP BY ALL "
                f"HAVING sum({none}_events) > 0"
            )
            source = "rollups"
        elif (
            self.use_rollups
            and self._in_hourly(q, metric)
            and hs < he
            and (metric.aggregation == "count" or metric.column in _SUM_COLUMNS)
        ):
            measure = (
                "sum(events - priced)"
                if unpriced
                else ("sum(events)" if metric.aggregation == "count" else f"sum({metric.column})")
            )
            conds = self._conditions(q, metric, p, rollup=True)
            if unpriced:  # a group with only priced calls has no unpriced calls to show
                conds.append("events > priced")
            conds.append(f"hour >= {p.add(_naive(hs))} AND hour < {p.add(_naive(he))}")
            parts.append(
                f"SELECT {self._bucket(q, 'hour', p)} AS bucket{self._dims(q, True)}, {measure} AS v"
                f"{hourly_pricing} "
                f"FROM rollup_hourly WHERE {' AND '.join(conds)} GROUP BY ALL"
            )
            edges = [(q.start, hs), (he, q.end)]
            source = "rollups"
        else:
            edges = [(q.start, q.end)]
        for lo, hi in edges:
            if lo >= hi:
                continue
            conds = self._conditions(q, metric, p)
            conds.append(f"ts >= {p.add(_naive(lo))} AND ts < {p.add(_naive(hi))}")
            parts.append(
                f"SELECT {self._bucket(q, 'ts', p)} AS bucket{self._dims(q, False)}, {raw_measure} AS v"
                f"{events_pricing} "
                f"FROM events WHERE {' AND '.join(conds)} GROUP BY ALL"
            )
        dims = "".join(f", {d}" for d in q.by)
        total = "sum(v)"
        if costs:
            # A group made only of LLM calls without a price (and no priced event) has an unknown
            # cost, not a zero one.
            total = "CASE WHEN sum(priced) = 0 AND sum(unpriced) > 0 THEN NULL ELSE coalesce(sum(v), 0) END"
        sql = f"SELECT bucket{dims}, {total} AS {stat} FROM ({' UNION ALL '.join(parts)}) GROUP BY ALL"
        if q.limit and q.interval is None:
            # The top groups only: a breakdown by user or conversation can have millions.
            sql += f" ORDER BY {stat} DESC NULLS LAST{dims} LIMIT {int(q.limit)}"
        rows = self._dicts(sql, p)
        for row in rows:
            value = row[stat]
            if value is None and costs:
                continue  # unknown: stays None
            row[stat] = (
                0 if value is None else (int(value) if metric.aggregation == "count" else float(value))
            )
            if metric.aggregation == "sum" and metric.column != "cost_usd" and metric.column != "units":
                row[stat] = int(row[stat])
        return rows, source

    # -- latency and other distributions ----------------------------------------------------------

    def _distribution(self, q: Query, metric: Metric) -> tuple[list[dict[str, Any]], str]:
        col = metric.column
        p = Params()
        cheap = set(q.stats) <= {"avg", "max", "count"}
        hs, he = _ceil_hour(q.start), q.end.replace(minute=0, second=0, microsecond=0)
        dims = "".join(f", {d}" for d in q.by)
        if self.use_rollups and cheap and col == "latency_ms" and self._in_hourly(q, metric) and hs < he:
            conds = self._conditions(q, metric, p, rollup=True)
            conds.append("latency_n > 0")  # as over events: only events with a latency make a group
            conds.append(f"hour >= {p.add(_naive(hs))} AND hour < {p.add(_naive(he))}")
            parts = [
                f"SELECT {self._bucket(q, 'hour', p)} AS bucket{self._dims(q, True)}, sum(latency_n) AS n, "
                f"sum(latency_sum) AS s, max(latency_max) AS mx FROM rollup_hourly "
                f"WHERE {' AND '.join(conds)} GROUP BY ALL"
            ]
            for lo, hi in ((q.start, hs), (he, q.end)):
                if lo < hi:
                    conds = self._conditions(q, metric, p)
                    # As in the rollup: only events with a latency make a group.
                    conds.append(f"{col} IS NOT NULL")
                    conds.append(f"ts >= {p.add(_naive(lo))} AND ts < {p.add(_naive(hi))}")
                    parts.append(
                        f"SELECT {self._bucket(q, 'ts', p)} AS bucket{self._dims(q, False)}, "
                        f"count({col}) AS n, "
                        f"sum({col}) AS s, max({col}) AS mx FROM events WHERE {' AND '.join(conds)} "
                        "GROUP BY ALL"
                    )
            sql = (
                f"SELECT bucket{dims}, sum(n) AS count, sum(s) / nullif(sum(n), 0) AS avg, max(mx) AS max "
                f"FROM ({' UNION ALL '.join(parts)}) GROUP BY ALL"
            )
            rows = self._dicts(sql, p)
            source = "rollups"
        else:
            rows, source = [], "events"
            ranges = [(q.start, q.end)]
            cached = self._latency_days(q, metric) if self.use_rollups else None
            if cached is not None:
                rows, ranges = cached
                source = "rollups"
            rows += self._distribution_events(q, metric, ranges) if ranges else []
        return _summary_rows(rows, q.stats), source

    def _latency_days(
        self, q: Query, metric: Metric
    ) -> tuple[list[dict[str, Any]], list[tuple[datetime, datetime]]] | None:
        """Daily latency figures from the per-day percentiles of complete days, and the time ranges
        of the window they do not cover (partial days, today, days with late events)."""
        kind = metric.kinds[0] if len(metric.kinds) == 1 else ""
        dim = q.by[0] if q.by else ""
        value_of: str | None = None
        # One stage's figures (the reply latency, or a filter on one stage): that stage's row of
        # the per-stage figures.
        stages = [values for d, values in q.filters if d == "stage"]
        if metric.where and not q.by and len(metric.where) == 1 and metric.where[0][0] == "stage":
            dim, value_of = "stage", metric.where[0][1]
        elif not metric.where and not q.by and len(stages) == 1 and len(stages[0]) == 1:
            dim, value_of = "stage", stages[0][0]
        bots = [v for d, values in q.filters for v in values if d == "bot"]
        if (
            q.interval != "day"
            or metric.column != "latency_ms"
            or kind not in LATENCY_DIMS
            or (metric.where and value_of is None)
            or (value_of is not None and value_of.endswith("*"))
            or len(q.by) > 1
            or dim not in LATENCY_DIMS[kind]
            or any(d not in ("bot", "stage") for d, _ in q.filters)
            or (stages and (value_of is None or metric.where))
            or len(bots) > 1
            or (not bots and not self._one_bot())
        ):
            return None
        day = timedelta(days=1)
        lo, hi, _ = self._whole_days(q.start, q.end)
        if lo >= hi:
            return None
        p = Params()
        bot_cond = f" AND c.bot = {p.add(bots[0])}" if bots else ""
        # A day's percentiles are current when they cover as many events as the hourly rollup.
        fresh_sql = (
            "SELECT c.day FROM rollup_latency_days AS c JOIN (SELECT CAST(hour AS DATE) AS d, bot, "
            f"sum(latency_n) AS n FROM rollup_hourly WHERE kind = {p.add(kind)} "
            f"AND hour >= {p.add(_naive(lo))} AND hour < {p.add(_naive(hi))} GROUP BY ALL) AS h "
            f"ON h.d = c.day AND h.bot = c.bot WHERE c.dim = {p.add(kind + ':')} AND c.n = h.n{bot_cond}"
        )
        fresh = sorted(_aware(datetime(d.year, d.month, d.day)) for (d,) in self.sql(fresh_sql, p.values))
        if not fresh:
            return None
        p = Params()
        picks = ", ".join(
            f"q[{LATENCY_QUANTILES.index(PERCENTILES[s]) + 1}] AS {s}" for s in q.stats if s in PERCENTILES
        )
        value = f", nullif(value, '') AS {dim}" if dim and value_of is None else ""
        rows = self._dicts(
            f"SELECT CAST(day AS TIMESTAMP) AS bucket{value}, n AS count, latency_sum / n AS avg, "
            f"latency_max AS max{', ' + picks if picks else ''} FROM rollup_latency_days "
            f"WHERE dim = {p.add(f'{kind}:{dim}')} "
            f"AND day IN (SELECT unnest({p.add([f.date() for f in fresh])}::DATE[]))"
            + (f" AND value = {p.add(value_of)}" if value_of is not None else "")
            + (f" AND bot = {p.add(bots[0])}" if bots else ""),
            p,
        )
        ranges: list[tuple[datetime, datetime]] = []
        cursor = q.start
        for d in fresh:
            if cursor < d:
                ranges.append((cursor, d))
            cursor = max(cursor, d + day)
        if cursor < q.end:
            ranges.append((cursor, q.end))
        return rows, ranges

    def _distribution_events(
        self, q: Query, metric: Metric, ranges: list[tuple[datetime, datetime]]
    ) -> list[dict[str, Any]]:
        col = metric.column
        p = Params()
        conds = self._conditions(q, metric, p)
        conds.append(f"{col} IS NOT NULL")
        conds.append(
            "("
            + " OR ".join(f"(ts >= {p.add(_naive(a))} AND ts < {p.add(_naive(b))})" for a, b in ranges)
            + ")"
        )
        sql = (
            f"SELECT {self._bucket(q, 'ts', p)} AS bucket{self._dims(q, False)}, "
            f"{_summary_columns(col, q.stats)} FROM events WHERE {' AND '.join(conds)} GROUP BY ALL"
        )
        return self._dicts(sql, p)

    # -- users ------------------------------------------------------------------------------------

    def _user_rollup_ok(self, q: Query) -> bool:
        names = set(q.by) | {d for d, _ in q.filters}
        return self.use_rollups and q.interval != "hour" and names <= _USER_TABLE_DIMS

    def _users(self, q: Query, metric: Metric) -> tuple[list[dict[str, Any]], str]:
        stat = q.stats[0]
        p = Params()
        agg = metric.aggregation
        rollup = self._user_rollup_ok(q)
        lo, hi, edges = self._split_days(q.start, q.end) if rollup else (q.start, q.start, [])
        dims_out = self._dims(q, True)
        bot_filter = [c for c in self._conditions(q, metric, p) if c.startswith("bot ")] if rollup else []
        if not rollup:
            p = Params()
        inbound = "kind = 'message' AND direction = 'in' AND user_id IS NOT NULL"

        def active_src() -> str:
            if rollup:
                # Whole days from the rollup, partial edge days from the events: a union of ids,
                # so a user seen in both still counts once.
                parts = [
                    f"SELECT CAST(day AS TIMESTAMP) AS t, bot, user_id FROM rollup_users WHERE inbound > 0 "
                    f"AND day >= CAST({p.add(_naive(lo))} AS DATE) AND day < "
                    f"CAST({p.add(_naive(hi))} AS DATE)" + "".join(f" AND {c}" for c in bot_filter)
                ]
                for e_lo, e_hi in edges:
                    parts.append(
                        f"SELECT ts AS t, coalesce(bot, '') AS bot, user_id FROM events WHERE {inbound} "
                        f"AND ts >= {p.add(_naive(e_lo))} AND ts < {p.add(_naive(e_hi))}"
                        + "".join(f" AND {c}" for c in bot_filter)
                    )
                return " UNION ALL ".join(parts)
            extra = "".join(f", {DIMENSIONS[d]}" for d in q.by if d != "bot")
            return (
                f"SELECT ts AS t, coalesce(bot, '') AS bot, user_id{extra} FROM events WHERE {inbound} "
                f"AND ts >= {p.add(_naive(q.start))} AND ts < {p.add(_naive(q.end))}"
                + "".join(f" AND {c}" for c in self._conditions(q, metric, p))
            )

        def firsts_src() -> str:
            if rollup:
                return (
                    "SELECT bot, user_id, min(first_in) AS first_in FROM rollup_users WHERE inbound > 0"
                    + "".join(f" AND {c}" for c in bot_filter)
                    + " GROUP BY ALL"
                )
            return (
                f"SELECT coalesce(bot, '') AS bot, user_id, min(ts) AS first_in FROM events WHERE {inbound}"
                + "".join(f" AND {c}" for c in self._conditions(q, metric, p))
                + " GROUP BY ALL"
            )

        dims = "".join(f", {d}" for d in q.by)
        if (
            agg == "active_users"
            and rollup
            and not edges
            and q.interval == "day"
            and ("bot" in q.by or self._one_bot())
        ):
            # A day's rows are distinct users of one bot already: count rows, no hash set needed.
            sql = (
                f"SELECT {self._bucket(q, 't', p)} AS bucket{dims_out}, count(*) AS {stat} "
                f"FROM ({active_src()}) GROUP BY ALL"
            )
        elif agg == "active_users":
            sql = (
                f"SELECT {self._bucket(q, 't', p)} AS bucket{dims_out}, count(DISTINCT user_id) AS {stat} "
                f"FROM ({active_src()}) GROUP BY ALL"
            )
        elif agg == "new_users":
            # First inbound message ever, per user (per bot when broken down by bot).
            key = "bot, user_id" if "bot" in q.by else "user_id"
            sql = (
                f"SELECT {self._bucket(q, 'first_in', p)} AS bucket{dims_out}, count(*) AS {stat} FROM ("
                f"SELECT {key}, min(first_in) AS first_in FROM ({firsts_src()}) GROUP BY ALL) "
                f"WHERE first_in >= {p.add(_naive(q.start))} AND first_in < {p.add(_naive(q.end))} "
                "GROUP BY ALL"
            )
        else:  # returning: active in the bucket, first seen before the bucket (or window) began
            key = ("bot", "user_id") if "bot" in q.by else ("user_id",)
            start = p.add(_naive(q.start))
            sql = (
                f"WITH firsts AS (SELECT {', '.join(key)}, min(first_in) AS first_in FROM "
                f"({firsts_src()}) GROUP BY ALL), "
                f"active AS (SELECT DISTINCT {self._bucket(q, 't', p)} AS bucket{dims_out}, user_id "
                f"FROM ({active_src()})) "
                f"SELECT bucket{dims}, count(*) AS {stat} FROM active JOIN firsts USING ({', '.join(key)}) "
                f"WHERE firsts.first_in < greatest(bucket, {start}) GROUP BY ALL"
            )
        rows = self._dicts(sql, p)
        for row in rows:
            row[stat] = int(row[stat] or 0)
        return rows, "rollups" if rollup else "events"

    # -- conversations ------------------------------------------------------------------------------

    def _conversation_rollup_ok(self, q: Query, hourly_ok: bool) -> bool:
        names = set(q.by) | {d for d, _ in q.filters}
        return (
            self.use_rollups
            and names <= _USER_TABLE_DIMS
            and self._stored_gap() == q.session_gap_s
            and (hourly_ok or q.interval != "hour")
        )

    def _raw_conversation_keys(self, q: Query, p: Params, window: bool, extra: Iterable[str] = ()) -> str:
        """Messages with their conversation key: the bot's id, or a session number per user."""
        gap = f"INTERVAL {int(q.session_gap_s)} SECOND"
        conds = ["kind = 'message'", "(conversation_id IS NOT NULL OR user_id IS NOT NULL)"]
        conds += [c for c in self._conditions(q, q.definition, p) if not c.startswith("kind ")]
        if window:
            conds.append(f"ts >= {p.add(_naive(q.start))} AND ts < {p.add(_naive(q.end))}")
        cols = ", ".join(["coalesce(bot, '') AS bot", "user_id", "conversation_id", "ts", *extra])
        return f"""
            SELECT *, CASE WHEN conversation_id IS NOT NULL THEN 'c:' || conversation_id
                           ELSE 's:' || user_id || ':' || CAST(sum(opens) OVER (
                               PARTITION BY bot, user_id, conversation_id IS NULL ORDER BY ts
                               ROWS UNBOUNDED PRECEDING) AS VARCHAR) END AS conversation
            FROM (SELECT *, CASE WHEN ts - lag(ts) OVER (
                                     PARTITION BY bot, user_id, conversation_id IS NULL ORDER BY ts) <= {gap}
                                 THEN 0 ELSE 1 END AS opens
                  FROM (SELECT {cols} FROM events WHERE {" AND ".join(conds)}))
        """

    def _conversations(self, q: Query, metric: Metric) -> tuple[list[dict[str, Any]], str]:
        stat = q.stats[0]
        p = Params()
        if self._conversation_rollup_ok(q, hourly_ok=False):
            lo, hi, edges = self._split_days(q.start, q.end)
            bots = [c for c in self._conditions(q, metric, p) if c.startswith("bot ")]
            parts = [
                "SELECT CAST(day AS TIMESTAMP) AS t, bot, conversation FROM rollup_conversations "
                f"WHERE day >= CAST({p.add(_naive(lo))} AS DATE) AND day < CAST({p.add(_naive(hi))} AS DATE)"
                + "".join(f" AND {c}" for c in bots)
            ]
            for e_lo, e_hi in edges:
                # A partial day's messages get the key of the stored conversation or session holding
                # them (a user's sessions do not overlap), so keys match the whole days'.
                parts.append(
                    "SELECT m.ts AS t, m.bot, coalesce('c:' || m.conversation_id, s.conversation) "
                    "AS conversation "
                    "FROM (SELECT ts, coalesce(bot, '') AS bot, user_id, conversation_id FROM events "
                    f"WHERE kind = 'message' AND ts >= {p.add(_naive(e_lo))} AND ts < {p.add(_naive(e_hi))}"
                    + "".join(f" AND {c}" for c in bots)
                    + ") AS m LEFT JOIN rollup_conversation_totals AS s ON m.conversation_id IS NULL "
                    "AND starts_with(s.conversation, 's:') AND s.bot = m.bot AND s.user_id = m.user_id "
                    "AND m.ts BETWEEN s.first_ts AND s.last_ts "
                    "WHERE m.conversation_id IS NOT NULL OR m.user_id IS NOT NULL"
                )
            # Keys are unique within a bot, and a day's rows are distinct conversations already.
            counted = "count(*)" if q.interval == "day" and not edges else "count(DISTINCT conversation)"
            sql = (
                f"SELECT bucket{''.join(f', {d}' for d in q.by)}, sum(n) AS {stat} FROM ("
                f"SELECT {self._bucket(q, 't', p)} AS bucket, nullif(bot, '') AS bot, {counted} AS n "
                f"FROM ({' UNION ALL '.join(parts)}) GROUP BY ALL) GROUP BY ALL"
            )
            source = "rollups"
        else:
            extra = [DIMENSIONS[d] for d in q.by if d != "bot"]
            keys = self._raw_conversation_keys(q, p, window=True, extra=extra)
            sql = (
                f"SELECT {self._bucket(q, 'ts', p)} AS bucket{self._dims(q, True)}, "
                f"count(DISTINCT bot || chr(0) || conversation) AS {stat} FROM ({keys}) GROUP BY ALL"
            )
            source = "events"
        rows = self._dicts(sql, p)
        for row in rows:
            row[stat] = int(row[stat] or 0)
            if "bot" in row and row["bot"] == "":
                row["bot"] = None
        return rows, source

    def _per_conversation(self, q: Query, metric: Metric) -> tuple[list[dict[str, Any]], str]:
        p = Params()
        measure = "n" if metric.column == "messages" else "epoch(l - f)"
        if self._conversation_rollup_ok(q, hourly_ok=True):
            conds = [c for c in self._conditions(q, metric, p) if c.startswith("bot ")]
            start, end = p.add(_naive(q.start)), p.add(_naive(q.end))
            where = f" WHERE {' AND '.join(conds)}" if conds else ""
            src = (
                "SELECT bot, conversation, first_ts AS f, last_ts AS l, messages AS n "
                f"FROM rollup_conversation_totals{where}"
            )
            source = "rollups"
        else:
            keys = self._raw_conversation_keys(q, p, window=False)
            src = (
                "SELECT bot, conversation, min(ts) AS f, max(ts) AS l, count(*) AS n "
                f"FROM ({keys}) GROUP BY ALL"
            )
            source = "events"
            start, end = p.add(_naive(q.start)), p.add(_naive(q.end))
        dims_out = "".join(", nullif(bot, '') AS bot" for d in q.by if d == "bot")
        sql = (
            f"SELECT {self._bucket(q, 'f', p)} AS bucket{dims_out}, {_summary_columns('x', q.stats)} "
            f"FROM (SELECT *, {measure} AS x FROM ({src})) WHERE f >= {start} AND f < {end} GROUP BY ALL"
        )
        return _summary_rows(self._dicts(sql, p), q.stats), source

    # -- failed replies ---------------------------------------------------------------------------

    def _failed_replies(self, q: Query, metric: Metric) -> tuple[list[dict[str, Any]], str]:
        """Inbound messages in the window whose turn holds an error or a reply marked failed and no
        good reply (see the catalogue): from the closed turns nobody answered and each conversation's
        latest turn (stored apart, so none counts twice), or by walking the events."""
        stat = q.stats[0]
        p = Params()
        start, end = p.add(_naive(q.start)), p.add(_naive(q.end))
        conds = [c for c in self._conditions(q, metric, p) if not c.startswith("kind ")]
        dims_out = "".join(", nullif(bot, '') AS bot" if d == "bot" else f", {d}" for d in q.by)
        where = "".join(f" AND {c}" for c in conds)
        if self.use_rollups:
            sql = (
                f"SELECT {self._bucket(q, 'ts', p)} AS bucket{dims_out}, count(*) AS {stat} "
                "FROM (SELECT bot, ts, channel FROM rollup_turns WHERE bad UNION ALL "
                "SELECT bot, ts, channel FROM rollup_turn_heads WHERE bad AND NOT answered) "
                f"WHERE ts >= {start} AND ts < {end}{where} "
                "GROUP BY ALL"
            )
            source = "rollups"
        else:
            # Only conversations with an error or a reply marked failed since the start are walked.
            sql = f"""
                WITH rows AS (SELECT {TURN_EVENT} FROM events WHERE {TURN_EVENT_WHERE} AND ts >= {start}),
                marked AS (SELECT DISTINCT bot, key FROM rows WHERE bad),
                turns AS ({
                TURNS_FROM_EVENTS.format(src="(SELECT * FROM rows SEMI JOIN marked USING (bot, key))")
            })
                SELECT {self._bucket(q, "ts", p)} AS bucket{dims_out}, count(*) AS {stat}
                FROM (SELECT * FROM turns AS t (bot, key, ts, channel, last_ts, bad, answered))
                WHERE bad AND NOT answered AND ts >= {start} AND ts < {end}{where} GROUP BY ALL
            """
            source = "events"
        rows = self._dicts(sql, p)
        for row in rows:
            row[stat] = int(row[stat] or 0)
        return rows, source

    def user_messages(
        self, users: list[str], start: datetime, end: datetime
    ) -> dict[str, tuple[int, str | None]]:
        """Per user id: messages (both ways) in [start, end) and their country (the largest code if
        several), from the per-day user rollup and the events of partial days."""
        if not users:
            return {}
        p = Params()
        ids = p.add(list(users))
        if self.use_rollups:
            lo, hi, edges = self._whole_days(start, end)
        else:
            lo = hi = start
            edges = [(start, end)]
        parts = [
            "SELECT user_id, messages AS n, country FROM rollup_users "
            f"WHERE user_id IN (SELECT unnest({ids})) AND day >= CAST({p.add(_naive(lo))} AS DATE) "
            f"AND day < CAST({p.add(_naive(hi))} AS DATE)"
        ]
        for a, b in edges:
            if a < b:
                parts.append(
                    "SELECT user_id, count(*) AS n, max(country) AS country FROM events "
                    f"WHERE kind = 'message' AND user_id IN (SELECT unnest({ids})) "
                    f"AND ts >= {p.add(_naive(a))} AND ts < {p.add(_naive(b))} GROUP BY user_id"
                )
        with self.session():
            rows = self.sql(
                f"SELECT user_id, sum(n), max(country) FROM ({' UNION ALL '.join(parts)}) GROUP BY user_id",
                p.values,
            )
        return {user: (int(n or 0), country) for user, n, country in rows}

    def error_groups(self, start: datetime, end: datetime, quiet_days: int) -> list[dict[str, Any]]:
        with self.session():
            return error_groups_sql(self, start, end, quiet_days)

    def explore(self, top: int = 5) -> dict[str, Any]:
        with self.session():
            out = explore_sql(self, top)
        size = getattr(self.store, "size_bytes", None)
        if size is not None:
            out["storage_bytes"] = size()
            out["bytes_per_event"] = out["storage_bytes"] / out["events"] if out["events"] else None
        return out

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
                params[key] = _naive(value) if isinstance(value, datetime) else value
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

    # -- ratios and cohorts -----------------------------------------------------------------------

    def _ratio(self, q: Query, metric: Metric) -> Result:
        assert metric.numerator and metric.denominator
        num = self.run(q.with_metric(metric.numerator))
        den = self.run(q.with_metric(metric.denominator))
        return ratio_result(q, num, den)

    def _retention(self, q: Query) -> Result:
        p = Params()
        unit = q.interval or "day"
        rollup = self.use_rollups
        if rollup:
            src = "SELECT CAST(day AS TIMESTAMP) AS t, user_id, first_in FROM rollup_users WHERE inbound > 0"
        else:
            src = (
                "SELECT CAST(CAST(ts AS DATE) AS TIMESTAMP) AS t, user_id, ts AS first_in FROM events "
                "WHERE kind = 'message' AND direction = 'in' AND user_id IS NOT NULL"
            )
        conds = [c for c in self._conditions(q, q.definition, p) if c.startswith("bot ")]
        if conds:
            src += "".join(f" AND {c}" for c in conds)
        step = "7" if unit == "week" else "1"
        sql = f"""
            WITH src AS ({src}),
                 firsts AS (SELECT user_id, date_trunc('{unit}', min(first_in)) AS cohort
                            FROM src GROUP BY ALL),
                 act AS (SELECT DISTINCT user_id, date_trunc('{unit}', t) AS period FROM src)
            SELECT cohort AS bucket, CAST(datediff('day', cohort, period) / {step} AS BIGINT) AS period,
                   count(*) AS active
            FROM firsts JOIN act USING (user_id)
            WHERE cohort >= date_trunc('{unit}', CAST({p.add(_naive(q.start))} AS TIMESTAMP))
              AND cohort < {p.add(_naive(q.end))} AND period >= cohort
              AND period <= cohort + INTERVAL ({q.periods} * {step}) DAY
            GROUP BY ALL
        """
        found = {(r["bucket"], r["period"]): int(r["active"]) for r in self._dicts(sql, p)}
        rows = []
        for cohort in q.buckets():
            size = found.get((cohort, 0), 0)
            if not size:
                continue
            for n in range(q.periods + 1):
                start_of = cohort + timedelta(days=n * int(step))
                observed = start_of < q.end
                active = found.get((cohort, n), 0)
                rows.append(
                    {
                        "bucket": cohort,
                        "period": n,
                        "cohort_users": size,
                        "active_users": active if observed else None,
                        "share": (active / size) if observed else None,
                    }
                )
        return Result(q, rows, "rollups" if rollup else "events", [f"cohorts by first-seen {unit}"])


def _summary_columns(expr: str, stats: tuple[str, ...]) -> str:
    """count, avg, max and the exact percentiles asked for (as list ``q``) of ``expr``."""
    wanted = [PERCENTILES[s] for s in stats if s in PERCENTILES]
    quantiles = f", quantile_cont({expr}, {wanted}) AS q" if wanted else ""
    return f"count({expr}) AS count, avg({expr}) AS avg, max({expr}) AS max{quantiles}"


def _summary_rows(rows: list[dict[str, Any]], stats: tuple[str, ...]) -> list[dict[str, Any]]:
    """Rows of ``_summary_columns`` as the statistics asked for: numbers, null when nothing was seen."""
    wanted = [s for s in stats if s in PERCENTILES]
    for row in rows:
        for s, v in zip(wanted, row.pop("q", None) or [], strict=False):
            row[s] = v
        row["count"] = int(row.get("count") or 0)
        for s in stats:
            if s != "count" and row.get(s) is not None:
                row[s] = float(row[s])
            row.setdefault(s, None)  # a window without values still has every statistic, as null
        for extra in ("count", "avg", "max"):
            if extra not in stats:
                row.pop(extra, None)
    return rows


def _empty_for(metric: Metric) -> Any:
    if metric.aggregation in (
        "count",
        "sum",
        "active_users",
        "new_users",
        "returning_users",
        "conversations",
        "failed_replies",
    ):
        return lambda stat: (
            0.0 if metric.aggregation == "sum" and metric.column in ("cost_usd", "units") else 0
        )
    return lambda stat: 0 if stat == "count" else None


def _gap_note(q: Query) -> str:
    minutes = q.session_gap_s / 60
    shown = f"{minutes:g} minutes"
    return f"conversations without a conversation id are split at gaps of more than {shown}"


_SEVERITY_RANK = "list_position(['debug', 'info', 'warning', 'error', 'critical'], severity)"


def error_groups_sql(
    engine: DuckDBEngine, start: datetime, end: datetime, quiet_days: int
) -> list[dict[str, Any]]:
    """Error groups (per fingerprint) with activity in [start, end); see ``analyse.errors``."""
    p = Params()
    s, e = p.add(_naive(start)), p.add(_naive(end))
    quiet = f"INTERVAL {int(quiet_days)} DAY"
    sql = f"""
        WITH w AS (SELECT ts, fingerprint, error_type, error_category, severity, error_message, user_id,
                          conversation_id, provider, stage, properties->>'$.code' AS code FROM events
                   WHERE kind = 'error' AND fingerprint IS NOT NULL AND ts >= {s} AND ts < {e}),
             hist AS (SELECT fingerprint, ts, ts - lag(ts) OVER (PARTITION BY fingerprint ORDER BY ts) AS gap
                      FROM events WHERE kind = 'error' AND ts < {e}
                        AND fingerprint IN (SELECT DISTINCT fingerprint FROM w)),
             past AS (SELECT fingerprint, min(ts) AS first_seen,
                             bool_or(ts >= {s} AND gap >= {quiet}) AS came_back
                      FROM hist GROUP BY fingerprint)
        SELECT w.fingerprint, count(*) AS count, count(DISTINCT w.user_id) AS users,
               count(DISTINCT w.conversation_id) AS conversations,
               min(w.ts) AS first_in_period, max(w.ts) AS last_seen, any_value(past.first_seen) AS first_seen,
               any_value(past.came_back) AS came_back,
               mode(w.error_type) AS error_type, mode(w.error_category) AS category,
               mode(w.provider) AS provider, mode(w.stage) AS stage, mode(w.code) AS code,
               arg_max(w.severity, {_SEVERITY_RANK.replace("severity", "w.severity")}) AS severity,
               arg_max(w.error_message, w.ts) AS message
        FROM w JOIN past USING (fingerprint)
        GROUP BY w.fingerprint ORDER BY count DESC, w.fingerprint
    """
    groups = engine._dicts(sql, p)
    if not groups:
        return groups
    p = Params()
    hourly = engine._dicts(
        f"SELECT fingerprint, date_trunc('hour', ts) AS hour, count(*) AS n FROM events "
        f"WHERE kind = 'error' AND fingerprint IS NOT NULL AND ts >= {p.add(_naive(start))} "
        f"AND ts < {p.add(_naive(end))} GROUP BY ALL ORDER BY hour",
        p,
    )
    series: dict[str, list[tuple[datetime, int]]] = {}
    for row in hourly:
        series.setdefault(row["fingerprint"], []).append((row["hour"], int(row["n"])))
    for group in groups:
        group["count"] = int(group["count"])
        group["users"] = int(group["users"])
        group["conversations"] = int(group["conversations"])
        group["new"] = group["first_seen"] >= start
        group["regressed"] = bool(group.pop("came_back")) and not group["new"]
        group["status"] = "new" if group["new"] else ("regressed" if group["regressed"] else "ongoing")
        group["hourly"] = series.get(group["fingerprint"], [])
    return groups


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
        "first_event": _aware(first),
        "last_event": _aware(last),
        "kinds": {
            k: int(n)
            for k, n in engine.sql("SELECT kind, count(*) AS n FROM events GROUP BY 1 ORDER BY n DESC")
        },
        "events_per_day": [
            {"day": _aware(d), "events": int(n)}
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
