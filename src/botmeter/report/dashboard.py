"""The self-contained HTML dashboard: one file that opens from disk with no network at all.

``write_dashboard(reader, days, output)`` gathers the figures (``analyse.dashboard``), renders
them and writes the HTML (and, if asked, the same figures as JSON beside it). Charts are inline
SVG drawn here; the styles are inline; the page has no script. Each panel shows its numbers as
text and says how they are computed, with the ``botmeter query`` command that gives them.

Standalone: ``python -m botmeter.report.dashboard --days 7 --output metrics/dashboard.html``.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from .. import __version__
from ..analyse.dashboard import dashboard_data
from ..analyse.query import iso
from .html import (
    WIDE_H,
    WIDE_W,
    Markup,
    bar_chart,
    bar_list,
    box_plot,
    facts,
    h,
    heat_table,
    join,
    legend,
    line_chart,
    sparkline,
    table,
)
from .numbers import count, money, ms, percent, seconds, short, short_money

MAX_STACKED = 7  # series drawn in a stacked chart; the rest are summed as "other"
MAX_SMALL_MULTIPLES = 8
STYLE_PATH = Path(__file__).with_name("dashboard.css")


# -- writing ---------------------------------------------------------------------------------------


def write_dashboard(
    reader: Any,
    days: int,
    output: str | Path,
    *,
    with_json: bool = False,
    now: datetime | None = None,
    monthly_budget_usd: float | None = None,
    alerts: list[dict[str, Any]] | None = None,
) -> tuple[Path, Path | None]:
    """Writes the dashboard for the last ``days`` days to ``output`` (and ``.json`` beside it)."""
    data = dashboard_data(reader, days, now, monthly_budget_usd=monthly_budget_usd, alerts=alerts)
    path = Path(output)
    _write_atomic(path, render(data))
    json_path = None
    if with_json:
        json_path = path.with_suffix(".json")
        _write_atomic(json_path, to_json(data))
    return path, json_path


def to_json(data: dict[str, Any]) -> str:
    def default(value: Any) -> Any:
        return iso(value) if isinstance(value, datetime) else str(value)

    return json.dumps(data, indent=1, default=default, ensure_ascii=False) + "\n"


def _write_atomic(path: Path, text: str) -> None:
    # A reader (a browser, a mail client) never sees half a file: write beside it, then rename.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# -- the page --------------------------------------------------------------------------------------


def render(data: dict[str, Any]) -> str:
    """The whole page for the figures of ``analyse.dashboard.dashboard_data``."""
    view = _View(data)
    period = data["period"]
    start, end = _dt(period["start"]), _dt(period["end"])
    header = h(
        "header",
        None,
        h("h1", None, "botmeter"),
        h(
            "p",
            {"class": "period"},
            f"Last {period['days']} days: {start:%a %d %b %Y} to {end:%a %d %b %Y %H:%M} UTC",
            h("br"),
            h("span", {"class": "muted"}, f"store {data['store']} · generated {data['generated_at']}"),
        ),
    )
    missing = data.get("unavailable") or {}
    notice = (
        h(
            "div",
            {"class": "notice"},
            h("b", None, "Not available from this store: "),
            "; ".join(f"{k} ({v})" for k, v in sorted(missing.items())),
        )
        if missing
        else None
    )
    body = join(
        [
            header,
            notice,
            view.kpis(),
            view.section(
                "Cost", [view.cost_by_model(), view.unit_costs(), view.top_spenders(), view.forecast()]
            ),
            view.section(
                "Engagement",
                [
                    view.users(),
                    view.conversations(),
                    view.distribution(),
                    view.retention(),
                    view.activities(),
                    view.traffic(),
                ],
            ),
            view.section("Errors", [view.errors_over_time(), view.error_rate(), view.error_groups()]),
            view.section("Speed", [view.latency(), view.latency_by("stage"), view.latency_by("model")]),
            view.section("Anomalies and alerts", [view.findings()]),
            h(
                "footer",
                None,
                f"botmeter {__version__} · schema {data['schema']} v{data['version']} · "
                "every figure comes from the query shown under its panel",
            ),
        ]
    )
    return (
        "<!DOCTYPE html>\n"
        + h(
            "html",
            {"lang": "en"},
            h(
                "head",
                None,
                Markup('<meta charset="utf-8">'),
                Markup('<meta name="viewport" content="width=device-width, initial-scale=1">'),
                # Nothing may load or run: the page is data only, even if it were opened from a mail.
                Markup(
                    '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
                    "style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'\">"
                ),
                Markup('<meta name="referrer" content="no-referrer">'),
                h("title", None, f"botmeter: last {period['days']} days to {end:%Y-%m-%d}"),
                h("style", None, Markup(STYLE_PATH.read_text())),
            ),
            h("body", None, h("main", None, body)),
        )
        + "\n"
    )


def _dt(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def _command(q: dict[str, Any]) -> str:
    """The ``botmeter query`` command line that gives a panel's figures."""
    parts = ["botmeter query", q["metric"], f"--start {q['start']}", f"--end {q['end']}"]
    parts.append(f"--interval {q.get('interval') or 'none'}")
    for key in ("by", "stat", "limit"):
        if q.get(key) is not None:
            parts.append(f"--{key} {q[key]}")
    return " ".join(parts)


