"""What the dashboard's panels read: the day axis, one date format, the figures through small
accessors, and what needs attention in plain words (``Page``, built once per page)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from ..analyse.query import iso
from .html import Axis
from .numbers import count, latency_s, money, percent, short

MAX_STACKED = 7  # series drawn in a stacked chart; the rest are summed as "others" (never severe ones)
SEVERE = frozenset({"critical", "error"})


# -- dates: one format everywhere ------------------------------------------------------------------


def _dt(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def day_label(d: datetime) -> str:
    """A day on an axis or in a table: "4 Dec"."""
    return f"{d.day} {d:%b}"


def day_text(d: datetime) -> str:
    """A day in a sentence: "Fri 4 Dec 2026"."""
    return f"{d:%a} {d.day} {d:%b %Y}"


def _month(text: str) -> str:
    """ "2026-12" as "December 2026"."""
    return datetime.strptime(text, "%Y-%m").strftime("%B %Y")


def time_text(d: datetime) -> str:
    """A moment: "4 Dec 2026 14:05"."""
    return f"{d.day} {d:%b %Y %H:%M}"


# -- figures the page reads (one accessor each, so a change in the data's shape is one change here) --


def reply_latency(data: dict[str, Any]) -> dict[str, Any]:
    """The reply stage's p50/p99 over the period (ms) and its p95 as a figure against the previous
    period: the summary's reply latency where it has one, else the reply stage's row of the
    per-stage table (without a comparison)."""
    lat = data["summary"].get("latency") or {}
    if "reply_p95_s" in lat:

        def ms(v: float | None) -> float | None:
            return None if v is None else v * 1000

        p95 = lat["reply_p95_s"]
        return {
            "p50": ms(lat["reply_p50_s"]["value"]),
            "p99": ms(lat["reply_p99_s"]["value"]),
            "p95": {**p95, "value": ms(p95["value"]), "previous": ms(p95.get("previous"))},
        }
    stage = data.get("reply_stage") or "reply"
    now = next((r for r in data.get("latency_by_stage") or () if r.get("stage") == stage), {})
    # The previous period's reply latency comes with the summary's reply figures.
    note = "no reply timings" if now.get("p95") is None else "no previous figure to compare"
    p95 = {"value": now.get("p95"), "previous": None, "change": None, "note": note}
    return {"p50": now.get("p50"), "p99": now.get("p99"), "p95": p95}


def failure_rate(data: dict[str, Any]) -> dict[str, Any] | None:
    """The share of inbound messages whose reply failed, where the summary gives it."""
    return data["summary"]["errors"].get("reply_failure_rate")


def user_details(row: dict[str, Any]) -> tuple[Any, Any]:
    """A top user's country and message count, where the figures carry them."""
    return row.get("country"), row.get("messages")


def secs(v: float | None) -> str:
    """A latency given in ms, shown as ``latency_s`` shows seconds: "0.83 s", "12.3 s", "2.5 min"."""
    return latency_s(None if v is None else v / 1000)


def cost(v: float | None) -> str:
    """A cost; an unpriced one says so rather than pretending to be $0."""
    return "unpriced" if v is None else money(v)


def signed_money(v: float) -> str:
    return ("+" if v >= 0 else "-") + money(abs(v))


# -- what needs attention --------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One thing that needs a look, in plain words, with the panel that shows it and the tile it marks."""

    text: str
    panel: str
    tile: str | None
    level: str  # "bad", "warn", "good", "info"


