"""The Lambda decorator, called as Lambda's Python runtime calls a handler: an event dict (an API
Gateway request carrying a Twilio webhook) and a context object with the runtime's attributes."""

from __future__ import annotations

import json
import tempfile
import time
import urllib.parse
import uuid

import pytest

import botmeter
from aws_emulator import MotoServer, aws_env, clients, log_messages, metric
from botmeter.aws_lambda import COLD_START, flush_after
from emf import check_emf, emf_lines, emf_total

HASH_KEY = "cd" * 16
PHONE = "+15551230000"


class LambdaContext:
    """What the runtime passes as ``context`` (awslambdaric's LambdaContext, the parts bots use)."""

    def __init__(self, request_id: str, timeout_s: float = 30.0) -> None:
        self.function_name = "dadacat-sms"
        self.function_version = "$LATEST"
        self.invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:dadacat-sms"
        self.memory_limit_in_mb = 512
        self.aws_request_id = request_id
        self.log_group_name = "/aws/lambda/dadacat-sms"
        self.log_stream_name = "2026/11/25/[$LATEST]0123456789abcdef"
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def twilio_event(text: str, sid: str) -> dict:
    body = urllib.parse.urlencode({"From": PHONE, "To": "+15559870000", "Body": text, "MessageSid": sid})
    return {
        "version": "2.0",
        "routeKey": "POST /sms",
        "rawPath": "/sms",
        "headers": {"content-type": "application/x-www-form-urlencoded"},
        "requestContext": {"http": {"method": "POST", "path": "/sms"}, "requestId": sid},
        "body": body,
        "isBase64Encoded": False,
    }


@pytest.fixture
def in_lambda(monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "dadacat-sms")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("BOTMETER_HASH_KEY", HASH_KEY)  # one key for every container
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # Lambda's /tmp, one per test
    return tmp_path


def make_bot(meter: botmeter.Meter):
    @meter.lambda_handler
    def handler(event: dict, context: LambdaContext) -> dict:
        params = urllib.parse.parse_qs(event["body"])
        user, text = params["From"][0], params["Body"][0]
        meter.track_sms(
            direction="in", text=text, user=user, conversation=user, event_id=params["MessageSid"][0]
        )
        if text == "boom":
            raise RuntimeError("the LLM is down")
        meter.track_llm_call(
            provider="openai", model="gpt-4o", input_tokens=120, output_tokens=30, cost_usd=0.001
        )
        meter.track_sms(direction="out", text="meow", user=user, conversation=user, cost_usd=0.0079)
        return {"statusCode": 200, "headers": {"content-type": "text/xml"}, "body": "<Response/>"}

    return handler


def test_every_invocation_is_flushed_and_the_first_is_a_cold_start(in_lambda, capsys):
    # A long flush interval: only the decorator's flush can get the events out in time.
    meter = botmeter.Meter(bot="dadacat", store="cloudwatch://?namespace=DadaCatTwilio", flush_interval=60)
    assert meter.store.mode == "emf"  # the default inside Lambda
    assert meter.spool.directory == in_lambda / "botmeter" / "DadaCatTwilio.spool"
    handler = make_bot(meter)
    assert handler.__name__ == "handler"
    try:
        answer = handler(twilio_event("hi cat", "SM1"), LambdaContext("req-1"))
        assert answer["statusCode"] == 200
        docs, records = emf_lines(capsys.readouterr().out)
        assert sorted(r["kind"] for r in records) == ["activity", "llm_call", "message", "message"]
        cold = next(r for r in records if r["kind"] == "activity")
        assert cold["name"] == COLD_START
        assert cold["properties"] == {
            "function_name": "dadacat-sms",
            "function_version": "$LATEST",
            "memory_limit_in_mb": 512,
            "aws_request_id": "req-1",
        }
        for doc in docs:
            check_emf(doc)
        assert emf_total(docs, "Activities", {"Bot": "dadacat", "Activity": COLD_START}) == 1
        assert emf_total(docs, "Messages", {"Bot": "dadacat", "Channel": "sms"}) == 2

        handler(twilio_event("again", "SM2"), LambdaContext("req-2"))
        docs, records = emf_lines(capsys.readouterr().out)
        assert sorted(r["kind"] for r in records) == ["llm_call", "message", "message"]  # warm: no cold start
        assert all(PHONE not in json.dumps(r) for r in records)
        assert emf_total(docs, "InboundMessages", {"Bot": "dadacat"}) == 1

        # The handler fails: the error reaches Lambda, and what was tracked is still flushed.
        with pytest.raises(RuntimeError, match="LLM is down"):
            handler(twilio_event("boom", "SM3"), LambdaContext("req-3"))
        _, records = emf_lines(capsys.readouterr().out)
        assert [r["kind"] for r in records] == ["message"]
    finally:
        meter.close()


def test_flush_is_bounded_by_the_time_left(in_lambda):
    meter = botmeter.Meter(bot="dadacat", store="cloudwatch://?namespace=N", flush_interval=60)
    asked: list[float] = []
    real_flush = meter.flush
    meter.flush = lambda timeout=None: asked.append(timeout) or real_flush(timeout)

    @flush_after(meter, timeout=5.0, cold_start=False)
    def handler(event, context):
        return "ok"

    try:
        assert handler({}, LambdaContext("r1", timeout_s=1.5)) == "ok"
        assert handler({}, LambdaContext("r2", timeout_s=60)) == "ok"
        assert handler({}, object()) == "ok"  # a context of another shape: the configured timeout
        assert asked[0] <= 1.0 and asked[1:] == [5.0, 5.0]
        assert meter.stats()["processed"] == 0  # cold_start=False: nothing recorded
    finally:
        meter.close()


def test_decorator_with_arguments_and_api_mode(in_lambda, monkeypatch, capsys):
    server = MotoServer().start()
    try:
        for name, value in aws_env(server.url).items():
            monkeypatch.setenv(name, value)
        namespace = f"Lambda{uuid.uuid4().hex[:8]}"
        meter = botmeter.Meter(
            bot="dadacat", store=f"cloudwatch://?namespace={namespace}&mode=api", flush_interval=60
        )
        handler = meter.lambda_handler(timeout=5.0)(make_bot(meter).__wrapped__)
        try:
            for i in range(3):
                handler(twilio_event(f"hello {i}", f"SM{i}"), LambdaContext(f"req-{i}"))
        finally:
            meter.close()
        assert capsys.readouterr().out == ""  # api mode prints nothing
        cw_client, logs = clients(server.url)
        assert metric(cw_client, namespace, "Messages", {"Bot": "dadacat"}) == 6
        assert metric(cw_client, namespace, "Activities", {"Bot": "dadacat", "Activity": COLD_START}) == 1
        assert len(log_messages(logs, f"/botmeter/{namespace}")) == 3 * 3 + 1
    finally:
        server.stop()
