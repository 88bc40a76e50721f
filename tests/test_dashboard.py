"""The HTML dashboard and its JSON: what it shows, that it is self-contained, that event data is
only ever text, and that every series equals the `botmeter query` its panel names."""

from __future__ import annotations

import copy
import itertools
import json
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import jsonschema
import pytest
from click.testing import CliRunner

from botmeter.analyse import Reader
from botmeter.analyse.summary import summarise
from botmeter.demo import run_demo
from botmeter.interfaces.cli import main
from botmeter.report import numbers as fmt
from botmeter.report.dashboard import Page, attention, render, secs
from botmeter.report.html import DARK_PALETTE, PALETTE, SEVERITY_COLOURS, Axis, Frame
from dashboards import PAYLOADS, PageParts, fill_hostile, write

SCHEMA = Path(__file__).resolve().parents[1] / "src/botmeter/report/dashboard.schema.json"
PANELS = (
    "attention",
    "kpis",
    "cost_by_model",
    "cost_breakdown",
    "sms",
    "llm_models",
    "api_operations",
    "unit_costs",
    "top_spenders",
    "forecast",
    "users",
    "conversations",
    "distribution",
    "retention",
    "activities",
    "traffic",
    "errors_over_time",
    "error_rate",
    "error_groups",
    "latency",
    "latency_by_stage",
    "latency_by_model",
)


@pytest.fixture(scope="module")
def demo(tmp_path_factory, clean_env_for_module) -> str:
    url = f"duckdb://{tmp_path_factory.mktemp('demo') / 'demo.duckdb'}"
    run_demo(url, days=30, users=120, seed=11, progress=False)
    return url


