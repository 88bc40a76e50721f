"""OpenTelemetry capture: real SDK TracerProvider, spans shaped like the GenAI conventions (old and
current names), the botmeter SpanProcessor, a real DuckDB store; costs against genai-prices."""

from __future__ import annotations

import time

import pytest
from genai_prices import Usage, calc_price
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Status, StatusCode

from botmeter import Meter
from botmeter.integrations import otel
from botmeter.integrations.genai_spans import span_call
from botmeter.process.pricing import LlmPricer
from conftest import query


@pytest.fixture
def traced(store_url):
    meter = Meter(bot="otelbot", store=store_url, hash_users=False)
    provider = TracerProvider()
    processor = otel.instrument(meter, provider)
    yield meter, provider.get_tracer("test"), processor
    provider.shutdown()
    meter.close()


def _rows(meter, sql):
    """The stored events, read through the meter's own store (it may hold the file between writes)."""
    assert meter.flush()
    with meter.store.reading() as con:
        return con.execute(sql).fetchall()


def test_current_conventions_become_a_priced_llm_call(traced, store_path):
    meter, tracer, processor = traced
    with tracer.start_as_current_span("chat gpt-4o") as span:
        span.set_attributes(
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.response.model": "gpt-4o-2024-08-06",
                "gen_ai.usage.input_tokens": 1200,
                "gen_ai.usage.output_tokens": 300,
                "gen_ai.usage.cache_read.input_tokens": 1024,
                "gen_ai.conversation.id": "conv-7",
                "user.id": "u-1",
            }
        )
        time.sleep(0.02)
    assert meter.flush()
    rows = _rows(
        meter,
        "select provider, model, input_tokens, output_tokens, cached_tokens, cost_usd, latency_ms, "
        "user_id, conversation_id from events where kind = 'llm_call'",
    )
    assert len(rows) == 1
    provider, model, inp, out, cached, cost, latency, user, conv = rows[0]
    assert (provider, model, inp, out, cached) == ("openai", "gpt-4o-2024-08-06", 1200, 300, 1024)
    expected = calc_price(
        Usage(input_tokens=1200, cache_read_tokens=1024, output_tokens=300),
        model_ref="gpt-4o-2024-08-06",
        provider_id="openai",
    ).total_price
    assert cost == pytest.approx(float(expected), rel=1e-9)
    assert latency >= 20
    assert (user, conv) == ("u-1", "conv-7")
    assert processor.stats() == {"seen": 1, "recorded": 1, "errors": 0, "ignored": 0, "failed": 0}


def test_older_names_and_anthropic_cache_writes(traced, store_path):
    meter, tracer, _ = traced
    with tracer.start_as_current_span("anthropic.chat") as span:
        # semconv 1.26 names and OpenLLMetry's cache attributes, as older instrumentations send them
        span.set_attributes(
            {
                "gen_ai.system": "Anthropic",
                "llm.request.type": "chat",
                "gen_ai.request.model": "claude-3-5-sonnet-20241022",
                "gen_ai.usage.prompt_tokens": 5000,
                "gen_ai.usage.completion_tokens": 200,
                "gen_ai.usage.cache_read_input_tokens": 3000,
                "gen_ai.usage.cache_creation_input_tokens": 1500,
                "enduser.id": "u-2",
                "session.id": "s-9",
            }
        )
    assert meter.flush()
    (row,) = _rows(
        meter,
        "select provider, input_tokens, cached_tokens, cache_write_tokens, cost_usd, user_id, "
        "conversation_id from events",
    )
    expected = calc_price(
        Usage(input_tokens=5000, cache_read_tokens=3000, cache_write_tokens=1500, output_tokens=200),
        model_ref="claude-3-5-sonnet-20241022",
        provider_id="anthropic",
    ).total_price
    assert row[:4] == ("anthropic", 5000, 3000, 1500)
    assert row[4] == pytest.approx(float(expected), rel=1e-9)
    assert row[5:] == ("u-2", "s-9")


