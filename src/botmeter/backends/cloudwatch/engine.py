"""Reading a CloudWatch store: the catalogue's metrics from CloudWatch metrics and from the event
records in CloudWatch Logs.

Two sources, each for what it answers:

* **Metrics** (``GetMetricData``): counts and sums per bucket (``Sum``), and latency
  (``SampleCount``, ``Sum``, ``Maximum`` and CloudWatch's own percentiles ``p50``, ``p95``...),
  broken down only by the dimension sets the store writes (``store.METRICS`` beside it). The
  series themselves (which bots, models, stages...) are found with ``ListMetrics``.
* **Logs Insights** (``StartQuery``, then ``GetQueryResults`` until done or a time limit) over the
  one JSON record per event: distinct users and conversations, new and returning users, per-user
  and other breakdowns the metrics have no dimension for, LLM calls without a price, conversation
  length, error groups and the explorer.

What neither can answer raises ``FigureUnavailable`` with the reason (retention cohorts, a percentile
over several series, more groups than Logs Insights returns), never a zero.

Periods. CloudWatch keeps 1-minute data for 15 days, 5-minute data for 63 days and 1-hour data
for 455 days, and answers a query whose start is older than that resolution only for a period
that is a multiple of it. The window is aligned to that period (start down, end up; the result
says so). Whole hour, day and week buckets are asked as one period each; a month, a window
without buckets, or a partial bucket at either end is asked as one single period covering it, so
percentiles stay CloudWatch's percentiles of the whole bucket and never an average of smaller
ones.
"""

from __future__ import annotations

import itertools
import math
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from ...analyse.catalogue import DIMENSIONS, PERCENTILES, Metric
from ...analyse.query import (
    FigureUnavailable,
    Query,
    Result,
    fill_buckets,
    floor_to,
    next_bucket,
    ratio_result,
    top_groups,
)
from ...exceptions import BotmeterError
from . import store as cw

# -- what the metrics can answer ---------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """CloudWatch metrics answering a catalogue metric (count or sum).

    ``metrics``: alternatives, the first recording every event of the catalogue metric under
    ``[Bot]`` (the total); a later one answers breakdowns the first has no dimension set for
    (cost by model from ``LlmCostUSD``), the rest of the total going to the none group.
    ``implied``: catalogue ``where`` dimensions the CloudWatch metric already means
    (``InboundMessages`` are the messages with direction = in).
    """

    metrics: tuple[str, ...]
    implied: tuple[str, ...] = ()


SOURCES: Final[dict[str, Source]] = {
    "cost_usd": Source(("CostUSD", "LlmCostUSD")),
    "llm_calls": Source(("LlmCalls",)),
    "input_tokens": Source(("InputTokens",)),
    "output_tokens": Source(("OutputTokens",)),
    "cached_tokens": Source(("CachedTokens",)),
    "reasoning_tokens": Source(("ReasoningTokens",)),
    "messages": Source(("Messages",)),
    "inbound_messages": Source(("InboundMessages",), implied=("direction",)),
    "sms_segments": Source(("SmsSegments",), implied=("unit",)),
    "api_calls": Source(("ApiCalls",)),
    "activities": Source(("Activities",)),
    "resets": Source(("Activities",)),
    "admin_commands": Source(("Activities",)),
    "errors": Source(("Errors",)),
    # Twilio status callbacks record delivery outcomes as custom events named delivery:<status>.
    "delivery_outcomes": Source(("CustomEvents",)),
    "delivered_messages": Source(("CustomEvents",)),
}

# Latency: timing events per stage (latency_ms, reply_latency_s), LLM calls per bot and per
# provider and model (llm_latency_ms).
LATENCY_FAMILIES: Final = (("LatencyMs", "timing"), ("LlmLatencyMs", "llm_call"))

# botmeter's statistic -> the CloudWatch statistics it is made from.
_CW_STATS: Final[dict[str, tuple[str, ...]]] = {
    "count": ("SampleCount",),
    "avg": ("Sum", "SampleCount"),
    "max": ("Maximum",),
    **{p: (p,) for p in PERCENTILES},
}

# CloudWatch's retention: (data younger than, period it is kept at).
RESOLUTIONS: Final = ((timedelta(days=15), 60), (timedelta(days=63), 300), (timedelta(days=455), 3600))
MAX_QUERIES_PER_REQUEST: Final = 500  # GetMetricData
INSIGHTS_ROW_LIMIT: Final = 10_000  # GetQueryResults returns at most this many rows
INSIGHTS_CONCURRENCY: Final = 10  # queries started at once (CloudWatch allows a few dozen per account)
CONVERSATION_LOOKBACK: Final = timedelta(days=1)

PERCENTILE_NOTE: Final = (
    "percentiles are CloudWatch's own statistics (p50, p90, p95, p99, which it estimates from the "
    "values it kept), not botmeter's exact ones"
)
RECORD_FILTER: Final = "filter ispresent(event_id) and ispresent(kind)"


def _column_dims(metric: cw.CloudWatchMetric) -> dict[str, str]:
    """Event column -> the CloudWatch dimension name holding it, for one CloudWatch metric."""
    names = {n for s in metric.dimension_sets for n in s}
    return {cw.DIMENSION_COLUMNS[n]: n for n in names}


def cw_dimension(metric: cw.CloudWatchMetric, dim: str) -> str | None:
    """The CloudWatch dimension of ``metric`` holding the catalogue dimension ``dim``, if any."""
    return _column_dims(metric).get(DIMENSIONS[dim])


# -- time --------------------------------------------------------------------------------------


def resolution(start: datetime, now: datetime) -> int:
    """The shortest period CloudWatch still answers for data from ``start`` on (seconds)."""
    age = now - start
    for younger_than, period in RESOLUTIONS:
        if age <= younger_than:
            return period
    return 3600


def _floor(ts: datetime, seconds: int) -> datetime:
    epoch = int(ts.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, UTC)


def _ceil(ts: datetime, seconds: int) -> datetime:
    floor = _floor(ts, seconds)
    return floor if floor == ts else floor + timedelta(seconds=seconds)


@dataclass(frozen=True)
class Span:
    """One GetMetricData time range and the period it is asked in."""

    start: datetime
    end: datetime
    period: int


def spans(q: Query, now: datetime) -> tuple[list[Span], list[str]]:
    """The GetMetricData ranges answering the query's buckets, and notes on how the window moved."""
    oldest = now - RESOLUTIONS[-1][0]
    if q.end <= oldest:
        raise FigureUnavailable(
            f"CloudWatch keeps metrics for 455 days; the window ending {q.end:%Y-%m-%d} is older"
        )
    base = resolution(q.start, now)
    start, end = _floor(q.start, base), _ceil(q.end, base)
    notes = []
    # The end moving up matters only when data can follow it (a window ending now has none).
    if start != q.start or (end != q.end and q.end < now - timedelta(seconds=base)):
        notes.append(
            f"window aligned to CloudWatch's {base}-second periods: {start:%Y-%m-%d %H:%M} to "
            f"{end:%Y-%m-%d %H:%M} UTC"
        )
    if start < oldest:
        notes.append("CloudWatch keeps metrics for 455 days: the older part of the window is empty")
    if q.interval is None:
        return [Span(start, end, _seconds(end - start))], notes
    pieces = []
    for bucket in q.buckets():
        lo, hi = max(bucket, start), min(next_bucket(bucket, q.interval), end)
        if lo < hi:
            pieces.append((bucket, lo, hi))
    if q.interval == "month":
        return [Span(lo, hi, _seconds(hi - lo)) for _, lo, hi in pieces], notes
    length = _seconds(next_bucket(pieces[0][0], q.interval) - pieces[0][0])
    if length % base:
        raise FigureUnavailable(f"a {q.interval} is not a multiple of CloudWatch's {base}-second period here")
    out: list[Span] = []
    whole = [(lo, hi) for b, lo, hi in pieces if lo == b and _seconds(hi - lo) == length]
    if whole:
        out.append(Span(whole[0][0], whole[-1][1], length))
    for b, lo, hi in pieces:
        if not (lo == b and _seconds(hi - lo) == length):
            out.append(Span(lo, hi, _seconds(hi - lo)))  # a partial bucket: one period of its own
    return out, notes


