"""``POST /v1/traces``: OpenTelemetry spans (OTLP/HTTP) into LLM-call events."""

from __future__ import annotations

routes: list = []
# OpenAPI path items this module serves, merged into ``/openapi.json``.
openapi_paths: dict = {}
