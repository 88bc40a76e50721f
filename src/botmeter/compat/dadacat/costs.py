"""``CostTracker``: the DadaCat package's cost calls over botmeter.

``track_api_cost`` records the bot's own estimate as a botmeter ``api_call`` event (provider = the
API name, name ``estimate``, ``properties.estimate = true``), one event per request. Reading answers
from everything botmeter stores for the period, real LLM and SMS costs included, in the original's
local-file shape plus ``source``.

The double count. The original bot guesses OpenAI's cost from characters / 4. When botmeter also
records the real calls (``track_llm_call`` or the SDK instrumentation), pass
``CostTracker(skip_estimates_for={"openai"})`` (or list the APIs in ``DADACAT_SKIP_ESTIMATES``,
comma-separated): those estimates are then accepted (True) and not recorded, and the real, token-priced
calls are the cost.
"""

from __future__ import annotations

import logging
import math
import os
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from ...analyse.query import FigureUnavailable, iso
from ...exceptions import BotmeterError, InputError
from ...facade import Meter
from ._store import DEFAULT_NAMESPACE, DEFAULT_REGION, Face, as_utc, check_count, never_raises, source_of

log = logging.getLogger("botmeter")

ESTIMATE = "estimate"  # the api_call name of the bot's own estimates
REQUEST = "request"


def skipped_from_env() -> frozenset[str]:
    raw = os.environ.get("DADACAT_SKIP_ESTIMATES", "")
    return frozenset(p.strip().lower() for p in raw.split(",") if p.strip())


