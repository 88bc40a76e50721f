"""The CloudWatch read side.

Sums and counts make the round trip for real: events tracked through a Meter into moto's server
(a real process on 127.0.0.1), read back with ``Reader(store).query``. moto answers percentile
statistics with a server error and ignores Logs Insights' ``stats`` (it returns the raw records),
so for those the tests check what botmeter sends and parse answers written by hand in the exact
shape AWS returns them, through botocore's Stubber, which validates both against the service
model.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

import botmeter
from aws_emulator import aws_env, clients
from botmeter.analyse import FigureUnavailable, Reader
from botmeter.analyse.query import make_query
from botmeter.backends.cloudwatch.engine import CloudWatchEngine, Span, resolution, spans
from botmeter.interfaces.cli import main
from botmeter.interfaces.cli_aws import dashboard_body
from botmeter.store import open_store

HASH_KEY = "ab" * 16
PHONE = "+15551234567"
NOW = datetime(2026, 11, 25, 10, 30, tzinfo=UTC)


@pytest.fixture
def names():
    tag = uuid.uuid4().hex[:8]
    return f"Read{tag}", f"bot-{tag}"


# -- periods -------------------------------------------------------------------------------------


def test_period_follows_the_age_of_the_data():
    assert resolution(NOW - timedelta(days=14), NOW) == 60
    assert resolution(NOW - timedelta(days=30), NOW) == 300
    assert resolution(NOW - timedelta(days=100), NOW) == 3600


def test_spans_align_to_the_period_and_buckets_are_multiples():
    q = make_query(
        "messages", start="2026-11-20T10:00:30Z", end="2026-11-23T10:00:00Z", interval="day", now=NOW
    )
    ranges, notes = spans(q, NOW)
    day = 86400
    # The start moves down to the minute (and says so); whole days are one span of day periods;
    # the partial first and last days are one period each.
    assert Span(datetime(2026, 11, 21, tzinfo=UTC), datetime(2026, 11, 23, tzinfo=UTC), day) in ranges
    assert (
        Span(datetime(2026, 11, 20, 10, tzinfo=UTC), datetime(2026, 11, 21, tzinfo=UTC), 14 * 3600) in ranges
    )
    assert (
        Span(datetime(2026, 11, 23, tzinfo=UTC), datetime(2026, 11, 23, 10, tzinfo=UTC), 10 * 3600) in ranges
    )
    assert "60-second periods" in notes[0]
    for span in ranges:
        assert span.period % 60 == 0 and (span.end - span.start).total_seconds() % span.period == 0

    # 40 days back: 5-minute data; months and a window without buckets are single periods.
    q = make_query("latency_ms", start="2026-10-16T00:00:00Z", end="2026-11-25T00:00:00Z", interval="month",
                   stat="p95", now=NOW)  # fmt: skip
    ranges, _ = spans(q, NOW)
    assert ranges == [
        Span(datetime(2026, 10, 16, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC), 16 * 86400),
        Span(datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 25, tzinfo=UTC), 24 * 86400),
    ]
    q = make_query(
        "messages", start="2026-08-01T00:00:00Z", end="2026-11-25T10:30:00Z", interval=None, now=NOW
    )
    ranges, _ = spans(q, NOW)
    assert len(ranges) == 1 and ranges[0].period % 3600 == 0  # older than 63 days: whole hours

    q = make_query("messages", start="2024-01-01", end="2024-02-01", interval="day", now=NOW)
    with pytest.raises(FigureUnavailable, match="455 days"):
        spans(q, NOW)


# -- the round trip against moto ---------------------------------------------------------------------


def _fill(url: str, bot: str, tmp_path) -> None:
    m = botmeter.Meter(
        bot=bot, store=url, spool_dir=str(tmp_path / "spool"), hash_key=HASH_KEY, flush_interval=0.05
    )
    try:
        for _ in range(6):
            m.track_sms(direction="in", text="hello", user=PHONE, conversation="c-1", cost_usd=0.0079)
        for _ in range(4):
            m.track_sms(direction="out", text="meow", user=PHONE, conversation="c-1", cost_usd=0.0079)
        for i in range(5):
            m.track_llm_call(provider="openai", model="gpt-4o", input_tokens=100 + i, output_tokens=10,
                             latency_ms=800.0 + i, cost_usd=0.01, user=PHONE)  # fmt: skip
        for _ in range(3):
            m.track_llm_call(provider="anthropic", model="claude-x", input_tokens=10, cost_usd=0.02)
        m.track_error("rate_limit_exceeded", stage="llm")
        m.track_error("rate_limit_exceeded", stage="llm")
        m.track_error(TimeoutError("slow"))
        for i in range(7):
            m.track_timing("reply", 100.0 + i)
        assert m.flush()
    finally:
        m.close()


def test_sums_and_counts_round_trip_through_moto(aws, names, tmp_path):
    namespace, bot = names
    url = f"cloudwatch://?namespace={namespace}&region=us-east-1&mode=api"
    _fill(url, bot, tmp_path)
    reader = Reader(open_store(url))
    assert type(reader.engine).__name__ == "CloudWatchEngine"

    def total(metric: str, **kw):
        return reader.query(metric, days=1, interval=None, **kw)

    def by(metric: str, dim: str) -> dict:
        result = total(metric, by=dim)
        return {r[dim]: r[result.stats[0]] for r in result.rows}

    assert total("messages").total() == 10
    assert total("inbound_messages").total() == 6
    assert total("llm_calls").total() == 8
    assert by("llm_calls", "provider") == {"openai": 5, "anthropic": 3}
    assert total("input_tokens").total() == 510 + 30
    assert total("cost_usd").total() == pytest.approx(10 * 0.0079 + 0.05 + 0.06)
    assert by("cost_usd", "provider") == pytest.approx({"openai": 0.05, "anthropic": 0.06, "twilio": 0.079})
    # No CostUSD per model: LLM costs come from LlmCostUSD, the rest of the total is under none.
    assert by("cost_usd", "model") == pytest.approx({"gpt-4o": 0.05, "claude-x": 0.06, None: 0.079})
    assert by("errors", "category") == {"rate_limit": 2, "timeout": 1}
    assert total("errors", filters={"category": "rate_limit"}).total() == 2
    assert total("error_rate").total() == pytest.approx(3 / 6)
    assert total("cost_usd").source == "cloudwatch metrics"

    # Buckets: today's hour holds everything; the others are zero, not missing.
    hourly = reader.query("llm_calls", days=1, interval="hour")
    assert sum(r["count"] for r in hourly.rows) == 8 and len(hourly.rows) == len(hourly.query.buckets())
    weekly = reader.query("messages", days=30, interval="week")
    assert sum(r["count"] for r in weekly.rows) == 10

    # Latency without percentiles combines series: count, average and maximum per stage.
    latency = total("latency_ms", by="stage", stat="count,avg,max")
    rows = {r["stage"]: r for r in latency.rows}
    assert rows["reply"] == {"bucket": rows["reply"]["bucket"], "stage": "reply", "count": 7, "avg": 103.0,
                             "max": 106.0}  # fmt: skip
    assert None not in rows  # a stage's latency is its timings only, never the LLM calls
    calls = total("llm_latency_ms", by="model", stat="count,max")
    assert {r["model"]: (r["count"], r["max"]) for r in calls.rows}["gpt-4o"][1] == 804.0
    assert sum(r["count"] for r in calls.rows) == 5
    reply = total("reply_latency_s", stat="count,avg,max").rows[0]
    assert (reply["count"], reply["avg"], reply["max"]) == (7, pytest.approx(0.103), pytest.approx(0.106))
    with pytest.raises(FigureUnavailable, match="failed replies"):
        total("reply_failure_rate")

    # A dimension CloudWatch does not record and no record answers: said, not zero.
    with pytest.raises(FigureUnavailable, match="channel"):
        total("latency_ms", by="channel", stat="avg")
    with pytest.raises(FigureUnavailable, match="channel"):
        total("latency_ms", filters={"channel": "sms"}, stat="avg")  # not zero timings: unknown
    with pytest.raises(FigureUnavailable, match="retention"):
        reader.query("retention", days=7, interval="week")


def test_summary_and_dashboard_commands_against_moto(aws, names, tmp_path):
    namespace, bot = names
    url = f"cloudwatch://?namespace={namespace}&region=us-east-1&mode=api"
    _fill(url, bot, tmp_path)
    runner = CliRunner()
    result = runner.invoke(
        main, ["summary", "--namespace", namespace, "--region", "us-east-1", "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["costs"]["total_usd"]["value"] == pytest.approx(0.189)
    assert summary["engagement"]["messages"]["value"] == 10
    assert summary["errors"]["by_category"] == {"rate_limit": 2, "timeout": 1}
    # moto cannot run Logs Insights' stats, and percentiles over several series cannot be combined:
    # each such figure is listed with its reason instead of a zero.
    assert {"active_users", "reply_latency_s", "failed_replies"} <= set(summary["unavailable"])
    assert summary["engagement"]["active_users"]["value"] is None
    assert summary["errors"]["reply_failure_rate"]["value"] is None
    assert all(reason for reason in summary["unavailable"].values())
    text = runner.invoke(main, ["summary", "--store", url]).output
    assert "Not available from this store: reply_latency_s" in text and "$0.1890" in text

    both = runner.invoke(main, ["query", "messages", "--store", url, "--namespace", namespace])
    assert both.exit_code != 0 and "not both" in both.output
    rows = runner.invoke(main, ["query", "errors", "--namespace", namespace, "--region", "us-east-1",
                                "--by", "category", "--interval", "none", "--format", "json"])  # fmt: skip
    assert {r["category"]: r["value"] for r in json.loads(rows.output)} == {"rate_limit": 2, "timeout": 1}

    # The HTML dashboard over CloudWatch: what CloudWatch gives is drawn, what it cannot is said.
    page = tmp_path / "cw.html"
    drawn = runner.invoke(
        main,
        ["dashboard", "--namespace", namespace, "--region", "us-east-1", "--output", str(page), "--json"],
    )
    assert drawn.exit_code == 0, drawn.output
    figures = json.loads(page.with_suffix(".json").read_text())
    assert figures["kpis"]["cost_usd"]["value"] == pytest.approx(0.189)
    assert {"active_users", "reply_latency_s", "retention"} <= set(figures["unavailable"])
    assert figures["retention"] is None and figures["active_users"] is None
    html = page.read_text()
    assert "Not available from this store" in html and "$0.1890" in html
    assert html.count('class="unavailable"') >= 3

    # The dashboard is accepted by PutDashboard and comes back from GetDashboard as written.
    written = runner.invoke(
        main,
        ["cloudwatch", "dashboard", "--namespace", namespace, "--region", "us-east-1", "--name", "bm-test"],
    )
    assert written.exit_code == 0, written.output
    cw_client, _ = clients(aws.url)
    body = json.loads(cw_client.get_dashboard(DashboardName="bm-test")["DashboardBody"])
    assert body == dashboard_body(namespace, "us-east-1")


def test_dashboard_body_shape():
    body = dashboard_body("DadaCat Twilio", "eu-west-1")
    metrics = [w for w in body["widgets"] if w["type"] == "metric"]
    assert all(w["properties"]["region"] == "eu-west-1" for w in metrics)
    assert all({"x", "y", "width", "height"} <= set(w) for w in body["widgets"])
    titles = [w["properties"]["title"] for w in metrics]
    assert titles[:4] == ["Cost (USD)", "Messages", "LLM calls by model", "Errors by category"]
    expressions = {m[0]["id"]: m[0]["expression"] for w in metrics for m in w["properties"]["metrics"]}
    assert expressions["cost"] == "SEARCH('{\"DadaCat Twilio\",Bot} MetricName=\"CostUSD\"', 'Sum', 3600)"
    assert expressions["errors"].startswith('SEARCH(\'{"DadaCat Twilio",Bot,ErrorCategory} ')
    for stat in ("p50", "p95", "p99"):
        assert expressions[f"latency{stat}"].endswith(f"MetricName=\"LatencyMs\"', '{stat}', 3600)")
        assert ",Bot,Stage}" in expressions[f"latency{stat}"]
    ids = list(expressions)
    assert len(ids) == len(set(ids)) and all(i[0].islower() and i.isalnum() for i in ids)
    dashboard = ["cloudwatch", "dashboard", "--namespace", "N", "--region", "us-east-1"]
    printed = CliRunner().invoke(main, [*dashboard, "--print"])
    assert json.loads(printed.output) == dashboard_body("N", "us-east-1")
    bad = CliRunner().invoke(main, [*dashboard, "--name", "has space", "--print"])
    assert bad.exit_code != 0 and "--name" in bad.output and "'has space'" in bad.output


# -- request shapes and real AWS answers (Stubber) ---------------------------------------------------


@pytest.fixture
def stubbed(monkeypatch):
    """A CloudWatch store whose clients answer from botocore's Stubber; nothing leaves the process."""
    from botocore.stub import Stubber

    for name, value in aws_env("http://127.0.0.1:9").items():
        monkeypatch.setenv(name, value)
    store = open_store("cloudwatch://?namespace=DadaCat&region=us-east-1&mode=api")
    cw_stub = Stubber(store._client("cloudwatch"))
    logs_stub = Stubber(store._client("logs"))
    engine = CloudWatchEngine(store, now=NOW)
    engine.poll_interval_s = 0.01
    with cw_stub, logs_stub:
        yield store, engine, cw_stub, logs_stub
    cw_stub.assert_no_pending_responses()
    logs_stub.assert_no_pending_responses()


