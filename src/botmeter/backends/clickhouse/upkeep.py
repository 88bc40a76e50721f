"""What the ClickHouse writer keeps itself after each insert: the figures a materialized view
cannot keep, because they depend on the order of events across inserts (see ``schema.py``).

* Sessions of messages without a conversation id: ``rollup_session_days`` and
  ``rollup_session_totals``, with the keys and the rule of the DuckDB store's sessions
  (``backends/duckdb/rollups.py``): a run of a user's messages with no gap longer than the session
  gap, keyed ``s:<user>:<start in microseconds>``. A write's messages are merged with the stored
  sessions of their users within a gap of them (interval merging, in numpy); the sessions they
  replace are written again marked ``deleted`` and the merged ones with a newer ``version``
  (``ReplacingMergeTree(version, deleted)``, read ``FINAL``).
* Exact latency percentiles per complete day: ``rollup_latency_days``, recomputed from the events
  for the days a write touches once they are over (and yesterday once today began), when the
  count kept differs from the hourly rollup's (``ReplacingMergeTree(updated)``: the newest wins).

Exactly once: only the events the insert stored are folded (the store leaves out ids it holds
already before inserting), and a batch once (the server drops a batch sent again by its insert
token, and ``upkeep_batches`` keeps the tokens folded). A reader trusts
the sessions only while their messages add up to what the view ``rollup_session_points`` counted
in the same inserts as the events (``ClickHouseDialect.session_gap``), and a day's percentiles only
while their count is the hourly rollup's; otherwise it reads the events. So a fold that was lost
(a batch stored whose answer never came, then spooled and found stored on replay) or two writers
folding one user's messages at once make a reader slower, never wrong; ``rebuild`` makes the
sessions whole again.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..duckdb.rollups import DEFAULT_SESSION_GAP_S, LATENCY_DIMS, LATENCY_KINDS, LATENCY_QUANTILES
from . import turns

_TS = pa.timestamp("us", tz="UTC")
# The messages split into sessions: a user, no conversation id.
_POINTS_WHERE = "kind = 'message' AND conversation_id IS NULL AND user_id IS NOT NULL"
# A statement listing a write's users or sessions may be longer than the default limit.
_LONG_QUERY = {"max_query_size": 64 * 1024 * 1024}


def session_gap(client: Any) -> int | None:
    """The gap (seconds) the stored sessions were built with; None before any were."""
    rows = client.query(
        "SELECT argMax(value, updated) FROM botmeter_meta WHERE key = 'session_gap_s' HAVING count() > 0"
    ).result_rows
    return int(rows[0][0]) if rows else None


def add_once(client: Any, batch: pa.Table, gap_s: int, token: str) -> None:
    """``add``, unless the batch of this insert token was folded already (sent again after its
    answer was lost: the server dropped the repeat)."""
    done = client.command(
        f"SELECT count() FROM upkeep_batches WHERE token IN {_listed([token])}"
    )
    if int(done or 0):
        return
    add(client, batch, gap_s)
    client.command(f"INSERT INTO upkeep_batches (token) VALUES {_listed([token])}")


def add(client: Any, batch: pa.Table, gap_s: int) -> None:
    """Folds the events just stored (``batch``) into the sessions, the turns and the per-day
    percentiles."""
    fold_sessions(client, batch, gap_s)
    turns.add(client, batch)
    kinds = pc.is_in(batch["kind"], value_set=pa.array(LATENCY_KINDS))
    timed = batch.filter(pc.and_(pc.fill_null(kinds, False), pc.is_valid(batch["latency_ms"])))
    today = _today()
    days = [d for d in pc.unique(pc.cast(timed["ts"], pa.date32())).to_pylist() if d < today]
    refresh_latency_days(client, [*days, today - timedelta(days=1)])


def _today() -> date:
    return datetime.now(UTC).date()


# -- sessions -------------------------------------------------------------------------------------


def fold_sessions(client: Any, batch: pa.Table, gap_s: int) -> None:
    """Merges the batch's messages without a conversation id into their users' sessions."""
    mask = pc.and_(
        pc.and_(pc.equal(batch["kind"], "message"), pc.is_null(batch["conversation_id"])),
        pc.is_valid(batch["user_id"]),
    )
    rows = batch.filter(pc.fill_null(mask, False))
    if rows.num_rows == 0:
        return
    gap_us = int(gap_s) * 1_000_000
    ts = pc.cast(pc.cast(rows["ts"], _TS), pa.int64()).to_numpy(zero_copy_only=False)
    points = pa.table(
        {
            "bot": pc.fill_null(rows["bot"], "").cast(pa.string()),
            "user_id": rows["user_id"].cast(pa.string()),
            "first": ts,
            "last": ts,
        }
    )
    spans = points.group_by(["bot", "user_id"], use_threads=False).aggregate(
        [("first", "min"), ("last", "max")]
    )
    old = _old_sessions(client, spans, gap_us)
    # Pieces: the stored sessions near the batch's messages, and each message alone.
    pieces = pa.concat_tables(
        [
            old.select(["bot", "user_id", "conversation", "first", "last"]),
            points.append_column("conversation", pa.nulls(points.num_rows, pa.string())).select(
                ["bot", "user_id", "conversation", "first", "last"]
            ),
        ]
    )
    keys = _session_keys(pieces, gap_us)
    pieces = pieces.append_column("session", keys)
    version = time.time_ns() // 1000 * 2  # newer than any earlier write's; deletions one below
    new_days = [
        # Each message, a day row of its own session, merged below.
        pa.table(
            {
                "bot": pieces["bot"],
                "conversation": pieces["session"],
                "day": pc.cast(pc.cast(pieces["first"], _TS), pa.date32()),
                "user_id": pieces["user_id"],
                "first": pieces["first"],
                "last": pieces["last"],
                "messages": pa.array(np.ones(pieces.num_rows, dtype=np.uint64)),
            }
        ).filter(pc.is_null(pieces["conversation"]))
    ]
    deletions_days: pa.Table | None = None
    if old.num_rows:
        renamed = pa.table(
            {"bot": old["bot"], "conversation": old["conversation"], "session": keys[: old.num_rows]}
        )
        days = _old_days(client, old)
        deletions_days = days
        moved = days.join(renamed, ["bot", "conversation"], join_type="inner", use_threads=False)
        new_days.append(
            pa.table(
                {
                    "bot": moved["bot"],
                    "conversation": moved["session"],
                    "day": moved["day"],
                    "user_id": moved["user_id"],
                    "first": moved["first"],
                    "last": moved["last"],
                    "messages": moved["messages"],
                }
            )
        )
    merged_days = (
        pa.concat_tables(new_days)
        .group_by(["bot", "conversation", "day"], use_threads=False)
        .aggregate([("user_id", "min"), ("first", "min"), ("last", "max"), ("messages", "sum")])
    )
    merged_totals = merged_days.group_by(["bot", "conversation"], use_threads=False).aggregate(
        [("user_id_min", "min"), ("first_min", "min"), ("last_max", "max"), ("messages_sum", "sum")]
    )
    if old.num_rows:
        _insert(client, "rollup_session_totals", _session_rows(old, version - 1, deleted=True))
        assert deletions_days is not None
        _insert(client, "rollup_session_days", _session_rows(deletions_days, version - 1, deleted=True))
    _insert(
        client,
        "rollup_session_days",
        _session_rows(
            pa.table(
                {
                    "bot": merged_days["bot"],
                    "day": merged_days["day"],
                    "conversation": merged_days["conversation"],
                    "user_id": merged_days["user_id_min"],
                    "first": merged_days["first_min"],
                    "last": merged_days["last_max"],
                    "messages": merged_days["messages_sum"],
                }
            ),
            version,
        ),
    )
    _insert(
        client,
        "rollup_session_totals",
        _session_rows(
            pa.table(
                {
                    "bot": merged_totals["bot"],
                    "conversation": merged_totals["conversation"],
                    "user_id": merged_totals["user_id_min_min"],
                    "first": merged_totals["first_min_min"],
                    "last": merged_totals["last_max_max"],
                    "messages": merged_totals["messages_sum_sum"],
                }
            ),
            version,
        ),
    )


def _old_sessions(client: Any, spans: pa.Table, gap_us: int) -> pa.Table:
    """The stored sessions of the batch's users that its messages could join or bridge: within a
    gap of one of them."""
    lo = pc.min(spans["first_min"]).as_py() - gap_us
    hi = pc.max(spans["last_max"]).as_py() + gap_us
    found = client.query_arrow(
        "SELECT bot, user_id, conversation, toUnixTimestamp64Micro(first_ts) AS first, "
        "toUnixTimestamp64Micro(last_ts) AS last FROM rollup_session_totals FINAL "
        f"WHERE last_ts >= fromUnixTimestamp64Micro(toInt64({int(lo)}), 'UTC') "
        f"AND first_ts <= fromUnixTimestamp64Micro(toInt64({int(hi)}), 'UTC') "
        f"AND user_id IN {_listed(pc.unique(spans['user_id']).to_pylist())}",
        settings=_LONG_QUERY,
    )
    found = pa.table(
        {
            "bot": _plain_text(found["bot"]),
            "user_id": _plain_text(found["user_id"]),
            "conversation": _plain_text(found["conversation"]),
            "first": pc.cast(found["first"], pa.int64()),
            "last": pc.cast(found["last"], pa.int64()),
        }
    )
    if not found.num_rows:
        return found
    near = found.join(spans, ["bot", "user_id"], join_type="inner", use_threads=False)
    keep = pc.and_(
        pc.greater_equal(near["last"], pc.subtract(near["first_min"], gap_us)),
        pc.less_equal(near["first"], pc.add(near["last_max"], gap_us)),
    )
    return near.filter(keep).select(["bot", "user_id", "conversation", "first", "last"])


def _old_days(client: Any, old: pa.Table) -> pa.Table:
    """The stored day rows of the sessions in ``old``."""
    epoch = date(1970, 1, 1)
    lo = epoch + timedelta(days=pc.min(old["first"]).as_py() // 86_400_000_000)
    hi = epoch + timedelta(days=pc.max(old["last"]).as_py() // 86_400_000_000)
    found = client.query_arrow(
        "SELECT bot, day, conversation, user_id, toUnixTimestamp64Micro(first_ts) AS first, "
        "toUnixTimestamp64Micro(last_ts) AS last, messages FROM rollup_session_days FINAL "
        f"WHERE day BETWEEN '{lo}' AND '{hi}' "
        f"AND conversation IN {_listed(old['conversation'].to_pylist())}",
        settings=_LONG_QUERY,
    )
    days = pa.table(
        {
            "bot": _plain_text(found["bot"]),
            "day": pc.cast(found["day"], pa.date32()),
            "conversation": _plain_text(found["conversation"]),
            "user_id": _plain_text(found["user_id"]),
            "first": pc.cast(found["first"], pa.int64()),
            "last": pc.cast(found["last"], pa.int64()),
            "messages": pc.cast(found["messages"], pa.uint64()),
        }
    )
    # A key is one bot's: keep the rows of the sessions asked for, bot and all.
    return days.join(
        old.select(["bot", "conversation"]), ["bot", "conversation"], join_type="inner", use_threads=False
    )


def _session_keys(pieces: pa.Table, gap_us: int) -> pa.ChunkedArray:
    """Each piece's session after merging: sorted by start (then end) within its bot and user, a
    piece opens a session when it starts more than a gap after everything before it ended (the
    DuckDB store's rule). The key is ``s:<user>:<the session's first message, microseconds>``."""
    n = pieces.num_rows
    who = pc.binary_join_element_wise(pieces["bot"], pieces["user_id"], "\x00")
    group, _ = _codes(who)
    first = pieces["first"].to_numpy()
    last = pieces["last"].to_numpy()
    order = np.lexsort((last, first, group))
    g, f, la = group[order], first[order], last[order]
    starts = np.empty(n, dtype=bool)
    starts[0] = True
    np.not_equal(g[1:], g[:-1], out=starts[1:])
    # The latest end so far within each group: ends ranked, offset by group so that one group's
    # running maximum never reaches into the next.
    ends, rank = np.unique(la, return_inverse=True)
    running = np.maximum.accumulate(g.astype(np.int64) * len(ends) + rank) - g.astype(np.int64) * len(ends)
    before = np.empty(n, dtype=np.int64)
    before[1:] = ends[running[:-1]]
    opens = starts | (f - before > gap_us)
    number = np.cumsum(opens) - 1
    session_start = f[opens][number]
    keys = pc.binary_join_element_wise(
        "s:",
        pieces["user_id"].take(pa.array(order)),
        ":",
        pa.array(session_start).cast(pa.string()),
        "",
    )
    out = keys.take(pa.array(np.argsort(order)))
    return out if isinstance(out, pa.ChunkedArray) else pa.chunked_array([out])


def _codes(a: Any) -> tuple[np.ndarray, pa.Array]:
    encoded = pc.dictionary_encode(a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a)
    return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64), encoded.dictionary


def _listed(values: list[Any]) -> str:
    """Texts or dates as a literal list in the statement (bound parameters are spelt and sent
    differently over HTTP and to the embedded engine; these are the writer's own values)."""
    quoted = ("'" + str(v).replace("\\", "\\\\").replace("'", "\\'") + "'" for v in values)
    return "(" + ", ".join(quoted) + ")" if values else "(NULL)"


def _plain_text(column: Any) -> Any:
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    return column.cast(pa.string())


def _session_rows(rows: pa.Table, version: int, deleted: bool = False) -> pa.Table:
    columns: dict[str, Any] = {"bot": rows["bot"]}
    if "day" in rows.column_names:
        columns["day"] = rows["day"]
    columns.update(
        conversation=rows["conversation"],
        user_id=rows["user_id"],
        first_ts=pc.cast(pc.cast(rows["first"], pa.int64()), _TS),
        last_ts=pc.cast(pc.cast(rows["last"], pa.int64()), _TS),
        messages=pc.cast(rows["messages"], pa.uint64())
        if "messages" in rows.column_names
        else pa.array(np.zeros(rows.num_rows, dtype=np.uint64)),
        version=pa.array(np.full(rows.num_rows, version, dtype=np.uint64)),
        deleted=pa.array(np.full(rows.num_rows, int(deleted), dtype=np.uint8)),
    )
    return pa.table(columns)


def _insert(client: Any, table: str, rows: pa.Table) -> None:
    if rows.num_rows:
        client.insert_arrow(table, rows)


def rebuild_sessions(client: Any, gap_s: int) -> None:
    """Every session again from the events, at ``gap_s``."""
    gap_us = int(gap_s) * 1_000_000
    client.command("TRUNCATE TABLE IF EXISTS rollup_session_days")
    client.command("TRUNCATE TABLE IF EXISTS rollup_session_totals")
    # Each user's messages sorted as one array; the gaps longer than the session gap open sessions.
    client.command(
        f"""
        INSERT INTO rollup_session_days (bot, day, conversation, user_id, first_ts, last_ts, messages,
                                         version, deleted)
        SELECT bot, toDate(m) AS day,
               concat('s:', user, ':', toString(toUnixTimestamp64Micro(starts[n]))) AS conversation,
               any(user), min(m), max(m), count(), 0, 0
        FROM (
            SELECT bot, user, arraySort(groupArray(ts)) AS ms,
                   arrayDifference(arrayMap(x -> toUnixTimestamp64Micro(x), ms)) AS gaps,
                   arrayMap((g, i) -> toUInt8(i = 1 OR g > {gap_us}), gaps, arrayEnumerate(gaps)) AS opens,
                   arrayCumSum(opens) AS ns, arrayFilter((t, o) -> o = 1, ms, opens) AS starts
            FROM (SELECT coalesce(bot, '') AS bot, assumeNotNull(user_id) AS user, ts FROM events
                  WHERE {_POINTS_WHERE})
            GROUP BY bot, user
        ) ARRAY JOIN ms AS m, ns AS n
        GROUP BY bot, day, conversation
        """
    )
    client.command(
        "INSERT INTO rollup_session_totals (bot, conversation, user_id, first_ts, last_ts, messages, "
        "version, deleted) SELECT bot, conversation, min(user_id), min(first_ts), max(last_ts), "
        "sum(messages), 0, 0 FROM rollup_session_days FINAL GROUP BY bot, conversation"
    )
    client.command(f"INSERT INTO botmeter_meta (key, value) VALUES ('session_gap_s', '{int(gap_s)}')")


def rebuild(client: Any, gap_s: int | None = None) -> None:
    """Everything the writer keeps, again from the events (a migration, another session gap)."""
    client.command("TRUNCATE TABLE IF EXISTS rollup_session_points")
    client.command(
        "INSERT INTO rollup_session_points SELECT toDate(ts) AS day, count() FROM events "
        f"WHERE {_POINTS_WHERE} GROUP BY day"
    )
    if gap_s is None:
        gap_s = session_gap(client) or DEFAULT_SESSION_GAP_S
    rebuild_sessions(client, gap_s)
    turns.rebuild(client)
    refresh_latency_days(client, None)


# -- latency percentiles per day ------------------------------------------------------------------


def refresh_latency_days(client: Any, days: list[date] | None) -> None:
    """Recomputes the percentiles of the complete days in ``days`` (None: every day) whose kept
    count differs from the hourly rollup's."""
    kinds = ", ".join(f"'{k}'" for k in LATENCY_KINDS)
    today = _today()
    only = ""
    if days is not None:
        days = sorted(set(days))
        if not days:
            return
        only = f" AND d IN {_listed(days)}"
    stale = client.query(
        f"""
        SELECT h.d FROM (SELECT toDate(hour) AS d, bot, kind, sum(latency_n) AS n FROM rollup_hourly
                         WHERE kind IN ({kinds}) AND toDate(hour) < '{today}' {only}
                         GROUP BY d, bot, kind HAVING n > 0) AS h
        LEFT JOIN (SELECT day, bot, dim, n FROM rollup_latency_days FINAL WHERE value = '') AS c
               ON c.day = h.d AND c.bot = h.bot AND c.dim = concat(h.kind, ':')
        WHERE c.n IS NULL OR c.n != h.n
        GROUP BY h.d ORDER BY h.d
        """,
        settings={"join_use_nulls": 1},
    ).result_rows
    stale_days = [row[0] for row in stale]
    if not stale_days:
        return
    quantiles = ", ".join(repr(float(q)) for q in LATENCY_QUANTILES)
    # Every event once, in a row per dimension of its kind ('' overall): one read for all.
    pairs = {
        kind: "["
        + ", ".join(f"('{d}', toString(coalesce({d}, '')))" if d else "('', '')" for d in dims)
        + "]"
        for kind, dims in LATENCY_DIMS.items()
    }
    per_kind = "multiIf(" + ", ".join(f"kind = '{k}', {v}" for k, v in pairs.items()) + ", [])"
    client.command(
        f"""
        INSERT INTO rollup_latency_days (day, bot, dim, value, n, latency_sum, latency_max, q)
        SELECT toDate(ts) AS day, coalesce(bot, '') AS bot, concat(kind, ':', pick.1) AS dim, pick.2 AS value,
               count(), sum(latency_ms), max(latency_ms), quantilesExactInclusive({quantiles})(latency_ms)
        FROM events ARRAY JOIN {per_kind} AS pick
        WHERE kind IN ({kinds}) AND latency_ms IS NOT NULL
          AND ts >= toDateTime64(toDate('{stale_days[0]}'), 6, 'UTC')
          AND ts < toDateTime64(toDate('{stale_days[-1]}'), 6, 'UTC') + INTERVAL 1 DAY
          AND toDate(ts) IN {_listed(stale_days)}
        GROUP BY day, bot, dim, value
        """,
    )
