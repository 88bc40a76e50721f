"""The planner chooses the source of each part of a query from what a backend keeps; the dialect
prints it. The figures themselves are checked against plain Python in test_metrics.py (on both read
paths); here: which parts a plan has, that a shared scan is read once, and the dialect interface."""

from __future__ import annotations

import inspect
import statistics
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from botmeter import Meter
from botmeter.analyse import Reader
from botmeter.analyse.catalogue import CATALOGUE
from botmeter.analyse.plan import Keeps, Part, plan, split_days, whole_days
from botmeter.analyse.query import make_query
from botmeter.backends.duckdb.dialect import DuckDBDialect
from botmeter.backends.sql.printer import SQLPrinter

NOW = datetime(2026, 5, 20, 15, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def at(day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2026, 5, day, hour, minute, tzinfo=UTC)


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory, clean_env_for_module: None) -> str:
    url = f"duckdb://{tmp_path_factory.mktemp('plan')}/p.duckdb"
    meter = Meter(bot="b", store=url, hash_users=False)
    try:
        for day in range(10, 20):
            for i in range(6):
                ts = at(day, 8 + i)
                meter.track_message(direction="in", text="hi", user=f"u{i}", conversation=f"c{day}{i}", ts=ts)
                meter.track_timing("reply", 100.0 + 10 * i + day, ts=ts)
                meter.track_timing("llm", 50.0 + i, ts=ts)
                meter.track_llm_call(provider="openai", model="gpt-4o", input_tokens=10, output_tokens=5,
                                     latency_ms=300.0 + i, ts=ts)
        assert meter.flush()
    finally:
        meter.close()
    return url


def test_events_only_plans_read_only_events(url: str) -> None:
    engine = Reader(url, now=NOW, use_rollups=False).engine
    assert engine.keeps == Keeps()
    for name, metric in CATALOGUE.items():
        if metric.aggregation == "ratio":
            continue
        interval = "week" if metric.aggregation == "retention" else "day"
        with engine.session():
            chosen = engine.plan(make_query(name, days=7, now=NOW, interval=interval))
        assert chosen.sources() and set(chosen.sources()) == {"events"}, name
        assert chosen.source == "events"


def test_hourly_rollup_with_event_edges(url: str) -> None:
    engine = Reader(url, now=NOW).engine
    q = make_query("messages", start=at(11, 10, 30), end=at(13, 14, 15), now=NOW)
    with engine.session():
        chosen = engine.plan(q)
    assert chosen.parts == (
        Part("hourly", ((at(11, 11), at(13, 14)),)),
        Part("events", ((at(11, 10, 30), at(11, 11)),)),
        Part("events", ((at(13, 14), at(13, 14, 15)),)),
    )
    assert chosen.source == "rollups"
    # A dimension the hourly rollup is not keyed by: the events answer.
    with engine.session():
        assert engine.plan(make_query("messages", days=3, by="user", now=NOW)).sources() == ["events"]


@dataclass
class StoreFacts:
    """Facts as values (the planner is a pure function of the query, the keeps and these)."""

    whole: set[datetime]
    bots: int = 1

    def day_within(self, day: datetime, start: datetime, end: datetime) -> bool:
        return day in self.whole

    def one_bot(self) -> bool:
        return self.bots <= 1

    def session_gap_s(self) -> int:
        return 1800

    def turns_whole(self) -> bool:
        return True

    def fresh_latency_days(self, kind: str, lo: datetime, hi: datetime, bot: str | None) -> list[datetime]:
        return []


def test_edge_days_are_whole_when_the_store_says_so() -> None:
    start, end = at(11, 10), at(14, 9)
    assert whole_days(start, end) == (at(12), at(14), [(start, at(12)), (at(14), end)])
    assert split_days(start, end, StoreFacts(whole=set())) == whole_days(start, end)
    # The last day's events all lie before the end (a window ending now): read from the day rollup.
    assert split_days(start, end, StoreFacts(whole={at(14)})) == (at(12), at(15), [(start, at(12))])
    keeps = Keeps(user_days=True, hourly=frozenset({"bot"}))
    q = make_query("active_users", start=start, end=end, now=NOW)
    chosen = plan(q, keeps, StoreFacts(whole={at(11), at(14)}))
    assert chosen.parts == (Part("user_days", ((at(11), at(15)),)),)
    assert chosen.combine == "rows_distinct"  # one bot, whole days: a day's rows are distinct users
    assert plan(q, keeps, StoreFacts(whole={at(11), at(14)}, bots=2)).combine == "distinct"


def test_one_scan_answers_the_reply_latency_and_the_table_by_stage(url: str) -> None:
    window = {"start": at(10), "end": at(20), "interval": None}
    asks = (
        ("reply_latency_s", {"stat": "p50,p95,p99"}),
        ("latency_ms", {"by": "stage", "stat": "p50,p95,p99,count"}),
        ("llm_latency_ms", {"by": "provider,model", "stat": "p50,p95,count"}),
    )
    alone = [Reader(url, now=NOW).query(m, **window, **kw).rows for m, kw in asks]
    reader = Reader(url, now=NOW)
    statements: list[str] = []
    execute = reader.engine._execute

    def counted(sql: str, params: dict) -> tuple:
        statements.append(sql)
        return execute(sql, params)

    reader.engine._execute = counted
    with reader.session():
        together = [reader.query(m, **window, **kw).rows for m, kw in asks]
    assert together == alone
    # The reply latency is a row of the table by stage: one statement; LLM calls by model, another.
    assert len(statements) == 2, statements
    assert {r["stage"] for r in together[1]} == {"reply", "llm"}
    assert together[2][0]["count"] == 60 and together[2][0]["model"] == "gpt-4o"
    replies = [100.0 + 10 * i + day for day in range(10, 20) for i in range(6)]
    assert together[0][0]["p50"] == pytest.approx(statistics.median(replies) / 1000)


def test_the_dialect_spells_everything_the_printer_asks() -> None:
    # The spellings a new SQL dialect writes: SQLPrinter's methods that a dialect must override.
    spellings = [
        name
        for name, fn in inspect.getmembers(SQLPrinter, inspect.isfunction)
        if "raise NotImplementedError" in inspect.getsource(fn)
    ]
    assert len(spellings) >= 25
    for name in spellings:
        assert getattr(DuckDBDialect, name) is not getattr(SQLPrinter, name), name
    printer = DuckDBDialect()
    assert printer.quantiles("x", [0.5, 0.95]) == "quantile_cont(x, [0.5, 0.95])"
    assert printer.placeholder("p0", 1) == "$p0"
