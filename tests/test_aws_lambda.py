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


# -- botmeter's own function: botmeter.aws_lambda.handler ---------------------------------------------
# The events below are the documented shapes, as Lambda hands them over: API Gateway's REST API
# proxy (payload 1.0) and HTTP API (payload 2.0), an EventBridge scheduled event, and an Amazon
# Bedrock agent's action-group request (function details).


@pytest.fixture
def filled(store_url, monkeypatch, tmp_path):
    """A DuckDB store with a day of a small bot, named by BOTMETER_STORE as the function sees it."""
    meter = botmeter.Meter(bot="dadacat", store=store_url, hash_key=HASH_KEY, spool_dir=str(tmp_path / "sp"))
    try:
        for i in range(4):
            user = f"+1555000000{i}"
            meter.track_message(direction="in", text="hi", user=user, conversation=f"c{i}", channel="sms")
            meter.track_llm_call(
                provider="openai", model="gpt-4o", input_tokens=100, output_tokens=20, cost_usd=2.5,
                latency_ms=900.0 + i, user=user, conversation=f"c{i}",
            )  # fmt: skip
        meter.track_llm_call(provider="anthropic", model="claude-x", input_tokens=10, cost_usd=0.34)
        meter.track_error("rate_limit_exceeded", stage="llm")
        assert meter.flush()
    finally:
        meter.close()
    monkeypatch.setenv("BOTMETER_STORE", store_url)
    return store_url


def rest_event(path: str, query: dict[str, str] | None = None, method: str = "GET") -> dict:
    multi = {k: [v] for k, v in (query or {}).items()} or None
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": {
            "Accept": "application/json",
            "Host": "abc123.execute-api.us-east-1.amazonaws.com",
            "User-Agent": "curl/8.5.0",
            "X-Forwarded-Proto": "https",
        },
        "multiValueHeaders": {"Accept": ["application/json"]},
        "queryStringParameters": query or None,
        "multiValueQueryStringParameters": multi,
        "pathParameters": {"proxy": path.strip("/")},
        "stageVariables": None,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "resourceId": "a1b2c3",
            "resourcePath": "/{proxy+}",
            "httpMethod": method,
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "stage": "prod",
            "path": f"/prod{path}",
            "protocol": "HTTP/1.1",
            "requestTimeEpoch": 1795600000000,
            "identity": {"sourceIp": "192.0.2.10", "userAgent": "curl/8.5.0"},
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
        },
        "body": None,
        "isBase64Encoded": False,
    }


def http_api_event(path: str, raw_query: str = "", method: str = "GET", stage: str = "prod") -> dict:
    raw_path = path if stage == "$default" else f"/{stage}{path}"
    params = dict(urllib.parse.parse_qsl(raw_query)) or None
    return {
        "version": "2.0",
        "routeKey": "GET /{proxy+}",
        "rawPath": raw_path,
        "rawQueryString": raw_query,
        "cookies": [],
        "headers": {
            "accept": "application/json",
            "host": "abc123.execute-api.us-east-1.amazonaws.com",
            "user-agent": "curl/8.5.0",
            "x-forwarded-proto": "https",
        },
        "queryStringParameters": params,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": {
                "method": method,
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": "192.0.2.10",
                "userAgent": "curl/8.5.0",
            },
            "requestId": "JKJaXmPLvHcESHA=",
            "routeKey": "GET /{proxy+}",
            "stage": stage,
            "time": "25/Nov/2026:10:30:00 +0000",
            "timeEpoch": 1795600000000,
        },
        "pathParameters": {"proxy": path.strip("/")},
        "isBase64Encoded": False,
    }


def scheduled_event(detail: dict | None = None) -> dict:
    return {
        "version": "0",
        "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2026-11-25T07:00:00Z",
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/botmeter-daily"],
        "detail": detail or {},
    }


def agent_event(function: str, **parameters: str) -> dict:
    return {
        "messageVersion": "1.0",
        "agent": {"name": "ops-agent", "id": "AGENT12345", "alias": "TSTALIASID", "version": "DRAFT"},
        "inputText": "How much did the bot cost this week?",
        "sessionId": "123456789012345",
        "actionGroup": "botmeter",
        "function": function,
        "parameters": [
            {"name": k, "type": "string" if k != "days" else "integer", "value": v}
            for k, v in parameters.items()
        ],
        "sessionAttributes": {"team": "bots"},
        "promptSessionAttributes": {},
    }


def body(answer: dict) -> dict:
    assert answer["headers"]["content-type"] == "application/json" and answer["isBase64Encoded"] is False
    assert isinstance(answer["body"], str)
    return json.loads(answer["body"])


