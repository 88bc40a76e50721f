"""Every figure the dashboard for a period shows, gathered in one read session, as plain data.

The HTML dashboard (``botmeter.report.dashboard``), its JSON file and the benchmark all use this
set, so the benchmark measures what a user waits for. The headline figures are the period summary
(``botmeter summary``); every series is one ``Reader.query`` whose arguments travel with it, so
each number on the dashboard can be reproduced with ``botmeter query``.

The JSON schema is ``botmeter.dashboard``, version ``SCHEMA_VERSION``, described key by key in
``report/dashboard.schema.json``. A new key is a minor change; a renamed or retyped one raises the
version.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ..exceptions import StoreUnavailable
from .catalogue import REPLY_STAGE
from .query import Unavailable, iso, last_days
from .summary import summarise

SCHEMA = "botmeter.dashboard"
SCHEMA_VERSION = 1
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
DISTRIBUTION = "p10,p25,p50,p75,p90,max,avg,count"
RETENTION_WEEKS = 8  # cohorts need more than a short window's weeks to say anything

# (key, metric, query arguments): the per-day series and breakdowns, in the order they are drawn.
SERIES: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("cost_by_model", "cost_usd", {"by": "provider,model"}),
    ("cost_per_conversation", "cost_per_conversation", {}),
    ("cost_per_active_user", "cost_per_active_user", {}),
    ("top_users", "cost_usd", {"interval": None, "by": "user", "limit": "top"}),
    ("top_conversations", "cost_usd", {"interval": None, "by": "conversation", "limit": "top"}),
    ("active_users", "active_users", {}),
    ("new_users", "new_users", {}),
    ("returning_users", "returning_users", {}),
    ("conversations", "conversations", {}),
    ("messages", "messages", {}),
    ("conversation_length", "messages_per_conversation", {"interval": None, "stat": DISTRIBUTION}),
    ("conversation_duration", "conversation_duration_s", {"interval": None, "stat": DISTRIBUTION}),
    ("retention", "retention", {"interval": "week", "weeks": RETENTION_WEEKS}),
    ("activities", "activities", {"interval": None, "by": "name"}),
    ("traffic_by_hour", "inbound_messages", {"interval": "hour"}),
    ("errors_by_category", "errors", {"by": "category,severity"}),
    ("error_rate", "error_rate", {}),
    ("reply_failure_rate", "reply_failure_rate", {}),
    # The reply stage's timings (the reply latency) in ms; each stage's own timings; LLM calls by model.
    ("latency", "latency_ms", {"stat": "p50,p95,p99", "filters": {"stage": REPLY_STAGE}}),
    ("latency_by_stage", "latency_ms", {"by": "stage", "stat": "p50,p95,p99"}),
    ("latency_by_model", "llm_latency_ms", {"by": "model", "stat": "p50,p95,p99"}),
)


def dashboard_data(
    reader: Any,
    days: int = 30,
    now: datetime | None = None,
    top: int = 10,
    *,
    monthly_budget_usd: float | None = None,
    alerts: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The figures of the last ``days`` days (today so far included), each series per day.

    A figure the store cannot give is ``None`` and listed under ``unavailable`` with the reason,
    never shown as zero.
    """
    now = (now or reader.now or datetime.now(UTC)).astimezone(UTC)
    start, end = last_days(days, now)
    out: dict[str, Any] = {
        "schema": SCHEMA,
        "version": SCHEMA_VERSION,
        "generated_at": iso(now),
        "store": _store_name(reader),
    }
    queries: dict[str, dict[str, Any]] = {}
    missing: dict[str, str] = {}
    with reader.session():
        # Week-over-week figures are not drawn (the KPIs compare whole periods): not computed.
        summary = summarise(
            reader, days, now, monthly_budget_usd=monthly_budget_usd, alerts=alerts, compare_weeks=False
        )
        for key, metric, arguments in SERIES:
            kw = {"interval": "day", **arguments}
            if kw.get("limit") == "top":
                kw["limit"] = top
            if kw.get("filters", {}).get("stage") == REPLY_STAGE:
                kw["filters"] = {**kw["filters"], "stage": getattr(reader, "reply_stage", "reply")}
            since = start
            if "weeks" in kw:  # the window, or the last N weeks if that is longer
                since = min(start, last_days(7 * kw.pop("weeks"), now)[0])
            queries[key] = {
                "metric": metric,
                "start": iso(since),
                "end": iso(end),
                **{k: v for k, v in kw.items() if v is not None},
            }
            try:
                out[key] = reader.query(metric, start=since, end=end, **kw).json_rows()
            except Unavailable as exc:
                out[key], missing[key] = None, str(exc)
            except StoreUnavailable as exc:
                # One series the backend fails to give leaves its panel saying so; the rest is drawn.
                out[key], missing[key] = None, f"the store failed to answer: {str(exc).splitlines()[0]}"
        try:
            groups = reader.error_groups(start=start, end=end)
            out["error_groups"] = [_plain(g, start, days) for g in groups]
        except Unavailable as exc:
            out["error_groups"], missing["error_groups"] = None, str(exc)
    if out["top_users"]:
        with reader.session():
            out["top_users"] = _with_messages_and_country(reader, out["top_users"], start, end, missing)
    for key in ("top_users", "top_conversations", "activities"):
        for row in out[key] or ():
            row.pop("bucket", None)  # one bucket for the whole window: it says nothing
    for key in ("conversation_length", "conversation_duration"):
        rows = out[key]
        out[key] = {k: v for k, v in rows[0].items() if k != "bucket"} if rows else None
    out["traffic_heatmap"] = _heatmap(out.pop("traffic_by_hour"))
    out["period"] = summary["period"]
    out["kpis"] = {
        "cost_usd": summary["costs"]["total_usd"],
        "active_users": summary["engagement"]["active_users"],
        "conversations": summary["engagement"]["conversations"],
        "messages": summary["engagement"]["messages"],
        "error_rate": summary["errors"]["error_rate"],
        "reply_failure_rate": summary["errors"]["reply_failure_rate"],
        "reply_latency_p95_s": summary["latency"]["reply_p95_s"],
        "latency_p95_ms": summary["latency"]["p95_ms"],
    }
    out["summary"] = summary
    out["forecast"] = summary["costs"]["forecast"]
    out["anomalies"] = summary["anomalies"]
    out["alerts"] = summary["alerts"]
    out["queries"] = queries
    out["unavailable"] = {**summary["unavailable"], **missing}
    return out


