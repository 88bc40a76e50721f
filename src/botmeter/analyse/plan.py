"""The planner: which stored source answers each part of a query, exactly.

A backend keeps its events and, beside them, some rollups; it declares which in a ``Keeps``. From a
typed ``Query`` and that declaration, ``plan`` makes a ``Plan``: parts, each a source and a time
span, and how the parts combine (added up, a union of ids counted once, figures merged). No SQL is
written here; a backend's dialect prints the plan (``backends/sql``), and a backend that speaks no
SQL may read the same plan its own way.

Some choices depend on what the store holds, not only on what it keeps (is an edge day complete?
is there one bot? were the day's percentiles taken over all of its timings?). The planner asks
those of ``Facts``, which the engine answers from its store.

Sources:

* ``events``: the events themselves; any query, any span.
* ``hourly``: per hour and ``Keeps.hourly`` dimensions, counts and sums (``Keeps.hourly_sums``),
  latency count, sum and maximum; the events without a user or a conversation id per hour.
* ``user_days``: per day, bot and user: inbound messages, first inbound, cost, messages, country.
* ``conversation_cost_days``: per day, bot and conversation id: cost.
* ``conversation_days``: per day, bot and conversation key (id, or session at the stored gap).
* ``conversation_totals``: per conversation key: first and last message, messages.
* ``turns``: per inbound message: whether its turn failed and whether it was answered.
* ``latency_days``: per complete day, bot, kind and ``Keeps.latency_days`` dimension: exact
  percentiles (``Keeps.latency_quantiles``), count, sum and maximum.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from .catalogue import DIMENSIONS, PERCENTILES, Metric
from .query import Query

DAY = timedelta(days=1)
# The whole-window latency scan several figures share (see ``Shared``): per kind, the dimensions
# it groups by, and the statistics it always works out (what the summary's reply latency and the
# dashboard's table by stage ask, so one scan answers both). LLM calls by model are not shared:
# nothing else reads them, and one statement for both kinds measured slower than two.
SHARED_DIMS: dict[str, tuple[str, ...]] = {"timing": ("stage",)}
SHARED_STATS = ("count", "avg", "max", "p50", "p95", "p99")


@dataclass(frozen=True)
class Keeps:
    """What a backend keeps beside its events. The default keeps nothing: every query reads events."""

    hourly: frozenset[str] = frozenset()  # event columns the hourly rollup is keyed by
    hourly_sums: frozenset[str] = frozenset()  # event columns it sums per hour
    hourly_latency: bool = False  # latency count, sum and maximum per hour
    user_days: bool = False  # per day, bot and user (also cost per user per day)
    conversation_cost_days: bool = False  # cost per day, bot and conversation id
    conversation_days: bool = False  # conversation keys per day (sessions at the stored gap)
    conversation_totals: bool = False  # first, last and messages per conversation key
    turns: bool = False  # failed and answered per inbound message
    # kind -> dimensions ('' overall) of the per-day exact latency percentiles
    latency_days: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    latency_quantiles: tuple[float, ...] = ()

    @property
    def any(self) -> bool:
        return bool(self.hourly or self.user_days or self.turns or self.latency_days)


class Facts(Protocol):
    """What the planner asks of the store it plans for (answered once per session)."""

    def day_within(self, day: datetime, start: datetime, end: datetime) -> bool:
        """Whether all events of ``day`` lie inside [start, end) (so the day rollups answer it whole)."""
        ...

    def one_bot(self) -> bool:
        """Whether the store holds events of at most one bot."""
        ...

    def session_gap_s(self) -> int:
        """The session gap the conversation rollups were kept at (-1: none)."""
        ...

    def turns_whole(self) -> bool:
        """Whether the kept turns hold every event (a writer that keeps them after the insert may
        have lost a fold)."""
        ...

    def fresh_latency_days(self, kind: str, lo: datetime, hi: datetime, bot: str | None) -> list[datetime]:
        """The days in [lo, hi) whose kept percentiles cover every timing of that day."""
        ...


@dataclass(frozen=True)
class Part:
    """One source over one or more time spans [start, end)."""

    source: str
    spans: tuple[tuple[datetime, datetime], ...] = ()
    days: tuple[datetime, ...] = ()  # latency_days: the days read

    @property
    def start(self) -> datetime:
        return self.spans[0][0]

    @property
    def end(self) -> datetime:
        return self.spans[-1][1]


@dataclass(frozen=True)
class LatencyPick:
    """Which kept latency rows answer: the kind, the dimension, one value of it, one bot."""

    kind: str
    dim: str
    value: str | None
    bot: str | None


@dataclass(frozen=True)
class Shared:
    """This query's rows of the shared latency scan of ``kind`` over the window (the timings by
    stage, with ``SHARED_STATS``): all of them (grouped by ``by``), or the row where a dimension has
    one value (``value``: the reply stage)."""

    kind: str
    by: tuple[str, ...]
    value: tuple[str, str] | None = None


@dataclass(frozen=True)
class Plan:
    """The parts answering a query and how they combine.

    ``shape`` names what is computed (``additive``, ``keyed_cost``, ``moments``, ``distribution``,
    ``users``, ``conversations``, ``per_conversation``, ``failed_replies``, ``retention``);
    ``combine`` how the parts' rows meet: ``sum`` (added per bucket and group), ``distinct`` (a
    union of ids counted once), ``rows`` (rows of complete figures, concatenated; one part each
    bucket), ``rows_distinct`` (a union whose rows are already distinct ids: counted, no set).
    """

    query: Query
    shape: str
    parts: tuple[Part, ...]
    combine: str = "sum"
    latency: LatencyPick | None = None
    shared: Shared | None = None

    @property
    def source(self) -> str:
        """What answered, as a ``Result`` says it: rollups when any part read one, else events."""
        return "events" if all(p.source == "events" for p in self.parts) else "rollups"

    def sources(self) -> list[str]:
        return [p.source for p in self.parts]


def _ceil_hour(ts: datetime) -> datetime:
    floor = ts.replace(minute=0, second=0, microsecond=0)
    return floor if floor == ts else floor + timedelta(hours=1)


def _midnight(ts: datetime) -> datetime:
    return ts.replace(hour=0, minute=0, second=0, microsecond=0)


def events(*spans: tuple[datetime, datetime]) -> list[Part]:
    """Events parts for the non-empty spans."""
    return [Part("events", ((lo, hi),)) for lo, hi in spans if lo < hi]


def whole_days(start: datetime, end: datetime) -> tuple[datetime, datetime, list[tuple[datetime, datetime]]]:
    """Whole days [lo, hi) inside [start, end) and the partial edges around them (by the clock alone)."""
    lo = _midnight(start)
    lo = lo if lo == start else lo + DAY
    hi = _midnight(end)
    if lo >= hi:
        return lo, lo, [(start, end)]
    return lo, hi, [(start, lo), (hi, end)]


def split_days(
    start: datetime, end: datetime, facts: Facts
) -> tuple[datetime, datetime, list[tuple[datetime, datetime]]]:
    """Whole days [lo, hi) the day rollups answer exactly, and the partial edges to read from events.

    An edge day counts as whole when all of its events lie inside the window (a window ending now,
    say); otherwise its part inside the window is read from the events.
    """
    lo = _midnight(start)
    end_floor = _midnight(end)
    hi = end_floor if end == end_floor else end_floor + DAY
    edges: list[tuple[datetime, datetime]] = []
    if start != lo and not facts.day_within(lo, start, end):
        edges.append((start, min(lo + DAY, end)))
        lo += DAY
    if end != end_floor and end_floor >= lo and not facts.day_within(end_floor, start, end):
        edges.append((max(end_floor, start), end))
        hi = end_floor
    return lo, max(lo, hi), edges


def _names(q: Query) -> set[str]:
    return set(q.by) | {d for d, _ in q.filters}


def in_hourly(q: Query, metric: Metric, keeps: Keeps) -> bool:
    """Whether every dimension the query groups, filters or narrows by is a key of the hourly rollup."""
    names = _names(q) | {d for d, v in metric.where if v is not None}
    return bool(keeps.hourly) and all(DIMENSIONS[d] in keeps.hourly for d in names)


def plan(q: Query, keeps: Keeps, facts: Facts) -> Plan:
    """The plan answering ``q`` (any aggregation but ``ratio``, which is two queries)."""
    metric = q.definition
    planner = _PLANNERS[metric.aggregation]
    return planner(q, metric, keeps, facts)


def _additive(q: Query, metric: Metric, keeps: Keeps, facts: Facts) -> Plan:
    keyed = _keyed_cost(q, metric, keeps)
    if keyed is not None:
        return keyed
    hs, he = _ceil_hour(q.start), _midnight_hour(q.end)
    if (
        in_hourly(q, metric, keeps)
        and hs < he
        and (metric.aggregation == "count" or metric.column in keeps.hourly_sums)
    ):
        parts = [Part("hourly", ((hs, he),)), *events((q.start, hs), (he, q.end))]
        return Plan(q, "additive", tuple(parts))
    return Plan(q, "additive", tuple(events((q.start, q.end))))


def _keyed_cost(q: Query, metric: Metric, keeps: Keeps) -> Plan | None:
    """Cost per user or per conversation id: whole days from their per-day rollups, the events
    without one from the hourly rollup, partial days from the events."""
    keyed = next((k for k in ("user", "conversation") if k in q.by), None)
    if keyed is None or not keeps.hourly or q.interval == "hour":
        return None
    if not {"user": keeps.user_days, "conversation": keeps.conversation_cost_days}[keyed]:
        return None
    if metric.column != "cost_usd" or metric.kinds or metric.where or not _names(q) <= {keyed, "bot"}:
        return None
    lo, hi, edges = whole_days(q.start, q.end)
    days = "user_days" if keyed == "user" else "conversation_cost_days"
    parts = [Part(days, ((lo, hi),)), Part("hourly_without_" + keyed, ((lo, hi),)), *events(*edges)]
    return Plan(q, "keyed_cost", tuple(parts))


def _midnight_hour(ts: datetime) -> datetime:
    return ts.replace(minute=0, second=0, microsecond=0)


def _distribution(q: Query, metric: Metric, keeps: Keeps, facts: Facts) -> Plan:
    cheap = set(q.stats) <= {"avg", "max", "count"}
    hs, he = _ceil_hour(q.start), _midnight_hour(q.end)
    if (
        keeps.hourly_latency
        and cheap
        and metric.column == "latency_ms"
        and in_hourly(q, metric, keeps)
        and hs < he
    ):
        parts = [Part("hourly", ((hs, he),)), *events((q.start, hs), (he, q.end))]
        return Plan(q, "moments", tuple(parts))
    kept = _latency_days(q, metric, keeps, facts)
    if kept is not None:
        pick, fresh = kept
        spans: list[tuple[datetime, datetime]] = []
        cursor = q.start
        for d in fresh:
            if cursor < d:
                spans.append((cursor, d))
            cursor = max(cursor, d + DAY)
        if cursor < q.end:
            spans.append((cursor, q.end))
        parts = [Part("latency_days", days=tuple(fresh))]
        if spans:
            parts.append(Part("events", tuple(spans)))
        return Plan(q, "distribution", tuple(parts), combine="rows", latency=pick)
    whole = (Part("events", ((q.start, q.end),)),)
    return Plan(q, "distribution", whole, combine="rows", shared=_shared(q, metric))


def _shared(q: Query, metric: Metric) -> Shared | None:
    """Whether the shared latency scan answers ``q``: a whole window, no filters, the statistics it
    works out, and the timings by stage or of one stage. The summary's reply latency and the
    dashboard's table by stage then read the events once (percentiles cannot be merged, so the
    scan groups by exactly this dimension)."""
    kind = metric.kinds[0] if len(metric.kinds) == 1 else ""
    if (
        q.interval is not None
        or q.filters
        or not set(q.stats) <= set(SHARED_STATS)
        or metric.column != "latency_ms"
        or kind not in SHARED_DIMS
    ):
        return None
    dims = SHARED_DIMS[kind]
    if not metric.where:
        return Shared(kind, q.by) if q.by == dims else None
    if not q.by and len(metric.where) == 1 and len(dims) == 1 and metric.where[0][0] == dims[0]:
        value = metric.where[0][1]
        if value is not None and not value.endswith("*"):
            return Shared(kind, (), (dims[0], value))
    return None


def _latency_target(q: Query, metric: Metric, keeps: Keeps) -> tuple[str, str, str | None] | None:
    """The kind, dimension ('' overall) and one value of it (or None) whose kept per-day
    percentiles are the query's figures, or None when no kept row is."""
    kind = metric.kinds[0] if len(metric.kinds) == 1 else ""
    if (
        q.interval != "day"
        or metric.column != "latency_ms"
        or kind not in keeps.latency_days
        or len(q.by) > 1
    ):
        return None
    # One stage's figures (the reply latency, or a filter on one stage): that stage's row of the
    # per-stage figures.
    stages = [values for d, values in q.filters if d == "stage"]
    if metric.where:
        if q.by or stages or len(metric.where) != 1 or metric.where[0][0] != "stage":
            return None
        dim, value = "stage", metric.where[0][1]
        if value is None:
            return None
    elif stages:
        if q.by or len(stages) != 1 or len(stages[0]) != 1:
            return None
        dim, value = "stage", stages[0][0]
    else:
        dim, value = (q.by[0] if q.by else ""), None
    if (value is not None and value.endswith("*")) or dim not in keeps.latency_days[kind]:
        return None
    return kind, dim, value


