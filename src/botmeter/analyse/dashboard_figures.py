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

import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from ..exceptions import StoreUnavailable
from .catalogue import CATALOGUE
from .gaps import store_failure
from .query import FigureUnavailable, QueryError, floor_to, iso, last_days, previous_window, window_of
from .summary import summarise

SCHEMA = "botmeter.dashboard"
SCHEMA_VERSION = 2  # 2: latency per stage and per model are period tables; reply-stage latency
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
DISTRIBUTION = "p10,p25,p50,p75,p90,max,avg,count"
RETENTION_WEEKS = 8  # cohorts need more than a short window's weeks to say anything
REPLY_STAGE = "reply"  # the stage whose timings are what users wait for
WHOLE = {"interval": None}
SMS = {"unit": ["sms_segment"]}

# (key, metric, query arguments): the per-day series and breakdowns, in the order they are drawn.
SERIES: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("cost_by_model", "cost_usd", {"by": "provider,model"}),
    ("cost_by_kind", "cost_usd", {**WHOLE, "by": "kind"}),
    ("sms_cost", "cost_usd", {**WHOLE, "by": "country,direction", "filters": SMS}),
    ("sms_segments", "sms_segments", {**WHOLE, "by": "country,direction"}),
    ("sms_messages", "messages", {**WHOLE, "by": "country,direction", "filters": {"channel": ["sms"]}}),
    ("api_cost", "cost_usd", {**WHOLE, "by": "provider,name", "filters": {"kind": ["api_call"]}}),
    ("api_calls", "api_calls", {**WHOLE, "by": "provider,name"}),
    ("llm_cost", "cost_usd", {**WHOLE, "by": "provider,model", "filters": {"kind": ["llm_call"]}}),
    ("llm_calls", "llm_calls", {**WHOLE, "by": "provider,model"}),
    ("llm_input_tokens", "input_tokens", {**WHOLE, "by": "provider,model"}),
    ("llm_cached_tokens", "cached_tokens", {**WHOLE, "by": "provider,model"}),
    ("llm_unpriced", "unpriced_calls", {**WHOLE, "by": "provider,model"}),
    ("cost_by_country", "cost_usd", {**WHOLE, "by": "country"}),
    ("cost_per_conversation", "cost_per_conversation", {}),
    ("cost_per_active_user", "cost_per_active_user", {}),
    ("top_users", "cost_usd", {**WHOLE, "by": "user", "limit": "top"}),
    ("top_conversations", "cost_usd", {**WHOLE, "by": "conversation", "limit": "top"}),
    ("active_users", "active_users", {}),
    ("new_users", "new_users", {}),
    ("returning_users", "returning_users", {}),
    ("conversations", "conversations", {}),
    ("messages", "messages", {}),
    ("conversation_length", "messages_per_conversation", {**WHOLE, "stat": DISTRIBUTION}),
    ("conversation_duration", "conversation_duration_s", {**WHOLE, "stat": DISTRIBUTION}),
    ("retention", "retention", {"interval": "week", "weeks": RETENTION_WEEKS}),
    ("activities", "activities", {**WHOLE, "by": "name"}),
    ("traffic_by_hour", "inbound_messages", {"interval": "hour"}),
    ("errors_by_category", "errors", {"by": "category,severity"}),
    ("error_rate", "error_rate", {}),
    ("reply_failure_rate", "reply_failure_rate", {}),
    # Per day and stage, which the per-day percentiles kept beside the rollups answer without
    # reading the events; the reply stage's rows are the reply time per day.
    ("latency", "latency_ms", {"by": "stage", "stat": "p50,p95,p99"}),
    # The reply stage's row is the period's reply latency: exact percentiles read every timing, so
    # the dashboard asks once per breakdown.
    ("latency_by_stage", "latency_ms", {**WHOLE, "by": "stage", "stat": "p50,p95,p99,count"}),
    (
        "latency_by_model",
        "latency_ms",
        {**WHOLE, "by": "provider,model", "stat": "p50,p95,count", "filters": {"kind": ["llm_call"]}},
    ),
    ("errors_by_model", "errors", {**WHOLE, "by": "provider,model"}),
    ("errors_by_stage", "errors", {**WHOLE, "by": "stage"}),
)
# The same breakdowns over the previous period: what changed, and who or what changed it.
PREVIOUS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("cost_by_country_previous", "cost_usd", {**WHOLE, "by": "country"}),
    ("cost_by_provider_model_previous", "cost_usd", {**WHOLE, "by": "provider,model"}),
    ("top_users_previous", "cost_usd", {**WHOLE, "by": "user", "limit": "top"}),
)
# Figures some stores or versions cannot break down this way: a gap in a table, not a notice.
OPTIONAL = frozenset({"errors_by_stage"})


