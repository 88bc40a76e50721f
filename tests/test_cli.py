"""The botmeter command on real DuckDB files: status, reprice, schema versions."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import duckdb
import pytest
from click.testing import CliRunner

from botmeter import Meter, SchemaError
from botmeter.backends.duckdb.store import SCHEMA_VERSION, DuckDBStore
from botmeter.interfaces.cli import main
from conftest import query, scalar, subprocess_env

NOV = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)
OCT = datetime(2026, 10, 10, 12, 0, tzinfo=UTC)


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_status_reports_what_is_stored(store_url, store_path):
    meter = Meter(bot="b", store=store_url)
    meter.track_message(direction="in", ts=OCT)
    meter.track_llm_call(provider="openai", model="gpt-4o", input_tokens=10, ts=NOV)
    meter.close()
    result = invoke("status", "--store", store_url, "--format", "json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["events"] == 2
    assert info["by_kind"] == {"message": 1, "llm_call": 1}
    assert info["first_event"].startswith("2026-10-10T12:00") and info["last_event"].startswith("2026-11-10")
    assert info["schema_version"] == SCHEMA_VERSION
    assert info["spool"]["batches"] == 0

    text = invoke("status", "--store", store_url)
    assert text.exit_code == 0 and "llm_call" in text.output


def test_status_of_a_missing_store_says_so(tmp_path):
    # A typo in the path must not look like an empty store: it says so and fails.
    result = CliRunner().invoke(
        main, ["status", "--store", f"duckdb://{tmp_path}/none.duckdb", "--format", "json"]
    )
    assert result.exit_code == 1
    assert json.loads(result.stdout)["exists"] is False
    assert f"no store at {tmp_path}/none.duckdb" in result.stderr
    text = CliRunner().invoke(main, ["status", "--store", f"duckdb://{tmp_path}/none.duckdb"])
    assert text.exit_code == 1 and "no store at" in text.output
    assert not (tmp_path / "none.duckdb").exists()


def test_metrics_as_json(tmp_path):
    from botmeter.analyse.catalogue import CATALOGUE

    result = invoke("metrics", "--format", "json")
    listed = {m["metric"]: m for m in json.loads(result.output)}
    assert listed.keys() == CATALOGUE.keys()
    reply = listed["reply_latency_s"]
    assert reply["unit"] == "seconds" and reply["default_statistic"] == "p95"
    assert "stage" in listed["errors"]["dimensions"] and "model" in listed["llm_latency_ms"]["dimensions"]


def test_export_to_jsonl_writes_json_lines_with_today_so_far(store_url, tmp_path):
    meter = Meter(bot="b", store=store_url)
    now = datetime.now(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    meter.track_message(direction="in", user="u1", ts=midnight)  # today's first moment
    meter.track_message(direction="in", user="u1", ts=midnight - timedelta(seconds=1))  # yesterday
    meter.close()
    out = tmp_path / "events.jsonl"
    result = invoke("export", "--days", "1", "--output", str(out), "--store", store_url)
    assert result.exit_code == 0, result.output
    lines = out.read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["ts"].startswith(f"{midnight:%Y-%m-%dT00:00:00}")
    two = tmp_path / "two.ndjson"
    invoke("export", "--days", "2", "--output", str(two), "--store", store_url)
    assert [json.loads(line)["kind"] for line in two.read_text().splitlines()] == ["message", "message"]
    # JSON Lines read back in, and --format jsonl whatever the name.
    fresh = tmp_path / "fresh.duckdb"
    assert "added 2" in invoke("import", str(two), "--store", f"duckdb://{fresh}").output
    named = tmp_path / "events.txt"
    invoke("export", "--days", "2", "--format", "jsonl", "--output", str(named), "--store", store_url)
    assert len(named.read_text().splitlines()) == 2
    metrics = tmp_path / "metrics.jsonl"
    invoke("export", "--what", "metrics", "--metric", "messages", "--days", "2", "--output", str(metrics),
           "--store", store_url)  # fmt: skip
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r["value"] for r in rows if r["metric"] == "messages"] == [1, 1]


def test_reprice_applies_a_new_price_list_from_its_effective_date(store_url, store_path, tmp_path):
    meter = Meter(bot="b", store=store_url)
    for ts in (OCT, NOV):
        meter.track_llm_call(
            provider="openai", model="gpt-4o", input_tokens=1_000_000, output_tokens=0, ts=ts
        )
        meter.track_sms(direction="out", text="hello", user="+15551234567", ts=ts)
    meter.track_llm_call(
        provider="openai", model="gpt-4o", input_tokens=5, cost_usd=0.25, ts=NOV
    )  # bot's own
    meter.close()
    before = dict(
        query(store_path, "SELECT ts::DATE::VARCHAR || kind, cost_usd FROM events WHERE cost_usd <> 0.25")
    )

    prices = tmp_path / "prices.toml"
    prices.write_text(
        """
        name = "contract"
        [[price]]
        provider = "openai"
        model = "gpt-4o"
        effective = "2026-11-01"
        input_mtok = 1.0
        output_mtok = 4.0
        [[price]]
        provider = "twilio"
        unit = "sms_segment"
        per_unit = 0.005
        effective = "2026-11-01"
        """
    )
    result = invoke("reprice", "--since", "2026-10-01", "--store", store_url, "--prices", str(prices))
    assert result.exit_code == 0, result.output
    assert "costs changed" in result.output

    after = dict(
        query(store_path, "SELECT ts::DATE::VARCHAR || kind, cost_usd FROM events WHERE cost_usd <> 0.25")
    )
    assert after["2026-11-10llm_call"] == pytest.approx(1.0)  # 1M input tokens at $1/M
    assert after["2026-11-10message"] == pytest.approx(0.005)
    assert after["2026-10-10llm_call"] == before["2026-10-10llm_call"]  # before the list's effective date
    assert after["2026-10-10message"] == before["2026-10-10message"]
    versions = {r[0] for r in query(store_path, "SELECT price_version FROM events WHERE ts >= '2026-11-01'")}
    assert versions == {"custom:contract@2026-11-01", "caller"}
    assert (
        scalar(store_path, "SELECT count(*) FROM events WHERE cost_usd = 0.25") == 1
    )  # the bot's own cost kept
    # The rollups follow: costs by day, provider and user read from them equal the events'.
    from botmeter.analyse import Reader

    for kw in ({"by": "provider"}, {"by": "user", "interval": "month"}, {}):
        args = {"start": "2026-10-01", "end": "2026-12-01", **kw}
        fast = Reader(store_url).query("cost_usd", **args)
        plain = Reader(store_url, use_rollups=False).query("cost_usd", **args)
        assert fast.source == "rollups"
        assert [r["sum"] for r in fast.rows] == pytest.approx([r["sum"] for r in plain.rows])
    total = Reader(store_url).query("cost_usd", start="2026-11-01", end="2026-12-01", interval=None).total()
    assert total == pytest.approx(1.0 + 0.005 + 0.25)


def test_reprice_with_the_prices_used_on_write_changes_nothing(store_url, store_path, tmp_path):
    """Write and reprice price SMS and API calls by the same rules: a price list entry for one
    country and direction, the SMS rate table for the rest, the bot's own cost kept."""
    prices = tmp_path / "prices.toml"
    prices.write_text(
        """
        name = "carrier"
        [[price]]
        provider = "twilio"
        unit = "sms_segment"
        per_unit = 0.0123
        direction = "in"
        country = "GB"
        effective = "2026-01-01"
        [[price]]
        provider = "weather"
        name = "forecast"
        unit = "call"
        per_unit = 0.002
        effective = "2026-01-01"
        """
    )
    meter = Meter(bot="b", store=store_url, prices=str(prices))
    meter.track_sms(direction="in", text="hi", user="+447700900123", ts=NOV)  # the list's entry
    meter.track_sms(direction="out", text="hello", user="+447700900123", ts=NOV)  # the rate table
    meter.track_sms(direction="out", text="yo", user="+15551234567", ts=NOV, cost_usd=0.5)  # its own
    meter.track_api_call(provider="weather", name="forecast", units=3, ts=NOV)
    meter.track_api_call(provider="maps", name="geocode", ts=NOV)  # no price anywhere
    meter.close()
    sql = "SELECT kind, provider, direction, cost_usd, price_version FROM events ORDER BY ALL"
    before = query(store_path, sql)
    by = {(r[1], r[2], r[4] == "caller"): r for r in before}
    assert by["twilio", "out", True][3] == 0.5
    table = by["twilio", "out", False]
    assert table[3] > 0 and table[4] not in ("caller", "custom:carrier@2026-01-01")
    assert by["twilio", "in", False][3:] == (pytest.approx(0.0123), "custom:carrier@2026-01-01")
    assert by["weather", None, False][3:] == (pytest.approx(0.006), "custom:carrier@2026-01-01")
    assert by["maps", None, False][3] is None

    result = invoke("reprice", "--since", "2026-11-01", "--store", store_url, "--prices", str(prices))
    assert result.exit_code == 0, result.output
    assert query(store_path, sql) == before


