"""Typed queries: a metric over a UTC time window, bucketed, broken down, filtered; checked before it runs.

Nothing a user types reaches SQL as text: metric, dimension and statistic names are looked up in
the catalogue (unknown ones are refused with the valid ones listed) and values are bound as
parameters. Engines (``botmeter.backends.*.engine``) compile a checked ``Query``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

from ..exceptions import BotmeterError
from .catalogue import CATALOGUE, DEFAULT_REPLY_STAGE, Metric, for_reply_stage, load_plugins

INTERVALS = ("hour", "day", "week", "month")
DEFAULT_SESSION_GAP_MINUTES = 30.0


class QueryError(BotmeterError, ValueError):
    """A query that cannot run as asked; the message names the field, the value and what is valid."""


class FigureUnavailable(BotmeterError):
    """The store is there but cannot give this figure (say, retention from CloudWatch metrics); the message
    says why. Not ``StoreUnavailable``, which is a store that cannot be reached or opened."""


def _choices(values: Iterable[str]) -> str:
    return ", ".join(sorted(values))


def utc(value: datetime | date | str, field_name: str) -> datetime:
    """An aware UTC datetime from a datetime (naive means UTC), a date or an ISO string."""
    try:
        return _utc(value, field_name)
    except OverflowError:  # 9999-12-31T23:59-05:00 is past the last datetime once in UTC
        raise QueryError(f"{field_name}: {value!s:.40} is out of range") from None


def _utc(value: datetime | date | str, field_name: str) -> datetime:
    if isinstance(value, str):
        text = value.strip().replace("Z", "+00:00")
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise QueryError(
                f"{field_name}: {value!r} is not an ISO date or time such as 2026-11-01 or 2026-11-01T12:00Z"
            ) from None
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if not isinstance(value, datetime):
        raise QueryError(f"{field_name}: expected a datetime, date or ISO string, got {value!r}")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def floor_to(ts: datetime, interval: str) -> datetime:
    """The start of the calendar bucket holding ``ts`` (weeks start on Monday), UTC."""
    ts = ts.astimezone(UTC)
    if interval == "hour":
        return ts.replace(minute=0, second=0, microsecond=0)
    day = ts.replace(hour=0, minute=0, second=0, microsecond=0)
    if interval == "day":
        return day
    if interval == "week":
        return day - timedelta(days=day.weekday())
    if interval == "month":
        return day.replace(day=1)
    raise QueryError(f"interval: {interval!r} is not one of {', '.join(INTERVALS)} or none")


def next_bucket(ts: datetime, interval: str) -> datetime:
    if interval == "hour":
        return ts + timedelta(hours=1)
    if interval == "day":
        return ts + timedelta(days=1)
    if interval == "week":
        return ts + timedelta(days=7)
    return (ts.replace(day=28) + timedelta(days=4)).replace(day=1)


def last_days(days: int, now: datetime | None = None) -> tuple[datetime, datetime]:
    """The window of the last ``days`` calendar days: today so far and the ``days - 1`` before it."""
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
        raise QueryError(f"days: expected a whole number from 1 to {MAX_DAYS}, got {days!r}")
    end = (now or datetime.now(UTC)).astimezone(UTC)
    start = floor_to(end, "day") - timedelta(days=days - 1)
    return start, end


MAX_DAYS: Final = 3650  # the longest period a command, a chat reply or an HTTP request may ask for
MAX_BUCKETS: Final = 10_000  # the most buckets one query may have (about 416 days by the hour)
MAX_LIMIT: Final = 100_000  # the most groups a breakdown may keep
EARLIEST: Final = datetime(1970, 1, 1, tzinfo=UTC)  # no event is older; an earlier window is a typo
LATEST_AHEAD: Final = timedelta(days=366)  # a window may end at most this far after now


def _day(ts: datetime) -> str:
    return ts.date().isoformat()  # 0001-01-01, where strftime would write 1-01-01


def check_end(end: datetime, now: datetime | None = None) -> None:
    """``end`` within the range every window keeps to (checked before any arithmetic on it)."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    if end <= EARLIEST:
        raise QueryError(f"end: {_day(end)} is before {_day(EARLIEST)}; no event is that old")
    if end > now + LATEST_AHEAD:
        raise QueryError(f"end: {_day(end)} is more than a year ahead; at most {_day(now + LATEST_AHEAD)}")


