"""The dashboard's panels as data: ``SECTIONS`` lists each ``Panel`` (title, the figures it needs,
the chart function that draws it, its note), and the chart functions, each a few lines over ``Page``
and the chart kinds of ``report.html``. Adding a panel is one entry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..analyse.dashboard_figures import model_name
from .html import (
    CATEGORY_COLOURS,
    PROVIDER_COLOURS,
    SEVERITY_COLOURS,
    Column,
    bar_chart,
    bar_list,
    box_plot,
    colours,
    facts,
    h,
    heat_table,
    join,
    legend,
    line_chart,
    sparkline,
    table,
)
from .numbers import count, latency_s, money, percent, seconds, short, short_money
from .page import (
    SEVERE,
    Page,
    _clip,
    _dt,
    _month,
    cost,
    day_label,
    failure_rate,
    reply_latency,
    secs,
    user_details,
)

# -- panels as data --------------------------------------------------------------------------------

Draw = Callable[[Page], Any]


@dataclass(frozen=True)
class Panel:
    key: str  # its anchor and data-panel name
    title: str
    needs: tuple[str, ...]  # the figures it draws: their queries are shown, a missing one is said
    chart: Draw  # draws the content; None means there is nothing to draw
    note: str | Callable[[Page], str]  # how it is computed, in a sentence or three
    kind: str = "chart"  # what it draws (bars, lines, table, ...): a hook for styles and tests
    wide: bool = False
    empty: str = "No data in this period."


@dataclass(frozen=True)
class Section:
    key: str
    title: str
    panels: tuple[Panel, ...] = field(default_factory=tuple)


def _provider(r: dict[str, Any]) -> str:
    return r.get("provider") or "other"


def draw_cost_by_provider(p: Page) -> Any:
    groups = p.grouped(p.rows("cost_by_model"), _provider)
    names = [n for n, _ in groups]
    tint = colours(names, PROVIDER_COLOURS)
    chart = bar_chart(
        p.axis("USD per day", short_money),
        groups,
        title="Cost per day by provider",
        fmt=money,
        colour_of=tint,
        markers=p.markers.get("cost_by_model", ()),
        wide=True,
    )
    return chart and join([chart, legend([(n, money(sum(v or 0 for v in vs))) for n, vs in groups], tint)])


KIND_NAMES = {
    "message": "Messages",
    "llm_call": "LLM calls",
    "api_call": "Paid APIs",
    "channel_cost": "Channel fees",
}


def _shares(
    rows: list[dict[str, Any]], name: Callable[[dict[str, Any]], str]
) -> list[tuple[str, float, str]]:
    """A bar list's items: the rows with a value, largest first, each with its share of their total."""
    rows = sorted((r for r in rows if r.get("value")), key=lambda r: -r["value"])
    total = sum(r["value"] for r in rows) or 1
    return [(name(r), r["value"], f"{r['value'] / total:.0%}") for r in rows]


def draw_cost_breakdown(p: Page) -> Any:
    items = _shares(p.rows("cost_by_kind"), lambda r: KIND_NAMES.get(r["kind"], r["kind"] or "other"))
    if not items:
        return None
    return bar_list(
        items,
        fmt=money,
        caption="Spend in the period, by what was paid for",
        colour_of=colours([i[0] for i in items]),
    )


def _index(rows: list[dict[str, Any]] | None, *dims: str) -> dict[tuple, Any]:
    return {tuple(r.get(d) for d in dims): r.get("value") for r in rows or ()}


def draw_sms(p: Page) -> Any:
    spend = _index(p.data.get("sms_cost"), "country", "direction")
    segments = _index(p.data.get("sms_segments"), "country", "direction")
    messages = _index(p.data.get("sms_messages"), "country", "direction")
    keys = sorted(spend.keys() | segments.keys(), key=lambda k: -(spend.get(k) or 0))
    if not keys:
        return None
    total = sum(v or 0 for v in spend.values()) or None
    rows = []
    for k in keys:
        n, seg = messages.get(k), segments.get(k)
        rows.append(
            (
                k[0] or "unknown",
                {"in": "from users", "out": "to users"}.get(k[1], k[1] or "-"),
                count(n),
                count(seg),
                f"{seg / n:.2f}" if n and seg is not None else "-",
                cost(spend.get(k)),
                percent(spend[k] / total) if total and spend.get(k) is not None else "-",
            )
        )
    all_messages, all_segments = (
        sum(v or 0 for v in messages.values()),
        sum(v or 0 for v in segments.values()),
    )
    return table(
        [
            Column("country"),
            Column("direction"),
            Column("messages", True, True),
            Column("segments", True, True),
            Column("segments per message", True),
            Column("cost", True),
            Column("share", True, True),
        ],
        rows,
        caption="SMS in the period, most expensive first",
        total=(
            "total",
            "",
            count(all_messages),
            count(all_segments),
            f"{all_segments / all_messages:.2f}" if all_messages else "-",
            money(total),
            "100%" if total else "-",
        ),
    )


