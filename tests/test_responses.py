"""The response builder: one result (a summary, a query result, error groups, costs, alerts) in the
shapes its consumers take: SMS segments counted as carriers count them, Slack blocks checked by the
Slack SDK's own Block Kit models, Markdown parsed by a CommonMark parser, Bedrock agent and API
Gateway responses in their documented shapes. Event text that would be a mention, a link, markup
or a script in some consumer stays text in every one."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner
from markdown_it import MarkdownIt
from slack_sdk.models.blocks import Block

from botmeter import Meter
from botmeter.analyse import Reader
from botmeter.analyse.summary import summarise
from botmeter.demo import run_demo
from botmeter.interfaces.cli import main
from botmeter.process.sms import GSM7, sms_parts
from botmeter.report import responses as r
from botmeter.report.numbers import money

# Text a bot's users (or its errors) can put into events, aimed at each consumer.
CHAT_PAYLOADS = (
    "<!channel> <@UBOT> <#CGENERAL|general> <https://evil.example|click here>",  # Slack mentions, links
    "*bold* _it_ ~strike~ `code` [x](javascript:alert(1)) ![i](https://evil.example/i.png)",
    "| col | col |\n|---|---|\n# heading",  # a Markdown table and heading, if it were markup
    "<script>alert('x')</script><img src=x onerror=alert(1)>",
    "日本語の返信 ✓ “quoted” — long dash … ✨",  # none of it is GSM-7
)


@pytest.fixture(scope="module")
def store(tmp_path_factory, clean_env_for_module) -> str:
    """The demo bot, plus a week of events named with the payloads above."""
    url = f"duckdb://{tmp_path_factory.mktemp('responses') / 'bot.duckdb'}"
    run_demo(url, days=21, users=60, seed=3, progress=False)
    now = datetime.now(UTC)
    meter = Meter(bot="hostile", store=url, hash_users=False, flush_interval=0.05)
    for day in range(7):
        at = (now - timedelta(days=day)).replace(hour=0, minute=30, second=0, microsecond=0)
        for i, payload in enumerate(CHAT_PAYLOADS):
            ts = at + timedelta(minutes=i)
            meter.track_message(direction="in", user=payload, conversation=payload, ts=ts)
            meter.track_llm_call(provider=payload, model=payload, input_tokens=10, cost_usd=0.5, ts=ts)
            meter.track_error(type(f"E{i}", (Exception,), {})(payload), stage=payload, ts=ts)
            meter.track_activity(payload, user=payload, ts=ts)
    meter.close()
    return url


@pytest.fixture(scope="module")
def reader(store) -> Reader:
    return Reader(store)


@pytest.fixture(scope="module")
def reports(reader) -> dict[str, r.Report]:
    window = reader.window(7)
    summary = summarise(reader, 7)
    alerts = [
        {"id": "x", "rule": "new_error_group", "message": f"new error group: {p}"} for p in CHAT_PAYLOADS
    ]
    return {
        "summary": r.summary_report({**summary, "alerts": alerts}),
        "total": r.query_report(reader.query("cost_usd", days=7, interval=None)),
        "by_model": r.query_report(reader.query("cost_usd", days=7, interval=None, by="model")),
        "series": r.query_report(reader.query("messages", days=7, interval="day", by="direction")),
        "percentiles": r.query_report(reader.query("latency_ms", days=7, interval=None, stat="p50,p95,p99")),
        "retention": r.query_report(reader.query("retention", days=21, interval="week")),
        "activities": r.query_report(reader.query("activities", days=7, interval=None, by="name")),
        "errors": r.error_groups_report(reader.error_groups(start=window[0], end=window[1]), *window),
        "costs": r.costs_report(reader.costs(7)),
        "alerts": r.alerts_report(alerts),
        "message": r.message_report("botmeter could not answer: <!here> *now*"),
    }


def _texts(report: r.Report) -> list[str]:
    return [line.text for s in report.sections for line in s.lines]


# -- SMS ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("segments", [1, 2, 3])
def test_sms_is_gsm7_and_fits_the_segments_asked_for(reports, segments):
    for name, report in reports.items():
        text = r.to_sms(report, segments)
        parts, encoding = sms_parts(text)
        assert encoding == GSM7, (name, text)
        assert parts <= segments, (name, parts, text)


def test_sms_summary_leads_with_the_key_figures(reports, reader):
    summary = reports["summary"].data
    text = r.to_sms(reports["summary"])
    assert text.startswith("botmeter 7d: cost " + money(summary["costs"]["total_usd"]["value"]))
    users = f"users {summary['engagement']['active_users']['value']:,}"
    assert users in text
    # One segment still carries the cost and the users; what did not fit is counted, not cut mid-word.
    short = r.to_sms(reports["summary"], 1)
    assert money(summary["costs"]["total_usd"]["value"]) in short and users in short
    assert short.endswith("more)") or short.endswith("...")


def test_sms_of_a_breakdown_lists_the_largest_first(reports, reader):
    rows = reader.query("cost_usd", days=7, interval=None, by="model").rows
    largest = max(rows, key=lambda row: row["sum"] or 0)
    text = r.to_sms(reports["by_model"])
    assert text.startswith("cost usd by model: total ")
    first = text.split("; ", 1)[1]
    assert first.startswith(f"{largest['model'] or '(no model)'} {money(largest['sum'])}")
    assert "(none)" not in text


def test_sms_refuses_zero_segments(reports):
    with pytest.raises(ValueError, match="max_segments: expected 1 or more, got 0"):
        r.to_sms(reports["total"], 0)


# -- Slack ---------------------------------------------------------------------------------------------


def test_slack_mrkdwn_keeps_event_text_as_text(reports):
    for name, report in reports.items():
        text = r.to_slack(report)
        # Slack reads <...> as mentions and links: none may come from events.
        for payload in ("<!channel>", "<@U024BE7LH>", "<https://evil.example", "<!here>", "<script>"):
            assert payload not in text, (name, payload)
    # Error messages come masked (numbers, URLs); model and activity names as the bot sent them.
    assert "&lt;!channel&gt; &lt;@UBOT&gt; &lt;#CGENERAL|general&gt;" in r.to_slack(reports["errors"])
    assert "&lt;https://evil.example|click here&gt;" in r.to_slack(reports["by_model"])


def test_slack_blocks_pass_the_slack_sdk_block_kit_checks(reports):
    for name, report in reports.items():
        message = r.to_slack_blocks(report)
        assert isinstance(message["text"], str) and message["text"], name
        assert len(message["text"]) <= r.SLACK_SECTION_CHARS
        assert 1 <= len(message["blocks"]) <= r.SLACK_MAX_BLOCKS, name
        for block in message["blocks"]:
            Block.parse(block).to_dict()  # raises SlackObjectFormationError past any limit
        json.dumps(message)
        assert "<!channel>" not in json.dumps(message)


def test_slack_blocks_of_a_long_result_stay_within_the_limits(reader):
    window = reader.window(7)
    groups = reader.error_groups(start=window[0], end=window[1])
    many = [
        {**g, "fingerprint": f"{g['fingerprint']}{i}", "message": "x" * 400}
        for i in range(1000)
        for g in groups[:1]
    ]
    message = r.to_slack_blocks(r.error_groups_report(many, *window))
    assert len(message["blocks"]) <= r.SLACK_MAX_BLOCKS
    for block in message["blocks"]:
        Block.parse(block).to_dict()
    assert "more blocks left out" in json.dumps(message["blocks"][-1])


# -- Markdown ------------------------------------------------------------------------------------------


def test_markdown_parses_to_the_figures_table_and_event_text_stays_text(reports):
    md = MarkdownIt("commonmark").enable("table")  # raw HTML allowed, as many renderers do
    for name, report in reports.items():
        html = md.render(r.to_markdown(report))
        assert "<script" not in html and "<img" not in html and 'href="javascript' not in html, name
        assert "<a " not in html, name  # no event text became a link
        assert "<h1>" not in html and "<h3>heading" not in html, name
        if report.figures:
            tokens = md.parse(r.to_markdown(report))
            rows = [t for t in tokens if t.type == "tr_open"]
            assert len(rows) == len(report.figures) + 1, name  # the header and one row per figure
    html = md.render(r.to_markdown(reports["errors"]))
    assert "&lt;script&gt;alert" in html and "*bold* _it_" in html


# -- JSON ---------------------------------------------------------------------------------------------


def test_json_of_a_query_is_what_botmeter_query_prints(reports, store):
    out = CliRunner().invoke(
        main,
        [
            "query",
            "cost_usd",
            "--days",
            "7",
            "--interval",
            "none",
            "--by",
            "model",
            "--format",
            "json",
            "--store",
            store,
        ],
    )
    assert out.exit_code == 0, out.output
    data = json.loads(r.to_json(reports["by_model"]))
    assert data["rows"] == json.loads(out.output)
    assert (data["metric"], data["unit"], data["by"], data["interval"]) == (
        "cost_usd",
        "USD",
        ["model"],
        "none",
    )


def test_json_of_error_groups_and_summary(reports, reader):
    data = json.loads(r.to_json(reports["errors"]))
    window = reader.window(7)
    groups = reader.error_groups(start=window[0], end=window[1])
    assert [g["fingerprint"] for g in data["groups"]] == [g["fingerprint"] for g in groups]
    assert [g["count"] for g in data["groups"]] == [g["count"] for g in groups]
    assert "hourly" not in data["groups"][0]
    summary = json.loads(r.to_json(reports["summary"]))
    assert summary["costs"]["total_usd"]["value"] == pytest.approx(
        reader.query("cost_usd", days=7, interval=None).total()
    )


# -- Bedrock agents and API Gateway ------------------------------------------------------------------------

AGENT_EVENT = {
    "messageVersion": "1.0",
    "agent": {"name": "ops", "id": "AGENT123", "alias": "TSTALIASID", "version": "DRAFT"},
    "inputText": "what did the bot cost this week?",
    "sessionId": "s-1",
    "actionGroup": "botmeter",
    "function": "get_costs",
    "parameters": [{"name": "days", "type": "integer", "value": "7"}],
    "sessionAttributes": {"team": "bots"},
    "promptSessionAttributes": {},
}


def test_bedrock_response_is_the_function_details_shape(reports):
    for name, report in reports.items():
        out = r.to_bedrock(report, AGENT_EVENT)
        assert set(out) == {"messageVersion", "response", "sessionAttributes", "promptSessionAttributes"}
        assert out["messageVersion"] == "1.0" and out["sessionAttributes"] == {"team": "bots"}
        response = out["response"]
        assert (response["actionGroup"], response["function"]) == ("botmeter", "get_costs")
        assert set(response["functionResponse"]) == {"responseBody"}
        body = response["functionResponse"]["responseBody"]["TEXT"]["body"]
        assert body == r.to_text(report), name
        assert len(json.dumps(out).encode()) < r.BEDROCK_MAX_BYTES
    failed = r.to_bedrock(reports["message"], AGENT_EVENT, "REPROMPT")
    assert failed["response"]["functionResponse"]["responseState"] == "REPROMPT"
    with pytest.raises(ValueError, match="state: expected None, 'REPROMPT' or 'FAILURE', got 'OK'"):
        r.to_bedrock(reports["message"], AGENT_EVENT, "OK")


def test_bedrock_response_of_a_huge_result_fits_the_agents_limit(reader):
    window = reader.window(7)
    groups = reader.error_groups(start=window[0], end=window[1])
    many = [{**g, "message": "y" * 150} for g in groups for _ in range(200)]
    out = r.to_bedrock(r.error_groups_report(many, *window), AGENT_EVENT)
    assert len(json.dumps(out).encode()) < r.BEDROCK_MAX_BYTES
    assert out["response"]["functionResponse"]["responseBody"]["TEXT"]["body"].endswith(
        "(cut to fit the agent's limit)"
    )


@pytest.mark.parametrize("fmt", list(r.API_FORMATS))
def test_api_gateway_response_is_a_lambda_proxy_response(reports, fmt):
    for report in reports.values():
        out = r.to_api_gateway(report, 200, fmt)
        assert set(out) == {"statusCode", "headers", "body", "isBase64Encoded"}
        assert out["statusCode"] == 200 and out["isBase64Encoded"] is False
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in out["headers"].items())
        assert isinstance(out["body"], str)
        if out["headers"]["content-type"] == "application/json":
            json.loads(out["body"])
        else:
            assert (
                out["headers"]["content-type"].startswith("text/")
                and "charset=utf-8" in out["headers"]["content-type"]
            )
    with pytest.raises(
        ValueError, match="format: expected one of json, text, sms, markdown, slack, got 'xml'"
    ):
        r.to_api_gateway(reports["total"], 200, "xml")


# -- one entry point ---------------------------------------------------------------------------------


def test_render_takes_any_result_and_names_what_it_cannot(reader):
    result = reader.query("messages", days=7, interval=None)
    assert r.render(result, "sms") == r.to_sms(r.query_report(result))
    assert r.render(summarise(reader, 7), "markdown").startswith("## botmeter summary: last 7 days")
    assert r.render(reader.costs(7), "text").startswith("botmeter costs (")
    assert r.render(reader.errors(7), "text").startswith("botmeter errors (")
    with pytest.raises(
        ValueError,
        match="consumer: expected one of text, sms, slack, slack_blocks, markdown, json, got 'fax'",
    ):
        r.render(result, "fax")
    with pytest.raises(TypeError, match="result: cannot report an object of type int"):
        r.render(42, "text")


def test_cli_offers_every_form(store):
    runner = CliRunner()
    sms = runner.invoke(main, ["summary", "--days", "7", "--format", "sms", "--store", store])
    parts, encoding = sms_parts(sms.output.rstrip("\n"))
    assert sms.exit_code == 0 and encoding == GSM7 and parts <= 2, sms.output
    blocks = runner.invoke(main, ["errors", "--days", "7", "--format", "slack-blocks", "--store", store])
    assert blocks.exit_code == 0, blocks.output
    for block in json.loads(blocks.output)["blocks"]:
        Block.parse(block).to_dict()
    md = runner.invoke(
        main,
        [
            "query",
            "errors",
            "--by",
            "category",
            "--interval",
            "none",
            "--format",
            "markdown",
            "--store",
            store,
        ],
    )
    assert md.exit_code == 0 and md.output.startswith("## errors by category"), md.output
    bad = runner.invoke(main, ["errors", "--format", "fax", "--store", store])
    assert bad.exit_code == 2 and "'fax' is not one of" in bad.output
