"""One result, many consumers.

A result (a summary, a query result, an error-group list, costs, alerts, the meter's status) is
first turned into a ``Report``: a title, key figures, and sections of lines, all plain text with
the data behind them. Then one function per consumer renders the report:

==================  =====================================================================
``to_text``         plain text for a terminal, a log, an e-mail or an agent
``to_sms``          plain GSM-7 text that fits ``max_segments`` SMS segments (2 by default)
``to_slack``        Slack mrkdwn (a bot's ``chat.postMessage`` text)
``to_slack_blocks`` Slack Block Kit: ``{"text": fallback, "blocks": [...]}``
``to_markdown``     Markdown (GitHub, chat tools, notebooks)
``to_json``         the data behind the report as JSON
``to_bedrock``      an Amazon Bedrock agent action-group response (messageVersion 1.0, TEXT)
``to_api_gateway``  an API Gateway Lambda proxy response (REST API 1.0 and HTTP API 2.0)
==================  =====================================================================

Text that came from events (model names, error messages, activity names, user ids) is escaped
for each consumer: it can never become Slack mentions or links, Markdown or HTML.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from ..exceptions import InputError, InputTypeError
from ..process.sms import gsm7_text, sms_parts
from .numbers import count, latency_s, money, ms, percent, seconds

# -- the report --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    """One headline number: ``label`` "Active users", ``value`` "1,234", ``change`` "+5%"."""

    label: str
    value: str
    change: str = ""  # the change against the previous period, when there is one to show
    note: str = ""  # why there is no change ("too little data to compare")
    short: str = ""  # the label in an SMS; empty: the figure is left out of SMS
    key: bool = False  # an SMS gives key figures first


@dataclass(frozen=True)
class Line:
    """One line of a section, with a shorter form for SMS (empty: the line is left out of SMS)."""

    text: str
    short: str = ""


@dataclass(frozen=True)
class Section:
    title: str
    lines: tuple[Line, ...]


@dataclass(frozen=True)
class Report:
    kind: str  # summary, query, error_groups, costs, alerts, status, analytics_status, help, message
    title: str
    subtitle: str = ""  # the period, usually
    figures: tuple[Figure, ...] = ()
    sections: tuple[Section, ...] = ()
    data: Any = None  # what to_json gives: the result as plain data
    short_title: str = ""  # the title in an SMS
    notes: tuple[str, ...] = field(default_factory=tuple)
    # The typed result the report was made from (a query's ``Result``), for a form that lays it
    # out itself, such as the command line's table and CSV; never part of what to_json gives.
    result: Any = field(default=None, compare=False, repr=False)


# -- building reports ---------------------------------------------------------------------------------


def change_figure(
    label: str, short: str, figure: Mapping[str, Any], fmt: Callable[[Any], str], key: bool = False
) -> Figure:
    """A figure of the summary (``{"value", "change", "note"}``) with its change against the previous
    period, or the note saying why there is none."""
    c = figure.get("change")
    if c is not None:
        return Figure(label, fmt(figure["value"]), f"{'+' if c >= 0 else ''}{c:.0%}", "", short, key)
    return Figure(label, fmt(figure["value"]), "", figure.get("note", ""), short, key)


def anomalies_section(anomalies: Sequence[Mapping[str, Any]], *, say_none: bool = False) -> Section:
    """The anomalies of a summary, each explained; an SMS names the figure, direction and day."""
    lines = tuple(
        Line(a["explanation"], f"{a.get('label') or a['metric']} {a['direction']} {a['day'][5:10]}")
        for a in anomalies
    )
    return Section("Anomalies", lines or ((Line("none", "none"),) if say_none else ()))


def period_text(start: str, end: str) -> str:
    """A window's ISO start and end as a subtitle: 2026-11-28 to 2026-12-04 14:05 UTC."""
    return f"{start[:10]} to {end[:16].replace('T', ' ')} UTC"


