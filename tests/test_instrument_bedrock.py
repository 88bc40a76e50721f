"""meter.instrument(boto3.client("bedrock-runtime")): the real boto3 client against a stub Bedrock
Runtime on 127.0.0.1 that answers like the real API: JSON for Converse and InvokeModel, and the AWS
event-stream binary framing (CRC-checked by botocore) for ConverseStream. Costs are checked against
genai-prices' own calculation from the same usage objects."""

from __future__ import annotations

import binascii
import json
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar
from urllib.parse import unquote

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, EventStreamError, ReadTimeoutError
from genai_prices import calc_price, extract_usage

from botmeter import Meter
from botmeter.integrations import bedrock as bedrock_integration
from stored_events import events

CLAUDE = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
NOVA = "amazon.nova-lite-v1:0"
TITAN = "amazon.titan-text-express-v1"
CONVERSE_USAGE = {
    "inputTokens": 120,
    "outputTokens": 40,
    "totalTokens": 2160,
    "cacheReadInputTokens": 1500,
    "cacheWriteInputTokens": 500,
}


def frame(headers: dict[str, str], payload: dict) -> bytes:
    """One message of the AWS event-stream encoding: prelude, string headers, payload, CRC32s."""
    raw_headers = b""
    for name, value in headers.items():
        n, v = name.encode(), value.encode()
        raw_headers += bytes([len(n)]) + n + bytes([7]) + struct.pack(">H", len(v)) + v
    body = json.dumps(payload).encode()
    prelude = struct.pack(">II", 12 + len(raw_headers) + len(body) + 4, len(raw_headers))
    prelude += struct.pack(">I", binascii.crc32(prelude))
    message = prelude + raw_headers + body
    return message + struct.pack(">I", binascii.crc32(message))


def event(kind: str, payload: dict) -> bytes:
    return frame(
        {":event-type": kind, ":content-type": "application/json", ":message-type": "event"}, payload
    )


def converse_stream_body(usage=CONVERSE_USAGE, fail_midway=False) -> bytes:
    parts = [
        event("messageStart", {"role": "assistant"}),
        event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Hello"}}),
    ]
    if fail_midway:
        parts.append(
            frame(
                {
                    ":exception-type": "throttlingException",
                    ":content-type": "application/json",
                    ":message-type": "exception",
                },
                {"message": "Too many tokens, please wait before trying again."},
            )
        )
        return b"".join(parts)
    parts += [
        event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": " there"}}),
        event("contentBlockStop", {"contentBlockIndex": 0}),
        event("messageStop", {"stopReason": "end_turn"}),
        event("metadata", {"usage": usage, "metrics": {"latencyMs": 420}}),
    ]
    return b"".join(parts)


INVOKE_BODIES = {
    CLAUDE: {
        "id": "msg_bdrk_01",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [{"type": "text", "text": "Hi"}],
        "stop_reason": "end_turn",
        "usage": {
            "input_tokens": 30,
            "cache_creation_input_tokens": 1000,
            "cache_read_input_tokens": 2000,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 1000},
            "output_tokens": 12,
        },
    },
    NOVA: {
        "output": {"message": {"role": "assistant", "content": [{"text": "Hi"}]}},
        "stopReason": "end_turn",
        "usage": {
            "inputTokens": 50,
            "outputTokens": 9,
            "totalTokens": 59,
            "cacheReadInputTokenCount": 0,
            "cacheWriteInputTokenCount": 0,
        },
    },
    TITAN: {
        "inputTextTokenCount": 11,
        "results": [{"tokenCount": 25, "outputText": "Hi there", "completionReason": "FINISH"}],
    },
}


