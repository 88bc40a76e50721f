"""ClickHouse's spellings of the SQL every SQL backend prints (``backends/sql/printer.py``).

The DuckDB dialect with the constructs ClickHouse spells otherwise; each pair is checked on the
same rows by ``tests/test_clickhouse_dialect.py``:

=====================================  ============================================================
DuckDB                                 ClickHouse
=====================================  ============================================================
``$p0``                                ``{p0:Type}`` (a server-side parameter, typed from the value)
``CAST(x AS TIMESTAMP)``               ``toDateTime64(x, 6, 'UTC')``
``CAST(x AS DATE)``                    ``toDate(x)``
``date_trunc('hour'|'day', x)``        ``toStartOfHour(x)``, ``toStartOfDay(x)``
``date_trunc('week'|'month', x)``      ``toMonday(x)``, ``toStartOfMonth(x)`` (as a time again)
``epoch(b - a)``                       microseconds between the two, over 1e6
``b - a <= INTERVAL n SECOND``         ``dateDiff('microsecond', a, b) <= n * 1e6``
``datediff('day', a, b)``              ``dateDiff('day', a, b)``
``quantile_cont(x, [f...])``           ``quantilesExactInclusive(f...)(x)`` (both R's type 7: exact,
                                       linear between the two nearest values)
``count(DISTINCT a || chr(0) || b)``   ``uniqExact(a, b)``
``agg(x) FILTER (WHERE c)``            ``countIf(c)``, ``sumIf(x, c)``, ``anyIf(x, c)``
``bool_or(c)``                         ``max(c)``
``mode(x)``                            the most frequent value, counted exactly over the group's
                                       values (``topK`` would be approximate); ties: the smallest
``arg_max(x, y)``                      ``argMax(x, y)``
``starts_with(x, p)``                  ``startsWith(x, p)``
``x IN (SELECT unnest($list))``        ``x IN {list:Array(T)}``
``list_position([...], x)``            ``nullIf(indexOf([...], x), 0)``
``a || b``                             ``concat(a, b)`` (null when a part is null, as in DuckDB)
``CAST(x AS VARCHAR)``                 ``toString(x)``
``CAST(x AS BIGINT)``                  ``toInt64(roundBankers(x))`` (half to even)
``properties->>'$.code'``              the key's text (a string unquoted, a number as written)
``TRY_CAST(->>... AS DOUBLE)``         ``toFloat64OrNull(...)`` of the key's text
``lag(x) OVER (...)``                  ``lagInFrame(toNullable(x)) OVER (...)`` (``lag`` gives the
                                       type's default, not null, before the first row)
=====================================  ============================================================

Two things are ClickHouse's own rather than spellings: the rollups other than ``rollup_hourly``
are read ``FINAL`` (their rows of one key are merged in the background, so a reader that counts
rows, or reads a day's first event, merges them at read time), and every statement runs with
``join_use_nulls`` (an outer join's missing side is null, as in standard SQL) and
``prefer_column_name_to_alias`` (``WHERE hour >= ...`` means the column even when the SELECT
names a truncated hour ``hour``).

Two statements are written anew rather than spelt: ``conversation_keys`` (sessions of messages
without a conversation id) and ``turn_rows`` (turns, for failed replies) sort each user's messages
or each conversation's events as one array and number sessions and turns along it, which gives the
keys and turns of DuckDB's window functions in a fraction of ClickHouse's time for a window.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any

from ...analyse.catalogue import Metric
from ...analyse.plan import Plan
from ...analyse.query import Query
from ..duckdb.dialect import DuckDBDialect
from ..duckdb.rollups import LATENCY_QUANTILES
from ..sql.printer import Params, Printed

# Rollups whose rows are read one per key (see the module's docstring); rollup_hourly is always
# summed again by the statements that read it, partial rows and all.
_MERGED_ON_READ = frozenset(
    {
        "rollup_users",
        "rollup_conversations",
        "rollup_conversation_totals",
        "rollup_conversation_costs",
        "rollup_days",
    }
)
# Tables read as a statement: the conversations of a day and whole, those with an id (kept by the
# views) and the sessions (kept by the writer, see upkeep.py) as one table.
_CONVERSATION_COLUMNS = "bot, conversation, user_id, first_ts, last_ts, messages"
_READ_AS = {
    "rollup_conversations": (
        f"(SELECT day, {_CONVERSATION_COLUMNS} FROM rollup_conversations FINAL UNION ALL "
        f"SELECT day, {_CONVERSATION_COLUMNS} FROM rollup_session_days FINAL)"
    ),
    "rollup_conversation_totals": (
        f"(SELECT {_CONVERSATION_COLUMNS} FROM rollup_conversation_totals FINAL UNION ALL "
        f"SELECT {_CONVERSATION_COLUMNS} FROM rollup_session_totals FINAL)"
    ),
    # Read with an alias (``FROM ... AS c``), which ClickHouse puts before FINAL: a subquery.
    "rollup_latency_days": "(SELECT * FROM rollup_latency_days FINAL)",
}

READ_SETTINGS = {"join_use_nulls": 1, "prefer_column_name_to_alias": 1}

# Turn rows from events (see the DuckDB rollup ``rollup_turns``): the conversation is its id, else
# the user; a reply the bot marks as failed carries properties {"failed": true}.
_MARKED_FAILED = (
    "(properties IS NOT NULL AND position(properties, 'failed') > 0 "
    "AND JSONExtractRaw(properties, 'failed') = 'true')"
)
_TURN_EVENT = (
    "coalesce(bot, '') AS bot, cityHash64(coalesce(concat('c:', conversation_id), concat('u:', user_id))) "
    "AS key, ts, channel, coalesce(kind = 'message' AND direction = 'in', 0) AS inbound, "
    f"kind = 'error' OR (kind = 'message' AND direction = 'out' AND {_MARKED_FAILED}) AS bad, "
    f"kind = 'message' AND direction = 'out' AND NOT {_MARKED_FAILED} AS answered"
)
_TURN_EVENT_WHERE = "kind IN ('message', 'error') AND (conversation_id IS NOT NULL OR user_id IS NOT NULL)"


def parameter_type(value: Any) -> str:
    """The ClickHouse type a bound value is declared with."""
    if isinstance(value, bool):
        return "Bool"
    if isinstance(value, int):
        return "Int64"
    if isinstance(value, float):
        return "Float64"
    if isinstance(value, datetime):
        return "DateTime64(6, 'UTC')"
    if isinstance(value, date):
        return "Date"
    if isinstance(value, (list, tuple)):
        inner = parameter_type(value[0]) if value else "String"
        return f"Array({inner})"
    return "String"


class ClickHouseDialect(DuckDBDialect):
    name = "clickhouse"
    latency_quantiles = LATENCY_QUANTILES

    def placeholder(self, name: str, value: Any) -> str:
        return f"{{{name}:{parameter_type(value)}}}"

    def timestamp(self, expr: str) -> str:
        return f"toDateTime64({expr}, 6, 'UTC')"

    def date(self, expr: str) -> str:
        return f"toDate({expr})"

    def truncate(self, unit: str, expr: str) -> str:
        value = self.timestamp(expr)
        if unit == "hour":
            return f"toStartOfHour({value})"
        if unit == "day":
            return f"toStartOfDay({value})"
        if unit == "week":
            return self.timestamp(f"toMonday({value})")
        if unit == "month":
            return self.timestamp(f"toStartOfMonth({value})")
        raise ValueError(f"unit {unit!r}: expected hour, day, week or month")

    def seconds_between(self, start: str, end: str) -> str:
        return f"(toUnixTimestamp64Micro({end}) - toUnixTimestamp64Micro({start})) / 1e6"

    def within_seconds(self, start: str, end: str, seconds: int) -> str:
        return f"dateDiff('microsecond', {start}, {end}) <= {int(seconds) * 1_000_000}"

    def at_least_days(self, start: str, end: str, days: int) -> str:
        return f"dateDiff('microsecond', {start}, {end}) >= {int(days) * 86_400_000_000}"

    def days_between(self, start: str, end: str) -> str:
        return f"dateDiff('day', {start}, {end})"

    def plus_days(self, expr: str, days: str) -> str:
        return f"{expr} + toIntervalDay({days})"

    def quantiles(self, expr: str, fractions: Sequence[float]) -> str:
        return f"quantilesExactInclusive({', '.join(repr(float(f)) for f in fractions)})({expr})"

    def count_distinct(self, *exprs: str) -> str:
        # Rows where any of them is null are left out, as DuckDB leaves out a null text key.
        return f"uniqExact({', '.join(exprs)})"

    def previous(self, expr: str, window: str) -> str:
        # lag() would give the type's default before the first row; lagInFrame of a nullable, null.
        return f"lagInFrame(toNullable({expr})) OVER ({window})"

    def count_if(self, cond: str) -> str:
        return f"countIf({cond})"

    def sum_if(self, expr: str, cond: str) -> str:
        return f"sumIf({expr}, {cond})"

    def any_if(self, expr: str, cond: str) -> str:
        return f"anyIf({expr}, {cond})"

    def bool_or(self, expr: str) -> str:
        return f"max({expr})"

    def mode(self, expr: str) -> str:
        # Exact: each distinct value counted over the group's values, the most frequent first.
        values = f"groupArray({expr})"
        distinct = f"arrayDistinct({values})"
        counts = f"arrayMap(v -> countEqual({values}, v), {distinct})"
        ranked = f"arraySort((v, c) -> (-c, v), {distinct}, {counts})"
        return f"if(empty({values}), NULL, {ranked}[1])"

    def arg_max(self, expr: str, by: str) -> str:
        return f"argMax({expr}, {by})"

    def starts_with(self, expr: str, prefix: str) -> str:
        return f"startsWith({expr}, {prefix})"

    def in_list(self, expr: str, values: str) -> str:
        return f"{expr} IN {values}"

    def date_in_list(self, expr: str, values: str) -> str:
        return f"{expr} IN {values}"

    def list_position(self, values: Sequence[str], expr: str) -> str:
        listed = ", ".join("'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'" for v in values)
        return f"nullIf(indexOf([{listed}], {expr}), 0)"  # not there: null, as in DuckDB

    def concat(self, *parts: str) -> str:
        return f"concat({', '.join(parts)})"

    def to_text(self, expr: str) -> str:
        return f"toString({expr})"

    def to_int(self, expr: str) -> str:
        # Rounded half to even, as DuckDB's CAST (toInt64 alone truncates).
        return f"toInt64(roundBankers({expr}))"

    def json_text(self, column: str, key: str) -> str:
        quoted = "'" + key.replace("\\", "\\\\").replace("'", "\\'") + "'"
        kind = f"JSONType({column}, {quoted})"
        return (
            f"multiIf({kind} = 'String', JSONExtractString({column}, {quoted}), {kind} = 'Null', NULL, "
            f"JSONExtractRaw({column}, {quoted}))"
        )

    def json_number(self, column: str, key: str) -> str:
        return f"toFloat64OrNull({self.json_text(column, key)})"

    def turn_rows(self, start: str) -> str:
        # Only conversations with an error or a reply marked failed since the start are walked; an
        # inbound message opens a turn, and what follows it in time (an inbound message first among
        # equal times, and among those the greater channel last) belongs to it. Each
        # conversation's events are sorted as one array and its turns numbered by a running count of
        # inbound messages: the same as DuckDB's window function, and many times faster in ClickHouse
        # than a window over every event.
        return f"""
            SELECT bot, key, minIf(e.1, e.2 = 1) AS ts, anyIf(e.5, e.2 = 1) AS channel, max(e.1) AS last_ts,
                   max(e.3) AS bad, max(e.4) AS answered
            FROM (
                SELECT bot, key,
                       arraySort(
                           x -> (x.1, -toInt16(x.2), isNotNull(x.5), ifNull(x.5, '')),
                           groupArray((ts, inbound, bad, answered, toNullable(toString(channel))))
                       ) AS es,
                       arrayCumSum(arrayMap(x -> x.2, es)) AS turns
                FROM (SELECT {_TURN_EVENT} FROM events WHERE {_TURN_EVENT_WHERE} AND ts >= {start})
                GROUP BY bot, key HAVING max(bad) = 1
            ) ARRAY JOIN es AS e, turns AS turn
            WHERE turn > 0
            GROUP BY bot, key, turn
        """

    def _firsts_src(self, plan: Plan, q: Query, metric: Metric, p: Params, bots: list[str]) -> str:
        # Each user's first inbound message, kept by a view: a row per user, where the per-day
        # rollup merged at read time holds one per user and day. Not FINAL: every reader takes the
        # minimum per user again.
        if plan.source == "events":
            return super()._firsts_src(plan, q, metric, p, bots)
        return (
            "SELECT bot, user_id, first_in FROM rollup_user_firsts WHERE 1"
            + "".join(f" AND {c}" for c in bots)
        )

    def conversation_keys(self, q: Query, p: Params, window: bool, extra: Iterable[str] = ()) -> str:
        """Messages with their conversation key (as the printer's): the bot's id, or a session per
        user, numbered by sorting each user's messages as one array and counting the gaps longer
        than the session gap (ClickHouse's window functions were many times slower here)."""
        conds = ["kind = 'message'", "(conversation_id IS NOT NULL OR user_id IS NOT NULL)"]
        conds += self.conditions(q, q.definition, p, kinds=False)
        if window:
            conds.append(self.span("ts", q.start, q.end, p))
        names = ["ts", *extra]
        cols = ", ".join(["coalesce(bot, '') AS bot", "user_id", "conversation_id", *names])
        base = f"SELECT {cols} FROM events WHERE {' AND '.join(conds)}"
        fields = ", ".join(f"m.{i + 1} AS {name}" for i, name in enumerate(names))
        gap_us = int(q.session_gap_s) * 1_000_000
        return f"""
            SELECT bot, user_id, conversation_id, {", ".join(names)},
                   concat('c:', conversation_id) AS conversation
            FROM ({base}) WHERE conversation_id IS NOT NULL
            UNION ALL
            SELECT bot, user_id, NULL AS conversation_id, {fields},
                   concat('s:', user_id, ':', toString(n)) AS conversation
            FROM (
                SELECT bot, user_id, arraySort(x -> x.1, groupArray(tuple({", ".join(names)}))) AS ms,
                       arrayDifference(arrayMap(x -> toUnixTimestamp64Micro(x.1), ms)) AS gaps,
                       arrayCumSum(
                           arrayMap((g, i) -> toUInt8(i = 1 OR g > {gap_us}), gaps, arrayEnumerate(gaps))
                       ) AS ns
                FROM ({base}) WHERE conversation_id IS NULL GROUP BY bot, user_id
            ) ARRAY JOIN ms AS m, ns AS n
        """

    # -- ClickHouse's own -----------------------------------------------------------------------

    def table(self, name: str) -> str:
        # Rows of one key are merged in the background: FINAL merges them at read time.
        if name in _READ_AS:
            return _READ_AS[name]
        return f"{name} FINAL" if name in _MERGED_ON_READ else name

    def session_gap(self) -> Printed:
        # The stored gap only while the sessions hold every message the view counted for them: a
        # fold that was lost (see upkeep.py) sends readers to the events, never to wrong figures.
        points = "(SELECT sum(messages) FROM rollup_session_points)"
        return Printed(
            "SELECT argMax(value, updated) FROM botmeter_meta WHERE key = 'session_gap_s' HAVING count() > 0 "
            f"AND {points} = (SELECT sum(messages) FROM rollup_session_totals FINAL) "
            f"AND {points} = (SELECT sum(messages) FROM rollup_session_days FINAL)",
            {},
        )

    def failed_turns(self) -> str:
        # The writer keeps every failed turn in rollup_turns, each conversation's latest included
        # (turns.py): that small table alone, a key's newest row, deleted ones left out.
        return "(SELECT bot, ts, channel FROM rollup_turns FINAL WHERE bad)"

    def turns_whole(self) -> Printed | None:
        # Every turn event the views counted was folded into the kept turns (see turns.py).
        return Printed(
            "SELECT (SELECT sum(events) FROM rollup_turn_points) "
            "= (SELECT sum(events) FROM rollup_turn_folded)",
            {},
        )

    def finish(self, sql: str) -> str:
        """The statement as ClickHouse runs it: the unpriced events of a rollup unsigned."""
        # Never negative, and added to counts over events: ClickHouse finds no common type for a
        # signed and an unsigned 64-bit integer (events - priced is signed).
        sql = sql.replace("events - priced", "toUInt64(events - priced)")
        return sql
