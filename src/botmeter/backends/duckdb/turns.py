"""The turn rollup behind failed replies, kept beside the events in the DuckDB file.

A turn is an inbound message and what follows it in its conversation (the conversation id, else the
user) until the next inbound message, in time order with an inbound message first among equal
times (and, among inbound messages at the same time, the one with the greater channel last, so
the events of that time belong to it). Its reply failed when the turn holds an error or an
outbound message marked failed and no outbound message that is not marked failed.

Only what a figure can still change for is kept:

* ``rollup_turn_heads``: per conversation, its latest turn (start, channel, last event, ``bad``
  and ``answered``), or, before its first inbound message, its events so far at ``NO_TURN``. New
  events join it; a new inbound message closes it.
* ``rollup_turns``: the closed turns without a good reply (start, channel, the next turn's start,
  ``bad``). A closed turn with a good reply never fails again, and a late event other than an
  inbound message lands either in one of these (found by time: the reply takes it out, an error
  makes it bad) or in one that cannot change: no conversation is read again for it.

Failed replies are the bad rows of ``rollup_turns`` and the heads that are bad and not answered.
A write folds its events into their conversations in Arrow and numpy (sorted by conversation and
time, one pass); a conversation that gets an inbound message inside its stored turns (or two at
one time) is recomputed from the events, from its last inbound message before this write's
events on. ``rebuild`` computes the same rows in SQL from every event; the tests hold the two
equal.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# No primary key: rows are few (turns nobody answered) and found by conversation and time.
TURNS_DDL = (
    "CREATE TABLE IF NOT EXISTS rollup_turns (bot VARCHAR NOT NULL, key UBIGINT NOT NULL, "
    "ts TIMESTAMP NOT NULL, channel VARCHAR, next_ts TIMESTAMP NOT NULL, bad BOOLEAN NOT NULL)"
)
HEADS_DDL = (
    "CREATE TABLE IF NOT EXISTS rollup_turn_heads (bot VARCHAR NOT NULL, key UBIGINT NOT NULL, "
    "ts TIMESTAMP NOT NULL, channel VARCHAR, last_ts TIMESTAMP NOT NULL, bad BOOLEAN NOT NULL, "
    "answered BOOLEAN NOT NULL, PRIMARY KEY (bot, key))"
)

# A reply the bot marks as failed: properties {"failed": true} on an outbound message.
MARKED_FAILED = (
    "(properties IS NOT NULL AND contains(CAST(properties AS VARCHAR), 'failed') "
    "AND properties->>'$.failed' = 'true')"
)
# The conversation of a turn, as a 64-bit hash of its id (or its user's): turns must stay small.
TURN_KEY = "hash(coalesce('c:' || conversation_id, 'u:' || user_id))"
# The columns of an event's part in a turn (over a relation of events).
TURN_EVENT = (
    f"coalesce(bot, '') AS bot, {TURN_KEY} AS key, ts, channel, "
    "coalesce(kind = 'message' AND direction = 'in', false) AS inbound, "
    "coalesce(kind = 'error' OR (kind = 'message' AND direction = 'out' "
    f"AND {MARKED_FAILED}), false) AS bad, "
    f"coalesce(kind = 'message' AND direction = 'out' AND NOT {MARKED_FAILED}, false) AS answered"
)
TURN_EVENT_WHERE = "kind IN ('message', 'error') AND (conversation_id IS NOT NULL OR user_id IS NOT NULL)"
NO_TURN = "TIMESTAMP '0001-01-01'"
_NO_TURN_US = int((datetime(1, 1, 1) - datetime(1970, 1, 1)) / timedelta(microseconds=1))
# The order of a conversation's events (see the module's docstring).
_ORDER = "ts, inbound DESC, channel NULLS FIRST"
# Turns from events: {src} holds TURN_EVENT rows; events before a conversation's first inbound
# message (turn 0) at NO_TURN. ``latest``: the conversation's last turn in {src}.
_TURNS = (
    """
    SELECT bot, key, CASE WHEN turn = 0 THEN """
    + NO_TURN
    + """ ELSE min(ts) FILTER (WHERE inbound) END AS ts,
           any_value(channel) FILTER (WHERE inbound) AS channel, max(ts) AS last_ts, bool_or(bad) AS bad,
           bool_or(answered) AS answered, turn = max(turn) OVER (PARTITION BY bot, key) AS latest,
           lead(min(ts) FILTER (WHERE inbound)) OVER (PARTITION BY bot, key ORDER BY turn) AS next_ts
    FROM (SELECT *, sum(CAST(inbound AS INTEGER)) OVER (
              PARTITION BY bot, key ORDER BY """
    + _ORDER
    + """ ROWS UNBOUNDED PRECEDING) AS turn
          FROM {src})
    GROUP BY bot, key, turn
