"""The HTML dashboard and its JSON: what it shows, that it is self-contained, that event data is
only ever text, and that every series equals the `botmeter query` its panel names."""

from __future__ import annotations

import copy
import itertools
import json
import math
import re
import subprocess
import sys
import threading
import time
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
from botmeter.report.dashboard import render
from botmeter.report.dashboard_schema import DashboardFigures, schema_text
from botmeter.report.html import DARK_PALETTE, PALETTE, SEVERITY_COLOURS, Axis, Frame
from botmeter.report.page import _anomaly, attention, day_text, secs
from conftest import subprocess_env
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
    assert DashboardFigures.model_validate(data).period.days == 14


def test_the_published_schema_is_generated_from_the_models():
    # Regenerate with `python -m botmeter.report.dashboard_schema` after changing the models.
    assert SCHEMA.read_text() == schema_text()


def test_the_schema_refuses_what_the_json_must_not_be(built):
    _, data = built
    schema = json.loads(SCHEMA.read_text())
    for broken in (
        {**data, "version": 1},
        {**data, "period": {**data["period"], "days": 0}},
        {k: v for k, v in data.items() if k != "kpis"},
        {**data, "traffic_heatmap": {**(data["traffic_heatmap"] or {}), "hours": [0, 1]}},
        {**data, "cost_change": {"change_usd": 1.0, "drivers": [{"dimension": "planet"}]}},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, schema)


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
        for name, values in (q.get("filters") or {}).items():
            args += ["--filter", f"{name}={'|'.join(values)}"]
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
        [
            *("query", "latency_ms", "--filter", "stage=reply", "--interval", "none", "--stat", "p50,p95"),
            *("--start", data["period"]["start"], "--end", data["period"]["end"], "--format", "json"),
            *("--store", demo),
        ],
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
    strip = PageParts(re.search(r'data-panel="attention".*?</section>', page, re.S).group(0)).all_text
    for a in data["anomalies"]:
        panel = {"cost_usd": "cost_by_model", "active_users": "users", "error_rate": "error_rate"}.get(
            a["metric"], "latency"
        )
        section = re.search(rf'data-panel="{panel}".*?</section>', page, re.S).group(0)
        said = _anomaly(a).text
        assert _anomaly(a).tile is not None, (
            a
        )  # every watched figure has its tile  # the marker's words, in plain language
        assert 'class="marker anomaly"' in section and said in PageParts(section).all_text, a
        # and the strip names the day, linking to the same panel
        assert day_text(datetime.fromisoformat(a["day"].replace("Z", "+00:00"))) in strip
        assert re.search(rf'<a href="#{panel}">[^<]*unusually', page)


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
            "botmeter",
            "dashboard",
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


# -- attention, colours, axes --------------------------------------------------------------------------


def test_the_attention_strip_comes_first_speaks_plainly_and_links_to_its_panels(built):
    out, data = built
    page = out.read_text()
    # Under the header and its jump links, before the key figures and every panel.
    assert page.index('data-panel="attention"') < page.index('data-panel="kpis"')
    strip = re.search(r'<section class="[^"]*attention[^"]*".*?</section>', page, re.S).group(0)
    ids = set(re.findall(r'\bid="([^"]+)"', page))
    links = re.findall(r'href="#([^"]+)"', strip)
    assert links and set(links) <= ids, set(links) - ids
    text = PageParts(strip).all_text
    # The demo has unusual days, error kinds back after a quiet week, an auth error and no budget.
    assert "was unusually high on" in text and "back after a quiet week" in text
    assert "critical" in text and "No monthly budget set" in text
    for internal in ("latency_ms", "p95_ms", "robust score", "error_rate", "cost_usd", "regressed"):
        assert internal not in text, internal
    # Each finding marks the tiles it concerns, and the mark leads back to the strip.
    for finding in attention(data):
        if finding.tile and finding.level in ("bad", "warn"):
            assert re.search(rf'<div class="kpi flagged" data-kpi="{finding.tile}">', page), finding
    assert re.search(r'<a class="flag" href="#attention"', page)
    # And jump links to each section.
    nav = re.search(r"<nav.*?</nav>", page, re.S).group(0)
    assert set(re.findall(r'href="#([^"]+)"', nav)) == {"attention", "cost", "speed", "errors", "engagement"}


