"""Each ClickHouse spelling against DuckDB's on the same rows: the two dialects' SQL for one
construct must give the same values (percentiles interpolated alike, distinct counts exact, nulls
where DuckDB has them). The rows hold ties, nulls, a single value, microseconds and JSON of
several shapes; the ClickHouse side runs on the embedded engine (chdb) through clickhouse-connect.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest

from botmeter.analyse.catalogue import PERCENTILES
from botmeter.backends.clickhouse.dialect import READ_SETTINGS, ClickHouseDialect
from botmeter.backends.duckdb.dialect import DuckDBDialect
from botmeter.backends.sql.printer import Params, SQLPrinter

clickhouse_connect = pytest.importorskip("clickhouse_connect")
pytest.importorskip("chdb")

T = datetime
ROWS: list[tuple[str, float | None, str | None, datetime, str | None]] = [
    # g, x, s, t, j
    ("a", 80.0, "info", T(2026, 3, 8, 23, 59, 59, 999999), '{"code": "E1", "failed": true}'),
    ("a", 120.0, "error", T(2026, 3, 9, 0, 0, 0, 1), '{"code": 42}'),
    ("a", 120.0, "error", T(2026, 3, 9, 0, 1, 0), '{"code": null}'),
    ("a", 120.0, "warning", T(2026, 3, 9, 0, 1, 0, 500000), "{}"),
    ("a", 250.0, None, T(2026, 3, 9, 0, 2, 1), None),
    ("a", 950.0, "critical", T(2026, 3, 16, 12, 0), '{"time_to_first_token_ms": 37.5}'),
    ("a", None, "error", T(2026, 3, 31, 23, 0), '{"code": "E1"}'),
    ("b", 333.0, "debug", T(2026, 2, 28, 10, 30), '{"failed": false}'),
    ("c", 100.0, "info", T(2026, 1, 1, 0, 0), '{"code": "x"}'),
    ("c", 300.0, "info", T(2026, 1, 1, 0, 30), '{"time_to_first_token_ms": 12}'),
    ("c", 3.5, "warning", T(2026, 1, 1, 0, 45), '{"time_to_first_token_ms": "7"}'),  # x / 7 = 0.5
    ("c", 10.5, "warning", T(2026, 1, 1, 0, 50), None),  # x / 7 = 1.5
]
SEVERITIES = ("debug", "info", "warning", "error", "critical")


class Engines:
    def __init__(self, tmp: Path) -> None:
        self.duck = duckdb.connect()
        self.duck.execute("SET TimeZone = 'UTC'")
        self.duck.execute("CREATE TABLE d (g VARCHAR, x DOUBLE, s VARCHAR, t TIMESTAMP, j VARCHAR)")
        self.duck.executemany("INSERT INTO d VALUES (?, ?, ?, ?, ?)", ROWS)
        self.ch = clickhouse_connect.get_client(interface="chdb", path=str(tmp / "spellings"))
        self.ch.command(
            "CREATE TABLE IF NOT EXISTS d (g String, x Nullable(Float64), "
            "s LowCardinality(Nullable(String)), t DateTime64(6, 'UTC'), j Nullable(String)) "
            "ENGINE = MergeTree ORDER BY (g, t)"
        )
        self.ch.command("TRUNCATE TABLE d")
        self.ch.insert("d", [list(r) for r in ROWS], column_names=["g", "x", "s", "t", "j"])
        self.printers = {"duckdb": DuckDBDialect(), "clickhouse": ClickHouseDialect()}

    def run(self, build: Callable[[SQLPrinter, Params], str]) -> dict[str, list[tuple]]:
        out = {}
        for name, printer in self.printers.items():
            p = printer.params()
            sql = build(printer, p)
            if name == "duckdb":
                rows = self.duck.execute(sql, p.values).fetchall()
            else:
                sql = printer.finish(sql)  # type: ignore[attr-defined]
                rows = [
                    tuple(r)
                    for r in self.ch.query(sql, parameters=p.values, settings=READ_SETTINGS).result_rows
                ]
            out[name] = rows
        return out

    def close(self) -> None:
        self.duck.close()
        self.ch.close()


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> Any:
    e = Engines(tmp_path_factory.mktemp("dialect"))
    yield e
    e.close()


def same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is not None and b is not None and bool(a) == bool(b)
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return a is None and b is None
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-9)
    if isinstance(a, datetime) and isinstance(b, datetime):
        return a.replace(tzinfo=None) == b.replace(tzinfo=None)
    return a == b


def per_group(expr: Callable[[SQLPrinter, Params], str]) -> Callable[[SQLPrinter, Params], str]:
    return lambda pr, p: f"SELECT g, {expr(pr, p)} AS v FROM d GROUP BY g ORDER BY g"


def per_row(expr: Callable[[SQLPrinter, Params], str]) -> Callable[[SQLPrinter, Params], str]:
    return lambda pr, p: f"SELECT g, t, {expr(pr, p)} AS v FROM d ORDER BY g, t"


FRACTIONS = sorted(PERCENTILES.values())
WINDOW = "PARTITION BY g ORDER BY t"
CASES: dict[str, Callable[[SQLPrinter, Params], str]] = {
    "placeholder": lambda pr, p: (
        f"SELECT {p.add('a')} AS s, {p.add(3)} AS n, {p.add(2.5)} AS x, "
        f"{p.time(T(2026, 3, 9, 0, 0, 0, 1))} AS t, "
        f"{pr.date(p.add(date(2026, 3, 9)))} AS d"
    ),
    "timestamp": per_row(lambda pr, p: pr.timestamp(pr.date("t"))),
    "date": per_row(lambda pr, p: pr.date("t")),
    "truncate-hour": per_row(lambda pr, p: pr.truncate("hour", "t")),
    "truncate-day": per_row(lambda pr, p: pr.truncate("day", "t")),
    "truncate-week": per_row(lambda pr, p: pr.truncate("week", "t")),
    "truncate-month": per_row(lambda pr, p: pr.truncate("month", "t")),
    "truncate-a-bound-time": lambda pr, p: (
        f"SELECT {pr.truncate('week', pr.timestamp(p.time(T(2026, 3, 8, 5))))}"
    ),
    "seconds_between": per_group(lambda pr, p: pr.seconds_between("min(t)", "max(t)")),
    "previous": per_row(lambda pr, p: pr.previous("t", WINDOW)),
    "within_seconds-after-previous": per_row(
        lambda pr, p: pr.within_seconds(pr.previous("t", WINDOW), "t", 60)
    ),
    "at_least_days-after-lag": lambda pr, p: (
        f"SELECT g, t, {pr.at_least_days('prev', 't', 7)} AS v "
        f"FROM (SELECT g, t, {pr.previous('t', WINDOW)} AS prev FROM d) ORDER BY g, t"
    ),
    "days_between": per_group(
        lambda pr, p: pr.days_between(pr.truncate("day", "min(t)"), pr.truncate("day", "max(t)"))
    ),
    "plus_days": per_row(lambda pr, p: pr.plus_days(pr.truncate("day", "t"), "3 * 7")),
    "quantiles": per_group(lambda pr, p: pr.quantiles("x", FRACTIONS)),
    "quantiles-of-one-value": lambda pr, p: f"SELECT {pr.quantiles('x', [0.5, 0.99])} FROM d WHERE g = 'b'",
    "item": per_group(lambda pr, p: pr.item(pr.quantiles("x", [0.25, 0.75]), 2)),
    "summary_columns": lambda pr, p: (
        f"SELECT g, {pr.summary_columns('x', ('p50', 'p95'))} FROM d GROUP BY g ORDER BY g"
    ),
    "count_distinct": per_group(lambda pr, p: pr.count_distinct("s")),
    "count_distinct-of-two": per_group(
        lambda pr, p: pr.count_distinct("s", pr.to_text(pr.to_int("x / 100")))
    ),
    "count_if": per_group(lambda pr, p: pr.count_if("x > 100")),
    "sum_if": per_group(lambda pr, p: pr.sum_if("x", "x >= 100")),
    "any_if": per_group(lambda pr, p: pr.any_if("s", "x = 950")),
    "bool_or": per_group(lambda pr, p: pr.bool_or("x > 300")),
    "mode": per_group(lambda pr, p: pr.mode("s")),
    "arg_max": per_group(lambda pr, p: pr.arg_max("s", "x")),
    "arg_max-by-rank": per_group(lambda pr, p: pr.arg_max("s", pr.list_position(SEVERITIES, "s"))),
    "starts_with": per_row(lambda pr, p: pr.starts_with("s", p.add("err"))),
    "in_list": per_row(lambda pr, p: pr.in_list("s", p.add(["info", "critical"]))),
    "date_in_list": per_row(
        lambda pr, p: pr.date_in_list(pr.date("t"), p.add([date(2026, 3, 9), date(2026, 1, 1)]))
    ),
    "list_position": per_row(lambda pr, p: pr.list_position(SEVERITIES, "s")),
    "concat": per_row(lambda pr, p: pr.concat("'c:'", "s", "'|'", pr.to_text("g"))),
    "to_int": per_row(lambda pr, p: pr.to_int("x / 7")),
    "to_text": per_row(lambda pr, p: pr.concat(pr.to_text(pr.to_int("x / 7")), "'|'", pr.to_text("g"))),
    "json_text": per_row(lambda pr, p: pr.json_text("j", "code")),
    "json_text-bool": per_row(lambda pr, p: pr.json_text("j", "failed")),
    "json_number": per_row(lambda pr, p: pr.json_number("j", "time_to_first_token_ms")),
    "measure": per_row(
        lambda pr, p: pr.measure("properties.time_to_first_token_ms").replace("properties", "j")
    ),
    "nullif_empty": per_row(lambda pr, p: pr.nullif_empty("coalesce(s, '')")),
    "group_all": lambda pr, p: f"SELECT g, count(*) AS n FROM d {pr.group_all()} ORDER BY g",
}


@pytest.mark.parametrize("case", CASES)
def test_clickhouse_spelling_gives_what_duckdb_gives(engines: Engines, case: str) -> None:
    got = engines.run(CASES[case])
    assert got["duckdb"], "the case selects rows"
    assert same(got["duckdb"], got["clickhouse"]), got


def test_every_spelling_is_compared() -> None:
    spellings = {
        name
        for name, value in vars(SQLPrinter).items()
        if callable(value) and not name.startswith("_") and name in vars(ClickHouseDialect)
    }
    compared = {case.split("-")[0] for case in CASES}
    # Whole statements, which the metric oracle suite checks on chdb: turn_rows (failed replies)
    # and conversation_keys (conversations and sessions, a bridged one and exactly the gap); and
    # table, the rollups read FINAL (a day's users counted as rows, once each before merges); and
    # session_gap, the stored gap while the kept sessions add up, turns_whole, the kept turns
    # while they hold every event, and failed_turns, the failed ones (test_metrics.py, on chdb).
    whole = {
        "turn_rows",
        "conversation_keys",
        "table",
        "finish",
        "session_gap",
        "turns_whole",
        "failed_turns",
    }
    assert spellings - compared <= whole, spellings - compared


def test_percentiles_are_linear_between_the_nearest_values(engines: Engines) -> None:
    # Eight values with ties: R's type 7 over the sorted values, worked out by hand.
    got = engines.run(lambda pr, p: f"SELECT {pr.quantiles('x', [0.5, 0.95])} FROM d WHERE g = 'a'")
    # a's values: 80, 120, 120, 120, 250, 950 (a null aside): p50 at 2.5 -> 120; p95 at 4.75 -> 775.
    assert got["clickhouse"][0][0] == pytest.approx([120.0, 775.0])
    assert got["duckdb"][0][0] == pytest.approx([120.0, 775.0])
