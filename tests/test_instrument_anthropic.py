"""meter.instrument(anthropic_client): the real anthropic SDK, answered by an httpx MockTransport with
bodies shaped like the Messages API's (JSON, and its server-sent events for streams). Costs are
checked against genai-prices' own calculation from the same usage objects."""

from __future__ import annotations

import asyncio
import json

import anthropic
import httpx2
import pytest
from genai_prices import calc_price, extract_usage

from botmeter import Meter
from botmeter.integrations import anthropic as anthropic_integration
from stored_events import events

MODEL = "claude-sonnet-4-5-20250929"
USAGE = {
    "input_tokens": 21,
    "cache_creation_input_tokens": 1800,
    "cache_read_input_tokens": 3000,
    "cache_creation": {"ephemeral_5m_input_tokens": 600, "ephemeral_1h_input_tokens": 1200},
    "output_tokens": 95,
    "service_tier": "standard",
}


def message(usage=USAGE, model=MODEL):
    return {
        "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": "Hi! How can I help?"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": usage,
    }


def stream_events(usage=USAGE):
    start_usage = dict(usage) | {"output_tokens": 1}
    start = message(usage=start_usage) | {"content": [], "stop_reason": None}
    return [
        ("message_start", {"type": "message_start", "message": start}),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
        ("ping", {"type": "ping"}),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi!"}},
        ),
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " Hello"}},
        ),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": usage["output_tokens"]},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]


def sse(events):
    text = "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events)
    return httpx2.Response(200, content=text.encode(), headers={"content-type": "text/event-stream"})


class Api:
    def __init__(self, status=200, error=None, raise_exc=None, body=None):
        self.status, self.error, self.raise_exc = status, error, raise_exc
        self.body = body or message()
        self.requests: list[dict] = []

    def __call__(self, request):
        body = json.loads(request.content)
        self.requests.append(body)
        if self.raise_exc is not None:
            raise self.raise_exc
        if self.status != 200:
            return httpx2.Response(self.status, json=self.error, headers={"request-id": "req_1"})
        if body.get("stream"):
            return sse(stream_events(self.body["usage"]))
        return httpx2.Response(200, json=self.body)


def client_for(api, cls=anthropic.Anthropic, **kw):
    http = httpx2.AsyncClient if cls.__name__.startswith("Async") else httpx2.Client
    kw.setdefault("api_key", "sk-ant-test")
    return cls(http_client=http(transport=httpx2.MockTransport(api)), max_retries=0, **kw)


@pytest.fixture
def meter(store_url):
    m = Meter(bot="b", store=store_url, hash_users=False)
    yield m
    m.close()


def genai_cost(body, provider="anthropic"):
    """genai-prices' own price of a Messages API body (its usage read by genai-prices' extractor)."""
    usage = extract_usage(body | {"model": MODEL}, provider_id="anthropic").usage
    return float(calc_price(usage, body["model"], provider_id=provider).total_price)


ASK = dict(model="claude-sonnet-4-5", max_tokens=256, messages=[{"role": "user", "content": "hi"}])


def check_usage(row):
    # botmeter's input_tokens is the whole prompt: uncached + cache reads + cache writes
    assert (row["input_tokens"], row["cached_tokens"], row["cache_write_tokens"]) == (4821, 3000, 1800)
    assert row["output_tokens"] == 95
    assert row["properties"]["cache_write_1h_tokens"] == 1200
    assert row["cost_usd"] == pytest.approx(genai_cost(message()), rel=1e-9)


def test_a_message_with_cache_reads_and_5_minute_and_1_hour_writes(meter, store_path):
    client = meter.instrument(client_for(Api()), stage="answer")
    reply = client.messages.create(**ASK)
    assert reply.content[0].text == "Hi! How can I help?"
    (row,) = events(meter, store_path, "llm_call")
    assert (row["provider"], row["model"], row["stage"]) == ("anthropic", MODEL, "answer")
    check_usage(row)
    # the one-hour writes are priced as such: dearer than if all writes were five-minute ones
    five_minute = message(usage=USAGE | {"cache_creation": {"ephemeral_5m_input_tokens": 1800}})
    assert row["cost_usd"] > genai_cost(five_minute)


def test_stream_true_gives_the_caller_every_event_and_records_usage_and_ttft(meter, store_path):
    bare = [e.type for e in client_for(Api()).messages.create(**ASK, stream=True)]
    client = meter.instrument(client_for(Api()))
    seen = [e.type for e in client.messages.create(**ASK, stream=True)]
    assert seen == bare and seen[0] == "message_start" and seen[-1] == "message_stop"
    (row,) = events(meter, store_path, "llm_call")
    check_usage(row)
    assert 0 < row["properties"]["ttft_ms"] <= row["latency_ms"]


def test_the_stream_helper_sync_and_async(meter, store_path):
    client = meter.instrument(client_for(Api()))
    with client.messages.stream(**ASK) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Hi! Hello" and final.usage.output_tokens == 95

    aclient = meter.instrument(client_for(Api(), anthropic.AsyncAnthropic))

    async def main():
        async with aclient.messages.stream(**ASK) as astream:
            return "".join([t async for t in astream.text_stream])

    assert asyncio.run(main()) == "Hi! Hello"
    rows = events(meter, store_path, "llm_call")
    assert len(rows) == 2
    for row in rows:
        check_usage(row)
        assert "ttft_ms" in row["properties"]


