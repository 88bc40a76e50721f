"""``POST /v1/events``: botmeter's own events, as JSON (optionally gzip) or as Arrow from a remote Meter.

The body is read with a size cap (413) and a time limit (408); the token's rate is checked before
any work (429 with Retry-After); the batch is validated whole (400 naming the event, the field and
the value) and answered 202 only once durable (stored, or in the fsynced spool).
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
import zlib
from typing import Any

import pyarrow as pa
import pyarrow.ipc as ipc
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .auth import Token, authenticate
from .collector import BatchRejected, Collector, CollectorBusy

ARROW_TYPE = "application/vnd.apache.arrow.stream"


class RateLimiter:
    """Events per second per token, a token bucket holding one second's worth (at least one batch)."""

    def __init__(self, per_second: float, burst: float) -> None:
        self.per_second = per_second
        self.burst = max(per_second, burst)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str, n: int) -> float:
        """0 when ``n`` events may go now; else the seconds to wait."""
        if self.per_second <= 0:
            return 0.0
        now = time.monotonic()
        with self._lock:
            level, at = self._buckets.get(key, (self.burst, now))
            level = min(self.burst, level + (now - at) * self.per_second)
            if level >= n:
                self._buckets[key] = (level - n, now)
                return 0.0
            self._buckets[key] = (level, now)
            return (n - level) / self.per_second


async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The body, refused past ``limit`` bytes (413) or when it takes longer than ``timeout`` (408)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"the body is {declared} bytes; at most {limit} are taken")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise HTTPException(413, f"the body is over {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise HTTPException(408, f"the body took longer than {timeout:g}s to arrive")
    except ClientDisconnect:
        raise HTTPException(400, "the client went away before sending the whole body")
    return b"".join(chunks)


def _gunzip(body: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj(wbits=31)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise HTTPException(400, f"the body is not valid gzip: {exc}")
    if len(out) > limit or inflater.unconsumed_tail:
        raise HTTPException(413, f"the body is over {limit} bytes once decompressed")
    if not inflater.eof:
        raise HTTPException(400, "the gzip body is truncated")
    return out


def _reject(exc: BatchRejected) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=400)


def _busy(exc: CollectorBusy) -> JSONResponse:
    return JSONResponse({"error": str(exc)}, status_code=503, headers={"Retry-After": str(exc.retry_after)})


async def post_events(request: Request) -> JSONResponse:
    token: Token = authenticate(request, "ingest")
    collector: Collector = request.app.state.collector
    config = collector.config
    limit = int(config.max_body_mb * 1024 * 1024)
    body = await read_body(request, limit, config.read_timeout)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding == "gzip":
        body = _gunzip(body, limit)
    elif encoding not in ("", "identity"):
        raise HTTPException(415, f"Content-Encoding {encoding!r} is not taken; send gzip or nothing")
    content_type = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    try:
        if content_type == ARROW_TYPE:
            table = _arrow(body)
            _check_size(table.num_rows, config.max_batch_events)
            _limit_rate(request, token, table.num_rows)
            accepted = await collector.accept_table(table, token)
        elif content_type in ("application/json", ""):
            events = _events(body)
            _check_size(len(events), config.max_batch_events)
            _limit_rate(request, token, len(events))
            accepted = await collector.accept(events, token)
        else:
            raise HTTPException(415, f"Content-Type {content_type!r} is not taken; send application/json")
    except BatchRejected as exc:
        collector.count("rejected_batches")
        return _reject(exc)
    except CollectorBusy as exc:
        return _busy(exc)
    return JSONResponse({"accepted": accepted}, status_code=202)


def _check_size(n: int, cap: int) -> None:
    if n > cap:
        raise HTTPException(413, f"the batch holds {n} events; at most {cap} per request")


def _limit_rate(request: Request, token: Token, n: int) -> None:
    limiter: RateLimiter = request.app.state.rate_limiter
    wait = limiter.take(token.id, n)
    if wait:
        request.app.state.collector.count("rate_limited_events", n)
        raise HTTPException(
            429,
            f"over the rate limit of {limiter.per_second:g} events/s for this token",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )


def _events(body: bytes) -> list[Any]:
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise BatchRejected(None, None, None, f"the body is not valid JSON: {exc}")
    if not isinstance(payload, dict) or not isinstance(payload.get("events"), list):
        raise BatchRejected(None, "events", None, 'the body must be {"events": [...]}')
    return payload["events"]


def _arrow(body: bytes) -> pa.Table:
    try:
        return ipc.open_stream(pa.py_buffer(body)).read_all()
    except (pa.ArrowInvalid, OSError) as exc:
        raise BatchRejected(None, None, None, f"the body is not an Arrow IPC stream: {exc}")


routes = [Route("/v1/events", post_events, methods=["POST"])]

_EVENT = {
    "type": "object",
    "required": ["kind"],
    "properties": {
        "kind": {
            "type": "string",
            "enum": ["message", "sms", "llm_call", "api_call", "error", "timing", "activity", "custom"],
        },
        "ts": {"description": "ISO 8601 with a time zone, or epoch seconds", "type": ["string", "number"]},
        "event_id": {"type": "string", "description": "retries with the same id are stored once"},
        "user": {"type": ["string", "integer", "null"]},
        "conversation": {"type": ["string", "integer", "null"]},
        "channel": {"type": ["string", "null"]},
        "properties": {"type": ["object", "null"]},
    },
    "additionalProperties": True,
    "description": "the keyword arguments of the matching track_* call",
}
_ERROR = {"type": "object", "properties": {"error": {"type": "string"}}}

openapi_paths: dict[str, Any] = {
    "/v1/events": {
        "post": {
            "summary": "Store a batch of events",
            "security": [{"bearer": []}],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["events"],
                            "properties": {"events": {"type": "array", "items": _EVENT}},
                        }
                    },
                    ARROW_TYPE: {"schema": {"type": "string", "format": "binary"}},
                },
            },
            "responses": {
                "202": {
                    "description": "durable: stored, or in the server's spool",
                    "content": {
                        "application/json": {
                            "schema": {"type": "object", "properties": {"accepted": {"type": "integer"}}}
                        }
                    },
                },
                "400": {
                    "description": "the batch is refused whole; the body names the event, field and value",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "error": {"type": "string"},
                                    "index": {"type": ["integer", "null"]},
                                    "field": {"type": ["string", "null"]},
                                    "value": {},
                                },
                            }
                        }
                    },
                },
                "401": {"description": "no valid token", "content": {"application/json": {"schema": _ERROR}}},
                "403": {"description": "the token has no ingest scope"},
                "408": {"description": "the body came too slowly"},
                "413": {"description": "the body or the batch is too large"},
                "415": {"description": "unknown content type or encoding"},
                "429": {"description": "over the token's rate limit; see Retry-After"},
                "503": {"description": "overloaded or the store and spool are unavailable; see Retry-After"},
            },
        }
    }
}
