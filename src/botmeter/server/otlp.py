"""``POST /v1/traces``: OpenTelemetry spans (OTLP/HTTP, protobuf or JSON) as botmeter events.

A bot instrumented with OpenLLMetry, OpenLIT or the OpenTelemetry GenAI instrumentations points its
OTLP exporter here (``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://collector:8787/v1/traces``, its ingest
token in ``OTEL_EXPORTER_OTLP_HEADERS=Authorization=Bearer%20TOKEN``) and gets its costs. Each span
that records a model call under the GenAI semantic conventions becomes an ``llm_call`` event (or an
``error`` plus a ``timing`` when the call failed), mapped by ``integrations.genai_spans`` (which
attribute names and convention versions are read is said there); other spans are counted and
ignored. The events go through the collector like a ``/v1/events`` batch: validated, priced, durable
before the answer.

The answer is OTLP's: ``ExportTraceServiceResponse`` in the request's encoding, with
``partial_success`` counting the GenAI spans whose events were refused (the rest is stored). A
body that is not an export request is 400 with a ``google.rpc.Status``, which exporters do not
retry.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..integrations.genai_spans import SpanCall, span_call, span_call_from_otlp
from .auth import Token, authenticate
from .collector import BatchRejected, Collector, CollectorBusy
from .ingest import _limit_rate, read_body

PROTOBUF: Final = "application/x-protobuf"
JSON: Final = "application/json"
MAX_REJECTIONS: Final = 20  # refused spans named one by one; past this the rest of the export is refused
_STATUS_ERROR: Final = 2  # Status.code: 0 unset, 1 ok, 2 error


class BadExport(ValueError):
    """A body that is not an OTLP export request: ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Export:
    """What one export request carries: the events of its GenAI spans, in span order, and counts."""

    events: list[dict[str, Any]] = field(default_factory=list)
    span_of: list[int] = field(default_factory=list)  # events[i] came from GenAI span span_of[i]
    spans: int = 0  # every span in the request
    genai: int = 0  # the spans that are model calls
    names: list[str] = field(default_factory=list)  # how a refusal names each GenAI span

    def add(self, found: SpanCall | None, service: str | None, span_id: str | None) -> None:
        self.spans += 1
        if found is None:
            return
        index = self.genai
        self.genai += 1
        self.names.append(f"span {span_id or '#' + str(self.spans - 1)}")
        for kind, kwargs in (("llm_call", found.llm_call), ("error", found.error), ("timing", found.timing)):
            if kwargs is not None:
                if service is not None:
                    kwargs["properties"] = {**kwargs.get("properties", {}), "service": service}
                self.events.append({"kind": kind, **kwargs})
                self.span_of.append(index)


# -- protobuf ----------------------------------------------------------------------------------------


def _value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [_value(v) for v in value.array_value.values]
    if which in ("kvlist_value", "bytes_value"):
        return None  # no GenAI attribute botmeter reads is a map or bytes
    return getattr(value, which)


def _attributes(items: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in items}


def from_protobuf(body: bytes) -> Export:
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except DecodeError as exc:
        raise BadExport(f"body: not an OTLP ExportTraceServiceRequest in protobuf ({exc})") from None
    export = Export()
    for resource_spans in request.resource_spans:
        service = _attributes(resource_spans.resource.attributes).get("service.name")
        service = service if isinstance(service, str) and service else None
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                found = span_call(
                    _attributes(span.attributes),
                    start_ns=span.start_time_unix_nano or None,
                    end_ns=span.end_time_unix_nano or None,
                    status_error=span.status.code == _STATUS_ERROR,
                    status_message=span.status.message or None,
                    trace_id=span.trace_id.hex() or None,
                    span_id=span.span_id.hex() or None,
                )
                export.add(found, service, span.span_id.hex())
    return export


# -- JSON --------------------------------------------------------------------------------------------


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadExport(f"{where}: expected an array, got {type(value).__name__}")
    return value


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise BadExport(f"{where}: expected an object, got {type(value).__name__}")
    return value