def llm_spend(p: Page) -> dict[tuple, float | None]:
    """Cost per (provider, model); None where every call was unpriced (unknown, not $0)."""
    calls = _index(p.data.get("llm_calls"), "provider", "model")
    unpriced = _index(p.data.get("llm_unpriced"), "provider", "model")
    spend = _index(p.data.get("llm_cost"), "provider", "model")
    return {k: (None if (unpriced.get(k) or 0) >= (calls.get(k) or 0) > 0 else v) for k, v in spend.items()}


def draw_llm_models(p: Page) -> Any:
    calls = _index(p.data.get("llm_calls"), "provider", "model")
    spend = llm_spend(p)
    unpriced = _index(p.data.get("llm_unpriced"), "provider", "model")
    cache = {(r["provider"], r["model"]): r for r in p.data.get("cache_savings") or ()}
    keys = sorted(calls, key=lambda k: (-(spend.get(k) or 0), -(calls.get(k) or 0)))
    if not keys:
        return None
    rows = []
    for k in keys:
        c = cache.get(k, {})
        n, u = calls.get(k) or 0, unpriced.get(k) or 0
        spent = spend.get(k)
        saved = c.get("saved_usd")
        rows.append(
            (
                model_name({"provider": k[0], "model": k[1]}),
                count(n),
                cost(spent) + (f" ({count(u)} unpriced)" if u and u < n else ""),
                percent(c.get("cache_hit_rate")) if c.get("cache_hit_rate") is not None else "-",
                "-" if spent is None or (saved is None and c.get("cached_tokens")) else money(saved or 0),
            )
        )
    total_spend = sum(v for v in spend.values() if v)
    total_saved = sum(c.get("saved_usd") or 0 for c in cache.values())
    left_out = sum(unpriced.values())
    return table(
        [
            Column("model"),
            Column("calls", True, True),
            Column("cost", True),
            Column("cache hit rate", True),
            Column("saved by the cache", True),
        ],
        rows,
        caption="LLM calls in the period, most expensive first",
        total=(
            "total" + (f" ({count(left_out)} unpriced calls left out)" if left_out else ""),
            count(sum(calls.values())),
            money(total_spend),
            "",
            money(total_saved),
        ),
    )


def draw_api_operations(p: Page) -> Any:
    spend = _index(p.data.get("api_cost"), "provider", "name")
    calls = _index(p.data.get("api_calls"), "provider", "name")
    keys = sorted(calls.keys() | spend.keys(), key=lambda k: -(spend.get(k) or 0))
    if not keys:
        return None
    rows = [
        (
            " ".join(x for x in k if x) or "untagged",
            count(calls.get(k)),
            cost(spend.get(k)),
            money(spend[k] / calls[k]) if spend.get(k) is not None and calls.get(k) else "-",
        )
        for k in keys
    ]
    return table(
        [Column("operation"), Column("calls", True), Column("cost", True), Column("per call", True)],
        rows,
        caption="Paid API calls in the period, most expensive first",
        total=(
            "total",
            count(sum(v or 0 for v in calls.values())),
            money(sum(v or 0 for v in spend.values())),
            "",
        ),
    )