class CostTracker(Face):
    """Tracks API costs (the bot's estimates) and reads back botmeter's cost figures."""

    def __init__(
        self,
        namespace: str = DEFAULT_NAMESPACE,
        region: str = DEFAULT_REGION,
        local_file_fallback: bool = True,
        local_file_path: str | None = None,
        *,
        skip_estimates_for: Iterable[str] | None = None,
        meter: Meter | None = None,
        store: str | None = None,
    ) -> None:
        super().__init__(namespace, region, local_file_fallback, local_file_path, meter=meter, store=store)
        self.skip_estimates_for = (
            frozenset(a.lower() for a in skip_estimates_for)
            if skip_estimates_for is not None
            else skipped_from_env()
        )

    @never_raises
    def track_api_cost(
        self,
        api_name: str,
        cost_estimate: float,
        request_count: int = 1,
        request_tokens: int | None = None,
    ) -> bool:
        """Records the bot's estimate of an API's cost (USD). Returns False (and logs why) for bad input."""
        return self.record_estimate(api_name, cost_estimate, request_count, request_tokens)

    def record_estimate(
        self,
        api_name: str,
        cost_estimate: float,
        request_count: int = 1,
        request_tokens: int | None = None,
        *,
        ts: float | None = None,
        event_id: str | None = None,
    ) -> bool:
        """``track_api_cost`` with the time and a stable id (the history import); raises on bad input."""
        if not isinstance(api_name, str) or not api_name.strip():
            raise InputError(f"api_name: expected a non-empty str, got {api_name!r}")
        check_count(request_count, "request_count", least=1)
        if request_tokens is not None and (
            isinstance(request_tokens, bool)
            or not isinstance(request_tokens, int | float)
            or request_tokens < 0
        ):
            raise InputError(f"request_tokens: expected a number >= 0 or None, got {request_tokens!r}")
        if isinstance(cost_estimate, bool) or not isinstance(cost_estimate, int | float) or cost_estimate < 0:
            raise InputError(f"cost_estimate: expected a number of US dollars >= 0, got {cost_estimate!r}")
        if api_name.lower() in self.skip_estimates_for:
            return True  # botmeter records the real calls of this API: the guess would count twice
        if not self.recording:
            return False
        # One event per request, so that request counts come from botmeter's api_calls everywhere.
        share = float(cost_estimate) / request_count
        for i in range(request_count):
            properties: dict[str, Any] = {"estimate": True}
            if i == 0 and request_tokens is not None:
                properties["request_tokens"] = request_tokens
            if request_count > 1:
                properties["request_count"] = request_count
            self.meter.track_api_call(
                provider=api_name,
                name=ESTIMATE,
                cost_usd=share,
                units=1,
                unit=REQUEST,
                properties=properties,
                event_id=None if event_id is None else str(uuid.uuid5(uuid.UUID(event_id), str(i))),
                ts=ts,
            )
        return True

    def get_cost_metrics(
        self,
        start_time: datetime,
        end_time: datetime | None = None,
        api_names: list[str] | None = None,
    ) -> dict[str, Any]:
        """Cost and requests for the period, in total and per API (provider): ``total_cost``,
        ``total_requests``, ``api_costs[api] = {total_cost, total_requests, records}``, ``source``.

        Requests are API calls plus LLM calls. ``records`` are the API's days in the shape of the
        original's records (one per day, UTC: ``timestamp``, ``api_name``, ``cost_estimate``,
        ``request_count``, ``request_tokens`` None, ``period`` "day"); botmeter keeps events, not
        the original's records (``botmeter export`` gives those). ``estimates``: how many of the
        requests are the bot's own estimates."""
        start, end = as_utc(start_time, "start_time"), as_utc(end_time, "end_time")
        out: dict[str, Any] = {
            "start_time": start.isoformat(),
            "end_time": end.isoformat(),
            "api_names": api_names,
            "source": source_of(self.meter),
        }
        empty = {**out, "total_cost": 0.0, "total_requests": 0, "api_costs": {}}
        if not self.meter.enabled:
            return {**empty, "note": "botmeter is off"}
        try:
            return self._read(out, empty, start, end, api_names)
        except BotmeterError as exc:  # as the original: no figures, and why
            return {**out, "total_cost": None, "total_requests": None, "api_costs": {}, "error": str(exc)}

    def _read(
        self,
        out: dict[str, Any],
        empty: dict[str, Any],
        start: datetime,
        end: datetime,
        api_names: list[str] | None,
    ) -> dict[str, Any]:
        reader = self.reader()
        if reader is None:
            return empty
        unavailable: dict[str, str] = {}
        wanted = set(api_names) if api_names is not None else None
        filters = {"provider": list(api_names)} if api_names else None

        def by_provider(
            label: str, metric: str, extra: dict[str, Any] | None = None, interval: str | None = None
        ) -> Any:
            """{provider: value}, or with ``interval`` {provider: {bucket: value}}; None if unavailable."""
            try:
                result = reader.query(
                    metric,
                    start=start,
                    end=end,
                    interval=interval,
                    by="provider",
                    filters={**(filters or {}), **(extra or {})},
                )
            except FigureUnavailable as exc:
                unavailable[label] = str(exc)
                return None
            stat = result.stats[0]
            if interval is None:
                return {(r["provider"] or "(none)"): r[stat] or 0 for r in result.rows}
            daily: dict[str, dict[datetime, float]] = {}
            for r in result.rows:
                if r[stat]:
                    daily.setdefault(r["provider"] or "(none)", {})[r["bucket"]] = r[stat]
            return daily

        with reader.session():
            costs = by_provider("cost", "cost_usd")
            api_calls = by_provider("api_calls", "api_calls")
            llm_calls = by_provider("llm_calls", "llm_calls")
            estimates = by_provider("estimates", "api_calls", {"name": ESTIMATE})
            days = {
                name: by_provider(f"records ({name})", metric, interval="day")
                for name, metric in (("cost", "cost_usd"), ("api", "api_calls"), ("llm", "llm_calls"))
            }
        # A figure the store cannot give is None (and under unavailable), never a zero.
        requests_known = api_calls is not None and llm_calls is not None
        api_costs: dict[str, dict[str, Any]] = {}
        for api in sorted(set(costs or {}) | set(api_calls or {}) | set(llm_calls or {})):
            if wanted is not None and api not in wanted:
                continue
            figures = [(d or {}).get(api) for d in (costs, api_calls, llm_calls)]
            if not any(figures):
                continue  # a provider with neither cost nor calls (messages without a provider)
            api_costs[api] = {
                "total_cost": None if costs is None else float(costs.get(api, 0.0)),
                "total_requests": (
                    int((api_calls or {}).get(api, 0) + (llm_calls or {}).get(api, 0))
                    if requests_known
                    else None
                ),
                "records": _daily_records(api, days),
                "estimates": None if estimates is None else int(estimates.get(api, 0)),
            }
        out.update(
            total_cost=None if costs is None else sum(v["total_cost"] for v in api_costs.values()),
            total_requests=None
            if not requests_known
            else sum(v["total_requests"] for v in api_costs.values()),
            api_costs=api_costs,
        )
        if unavailable:
            out["unavailable"] = unavailable
        return out

    def get_total_cost(self, start_time: datetime, end_time: datetime | None = None) -> float:
        """Total cost in US dollars for the period (every cost botmeter stores); NaN, never a made-up
        zero, when the store cannot answer (the reason is logged and in ``get_cost_metrics``)."""
        metrics = self.get_cost_metrics(start_time, end_time)
        if metrics["total_cost"] is None:
            log.warning("botmeter: no total cost: %s", metrics.get("error") or metrics.get("unavailable"))
            return math.nan
        return float(metrics["total_cost"])


def _daily_records(api: str, days: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The API's days in the shape of the original's records: one record per day with a cost or a
    request (``timestamp`` the day's start, UTC), so code that sums or plots records still adds up."""
    if any(v is None for v in days.values()):
        return None
    cost, api_calls, llm_calls = (days[k].get(api, {}) for k in ("cost", "api", "llm"))
    return [
        {
            "timestamp": iso(day),
            "api_name": api,
            "cost_estimate": float(cost.get(day, 0.0)),
            "request_count": int(api_calls.get(day, 0) + llm_calls.get(day, 0)),
            "request_tokens": None,
            "period": "day",
        }
        for day in sorted(set(cost) | set(api_calls) | set(llm_calls))
    ]


__all__ = ["CostTracker"]
