"""A query engine for any SQL backend: plan (``analyse.plan``), print (the backend's ``SQLPrinter``),
run (the backend's connection), shape the rows into a ``Result``.

A SQL backend subclasses ``SQLEngine`` and gives three things: ``printer`` (its dialect),
``KEEPS`` (the rollups its store keeps up, see ``analyse.plan.Keeps``), and ``_connect`` and
``_execute`` (a read connection and one statement's column names and rows). The planner's
questions about the store (``Facts``) are answered here with statements the printer writes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from ...analyse.catalogue import PERCENTILES, Metric
from ...analyse.plan import SHARED_DIMS, SHARED_STATS, Keeps, Plan, Shared, plan, plan_user_messages
from ...analyse.query import Query, Result, fill_buckets, ratio_result, top_groups
from .printer import Printed, SQLPrinter


def aware(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value


class SQLEngine:
    """Runs typed queries through the planner and a dialect; ``use_rollups=False`` reads only events."""

    name = "sql"
    printer: SQLPrinter
    KEEPS: Keeps = Keeps()

    def __init__(self, store: Any, *, use_rollups: bool = True) -> None:
        self.store = store
        self.use_rollups = use_rollups
        self.keeps = self.KEEPS if use_rollups else Keeps()
        self._open = False
        # Facts about the store and shared scans, kept while a session is open.
        self._facts: dict[Any, Any] = {}
        self._fact_locks: dict[Any, threading.Lock] = {}
        self._facts_lock = threading.Lock()
        # The session's connection (or client) and the thread that opened it; the other threads'
        # own, made from it, closed with the session (``_here``).
        self._main: Any = None
        self._owner: int | None = None
        self._local = threading.local()
        self._handles: list[Any] = []
        self._handles_lock = threading.Lock()

    # -- what a backend provides ---------------------------------------------------------------------

    @contextmanager
    def _connect(self) -> Iterator[None]:
        """Opens the read connection ``_execute`` uses, for the length of a session."""
        raise NotImplementedError
        yield

    def _execute(self, sql: str, params: dict[str, Any]) -> tuple[list[str], list[tuple]]:
        """Runs one statement in the open session: column names and rows."""
        raise NotImplementedError

    # -- a session read from several threads --------------------------------------------------------

    def _own(self, main: Any) -> None:
        """``main`` (a connection, a client) answers this session on the calling thread."""
        self._main, self._owner = main, threading.get_ident()

    def _here(self, make: Callable[[Any], Any]) -> Any:
        """The session's connection on the thread that opened it; on another thread, that thread's
        own, made once from it by ``make`` (a cursor, another client)."""
        if threading.get_ident() == self._owner:
            return self._main
        local = self._local
        handle = getattr(local, "handle", None)
        if handle is None or local.of is not self._main:
            handle = make(self._main)
            local.handle, local.of = handle, self._main
            if handle is not self._main:
                with self._handles_lock:
                    self._handles.append(handle)
        return handle

    def _disown(self, close: Callable[[Any], None]) -> None:
        """The session ends: the other threads' handles are closed (``close``)."""
        with self._handles_lock:
            handles, self._handles = self._handles, []
        for handle in handles:
            close(handle)
        self._main, self._owner = None, None

    # -- sessions and statements ----------------------------------------------------------------------

    @contextmanager
    def session(self) -> Iterator[Any]:
        """One read connection for several queries (a dashboard, a summary)."""
        if self._open:
            yield self
            return
        with self._connect():
            self._open = True
            try:
                yield self
            finally:
                self._open = False
                self._facts, self._fact_locks = {}, {}

    def sql(self, text: str, params: dict[str, Any] | None = None) -> list[tuple]:
        """Runs read-only SQL in the current session (or a short one)."""
        if not self._open:
            with self.session():
                return self.sql(text, params)
        return list(self._answer(text, params or {})[1])

    def _dicts(self, printed: Printed) -> list[dict[str, Any]]:
        if not self._open:
            with self.session():
                return self._dicts(printed)
        names, rows = self._answer(printed.sql, printed.params)
        return [{n: aware(v) for n, v in zip(names, row, strict=True)} for row in rows]

    def _answer(self, sql: str, params: dict[str, Any]) -> tuple[list[str], list[tuple]]:
        """``_execute``, once per statement and values in a session: a dashboard's panels and its
        anomaly series ask some of the same questions (each costs an embedded ClickHouse tens of
        milliseconds however small)."""
        key = ("answer", sql, repr(sorted(params.items())))
        return self._fact(key, lambda: self._execute(sql, params))

    def _fact(self, key: Any, compute: Any) -> Any:
        if not self._open:
            return compute()
        try:
            return self._facts[key]
        except KeyError:
            pass
        # Once per session even when two threads of it ask at once (a dashboard's summary and
        # its series share scans): the second waits for the first's answer.
        with self._facts_lock:
            lock = self._fact_locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._facts:
                self._facts[key] = compute()
        return self._facts[key]

    # -- Facts, for the planner ----------------------------------------------------------------------

    def day_within(self, day: datetime, start: datetime, end: datetime) -> bool:
        def compute() -> bool:
            printed = self.printer.day_within(day, start, end)
            return not self.sql(printed.sql, printed.params)[0][0]

        return self._fact(("day_within", day, start, end), compute)

    def one_bot(self) -> bool:
        printed = self.printer.one_bot()
        return self._fact("one_bot", lambda: self.sql(printed.sql, printed.params)[0][0] <= 1)

    def session_gap_s(self) -> int:
        printed = self.printer.session_gap()
        rows = self._fact("gap", lambda: self.sql(printed.sql, printed.params))
        return int(rows[0][0]) if rows else -1

    def turns_whole(self) -> bool:
        printed = self.printer.turns_whole()
        if printed is None:
            return True
        return self._fact("turns", lambda: bool(self.sql(printed.sql, printed.params)[0][0]))

    def fresh_latency_days(self, kind: str, lo: datetime, hi: datetime, bot: str | None) -> list[datetime]:
        printed = self.printer.fresh_latency_days(kind, lo, hi, bot)
        return [aware(datetime(d.year, d.month, d.day)) for (d,) in self.sql(printed.sql, printed.params)]

    # -- queries --------------------------------------------------------------------------------------

    def plan(self, query: Query) -> Plan:
        """Which stored source answers each part of ``query`` here."""
        return plan(query, self.keeps, self)

    def run(self, query: Query) -> Result:
        with self.session():
            metric = query.definition
            if metric.aggregation == "ratio":
                return self._ratio(query, metric)
            chosen = self.plan(query)
            if metric.aggregation == "retention":
                return self._retention(chosen)
            rows = self._rows(chosen)
            notes = []
            if metric.aggregation in ("conversations", "per_conversation") and self._splits_sessions(query):
                notes.append(_gap_note(query))
            return Result(
                query, top_groups(query, fill_buckets(query, rows, _empty_for(metric))), chosen.source, notes
            )

    def _rows(self, chosen: Plan) -> list[dict[str, Any]]:
        q, metric = chosen.query, chosen.query.definition
        stat = q.stats[0]
        rows: list[dict[str, Any]] = []
        for printed in self.printer.print(chosen):
            rows += self._shared_rows(printed) if chosen.shared else self._dicts(printed)
        if chosen.shape in ("moments", "distribution", "per_conversation"):
            if chosen.shared is not None:
                rows = _shared_pick(rows, chosen.shared)
            return _summary_rows(rows, _computed_stats(chosen), q.stats)
        if chosen.shape in ("additive", "keyed_cost"):
            return _additive_rows(rows, q, metric, costs=self.printer._costs(q, metric))
        for row in rows:
            row[stat] = int(row[stat] or 0)
            if chosen.shape == "conversations" and row.get("bot") == "":
                row["bot"] = None
        return rows

    def _shared_rows(self, printed: Printed) -> list[dict[str, Any]]:
        """A widened scan's rows, read once per session (copies: shaping changes them)."""
        key = ("scan", printed.sql, repr(sorted(printed.params.items())))
        rows = self._fact(key, lambda: self._dicts(printed))
        return [dict(r) for r in rows]

    def _splits_sessions(self, q: Query) -> bool:
        """Whether messages without a conversation id (split into sessions) fall in the window."""
        printed = self.printer.splits_sessions(q, hourly=bool(self.keeps.hourly))
        return bool(self.sql(printed.sql, printed.params)[0][0])

    def _ratio(self, q: Query, metric: Metric) -> Result:
        assert metric.numerator and metric.denominator
        num = self.run(q.with_metric(metric.numerator))
        den = self.run(q.with_metric(metric.denominator))
        return ratio_result(q, num, den)

    def _retention(self, chosen: Plan) -> Result:
        q = chosen.query
        unit = q.interval or "day"
        step = 7 if unit == "week" else 1
        (printed,) = self.printer.print(chosen)
        found = {(r["bucket"], r["period"]): int(r["active"]) for r in self._dicts(printed)}
        rows = []
        for cohort in q.buckets():
            size = found.get((cohort, 0), 0)
            if not size:
                continue
            for n in range(q.periods + 1):
                start_of = cohort + timedelta(days=n * step)
                observed = start_of < q.end
                active = found.get((cohort, n), 0)
                rows.append(
                    {
                        "bucket": cohort,
                        "period": n,
                        "cohort_users": size,
                        "active_users": active if observed else None,
                        "share": (active / size) if observed else None,
                    }
                )
        return Result(q, rows, chosen.source, [f"cohorts by first-seen {unit}"])

    def user_messages(
        self, users: list[str], start: datetime, end: datetime
    ) -> dict[str, tuple[int, str | None]]:
        """Per user id: messages (both ways) in [start, end) and their country (the largest code if
        several), from the per-day user rollup and the events of partial days."""
        if not users:
            return {}
        printed = self.printer.user_messages(list(users), plan_user_messages(start, end, self.keeps))
        with self.session():
            rows = self.sql(printed.sql, printed.params)
        return {user: (int(n or 0), country) for user, n, country in rows}

    def error_groups(
        self, start: datetime, end: datetime, quiet_days: int, bot: str | None = None
    ) -> list[dict[str, Any]]:
        """Error groups (per fingerprint) with activity in [start, end), of one ``bot`` when given;
        see ``analyse.errors``."""
        with self.session():
            groups = self._dicts(self.printer.error_groups(start, end, quiet_days, bot))
            if not groups:
                return groups
            hourly = self._dicts(self.printer.error_hours(start, end, bot))
        series: dict[str, list[tuple[datetime, int]]] = {}
        for row in hourly:
            series.setdefault(row["fingerprint"], []).append((row["hour"], int(row["n"])))
        for group in groups:
            group["count"] = int(group["count"])
            group["users"] = int(group["users"])
            group["conversations"] = int(group["conversations"])
            group["new"] = group["first_seen"] >= start
            group["regressed"] = bool(group.pop("came_back")) and not group["new"]
            group["status"] = "new" if group["new"] else ("regressed" if group["regressed"] else "ongoing")
            group["hourly"] = series.get(group["fingerprint"], [])
        return groups


