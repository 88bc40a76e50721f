"""OpenTelemetry capture: a ``SpanProcessor`` that turns GenAI spans into LLM-call events on a Meter.

A bot already instrumented with OpenLLMetry, OpenLIT or the OpenTelemetry GenAI instrumentations
gets costs and latency with one line::

    from botmeter.integrations import otel
    otel.instrument(meter)            # or provider.add_span_processor(otel.SpanProcessor(meter))

Which attributes are read, and which versions of the semantic conventions, is said in
``botmeter.integrations.genai_spans``. Spans that are not model calls are ignored and counted.
Nothing in the processor may reach the code that ended the span: a failure is counted and logged.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, TracerProvider
from opentelemetry.sdk.trace import SpanProcessor as _SdkSpanProcessor
from opentelemetry.trace import StatusCode, get_tracer_provider

from ..collect.meter import RecordingMeter
from ..exceptions import InputTypeError
from .genai_spans import span_call

log = logging.getLogger("botmeter")


class SpanProcessor(_SdkSpanProcessor):
    """Records every ended GenAI model-call span as ``track_llm_call``, or, when the call failed, as
    ``track_error`` plus its latency (``track_timing("llm", ...)``). ``stats()`` counts spans seen,
    recorded, ignored (not model calls) and failed."""

    def __init__(self, meter: RecordingMeter) -> None:
        self.meter = meter
        self._lock = threading.Lock()
        self._counts = {"seen": 0, "recorded": 0, "errors": 0, "ignored": 0, "failed": 0}

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        outcome = "failed"
        try:
            outcome = self._record(span)
        except Exception:  # a span the mapping or the track call rejects costs itself only
            log.exception("botmeter: could not record span %r", getattr(span, "name", None))
        with self._lock:
            self._counts["seen"] += 1
            self._counts[outcome] += 1
            if outcome == "errors":
                self._counts["recorded"] += 1

    def _record(self, span: ReadableSpan) -> str:
        attributes = span.attributes or {}
        status = span.status
        context = span.context
        found = span_call(
            attributes,
            start_ns=span.start_time,
            end_ns=span.end_time,
            status_error=status is not None and status.status_code is StatusCode.ERROR,
            status_message=status.description if status is not None else None,
            trace_id=f"{context.trace_id:032x}" if context is not None else None,
            span_id=f"{context.span_id:016x}" if context is not None else None,
        )
        if found is None:
            return "ignored"
        if found.llm_call is not None:
            self.meter.track_llm_call(**found.llm_call)
        if found.error is None:
            return "recorded"
        error = dict(found.error)
        self.meter.track_error(error.pop("error"), **error)
        if found.timing is not None:
            timing = dict(found.timing)
            self.meter.track_timing(timing.pop("stage"), timing.pop("latency_ms"), **timing)
        return "errors"

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.meter.flush(timeout_millis / 1000)

    def stats(self) -> dict[str, int]:
        """Spans ``seen``; ``recorded`` as LLM calls (``errors`` of them failed calls); ``ignored``
        (not a model call); ``failed`` (could not be recorded, logged to the ``botmeter`` logger)."""
        with self._lock:
            return dict(self._counts)


def instrument(meter: RecordingMeter, tracer_provider: TracerProvider | None = None) -> SpanProcessor:
    """Adds a ``SpanProcessor`` for ``meter`` to ``tracer_provider`` (default: the global one, which
    must be the SDK's ``TracerProvider``) and returns it."""
    provider: Any = tracer_provider if tracer_provider is not None else get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        raise InputTypeError(
            "otel.instrument: tracer_provider must be an opentelemetry.sdk.trace.TracerProvider "
            f"(set one with trace.set_tracer_provider), got {provider!r}"
        )
    processor = SpanProcessor(meter)
    provider.add_span_processor(processor)
    return processor


__all__ = ["SpanProcessor", "instrument"]
