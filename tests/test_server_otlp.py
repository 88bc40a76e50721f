"""``POST /v1/traces``: the real OpenTelemetry SDK exporting GenAI spans to ``botmeter serve``.

The collector runs as a subprocess on a free port; spans come from the SDK's own ``OTLPSpanExporter``
(HTTP, protobuf) or as OTLP/JSON, shaped as the GenAI semantic conventions say. What was stored is
read back through the collector's reading routes, as a user would check it.
"""

from __future__ import annotations

import gzip
import json
import time

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from botmeter.process.pricing import LlmPricer
from collector_server import running_collector

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def collector(tmp_path_factory, clean_env_for_module):
    with running_collector(tmp_path_factory.mktemp("otlp")) as server:
        yield server


def _provider(exporter) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": "smsbot"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def _chat(tracer, model: str, attributes: dict, *, failed: str | None = None) -> None:
    """A model call as the GenAI conventions shape it: a CLIENT span named '{operation} {model}'."""
    operation = attributes.get("gen_ai.operation.name", "chat")
    with tracer.start_as_current_span(f"{operation} {model}", kind=SpanKind.CLIENT) as span:
        span.set_attributes({"gen_ai.request.model": model, "server.address": "api.example", **attributes})
        time.sleep(0.002)
        if failed:
            span.set_attribute("error.type", failed)
            span.set_status(Status(StatusCode.ERROR, f"{failed}: slow down"))


def _rows(collector, metric: str, **params) -> list[dict]:
    with collector.client(collector.tokens["read"]) as client:
        answer = client.get(f"/metrics/{metric}", params={"days": 1, "interval": "none", **params})
    assert answer.status_code == 200, answer.text
    return answer.json()["rows"]


def _cost(provider: str, model: str, *tokens: int) -> float:
    cost, _ = LlmPricer().price(provider, model, time.time(), *tokens)
    assert cost, f"{provider} {model} has no price: pick a model with one"
    return cost


def test_sdk_exporter_spans_become_priced_llm_calls(collector):
    exporter = OTLPSpanExporter(
        endpoint=f"{collector.url}/v1/traces",
        headers={"authorization": f"Bearer {collector.tokens['ingest']}"},
    )
    provider = _provider(exporter)
    tracer = provider.get_tracer("genai-test")
    # Semantic conventions 1.37+: gen_ai.provider.name, cache tokens as 1.38 names them.
    _chat(
        tracer,
        "claude-sonnet-4-5",
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "anthropic",
            "gen_ai.response.model": "claude-sonnet-4-5",
            "gen_ai.usage.input_tokens": 1000,
            "gen_ai.usage.output_tokens": 200,
            "gen_ai.usage.cache_read.input_tokens": 400,
            "gen_ai.conversation.id": "conv-1",
            "user.id": "+15551230001",
        },
    )
    # 1.26 names, as older instrumentations still send them.
    _chat(
        tracer,
        "gpt-4o",
        {
            "gen_ai.system": "openai",
            "gen_ai.usage.prompt_tokens": 3000,
            "gen_ai.usage.completion_tokens": 500,
        },
    )
    # A failed call: an error event and the call's latency, no LLM call of zero tokens.
    _chat(tracer, "gpt-4o", {"gen_ai.provider.name": "openai"}, failed="RateLimitError")
    # Not GenAI: counted and ignored.
    with tracer.start_as_current_span("GET /webhook", kind=SpanKind.SERVER):
        pass
    with tracer.start_as_current_span(
        "invoke_agent helper",
        attributes={"gen_ai.operation.name": "invoke_agent", "gen_ai.provider.name": "openai"},
    ):
        pass
    assert provider.force_flush()
    provider.shutdown()

    by_model = {r["model"]: r for r in _rows(collector, "cost_usd", by="model")}
    assert by_model["claude-sonnet-4-5"]["value"] == pytest.approx(
        _cost("anthropic", "claude-sonnet-4-5", 1000, 200, 400)
    )
    assert by_model["gpt-4o"]["value"] == pytest.approx(_cost("openai", "gpt-4o", 3000, 500))
    calls = {r["model"]: r["value"] for r in _rows(collector, "llm_calls", by="model")}
    assert calls == {"claude-sonnet-4-5": 1, "gpt-4o": 1}
    tokens = {r["model"]: r["value"] for r in _rows(collector, "input_tokens", by="model")}
    assert tokens == {"claude-sonnet-4-5": 1000, "gpt-4o": 3000}
    errors = _rows(collector, "errors", by="type")
    assert [(r["type"], r["value"]) for r in errors] == [("RateLimitError", 1)]

    with collector.client() as client:
        counters = client.get("/metrics").text
    assert "otlp_spans_ignored" in counters and "otlp_spans_stored" in counters


