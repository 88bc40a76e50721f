"""Trends: daily series, week-over-week change, anomalies that respect the weekly rhythm, and the
month-end cost forecast.

Anomalies: each complete day is compared with the same weekday in up to ``weeks`` earlier weeks
(a Saturday with a Saturday), by a robust score: (value - median) / (1.4826 x median absolute
deviation). The scale has a floor (a share of the median, and a metric-specific minimum) so a flat
history does not turn a small wobble into an alarm. A day is flagged when the score passes
``threshold`` and the change is large enough to matter.
"""

from __future__ import annotations

import calendar
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from .query import FigureUnavailable, floor_to, iso


@dataclass(frozen=True)
class Watched:
    metric: str
    stat: str | None
    label: str
    directions: tuple[str, ...]  # which way matters: "spike", "drop"
    min_scale: float  # the smallest deviation that counts as noise, in the metric's unit
    fmt: str


WATCHED: tuple[Watched, ...] = (
    Watched("cost_usd", None, "cost", ("spike", "drop"), 0.01, "${:,.2f}"),
    Watched("error_rate", None, "error rate", ("spike",), 0.01, "{:.1%}"),
    Watched("reply_latency_s", "p95", "p95 reply latency", ("spike",), 0.1, "{:,.2f} s"),
    Watched("active_users", None, "active users", ("spike", "drop"), 3.0, "{:,.0f}"),
)

MIN_BASELINE = 3
THRESHOLD = 3.5


def daily_series(
    reader: Any, metric: str, start: datetime, end: datetime, stat: str | None = None
) -> list[tuple[datetime, float | None]]:
    result = reader.query(metric, start=start, end=end, interval="day", stat=stat)
    key = result.stats[0]
    return [(r["bucket"], r[key]) for r in result.rows]


def robust_score(value: float, baseline: Sequence[float], min_scale: float) -> tuple[float, float, float]:
    """(score, median, scale) of ``value`` against ``baseline``."""
    median = statistics.median(baseline)
    mad = statistics.median(abs(x - median) for x in baseline)
    scale = max(1.4826 * mad, 0.1 * abs(median), min_scale)
    return (value - median) / scale, median, scale


def anomalies(
    reader: Any,
    start: datetime,
    end: datetime,
    *,
    weeks: int = 4,
    threshold: float = THRESHOLD,
    watched: Sequence[Watched] = WATCHED,
) -> list[dict[str, Any]]:
    """Days in [start, end) that stand out against the same weekday in earlier weeks."""
    # Complete days only: a day in progress would always look like a drop.
    last_day = floor_to(end, "day")
    first_day = floor_to(start, "day")
    if first_day >= last_day:
        return []
    history_start = first_day - timedelta(days=7 * weeks)
    found = []
    for w in watched:
        try:
            series = dict(daily_series(reader, w.metric, history_start, last_day, w.stat))
        except FigureUnavailable:
            continue  # a store that cannot give this series (the summary says which) has no anomalies in it
        # Days before the series' first non-zero value come back as 0 but are no baseline: the bot
        # (or the store) was not there yet, and a new bot's first week would all look like spikes.
        begun = min((d for d, v in series.items() if v), default=last_day)
        day = first_day
        while day < last_day:
            value = series.get(day)
            baseline = [
                v
                for k in range(1, weeks + 1)
                if (d := day - timedelta(days=7 * k)) >= begun and (v := series.get(d)) is not None
            ]
            if value is not None and len(baseline) >= MIN_BASELINE:
                score, median, _ = robust_score(value, baseline, w.min_scale)
                direction = "spike" if score > 0 else "drop"
                if abs(score) >= threshold and direction in w.directions:
                    found.append(_anomaly(w, day, value, median, score, direction, len(baseline)))
            day += timedelta(days=1)
    found.sort(key=lambda a: (a["day"], a["metric"]))
    return found


def _anomaly(
    w: Watched, day: datetime, value: float, median: float, score: float, direction: str, n: int
) -> dict[str, Any]:
    weekday = calendar.day_name[day.weekday()]
    shown, base = w.fmt.format(value), w.fmt.format(median)
    ratio = f" ({value / median:.1f}x)" if median else ""
    why = (
        f"{w.label} on {weekday} {day:%Y-%m-%d} was {shown}{ratio}, against a median of {base} "
        f"on the {n} previous {weekday}s (robust score {score:+.1f})"
    )
    return {
        "metric": w.metric if w.stat is None else f"{w.metric}:{w.stat}",
        "label": w.label,
        "day": iso(day),
        "direction": direction,
        "value": value,
        "baseline_median": median,
        "score": round(score, 2),
        "explanation": why,
    }


def week_over_week(reader: Any, metric: str, now: datetime, stat: str | None = None) -> dict[str, Any]:
    """The last 7 complete days against the 7 before them."""
    today = floor_to(now, "day")
    this = reader.query(metric, start=today - timedelta(days=7), end=today, interval=None, stat=stat).total()
    before = reader.query(
        metric, start=today - timedelta(days=14), end=today - timedelta(days=7), interval=None, stat=stat
    ).total()
    return {"metric": metric, "this_week": this, "previous_week": before, "change": change(this, before)}


def change(current: float | None, previous: float | None) -> float | None:
    """Relative change, or None when there is nothing to compare with."""
    if current is None or previous is None or previous == 0:
        return None
    return (current - previous) / abs(previous)


def month_end_forecast(reader: Any, now: datetime, budget_usd: float | None = None) -> dict[str, Any]:
    """Cost so far this month plus the recent daily rate for the days left."""
    now = now.astimezone(UTC)
    month_start = floor_to(now, "month")
    days_in_month = calendar.monthrange(now.year, now.month)[1]
    month_end = month_start + timedelta(days=days_in_month)
    so_far = reader.query("cost_usd", start=month_start, end=now, interval=None).total() or 0.0
    today = floor_to(now, "day")
    # The daily rate: the average over the last 7 complete days that have data (last month's
    # included), so a bot started two days ago is not averaged over five empty days; with no
    # complete day yet, the month so far.
    daily = reader.query("cost_usd", start=today - timedelta(days=7), end=today, interval="day")
    spent = [r["sum"] for r in daily.rows if r["sum"]]
    elapsed_days = (now - month_start).total_seconds() / 86400
    if spent:
        rate, based_on = sum(spent) / len(spent), len(spent)
        method = (
            f"month to date + average daily cost of the last {based_on} complete "
            f"day{'s' if based_on != 1 else ''} with data x days left"
        )
    else:
        rate = so_far / elapsed_days if elapsed_days > 0 else 0.0
        based_on = 0
        method = "month to date + the month's cost so far per day x days left (no complete day yet)"
    remaining_days = (month_end - now).total_seconds() / 86400
    projected = so_far + rate * remaining_days
    out: dict[str, Any] = {
        "month": f"{now:%Y-%m}",
        "month_to_date_usd": so_far,
        "daily_rate_usd": rate,
        "days_left": round(remaining_days, 2),
        "projected_usd": projected,
        "days_of_data": based_on,
        "method": method,
    }
    if budget_usd is not None:
        out["budget_usd"] = budget_usd
        out["over_budget"] = projected > budget_usd
    return out