def _num(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:,.0f}" if float(v).is_integer() or abs(v) >= 100 else f"{v:,.2f}"


def summary_report(summary: Mapping[str, Any]) -> Report:
    """The report of ``analyse.summary.summarise``: key figures with their change, then details."""
    c, e, r, lat = summary["costs"], summary["engagement"], summary["errors"], summary["latency"]
    p = summary["period"]

    fig = change_figure
    figures = (
        fig("Cost", "cost", c["total_usd"], money, True),
        fig("Cost per conversation", "per conv", c["per_conversation_usd"], money, False),
        fig("Cost per active user", "per user", c["per_active_user_usd"], money, False),
        fig("LLM calls", "LLM calls", c["llm_calls"], _num, False),
        fig("Active users", "users", e["active_users"], _num, True),
        fig("New users", "new", e["new_users"], _num, False),
        fig("Conversations", "convs", e["conversations"], _num, True),
        fig("Messages", "msgs", e["messages"], _num, True),
        fig("Errors", "errors", r["errors"], _num, False),
        fig("Error rate", "err rate", r["error_rate"], percent, True),
        fig("Failed replies", "failed", r["reply_failure_rate"], percent, True),
        fig("Reply p50", "reply p50", lat["reply_p50_s"], latency_s, False),
        fig("Reply p95", "reply p95", lat["reply_p95_s"], latency_s, True),
        fig("Reply p99", "reply p99", lat["reply_p99_s"], latency_s, False),
    )
    sections: list[Section] = []
    alerts = summary.get("alerts") or []
    if alerts:
        sections.append(alerts_section(alerts))
    if summary["anomalies"]:
        sections.append(anomalies_section(summary["anomalies"]))
    providers = sorted(
        ((n, v) for n, v in c["by_provider"].items() if v is None or v), key=lambda item: -(item[1] or 0)
    )
    # An SMS names the three largest; the other forms list them all.
    cost_lines = [
        Line(f"{name}: {cost(v)}", f"{name} {cost(v)}" if i < 3 else "")
        for i, (name, v) in enumerate(providers)
    ]
    f = c.get("forecast")
    if f:
        text = (
            f"Month-end forecast ({f['month']}): {money(f['projected_usd'])} "
            f"(so far {money(f['month_to_date_usd'])}; {forecast_basis(f)})"
        )
        if "budget_usd" in f:
            text += f", budget {money(f['budget_usd'])}{' - OVER' if f['over_budget'] else ''}"
        cost_lines.append(
            Line(text, f"month {money(f['projected_usd'])}{' OVER budget' if f.get('over_budget') else ''}")
        )
    if c["unpriced_calls"]:
        cost_lines.append(Line(f"{c['unpriced_calls']:,} LLM calls had no known price (not in the cost)"))
    if cost_lines:
        sections.append(Section("Cost", tuple(cost_lines)))
    if r["groups"]:
        head = Line(
            f"{r['groups']} error groups ({r['new_groups']} new, {r['regressed_groups']} regressed)",
            f"{r['new_groups']} new error groups" if r["new_groups"] else "",
        )
        sections.append(Section("Errors", (head, *(_group_line(g) for g in r["top_groups"][:3]))))
    notes = [summary["engagement"]["note"]] if summary["engagement"].get("note") else []
    notes += [
        f"Not available from this store: {name} ({why})"
        for name, why in summary.get("unavailable", {}).items()
    ]
    return Report(
        "summary",
        f"botmeter summary: last {p['days']} days",
        period_text(p["start"], p["end"]),
        figures,
        tuple(sections),
        summary,
        short_title=f"botmeter {p['days']}d",
        notes=tuple(notes),
    )


def forecast_basis(f: Mapping[str, Any]) -> str:
    """What a month-end forecast rests on: "rate of the last 2 days" or "the month so far"."""
    days = f.get("days_of_data")
    if not days:
        return "rate of the month so far, no complete day yet"
    return f"daily rate {money(f['daily_rate_usd'])} from {days} day{'s' if days != 1 else ''} of data"