def test_exclusive_cache_counts_are_added_to_the_input():
    # Anthropic's own usage counts the uncached prompt only: copied unchanged, it is below the cache reads.
    found = span_call(
        {
            "gen_ai.provider.name": "anthropic",
            "gen_ai.request.model": "claude-sonnet-4-5",
            "gen_ai.usage.input_tokens": 12,
            "gen_ai.usage.output_tokens": 80,
            "gen_ai.usage.cache_read.input_tokens": 4000,
            "gen_ai.usage.cache_creation.input_tokens": 600,
        }
    )
    assert found is not None
    assert found.llm_call["input_tokens"] == 4612
    assert found.llm_call["cached_tokens"] == 4000


def test_reasoning_tokens_and_otlp_json_strings():
    # OTLP/JSON carries int64 values as strings; an OTLP endpoint hands them over as they come.
    found = span_call(
        {
            "gen_ai.provider.name": "openai",
            "gen_ai.response.model": "o3-mini",
            "gen_ai.usage.input_tokens": "100",
            "gen_ai.usage.output_tokens": "900",
            "gen_ai.usage.reasoning.output_tokens": "640",
        },
        start_ns=1_700_000_000_000_000_000,
        end_ns=1_700_000_001_500_000_000,
        trace_id="ab" * 16,
        span_id="cd" * 8,
    )
    assert found is not None
    call = found.llm_call
    assert (call["input_tokens"], call["output_tokens"], call["reasoning_tokens"]) == (100, 900, 640)
    assert call["latency_ms"] == pytest.approx(1500.0)
    assert call["ts"] == pytest.approx(1_700_000_001.5)
    assert call["event_id"] == f"otel:{'ab' * 16}:{'cd' * 8}"


def test_failed_call_records_latency_and_an_error(traced, store_path):
    meter, tracer, processor = traced
    with pytest.raises(TimeoutError), tracer.start_as_current_span("chat gpt-4o-mini") as span:
        span.set_attributes(
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o-mini",
                "error.type": "APITimeoutError",
                "user.id": "u-3",
            }
        )
        raise TimeoutError("Request timed out.")
    kinds = dict(_rows(meter, "select kind, count(*) from events group by kind"))
    assert kinds == {"timing": 1, "error": 1}  # as the SDK integrations record a failed call
    (err,) = _rows(
        meter, "select error_type, error_category, provider, stage, user_id from events where kind = 'error'"
    )
    assert err == ("APITimeoutError", "timeout", "openai", "llm", "u-3")
    (timing,) = _rows(meter, "select stage, model, latency_ms > 0, user_id from events where kind = 'timing'")
    assert timing == ("llm", "gpt-4o-mini", True, "u-3")
    assert processor.stats()["errors"] == 1
    latency = meter.query("latency_ms", days=1, by="stage", stat="count").rows  # counts in LLM latency
    assert [(r["stage"], r["count"]) for r in latency] == [("llm", 1)]


def test_error_status_without_error_type(traced, store_path):
    meter, tracer, _ = traced
    with tracer.start_as_current_span("chat") as span:
        span.set_attributes(
            {
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o",
                "http.response.status_code": 429,
            }
        )
        span.set_status(Status(StatusCode.ERROR, "Error code: 429 - rate limit reached"))
    assert meter.flush()
    (err,) = _rows(meter, "select error_type, error_category, error_message from events where kind = 'error'")
    assert err == ("error", "rate_limit", "Error code: <n> - rate limit reached")


def test_other_spans_are_ignored_and_counted(traced, store_path):
    meter, tracer, processor = traced
    with tracer.start_as_current_span("GET /sms"):
        with tracer.start_as_current_span("execute_tool weather") as tool:
            tool.set_attributes({"gen_ai.operation.name": "execute_tool", "gen_ai.provider.name": "openai"})
        with tracer.start_as_current_span("chat") as chat:
            chat.set_attributes(
                {
                    "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": "gpt-4o-mini",
                    "gen_ai.usage.input_tokens": 10,
                    "gen_ai.usage.output_tokens": 5,
                }
            )
    assert meter.flush()
    assert _rows(meter, "select count(*) from events")[0][0] == 1
    assert processor.stats() == {"seen": 3, "recorded": 1, "errors": 0, "ignored": 2, "failed": 0}