def _json_spans(document: Any) -> Iterator[tuple[Mapping[str, Any], str | None]]:
    for r, resource_spans in enumerate(
        _list(_object(document, "body").get("resourceSpans"), "resourceSpans")
    ):
        where = f"resourceSpans[{r}]"
        resource_spans = _object(resource_spans, where)
        resource = _object(resource_spans.get("resource") or {}, f"{where}.resource")
        service = None
        for item in _list(resource.get("attributes"), f"{where}.resource.attributes"):
            if isinstance(item, Mapping) and item.get("key") == "service.name":
                service = (item.get("value") or {}).get("stringValue") or None
        # scopeSpans since OTLP 0.15; instrumentationLibrarySpans before it
        scopes = resource_spans.get("scopeSpans", resource_spans.get("instrumentationLibrarySpans"))
        for s, scope_spans in enumerate(_list(scopes, f"{where}.scopeSpans")):
            scope_where = f"{where}.scopeSpans[{s}]"
            spans = _object(scope_spans, scope_where).get("spans")
            for i, span in enumerate(_list(spans, f"{scope_where}.spans")):
                span = _object(span, f"{scope_where}.spans[{i}]")
                yield span, service if isinstance(service, str) else None


def _hex_ids(span: Mapping[str, Any]) -> Mapping[str, Any]:
    # OTLP/JSON ids are hex; lower-cased, so a span sent once as JSON and once as protobuf is one event
    trace_id, span_id = span.get("traceId"), span.get("spanId")
    if isinstance(trace_id, str) and isinstance(span_id, str):
        return {**span, "traceId": trace_id.lower(), "spanId": span_id.lower()}
    return {**span, "traceId": None, "spanId": None}


def from_json(body: bytes) -> Export:
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BadExport(f"body: not JSON ({type(exc).__name__}: {str(exc)[:200]})") from None
    export = Export()
    for span, service in _json_spans(document):
        span = _hex_ids(span)
        export.add(span_call_from_otlp(span), service, span["spanId"])
    return export


# -- the route ---------------------------------------------------------------------------------------


def decoded(body: bytes, request: Request, limit: int) -> bytes:
    """The body without its ``Content-Encoding`` (gzip or deflate, as exporters compress), capped."""
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise BadExport(f"Content-Encoding: {encoding!r} is not supported; send gzip or nothing", 415)
    try:
        unpack = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
        out = unpack.decompress(body, limit + 1)
    except zlib.error as exc:
        raise BadExport(f"body: Content-Encoding is {encoding} but the body is not ({exc})") from None
    if len(out) > limit or unpack.unconsumed_tail:
        raise BadExport(f"body: over {limit} bytes once decompressed", 413)
    return out


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def answer(rejected: int, message: str, media_type: str, status: int = 200) -> Response:
    """``ExportTraceServiceResponse`` (200) or ``google.rpc.Status`` (4xx), in the request's encoding."""
    if status != 200:
        if media_type == JSON:
            return Response(json.dumps({"code": 3, "message": message}), status, media_type=JSON)
        return Response(_rpc_status(3, message), status, media_type=PROTOBUF)
    response = ExportTraceServiceResponse()
    if rejected or message:
        response.partial_success.rejected_spans = rejected
        response.partial_success.error_message = message
    if media_type == JSON:
        body: dict[str, Any] = {}
        if rejected or message:
            body["partialSuccess"] = {"rejectedSpans": str(rejected), "errorMessage": message}
        return Response(json.dumps(body), media_type=JSON)
    return Response(response.SerializeToString(), media_type=PROTOBUF)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _rpc_status(code: int, message: str) -> bytes:
    """``google.rpc.Status{code, message}`` encoded by hand: two fields do not need googleapis' protos."""
    text = message.encode("utf-8", "replace")
    return b"\x08" + _varint(code) + b"\x12" + _varint(len(text)) + text