def test_reprice_rejects_a_bad_date(store_url):
    result = CliRunner().invoke(main, ["reprice", "--since", "last tuesday", "--store", store_url])
    assert result.exit_code == 2
    assert "'last tuesday'" in result.output and "--since" in result.output


def test_a_store_from_a_newer_botmeter_is_refused_not_damaged(store_url, store_path):
    meter = Meter(bot="b", store=store_url)
    meter.track_message(direction="in")
    meter.close()
    con = duckdb.connect(str(store_path))
    con.execute("UPDATE botmeter_meta SET value = '99' WHERE key = 'schema_version'")
    con.close()
    with pytest.raises(SchemaError, match="schema version 99"), DuckDBStore(store_url).writing():
        pass
    # A bot on the older botmeter keeps its events in the spool rather than losing or misfiling them.
    meter = Meter(bot="b", store=store_url)
    meter.track_message(direction="in")
    meter.flush()
    stats = meter.stats()
    meter.close()
    assert stats["spool_events"] == 1 and stats["quarantined"] == 0
    assert scalar(store_path, "SELECT count(*) FROM events") == 1


def test_a_store_without_a_version_is_migrated(store_url, store_path):
    meter = Meter(bot="b", store=store_url)
    meter.track_message(direction="in")
    meter.close()
    con = duckdb.connect(str(store_path))
    con.execute("DELETE FROM botmeter_meta")
    con.close()
    assert DuckDBStore(store_url).count() == 1
    assert scalar(store_path, "SELECT value FROM botmeter_meta WHERE key = 'schema_version'") == str(
        SCHEMA_VERSION
    )