def _listed(*series: dict) -> dict:
    """A ListMetrics answer: each series as {"_name": metric name, dimension: value...}."""
    metrics = []
    for item in series:
        dims = [{"Name": k, "Value": v} for k, v in item.items() if k != "_name"]
        metrics.append({"Namespace": "DadaCat", "MetricName": item["_name"], "Dimensions": dims})
    return {"Metrics": metrics}


def test_percentiles_request_and_answer_shapes(stubbed):
    _, engine, cw_stub, _ = stubbed
    cw_stub.add_response(
        "list_metrics",
        _listed({"_name": "LatencyMs", "Bot": "dadacat", "Stage": "reply"}),
        {"Namespace": "DadaCat", "MetricName": "LatencyMs"},
    )
    day = lambda d: datetime(2026, 11, d, tzinfo=UTC)  # noqa: E731
    q = make_query(
        "latency_ms", start=day(23), end=day(25), interval="day", by="stage", stat="p95,p99", now=NOW
    )
    metric = {
        "Namespace": "DadaCat",
        "MetricName": "LatencyMs",
        "Dimensions": [{"Name": "Bot", "Value": "dadacat"}, {"Name": "Stage", "Value": "reply"}],
    }

    def request(stats: list[str]) -> dict:
        return {
            "MetricDataQueries": [
                {
                    "Id": f"q{i}",
                    "MetricStat": {"Metric": metric, "Period": 86400, "Stat": s},
                    "ReturnData": True,
                }
                for i, s in enumerate(stats)
            ],
            "StartTime": day(23),
            "EndTime": day(25),
            "ScanBy": "TimestampAscending",
        }

    def result(i: int, label: str, when: int, value: float, status: str = "Complete") -> dict:
        return {
            "Id": f"q{i}",
            "Label": label,
            "Timestamps": [day(when)],
            "Values": [value],
            "StatusCode": status,
        }

    # Counts first, in two pages as CloudWatch may answer (NextToken), then the percentiles.
    cw_stub.add_response(
        "get_metric_data",
        {
            "MetricDataResults": [result(0, "SampleCount", 23, 120.0, "PartialData")],
            "NextToken": "p2",
            "Messages": [],
        },
        request(["SampleCount"]),
    )
    cw_stub.add_response(
        "get_metric_data",
        {"MetricDataResults": [result(0, "SampleCount", 24, 80.0)], "Messages": []},
        {**request(["SampleCount"]), "NextToken": "p2"},
    )
    cw_stub.add_response(
        "get_metric_data",
        {
            "MetricDataResults": [
                {**result(0, "p95", 23, 812.5), "Timestamps": [day(24), day(23)], "Values": [640.0, 812.5]},
                {**result(1, "p99", 23, 1904.0), "Timestamps": [day(24), day(23)], "Values": [990.0, 1904.0]},
            ],
            "Messages": [],
        },
        request(["p95", "p99"]),
    )
    result = engine.run(q)
    assert [(r["bucket"], r["stage"], r["p95"], r["p99"]) for r in result.rows] == [
        (day(23), "reply", 812.5, 1904.0),
        (day(24), "reply", 640.0, 990.0),
    ]
    assert any("CloudWatch's own statistics" in n for n in result.notes)


