"""One answers layer: each question botmeter answers (a summary, a metric query, error groups,
costs, status, explore, the dashboard's figures, alerts) is one registered function from typed
parameters to a ``Report``. The command line, the chat admin, the Lambda's HTTP routes, its
Bedrock functions and its schedule, and the HTTP server, call ``answer(name, source, raw)`` and
only choose the form the report goes out in (``report.responses``).

    from botmeter.answers import answer
    report = answer("metric", reader, {"metric": "cost_usd", "days": "7", "filter": ["model=a|b"]})

*A new answer* is a function here decorated with ``@register(name, Params, help)``.
"""

from __future__ import annotations

from . import questions  # noqa: F401  (registers the answers)
from .params import ParameterError, Raw
from .registry import (
    ANSWERS,
    HTTP_PATHS,
    HTTP_ROUTES,
    Answer,
    Later,
    Route,
    answer,
    http_error,
    http_route,
    parameters,
    reader_of,
    register,
)

__all__ = [
    "ANSWERS",
    "HTTP_PATHS",
    "HTTP_ROUTES",
    "Answer",
    "Later",
    "ParameterError",
    "Raw",
    "Route",
    "answer",
    "http_error",
    "http_route",
    "parameters",
    "reader_of",
    "register",
]