def test_demo_command_fills_the_store_and_prints_a_summary(store_url, store_path):
    result = invoke("demo", "--store", store_url, "--days", "3", "--users", "15", "--seed", "3", "--quiet")
    assert result.exit_code == 0, result.output
    assert str(store_path) in result.output.replace("\n", "")
    kinds = dict(query(store_path, "SELECT kind, count(*) FROM events GROUP BY 1"))
    assert kinds["message"] > 0 and kinds["llm_call"] > 0 and kinds["timing"] > 0
    # The same seed again adds nothing: the demo's events carry stable ids.
    again = invoke("demo", "--store", store_url, "--days", "3", "--users", "15", "--seed", "3", "--quiet")
    assert again.exit_code == 0
    assert dict(query(store_path, "SELECT kind, count(*) FROM events GROUP BY 1")) == kinds


@pytest.mark.parametrize(
    ("option", "content", "expected"),
    [
        ("--prices", 'name = "x"\n[[llm]]\nmodel = 3\n', "unknown top-level field 'llm'"),
        ("--prices", "[[price]\n", "not valid TOML"),
        ("--prices", None, "cannot read the price list"),
        ("--sms-rates", "garbage = [\n", "not a valid TOML file"),
        ("--sms-rates", "[GB]\nout = -1\n", "[GB] out = -1: rate must not be negative"),
        ("--sms-rates", "[XX1]\nout = 0.01\n", "expected 'default' or an ISO 3166"),
        ("--sms-rates", None, "cannot read the SMS rate table"),
    ],
)
def test_reprice_with_a_bad_file_says_what_is_wrong_in_one_line(
    store_url, tmp_path, option, content, expected
):
    meter = Meter(bot="b", store=store_url)
    meter.track_message(direction="in", ts=NOV)
    meter.close()
    path = tmp_path / "bad.toml"
    if content is not None:
        path.write_text(content)
    command = ["reprice", "--store", store_url, "--since", "2026-11-01", option, str(path)]
    run = subprocess.run(
        [sys.executable, "-m", "botmeter", *command],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=60,
    )
    assert run.returncode != 0
    assert "Traceback" not in run.stderr, run.stderr
    assert str(path) in run.stderr and expected in run.stderr, run.stderr