def dashboard_data(
    reader: Any,
    days: int | None = 30,
    now: datetime | None = None,
    top: int = 10,
    *,
    start: datetime | str | None = None,
    end: datetime | str | None = None,
    timezone: str = "UTC",
    monthly_budget_usd: float | None = None,
    alerts: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The figures of the last ``days`` days (today so far included), or of ``start`` to ``end``,
    each series per UTC day. ``timezone`` (IANA) is the zone hours and weekdays are shown in.

    A figure the store cannot give is ``None`` and listed under ``unavailable`` with the reason,
    never shown as zero.
    """
    zone = _zone(timezone)
    now = (now or reader.now or datetime.now(UTC)).astimezone(UTC)
    if start is None and end is None:
        days = days or 30
        window = last_days(days, now)
    else:
        window = window_of(None if start is not None and end is not None else days, start, end, now)
        days = max(1, -(-(window[1] - floor_to(window[0], "day")) // timedelta(days=1)))
    since_day = floor_to(window[0], "day")
    before = previous_window(*window, days=days)
    # Pricing the cache's savings loads the price data (a few tenths of a second): in the
    # background, while the store answers.
    warm = threading.Thread(target=_warm_prices, daemon=True)
    warm.start()
    out: dict[str, Any] = {
        "schema": SCHEMA,
        "version": SCHEMA_VERSION,
        "generated_at": iso(now),
        "store": _store_name(reader),
        "timezone": timezone,
        "reply_stage": getattr(reader, "reply_stage", None) or REPLY_STAGE,
    }
    queries: dict[str, dict[str, Any]] = {}
    missing: dict[str, str] = {}
    with reader.session():
        jobs = [(key, metric, arguments, window) for key, metric, arguments in SERIES]
        jobs += [(key, metric, arguments, before) for key, metric, arguments in PREVIOUS]
        # The summary (some fifty statements, one after another) and the error groups, the
        # longest single figure, go first: on an engine that answers on several threads the
        # series run beside them. Week-over-week figures are not drawn (the KPIs compare whole
        # periods): not computed.
        asked = [
            functools.partial(
                summarise,
                reader,
                days,
                now,
                window=window,
                monthly_budget_usd=monthly_budget_usd,
                alerts=alerts,
                compare_weeks=False,
            ),
            lambda: reader.error_groups(start=window[0], end=window[1]),
        ]
        keys = []
        for key, metric, arguments, (first, last) in jobs:
            metric, kw = _adapt(reader, metric, {"interval": "day", **arguments})
            if kw.get("limit") == "top":
                kw["limit"] = top
            since = first
            if "weeks" in kw:  # the window, or the last N weeks if that is longer
                since = min(since, last_days(7 * kw.pop("weeks"), last)[0])
            queries[key] = {
                "metric": metric,
                "start": iso(since),
                "end": iso(last),
                **{k: v for k, v in kw.items() if v is not None},
            }
            asked.append(functools.partial(_rows, reader, metric, since, last, kw))
            keys.append(key)
        summary, groups, *answers = _answered(reader, asked)
        if isinstance(summary, BaseException):
            raise summary
        for key, answer in zip(keys, answers, strict=True):
            if isinstance(answer, (FigureUnavailable, QueryError)):
                out[key] = None
                if key in OPTIONAL:
                    queries.pop(key)
                else:
                    missing[key] = str(answer)
            elif isinstance(answer, StoreUnavailable):
                # One series the backend fails to give leaves its panel saying so; the rest is drawn.
                out[key], missing[key] = None, store_failure(answer)
            elif isinstance(answer, BaseException):
                raise answer
            else:
                out[key] = answer
        if isinstance(groups, FigureUnavailable):
            out["error_groups"], missing["error_groups"] = None, str(groups)
        elif isinstance(groups, BaseException):
            raise groups
        else:
            out["error_groups"] = [_plain(g, since_day, days) for g in groups]
        if out.get("top_users"):
            # In the same session: opening the store again costs more than the query.
            out["top_users"] = _with_messages_and_country(reader, out["top_users"], *window, missing)
    for key in (*(k for k, _, a in SERIES + PREVIOUS if a.get("interval", "day") is None),):
        for row in out[key] or ():
            row.pop("bucket", None)  # one bucket for the whole window: it says nothing
    for key in ("conversation_length", "conversation_duration"):
        rows = out[key]
        out[key] = rows[0] if rows else None
    out["traffic_heatmap"] = _heatmap(out.pop("traffic_by_hour"), zone, timezone)
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
    out["cost_change"] = cost_change(out, summary)
    warm.join(timeout=5)
    out["cache_savings"] = cache_savings(out, window[1])
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
    except FigureUnavailable as exc:
        missing["top_users:messages"] = str(exc)
    for user in users:
        if not user.get("user") or "top_users:messages" in missing:
            user["messages"], user["country"] = None, None  # the events without a user; or unknown
        else:
            user["messages"], user["country"] = found.get(user["user"], (0, None))
    return users


def _adapt(reader: Any, metric: str, kw: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A series' query for this reader: its own reply stage, and LLM-call latency from its own
    metric where the catalogue has one (latency_ms then counts the bot's timings only)."""
    filters = dict(kw.get("filters") or {})
    if filters.get("stage") == [REPLY_STAGE]:
        filters["stage"] = [getattr(reader, "reply_stage", None) or REPLY_STAGE]
    if metric == "latency_ms" and filters.get("kind") == ["llm_call"] and "llm_latency_ms" in CATALOGUE:
        metric = "llm_latency_ms"
        del filters["kind"]
    if filters:
        kw["filters"] = filters
    else:
        kw.pop("filters", None)
    return metric, kw


def _rows(reader: Any, metric: str, since: datetime, last: datetime, kw: dict[str, Any]) -> Any:
    return reader.query(metric, start=since, end=last, **kw).json_rows()


def _answered(reader: Any, asked: list[Callable[[], Any]]) -> list[Any]:
    """What each asked figure gave (or the exception it raised), in the order asked; on as many
    threads as the reader's engine answers on at once."""

    def one(ask: Callable[[], Any]) -> Any:
        try:
            return ask()
        except Exception as exc:  # handed back, and handled or raised by the caller
            return exc

    threads = max(1, int(getattr(reader.engine, "parallel_reads", 1) or 1))
    if threads == 1:
        return [one(ask) for ask in asked]
    with ThreadPoolExecutor(threads, thread_name_prefix="botmeter-figures") as pool:
        return list(pool.map(one, asked))


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ValueError, KeyError, OSError):
        raise QueryError(
            f"timezone: {name!r} is not an IANA time zone such as UTC, Europe/London or America/New_York"
        ) from None