def test_http_metric_through_rest_and_http_api_events(filled):
    from botmeter.aws_lambda import handler

    for event in (
        rest_event("/metrics/cost_usd", {"days": "7", "by": "model", "interval": "none"}),
        http_api_event("/metrics/cost_usd", "days=7&by=model&interval=none"),
        http_api_event("/metrics/cost_usd", "days=7&by=model&interval=none", stage="$default"),
    ):
        answer = handler(event, LambdaContext("r"))
        assert answer["statusCode"] == 200, answer
        payload = body(answer)
        assert payload["metric"] == "cost_usd" and payload["by"] == ["model"] and payload["unit"] == "USD"
        costs = {r["model"]: r["value"] for r in payload["rows"] if r["value"]}  # the error: no cost
        assert costs == pytest.approx({"gpt-4o": 10.0, "claude-x": 0.34})

    p95 = body(handler(http_api_event("/metrics/llm_latency_ms", "days=1&stat=p95&interval=day"), None))
    assert p95["stats"] == ["p95"] and p95["rows"][-1]["value"] == pytest.approx(902.85)


def test_http_filter_by_phone_number_finds_the_hashed_user(filled, monkeypatch):
    from botmeter.aws_lambda import handler

    monkeypatch.setenv("BOTMETER_HASH_KEY", HASH_KEY)  # the key the bot hashed its users with
    query = "days=1&interval=none&filter=" + urllib.parse.quote("user=+1 555 000 0002")
    answer = handler(http_api_event("/metrics/cost_usd", query), None)
    assert answer["statusCode"] == 200, answer
    assert [r["value"] for r in body(answer)["rows"]] == [pytest.approx(2.5)]


def test_http_bad_input_names_the_field(filled):
    from botmeter.aws_lambda import handler

    cases = [
        (rest_event("/metrics/cost_usd", {"days": "seven"}), 400, "days", "'seven'"),
        (http_api_event("/metrics/cost_usd", "by=colour"), 400, "by", "'colour'"),
        (http_api_event("/metrics/nonsense"), 400, "metric", "'nonsense'"),
        (http_api_event("/metrics/cost_usd", "stat=p95"), 400, "stat", "'p95'"),
        (http_api_event("/metrics/cost_usd", "colour=blue"), 400, "colour", "unknown parameter"),
        (http_api_event("/metrics/cost_usd", "days=1&days=2"), 400, "days", "once"),
        (http_api_event("/admin"), 404, "path", "'/admin'"),
        (rest_event("/summary", method="POST"), 405, "method", "POST"),
    ]
    for event, status, field, words in cases:
        answer = handler(event, None)
        assert answer["statusCode"] == status, (event.get("rawPath") or event["path"], answer)
        payload = body(answer)
        assert payload["field"] == field and words in payload["error"], payload
    assert handler(rest_event("/summary", method="POST"), None)["headers"]["allow"] == "GET, HEAD"
    weird = handler({"hello": "world"}, None)
    assert weird["statusCode"] == 400 and body(weird)["field"] == "event"


def test_http_summary_and_dashboard(filled):
    from botmeter.aws_lambda import handler

    summary = body(handler(rest_event("/summary", {"days": "7"}), None))
    assert summary["costs"]["total_usd"]["value"] == pytest.approx(10.34)
    assert summary["engagement"]["active_users"]["value"] == 4 and summary["unavailable"] == {}
    dashboard = body(handler(http_api_event("/dashboard", "days=7"), None))
    assert dashboard["period"]["days"] == 7 and dashboard["kpis"]["cost_usd"]["value"] == pytest.approx(10.34)
    assert {"cost_by_model", "errors_by_category", "latency_by_stage"} <= set(dashboard)


def test_http_errors_and_other_forms(filled):
    from slack_sdk.models.blocks import Block

    from botmeter.aws_lambda import handler
    from botmeter.process.sms import GSM7, sms_parts

    groups = body(handler(http_api_event("/errors", "days=7"), None))["groups"]
    assert [(g["error_type"], g["count"], g["category"]) for g in groups] == [
        ("rate_limit_exceeded", 1, "rate_limit")
    ]
    sms = handler(rest_event("/summary", {"days": "7", "format": "sms"}), None)
    assert sms["statusCode"] == 200 and sms["headers"]["content-type"] == "text/plain; charset=utf-8"
    assert sms["body"].startswith("botmeter 7d: cost $10.34") and sms_parts(sms["body"])[1] == GSM7
    assert sms_parts(sms["body"])[0] <= 2
    markdown = handler(
        http_api_event("/metrics/llm_calls", "days=1&by=model&interval=none&format=markdown"), None
    )
    assert markdown["headers"]["content-type"].startswith("text/markdown")
    assert "- gpt-4o: 4 calls" in markdown["body"]
    slack = body(handler(http_api_event("/errors", "format=slack"), None))
    for block in slack["blocks"]:
        Block.parse(block).to_dict()
    bad = handler(http_api_event("/summary", "format=fax"), None)
    assert bad["statusCode"] == 400 and body(bad)["field"] == "format" and "'fax'" in body(bad)["error"]
    bad = handler(http_api_event("/errors", "colour=red"), None)
    assert bad["statusCode"] == 400 and body(bad)["field"] == "colour"