def test_percentiles_of_several_series_are_unavailable(stubbed):
    _, engine, cw_stub, _ = stubbed
    reply = {"_name": "LatencyMs", "Bot": "dadacat", "Stage": "reply"}
    cw_stub.add_response("list_metrics", _listed(reply, {**reply, "Stage": "llm"}))
    midnight = NOW.replace(hour=0, minute=0)
    results = [
        {
            "Id": f"q{i}",
            "Label": "SampleCount",
            "Timestamps": [midnight],
            "Values": [v],
            "StatusCode": "Complete",
        }
        for i, v in enumerate([10.0, 5.0])
    ]
    # Only the counts are asked: no percentile request is sent for figures that cannot be combined.
    cw_stub.add_response("get_metric_data", {"MetricDataResults": results, "Messages": []})
    q = make_query("latency_ms", days=1, interval=None, stat="p95", now=NOW)
    with pytest.raises(
        FigureUnavailable,
        match=r"cannot combine them: p95 over LatencyMs\[Stage=llm\], LatencyMs\[Stage=reply\]",
    ):
        engine.run(q)


def _insights_answer(rows: list[dict], status: str = "Complete") -> dict:
    return {
        "results": [
            [{"field": k, "value": v} for k, v in row.items()] + [{"field": "@ptr", "value": "CmAKJwoj"}]
            for row in rows
        ],
        "statistics": {"recordsMatched": 42.0, "recordsScanned": 420.0, "bytesScanned": 81234.0},
        "status": status,
    }  # fmt: skip


