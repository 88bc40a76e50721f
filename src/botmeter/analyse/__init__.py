"""Analysis: the metric catalogue, typed queries, summaries, trends, anomalies, alerts, the explorer."""

from .catalogue import CATALOGUE, DIMENSIONS, Metric, register
from .query import FigureUnavailable, Query, QueryError, Result, make_query
from .reader import Reader

__all__ = [
    "CATALOGUE",
    "DIMENSIONS",
    "FigureUnavailable",
    "Metric",
    "Query",
    "QueryError",
    "Reader",
    "Result",
    "make_query",
    "register",
]
