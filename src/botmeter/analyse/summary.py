"""The period summary: totals and averages for cost, engagement, errors and latency, each against
the previous period of equal length, with anomalies and alerts. Plain data; ``as_text`` and
``as_markdown`` render it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from .query import Unavailable, iso, last_days, previous_window
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
) -> dict[str, Any]:
    """The summary of the last ``days`` days (today so far included) against the ``days`` before."""
    now = (now or reader.now or datetime.now(UTC)).astimezone(UTC)
    window = last_days(days, now)
    before = previous_window(*window, days=days)
    missing: dict[str, str] = {}  # figures this store cannot give, and why (never shown as zero)
    with reader.session():

        def both(metric: str, stat: str | None = None) -> tuple[Any, Any]:
            try:
                return (
                    reader.query(metric, start=window[0], end=window[1], interval=None, stat=stat).total(),
                    reader.query(metric, start=before[0], end=before[1], interval=None, stat=stat).total(),
                )
            except Unavailable as exc:
                missing[metric] = str(exc)
                return None, None

        def attempt(name: str, fn: Any, fallback: Any) -> Any:
            try:
                return fn()
            except Unavailable as exc:
                missing[name] = str(exc)
                return fallback

        cost, cost_prev = both("cost_usd")
        llm, llm_prev = both("llm_calls")
        unpriced, _ = both("unpriced_calls")
        active, active_prev = both("active_users")
        convs, convs_prev = both("conversations")
        msgs, msgs_prev = both("messages")
        inbound, inbound_prev = both("inbound_messages")
        new, new_prev = both("new_users")
        errors, errors_prev = both("errors")
        # One pass per period for the three percentiles: exact percentiles read the events.
        empty_lat = {"p50": None, "p95": None, "p99": None}
        lat = [
            attempt(
                "latency_ms",
                lambda w=w: reader.query(
                    "latency_ms", start=w[0], end=w[1], interval=None, stat="p50,p95,p99"
                ).rows[0],
                empty_lat,
            )
            for w in (window, before)
        ]
        (p50, p95, p99), (p50_prev, p95_prev, p99_prev) = ((r["p50"], r["p95"], r["p99"]) for r in lat)
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
        groups = attempt("error_groups", lambda: reader.error_groups(start=window[0], end=window[1]), [])
        rate = errors / inbound if inbound else None
        rate_prev = errors_prev / inbound_prev if inbound_prev else None
        per_conv = cost / convs if convs else None
        per_conv_prev = cost_prev / convs_prev if convs_prev else None
        per_user = cost / active if active else None
        per_user_prev = cost_prev / active_prev if active_prev else None
        found = anomalies(reader, window[0], window[1])
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
                ("latency_p95_ms", "latency_ms", "p95"),
            )
        }
        forecast = attempt("forecast", lambda: month_end_forecast(reader, now, monthly_budget_usd), None)
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
            "by_provider": {(r["provider"] or "(none)"): r["sum"] for r in by_provider if r["sum"]},
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
            "note": f"conversations without a conversation id are split at gaps of more than {gap:g} minutes",
        },
        "errors": {
            "errors": _figure(errors, errors_prev, floor=MIN_COUNT),
            "error_rate": _figure(rate, rate_prev, enough=enough_inbound),
            "by_category": {(r["category"] or "(none)"): r["count"] for r in by_category if r["count"]},
            "groups": len(groups),
            "new_groups": sum(1 for g in groups if g["status"] == "new"),
            "regressed_groups": sum(1 for g in groups if g["status"] == "regressed"),
            "top_groups": [
                {k: (iso(v) if isinstance(v, datetime) else v) for k, v in g.items() if k != "hourly"}
                for g in groups[:5]
            ],
        },
        "latency": {
            "p50_ms": _figure(p50, p50_prev, enough=enough_inbound),
            "p95_ms": _figure(p95, p95_prev, enough=enough_inbound),
            "p99_ms": _figure(p99, p99_prev, enough=enough_inbound),
        },
        "anomalies": found,
        "alerts": alerts or [],
        "week_over_week": weekly,
        "unavailable": missing,
    }


# -- rendering -------------------------------------------------------------------------------------


def _money(v: Any) -> str:
    return "-" if v is None else f"${v:,.2f}"


def _num(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:,.0f}" if float(v).is_integer() or abs(v) >= 100 else f"{v:,.2f}"


def _ms(v: Any) -> str:
    return "-" if v is None else f"{v:,.0f} ms"


def _pct(v: Any) -> str:
    return "-" if v is None else f"{v:.1%}"


def _delta(fig: dict[str, Any]) -> str:
    if fig.get("change") is not None:
        c = fig["change"]
        return f"{'+' if c >= 0 else ''}{c:.0%} vs previous"
    return fig.get("note", "")


def lines(summary: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(label, value, change) rows shared by the text and Markdown forms."""
    c, e, r, lat = summary["costs"], summary["engagement"], summary["errors"], summary["latency"]
    rows = [
        ("Cost", _money(c["total_usd"]["value"]), _delta(c["total_usd"])),
        (
            "Cost per conversation",
            _money(c["per_conversation_usd"]["value"]),
            _delta(c["per_conversation_usd"]),
        ),
        ("Cost per active user", _money(c["per_active_user_usd"]["value"]), _delta(c["per_active_user_usd"])),
        ("LLM calls", _num(c["llm_calls"]["value"]), _delta(c["llm_calls"])),
        ("Active users", _num(e["active_users"]["value"]), _delta(e["active_users"])),
        ("New users", _num(e["new_users"]["value"]), _delta(e["new_users"])),
        ("Conversations", _num(e["conversations"]["value"]), _delta(e["conversations"])),
        ("Messages", _num(e["messages"]["value"]), _delta(e["messages"])),
        ("Errors", _num(r["errors"]["value"]), _delta(r["errors"])),
        ("Error rate", _pct(r["error_rate"]["value"]), _delta(r["error_rate"])),
        ("p50 latency", _ms(lat["p50_ms"]["value"]), _delta(lat["p50_ms"])),
        ("p95 latency", _ms(lat["p95_ms"]["value"]), _delta(lat["p95_ms"])),
        ("p99 latency", _ms(lat["p99_ms"]["value"]), _delta(lat["p99_ms"])),
    ]
    return rows


