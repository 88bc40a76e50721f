"""Rollups kept beside the events in the DuckDB file, so a dashboard reads thousands of rows, not millions.

They are maintained in the same transaction as each write (over the rows actually added), so they
are never behind the events and never count a replayed event twice:

* ``rollup_hourly``: per UTC hour and low-cardinality dimensions (bot, kind, channel, direction,
  provider, model, error category, severity, stage, name, unit, country): event count, cost,
  tokens, units and latency sums, and the count and cost of events without a user (cost per user
  shows them as a group). Sums, counts and maxima add up across batches; NULL dimensions are
  kept as ''.
* ``rollup_users``: per UTC day and user: inbound messages, first and last inbound message,
  events and cost, messages both ways and their country (the largest code, if several). Active,
  new and returning users and retention come from it.
* ``rollup_conversations``: per conversation and UTC day it had messages: first and last message
  that day and how many. A conversation is the bot's conversation id (``c:<id>``) or, for
  messages without one, a run of the user's messages with no gap longer than the session gap
  (``s:<user>:<start>``). A new message can join, extend or bridge sessions, so each write
  re-merges the sessions of the users it touches (interval merging: exact, and local).
* ``rollup_conversation_totals``: per conversation: first and last message and how many, for
  figures per conversation (length, duration).
* ``rollup_latency_days``: per complete UTC day and event kind (timing, LLM call), exact latency
  percentiles (p50, p90, p95, p99), count, sum and maximum, overall and per dimension of
  ``LATENCY_DIMS`` (``dim`` is ``kind:dimension``, ``timing:`` overall). A stage's latency and an
  LLM call's are different figures, so the kinds are never pooled. Percentiles do not add up, so a
  day is computed once it is over (and again if late events arrive for it: its count then differs
  from ``rollup_hourly``'s, which readers check).
* ``rollup_conversation_costs``: per conversation id and UTC day: events and cost (the top
  conversations by cost; ``rollup_hourly`` keeps the cost of events without an id).
* ``rollup_turns`` and ``rollup_turn_heads``: each conversation's latest turn and the closed turns
  whose reply failed, for failed replies (see ``turns``).
* ``rollup_days``: per UTC day, its first and last event: a query window that ends or starts
  inside a day can still use that day's rollups when all of the day's events lie in the window.

What the rollups cannot answer (per-user or per-error-type breakdowns, exact percentiles, hourly
distinct counts) the query builder reads from ``events``; the rollups are an index, never the truth.
"""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ...events import HOURLY_KEYS
from . import turns

# Read by the query engine and the migrations from here.
from .turns import HEADS_DDL as HEADS_DDL
from .turns import TURN_EVENT as TURN_EVENT
from .turns import TURN_EVENT_WHERE as TURN_EVENT_WHERE
from .turns import TURNS_DDL as TURNS_DDL
from .turns import TURNS_FROM_EVENTS as TURNS_FROM_EVENTS
from .turns import rebuild as rebuild_turns  # noqa: F401

DEFAULT_SESSION_GAP_S = 1800
# Count and cost of the hour's events without a user id, and without a conversation id: the
# "(none)" group of cost per user and per conversation.
_NO_ID_COLUMNS = ("no_user_events", "no_user_cost", "no_conversation_events", "no_conversation_cost")
_HOURLY_SUMS = (
    "cost_usd",
    "input_tokens",
    "output_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "units",
)

# Latency percentiles kept per complete day: per kind, by these dimensions ('' = overall).
LATENCY_DIMS: dict[str, tuple[str, ...]] = {
    "timing": ("", "stage", "channel"),
    "llm_call": ("", "provider", "model", "stage", "channel"),
}
LATENCY_KINDS = tuple(LATENCY_DIMS)
LATENCY_QUANTILES = (0.5, 0.9, 0.95, 0.99)

