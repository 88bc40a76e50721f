"""meter.instrument(openai_client): the real openai SDK, answered by an httpx MockTransport with
bodies shaped like the API's (JSON, and server-sent events for streams). Costs are checked against
genai-prices' own calculation from the same usage objects.

The previous major version of the SDK (openai 2, on httpx) passes the same file; it cannot live in
the same venv as openai 3, so `make test` runs this file a second time against an install of its
own, put in front of the venv (by hand, the same):

    .venv/bin/pip install --target .venv/openai-previous --no-deps 'openai>=2,<3' distro
    PYTHONPATH=.venv/openai-previous .venv/bin/python -m pytest tests/test_instrument_openai.py
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal

import openai
import pytest
from genai_prices import extract_usage

from botmeter import Meter
from stored_events import events

# openai 3 is built on httpx2, openai 2 (the previous major) on httpx: the mock transport comes
# from whichever the installed SDK uses, so this file also runs against the previous major.
if "httpx2" in sys.modules:
    import httpx2
else:
    import httpx as httpx2
from botmeter.integrations import openai as openai_integration

MODEL = "gpt-4o-mini-2024-07-18"
USAGE = {
    "prompt_tokens": 1200,
    "completion_tokens": 85,
    "total_tokens": 1285,
    "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
}


def completion(model=MODEL, usage=USAGE, service_tier="default"):
    body = {
        "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
        "object": "chat.completion",
        "created": 1741570283,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello! How can I help?", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "service_tier": service_tier,
        "system_fingerprint": "fp_06737a9306",
    }
    if usage is not None:
        body["usage"] = usage
    return body


def chunks(include_usage: bool, usage=USAGE):
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1741570283, "model": MODEL}
    base |= {"service_tier": "default", "system_fingerprint": "fp_06737a9306"}
    deltas = [
        {"role": "assistant", "content": "", "refusal": None},
        {"content": "Hello"},
        {"content": "!"},
        {},
    ]
    out = []
    for i, delta in enumerate(deltas):
        chunk = base | {"choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}]}
        if i == len(deltas) - 1:
            chunk["choices"][0]["finish_reason"] = "stop"
        if include_usage:
            chunk["usage"] = None
        out.append(chunk)
    if include_usage:
        out.append(base | {"choices": [], "usage": usage})
    return out


def sse(events, done=True):
    text = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + ("data: [DONE]\n\n" if done else "")
    return httpx2.Response(200, content=text.encode(), headers={"content-type": "text/event-stream"})


RESPONSE_USAGE = {
    "input_tokens": 2000,
    "input_tokens_details": {"cached_tokens": 1500},
    "output_tokens": 600,
    "output_tokens_details": {"reasoning_tokens": 448},
    "total_tokens": 2600,
}


def response_body(status="completed", service_tier="flex"):
    return {
        "id": "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b",
        "object": "response",
        "created_at": 1741476542,
        "status": status,
        "model": "gpt-5-2025-08-07",
        "output": [
            {
                "type": "message",
                "id": "msg_1",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Hi there", "annotations": []}],
            }
        ],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "service_tier": service_tier,
        "usage": RESPONSE_USAGE,
    }


class Api:
    """The mock API: answers each path like OpenAI does and keeps the requests it saw."""

    def __init__(self, status: int = 200, error: dict | None = None, raise_exc: Exception | None = None):
        self.requests: list[dict] = []
        self.status = status
        self.error = error
        self.raise_exc = raise_exc
        self.completion = completion()

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content) if request.content else {}
        self.requests.append(body)
        if self.raise_exc is not None:
            raise self.raise_exc
        if self.status != 200:
            return httpx2.Response(self.status, json=self.error, headers={"x-request-id": "req_1"})
        path = request.url.path
        if path.endswith("/chat/completions"):
            if body.get("stream"):
                return sse(chunks(bool((body.get("stream_options") or {}).get("include_usage"))))
            return httpx2.Response(200, json=self.completion)
        if path.endswith("/responses"):
            if body.get("stream"):
                done = response_body()
                events = [
                    {
                        "type": "response.created",
                        "sequence_number": 0,
                        "response": done | {"status": "in_progress"},
                    },
                    {
                        "type": "response.output_text.delta",
                        "sequence_number": 1,
                        "item_id": "msg_1",
                        "output_index": 0,
                        "content_index": 0,
                        "delta": "Hi",
                        "logprobs": [],
                    },
                    {"type": "response.completed", "sequence_number": 2, "response": done},
                ]
                return sse(events, done=False)
            return httpx2.Response(200, json=response_body())
        if path.endswith("/embeddings"):
            return httpx2.Response(
                200,
                json={
                    "object": "list",
                    "data": [{"object": "embedding", "index": 0, "embedding": [0.1, -0.2]}],
                    "model": "text-embedding-3-small",
                    "usage": {"prompt_tokens": 8, "total_tokens": 8},
                },
            )
        return httpx2.Response(404, json={"error": {"message": "no route"}})


def client_for(api, cls=openai.OpenAI, **kw):
    http = httpx2.AsyncClient if cls in (openai.AsyncOpenAI, openai.AsyncAzureOpenAI) else httpx2.Client
    kw.setdefault("api_key", "sk-test")
    return cls(http_client=http(transport=httpx2.MockTransport(api)), max_retries=0, **kw)


@pytest.fixture
def meter(store_url):
    m = Meter(bot="b", store=store_url, hash_users=False)
    yield m
    m.close()


def genai_cost(body, flavor, provider="openai", tier=None):
    found = extract_usage(body, provider_id=provider, api_flavor=flavor)
    context = {"service_tier": tier} if tier else None
    return float(found.calc_price(price_context=context).total_price)


MESSAGES = [{"role": "user", "content": "hi"}]


def test_a_chat_completion_is_recorded_with_its_usage_tier_latency_and_cost(meter, store_path):
    api = Api()
    client = meter.instrument(client_for(api), stage="answer")
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert reply.choices[0].message.content == "Hello! How can I help?"
    (event,) = events(meter, store_path, "llm_call")
    assert (event["provider"], event["model"], event["stage"]) == ("openai", MODEL, "answer")
    assert (event["input_tokens"], event["cached_tokens"], event["output_tokens"]) == (1200, 1024, 85)
    assert event["reasoning_tokens"] == 0
    assert event["properties"]["service_tier"] == "default"
    assert event["properties"]["usage"]["prompt_tokens"] == 1200  # the raw usage is kept
    assert event["latency_ms"] > 0
    assert event["cost_usd"] == pytest.approx(genai_cost(api.completion, "chat"), rel=1e-9)


def test_a_stream_asks_for_usage_but_the_caller_gets_the_chunks_it_would_have_had(meter, store_path):
    bare_api, api = Api(), Api()
    bare = [
        c.model_dump()
        for c in client_for(bare_api).chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True
        )
    ]
    client = meter.instrument(client_for(api))
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    assert isinstance(stream, openai.Stream)  # the SDK's own stream object
    chunks_seen = list(stream)
    seen = [c.model_dump() for c in chunks_seen]
    assert seen == bare and len(seen) == 4
    assert all("usage" not in c.model_fields_set for c in chunks_seen)  # as without usage asked
    assert "stream_options" not in bare_api.requests[0]
    assert api.requests[0]["stream_options"] == {"include_usage": True}
    (event,) = events(meter, store_path, "llm_call")
    assert (event["input_tokens"], event["cached_tokens"], event["output_tokens"]) == (1200, 1024, 85)
    assert 0 < event["properties"]["ttft_ms"] <= event["latency_ms"]
    assert event["properties"]["service_tier"] == "default"
    body = chunks(True)[-1] | {"model": MODEL}
    assert event["cost_usd"] == pytest.approx(genai_cost(body, "chat"), rel=1e-9)


def wire(events, *, compact=False, crlf=False, ids=False, piece=0):
    """A streamed answer as servers write it: compact JSON or with spaces, LF or CRLF line ends,
    with or without event ids, whole or in network reads of ``piece`` bytes (cutting lines)."""
    end = "\r\n" if crlf else "\n"
    separators = (",", ":") if compact else (", ", ": ")
    text = "".join(
        (f"id: {i}{end}" if ids else "") + f"data: {json.dumps(e, separators=separators)}{end}{end}"
        for i, e in enumerate(events)
    )
    body = (text + f"data: [DONE]{end}{end}").encode()
    pieces = [body[i : i + piece] for i in range(0, len(body), piece)] if piece else [body]
    return httpx2.Response(200, content=iter(pieces), headers={"content-type": "text/event-stream"})


def wire_pieces(events, **shape) -> list[bytes]:
    """The network reads ``wire`` answers with."""
    return list(wire(events, **shape).stream)


AZURE_FILTER = {"id": "", "object": "", "created": 0, "model": "", "choices": [], "prompt_filter_results": []}


@pytest.mark.parametrize(
    "shape",
    [
        {"compact": True},
        {"compact": True, "piece": 7},
        {"compact": True, "piece": 331},
        {"crlf": True, "piece": 50},
        {"ids": True},
        {"ids": True, "compact": True, "piece": 13},
        {"azure": True, "compact": True},
    ],
    ids=repr,
)
@pytest.mark.parametrize("step", ["c", "python"])
def test_the_usage_chunk_is_taken_out_whatever_the_wire_looks_like(
    meter, store_path, shape, step, monkeypatch
):
    if step == "python":
        monkeypatch.setattr(openai_integration, "_step_lines", openai_integration._step_py)
    shape = dict(shape)
    azure = shape.pop("azure", False)

    def api(request):
        asked = bool((json.loads(request.content).get("stream_options") or {}).get("include_usage"))
        return wire(([AZURE_FILTER] if azure else []) + chunks(asked), **shape)

    bare = list(client_for(api).chat.completions.create(model="m", messages=MESSAGES, stream=True))
    seen = list(
        meter.instrument(client_for(api)).chat.completions.create(model="m", messages=MESSAGES, stream=True)
    )
    assert [c.model_dump() for c in seen] == [c.model_dump() for c in bare]
    assert [c.model_fields_set for c in seen] == [c.model_fields_set for c in bare]
    assert len(seen) == 5 if azure else 4
    (event,) = events(meter, store_path, "llm_call")
    assert (event["input_tokens"], event["cached_tokens"], event["output_tokens"]) == (1200, 1024, 85)
    assert event["properties"]["usage"] == USAGE and event["properties"]["service_tier"] == "default"
    assert event["model"] == MODEL and 0 < event["properties"]["ttft_ms"] <= event["latency_ms"]
    assert meter.stats()["integration_failures"] == {}


@pytest.mark.parametrize("compact", [True, False], ids=["compact", "spaced"])
def test_time_to_first_token_waits_for_the_first_content_not_the_first_bytes(meter, store_path, compact):
    separators = (",", ":") if compact else (", ", ": ")

    def api(request):
        asked = bool((json.loads(request.content).get("stream_options") or {}).get("include_usage"))
        events_ = chunks(asked)

        def reads():  # the role chunk at once, the content 0.2 s later, as a model thinks
            for i, e in enumerate(events_):
                if i == 1:
                    time.sleep(0.2)
                yield f"data: {json.dumps(e, separators=separators)}\n\n".encode()
            yield b"data: [DONE]\n\n"

        return httpx2.Response(200, content=reads(), headers={"content-type": "text/event-stream"})

    client = meter.instrument(client_for(api))
    seen = list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    assert [c.choices[0].delta.content for c in seen] == ["", "Hello", "!", None]
    (event,) = events(meter, store_path, "llm_call")
    assert 200 <= event["properties"]["ttft_ms"] <= event["latency_ms"]
    assert event["model"] == MODEL and event["output_tokens"] == 85


def test_the_usage_line_is_read_without_orjson_too(meter, store_path, monkeypatch):
    # orjson, when installed, reads the usage line; botmeter's core does not depend on it
    monkeypatch.setattr(openai_integration, "_fast_loads", None)
    client = meter.instrument(client_for(Api()))
    seen = list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    assert len(seen) == 4 and all(c.choices for c in seen)
    (event,) = events(meter, store_path, "llm_call")
    assert (event["input_tokens"], event["cached_tokens"], event["output_tokens"]) == (1200, 1024, 85)
    assert event["properties"]["usage"] == USAGE and meter.stats()["integration_failures"] == {}


def test_a_caller_that_asked_for_usage_keeps_its_usage_chunk(meter, store_path):
    api = Api()
    client = meter.instrument(client_for(api))
    options = {"include_usage": True}
    seen = list(
        client.chat.completions.create(model="m", messages=MESSAGES, stream=True, stream_options=options)
    )
    assert len(seen) == 5 and seen[-1].usage.prompt_tokens == 1200
    assert api.requests[0]["stream_options"] == {"include_usage": True}
    (event,) = events(meter, store_path, "llm_call")
    assert event["output_tokens"] == 85


def test_async_calls_streamed_or_not(meter, store_path):
    api = Api()
    client = meter.instrument(client_for(api, openai.AsyncOpenAI))

    async def main():
        await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        with meter.context(user="alice", conversation="c-7"):
            stream = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
            return [c async for c in stream]

    seen = asyncio.run(main())
    assert len(seen) == 4 and all(c.choices for c in seen)
    rows = events(meter, store_path, "llm_call")
    assert [(r["input_tokens"], r["output_tokens"], r["user_id"]) for r in rows] == [
        (1200, 85, None),
        (1200, 85, "alice"),
    ]
    assert "ttft_ms" in rows[1]["properties"] and rows[1]["conversation_id"] == "c-7"


def test_a_streamed_call_leaves_nothing_for_the_garbage_collector(meter, store_path):
    # Like the bare SDK's: once read, a stream's response, request and chunks are freed at once,
    # not kept in a reference cycle until the collector's next pass.
    sync_client = meter.instrument(client_for(Api()))
    async_client = meter.instrument(client_for(Api(), openai.AsyncOpenAI))

    def streamed() -> list:
        return list(sync_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))

    async def streamed_async() -> list:
        create = async_client.chat.completions.create
        return [c async for c in await create(model="gpt-4o-mini", messages=MESSAGES, stream=True)]

    async def main() -> tuple[list, int]:
        await streamed_async()  # the SDK's and the event loop's first-call set-up, out of the count
        streamed()
        gc.collect()
        gc.disable()
        try:
            seen = [len(streamed()), len(await streamed_async())]
            return seen, gc.collect()
        finally:
            gc.enable()

    seen, left = asyncio.run(main())
    assert seen == [4, 4] and left == 0
    assert len(events(meter, store_path, "llm_call")) == 4


def test_the_responses_api_with_reasoning_cached_tokens_and_the_flex_tier(meter, store_path):
    api = Api()
    client = meter.instrument(client_for(api))
    client.responses.create(model="gpt-5", input="hi", service_tier="flex")
    events_seen = list(client.responses.create(model="gpt-5", input="hi", service_tier="flex", stream=True))
    assert [e.type for e in events_seen] == [
        "response.created",
        "response.output_text.delta",
        "response.completed",
    ]
    rows = events(meter, store_path, "llm_call")
    assert len(rows) == 2
    expected = genai_cost(response_body(), "responses", tier="flex")
    standard = genai_cost(response_body(), "responses")
    assert expected != pytest.approx(standard)  # the tier changes the price
    for row in rows:
        assert (row["model"], row["input_tokens"], row["cached_tokens"]) == ("gpt-5-2025-08-07", 2000, 1500)
        assert (row["output_tokens"], row["reasoning_tokens"]) == (600, 448)
        assert row["properties"]["service_tier"] == "flex"
        assert row["cost_usd"] == pytest.approx(expected, rel=1e-9)
    assert "ttft_ms" in rows[1]["properties"]


def test_embeddings(meter, store_path):
    client = meter.instrument(client_for(Api()))
    client.embeddings.create(model="text-embedding-3-small", input="hello")
    (row,) = events(meter, store_path, "llm_call")
    assert (row["model"], row["input_tokens"], row["output_tokens"]) == ("text-embedding-3-small", 8, 0)
    body = {"model": "text-embedding-3-small", "usage": {"prompt_tokens": 8, "total_tokens": 8}}
    assert row["cost_usd"] == pytest.approx(genai_cost(body, "embeddings"), rel=1e-9)


@pytest.mark.parametrize(
    ("status", "error", "exc_type", "category"),
    [
        (
            429,
            {"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}},
            openai.RateLimitError,
            "rate_limit",
        ),
        (
            429,
            {
                "error": {
                    "message": "You exceeded your current quota",
                    "type": "insufficient_quota",
                    "code": "insufficient_quota",
                }
            },
            openai.RateLimitError,
            "quota",
        ),
        (
            500,
            {"error": {"message": "The server had an error", "type": "server_error"}},
            openai.InternalServerError,
            "upstream_error",
        ),
    ],
)
def test_a_failed_call_is_an_error_and_a_timing_and_the_caller_gets_the_sdk_error(
    meter, store_path, status, error, exc_type, category
):
    client = meter.instrument(client_for(Api(status, error)), stage="answer")
    with pytest.raises(exc_type) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert caught.value.status_code == status
    rows = events(meter, store_path)
    (err,) = [r for r in rows if r["kind"] == "error"]
    (timing,) = [r for r in rows if r["kind"] == "timing"]
    assert (err["provider"], err["error_category"], err["stage"]) == ("openai", category, "answer")
    assert (timing["stage"], timing["provider"], timing["model"]) == ("answer", "openai", "gpt-4o-mini")
    assert timing["latency_ms"] > 0 and timing["properties"]["failed"] is True
    assert not [r for r in rows if r["kind"] == "llm_call"]


def test_a_timeout_counts_in_latency(meter, store_path):
    client = meter.instrument(client_for(Api(raise_exc=httpx2.ReadTimeout("timed out"))))
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    rows = events(meter, store_path)
    assert {r["kind"]: r.get("error_category") for r in rows} == {"error": "timeout", "timing": None}
    (timing,) = [r for r in rows if r["kind"] == "timing"]
    assert timing["stage"] == "llm" and timing["latency_ms"] > 0


def test_the_exception_reaching_the_caller_is_the_sdks_own_object(meter, store_path):
    client = client_for(Api())
    raised = openai.APIConnectionError(request=httpx2.Request("POST", "https://api.example/v1"))

    def create(**kwargs):
        raise raised

    client.chat.completions.create = create  # what the SDK raised, as one known object
    meter.instrument(client)
    with pytest.raises(openai.APIConnectionError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert caught.value is raised
    (err,) = events(meter, store_path, "error")
    assert err["error_category"] == "network"


def test_a_stream_that_fails_midway_is_recorded_as_a_failure(meter, store_path):
    def broken(request):
        text = f"data: {json.dumps(chunks(True)[1])}\n\n" + 'data: {"error": {"message": "overloaded"}}\n\n'
        return httpx2.Response(200, content=text.encode(), headers={"content-type": "text/event-stream"})

    client = meter.instrument(client_for(broken))
    got = []
    with pytest.raises(openai.APIError):
        for chunk in client.chat.completions.create(model="m", messages=MESSAGES, stream=True):
            got.append(chunk)
    assert len(got) == 1
    kinds = sorted(r["kind"] for r in events(meter, store_path))
    assert kinds == ["error", "timing"]


def test_missing_usage_is_recorded_as_unknown_and_left_unpriced(meter, store_path):
    api = Api()
    api.completion = completion(usage=None)
    client = meter.instrument(client_for(api))
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    (row,) = events(meter, store_path, "llm_call")
    assert row["properties"]["usage_unknown"] == [
        "input_tokens",
        "output_tokens",
        "cached_tokens",
        "cache_write_tokens",
        "reasoning_tokens",
    ]
    assert row["cost_usd"] is None  # not priced as 0 tokens


def test_a_failure_inside_botmeter_is_counted_and_swallowed(meter, store_path, monkeypatch):
    def broken_usage(result):
        raise RuntimeError("botmeter bug")

    monkeypatch.setattr(openai_integration.CHAT, "usage", broken_usage)
    client = meter.instrument(client_for(Api()))
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert reply.usage.prompt_tokens == 1200  # the caller's result is untouched
    (row,) = events(meter, store_path, "llm_call")
    assert meter.stats()["integration_failures"] == {"openai.chat.completions": 1}
    # the call is still recorded, its counts unknown
    assert row["properties"]["usage_unknown"][:2] == ["input_tokens", "output_tokens"]


def test_uninstrument_stops_recording_and_other_clients_are_untouched(meter, store_path):
    api = Api()
    instrumented, other = client_for(api), client_for(api)
    meter.instrument(instrumented)
    other.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    instrumented.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert meter.uninstrument(instrumented) is instrumented
    instrumented.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert len(events(meter, store_path, "llm_call")) == 1


def test_instrumenting_every_client_of_the_library(meter, store_path):
    api = Api()
    openai_integration.instrument(meter, stage="all")
    try:
        client = client_for(api)  # made after instrument()
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        meter.instrument(client, stage="own")  # per-object wins, recorded once
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    finally:
        openai_integration.uninstrument()
    client_for(api).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert [r["stage"] for r in events(meter, store_path, "llm_call")] == ["all", "own"]


def test_azure_clients_are_recorded_as_azure(meter, store_path):
    client = client_for(
        Api(), openai.AzureOpenAI, azure_endpoint="https://x.openai.azure.example", api_version="2024-10-21"
    )
    meter.instrument(client)
    client.chat.completions.create(model="my-deployment", messages=MESSAGES)
    (row,) = events(meter, store_path, "llm_call")
    assert (row["provider"], row["model"]) == ("azure", MODEL)


def test_an_unknown_client_is_refused_by_name(meter):
    with pytest.raises(TypeError, match=r"no integration for a builtins\.object client"):
        meter.instrument(object())


def test_prices_differ_by_service_tier(meter, store_path):
    api = Api()
    client = meter.instrument(client_for(api))
    for tier in ("default", "priority", "flex"):
        api.completion = completion(model="gpt-5-2025-08-07", service_tier=tier)
        client.chat.completions.create(model="gpt-5", messages=MESSAGES)
    rows = events(meter, store_path, "llm_call")
    costs = {r["properties"]["service_tier"]: Decimal(str(r["cost_usd"])) for r in rows}
    for tier, cost in costs.items():
        want = genai_cost(completion(model="gpt-5-2025-08-07", service_tier=tier), "chat", tier=tier)
        assert float(cost) == pytest.approx(want, rel=1e-9)
    assert costs["flex"] < costs["default"] < costs["priority"]


def test_raw_response_forms(meter, store_path):
    api = Api()
    client = meter.instrument(client_for(api))
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    assert raw.parse().usage.prompt_tokens == 1200 and raw.headers["content-type"] == "application/json"
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True
    )
    assert len(list(raw.parse())) == 4  # the usage chunk botmeter asked for is not the caller's
    with client.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True
    ) as response:
        lines = [line for line in response.iter_lines() if line.startswith("data: {")]
    assert len(lines) == 4  # raw lines as asked: botmeter did not ask for usage here
    assert "stream_options" not in api.requests[-1]
    rows = events(meter, store_path, "llm_call")
    assert [(r["input_tokens"], "usage_unknown" in r["properties"]) for r in rows] == [
        (1200, False),
        (1200, False),
        (0, True),
    ]


def test_the_stream_helpers_go_through_create_and_are_recorded(meter, store_path):
    client = meter.instrument(client_for(Api()))
    with client.chat.completions.stream(model="gpt-4o-mini", messages=MESSAGES) as stream:
        text = "".join(e.delta for e in stream if e.type == "content.delta")
        final = stream.get_final_completion()
    assert text == "Hello!" and final.usage is None  # the caller did not ask for usage
    with client.responses.stream(model="gpt-5", input="hi") as stream:
        done = stream.get_final_response()
    assert done.usage.input_tokens == 2000
    rows = events(meter, store_path, "llm_call")
    assert [(r["properties"]["operation"], r["input_tokens"], r["output_tokens"]) for r in rows] == [
        ("chat.completions", 1200, 85),
        ("responses", 2000, 600),
    ]


def test_a_failure_inside_the_stream_watch_is_counted_and_the_chunks_still_flow(meter, monkeypatch):
    def broken_see(watch, item):
        raise RuntimeError("botmeter bug")

    monkeypatch.setattr(openai_integration.CHAT, "see", broken_see)
    client = meter.instrument(client_for(Api()))
    seen = list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    assert [c.choices[0].delta.content for c in seen] == ["", "Hello", "!", None]
    assert meter.stats()["integration_failures"] == {"openai.stream": 4}


def test_an_async_stream_that_fails_midway_is_recorded_as_a_failure(meter, store_path):
    def broken(request):
        text = f"data: {json.dumps(chunks(True)[1])}\n\n" + 'data: {"error": {"message": "overloaded"}}\n\n'
        return httpx2.Response(200, content=text.encode(), headers={"content-type": "text/event-stream"})

    client = meter.instrument(client_for(broken, openai.AsyncOpenAI))

    async def main() -> list:
        got = []
        stream = await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
        with pytest.raises(openai.APIError):
            async for chunk in stream:
                got.append(chunk)
        return got

    assert len(asyncio.run(main())) == 1
    rows = events(meter, store_path)
    assert sorted(r["kind"] for r in rows) == ["error", "timing"]
    (err,) = [r for r in rows if r["kind"] == "error"]
    assert err["error_type"] == "APIError" and err["provider"] == "openai"


def test_an_exception_of_the_callers_own_while_reading_is_not_the_calls_failure(meter, store_path):
    client = meter.instrument(client_for(Api()))
    stream = client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    with pytest.raises(KeyError), stream:
        for _ in stream:
            raise KeyError("a bug in the bot")  # the with block closes the stream on its way out
    del stream
    gc.collect()  # (a stream left half read is freed by the collector, as without botmeter)
    (call,) = events(meter, store_path)
    assert call["kind"] == "llm_call" and call["model"] == MODEL


def test_a_failure_in_the_byte_filter_is_counted_and_the_usage_chunk_still_taken_out(
    meter, store_path, monkeypatch
):
    def broken_filter(*args):
        raise RuntimeError("botmeter bug")

    monkeypatch.setattr(openai_integration, "_step_lines", broken_filter)
    client = meter.instrument(client_for(Api()))
    seen = list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    assert [c.choices[0].delta.content for c in seen] == ["", "Hello", "!", None]
    assert meter.stats()["integration_failures"] == {"openai.stream": 1}
    (event,) = events(meter, store_path, "llm_call")
    assert (event["input_tokens"], event["output_tokens"]) == (1200, 85)  # read from the chunk instead


def test_the_c_fast_path_takes_out_the_nulls_as_the_python_one_does():
    pytest.importorskip("botmeter._fastpath")
    null = b',"usage":null'
    cases = [b"", b"x", null, null * 3, b"a" + null + b"b" + null, b',"usage":nul', b"ab" + null[:-1] + null]
    cases.append("".join(f"data: {json.dumps(c, separators=(',', ':'))}\n\n" for c in chunks(True)).encode())
    for data in cases:
        assert openai_integration._remove_all(data, null) == openai_integration._remove_all_py(data, null)
        for cut in [(0, 0), (0, len(data)), (len(data) // 3, len(data) // 2), (len(data), len(data))]:
            want = openai_integration._remove_all_py(data, null, *cut)
            assert openai_integration._remove_all(data, null, *cut) == want
    with pytest.raises(ValueError, match="cut 3:2"):
        openai_integration._remove_all(b"abcd", null, 3, 2)
    assert openai_integration._remove_all is not openai_integration._remove_all_py


class _Decoder:
    _last_event_id = None


def _read_stream(step, pieces: list[bytes]) -> tuple:
    """What a stream's reads become through ``step`` (as the integration's byte filter reads
    them), and what the watch learnt from them."""
    from botmeter.integrations._calls import LazyUsage
    from botmeter.integrations._wrap import Watch

    class Meter_:
        def count_integration_failure(self, where):
            raise AssertionError(where)

    watch = Watch(openai_integration.CHAT, Meter_(), "openai", None, "m", openai_integration._FROM_BYTES, 0.0)
    watch.passthrough = True
    carry, at_event_start, out, first_read = b"", True, [], None
    for i, piece in enumerate(pieces):
        lines, carry = step(piece, carry, at_event_start, watch, _Decoder())
        at_event_start = lines.endswith(openai_integration._EVENT_ENDS) if lines else at_event_start
        out.append(lines)
        if first_read is None and watch.first_at is not None:
            first_read = i  # the read the first content came in
    usage = watch.usage.resolve() if isinstance(watch.usage, LazyUsage) else watch.usage
    if usage is not None:
        props = {k: v.model_dump() if hasattr(v, "model_dump") else v for k, v in usage.properties.items()}
        usage = (usage.input_tokens, usage.output_tokens, usage.cached_tokens, usage.reasoning_tokens, props)
    return out, carry, watch.model, watch.passthrough, first_read, usage


@pytest.mark.parametrize("asked", [True, False], ids=["usage asked", "not asked"])
def test_the_c_stream_step_reads_every_wire_as_the_python_one_does(asked):
    pytest.importorskip("botmeter._fastpath")
    tool_call = {"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "f", "arguments": ""}}]}
    bodies = {
        "plain": chunks(asked),
        "azure": [AZURE_FILTER, *chunks(asked)],
        "tool call": [chunks(asked)[0] | {"choices": [{"index": 0, "delta": tool_call}]}, *chunks(asked)[1:]],
        "refusal": [chunks(asked)[0] | {"choices": [{"index": 0, "delta": {"refusal": "No."}}]}],
    }
    shapes = [{}, {"crlf": True}, {"ids": True}]
    tried = 0
    for events_ in bodies.values():
        for shape in shapes:
            for compact in (True, False):
                for piece in (0, 1, 7, 50, 331):
                    pieces = wire_pieces(events_, compact=compact, piece=piece, **shape)
                    want = _read_stream(openai_integration._step_py, pieces)
                    assert _read_stream(openai_integration._step_c, pieces) == want, (shape, compact, piece)
                    tried += 1
    assert tried == 4 * 3 * 2 * 5
    assert openai_integration._step_lines is openai_integration._step_c


def test_the_usage_chunk_is_taken_out_without_the_c_fast_path(meter, store_path, monkeypatch):
    monkeypatch.setattr(openai_integration, "_remove_all", openai_integration._remove_all_py)
    monkeypatch.setattr(openai_integration, "_step_lines", openai_integration._step_py)
    client = meter.instrument(client_for(Api()))
    seen = list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    assert len(seen) == 4 and all(c.choices for c in seen)
    (event,) = events(meter, store_path, "llm_call")
    assert (event["input_tokens"], event["cached_tokens"], event["output_tokens"]) == (1200, 1024, 85)


def test_a_call_read_on_the_writer_keeps_its_own_time_and_context(store_url, store_path):
    # The usage is read and the event recorded on the writer's thread, after the call: the event
    # still has the time the call ended and the context it was made in, and closing records it.
    meter = Meter(bot="b", store=store_url, hash_users=False, flush_interval=60)
    client = meter.instrument(client_for(Api()))
    times = []

    def bot_turn():
        with meter.context(user="carol", conversation="c-9", stage="reply"):
            for _ in client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True):
                pass
            times.append(datetime.now(UTC).replace(tzinfo=None))

    before = datetime.now(UTC).replace(tzinfo=None)
    worker = threading.Thread(target=bot_turn)
    worker.start()
    worker.join()
    assert meter.stats()["buffered"] == 1  # handed over, not yet read
    time.sleep(0.3)
    (row,) = events(meter, store_path, "llm_call")  # closes the meter: no flush asked for
    assert (row["user_id"], row["conversation_id"], row["stage"]) == ("carol", "c-9", "reply")
    assert (row["input_tokens"], row["output_tokens"]) == (1200, 85)
    assert before <= row["ts"] <= times[0]