def _export_json(span_id: str, model: str, input_tokens: int) -> dict:
    now = time.time_ns()
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "webbot"}}]},
                "scopeSpans": [
                    {
                        "scope": {"name": "openllmetry"},
                        "spans": [
                            {
                                "traceId": "5B8EFFF798038103D269B633813FC60C",
                                "spanId": span_id,
                                "name": f"chat {model}",
                                "kind": 3,
                                "startTimeUnixNano": str(now - 250_000_000),
                                "endTimeUnixNano": str(now),
                                "attributes": [
                                    {"key": "gen_ai.system", "value": {"stringValue": "openai"}},
                                    {"key": "gen_ai.request.model", "value": {"stringValue": model}},
                                    {
                                        "key": "gen_ai.usage.input_tokens",
                                        "value": {"intValue": str(input_tokens)},
                                    },
                                    {"key": "gen_ai.usage.output_tokens", "value": {"intValue": "10"}},
                                ],
                                "status": {},
                            }
                        ],
                    }
                ],
            }
        ]
    }


def test_json_and_protobuf_of_one_span_store_it_once(collector):
    token = collector.tokens["webbot"]
    document = _export_json("EEE19B7EC3C1B174", "gpt-4o-mini", 700)
    with collector.client(token) as client:
        sent = client.post("/v1/traces", json=document)
        assert sent.status_code == 200, sent.text
        assert sent.headers["content-type"].startswith("application/json")
        assert sent.json() == {}  # every span taken: no partialSuccess
        # The same span again, as protobuf and gzip (a retry by another exporter): stored once.
        request = ExportTraceServiceRequest()
        span = request.resource_spans.add().scope_spans.add().spans.add()
        span.trace_id = bytes.fromhex("5B8EFFF798038103D269B633813FC60C")
        span.span_id = bytes.fromhex("EEE19B7EC3C1B174")
        span.start_time_unix_nano = int(
            document["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["startTimeUnixNano"]
        )
        span.end_time_unix_nano = int(
            document["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["endTimeUnixNano"]
        )
        for key, value in (("gen_ai.system", "openai"), ("gen_ai.request.model", "gpt-4o-mini")):
            kv = span.attributes.add()
            kv.key, kv.value.string_value = key, value
        for key, value in (("gen_ai.usage.input_tokens", 700), ("gen_ai.usage.output_tokens", 10)):
            kv = span.attributes.add()
            kv.key, kv.value.int_value = key, value
        again = client.post(
            "/v1/traces",
            content=gzip.compress(request.SerializeToString()),
            headers={"content-type": "application/x-protobuf", "content-encoding": "gzip"},
        )
        assert again.status_code == 200, again.text
        answer = ExportTraceServiceResponse.FromString(again.content)
        assert answer.partial_success.rejected_spans == 0
    rows = _rows(collector, "llm_calls", by="bot", filter="model=gpt-4o-mini")
    assert [(r["bot"], r["value"]) for r in rows] == [("webbot", 1)]


def test_a_span_the_collector_refuses_costs_itself_only(collector):
    document = _export_json("0000000000000001", "gpt-4o-mini", 11)
    spans = document["resourceSpans"][0]["scopeSpans"][0]["spans"]
    bad = json.loads(json.dumps(spans[0]))
    bad["spanId"] = "0000000000000002"
    bad["attributes"][1]["value"]["stringValue"] = "gpt\ud800"  # a lone surrogate: no model is named so
    good = json.loads(json.dumps(spans[0]))
    good["spanId"] = "0000000000000003"
    good["attributes"][1]["value"]["stringValue"] = "gpt-4.1-nano"
    spans[:] = [spans[0], bad, good]
    body = json.dumps(document)  # ensure_ascii keeps the surrogate as \ud800, as JSON allows
    with collector.client(collector.tokens["webbot"]) as client:
        sent = client.post("/v1/traces", content=body, headers={"content-type": "application/json"})
    assert sent.status_code == 200, sent.text
    partial = sent.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "1"
    assert (
        partial["errorMessage"].startswith("span 0000000000000002: ") and "model" in partial["errorMessage"]
    )
    stored = {r["model"] for r in _rows(collector, "llm_calls", by="model", filter="bot=webbot")}
    assert {"gpt-4o-mini", "gpt-4.1-nano"} <= stored
    assert not any("gpt\ud800" in m for m in stored)


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({"content-type": "application/x-protobuf"}, b"\xff\xff\xff", 400),
        ({"content-type": "application/json"}, b"{not json", 400),
        ({"content-type": "application/json"}, b'{"resourceSpans": {"a": 1}}', 400),
        ({"content-type": "text/plain"}, b"hello", 415),
        ({"content-type": "application/x-protobuf", "content-encoding": "gzip"}, b"not gzip", 400),
        ({"content-type": "application/x-protobuf", "content-encoding": "br"}, b"x", 415),
    ],
)
def test_a_body_that_is_not_an_export_is_refused_with_a_status(collector, headers, body, status):
    with collector.client(collector.tokens["ingest"]) as client:
        answer = client.post("/v1/traces", content=body, headers=headers)
    assert answer.status_code == status
    if answer.headers["content-type"].startswith("application/json"):
        assert answer.json()["message"]
    else:  # google.rpc.Status, as OTLP/HTTP says: code 3 (invalid argument), a message naming the fault
        code, message = _rpc_status(answer.content)
        assert code == 3 and message