def _seconds(delta: timedelta) -> int:
    return int(delta.total_seconds())


# -- the engine --------------------------------------------------------------------------------


@dataclass
class Cell:
    """One CloudWatch series and the breakdown group it falls in."""

    metric: str
    dimensions: dict[str, str]
    group: tuple


class CloudWatchEngine:
    """Runs typed queries against a ``CloudWatchStore``: metrics where they answer, else Logs Insights."""

    name = "cloudwatch"
    poll_interval_s = 0.5
    insights_timeout_s = 60.0

    def __init__(self, store: Any, *, use_rollups: bool = True, now: datetime | None = None) -> None:
        self.store = store
        self.now = now
        self._listed: dict[str, list[dict[str, str]]] | None = None
        self._sessions = 0

    @contextmanager
    def session(self) -> Iterator[CloudWatchEngine]:
        """Keeps what ListMetrics found for several queries (a summary, a dashboard)."""
        self._sessions += 1
        if self._sessions == 1:
            self._listed = {}
        try:
            yield self
        finally:
            self._sessions -= 1
            if not self._sessions:
                self._listed = None

    def _now(self) -> datetime:
        return (self.now or datetime.now(UTC)).astimezone(UTC)

    def _call(self, service: str, operation: str, **params: Any) -> dict[str, Any]:
        return self.store.call(service, operation, **params)

    # -- entry ----------------------------------------------------------------------------------

    def run(self, query: Query) -> Result:
        result = self._run(query)
        result.rows = top_groups(query, result.rows)
        return result

    def _run(self, query: Query) -> Result:
        with self.session():
            metric = query.definition
            if metric.aggregation == "ratio":
                return self._ratio(query, metric)
            if metric.aggregation == "retention":
                raise FigureUnavailable(
                    "retention cohorts need every user's activity since their first day, which "
                    "CloudWatch cannot return in one query; use a DuckDB store"
                )
            if metric.aggregation == "distribution":
                return self._latency(query, metric)
            if metric.aggregation == "failed_replies":
                raise FigureUnavailable(
                    "failed replies follow each conversation's messages and errors in order, which "
                    "CloudWatch metrics do not keep and Logs Insights cannot join; use a DuckDB store"
                )
            if metric.aggregation in ("count", "sum"):
                plan = self._plan(query, metric)
                if plan is not None:
                    return self._additive(query, metric, *plan)
                return self._insights_additive(query, metric)
            if metric.aggregation == "active_users":
                return self._active_users(query)
            if metric.aggregation in ("new_users", "returning_users"):
                return self._new_returning(query, metric)
            if metric.aggregation == "conversations":
                return self._conversations(query)
            if metric.aggregation == "per_conversation":
                return self._per_conversation(query, metric)
            raise FigureUnavailable(
                f"CloudWatch cannot answer {metric.aggregation!r} metrics such as {metric.name}"
            )

    # -- discovery ------------------------------------------------------------------------------

    def series(self, name: str) -> list[dict[str, str]]:
        """Every dimension combination of one CloudWatch metric in the namespace (ListMetrics)."""
        if self._listed is not None and name in self._listed:
            return self._listed[name]
        found: list[dict[str, str]] = []
        seen: set[tuple] = set()
        token = None
        while True:
            params: dict[str, Any] = {"Namespace": self.store.namespace, "MetricName": name}
            if token:
                params["NextToken"] = token
            page = self._call("cloudwatch", "list_metrics", **params)
            for m in page.get("Metrics", []):
                dims = {d["Name"]: d["Value"] for d in m.get("Dimensions", [])}
                key = tuple(sorted(dims.items()))
                if key not in seen:
                    seen.add(key)
                    found.append(dims)
            token = page.get("NextToken")
            if not token:
                break
        if self._listed is not None:
            self._listed[name] = found
        return found

    # -- counts and sums from the metrics ---------------------------------------------------------

    def _conditions(self, q: Query, metric: Metric, implied: Sequence[str] = ()) -> list[tuple[str, Any]]:
        """(catalogue dimension, values or a prefix ending in '*') every counted event must match."""
        conds: list[tuple[str, Any]] = []
        for dim, value in metric.where:
            if dim in implied:
                continue
            conds.append((dim, value))
        conds += list(q.filters)
        return conds

    def _plan(self, q: Query, metric: Metric) -> tuple[cw.CloudWatchMetric, tuple[str, ...], list] | None:
        """The CloudWatch metric and dimension set answering the query, or None (then Logs Insights)."""
        source = SOURCES.get(q.metric)
        if source is None:
            return None
        conds = self._conditions(q, metric, source.implied)
        if any(value is None for _, value in conds):
            return None  # "events without a price": no metric records that
        for name in source.metrics:
            m = cw.METRICS_BY_NAME[name]
            wanted = {"Bot"}
            usable = True
            for dim in (*q.by, *(d for d, _ in conds)):
                cw_dim = cw_dimension(m, dim)
                if cw_dim is None:
                    usable = False
                    break
                wanted.add(cw_dim)
            if not usable:
                continue
            fits = [s for s in m.dimension_sets if wanted <= set(s)]
            if fits:
                return m, min(fits, key=len), conds
        return None

    def _cells(
        self, m: cw.CloudWatchMetric, dimset: Sequence[str], conds: list, by: Sequence[str]
    ) -> list[Cell]:
        cells = []
        for dims in self.series(m.name):
            if set(dims) != set(dimset):
                continue
            if not all(_matches(dims.get(cw_dimension(m, d) or ""), v) for d, v in conds):
                continue
            group = tuple(dims.get(cw_dimension(m, d) or "") for d in by)
            cells.append(Cell(m.name, dims, group))
        return cells

    def _additive(
        self, q: Query, metric: Metric, m: cw.CloudWatchMetric, dimset: tuple[str, ...], conds: list
    ) -> Result:
        stat = q.stats[0]
        cells = self._cells(m, dimset, conds, q.by)
        found, notes = self._fetch(q, cells, ("Sum",))
        sums: dict[tuple, float] = {}
        for i, cell in enumerate(cells):
            for bucket, value in found[(i, "Sum")].items():
                key = (bucket, *cell.group)
                sums[key] = sums.get(key, 0.0) + value
        # Events without a breakdown's dimension are only in the total: the rest goes to "none".
        filtered = {cw_dimension(m, d) for d, _ in conds}
        if q.by and set(dimset) - {"Bot"} - filtered:
            bot_by = tuple(d for d in q.by if d == "bot")
            total = self.run(_replace(q, by=bot_by, limit=None))
            parts: dict[tuple, float] = {}
            for (bucket, *group), value in sums.items():
                key = (bucket, *(group[q.by.index("bot")] for _ in bot_by))
                parts[key] = parts.get(key, 0.0) + value
            for row in total.rows:
                key = (row["bucket"], *(row["bot"] for _ in bot_by))
                rest = (row[total.stats[0]] or 0) - parts.get(key, 0.0)
                if abs(rest) > 1e-9 * max(1.0, abs(row[total.stats[0]] or 0)):
                    group = tuple(row["bot"] if d == "bot" else None for d in q.by)
                    sums[(row["bucket"], *group)] = sums.get((row["bucket"], *group), 0.0) + rest
        rows = [
            {"bucket": key[0], **dict(zip(q.by, key[1:], strict=True)), stat: _typed(metric, value)}
            for key, value in sums.items()
        ]
        rows = _top(q, rows, stat)
        if len(self._bots()) > 1 and "bot" not in q.by and not any(d == "bot" for d, _ in conds):
            notes.append("all bots in the namespace together")
        return Result(q, fill_buckets(q, rows, _empty_for(metric)), "cloudwatch metrics", notes)

    def _bots(self) -> set[str]:
        return {s.get("Bot", "") for s in self.series("Messages")} | {
            s.get("Bot", "") for s in self.series("LlmCalls")
        }

    def _fetch(
        self, q: Query, cells: list[Cell], stats: Sequence[str]
    ) -> tuple[dict[tuple[int, str], dict[datetime, float]], list[str]]:
        """GetMetricData for every cell and statistic: {(cell index, stat): {bucket: value}}."""
        ranges, notes = spans(q, self._now())
        out: dict[tuple[int, str], dict[datetime, float]] = {
            (i, s): {} for i in range(len(cells)) for s in stats
        }
        wanted = [(i, s) for i in range(len(cells)) for s in stats]
        for span in ranges:
            for lo in range(0, len(wanted), MAX_QUERIES_PER_REQUEST):
                part = wanted[lo : lo + MAX_QUERIES_PER_REQUEST]
                queries = [
                    {
                        "Id": f"q{n}",
                        "MetricStat": {
                            "Metric": {
                                "Namespace": self.store.namespace,
                                "MetricName": cells[i].metric,
                                "Dimensions": [
                                    {"Name": k, "Value": v} for k, v in cells[i].dimensions.items()
                                ],
                            },
                            "Period": span.period,
                            "Stat": s,
                        },
                        "ReturnData": True,
                    }
                    for n, (i, s) in enumerate(part)
                ]
                for n, points in self._metric_data(queries, span).items():
                    target = out[part[n]]
                    for ts, value in points:
                        if not span.start <= ts < span.end:
                            continue  # defensive: a datapoint outside the range asked for
                        bucket = q.start if q.interval is None else floor_to(ts, q.interval)
                        # Each bucket is answered by exactly one period of one span.
                        target[bucket] = value
        return out, notes

    def _metric_data(
        self, queries: list[dict[str, Any]], span: Span
    ) -> dict[int, list[tuple[datetime, float]]]:
        """One GetMetricData request, every page (NextToken), as {query number: [(time, value)]}."""
        points: dict[int, list[tuple[datetime, float]]] = {n: [] for n in range(len(queries))}
        token = None
        while True:
            params: dict[str, Any] = {
                "MetricDataQueries": queries,
                "StartTime": span.start,
                "EndTime": span.end,
                "ScanBy": "TimestampAscending",
            }
            if token:
                params["NextToken"] = token
            page = self._call("cloudwatch", "get_metric_data", **params)
            for result in page.get("MetricDataResults", []):
                status = result.get("StatusCode", "Complete")
                if status in ("InternalError", "Forbidden"):
                    messages = "; ".join(m.get("Value", "") for m in result.get("Messages", []))
                    raise FigureUnavailable(
                        f"CloudWatch GetMetricData answered {status}: {messages or 'no detail'}"
                    )
                n = int(result["Id"][1:])
                if n not in points:
                    continue  # not a query of this request
                for ts, value in zip(result.get("Timestamps", []), result.get("Values", []), strict=True):
                    points[n].append((_aware(ts), float(value)))
            token = page.get("NextToken")
            if not token:
                return points

    # -- latency ----------------------------------------------------------------------------------

    def _latency(self, q: Query, metric: Metric) -> Result:
        if metric.column != "latency_ms":
            raise FigureUnavailable(
                f"{metric.name} is kept in the events' properties, which CloudWatch metrics do not hold"
            )
        # A stage's latency is its timings (LatencyMs); LLM calls are their own figure (LlmLatencyMs).
        filters = [*q.filters, *((d, (v,)) for d, v in metric.where if v is not None)]
        if "channel" in q.by or any(d == "channel" for d, _ in filters):
            raise FigureUnavailable("CloudWatch keeps latency per stage and per model, not per channel")
        cells = [
            cell
            for name, kind in LATENCY_FAMILIES
            if kind in metric.kinds
            for cell in self._latency_cells(q, name, kind, filters)
        ]
        # Counts first: a percentile is asked for only where one series holds a group's values.
        plain = sorted(
            {s for stat in (*q.stats, "count") if stat not in PERCENTILES for s in _CW_STATS[stat]}
        )
        found, notes = self._fetch(q, cells, plain)
        present: dict[tuple[tuple, datetime], list[int]] = {}
        for i, cell in enumerate(cells):
            for bucket, n in found[(i, "SampleCount")].items():
                if n:
                    present.setdefault((cell.group, bucket), []).append(i)
        wanted = [s for s in q.stats if s in PERCENTILES]
        if wanted:
            self._fetch_percentiles(q, cells, present, wanted, found)
            notes.append(PERCENTILE_NOTE)
        rows = [
            _latency_row(q, group, bucket, members, found) for (group, bucket), members in present.items()
        ]
        if "stage" in q.by and "llm_call" in metric.kinds:
            notes.append("LLM calls are timed per model in CloudWatch, so they appear under no stage")
        empty = lambda s: 0 if s == "count" else None  # noqa: E731
        return Result(q, fill_buckets(q, rows, empty), "cloudwatch metrics", notes)

    def _latency_cells(
        self, q: Query, name: str, kind: str, filters: list[tuple[str, tuple[str, ...]]]
    ) -> list[Cell]:
        """The series of one latency family (timings or LLM calls) that answer the query."""
        m = cw.METRICS_BY_NAME[name]
        wanted = {"Bot"}
        for dim, _values in filters:
            if dim == "kind":
                continue
            cw_dim = cw_dimension(m, dim)
            if cw_dim is None:
                return []  # events of this family have no such value: none match the filter
            wanted.add(cw_dim)
        for dim in q.by:
            if dim not in ("kind", "bot") and cw_dimension(m, dim) is not None:
                wanted.add(cw_dimension(m, dim) or "")
        fits = [s for s in m.dimension_sets if wanted <= set(s)]
        if not fits:
            return []
        dimset = set(min(fits, key=len))
        cells = []
        for dims in self.series(name):
            if set(dims) != dimset:
                continue
            if not all(_matches(dims.get(cw_dimension(m, d) or ""), v) for d, v in filters if d != "kind"):
                continue
            group = tuple(
                kind if d == "kind" else dims.get(cw_dimension(m, d) or "") if cw_dimension(m, d) else None
                for d in q.by
            )
            cells.append(Cell(name, dims, group))
        return cells

    def _fetch_percentiles(
        self,
        q: Query,
        cells: list[Cell],
        present: dict[tuple[tuple, datetime], list[int]],
        wanted: list[str],
        found: dict[tuple[int, str], dict[datetime, float]],
    ) -> None:
        """Adds the percentiles to ``found``: only for groups one series holds, since CloudWatch
        cannot combine the percentiles of several."""
        for members in present.values():
            if len(members) > 1:
                names = ", ".join(sorted(_describe(cells[i]) for i in members))
                raise FigureUnavailable(
                    f"CloudWatch keeps latency percentiles per series and cannot combine them: "
                    f"{wanted[0]} over {names}; ask by stage or by provider and model, or for avg, "
                    "max, count"
                )
        asked = sorted({members[0] for members in present.values()})
        more, _ = self._fetch(q, [cells[i] for i in asked], wanted)
        for n, i in enumerate(asked):
            for s in wanted:
                found[(i, s)] = more[(n, s)]

    # -- ratios -------------------------------------------------------------------------------------

    def _ratio(self, q: Query, metric: Metric) -> Result:
        assert metric.numerator and metric.denominator
        parts = []
        for name in (metric.numerator, metric.denominator):
            try:
                parts.append(self.run(q.with_metric(name)))
            except FigureUnavailable as exc:
                raise FigureUnavailable(f"{metric.name} needs {name}, which is unavailable: {exc}") from None
        return ratio_result(q, *parts)

    # -- Logs Insights --------------------------------------------------------------------------------

    def insights(self, queries: Sequence[tuple[str, datetime, datetime]]) -> list[list[dict[str, str]]]:
        """Runs Logs Insights queries over the store's log group (a few at a time) and waits for them.

        Each is (query string, start, end); the answer is each one's rows as {field: value}.
        """
        out: list[list[dict[str, str]]] = []
        for lo in range(0, len(queries), INSIGHTS_CONCURRENCY):
            ids = [self._start_query(*item) for item in queries[lo : lo + INSIGHTS_CONCURRENCY]]
            out += [self._wait(query_id) for query_id in ids]
        return out

    def _start_query(self, text: str, start: datetime, end: datetime) -> str:
        try:
            answer = self._call(
                "logs",
                "start_query",
                logGroupNames=[self.store.log_group],
                startTime=int(start.timestamp()),
                endTime=math.ceil(end.timestamp()),
                queryString=text,
                limit=INSIGHTS_ROW_LIMIT,
            )
        except BotmeterError as exc:
            if "ResourceNotFound" in str(exc):
                raise FigureUnavailable(
                    f"no event records: log group {self.store.log_group} does not exist (in emf mode the "
                    "records are in the Lambda function's log group: set log_group= in the store URL)"
                ) from None
            raise
        return answer["queryId"]

    def _wait(self, query_id: str) -> list[dict[str, str]]:
        deadline = time.monotonic() + self.insights_timeout_s
        while True:
            answer = self._call("logs", "get_query_results", queryId=query_id)
            status = answer.get("status")
            if status == "Complete":
                break
            if status in ("Failed", "Cancelled", "Timeout", "Unknown"):
                raise FigureUnavailable(f"the Logs Insights query ended as {status}")
            if time.monotonic() > deadline:
                try:
                    self._call("logs", "stop_query", queryId=query_id)
                except BotmeterError:
                    pass  # it ends by itself; nothing more to do about it
                raise FigureUnavailable(f"Logs Insights did not answer within {self.insights_timeout_s:g} s")
            time.sleep(self.poll_interval_s)
        rows = [
            {f["field"]: f.get("value") for f in row if not f["field"].startswith("@ptr")}
            for row in answer.get("results", [])
        ]
        if len(rows) >= INSIGHTS_ROW_LIMIT:
            raise FigureUnavailable(
                f"more than {INSIGHTS_ROW_LIMIT:,} groups: Logs Insights returns at most that many rows"
            )
        return rows

    def _record_filter(self, q: Query, metric: Metric, start: datetime, end: datetime) -> str:
        parts = [RECORD_FILTER, _time_filter(start, end)]
        if metric.kinds:
            parts.append(f"kind in [{', '.join(_literal(k) for k in metric.kinds)}]")
        for dim, value in self._conditions(q, metric):
            parts.append(_condition(DIMENSIONS.get(dim, dim), value))
        return " and ".join(parts)

    def _pieces(self, q: Query) -> list[tuple[datetime, datetime, datetime, str | None]]:
        """(bucket, start, end, bin) ranges to ask: one query with bin() for hours and days, else one
        query per bucket (Logs Insights bins weeks and months its own way)."""
        if q.interval in ("hour", "day"):
            return [(q.start, q.start, q.end, {"hour": "1h", "day": "1d"}[q.interval])]
        if q.interval is None:
            return [(q.start, q.start, q.end, None)]
        return [
            (b, max(b, q.start), min(next_bucket(b, q.interval), q.end), None)
            for b in q.buckets()
            if max(b, q.start) < min(next_bucket(b, q.interval), q.end)
        ]

    def _grouped(self, q: Query, stages: list[str], make_filter: Any) -> list[dict[str, Any]]:
        """Runs a stats query per piece; rows with ``bucket``, the by dimensions and ``_value``."""
        pieces = self._pieces(q)
        texts = []
        for _, lo, hi, binning in pieces:
            by = ", ".join(
                [*([f"bin({binning}) as bucket"] if binning else []), *(DIMENSIONS[d] for d in q.by)]
            )
            text = " | ".join(stages).replace("{by_clause}", f" by {by}" if by else "")
            texts.append((f"{make_filter(lo, hi)} | {text}", lo, hi))
        return self._answered_rows(q, pieces, texts, "_value", lambda v: v)

    def _insights_additive(self, q: Query, metric: Metric) -> Result:
        stat = q.stats[0]
        measure = "count(*)" if metric.aggregation == "count" else f"sum({metric.column})"
        stages = [f"stats {measure} as v{{by_clause}}"]
        if q.limit and q.interval is None:
            stages += ["sort v desc", f"limit {int(q.limit)}"]
        rows = self._grouped(q, stages, lambda lo, hi: self._record_filter(q, metric, lo, hi))
        out: dict[tuple, float] = {}
        for row in rows:
            key = (row["bucket"], *(row[d] for d in q.by))
            out[key] = out.get(key, 0.0) + _number(row["_value"])
        result = [
            {"bucket": k[0], **dict(zip(q.by, k[1:], strict=True)), stat: _typed(metric, v)}
            for k, v in out.items()
        ]
        notes = ["from the event records (Logs Insights)"]
        return Result(q, fill_buckets(q, _top(q, result, stat), _empty_for(metric)), "cloudwatch logs", notes)

    def _message_filter(self, q: Query, lo: datetime, hi: datetime, inbound: bool, extra: str = "") -> str:
        parts = [RECORD_FILTER, _time_filter(lo, hi), 'kind = "message"']
        if inbound:
            parts.append('direction = "in"')
        for dim, values in q.filters:
            parts.append(_condition(DIMENSIONS[dim], values))
        if extra:
            parts.append(extra)
        return " and ".join(parts)

    def _active_users(self, q: Query) -> Result:
        stages = ["stats count(*) as n by {by}, user_id", "stats count(*) as v{by_clause}"]
        # The second stage groups by what the first one named: the bucket and the dimensions.
        rows = self._two_stage(
            q, stages, lambda lo, hi: self._message_filter(q, lo, hi, True, "ispresent(user_id)")
        )
        return Result(
            q,
            fill_buckets(q, rows, lambda s: 0),
            "cloudwatch logs",
            ["from the event records (Logs Insights)"],
        )

    def _two_stage(self, q: Query, stages: list[str], make_filter: Any) -> list[dict[str, Any]]:
        stat = q.stats[0]
        pieces = self._pieces(q)
        texts = []
        for _, lo, hi, binning in pieces:
            dims = [DIMENSIONS[d] for d in q.by]
            first_by = ", ".join([*([f"bin({binning}) as bucket"] if binning else []), *dims]) or None
            second_by = ", ".join([*(["bucket"] if binning else []), *dims])
            one = stages[0].replace("{by}, ", f"{first_by}, " if first_by else "")
            two = stages[1].replace("{by_clause}", f" by {second_by}" if second_by else "")
            texts.append((f"{make_filter(lo, hi)} | {one} | {two}", lo, hi))
        return self._answered_rows(q, pieces, texts, stat, lambda v: int(_number(v)))

    def _answered_rows(
        self, q: Query, pieces: list[tuple], texts: list[tuple[str, datetime, datetime]], key: str, value: Any
    ) -> list[dict[str, Any]]:
        """Runs one Logs Insights query per piece; rows with ``bucket``, the by dimensions and
        ``key`` (the field ``v`` through ``value``)."""
        rows = []
        for (bucket, *_), found in zip(pieces, self.insights(texts), strict=True):
            for raw in found:
                if "v" not in raw:
                    raise FigureUnavailable(
                        f"Logs Insights answered without the 'v' field asked for: {sorted(raw)}"
                    )
                rows.append(
                    {
                        "bucket": _parse_time(raw["bucket"]) if "bucket" in raw else bucket,
                        **{d: raw.get(DIMENSIONS[d]) or None for d in q.by},
                        key: value(raw["v"]),
                    }
                )
        return rows

    def _conversations(self, q: Query) -> Result:
        # Conversation ids are unique within a bot.
        key = "conversation_id" if "bot" in q.by else "bot, conversation_id"
        stages = [f"stats count(*) as n by {{by}}, {key}", "stats count(*) as v{by_clause}"]
        rows = self._two_stage(
            q, stages, lambda lo, hi: self._message_filter(q, lo, hi, False, "ispresent(conversation_id)")
        )
        # Messages without a conversation id cannot be split into sessions here: count them, so a
        # bot that sets no ids gets a reason instead of a zero.
        missing = self.insights(
            [(f"{self._message_filter(q, q.start, q.end, False, 'not ispresent(conversation_id)')} "
              "| stats count(*) as v", q.start, q.end)]
        )[0]  # fmt: skip
        without = int(_number(missing[0]["v"])) if missing and "v" in missing[0] else 0
        if without and not any(r[q.stats[0]] for r in rows):
            raise FigureUnavailable(
                f"none of the {without:,} messages has a conversation id, and CloudWatch cannot split a "
                "user's messages into sessions"
            )
        notes = ["conversations are the bot's conversation ids (from the event records)"]
        if without:
            notes.append(f"{without:,} messages without a conversation id are not counted")
        return Result(q, fill_buckets(q, rows, lambda s: 0), "cloudwatch logs", notes)

    def _log_group_created(self) -> datetime:
        answer = self._call("logs", "describe_log_groups", logGroupNamePrefix=self.store.log_group)
        for group in answer.get("logGroups", []):
            if group.get("logGroupName") == self.store.log_group:
                return datetime.fromtimestamp(group.get("creationTime", 0) / 1000, UTC)
        raise FigureUnavailable(f"no event records: log group {self.store.log_group} does not exist")

    def _new_returning(self, q: Query, metric: Metric) -> Result:
        stat = q.stats[0]
        since = min(self._log_group_created(), q.start)
        inbound = 'kind = "message" and direction = "in" and ispresent(user_id)'
        bots = "".join(f" and {_condition('bot', v)}" for d, v in q.filters if d == "bot")
        by_bot = ", bot" if "bot" in q.by else ""
        first_text = (
            f"{RECORD_FILTER} and {_time_filter(since, q.end)} and {inbound}{bots} "
            f"| stats min(@timestamp) as first by user_id{by_bot}"
        )
        pieces = self._pieces(q)
        texts = [(first_text, since, q.end)]
        for _, lo, hi, binning in pieces:
            head = f"bin({binning}) as bucket, " if binning else ""
            texts.append(
                (
                    f"{RECORD_FILTER} and {_time_filter(lo, hi)} and {inbound}{bots} "
                    f"| stats count(*) as n by {head}user_id{by_bot}",
                    lo,
                    hi,
                )
            )
        answers = self.insights(texts)
        first = {}
        for raw in answers[0]:
            if "first" not in raw:
                raise FigureUnavailable(
                    f"Logs Insights answered without the 'first' field asked for: {sorted(raw)}"
                )
            first[(raw.get("user_id"), raw.get("bot") if by_bot else None)] = _parse_time(raw["first"])
        counts: dict[tuple, int] = {}
        for (bucket, _lo, hi, _), found in zip(pieces, answers[1:], strict=True):
            for raw in found:
                b = _parse_time(raw["bucket"]) if "bucket" in raw else bucket
                user = (raw.get("user_id"), raw.get("bot") if by_bot else None)
                seen = first.get(user)
                if seen is None:
                    continue
                b_start = max(b, q.start)
                b_end = min(q.end, hi if q.interval not in ("hour", "day") else next_bucket(b, q.interval))
                hit = b_start <= seen < b_end if metric.aggregation == "new_users" else seen < b_start
                if hit:
                    key = (b, *((user[1],) if by_bot else ()))
                    counts[key] = counts.get(key, 0) + 1
        rows = [{"bucket": k[0], **({"bot": k[1]} if by_bot else {}), stat: n} for k, n in counts.items()]
        notes = [f"first seen from the event records since {since:%Y-%m-%d} (Logs Insights)"]
        return Result(q, fill_buckets(q, rows, lambda s: 0), "cloudwatch logs", notes)

    def _per_conversation(self, q: Query, metric: Metric) -> Result:
        lo = q.start - CONVERSATION_LOOKBACK
        bots = "".join(f" and {_condition('bot', v)}" for d, v in q.filters if d == "bot")
        text = (
            f'{RECORD_FILTER} and {_time_filter(lo, q.end)} and kind = "message" and '
            f"ispresent(conversation_id){bots} | stats count(*) as n, min(@timestamp) as first, "
            "max(@timestamp) as last by bot, conversation_id"
        )
        found = self.insights([(text, lo, q.end)])[0]
        groups: dict[tuple, list[float]] = {}
        for raw in found:
            if "n" not in raw or "first" not in raw:
                raise FigureUnavailable(f"Logs Insights answered without the fields asked for: {sorted(raw)}")
            began = _parse_time(raw["first"])
            if not q.start <= began < q.end:
                continue
            x = (
                float(_number(raw["n"]))
                if metric.column == "messages"
                else (_parse_time(raw["last"]) - began).total_seconds()
            )
            bucket = q.start if q.interval is None else floor_to(began, q.interval)
            key = (bucket, *((raw.get("bot"),) if "bot" in q.by else ()))
            groups.setdefault(key, []).append(x)
        rows = []
        for key, values in groups.items():
            row: dict[str, Any] = {"bucket": key[0], **({"bot": key[1]} if "bot" in q.by else {})}
            for s in q.stats:
                row[s] = _stat(values, s)
            rows.append(row)
        notes = [
            "conversations are the bot's conversation ids, from the event records (Logs Insights); "
            f"one that began more than {CONVERSATION_LOOKBACK.days} day before the window counts from "
            "its first message in that day"
        ]
        return Result(
            q, fill_buckets(q, rows, lambda s: 0 if s == "count" else None), "cloudwatch logs", notes
        )

    # -- error groups and the explorer -----------------------------------------------------------

    def error_groups(
        self, start: datetime, end: datetime, quiet_days: int, bot: str | None = None
    ) -> list[dict[str, Any]]:
        """Error groups (per fingerprint) with errors in [start, end) (of one ``bot`` when given),
        from the event records."""
        errors = f'{RECORD_FILTER} and kind = "error" and ispresent(fingerprint)'
        if bot is not None:
            errors += f" and {_condition('bot', bot)}"
        window = (
            f"{errors} and {_time_filter(start, end)} | stats count(*) as n, count_distinct(user_id) as "
            "users, count_distinct(conversation_id) as conversations, min(@timestamp) as first_in_period, "
            "max(@timestamp) as last_seen, latest(error_type) as error_type, latest(error_category) as "
            "category, latest(severity) as severity, latest(error_message) as message, latest(provider) as "
            "provider, latest(stage) as stage, latest(properties.code) as code by fingerprint"
        )
        hourly = (
            f"{errors} and {_time_filter(start, end)} | stats count(*) as n by bin(1h) as hour, fingerprint"
        )
        with self.session():
            since = min(self._log_group_created(), start)
            before = (
                f"{errors} and {_time_filter(since, start)} | stats min(@timestamp) as first_seen, "
                "max(@timestamp) as last_before by fingerprint"
            )
            queries = [(window, start, end), (hourly, start, end)]
            if since < start:
                queries.append((before, since, start))
            answers = self.insights(queries)
        history = {r.get("fingerprint"): r for r in (answers[2] if len(answers) > 2 else [])}
        series: dict[str, list[tuple[datetime, int]]] = {}
        for raw in answers[1]:
            if "hour" in raw and "n" in raw:
                series.setdefault(raw.get("fingerprint") or "", []).append(
                    (_parse_time(raw["hour"]), int(_number(raw["n"])))
                )
        quiet = timedelta(days=quiet_days)
        groups = []
        for raw in answers[0]:
            if "n" not in raw:
                raise FigureUnavailable(
                    f"Logs Insights answered without the 'n' field asked for: {sorted(raw)}"
                )
            fp = raw.get("fingerprint") or ""
            first_in = _parse_time(raw["first_in_period"])
            past = history.get(fp, {})
            first_seen = _parse_time(past["first_seen"]) if past.get("first_seen") else first_in
            hours = sorted(series.get(fp, []))
            times = [_parse_time(past["last_before"])] if past.get("last_before") else []
            times += [h for h, _ in hours]
            came_back = any(b - a >= quiet for a, b in itertools.pairwise(times))
            new = first_seen >= start
            groups.append(
                {
                    "fingerprint": fp,
                    "count": int(_number(raw["n"])),
                    "users": int(_number(raw.get("users") or 0)),
                    "conversations": int(_number(raw.get("conversations") or 0)),
                    "first_in_period": first_in,
                    "last_seen": _parse_time(raw["last_seen"]),
                    "first_seen": first_seen,
                    "error_type": raw.get("error_type"),
                    "category": raw.get("category"),
                    "severity": raw.get("severity"),
                    "message": raw.get("message"),
                    "provider": raw.get("provider"),
                    "stage": raw.get("stage"),
                    "code": raw.get("code"),
                    "new": new,
                    "regressed": came_back and not new,
                    "status": "new" if new else ("regressed" if came_back else "ongoing"),
                    "hourly": hours,
                }
            )
        groups.sort(key=lambda g: (-g["count"], g["fingerprint"]))
        return groups

    def explore(self, top: int = 5) -> dict[str, Any]:
        """What the namespace and log group hold: metrics and their dimension values (CloudWatch
        lists values without counts, so at least ``top`` of them are shown, sorted), and from the
        event records, kinds, time span and events per day."""
        with self.session():
            since = self._log_group_created()
            now = self._now()
            kinds, days = self.insights(
                [
                    (f"{RECORD_FILTER} | stats count(*) as n, min(@timestamp) as first, max(@timestamp) as "
                     "last by kind", since, now),
                    (f"{RECORD_FILTER} | stats count(*) as n by bin(1d) as day", since, now),
                ]
            )  # fmt: skip
            dimensions: dict[str, set[str]] = {}
            metrics = {}
            for m in cw.METRICS:
                listed = self.series(m.name)
                if listed:
                    metrics[m.name] = len(listed)
                for dims in listed:
                    for name, value in dims.items():
                        dimensions.setdefault(cw.DIMENSION_COLUMNS[name], set()).add(value)
            stored = self._call("logs", "describe_log_groups", logGroupNamePrefix=self.store.log_group)
        by_kind = {r.get("kind") or "(none)": int(_number(r.get("n") or 0)) for r in kinds}
        firsts = [_parse_time(r["first"]) for r in kinds if r.get("first")]
        lasts = [_parse_time(r["last"]) for r in kinds if r.get("last")]
        total = sum(by_kind.values())
        size = next(
            (
                g.get("storedBytes")
                for g in stored.get("logGroups", [])
                if g["logGroupName"] == self.store.log_group
            ),
            None,
        )
        return {
            "events": total,
            "first_event": min(firsts) if firsts else None,
            "last_event": max(lasts) if lasts else None,
            "kinds": dict(sorted(by_kind.items(), key=lambda kv: -kv[1])),
            "events_per_day": sorted(
                (
                    {"day": _parse_time(r["day"]), "events": int(_number(r.get("n") or 0))}
                    for r in days
                    if r.get("day")
                ),
                key=lambda d: d["day"],
            ),
            "fields": {},
            "dimensions": {
                column: {"cardinality": len(values), "top": [], "values": sorted(values)[: max(top, 20)]}
                for column, values in sorted(dimensions.items())
            },
            "identifiers": {},
            "unpriced_models": [],
            "metrics": metrics,
            "namespace": self.store.namespace,
            "log_group": self.store.log_group,
            **({"storage_bytes": size, "bytes_per_event": (size / total) if total else None} if size else {}),
            "note": "dimension values are those ListMetrics lists (metrics with data in the last two weeks)",
        }