DDL = [
    "CREATE TABLE IF NOT EXISTS rollup_hourly (hour TIMESTAMP NOT NULL, "
    + ", ".join(f"{key} VARCHAR NOT NULL" for key in HOURLY_KEYS)
    + ", events BIGINT, priced BIGINT, cost_usd DOUBLE, input_tokens BIGINT, output_tokens BIGINT, "
    "cached_tokens BIGINT, cache_write_tokens BIGINT, reasoning_tokens BIGINT, units DOUBLE, "
    "latency_n BIGINT, latency_sum DOUBLE, latency_max DOUBLE, no_user_events BIGINT, no_user_cost DOUBLE, "
    "no_conversation_events BIGINT, no_conversation_cost DOUBLE, "
    f"PRIMARY KEY (hour, {', '.join(HOURLY_KEYS)}))",
    "CREATE TABLE IF NOT EXISTS rollup_users (day DATE NOT NULL, bot VARCHAR NOT NULL, user_id "
    "VARCHAR NOT NULL, "
    "inbound BIGINT, first_in TIMESTAMP, last_in TIMESTAMP, events BIGINT, cost_usd DOUBLE, "
    "messages BIGINT, country VARCHAR, PRIMARY KEY (day, bot, user_id))",
    "CREATE TABLE IF NOT EXISTS rollup_conversations (conversation VARCHAR NOT NULL, bot VARCHAR NOT NULL, "
    "day DATE NOT NULL, user_id VARCHAR, first_ts TIMESTAMP, last_ts TIMESTAMP, messages BIGINT, "
    "PRIMARY KEY (conversation, bot, day))",
    "CREATE TABLE IF NOT EXISTS rollup_conversation_totals (conversation VARCHAR NOT NULL, "
    "bot VARCHAR NOT NULL, user_id VARCHAR, first_ts TIMESTAMP, last_ts TIMESTAMP, messages BIGINT, "
    "PRIMARY KEY (conversation, bot))",
    "CREATE TABLE IF NOT EXISTS rollup_latency_days (day DATE NOT NULL, bot VARCHAR NOT NULL, "
    "dim VARCHAR NOT NULL, value VARCHAR NOT NULL, n BIGINT, latency_sum DOUBLE, latency_max DOUBLE, "
    "q DOUBLE[], PRIMARY KEY (day, bot, dim, value))",
    "CREATE TABLE IF NOT EXISTS rollup_conversation_costs (conversation_id VARCHAR NOT NULL, "
    "bot VARCHAR NOT NULL, day DATE NOT NULL, events BIGINT, cost_usd DOUBLE, "
    "PRIMARY KEY (conversation_id, bot, day))",
    "CREATE TABLE IF NOT EXISTS rollup_days (day DATE PRIMARY KEY, first_ts TIMESTAMP, last_ts TIMESTAMP, "
    "events BIGINT)",
]
_HOURLY_SELECT = (
    "SELECT date_trunc('hour', ts) AS hour, "
    + ", ".join(f"coalesce({key}, '') AS {key}" for key in HOURLY_KEYS)
    + ", count(*) AS events, count(cost_usd) AS priced, coalesce(sum(cost_usd), 0) AS cost_usd, "
    "coalesce(sum(input_tokens), 0) AS input_tokens, coalesce(sum(output_tokens), 0) AS output_tokens, "
    "coalesce(sum(cached_tokens), 0) AS cached_tokens, coalesce(sum(cache_write_tokens), 0) AS "
    "cache_write_tokens, "
    "coalesce(sum(reasoning_tokens), 0) AS reasoning_tokens, coalesce(sum(units), 0) AS units, "
    "count(latency_ms) AS latency_n, coalesce(sum(latency_ms), 0) AS latency_sum, max(latency_ms) "
    "AS latency_max, count(*) FILTER (WHERE user_id IS NULL) AS no_user_events, "
    "coalesce(sum(cost_usd) FILTER (WHERE user_id IS NULL), 0) AS no_user_cost, "
    "count(*) FILTER (WHERE conversation_id IS NULL) AS no_conversation_events, "
    "coalesce(sum(cost_usd) FILTER (WHERE conversation_id IS NULL), 0) AS no_conversation_cost "
    "FROM {src} {where} GROUP BY ALL"
)
_HOURLY_MERGE = (
    " ON CONFLICT DO UPDATE SET events = events + EXCLUDED.events, priced = priced + EXCLUDED.priced, "
    "cost_usd = cost_usd + EXCLUDED.cost_usd, input_tokens = input_tokens + EXCLUDED.input_tokens, "
    "output_tokens = output_tokens + EXCLUDED.output_tokens, "
    "cached_tokens = cached_tokens + EXCLUDED.cached_tokens, "
    "cache_write_tokens = cache_write_tokens + EXCLUDED.cache_write_tokens, "
    "reasoning_tokens = reasoning_tokens + EXCLUDED.reasoning_tokens, units = units + EXCLUDED.units, "
    "latency_n = latency_n + EXCLUDED.latency_n, latency_sum = latency_sum + EXCLUDED.latency_sum, "
    "latency_max = greatest(latency_max, EXCLUDED.latency_max), "
    + ", ".join(f"{c} = {c} + EXCLUDED.{c}" for c in _NO_ID_COLUMNS)
)

