"""The turns behind failed replies, kept by the ClickHouse writer after each insert.

A turn is what the DuckDB store's turns are (``backends/duckdb/turns.py``): an inbound message and
what follows it in its conversation (the conversation id, else the user) until the next inbound
message, in time order with an inbound message first among equal times (and among inbound
messages at one time, the one with the greater channel last). Its reply failed when it holds an
error or an outbound message marked failed and no outbound message that is not marked failed.

Kept (``ReplacingMergeTree``, read ``FINAL``):

* ``rollup_turn_heads``: per conversation (``c:<id>`` or ``u:<user>``), its latest turn (start,
  channel, last event, ``bad``, ``answered``), or, before its first inbound message, its events so
  far at ``NO_TURN``;
* ``rollup_turns``: the turns whose reply failed, each conversation's latest included (rows marked
  ``deleted`` take one out: a latest turn answered later, a turn a late inbound message split).

Failed replies are the rows of ``rollup_turns``: a reader merges that small table alone, not a row
per conversation.

A write's events of a conversation all after its head's start, with no inbound message at or
before the head's last event, only continue the head and open turns after it: folded in numpy from
the head alone, no event read. Any other conversation of the write (a late inbound message, an event
before the head) is worked out again from the events, from its last inbound message before the
write's first event of it: the closed turns from there are taken out and stored again.
``rebuild`` computes every row in SQL from the events; the tests hold the two equal.

A reader trusts the turns only while the events folded (``rollup_turn_folded``, added by the
writer) are as many as the view ``rollup_turn_points`` counted in the inserts; a fold that was lost
sends readers to the events. Two writers folding one conversation at the same moment (several bot
processes on one server, one conversation's events in both) could leave its head short of one
write's events; ``rebuild`` makes it whole.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_TS = pa.timestamp("us", tz="UTC")
_LONG_QUERY = {"max_query_size": 64 * 1024 * 1024}
NO_TURN = "toDateTime64('1970-01-01 00:00:00', 6, 'UTC')"
_NO_TURN_US = 0
_MIN_US = np.iinfo(np.int64).min

# A reply the bot marks as failed: properties {"failed": true} on an outbound message.
_MARKED_FAILED = (
    "(properties IS NOT NULL AND position(properties, 'failed') > 0 "
    "AND JSONExtractRaw(properties, 'failed') = 'true')"
)
CONVERSATION = "coalesce(concat('c:', conversation_id), concat('u:', user_id))"
TURN_EVENT = (
    f"coalesce(bot, '') AS bot, assumeNotNull({CONVERSATION}) AS conversation, ts, channel, "
    "toUInt8(coalesce(kind = 'message' AND direction = 'in', 0)) AS inbound, "
    f"toUInt8(coalesce(kind = 'error' OR (kind = 'message' AND direction = 'out' AND {_MARKED_FAILED}), 0)) "
    "AS bad, "
    f"toUInt8(coalesce(kind = 'message' AND direction = 'out' AND NOT {_MARKED_FAILED}, 0)) AS answered"
)
TURN_EVENT_WHERE = "kind IN ('message', 'error') AND (conversation_id IS NOT NULL OR user_id IS NOT NULL)"

# Columns and keys of the kept tables (see schema.KEPT).
HEADS_COLUMNS = (
    "bot LowCardinality(String), conversation String, ts DateTime64(6, 'UTC'), "
    "channel LowCardinality(Nullable(String)), last_ts DateTime64(6, 'UTC'), bad UInt8, answered UInt8, "
    "version UInt64"
)
TURNS_COLUMNS = (
    "bot LowCardinality(String), conversation String, ts DateTime64(6, 'UTC'), "
    "channel LowCardinality(Nullable(String)), bad UInt8, version UInt64, deleted UInt8"
)


def add(client: Any, batch: pa.Table) -> None:
    """Folds the events just stored (``batch``) into their conversations' turns."""
    rows = _rows_of(batch)
    if rows is None:
        return
    heads = _heads(client, rows)
    version = time.time_ns() // 1000 * 2  # newer than any earlier write's; deletions one below
    # Folded from the head alone: every event here after the head's start, and no inbound message
    # here at or before its last event.
    fast = ~heads.found | (
        (rows.first_ts > heads.ts) & (rows.first_in_ts > heads.last_ts) & (heads.ts > _NO_TURN_US)
    )
    fast |= heads.found & (heads.ts == _NO_TURN_US) & (rows.first_in_ts > heads.last_ts)
    keep = fast[rows.g]
    if keep.any():
        out_heads, failed, cleared = _segments(rows, np.flatnonzero(keep), heads)
        _insert(client, "rollup_turn_heads", _with(out_heads, version=version))
        _insert(client, "rollup_turns", _with(cleared, version=version - 1, deleted=1))
        _insert(client, "rollup_turns", _with(failed, version=version, deleted=0))
    late = np.flatnonzero(~fast)
    if len(late):
        _recompute(client, rows, heads, late, version)
    days = pc.value_counts(pc.cast(pc.cast(rows.day_ts, _TS), pa.date32()))
    _insert(
        client,
        "rollup_turn_folded",
        pa.table({"day": days.field("values"), "events": pc.cast(days.field("counts"), pa.uint64())}),
    )


