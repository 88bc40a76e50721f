"""One failing figure costs only itself: over a CloudWatch store (moto's server, a real process)
where every GetMetricData request for the Errors metric fails with a 500, each answer that
combines figures (the summary, the Bedrock agent, admin replies, the scheduled report, the
Lambda routes) gives the figures it has and names the missing ones with the reason.

moto does not fail on demand: the 500s come from a fault injector in front of it (tests/fault_proxy.py).
"""

from __future__ import annotations

import json
import uuid

import pytest

import botmeter
from aws_emulator import aws_env
from fault_proxy import FaultProxy
from test_aws_lambda import agent_event, rest_event, scheduled_event

HASH_KEY = "ab" * 16
ADMIN = "+15550001111"


@pytest.fixture
def failing_errors(aws, monkeypatch, tmp_path):
    """A CloudWatch store with a few events, read through a proxy that fails the Errors metric."""
    tag = uuid.uuid4().hex[:8]
    namespace, bot = f"Part{tag}", f"bot-{tag}"
    url = f"cloudwatch://?namespace={namespace}&region=us-east-1&mode=api"
    m = botmeter.Meter(
        bot=bot, store=url, spool_dir=str(tmp_path / "spool"), hash_key=HASH_KEY, flush_interval=0.05
    )
    for _ in range(6):
        m.track_sms(direction="in", text="hello", user="+15551234567", conversation="c-1", cost_usd=0.0079)
    m.track_llm_call(provider="openai", model="gpt-4o", input_tokens=100, cost_usd=0.25)
    m.track_error("rate_limit_exceeded", stage="llm")
    assert m.flush()
    m.close()
    proxy = FaultProxy(aws.url)
    proxy.add(("GetMetricData", "Errors"), "status500")
    for name, value in aws_env(proxy.url).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("BOTMETER_STORE", url)
    monkeypatch.setattr("botmeter.backends.cloudwatch.store.CloudWatchStore.backoff_s", 0.001)
    yield url, bot, proxy
    proxy.close()


def _says_errors_missing(text: str) -> None:
    assert "Not available from this store: errors (the store failed to answer" in text
    assert "500" in text or "InternalFailure" in text or "injected" in text


def test_summary_keeps_the_figures_it_has(failing_errors):
    from botmeter.analyse import Reader
    from botmeter.analyse.summary import summarise

    url, _, proxy = failing_errors
    summary = summarise(Reader(url), 7)
    assert proxy.seen  # the fault was hit
    assert summary["costs"]["total_usd"]["value"] == pytest.approx(6 * 0.0079 + 0.25)
    assert summary["engagement"]["inbound_messages"]["value"] == 6
    assert summary["errors"]["errors"]["value"] is None  # not zero
    assert summary["unavailable"]["errors"].startswith("the store failed to answer")


def test_bedrock_get_summary_and_get_costs(failing_errors):
    from botmeter.aws_lambda import handler

    answer = handler(agent_event("get_summary", days="7"), None)["response"]["functionResponse"]
    assert "responseState" not in answer  # an answer, not a failure
    body = answer["responseBody"]["TEXT"]["body"]
    assert "$0.2974" in body
    _says_errors_missing(body)
    costs = handler(agent_event("get_costs", days="7"), None)["response"]["functionResponse"]
    assert "responseState" not in costs and "$0.2974" in costs["responseBody"]["TEXT"]["body"]


def test_lambda_routes_and_the_scheduled_report(failing_errors):
    from botmeter.aws_lambda import handler

    answer = handler(rest_event("/summary", {"days": "7"}), None)
    assert answer["statusCode"] == 200
    summary = json.loads(answer["body"])
    assert summary["errors"]["errors"]["value"] is None  # not zero
    assert summary["unavailable"]["errors"].startswith("the store failed to answer")
    text = handler(rest_event("/summary", {"days": "7", "format": "text"}), None)
    assert text["statusCode"] == 200 and "$0.2974" in text["body"]
    _says_errors_missing(text["body"])
    dashboard = handler(rest_event("/dashboard", {"days": "7"}), None)
    assert dashboard["statusCode"] == 200 and "errors" in json.loads(dashboard["body"])["unavailable"]
    report = handler(scheduled_event({"days": 7}), None)
    assert "$0.2974" in report["text"]
    _says_errors_missing(report["text"])


def test_admin_replies(failing_errors, tmp_path):
    url, bot, _ = failing_errors
    from botmeter.chat_admin import Admin

    m = botmeter.Meter(bot=bot, store=url, spool_dir=str(tmp_path / "s2"), hash_key=HASH_KEY)
    try:
        admin = Admin(m, [ADMIN])
        admin.reply_timeout = 120  # what a reply says when one figure fails is the point, not its speed
        text = admin.reply(ADMIN, "admin:analytics_status 7", format="text")
        assert "$0.2974" in text and "could not answer" not in text
        _says_errors_missing(text)
        costs = admin.reply(ADMIN, "admin:costs 7", format="text")
        assert "$0.2974" in costs and "could not answer" not in costs
    finally:
        m.close()


def test_a_store_that_answers_nothing_says_so(failing_errors):
    from botmeter.aws_lambda import handler

    _, _, proxy = failing_errors
    proxy.clear()
    proxy.add("", "status500")  # every request fails
    answer = handler(agent_event("get_summary", days="7"), None)["response"]["functionResponse"]
    assert answer["responseState"] == "FAILURE"
    assert "could not answer" in answer["responseBody"]["TEXT"]["body"]