# -- small pieces ---------------------------------------------------------------------------------


def _replace(q: Query, **changes: Any) -> Query:
    from dataclasses import replace

    return replace(q, **changes)


def _matches(value: str | None, wanted: Any) -> bool:
    if value is None:
        return False
    if isinstance(wanted, str):
        return value.startswith(wanted[:-1]) if wanted.endswith("*") else value == wanted
    return value in wanted


def _typed(metric: Metric, value: float) -> float | int:
    if metric.aggregation == "count" or metric.column not in ("cost_usd", "units"):
        return round(value)
    return float(value)


def _empty_for(metric: Metric) -> Any:
    return lambda stat: 0.0 if metric.aggregation == "sum" and metric.column in ("cost_usd", "units") else 0


def _top(q: Query, rows: list[dict[str, Any]], stat: str) -> list[dict[str, Any]]:
    if q.limit and q.interval is None:
        rows = sorted(rows, key=lambda r: -(r[stat] or 0))[: q.limit]
    return rows


def _describe(cell: Cell) -> str:
    dims = ",".join(f"{k}={v}" for k, v in cell.dimensions.items() if k != "Bot")
    return f"{cell.metric}[{dims}]" if dims else cell.metric


def _aware(ts: Any) -> datetime:
    if isinstance(ts, str):
        ts = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _parse_time(text: Any) -> datetime:
    """A Logs Insights time value ("2026-11-01 00:00:00.000", UTC) or epoch milliseconds."""
    if isinstance(text, int | float) or (isinstance(text, str) and text.isdigit()):
        return datetime.fromtimestamp(int(text) / 1000, UTC)
    return datetime.fromisoformat(str(text).replace(" ", "T").replace("Z", "")).replace(tzinfo=UTC)