def alerts_section(alerts: Sequence[Mapping[str, Any]], title: str = "Alerts") -> Section:
    return Section(
        title, tuple(Line(f"{a['rule']}: {a['message']}", _clip(a["message"], 90)) for a in alerts)
    )


def alerts_report(alerts: Sequence[Mapping[str, Any]]) -> Report:
    """Alerts that fired (``analyse.alerts.check``), for a webhook, Slack or an SMS to the team."""
    n = len(alerts)
    title = f"botmeter: {n} alert{'s' if n != 1 else ''}"
    return Report(
        "alerts",
        title,
        sections=(alerts_section(alerts, ""),),
        data={"alerts": list(alerts)},
        short_title=title,
    )


def _group_line(g: Mapping[str, Any]) -> Line:
    last_text = _iso(g.get("last_seen") or "")[:16].replace("T", " ")
    status = "" if g.get("status") in (None, "ongoing") else f"[{g['status']}] "
    kind = g.get("error_type") or "error"
    what = f"{kind} ({g.get('category') or 'uncategorised'}, {g.get('severity') or '-'})"
    # Where it came from: provider, stage and the provider's code, those known.
    where = ", ".join(
        f"{key} {g[key]}" for key in ("provider", "stage", "code") if g.get(key) not in (None, "")
    )
    if where:
        what += f" [{where}]"
    text = f"{status}{what}: {g['count']:,}x, {_plural(g.get('users', 0), 'user')}, last {last_text}"
    if g.get("message"):
        text += f" - {_clip(str(g['message']), 160)}"
    return Line(text, f"{status}{kind} x{g['count']:,}")


def error_groups_report(groups: Sequence[Mapping[str, Any]], start: Any, end: Any) -> Report:
    """Error groups (``Reader.error_groups``) in a window, most frequent first."""
    start_s, end_s = _iso(start), _iso(end)
    total = sum(g["count"] for g in groups)
    new = sum(1 for g in groups if g.get("status") == "new")
    regressed = sum(1 for g in groups if g.get("status") == "regressed")
    figures = (
        Figure("Errors", count(total), short="errors", key=True),
        Figure("Error groups", count(len(groups)), short="groups", key=True),
        Figure("New groups", count(new), short="new", key=True),
        Figure("Regressed groups", count(regressed), short="regressed", key=bool(regressed)),
    )
    lines = tuple(_group_line(g) for g in groups) or (Line("No errors in this period.", "no errors"),)
    data = {
        "period": {"start": start_s, "end": end_s},
        "groups": [{k: v for k, v in g.items() if k != "hourly"} for g in groups],
    }
    return Report(
        "error_groups",
        "botmeter errors",
        period_text(start_s, end_s),
        figures,
        (Section("Error groups", lines),),
        data,
        short_title=f"botmeter errors {_days_label(start_s, end_s)}",
    )


def _days_label(start: str, end: str) -> str:
    """ "7d" for a window of today and the 6 days before it (the --days convention)."""
    first, last = date.fromisoformat(start[:10]), date.fromisoformat(end[:10])
    days = (last - first).days + (1 if end[11:19] != "00:00:00" else 0)
    return f"{max(days, 1)}d"


