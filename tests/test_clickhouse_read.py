"""Every answer on a ClickHouse store (the embedded engine, ``chdb://``) equals the same answer on a
DuckDB file holding the same events: the summary with its trends and anomalies, alerts, error
groups, the explorer, the dashboard's figures and page, metric exports, the chat admin commands,
the Lambda routes and the CLI. The demo bot's events are written into both stores through the
same public API (``run_demo`` with the same seed and end), so the stores differ only by engine.

The metric oracle suite (``test_metrics.py``) checks each figure against plain Python on both
engines; here the whole answers are compared, and what is ClickHouse's own (its tables' parts)
is checked against the engine's system tables.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from botmeter.analyse import Reader
from botmeter.analyse.alerts import Rules, check
from botmeter.analyse.dashboard_figures import dashboard_data
from botmeter.analyse.summary import summarise
from botmeter.demo import run_demo

pytest.importorskip("chdb")
pytest.importorskip("clickhouse_connect")

END = datetime.now(UTC).replace(minute=17, second=0, microsecond=0)
NOW = END - timedelta(minutes=1)
# One key for both stores, so that a user's hashed id is the same in each.
HASH_KEY = "0123456789abcdef" * 4
# What depends on the moment an interface asks (its window ends now) rather than on the store.
MOMENT = ("store", "generated_at", "now", "end", "previous_end", "forecast")


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory, clean_env_for_module: None) -> Any:
    tmp = tmp_path_factory.mktemp("engines")
    urls = {"duckdb": f"duckdb://{tmp / 'demo.duckdb'}", "chdb": f"chdb://{tmp / 'demo.chdb'}"}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BOTMETER_HASH_KEY", HASH_KEY)
        for url in urls.values():
            result = run_demo(url, days=21, users=60, seed=5, end=END, progress=False)
            assert result.added == result.events > 1000
        yield urls


@pytest.fixture(autouse=True)
def _same_hash_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOTMETER_HASH_KEY", HASH_KEY)


def readers(stores: dict[str, str]) -> dict[str, Reader]:
    return {name: Reader(url, now=NOW) for name, url in stores.items()}


def both(stores: dict[str, str], answer: Any) -> dict[str, Any]:
    out = {}
    for name, reader in readers(stores).items():
        with reader.session():
            out[name] = answer(reader)
    return out


def without(value: Any, *keys: str) -> Any:
    """The value with the named keys dropped at any depth (what names the store itself)."""
    if isinstance(value, dict):
        return {k: without(v, *keys) for k, v in value.items() if k not in keys}
    if isinstance(value, list):
        return [without(v, *keys) for v in value]
    return value


def test_the_two_stores_hold_the_same_events(stores: dict[str, str]) -> None:
    from botmeter.store import open_store

    counts = {}
    for name, url in stores.items():
        store = open_store(url)
        counts[name] = store.count()
        store.close()
    assert counts["duckdb"] == counts["chdb"] > 1000


def test_summary_with_trends_and_anomalies(stores: dict[str, str]) -> None:
    got = both(stores, lambda r: summarise(r, 7))
    assert not differences(got["chdb"], got["duckdb"])
    assert got["chdb"]["costs"]["total_usd"]["value"] > 0
    assert got["chdb"]["errors"]["groups"], "the demo has errors"
    assert "unpriced_calls" not in got["chdb"]["unavailable"]


def test_alerts_fire_alike(stores: dict[str, str]) -> None:
    rules = Rules(
        daily_budget_usd=0.01,
        error_rate_max=0.0,
        p95_latency_ms=1.0,
        new_error_group=True,
        regression=True,
        error_rate_spike=True,
        forecast_over_budget=True,
        monthly_budget_usd=0.5,
    )
    got = both(stores, lambda r: check(r, rules))
    assert not differences(got["chdb"], got["duckdb"])
    assert {a["rule"] for a in got["chdb"]} >= {"daily_budget", "p95_latency"}


def test_error_groups_alike(stores: dict[str, str]) -> None:
    got = both(stores, lambda r: r.error_groups(days=21))
    assert not differences(got["chdb"], got["duckdb"])
    assert len(got["chdb"]) >= 3 and all(g["hourly"] for g in got["chdb"])


def test_dashboard_figures_alike(stores: dict[str, str]) -> None:
    got = both(stores, lambda r: dashboard_data(r, 14))
    assert not differences(without(got["chdb"], "store"), without(got["duckdb"], "store"))
    assert got["chdb"]["store"] != got["duckdb"]["store"]


def test_every_metric_query_alike(stores: dict[str, str]) -> None:
    from botmeter.analyse.catalogue import CATALOGUE

    def answers(reader: Reader) -> dict[str, Any]:
        out = {}
        for name, metric in CATALOGUE.items():
            for by in ((), *((d,) for d in metric.dimensions if d not in ("user", "conversation"))):
                for interval in ("day", None) if metric.aggregation != "retention" else ("day", "week"):
                    stat = ",".join(metric.stats) if metric.aggregation == "distribution" else None
                    kw = {"days": 14, "interval": interval, "by": ",".join(by)}
                    if stat:
                        kw["stat"] = stat
                    out[f"{name} by {by} per {interval}"] = reader.query(name, **kw).json_rows()
        return out

    got = both(stores, answers)
    assert got["chdb"].keys() == got["duckdb"].keys()
    for key, rows in got["duckdb"].items():
        assert not differences(got["chdb"][key], rows, key)


def differences(a: Any, b: Any, at: str = "") -> list[str]:
    """Where two answers differ (floats equal to 1e-9 relative: sums added in another order)."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{at}: keys {sorted(a.keys() ^ b.keys())}"]
        return [d for k in a for d in differences(a[k], b[k], f"{at}.{k}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{at}: {len(a)} items != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in differences(x, y, f"{at}[{i}]")]
    if isinstance(a, float) and isinstance(b, float):
        return [] if a == pytest.approx(b, rel=1e-9, abs=1e-12) else [f"{at}: {a!r} != {b!r}"]
    return [] if a == b else [f"{at}: {a!r} != {b!r}"]


def test_explore_alike_with_clickhouse_parts(stores: dict[str, str]) -> None:
    got = both(stores, lambda r: r.engine.explore())
    own = ("tables", "parts", "storage_bytes", "bytes_per_event")
    assert not differences(without(got["chdb"], *own), without(got["duckdb"], *own))
    parts = got["chdb"]["parts"]
    assert parts["events"]["rows"] == got["chdb"]["events"]
    assert parts["events"]["parts"] >= 1 and parts["events"]["bytes_on_disk"] > 0
    assert {"rollup_hourly", "rollup_users", "rollup_days"} <= parts.keys()
    assert got["chdb"]["storage_bytes"] > 0 and got["chdb"]["bytes_per_event"] > 0


def test_dashboard_page_and_cli(stores: dict[str, str], tmp_path: Path) -> None:
    from botmeter.interfaces.cli import main

    pages = {}
    # A fixed period: with --days each run's window (and the previous one) ends at its own moment,
    # and an event in the second between the two runs' ends made the engines' figures differ.
    period = ["--start", (NOW - timedelta(days=13)).date().isoformat(), "--end", NOW.isoformat()]
    for name, url in stores.items():
        out = tmp_path / name / "dashboard.html"
        result = CliRunner().invoke(
            main, ["dashboard", *period, "--json", "--output", str(out), "--store", url]
        )
        assert result.exit_code == 0, result.output
        pages[name] = json.loads(out.with_suffix(".json").read_text())
        assert "<html" in out.read_text()[:200].lower()
    assert not differences(without(pages["chdb"], *MOMENT), without(pages["duckdb"], *MOMENT))
    texts = {}
    for name, url in stores.items():
        result = CliRunner().invoke(
            main, ["query", "cost_usd", "--by", "model", "--days", "7", "--format", "json", "--store", url]
        )
        assert result.exit_code == 0, result.output
        texts[name] = json.loads(result.output)
    assert not differences(without(texts["chdb"], *MOMENT), without(texts["duckdb"], *MOMENT))


def test_metric_export_alike(stores: dict[str, str]) -> None:
    from botmeter.report.export import metrics_export

    got = both(stores, lambda r: metrics_export(r, r.window(7), "cost_usd,messages,latency_ms").document())
    assert not differences(without(got["chdb"], "store"), without(got["duckdb"], "store"))


def test_chat_admin_commands_alike(stores: dict[str, str]) -> None:
    from botmeter import Meter
    from botmeter.chat_admin import BUSY, Admin

    replies: dict[str, list[str]] = {}
    for name, url in stores.items():
        meter = Meter(bot="dadacat", store=url, hash_users=False)
        try:
            admin = Admin(meter, ["+15550000001"])
            admin.reply_timeout = 120  # equal answers are the point here, not their speed
            replies[name] = [
                admin.reply("+15550000001", f"admin:{command}", format="text")
                for command in ("analytics_status 7", "costs 7", "errors 7")
            ]
        finally:
            meter.close()
    assert all(replies["chdb"]), replies
    assert not any(BUSY in r for r in replies["chdb"])
    # The replies' windows end when each was asked: the clock time aside, they read the same.
    clock = re.compile(r"\d\d:\d\d UTC")
    assert [clock.sub("", r) for r in replies["chdb"]] == [clock.sub("", r) for r in replies["duckdb"]]


@pytest.mark.parametrize("path", ["/summary", "/errors", "/metrics/cost_usd", "/dashboard"])
def test_lambda_routes_alike(stores: dict[str, str], path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from botmeter.aws_lambda import handler
    from test_aws_lambda import http_api_event

    # Both stores answer at the data's clock: "days=7" on the real one moves between the two
    # answers, and the demo data has events within seconds of the window's edges.
    made = Reader.__init__

    def at_the_data_clock(self: Reader, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("now", NOW)
        made(self, *args, **kwargs)

    monkeypatch.setattr(Reader, "__init__", at_the_data_clock)
    bodies = {}
    for name, url in stores.items():
        monkeypatch.setenv("BOTMETER_STORE", url)
        response = handler(http_api_event(path, "days=7", stage="$default"), None)
        assert response["statusCode"] == 200, response
        bodies[name] = json.loads(response["body"])
    assert not differences(without(bodies["chdb"], *MOMENT), without(bodies["duckdb"], *MOMENT))
