"""The HTML dashboard and its JSON: what it shows, that it is self-contained, that event data is
only ever text, and that every series equals the `botmeter query` its panel names."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from botmeter.analyse import Reader
from botmeter.analyse.summary import summarise
from botmeter.demo import run_demo
from botmeter.interfaces.cli import main
from botmeter.report import numbers as fmt
from dashboards import PAYLOADS, PageParts, fill_hostile, write

SCHEMA = Path(__file__).resolve().parents[1] / "src/botmeter/report/dashboard.schema.json"
PANELS = (
    "kpis",
    "cost_by_model",
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
    "findings",
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
    assert (data["schema"], data["version"]) == ("botmeter.dashboard", 1)
    assert data["period"]["days"] == 14 and not data["unavailable"]


def test_top_users_show_country_and_messages_beside_the_hash(built, demo):
    _, data = built
    runner = CliRunner()
    q = data["queries"]["top_users"]
    for user in data["top_users"][:3]:
        args = ["query", "messages", "--start", q["start"], "--end", q["end"], "--interval", "none",
                "--by", "country", "--filter", f"user={user['user']}", "--format", "json", "--store", demo]
        out = runner.invoke(main, args)
        assert out.exit_code == 0, out.output
        rows = json.loads(out.output)
        assert user["messages"] == sum(r["value"] for r in rows) > 0
        assert user["country"] == max(rows, key=lambda r: r["value"])["country"]


def test_every_series_is_what_botmeter_query_gives(built, demo):
    _, data = built
    runner = CliRunner()
    for key, q in data["queries"].items():
        args = ["query", q["metric"], "--start", q["start"], "--end", q["end"], "--format", "json"]
        args += ["--interval", q.get("interval") or "none", "--store", demo]
        for option in ("by", "stat", "limit"):
            if q.get(option) is not None:
                args += [f"--{option}", str(q[option])]
        for dim, value in (q.get("filters") or {}).items():
            args += ["--filter", f"{dim}={value}"]
        out = runner.invoke(main, args)
        assert out.exit_code == 0, (key, out.output)
        rows = json.loads(out.output)
        shown = data[key] if key != "traffic_by_hour" else None
        if key in ("conversation_length", "conversation_duration"):
            assert shown == {k: v for k, v in rows[0].items() if k != "bucket"}, key
        elif key == "top_users":
            # The cost per user is the query's; messages and country come beside it.
            assert [{k: u[k] for k in ("user", "value")} for u in shown] == [
                {k: v for k, v in r.items() if k != "bucket"} for r in rows
            ]
        elif key in ("top_conversations", "activities"):
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
    assert fmt.ms(summary["latency"]["p95_ms"]["value"]) in text
    # Each panel's total is printed beside its chart, not only in a tooltip.
    rows = data["cost_by_model"]
    biggest = max(
        {(r["provider"], r["model"]) for r in rows},
        # An unpriced model's cost is unknown (null), not 0.
        key=lambda pm: sum(r["value"] or 0 for r in rows if (r["provider"], r["model"]) == pm),
    )
    total = sum(r["value"] for r in data["cost_by_model"] if (r["provider"], r["model"]) == biggest)
    assert fmt.money(total) in text
    for group in data["error_groups"][:3]:
        assert group["error_type"] in text and fmt.count(group["count"]) in text


def test_every_panel_is_there_with_a_how_note(built):
    out, _ = built
    page = out.read_text()
    for panel in PANELS:
        section = re.search(rf'<section class="panel[^"]*" data-panel="{panel}".*?</section>', page, re.S)
        assert section, panel
        assert "How this is computed" in section.group(0), panel
        assert 'class="empty"' not in section.group(0), f"{panel} has no data on the demo store"


def test_the_page_is_self_contained_and_small(built):
    out, _ = built
    page = out.read_text()
    parts = PageParts(page)
    assert "script" not in parts.tags and "link" not in parts.tags and "iframe" not in parts.tags
    # Nothing refers outside the file: no src, no href, no CSS url() or @import.
    assert not [(k, v) for k, v in parts.attributes if k in ("src", "href", "srcset", "action", "xlink:href")]
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
    findings = re.search(r'data-panel="findings".*?</section>', page, re.S).group(0)
    assert "alert daily_budget" in findings and "alert error_rate" in findings
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
    for a in data["anomalies"]:
        panel = {"cost_usd": "cost_by_model", "active_users": "users", "error_rate": "error_rate"}.get(
            a["metric"], "latency"
        )
        section = re.search(rf'data-panel="{panel}".*?</section>', page, re.S).group(0)
        assert 'class="marker anomaly"' in section and a["explanation"] in PageParts(section).all_text


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