def test_active_users_through_logs_insights(stubbed):
    store, engine, _, logs_stub = stubbed
    q = make_query("active_users", start="2026-11-23", end="2026-11-25", interval="day", by="channel",
                   filters={"channel": ['sms", "x']}, now=NOW)  # fmt: skip
    sent = {}

    def capture(params, **_):
        sent.update(params)

    store._client("logs").meta.events.register("before-parameter-build.logs.StartQuery", capture)
    logs_stub.add_response("start_query", {"queryId": "q-1"})
    logs_stub.add_response("get_query_results", {"results": [], "status": "Running"}, {"queryId": "q-1"})
    logs_stub.add_response(
        "get_query_results",
        _insights_answer([{"bucket": "2026-11-23 00:00:00.000", "channel": "sms", "v": "41"},
                          {"bucket": "2026-11-24 00:00:00.000", "channel": "sms", "v": "37"}]),
        {"queryId": "q-1"},
    )  # fmt: skip
    result = engine.run(q)
    assert [(r["bucket"].day, r["channel"], r["count"]) for r in result.rows] == [
        (23, "sms", 41),
        (24, "sms", 37),
    ]
    assert sent["logGroupNames"] == ["/botmeter/DadaCat"]
    assert (sent["startTime"], sent["endTime"]) == (1795392000, 1795564800)
    text = sent["queryString"]
    assert text.startswith("filter ispresent(event_id) and ispresent(kind) and @timestamp >= 1795392000000 "
                           "and @timestamp < 1795564800000")  # fmt: skip
    assert 'kind = "message" and direction = "in"' in text
    assert 'channel in ["sms\\", \\"x"]' in text  # a value is a quoted literal, never query text
    assert text.endswith("| stats count(*) as n by bin(1d) as bucket, channel, user_id "
                         "| stats count(*) as v by bucket, channel")  # fmt: skip