def costs_report(costs: Mapping[str, Any]) -> Report:
    """The report of ``Reader.costs``: total, per conversation and user, by provider and model."""
    p = costs["period"]
    figures = (
        Figure("Cost", money(costs["total_usd"]), short="cost", key=True),
        Figure("Cost per conversation", money(costs["cost_per_conversation"]), short="per conv", key=True),
        Figure("Cost per active user", money(costs["cost_per_active_user"]), short="per user", key=True),
        Figure("LLM calls", count(costs["llm_calls"]), short="LLM calls"),
    )
    if costs.get("unpriced_calls"):
        figures += (
            Figure("LLM calls without a known price", count(costs["unpriced_calls"]), short="unpriced"),
        )
    sections = []
    for title, key in (("By provider", "by_provider"), ("By model", "by_model")):
        items = [(name, v) for name, v in costs[key].items() if v is None or v]  # None: unpriced
        if items:
            lines = tuple(Line(f"{n}: {cost(v)}", f"{n} {cost(v)}") for n, v in items[:10])
            sections.append(Section(title, lines))
    return Report(
        "costs",
        "botmeter costs",
        period_text(p["start"], p["end"]),
        figures,
        tuple(sections),
        costs,
        short_title=f"botmeter {_days_label(p['start'], p['end'])}",
        notes=unavailable_notes(costs),
    )


def unavailable_notes(answer: Mapping[str, Any]) -> tuple[str, ...]:
    """One note per figure the store could not give, with the reason."""
    return tuple(
        f"Not available from this store: {name} ({why})"
        for name, why in (answer.get("unavailable") or {}).items()
    )


def cost(v: float | None) -> str:
    """Money, or "unpriced" for a cost nobody knows (LLM calls of a model without a price)."""
    return "unpriced" if v is None else money(v)


def _value_format(metric: Any, stat: str, with_unit: bool = True) -> Callable[[Any], str]:
    """How one statistic of a metric reads: money, milliseconds, a share, or a number and its unit
    (``with_unit=False``: the bare number, where the title already says what is counted)."""
    unit = metric.unit
    if stat == "count" and metric.aggregation in ("distribution", "per_conversation"):
        return count  # how many values the percentiles are over, not an amount of the unit
    if unit == "USD":
        return cost
    if unit == "ms":
        return ms
    if unit == "seconds":
        return latency_s if metric.aggregation == "distribution" else seconds
    if unit == "share" or stat == "ratio":
        return percent
    if not with_unit:
        return _num
    one = unit[:-1] if unit.endswith("s") else unit  # 1 call, 2 calls
    return lambda v: "-" if v is None else f"{_num(v)} {one if v == 1 else unit}"


def query_report(result: Any) -> Report:
    """The report of a query result (``Reader.query``): one figure, a breakdown or a series."""
    q = result.query
    metric = result.metric
    stats = result.stats
    by = list(q.by)
    title = q.metric + (f" by {', '.join(by)}" if by else "")
    subtitle = f"{q.start:%Y-%m-%d %H:%M} to {q.end:%Y-%m-%d %H:%M} UTC" + (
        f", per {q.interval}" if q.interval else ""
    )
    fmts = {s: _value_format(metric, s) for s in stats}
    bare = {s: _value_format(metric, s, with_unit=False) for s in stats}

    def values(row: Mapping[str, Any], shown: Mapping[str, Callable[[Any], str]] = fmts) -> str:
        if len(stats) == 1:
            return shown[stats[0]](row.get(stats[0]))
        return " ".join(f"{s} {shown[s](row.get(s))}" for s in stats)

    def label(row: Mapping[str, Any], brief: bool = False) -> str:
        parts = []
        if q.interval:
            bucket = row["bucket"]
            hour = q.interval == "hour"
            if brief:
                parts.append(f"{bucket:%m-%d %Hh}" if hour else f"{bucket:%m-%d}")
            else:
                parts.append(f"{bucket:%Y-%m-%d %H:%M}" if hour else f"{bucket:%Y-%m-%d}")
        for d in by:
            parts.append(f"(no {d})" if row.get(d) is None else str(row[d]))  # never "(none)" as a name
        if "period" in row and metric.aggregation == "retention":
            parts.append(f"+{row['period']}")
        return " ".join(parts)

    figures: tuple[Figure, ...] = ()
    sections: tuple[Section, ...] = ()
    if not q.interval and not by and result.rows and metric.aggregation != "retention":
        row = result.rows[0]
        figures = tuple(
            Figure(
                f"{q.metric} {s}" if len(stats) > 1 else q.metric,
                fmts[s](row.get(s)),
                short=s if len(stats) > 1 else q.metric.replace("_", " "),
                key=True,
            )
            for s in stats
        )
    else:
        rows = list(result.rows)
        if metric.aggregation == "retention":  # periods not reached yet have no share to show
            rows = [r for r in rows if r.get(stats[0]) is not None]
        if by and not q.interval:
            first = stats[0]
            rows.sort(key=lambda r: -(r.get(first) or 0))
        lines = tuple(Line(f"{label(r)}: {values(r)}", f"{label(r, True)} {values(r, bare)}") for r in rows)
        if not lines:
            lines = (Line("No data in this window.", "no data"),)
        if metric.aggregation in ("count", "sum") and len(stats) == 1 and (q.interval or by):
            total = sum(r.get(stats[0]) or 0 for r in result.rows)
            unknown = sum(1 for r in result.rows if r.get(stats[0]) is None)
            # A total that leaves unpriced groups out says so.
            note = f"without {unknown} unpriced group{'s' if unknown != 1 else ''}" if unknown else ""
            figures = (Figure("Total", fmts[stats[0]](total), note=note, short="total", key=True),)
        sections = (Section("", lines),)  # the title says what the lines are
    data = {
        "metric": q.metric,
        "unit": metric.unit,
        "start": _iso(q.start),
        "end": _iso(q.end),
        "interval": q.interval or "none",
        "by": by,
        "stats": list(stats),
        "rows": result.json_rows(),
        "notes": list(result.notes),
    }
    return Report(
        "query",
        title,
        subtitle,
        figures,
        sections,
        data,
        short_title=f"{q.metric.replace('_', ' ')}{' by ' + ','.join(by) if by else ''}",
        notes=tuple(result.notes),
        result=result,
    )