def _latency_days(
    q: Query, metric: Metric, keeps: Keeps, facts: Facts
) -> tuple[LatencyPick, list[datetime]] | None:
    """Which kept per-day percentiles answer (and which days are current), or None."""
    target = _latency_target(q, metric, keeps) if keeps.latency_days else None
    if target is None:
        return None
    bots = [v for d, values in q.filters for v in values if d == "bot"]
    if (
        any(d not in ("bot", "stage") for d, _ in q.filters)
        or len(bots) > 1
        or any(s in PERCENTILES and PERCENTILES[s] not in keeps.latency_quantiles for s in q.stats)
        or (not bots and not facts.one_bot())
    ):
        return None
    lo, hi, _ = whole_days(q.start, q.end)
    if lo >= hi:
        return None
    bot = bots[0] if bots else None
    fresh = sorted(facts.fresh_latency_days(target[0], lo, hi, bot))
    if not fresh:
        return None
    return LatencyPick(*target, bot), fresh


def _users(q: Query, metric: Metric, keeps: Keeps, facts: Facts) -> Plan:
    if not (keeps.user_days and q.interval != "hour" and _names(q) <= {"bot"}):
        return Plan(q, "users", tuple(events((q.start, q.end))), combine="distinct")
    lo, hi, edges = split_days(q.start, q.end, facts)
    parts = (Part("user_days", ((lo, hi),)), *events(*edges))
    distinct = not (
        metric.aggregation == "active_users"
        and not edges
        and q.interval == "day"
        and ("bot" in q.by or facts.one_bot())
    )
    # A day's rows are distinct users of one bot already: count rows, no hash set needed.
    return Plan(q, "users", parts, combine="distinct" if distinct else "rows_distinct")