_USERS_SELECT = (
    "SELECT CAST(ts AS DATE) AS day, coalesce(bot, '') AS bot, user_id, "
    "count(*) FILTER (WHERE kind = 'message' AND direction = 'in') AS inbound, "
    "min(ts) FILTER (WHERE kind = 'message' AND direction = 'in') AS first_in, "
    "max(ts) FILTER (WHERE kind = 'message' AND direction = 'in') AS last_in, "
    "count(*) AS events, coalesce(sum(cost_usd), 0) AS cost_usd, "
    "count(*) FILTER (WHERE kind = 'message') AS messages, max(country) FILTER (WHERE kind = 'message') "
    "AS country FROM {src} WHERE user_id IS NOT NULL {and_where} GROUP BY ALL"
)
_USERS_MERGE = (
    " ON CONFLICT DO UPDATE SET inbound = inbound + EXCLUDED.inbound, "
    "first_in = least(first_in, EXCLUDED.first_in), last_in = greatest(last_in, EXCLUDED.last_in), "
    "events = events + EXCLUDED.events, cost_usd = cost_usd + EXCLUDED.cost_usd, "
    "messages = messages + EXCLUDED.messages, country = CASE WHEN country IS NULL THEN EXCLUDED.country "
    "WHEN EXCLUDED.country IS NULL THEN country ELSE greatest(country, EXCLUDED.country) END"
)

_CONVERSATION_COSTS_SELECT = (
    "SELECT conversation_id, coalesce(bot, '') AS bot, CAST(ts AS DATE) AS day, count(*) AS events, "
    "coalesce(sum(cost_usd), 0) AS cost_usd FROM {src} WHERE conversation_id IS NOT NULL {and_where} "
    "GROUP BY ALL"
)
_CONVERSATION_COSTS_MERGE = (
    " ON CONFLICT DO UPDATE SET events = events + EXCLUDED.events, cost_usd = cost_usd + EXCLUDED.cost_usd"
)

_DAYS_SELECT = (
    "SELECT CAST(ts AS DATE) AS day, min(ts) AS first_ts, max(ts) AS last_ts, count(*) AS events "
    "FROM {src} {where} GROUP BY ALL"
)
_DAYS_MERGE = (
    " ON CONFLICT DO UPDATE SET first_ts = least(first_ts, EXCLUDED.first_ts), "
    "last_ts = greatest(last_ts, EXCLUDED.last_ts), events = events + EXCLUDED.events"
)

_CONVERSATIONS_SELECT = (
    "SELECT 'c:' || conversation_id AS conversation, coalesce(bot, '') AS bot, CAST(ts AS DATE) AS day, "
    "min(user_id) AS user_id, min(ts) AS first_ts, max(ts) AS last_ts, count(*) AS messages "
    "FROM {src} WHERE kind = 'message' AND conversation_id IS NOT NULL {and_where} GROUP BY ALL"
)
_CONVERSATIONS_MERGE = (
    " ON CONFLICT DO UPDATE SET user_id = coalesce(user_id, EXCLUDED.user_id), "
    "first_ts = least(first_ts, EXCLUDED.first_ts), last_ts = greatest(last_ts, EXCLUDED.last_ts), "
    "messages = messages + EXCLUDED.messages"
)


def session_gap(con: Any) -> int:
    """The session gap (seconds) the stored sessions were built with."""
    rows = con.execute("SELECT value FROM botmeter_meta WHERE key = 'session_gap_s'").fetchall()
    return int(rows[0][0]) if rows else DEFAULT_SESSION_GAP_S


# Below this many events a thread and a scratch connection cost more than the overlap saves.
PARTIALS_THREAD_MIN_ROWS = 20_000