def message_report(text: str, *, kind: str = "message", title: str = "", data: Any = None) -> Report:
    """A plain answer (an error, a help text) in the same shapes as every other report; without a
    title, each form shows just the text."""
    return Report(
        kind,
        title,
        sections=(Section("", (Line(text, text),)),),
        data=data if data is not None else {"message": text},
    )


def report_for(result: Any) -> Report:
    """The report of any result botmeter gives: a Report, a summary, a query Result, error groups..."""
    from ..analyse.query import Result

    if isinstance(result, Report):
        return result
    if isinstance(result, Result):
        return query_report(result)
    if isinstance(result, Mapping) and {"costs", "engagement", "errors", "latency"} <= set(result):
        return summary_report(result)
    if isinstance(result, Mapping) and {"total_usd", "by_provider", "by_model"} <= set(result):
        return costs_report(result)
    if isinstance(result, Mapping) and "groups" in result and "period" in result:
        return error_groups_report(result["groups"], result["period"]["start"], result["period"]["end"])
    raise InputTypeError(
        f"result: cannot report an object of type {type(result).__name__}; "
        "give a summary, a query Result, costs or error groups"
    )


# -- consumers ------------------------------------------------------------------------------------


def _figure_text(f: Figure) -> str:
    if f.change:
        return f"{f.change} vs previous"
    return f.note


def to_text(report: Report) -> str:
    """Plain text: a title, aligned figures, then sections. For terminals, logs, e-mail and agents."""
    out = [report.title + (f" ({report.subtitle})" if report.subtitle else "")] if report.title else []
    pad = "  " if report.title else ""
    if report.figures:
        width = max(len(f.label) for f in report.figures)
        vwidth = max(len(f.value) for f in report.figures)
        out += [
            f"{pad}{f.label:<{width}}  {f.value:>{vwidth}}  {_figure_text(f)}".rstrip()
            for f in report.figures
        ]
    for s in report.sections:
        if s.title:
            out.append(f"{s.title}:")
        out += [f"{pad}{line.text}" for line in s.lines]
    out += [f"{pad}{n}" for n in report.notes]
    return "\n".join(out)


