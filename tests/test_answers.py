"""The answers layer: every question from raw text parameters, read once, with the same message for
a bad parameter on every interface (the command line, the chat admin, the Lambda's HTTP routes and
its Bedrock functions), over a real DuckDB store."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner

import botmeter
from botmeter import answers
from botmeter.analyse import Reader
from botmeter.answers import ANSWERS, ParameterError, answer, http_route
from botmeter.interfaces.cli import main
from botmeter.report.responses import Report, to_text
from test_aws_lambda import HASH_KEY, agent_event, filled, rest_event  # noqa: F401

ADMIN = "+15550001111"


def _by_model(report: Report) -> dict:
    return {r["model"]: r["value"] for r in report.data["rows"]}


def _metric(report: Report) -> None:
    assert report.kind == "query" and report.data["metric"] == "cost_usd"
    assert _by_model(report) == {"gpt-4o": pytest.approx(10.0), "claude-x": pytest.approx(0.34)}


# One case per registered answer: (raw parameters, what a user would check in the report).
CASES = {
    "summary": (
        {"days": "7"},
        lambda r: (
            r.data["costs"]["total_usd"]["value"] == pytest.approx(10.34) and r.data["period"]["days"] == 7
        ),
    ),
    "metric": (
        {
            "metric": "cost_usd",
            "days": "1",
            "interval": "none",
            "by": "model",
            "filter": ["model=gpt-4o|claude-x"],
        },
        lambda r: _metric(r) is None,
    ),
    "errors": (
        {"days": "7"},
        lambda r: [(g["error_type"], g["count"]) for g in r.data["groups"]] == [("rate_limit_exceeded", 1)],
    ),
    "engagement": (
        {"days": "7"},
        lambda r: (r.data["active_users"], r.data["messages"], r.data["conversations"]) == (4, 4, 4),
    ),
    "latency": (
        {"days": "7"},
        lambda r: r.data["by_model"]["gpt-4o"]["p50"] == pytest.approx(901.5) and "gpt-4o" in to_text(r),
    ),
    "costs": ({"days": "7"}, lambda r: r.data["total_usd"] == pytest.approx(10.34)),
    "analytics_status": (
        {"days": "7"},
        lambda r: r.kind == "analytics_status" and r.data["today_cost_usd"] == pytest.approx(10.34),
    ),
    "status": ({}, lambda r: r.data["enabled"] is True and r.data["store"].startswith("duckdb://")),
    "alerts": (
        {"rules": "RULES"},
        lambda r: [a["rule"] for a in r.data["alerts"]] == ["daily_budget"],
    ),
    "dashboard": (
        {"days": "7", "tz": "Europe/London"},
        lambda r: (
            r.data["period"]["days"] == 7 and r.data["kpis"]["cost_usd"]["value"] == pytest.approx(10.34)
        ),
    ),
    "explore": ({"top": "2"}, lambda r: r.data["kinds"] == {"llm_call": 5, "message": 4, "error": 1}),
    "store_status": (
        {},
        lambda r: r.data["events"] == 10 and r.data["by_kind"] == {"llm_call": 5, "message": 4, "error": 1},
    ),
}


def test_every_registered_answer_has_a_case():
    assert set(CASES) == set(ANSWERS)
    for name, found in ANSWERS.items():
        assert found.help and found.name == name


@pytest.mark.parametrize("name", list(CASES))
def test_each_answer_from_raw_text_parameters(filled, tmp_path, name):  # noqa: F811
    raw, check = CASES[name]
    if "rules" in raw:
        rules = tmp_path / "rules.toml"
        rules.write_text("daily_budget_usd = 1.0\n")
        raw = {**raw, "rules": str(rules)}
    if ANSWERS[name].needs == "meter":
        with botmeter.Meter(bot="dadacat", store=filled, hash_key=HASH_KEY) as meter:
            report = answer(name, meter, raw)
    else:
        report = answer(name, Reader(filled), raw)
    assert isinstance(report, Report) and check(report), report.data
    assert to_text(report)  # every answer goes out in every form


def test_parameters_are_read_once_and_typed():
    read = answers.parameters(
        "metric",
        {
            "metric": "messages",
            "days": " 30 ",
            "interval": "none",
            "by": "channel, direction",
            "filter": ["channel=sms|whatsapp", "direction=in"],
            "stat": "",  # an empty value is a value left out
            "start": None,
        },
    )
    assert (read.days, read.interval, read.by, read.stat) == (30, None, ("channel", "direction"), None)
    assert read.filters == {"channel": ["sms", "whatsapp"], "direction": ["in"]}
    period = answers.parameters("errors", {"start": "2026-11-01", "end": "2026-11-08T12:00Z"})
    assert period.start == datetime(2026, 11, 1, tzinfo=UTC) and period.end.hour == 12
    refused = {
        ("summary", "days", "0"): "days: expected a whole number from 1 to 3650, got '0'",
        ("metric", "filter", "model"): "filter: 'model' is not dimension=value",
        (
            "metric",
            "interval",
            "fortnight",
        ): "interval: 'fortnight' is not one of hour, day, week, month or none",
        ("metric", "limit", "ten"): "limit: expected a whole number, got 'ten'",
        ("dashboard", "tz", "Mars/Olympus"): "tz: 'Mars/Olympus' is not an IANA time zone",
        ("dashboard", "budget", "-5"): "budget: '-5' is not a budget: give a positive amount in USD",
        ("errors", "start", "last tuesday"): "start: 'last tuesday' is not an ISO date",
        ("costs", "colour", "blue"): "colour: unknown parameter; valid: days, end, start",
    }
    for (name, field, value), message in refused.items():
        with pytest.raises(ParameterError, match="^" + re.escape(message)) as caught:
            answers.parameters(name, {field: value})
        assert caught.value.field == field and isinstance(caught.value, ValueError)
    with pytest.raises(ParameterError, match=r"^days: given 2 times; give it once"):
        answers.parameters("summary", {"days": ["7", "8"]})
    with pytest.raises(ParameterError, match=r"^answer: unknown question 'weather'"):
        answers.parameters("weather", {})


def test_http_routes_map_paths_onto_answers(filled):  # noqa: F811
    route = http_route("/metrics/cost%20usd")
    assert route is not None and (route.answer, route.params) == ("metric", {"metric": ["cost usd"]})
    assert route.formats and "filter" in route.accepts and "metric" not in route.accepts
    assert {
        p: (http_route(p).answer, http_route(p).formats) for p in ("/summary", "/errors/", "/dashboard")
    } == {
        "/summary": ("summary", True),
        "/errors/": ("errors", True),
        "/dashboard": ("dashboard", False),
    }
    assert http_route("/admin") is None and http_route("/metrics") is None and http_route("/") is None
    # The query string is the answer's raw parameters; the path's own parameter cannot be overridden.
    report = http_route("/metrics/cost_usd").reply(Reader(filled), {"days": ["1"], "interval": ["none"]})
    assert report.data["rows"][0]["value"] == pytest.approx(10.34)
    with pytest.raises(
        ParameterError, match=r"^metric: unknown parameter; valid: by, days, end, filter, format"
    ):
        http_route("/metrics/cost_usd").reply(Reader(filled), {"metric": ["errors"]}, also=("format",))
    # A refused request never opens the store.
    opened = []
    with pytest.raises(ParameterError):
        http_route("/summary").reply(answers.Later(lambda: opened.append(1)), {"days": ["lots"]})
    assert opened == []


def test_http_errors_are_mapped_once():
    from botmeter.analyse.query import FigureUnavailable, QueryError
    from botmeter.exceptions import StoreLocked

    assert answers.http_error(ParameterError("days", "days: no")) == (
        400,
        {"error": "days: no", "field": "days"},
    )
    assert answers.http_error(QueryError("by: 'colour' is not a dimension")) == (
        400,
        {"error": "by: 'colour' is not a dimension", "field": "by"},
    )
    assert answers.http_error(FigureUnavailable("retention from CloudWatch")) == (
        422,
        {"error": "retention from CloudWatch", "unavailable": True},
    )
    assert answers.http_error(StoreLocked("held by another process"))[0] == 503


BAD_DAYS = "days: expected a whole number from 1 to 3650, got 'lots'"
BAD_FILTER = "filter: 'model' is not dimension=value"


def test_a_bad_parameter_is_the_same_message_on_every_interface(filled, tmp_path):  # noqa: F811
    from botmeter.aws_lambda import handler

    with pytest.raises(ParameterError, match=f"^{BAD_DAYS}$"):
        answer("summary", Reader(filled), {"days": "lots"})
    # The command line: a usage error naming the option, exit 2, no traceback.
    cli = CliRunner().invoke(main, ["summary", "--days", "lots", "--store", filled])
    assert cli.exit_code == 2 and BAD_DAYS in cli.output and "--days" in cli.output
    assert "Traceback" not in cli.output
    cli = CliRunner().invoke(main, ["query", "cost_usd", "--filter", "model", "--store", filled])
    assert cli.exit_code == 2 and BAD_FILTER in cli.output and "--filter" in cli.output
    # The chat admin: the same words in the reply.
    meter = botmeter.Meter(
        bot="dadacat", store=filled, admins=[ADMIN], hash_key=HASH_KEY, spool_dir=str(tmp_path / "sp")
    )
    try:
        for command in ("analytics_status", "costs", "errors"):
            reply = meter.admin_reply(sender=ADMIN, text=f"admin:{command} lots", format="text")
            assert reply == f"admin:{command}: {BAD_DAYS}. Try admin:help."
    finally:
        meter.close()
    # The Lambda's HTTP routes: 400 with the message and the field.
    for event in (rest_event("/summary", {"days": "lots"}), rest_event("/errors", {"days": "lots"})):
        response = handler(event, None)
        assert response["statusCode"] == 400
        assert json.loads(response["body"]) == {"error": BAD_DAYS, "field": "days"}
    response = handler(rest_event("/metrics/cost_usd", {"filter": "model"}), None)
    assert response["statusCode"] == 400
    assert json.loads(response["body"]) == {"error": BAD_FILTER, "field": "filter"}
    # The Lambda's Bedrock functions: the agent is asked to reprompt, with the same words.
    for function in ("get_summary", "get_costs", "get_metric"):
        params = {"days": "lots", **({"metric": "cost_usd"} if function == "get_metric" else {})}
        out = handler(agent_event(function, **params), None)["response"]["functionResponse"]
        assert out["responseState"] == "REPROMPT"
        assert out["responseBody"]["TEXT"]["body"] == f"Please check the request: {BAD_DAYS}"


def test_a_bot_that_only_records_does_not_load_the_analysis():
    # botmeter.Meter reaches the answers through the chat admin: the summary, alerts and dashboard
    # figures are loaded when a question asks for them, not when a bot imports botmeter.
    import subprocess
    import sys

    code = "import json, sys; from botmeter import Meter; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = set(json.loads(out))
    assert "botmeter.analyse.query" in loaded and not loaded & {
        "botmeter.analyse.summary",
        "botmeter.analyse.alerts",
        "botmeter.analyse.dashboard_figures",
        "botmeter.analyse.trends",
    }