def _rpc_status(data: bytes) -> tuple[int, str]:
    """google.rpc.Status read by hand: field 1 code (varint), field 2 message (bytes)."""
    from google.protobuf.internal.decoder import _DecodeVarint

    code, message, at = 0, "", 0
    while at < len(data):
        tag, at = _DecodeVarint(data, at)
        value, at = _DecodeVarint(data, at)
        if tag >> 3 == 1:
            code = value
        else:
            message, at = data[at : at + value].decode(), at + value
    return code, message


def test_tokens_are_required_and_scoped(collector):
    body = ExportTraceServiceRequest().SerializeToString()
    headers = {"content-type": "application/x-protobuf"}
    with collector.client() as client:
        assert client.post("/v1/traces", content=body, headers=headers).status_code == 401
    with collector.client("bm_nope_nope") as client:
        assert client.post("/v1/traces", content=body, headers=headers).status_code == 401
    with collector.client(collector.tokens["read"]) as client:
        assert client.post("/v1/traces", content=body, headers=headers).status_code == 403


def test_the_sdk_exporter_is_told_of_a_refusal(collector):
    # A read token cannot write: the real exporter reports the export as failed (and does not raise).
    exporter = OTLPSpanExporter(
        endpoint=f"{collector.url}/v1/traces", headers={"authorization": f"Bearer {collector.tokens['read']}"}
    )
    memory = InMemorySpanExporter()
    provider = _provider(memory)
    _chat(
        provider.get_tracer("t"), "gpt-4o", {"gen_ai.provider.name": "openai", "gen_ai.usage.input_tokens": 5}
    )
    assert exporter.export(memory.get_finished_spans()) == SpanExportResult.FAILURE