def to_sms(report: Report, max_segments: int = 2) -> str:
    """GSM-7 plain text of at most ``max_segments`` segments: the title, key figures first, then each
    section's short lines and the other figures while they fit; what did not fit is counted at the end."""
    if max_segments < 1:
        raise InputError(f"max_segments: expected 1 or more, got {max_segments!r}")

    def fits(text: str) -> bool:
        return sms_parts(text)[0] <= max_segments

    def figure(f: Figure) -> str:
        return gsm7_text(f"{f.short} {f.value}" + (f" {f.change}" if f.change else ""))

    # (title, items): a figure is a group of one; a section's short lines are one group.
    groups: list[tuple[str, list[str]]] = [("", [figure(f)]) for f in report.figures if f.key and f.short]
    for s in report.sections:
        shorts = [gsm7_text(line.short) for line in s.lines if line.short]
        if shorts:
            groups.append((gsm7_text(s.title.lower()), shorts))
    groups += [("", [figure(f)]) for f in report.figures if not f.key and f.short]
    text = gsm7_text(report.short_title or report.title)
    started = False
    left_out = 0
    for title, items in groups:
        opened = False
        for item in items:
            if opened:
                candidate = f"{text}, {item}"
            else:
                sep = "; " if started else (": " if text else "")
                candidate = text + sep + (f"{title}: " if title else "") + item
            if fits(candidate):
                text, opened, started = candidate, True, True
            elif not started:  # the first thing to say is said, cut to fit, rather than left out
                text, opened, started = _cut_to_fit(candidate, fits), True, True
            else:
                left_out += 1
    while left_out:
        for marker in (f" (+{left_out} more)", "..."):
            if fits(text + marker):
                return text + marker
        # No room for the count: give up the last item said, so what is left out is still counted.
        cut = max(text.rfind("; "), text.rfind(", "))
        if cut <= 0:
            break
        text, left_out = text[:cut], left_out + 1
    return text if fits(text) else _cut_to_fit(text, fits)


def _cut_to_fit(text: str, fits: Callable[[str], bool]) -> str:
    """The longest start of ``text`` that fits with "..." after it."""
    low, high = 0, len(text)
    while low < high:
        mid = (low + high + 1) // 2
        if fits(text[:mid].rstrip() + "..."):
            low = mid
        else:
            high = mid - 1
    return text[:low].rstrip() + "..."


_SLACK_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})


def slack_escape(text: str) -> str:
    """Slack's three control characters: ``<!channel>`` or ``<http://...|x>`` stay text."""
    return str(text).translate(_SLACK_ESCAPES)


def to_slack(report: Report) -> str:
    """Slack mrkdwn: bold labels, bullet lines; event text escaped."""
    out = []
    if report.title:
        subtitle = f"  _{slack_escape(report.subtitle)}_" if report.subtitle else ""
        out.append(f"*{slack_escape(report.title)}*{subtitle}")
    out += [_slack_figure(f) for f in report.figures]
    for s in report.sections:
        if s.title:
            out.append(f"*{slack_escape(s.title)}*")
        out += [f"• {slack_escape(line.text)}" for line in s.lines]
    out += [f"_{slack_escape(n)}_" for n in report.notes]
    return "\n".join(out)


def _slack_figure(f: Figure) -> str:
    extra = _figure_text(f)
    return f"*{slack_escape(f.label)}*: {slack_escape(f.value)}" + (
        f" ({slack_escape(extra)})" if extra else ""
    )


# Slack's documented limits for a message's blocks.
SLACK_MAX_BLOCKS = 50
SLACK_HEADER_CHARS = 150
SLACK_SECTION_CHARS = 3000
SLACK_FIELD_CHARS = 2000
SLACK_FIELDS = 10
SLACK_CONTEXT_ELEMENTS = 10