class _Rows:
    """A write's turn events sorted by conversation, time, inbound message first, then channel."""

    groups: int
    bots: pa.Array  # per conversation
    names: pa.Array
    first_ts: np.ndarray  # per conversation: its first event here (microseconds)
    first_in_ts: np.ndarray  # its first inbound message here (max int64 if none)
    # Per event, sorted:
    g: np.ndarray
    ts: np.ndarray
    inbound: np.ndarray
    bad: np.ndarray
    answered: np.ndarray
    channels: pa.Array
    day_ts: pa.Array  # unsorted: every turn event's time, for the count folded


def _np_bool(a: Any) -> np.ndarray:
    return pc.fill_null(a, False).to_numpy(zero_copy_only=False)


def _us(a: Any) -> np.ndarray:
    return pc.cast(pc.cast(a, _TS), pa.int64()).to_numpy(zero_copy_only=False)


def _flat(a: Any) -> Any:
    a = a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a
    if pa.types.is_dictionary(a.type):
        a = a.cast(a.type.value_type)
    return a


def _marked_failed(properties: Any) -> np.ndarray:
    """properties {"failed": true}, as _MARKED_FAILED reads it (a top-level key whose raw JSON is
    ``true``), on the few that mention it."""
    import json

    props = _flat(properties).cast(pa.string())
    maybe = np.flatnonzero(_np_bool(pc.match_substring(props, "failed")))
    out = np.zeros(len(props), dtype=bool)
    for i, text in zip(maybe, props.take(pa.array(maybe)).to_pylist(), strict=True):
        try:
            value = json.loads(text)
        except ValueError:
            continue
        out[i] = isinstance(value, dict) and value.get("failed") is True
    return out


