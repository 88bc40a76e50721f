"""GenAI spans as LLM calls: the OpenTelemetry GenAI semantic conventions mapped to ``track_llm_call``.

Pure functions over a span's attributes (a plain mapping), so the OpenTelemetry span processor
(``botmeter.integrations.otel``) and an OTLP endpoint share one mapping; nothing here imports
OpenTelemetry.

Accepted names (the conventions renamed several attributes; every spelling below is read, the
first one present wins):

=====================  ===========================================================================
field                  attributes
=====================  ===========================================================================
provider               ``gen_ai.provider.name`` (semconv 1.37+), ``gen_ai.system`` (1.26-1.36)
model                  ``gen_ai.response.model``, else ``gen_ai.request.model``
input tokens           ``gen_ai.usage.input_tokens`` (1.27+), ``gen_ai.usage.prompt_tokens`` (1.26)
output tokens          ``gen_ai.usage.output_tokens`` (1.27+), ``gen_ai.usage.completion_tokens``
cache reads            ``gen_ai.usage.cache_read.input_tokens`` (1.38+),
                       ``gen_ai.usage.cache_read_input_tokens`` (OpenLLMetry, OpenLIT)
cache writes           ``gen_ai.usage.cache_creation.input_tokens`` (1.38+),
                       ``gen_ai.usage.cache_creation_input_tokens``
reasoning tokens       ``gen_ai.usage.reasoning.output_tokens`` (1.38+), ``gen_ai.usage.reasoning_tokens``
conversation           ``gen_ai.conversation.id`` (1.37+), ``session.id``
user                   ``user.id``, ``enduser.id`` (deprecated)
error                  ``error.type``, or the span's status ERROR (then an error event and the
                       call's latency as an ``llm`` timing, as the SDK integrations record failures)
latency                the span's end minus its start
=====================  ===========================================================================

A span is a GenAI call when it names a provider (``gen_ai.provider.name`` or ``gen_ai.system``)
and its operation (``gen_ai.operation.name``, or OpenLLMetry's older ``llm.request.type``) is a
model call: ``chat``, ``text_completion``, ``generate_content``, ``embeddings`` or none given.
Agent and tool spans (``invoke_agent``, ``execute_tool``...) are not model calls.

Token counts follow ``track_llm_call``'s convention (input includes cached and cache-write
tokens, output includes reasoning tokens), which is also the conventions' 1.38+ wording. An
older instrumentation that copies Anthropic's exclusive counts gives more cache tokens than input
tokens: then the cache tokens are added to the input, so nothing is priced twice or dropped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

PROVIDER_KEYS: Final = ("gen_ai.provider.name", "gen_ai.system")
OPERATION_KEYS: Final = ("gen_ai.operation.name", "llm.request.type")
MODEL_KEYS: Final = ("gen_ai.response.model", "gen_ai.request.model")
INPUT_KEYS: Final = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens")
OUTPUT_KEYS: Final = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens")
CACHE_READ_KEYS: Final = ("gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_read_input_tokens")
CACHE_WRITE_KEYS: Final = (
    "gen_ai.usage.cache_creation.input_tokens",
    "gen_ai.usage.cache_creation_input_tokens",
)
REASONING_KEYS: Final = ("gen_ai.usage.reasoning.output_tokens", "gen_ai.usage.reasoning_tokens")
CONVERSATION_KEYS: Final = ("gen_ai.conversation.id", "session.id")
USER_KEYS: Final = ("user.id", "enduser.id")
SERVICE_TIER_KEYS: Final = ("openai.response.service_tier", "gen_ai.openai.response.service_tier")

# Operations that are a call to a model (anything else with gen_ai.* is an agent, a tool, ...).
MODEL_OPERATIONS: Final = frozenset(
    {"chat", "text_completion", "completion", "generate_content", "embeddings", "embedding", "responses"}
)

# The conventions' provider names -> the names botmeter (and its price data) uses.
PROVIDERS: Final[dict[str, str]] = {
    "aws.bedrock": "bedrock",
    "aws": "bedrock",  # OpenLLMetry's Bedrock spans say gen_ai.system = "AWS"
    "az.ai.openai": "azure",
    "azure.ai.openai": "azure",
    "az.ai.inference": "azure",
    "azure.ai.inference": "azure",
    "gcp.vertex_ai": "google",
    "gcp.gemini": "google",
    "gcp.gen_ai": "google",
    "vertex_ai": "google",
    "gemini": "google",
    "mistral_ai": "mistral",
    "x_ai": "x-ai",
    "xai": "x-ai",
    "ibm.watsonx.ai": "ibm",
}


@dataclass(frozen=True, slots=True)
class SpanCall:
    """What one GenAI span records, as keyword arguments of the track calls.

    A call that succeeded is ``llm_call``; one that failed is ``error`` plus ``timing`` (its latency
    under the ``llm`` stage), as the SDK integrations record failures, so failed calls count in
    latency and in the error rate without an LLM call of zero tokens."""

    llm_call: dict[str, Any] | None
    error: dict[str, Any] | None = None
    timing: dict[str, Any] | None = None
    unknown: tuple[str, ...] = field(default=())  # usage fields the span did not carry


def _first(attributes: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = attributes.get(key)
        if value is not None and value != "":
            return value
    return None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, list | tuple):  # OpenTelemetry allows arrays; a model list names the first
        value = value[0] if value else None
        if value is None:
            return None
    text = str(value).strip()
    return text or None


def _count(value: Any) -> int | None:
    """A token count from an attribute: int, float or a numeric string (OTLP JSON sends int64 as
    strings); None when absent or not a count."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value) if isinstance(value, str) else value
        if isinstance(number, float):
            if not math.isfinite(number) or number != int(number):
                return None
            number = int(number)
        if isinstance(number, int) and number >= 0:
            return number
    except (TypeError, ValueError, OverflowError):
        return None
    return None