def _with_messages_and_country(
    reader: Any, users: list[dict[str, Any]], start: datetime, end: datetime, missing: dict[str, str]
) -> list[dict[str, Any]]:
    """The top users by cost with their messages in the window and their country (beside the hash,
    so a team can tell who is who)."""
    ids = [u["user"] for u in users if u.get("user")]
    found: dict[str, tuple[int, str | None]] = {}
    try:
        found = reader.user_messages(ids, start=start, end=end)
    except Unavailable as exc:
        missing["top_users:messages"] = str(exc)
    for user in users:
        if not user.get("user") or "top_users:messages" in missing:
            user["messages"], user["country"] = None, None  # the events without a user; or unknown
        else:
            user["messages"], user["country"] = found.get(user["user"], (0, None))
    return users


def _store_name(reader: Any) -> str:
    store = reader.store
    path = getattr(store, "path", None)
    return str(path) if path is not None else type(store).__name__


def _plain(group: dict[str, Any], start: datetime, days: int) -> dict[str, Any]:
    """An error group with ISO times, its hourly series summed per day of the window."""
    out = {k: (iso(v) if isinstance(v, datetime) else v) for k, v in group.items() if k != "hourly"}
    daily = [0] * days
    for at, n in group.get("hourly") or ():
        index = (at.astimezone(UTC) - start).days
        if 0 <= index < days:
            daily[index] += n
    out["daily"] = daily
    return out


def _heatmap(rows: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    """Inbound messages per weekday and hour of day (UTC), summed over the window."""
    if rows is None:
        return None
    counts = [[0] * 24 for _ in WEEKDAYS]
    for row in rows:
        at = datetime.fromisoformat(row["bucket"].replace("Z", "+00:00"))
        counts[at.weekday()][at.hour] += row["value"] or 0
    return {"weekdays": list(WEEKDAYS), "hours": list(range(24)), "counts": counts, "timezone": "UTC"}