class _View:
    """Panels over one data set: the day axis, markers and lookups are worked out once."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        start = _dt(data["period"]["start"])
        self.days = [start + timedelta(days=i) for i in range(data["period"]["days"])]
        self.index = {iso(d): i for i, d in enumerate(self.days)}
        self.labels = [f"{d:%b} {d.day}" for d in self.days]
        self.anomaly_marks: dict[str, list[tuple[int, str, str]]] = {}
        for a in data.get("anomalies") or ():
            if a["day"] in self.index:
                self.anomaly_marks.setdefault(a["metric"], []).append(
                    (self.index[a["day"]], "anomaly", a["explanation"])
                )
        self.alert_marks: dict[str, list[tuple[int, str, str]]] = {}
        last = len(self.days) - 1
        for a in data.get("alerts") or ():
            target = ALERT_SERIES.get(a["rule"])
            if target:
                self.alert_marks.setdefault(target, []).append((last, "alert", f"alert: {a['message']}"))

    def marks(self, key: str) -> list[tuple[int, str, str]]:
        return self.anomaly_marks.get(key, []) + self.alert_marks.get(key, [])

    # -- building blocks ---------------------------------------------------------------------------

    def series(
        self,
        rows: Sequence[dict[str, Any]],
        value: str = "value",
        where: Callable[[dict], bool] | None = None,
    ) -> list[float | None]:
        out: list[float | None] = [None] * len(self.days)
        for row in rows:
            i = self.index.get(row["bucket"])
            if i is not None and (where is None or where(row)):
                v = row.get(value)
                out[i] = v if out[i] is None or v is None else out[i] + v
        return out

    def grouped(self, rows: Sequence[dict[str, Any]], key: Callable[[dict], str]) -> list[tuple[str, list]]:
        """Per-day series per group, largest total first; past ``MAX_STACKED`` summed as other."""
        groups: dict[str, list[float | None]] = {}
        for row in rows:
            i = self.index.get(row["bucket"])
            if i is None or not row.get("value"):
                continue
            values = groups.setdefault(key(row), [None] * len(self.days))
            values[i] = (values[i] or 0) + row["value"]
        ordered = sorted(groups.items(), key=lambda kv: -sum(v or 0 for v in kv[1]))
        if len(ordered) > MAX_STACKED:
            rest = ordered[MAX_STACKED - 1 :]
            other = [sum(v[i] or 0 for _, v in rest) or None for i in range(len(self.days))]
            ordered = [*ordered[: MAX_STACKED - 1], (f"{len(rest)} others", other)]
        return ordered

    def panel(
        self,
        key: str,
        title: str,
        how: str,
        content: Any,
        *,
        query_keys: Sequence[str] = (),
        wide: bool = False,
    ) -> Markup:
        missing = self.data.get("unavailable") or {}
        gone = [k for k in (query_keys or (key,)) if k in missing]
        if gone:
            content = h(
                "p",
                {"class": "unavailable"},
                "Not available from this store: ",
                "; ".join(missing[k] for k in gone),
            )
        commands = [
            _command(self.data["queries"][k]) for k in query_keys if k in self.data.get("queries", {})
        ]
        return h(
            "section",
            {"class": "panel wide" if wide else "panel", "data-panel": key, "id": key},
            h("h3", None, title),
            content,
            h("p", {"class": "how"}, h("b", None, "How this is computed: "), how),
            h(
                "details",
                {"class": "how"},
                h("summary", None, "The query"),
                [h("code", None, c) for c in commands],
            )
            if commands
            else None,
        )

    @staticmethod
    def section(title: str, panels: list[Markup]) -> Markup:
        slug = title.lower().replace(" ", "-")
        return h(
            "section",
            {"class": "group", "id": slug},
            h("h2", None, title),
            h("div", {"class": "grid"}, panels),
        )

    @staticmethod
    def empty(text: str = "No data in this period.") -> Markup:
        return h("p", {"class": "empty"}, text)

    # -- KPIs ----------------------------------------------------------------------------------------

    def kpis(self) -> Markup:
        k = self.data["kpis"]
        tiles = [
            ("cost_usd", "Cost", money, False),
            ("active_users", "Active users", count, True),
            ("conversations", "Conversations", count, True),
            ("messages", "Messages", count, True),
            ("error_rate", "Error rate", percent, False),
            ("latency_p95_ms", "p95 latency", ms, False),
        ]
        cells = []
        for key, label, fmt, up_is_good in tiles:
            fig = k.get(key) or {}
            change = fig.get("change")
            if change is None:
                trend = h("span", {"class": "change flat"}, fig.get("note") or "no change figure")
            else:
                good = (change >= 0) == up_is_good
                arrow = "▲" if change > 0 else ("▼" if change < 0 else "=")
                trend = h(
                    "span",
                    {"class": f"change {'good' if good else 'bad'}"},
                    f"{arrow} {change:+.0%} vs previous ({fmt(fig.get('previous'))})",
                )
            cells.append(
                h(
                    "div",
                    {"class": "kpi", "data-kpi": key},
                    h("div", {"class": "label"}, label),
                    h("div", {"class": "figure"}, fmt(fig.get("value"))),
                    trend,
                )
            )
        period = self.data["period"]
        how = (
            f"Totals for the period ({period['start']} to {period['end']}) against the previous "
            f"period of equal length ({period['previous_start']} to {period['previous_end']}). "
            "A change is shown only when both periods have at least 20 events (or $1). Error rate = "
            "errors / inbound messages; p95 is exact, over every timing and LLM call. The same figures: "
            f"botmeter summary --days {period['days']}."
        )
        return h(
            "section",
            {"class": "panel kpis", "data-panel": "kpis"},
            h("h2", {"class": "sr"}, "Key figures"),
            h("div", {"class": "tiles"}, cells),
            h("p", {"class": "how"}, h("b", None, "How this is computed: "), how),
        )

    # -- cost ------------------------------------------------------------------------------------------

    def cost_by_model(self) -> Markup:
        rows = self.data.get("cost_by_model") or []
        groups = self.grouped(
            rows, lambda r: " / ".join(x for x in (r.get("provider") or "other", r.get("model")) if x)
        )
        content = (
            join(
                [
                    bar_chart(
                        self.labels,
                        groups,
                        title="Cost per day by provider and model",
                        fmt=money,
                        axis_fmt=short_money,
                        markers=self.marks("cost_usd"),
                        width=WIDE_W,
                        height=WIDE_H,
                    ),
                    legend([(name, money(sum(v or 0 for v in values))) for name, values in groups]),
                ]
            )
            if groups
            else self.empty()
        )
        return self.panel(
            "cost_by_model",
            "Cost per day, by provider and model",
            "Sum of cost_usd per UTC day over every paid call (LLM tokens at genai-prices' rates, with "
            "cached and reasoning tokens; SMS segments at the country's rate; other APIs at their price), "
            "stacked by provider and model; the legend gives each one's total for the period. Markers: "
            "anomalies (!) and alerts (▲).",
            content,
            query_keys=("cost_by_model",),
            wide=True,
        )

    def unit_costs(self) -> Markup:
        conv = self.series(self.data.get("cost_per_conversation") or [])
        user = self.series(self.data.get("cost_per_active_user") or [])
        costs = self.data["summary"]["costs"]
        content = join(
            [
                line_chart(
                    self.labels,
                    [("per conversation", conv), ("per active user", user)],
                    title="Cost per conversation and per active user, per day",
                    fmt=money,
                    axis_fmt=short_money,
                ),
                legend(
                    [
                        ("per conversation, period", money(costs["per_conversation_usd"]["value"])),
                        ("per active user, period", money(costs["per_active_user_usd"]["value"])),
                    ]
                ),
            ]
        )
        return self.panel(
            "unit_costs",
            "Cost per conversation and per active user",
            "Each day's cost divided by that day's conversations, and by its active users (users who sent "
            "a message). The period figures divide the period's cost by the period's distinct "
            "conversations and users.",
            content,
            query_keys=("cost_per_conversation", "cost_per_active_user"),
        )

    def top_spenders(self) -> Markup:
        parts = []
        for key, label in (("top_users", "user"), ("top_conversations", "conversation")):
            rows = self.data.get(key) or []
            parts.append(
                table(
                    [(f"{label} (hashed id)" if label == "user" else label, False), ("cost", True)],
                    [(r.get(label) or "(none)", money(r.get("value"))) for r in rows],
                    caption=f"Top {label}s by cost",
                )
                if rows
                else self.empty(f"No {label}s with a cost.")
            )
        return self.panel(
            "top_spenders",
            "Top users and conversations by cost",
            "The largest sums of cost_usd per user and per conversation over the period. User ids are "
            "keyed hashes (HMAC-SHA256), never the phone number; conversation ids are as the bot gave "
            "them (hashed too when they are phone numbers).",
            join(parts),
            query_keys=("top_users", "top_conversations"),
        )

    def forecast(self) -> Markup:
        f = self.data.get("forecast")
        if not f:
            return self.panel(
                "forecast", "Month-end forecast", "", self.empty("No forecast."), query_keys=("forecast",)
            )
        budget = f.get("budget_usd")
        top = max(f["projected_usd"], budget or 0) or 1
        bars = [
            ("so far", f["month_to_date_usd"], "s0"),
            ("projected", f["projected_usd"], "s1"),
        ]
        rows = [
            h(
                "div",
                {"class": "fbar"},
                h("span", {"class": "name"}, name),
                h(
                    "div",
                    {"class": "track"},
                    h("div", {"class": f"fill mark {cls}", "style": f"width:{100 * v / top:.1f}%"}),
                ),
                h("b", None, money(v)),
            )
            for name, v, cls in bars
        ]
        if budget:
            state = "over" if f.get("over_budget") else "within"
            note = h("p", {"class": f"budget {state}"}, f"Budget {money(budget)}: projected {state} budget.")
        else:
            note = h(
                "p", {"class": "muted"}, "No budget set (monthly_budget_usd in the alert rules, or --budget)."
            )
        content = join(
            [
                h("p", {"class": "big"}, f"{f['month']}: {money(f['projected_usd'])} projected"),
                rows,
                note,
                h(
                    "p",
                    {"class": "muted"},
                    f"{money(f['daily_rate_usd'])} a day, {f['days_left']:.1f} days left",
                ),
            ]
        )
        return self.panel(
            "forecast",
            "Month-end forecast",
            f"{f['method'].capitalize()}.",
            content,
            query_keys=("forecast",),
        )

    # -- engagement ------------------------------------------------------------------------------------

    def users(self) -> Markup:
        new = self.series(self.data.get("new_users") or [])
        back = self.series(self.data.get("returning_users") or [])
        active = self.series(self.data.get("active_users") or [])
        e = self.data["summary"]["engagement"]
        content = join(
            [
                bar_chart(
                    self.labels,
                    [("new", new), ("returning", back)],
                    title="Active users per day: new and returning",
                    fmt=count,
                    markers=self.marks("active_users"),
                ),
                legend([("new", count(e["new_users"]["value"])), ("returning", "")]),
                facts(
                    [
                        ("active in the period", count(e["active_users"]["value"])),
                        ("busiest day", count(max((v or 0 for v in active), default=0))),
                    ]
                ),
            ]
        )
        return self.panel(
            "users",
            "Active, new and returning users per day",
            "Active: distinct users who sent a message that day. New: first message ever that day. "
            "Returning: active, first seen before that day. Bar height = active users.",
            content,
            query_keys=("active_users", "new_users", "returning_users"),
        )

    def conversations(self) -> Markup:
        convs = self.series(self.data.get("conversations") or [])
        msgs = self.series(self.data.get("messages") or [])
        e = self.data["summary"]["engagement"]
        content = join(
            [
                line_chart(
                    self.labels,
                    [("messages", msgs), ("conversations", convs)],
                    title="Conversations and messages per day",
                    fmt=count,
                ),
                legend(
                    [
                        ("messages in the period", count(e["messages"]["value"])),
                        ("conversations in the period", count(e["conversations"]["value"])),
                    ]
                ),
            ]
        )
        gap = e.get("session_gap_minutes", 30)
        return self.panel(
            "conversations",
            "Conversations and messages per day",
            "Messages in and out per day. A conversation is the bot's conversation id, or for messages "
            f"without one a user's messages split at silences longer than {gap:g} minutes.",
            content,
            query_keys=("conversations", "messages"),
        )

    def distribution(self) -> Markup:
        parts = []
        for key, label, fmt in (
            ("conversation_length", "Messages per conversation", short),
            ("conversation_duration", "Conversation duration", seconds),
        ):
            stats = self.data.get(key)
            if not stats or not stats.get("count"):
                parts.append(self.empty(f"{label}: no conversations."))
                continue
            parts.append(h("h4", None, label))
            parts.append(box_plot(stats, title=label, fmt=fmt))
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
        return self.panel(
            "distribution",
            "Conversation length and duration",
            "For conversations that started in the period: the line spans the 10th to the 90th "
            "percentile, the box the middle half (25th to 75th), the bar inside it the median and the "
            "dot the average. Duration is the last message's time minus the first's.",
            join(parts),
            query_keys=("conversation_length", "conversation_duration"),
        )

    def retention(self) -> Markup:
        rows = self.data.get("retention") or []
        cohorts: dict[str, dict[int, float | None]] = {}
        sizes: dict[str, int] = {}
        for r in rows:
            cohorts.setdefault(r["bucket"], {})[r["period"]] = r["value"]
            sizes[r["bucket"]] = r["cohort_users"]
        periods = sorted({p for c in cohorts.values() for p, v in c.items() if v is not None})
        keys = sorted(cohorts)
        content = (
            heat_table(
                [f"week of {_dt(k):%b} {_dt(k).day}" for k in keys],
                [f"wk {p}" for p in periods],
                [[cohorts[k].get(p) for p in periods] for k in keys],
                caption="Share of each week's new users active N weeks later",
                fmt=lambda v: "" if v is None else f"{v:.0%}",
                scale_max=1.0,
                extra_column=("users", [count(sizes[k]) for k in keys]),
            )
            if keys
            else self.empty()
        )
        return self.panel(
            "retention",
            "Retention by weekly cohort",
            "Users grouped by the week (Monday, UTC) of their first message; each cell is the share of "
            "them who sent a message N weeks later. Blank: that week has not happened yet. Covers at "
            "least the last 8 weeks.",
            content,
            query_keys=("retention",),
        )

    def activities(self) -> Markup:
        rows = sorted(self.data.get("activities") or [], key=lambda r: -(r.get("value") or 0))
        content = (
            bar_list(
                [(r.get("name") or "(none)", r["value"]) for r in rows if r.get("value")],
                fmt=count,
                caption="Activities in the period",
            )
            if rows
            else self.empty("No activities (resets, admin commands, features) in this period.")
        )
        return self.panel(
            "activities",
            "Resets, admin commands and features",
            "Activity events by name over the period: 'reset' for conversation resets, 'admin:*' for admin "
            "commands (admin_denied for refused attempts), 'feature:*' for features used.",
            content,
            query_keys=("activities",),
        )

    def traffic(self) -> Markup:
        heat = self.data.get("traffic_heatmap")
        content = (
            heat_table(
                heat["weekdays"],
                [f"{hour:02d}" for hour in heat["hours"]],
                heat["counts"],
                caption="Inbound messages by weekday and hour (UTC)",
                fmt=lambda v: "" if not v else short(v),
            )
            if heat and any(any(r) for r in heat["counts"])
            else self.empty()
        )
        return self.panel(
            "traffic",
            "Traffic by weekday and hour",
            "Inbound messages per hour of the period, summed by weekday and hour of day (UTC).",
            content,
            query_keys=("traffic_by_hour",),
            wide=True,
        )

    # -- errors ----------------------------------------------------------------------------------------

    def errors_over_time(self) -> Markup:
        rows = self.data.get("errors_by_category") or []
        parts = []
        for field, label in (("category", "category"), ("severity", "severity")):
            groups = self.grouped(rows, lambda r, f=field: r.get(f) or "(none)")
            if not groups:
                continue
            parts.append(h("h4", None, f"by {label}"))
            parts.append(
                bar_chart(
                    self.labels,
                    groups,
                    title=f"Errors per day by {label}",
                    fmt=count,
                    width=WIDE_W,
                    height=WIDE_H,
                )
            )
            parts.append(legend([(name, count(sum(v or 0 for v in values))) for name, values in groups]))
        return self.panel(
            "errors_over_time",
            "Errors per day by category and severity",
            "Error events per day. The category comes from the exception type, HTTP status or provider "
            "code (rate_limit, quota, timeout, auth, ...); severity from the category unless the bot "
            "gave one.",
            join(parts) if parts else self.empty("No errors in this period."),
            query_keys=("errors_by_category",),
            wide=True,
        )

    def error_rate(self) -> Markup:
        rate = self.series(self.data.get("error_rate") or [])
        r = self.data["summary"]["errors"]
        content = join(
            [
                line_chart(
                    self.labels,
                    [("error rate", rate)],
                    title="Error rate per day",
                    fmt=percent,
                    axis_fmt=lambda v: f"{(v or 0):.1%}",
                    markers=self.marks("error_rate"),
                ),
                legend([("error rate, period", percent(r["error_rate"]["value"]))]),
                facts(
                    [
                        ("errors", count(r["errors"]["value"])),
                        ("worst day", percent(max((v for v in rate if v is not None), default=None))),
                    ]
                ),
            ]
        )
        return self.panel(
            "error_rate",
            "Error rate",
            "Errors divided by inbound messages, per day. Empty where there were no inbound messages.",
            content,
            query_keys=("error_rate",),
        )

    def error_groups(self) -> Markup:
        groups = self.data.get("error_groups") or []
        rows = []
        for g in groups[:50]:
            message = g.get("message") or ""
            rows.append(
                (
                    h("span", {"class": f"status {g['status']}"}, g["status"]),
                    join(
                        [
                            h("b", None, g.get("error_type") or "error"),
                            f" · {g.get('category') or '-'} · {g.get('severity') or '-'}",
                            h("br"),
                            h("span", {"class": "msg", "title": message}, _clip(message, 160)),
                        ]
                    ),
                    count(g["count"]),
                    count(g["users"]),
                    g["first_seen"][:16].replace("T", " "),
                    g["last_seen"][:16].replace("T", " "),
                    sparkline(g.get("daily") or [], label=f"{g['count']} errors per day"),
                )
            )
        content = (
            table(
                [
                    ("status", False),
                    ("error", False),
                    ("count", True),
                    ("users", True),
                    ("first seen", False),
                    ("last seen", False),
                    ("per day", False),
                ],
                rows,
                caption=f"{len(groups)} error groups in the period"
                + (" (first 50 shown)" if len(groups) > 50 else ""),
            )
            if rows
            else self.empty("No errors in this period.")
        )
        return self.panel(
            "error_groups",
            "Error groups",
            "Errors grouped by fingerprint (type + message with numbers and ids masked + the innermost "
            "frame of your code). New: first seen in the period. Regressed: back after 7 quiet days. "
            "Times are UTC. The same list: botmeter summary --format json (errors.top_groups), or "
            "Reader.error_groups().",
            content,
            wide=True,
        )

    # -- speed -----------------------------------------------------------------------------------------

    def latency(self) -> Markup:
        rows = self.data.get("latency") or []
        series = [(s, self.series(rows, s)) for s in ("p50", "p95", "p99")]
        lat = self.data["summary"]["latency"]
        content = join(
            [
                line_chart(
                    self.labels,
                    series,
                    title="Response time percentiles per day",
                    fmt=ms,
                    markers=self.marks("latency_ms:p95"),
                    width=WIDE_W,
                    height=WIDE_H,
                ),
                legend([(f"{s}, period", ms(lat[f"{s}_ms"]["value"])) for s in ("p50", "p95", "p99")]),
            ]
        )
        return self.panel(
            "latency",
            "Response time: p50, p95, p99",
            "Exact percentiles (linear interpolation) of latency_ms over every timing and LLM-call event "
            "of the day, all stages together.",
            content,
            query_keys=("latency",),
            wide=True,
        )

    def latency_by(self, dim: str) -> Markup:
        key = f"latency_by_{dim}"
        rows = self.data.get(key) or []
        names: dict[str, float] = {}
        for r in rows:
            if r.get("p95") is not None:
                names[r.get(dim) or "(none)"] = max(names.get(r.get(dim) or "(none)", 0), r["p95"])
        shown = sorted(names, key=lambda n: -names[n])[:MAX_SMALL_MULTIPLES]
        charts = []
        for name in shown:

            def this(r: dict, name: str = name) -> bool:
                return (r.get(dim) or "(none)") == name

            series = [(s, self.series(rows, s, this)) for s in ("p50", "p95", "p99")]
            last = next((v for v in reversed(series[1][1]) if v is not None), None)
            charts.append(
                h(
                    "figure",
                    {"class": "multiple"},
                    h("figcaption", None, h("b", None, name), f" · p95 latest {ms(last)}"),
                    line_chart(
                        self.labels,
                        series,
                        title=f"{name}: p50, p95, p99 per day",
                        fmt=ms,
                        width=420,
                        height=170,
                    ),
                )
            )
        more = len(names) - len(shown)
        content = (
            join(
                [
                    legend([("p50", ""), ("p95", ""), ("p99", "")]),
                    h("div", {"class": "multiples"}, charts),
                    h("p", {"class": "muted"}, f"{more} more in the JSON file.") if more > 0 else None,
                ]
            )
            if charts
            else self.empty()
        )
        return self.panel(
            key,
            f"Response time per {dim}",
            f"The same percentiles per {dim}, per day; the slowest {MAX_SMALL_MULTIPLES} (by their worst "
            "daily p95) are drawn.",
            content,
            query_keys=(key,),
            wide=True,
        )

    # -- anomalies and alerts --------------------------------------------------------------------------

    def findings(self) -> Markup:
        items = [
            h("li", {"class": "alert"}, h("b", None, f"alert {a['rule']}: "), a["message"])
            for a in self.data.get("alerts") or ()
        ] + [
            h(
                "li",
                {"class": "anomaly"},
                h("b", None, f"{a['direction']} in {a['metric']}: "),
                a["explanation"],
            )
            for a in self.data.get("anomalies") or ()
        ]
        content = (
            h("ul", {"class": "findings"}, items)
            if items
            else self.empty("No anomalies, and no alerts fired (alert rules: --rules or BOTMETER_ALERTS).")
        )
        return self.panel(
            "findings",
            "Anomalies and alerts",
            "Each complete day of cost, active users, error rate and p95 latency is compared with the same "
            "weekday in the 4 weeks before it (median and median absolute deviation); a robust score "
            "past 3.5 is an anomaly, marked ! on its chart. Alerts come from the rules file and are "
            "marked ▲ on the latest day of the series they concern.",
            content,
            wide=True,
        )


# Which chart an alert is drawn on.
ALERT_SERIES = {
    "daily_budget": "cost_usd",
    "monthly_budget": "cost_usd",
    "forecast_over_budget": "cost_usd",
    "error_rate": "error_rate",
    "error_rate_spike": "error_rate",
    "p95_latency": "latency_ms:p95",
}


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def main(argv: Sequence[str] | None = None) -> None:  # pragma: no cover - thin wrapper over the CLI
    from ..interfaces.cli import main as cli

    cli(["dashboard", *(argv if argv is not None else __import__("sys").argv[1:])])


if __name__ == "__main__":  # pragma: no cover
    main()
