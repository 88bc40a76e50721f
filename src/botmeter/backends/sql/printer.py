"""Prints a ``Plan`` as SQL with bound parameters, in the spellings of one dialect.

``SQLPrinter`` writes the statements every SQL backend runs (which rows of which source, how the
parts combine, the shape of the answer) and asks the dialect, a subclass, for every construct that
is spelt differently from one engine to the next: the *spellings* below, each a small method that
returns a piece of SQL. A dialect overrides the spellings and nothing else; the tables it reads are
the ones its rollup upkeep keeps, under the names the plan's sources map to (``TABLES``).

Identifiers come from the catalogue and the plan; every value is a bound parameter (``Params``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ...analyse.catalogue import DIMENSIONS, PERCENTILES, Metric
from ...analyse.plan import SHARED_DIMS, SHARED_STATS, Part, Plan
from ...analyse.query import Query, QueryError

_SEVERITIES = ("debug", "info", "warning", "error", "critical")


def naive(ts: datetime) -> datetime:
    """A UTC time without its zone, as the stores keep ``ts``."""
    return ts.astimezone(UTC).replace(tzinfo=None)


class Params:
    """Collects bound values; ``add`` returns the placeholder in the printer's style."""

    def __init__(self, printer: SQLPrinter) -> None:
        self.values: dict[str, Any] = {}
        self._printer = printer

    def add(self, value: Any) -> str:
        name = f"p{len(self.values)}"
        self.values[name] = value
        return self._printer.placeholder(name, value)

    def time(self, ts: datetime) -> str:
        return self.add(naive(ts))


@dataclass(frozen=True)
class Printed:
    """A statement and its bound values."""

    sql: str
    params: dict[str, Any]