class Bedrock(BaseHTTPRequestHandler):
    """The stub: POST /model/{modelId}/{converse|converse-stream|invoke}."""

    fail: tuple[int, str] | None = None  # (status, error type) to answer instead
    stall = threading.Event()  # set: hold the answer past the client's read timeout
    requests: ClassVar[list[str]] = []

    def do_POST(self):
        length = int(self.headers.get("content-length") or 0)
        self.rfile.read(length)
        _, _, model, action = self.path.split("/", 3)
        model = unquote(model)
        Bedrock.requests.append(action)
        if Bedrock.stall.is_set():
            time.sleep(1.5)
        if Bedrock.fail is not None:
            status, kind = Bedrock.fail
            return self.answer(status, json.dumps({"message": "Too many requests"}).encode(), kind=kind)
        if action == "converse":
            body = {
                "output": {"message": {"role": "assistant", "content": [{"text": "Hello there"}]}},
                "stopReason": "end_turn",
                "usage": CONVERSE_USAGE,
                "metrics": {"latencyMs": 420},
            }
            return self.answer(200, json.dumps(body).encode())
        if action == "converse-stream":
            fail = "fail-midway" in self.headers.get("user-agent", "")
            return self.answer(
                200, converse_stream_body(fail_midway=fail), "application/vnd.amazon.eventstream"
            )
        if action == "invoke":
            body = INVOKE_BODIES[model]
            headers = {"x-amzn-bedrock-input-token-count": "11", "x-amzn-bedrock-output-token-count": "25"}
            return self.answer(200, json.dumps(body).encode(), extra=headers)
        return self.answer(404, b"{}")

    def answer(self, status, body, content_type="application/json", kind=None, extra=None):
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.send_header("x-amzn-requestid", "5d4f6b0e-0000-4000-8000-000000000000")
        if kind:
            self.send_header(
                "x-amzn-errortype", f"{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/"
            )
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # the timeout test's client hangs up before the stalled answer: expected


@pytest.fixture(scope="module")
def endpoint():
    server = Server(("127.0.0.1", 0), Bedrock)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def _reset_stub():
    Bedrock.fail = None
    Bedrock.stall.clear()
    Bedrock.requests.clear()


def client_for(endpoint, **config):
    return boto3.client(
        "bedrock-runtime",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        config=Config(retries={"max_attempts": 1, "mode": "standard"}, **config),
    )


@pytest.fixture
def meter(store_url):
    m = Meter(bot="b", store=store_url, hash_users=False)
    yield m
    m.close()


def genai_cost(usage, model):
    """genai-prices' price of a Converse usage object (read by genai-prices' own Bedrock extractor)."""
    found = extract_usage({"usage": usage}, provider_id="aws").usage
    return float(calc_price(found, model, provider_id="aws").total_price)


MESSAGES = [{"role": "user", "content": [{"text": "hi"}]}]


def test_converse(meter, store_path, endpoint):
    client = meter.instrument(client_for(endpoint), stage="answer")
    reply = client.converse(modelId=CLAUDE, messages=MESSAGES)
    assert reply["output"]["message"]["content"][0]["text"] == "Hello there"
    (row,) = events(meter, store_path, "llm_call")
    assert (row["provider"], row["model"], row["stage"]) == ("bedrock", CLAUDE, "answer")
    assert (row["input_tokens"], row["cached_tokens"], row["cache_write_tokens"]) == (2120, 1500, 500)
    assert row["output_tokens"] == 40 and row["latency_ms"] > 0
    assert row["cost_usd"] == pytest.approx(genai_cost(CONVERSE_USAGE, CLAUDE), rel=1e-9)


def test_converse_stream_in_the_event_stream_framing(meter, store_path, endpoint):
    client = meter.instrument(client_for(endpoint))
    response = client.converse_stream(modelId=NOVA, messages=MESSAGES)
    seen = list(response["stream"])
    assert [next(iter(e)) for e in seen] == [
        "messageStart",
        "contentBlockDelta",
        "contentBlockDelta",
        "contentBlockStop",
        "messageStop",
        "metadata",
    ]
    (row,) = events(meter, store_path, "llm_call")
    assert (row["model"], row["input_tokens"], row["output_tokens"]) == (NOVA, 2120, 40)
    assert 0 < row["properties"]["ttft_ms"] <= row["latency_ms"]
    assert row["cost_usd"] == pytest.approx(genai_cost(CONVERSE_USAGE, NOVA), rel=1e-9)