def test_http_store_failure_is_an_answer_not_an_exception(monkeypatch, tmp_path):
    from botmeter.aws_lambda import handler

    monkeypatch.setenv("BOTMETER_STORE", "cloudwatch://?namespace=N&colour=blue")
    answer = handler(http_api_event("/summary"), None)
    assert answer["statusCode"] == 503 and "colour" in body(answer)["error"]


def test_schedule_posts_the_summary_to_a_webhook(filled, monkeypatch):
    from http.server import BaseHTTPRequestHandler, HTTPServer
    from threading import Thread

    from botmeter.aws_lambda import handler

    received: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("BOTMETER_REPORT_WEBHOOK", f"http://127.0.0.1:{server.server_port}/hook")
        monkeypatch.setenv("BOTMETER_REPORT_DAYS", "7")
        out = handler(scheduled_event(), LambdaContext("s1"))
        assert out["sent"] == ["webhook"] and out["failures"] == [] and out["days"] == 7
        assert len(received) == 1 and received[0]["source"] == "botmeter"
        assert received[0]["text"].startswith("botmeter summary: last 7 days")
        assert received[0]["blocks"][0]["type"] == "header"  # what a Slack incoming webhook draws
        assert received[0]["summary"]["costs"]["total_usd"]["value"] == pytest.approx(10.34)
        # The event's detail.days wins over the setting.
        out = handler(scheduled_event({"days": 1}), LambdaContext("s2"))
        assert out["days"] == 1 and received[-1]["summary"]["period"]["days"] == 1
    finally:
        server.shutdown()
    bad = handler(scheduled_event({"days": "lots"}), None)
    assert bad["sent"] == [] and "days" in bad["failures"][0] and "'lots'" in bad["failures"][0]


def test_schedule_publishes_to_sns_and_the_queue_gets_it(filled, monkeypatch):
    import boto3

    from botmeter.aws_lambda import handler

    server = MotoServer().start()
    try:
        for name, value in aws_env(server.url).items():
            monkeypatch.setenv(name, value)
        session = boto3.session.Session(region_name="us-east-1")
        sns, sqs = session.client("sns"), session.client("sqs")
        topic = sns.create_topic(Name="botmeter-reports")["TopicArn"]
        queue = sqs.create_queue(QueueName="reports")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
        monkeypatch.setenv("BOTMETER_REPORT_SNS_TOPIC", topic)
        out = handler(scheduled_event(), LambdaContext("s3"))
        assert out["sent"] == ["sns"] and out["failures"] == []
        messages = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1)["Messages"]
        envelope = json.loads(messages[0]["Body"])
        assert envelope["TopicArn"] == topic and envelope["Subject"] == "botmeter summary: last 1 days"
        assert (
            envelope["Message"].startswith("botmeter summary: last 1 days")
            and "$10.34" in envelope["Message"]
        )
    finally:
        server.stop()
    monkeypatch.setenv("BOTMETER_REPORT_SNS_TOPIC", "not-an-arn")
    out = handler(scheduled_event(), None)
    assert out["sent"] == [] and "BOTMETER_REPORT_SNS_TOPIC" in out["failures"][0]


def test_bedrock_agent_functions(filled):
    from botmeter.aws_lambda import handler

    answer = handler(agent_event("get_costs", days="7"), LambdaContext("b1"))
    assert answer["messageVersion"] == "1.0" and answer["sessionAttributes"] == {"team": "bots"}
    response = answer["response"]
    assert (response["actionGroup"], response["function"]) == ("botmeter", "get_costs")
    text = response["functionResponse"]["responseBody"]["TEXT"]["body"]
    lines = [" ".join(line.split()) for line in text.splitlines()]
    assert lines[0].startswith("botmeter costs (")
    assert "Cost $10.34" in lines and "LLM calls 5" in lines
    assert lines[lines.index("By provider:") + 1 :][:2] == ["openai: $10.00", "anthropic: $0.3400"]
    assert "responseState" not in response["functionResponse"]

    text = handler(agent_event("get_summary", days="7"), None)["response"]["functionResponse"]
    body = text["responseBody"]["TEXT"]["body"]
    assert body.startswith("botmeter summary: last 7 days") and "$10.34" in body.splitlines()[1]
    metric = handler(agent_event("get_metric", metric="llm_calls", days="1", by="model"), None)
    body_text = metric["response"]["functionResponse"]["responseBody"]["TEXT"]["body"]
    assert body_text.splitlines()[0].startswith("llm_calls by model (")
    assert [" ".join(line.split()) for line in body_text.splitlines()[1:]] == [
        "Total 5 calls",
        "gpt-4o: 4 calls",
        "claude-x: 1 call",
    ]

    bad = handler(agent_event("get_metric", metric="cost_usd", by="colour"), None)["response"][
        "functionResponse"
    ]
    assert bad["responseState"] == "REPROMPT" and "colour" in bad["responseBody"]["TEXT"]["body"]
    unknown = handler(agent_event("get_weather"), None)["response"]["functionResponse"]
    assert unknown["responseState"] == "FAILURE" and "get_costs" in unknown["responseBody"]["TEXT"]["body"]