class SQLPrinter:
    """Prints plans as SQL; the spellings (the methods under "spellings") are the dialect's."""

    name = "sql"

    # -- spellings: a dialect overrides these ------------------------------------------------------

    def placeholder(self, name: str, value: Any) -> str:
        """The placeholder of bound parameter ``name`` (its value is given for typed styles)."""
        raise NotImplementedError

    def timestamp(self, expr: str) -> str:
        """``expr`` (a bound time or a date column) as a timestamp without zone."""
        raise NotImplementedError

    def date(self, expr: str) -> str:
        """``expr`` (a bound time or a timestamp) as a calendar date."""
        raise NotImplementedError

    def truncate(self, unit: str, expr: str) -> str:
        """The start of the ``unit`` (hour, day, week from Monday, month) holding ``expr``, a timestamp."""
        raise NotImplementedError

    def seconds_between(self, start: str, end: str) -> str:
        """``end - start`` in seconds, fractions kept."""
        raise NotImplementedError

    def within_seconds(self, start: str, end: str, seconds: int) -> str:
        """Whether ``end - start`` is at most ``seconds`` (false when either is null)."""
        raise NotImplementedError

    def at_least_days(self, start: str, end: str, days: int) -> str:
        """Whether ``end - start`` (an interval of two timestamps) is at least ``days`` days."""
        raise NotImplementedError

    def days_between(self, start: str, end: str) -> str:
        """Whole days from ``start`` to ``end`` (two timestamps at midnight)."""
        raise NotImplementedError

    def plus_days(self, expr: str, days: str) -> str:
        """``expr`` plus ``days`` (an integer SQL expression) days."""
        raise NotImplementedError

    def quantiles(self, expr: str, fractions: Sequence[float]) -> str:
        """Exact quantiles of ``expr`` at ``fractions`` as a list, interpolated linearly between the
        two nearest values (``quantile_cont``; R's type 7)."""
        raise NotImplementedError

    def item(self, array: str, index: int) -> str:
        """Element ``index`` (from 1) of a list."""
        raise NotImplementedError

    def count_distinct(self, *exprs: str) -> str:
        """The exact number of distinct non-null values of ``exprs`` taken together (texts when
        there are several)."""
        raise NotImplementedError

    def previous(self, expr: str, window: str) -> str:
        """``expr`` of the row before in ``window`` (``PARTITION BY ... ORDER BY ...``); null for
        the first row."""
        raise NotImplementedError

    def count_if(self, cond: str) -> str:
        raise NotImplementedError

    def sum_if(self, expr: str, cond: str) -> str:
        raise NotImplementedError

    def any_if(self, expr: str, cond: str) -> str:
        """Any one value of ``expr`` among the rows where ``cond`` holds."""
        raise NotImplementedError

    def bool_or(self, expr: str) -> str:
        raise NotImplementedError

    def mode(self, expr: str) -> str:
        """The most frequent value of ``expr``."""
        raise NotImplementedError

    def arg_max(self, expr: str, by: str) -> str:
        raise NotImplementedError

    def starts_with(self, expr: str, prefix: str) -> str:
        raise NotImplementedError

    def in_list(self, expr: str, values: str) -> str:
        """Whether ``expr`` is among ``values``, a bound list."""
        raise NotImplementedError

    def date_in_list(self, expr: str, values: str) -> str:
        """Whether the date ``expr`` is among ``values``, a bound list of dates."""
        raise NotImplementedError

    def list_position(self, values: Sequence[str], expr: str) -> str:
        """The position (from 1) of ``expr`` in a list of literal texts."""
        raise NotImplementedError

    def concat(self, *parts: str) -> str:
        """Texts joined (null when any part is null)."""
        raise NotImplementedError

    def to_text(self, expr: str) -> str:
        raise NotImplementedError

    def to_int(self, expr: str) -> str:
        raise NotImplementedError

    def json_text(self, column: str, key: str) -> str:
        """The text of a top-level key of a JSON column."""
        raise NotImplementedError

    def group_all(self) -> str:
        """Group by every selected column that is not an aggregate."""
        raise NotImplementedError

    def nullif_empty(self, expr: str) -> str:
        return f"nullif({expr}, '')"

    def json_number(self, column: str, key: str) -> str:
        """A top-level key of a JSON column as a number (null when it is missing or not a number)."""
        raise NotImplementedError

    def table(self, name: str) -> str:
        """A rollup table as a query reads it: one row per key (a table merged in the background
        is read merged)."""
        return name

    def measure(self, column: str) -> str:
        """A metric's column (``Metric.column``): a column of events, or ``properties.<key>``."""
        if column.startswith("properties."):
            return self.json_number("properties", column.removeprefix("properties."))
        return column

    def failed_turns(self) -> str:
        """The kept turns whose reply failed, as rows (bot, ts, channel): the closed ones and each
        conversation's latest (stored apart, so none counts twice)."""
        return (
            f"(SELECT bot, ts, channel FROM {self.table('rollup_turns')} WHERE bad UNION ALL "
            f"SELECT bot, ts, channel FROM {self.table('rollup_turn_heads')} WHERE bad AND NOT answered)"
        )

    def turn_rows(self, start: str) -> str:
        """Turn rows (bot, key, ts, channel, last_ts, bad, answered) rebuilt from the events since
        ``start`` for conversations with an error or a reply marked failed: the same rows the turns
        rollup keeps (so it is the dialect's rollup upkeep that writes this)."""
        raise NotImplementedError

    # -- pieces -----------------------------------------------------------------------------------

    def params(self) -> Params:
        return Params(self)

    def bucket(self, q: Query, column: str, p: Params) -> str:
        if q.interval is None:
            return self.timestamp(p.time(q.start))
        return self.truncate(q.interval, column)

    def dims(self, q: Query, rollup: bool) -> str:
        cols = []
        for dim in q.by:
            col = DIMENSIONS[dim]
            cols.append(f"{self.nullif_empty(col)} AS {dim}" if rollup else f"{col} AS {dim}")
        return "".join(f", {c}" for c in cols)

    def conditions(
        self, q: Query, metric: Metric, p: Params, *, rollup: bool = False, kinds: bool = True
    ) -> list[str]:
        conds = []
        if kinds and metric.kinds:
            conds.append(f"kind IN ({', '.join(p.add(k) for k in metric.kinds)})")
        for dim, value in metric.where:
            if value is None:
                if not rollup:  # the rollup counts unpriced events through its own measure
                    conds.append(f"{dim} IS NULL")
                continue
            col = DIMENSIONS[dim]
            if value.endswith("*"):
                conds.append(self.starts_with(col, p.add(value[:-1])))
            else:
                conds.append(f"{col} = {p.add(value)}")
        for dim, values in q.filters:
            conds.append(f"{DIMENSIONS[dim]} IN ({', '.join(p.add(v) for v in values)})")
        return conds

    def bot_conditions(self, q: Query, metric: Metric, p: Params) -> list[str]:
        """The conditions on the bot alone (the tables kept per bot know no other dimension)."""
        conds = [f"bot = {p.add(v)}" for d, v in metric.where if d == "bot" and v is not None]
        conds += [f"bot IN ({', '.join(p.add(v) for v in vs)})" for d, vs in q.filters if d == "bot"]
        return conds

    def span(self, column: str, lo: datetime, hi: datetime, p: Params) -> str:
        return f"{column} >= {p.time(lo)} AND {column} < {p.time(hi)}"

    def day_span(self, lo: datetime, hi: datetime, p: Params) -> str:
        return f"day >= {self.date(p.time(lo))} AND day < {self.date(p.time(hi))}"

    def summary_columns(self, expr: str, stats: Iterable[str]) -> str:
        """count, avg, max and the exact percentiles asked for (as list ``q``) of ``expr``."""
        wanted = [PERCENTILES[s] for s in stats if s in PERCENTILES]
        quantiles = f", {self.quantiles(expr, wanted)} AS q" if wanted else ""
        return f"count({expr}) AS count, avg({expr}) AS avg, max({expr}) AS max{quantiles}"

    # -- plans --------------------------------------------------------------------------------------

    def print(self, plan: Plan) -> list[Printed]:
        """The statements answering the plan: one, or one per part when the parts' rows are complete
        figures of their own (``combine == "rows"`` over several sources)."""
        q, metric = plan.query, plan.query.definition
        if plan.shape == "distribution":
            out = []
            for part in plan.parts:
                p = self.params()
                if part.source == "latency_days":
                    sql = self._latency_days(plan, q, part, p)
                else:
                    sql = self._distribution_events(plan, q, metric, part, p)
                out.append(Printed(sql, p.values))
            return out
        p = self.params()
        sql = getattr(self, f"_print_{plan.shape}")(plan, q, metric, p)
        return [Printed(sql, p.values)]

    def _union(self, parts: list[str]) -> str:
        return " UNION ALL ".join(parts)

    @staticmethod
    def _costs(q: Query, metric: Metric) -> bool:
        # Cost groups carry how many of their events were priced and how many LLM calls were not.
        # Per user and per conversation (top lists) they are not told apart: the day rollups of
        # those do not know.
        return metric.column == "cost_usd" and not {"user", "conversation"} & set(q.by)

    def _additive_total(self, plan: Plan, q: Query, parts: list[str], costs: bool) -> str:
        stat = q.stats[0]
        dims = "".join(f", {d}" for d in q.by)
        total = "sum(v)"
        if costs:
            # A group made only of LLM calls without a price (and no priced event) has an unknown
            # cost, not a zero one.
            total = "CASE WHEN sum(priced) = 0 AND sum(unpriced) > 0 THEN NULL ELSE coalesce(sum(v), 0) END"
        sql = f"SELECT bucket{dims}, {total} AS {stat} FROM ({self._union(parts)}) {self.group_all()}"
        if q.limit and q.interval is None:
            # The top groups only: a breakdown by user or conversation can have millions.
            sql += f" ORDER BY {stat} DESC NULLS LAST{dims} LIMIT {int(q.limit)}"
        return sql

    def _additive_events(self, q: Query, metric: Metric, part: Part, p: Params, costs: bool) -> str:
        raw = "count(*)" if metric.aggregation == "count" else f"sum({self.measure(metric.column)})"
        unpriced_call = "kind = 'llm_call' AND cost_usd IS NULL"
        pricing = f", count(cost_usd) AS priced, {self.count_if(unpriced_call)} AS unpriced" if costs else ""
        conds = self.conditions(q, metric, p)
        conds.append(self.span("ts", part.start, part.end, p))
        return (
            f"SELECT {self.bucket(q, 'ts', p)} AS bucket{self.dims(q, False)}, {raw} AS v{pricing} "
            f"FROM events WHERE {' AND '.join(conds)} {self.group_all()}"
        )

    def _print_additive(self, plan: Plan, q: Query, metric: Metric, p: Params) -> str:
        costs = self._costs(q, metric)
        unpriced = any(v is None for _, v in metric.where)
        parts = []
        for part in plan.parts:
            if part.source == "events":
                parts.append(self._additive_events(q, metric, part, p, costs))
                continue
            measure = (
                "sum(events - priced)"
                if unpriced
                else ("sum(events)" if metric.aggregation == "count" else f"sum({metric.column})")
            )
            llm_call = "kind = 'llm_call'"
            pricing = (
                f", sum(priced) AS priced, {self.sum_if('events - priced', llm_call)} AS unpriced"
                if costs
                else ""
            )
            conds = self.conditions(q, metric, p, rollup=True)
            if unpriced:  # a group with only priced calls has no unpriced calls to show
                conds.append("events > priced")
            conds.append(self.span("hour", part.start, part.end, p))
            parts.append(
                f"SELECT {self.bucket(q, 'hour', p)} AS bucket{self.dims(q, True)}, {measure} AS v{pricing} "
                f"FROM {self.table('rollup_hourly')} WHERE {' AND '.join(conds)} {self.group_all()}"
            )
        return self._additive_total(plan, q, parts, costs)

    def _print_keyed_cost(self, plan: Plan, q: Query, metric: Metric, p: Params) -> str:
        keyed = next(k for k in ("user", "conversation") if k in q.by)
        table, column, none = {
            "user": ("rollup_users", "user_id", "no_user"),
            "conversation": ("rollup_conversation_costs", "conversation_id", "no_conversation"),
        }[keyed]
        no_pricing = ""  # per user and per conversation, priced and unpriced are not told apart
        parts = []
        for part in plan.parts:
            if part.source == "events":
                parts.append(self._additive_events(q, metric, part, p, costs=False))
            elif part.source.startswith("hourly_without_"):
                conds = self.bot_conditions(q, metric, p)
                conds.append(self.span("hour", part.start, part.end, p))
                dims = "".join(
                    f", {self.nullif_empty('bot')} AS {d}" if d == "bot" else f", NULL AS {d}" for d in q.by
                )
                parts.append(
                    f"SELECT {self.bucket(q, 'hour', p)} AS bucket{dims}, sum({none}_cost) AS v{no_pricing} "
                    f"FROM {self.table('rollup_hourly')} WHERE {' AND '.join(conds)} {self.group_all()} "
                    f"HAVING sum({none}_events) > 0"
                )
            else:
                conds = self.bot_conditions(q, metric, p)
                conds.append(self.day_span(part.start, part.end, p))
                dims = "".join(
                    f", {self.nullif_empty('bot')} AS {d}" if d == "bot" else f", {column} AS {d}"
                    for d in q.by
                )
                parts.append(
                    f"SELECT {self.bucket(q, 'day', p)} AS bucket{dims}, sum(cost_usd) AS v{no_pricing} "
                    f"FROM {self.table(table)} WHERE {' AND '.join(conds)} {self.group_all()}"
                )
        return self._additive_total(plan, q, parts, costs=False)

    def _print_moments(self, plan: Plan, q: Query, metric: Metric, p: Params) -> str:
        """count, average and maximum: from the hourly latency sums and the edges' events."""
        col = self.measure(metric.column)
        parts = []
        for part in plan.parts:
            if part.source == "hourly":
                conds = self.conditions(q, metric, p, rollup=True)
                conds.append("latency_n > 0")  # as over events: only events with a latency make a group
                conds.append(self.span("hour", part.start, part.end, p))
                parts.append(
                    f"SELECT {self.bucket(q, 'hour', p)} AS bucket{self.dims(q, True)}, sum(latency_n) AS n, "
                    f"sum(latency_sum) AS s, max(latency_max) AS mx FROM {self.table('rollup_hourly')} "
                    f"WHERE {' AND '.join(conds)} {self.group_all()}"
                )
            else:
                conds = self.conditions(q, metric, p)
                # As in the rollup: only events with a latency make a group.
                conds.append(f"{col} IS NOT NULL")
                conds.append(self.span("ts", part.start, part.end, p))
                parts.append(
                    f"SELECT {self.bucket(q, 'ts', p)} AS bucket{self.dims(q, False)}, count({col}) AS n, "
                    f"sum({col}) AS s, max({col}) AS mx FROM events WHERE {' AND '.join(conds)} "
                    f"{self.group_all()}"
                )
        dims = "".join(f", {d}" for d in q.by)
        return (
            f"SELECT bucket{dims}, sum(n) AS count, sum(s) / nullif(sum(n), 0) AS avg, max(mx) AS max "
            f"FROM ({self._union(parts)}) {self.group_all()}"
        )

    def _latency_days(self, plan: Plan, q: Query, part: Part, p: Params) -> str:
        pick = plan.latency
        assert pick is not None
        quantiles = self.latency_quantiles
        picks = ", ".join(
            f"{self.item('q', quantiles.index(PERCENTILES[s]) + 1)} AS {s}"
            for s in q.stats
            if s in PERCENTILES
        )
        value = f", {self.nullif_empty('value')} AS {pick.dim}" if pick.dim and pick.value is None else ""
        # The same columns as an events part, so the two can be one statement (UNION ALL by name).
        sql = (
            f"SELECT {self.timestamp('day')} AS bucket{value}, n AS count, latency_sum / n AS avg, "
            f"latency_max AS max{', ' + picks if picks else ''} FROM {self.table('rollup_latency_days')} "
            f"WHERE dim = {p.add(f'{pick.kind}:{pick.dim}')} "
            f"AND {self.date_in_list('day', p.add([d.date() for d in part.days]))}"
        )
        if pick.value is not None:
            sql += f" AND value = {p.add(pick.value)}"
        if pick.bot is not None:
            sql += f" AND bot = {p.add(pick.bot)}"
        return sql

    latency_quantiles: tuple[float, ...] = ()  # the engine sets the quantiles its rollup keeps

    def _distribution_events(self, plan: Plan, q: Query, metric: Metric, part: Part, p: Params) -> str:
        if plan.shared is not None:
            return self.shared_latency(q, plan.shared.kind, p)
        col = self.measure(metric.column)
        conds = self.conditions(q, metric, p)
        conds.append(f"{col} IS NOT NULL")
        conds.append("(" + " OR ".join(f"({self.span('ts', a, b, p)})" for a, b in part.spans) + ")")
        return (
            f"SELECT {self.bucket(q, 'ts', p)} AS bucket{self.dims(q, False)}, "
            f"{self.summary_columns(col, q.stats)} FROM events WHERE {' AND '.join(conds)} {self.group_all()}"
        )

    def shared_latency(self, q: Query, kind: str, p: Params) -> str:
        """The shared latency scan of one kind over the window (``analyse.plan.Shared``): the same
        statement for every query it answers, so the engine runs it once per session."""
        dims = "".join(f", {DIMENSIONS[d]} AS {d}" for d in SHARED_DIMS[kind])
        return (
            f"SELECT {self.bucket(q, 'ts', p)} AS bucket{dims}, "
            f"{self.summary_columns('latency_ms', SHARED_STATS)} FROM events "
            f"WHERE kind = {p.add(kind)} AND latency_ms IS NOT NULL "
            f"AND {self.span('ts', q.start, q.end, p)} {self.group_all()}"
        )

    # -- users ------------------------------------------------------------------------------------

    _INBOUND = "kind = 'message' AND direction = 'in' AND user_id IS NOT NULL"

    def _active_users_src(self, plan: Plan, q: Query, metric: Metric, p: Params, bots: list[str]) -> str:
        if plan.source == "events":
            extra = "".join(f", {DIMENSIONS[d]}" for d in q.by if d != "bot")
            return (
                f"SELECT ts AS t, coalesce(bot, '') AS bot, user_id{extra} FROM events WHERE {self._INBOUND} "
                f"AND {self.span('ts', q.start, q.end, p)}"
                + "".join(f" AND {c}" for c in self.conditions(q, metric, p))
            )
        # Whole days from the rollup, partial edge days from the events: a union of ids, so a user
        # seen in both still counts once.
        parts = []
        for part in plan.parts:
            if part.source == "user_days":
                parts.append(
                    f"SELECT {self.timestamp('day')} AS t, bot, user_id FROM {self.table('rollup_users')} "
                    f"WHERE inbound > 0 "
                    f"AND {self.day_span(part.start, part.end, p)}" + "".join(f" AND {c}" for c in bots)
                )
            else:
                parts.append(
                    f"SELECT ts AS t, coalesce(bot, '') AS bot, user_id FROM events WHERE {self._INBOUND} "
                    f"AND {self.span('ts', part.start, part.end, p)}" + "".join(f" AND {c}" for c in bots)
                )
        return self._union(parts)

    def _firsts_src(self, plan: Plan, q: Query, metric: Metric, p: Params, bots: list[str]) -> str:
        if plan.source != "events":
            return (
                f"SELECT bot, user_id, min(first_in) AS first_in FROM {self.table('rollup_users')} "
                f"WHERE inbound > 0" + "".join(f" AND {c}" for c in bots) + f" {self.group_all()}"
            )
        return (
            f"SELECT coalesce(bot, '') AS bot, user_id, min(ts) AS first_in FROM events WHERE {self._INBOUND}"
            + "".join(f" AND {c}" for c in self.conditions(q, metric, p))
            + f" {self.group_all()}"
        )

    def _print_users(self, plan: Plan, q: Query, metric: Metric, p: Params) -> str:
        stat = q.stats[0]
        agg = metric.aggregation
        dims_out = self.dims(q, True)
        bots = self.bot_conditions(q, metric, p) if plan.source != "events" else []
        dims = "".join(f", {d}" for d in q.by)
        group = self.group_all()
        if agg == "active_users":
            counted = "count(*)" if plan.combine == "rows_distinct" else self.count_distinct("user_id")
            return (
                f"SELECT {self.bucket(q, 't', p)} AS bucket{dims_out}, {counted} AS {stat} "
                f"FROM ({self._active_users_src(plan, q, metric, p, bots)}) {group}"
            )
        if agg == "new_users":
            # First inbound message ever, per user (per bot when broken down by bot).
            key = "bot, user_id" if "bot" in q.by else "user_id"
            return (
                f"SELECT {self.bucket(q, 'first_in', p)} AS bucket{dims_out}, count(*) AS {stat} FROM ("
                f"SELECT {key}, min(first_in) AS first_in FROM "
                f"({self._firsts_src(plan, q, metric, p, bots)}) {group}) "
                f"WHERE {self.span('first_in', q.start, q.end, p)} {group}"
            )
        # returning: active in the bucket, first seen before the bucket (or window) began
        key = ("bot", "user_id") if "bot" in q.by else ("user_id",)
        start = p.time(q.start)
        return (
            f"WITH firsts AS (SELECT {', '.join(key)}, min(first_in) AS first_in FROM "
            f"({self._firsts_src(plan, q, metric, p, bots)}) {group}), "
            f"active AS (SELECT DISTINCT {self.bucket(q, 't', p)} AS bucket{dims_out}, user_id "
            f"FROM ({self._active_users_src(plan, q, metric, p, bots)})) "
            f"SELECT bucket{dims}, count(*) AS {stat} FROM active JOIN firsts USING ({', '.join(key)}) "
            f"WHERE firsts.first_in < greatest(bucket, {start}) {group}"
        )

    # -- conversations ------------------------------------------------------------------------------

    def conversation_keys(self, q: Query, p: Params, window: bool, extra: Iterable[str] = ()) -> str:
        """Messages with their conversation key: the bot's id, or a session number per user."""
        conds = ["kind = 'message'", "(conversation_id IS NOT NULL OR user_id IS NOT NULL)"]
        conds += self.conditions(q, q.definition, p, kinds=False)
        if window:
            conds.append(self.span("ts", q.start, q.end, p))
        cols = ", ".join(["coalesce(bot, '') AS bot", "user_id", "conversation_id", "ts", *extra])
        partition = "PARTITION BY bot, user_id, conversation_id IS NULL ORDER BY ts"
        session = self.to_text(f"sum(opens) OVER ({partition} ROWS UNBOUNDED PRECEDING)")
        close = self.within_seconds(self.previous("ts", partition), "ts", int(q.session_gap_s))
        return f"""
            SELECT *, CASE WHEN conversation_id IS NOT NULL THEN {self.concat("'c:'", "conversation_id")}
                           ELSE {self.concat("'s:'", "user_id", "':'", session)} END AS conversation
            FROM (SELECT *, CASE WHEN {close} THEN 0 ELSE 1 END AS opens
                  FROM (SELECT {cols} FROM events WHERE {" AND ".join(conds)}))
        """

    def _print_conversations(self, plan: Plan, q: Query, metric: Metric, p: Params) -> str:
        stat = q.stats[0]
        group = self.group_all()
        if plan.source == "events":
            extra = [DIMENSIONS[d] for d in q.by if d != "bot"]
            keys = self.conversation_keys(q, p, window=True, extra=extra)
            return (
                f"SELECT {self.bucket(q, 'ts', p)} AS bucket{self.dims(q, True)}, "
                f"{self.count_distinct('bot', 'conversation')} AS {stat} FROM ({keys}) {group}"
            )
        bots = self.bot_conditions(q, metric, p)
        session_key = "'s:'"
        conversation_id = "'c:'"
        parts = []
        for part in plan.parts:
            if part.source == "conversation_days":
                parts.append(
                    f"SELECT {self.timestamp('day')} AS t, bot, conversation FROM "
                    f"{self.table('rollup_conversations')} WHERE {self.day_span(part.start, part.end, p)}"
                    + "".join(f" AND {c}" for c in bots)
                )
                continue
            # A partial day's messages get the key of the stored conversation or session holding
            # them (a user's sessions do not overlap), so keys match the whole days'.
            parts.append(
                f"SELECT m.ts AS t, m.bot, coalesce({self.concat(conversation_id, 'm.conversation_id')}, "
                "s.conversation) AS conversation "
                "FROM (SELECT ts, coalesce(bot, '') AS bot, user_id, conversation_id FROM events "
                f"WHERE kind = 'message' AND {self.span('ts', part.start, part.end, p)}"
                + "".join(f" AND {c}" for c in bots)
                + f") AS m LEFT JOIN {self.table('rollup_conversation_totals')} "
                f"AS s ON m.conversation_id IS NULL "
                f"AND {self.starts_with('s.conversation', session_key)} AND s.bot = m.bot "
                "AND s.user_id = m.user_id AND m.ts BETWEEN s.first_ts AND s.last_ts "
                "WHERE m.conversation_id IS NOT NULL OR m.user_id IS NOT NULL"
            )
        counted = "count(*)" if plan.combine == "rows_distinct" else self.count_distinct("conversation")
        return (
            f"SELECT bucket{''.join(f', {d}' for d in q.by)}, sum(n) AS {stat} FROM ("
            f"SELECT {self.bucket(q, 't', p)} AS bucket, {self.nullif_empty('bot')} AS bot, {counted} AS n "
            f"FROM ({self._union(parts)}) {group}) {group}"
        )

    def _print_per_conversation(self, plan: Plan, q: Query, metric: Metric, p: Params) -> str:
        measure = "n" if metric.column == "messages" else self.seconds_between("f", "l")
        group = self.group_all()
        if plan.source != "events":
            conds = self.bot_conditions(q, metric, p)
            where = f" WHERE {' AND '.join(conds)}" if conds else ""
            src = (
                "SELECT bot, conversation, first_ts AS f, last_ts AS l, messages AS n "
                f"FROM {self.table('rollup_conversation_totals')}{where}"
            )
        else:
            keys = self.conversation_keys(q, p, window=False)
            src = f"SELECT bot, conversation, min(ts) AS f, max(ts) AS l, count(*) AS n FROM ({keys}) {group}"
        start, end = p.time(q.start), p.time(q.end)
        dims_out = "".join(f", {self.nullif_empty('bot')} AS bot" for d in q.by if d == "bot")
        return (
            f"SELECT {self.bucket(q, 'f', p)} AS bucket{dims_out}, {self.summary_columns('x', q.stats)} "
            f"FROM (SELECT *, {measure} AS x FROM ({src})) WHERE f >= {start} AND f < {end} {group}"
        )

    # -- failed replies ---------------------------------------------------------------------------

    def _print_failed_replies(self, plan: Plan, q: Query, metric: Metric, p: Params) -> str:
        """Inbound messages in the window whose turn holds an error or a reply marked failed and no
        good reply (see the catalogue): from the closed turns nobody answered and each
        conversation's latest turn (stored apart, so none counts twice), or by walking the events."""
        stat = q.stats[0]
        start, end = p.time(q.start), p.time(q.end)
        conds = self.conditions(q, metric, p, kinds=False)
        dims_out = "".join(f", {self.nullif_empty('bot')} AS bot" if d == "bot" else f", {d}" for d in q.by)
        where = "".join(f" AND {c}" for c in conds)
        if plan.source != "events":
            src, failed = self.failed_turns(), ""
        else:
            src, failed = f"({self.turn_rows(start)})", "bad AND NOT answered AND "
        return (
            f"SELECT {self.bucket(q, 'ts', p)} AS bucket{dims_out}, count(*) AS {stat} "
            f"FROM {src} WHERE {failed}ts >= {start} AND ts < {end}{where} {self.group_all()}"
        )

    # -- retention --------------------------------------------------------------------------------

    def _print_retention(self, plan: Plan, q: Query, metric: Metric, p: Params) -> str:
        unit = q.interval or "day"
        if plan.source != "events":
            src = (
                f"SELECT {self.timestamp('day')} AS t, user_id, first_in FROM {self.table('rollup_users')} "
                "WHERE inbound > 0"
            )
        else:
            src = (
                f"SELECT {self.timestamp(self.date('ts'))} AS t, user_id, ts AS first_in FROM events "
                "WHERE kind = 'message' AND direction = 'in' AND user_id IS NOT NULL"
            )
        src += "".join(f" AND {c}" for c in self.bot_conditions(q, metric, p))
        step = 7 if unit == "week" else 1
        group = self.group_all()
        return f"""
            WITH src AS ({src}),
                 firsts AS (SELECT user_id, {self.truncate(unit, "min(first_in)")} AS cohort
                            FROM src {group}),
                 act AS (SELECT DISTINCT user_id, {self.truncate(unit, "t")} AS period FROM src)
            SELECT cohort AS bucket, {self.to_int(f"{self.days_between('cohort', 'period')} / {step}")}
                   AS period, count(*) AS active
            FROM firsts JOIN act USING (user_id)
            WHERE cohort >= {self.truncate(unit, self.timestamp(p.time(q.start)))}
              AND cohort < {p.time(q.end)} AND period >= cohort
              AND period <= {self.plus_days("cohort", f"{q.periods} * {step}")}
            {group}
        """

    # -- facts and other statements -------------------------------------------------------------------

    def day_within(self, day: datetime, start: datetime, end: datetime) -> Printed:
        """Rows of the day that lie outside [start, end) (none: the day is whole inside)."""
        p = self.params()
        sql = (
            f"SELECT count(*) FROM {self.table('rollup_days')} "
            f"WHERE day = {self.date(p.time(day))} AND (first_ts < "
            f"{p.time(start)} OR last_ts >= {p.time(end)})"
        )
        return Printed(sql, p.values)

    def one_bot(self) -> Printed:
        return Printed(f"SELECT {self.count_distinct('bot')} FROM {self.table('rollup_hourly')}", {})

    def turns_whole(self) -> Printed | None:
        """A statement whose one value says the kept turns hold every event (None: they always do)."""
        return None

    def session_gap(self) -> Printed:
        return Printed("SELECT value FROM botmeter_meta WHERE key = 'session_gap_s'", {})

    def fresh_latency_days(self, kind: str, lo: datetime, hi: datetime, bot: str | None) -> Printed:
        """The days whose percentiles cover as many events as the hourly rollup counts."""
        p = self.params()
        bot_cond = f" AND c.bot = {p.add(bot)}" if bot is not None else ""
        sql = (
            f"SELECT c.day FROM {self.table('rollup_latency_days')} "
            f"AS c JOIN (SELECT {self.date('hour')} AS d, bot, "
            f"sum(latency_n) AS n FROM {self.table('rollup_hourly')} WHERE kind = {p.add(kind)} "
            f"AND {self.span('hour', lo, hi, p)} {self.group_all()}) AS h "
            f"ON h.d = c.day AND h.bot = c.bot WHERE c.dim = {p.add(kind + ':')} AND c.n = h.n{bot_cond}"
        )
        return Printed(sql, p.values)

    def splits_sessions(self, q: Query, hourly: bool) -> Printed:
        """Messages without a conversation id (split into sessions) in the window: a count."""
        p = self.params()
        if hourly:
            sql = (
                f"SELECT count(*) FROM {self.table('rollup_hourly')} "
                f"WHERE kind = 'message' AND no_conversation_events > 0 "
                f"AND hour >= {self.truncate('hour', self.timestamp(p.time(q.start)))} "
                f"AND hour < {p.time(q.end)}"
            )
        else:
            sql = (
                "SELECT count(*) FROM events WHERE kind = 'message' AND conversation_id IS NULL "
                f"AND user_id IS NOT NULL AND {self.span('ts', q.start, q.end, p)}"
            )
        return Printed(sql, p.values)

    def user_messages(self, users: list[str], parts: Sequence[Part]) -> Printed:
        """Messages (both ways) and country (the largest code) per user over the parts' spans."""
        p = self.params()
        ids = p.add(list(users))
        rows = []
        for part in parts:
            if part.source == "user_days":
                rows.append(
                    f"SELECT user_id, messages AS n, country FROM {self.table('rollup_users')} "
                    f"WHERE {self.in_list('user_id', ids)} AND {self.day_span(part.start, part.end, p)}"
                )
            else:
                rows.append(
                    "SELECT user_id, count(*) AS n, max(country) AS country FROM events "
                    f"WHERE kind = 'message' AND {self.in_list('user_id', ids)} "
                    f"AND {self.span('ts', part.start, part.end, p)} GROUP BY user_id"
                )
        sql = f"SELECT user_id, sum(n), max(country) FROM ({self._union(rows)}) GROUP BY user_id"
        return Printed(sql, p.values)

    def error_groups(
        self, start: datetime, end: datetime, quiet_days: int, bot: str | None = None
    ) -> Printed:
        """Error groups (per fingerprint) with activity in [start, end); see ``analyse.errors``.

        Whether a group came back (an error in the period at least ``quiet_days`` after the one
        before it) is read from the groups' hours (first and last error of each), not from every
        error: a quiet spell of a day or more always lies between two hours, so the answer is the
        same, and the window runs over a few hundred rows per group instead of every error.
        """
        if quiet_days < 1:
            raise QueryError(f"quiet_days must be at least 1 (got {quiet_days!r})")
        p = self.params()
        s, e = p.time(start), p.time(end)
        of_bot = "" if bot is None else f" AND {DIMENSIONS['bot']} = {p.add(bot)}"
        rank = self.list_position(_SEVERITIES, "severity")
        by_fingerprint = "PARTITION BY fingerprint ORDER BY first_ts"
        came_back = f"first_ts >= {s} AND {self.at_least_days('prev', 'first_ts', quiet_days)}"
        # Each group's figures first (``agg``), then its past: a join of a few rows, not of every error.
        sql = f"""
            WITH w AS (SELECT ts, fingerprint, error_type, error_category, severity, error_message, user_id,
                              conversation_id, provider, stage, {self.json_text("properties", "code")} AS code
                       FROM events
                       WHERE kind = 'error' AND fingerprint IS NOT NULL AND ts >= {s} AND ts < {e}{of_bot}),
                 hours AS (SELECT fingerprint, min(ts) AS first_ts, max(ts) AS last_ts
                           FROM events WHERE kind = 'error' AND ts < {e}{of_bot}
                             AND fingerprint IN (SELECT DISTINCT fingerprint FROM w)
                           GROUP BY fingerprint, {self.truncate("hour", "ts")}),
                 hist AS (SELECT fingerprint, first_ts, {self.previous("last_ts", by_fingerprint)} AS prev
                          FROM hours),
                 past AS (SELECT fingerprint, min(first_ts) AS first_seen,
                                 {self.bool_or(came_back)} AS came_back
                          FROM hist GROUP BY fingerprint),
                 agg AS (SELECT fingerprint, count(*) AS count, {self.count_distinct("user_id")} AS users,
                                {self.count_distinct("conversation_id")} AS conversations,
                                min(ts) AS first_in_period, max(ts) AS last_seen,
                                {self.mode("error_type")} AS error_type,
                                {self.mode("error_category")} AS category,
                                {self.mode("provider")} AS provider, {self.mode("stage")} AS stage,
                                {self.mode("code")} AS code, {self.arg_max("severity", rank)} AS severity,
                                {self.arg_max("error_message", "ts")} AS message
                         FROM w GROUP BY fingerprint)
            SELECT a.fingerprint, a.count, a.users, a.conversations, a.first_in_period, a.last_seen,
                   p.first_seen, p.came_back, a.error_type, a.category, a.provider, a.stage, a.code,
                   a.severity, a.message
            FROM agg AS a JOIN past AS p ON p.fingerprint = a.fingerprint
            ORDER BY a.count DESC, a.fingerprint
        """
        return Printed(sql, p.values)

    def error_hours(self, start: datetime, end: datetime, bot: str | None = None) -> Printed:
        p = self.params()
        of_bot = "" if bot is None else f"AND {DIMENSIONS['bot']} = {p.add(bot)} "
        sql = (
            f"SELECT fingerprint, {self.truncate('hour', 'ts')} AS hour, count(*) AS n FROM events "
            f"WHERE kind = 'error' AND fingerprint IS NOT NULL AND {self.span('ts', start, end, p)} {of_bot}"
            f"{self.group_all()} ORDER BY hour"
        )
        return Printed(sql, p.values)