class BatchPartials:
    """What a batch adds to the rollups that needs only the batch itself (the partial aggregates,
    its turn events sorted), worked out on a thread of its own while DuckDB inserts the events:
    both release the GIL, and the store's thread is what limits ingest.

    Only for a batch whose every event goes in (a fresh one): otherwise what is added is known only
    after the insert.
    """

    def __init__(self, table: pa.Table, scratch: Any) -> None:
        self._out: tuple[list[tuple[str, pa.Table, str]], Any] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._work, args=(table, scratch), name="botmeter-rollups", daemon=True
        )
        self._thread.start()

    def _work(self, table: pa.Table, scratch: Any) -> None:
        try:
            # ``scratch``: an in-memory connection, for hashes and JSON only, never the store's tables.
            self._out = (_partials(table), turns.rows_of(scratch, table))
        except BaseException as exc:  # raised again on the store's thread, inside its transaction
            self._error = exc

    def wait(self) -> None:
        self._thread.join()

    def result(self) -> tuple[list[tuple[str, pa.Table, str]], Any]:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._out is not None
        return self._out


def add(con: Any, src: str, gap_s: int, table: pa.Table, prepared: BatchPartials | None = None) -> None:
    """Adds the events just inserted into ``events`` (``table``, also registered as ``src``) to
    every rollup; ``prepared``: the same batch's partials, worked out while it was inserted.

    The per-batch grouping runs in Arrow (on one thread it grouped a 122,880-event batch in about
    a third of DuckDB's time over the same Arrow table, in one-off timing); DuckDB then merges
    the few thousand partial rows into the rollups.
    ``rebuild`` computes the same figures in SQL over all events; the tests hold the two equal.
    """
    if prepared is not None:
        partials, turn_rows = prepared.result()
    else:
        partials, turn_rows = _partials(table), turns.rows_of(con, table)
    for name, partial, merge in partials:
        con.register(name, partial)
        try:
            con.execute(merge)
        finally:
            con.unregister(name)
    _merge_sessions(con, src, gap_s)
    turns.merge(con, turn_rows)
    # Days that are over and touched by this batch (late events), and yesterday once today began.
    days = [
        row[0]
        for row in con.execute(
            f"SELECT DISTINCT CAST(ts AS DATE) FROM {src} WHERE kind IN ('timing', 'llm_call') "
            "AND latency_ms IS NOT NULL AND CAST(ts AS DATE) < $today",
            {"today": _today()},
        ).fetchall()
    ]
    refresh_latency_days(con, [*days, "yesterday"])


def _day_of(ts: pa.ChunkedArray) -> pa.ChunkedArray:
    return pc.cast(ts, pa.date32())