"""
)
# The same without ``latest`` (bot, key, ts, channel, last_ts, bad, answered): for reading.
TURNS_FROM_EVENTS = f"SELECT * EXCLUDE (latest, next_ts) FROM ({_TURNS})"


def rebuild(con: Any) -> None:
    """Every turn again from the events (a migration, a rebuild)."""
    con.execute(TURNS_DDL)
    con.execute(HEADS_DDL)
    con.execute("DELETE FROM rollup_turns")
    con.execute("DELETE FROM rollup_turn_heads")
    _store_turns(con, f"(SELECT {TURN_EVENT} FROM events WHERE {TURN_EVENT_WHERE})")


def _store_turns(con: Any, src: str, params: Any = None) -> None:
    """Stores the turns of the conversations in ``src`` (TURN_EVENT rows): each one's latest as its
    head, the closed ones that failed."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE _bm_turns AS {_TURNS.format(src=src)}", params)
    try:
        con.execute(
            "INSERT INTO rollup_turns SELECT bot, key, ts, channel, next_ts, bad FROM _bm_turns "
            f"WHERE NOT latest AND NOT answered AND ts > {NO_TURN}"
        )
        con.execute(
            "INSERT INTO rollup_turn_heads SELECT bot, key, ts, channel, last_ts, bad, answered "
            "FROM _bm_turns WHERE latest"
        )
    finally:
        con.execute("DROP TABLE IF EXISTS _bm_turns")


def merge(con: Any, rows: _Rows | None) -> None:
    """Adds the events just written (their ``rows``, from ``rows_of``) to their conversations' turns."""
    if rows is None:
        return
    heads = _heads(con, rows)
    # An inbound message at or before a stored head's last event splits a stored turn, and two
    # inbound messages here at one time are ordered by channel: those conversations are
    # recomputed from the events.
    late = (heads.found & (rows.first_in_ts <= heads.last_ts)) | rows.tied
    fast_row = ~late[rows.g]
    # Other events before their conversation's stored head land in closed turns.
    old = fast_row & (rows.ts < heads.ts[rows.g])
    if old.any():
        _settle(con, rows, old)
    _fold(con, rows, heads, fast_row & ~old)
    if late.any():
        _recompute(con, rows, heads, np.flatnonzero(late))


class _Rows:
    """A write's turn events sorted by conversation, time and inbound message first, with the
    conversations (``groups``) they belong to."""

    n: int
    groups: int
    bots: pa.Array  # per conversation
    keys: np.ndarray
    first_ts: np.ndarray  # per conversation: its first event here (microseconds)
    first_in_ts: np.ndarray  # its first inbound message here (max int64 if none)
    tied: np.ndarray  # two of its inbound messages here share a time
    # Per event, sorted:
    g: np.ndarray
    ts: np.ndarray
    inbound: np.ndarray
    bad: np.ndarray
    answered: np.ndarray
    position: np.ndarray  # the event's row in the write
    channels: pa.ChunkedArray  # the write's channel column