def _conversation_rollup_ok(q: Query, keeps: Keeps, facts: Facts, kept: bool, hourly_ok: bool) -> bool:
    return (
        kept
        and _names(q) <= {"bot"}
        and facts.session_gap_s() == q.session_gap_s
        and (hourly_ok or q.interval != "hour")
    )


def _conversations(q: Query, metric: Metric, keeps: Keeps, facts: Facts) -> Plan:
    if not _conversation_rollup_ok(q, keeps, facts, keeps.conversation_days, hourly_ok=False):
        return Plan(q, "conversations", tuple(events((q.start, q.end))), combine="distinct")
    lo, hi, edges = split_days(q.start, q.end, facts)
    parts = (Part("conversation_days", ((lo, hi),)), *events(*edges))
    # Keys are unique within a bot, and a day's rows are distinct conversations already.
    rows = q.interval == "day" and not edges
    return Plan(q, "conversations", parts, combine="rows_distinct" if rows else "distinct")


def _per_conversation(q: Query, metric: Metric, keeps: Keeps, facts: Facts) -> Plan:
    kept = _conversation_rollup_ok(q, keeps, facts, keeps.conversation_totals, hourly_ok=True)
    source = "conversation_totals" if kept else "events"
    return Plan(q, "per_conversation", (Part(source, ((q.start, q.end),)),), combine="rows")


def _failed_replies(q: Query, metric: Metric, keeps: Keeps, facts: Facts) -> Plan:
    source = "turns" if keeps.turns and facts.turns_whole() else "events"
    return Plan(q, "failed_replies", (Part(source, ((q.start, q.end),)),), combine="rows")


def _retention(q: Query, metric: Metric, keeps: Keeps, facts: Facts) -> Plan:
    source = "user_days" if keeps.user_days else "events"
    return Plan(q, "retention", (Part(source, ((q.start, q.end),)),), combine="rows")


_PLANNERS = {
    "count": _additive,
    "sum": _additive,
    "distribution": _distribution,
    "active_users": _users,
    "new_users": _users,
    "returning_users": _users,
    "conversations": _conversations,
    "per_conversation": _per_conversation,
    "failed_replies": _failed_replies,
    "retention": _retention,
}


def plan_user_messages(start: datetime, end: datetime, keeps: Keeps) -> tuple[Part, ...]:
    """Messages and country per user over [start, end): whole days from the per-day user rollup,
    the partial days from the events."""
    if not keeps.user_days:
        return tuple(events((start, end)))
    lo, hi, edges = whole_days(start, end)
    return (Part("user_days", ((lo, hi),)), *events(*edges))