def test_filter_by_phone_number_finds_the_hashed_user(store_url, store_path):
    # Users are stored as keyed hashes; people look them up by the number they know.
    meter = Meter(bot="b", store=store_url)
    for user, cost in (("+447700900123", 0.49), ("+447700900999", 0.10)):
        meter.track_sms(direction="in", text="hi", user=user, conversation=user, cost_usd=cost / 2)
        meter.track_llm_call(provider="openai", model="gpt-4o", input_tokens=10, cost_usd=cost / 2,
                             user=user, conversation=user)  # fmt: skip
    meter.close()
    assert "+447700900123" not in str(query(store_path, "SELECT user_id, conversation_id FROM events"))
    for spelling in ("+447700900123", "+44 7700 900123"):
        for dim in ("user", "conversation"):
            result = invoke("query", "cost_usd", "--interval", "none", "--filter", f"{dim}={spelling}",
                            "--format", "json", "--store", store_url)  # fmt: skip
            assert result.exit_code == 0, result.output
            assert [r["value"] for r in json.loads(result.output)] == [pytest.approx(0.49)], (dim, spelling)
    # A stored hash (from a breakdown by user) still finds its user.
    hashed = query(store_path, "SELECT user_id FROM events WHERE cost_usd > 0.2 LIMIT 1")[0][0]
    result = invoke("query", "messages", "--interval", "none", "--filter", f"user={hashed}",
                    "--format", "json", "--store", store_url)  # fmt: skip
    assert [r["value"] for r in json.loads(result.output)] == [1]


@pytest.mark.parametrize(
    ("command", "content", "expected"),
    [
        (
            ["alerts", "check"],
            "daily_budget_usd = 20\nweekly_budget_usd = 5\n",
            "unknown key 'weekly_budget_usd'",
        ),
        (
            ["alerts", "check"],
            'p95_latency_ms = "fast"\n',
            "p95_latency_ms must be a number >= 0, got 'fast'",
        ),
        (["alerts", "check"], "[deliver\n", "not valid TOML"),
        (["summary"], "error_rate_max = -1\n", "error_rate_max must be a number >= 0, got -1"),
        (["summary"], None, "cannot read"),
        (["dashboard", "--days", "2"], "[deliver]\npager = true\n", "[deliver] unknown key 'pager'"),
    ],
)
def test_a_bad_rules_file_says_what_is_wrong_in_one_line(store_url, tmp_path, command, content, expected):
    with Meter(bot="b", store=store_url) as meter:
        meter.track_message(direction="in", ts=NOV)
    path = tmp_path / "rules.toml"
    if content is not None:
        path.write_text(content)
    output = ["--output", str(tmp_path / "d.html")] if command[0] == "dashboard" else []
    run = subprocess.run(
        [sys.executable, "-m", "botmeter", *command, "--store", store_url, "--rules", str(path), *output],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=60,
    )
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr, run.stderr
    error = [line for line in run.stderr.splitlines() if line.startswith("Error")]
    assert len(error) == 1 and str(path) in error[0] and expected in error[0], run.stderr
    assert not (tmp_path / "d.html").exists()


def test_a_bad_export_to_import_says_what_is_wrong_in_one_line(store_url, tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text('{"kind": "message", "ts": "yesterday"}\n')
    run = subprocess.run(
        [sys.executable, "-m", "botmeter", "import", str(path), "--store", store_url],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=60,
    )
    assert run.returncode == 1
    assert "Traceback" not in run.stderr, run.stderr
    assert f"Error: {path}: no event_id column" in run.stderr, run.stderr


def test_status_shows_events_stamped_beyond_any_calendar(store_url, store_path):
    # A millisecond timestamp stored as seconds (before the track call refused it) is in the year
    # 56,896, beyond Python's datetime: status shows it as it is instead of crashing.
    with Meter(bot="b", store=store_url) as meter:
        meter.track_message(direction="in", ts=OCT)
    con = duckdb.connect(str(store_path))
    con.execute(
        "INSERT INTO events (event_id, ts, bot, kind) "
        "VALUES (uuid(), make_timestamp(1733300000000 * 1000000), 'b', 'message')"
    )
    con.close()
    result = invoke("status", "--store", store_url, "--format", "json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["events"] == 2
    assert info["first_event"].startswith("2026-10-10T12:00")
    assert info["last_event"].startswith("56896-")
    text = invoke("status", "--store", store_url)
    assert text.exit_code == 0 and "56896-" in text.output
