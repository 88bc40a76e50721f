"""DuckDB's spellings of the SQL every SQL backend prints (``backends/sql/printer.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..sql.printer import SQLPrinter
from .rollups import LATENCY_QUANTILES, TURN_EVENT, TURN_EVENT_WHERE, TURNS_FROM_EVENTS


class DuckDBDialect(SQLPrinter):
    name = "duckdb"
    latency_quantiles = LATENCY_QUANTILES

    def placeholder(self, name: str, value: Any) -> str:
        return f"${name}"

    def timestamp(self, expr: str) -> str:
        return f"CAST({expr} AS TIMESTAMP)"

    def date(self, expr: str) -> str:
        return f"CAST({expr} AS DATE)"

    def truncate(self, unit: str, expr: str) -> str:
        return f"date_trunc('{unit}', CAST({expr} AS TIMESTAMP))"

    def seconds_between(self, start: str, end: str) -> str:
        return f"epoch({end} - {start})"

    def within_seconds(self, start: str, end: str, seconds: int) -> str:
        return f"{end} - {start} <= INTERVAL {int(seconds)} SECOND"

    def at_least_days(self, start: str, end: str, days: int) -> str:
        return f"{end} - {start} >= INTERVAL {int(days)} DAY"

    def days_between(self, start: str, end: str) -> str:
        return f"datediff('day', {start}, {end})"

    def plus_days(self, expr: str, days: str) -> str:
        return f"{expr} + INTERVAL ({days}) DAY"

    def quantiles(self, expr: str, fractions: Sequence[float]) -> str:
        return f"quantile_cont({expr}, {list(fractions)})"

    def item(self, array: str, index: int) -> str:
        return f"{array}[{int(index)}]"

    def count_distinct(self, *exprs: str) -> str:
        return f"count(DISTINCT {' || chr(0) || '.join(exprs)})"

    def previous(self, expr: str, window: str) -> str:
        return f"lag({expr}) OVER ({window})"

    def count_if(self, cond: str) -> str:
        return f"count(*) FILTER (WHERE {cond})"

    def sum_if(self, expr: str, cond: str) -> str:
        return f"sum({expr}) FILTER (WHERE {cond})"

    def any_if(self, expr: str, cond: str) -> str:
        return f"any_value({expr}) FILTER (WHERE {cond})"

    def bool_or(self, expr: str) -> str:
        return f"bool_or({expr})"

    def mode(self, expr: str) -> str:
        # The most frequent value, the smallest of those tied (DuckDB's own mode() picks any of
        # them, so two engines, or two runs, could name different ones).
        entries = f"map_entries(histogram({expr}))"
        by_count = "lambda e: {'n': -CAST(e.value AS BIGINT), 'v': e.key}"
        ranked = f"list_sort(list_transform({entries}, {by_count}))"
        return f"{ranked}[1].v"

    def arg_max(self, expr: str, by: str) -> str:
        return f"arg_max({expr}, {by})"

    def starts_with(self, expr: str, prefix: str) -> str:
        return f"starts_with({expr}, {prefix})"

    def in_list(self, expr: str, values: str) -> str:
        return f"{expr} IN (SELECT unnest({values}))"

    def date_in_list(self, expr: str, values: str) -> str:
        return f"{expr} IN (SELECT unnest({values}::DATE[]))"

    def list_position(self, values: Sequence[str], expr: str) -> str:
        return f"list_position([{', '.join(repr(v) for v in values)}], {expr})"

    def concat(self, *parts: str) -> str:
        return " || ".join(parts)

    def to_text(self, expr: str) -> str:
        return f"CAST({expr} AS VARCHAR)"

    def to_int(self, expr: str) -> str:
        return f"CAST({expr} AS BIGINT)"

    def json_text(self, column: str, key: str) -> str:
        return f"{column}->>'$.{key}'"

    def json_number(self, column: str, key: str) -> str:
        return f"TRY_CAST({column}->>'$.{key}' AS DOUBLE)"

    def group_all(self) -> str:
        return "GROUP BY ALL"

    def turn_rows(self, start: str) -> str:
        # Only conversations with an error or a reply marked failed since the start are walked.
        src = "(SELECT * FROM rows SEMI JOIN marked USING (bot, key))"
        return f"""
            WITH rows AS (SELECT {TURN_EVENT} FROM events WHERE {TURN_EVENT_WHERE} AND ts >= {start}),
            marked AS (SELECT DISTINCT bot, key FROM rows WHERE bad),
            turns AS ({TURNS_FROM_EVENTS.format(src=src)})
            SELECT * FROM turns AS t (bot, key, ts, channel, last_ts, bad, answered)
        """
