"""The reading routes (``/metrics/{metric}``, ``/summary``, ``/errors``) and ``GET /dashboard``."""

from __future__ import annotations

routes: list = []
# OpenAPI path items this module serves, merged into ``/openapi.json``.
openapi_paths: dict = {}