def test_an_error_inside_the_stream_is_a_failure_and_reaches_the_caller(meter, store_path, endpoint):
    client = meter.instrument(client_for(endpoint, user_agent_extra="fail-midway"))
    response = client.converse_stream(modelId=NOVA, messages=MESSAGES)
    with pytest.raises(EventStreamError):
        list(response["stream"])
    rows = events(meter, store_path)
    assert sorted(r["kind"] for r in rows) == ["error", "timing"]
    (err,) = [r for r in rows if r["kind"] == "error"]
    assert err["error_category"] == "rate_limit"


@pytest.mark.parametrize("model", [CLAUDE, NOVA, TITAN])
def test_invoke_model_for_each_family_and_the_caller_still_reads_the_body(meter, store_path, endpoint, model):
    client = meter.instrument(client_for(endpoint))
    response = client.invoke_model(modelId=model, body=json.dumps({"prompt": "hi"}))
    assert json.loads(response["body"].read()) == INVOKE_BODIES[model]
    (row,) = events(meter, store_path, "llm_call")
    assert row["model"] == model
    if model == CLAUDE:
        body = INVOKE_BODIES[CLAUDE] | {"model": "claude-sonnet-4-5-20250929"}
        usage = extract_usage(body, provider_id="anthropic").usage  # genai-prices reads Claude's usage
        want = float(calc_price(usage, model, provider_id="aws").total_price)
        assert (row["input_tokens"], row["cached_tokens"], row["cache_write_tokens"]) == (3030, 2000, 1000)
        assert row["properties"]["cache_write_1h_tokens"] == 1000
    elif model == NOVA:
        usage = {"inputTokens": 50, "outputTokens": 9}
        want = genai_cost(usage, model)
        assert (row["input_tokens"], row["output_tokens"]) == (50, 9)
    else:
        want = genai_cost({"inputTokens": 11, "outputTokens": 25}, model)
        assert (row["input_tokens"], row["output_tokens"]) == (11, 25)
    assert row["cost_usd"] == pytest.approx(want, rel=1e-9)


def test_throttling_is_a_rate_limit_error_with_its_latency(meter, store_path, endpoint):
    Bedrock.fail = (429, "ThrottlingException")
    client = meter.instrument(client_for(endpoint))
    with pytest.raises(ClientError) as caught:
        client.converse(modelId=CLAUDE, messages=MESSAGES)
    assert caught.value.response["Error"]["Code"] == "ThrottlingException"
    rows = events(meter, store_path)
    (err,) = [r for r in rows if r["kind"] == "error"]
    (timing,) = [r for r in rows if r["kind"] == "timing"]
    assert (err["provider"], err["error_category"]) == ("bedrock", "rate_limit")
    assert timing["latency_ms"] > 0 and timing["model"] == CLAUDE


def test_a_read_timeout(meter, store_path, endpoint):
    Bedrock.stall.set()
    client = meter.instrument(client_for(endpoint, read_timeout=0.3))
    with pytest.raises(ReadTimeoutError):
        client.converse(modelId=CLAUDE, messages=MESSAGES)
    rows = events(meter, store_path)
    (err,) = [r for r in rows if r["kind"] == "error"]
    (timing,) = [r for r in rows if r["kind"] == "timing"]
    assert err["error_category"] == "timeout"
    assert timing["latency_ms"] >= 300


def test_uninstrument_and_every_client_created_after_instrument(meter, store_path, endpoint):
    client = meter.instrument(client_for(endpoint))
    client.converse(modelId=CLAUDE, messages=MESSAGES)
    meter.uninstrument(client)
    client.converse(modelId=CLAUDE, messages=MESSAGES)
    bedrock_integration.instrument(meter, stage="all")
    try:
        client_for(endpoint).converse(modelId=CLAUDE, messages=MESSAGES)
    finally:
        bedrock_integration.uninstrument()
    client_for(endpoint).converse(modelId=CLAUDE, messages=MESSAGES)
    assert [r["stage"] for r in events(meter, store_path, "llm_call")] == [None, "all"]