def test_the_cost_is_explained(built):
    out, data = built
    page = out.read_text()

    def panel(name: str) -> str:
        return PageParts(re.search(rf'data-panel="{name}".*?</section>', page, re.S).group(0)).all_text

    # SMS by country and direction, with segments per message, adding up to the SMS spend.
    sms = panel("sms")
    spend = sum(r["value"] or 0 for r in data["sms_cost"])
    segments = sum(r["value"] for r in data["sms_segments"])
    messages = sum(r["value"] for r in data["sms_messages"])
    assert fmt.money(spend) in sms and fmt.count(segments) in sms and f"{segments / messages:.2f}" in sms
    assert "to users" in sms and "from users" in sms
    # LLM calls by model: the unpriced model says so; the cache's hit rate and savings are there.
    llm = panel("llm_models")
    unpriced = [r for r in data["llm_unpriced"] if r["value"]]
    assert unpriced and "unpriced" in llm and unpriced[0]["model"] in llm
    hits = [c for c in data["cache_savings"] if c["cached_tokens"]]
    assert hits and all(c["saved_usd"] is None or c["saved_usd"] > 0 for c in hits)
    best = max(hits, key=lambda c: c["cache_hit_rate"])
    assert fmt.percent(best["cache_hit_rate"]) in llm and fmt.money(best["saved_usd"]) in llm
    # Named API operations with their cost.
    api = panel("api_operations")
    for r in data["api_cost"]:
        assert r["name"] in api and fmt.money(r["value"]) in api
    # One line under the cost tile: what changed, and what drove it.
    tile = PageParts(re.search(r'data-kpi="cost_usd".*?</div>\s*</div>', page, re.S).group(0)).all_text
    change = data["cost_change"]
    assert change["drivers"], "the demo's cost moved between the two periods"
    top = change["drivers"][0]
    assert fmt.money(abs(change["change_usd"])) in tile and str(top["name"]) in tile
    # The driver figures are the two periods' breakdowns, subtracted.
    if top["dimension"] == "country":
        now = next(r["value"] for r in data["cost_by_country"] if r["country"] == top["name"])
        before = next(r["value"] for r in data["cost_by_country_previous"] if r["country"] == top["name"])
        assert top["change_usd"] == pytest.approx(now - before)


def _swatches(page: str) -> dict[str, str]:
    """Legend name -> its colour class, over the whole page."""
    found: dict[str, set[str]] = {}
    for colour, name in re.findall(
        r'<span class="swatch c-([a-z]+)"></span><span class="name">([^<]+)<', page
    ):
        found.setdefault(name, set()).add(colour)
    return {name: colours.pop() for name, colours in found.items() if len(colours) == 1}


def test_colours_are_fixed_across_reports_and_critical_is_red(built):
    _, data = built
    first = render(data)
    # A second report with other data: the biggest provider and most error categories gone.
    other = copy.deepcopy(data)
    biggest = max(
        {r["provider"] for r in other["cost_by_model"]},
        key=lambda p: sum(r["value"] or 0 for r in other["cost_by_model"] if r["provider"] == p),
    )
    other["cost_by_model"] = [r for r in other["cost_by_model"] if r["provider"] != biggest]
    kept = {"auth", "timeout", "rate_limit"}
    other["errors_by_category"] = [r for r in other["errors_by_category"] if r["category"] in kept]
    second = render(other)
    a, b = _swatches(first), _swatches(second)
    shared = (a.keys() & b.keys()) - {"p50, period", "p95, period", "p99, period"}
    assert {"auth", "timeout", "rate limit", "critical"} <= shared and len(shared) >= 6, shared
    assert {name: a[name] for name in shared} == {name: b[name] for name in shared}
    assert a["critical"] == "vermillion" and SEVERITY_COLOURS["critical"] == "vermillion"
    assert "green" not in {SEVERITY_COLOURS["critical"], SEVERITY_COLOURS["error"]}


