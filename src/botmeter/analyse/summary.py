"""The period summary: totals and averages for cost, engagement, errors and latency, each against
the previous period of equal length, with anomalies and alerts. Plain data; ``report.responses``
renders it for each consumer (text, SMS, Slack, Markdown, JSON...).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from .catalogue import CATALOGUE
from .gaps import Gaps
from .query import iso, last_days, previous_window, ratio
from .trends import anomalies, change, month_end_forecast, week_over_week

# Below these, a percentage change says more about chance than about the bot.
MIN_COUNT = 20
MIN_COST_USD = 1.0

SUMMARY_VERSION = 1


def _figure(current: Any, previous: Any, *, floor: float = 0.0, enough: bool = True) -> dict[str, Any]:
    """A figure with its change; none when the previous period is too small to compare with."""
    out: dict[str, Any] = {"value": current, "previous": previous, "change": None}
    if current is None and previous is None:
        out["note"] = "no data"
    elif previous is None or current is None or not enough or abs(previous) < floor:
        out["note"] = "too little data to compare"
    else:
        out["change"] = change(current, previous)
        if out["change"] is None:
            out["note"] = "nothing in the previous period"
    return out


def _ms(*seconds: float | None) -> tuple[float | None, ...]:
    return tuple(None if s is None else s * 1000 for s in seconds)


def _enough(current: Any, previous: Any) -> bool:
    return min(current or 0, previous or 0) >= MIN_COUNT


def summarise(
    reader: Any,
    days: int = 7,
    now: datetime | None = None,
    *,
    monthly_budget_usd: float | None = None,
    alerts: list[dict[str, Any]] | None = None,
    compare_weeks: bool = True,
    with_groups: bool = True,
    window: tuple[datetime, datetime] | None = None,
) -> dict[str, Any]:
    """The summary of the last ``days`` days (today so far included) against the ``days`` before.

    ``compare_weeks=False`` leaves out the week-over-week figures and ``with_groups=False`` the
    error groups (their counts are None then): a quick status need not pay for them. ``window``
    (start, end) replaces the last ``days`` days; the previous period is then ``days`` days earlier."""
    now = (now or reader.now or datetime.now(UTC)).astimezone(UTC)
    window = window or last_days(days, now)
    before = previous_window(*window, days=days)
    missing: dict[str, str] = {}  # figures this store cannot give, and why (never shown as zero)
    gaps = Gaps(missing)
    attempt = gaps.get  # one figure the store fails to give is named with the reason; the rest answers
    with reader.session():

        def both(metric: str, stat: str | None = None) -> tuple[Any, Any]:
            return attempt(
                metric,
                lambda: tuple(
                    reader.query(metric, start=w[0], end=w[1], interval=None, stat=stat).total()
                    for w in (window, before)
                ),
                (None, None),
            )

        cost, cost_prev = both("cost_usd")
        llm, llm_prev = both("llm_calls")
        unpriced, _ = both("unpriced_calls")
        active, active_prev = both("active_users")
        convs, convs_prev = both("conversations")
        # The same query as above (answered once): its notes say whether sessions were split.
        split_note = attempt(
            "conversations:notes",
            lambda: next(
                (n for n in reader.query("conversations", start=window[0], end=window[1], interval=None).notes
                 if "split at" in n),
                None,
            ),
            None,
        )  # fmt: skip
        msgs, msgs_prev = both("messages")
        inbound, inbound_prev = both(CATALOGUE["error_rate"].denominator)
        new, new_prev = both("new_users")
        # The error rate's parts as the catalogue defines it (errors / inbound messages).
        errors, errors_prev = both(CATALOGUE["error_rate"].numerator)
        # The headline speed is how long users wait for a reply: the reply stage's timings, one
        # pass per period for the three percentiles (exact percentiles read the events).
        empty_lat = {"p50": None, "p95": None, "p99": None}
        lat = [
            attempt(
                "reply_latency_s",
                lambda w=w: reader.query(
                    "reply_latency_s", start=w[0], end=w[1], interval=None, stat="p50,p95,p99"
                ).rows[0],
                empty_lat,
            )
            for w in (window, before)
        ]
        (p50, p95, p99), (p50_prev, p95_prev, p99_prev) = ((r["p50"], r["p95"], r["p99"]) for r in lat)
        failed, failed_prev = both("failed_replies")
        length, _ = both("messages_per_conversation", "avg")
        duration, _ = both("conversation_duration_s", "avg")
        by_provider = attempt(
            "cost_usd:provider",
            lambda: (
                reader.query("cost_usd", start=window[0], end=window[1], interval=None, by="provider").rows
            ),
            [],
        )
        by_category = attempt(
            "errors:category",
            lambda: reader.query("errors", start=window[0], end=window[1], interval=None, by="category").rows,
            [],
        )
        groups = (
            attempt("error_groups", lambda: reader.error_groups(start=window[0], end=window[1]), [])
            if with_groups
            else None
        )
        failure = ratio(failed, inbound)
        failure_prev = ratio(failed_prev, inbound_prev)
        rate = ratio(errors, inbound)
        rate_prev = ratio(errors_prev, inbound_prev)
        per_conv = ratio(cost, convs)
        per_conv_prev = ratio(cost_prev, convs_prev)
        per_user = ratio(cost, active)
        per_user_prev = ratio(cost_prev, active_prev)
        found = attempt("anomalies", lambda: anomalies(reader, window[0], window[1]), [])
        weekly = {
            name: attempt(name, lambda m=metric, st=stat: week_over_week(reader, m, now, st), None)
            if compare_weeks
            else None
            for name, metric, stat in (
                ("cost_usd", "cost_usd", None),
                ("active_users", "active_users", None),
                ("conversations", "conversations", None),
                ("errors", "errors", None),
                ("error_rate", "error_rate", None),
                ("reply_latency_p95_s", "reply_latency_s", "p95"),
            )
        }
        forecast = attempt("forecast", lambda: month_end_forecast(reader, now, monthly_budget_usd), None)
    gaps.raise_if_nothing()  # the store answered nothing at all: that is the answer, not a list of gaps
    enough_inbound = _enough(inbound, inbound_prev)
    gap = reader.session_gap_minutes
    return {
        "version": SUMMARY_VERSION,
        "period": {
            "days": days,
            "start": iso(window[0]),
            "end": iso(window[1]),
            "previous_start": iso(before[0]),
            "previous_end": iso(before[1]),
        },
        "costs": {
            "total_usd": _figure(cost, cost_prev, floor=MIN_COST_USD),
            "per_conversation_usd": _figure(per_conv, per_conv_prev, enough=_enough(convs, convs_prev)),
            "per_active_user_usd": _figure(per_user, per_user_prev, enough=_enough(active, active_prev)),
            "llm_calls": _figure(llm, llm_prev, floor=MIN_COUNT),
            "unpriced_calls": unpriced,
            # A provider whose every call was unpriced: None (unknown), not 0.
            "by_provider": {
                (r["provider"] or "(no provider)"): r["sum"]
                for r in by_provider
                if r["sum"] is None or r["sum"]
            },
            "forecast": forecast,
        },
        "engagement": {
            "active_users": _figure(active, active_prev, floor=MIN_COUNT),
            "new_users": _figure(new, new_prev, floor=MIN_COUNT),
            "conversations": _figure(convs, convs_prev, floor=MIN_COUNT),
            "messages": _figure(msgs, msgs_prev, floor=MIN_COUNT),
            "inbound_messages": _figure(inbound, inbound_prev, floor=MIN_COUNT),
            "messages_per_conversation": length,
            "conversation_duration_s": duration,
            "session_gap_minutes": gap,
            # Said only where messages without a conversation id were split into sessions.
            "note": split_note,
        },
        "errors": {
            "errors": _figure(errors, errors_prev, floor=MIN_COUNT),
            "error_rate": _figure(rate, rate_prev, enough=enough_inbound),
            "failed_replies": _figure(failed, failed_prev, floor=MIN_COUNT),
            "reply_failure_rate": _figure(failure, failure_prev, enough=enough_inbound),
            "by_category": {
                (r["category"] or "(no category)"): r["count"] for r in by_category if r["count"]
            },
            "groups": None if groups is None else len(groups),
            "new_groups": None if groups is None else sum(1 for g in groups if g["status"] == "new"),
            "regressed_groups": None
            if groups is None
            else sum(1 for g in groups if g["status"] == "regressed"),
            "top_groups": [
                {k: (iso(v) if isinstance(v, datetime) else v) for k, v in g.items() if k != "hourly"}
                for g in (groups or [])[:5]
            ],
        },
        # The reply latency (timings of the reply stage): seconds, and the same in milliseconds.
        "latency": {
            "reply_stage": getattr(reader, "reply_stage", "reply"),
            "reply_p50_s": _figure(p50, p50_prev, enough=enough_inbound),
            "reply_p95_s": _figure(p95, p95_prev, enough=enough_inbound),
            "reply_p99_s": _figure(p99, p99_prev, enough=enough_inbound),
            "p50_ms": _figure(*_ms(p50, p50_prev), enough=enough_inbound),
            "p95_ms": _figure(*_ms(p95, p95_prev), enough=enough_inbound),
            "p99_ms": _figure(*_ms(p99, p99_prev), enough=enough_inbound),
        },
        "anomalies": found,
        "alerts": alerts or [],
        "week_over_week": weekly,
        "unavailable": missing,
    }