def check_window(
    start: datetime, end: datetime, interval: str | None = None, now: datetime | None = None
) -> None:
    """The one rule on windows for every interface: from 1970 to a year ahead, at most ``MAX_DAYS``
    long, at most ``MAX_BUCKETS`` buckets. A ``QueryError`` names the field to change."""
    if start < EARLIEST:
        raise QueryError(f"start: {_day(start)} is before {_day(EARLIEST)}; no event is that old")
    check_end(end, now)
    if end - start > timedelta(days=MAX_DAYS + 1):  # + 1: the first and last days may be partial
        raise QueryError(
            f"start: the window from {_day(start)} to {_day(end)} is {(end - start).days:,} days long; "
            f"at most {MAX_DAYS} days"
        )
    if interval is not None:
        seconds = (end - start).total_seconds()
        size = {"hour": 3600, "day": 86400, "week": 7 * 86400, "month": 28 * 86400}.get(interval, 86400)
        buckets = int(seconds // size) + 2
        if buckets > MAX_BUCKETS:
            raise QueryError(
                f"interval: {interval} over {seconds / 86400:,.0f} days is about {buckets:,} buckets; "
                f"at most {MAX_BUCKETS:,}: choose a longer interval or a shorter window"
            )


def days_from_text(raw: Any) -> int | None:
    """A number of days as people type it ("7", 7, " 30 "), or None when it is not a whole number
    from 1 to ``MAX_DAYS``."""
    text = str(raw).strip()
    if isinstance(raw, bool) or not re.fullmatch(r"\d{1,5}", text) or not 1 <= int(text) <= MAX_DAYS:
        return None
    return int(text)


def window_of(
    days: int | None = None,
    start: datetime | date | str | None = None,
    end: datetime | date | str | None = None,
    now: datetime | None = None,
    default_days: int = 7,
) -> tuple[datetime, datetime]:
    """The window ``--days``/``--start``/``--end`` name: ``days`` (today so far and the days before
    it, ``default_days`` when none is given), or ``start`` and/or ``end`` (ISO, UTC). Every command
    and the Python API read a window this way."""
    if start is None and end is None:
        return last_days(default_days if days is None else days, now)
    if days is not None and start is not None and end is not None:
        raise QueryError("days: give --days or --start/--end, not both")
    end_ts = utc(end, "end") if end is not None else (now or datetime.now(UTC)).astimezone(UTC)
    if end is not None:  # before any arithmetic on it: 0001-01-01 minus a week overflows
        check_end(end_ts, now)
    start_ts = utc(start, "start") if start is not None else last_days(days or default_days, end_ts)[0]
    if start_ts >= end_ts:
        raise QueryError(f"start: {start_ts.isoformat()} is not before end {end_ts.isoformat()}")
    check_window(start_ts, end_ts, now=now)
    return start_ts, end_ts


def previous_window(start: datetime, end: datetime, days: int | None = None) -> tuple[datetime, datetime]:
    """The period of equal length just before: ``days`` calendar days earlier when given."""
    shift = timedelta(days=days) if days else end - start
    return start - shift, end - shift


@dataclass(frozen=True)
class Query:
    metric: str
    start: datetime
    end: datetime
    interval: str | None = "day"
    by: tuple[str, ...] = ()
    filters: tuple[tuple[str, tuple[str, ...]], ...] = ()
    stats: tuple[str, ...] = ()
    session_gap_s: int = int(DEFAULT_SESSION_GAP_MINUTES * 60)
    periods: int = 8  # retention: how many days or weeks after first seen
    limit: int | None = None  # without interval: only the largest groups
    reply_stage: str = DEFAULT_REPLY_STAGE  # the stage whose timings are the reply latency

    @property
    def definition(self) -> Metric:
        return for_reply_stage(CATALOGUE[self.metric], self.reply_stage)

    def buckets(self) -> list[datetime]:
        """Every bucket start in the window, in order (one for no interval: the window's start)."""
        if self.interval is None:
            return [self.start]
        out = []
        b = floor_to(self.start, self.interval)
        while b < self.end:
            out.append(b)
            b = next_bucket(b, self.interval)
        return out

    def with_metric(self, metric: str) -> Query:
        definition = CATALOGUE[metric]
        return Query(
            metric,
            self.start,
            self.end,
            self.interval,
            self.by,
            self.filters,
            (definition.stats[0],),
            self.session_gap_s,
            self.periods,
            self.limit,
            self.reply_stage,
        )


def make_query(
    metric: str,
    *,
    days: int | None = None,
    start: datetime | date | str | None = None,
    end: datetime | date | str | None = None,
    interval: str | None = "day",
    by: str | Sequence[str] = (),
    filters: Mapping[str, str | Sequence[str]] | None = None,
    stat: str | Sequence[str] | None = None,
    session_gap_minutes: float = DEFAULT_SESSION_GAP_MINUTES,
    periods: int = 8,
    limit: int | None = None,
    now: datetime | None = None,
    reply_stage: str = DEFAULT_REPLY_STAGE,
) -> Query:
    """Builds and checks a query; every problem is a ``QueryError`` naming the field and value."""
    load_plugins()
    definition = CATALOGUE.get(metric) if isinstance(metric, str) else None
    if definition is None:
        raise QueryError(f"metric: unknown metric {metric!r}; valid metrics: {_choices(CATALOGUE)}")
    window = window_of(days, start, end, now)
    interval = _checked_interval(interval)
    dims = _checked_dims(definition, by)
    checked_filters = _checked_filters(definition, filters)
    stats = _checked_stats(definition, stat)
    _check_numbers(session_gap_minutes, periods, limit)
    check_window(*window, interval, now)
    if limit is not None and (interval is not None or not dims):
        raise QueryError(
            "limit: keeps the largest groups of a breakdown; use it with --by and --interval none"
        )
    if not isinstance(reply_stage, str) or not reply_stage.strip():
        raise QueryError(f"reply_stage: expected a stage name, got {reply_stage!r}")
    if definition.aggregation == "retention" and interval not in ("day", "week"):
        raise QueryError(f"interval: retention cohorts are by day or week, got {interval or 'none'!r}")
    return Query(
        metric,
        window[0],
        window[1],
        interval,
        dims,
        checked_filters,
        stats,
        round(session_gap_minutes * 60),
        periods,
        limit,
        reply_stage,
    )


def _checked_interval(interval: str | None) -> str | None:
    if interval in ("none", "", None):
        return None
    if interval not in INTERVALS:
        raise QueryError(f"interval: {interval!r} is not one of {', '.join(INTERVALS)} or none")
    return interval


def _checked_dims(definition: Metric, by: str | Sequence[str]) -> tuple[str, ...]:
    dims = tuple(d.strip() for d in (by.split(",") if isinstance(by, str) else by) if d.strip())
    for dim in dims:
        if dim not in definition.dimensions:
            valid = _choices(definition.dimensions) or "none"
            raise QueryError(
                f"by: metric {definition.name!r} cannot be broken down by {dim!r}; valid dimensions: {valid}"
            )
    if len(set(dims)) != len(dims):
        raise QueryError(f"by: {','.join(dims)!r} names a dimension twice")
    return dims


def _checked_filters(
    definition: Metric, filters: Mapping[str, str | Sequence[str]] | None
) -> tuple[tuple[str, tuple[str, ...]], ...]:
    checked = []
    for dim, value in (filters or {}).items():
        if dim not in definition.dimensions:
            valid = _choices(definition.dimensions) or "none"
            raise QueryError(
                f"filter: metric {definition.name!r} cannot be filtered by {dim!r}; valid dimensions: {valid}"
            )
        values = (value,) if isinstance(value, str) else tuple(value)
        if not values or not all(isinstance(v, str) for v in values):
            raise QueryError(f"filter: {dim}= needs one or more text values, got {value!r}")
        checked.append((dim, values))
    return tuple(checked)


def _checked_stats(definition: Metric, stat: str | Sequence[str] | None) -> tuple[str, ...]:
    if stat is None:
        return (definition.stats[0],)
    stats = tuple(s.strip() for s in (stat.split(",") if isinstance(stat, str) else stat) if s.strip())
    for s in stats:
        if s not in definition.stats and s != "value":
            valid = _choices(definition.stats)
            raise QueryError(f"stat: metric {definition.name!r} has no statistic {s!r}; valid: {valid}")
    # "value" names the metric's own statistic, whichever it is.
    return tuple(definition.stats[0] if s == "value" else s for s in stats)


def _check_numbers(session_gap_minutes: float, periods: int, limit: int | None) -> None:
    if (
        isinstance(session_gap_minutes, bool)
        or not isinstance(session_gap_minutes, int | float)
        or not math.isfinite(session_gap_minutes)
        or session_gap_minutes <= 0
    ):
        raise QueryError(f"session_gap_minutes: expected a number > 0, got {session_gap_minutes!r}")
    if isinstance(periods, bool) or not isinstance(periods, int) or not 1 <= periods <= 366:
        raise QueryError(f"periods: expected a whole number from 1 to 366, got {periods!r}")
    if limit is not None and (
        isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT
    ):
        raise QueryError(f"limit: expected a whole number from 1 to {MAX_LIMIT:,}, got {limit!r}")


@dataclass
class Result:
    """Rows of a query: ``bucket`` (aware UTC datetime), one key per dimension, one per statistic."""

    query: Query
    rows: list[dict[str, Any]]
    source: str = ""  # what answered: "rollups", "events", "cloudwatch", ...
    notes: list[str] = field(default_factory=list)

    @property
    def metric(self) -> Metric:
        return self.query.definition

    @property
    def stats(self) -> tuple[str, ...]:
        return self.query.stats

    def value_keys(self) -> list[str]:
        """The keys of the figures in JSON rows: ``value`` for one statistic, else each statistic's name."""
        return ["value"] if len(self.stats) == 1 else list(self.stats)

    def json_rows(self) -> list[dict[str, Any]]:
        out = []
        single = len(self.stats) == 1
        for row in self.rows:
            item: dict[str, Any] = {"bucket": iso(row["bucket"])}
            for key, value in row.items():
                if key == "bucket" or key in self.stats:
                    continue
                item[key] = iso(value) if isinstance(value, datetime) else value
            if single:
                item["value"] = row[self.stats[0]]
            else:
                for s in self.stats:
                    item[s] = row[s]
            out.append(item)
        return out

    def total(self, stat: str | None = None) -> float | None:
        """The single figure of a query without interval or dimensions."""
        stat = stat or self.stats[0]
        if not self.rows:
            return None
        return self.rows[0].get(stat)

    def to_frame(self) -> Any:
        """A pandas DataFrame when pandas is installed, else a pyarrow Table."""
        return frame(self.json_rows(), time_column="bucket")


def frame(rows: list[dict[str, Any]], time_column: str | None = None) -> Any:
    """Rows as a pandas DataFrame when pandas is installed (``time_column`` parsed as UTC times),
    else as a pyarrow Table."""
    try:
        import pandas as pd
    except ImportError:
        import pyarrow as pa

        return pa.Table.from_pylist(rows)
    out = pd.DataFrame(rows)
    if time_column and time_column in out:
        out[time_column] = pd.to_datetime(out[time_column], utc=True)
    return out


def iso(value: datetime | date | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return value.isoformat()


def fill_buckets(query: Query, rows: list[dict[str, Any]], empty: Any) -> list[dict[str, Any]]:
    """Every bucket for every group that appears: missing buckets come back as ``empty``."""
    dims = query.by
    stats = query.stats
    buckets = query.buckets()
    groups: dict[tuple, dict[datetime, dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row.get(d) for d in dims), {})[row["bucket"]] = row
    if not groups and not dims:
        groups[()] = {}
    out = []
    for key in sorted(groups, key=lambda k: tuple((v is None, str(v)) for v in k)):
        seen = groups[key]
        for b in buckets:
            row = seen.get(b)
            if row is None:
                row = {"bucket": b, **dict(zip(dims, key, strict=True)), **{s: empty(s) for s in stats}}
            out.append(row)
    out.sort(key=lambda r: (r["bucket"], *((r.get(d) is None, str(r.get(d))) for d in dims)))
    return out


def scaled(result: Result) -> Result:
    """A result in its metric's unit: figures times ``Metric.scale`` (counts stay counts)."""
    scale = result.metric.scale
    if scale == 1.0:
        return result
    for row in result.rows:
        for s in result.stats:
            if s != "count" and row.get(s) is not None:
                row[s] = row[s] * scale
    return result


def top_groups(query: Query, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """With ``limit``: only the largest groups (by the first statistic), largest first."""
    if not query.limit:
        return rows
    stat = query.stats[0]
    return sorted(rows, key=lambda r: (r[stat] is None, -(r[stat] or 0)))[: query.limit]


def ratio(part: Any, whole: Any) -> float | None:
    """part / whole: the one way a rate is worked out (error rate, reply failure rate, cost per
    user), by the engines and the summary alike. None when the part is unknown (a figure the store
    could not give) or the whole is 0 or unknown."""
    return part / whole if part is not None and whole else None


def ratio_result(query: Query, num: Result, den: Result) -> Result:
    """numerator / denominator per bucket and group (None where the denominator is 0 or missing)."""
    n_stat, d_stat, stat = num.stats[0], den.stats[0], query.stats[0]

    def key(row: dict[str, Any]) -> tuple:
        return (row["bucket"], *(row.get(d) for d in query.by))

    numerators = {key(r): r[n_stat] for r in num.rows}
    rows = []
    for row in den.rows:
        n = numerators.pop(key(row), 0) or 0
        d = row[d_stat]
        rows.append({"bucket": row["bucket"], **{k: row.get(k) for k in query.by}, stat: ratio(n, d)})
    for k in numerators:  # a numerator with no denominator row at all: no ratio
        rows.append({"bucket": k[0], **dict(zip(query.by, k[1:], strict=True)), stat: None})
    return Result(
        query,
        top_groups(query, fill_buckets(query, rows, lambda s: None)),
        f"{num.source}+{den.source}",
        list(dict.fromkeys([*num.notes, *den.notes])),
    )
