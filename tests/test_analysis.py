"""Summaries, trends, anomalies, forecasts, alerts and the explorer, on stores filled through a real Meter."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from click.testing import CliRunner

from botmeter import Meter
from botmeter.analyse import QueryError, Reader
from botmeter.analyse.alerts import Rules, check
from botmeter.analyse.summary import summarise
from botmeter.analyse.trends import anomalies, month_end_forecast
from botmeter.exceptions import ConfigError
from botmeter.interfaces.cli import main
from botmeter.report.alert_delivery import deliver
from botmeter.report.responses import summary_report, to_markdown, to_text

NOW = datetime(2026, 11, 25, 15, 30, tzinfo=UTC)  # a Wednesday
TODAY = NOW.replace(hour=0, minute=30)


def _meter(url: str) -> Meter:
    return Meter(bot="t", store=url, hash_users=False, flush_interval=0.05)


def _day(offset: int, hour: int = 12) -> datetime:
    return (NOW - timedelta(days=offset)).replace(hour=hour, minute=0, second=0, microsecond=0)


def _traffic(meter: Meter, day: datetime, users: int, *, errors: int = 0, cost_calls: int = 1) -> None:
    for u in range(users):
        ts = day + timedelta(minutes=u)
        meter.track_message(direction="in", user=f"u{u}", ts=ts, channel="sms")
        meter.track_message(direction="out", user=f"u{u}", ts=ts + timedelta(seconds=2), channel="sms")
        meter.track_timing("reply", 800.0 + u, user=f"u{u}", ts=ts + timedelta(seconds=2))
    for i in range(cost_calls):
        meter.track_llm_call(
            provider="openai",
            model="gpt-4o-mini",
            input_tokens=100_000,
            output_tokens=1_000,
            user="u0",
            ts=day + timedelta(seconds=30 + i),
            latency_ms=900.0,
        )
    for i in range(errors):
        meter.track_error(
            TimeoutError("upstream took too long"), user=f"u{i}", ts=day + timedelta(seconds=40 + i)
        )


@pytest.fixture
def five_weeks(store_url: str) -> str:
    """35 days of steady traffic with a weekly rhythm (weekends busier), and a spike yesterday."""
    meter = _meter(store_url)
    for offset in range(35, 0, -1):
        day = _day(offset)
        weekend = day.weekday() >= 5
        spike = offset == 1
        _traffic(meter, day, 30 if weekend else 20, errors=8 if spike else 1, cost_calls=40 if spike else 4)
    _traffic(meter, _day(0, hour=9), 20, errors=1, cost_calls=4)
    meter.close()
    return store_url


def test_anomalies_flag_yesterdays_spike_and_respect_the_weekly_rhythm(five_weeks: str) -> None:
    reader = Reader(five_weeks, now=NOW)
    found = anomalies(reader, NOW - timedelta(days=14), NOW)
    metrics = {(a["metric"], a["day"][:10], a["direction"]) for a in found}
    yesterday = f"{_day(1):%Y-%m-%d}"
    assert ("cost_usd", yesterday, "spike") in metrics
    assert ("error_rate", yesterday, "spike") in metrics
    # Busier weekends are the rhythm, not an anomaly: compared with earlier weekends they are normal.
    assert not [a for a in found if a["metric"] == "active_users"]
    cost = next(a for a in found if a["metric"] == "cost_usd")
    assert "previous Tuesdays" in cost["explanation"] and "median" in cost["explanation"]
    # Today is in progress: never flagged as a drop.
    assert all(a["day"][:10] != f"{NOW:%Y-%m-%d}" for a in found)


def test_month_end_forecast_adds_the_recent_daily_rate_for_the_days_left(five_weeks: str) -> None:
    reader = Reader(five_weeks, now=NOW)
    forecast = month_end_forecast(reader, NOW, budget_usd=1.0)
    month_start = NOW.replace(day=1, hour=0, minute=0)
    so_far = reader.query("cost_usd", start=month_start, end=NOW, interval=None).total()
    last7 = reader.query("cost_usd", start=_day(7, 0), end=_day(0, 0), interval=None).total()
    days_left = (datetime(2026, 12, 1, tzinfo=UTC) - NOW).total_seconds() / 86400
    assert forecast["month_to_date_usd"] == pytest.approx(so_far)
    assert forecast["projected_usd"] == pytest.approx(so_far + last7 / 7 * days_left)
    assert forecast["over_budget"] is True
    assert forecast["days_of_data"] == 7


def test_forecast_for_a_young_bot_averages_the_days_it_has(store_url: str) -> None:
    from botmeter.analyse.summary import summarise
    from botmeter.report.responses import render, summary_report

    meter = _meter(store_url)
    for day in (2, 1):  # started two days ago, $1 a day
        meter.track_llm_call(provider="openai", model="gpt-4o-mini", cost_usd=1.0, ts=_day(day))
    meter.close()
    reader = Reader(store_url, now=NOW)
    forecast = month_end_forecast(reader, NOW)
    assert forecast["daily_rate_usd"] == pytest.approx(1.0)  # not 2 / 7
    assert forecast["days_of_data"] == 2 and "2 complete days" in forecast["method"]
    days_left = (datetime(2026, 12, 1, tzinfo=UTC) - NOW).total_seconds() / 86400
    assert forecast["projected_usd"] == pytest.approx(2.0 + days_left)
    text = render(summary_report(summarise(reader, 7, NOW)), "text")
    assert "daily rate $1.00 from 2 days of data" in text


def test_summary_compares_with_the_previous_period_and_says_when_data_is_too_thin(five_weeks: str) -> None:
    reader = Reader(five_weeks, now=NOW)
    s = summarise(reader, 7)
    assert set(s) >= {"period", "costs", "engagement", "errors", "latency", "anomalies", "alerts"}
    assert s["period"]["start"] == f"{_day(6, 0):%Y-%m-%d}T00:00:00Z"
    active = s["engagement"]["active_users"]
    assert active["value"] == 30  # u0..u29 (weekend days have 30 users)
    assert active["change"] == pytest.approx(0.0)
    # 8 errors against a handful before: too few to print a percentage.
    errors = s["errors"]["errors"]
    assert errors["change"] is None and errors["note"] == "too little data to compare"
    assert s["anomalies"], "yesterday's spike is in the period"
    text = to_text(summary_report(s))
    assert "too little data to compare" in text and "Month-end forecast" in text
    assert to_markdown(summary_report(s)).startswith("## botmeter summary: last 7 days")


def test_summary_command_json_keys_and_formats(five_weeks: str, tmp_path: Path) -> None:
    runner = CliRunner()
    out = runner.invoke(main, ["summary", "--days", "7", "--format", "json", "--store", five_weeks])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert list(data)[1:8] == ["period", "costs", "engagement", "errors", "latency", "anomalies", "alerts"]
    assert data["unavailable"] == {}  # the DuckDB store answers everything
    md = runner.invoke(main, ["summary", "--format", "markdown", "--store", five_weeks])
    assert md.exit_code == 0 and "| figure | value | change |" in md.output


def test_query_command_json_rows_and_empty_buckets(store_url: str) -> None:
    meter = _meter(store_url)
    now = datetime.now(UTC)
    two_days_ago = (now - timedelta(days=2)).replace(hour=3, minute=0, second=0, microsecond=0)
    meter.track_llm_call(
        provider="openai",
        model="gpt-4o-mini",
        input_tokens=1000,
        output_tokens=100,
        ts=two_days_ago,
        latency_ms=100.0,
    )
    meter.track_llm_call(
        provider="anthropic",
        model="claude-3-5-haiku-latest",
        input_tokens=1000,
        output_tokens=100,
        ts=two_days_ago,
        latency_ms=300.0,
    )
    meter.close()
    runner = CliRunner()
    out = runner.invoke(main, ["query", "llm_calls", "--days", "3", "--format", "json", "--store", store_url])
    assert out.exit_code == 0, out.output
    rows = json.loads(out.output)
    assert [r["value"] for r in rows] == [2, 0, 0]  # empty days come back as zero
    assert rows[0]["bucket"] == f"{two_days_ago:%Y-%m-%d}T00:00:00Z"
    out = runner.invoke(
        main,
        [
            "query",
            "llm_latency_ms",
            "--days",
            "3",
            "--interval",
            "none",
            "--stat",
            "p50,max",
            "--format",
            "json",
            "--store",
            store_url,
        ],
    )
    assert json.loads(out.output) == [{"bucket": rows[0]["bucket"], "p50": 200.0, "max": 300.0}]
    out = runner.invoke(
        main,
        [
            "query",
            "cost_usd",
            "--days",
            "3",
            "--by",
            "provider",
            "--format",
            "csv",
            "--filter",
            "provider=openai",
            "--store",
            store_url,
        ],
    )
    assert out.output.splitlines()[0] == "bucket,provider,value"
    assert {line.split(",")[1] for line in out.output.splitlines()[1:]} == {"openai"}
    bad = runner.invoke(main, ["query", "latency_ms", "--stat", "p42", "--store", store_url])
    assert bad.exit_code != 0 and "p42" in bad.output and "p95" in bad.output


def test_meter_answers_queries_about_what_it_tracked(store_url: str) -> None:
    meter = _meter(store_url)
    for u in range(3):
        meter.track_message(direction="in", user=f"u{u}")
    assert meter.query("active_users", days=1, interval=None).total() == 3
    assert meter.engagement(days=1)["inbound_messages"] == 3
    with pytest.raises(QueryError, match="unknown metric 'users'"):
        meter.query("users")
    meter.close()


class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append({"path": self.path, "json": json.loads(body)})
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hook_server():
    _Hook.received = []
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Hook.received
    server.shutdown()


def test_alerts_check_fires_delivers_and_holds_back_repeats(
    store_url: str, tmp_path: Path, hook_server
) -> None:
    url, received = hook_server
    meter = _meter(store_url)
    now = datetime.now(UTC)
    for i in range(30):
        meter.track_message(direction="in", user=f"u{i}", ts=now - timedelta(minutes=30 + i))
        meter.track_timing("reply", 9000.0, ts=now - timedelta(minutes=30 + i))
    for i in range(10):
        meter.track_error(
            ConnectionError("carrier unreachable"), user=f"u{i}", ts=now - timedelta(minutes=5 + i)
        )
    meter.track_llm_call(
        provider="openai",
        model="gpt-4o",
        input_tokens=2_000_000,
        output_tokens=10_000,
        ts=now - timedelta(minutes=1),
    )
    meter.close()
    rules = tmp_path / "rules.toml"
    rules.write_text(
        "daily_budget_usd = 1.0\nerror_rate_max = 0.05\np95_latency_ms = 5000\nnew_error_group = true\n"
        f'[deliver]\nwebhook = "{url}/botmeter"\nslack_webhook = "{url}/slack"\n'
    )
    state = tmp_path / "state.json"
    runner = CliRunner()
    args = ["alerts", "check", "--rules", str(rules), "--state", str(state), "--store", store_url]
    first = runner.invoke(main, args)
    assert first.exit_code == 1, first.output
    fired = {line.split(":")[0] for line in first.output.splitlines()}
    assert {"ALERT daily_budget", "ALERT error_rate", "ALERT p95_latency", "ALERT new_error_group"} <= fired
    hooks = {r["path"]: r["json"] for r in received}
    assert {a["rule"] for a in hooks["/botmeter"]["alerts"]} >= {"daily_budget", "error_rate", "p95_latency"}
    slack = hooks["/slack"]
    assert slack["text"].startswith("botmeter: ") and slack["blocks"][0]["type"] == "header"
    sections = "\n".join(b["text"]["text"] for b in slack["blocks"] if b["type"] == "section")
    assert "daily_budget: today's cost" in sections
    # Run again at once: the alerts still fire (exit 1) but are not delivered twice.
    second = runner.invoke(main, args)
    assert second.exit_code == 1 and "not sent again" in second.output
    assert len(received) == 2


def test_alerts_check_exits_zero_when_nothing_fires(store_url: str, tmp_path: Path) -> None:
    meter = _meter(store_url)
    meter.track_message(direction="in", user="u1")
    meter.close()
    rules = tmp_path / "rules.toml"
    rules.write_text("daily_budget_usd = 100.0\np95_latency_ms = 5000\n")
    out = CliRunner().invoke(main, ["alerts", "check", "--rules", str(rules), "--store", store_url])
    assert out.exit_code == 0 and "no alerts" in out.output


def test_alert_rules_name_the_bad_key_and_value(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'daily_budget'.*daily_budget_usd"):
        Rules.from_dict({"daily_budget": 5})
    with pytest.raises(ConfigError, match="p95_latency_ms must be a number >= 0, got 'fast'"):
        Rules.from_dict({"p95_latency_ms": "fast"})
    bad = tmp_path / "bad.toml"
    bad.write_text("daily_budget_usd = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Rules.load(bad)
    with pytest.raises(ConfigError, match=r"window_hours must be a number >= 0, got inf"):
        Rules.from_dict({"window_hours": float("inf")})
    with pytest.raises(ConfigError, match=r"min_messages must be a whole number, got 20\.5"):
        Rules.from_dict({"min_messages": 20.5})
    with pytest.raises(ConfigError, match=r"regression must be true or false, got 'yes'"):
        Rules.from_dict({"regression": "yes"})
    with pytest.raises(ConfigError, match=r"\[deliver\] stdout must be true or false, got 'no'"):
        Rules.from_dict({"deliver": {"stdout": "no"}})
    with pytest.raises(ConfigError, match=r"\[deliver\] webhook must be a non-empty string, got 3"):
        Rules.from_dict({"deliver": {"webhook": 3}})
    rules = Rules.from_dict({"min_messages": 5, "deliver": {"webhook": "https://example.com/h"}})
    assert rules.min_messages == 5 and rules.deliver == {"webhook": "https://example.com/h"}


def test_failed_delivery_is_reported_not_raised(tmp_path: Path) -> None:
    rules = Rules(deliver={"webhook": "http://127.0.0.1:9/nothing-listens-here"})
    outcome = deliver([{"id": "x", "rule": "x", "message": "m"}], rules, tmp_path / "s.json")
    assert outcome["failures"] and "failed" in outcome["failures"][0]


def test_regressed_error_group_after_a_quiet_week(store_url: str) -> None:
    meter = _meter(store_url)
    now = datetime.now(UTC)
    # Minutes ago, not hours: "days=1" is today so far, and the test may run just after midnight.
    meter.track_error(KeyError("missing reminder"), ts=now - timedelta(days=20))
    meter.track_error(KeyError("missing reminder"), ts=now - timedelta(seconds=2))
    meter.track_error(ValueError("bad date"), ts=now - timedelta(seconds=1))
    meter.close()
    reader = Reader(store_url)
    groups = {g["error_type"]: g for g in reader.error_groups(days=1)}
    assert groups["KeyError"]["status"] == "regressed"
    assert groups["ValueError"]["status"] == "new"
    fired = check(reader, Rules(new_error_group=True, regression=True))
    assert {a["rule"] for a in fired} == {"new_error_group", "regression"}


def test_error_groups_refuse_a_quiet_spell_under_a_day(store_url: str) -> None:
    from botmeter.analyse.errors import error_groups

    meter = _meter(store_url)
    meter.track_error(KeyError("missing reminder"))
    meter.close()
    now = datetime.now(UTC)
    with pytest.raises(QueryError, match=r"quiet_days.*0"):
        error_groups(Reader(store_url), (now - timedelta(days=1), now + timedelta(seconds=1)), quiet_days=0)


def test_explore_shows_kinds_fields_dimensions_and_unpriced_models(store_url: str) -> None:
    meter = _meter(store_url)
    meter.track_message(direction="in", user="u1", channel="sms")
    meter.track_llm_call(provider="acme", model="no-such-model-x", input_tokens=10, output_tokens=1)
    meter.track_llm_call(provider="openai", model="gpt-4o-mini", input_tokens=10, output_tokens=1)
    meter.close()
    out = CliRunner().invoke(main, ["explore", "--format", "json", "--store", store_url])
    assert out.exit_code == 0, out.output
    info = json.loads(out.output)
    assert info["events"] == 3 and info["kinds"] == {"llm_call": 2, "message": 1}
    assert info["fields"]["model"]["fill_rate"] == pytest.approx(2 / 3)
    assert info["dimensions"]["provider"]["cardinality"] == 2
    assert info["unpriced_models"] == [{"provider": "acme", "model": "no-such-model-x", "calls": 1}]
    assert info["storage_bytes"] > 0
    text = CliRunner().invoke(main, ["explore", "--store", store_url])
    assert "models without a price: acme/no-such-model-x" in text.output


def test_a_new_metric_is_one_catalogue_entry(store_url: str) -> None:
    from botmeter.analyse.catalogue import CATALOGUE, Metric, register

    metric = Metric(
        "gpt4o_calls",
        "calls",
        "LLM calls to gpt-4o.",
        "count",
        kinds=("llm_call",),
        where=(("model", "gpt-4o"),),
        dimensions=("provider",),
        stats=("count",),
    )
    register(metric)
    try:
        meter = _meter(store_url)
        for model in ("gpt-4o", "gpt-4o", "gpt-4o-mini"):
            meter.track_llm_call(provider="openai", model=model, input_tokens=10, output_tokens=1)
        meter.close()
        for rollups in (True, False):
            assert (
                Reader(store_url, use_rollups=rollups).query("gpt4o_calls", days=1, interval=None).total()
                == 2
            )
        out = CliRunner().invoke(
            main, ["query", "gpt4o_calls", "--days", "1", "--format", "json", "--store", store_url]
        )
        assert json.loads(out.output)[0]["value"] == 2
    finally:
        CATALOGUE.pop("gpt4o_calls")


def test_week_over_week_in_the_summary(five_weeks: str) -> None:
    s = summarise(Reader(five_weeks, now=NOW), 7)
    wow = s["week_over_week"]["active_users"]
    assert wow["this_week"] == 30 and wow["previous_week"] == 30 and wow["change"] == 0


def test_a_store_from_before_the_rollups_gets_them_built_on_open(store_url: str, store_path: Path) -> None:
    import duckdb

    meter = _meter(store_url)
    _traffic(meter, _day(2), 12, errors=3, cost_calls=5)
    _traffic(meter, _day(1), 9, errors=1, cost_calls=2)
    meter.close()
    # Make it look like a schema-1 file: events only.
    con = duckdb.connect(str(store_path))
    for (table,) in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE table_name LIKE 'rollup_%'"
    ).fetchall():
        con.execute(f"DROP TABLE {table}")
    con.execute("UPDATE botmeter_meta SET value = '1' WHERE key = 'schema_version'")
    con.close()
    fast, plain = Reader(store_url, now=NOW), Reader(store_url, now=NOW, use_rollups=False)
    for metric in ("cost_usd", "active_users", "conversations", "errors", "messages_per_conversation"):
        a = fast.query(metric, days=5, interval="day")
        b = plain.query(metric, days=5, interval="day")
        assert a.source.startswith("rollups"), metric
        assert a.rows == b.rows, metric
    assert fast.query("active_users", days=5, interval=None).total() == 12


def test_a_schema_2_store_gets_turns_and_latency_per_kind_on_open(store_url: str, store_path: Path) -> None:
    import duckdb

    meter = _meter(store_url)
    _traffic(meter, _day(3), 12, errors=3, cost_calls=5)
    _traffic(meter, _day(2), 9, errors=2, cost_calls=2)
    meter.track_message(direction="in", user="lost", ts=_day(2, 15))
    meter.track_error(TimeoutError("no reply"), user="lost", ts=_day(2, 15) + timedelta(seconds=5))
    meter.close()
    # Make it look like a schema-2 file: no turns, latency days pooled over kinds.
    con = duckdb.connect(str(store_path))
    con.execute("DROP TABLE rollup_turns")
    con.execute("ALTER TABLE rollup_users DROP COLUMN messages")
    con.execute("ALTER TABLE rollup_users DROP COLUMN country")
    con.execute("UPDATE rollup_latency_days SET dim = replace(dim, 'timing:', '') WHERE dim LIKE 'timing:%'")
    con.execute("DELETE FROM rollup_latency_days WHERE dim LIKE 'llm_call:%'")
    con.execute("UPDATE botmeter_meta SET value = '2' WHERE key = 'schema_version'")
    con.close()
    fast, plain = Reader(store_url, now=NOW), Reader(store_url, now=NOW, use_rollups=False)
    failed = fast.query("failed_replies", days=5)
    assert failed.source == "rollups" and failed.rows == plain.query("failed_replies", days=5).rows
    assert sum(r["count"] for r in failed.rows) == 1  # the others were answered after their errors
    assert fast.user_messages(["u0", "lost"], start=_day(4, 0), end=_day(0, 0)) == {
        "u0": (4, None), "lost": (1, None)}  # fmt: skip
    lat = fast.query("latency_ms", days=5, by="stage", stat="p95")
    assert lat.source == "rollups"
    assert lat.rows == plain.query("latency_ms", days=5, by="stage", stat="p95").rows


def test_a_schema_3_store_gets_the_turns_it_keeps_now_on_open(store_url: str, store_path: Path) -> None:
    import duckdb

    meter = _meter(store_url)
    _traffic(meter, _day(3), 12, errors=3, cost_calls=5)
    meter.track_message(direction="in", user="lost", ts=_day(2, 15))
    meter.track_error(TimeoutError("no reply"), user="lost", ts=_day(2, 15) + timedelta(seconds=5))
    meter.track_message(direction="in", user="lost", ts=_day(2, 16))
    meter.close()
    # Make it look like a schema-3 file: a row per turn, heads with their start only.
    con = duckdb.connect(str(store_path))
    con.execute("DROP TABLE rollup_turns")
    con.execute("DROP TABLE rollup_turn_heads")
    con.execute(
        "CREATE TABLE rollup_turns (bot VARCHAR NOT NULL, key UBIGINT NOT NULL, ts TIMESTAMP NOT NULL, "
        "channel VARCHAR, last_ts TIMESTAMP, bad BOOLEAN, answered BOOLEAN)"
    )
    con.execute(
        "CREATE TABLE rollup_turn_heads (bot VARCHAR NOT NULL, key UBIGINT NOT NULL, ts TIMESTAMP NOT NULL, "
        "PRIMARY KEY (bot, key))"
    )
    con.execute("UPDATE botmeter_meta SET value = '3' WHERE key = 'schema_version'")
    con.close()
    fast, plain = Reader(store_url, now=NOW), Reader(store_url, now=NOW, use_rollups=False)
    failed = fast.query("failed_replies", days=5)
    assert failed.source == "rollups" and failed.rows == plain.query("failed_replies", days=5).rows
    assert sum(r["count"] for r in failed.rows) == 1


def test_limit_keeps_the_largest_groups_of_any_metric(store_url: str) -> None:
    meter = _meter(store_url)
    for i, channel in enumerate(["sms"] * 3 + ["web"] * 2 + ["slack"]):
        meter.track_message(direction="in", user=f"u{i}", channel=channel)
    meter.close()
    reader = Reader(store_url)
    top = reader.query("active_users", days=1, interval=None, by="channel", limit=2)
    assert [(r["channel"], r["count"]) for r in top.rows] == [("sms", 3), ("web", 2)]
    out = CliRunner().invoke(main, ["explore", "--top", "1", "--format", "json", "--store", store_url])
    assert json.loads(out.output)["dimensions"]["channel"]["top"] == [{"value": "sms", "events": 3}]


def test_the_session_split_note_only_where_messages_were_split(store_url: str) -> None:
    from botmeter.analyse.summary import summarise
    from botmeter.report.responses import render, summary_report

    meter = _meter(store_url)
    for u in range(3):
        meter.track_message(direction="in", user=f"u{u}", conversation=f"c{u}", ts=_day(1))
    meter.close()
    for use_rollups in (True, False):
        reader = Reader(store_url, now=NOW, use_rollups=use_rollups)
        assert reader.query("conversations", days=7).notes == []
        summary = summarise(reader, 7, NOW)
        assert summary["engagement"]["note"] is None
        assert "split at gaps" not in render(summary_report(summary), "text")
    meter = _meter(store_url)
    meter.track_message(direction="in", user="u9", ts=_day(1, 13))  # no conversation id
    meter.close()
    for use_rollups in (True, False):
        reader = Reader(store_url, now=NOW, use_rollups=use_rollups)
        notes = " ".join(reader.query("conversations", days=7).notes)
        assert "split at gaps of more than 30 minutes" in notes
        assert "split at gaps" in render(summary_report(summarise(reader, 7, NOW)), "text")