def _rows_of(batch: pa.Table) -> _Rows | None:
    kind, conv, user = _flat(batch["kind"]), _flat(batch["conversation_id"]), _flat(batch["user_id"])
    keep = _np_bool(
        pc.and_(
            pc.is_in(kind, value_set=pa.array(["message", "error"])),
            pc.or_(pc.is_valid(conv), pc.is_valid(user)),
        )
    )
    idx = np.flatnonzero(keep)
    if not len(idx):
        return None
    t = batch.take(pa.array(idx))
    kind, conv, user = _flat(t["kind"]), _flat(t["conversation_id"]), _flat(t["user_id"])
    message = _np_bool(pc.equal(kind, "message"))
    direction = _flat(t["direction"])
    inbound = message & _np_bool(pc.equal(direction, "in"))
    outbound = message & _np_bool(pc.equal(direction, "out"))
    marked = _marked_failed(t["properties"]) & outbound
    bad = _np_bool(pc.equal(kind, "error")) | marked
    answered = outbound & ~marked
    names = pc.if_else(
        pc.is_valid(conv),
        pc.binary_join_element_wise("c:", conv.cast(pa.string()), ""),
        pc.binary_join_element_wise("u:", user.cast(pa.string()), ""),
    )
    bots = pc.fill_null(_flat(t["bot"]).cast(pa.string()), "")
    ts = _us(t["ts"])
    r, group = _sorted_rows(bots, names, ts, inbound, _flat(t["channel"]).cast(pa.string()), bad, answered)
    r.day_ts = t["ts"]
    r.first_ts = np.full(r.groups, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(r.first_ts, group, ts)
    r.first_in_ts = np.full(r.groups, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(r.first_in_ts, group[inbound], ts[inbound])
    return r


def _channel_rank(channels: pa.Array) -> np.ndarray:
    """Each event's channel as its rank in text order, -1 for none (NULLS FIRST, as DuckDB's order)."""
    encoded = pc.dictionary_encode(channels)
    values = encoded.dictionary.to_pylist()
    rank = np.empty(len(values) + 1, dtype=np.int64)
    rank[np.argsort(np.array(values, dtype=object), kind="stable")] = np.arange(len(values))
    rank[-1] = -1
    codes = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    return rank[codes]  # code -1 takes the last entry


class _Heads:
    found: np.ndarray
    ts: np.ndarray
    channel: pa.Array
    last_ts: np.ndarray
    bad: np.ndarray
    answered: np.ndarray


def _no_heads(groups: int) -> _Heads:
    h = _Heads()
    h.found = np.zeros(groups, dtype=bool)
    h.ts = np.full(groups, _NO_TURN_US, dtype=np.int64)
    h.last_ts = np.full(groups, _MIN_US, dtype=np.int64)
    h.bad = np.zeros(groups, dtype=bool)
    h.answered = np.zeros(groups, dtype=bool)
    h.channel = pa.nulls(groups, pa.string())
    return h


def _listed(values: list[Any]) -> str:
    quoted = ("'" + str(v).replace("\\", "\\\\").replace("'", "\\'") + "'" for v in values)
    return "(" + ", ".join(quoted) + ")" if values else "(NULL)"


def _position(r: _Rows, bots: Any, names: Any) -> np.ndarray:
    """Each (bot, conversation) row's conversation number in ``r`` (-1: not among them)."""
    mine = pc.binary_join_element_wise(r.bots, r.names, "\x00")
    theirs = pc.binary_join_element_wise(
        _flat(bots).cast(pa.string()), _flat(names).cast(pa.string()), "\x00"
    )
    return (
        pc.fill_null(pc.index_in(theirs, value_set=mine), -1).to_numpy(zero_copy_only=False).astype(np.int64)
    )


def _heads(client: Any, r: _Rows) -> _Heads:
    """The stored heads of the write's conversations."""
    found = client.query_arrow(
        "SELECT bot, conversation, toUnixTimestamp64Micro(ts) AS ts, channel, "
        "toUnixTimestamp64Micro(last_ts) AS last_ts, bad, answered FROM rollup_turn_heads FINAL "
        f"WHERE conversation IN {_listed(r.names.to_pylist())}",
        settings=_LONG_QUERY,
    )
    h = _no_heads(r.groups)
    if not found.num_rows:
        return h
    at = _position(r, found["bot"], found["conversation"])
    ok = at >= 0
    at = at[ok]
    pick = pa.array(np.flatnonzero(ok))
    h.found[at] = True
    h.ts[at] = pc.cast(found["ts"], pa.int64()).to_numpy()[ok]
    h.last_ts[at] = pc.cast(found["last_ts"], pa.int64()).to_numpy()[ok]
    h.bad[at] = _np_bool(pc.cast(found["bad"], pa.bool_()))[ok]
    h.answered[at] = _np_bool(pc.cast(found["answered"], pa.bool_()))[ok]
    position = np.full(r.groups, -1, dtype=np.int64)
    position[at] = np.arange(len(at))
    stored = _flat(found["channel"]).cast(pa.string()).take(pick)
    h.channel = stored.take(pa.array(position, mask=position < 0))
    return h


def _segments(r: _Rows, rows: np.ndarray, h: _Heads) -> tuple[pa.Table, pa.Table, pa.Table]:
    """The turns of the events ``rows`` (sorted, whole conversations) continuing each
    conversation's head ``h``: the new heads, the turns whose reply failed, and the stored failed
    heads answered here."""
    g, ts, inbound = r.g[rows], r.ts[rows], r.inbound[rows]
    n = len(rows)
    start = np.empty(n, dtype=bool)
    start[0] = True
    np.not_equal(g[1:], g[:-1], out=start[1:])
    seg_start = np.flatnonzero(start | inbound)
    seg_end = np.append(seg_start[1:], n)
    group, real = g[seg_start], inbound[seg_start].copy()
    seg_ts, seg_last = ts[seg_start].copy(), ts[seg_end - 1].copy()
    seg_bad = np.logical_or.reduceat(r.bad[rows], seg_start)
    seg_answered = np.logical_or.reduceat(r.answered[rows], seg_start)
    chan = r.channels.take(pa.array(rows[seg_start]))
    first = start[seg_start]
    last = np.append(group[1:] != group[:-1], True)
    # A head closed by an inbound message here.
    closes = group[first & real & h.found[group]]
    # A conversation's events before its first inbound message here continue its head.
    cont = first & ~real
    cg = group[cont]
    real[cont] = h.ts[cg] > _NO_TURN_US
    seg_ts[cont] = h.ts[cg]
    seg_last[cont] = np.maximum(seg_last[cont], h.last_ts[cg])
    seg_bad[cont] |= h.bad[cg]
    seg_answered[cont] |= h.answered[cg]
    from_head = np.full(len(seg_start), -1, dtype=np.int64)
    from_head[cont] = cg
    chan = pc.if_else(pa.array(from_head >= 0), h.channel.take(pa.array(np.maximum(from_head, 0))), chan)
    heads = pa.table(
        {
            "bot": r.bots.take(pa.array(group[last])),
            "conversation": r.names.take(pa.array(group[last])),
            "ts": _ts(seg_ts[last]),
            "channel": chan.filter(pa.array(last)),
            "last_ts": _ts(seg_last[last]),
            "bad": pa.array(seg_bad[last].astype(np.uint8)),
            "answered": pa.array(seg_answered[last].astype(np.uint8)),
        }
    )
    # Failed: every turn here whose reply failed, the latest included, and a stored head closed
    # here that had failed (stored already: the same row again).
    failed = real & seg_bad & ~seg_answered
    head_failed = closes[(h.ts[closes] > _NO_TURN_US) & h.bad[closes] & ~h.answered[closes]]
    # A stored head that had failed, continued here by a good reply: its row is taken out.
    was_failed = h.found & (h.ts > _NO_TURN_US) & h.bad & ~h.answered
    answered_now = np.flatnonzero(cont & seg_answered & was_failed[group])
    cleared = pa.table(
        {
            "bot": r.bots.take(pa.array(group[answered_now])),
            "conversation": r.names.take(pa.array(group[answered_now])),
            "ts": _ts(h.ts[group[answered_now]]),
            "channel": h.channel.take(pa.array(group[answered_now])),
            "bad": pa.array(np.ones(len(answered_now), dtype=np.uint8)),
        }
    )
    closed = pa.table(
        {
            "bot": pa.concat_arrays(
                [r.bots.take(pa.array(group[failed])), r.bots.take(pa.array(head_failed))]
            ),
            "conversation": pa.concat_arrays(
                [r.names.take(pa.array(group[failed])), r.names.take(pa.array(head_failed))]
            ),
            "ts": _ts(np.concatenate([seg_ts[failed], h.ts[head_failed]])),
            "channel": pa.concat_arrays(
                [chan.filter(pa.array(failed)), h.channel.take(pa.array(head_failed))]
            ),
            "bad": pa.array(np.ones(int(failed.sum()) + len(head_failed), dtype=np.uint8)),
        }
    )
    return heads, closed, cleared


def _ts(us: np.ndarray) -> pa.Array:
    return pa.array(us.astype(np.int64), pa.int64()).cast(_TS)


def _with(rows: pa.Table, **columns: int) -> pa.Table:
    for name, value in columns.items():
        kind = pa.uint8() if name == "deleted" else pa.uint64()
        rows = rows.append_column(name, pa.array(np.full(rows.num_rows, value), kind))
    return rows


def _insert(client: Any, table: str, rows: pa.Table) -> None:
    if rows.num_rows:
        client.insert_arrow(table, rows)


# How far back a late conversation is searched for its last inbound message, in turn; then all.
_SEARCH = (timedelta(days=1), timedelta(days=31), None)


def _dt(us: int) -> str:
    at = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(us))
    return f"toDateTime64('{at:%Y-%m-%d %H:%M:%S.%f}', 6, 'UTC')"


def _per_conversation(who: str, keys: list[str], us: np.ndarray) -> str:
    """A time per conversation, looked up by ``who`` (bot and conversation) in each event's row."""
    return f"transform({who}, [{_listed(keys)[1:-1]}], [{', '.join(_dt(x) for x in us)}], {NO_TURN})"


def _recompute(client: Any, r: _Rows, h: _Heads, late: np.ndarray, version: int) -> None:
    """The conversations ``late`` again from the events, from their last inbound message before
    the write's first event of theirs (an inbound message here splits the turn it lands in; every
    event where there is none)."""
    keys = pc.binary_join_element_wise(r.bots, r.names, "\x00").take(pa.array(late)).to_pylist()
    lo = r.first_ts[late]
    since = np.full(len(late), _NO_TURN_US, dtype=np.int64)
    todo = np.ones(len(late), dtype=bool)
    who = "concat(coalesce(bot, ''), char(0), assumeNotNull(" + CONVERSATION + "))"
    bound = _per_conversation(who, keys, lo)
    for back in _SEARCH:
        if not todo.any():
            break
        still = [keys[i] for i in np.flatnonzero(todo)]
        floor = "" if back is None else f"AND ts >= {_dt(int(lo[todo].min()))} - INTERVAL {back.days} DAY"
        found = client.query(
            f"SELECT {who} AS k, toUnixTimestamp64Micro(max(ts)) FROM events "
            "WHERE kind = 'message' AND direction = 'in' "
            "AND (conversation_id IS NOT NULL OR user_id IS NOT NULL) "
            f"AND ts < {_dt(int(lo[todo].max()))} {floor} AND k IN {_listed(still)} AND ts < {bound} "
            "GROUP BY k",
            settings=_LONG_QUERY,
        ).result_rows
        at = {k: i for i, k in enumerate(keys)}
        for k, start in found:
            i = at[k]
            since[i], todo[i] = int(start), False
        if back is not None and todo.any():
            # Those with an inbound message before the floor are found by the next, wider search.
            continue
    # Every event of those conversations from their start on.
    since_of = _per_conversation(who, keys, since)
    events = client.query_arrow(
        f"SELECT {TURN_EVENT}, properties FROM events WHERE {TURN_EVENT_WHERE} "
        f"AND ts >= {_dt(int(since.min()))} AND {who} IN {_listed(keys)} AND ts >= {since_of}",
        settings=_LONG_QUERY,
    )
    # The closed turns stored from there on are taken out (and those still failed stored again).
    old = client.query_arrow(
        "SELECT bot, conversation, ts, channel, bad FROM rollup_turns FINAL "
        f"WHERE conversation IN {_listed(r.names.take(pa.array(late)).to_pylist())} "
        f"AND ts >= {_dt(int(since.min()))}",
        settings=_LONG_QUERY,
    )
    if old.num_rows:
        at = _position(r, old["bot"], old["conversation"])
        position = np.full(r.groups, -1, dtype=np.int64)
        position[late] = np.arange(len(late))
        mine = (at >= 0) & (position[np.maximum(at, 0)] >= 0)
        ok = mine & (pc.cast(old["ts"], pa.int64()).to_numpy() >= since[position[np.maximum(at, 0)]])
        gone = old.filter(pa.array(ok))
        gone = pa.table(
            {
                "bot": _flat(gone["bot"]).cast(pa.string()),
                "conversation": _flat(gone["conversation"]).cast(pa.string()),
                "ts": pc.cast(gone["ts"], _TS),
                "channel": _flat(gone["channel"]).cast(pa.string()),
                "bad": pc.cast(gone["bad"], pa.uint8()),
            }
        )
        _insert(client, "rollup_turns", _with(gone, version=version - 1, deleted=1))
    if not events.num_rows:
        return
    fetched = _read_rows(events)
    heads, failed, _ = _segments(fetched, np.arange(len(fetched.g)), _no_heads(fetched.groups))
    _insert(client, "rollup_turn_heads", _with(heads, version=version))
    _insert(client, "rollup_turns", _with(failed, version=version, deleted=0))


def _read_rows(events: pa.Table) -> _Rows:
    """Turn events read back (TURN_EVENT columns) as sorted rows."""
    r, _ = _sorted_rows(
        _flat(events["bot"]).cast(pa.string()),
        _flat(events["conversation"]).cast(pa.string()),
        _us(events["ts"]),
        _np_bool(pc.cast(events["inbound"], pa.bool_())),
        _flat(events["channel"]).cast(pa.string()),
        _np_bool(pc.cast(events["bad"], pa.bool_())),
        _np_bool(pc.cast(events["answered"], pa.bool_())),
    )
    return r


def _sorted_rows(
    bots: pa.Array,
    names: pa.Array,
    ts: np.ndarray,
    inbound: np.ndarray,
    channels: pa.Array,
    bad: np.ndarray,
    answered: np.ndarray,
) -> tuple[_Rows, np.ndarray]:
    """Turn events grouped by conversation (bot and name) and sorted in each by time, inbound
    first, then channel; also each event's group in the order given."""
    who = pc.dictionary_encode(pc.binary_join_element_wise(bots, names, "\x00"))
    group = who.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    order = np.lexsort((_channel_rank(channels), ~inbound, ts, group))
    r = _Rows()
    r.groups = len(who.dictionary)
    first_row = np.full(r.groups, -1, dtype=np.int64)
    first_row[group[::-1]] = np.arange(len(group))[::-1]
    r.bots, r.names = bots.take(pa.array(first_row)), names.take(pa.array(first_row))
    r.g, r.ts, r.inbound = group[order], ts[order], inbound[order]
    r.bad, r.answered = bad[order], answered[order]
    r.channels = channels.take(pa.array(order))
    return r, group


def rebuild(client: Any) -> None:
    """Every turn again from the events (a migration, a rebuild)."""
    for table in ("rollup_turns", "rollup_turn_heads", "rollup_turn_folded", "rollup_turn_points"):
        client.command(f"TRUNCATE TABLE IF EXISTS {table}")
    # Each conversation's events sorted as one array; a running count of inbound messages numbers
    # its turns (0: before its first inbound message).
    turns = f"""
        SELECT bot, conversation, turn, n,
               if(turn = 0, {NO_TURN}, minIf(e.1, e.2 = 1)) AS ts, anyIf(e.5, e.2 = 1) AS channel,
               max(e.1) AS last_ts, max(e.3) AS bad, max(e.4) AS answered
        FROM (
            SELECT bot, conversation,
                   arraySort(x -> (x.1, -toInt16(x.2), isNotNull(x.5), ifNull(x.5, '')),
                             groupArray((ts, inbound, bad, answered, toNullable(toString(channel))))) AS es,
                   arrayCumSum(arrayMap(x -> toUInt64(x.2), es)) AS turns, arrayMax(turns) AS n
            FROM (SELECT {TURN_EVENT} FROM events WHERE {TURN_EVENT_WHERE})
            GROUP BY bot, conversation
        ) ARRAY JOIN es AS e, turns AS turn
        GROUP BY bot, conversation, turn, n
    """
    client.command(
        "INSERT INTO rollup_turn_heads (bot, conversation, ts, channel, last_ts, bad, answered, version) "
        f"SELECT bot, conversation, ts, channel, last_ts, bad, answered, 0 FROM ({turns}) WHERE turn = n"
    )
    client.command(
        "INSERT INTO rollup_turns (bot, conversation, ts, channel, bad, version, deleted) "
        f"SELECT bot, conversation, ts, channel, 1, 0, 0 FROM ({turns}) "
        "WHERE turn > 0 AND bad = 1 AND answered = 0"
    )
    client.command(
        "INSERT INTO rollup_turn_points SELECT toDate(ts) AS day, count() FROM events "
        f"WHERE {TURN_EVENT_WHERE} GROUP BY day"
    )
    client.command("INSERT INTO rollup_turn_folded SELECT day, events FROM rollup_turn_points")