def test_async_create_streamed_or_not(meter, store_path):
    client = meter.instrument(client_for(Api(), anthropic.AsyncAnthropic))

    async def main():
        await client.messages.create(**ASK)
        with meter.context(user="bob", conversation="c-3"):
            stream = await client.messages.create(**ASK, stream=True)
            return [e.type async for e in stream]

    assert asyncio.run(main())[-1] == "message_stop"
    rows = events(meter, store_path, "llm_call")
    assert [r["user_id"] for r in rows] == [None, "bob"]
    for row in rows:
        check_usage(row)


def test_usage_parts_left_none_are_unknown_and_never_crash(meter, store_path):
    usage = {
        "input_tokens": 40,
        "cache_creation_input_tokens": None,
        "cache_read_input_tokens": None,
        "output_tokens": 7,
    }
    client = meter.instrument(client_for(Api(body=message(usage=usage))))
    client.messages.create(**ASK)
    (row,) = events(meter, store_path, "llm_call")
    assert (row["input_tokens"], row["cached_tokens"], row["cache_write_tokens"], row["output_tokens"]) == (
        40,
        0,
        0,
        7,
    )
    assert row["properties"]["usage_unknown"] == ["cached_tokens", "cache_write_tokens"]
    assert row["cost_usd"] == pytest.approx(
        genai_cost(message(usage=usage | {"cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}))
    )


@pytest.mark.parametrize(
    ("status", "error_type", "exc_type", "category"),
    [
        (429, "rate_limit_error", anthropic.RateLimitError, "rate_limit"),
        (500, "api_error", anthropic.InternalServerError, "upstream_error"),
        (529, "overloaded_error", anthropic.OverloadedError, "upstream_error"),
    ],
)
def test_failed_calls(meter, store_path, status, error_type, exc_type, category):
    error = {"type": "error", "error": {"type": error_type, "message": "Overloaded"}}
    client = meter.instrument(client_for(Api(status, error)))
    with pytest.raises(exc_type):
        client.messages.create(**ASK)
    rows = events(meter, store_path)
    (err,) = [r for r in rows if r["kind"] == "error"]
    (timing,) = [r for r in rows if r["kind"] == "timing"]
    assert (err["provider"], err["error_category"]) == ("anthropic", category)
    assert timing["latency_ms"] > 0 and timing["model"] == "claude-sonnet-4-5"


def test_a_timeout_in_the_stream_helper_counts_in_latency(meter, store_path):
    client = meter.instrument(client_for(Api(raise_exc=httpx2.ConnectTimeout("timed out"))))
    with pytest.raises(anthropic.APITimeoutError), client.messages.stream(**ASK) as stream:
        stream.get_final_message()
    rows = events(meter, store_path)
    assert sorted((r["kind"], r["error_category"]) for r in rows) == [("error", "timeout"), ("timing", None)]


def test_bedrock_and_vertex_clients_are_priced_at_their_providers(meter, store_path):
    bedrock = anthropic.AnthropicBedrock(
        aws_access_key="AKIDEXAMPLE",
        aws_secret_key="secret",
        aws_region="us-east-1",
        http_client=httpx2.Client(
            transport=httpx2.MockTransport(
                Api(body=message(model="anthropic.claude-sonnet-4-5-20250929-v1:0"))
            )
        ),
        max_retries=0,
    )
    meter.instrument(bedrock)
    bedrock.messages.create(**ASK | {"model": "anthropic.claude-sonnet-4-5-20250929-v1:0"})
    vertex = anthropic.AnthropicVertex(
        region="us-east5",
        project_id="my-project",
        access_token="ya29.test",
        http_client=httpx2.Client(transport=httpx2.MockTransport(Api())),
        max_retries=0,
    )
    meter.instrument(vertex)
    vertex.messages.create(**ASK | {"model": "claude-sonnet-4-5@20250929"})
    bedrock_row, vertex_row = events(meter, store_path, "llm_call")
    assert bedrock_row["provider"] == "bedrock"
    body = message(model="anthropic.claude-sonnet-4-5-20250929-v1:0")
    assert bedrock_row["cost_usd"] == pytest.approx(genai_cost(body, provider="aws"), rel=1e-9)
    assert vertex_row["provider"] == "google-vertex"
    assert vertex_row["cost_usd"] == pytest.approx(genai_cost(message(), provider="google"), rel=1e-9)


def test_uninstrument_and_library_wide_instrument(meter, store_path):
    api = Api()
    client = meter.instrument(client_for(api))
    client.messages.create(**ASK)
    meter.uninstrument(client)
    client.messages.create(**ASK)
    anthropic_integration.instrument(meter, stage="everywhere")
    try:
        other = client_for(api)
        other.messages.create(**ASK)
        with other.messages.stream(**ASK) as stream:
            stream.get_final_message()
    finally:
        anthropic_integration.uninstrument()
    client_for(api).messages.create(**ASK)
    assert [r["stage"] for r in events(meter, store_path, "llm_call")] == [None, "everywhere", "everywhere"]


def test_with_raw_response(meter, store_path):
    client = meter.instrument(client_for(Api()))
    raw = client.messages.with_raw_response.create(**ASK)
    assert raw.parse().usage.output_tokens == 95 and raw.headers["content-type"] == "application/json"
    (row,) = events(meter, store_path, "llm_call")
    check_usage(row)
