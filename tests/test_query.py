"""Query validation: bad input is refused with the field named and the valid choices listed, and
nothing a user types reaches SQL as text."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from botmeter import Meter
from botmeter.analyse import QueryError, Reader, make_query
from botmeter.exceptions import BotmeterError
from conftest import scalar

NOW = datetime(2026, 3, 18, 15, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("metric", "kw", "names"),
    [
        ("no_such_metric", {}, ["metric:", "'no_such_metric'", "cost_usd", "latency_ms", "retention"]),
        ("cost_usd", {"by": "stage"}, ["by:", "'stage'", "provider", "model", "kind"]),
        ("cost_usd", {"by": "model,model"}, ["by:", "twice"]),
        ("cost_usd", {"filters": {"stage": "llm"}}, ["filter:", "'stage'", "provider"]),
        ("cost_usd", {"filters": {"model": []}}, ["filter:", "model"]),
        ("active_users", {"by": "user"}, ["by:", "'user'", "channel", "country", "bot"]),
        ("latency_ms", {"stat": "p42"}, ["stat:", "'p42'", "p50", "p95", "p99", "avg", "max", "count"]),
        ("cost_usd", {"stat": "p95"}, ["stat:", "'p95'", "sum"]),
        ("cost_usd", {"interval": "fortnight"}, ["interval:", "'fortnight'", "hour", "day", "week", "month"]),
        ("cost_usd", {"start": "2026-03-10", "end": "2026-03-10"}, ["start:", "2026-03-10", "not before"]),
        ("cost_usd", {"start": "2026-03-11", "end": "2026-03-10"}, ["start:", "not before end"]),
        ("cost_usd", {"start": "10/03/2026", "end": "2026-03-12"}, ["start:", "'10/03/2026'", "ISO"]),
        ("cost_usd", {"start": "2026-03-01", "end": "yesterday"}, ["end:", "'yesterday'", "ISO"]),
        ("cost_usd", {"days": 0}, ["days:", "0", "from 1"]),
        ("cost_usd", {"days": -3}, ["days:", "-3"]),
        ("cost_usd", {"days": True}, ["days:", "True"]),
        ("cost_usd", {"days": 2.5}, ["days:", "2.5"]),
        ("cost_usd", {"days": 7, "start": "2026-03-01", "end": "2026-03-05"}, ["days:", "not both"]),
        ("conversations", {"session_gap_minutes": 0}, ["session_gap_minutes:", "0"]),
        ("retention", {"interval": "hour"}, ["interval:", "retention", "'hour'"]),
        ("retention", {"interval": None}, ["interval:", "retention", "'none'"]),
        ("retention", {"interval": "day", "periods": 0}, ["periods:", "0"]),
    ],
)
def test_bad_input_names_the_field_and_the_choices(metric: str, kw: dict, names: list[str]) -> None:
    with pytest.raises(QueryError) as caught:
        make_query(metric, now=NOW, **kw)
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, BotmeterError)
    message = str(caught.value)
    for name in names:
        assert name in message, (name, message)


def test_valid_input_is_accepted() -> None:
    q = make_query("latency_ms", days=3, interval="none", by="stage, model", stat="p50,value",
                   filters={"stage": ["llm", "total"]}, now=NOW)
    assert (q.start, q.end) == (datetime(2026, 3, 16, tzinfo=UTC), NOW)
    assert (q.interval, q.by, q.stats) == (None, ("stage", "model"), ("p50", "p95"))
    assert q.filters == (("stage", ("llm", "total")),)
    q = make_query("messages", start="2026-03-01T10:30Z", end="2026-03-02T12:00:00+02:00")
    assert q.start == datetime(2026, 3, 1, 10, 30, tzinfo=UTC)
    assert q.end == datetime(2026, 3, 2, 10, tzinfo=UTC)


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory, clean_env_for_module: None) -> Path:
    path = tmp_path_factory.mktemp("query") / "q.duckdb"
    meter = Meter(bot="b", store=f"duckdb://{path}", hash_users=False, flush_interval=0.05)
    for channel in ("sms", "web", "x' OR '1'='1"):
        meter.track_message(direction="in", user="u1", channel=channel, ts=NOW.timestamp() - 3600)
    meter.track_llm_call(provider="openai", model="gpt-4o", input_tokens=10, ts=NOW.timestamp() - 60)
    assert meter.flush()
    meter.close()
    return path


@pytest.fixture(scope="module")
def reader(store_path: Path) -> Reader:
    return Reader(f"duckdb://{store_path}", now=NOW)


HOSTILE = ["x' OR '1'='1", "'; DROP TABLE events; --", "web') OR (1=1", "%", "*", "$p0", "\\"]


@pytest.mark.parametrize("use_rollups", [True, False], ids=["rollups", "events"])
@pytest.mark.parametrize("value", HOSTILE)
def test_filter_values_are_bound_as_parameters(reader: Reader, store_path: Path, value: str,
                                               use_rollups: bool) -> None:
    reader = Reader(reader.store, now=NOW, use_rollups=use_rollups)
    for metric, by in (("messages", "channel"), ("llm_calls", "model"), ("cost_usd", "channel"),
                       ("active_users", "channel"), ("conversations", "channel")):
        if value == HOSTILE[0] and by == "channel":
            continue  # that one is a stored channel: see below
        result = reader.query(metric, days=2, interval=None, by=by, filters={by: value})
        assert result.rows == [], (metric, value)
        total = reader.query(metric, days=2, interval=None, filters={by: value})
        assert total.rows[0][total.stats[0]] == 0, (metric, value)
    # A stored value that looks like SQL is matched as text, exactly.
    rows = reader.query("messages", days=2, interval=None, by="channel", filters={"channel": HOSTILE[0]}).rows
    assert [(r["channel"], r["count"]) for r in rows] == [("x' OR '1'='1", 1)]
    assert scalar(store_path, "SELECT count(*) FROM events") == 4


@pytest.mark.parametrize(
    "by",
    [
        "channel; DROP TABLE events",
        "channel) FROM events; --",
        "1=1",
        "channel AS model",
        ["channel", "model, kind"],
        "user_id",  # a stored column, not a dimension name
        "CHANNEL",
    ],
)
def test_identifiers_cannot_be_injected(reader: Reader, store_path: Path, by: str | list[str]) -> None:
    with pytest.raises(QueryError, match="by:"):
        reader.query("messages", days=2, by=by)
    for bad in ({"channel; DROP TABLE events": "x"}, {"channel = channel OR 1=1 --": "x"}):
        with pytest.raises(QueryError, match="filter:"):
            reader.query("messages", days=2, filters=bad)
    with pytest.raises(QueryError, match="metric:"):
        reader.query("messages; DROP TABLE events", days=2)
    with pytest.raises(QueryError, match="stat:"):
        reader.query("latency_ms", days=2, stat="p95) FROM events; --")
    with pytest.raises(QueryError, match="interval:"):
        reader.query("messages", days=2, interval="day'); DROP TABLE events; --")
    assert scalar(store_path, "SELECT count(*) FROM events") == 4