# Machado, Oliveira and Fernandes (2009), severity 1.0, on linear RGB.
CVD = {
    "protanopia": (
        (0.152286, 1.052583, -0.204868),
        (0.114503, 0.786281, 0.099216),
        (-0.003882, -0.048116, 1.051998),
    ),
    "deuteranopia": (
        (0.367322, 0.860646, -0.227968),
        (0.280085, 0.672501, 0.047413),
        (-0.011820, 0.042940, 0.968881),
    ),
    "tritanopia": (
        (1.255528, -0.076749, -0.178779),
        (-0.078411, 0.930809, 0.147602),
        (0.004733, 0.691367, 0.303900),
    ),
    "normal vision": ((1, 0, 0), (0, 1, 0), (0, 0, 1)),
}


def _lab(hex_colour: str, matrix) -> tuple[float, float, float]:
    """CIELAB (D65) of a colour as a reader with the given vision sees it."""
    srgb = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in srgb]
    seen = [min(max(sum(m * c for m, c in zip(row, linear, strict=True)), 0.0), 1.0) for row in matrix]
    xyz_rows = ((0.4124, 0.3576, 0.1805), (0.2126, 0.7152, 0.0722), (0.0193, 0.1192, 0.9505))
    x, y, z = (sum(m * c for m, c in zip(row, seen, strict=True)) for row in xyz_rows)
    f = [
        t ** (1 / 3) if t > 216 / 24389 else (24389 / 27 * t + 16) / 116
        for t in (x / 0.95047, y, z / 1.08883)
    ]
    return 116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])


@pytest.mark.parametrize("palette", [PALETTE, DARK_PALETTE], ids=["light", "dark"])
def test_the_palette_stays_distinguishable_for_colour_blind_readers(palette):
    worst = []
    for vision, matrix in CVD.items():
        for (a, x), (b, y) in itertools.combinations(palette.items(), 2):
            distance = math.dist(_lab(x, matrix), _lab(y, matrix))
            worst.append((distance, vision, a, b))
    # ΔE*ab of 12 is far past "just noticeable" (about 2.3): two swatches side by side read as two colours.
    assert min(worst)[0] >= 12, sorted(worst)[:3]
    # And the check can fail: the usual chart red and green are one colour with deuteranopia.
    assert math.dist(_lab("#d62728", CVD["deuteranopia"]), _lab("#2ca02c", CVD["deuteranopia"])) < 12


def test_severe_categories_are_never_folded_into_others(built):
    _, data = built
    crowded = copy.deepcopy(data)
    day = crowded["period"]["start"]
    rows = [
        {"bucket": day, "category": f"kind_{i}", "severity": "warning", "value": 100 + i} for i in range(9)
    ]
    rows.append({"bucket": day, "category": "quota", "severity": "critical", "value": 1})
    crowded["errors_by_category"] = rows
    page = render(crowded)
    section = re.search(r'data-panel="errors_over_time".*?</section>', page, re.S).group(0)
    legend = _swatches(section)
    assert legend["quota"] == "vermillion" and legend["critical"] == "vermillion"
    others = [name for name in legend if name.endswith("others")]
    assert others and legend[others[0]] == "other"


