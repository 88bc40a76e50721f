"""The questions botmeter answers, one function each from typed parameters to a ``Report``.
Registered in ``ANSWERS`` by ``@register``; every interface offers each at once.

The analysis each needs is imported when it is asked: ``botmeter.Meter`` reaches this module
through the chat admin, and a bot that only records must not pay for the analysis at import.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..report import responses
from ..report.numbers import count, ms, seconds
from ..report.responses import Figure, Line, Report, Section, period_text
from .params import (
    AlertsParams,
    DashboardParams,
    Days,
    ExploreParams,
    MetricParams,
    NoParams,
    Period,
    SummaryParams,
)
from .registry import register
from .status import analytics_status_report, status_report

DASHBOARD_DAYS = 30  # the dashboard's period when none is given


def _rules(path: str | None) -> Any:
    from ..analyse.alerts import Rules

    return Rules.load(path) if path else None


def _fired(reader: Any, rules: Any) -> list[dict[str, Any]]:
    from ..analyse.alerts import check

    return check(reader, rules) if rules else []


@register(
    "summary", SummaryParams, "The period's cost, engagement, errors and latency against the previous one."
)
def summary(reader: Any, p: SummaryParams) -> Report:
    from ..analyse.summary import summarise

    rules = _rules(p.rules)
    fired = _fired(reader, rules)
    budget = rules.monthly_budget_usd if rules else None
    return responses.summary_report(summarise(reader, p.days, monthly_budget_usd=budget, alerts=fired))


@register("metric", MetricParams, "One metric over time, broken down and filtered.")
def metric(reader: Any, p: MetricParams) -> Report:
    filters = dict(p.filters)
    if p.bot:
        filters.setdefault("bot", []).append(p.bot)
    result = reader.query(
        p.metric,
        days=p.days,
        start=p.start,
        end=p.end,
        interval=p.interval,
        by=p.by,
        filters=filters,
        stat=p.stat,
        periods=p.periods,
        limit=p.limit,
    )
    return responses.query_report(result)


@register(
    "errors", Period, "Error groups in the period: count, users, first and last seen, new or regressed."
)
def errors(reader: Any, p: Period) -> Report:
    window = reader.window(p.days, p.start, p.end)
    groups = reader.error_groups(start=window[0], end=window[1])
    return responses.error_groups_report(groups, *window)


@register("costs", Period, "Cost, by provider and model, per conversation and per active user.")
def costs(reader: Any, p: Period) -> Report:
    window = reader.window(p.days, p.start, p.end)
    return responses.costs_report(reader.costs(start=window[0], end=window[1]))


@register("engagement", Period, "Users (active, new, returning), conversations, messages, their length.")
def engagement(reader: Any, p: Period) -> Report:
    e = reader.engagement(p.days, start=p.start, end=p.end)
    length, duration = e["messages_per_conversation"], e["conversation_duration_s"]
    figures = (
        Figure("Active users", count(e["active_users"]), short="users", key=True),
        Figure("New users", count(e["new_users"]), short="new"),
        Figure("Returning users", count(e["returning_users"]), short="returning"),
        Figure("Conversations", count(e["conversations"]), short="convs", key=True),
        Figure("Messages", count(e["messages"]), short="msgs", key=True),
        Figure("Inbound messages", count(e["inbound_messages"]), short="in"),
        Figure("Messages per conversation", _number(length.get("avg")), short="msgs/conv"),
        Figure("Conversation length", seconds(duration.get("avg")), short="conv time"),
    )
    activities = tuple(Line(f"{name}: {n:,}", "") for name, n in e["activities"].items() if n)
    period = e["period"]
    return Report(
        "engagement",
        "botmeter engagement",
        period_text(period["start"], period["end"]),
        figures,
        (Section("Activities", activities),) if activities else (),
        e,
        short_title="botmeter engagement",
    )


@register("latency", Period, "How long users wait for a reply, each stage's timings, LLM latency by model.")
def latency(reader: Any, p: Period) -> Report:
    lat = reader.latency(p.days, start=p.start, end=p.end)
    overall = lat["overall"]
    figures = tuple(
        Figure(f"Reply {stat}", ms(overall.get(stat)), short=f"reply {stat}", key=stat == "p95")
        for stat in ("p50", "p95", "p99")
    )
    stages = tuple(
        Line(f"{stage}: p50 {ms(s['p50'])}, p95 {ms(s['p95'])} ({count(s['count'])} timings)", "")
        for stage, s in lat["by_stage"].items()
    )
    models = tuple(
        Line(f"{model}: p50 {ms(s['p50'])}, p95 {ms(s['p95'])} ({count(s['count'])} calls)", "")
        for model, s in lat["by_model"].items()
    )
    sections = tuple(
        Section(title, lines)
        for title, lines in (("By stage", stages), ("LLM calls by model", models))
        if lines
    )
    period = lat["period"]
    return Report(
        "latency",
        f"botmeter latency (reply stage {lat['reply_stage']})",
        period_text(period["start"], period["end"]),
        figures,
        sections,
        lat,
        short_title="botmeter latency",
    )


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


@register("analytics_status", Days, "Today's and the period's cost, users, conversations, error rate, p95.")
def analytics_status(reader: Any, p: Days) -> Report:
    return analytics_status_report(reader, p.days)


@register(
    "status", NoParams, "botmeter's health: on or off, the store, queued, dropped, spooled.", needs="meter"
)
def status(meter: Any, p: NoParams) -> Report:
    return status_report(meter)


@register("alerts", AlertsParams, "The alert rules that fire now.")
def alerts(reader: Any, p: AlertsParams) -> Report:
    from .params import ParameterError

    if not p.rules:
        raise ParameterError("rules", "rules: no alert rules: give a rules file (TOML)")
    return responses.alerts_report(_fired(reader, _rules(p.rules)))


@register("dashboard", DashboardParams, "The dashboard's figures: cost, engagement, errors and speed.")
def dashboard(reader: Any, p: DashboardParams) -> Report:
    from .params import ParameterError

    if p.days is not None and p.start is not None and p.end is not None:
        raise ParameterError("days", "days: give days or start/end, not both")
    if p.start is not None and p.end is not None and p.start >= p.end:
        raise ParameterError("end", f"end: {p.end.isoformat()} is not after start {p.start.isoformat()}")
    from ..analyse.dashboard_figures import dashboard_data

    rules = _rules(p.rules)
    fired = _fired(reader, rules)
    budget = p.budget if p.budget is not None else (rules.monthly_budget_usd if rules else None)
    days = p.days if p.days is not None or p.start or p.end else DASHBOARD_DAYS
    data = dashboard_data(
        reader,
        days,
        start=p.start,
        end=p.end,
        timezone=p.tz,
        monthly_budget_usd=budget,
        alerts=fired,
    )
    return Report("dashboard", "botmeter dashboard", data=data)


def stored_time(value: Any) -> str | None:
    """A stored ts as ISO text. DuckDB hands a time beyond Python's datetime (the year 58,896 of a
    millisecond timestamp stored as seconds) over as text: shown as it is, never a crash."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=None).isoformat() + "Z"
    return str(value).replace(" ", "T", 1) + "Z"