def draw_unit_costs(p: Page) -> Any:
    series = [
        ("per conversation", p.series(p.rows("cost_per_conversation"))),
        ("per active user", p.series(p.rows("cost_per_active_user"))),
    ]
    tint = colours([n for n, _ in series])
    chart = line_chart(
        p.axis("USD", short_money),
        series,
        title="Cost per conversation and per active user, per day",
        fmt=money,
        colour_of=tint,
    )
    costs = p.data["summary"]["costs"]
    return chart and join(
        [
            chart,
            legend(
                [
                    ("per conversation, period", money(costs["per_conversation_usd"]["value"])),
                    ("per active user, period", money(costs["per_active_user_usd"]["value"])),
                ],
                tint,
            ),
        ]
    )


def draw_top_spenders(p: Page) -> Any:
    users = p.rows("top_users")
    parts = []
    if users:
        details = [user_details(r) for r in users]
        extra = any(c is not None or m is not None for c, m in details)
        columns = [Column("user (hashed id)")]
        if extra:
            columns += [Column("country"), Column("messages", True, True)]
        columns.append(Column("cost", True))
        rows = [
            (r.get("user") or "unknown", *((c or "-", count(m)) if extra else ()), cost(r.get("value")))
            for r, (c, m) in zip(users, details, strict=True)
        ]
        parts.append(table(columns, rows, caption="Top users by cost"))
    convs = p.rows("top_conversations")
    if convs:
        parts.append(
            table(
                [Column("conversation"), Column("cost", True)],
                [(r.get("conversation") or "unknown", cost(r.get("value"))) for r in convs],
                caption="Top conversations by cost",
            )
        )
    return join(parts) if parts else None


def draw_forecast(p: Page) -> Any:
    f = p.data.get("forecast")
    if not f:
        return None
    budget = f.get("budget_usd")
    top = max(f["projected_usd"], budget or 0) or 1
    bars = [
        h(
            "div",
            {"class": "fbar"},
            h("span", {"class": "name"}, name),
            h(
                "div",
                {"class": "track"},
                h("div", {"class": f"fill mark c-{colour}", "style": f"width:{100 * v / top:.1f}%"}),
            ),
            h("b", None, money(v)),
        )
        for name, v, colour in (
            ("so far", f["month_to_date_usd"], "blue"),
            ("projected", f["projected_usd"], "sky"),
        )
    ]
    if budget:
        state = "over" if f.get("over_budget") else "within"
        note = h("p", {"class": f"budget {state}"}, f"Budget {money(budget)}: projected {state} budget.")
    else:
        note = h(
            "p", {"class": "muted"}, "No budget set (monthly_budget_usd in the alert rules, or --budget)."
        )
    return join(
        [
            h("p", {"class": "big"}, f"{_month(f['month'])}: {money(f['projected_usd'])} projected"),
            bars,
            note,
            h("p", {"class": "muted"}, f"{money(f['daily_rate_usd'])} a day, {f['days_left']:.1f} days left"),
        ]
    )


def draw_users(p: Page) -> Any:
    series = [("new", p.series(p.rows("new_users"))), ("returning", p.series(p.rows("returning_users")))]
    tint = colours([n for n, _ in series])
    chart = bar_chart(
        p.axis("users per day", short),
        series,
        title="Active users per day: new and returning",
        fmt=count,
        colour_of=tint,
        markers=p.markers.get("users", ()),
    )
    e = p.data["summary"]["engagement"]
    active = p.series(p.rows("active_users"))
    return chart and join(
        [
            chart,
            legend([("new", count(e["new_users"]["value"])), ("returning", "")], tint),
            facts(
                [
                    ("active in the period", count(e["active_users"]["value"])),
                    ("busiest day", count(max((v or 0 for v in active), default=0))),
                ]
            ),
        ]
    )


def draw_conversations(p: Page) -> Any:
    series = [
        ("messages", p.series(p.rows("messages"))),
        ("conversations", p.series(p.rows("conversations"))),
    ]
    tint = colours([n for n, _ in series])
    chart = line_chart(
        p.axis("per day", short),
        series,
        title="Conversations and messages per day",
        fmt=count,
        colour_of=tint,
    )
    e = p.data["summary"]["engagement"]
    return chart and join(
        [
            chart,
            legend(
                [
                    ("messages in the period", count(e["messages"]["value"])),
                    ("conversations in the period", count(e["conversations"]["value"])),
                ],
                tint,
            ),
        ]
    )