def test_insights_failures_are_unavailable_not_zero(stubbed):
    _, engine, _, logs_stub = stubbed
    engine.insights_timeout_s = 0.05
    logs_stub.add_response("start_query", {"queryId": "slow"})
    for _ in range(3):
        logs_stub.add_response("get_query_results", {"results": [], "status": "Running"}, {"queryId": "slow"})
    logs_stub.add_response("stop_query", {"success": True}, {"queryId": "slow"})
    engine.poll_interval_s = 0.03
    with pytest.raises(FigureUnavailable, match="did not answer within"):
        engine.run(make_query("unpriced_calls", days=1, interval=None, now=NOW))

    logs_stub.add_client_error("start_query", "ResourceNotFoundException", "Log group does not exist")
    with pytest.raises(FigureUnavailable, match="log group /botmeter/DadaCat does not exist"):
        engine.run(make_query("active_users", days=1, interval=None, now=NOW))

    logs_stub.add_response("start_query", {"queryId": "raw"})
    # What moto answers: the records themselves, without the figure asked for.
    logs_stub.add_response("get_query_results", {"results": [[{"field": "@ptr", "value": "x"}]],
                                                 "status": "Complete"})  # fmt: skip
    with pytest.raises(FigureUnavailable, match="without the 'v' field"):
        engine.run(make_query("unpriced_calls", days=1, interval=None, now=NOW))