def _number(text: Any) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        raise FigureUnavailable(f"Logs Insights answered {text!r} where a number was expected") from None


def _stat(values: list[float], stat: str) -> float | int | None:
    if stat == "count":
        return len(values)
    if not values:
        return None
    if stat == "avg":
        return sum(values) / len(values)
    if stat == "max":
        return max(values)
    # Linear interpolation between closest ranks, as DuckDB's quantile_cont.
    ordered = sorted(values)
    pos = PERCENTILES[stat] * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _literal(value: str) -> str:
    """A Logs Insights string literal: the text in double quotes, backslashes and quotes escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _condition(field: str, wanted: Any) -> str:
    if wanted is None:
        return f"not ispresent({field})"
    if isinstance(wanted, str):
        if wanted.endswith("*"):
            pattern = re.escape(wanted[:-1]).replace("/", "\\/")
            return f"{field} like /^{pattern}/"
        return f"{field} = {_literal(wanted)}"
    return f"{field} in [{', '.join(_literal(v) for v in wanted)}]"


def _time_filter(start: datetime, end: datetime) -> str:
    # StartQuery's range is whole seconds and includes its end: the exact window is filtered here.
    return (
        f"@timestamp >= {int(start.timestamp() * 1000)} and @timestamp < {math.ceil(end.timestamp() * 1000)}"
    )


__all__ = ["LATENCY_FAMILIES", "SOURCES", "CloudWatchEngine", "resolution", "spans"]


def _latency_row(
    q: Query, group: tuple, bucket: datetime, members: list[int], found: dict[tuple[int, str], dict]
) -> dict[str, Any]:
    """One group's figures in one bucket, from the statistics of the series that hold it."""
    row: dict[str, Any] = {"bucket": bucket, **dict(zip(q.by, group, strict=True))}
    count = sum(found[(i, "SampleCount")][bucket] for i in members)
    for s in q.stats:
        if s == "count":
            row[s] = round(count)
        elif s == "avg":
            row[s] = sum(found[(i, "Sum")].get(bucket, 0.0) for i in members) / count
        elif s == "max":
            row[s] = max(found[(i, "Maximum")].get(bucket, -math.inf) for i in members)
        else:
            row[s] = found[(members[0], s)].get(bucket)
    return row