def _partials(t: pa.Table) -> list[tuple[str, pa.Table, str]]:
    """Per-batch partial aggregates and the SQL that merges each into its rollup."""
    ts, cost = t["ts"], t["cost_usd"]
    no_user, no_conv = pc.is_null(t["user_id"]), pc.is_null(t["conversation_id"])
    zero = pa.scalar(0.0)
    work = pa.table(
        {
            "hour": pc.floor_temporal(ts, unit="hour"),
            **{k: t[k] for k in HOURLY_KEYS},
            **{c: t[c] for c in _HOURLY_SUMS},
            "latency_ms": t["latency_ms"],
            "no_user_events": pc.cast(no_user, pa.int64()),
            "no_user_cost": pc.if_else(no_user, cost, zero),
            "no_conversation_events": pc.cast(no_conv, pa.int64()),
            "no_conversation_cost": pc.if_else(no_conv, cost, zero),
        }
    )
    hourly = work.group_by(["hour", *HOURLY_KEYS], use_threads=False).aggregate(
        [([], "count_all"), ("cost_usd", "count")]
        + [(c, "sum") for c in _HOURLY_SUMS]
        + [("latency_ms", "count"), ("latency_ms", "sum"), ("latency_ms", "max")]
        + [(c, "sum") for c in _NO_ID_COLUMNS]
    )
    hourly_sql = (
        "INSERT INTO rollup_hourly SELECT hour, "
        + ", ".join(f"coalesce({k}, '')" for k in HOURLY_KEYS)
        + ", count_all, cost_usd_count, "
        + ", ".join(f"coalesce({c}_sum, 0)" for c in _HOURLY_SUMS)
        + ", latency_ms_count, coalesce(latency_ms_sum, 0), latency_ms_max, "
        + ", ".join(f"coalesce({c}_sum, 0)" for c in _NO_ID_COLUMNS)
        + " FROM _bm_hourly"
        + _HOURLY_MERGE
    )
    day = _day_of(ts)
    is_message = pc.fill_null(pc.equal(t["kind"], "message"), False)
    inbound = pc.and_(pc.equal(t["kind"], "message"), pc.equal(t["direction"], "in"))
    inbound = pc.fill_null(inbound, False)
    users_in = pa.table(
        {
            "day": day,
            "bot": t["bot"],
            "user_id": t["user_id"],
            "inbound": pc.cast(inbound, pa.int64()),
            "ts_in": pc.if_else(inbound, ts, pa.scalar(None, ts.type)),
            "cost_usd": cost,
            "message": pc.cast(is_message, pa.int64()),
            "country": pc.if_else(is_message, t["country"], pa.scalar(None, t["country"].type)),
        }
    ).filter(pc.invert(no_user))
    users = users_in.group_by(["day", "bot", "user_id"], use_threads=False).aggregate(
        [
            ("inbound", "sum"),
            ("ts_in", "min"),
            ("ts_in", "max"),
            ([], "count_all"),
            ("cost_usd", "sum"),
            ("message", "sum"),
            ("country", "max"),
        ]
    )
    users_sql = (
        "INSERT INTO rollup_users SELECT day, coalesce(bot, ''), user_id, inbound_sum, ts_in_min, ts_in_max, "
        "count_all, coalesce(cost_usd_sum, 0), coalesce(message_sum, 0), country_max FROM _bm_users"
        + _USERS_MERGE
    )
    days = (
        pa.table({"day": day, "ts": ts})
        .group_by(["day"], use_threads=False)
        .aggregate([("ts", "min"), ("ts", "max"), ([], "count_all")])
    )
    days_sql = "INSERT INTO rollup_days SELECT day, ts_min, ts_max, count_all FROM _bm_days" + _DAYS_MERGE
    with_conv = pa.table(
        {"conversation_id": t["conversation_id"], "bot": t["bot"], "day": day, "cost_usd": cost}
    ).filter(pc.invert(no_conv))
    costs = with_conv.group_by(["conversation_id", "bot", "day"], use_threads=False).aggregate(
        [([], "count_all"), ("cost_usd", "sum")]
    )
    costs_sql = (
        "INSERT INTO rollup_conversation_costs SELECT conversation_id, coalesce(bot, ''), day, count_all, "
        "coalesce(cost_usd_sum, 0) FROM _bm_costs" + _CONVERSATION_COSTS_MERGE
    )
    messages = pc.and_(pc.equal(t["kind"], "message"), pc.invert(no_conv))
    conv = (
        pa.table(
            {
                "conversation_id": t["conversation_id"],
                "bot": t["bot"],
                "day": day,
                "user_id": t["user_id"],
                "ts": ts,
            }
        )
        .filter(pc.fill_null(messages, False))
        .group_by(["conversation_id", "bot", "day"], use_threads=False)
        .aggregate([("user_id", "min"), ("ts", "min"), ("ts", "max"), ([], "count_all")])
    )
    conv_rows = (
        "SELECT 'c:' || conversation_id AS conversation, coalesce(bot, '') AS bot, day, "
        "user_id_min AS user_id, ts_min AS first_ts, ts_max AS last_ts, count_all AS messages FROM _bm_conv"
    )
    conv_sql = f"INSERT INTO rollup_conversations {conv_rows}{_CONVERSATIONS_MERGE}"
    totals_sql = (
        "INSERT INTO rollup_conversation_totals SELECT conversation, bot, min(user_id), min(first_ts), "
        f"max(last_ts), sum(messages) FROM ({conv_rows}) GROUP BY conversation, bot{_CONVERSATIONS_MERGE}"
    )
    return [
        ("_bm_hourly", hourly, hourly_sql),
        ("_bm_users", users, users_sql),
        ("_bm_days", days, days_sql),
        ("_bm_costs", costs, costs_sql),
        ("_bm_conv", conv, conv_sql),
        ("_bm_conv", conv, totals_sql),
    ]