def rows_of(con: Any, t: pa.Table) -> _Rows | None:
    """The turn events of a write, sorted. ``con`` only computes (hashes, JSON): any connection,
    not necessarily the store's, so this can run beside the write."""
    kind, conv, user = t["kind"], t["conversation_id"], t["user_id"]
    keep = _np_bool(
        pc.and_(
            pc.is_in(kind, value_set=pa.array(["message", "error"])),
            pc.or_(pc.is_valid(conv), pc.is_valid(user)),
        )
    )
    rows = np.flatnonzero(keep)  # positions in ``t``: no column but the few needed is copied
    n = len(rows)
    if n == 0:
        return None
    message = pc.equal(kind, "message")
    inbound = _np_bool(pc.and_(message, pc.equal(t["direction"], "in")))[rows]
    out_all = _np_bool(pc.and_(message, pc.equal(t["direction"], "out")))
    marked = _marked_failed(con, t, out_all & keep)[rows]
    outbound = out_all[rows]
    bad = _np_bool(pc.equal(kind, "error"))[rows] | (outbound & marked)
    answered = outbound & ~marked
    ts = _np_us(t["ts"])[rows]
    # Conversation ids and user ids apart ('c:' and 'u:' never meet), per bot: small dictionaries,
    # hashed once each by DuckDB's hash (the one rebuild and the reader use).
    conv_idx, conv_dict = _codes(conv)
    conv_idx = conv_idx[rows]
    if (conv_idx < 0).any():
        user_idx, user_dict = _codes(user)
        code = np.where(conv_idx >= 0, conv_idx, len(conv_dict) + user_idx[rows])
    else:
        user_dict, code = pa.array([], pa.string()), conv_idx
    names = pa.concat_arrays(
        [
            pc.binary_join_element_wise("c:", conv_dict.cast(pa.string()), ""),
            pc.binary_join_element_wise("u:", user_dict.cast(pa.string()), ""),
        ]
    )
    bots = t["bot"]
    if bots.null_count == len(bots) or (bots.null_count == 0 and pc.all(pc.equal(bots, bots[0])).as_py()):
        bot_dict = pa.array([bots[0].as_py() or ""])
    else:
        bot_idx, bot_dict = _codes(pc.fill_null(bots, ""))
        code = bot_idx[rows] * len(names) + code
    # Conversations numbered 0.. in order of their codes (a table, not a sort).
    used = np.zeros(len(names) * len(bot_dict), dtype=bool)
    used[code] = True
    uniq = np.flatnonzero(used)
    number = np.zeros(len(used), dtype=np.int64)
    number[uniq] = np.arange(len(uniq))
    group = number[code]
    groups = len(uniq)
    r = _Rows()
    r.n, r.groups = n, groups
    r.bots = bot_dict.take(pa.array(uniq // len(names)))
    r.keys = _hashes(con, names.take(pa.array(uniq % len(names))))
    # By time, inbound first (rows come nearly in time order: cheap), then stably by conversation
    # (a radix sort when the numbers fit 16 bits).
    order = np.argsort((ts << 1) | (~inbound).astype(np.int64), kind="stable")
    if groups <= 1 << 16:
        order = order[np.argsort(group[order].astype(np.uint16), kind="stable")]
    else:
        order = order[np.argsort(group[order], kind="stable")]
    r.g, r.ts, r.inbound = group[order], ts[order], inbound[order]
    r.bad, r.answered = bad[order], answered[order]
    r.position = rows[order]
    r.channels = t["channel"]
    starts = np.empty(n, dtype=bool)
    starts[0] = True
    np.not_equal(r.g[1:], r.g[:-1], out=starts[1:])
    r.first_ts = r.ts[starts]
    same = ~starts[1:] & (r.ts[1:] == r.ts[:-1]) & r.inbound[1:] & r.inbound[:-1]
    r.tied = np.zeros(groups, dtype=bool)
    r.tied[r.g[1:][same]] = True
    r.first_in_ts = np.full(groups, np.iinfo(np.int64).max, dtype=np.int64)
    in_rows = np.flatnonzero(r.inbound)[::-1]  # the first of each conversation written last
    r.first_in_ts[r.g[in_rows]] = r.ts[in_rows]
    return r


def _np_bool(a: Any) -> np.ndarray:
    return pc.fill_null(a, False).to_numpy(zero_copy_only=False)


def _np_us(a: Any) -> np.ndarray:
    return pc.cast(a, pa.int64()).to_numpy(zero_copy_only=False)


def _codes(a: Any) -> tuple[np.ndarray, pa.Array]:
    """Dictionary codes of a column (-1 for null) and its dictionary."""
    encoded = pc.dictionary_encode(a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a)
    codes = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    return codes, encoded.dictionary


def _hashes(con: Any, names: pa.Array) -> np.ndarray:
    con.register("_bm_turn_names", pa.table({"name": names}))
    try:
        rows = con.sql("SELECT hash(name) FROM _bm_turn_names").to_arrow_table()
    finally:
        con.unregister("_bm_turn_names")
    return rows.column(0).to_numpy().astype(np.uint64)


def _marked_failed(con: Any, t: pa.Table, outbound: np.ndarray) -> np.ndarray:
    """Outbound messages marked failed, by MARKED_FAILED itself on the few that can be."""
    marked = np.zeros(t.num_rows, dtype=bool)
    props = t["properties"]
    maybe = outbound & _np_bool(pc.match_substring(props, "failed"))
    rows = np.flatnonzero(maybe)
    if len(rows):
        con.register("_bm_turn_props", pa.table({"properties": props.take(pa.array(rows))}))
        try:
            flags = con.sql(f"SELECT coalesce({MARKED_FAILED}, false) FROM _bm_turn_props").to_arrow_table()
        finally:
            con.unregister("_bm_turn_props")
        marked[rows] = flags.column(0).to_numpy(zero_copy_only=False)
    return marked


class _Heads:
    found: np.ndarray
    ts: np.ndarray
    channel: pa.Array
    last_ts: np.ndarray
    bad: np.ndarray
    answered: np.ndarray


def _heads(con: Any, b: _Rows) -> _Heads:
    """The stored heads of the write's conversations, by conversation."""
    con.register(
        "_bm_turn_keys",
        pa.table({"i": pa.array(np.arange(b.groups)), "bot": b.bots, "key": pa.array(b.keys, pa.uint64())}),
    )
    try:
        rows = con.sql(
            "SELECT k.i, h.ts, h.channel, h.last_ts, h.bad, h.answered FROM _bm_turn_keys AS k "
            "JOIN rollup_turn_heads AS h ON h.bot = k.bot AND h.key = k.key"
        ).to_arrow_table()
    finally:
        con.unregister("_bm_turn_keys")
    h = _Heads()
    at = rows.column(0).to_numpy()
    h.found = np.zeros(b.groups, dtype=bool)
    h.found[at] = True
    h.ts = np.full(b.groups, _NO_TURN_US, dtype=np.int64)
    h.ts[at] = _np_us(rows.column(1))
    h.last_ts = np.full(b.groups, np.iinfo(np.int64).min, dtype=np.int64)
    h.last_ts[at] = _np_us(rows.column(3))
    h.bad = np.zeros(b.groups, dtype=bool)
    h.bad[at] = _np_bool(rows.column(4))
    h.answered = np.zeros(b.groups, dtype=bool)
    h.answered[at] = _np_bool(rows.column(5))
    position = np.full(b.groups, -1, dtype=np.int64)
    position[at] = np.arange(len(at))
    channels = rows.column(2).combine_chunks() if rows.num_rows else pa.array([], pa.string())
    h.channel = channels.take(pa.array(position, mask=position < 0))
    return h


def _fold(con: Any, r: _Rows, h: _Heads, keep: np.ndarray) -> None:
    """The events in ``keep`` (after their stored head's start): those before their conversation's
    first inbound message here join its stored head; each inbound message here starts a turn; the
    last is the new head; the turns closed here are stored when nobody answered them."""
    rows = np.flatnonzero(keep)
    if not len(rows):
        return
    g, ts, inbound = r.g[rows], r.ts[rows], r.inbound[rows]
    start = np.empty(len(rows), dtype=bool)
    start[0] = True
    np.not_equal(g[1:], g[:-1], out=start[1:])
    seg_start = np.flatnonzero(start | inbound)
    seg_end = np.append(seg_start[1:], len(rows))
    group, real = g[seg_start], inbound[seg_start]
    seg_ts, seg_last = ts[seg_start], ts[seg_end - 1]
    seg_bad = np.logical_or.reduceat(r.bad[rows], seg_start)
    seg_answered = np.logical_or.reduceat(r.answered[rows], seg_start)
    seg_channel = r.channels.take(pa.array(r.position[rows[seg_start]])).combine_chunks()
    latest = np.ones(len(seg_start), dtype=bool)
    latest[:-1] = group[1:] != group[:-1]
    # The part before the first inbound message here, folded into the stored head (or a new one
    # at NO_TURN).
    pre = ~real
    head_last, head_bad, head_answered = h.last_ts.copy(), h.bad.copy(), h.answered.copy()
    head_last[group[pre]] = np.maximum(head_last[group[pre]], seg_last[pre])
    head_bad[group[pre]] |= seg_bad[pre]
    head_answered[group[pre]] |= seg_answered[pre]
    lat = np.flatnonzero(latest)
    lat_group, lat_real = group[lat], real[lat]
    heads = pa.table(
        {
            "bot": r.bots.take(pa.array(lat_group)),
            "key": pa.array(r.keys[lat_group], pa.uint64()),
            "ts": _ts_array(np.where(lat_real, seg_ts[lat], h.ts[lat_group])),
            "channel": pc.if_else(
                pa.array(lat_real), seg_channel.take(pa.array(lat)), h.channel.take(pa.array(lat_group))
            ),
            "last_ts": _ts_array(np.where(lat_real, seg_last[lat], head_last[lat_group])),
            "bad": pa.array(np.where(lat_real, seg_bad[lat], head_bad[lat_group])),
            "answered": pa.array(np.where(lat_real, seg_answered[lat], head_answered[lat_group])),
        }
    )
    _insert(con, "INSERT OR REPLACE INTO rollup_turn_heads", heads)
    # Closed here: the stored heads (real turns) of conversations with an inbound message here,
    # ended by the first of them, and every turn here but the latest, ended by the next.
    first_real = np.flatnonzero(real & ~np.append(False, (group[1:] == group[:-1]) & real[:-1]))
    closes = group[first_real]
    closes_at = seg_ts[first_real]
    keep_head = h.found[closes] & (h.ts[closes] > _NO_TURN_US) & ~head_answered[closes]
    closes, closes_at = closes[keep_head], closes_at[keep_head]
    inner = np.flatnonzero(real & ~latest & ~seg_answered)
    if not len(closes) and not len(inner):
        return
    closed = pa.table(
        {
            "bot": pa.concat_arrays([r.bots.take(pa.array(closes)), r.bots.take(pa.array(group[inner]))]),
            "key": pa.array(np.concatenate([r.keys[closes], r.keys[group[inner]]]), pa.uint64()),
            "ts": _ts_array(np.concatenate([h.ts[closes], seg_ts[inner]])),
            "channel": pa.concat_arrays(
                [h.channel.take(pa.array(closes)), seg_channel.take(pa.array(inner))]
            ),
            "next_ts": _ts_array(np.concatenate([closes_at, seg_ts[inner + 1]])),
            "bad": pa.array(np.concatenate([head_bad[closes], seg_bad[inner]])),
        }
    )
    _insert(con, "INSERT INTO rollup_turns", closed)


def _insert(con: Any, into: str, rows: pa.Table) -> None:
    con.register("_bm_turn_rows", rows)
    try:
        con.execute(f"{into} SELECT * FROM _bm_turn_rows")
    finally:
        con.unregister("_bm_turn_rows")


def _settle(con: Any, r: _Rows, old: np.ndarray) -> None:
    """Events (no inbound message) before their conversation's stored head: each lands in the
    closed turn that began last before it. One without a good reply is in ``rollup_turns``: a
    good reply takes it out, an error makes it bad. One with a good reply, or the time before a
    conversation's first inbound message, no event changes."""
    rows = np.flatnonzero(old & (r.bad | r.answered))
    if not len(rows):
        return
    con.register(
        "_bm_turn_old",
        pa.table(
            {
                "bot": r.bots.take(pa.array(r.g[rows])),
                "key": pa.array(r.keys[r.g[rows]], pa.uint64()),
                "ts": _ts_array(r.ts[rows]),
                "answered": pa.array(r.answered[rows]),
            }
        ),
    )
    try:
        hi = {"hi": datetime(1970, 1, 1) + timedelta(microseconds=int(r.ts[rows].max()))}
        match = "t.bot = o.bot AND t.key = o.key AND t.ts <= o.ts AND o.ts < t.next_ts AND t.ts <= $hi"
        if r.answered[rows].any():
            con.execute(
                "DELETE FROM rollup_turns AS t USING (SELECT * FROM _bm_turn_old WHERE answered) AS o "
                f"WHERE {match}",
                hi,
            )
        if not r.answered[rows].all():
            con.execute(
                "UPDATE rollup_turns AS t SET bad = true "
                "FROM (SELECT * FROM _bm_turn_old WHERE NOT answered) AS o "
                f"WHERE {match} AND NOT t.bad",
                hi,
            )
    finally:
        con.unregister("_bm_turn_old")


def _ts_array(us: np.ndarray) -> pa.Array:
    return pa.array(us.astype(np.int64), pa.int64()).cast(pa.timestamp("us"))


# How far back a late event's conversation is searched for its last inbound message before it,
# in turn; then everywhere.
_SEARCH = (timedelta(days=1), timedelta(days=31), None)


def _recompute(con: Any, b: _Rows, h: _Heads, late: np.ndarray) -> None:
    """The conversations in ``late`` from their last inbound message before this write's first
    event of theirs (or their stored head, if earlier) on, again from the events."""
    lo = b.first_ts[late]
    # Where to start: the stored head when the events here begin after it (ties, an inbound message
    # at its last event's time); before it, the last inbound message before them, found in the
    # events; without one, every event of the conversation (from NO_TURN).
    since = np.where(h.ts[late] <= lo, h.ts[late], _NO_TURN_US)
    since = np.where(h.found[late], since, lo)  # nothing stored: the events here are all there is
    search = h.found[late] & (h.ts[late] > lo) & (h.ts[late] > _NO_TURN_US)
    keys = pa.table(
        {
            "bot": b.bots.take(pa.array(late)),
            "key": pa.array(b.keys[late], pa.uint64()),
            "lo": _ts_array(lo),
            "since": _ts_array(since),
            "search": pa.array(search),
        }
    )
    con.register("_bm_turn_late", keys)
    try:
        con.execute("CREATE OR REPLACE TEMP TABLE _bm_late AS SELECT * FROM _bm_turn_late")
    finally:
        con.unregister("_bm_turn_late")
    try:
        if search.any():
            _find_starts(
                con,
                datetime(1970, 1, 1) + timedelta(microseconds=int(lo[search].min())),
                datetime(1970, 1, 1) + timedelta(microseconds=int(lo[search].max())),
            )
        con.execute(
            "DELETE FROM rollup_turns AS t USING _bm_late AS l "
            "WHERE t.bot = l.bot AND t.key = l.key AND t.ts >= l.since"
        )
        con.execute(
            "DELETE FROM rollup_turn_heads AS t USING _bm_late AS l WHERE t.bot = l.bot AND t.key = l.key"
        )
        (oldest,) = con.execute("SELECT min(since) FROM _bm_late").fetchall()[0]
        rows = (
            f"(SELECT e.* FROM (SELECT {TURN_EVENT} FROM events "
            f"WHERE {TURN_EVENT_WHERE} AND ts >= $oldest) AS e "
            "JOIN _bm_late AS l ON e.bot = l.bot AND e.key = l.key AND e.ts >= l.since)"
        )
        _store_turns(con, rows, {"oldest": oldest})
    finally:
        con.execute("DROP TABLE IF EXISTS _bm_late")


def _find_starts(con: Any, lo: datetime, hi: datetime) -> None:
    """Sets ``since`` of the late conversations to search to their last inbound message before
    their ``lo`` (a turn this write cannot change the end of; NO_TURN where there is none), looking
    back a day, a month, then all."""
    for back in _SEARCH:
        bound = "" if back is None else "AND ts >= $start"
        params: dict[str, Any] = {"hi": hi}
        if back is not None:
            params["start"] = lo - back
        con.execute(
            f"""
            UPDATE _bm_late AS l SET since = f.start, search = false FROM (
                SELECT x.bot, x.key, max(e.ts) AS start
                FROM (SELECT coalesce(bot, '') AS bot, {TURN_KEY} AS key, ts FROM events
                      WHERE kind = 'message' AND direction = 'in'
                        AND (conversation_id IS NOT NULL OR user_id IS NOT NULL) AND ts <= $hi {bound}) AS e
                JOIN _bm_late AS x ON e.bot = x.bot AND e.key = x.key AND e.ts < x.lo
                WHERE x.search GROUP BY ALL
            ) AS f WHERE l.bot = f.bot AND l.key = f.key
            """,
            params,
        )
        if not con.execute("SELECT count(*) FROM _bm_late WHERE search").fetchall()[0][0]:
            return