def test_error_groups_through_logs_insights(stubbed):
    _, engine, _, logs_stub = stubbed
    start, end = datetime(2026, 11, 18, tzinfo=UTC), NOW
    logs_stub.add_response(
        "describe_log_groups",
        {
            "logGroups": [
                {"logGroupName": "/botmeter/DadaCat", "creationTime": 1790000000000, "storedBytes": 2048}
            ]
        },
    )
    for query_id in ("w", "h", "b"):
        logs_stub.add_response("start_query", {"queryId": query_id})
    logs_stub.add_response("get_query_results", _insights_answer([
        {"fingerprint": "fp-new", "n": "12", "users": "4", "conversations": "5",
         "first_in_period": "2026-11-24 08:00:00.000", "last_seen": "2026-11-25 09:00:00.000",
         "error_type": "RateLimitError", "category": "rate_limit", "severity": "error", "message": "429"},
        {"fingerprint": "fp-back", "n": "3", "users": "1", "conversations": "1",
         "first_in_period": "2026-11-20 08:00:00.000", "last_seen": "2026-11-20 09:00:00.000",
         "error_type": "TimeoutError", "category": "timeout", "severity": "warning", "message": "slow"},
    ]))  # fmt: skip
    logs_stub.add_response("get_query_results", _insights_answer([
        {"hour": "2026-11-24 08:00:00.000", "fingerprint": "fp-new", "n": "12"},
        {"hour": "2026-11-20 08:00:00.000", "fingerprint": "fp-back", "n": "3"},
    ]))  # fmt: skip
    logs_stub.add_response("get_query_results", _insights_answer([
        {"fingerprint": "fp-back", "first_seen": "2026-10-01 00:00:00.000",
         "last_before": "2026-10-02 00:00:00.000"},
    ]))  # fmt: skip
    groups = engine.error_groups(start, end, quiet_days=7)
    assert [(g["fingerprint"], g["count"], g["status"]) for g in groups] == [
        ("fp-new", 12, "new"),
        ("fp-back", 3, "regressed"),
    ]
    assert groups[0]["category"] == "rate_limit" and groups[0]["users"] == 4
    assert groups[1]["first_seen"] == datetime(2026, 10, 1, tzinfo=UTC)


def test_explore_from_list_metrics_and_the_records(stubbed):
    from botmeter.backends.cloudwatch.store import METRICS

    _, engine, cw_stub, logs_stub = stubbed
    group = {"logGroupName": "/botmeter/DadaCat", "creationTime": 1790000000000, "storedBytes": 4096}
    logs_stub.add_response("describe_log_groups", {"logGroups": [group]})
    for query_id in ("kinds", "days"):
        logs_stub.add_response("start_query", {"queryId": query_id})
    logs_stub.add_response("get_query_results", _insights_answer([
        {"kind": "message", "n": "30", "first": "2026-11-20 08:00:00.000", "last": "2026-11-25 09:00:00.000"},
        {"kind": "llm_call", "n": "10", "first": "2026-11-21 08:00:00.000",
         "last": "2026-11-24 09:00:00.000"},
    ]))  # fmt: skip
    logs_stub.add_response(
        "get_query_results", _insights_answer([{"day": "2026-11-20 00:00:00.000", "n": "40"}])
    )
    for m in METRICS:
        answer = (
            _listed({"_name": m.name, "Bot": "dadacat", "Channel": "sms"}) if m.name == "Messages" else {}
        )
        cw_stub.add_response("list_metrics", answer or {"Metrics": []})
    logs_stub.add_response("describe_log_groups", {"logGroups": [group]})
    info = engine.explore()
    assert info["events"] == 40 and info["kinds"] == {"message": 30, "llm_call": 10}
    assert info["first_event"] == datetime(2026, 11, 20, 8, tzinfo=UTC)
    assert info["events_per_day"] == [{"day": datetime(2026, 11, 20, tzinfo=UTC), "events": 40}]
    assert info["dimensions"]["channel"]["values"] == ["sms"] and info["metrics"] == {"Messages": 1}
    assert info["storage_bytes"] == 4096