def provider_name(value: Any) -> str | None:
    """The conventions' provider name (``aws.bedrock``, ``gcp.vertex_ai``...) in botmeter's words."""
    text = _text(value)
    if text is None:
        return None
    lowered = text.lower()
    return PROVIDERS.get(lowered, lowered)


def is_model_call(attributes: Mapping[str, Any]) -> bool:
    """True for a span that records a call to a model under the GenAI conventions."""
    if _first(attributes, PROVIDER_KEYS) is None:
        return False
    operation = _text(_first(attributes, OPERATION_KEYS))
    return operation is None or operation.lower() in MODEL_OPERATIONS


def span_call(
    attributes: Mapping[str, Any],
    *,
    start_ns: int | None = None,
    end_ns: int | None = None,
    status_error: bool = False,
    status_message: str | None = None,
    trace_id: str | None = None,
    span_id: str | None = None,
) -> SpanCall | None:
    """The LLM call (and error, if it failed) a span records, or None when it is not a model call.

    ``start_ns``/``end_ns`` are the span's times in nanoseconds since the epoch; ``trace_id`` and
    ``span_id`` (hex) make the event id, so a span delivered twice is stored once.
    """
    if not is_model_call(attributes):
        return None
    provider = provider_name(_first(attributes, PROVIDER_KEYS)) or "unknown"
    model = _text(_first(attributes, MODEL_KEYS)) or "unknown"
    unknown: list[str] = []

    def count(name: str, keys: tuple[str, ...]) -> int:
        found = _count(_first(attributes, keys))
        if found is None:
            unknown.append(name)
            return 0
        return found

    input_tokens = count("input_tokens", INPUT_KEYS)
    output_tokens = count("output_tokens", OUTPUT_KEYS)
    cached = _count(_first(attributes, CACHE_READ_KEYS)) or 0
    cache_write = _count(_first(attributes, CACHE_WRITE_KEYS)) or 0
    reasoning = _count(_first(attributes, REASONING_KEYS)) or 0
    if cached + cache_write > input_tokens:  # exclusive counts (Anthropic's own usage, copied as is)
        input_tokens += cached + cache_write
    if reasoning > output_tokens:  # thinking tokens reported beside the output, not in it
        output_tokens += reasoning

    call: dict[str, Any] = {
        "provider": provider,
        "model": model,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cached_tokens": cached,
        "cache_write_tokens": cache_write,
        "reasoning_tokens": reasoning,
    }
    if start_ns is not None and end_ns is not None and end_ns >= start_ns:
        call["latency_ms"] = (end_ns - start_ns) / 1e6
    if end_ns is not None and end_ns > 0:
        call["ts"] = end_ns / 1e9
    user = _text(_first(attributes, USER_KEYS))
    if user is not None:
        call["user"] = user
    conversation = _text(_first(attributes, CONVERSATION_KEYS))
    if conversation is not None:
        call["conversation"] = conversation
    properties: dict[str, Any] = {"source": "otel"}
    operation = _text(_first(attributes, OPERATION_KEYS))
    if operation is not None:
        properties["operation"] = operation.lower()
    tier = _text(_first(attributes, SERVICE_TIER_KEYS))
    if tier is not None:
        properties["service_tier"] = tier
    if unknown:
        properties["usage_unknown"] = list(unknown)
    call["properties"] = properties
    if trace_id and span_id:
        call["event_id"] = f"otel:{trace_id}:{span_id}"

    error_type = _text(attributes.get("error.type"))
    if error_type is None and not status_error:
        return SpanCall(call, unknown=tuple(unknown))
    shared = {key: call[key] for key in ("ts", "user", "conversation") if key in call}
    error: dict[str, Any] = {
        "error": error_type or "error",
        "provider": provider,
        "stage": "llm",
        "properties": {
            "source": "otel",
            "model": model,
            **({"operation": properties["operation"]} if operation else {}),
        },
        **shared,
    }
    if status_message:
        error["message"] = status_message
    status = _count(_first(attributes, ("http.response.status_code", "http.status_code")))
    if status is not None:
        error["status_code"] = status
    timing: dict[str, Any] | None = None
    if "latency_ms" in call:
        timing = {
            "stage": "llm",
            "latency_ms": call["latency_ms"],
            "provider": provider,
            "model": model,
            "properties": {"source": "otel", "failed": True, "error_type": error["error"]},
            **shared,
        }
    if trace_id and span_id:
        error["event_id"] = f"otel:{trace_id}:{span_id}:error"
        if timing is not None:
            timing["event_id"] = f"otel:{trace_id}:{span_id}:timing"
    return SpanCall(None, error, timing, tuple(unknown))