def to_slack_blocks(report: Report) -> dict[str, Any]:
    """A Block Kit message within Slack's limits: ``{"text": fallback, "blocks": [...]}`` for
    ``chat.postMessage`` or an incoming webhook. The fallback text shows in notifications."""
    blocks: list[dict[str, Any]] = []
    if report.title:
        header = {"type": "plain_text", "text": _clip(report.title, SLACK_HEADER_CHARS), "emoji": False}
        blocks.append({"type": "header", "text": header})
    if report.subtitle:
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": slack_escape(report.subtitle)}]}
        )
    fields = [{"type": "mrkdwn", "text": _clip(_slack_field(f), SLACK_FIELD_CHARS)} for f in report.figures]
    for i in range(0, len(fields), SLACK_FIELDS):
        blocks.append({"type": "section", "fields": fields[i : i + SLACK_FIELDS]})
    for s in report.sections:
        blocks.append({"type": "divider"})
        chunk = f"*{slack_escape(s.title)}*" if s.title else ""
        for line in s.lines:
            item = f"• {slack_escape(line.text)}"
            if chunk and len(chunk) + 1 + len(item) > SLACK_SECTION_CHARS:
                blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": chunk}})
                chunk = ""
            chunk = f"{chunk}\n{item}" if chunk else _clip(item, SLACK_SECTION_CHARS)
        if chunk:
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": chunk}})
    if report.notes:
        notes = [{"type": "mrkdwn", "text": _clip(slack_escape(n), SLACK_FIELD_CHARS)} for n in report.notes]
        blocks.append({"type": "context", "elements": notes[:SLACK_CONTEXT_ELEMENTS]})
    if len(blocks) > SLACK_MAX_BLOCKS:
        more = len(blocks) - (SLACK_MAX_BLOCKS - 1)
        blocks = blocks[: SLACK_MAX_BLOCKS - 1]
        blocks.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"({more} more blocks left out)"}]}
        )
    # The fallback is what notifications and screen readers show.
    return {"text": _clip(slack_escape(to_text(report)), SLACK_SECTION_CHARS), "blocks": blocks}


def _slack_field(f: Figure) -> str:
    extra = _figure_text(f)
    return f"*{slack_escape(f.label)}*\n{slack_escape(f.value)}" + (
        f"  _{slack_escape(extra)}_" if extra else ""
    )


# Inline specials only: event text never starts a line here (lists, headings need that).
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]|<>~])")