def test_a_span_botmeter_cannot_record_is_counted_not_raised(traced, store_path, caplog):
    meter, tracer, processor = traced
    with tracer.start_as_current_span("chat") as span:
        # A negative count is not a count: recorded as unknown (0), not a crash.
        span.set_attributes(
            {
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.usage.input_tokens": -5,
            }
        )
    meter.close()  # later track calls do nothing; the span still must not raise
    with tracer.start_as_current_span("chat") as span:
        span.set_attributes({"gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o"})
    stats = processor.stats()
    assert stats["seen"] == 2 and stats["failed"] == 0
    (props,) = query(store_path, "select properties->>'$.usage_unknown' from events")[0]  # closed: released
    assert "input_tokens" in props and "output_tokens" in props


def test_price_from_genai_prices_matches_for_several_providers():
    # The mapping names providers as genai-prices knows them.
    assert span_call({"gen_ai.system": "AWS", "gen_ai.request.model": "x"}).llm_call["provider"] == "bedrock"
    for system, model in (
        ("aws.bedrock", "anthropic.claude-3-5-sonnet-20241022-v2:0"),
        ("gcp.gemini", "gemini-1.5-pro"),
    ):
        found = span_call({"gen_ai.system": system, "gen_ai.request.model": model})
        assert found is not None

        cost, _ = LlmPricer().price(found.llm_call["provider"], model, time.time(), 1000, 100)
        assert cost is not None and cost > 0, (system, model)


def test_instrument_needs_an_sdk_provider():
    with pytest.raises(TypeError, match="tracer_provider"):
        otel.instrument(Meter(enabled=False), object())  # type: ignore[arg-type]


def test_otlp_json_spans_map_like_sdk_spans(traced):
    """An OTLP endpoint receives spans as OTLP/JSON: the same span, exported by the SDK's own OTLP
    encoder and read back as JSON, gives the same call as the processor records."""
    from google.protobuf.json_format import MessageToDict
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from botmeter.integrations.genai_spans import span_call_from_otlp

    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("chat") as span:
        span.set_attributes(
            {
                "gen_ai.provider.name": "anthropic",
                "gen_ai.response.model": "claude-3-5-haiku-20241022",
                "gen_ai.usage.input_tokens": 900,
                "gen_ai.usage.output_tokens": 40,
                "gen_ai.usage.cache_read.input_tokens": 512,
                "user.id": "u-9",
            }
        )
    with tracer.start_as_current_span("chat") as span:
        span.set_attributes(
            {"gen_ai.system": "openai", "gen_ai.request.model": "gpt-4o", "error.type": "timeout"}
        )
        span.set_status(Status(StatusCode.ERROR, "timed out"))
    (ok, failed) = exporter.get_finished_spans()
    exported = MessageToDict(encode_spans([ok, failed]))  # OTLP/JSON, as an exporter sends it
    spans = exported["resourceSpans"][0]["scopeSpans"][0]["spans"]
    from_json = [span_call_from_otlp(s) for s in spans]
    assert from_json[0].llm_call["provider"] == "anthropic"
    assert from_json[0].llm_call["input_tokens"] == 900 and from_json[0].llm_call["cached_tokens"] == 512
    assert from_json[0].llm_call["latency_ms"] == pytest.approx((ok.end_time - ok.start_time) / 1e6)
    assert from_json[0].llm_call["user"] == "u-9"
    assert from_json[1].llm_call is None and from_json[1].error["error"] == "timeout"
    assert from_json[1].error["message"] == "timed out"
    # OTLP/JSON carries the ids as base64 of the bytes or hex, by exporter; either way one id per span.
    assert from_json[0].llm_call["event_id"] != from_json[1].error["event_id"]
    assert (
        span_call_from_otlp({"attributes": [{"key": "http.route", "value": {"stringValue": "/sms"}}]}) is None
    )