def _footer(summary: dict[str, Any]) -> list[str]:
    c, r = summary["costs"], summary["errors"]
    f = c["forecast"]
    out = [
        f"Month-end forecast ({f['month']}): {_money(f['projected_usd'])} (so far "
        f"{_money(f['month_to_date_usd'])})"
    ]
    if f is not None and "budget_usd" in f:
        out[-1] += f", budget {_money(f['budget_usd'])}{' - OVER' if f['over_budget'] else ''}"
    if c["unpriced_calls"]:
        out.append(f"{c['unpriced_calls']:,} LLM calls had no known price (not in the cost)")
    out.append(f"Error groups: {r['groups']} ({r['new_groups']} new, {r['regressed_groups']} regressed)")
    out.append(summary["engagement"]["note"])
    for a in summary["anomalies"]:
        out.append(f"Anomaly: {a['explanation']}")
    for a in summary["alerts"]:
        out.append(f"Alert: {a['message']}")
    for name, why in summary.get("unavailable", {}).items():
        out.append(f"Unavailable here: {name} ({why})")
    return out


def as_text(summary: dict[str, Any]) -> str:
    p = summary["period"]
    until = p["end"][:16].replace("T", " ")
    head = f"botmeter summary: last {p['days']} days ({p['start'][:10]} to {until} UTC)"
    width = max(len(label) for label, _, _ in lines(summary))
    body = [f"  {label:<{width}}  {value:>14}  {delta}" for label, value, delta in lines(summary)]
    return "\n".join([head, *body, *("  " + line for line in _footer(summary))])


def as_markdown(summary: dict[str, Any]) -> str:
    p = summary["period"]
    out = [
        f"## botmeter summary: last {p['days']} days",
        "",
        f"{p['start'][:10]} to {p['end'][:16].replace('T', ' ')} UTC, against "
        f"{p['previous_start'][:10]} to {p['previous_end'][:16].replace('T', ' ')} UTC",
        "",
        "| figure | value | change |",
        "|---|---:|---|",
    ]
    out += [f"| {label} | {value} | {delta} |" for label, value, delta in lines(summary)]
    out.append("")
    out += [f"- {line}" for line in _footer(summary)]
    return "\n".join(out)