def _today() -> Any:
    # UTC, whatever the machine's or DuckDB's time zone.
    return datetime.now(UTC).date()


def refresh_latency_days(con: Any, days: list[Any] | None = None) -> None:
    """Recomputes the per-day percentiles of complete days that are missing or out of date.

    ``days`` limits the check (``"yesterday"`` stands for the day before today, UTC); None checks
    every day.
    """
    kinds = ", ".join(f"'{k}'" for k in LATENCY_KINDS)
    today = _today()
    params: dict[str, Any] = {"today": today, "since": date.min}
    only = ""
    if days is not None:
        # Every write checks: only the hours of the days named (and yesterday), not the history.
        concrete = [d for d in days if d != "yesterday"]
        if "yesterday" in days:
            concrete.append(today - timedelta(days=1))
        params.update(days=concrete, since=min(concrete))
        only = " AND h.d IN (SELECT unnest($days::DATE[]))"
    stale = con.execute(
        f"""
        SELECT h.d FROM (SELECT CAST(hour AS DATE) AS d, bot, kind, sum(latency_n) AS n FROM rollup_hourly
                         WHERE kind IN ({kinds}) AND hour >= CAST($since AS TIMESTAMP)
                           AND hour < CAST($today AS TIMESTAMP) GROUP BY ALL) AS h
        LEFT JOIN rollup_latency_days AS c
               ON c.day = h.d AND c.bot = h.bot AND c.dim = h.kind || ':' AND c.value = ''
        WHERE h.n > 0 AND c.n IS DISTINCT FROM h.n {only}
        GROUP BY h.d ORDER BY h.d
        """,
        params,
    ).fetchall()
    stale_days = [row[0] for row in stale]
    if not stale_days:
        return
    con.execute("DELETE FROM rollup_latency_days WHERE day IN (SELECT unnest($d::DATE[]))", {"d": stale_days})
    quantiles = ", ".join(str(q) for q in LATENCY_QUANTILES)
    selects = []
    for kind, dims in LATENCY_DIMS.items():
        for dim in dims:
            value = f"coalesce({dim}, '')" if dim else "''"
            selects.append(
                f"SELECT day, bot, '{kind}:{dim}' AS dim, {value} AS value, count(*), sum(l), max(l), "
                f"quantile_cont(l, [{quantiles}]) FROM lat WHERE kind = '{kind}' GROUP BY ALL"
            )
    columns = sorted({d for dims in LATENCY_DIMS.values() for d in dims if d})
    con.execute(
        "INSERT INTO rollup_latency_days WITH lat AS MATERIALIZED ("
        "SELECT CAST(ts AS DATE) AS day, coalesce(bot, '') AS bot, kind, latency_ms AS l, "
        + ", ".join(columns)
        + f" FROM events WHERE kind IN ({kinds}) AND latency_ms IS NOT NULL "
        "AND CAST(ts AS DATE) IN (SELECT unnest($d::DATE[]))) " + " UNION ALL ".join(selects),
        {"d": stale_days},
    )


def recompute_latency_days(con: Any) -> None:
    """Every day's latency percentiles again (a store whose rows pooled timings and LLM calls)."""
    con.execute("DELETE FROM rollup_latency_days")
    refresh_latency_days(con)


def add_user_messages(con: Any) -> None:
    """rollup_users gains each user's messages and country (a store from before): filled again."""
    con.execute("ALTER TABLE rollup_users ADD COLUMN IF NOT EXISTS messages BIGINT")
    con.execute("ALTER TABLE rollup_users ADD COLUMN IF NOT EXISTS country VARCHAR")
    con.execute("DELETE FROM rollup_users")
    con.execute(f"INSERT INTO rollup_users {_USERS_SELECT.format(src='events', and_where='')}")


