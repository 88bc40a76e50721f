"""botmeter's health and the key figures of a period: the chat admin's ``admin:status`` and
``admin:analytics_status``, offered to every interface as the ``status`` and ``analytics_status``
answers."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from ..analyse.gaps import Gaps
from ..report import responses
from ..report.numbers import count, latency_s, money, percent
from ..report.responses import Figure, Line, Report, Section, anomalies_section, change_figure, period_text
from ..version import __version__


def store_name(url: str) -> str:
    """duckdb://…/bot.duckdb -> duckdb bot.duckdb; cloudwatch://?namespace=X -> cloudwatch X (fits an SMS)."""
    scheme, _, rest = url.partition("://") if "://" in url else ("duckdb", "", url)
    found = re.search(r"namespace=([^&]+)", rest)
    name = found.group(1) if found else rest.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    return f"{scheme} {name}".strip()


def _ago(at: datetime | None, now: datetime) -> str:
    if at is None:
        return "none"
    seconds = max(0.0, (now - at).total_seconds())
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{at:%m-%d %H:%M} UTC ({seconds / size:.0f} {unit} ago)"
    return f"{at:%m-%d %H:%M} UTC ({seconds:.0f} s ago)"


def status_report(meter: Any) -> Report:
    """botmeter's own health: on or off, the store, what is stored, queued, dropped and spooled."""
    stats = meter.stats()
    now = datetime.now(UTC)
    on = bool(stats["enabled"])
    data: dict[str, Any] = {"enabled": on, "store": meter.config.store, "version": __version__}
    figures = [Figure("Status", "on" if on else "off", short="status", key=True)]
    store = meter.store
    if store is not None:
        # From memory only: the store's file may be held by another process, and a status must
        # answer then most of all. What this process wrote, and when it last wrote.
        last_write = stats.get("last_write_at")
        data["events_written"] = stats.get("written", 0) + stats.get("replayed", 0)
        data["last_write"] = None if last_write is None else datetime.fromtimestamp(last_write, UTC)
        figures += [
            Figure("Store", store_name(meter.config.store), short="store", key=True),
            Figure("Events written", count(data["events_written"]), short="written", key=True),
            Figure("Last write", _ago(data["last_write"], now), short="last", key=True),
        ]
    data.update(
        queued=stats.get("buffered", 0),
        dropped=stats.get("dropped", 0),
        spool_batches=stats.get("spool_batches", 0),
        spool_events=stats.get("spool_events", 0),
        writer_alive=stats.get("writer_alive"),
        last_error=stats.get("last_error"),
    )
    figures += [
        Figure("Writer queue", count(data["queued"]), short="queue", key=True),
        Figure("Dropped", count(data["dropped"]), short="dropped", key=True),
        Figure(
            "Spool", f"{count(data['spool_events'])} events in {count(data['spool_batches'])} batches",
            short="spool", key=True,
        ),
        Figure("Version", __version__, short="v", key=True),
    ]  # fmt: skip
    notes = []
    if store is not None and data["writer_alive"] is False:
        notes.append("The background writer is not running.")
    if data["last_error"]:
        notes.append(f"Last write error: {data['last_error']}")
    sections = (Section("Problems", tuple(Line(n, n) for n in notes)),) if notes else ()
    return Report(
        "status",
        "botmeter status",
        figures=tuple(figures),
        sections=sections,
        data=data,
        short_title="botmeter",
    )


def analytics_status_report(reader: Any, days: int) -> Report:
    """Key metrics: today's and the period's cost, users, conversations, error rate, p95, anomalies."""
    from ..analyse.summary import summarise  # when asked: a meter that only records never loads it

    # The period's end as a time, not read back from the summary's text: that is cut to the
    # second, and today's cost would miss what was tracked within the last second.
    window = reader.window(days)
    with reader.session():
        summary = summarise(reader, days, compare_weeks=False, with_groups=False, window=window)
        now = window[1]
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        gaps = Gaps(summary["unavailable"])
        today = gaps.get(
            "cost_today", lambda: reader.query("cost_usd", start=midnight, end=now, interval=None).total()
        )
    c, e, r, lat = summary["costs"], summary["engagement"], summary["errors"], summary["latency"]

    period = "today" if days == 1 else f"{days}d"
    # A period of one day is today: its cost is today's cost, said once (against yesterday).
    costs = (
        (change_figure("Cost today", "today", c["total_usd"], money, True),)
        if days == 1
        else (
            Figure(
                "Cost today",
                "-" if "cost_today" in gaps.missing else money(today or 0.0),
                short="today",
                key=True,
            ),
            change_figure(f"Cost, last {days} days", period, c["total_usd"], money, True),
        )
    )
    figures = (
        *costs,
        change_figure("Active users", "users", e["active_users"], count, True),
        change_figure("Conversations", "convs", e["conversations"], count, True),
        change_figure("Error rate", "err rate", r["error_rate"], percent, True),
        change_figure("Failed replies", "failed", r["reply_failure_rate"], percent, True),
        change_figure("Reply p95", "reply p95", lat["reply_p95_s"], latency_s, True),
    )
    sections = (anomalies_section(summary["anomalies"], say_none=True),)
    notes = responses.unavailable_notes(summary)
    p = summary["period"]
    return Report(
        "analytics_status",
        f"botmeter analytics: last {days} days",
        period_text(p["start"], p["end"]),
        figures,
        sections,
        {"today_cost_usd": today, "summary": summary},
        short_title=f"botmeter {period}",
        notes=notes,
    )