# -- OTLP/JSON ---------------------------------------------------------------------------------------

_OTLP_STATUS_ERROR: Final = 2  # Status.code: 0 unset, 1 ok, 2 error


def _otlp_value(value: Any) -> Any:
    """An OTLP ``AnyValue`` (``{"stringValue": ...}``, ``{"intValue": "12"}``...) as a plain value."""
    if not isinstance(value, Mapping):
        return None
    for key in ("stringValue", "boolValue", "doubleValue"):
        if key in value:
            return value[key]
    if "intValue" in value:
        return _count(value["intValue"]) if str(value["intValue"]).lstrip("-").isdigit() else None
    if "arrayValue" in value:
        return [_otlp_value(v) for v in (value["arrayValue"] or {}).get("values") or []]
    return None


def otlp_attributes(attributes: Any) -> dict[str, Any]:
    """OTLP/JSON's list of ``{"key": ..., "value": {...}}`` as a dict (unreadable entries skipped)."""
    out: dict[str, Any] = {}
    for item in attributes or ():
        if isinstance(item, Mapping) and isinstance(item.get("key"), str):
            out[item["key"]] = _otlp_value(item.get("value"))
    return out


def span_call_from_otlp(span: Mapping[str, Any]) -> SpanCall | None:
    """``span_call`` for one span of an OTLP/JSON export (``resourceSpans[].scopeSpans[].spans[]``):
    what an OTLP endpoint receiving GenAI spans records."""

    def nanos(key: str) -> int | None:
        try:
            return int(span.get(key))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return None

    status = span.get("status") or {}
    code = status.get("code") if isinstance(status, Mapping) else None
    return span_call(
        otlp_attributes(span.get("attributes")),
        start_ns=nanos("startTimeUnixNano"),
        end_ns=nanos("endTimeUnixNano"),
        status_error=code in (_OTLP_STATUS_ERROR, "STATUS_CODE_ERROR"),
        status_message=status.get("message") if isinstance(status, Mapping) else None,
        trace_id=span.get("traceId") or None,
        span_id=span.get("spanId") or None,
    )


__all__ = [
    "SpanCall",
    "is_model_call",
    "otlp_attributes",
    "provider_name",
    "span_call",
    "span_call_from_otlp",
]
