"""Reading a store from Python: typed queries and the period figures bots and notebooks ask for.

    from botmeter.analyse import Reader
    reader = Reader("duckdb://botmeter.duckdb")
    reader.query("cost_usd", days=7, by="model").rows
    reader.costs(days=7)          # plain dicts; as_frame=True for a DataFrame

A ``Meter`` has the same calls (``meter.query``, ``meter.costs``...), after flushing what it holds.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from typing import Any

from ..process.privacy import UserHasher, existing_key, key_paths, lookup_values
from ..store import Store, engine_for, open_store
from .catalogue import DEFAULT_REPLY_STAGE
from .gaps import Gaps
from .query import (
    DEFAULT_SESSION_GAP_MINUTES,
    FigureUnavailable,
    Query,
    Result,
    frame,
    iso,
    make_query,
    scaled,
    utc,
    window_of,
)

Window = tuple[datetime, datetime]


class Reader:
    """Typed queries and period figures over one store."""

    def __init__(
        self,
        store: Store | str | None = None,
        *,
        session_gap_minutes: float = DEFAULT_SESSION_GAP_MINUTES,
        use_rollups: bool = True,
        now: datetime | None = None,
        reply_stage: str | None = None,
        hash_key: str | None = None,
    ) -> None:
        """``reply_stage`` and ``hash_key`` default to ``BOTMETER_REPLY_STAGE`` and
        ``BOTMETER_HASH_KEY`` (else the key kept beside the store)."""
        from ..config import setting_from_env

        if store is None or isinstance(store, str):
            from ..config import Config

            store = open_store(Config.resolve(store=store).store)
        self.store = store
        self.session_gap_minutes = session_gap_minutes
        self.reply_stage = reply_stage or setting_from_env("reply_stage") or DEFAULT_REPLY_STAGE
        self._hash_key = hash_key if hash_key is not None else setting_from_env("hash_key")
        self._hasher: Any = None
        self.now = now
        options = {} if use_rollups else {"use_rollups": False}
        self.engine = engine_for(store, **options)
        self._answers: dict[Any, Any] | None = None

    @contextmanager
    def session(self) -> Iterator[Reader]:
        """Keeps one read connection for several calls (a summary, a dashboard). Within it, the same
        query asked twice is answered once: a dashboard's summary and panels share figures."""
        outer = self._answers is None
        if outer:
            self._answers = {}
        try:
            with self.engine.session():
                yield self
        finally:
            if outer:
                self._answers = None

    def _answer(self, key: Any, compute: Any) -> Any:
        if self._answers is None:
            return compute()
        if key not in self._answers:
            self._answers[key] = compute()
        return self._answers[key]

    # -- typed queries --------------------------------------------------------------------------

    def make(self, metric: str, **kw: Any) -> Query:
        kw.setdefault("session_gap_minutes", self.session_gap_minutes)
        kw.setdefault("now", self.now)
        kw.setdefault("reply_stage", self.reply_stage)
        if kw.get("filters"):
            kw["filters"] = self.lookup_filters(kw["filters"])
        return make_query(metric, **kw)

    def lookup_filters(self, filters: Mapping[str, Any]) -> dict[str, Any]:
        """User and conversation filter values as stored: a phone number typed by a person is
        looked up by its hash as well (the same keyed hash the ids were stored with)."""
        out = dict(filters)
        for dim in ("user", "conversation"):
            value = out.get(dim)
            values = [value] if isinstance(value, str) else value
            if not values or not all(isinstance(v, str) for v in values):
                continue  # make_query says what is wrong with it
            hasher = self._user_hasher()
            if hasher is not None:
                out[dim] = lookup_values(hasher, dim, list(values))
        return out

    def _user_hasher(self) -> Any:
        if self._hasher is None:
            default = getattr(self.store, "default_key_path", None)
            paths = key_paths(default(), str(getattr(self.store, "url", ""))) if default else []
            key = existing_key(self._hash_key, paths)
            self._hasher = UserHasher(key) if key is not None else False
        return self._hasher or None

    def query(
        self,
        metric: str,
        *,
        days: int | None = None,
        start: datetime | date | str | None = None,
        end: datetime | date | str | None = None,
        interval: str | None = "day",
        by: str | Sequence[str] = (),
        filters: Mapping[str, str | Sequence[str]] | None = None,
        stat: str | Sequence[str] | None = None,
        periods: int = 8,
        limit: int | None = None,
    ) -> Result:
        """One metric over a window: ``days`` (today and the days before it) or ``start``/``end``."""
        q = self.make(
            metric,
            days=days,
            start=start,
            end=end,
            interval=interval,
            by=by,
            filters=filters,
            stat=stat,
            periods=periods,
            limit=limit,
        )
        return self.run(q)

    def run(self, query: Query) -> Result:
        return self._answer(query, lambda: scaled(self.engine.run(query)))

    def window(
        self,
        days: int | None = None,
        start: datetime | date | str | None = None,
        end: datetime | date | str | None = None,
    ) -> Window:
        if start is not None and end is not None:
            days = None  # an explicit window wins over the default number of days
        return window_of(days, start, end, self.now)

    def total(self, metric: str, window: Window, stat: str | None = None, **kw: Any) -> Any:
        result = self.query(metric, start=window[0], end=window[1], interval=None, stat=stat, **kw)
        return result.total()

    # -- the period figures ---------------------------------------------------------------------

    def costs(
        self, days: int | None = 7, *, start: Any = None, end: Any = None, as_frame: bool = False
    ) -> Any:
        """Total cost, by provider and model, per day, unpriced calls, cost per conversation and user."""
        window = self.window(days, start, end)
        gaps = Gaps()  # a figure the store cannot give is None and listed, the rest is answered
        with self.session():

            def total(metric: str) -> Any:
                return gaps.get(metric, lambda: self.total(metric, window))

            def query(name: str, fallback: Any, **kw: Any) -> Any:
                return gaps.get(
                    name, lambda: self.query("cost_usd", start=window[0], end=window[1], **kw), fallback
                )

            daily = query("daily", None, interval="day")
            by_provider = query("by_provider", None, interval=None, by="provider")
            by_model = query("by_model", None, interval=None, by="model")
            out = {
                "period": _period(window),
                "total_usd": total("cost_usd"),
                "by_provider": _breakdown(by_provider) if by_provider is not None else {},
                "by_model": _breakdown(by_model) if by_model is not None else {},
                "daily": [{"day": iso(r["bucket"]), "cost_usd": r["sum"]} for r in daily.rows]
                if daily
                else [],
                "llm_calls": total("llm_calls"),
                "unpriced_calls": total("unpriced_calls"),
                "input_tokens": total("input_tokens"),
                "output_tokens": total("output_tokens"),
                "cached_tokens": total("cached_tokens"),
                "cost_per_conversation": total("cost_per_conversation"),
                "cost_per_active_user": total("cost_per_active_user"),
            }
        gaps.raise_if_nothing()
        if gaps.missing:
            out["unavailable"] = gaps.missing
        return frame(out["daily"]) if as_frame else out

    def engagement(
        self, days: int | None = 7, *, start: Any = None, end: Any = None, as_frame: bool = False
    ) -> Any:
        """Users (active, new, returning), conversations, messages, conversation length and duration."""
        window = self.window(days, start, end)
        with self.session():
            per_day = {
                name: self.query(name, start=window[0], end=window[1], interval="day")
                for name in ("active_users", "new_users", "returning_users", "conversations", "messages")
            }
            length = self.query(
                "messages_per_conversation", start=window[0], end=window[1], interval=None, stat="avg,p50,p90"
            )
            duration = self.query(
                "conversation_duration_s", start=window[0], end=window[1], interval=None, stat="avg,p50,p90"
            )
            out = {
                "period": _period(window),
                "active_users": self.total("active_users", window),
                "new_users": self.total("new_users", window),
                "returning_users": self.total("returning_users", window),
                "conversations": self.total("conversations", window),
                "messages": self.total("messages", window),
                "inbound_messages": self.total("inbound_messages", window),
                "messages_per_conversation": _stats(length),
                "conversation_duration_s": _stats(duration),
                "resets": self.total("resets", window),
                "admin_commands": self.total("admin_commands", window),
                "activities": _breakdown(
                    self.query("activities", start=window[0], end=window[1], interval=None, by="name")
                ),
                "session_gap_minutes": self.session_gap_minutes,
                "daily": [
                    {"day": iso(b), **{name: r.rows[i][r.stats[0]] for name, r in per_day.items()}}
                    for i, b in enumerate(r0["bucket"] for r0 in per_day["messages"].rows)
                ],
            }
        return frame(out["daily"]) if as_frame else out

    def errors(
        self, days: int | None = 7, *, start: Any = None, end: Any = None, as_frame: bool = False
    ) -> Any:
        """Error count and rate, by category and severity, per day, and the error groups."""
        window = self.window(days, start, end)
        with self.session():
            daily = self.query("errors", start=window[0], end=window[1], interval="day")
            rate = self.query("error_rate", start=window[0], end=window[1], interval="day")
            out = {
                "period": _period(window),
                "errors": self.total("errors", window),
                "error_rate": self.total("error_rate", window),
                "by_category": _breakdown(
                    self.query("errors", start=window[0], end=window[1], interval=None, by="category")
                ),
                "by_severity": _breakdown(
                    self.query("errors", start=window[0], end=window[1], interval=None, by="severity")
                ),
                "daily": [
                    {"day": iso(r["bucket"]), "errors": r["count"], "error_rate": e["ratio"]}
                    for r, e in zip(daily.rows, rate.rows, strict=True)
                ],
                "groups": self.error_groups(start=window[0], end=window[1]),
            }
        return frame(out["daily"]) if as_frame else out

    def latency(
        self, days: int | None = 7, *, start: Any = None, end: Any = None, as_frame: bool = False
    ) -> Any:
        """The reply latency (the reply stage's timings; ``overall`` and per day), each stage's own
        timings, and LLM-call latency per model, in milliseconds."""
        window = self.window(days, start, end)
        stats = "p50,p90,p95,p99,max,avg,count"
        reply = {"stage": self.reply_stage}
        with self.session():
            overall = self.query(
                "latency_ms", start=window[0], end=window[1], interval=None, stat=stats, filters=reply
            )
            by_stage = self.query(
                "latency_ms", start=window[0], end=window[1], interval=None, by="stage", stat=stats
            )
            by_model = self.query(
                "llm_latency_ms", start=window[0], end=window[1], interval=None, by="model", stat=stats
            )
            daily = self.query(
                "latency_ms",
                start=window[0],
                end=window[1],
                interval="day",
                stat="p50,p95,p99",
                filters=reply,
            )
            out = {
                "period": _period(window),
                "reply_stage": self.reply_stage,
                "overall": _stats(overall),
                # Timings always name a stage and LLM calls a model: no "(none)" group to show.
                "by_stage": {r["stage"]: _pick(r, overall.stats) for r in by_stage.rows if r["stage"]},
                "by_model": {r["model"]: _pick(r, overall.stats) for r in by_model.rows if r["model"]},
                "daily": [{"day": iso(r["bucket"]), **_pick(r, daily.stats)} for r in daily.rows],
            }
        return frame(out["daily"]) if as_frame else out

    def error_groups(
        self, days: int | None = 7, *, start: Any = None, end: Any = None, bot: str | None = None
    ) -> list[dict[str, Any]]:
        """Error groups with errors in the window, most frequent first; of one ``bot`` when given."""
        from .errors import error_groups

        window = self.window(days, start, end)
        return self._answer(
            ("error_groups", window, bot), lambda: error_groups(self, window, bot=bot)
        )

    def user_messages(
        self, users: Sequence[str], *, start: Any, end: Any
    ) -> dict[str, tuple[int, str | None]]:
        """Stored user ids -> (messages both ways in the window, their country), for top lists."""
        method = getattr(self.engine, "user_messages", None)
        if method is None:
            raise FigureUnavailable(f"{getattr(self.store, 'url', 'this store')}: no messages per user here")
        window = self.window(None, start, end)
        return self._answer(("user_messages", tuple(users), window), lambda: method(list(users), *window))

    def inventory(self, bot: str | None = None, *, start: Any = None, end: Any = None) -> dict[str, Any]:
        """The store's contents in brief: events, first and last, by kind, recorded drops, schema
        version; of one ``bot`` and from ``start`` to ``end`` when given. ``FigureUnavailable``
        from a store that cannot list its events."""
        method = getattr(self.engine, "inventory", None)
        if method is None:
            raise FigureUnavailable(f"{getattr(self.store, 'url', 'this store')}: no event inventory here")
        return method(
            bot,
            None if start is None else utc(start, "start"),
            None if end is None else utc(end, "end"),
        )

    def explore(self, top: int = 5) -> dict[str, Any]:
        from .explore import explore

        return explore(self, top)


def _period(window: Window) -> dict[str, Any]:
    return {"start": iso(window[0]), "end": iso(window[1])}


def _breakdown(result: Result) -> dict[str, Any]:
    stat = result.stats[0]
    dim = result.query.by[0]
    rows = sorted(result.rows, key=lambda r: -(r[stat] or 0))
    return {(f"(no {dim})" if r[dim] is None else r[dim]): r[stat] for r in rows}


def _pick(row: dict[str, Any], stats: Sequence[str]) -> dict[str, Any]:
    return {s: row.get(s) for s in stats}


def _stats(result: Result) -> dict[str, Any]:
    return _pick(result.rows[0], result.stats) if result.rows else {s: None for s in result.stats}


__all__ = ["Reader", "engine_for", "utc"]