def draw_distribution(p: Page) -> Any:
    parts = []
    for key, label, fmt, unit in (
        ("conversation_length", "Messages per conversation", short, "messages"),
        ("conversation_duration", "Conversation duration", seconds, "time"),
    ):
        stats = p.data.get(key)
        if not stats or not stats.get("count"):
            parts.append(h("p", {"class": "empty"}, f"{label}: no conversations."))
            continue
        parts.append(h("h4", None, label))
        parts.append(box_plot(stats, title=label, fmt=fmt, unit=unit))
        parts.append(
            facts(
                [
                    ("median", fmt(stats["p50"])),
                    ("middle half", f"{fmt(stats['p25'])} to {fmt(stats['p75'])}"),
                    ("average", fmt(stats["avg"])),
                    ("longest", fmt(stats["max"])),
                    ("conversations", count(stats["count"])),
                ]
            )
        )
    return join(parts)


def draw_retention(p: Page) -> Any:
    cohorts: dict[str, dict[int, float | None]] = {}
    sizes: dict[str, int] = {}
    for r in p.rows("retention"):
        cohorts.setdefault(r["bucket"], {})[r["period"]] = r["value"]
        sizes[r["bucket"]] = r["cohort_users"]
    periods = sorted({n for c in cohorts.values() for n, v in c.items() if v is not None})
    keys = sorted(cohorts)
    if not keys:
        return None
    return heat_table(
        [f"week of {day_label(_dt(k))}" for k in keys],
        [f"wk {n}" for n in periods],
        [[cohorts[k].get(n) for n in periods] for k in keys],
        caption="Share of each week's new users active N weeks later",
        fmt=lambda v: "" if v is None else f"{v:.0%}",
        scale_max=1.0,
        extra_column=("users", [count(sizes[k]) for k in keys]),
    )


def draw_activities(p: Page) -> Any:
    items = _shares(p.rows("activities"), lambda r: r.get("name") or "unnamed")
    if not items:
        return None
    return bar_list(items, fmt=count, caption="Activities in the period", colour_of=["blue"] * len(items))


def draw_traffic(p: Page) -> Any:
    heat = p.data.get("traffic_heatmap")
    if not heat or not any(any(r) for r in heat["counts"]):
        return None
    return heat_table(
        heat["weekdays"],
        [f"{hour:02d}" for hour in heat["hours"]],
        heat["counts"],
        caption=f"Inbound messages by weekday and hour ({heat['timezone']})",
        fmt=lambda v: "" if not v else short(v),
    )


def _severe_categories(rows: list[dict[str, Any]]) -> set[str]:
    return {r.get("category") or "uncategorised" for r in rows if r.get("severity") in SEVERE}


def draw_errors_over_time(p: Page) -> Any:
    rows = p.rows("errors_by_category")
    severe = _severe_categories(rows)
    parts = []
    for field_name, label, fixed, is_severe in (
        ("category", "category", CATEGORY_COLOURS, lambda n: n in severe),
        ("severity", "severity", SEVERITY_COLOURS, lambda n: n in SEVERE),
    ):
        groups = p.grouped(rows, lambda r, f=field_name: r.get(f) or "uncategorised", is_severe)
        tint = colours([n for n, _ in groups], fixed)  # by the category's name, as queries give it
        groups = [(n.replace("_", " "), vs) for n, vs in groups]  # shown in words
        chart = bar_chart(
            p.axis("errors per day", short),
            groups,
            title=f"Errors per day by {label}",
            fmt=count,
            colour_of=tint,
            wide=True,
        )
        if chart:
            parts += [
                h("h4", None, f"by {label}"),
                chart,
                legend([(n, count(sum(v or 0 for v in vs))) for n, vs in groups], tint),
            ]
    return join(parts) if parts else None


def draw_error_rate(p: Page) -> Any:
    rate = p.series(p.rows("error_rate"))
    series = [("error rate", rate)]
    if p.data.get("reply_failure_rate") is not None:
        series.append(("failure rate", p.series(p.rows("reply_failure_rate"))))
    tint = colours([n for n, _ in series])
    chart = line_chart(
        p.axis("share of inbound messages", lambda v: f"{(v or 0) * 100:g}%"),
        series,
        title="Error rate per day",
        fmt=percent,
        colour_of=tint,
        markers=p.markers.get("error_rate", ()),
    )
    r = p.data["summary"]["errors"]
    failed = failure_rate(p.data)
    shown = [("error rate, period", percent(r["error_rate"]["value"]))]
    if failed is not None:
        shown.append(("replies failed, period", percent(failed.get("value"))))
    return chart and join(
        [
            chart,
            legend(shown, colours(["error rate", "failure rate"])[: len(shown)]),
            facts(
                [
                    ("errors", count(r["errors"]["value"])),
                    ("worst day", percent(max((v for v in rate if v is not None), default=None))),
                ]
            ),
        ]
    )