def _merge_sessions(con: Any, src: str, gap_s: int) -> None:
    """Folds messages without a conversation id into their users' sessions (gap > ``gap_s`` splits)."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _bm_points AS SELECT coalesce(bot, '') AS bot, user_id, ts "
        f"FROM {src} WHERE kind = 'message' AND conversation_id IS NULL AND user_id IS NOT NULL"
    )
    if not con.execute("SELECT count(*) FROM _bm_points").fetchall()[0][0]:
        return
    gap = f"INTERVAL {int(gap_s)} SECOND"
    # Sessions of these users that a new message could join or bridge: within a gap of one. The
    # constant bound lets DuckDB skip old row groups (rows arrive roughly in time order), so this
    # stays cheap however long the history.
    lowest = con.execute(f"SELECT min(ts) - {gap} FROM _bm_points").fetchall()[0][0]
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _bm_old AS
        WITH span AS (SELECT bot, user_id, min(ts) - {gap} AS lo, max(ts) + {gap} AS hi
                      FROM _bm_points GROUP BY ALL)
        SELECT t.conversation, t.bot, t.user_id, t.first_ts, t.last_ts
        FROM rollup_conversation_totals AS t JOIN span AS s ON t.bot = s.bot AND t.user_id = s.user_id
        WHERE t.last_ts >= $lowest AND starts_with(t.conversation, 's:')
          AND t.last_ts >= s.lo AND t.first_ts <= s.hi
        """,
        {"lowest": lowest},
    )
    old_days = con.execute(
        "SELECT CAST(min(first_ts) AS DATE), CAST(max(last_ts) AS DATE) FROM _bm_old"
    ).fetchall()[0]
    days = {"dlo": old_days[0], "dhi": old_days[1]}
    # Interval merging: sorted by start, a piece opens a new session when it starts more than a
    # gap after everything before it ended.
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _bm_merged AS
        WITH pieces AS (
            SELECT bot, user_id, conversation, first_ts, last_ts FROM _bm_old
            UNION ALL
            SELECT bot, user_id, NULL, ts, ts FROM _bm_points
        ), flagged AS (
            SELECT *, CASE WHEN first_ts - max(last_ts) OVER (
                        PARTITION BY bot, user_id ORDER BY first_ts, last_ts
                        ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) <= {gap}
                      THEN 0 ELSE 1 END AS opens
            FROM pieces
        ), numbered AS (
            SELECT *, sum(opens) OVER (PARTITION BY bot, user_id ORDER BY first_ts, last_ts
                                       ROWS UNBOUNDED PRECEDING) AS n
            FROM flagged
        )
        SELECT *, 's:' || user_id || ':' || CAST(epoch_us(min(first_ts) OVER (PARTITION BY bot, user_id, n))
                                                AS VARCHAR) AS session
        FROM numbered
        """
    )
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE _bm_rows AS
        SELECT m.session AS conversation, c.bot, c.day, m.user_id, c.first_ts, c.last_ts, c.messages
        FROM rollup_conversations AS c JOIN _bm_merged AS m
             ON m.conversation IS NOT NULL AND c.conversation = m.conversation AND c.bot = m.bot
        WHERE c.day BETWEEN $dlo AND $dhi
        UNION ALL
        SELECT session, bot, CAST(first_ts AS DATE), user_id, first_ts, last_ts, 1
        FROM _bm_merged WHERE conversation IS NULL
        """,
        days,
    )
    con.execute(
        "DELETE FROM rollup_conversations AS c USING _bm_old AS o "
        "WHERE c.day BETWEEN $dlo AND $dhi AND c.conversation = o.conversation AND c.bot = o.bot",
        days,
    )
    con.execute(
        "DELETE FROM rollup_conversation_totals AS c USING _bm_old AS o "
        "WHERE c.last_ts >= $lowest AND c.conversation = o.conversation AND c.bot = o.bot",
        {"lowest": lowest},
    )
    con.execute(
        "INSERT INTO rollup_conversations SELECT conversation, bot, day, min(user_id), min(first_ts), "
        "max(last_ts), sum(messages) FROM _bm_rows GROUP BY conversation, bot, day"
    )
    con.execute(
        "INSERT INTO rollup_conversation_totals SELECT conversation, bot, min(user_id), min(first_ts), "
        "max(last_ts), sum(messages) FROM _bm_rows GROUP BY conversation, bot"
    )
    for table in ("_bm_points", "_bm_old", "_bm_merged", "_bm_rows"):
        con.execute(f"DROP TABLE IF EXISTS {table}")