def test_axes_have_units_partial_days_and_labels_that_never_overlap(built):
    out, data = built
    page = out.read_text()
    charts = re.findall(r'<svg viewBox="0 0 \d+ \d+" role="img".*?</svg>', page, re.S)
    assert len(charts) >= 8
    for chart in charts:
        assert 'class="unit"' in chart, chart[:200]  # every axis says what it counts
    day_charts = [c for c in charts if 'class="xlabel' in c]
    for chart in day_charts:
        assert 'class="partial-day"' in chart and "today so far" in chart
        assert 'class="xtitle">day (UTC)' in chart
    # The last day is always labelled, and labels are spaced for the largest font the page uses.
    for days, width in ((14, 600), (30, 600), (30, 1200), (90, 1200)):
        labels = [f"{d} Nov" for d in range(1, days + 1)]
        frame = Frame(Axis(labels, "USD"), top=4, width=width)
        drawn = [m for m in frame.draw() if 'class="xlabel' in m]
        assert f">{labels[-1]}<" in "".join(drawn) and len(drawn) >= 3
        spans = []
        for m in drawn:
            x = float(re.search(r'x="([\d.]+)"', m).group(1))
            anchor = re.search(r'class="xlabel (\w+)"', m).group(1)
            w = len(re.search(r">([^<]+)</text>", m).group(1)) * 0.6 * 20  # at a phone's 20px font
            left = {"middle": x - w / 2, "end": x - w, "start": x}[anchor]
            assert left >= 0 and left + w <= width, (m, width)
            spans.append((left, left + w))
        spans.sort()
        assert all(b[0] - a[1] >= 6 for a, b in itertools.pairwise(spans)), (days, width, spans)
    # One date format in what people read (the queries under each panel keep ISO).
    text = PageParts(re.sub(r"<details.*?</details>|<style.*?</style>", "", page, flags=re.S)).all_text
    for r in data["llm_calls"]:  # model names may carry dates of their own
        text = text.replace(r["model"], "")
    assert not re.search(r"\d{4}-\d\d-\d\d", text), re.search(r".{40}\d{4}-\d\d-\d\d.{20}", text)


def test_dashboard_window_and_time_zone(demo, tmp_path):
    out = tmp_path / "w.html"
    args = ["dashboard", "--start", "2026-11-20", "--end", "2026-11-27", "--tz", "America/New_York"]
    result = CliRunner().invoke(main, [*args, "--json", "--output", str(out), "--store", demo])
    assert result.exit_code == 0, result.output
    data = json.loads(out.with_suffix(".json").read_text())
    assert (data["period"]["start"], data["period"]["end"]) == (
        "2026-11-20T00:00:00Z",
        "2026-11-27T00:00:00Z",
    )
    assert data["period"]["days"] == 7 and len(data["error_groups"][0]["daily"]) == 7
    assert {r["bucket"] for r in data["messages"]} <= {f"2026-11-{d}T00:00:00Z" for d in range(20, 27)}
    # Hours and weekdays are New York's; the counts are the same messages.
    heat = data["traffic_heatmap"]
    assert heat["timezone"] == "America/New_York"
    rows = json.loads(
        CliRunner()
        .invoke(
            main,
            [
                *("query", "inbound_messages", "--interval", "hour", "--format", "json"),
                *("--start", "2026-11-20", "--end", "2026-11-27", "--store", demo),
            ],
        )
        .output
    )
    expected = [[0] * 24 for _ in range(7)]
    for r in rows:
        at = datetime.fromisoformat(r["bucket"].replace("Z", "+00:00")).astimezone(
            ZoneInfo("America/New_York")
        )
        expected[at.weekday()][at.hour] += r["value"]
    assert heat["counts"] == expected
    page = out.read_text()
    assert "(America/New_York)" in page and "Times are America/New_York" in page
    # Storage and the queries stay UTC.
    assert all(q["start"].endswith("Z") for q in data["queries"].values())
    bad = CliRunner().invoke(main, ["dashboard", "--tz", "Mars/Olympus", "--store", demo])
    assert bad.exit_code == 2 and "--tz" in bad.output and "Mars/Olympus" in bad.output
    bad = CliRunner().invoke(
        main, ["dashboard", "--start", "2026-11-27", "--end", "2026-11-20", "--store", demo]
    )
    assert bad.exit_code == 2 and "--end" in bad.output


def test_a_panel_is_one_entry(built, monkeypatch):
    from botmeter.report import dashboard as page_module
    from botmeter.report.panels import SECTIONS, Panel, Section

    _, data = built

    def inbound_share(p) -> str:
        return f"{len(p.rows('messages'))} days of messages"

    extra = Panel(
        "messages_days", "Days with messages", ("messages",), inbound_share, "A count of days.", "text"
    )
    monkeypatch.setattr(page_module, "SECTIONS", (*SECTIONS, Section("more", "More", (extra,))))
    page = render(data)
    section = re.search(r'<section class="panel" data-panel="messages_days".*?</section>', page, re.S).group(
        0
    )
    assert f"{len(data['messages'])} days of messages" in section and "A count of days." in section
    assert f"botmeter query messages --start {data['queries']['messages']['start']}" in section
    assert 'href="#more"' in page  # and the jump links know the new section