@pytest.fixture(scope="module")
def built(demo: str, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("out") / "metrics" / "dashboard.html"
    result = CliRunner().invoke(
        main, ["dashboard", "--days", "14", "--json", "--output", str(out), "--store", demo]
    )
    assert result.exit_code == 0, result.output
    assert str(out.resolve()) in result.output
    return out, json.loads(out.with_suffix(".json").read_text())


def test_the_json_follows_its_published_schema(built):
    _, data = built
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(data, schema)
    assert (data["schema"], data["version"]) == ("botmeter.dashboard", 2)
    assert schema["properties"]["version"]["const"] == 2
    assert data["period"]["days"] == 14 and not data["unavailable"]


def test_every_series_is_what_botmeter_query_gives(built, demo):
    _, data = built
    runner = CliRunner()
    for key, q in data["queries"].items():
        args = ["query", q["metric"], "--start", q["start"], "--end", q["end"], "--format", "json"]
        args += ["--interval", q.get("interval") or "none", "--store", demo]
        for option in ("by", "stat", "limit"):
            if q.get(option) is not None:
                args += [f"--{option}", str(q[option])]
        for name, values in (q.get("filters") or {}).items():
            args += ["--filter", f"{name}={'|'.join(values)}"]
        out = runner.invoke(main, args)
        assert out.exit_code == 0, (key, out.output)
        rows = json.loads(out.output)
        shown = data[key] if key != "traffic_by_hour" else None
        if key in ("conversation_length", "conversation_duration"):
            assert shown == {k: v for k, v in rows[0].items() if k != "bucket"}, key
        elif not q.get("interval"):
            assert shown == [{k: v for k, v in r.items() if k != "bucket"} for r in rows], key
        elif key == "traffic_by_hour":
            heat = data["traffic_heatmap"]
            assert sum(map(sum, heat["counts"])) == sum(r["value"] for r in rows)
            for r in rows:
                at = datetime.fromisoformat(r["bucket"].replace("Z", "+00:00"))
                assert heat["counts"][at.weekday()][at.hour] >= r["value"]
        else:
            assert shown == rows, key


def test_the_key_figures_are_the_summary_and_are_shown_as_text(built, demo):
    out, data = built
    page = out.read_text()
    text = PageParts(page).all_text
    now = datetime.fromisoformat(data["generated_at"].replace("Z", "+00:00"))
    summary = summarise(Reader(demo), 14, now)
    assert data["kpis"]["cost_usd"]["value"] == pytest.approx(summary["costs"]["total_usd"]["value"])
    assert data["kpis"]["active_users"]["value"] == summary["engagement"]["active_users"]["value"]
    assert fmt.money(summary["costs"]["total_usd"]["value"]) in text
    assert fmt.count(summary["engagement"]["messages"]["value"]) in text
    # The speed headline is the reply stage's p95, in seconds, as `botmeter query` gives it.
    out = CliRunner().invoke(
        main,
        ["query", "latency_ms", "--filter", "stage=reply", "--interval", "none", "--stat", "p50,p95"]
        + ["--start", data["period"]["start"], "--end", data["period"]["end"], "--format", "json"]
        + ["--store", demo],
    )
    reply_p95 = json.loads(out.output)[0]["p95"]
    tile = re.search(r'data-kpi="reply_p95".*?</div>\s*</div>', page, re.S)
    assert tile and secs(reply_p95) in PageParts(tile.group(0)).all_text
    # Each panel's total is printed beside its chart, not only in a tooltip.
    providers = {r["provider"] for r in data["cost_by_model"]}
    totals = {p: sum(r["value"] or 0 for r in data["cost_by_model"] if r["provider"] == p) for p in providers}
    assert fmt.money(max(totals.values())) in text
    for group in data["error_groups"][:3]:
        assert group["error_type"] in text and fmt.count(group["count"]) in text


def test_every_panel_is_there_with_a_how_note(built):
    out, _ = built
    page = out.read_text()
    for panel in PANELS:
        section = re.search(rf'<section class="[^"]*" data-panel="{panel}".*?</section>', page, re.S)
        assert section, panel
        assert "How this is computed" in section.group(0), panel
        assert 'class="empty"' not in section.group(0), f"{panel} has no data on the demo store"


def test_the_page_is_self_contained_and_small(built):
    out, _ = built
    page = out.read_text()
    parts = PageParts(page)
    assert "script" not in parts.tags and "link" not in parts.tags and "iframe" not in parts.tags
    # Nothing refers outside the file: no src, no CSS url() or @import; links only to its own sections.
    assert not [(k, v) for k, v in parts.attributes if k in ("src", "srcset", "action", "xlink:href")]
    links = [v for k, v in parts.attributes if k == "href"]
    ids = {v for k, v in parts.attributes if k == "id"}
    assert links and all(v.startswith("#") and v[1:] in ids for v in links), links
    assert "url(" not in page and "@import" not in page
    assert "default-src 'none'" in page  # and the policy forbids it, should anything slip in
    size = out.stat().st_size
    assert size < 500_000, f"{size:,} bytes is too big to mail comfortably"


def test_event_data_is_only_ever_text(tmp_path):
    url = f"duckdb://{tmp_path / 'hostile.duckdb'}"
    fill_hostile(url)
    page = write(url, tmp_path / "dashboard.html", days=7)
    parts = PageParts(page)
    assert "script" not in parts.tags
    assert "img" not in parts.tags
    assert parts.tags.count("svg") == page.count("<svg ")  # every svg is one the dashboard drew
    assert not [name for name, _ in parts.attributes if name.startswith("on")]
    text = parts.all_text
    for payload in PAYLOADS:
        assert payload in text, payload  # shown, as the bot sent it


def test_alerts_and_budget_are_marked(demo, tmp_path):
    rules = tmp_path / "rules.toml"
    rules.write_text(
        "daily_budget_usd = 0.01\nerror_rate_max = 0.0001\nmin_messages = 1\nmonthly_budget_usd = 5.0\n"
    )
    out = tmp_path / "d.html"
    result = CliRunner().invoke(
        main, ["dashboard", "--days", "14", "--rules", str(rules), "--output", str(out), "--store", demo]
    )
    assert result.exit_code == 0, result.output
    page = out.read_text()
    cost_panel = re.search(r'data-panel="cost_by_model".*?</section>', page, re.S).group(0)
    rate_panel = re.search(r'data-panel="error_rate".*?</section>', page, re.S).group(0)
    assert 'class="marker alert"' in cost_panel and "daily budget" in cost_panel
    assert 'class="marker alert"' in rate_panel
    strip = PageParts(re.search(r'data-panel="attention".*?</section>', page, re.S).group(0)).all_text
    assert "Daily budget reached" in strip and "Error rate over its limit" in strip
    assert "Budget: this month is heading for" in strip and "over the $5.00 budget" in strip
    assert re.search(r'<div class="kpi flagged" data-kpi="cost_usd">', page)
    forecast = re.search(r'data-panel="forecast".*?</section>', page, re.S).group(0)
    assert "Budget $5.00: projected over budget" in forecast
    # --budget wins over the rules' monthly budget
    CliRunner().invoke(main, ["dashboard", "--budget", "1000000", "--output", str(out), "--store", demo])
    forecast = re.search(r'data-panel="forecast".*?</section>', out.read_text(), re.S).group(0)
    assert "projected within budget" in forecast


def test_anomalies_are_marked_on_their_chart(built):
    out, data = built
    assert data["anomalies"], "the demo has an error burst the detector should find"
    page = out.read_text()
    findings = {f.text: f for f in attention(data)}
    strip = PageParts(re.search(r'data-panel="attention".*?</section>', page, re.S).group(0)).all_text
    for a in data["anomalies"]:
        panel = {"cost_usd": "cost_by_model", "active_users": "users", "error_rate": "error_rate"}.get(
            a["metric"], "latency"
        )
        section = re.search(rf'data-panel="{panel}".*?</section>', page, re.S).group(0)
        said = [t for t, f in findings.items() if f.panel == panel and t in PageParts(section).all_text]
        assert 'class="marker anomaly"' in section and said, a
        assert all(t in strip for t in said)


def test_bad_input_names_the_option(demo, tmp_path):
    runner = CliRunner()
    out = runner.invoke(
        main, ["dashboard", "--budget", "-5", "--output", str(tmp_path / "x.html"), "--store", demo]
    )
    assert out.exit_code == 2 and "--budget" in out.output and "-5" in out.output
    out = runner.invoke(main, ["dashboard", "--days", "0", "--store", demo])
    assert out.exit_code == 2 and "--days" in out.output
    blocker = tmp_path / "file"
    blocker.write_text("")
    out = runner.invoke(main, ["dashboard", "--output", str(blocker / "d.html"), "--store", demo])
    assert out.exit_code == 1 and "--output" in out.output and not (blocker / "d.html").exists()
    out = runner.invoke(main, ["dashboard", "--store", f"duckdb://{tmp_path / 'none.duckdb'}"])
    assert out.exit_code == 1 and "no store" in out.output


def test_an_empty_period_draws_empty_panels_not_errors(tmp_path):
    url = f"duckdb://{tmp_path / 'quiet.duckdb'}"
    run_demo(url, days=3, users=5, seed=1, end=datetime(2025, 1, 10, tzinfo=UTC), progress=False)
    page = write(url, tmp_path / "d.html", days=7)
    assert page.count('class="empty"') >= 10 and "$0.00" in page
    # An empty panel says so instead of drawing axes over nothing.
    errors = re.search(r'data-panel="errors_over_time".*?</section>', page, re.S).group(0)
    assert "<svg" not in errors and "No errors in this period." in errors


def test_the_standalone_script_writes_the_same_dashboard(demo, tmp_path):
    from conftest import subprocess_env

    out = tmp_path / "standalone.html"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "botmeter.report.dashboard",
            "--days",
            "7",
            "--output",
            str(out),
            "--store",
            demo,
        ],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert str(out) in done.stdout and 'data-panel="cost_by_model"' in out.read_text()
