"""Every figure a dashboard for a period shows, gathered in one read session.

The HTML dashboard, the JSON export and the benchmark all use this set, so the benchmark measures
what a user waits for.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from .errors import error_groups
from .query import iso, last_days, previous_window
from .trends import anomalies, month_end_forecast

KPIS = (
    ("cost_usd", None),
    ("active_users", None),
    ("conversations", None),
    ("messages", None),
    ("error_rate", None),
    ("latency_ms", "p95"),
)


def dashboard_data(reader: Any, days: int = 30, now: datetime | None = None, top: int = 10) -> dict[str, Any]:
    """The figures of the last ``days`` days, each series per day, as plain data."""
    now = (now or reader.now or datetime.now(UTC)).astimezone(UTC)
    start, end = last_days(days, now)
    before = previous_window(start, end, days=days)
    out: dict[str, Any] = {"period": {"days": days, "start": iso(start), "end": iso(end)}}

    def q(metric: str, **kw: Any) -> Any:
        kw.setdefault("interval", "day")
        return reader.query(metric, start=kw.pop("start", start), end=kw.pop("end", end), **kw)

    with reader.session():
        out["kpis"] = {
            metric if stat is None else f"{metric}:{stat}": {
                "value": q(metric, interval=None, stat=stat).total(),
                "previous": q(metric, interval=None, stat=stat, start=before[0], end=before[1]).total(),
            }
            for metric, stat in KPIS
        }
        out["cost_by_model"] = q("cost_usd", by="provider,model").json_rows()
        out["cost_per_conversation"] = q("cost_per_conversation").json_rows()
        out["cost_per_active_user"] = q("cost_per_active_user").json_rows()
        out["top_users"] = q("cost_usd", interval=None, by="user", limit=top).json_rows()
        out["top_conversations"] = q("cost_usd", interval=None, by="conversation", limit=top).json_rows()
        out["forecast"] = month_end_forecast(reader, now)
        for metric in ("active_users", "new_users", "returning_users", "conversations", "messages"):
            out[metric] = q(metric).json_rows()
        out["conversation_length"] = q(
            "messages_per_conversation", interval=None, stat="avg,p50,p90,max,count"
        ).json_rows()
        out["conversation_duration"] = q(
            "conversation_duration_s", interval=None, stat="avg,p50,p90,max,count"
        ).json_rows()
        out["retention"] = q("retention", interval="week").json_rows()
        out["activities"] = q("activities", interval=None, by="name").json_rows()
        out["traffic_by_hour"] = q("inbound_messages", interval="hour").json_rows()
        out["errors_by_category"] = q("errors", by="category,severity").json_rows()
        out["error_rate"] = q("error_rate").json_rows()
        out["error_groups"] = error_groups(reader, (start, end))
        out["latency_by_stage"] = q("latency_ms", by="stage", stat="p50,p95,p99").json_rows()
        out["latency_by_model"] = q("latency_ms", by="model", stat="p50,p95,p99").json_rows()
        out["anomalies"] = anomalies(reader, start, end)
    return out