# What ``botmeter status`` shows of a store, in this order (the CLI's table uses the same list).
STORE_STATUS_KEYS = (
    "events",
    "first_event",
    "last_event",
    "size_bytes",
    "schema_version",
    "dropped_events_recorded",
)


@register("store_status", NoParams, "What is in the store: events by kind, their span, drops recorded, size.")
def store_status(reader: Any, p: NoParams) -> Report:
    info = reader.inventory()
    info["first_event"] = stored_time(info["first_event"])
    info["last_event"] = stored_time(info["last_event"])
    size = getattr(reader.store, "size_bytes", None)
    if size is not None:
        info["size_bytes"] = size()
    figures = tuple(
        Figure(key.replace("_", " "), f"{info[key]:,}" if isinstance(info[key], int) else str(info[key]))
        for key in STORE_STATUS_KEYS
        if key in info
    )
    kinds = Section(
        "Events by kind", tuple(Line(f"{k}: {n:,}", f"{k} {n:,}") for k, n in info["by_kind"].items())
    )
    return Report(
        "store_status", f"botmeter store: {reader.store.url}", figures=figures, sections=(kinds,), data=info
    )


@register("explore", ExploreParams, "What is in the store: kinds, span, events per day, fields, dimensions.")
def explore(reader: Any, p: ExploreParams) -> Report:
    info = reader.explore(p.top)
    figures = (
        Figure("Events", f"{info['events']:,}", short="events", key=True),
        Figure("First event", str(info["first_event"]), short="first"),
        Figure("Last event", str(info["last_event"]), short="last"),
    )
    kinds = Section(
        "Events by kind", tuple(Line(f"{k}: {n:,}", f"{k} {n:,}") for k, n in info["kinds"].items())
    )
    return Report("explore", "botmeter store", figures=figures, sections=(kinds,), data=info)
