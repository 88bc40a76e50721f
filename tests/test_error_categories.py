"""Error categories from the real client libraries' exception objects (openai, anthropic, botocore,
urllib), built as the SDKs build them from an HTTP response, and what the store keeps of them."""

from __future__ import annotations

import json
import socket
import urllib.error

import httpx
import pytest
from click.testing import CliRunner

from botmeter import Meter
from botmeter.analyse import Reader
from botmeter.interfaces.cli import main
from botmeter.process.error_facts import categorise, describe, provider_of
from conftest import query

anthropic = pytest.importorskip("anthropic")
openai = pytest.importorskip("openai")
botocore_exceptions = pytest.importorskip("botocore.exceptions")


def openai_error(status: int, body: dict) -> Exception:
    """What openai raises for an error response: the class for the status, the body's error object."""
    request = httpx.Request("POST", "https://api.openai.com/v1/chat/completions")
    response = httpx.Response(status, request=request, json={"error": body})
    client = openai.OpenAI(api_key="sk-test")
    return client._make_status_error(body["message"], body=body, response=response)


def anthropic_error(status: int, error_type: str, message: str) -> Exception:
    request = httpx.Request("POST", "https://api.anthropic.com/v1/messages")
    body = {"type": "error", "error": {"type": error_type, "message": message}}
    response = httpx.Response(status, request=request, json=body)
    client = anthropic.Anthropic(api_key="sk-ant-test")
    return client._make_status_error(message, body=body, response=response)


def bedrock_error(status: int, code: str, message: str) -> Exception:
    response = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status, "RequestId": "b2c1"},
    }
    return botocore_exceptions.ClientError(response, "InvokeModel")


QUOTA = [
    openai_error(429, {"message": "You exceeded your current quota, please check your plan and billing "
                       "details.", "type": "insufficient_quota", "param": None,
                       "code": "insufficient_quota"}),
    # A spend-limit code beside the quota type; the message reads like a rate limit.
    openai_error(429, {"message": "Rate limit reached. Please try again later.", "type": "insufficient_quota",
                       "param": None, "code": "spend_limit_reached"}),
    openai_error(429, {"message": "You have run out of credits.", "type": "insufficient_quota", "param": None,
                       "code": None}),
    anthropic_error(429, "rate_limit_error", "You have reached your specified workspace API usage limits. "
                    "You will regain access on 2026-12-01 at 00:00 UTC."),
    anthropic_error(400, "invalid_request_error", "Your credit balance is too low to access the Anthropic "
                    "API. Please go to Plans & Billing to upgrade or purchase credits."),
]  # fmt: skip


@pytest.mark.parametrize("error", QUOTA, ids=lambda e: f"{type(e).__module__.split('.')[0]}-{e.status_code}")
def test_quota_and_spend_limits_are_quota_whatever_the_status(error: Exception) -> None:
    assert error.status_code in (400, 429)
    assert categorise(describe(error)) == "quota"


def test_a_plain_rate_limit_stays_a_rate_limit() -> None:
    error = openai_error(429, {"message": "Rate limit reached for gpt-4o-mini on tokens per min (TPM): Limit "
                                          "200000, Used 199000, Requested 1500.", "type": "tokens",
                               "param": None, "code": "rate_limit_exceeded"})  # fmt: skip
    assert categorise(describe(error)) == "rate_limit"
    tokens = anthropic_error(429, "rate_limit_error", "Number of request tokens has exceeded your per-minute "
                             "rate limit")  # fmt: skip
    assert categorise(describe(tokens)) == "rate_limit"


@pytest.mark.parametrize(
    ("reason", "category"),
    [
        (ConnectionRefusedError(111, "Connection refused"), "network"),
        (socket.gaierror(-2, "Name or service not known"), "network"),
        (TimeoutError("timed out"), "timeout"),
        (OSError(101, "Network is unreachable"), "network"),
    ],
)
def test_urllib_errors_take_the_category_of_what_they_wrap(reason: Exception, category: str) -> None:
    try:
        raise urllib.error.URLError(reason)
    except urllib.error.URLError as exc:
        facts = describe(exc)
    assert facts.error_type == "URLError" and categorise(facts) == category


def test_bedrock_model_errors_are_upstream() -> None:
    error = bedrock_error(424, "ModelErrorException", "The model returned an error: received 502")
    facts = describe(error)
    assert (facts.status_code, facts.code) == (424, "ModelErrorException")
    assert categorise(facts) == "upstream_error"
    # The same codes given as text follow the same tables.
    assert categorise(describe("ModelErrorException")) == "upstream_error"
    assert categorise(describe("insufficient_quota")) == "quota"
    assert categorise(describe("rate_limit_error")) == "rate_limit"
    assert categorise(describe("overloaded_error")) == "upstream_error"
    assert categorise(describe("30007")) == "delivery"


def test_provider_from_the_exceptions_package() -> None:
    assert provider_of(QUOTA[0]) == "openai"
    assert provider_of(QUOTA[-1]) == "anthropic"
    assert provider_of(bedrock_error(424, "ModelErrorException", "x")) == "aws"
    assert provider_of(httpx.ConnectError("refused")) == "httpx"
    assert provider_of(openai.APITimeoutError) == "openai"  # a class as well as an instance
    assert provider_of(ValueError("mine")) is None and provider_of("rate_limit") is None
    slack_errors = pytest.importorskip("slack_sdk.errors")
    assert provider_of(slack_errors.SlackApiError("ratelimited", {"ok": False})) == "slack"
    twilio_base = pytest.importorskip("twilio.base.exceptions")
    assert provider_of(twilio_base.TwilioRestException(400, "/Messages", "unreachable", 30003)) == "twilio"


def test_error_groups_show_provider_stage_and_code(store_url: str, store_path) -> None:
    meter = Meter(bot="b", store=store_url)
    for _ in range(3):
        meter.track_error(QUOTA[1], stage="llm", user="+15550001111")  # no provider given
    meter.track_error(bedrock_error(424, "ModelErrorException", "model failed"), stage="summary")
    meter.track_error(ValueError("bad input"), stage="parse", provider="internal-api")
    meter.close()
    stored = dict(query(store_path, "SELECT error_type, provider FROM events WHERE kind = 'error'"))
    assert stored == {"RateLimitError": "openai", "ClientError": "aws", "ValueError": "internal-api"}
    groups = {g["error_type"]: g for g in Reader(store_url).error_groups(days=1)}
    quota = groups["RateLimitError"]
    assert (quota["provider"], quota["stage"], quota["code"], quota["category"]) == (
        "openai", "llm", "spend_limit_reached", "quota")
    bedrock = groups["ClientError"]
    assert (bedrock["provider"], bedrock["code"]) == ("aws", "ModelErrorException")
    out = CliRunner().invoke(main, ["errors", "--days", "1", "--store", store_url])
    assert out.exit_code == 0, out.output
    assert "provider openai, stage llm, code spend_limit_reached" in out.output
    # Errors by stage, as a query.
    out = CliRunner().invoke(main, ["query", "errors", "--by", "stage", "--interval", "none", "--days", "1",
                                    "--format", "json", "--store", store_url])  # fmt: skip
    assert out.exit_code == 0, out.output
    assert {r["stage"]: r["value"] for r in json.loads(out.output)} == {"llm": 3, "summary": 1, "parse": 1}