def draw_error_groups(p: Page) -> Any:
    groups = p.data.get("error_groups") or []
    if not groups:
        return None
    rows = []
    for g in groups[:50]:
        message = g.get("message") or ""
        where = " · ".join(str(g[k]) for k in ("provider", "stage", "code") if g.get(k))
        severity = g.get("severity") or "-"
        rows.append(
            (
                join(
                    [
                        h("span", {"class": f"status {g['status']}"}, g["status"]),
                        " ",
                        h("span", {"class": f"sev c-{SEVERITY_COLOURS.get(severity, 'grey')}"}, severity),
                    ]
                ),
                join(
                    [
                        h("b", None, g.get("error_type") or "error"),
                        f" · {(g.get('category') or 'uncategorised').replace('_', ' ')}",
                        f" · {where}" if where else "",
                        h("br"),
                        h("span", {"class": "msg", "title": message}, _clip(message, 160)),
                    ]
                ),
                count(g["count"]),
                count(g["users"]),
                p.local(g.get("first_seen")),
                p.local(g.get("last_seen")),
                sparkline(g.get("daily") or [], label=f"{g['count']} errors per day"),
            )
        )
    return table(
        [
            Column("status"),
            Column("error"),
            Column("count", True),
            Column("users", True, True),
            Column("first seen", optional=True),
            Column("last seen", optional=True),
            Column("per day", optional=True),
        ],
        rows,
        caption=f"{len(groups)} error groups in the period"
        + (" (first 50 shown)" if len(groups) > 50 else ""),
    )


def draw_reply_time(p: Page) -> Any:
    stage = p.data.get("reply_stage") or "reply"
    rows = [r for r in p.rows("latency") if r.get("stage", stage) == stage]
    series = [
        (s, [None if v is None else v / 1000 for v in p.series(rows, s)]) for s in ("p50", "p95", "p99")
    ]
    tint = colours([s for s, _ in series])
    chart = line_chart(
        p.axis("seconds", lambda v: f"{v or 0:g}"),
        series,
        title="Reply time percentiles per day",
        fmt=latency_s,
        colour_of=tint,
        markers=p.markers.get("latency", ()),
        wide=True,
    )
    lat = reply_latency(p.data)
    period = {"p50": lat["p50"], "p95": lat["p95"]["value"], "p99": lat["p99"]}
    return chart and join([chart, legend([(f"{s}, period", secs(v)) for s, v in period.items()], tint)])


def _speed_table(
    p: Page,
    key: str,
    dims: tuple[str, ...],
    errors_key: str,
    cost_key: str | None,
    label: str,
    daily_key: str | None = None,
) -> Any:
    rows = p.rows(key)
    if not rows:
        return None
    errs = _index(p.data.get(errors_key), *dims)
    spend = llm_spend(p) if cost_key else {}
    # Errors only where they name what the rows are; a column of zeros would say "no errors".
    errors = any(tuple(r.get(d) for d in dims) in errs for r in rows)
    columns = [Column(label), Column("calls", True), Column("p50", True), Column("p95", True)]
    if errors:
        columns.append(Column("errors", True))
    if cost_key:
        columns.append(Column("cost", True, True))  # also in the LLM cost table; a phone drops it here
    if daily_key:
        columns.append(Column("p95 per day", optional=True))
    out = []
    for r in sorted(rows, key=lambda r: -(r.get("p95") or 0)):
        k = tuple(r.get(d) for d in dims)
        name = model_name(r) if "model" in dims else (r.get(dims[0]) or "untagged")
        line = [name, count(r.get("count")), secs(r.get("p50")), secs(r.get("p95"))]
        if errors:
            line.append(count(errs.get(k) or 0))
        if cost_key:
            line.append(cost(spend.get(k)))
        if daily_key:
            daily = p.series(p.rows(daily_key), "p95", lambda row, k=k: tuple(row.get(d) for d in dims) == k)
            line.append(sparkline([v or 0 for v in daily], label=f"{name}: p95 per day"))
        out.append(line)
    return table(columns, out, caption=f"Per {label}, slowest first (p95)")