async def store(collector: Collector, export: Export, token: Token) -> tuple[int, list[str]]:
    """Hands the export's events to the collector; a span whose events it refuses is left out and
    the rest sent again (one bad span costs itself only). Returns (refused spans, why)."""
    events, span_of = export.events, export.span_of
    refused: set[int] = set()
    reasons: list[str] = []
    while events:
        try:
            # The collector takes the events' dicts as the calls' arguments, in place: a retry
            # without the refused span needs them as they were.
            await collector.accept([dict(event) for event in events], token)
            break
        except BatchRejected as exc:
            index = exc.index
            if index is None or not 0 <= index < len(events) or len(refused) >= MAX_REJECTIONS:
                refused.update(span_of)  # cannot tell which span: the rest is refused, nothing stored
                reasons.append(exc.message)
                break
            span = span_of[index]
            refused.add(span)
            # The collector names the event by its place in the batch: meaningless to the exporter.
            why = re.sub(r"^event \d+: ", "", exc.message)
            reasons.append(f"{export.names[span]}: {why}")
            kept = [i for i, s in enumerate(span_of) if s != span]
            events, span_of = [events[i] for i in kept], [span_of[i] for i in kept]
    return len(refused), reasons


async def traces(request: Request) -> Response:
    token = authenticate(request, "ingest")
    collector: Collector = request.app.state.collector
    config = collector.config
    media_type = _media_type(request)
    reply_as = JSON if media_type == JSON else PROTOBUF
    limit = int(config.max_body_mb * 1024 * 1024)
    try:
        if media_type not in (PROTOBUF, JSON):
            raise BadExport(f"Content-Type: {media_type or 'none'!r}; send {PROTOBUF} or {JSON}", 415)
        body = decoded(await read_body(request, limit, config.read_timeout), request, limit)
        # Decoding a large export takes a while: off the event loop, so other requests go on.
        export = await run_in_threadpool(from_protobuf if media_type == PROTOBUF else from_json, body)
        if len(export.events) > config.max_batch_events:
            raise BadExport(
                f"{export.genai} GenAI spans; at most {config.max_batch_events} events a request", 413
            )
    except BadExport as exc:
        collector.count("otlp_requests_refused")
        return answer(0, str(exc), reply_as, exc.status)
    _limit_rate(request, token, max(1, len(export.events)))
    try:
        refused, reasons = await store(collector, export, token) if export.events else (0, [])
    except CollectorBusy as exc:
        return Response(
            json.dumps({"code": 14, "message": str(exc)}) if reply_as == JSON else _rpc_status(14, str(exc)),
            503,
            headers={"Retry-After": str(exc.retry_after)},
            media_type=reply_as,
        )
    for name, n in (
        ("otlp_spans_received", export.spans),
        ("otlp_spans_ignored", export.spans - export.genai),
        ("otlp_spans_stored", export.genai - refused),
        ("otlp_spans_rejected", refused),
    ):
        if n:
            collector.count(name, n)
    return answer(refused, "; ".join(reasons)[:2000], reply_as)


routes: list[Route] = [Route("/v1/traces", traces, methods=["POST"])]

__all__ = ["BadExport", "Export", "answer", "decoded", "from_json", "from_protobuf", "routes", "store"]

_BINARY = {"schema": {"type": "string", "format": "binary"}}
openapi_paths: dict[str, Any] = {
    "/v1/traces": {
        "post": {
            "summary": "OpenTelemetry spans (OTLP/HTTP): GenAI model calls become LLM-call events",
            "description": "An OTLP ExportTraceServiceRequest, protobuf or JSON, optionally gzip. Spans "
            "that are not GenAI model calls are counted and ignored.",
            "security": [{"bearer": []}],
            "requestBody": {
                "required": True,
                "content": {PROTOBUF: _BINARY, JSON: {"schema": {"type": "object"}}},
            },
            "responses": {
                "200": {
                    "description": "ExportTraceServiceResponse; partial_success counts refused spans",
                    "content": {PROTOBUF: _BINARY, JSON: {"schema": {"type": "object"}}},
                },
                "400": {
                    "description": "not an export request (google.rpc.Status)",
                    "content": {PROTOBUF: _BINARY, JSON: {}},
                },
                "401": {"description": "no valid token"},
                "403": {"description": "the token has no ingest scope"},
                "408": {"description": "the body came too slowly"},
                "413": {"description": "the body or the export is too large"},
                "415": {"description": "not protobuf or JSON, or an unknown encoding"},
                "429": {"description": "over the token's rate limit; see Retry-After"},
                "503": {"description": "overloaded, or neither store nor spool takes it; see Retry-After"},
            },
        }
    }
}