def _shared_pick(rows: list[dict[str, Any]], shared: Shared) -> list[dict[str, Any]]:
    """The rows of the shared latency scan that answer one query, with only its dimensions."""
    others = [d for d in SHARED_DIMS[shared.kind] if d not in shared.by]
    out = []
    for row in rows:
        if shared.value and row[shared.value[0]] != shared.value[1]:
            continue
        for name in others:
            del row[name]
        out.append(row)
    return out


def _computed_stats(chosen: Plan) -> list[str]:
    return list(SHARED_STATS) if chosen.shared else list(chosen.query.stats)


def _additive_rows(rows: list[dict[str, Any]], q: Query, metric: Metric, costs: bool) -> list[dict[str, Any]]:
    stat = q.stats[0]
    for row in rows:
        value = row[stat]
        if value is None and costs:
            continue  # unknown: stays None
        row[stat] = 0 if value is None else (int(value) if metric.aggregation == "count" else float(value))
        if metric.aggregation == "sum" and metric.column != "cost_usd" and metric.column != "units":
            row[stat] = int(row[stat])
    return rows


def _summary_rows(
    rows: list[dict[str, Any]], computed: list[str], stats: tuple[str, ...]
) -> list[dict[str, Any]]:
    """Rows of ``summary_columns`` (which worked out ``computed``) as the statistics asked for:
    numbers, null when nothing was seen."""
    wanted = [s for s in computed if s in PERCENTILES]
    for row in rows:
        for s, v in zip(wanted, row.pop("q", None) or [], strict=False):
            row[s] = v
        row["count"] = int(row.get("count") or 0)
        for s in stats:
            if s != "count" and row.get(s) is not None:
                row[s] = float(row[s])
            row.setdefault(s, None)  # a window without values still has every statistic, as null
        for extra in ("count", "avg", "max", *wanted):
            if extra not in stats:
                row.pop(extra, None)
    return rows


def _empty_for(metric: Metric) -> Any:
    if metric.aggregation in (
        "count",
        "sum",
        "active_users",
        "new_users",
        "returning_users",
        "conversations",
        "failed_replies",
    ):
        return lambda stat: (
            0.0 if metric.aggregation == "sum" and metric.column in ("cost_usd", "units") else 0
        )
    return lambda stat: 0 if stat == "count" else None


def _gap_note(q: Query) -> str:
    minutes = q.session_gap_s / 60
    return f"conversations without a conversation id are split at gaps of more than {minutes:g} minutes"
