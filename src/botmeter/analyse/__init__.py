"""Analysis: the metric catalogue, typed queries, summaries, trends, anomalies, alerts, the explorer."""

from .catalogue import CATALOGUE, DIMENSIONS, Metric, register
from .query import Query, QueryError, Result, Unavailable, make_query
from .reader import Reader

__all__ = [
    "CATALOGUE",
    "DIMENSIONS",
    "Metric",
    "Query",
    "QueryError",
    "Reader",
    "Result",
    "Unavailable",
    "make_query",
    "register",
]