def markdown_escape(text: str) -> str:
    """Backslash-escapes Markdown's punctuation: event text stays text (no links, HTML or tables)."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(text)).replace("\n", " ")


def to_markdown(report: Report) -> str:
    """Markdown: a heading, a table of figures, a list per section; event text escaped."""
    e = markdown_escape
    out = [f"## {e(report.title)}", ""] if report.title else []
    if report.subtitle:
        out += [e(report.subtitle), ""]
    if report.figures:
        out += ["| figure | value | change |", "|---|---:|---|"]
        out += [f"| {e(f.label)} | {e(f.value)} | {e(_figure_text(f))} |" for f in report.figures]
        out.append("")
    for s in report.sections:
        if s.title:
            out += [f"### {e(s.title)}", ""]
        out += [f"- {e(line.text)}" for line in s.lines]
        out.append("")
    out += [f"_{e(n)}_" for n in report.notes]
    return "\n".join(out).rstrip() + "\n"


def json_default(value: Any) -> Any:
    """For ``json.dumps``: times as ISO-8601 UTC with a Z, anything else as its text."""
    if isinstance(value, datetime | date):
        return _iso(value)
    return str(value)


def to_json(report: Report, *, indent: int | None = 2) -> str:
    """The data behind the report (the summary, the query rows...), as JSON."""
    return json.dumps(report.data, indent=indent, default=json_default, ensure_ascii=False)


# Bedrock agents take at most 25 KB from an action group's Lambda function.
BEDROCK_MAX_BYTES = 25_000


def to_bedrock(report: Report, event: Mapping[str, Any], state: str | None = None) -> dict[str, Any]:
    """An action-group response in the function-details format (``messageVersion`` 1.0, a TEXT body).

    ``state``: None (the agent goes on), ``"REPROMPT"`` (the request needs fixing) or ``"FAILURE"``.
    """
    if state not in (None, "REPROMPT", "FAILURE"):
        raise InputError(f"state: expected None, 'REPROMPT' or 'FAILURE', got {state!r}")
    text = to_text(report)
    body = text.encode()
    if len(body) > BEDROCK_MAX_BYTES - 2000:  # room for the envelope and the session attributes
        text = body[: BEDROCK_MAX_BYTES - 2100].decode(errors="ignore") + "\n(cut to fit the agent's limit)"
    function_response: dict[str, Any] = {"responseBody": {"TEXT": {"body": text}}}
    if state:
        function_response["responseState"] = state
    return {
        "messageVersion": "1.0",
        "response": {
            "actionGroup": event.get("actionGroup"),
            "function": event.get("function") or "",
            "functionResponse": function_response,
        },
        "sessionAttributes": event.get("sessionAttributes") or {},
        "promptSessionAttributes": event.get("promptSessionAttributes") or {},
    }


API_FORMATS: dict[str, tuple[str, Callable[[Report], str]]] = {
    "json": ("application/json", to_json),
    "text": ("text/plain; charset=utf-8", to_text),
    "sms": ("text/plain; charset=utf-8", to_sms),
    "markdown": ("text/markdown; charset=utf-8", to_markdown),
    "slack": ("application/json", lambda r: json.dumps(to_slack_blocks(r), ensure_ascii=False)),
}


def api_gateway_response(
    status: int, body: str, content_type: str = "application/json", headers: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """A Lambda proxy response, as API Gateway REST (1.0) and HTTP (2.0) APIs take it."""
    return {
        "statusCode": int(status),
        "headers": {"content-type": content_type, "cache-control": "no-store", **(headers or {})},
        "body": body,
        "isBase64Encoded": False,
    }


def to_api_gateway(report: Report, status: int = 200, fmt: str = "json") -> dict[str, Any]:
    """The report as a Lambda proxy response: ``fmt`` json (the data), text, sms, markdown or slack."""
    if fmt not in API_FORMATS:
        raise InputError(f"format: expected one of {', '.join(API_FORMATS)}, got {fmt!r}")
    content_type, render = API_FORMATS[fmt]
    return api_gateway_response(status, render(report), content_type)


CONSUMERS: dict[str, Callable[[Report], Any]] = {
    "text": to_text,
    "sms": to_sms,
    "slack": to_slack,
    "slack_blocks": to_slack_blocks,
    "markdown": to_markdown,
    "json": to_json,
}


def render(result: Any, consumer: str = "text") -> Any:
    """Any result for one consumer: ``render(summary, "slack_blocks")``. See ``CONSUMERS``."""
    if consumer not in CONSUMERS:
        raise InputError(f"consumer: expected one of {', '.join(CONSUMERS)}, got {consumer!r}")
    return CONSUMERS[consumer](report_for(result))


def _iso(value: Any) -> str:
    if isinstance(value, datetime | date):
        from ..analyse.query import iso

        return iso(value) or ""
    return str(value)


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


__all__ = [
    "CONSUMERS",
    "Figure",
    "Line",
    "Report",
    "Section",
    "alerts_report",
    "anomalies_section",
    "api_gateway_response",
    "change_figure",
    "costs_report",
    "error_groups_report",
    "json_default",
    "markdown_escape",
    "message_report",
    "period_text",
    "query_report",
    "render",
    "report_for",
    "slack_escape",
    "summary_report",
    "to_api_gateway",
    "to_bedrock",
    "to_json",
    "to_markdown",
    "to_slack",
    "to_slack_blocks",
    "to_sms",
    "to_text",
]