# Anomaly metric -> (what it is called, how its values read, its panel, its tile).
WATCHED: dict[str, tuple[str, Callable[[float | None], str], str, str]] = {
    "cost_usd": ("Cost", money, "cost_by_model", "cost_usd"),
    "active_users": ("Active users", count, "users", "active_users"),
    "error_rate": ("The error rate", percent, "error_rate", "error_rate"),
    "latency_ms": ("Response time (p95)", secs, "latency", "reply_p95"),
    "reply_latency_s": (
        "Reply time (p95)",
        latency_s,
        "latency",
        "reply_p95",
    ),
}
# Alert rule -> (headline, panel, tile).
ALERTS: dict[str, tuple[str, str, str]] = {
    "daily_budget": ("Daily budget reached", "cost_by_model", "cost_usd"),
    "monthly_budget": ("Monthly budget reached", "forecast", "cost_usd"),
    "forecast_over_budget": ("Forecast over budget", "forecast", "cost_usd"),
    "error_rate": ("Error rate over its limit", "error_rate", "error_rate"),
    "error_rate_spike": ("Error rate spike", "error_rate", "error_rate"),
    "p95_latency": ("Slow replies", "latency", "reply_p95"),
    "new_error_group": ("New error", "error_groups", "error_rate"),
    "regression": ("An error is back", "error_groups", "error_rate"),
}


def _anomaly(a: dict[str, Any]) -> Finding:
    key = a["metric"].split(":")[0]
    label, fmt, panel, tile = WATCHED.get(key, (a.get("label") or key, short, "attention", None))
    day = _dt(a["day"])
    high = "high" if a.get("direction") == "spike" else "low"
    usual = a.get("baseline_median")
    text = f"{label} was unusually {high} on {day_text(day)}: {fmt(a.get('value'))}"
    if usual is not None:
        text += f", against a usual {fmt(usual)} on a {day:%A}"
    return Finding(text + ".", panel, tile, "warn")