def draw_stages(p: Page) -> Any:
    return _speed_table(p, "latency_by_stage", ("stage",), "errors_by_stage", None, "stage", "latency")


def draw_models(p: Page) -> Any:
    return _speed_table(p, "latency_by_model", ("provider", "model"), "errors_by_model", "llm_cost", "model")


def _cost_note(p: Page) -> str:
    return (
        "Sum of cost_usd per UTC day over every paid event (LLM tokens at genai-prices' rates, with cached "
        "and reasoning tokens; SMS segments at the country's rate; other APIs at their price), stacked by "
        "provider; the legend gives each one's total for the period. Markers: anomalies (!) and alerts (▲)."
    )


COST = (
    Panel(
        "cost_by_model",
        "Cost per day, by provider",
        ("cost_by_model",),
        draw_cost_by_provider,
        _cost_note,
        "stacked bars",
        wide=True,
    ),
    Panel(
        "cost_breakdown",
        "What the money is spent on",
        ("cost_by_kind",),
        draw_cost_breakdown,
        "cost_usd over the period by event kind: messages (SMS segments), LLM calls, other paid APIs.",
        "bars",
    ),
    Panel(
        "forecast",
        "Month-end forecast",
        (),
        draw_forecast,
        lambda p: ((p.data.get("forecast") or {}).get("method") or "").capitalize() + ".",
        "bars",
        empty="No forecast.",
    ),
    Panel(
        "sms",
        "SMS by country and direction",
        ("sms_cost", "sms_segments", "sms_messages"),
        draw_sms,
        "SMS cost and segments per country and direction over the period. A message longer than one "
        "segment (160 GSM-7 characters, 70 with emoji or other Unicode) is billed per segment; "
        "segments per message shows where texts could be shorter.",
        "table",
        wide=True,
        empty="No SMS in this period.",
    ),
    Panel(
        "llm_models",
        "LLM calls by model",
        ("llm_calls", "llm_cost", "llm_input_tokens", "llm_cached_tokens", "llm_unpriced"),
        draw_llm_models,
        "Calls and cost per provider and model. Cache hit rate: the share of prompt tokens read from "
        "the provider's cache. Saved by the cache: what those tokens would have cost at the full input "
        "price, minus their cached price (genai-prices' list prices at the end of the period). A model "
        "without a price shows 'unpriced', never $0.",
        "table",
        wide=True,
        empty="No LLM calls in this period.",
    ),
    Panel(
        "api_operations",
        "Paid API operations",
        ("api_cost", "api_calls"),
        draw_api_operations,
        "Calls and cost of paid APIs other than LLMs, per provider and operation (track_api_call).",
        "table",
        empty="No paid API calls in this period.",
    ),
    Panel(
        "unit_costs",
        "Cost per conversation and per active user",
        ("cost_per_conversation", "cost_per_active_user"),
        draw_unit_costs,
        "Each day's cost divided by that day's conversations, and by its active users (users who sent "
        "a message). The period figures divide the period's cost by its distinct conversations and "
        "users.",
        "lines",
    ),
    Panel(
        "top_spenders",
        "Top users and conversations by cost",
        ("top_users", "top_conversations"),
        draw_top_spenders,
        "The largest sums of cost_usd per user and per conversation over the period. User ids are "
        "keyed hashes (HMAC-SHA256), never the phone number; conversation ids are as the bot gave them "
        "(hashed too when they are phone numbers).",
        "table",
    ),
)

