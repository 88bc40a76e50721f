"""The service's own routes: ``GET /healthz``, ``GET /metrics`` (Prometheus text), ``GET /openapi.json``."""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from ..version import __version__
from .collector import LATENCY_BUCKETS, Collector

PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Counters every scrape shows, even at zero, with what they count.
COUNTERS = {
    "accepted_events": "events answered 202: stored or spooled",
    "rejected_batches": "batches refused with 400 (a bad event, nothing written)",
    "stored_events": "events written to the store",
    "spooled_events": "events written to the spool because the store failed",
    "spool_acknowledged_events": "events answered 202 once in the spool while the store was writing",
    "replayed_events": "spooled events written to the store once it was back",
    "rate_limited_events": "events refused with 429 (over a token's rate)",
    "refused_busy_events": "events refused with 503 (too many waiting to be stored)",
    "refused_unavailable_events": "events refused with 503 (neither the store nor the spool took them)",
    "store_failures": "writes the store could not take",
}


async def healthz(request: Request) -> JSONResponse:
    """200 when the store takes writes, 503 when it fails (events then wait in the spool)."""
    collector: Collector = request.app.state.collector
    health = collector.health()
    health["status"] = (
        "ok" if health["store_reachable"] and health["writer_alive"] is not False else "degraded"
    )
    return JSONResponse(health, status_code=200 if health["store_reachable"] else 503)


def _name(text: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", text)


def _label(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def prometheus_text(collector: Collector) -> str:
    lines: list[str] = []
    counters = dict.fromkeys(COUNTERS, 0) | dict(collector.counters)
    for key, value in sorted(counters.items()):
        name = f"botmeter_server_{_name(key)}_total"
        lines.append(f"# HELP {name} {COUNTERS.get(key, key.replace('_', ' '))}")
        lines.append(f"# TYPE {name} counter")
        lines.append(f"{name} {value}")
    health = collector.health()
    dropped = collector.spool.quarantined_events
    lines += [
        "# HELP botmeter_server_dropped_events_total spooled events set aside unreadable (failed/ folder)",
        "# TYPE botmeter_server_dropped_events_total counter",
        f"botmeter_server_dropped_events_total {dropped}",
        "# HELP botmeter_server_pending_events events received and not yet durable",
        "# TYPE botmeter_server_pending_events gauge",
        f"botmeter_server_pending_events {health['pending_events']}",
        "# HELP botmeter_server_spool_events events waiting in the spool for the store",
        "# TYPE botmeter_server_spool_events gauge",
        f"botmeter_server_spool_events {health['spool_events']}",
        "# HELP botmeter_server_held_events events in the spool (durable) that the next write takes",
        "# TYPE botmeter_server_held_events gauge",
        f"botmeter_server_held_events {health['held_events']}",
        "# HELP botmeter_server_store_up 1 when the last write reached the store",
        "# TYPE botmeter_server_store_up gauge",
        f"botmeter_server_store_up {int(health['store_reachable'])}",
        "# HELP botmeter_server_request_seconds request latency by route",
        "# TYPE botmeter_server_request_seconds histogram",
    ]
    for route, entry in sorted(collector.latency.items()):
        label = f'route="{_label(route)}"'
        cumulative = 0
        for bound, n in zip(LATENCY_BUCKETS, entry.buckets, strict=True):
            cumulative = n  # buckets already count every request at or below their bound
            lines.append(f'botmeter_server_request_seconds_bucket{{{label},le="{bound:g}"}} {cumulative}')
        lines.append(f'botmeter_server_request_seconds_bucket{{{label},le="+Inf"}} {entry.count}')
        lines.append(f"botmeter_server_request_seconds_sum{{{label}}} {entry.total:.6f}")
        lines.append(f"botmeter_server_request_seconds_count{{{label}}} {entry.count}")
    return "\n".join(lines) + "\n"


async def metrics(request: Request) -> PlainTextResponse:
    return PlainTextResponse(prometheus_text(request.app.state.collector), media_type=PROMETHEUS_TYPE)


async def openapi(request: Request) -> JSONResponse:
    return JSONResponse(request.app.state.openapi)


def openapi_document(paths: dict[str, Any]) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "botmeter collector", "version": __version__},
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "basic": {"type": "http", "scheme": "basic", "description": "the read token as the password"},
            }
        },
        "paths": paths,
    }


routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
    Route("/openapi.json", openapi, methods=["GET"]),
]

openapi_paths: dict[str, Any] = {
    "/healthz": {
        "get": {
            "summary": "Whether the store takes writes, and the spool's depth",
            "responses": {
                "200": {"description": "the store takes writes", "content": {"application/json": {}}},
                "503": {"description": "the store fails; events wait in the spool"},
            },
        }
    },
    "/metrics": {
        "get": {
            "summary": "The service's own counters, in Prometheus text format",
            "responses": {"200": {"description": "Prometheus text", "content": {"text/plain": {}}}},
        }
    },
    "/openapi.json": {
        "get": {
            "summary": "This document",
            "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {}}}},
        }
    },
}