def _unusual_days(anomalies: list[dict[str, Any]]) -> list[Finding]:
    """One line per figure and direction: "Cost was unusually high on 3 days: ..." (one day: the
    sentence of ``_anomaly``)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for a in anomalies:
        groups.setdefault((a["metric"], a.get("direction") or ""), []).append(a)
    out = []
    for (metric, direction), days in groups.items():
        if len(days) == 1:
            out.append(_anomaly(days[0]))
            continue
        first = _anomaly(days[0])
        label, fmt, _, _ = WATCHED.get(metric.split(":")[0], (metric, short, "", None))
        each = "; ".join(
            f"{day_text(_dt(a['day']))}: {fmt(a.get('value'))}"
            + (f" (usual {fmt(a['baseline_median'])})" if a.get("baseline_median") is not None else "")
            for a in sorted(days, key=lambda a: a["day"])
        )
        high = "high" if direction == "spike" else "low"
        text = f"{label} was unusually {high} on {len(days)} days: {each}."
        out.append(Finding(text, first.panel, first.tile, first.level))
    return out


def _alert(a: dict[str, Any]) -> Finding:
    headline, panel, tile = ALERTS.get(a["rule"], ("Alert", "attention", None))
    # Fingerprints are for machines: the page names errors by type and message.
    message = re.sub(r"error group [0-9a-f]{8,}:?\s*", "", a.get("message") or "")
    return Finding(f"{headline}: {message}", panel, tile, "bad")


def attention(data: dict[str, Any]) -> list[Finding]:
    """What a bot owner should look at first: alerts, anomalies, new, regressed and critical error
    groups, and the budget."""
    found = [_alert(a) for a in data.get("alerts") or ()]
    found += _unusual_days(data.get("anomalies") or [])
    groups = data.get("error_groups") or []

    def names(gs: list[dict[str, Any]]) -> str:
        shown = ", ".join(
            f"{g.get('error_type') or 'error'} ({(g.get('category') or 'uncategorised').replace('_', ' ')})"
            for g in gs[:3]
        )
        return shown + (f" and {len(gs) - 3} more" if len(gs) > 3 else "")

    for status, level, what in (
        ("critical", "bad", "critical: they stop the bot or cost money"),
        ("new", "warn", "new in this period"),
        ("regressed", "warn", "back after a quiet week"),
    ):
        gs = [g for g in groups if (g.get("severity") if status == "critical" else g.get("status")) == status]
        if gs:
            noun = "error kind is" if len(gs) == 1 else "error kinds are"
            found.append(
                Finding(f"{len(gs)} {noun} {what}: {names(gs)}.", "error_groups", "error_rate", level)
            )
    f = data.get("forecast")
    if f:
        budget = f.get("budget_usd")
        projected = money(f["projected_usd"])
        if budget and f.get("over_budget"):
            found.append(
                Finding(
                    f"Budget: this month is heading for {projected}, over the {money(budget)} budget.",
                    "forecast",
                    "cost_usd",
                    "bad",
                )
            )
        elif budget:
            found.append(
                Finding(
                    f"Budget: on track, {projected} forecast of {money(budget)}.", "forecast", None, "good"
                )
            )
        else:
            found.append(
                Finding(
                    f"No monthly budget set; this month is heading for {projected}.", "forecast", None, "info"
                )
            )
    return found


# -- the page's context: the day axis, marks and lookups, worked out once -----------------------------


class Page:
    """One data set as the chart functions need it: days, labels, markers, findings."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.zone = ZoneInfo(data.get("timezone") or "UTC")
        period = data["period"]
        start = _dt(period["start"]).replace(hour=0, minute=0, second=0)
        self.days = [start + timedelta(days=i) for i in range(period["days"])]
        self.index = {iso(d): i for i, d in enumerate(self.days)}
        self.labels = [day_label(d) for d in self.days]
        end = _dt(period["end"])
        self.partial = end != end.replace(hour=0, minute=0, second=0, microsecond=0)
        self.findings = attention(data)
        self.markers: dict[str, list[tuple[int, str, str]]] = {}
        for a, finding in zip(
            data.get("anomalies") or (), (_anomaly(a) for a in data.get("anomalies") or ()), strict=True
        ):
            if a["day"] in self.index:
                self.markers.setdefault(finding.panel, []).append(
                    (self.index[a["day"]], "anomaly", finding.text)
                )
        for a in data.get("alerts") or ():
            finding = _alert(a)
            self.markers.setdefault(finding.panel, []).append((len(self.days) - 1, "alert", finding.text))

    def axis(self, unit: str, fmt: Callable[[float | None], str] = short) -> Axis:
        return Axis(self.labels, unit, "day (UTC)", self.partial, fmt)

    def local(self, text: str | None) -> str:
        return "-" if not text else time_text(_dt(text).astimezone(self.zone))

    def rows(self, key: str) -> list[dict[str, Any]]:
        return self.data.get(key) or []

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

    def grouped(
        self,
        rows: Sequence[dict[str, Any]],
        key: Callable[[dict], str],
        severe: Callable[[str], bool] = lambda _: False,
    ) -> list[tuple[str, list]]:
        """Per-day series per group, largest total first; past ``MAX_STACKED`` the smallest are summed
        as "others", except severe groups, which always keep their own colour."""
        groups: dict[str, list[float | None]] = {}
        for row in rows:
            i = self.index.get(row["bucket"])
            if i is None or not row.get("value"):
                continue
            values = groups.setdefault(key(row), [None] * len(self.days))
            values[i] = (values[i] or 0) + row["value"]

        def total(kv: tuple[str, list]) -> float:
            return -sum(v or 0 for v in kv[1])

        ordered = sorted(groups.items(), key=total)
        if len(ordered) <= MAX_STACKED:
            return ordered
        kept = [g for g in ordered if severe(g[0])]
        rest = [g for g in ordered if not severe(g[0])]
        room = max(MAX_STACKED - 1 - len(kept), 2)
        folded = rest[room:] if len(rest) > room + 1 else []
        shown = sorted(kept + rest[: len(rest) - len(folded)], key=total)
        if folded:
            other = [sum(v[i] or 0 for _, v in folded) or None for i in range(len(self.days))]
            shown.append((f"{len(folded)} others", other))
        return shown


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