SPEED = (
    Panel(
        "latency",
        "Reply time: p50, p95, p99",
        ("latency", "latency_by_stage"),
        draw_reply_time,
        "How long users wait for a reply: exact percentiles (linear interpolation) of the bot's "
        "timings of the reply stage (track_timing('reply', ...)), per day and over the period.",
        "lines",
        wide=True,
        empty="No reply timings in this period (track_timing('reply', ms) around the bot's answer).",
    ),
    Panel(
        "latency_by_stage",
        "Per stage",
        ("latency_by_stage", "errors_by_stage", "latency"),
        draw_stages,
        "Timings per stage over the period: how many, p50 and p95 in seconds, the errors recorded in "
        "that stage where the store gives them, and each day's p95.",
        "table",
    ),
    Panel(
        "latency_by_model",
        "Per model",
        ("latency_by_model", "errors_by_model", "llm_cost"),
        draw_models,
        "LLM calls per provider and model over the period: how many, p50 and p95 of their latency, "
        "the errors that named the model (when any did), and their cost.",
        "table",
    ),
)

ERRORS = (
    Panel(
        "errors_over_time",
        "Errors per day by category and severity",
        ("errors_by_category",),
        draw_errors_over_time,
        "Error events per day. The category comes from the exception type, HTTP status or provider "
        "code (rate limit, quota, timeout, auth, ...); severity from the category unless the bot gave "
        "one. Each category and severity keeps its colour in every report; critical is red.",
        "stacked bars",
        wide=True,
        empty="No errors in this period.",
    ),
    Panel(
        "error_rate",
        "Error rate",
        ("error_rate",),
        draw_error_rate,
        "Errors divided by inbound messages, per day (a call retried three times that fails each time "
        "counts three). Empty where there were no inbound messages.",
        "lines",
    ),
    Panel(
        "error_groups",
        "Error groups",
        ("error_groups",),  # no query of its own, but a store that cannot group errors says so here
        draw_error_groups,
        lambda p: (
            "Errors grouped by fingerprint (type + message with numbers and ids masked + the innermost "
            "frame of your code). New: first seen in the period. Regressed: back after 7 quiet days. "
            f"Times are {p.zone.key}. The same list: botmeter errors, or Reader.error_groups()."
        ),
        "table",
        wide=True,
        empty="No errors in this period.",
    ),
)

ENGAGEMENT = (
    Panel(
        "users",
        "Active, new and returning users per day",
        ("active_users", "new_users", "returning_users"),
        draw_users,
        "Active: distinct users who sent a message that day. New: first message ever that day. "
        "Returning: active, first seen before that day. Bar height = active users.",
        "stacked bars",
    ),
    Panel(
        "conversations",
        "Conversations and messages per day",
        ("conversations", "messages"),
        draw_conversations,
        lambda p: (
            "Messages in and out per day. A conversation is the bot's conversation id, or for messages "
            "without one a user's messages split at silences longer than "
            f"{p.data['summary']['engagement'].get('session_gap_minutes', 30):g} minutes."
        ),
        "lines",
    ),
    Panel(
        "distribution",
        "Conversation length and duration",
        ("conversation_length", "conversation_duration"),
        draw_distribution,
        "For conversations that started in the period: the line spans the 10th to the 90th "
        "percentile, the box the middle half (25th to 75th), the bar inside it the median and the dot "
        "the average. Duration is the last message's time minus the first's.",
        "box plots",
    ),
    Panel(
        "retention",
        "Retention by weekly cohort",
        ("retention",),
        draw_retention,
        "Users grouped by the week (Monday, UTC) of their first message; each cell is the share of "
        "them who sent a message N weeks later. Blank: that week has not happened yet. Covers at least "
        "the last 8 weeks.",
        "heat table",
    ),
    Panel(
        "activities",
        "Resets, admin commands and features",
        ("activities",),
        draw_activities,
        "Activity events by name over the period: 'reset' for conversation resets, 'admin:*' for "
        "admin commands (admin_denied for refused attempts), 'feature:*' for features used.",
        "bars",
        empty="No activities (resets, admin commands, features) in this period.",
    ),
    Panel(
        "traffic",
        "Traffic by weekday and hour",
        ("traffic_by_hour",),
        draw_traffic,
        lambda p: (
            f"Inbound messages per hour of the period, summed by weekday and hour of day ({p.zone.key})."
        ),
        "heat table",
        wide=True,
    ),
)

# The page, top to bottom: what costs money first, then what users feel, then what breaks.
SECTIONS: tuple[Section, ...] = (
    Section("cost", "Cost", COST),
    Section("speed", "Speed", SPEED),
    Section("errors", "Errors", ERRORS),
    Section("engagement", "Engagement", ENGAGEMENT),
)
