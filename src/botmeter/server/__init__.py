"""``botmeter serve``: the collector, one HTTP service that takes events from many bots and answers
queries.

``app.create_app`` builds the Starlette application from route lists, one module each: ``ingest``
(``POST /v1/events``), ``otlp`` (``POST /v1/traces``), ``read`` (the reading routes and the
dashboard) and ``service`` (``/healthz``, ``/metrics``, ``/openapi.json``). ``collector`` holds the
store's single writer; ``auth`` the tokens.
"""

from .settings import ServerConfig

__all__ = ["ServerConfig"]