def rebuild(con: Any, gap_s: int) -> None:
    """Recomputes every rollup from ``events`` (a migration, a changed session gap, a reprice)."""
    for table in (
        "rollup_hourly",
        "rollup_users",
        "rollup_conversations",
        "rollup_conversation_totals",
        "rollup_days",
        "rollup_latency_days",
        "rollup_conversation_costs",
    ):
        con.execute(f"DELETE FROM {table}")
    turns.rebuild(con)
    con.execute(f"INSERT INTO rollup_hourly {_HOURLY_SELECT.format(src='events', where='')}")
    con.execute(f"INSERT INTO rollup_users {_USERS_SELECT.format(src='events', and_where='')}")
    con.execute(f"INSERT INTO rollup_days {_DAYS_SELECT.format(src='events', where='')}")
    costs = _CONVERSATION_COSTS_SELECT.format(src="events", and_where="")
    con.execute(f"INSERT INTO rollup_conversation_costs {costs}")
    con.execute(
        f"INSERT INTO rollup_conversations {_CONVERSATIONS_SELECT.format(src='events', and_where='')}"
    )
    gap = f"INTERVAL {int(gap_s)} SECOND"
    # All sessions at once: the same rule as the incremental merge, over every message point.
    con.execute(
        f"""
        INSERT INTO rollup_conversations
        WITH points AS (
            SELECT coalesce(bot, '') AS bot, user_id, ts FROM events
            WHERE kind = 'message' AND conversation_id IS NULL AND user_id IS NOT NULL
        ), flagged AS (
            SELECT *, CASE WHEN ts - lag(ts) OVER (PARTITION BY bot, user_id ORDER BY ts) <= {gap}
                      THEN 0 ELSE 1 END AS opens
            FROM points
        ), numbered AS (
            SELECT *, sum(opens) OVER (PARTITION BY bot, user_id ORDER BY ts ROWS UNBOUNDED PRECEDING) AS n
            FROM flagged
        ), sessions AS (
            SELECT *, 's:' || user_id || ':' || CAST(epoch_us(min(ts) OVER (PARTITION BY bot, user_id, n))
                                                      AS VARCHAR) AS session
            FROM numbered
        )
        SELECT session, bot, CAST(ts AS DATE), min(user_id), min(ts), max(ts), count(*)
        FROM sessions GROUP BY session, bot, CAST(ts AS DATE)
        """
    )
    con.execute(
        "INSERT INTO rollup_conversation_totals SELECT conversation, bot, min(user_id), min(first_ts), "
        "max(last_ts), sum(messages) FROM rollup_conversations GROUP BY conversation, bot"
    )
    con.execute("INSERT OR REPLACE INTO botmeter_meta VALUES ('session_gap_s', ?)", [str(int(gap_s))])
    refresh_latency_days(con)


def rebuild_costs(con: Any, lo: Any, hi: Any) -> None:
    """Recomputes the cost-bearing rollups for the hours and days in [lo, hi] after a reprice."""
    con.execute(
        "DELETE FROM rollup_hourly WHERE hour BETWEEN date_trunc('hour', $lo::TIMESTAMP) AND $hi",
        {"lo": lo, "hi": hi},
    )
    con.execute(
        "INSERT INTO rollup_hourly "
        + _HOURLY_SELECT.format(
            src="events",
            where="WHERE ts >= date_trunc('hour', $lo::TIMESTAMP) "
            "AND ts < date_trunc('hour', $hi::TIMESTAMP) + INTERVAL 1 HOUR",
        ),
        {"lo": lo, "hi": hi},
    )
    # The per-day rollups that carry cost: their whole days in [lo, hi] again from the events.
    whole_days = (
        "AND ts >= CAST(CAST($lo::TIMESTAMP AS DATE) AS TIMESTAMP) "
        "AND ts < CAST(CAST($hi::TIMESTAMP AS DATE) AS TIMESTAMP) + INTERVAL 1 DAY"
    )
    for table, select in (
        ("rollup_users", _USERS_SELECT),
        ("rollup_conversation_costs", _CONVERSATION_COSTS_SELECT),
    ):
        con.execute(
            f"DELETE FROM {table} "
            "WHERE day BETWEEN CAST($lo::TIMESTAMP AS DATE) AND CAST($hi::TIMESTAMP AS DATE)",
            {"lo": lo, "hi": hi},
        )
        con.execute(
            f"INSERT INTO {table} " + select.format(src="events", and_where=whole_days), {"lo": lo, "hi": hi}
        )