def test_one_colour_means_one_thing_in_a_chart():
    from botmeter.report.html import CATEGORY_COLOURS, PROVIDER_COLOURS, colours

    every = ["delivery", "not_found", *CATEGORY_COLOURS]
    for names in (every, every[::-1], every[2:], ["timeout", "auth", "2 others"]):
        tint = colours(names, CATEGORY_COLOURS)
        named = [c for c in tint if c != "other"]
        assert len(named) == len(set(named)), (names, tint)  # no two series share a colour
        for name, colour in zip(names, tint, strict=True):
            if name in CATEGORY_COLOURS:
                assert colour == CATEGORY_COLOURS[name], name  # fixed ones keep theirs, in any company
        assert "vermillion" not in [c for n, c in zip(names, tint, strict=True) if n != "quota"]
    # A provider outside the table gets the same colour in every report.
    assert (
        colours(["twilio", "acme"], PROVIDER_COLOURS) == colours(["acme", "twilio"], PROVIDER_COLOURS)[::-1]
    )


@pytest.fixture(scope="module")
def demo_chdb(demo: str, tmp_path_factory) -> str:
    """The demo's events in the embedded ClickHouse engine (let go after each read)."""
    pytest.importorskip("chdb")
    from botmeter.store import open_store
    from botmeter.store.copy import copy_events

    url = f"chdb://{tmp_path_factory.mktemp('demo-ch') / 'demo'}?idle_hold=0"
    source, destination = open_store(demo), open_store(url)
    try:
        copy_events(source, destination)
    finally:
        source.close()
        destination.close()
    return url


@pytest.mark.parametrize("store", ["demo", "demo_chdb"])
def test_figures_answered_on_two_threads_equal_those_answered_on_one(store, request):
    # The summary, the error groups and the series are answered two at a time (DuckDB: a cursor
    # each; the embedded ClickHouse engine: a client each), and equal the figures answered in turn.
    from botmeter.analyse.dashboard_figures import dashboard_data

    url = request.getfixturevalue(store)
    now = datetime.now(UTC)
    reader = Reader(url)
    assert reader.engine.parallel_reads == 2
    together = dashboard_data(reader, 30, now=now)
    reader.engine.parallel_reads = 1
    one_by_one = dashboard_data(reader, 30, now=now)
    assert together.keys() == one_by_one.keys()
    assert together == one_by_one
    assert together["kpis"]["messages"]["value"] > 0 and together["error_groups"]
    if store == "demo_chdb":
        # After the session, with the threads' clients, the folder is free for another process.
        other = subprocess.run(
            [sys.executable, "-c", _COUNT, url.split("?")[0]],
            env=subprocess_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert other.returncode == 0, other.stderr
        assert int(other.stdout) > 0


_COUNT = (
    "import sys\n"
    "from botmeter.backends.clickhouse.store import ClickHouseStore\n"
    "s = ClickHouseStore(sys.argv[1], lock_timeout=0)\n"
    "print(s.count()); s.close()\n"
)


def test_a_fact_asked_by_two_threads_at_once_is_computed_once(demo):
    # A dashboard's summary and series share scans: the second thread waits for the first's answer.
    reader = Reader(demo)
    calls = []

    def compute():
        calls.append(1)
        time.sleep(0.3)
        return len(calls)

    both_asking = threading.Barrier(2)  # both ask before either has an answer (compute takes 0.3 s)

    def ask():
        both_asking.wait()
        answers.append(reader.engine._fact("shared", compute))

    with reader.engine.session():
        answers = []
        threads = [threading.Thread(target=ask) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert calls == [1] and answers == [1, 1]