def _warm_prices() -> None:
    try:
        from ..process.pricing import _snapshot

        _snapshot()
    except Exception:  # the savings then say they are unknown; nothing else depends on it
        pass


def model_name(row: dict[str, Any]) -> str:
    """A cost row's name in the user's words: "openai gpt-4o-mini", "twilio SMS", "serpapi"."""
    provider, model = row.get("provider"), row.get("model")
    if model:
        return f"{provider} {model}" if provider else model
    return provider or "untagged"


def cost_change(data: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    """The change in cost against the previous period, and the countries, models and users that
    moved it most (each figure's change in USD; the same spend shows in several dimensions)."""
    total = summary["costs"]["total_usd"]
    drivers: list[dict[str, Any]] = []

    def compare(dimension: str, now_rows: Any, before_rows: Any, name: Any, complete: bool = True) -> None:
        if now_rows is None or before_rows is None:
            return
        current: dict[str, float] = {}
        previous: dict[str, float] = {}
        for rows, into in ((now_rows, current), (before_rows, previous)):
            for r in rows:
                if r.get("value"):
                    into[name(r)] = into.get(name(r), 0.0) + r["value"]
        for key in current.keys() | previous.keys():
            if not complete and (key not in current or key not in previous):
                continue  # outside one period's top list: its change is not known exactly
            was, now = previous.get(key, 0.0), current.get(key, 0.0)
            drivers.append(
                {
                    "dimension": dimension,
                    "name": key,
                    "current_usd": now,
                    "previous_usd": was,
                    "change_usd": now - was,
                }
            )

    compare(
        "country",
        data.get("cost_by_country"),
        data.get("cost_by_country_previous"),
        lambda r: r.get("country"),
    )
    compare(
        "model",
        _totals(data.get("cost_by_model")),
        data.get("cost_by_provider_model_previous"),
        model_name,
    )
    compare("user", data.get("top_users"), data.get("top_users_previous"), lambda r: r.get("user"), False)
    drivers = [d for d in drivers if d["name"] is not None and abs(d["change_usd"]) >= 0.005]
    drivers.sort(key=lambda d: -abs(d["change_usd"]))
    change_usd = None
    if total["value"] is not None and total["previous"] is not None:
        change_usd = total["value"] - total["previous"]
    return {"change_usd": change_usd, "drivers": drivers[:6]}


def _totals(rows: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    """Daily rows summed over the period, per group."""
    if rows is None:
        return None
    sums: dict[tuple, dict[str, Any]] = {}
    for r in rows:
        key = tuple((k, v) for k, v in r.items() if k not in ("bucket", "value"))
        sums.setdefault(key, {**dict(key), "value": 0.0})["value"] += r.get("value") or 0
    return list(sums.values())


def cache_savings(data: dict[str, Any], at: datetime) -> list[dict[str, Any]] | None:
    """Per provider and model: prompt tokens read from the cache, their share of prompt tokens, and
    what they saved at the model's list price (full input price minus cached price)."""
    tokens = data.get("llm_input_tokens")
    cached = data.get("llm_cached_tokens")
    if tokens is None or cached is None:
        return None
    try:
        from ..process.pricing import LlmPricer

        pricer: Any = LlmPricer()
    except Exception:
        pricer = None
    read = {(r.get("provider"), r.get("model")): r.get("value") or 0 for r in cached}
    out = []
    for r in tokens:
        provider, model = r.get("provider"), r.get("model")
        n, hit = r.get("value") or 0, read.get((provider, model), 0)
        saved = None
        if pricer is not None and provider and model and hit:
            full, _ = pricer.price(provider, model, at.timestamp(), hit, 0)
            paid, _ = pricer.price(provider, model, at.timestamp(), hit, 0, hit)
            if full is not None and paid is not None:
                saved = full - paid
        elif not hit:
            saved = 0.0
        out.append(
            {
                "provider": provider,
                "model": model,
                "input_tokens": n,
                "cached_tokens": hit,
                "cache_hit_rate": hit / n if n else None,
                "saved_usd": saved,
            }
        )
    return out


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


def _heatmap(rows: list[dict[str, Any]] | None, zone: ZoneInfo, name: str) -> dict[str, Any] | None:
    """Inbound messages per weekday and hour of day in the team's time zone, summed over the window."""
    if rows is None:
        return None
    counts = [[0] * 24 for _ in WEEKDAYS]
    for row in rows:
        at = datetime.fromisoformat(row["bucket"].replace("Z", "+00:00")).astimezone(zone)
        counts[at.weekday()][at.hour] += row["value"] or 0
    return {"weekdays": list(WEEKDAYS), "hours": list(range(24)), "counts": counts, "timezone": name}
