"""The ClickHouse tables botmeter creates and migrates, for one server and for a cluster.

One server (what ``clickhouse://`` and ``chdb://`` stores create by themselves):

* ``events``: ``MergeTree``, ``PARTITION BY toYYYYMM(ts)``, ``ORDER BY (bot, kind, ts, event_id)``.
  The columns of ``botmeter.events.COLUMNS`` with the same names and nullability: ``event_id UUID``,
  ``ts DateTime64(6, 'UTC')``, dimensions ``LowCardinality(Nullable(String))`` (``kind``
  ``LowCardinality(String)``), ids and free text ``Nullable(String)``, counts ``Nullable(Int64)``,
  amounts ``Nullable(Float64)``, ``properties`` JSON text in ``Nullable(String)`` (read it with
  ``JSONExtract*``). Codecs are in ``_CODECS``; BENCHMARKS.md has the bytes per event. Each event is
  stored once (see ``store.py``), so ``count()`` is exact, before and after merges.

The rollups are kept by the engine: each insert into ``events`` runs the materialized views
``<table>_mv`` into ``AggregatingMergeTree`` tables, in the same insert. Their value columns are
``SimpleAggregateFunction`` (sum, min or max), so a reader always aggregates them again with the
same function and groups by the key (rows with one key are merged in the background, not at once):
``SELECT hour, model, sum(cost_usd), max(latency_max) FROM rollup_hourly GROUP BY ...``.
Names and columns follow the DuckDB store's rollups (``backends/duckdb/rollups.py``):

* ``rollup_hourly``: key ``(hour, bot, kind, channel, direction, provider, model, error_category,
  severity, stage, name, unit, country)``, NULL dimensions as ''. ``hour DateTime('UTC')``; sums:
  ``events, priced, cost_usd, input_tokens, output_tokens, cached_tokens, cache_write_tokens,
  reasoning_tokens, units, latency_n, latency_sum, no_user_events, no_user_cost,
  no_conversation_events, no_conversation_cost``; max: ``latency_max``.
* ``rollup_users``: key ``(day, bot, user_id)``, events with a user: sums ``inbound, events,
  cost_usd, messages``; min ``first_in``; max ``last_in, country`` (of messages).
* ``rollup_conversations``: key ``(bot, day, conversation)``, messages with a conversation id
  (``conversation`` = ``'c:' || conversation_id``): min ``user_id, first_ts``; max ``last_ts``;
  sum ``messages``.
* ``rollup_conversation_totals``: the same per ``(bot, conversation)``, all days together.
* ``rollup_conversation_costs``: key ``(bot, day, conversation_id)``: sums ``events, cost_usd``.
* ``rollup_days``: key ``(day)``: min ``first_ts``, max ``last_ts``, sum ``events``.
* ``rollup_session_points``: key ``(day)``: sum ``messages``, the messages with a user and without
  a conversation id (what the sessions below must add up to: a reader checks it).

A view sees one insert at a time, so what depends on the order of events across inserts is kept
by the writer after each insert (``upkeep.py``), as the DuckDB store keeps it, in
``ReplacingMergeTree`` tables read ``FINAL`` (a key's newest row; a row marked ``deleted`` takes
its key out):

* ``rollup_session_days`` and ``rollup_session_totals``: the sessions of messages without a
  conversation id (``s:<user>:<start in microseconds>``), per day and whole, with the columns of
  ``rollup_conversations`` and ``rollup_conversation_totals`` (readers take the two together).
* ``rollup_latency_days``: per complete UTC day, bot, ``kind:dimension`` and value, exact latency
  percentiles, count, sum and maximum (see the DuckDB rollup of the same name).
* ``upkeep_batches``: the insert tokens of the batches folded into the two above.

* ``rollup_turn_heads`` and ``rollup_turns``: each conversation's latest turn, and the turns whose
  reply failed (the latest included), for failed replies (``turns.py``); ``rollup_turn_folded``
  (``SummingMergeTree``) counts the events folded into them per day, which a reader compares with
  the view ``rollup_turn_points`` (the same events counted in the inserts) before trusting them.

A cluster (``botmeter clickhouse ddl --cluster NAME``): each table above becomes ``<name>_local``
on ``ReplicatedMergeTree``/``ReplicatedAggregatingMergeTree`` ``ON CLUSTER``, with a ``Distributed``
table of the plain name over it; ``events`` is sharded by a hash of the conversation (the user when
there is none), and the views run on each shard, from ``events_local`` into the ``_local`` rollups.
Readers and writers use the plain names, as on one server.
"""

from __future__ import annotations

from typing import Any

from ...events import COLUMNS, HOURLY_KEYS
from . import turns

SCHEMA_VERSION = 3


# Few distinct values in a month's part: dictionary-encoded.
_LOW_CARDINALITY = {
    "bot",
    "channel",
    "direction",
    "country",
    "provider",
    "model",
    "unit",
    "price_version",
    "stage",
    "error_type",
    "error_category",
    "severity",
    "fingerprint",
    "name",
    "release",
}
DICTIONARY_COLUMNS = frozenset(_LOW_CARDINALITY | {"kind"})
_TYPES = {"VARCHAR": "String", "JSON": "String", "BIGINT": "Int64", "DOUBLE": "Float64"}
# Chosen by measuring the ingest benchmark's mix (bench/clickhouse_codecs.py; BENCHMARKS.md): times
# are sorted within (bot, kind), so deltas of deltas are mostly zero; counts are small integers,
# whose unused high bits T64 drops; everything else (ids, text, amounts, and the dictionaries'
# indexes) takes ZSTD(3), which halved them against the default LZ4 at little cost per insert.
_INTEGER_CODEC = "CODEC(T64, ZSTD(1))"
_CODECS = {
    "ts": "CODEC(DoubleDelta, ZSTD(1))",
    **{
        name: _INTEGER_CODEC
        for name in (
            "input_tokens",
            "output_tokens",
            "cached_tokens",
            "cache_write_tokens",
            "reasoning_tokens",
            "chars",
        )
    },
}
_DEFAULT_CODEC = "CODEC(ZSTD(3))"
ORDER_KEY = "(bot, kind, ts, event_id)"
PARTITION_KEY = "toYYYYMM(ts)"
# Inserts carry a deduplication token (see store.py); a server keeps the last tokens of a table
# only when told to. The views' targets need it too, so a dropped repeat reaches no view.
_DEDUP = "non_replicated_deduplication_window = 1000"
# Which shard an event goes to on a cluster: a conversation stays on one shard.
SHARDING_KEY = "cityHash64(coalesce(conversation_id, user_id, ''))"


def column_type(name: str, sql_type: str) -> str:
    if name == "event_id":
        return "UUID"
    if name == "ts":
        return "DateTime64(6, 'UTC')"
    if name == "kind":
        return "LowCardinality(String)"
    base = f"Nullable({_TYPES[sql_type]})"
    return f"LowCardinality({base})" if name in _LOW_CARDINALITY else base


def _events_columns() -> str:
    return ", ".join(
        f"{name} {column_type(name, sql_type)} {_CODECS.get(name, _DEFAULT_CODEC)}"
        for name, (sql_type, _) in COLUMNS.items()
    )


_SUM = "SimpleAggregateFunction(sum, {})"
_MIN = "SimpleAggregateFunction(min, {})"
_MAX = "SimpleAggregateFunction(max, {})"
_TS = "Nullable(DateTime64(6, 'UTC'))"

# name -> (key columns with types, value columns with types, order key, the view's SELECT).
ROLLUPS: dict[str, tuple[str, str, str, str]] = {
    "rollup_hourly": (
        "hour DateTime('UTC'), " + ", ".join(f"{k} LowCardinality(String)" for k in HOURLY_KEYS),
        ", ".join(
            f"{c} {_SUM.format(t)}"
            for c, t in (
                ("events", "UInt64"),
                ("priced", "UInt64"),
                ("cost_usd", "Float64"),
                ("input_tokens", "Int64"),
                ("output_tokens", "Int64"),
                ("cached_tokens", "Int64"),
                ("cache_write_tokens", "Int64"),
                ("reasoning_tokens", "Int64"),
                ("units", "Float64"),
                ("latency_n", "UInt64"),
                ("latency_sum", "Float64"),
            )
        )
        + f", latency_max {_MAX.format('Nullable(Float64)')}, "
        + ", ".join(
            f"{c} {_SUM.format(t)}"
            for c, t in (
                ("no_user_events", "UInt64"),
                ("no_user_cost", "Float64"),
                ("no_conversation_events", "UInt64"),
                ("no_conversation_cost", "Float64"),
            )
        ),
        "(hour, " + ", ".join(HOURLY_KEYS) + ")",
        "SELECT toStartOfHour(toDateTime(e.ts, 'UTC')) AS hour, "
        + ", ".join(f"coalesce(e.{k}, '') AS {k}" for k in HOURLY_KEYS)
        + ", count() AS events, count(e.cost_usd) AS priced, sum(coalesce(e.cost_usd, 0)) AS cost_usd, "
        + ", ".join(
            f"sum(coalesce(e.{c}, 0)) AS {c}"
            for c in (
                "input_tokens",
                "output_tokens",
                "cached_tokens",
                "cache_write_tokens",
                "reasoning_tokens",
                "units",
            )
        )
        + ", count(e.latency_ms) AS latency_n, sum(coalesce(e.latency_ms, 0)) AS latency_sum, "
        "max(e.latency_ms) AS latency_max, countIf(e.user_id IS NULL) AS no_user_events, "
        "sumIf(coalesce(e.cost_usd, 0), e.user_id IS NULL) AS no_user_cost, "
        "countIf(e.conversation_id IS NULL) AS no_conversation_events, "
        "sumIf(coalesce(e.cost_usd, 0), e.conversation_id IS NULL) AS no_conversation_cost "
        "FROM {events} AS e GROUP BY hour, " + ", ".join(HOURLY_KEYS),
    ),
    "rollup_users": (
        "day Date, bot LowCardinality(String), user_id String",
        f"inbound {_SUM.format('UInt64')}, first_in {_MIN.format(_TS)}, last_in {_MAX.format(_TS)}, "
        f"events {_SUM.format('UInt64')}, cost_usd {_SUM.format('Float64')}, "
        f"messages {_SUM.format('UInt64')}, country {_MAX.format('Nullable(String)')}",
        "(day, bot, user_id)",
        "SELECT toDate(e.ts) AS day, coalesce(e.bot, '') AS bot, assumeNotNull(e.user_id) AS user_id, "
        "countIf(e.kind = 'message' AND e.direction = 'in') AS inbound, "
        "minIfOrNull(e.ts, e.kind = 'message' AND e.direction = 'in') AS first_in, "
        "maxIfOrNull(e.ts, e.kind = 'message' AND e.direction = 'in') AS last_in, "
        "count() AS events, sum(coalesce(e.cost_usd, 0)) AS cost_usd, "
        "countIf(e.kind = 'message') AS messages, "
        "maxIfOrNull(toNullable(toString(e.country)), e.kind = 'message' AND e.country IS NOT NULL) "
        "AS country "
        "FROM {events} AS e WHERE e.user_id IS NOT NULL GROUP BY day, bot, user_id",
    ),
    "rollup_user_firsts": (
        "bot LowCardinality(String), user_id String",
        f"first_in {_MIN.format(_TS)}",
        "(bot, user_id)",
        "SELECT coalesce(e.bot, '') AS bot, assumeNotNull(e.user_id) AS user_id, min(e.ts) AS first_in "
        "FROM {events} AS e WHERE e.kind = 'message' AND e.direction = 'in' AND e.user_id IS NOT NULL "
        "GROUP BY bot, user_id",
    ),
    "rollup_conversations": (
        "bot LowCardinality(String), day Date, conversation String",
        f"user_id {_MIN.format('Nullable(String)')}, first_ts {_MIN.format(_TS)}, "
        f"last_ts {_MAX.format(_TS)}, messages {_SUM.format('UInt64')}",
        "(bot, day, conversation)",
        "SELECT coalesce(e.bot, '') AS bot, toDate(e.ts) AS day, concat('c:', "
        "assumeNotNull(e.conversation_id)) "
        "AS conversation, min(e.user_id) AS user_id, min(e.ts) AS first_ts, max(e.ts) AS last_ts, "
        "count() AS messages FROM {events} AS e WHERE e.kind = 'message' AND e.conversation_id IS NOT NULL "
        "GROUP BY bot, day, conversation",
    ),
    "rollup_conversation_totals": (
        "bot LowCardinality(String), conversation String",
        f"user_id {_MIN.format('Nullable(String)')}, first_ts {_MIN.format(_TS)}, "
        f"last_ts {_MAX.format(_TS)}, messages {_SUM.format('UInt64')}",
        "(bot, conversation)",
        "SELECT coalesce(e.bot, '') AS bot, concat('c:', assumeNotNull(e.conversation_id)) AS conversation, "
        "min(e.user_id) AS user_id, min(e.ts) AS first_ts, max(e.ts) AS last_ts, count() AS messages "
        "FROM {events} AS e WHERE e.kind = 'message' AND e.conversation_id IS NOT NULL GROUP BY bot, "
        "conversation",
    ),
    "rollup_conversation_costs": (
        "bot LowCardinality(String), day Date, conversation_id String",
        f"events {_SUM.format('UInt64')}, cost_usd {_SUM.format('Float64')}",
        "(bot, day, conversation_id)",
        "SELECT coalesce(e.bot, '') AS bot, toDate(e.ts) AS day, assumeNotNull(e.conversation_id) AS "
        "conversation_id, count() AS events, sum(coalesce(e.cost_usd, 0)) AS cost_usd FROM {events} AS e "
        "WHERE e.conversation_id IS NOT NULL GROUP BY bot, day, conversation_id",
    ),
    "rollup_session_points": (
        "day Date",
        f"messages {_SUM.format('UInt64')}",
        "(day)",
        "SELECT toDate(e.ts) AS day, count() AS messages FROM {events} AS e WHERE e.kind = 'message' "
        "AND e.conversation_id IS NULL AND e.user_id IS NOT NULL GROUP BY day",
    ),
    "rollup_turn_points": (
        "day Date",
        f"events {_SUM.format('UInt64')}",
        "(day)",
        "SELECT toDate(e.ts) AS day, count() AS events FROM {events} AS e "
        "WHERE e.kind IN ('message', 'error') AND (e.conversation_id IS NOT NULL OR e.user_id IS NOT NULL) "
        "GROUP BY day",
    ),
    "rollup_days": (
        "day Date",
        f"first_ts {_MIN.format(_TS)}, last_ts {_MAX.format(_TS)}, events {_SUM.format('UInt64')}",
        "(day)",
        "SELECT toDate(e.ts) AS day, min(e.ts) AS first_ts, max(e.ts) AS last_ts, count() AS events "
        "FROM {events} AS e GROUP BY day",
    ),
}

# Kept by the writer (upkeep.py): name -> (columns, order key, ReplacingMergeTree's arguments).
_SESSION_COLUMNS = (
    "user_id Nullable(String), first_ts DateTime64(6, 'UTC'), last_ts DateTime64(6, 'UTC'), "
    "messages UInt64, version UInt64, deleted UInt8"
)
KEPT: dict[str, tuple[str, str, str]] = {
    "rollup_session_days": (
        f"bot LowCardinality(String), day Date, conversation String, {_SESSION_COLUMNS}",
        "(bot, day, conversation)",
        "version, deleted",
    ),
    "rollup_session_totals": (
        f"bot LowCardinality(String), conversation String, {_SESSION_COLUMNS}",
        "(bot, conversation)",
        "version, deleted",
    ),
    "rollup_latency_days": (
        "day Date, bot LowCardinality(String), dim LowCardinality(String), value String, n UInt64, "
        "latency_sum Float64, latency_max Float64, q Array(Float64), "
        "updated DateTime64(6, 'UTC') DEFAULT now64(6)",
        "(day, bot, dim, value)",
        "updated",
    ),
    "rollup_turn_heads": (turns.HEADS_COLUMNS, "(bot, conversation)", "version"),
    "rollup_turns": (turns.TURNS_COLUMNS, "(bot, conversation, ts)", "version, deleted"),
    # The batches folded (their insert tokens): a batch sent again, which the server drops, is not
    # folded again. Kept a month, far beyond the server's window of tokens.
    "upkeep_batches": (
        "token String, at DateTime64(6, 'UTC') DEFAULT now64(6)",
        "token TTL toDateTime(at) + INTERVAL 30 DAY",
        "at",
    ),
}

META_DDL = (
    "CREATE TABLE IF NOT EXISTS botmeter_meta{on} (key String, value String, "
    "updated DateTime64(6, 'UTC') DEFAULT now64(6)) ENGINE = {engine} ORDER BY key"
)


def _engine(kind: str, cluster: str | None, table: str, args: str = "") -> str:
    if cluster is None:
        return f"{kind}({args})"
    # The replica path from the server's {shard} and {replica} macros, one per table.
    more = f", {args}" if args else ""
    return f"Replicated{kind}('/clickhouse/tables/{{shard}}/{{database}}/{table}', '{{replica}}'{more})"


def ddl(cluster: str | None = None) -> list[str]:
    """The statements that create botmeter's tables, in order: rollups, events, then the views (so
    that no insert reaches events before its views exist). ``cluster``: the cluster's DDL."""
    on = f" ON CLUSTER {quote_name(cluster)}" if cluster else ""
    local = "_local" if cluster else ""
    # One botmeter_meta for the whole cluster (no {shard} in its path): the schema version is one.
    meta_engine = (
        "ReplacingMergeTree(updated)"
        if cluster is None
        else "ReplicatedReplacingMergeTree('/clickhouse/tables/{database}/botmeter_meta', "
        "'{replica}', updated)"
    )
    statements = [META_DDL.format(on=on, engine=meta_engine)]
    for name, (keys, values, order, _) in ROLLUPS.items():
        statements.append(
            f"CREATE TABLE IF NOT EXISTS {name}{local}{on} ({keys}, {values}) "
            f"ENGINE = {_engine('AggregatingMergeTree', cluster, name + local)} ORDER BY {order}"
            + ("" if cluster else f" SETTINGS {_DEDUP}")
        )
    statements.extend(kept_ddl(cluster))
    statements.append(
        f"CREATE TABLE IF NOT EXISTS events{local}{on} ({_events_columns()}) "
        f"ENGINE = {_engine('MergeTree', cluster, 'events' + local)} PARTITION BY {PARTITION_KEY} "
        f"ORDER BY {ORDER_KEY} SETTINGS allow_nullable_key = 1" + ("" if cluster else f", {_DEDUP}")
    )
    for name, (_, _, _, select) in ROLLUPS.items():
        statements.append(
            f"CREATE MATERIALIZED VIEW IF NOT EXISTS {name}_mv{local}{on} TO {name}{local} AS "
            + select.format(events=f"events{local}")
        )
    if cluster:
        # What readers and writers use: the plain names, over every shard.
        db = "currentDatabase()"
        statements.append(
            f"CREATE TABLE IF NOT EXISTS events{on} AS events_local "
            f"ENGINE = Distributed({quote_name(cluster)}, {db}, events_local, {SHARDING_KEY})"
        )
        for name in [*ROLLUPS, *KEPT, "rollup_turn_folded"]:
            statements.append(
                f"CREATE TABLE IF NOT EXISTS {name}{on} AS {name}_local "
                f"ENGINE = Distributed({quote_name(cluster)}, {db}, {name}_local, {_sharding(name)})"
            )
    return statements


# Where an insert through a Distributed table goes (one with several shards refuses inserts
# without a key). The writer's kept rows are replaced by key: each key always on the same shard,
# a conversation's on one shard. The rollups merge their states across shards whatever the shard.
_SHARDED_BY = {
    "rollup_session_days": "cityHash64(bot, conversation)",
    "rollup_session_totals": "cityHash64(bot, conversation)",
    "rollup_turn_heads": "cityHash64(bot, conversation)",
    "rollup_turns": "cityHash64(bot, conversation)",
    "rollup_latency_days": "cityHash64(day, bot, dim, value)",
    "upkeep_batches": "cityHash64(token)",
    "rollup_turn_folded": "cityHash64(day)",
}


def _sharding(name: str) -> str:
    return _SHARDED_BY.get(name, "rand()")


def kept_ddl(cluster: str | None = None) -> list[str]:
    """The tables the writer keeps (``KEPT``)."""
    on = f" ON CLUSTER {quote_name(cluster)}" if cluster else ""
    local = "_local" if cluster else ""
    return [
        *(
            f"CREATE TABLE IF NOT EXISTS {name}{local}{on} ({columns}) "
            f"ENGINE = {_engine('ReplacingMergeTree', cluster, name + local, args)} ORDER BY {order}"
            for name, (columns, order, args) in KEPT.items()
        ),
        # The turn events the writer folded, per day (see turns.py): added to, never replaced.
        f"CREATE TABLE IF NOT EXISTS rollup_turn_folded{local}{on} (day Date, events UInt64) "
        f"ENGINE = {_engine('SummingMergeTree', cluster, 'rollup_turn_folded' + local)} ORDER BY day",
    ]


def deploy_sql(cluster: str | None = None) -> list[str]:
    """What ``botmeter clickhouse ddl`` prints: the tables, the views, and the schema version they
    make (a store that finds it creates nothing itself)."""
    return [
        *ddl(cluster),
        f"INSERT INTO botmeter_meta (key, value) VALUES ('schema_version', '{SCHEMA_VERSION}')",
    ]


def quote_name(name: str) -> str:
    """A ClickHouse identifier, back-quoted."""
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


# Each step takes the schema from the version before it to its own number; never edit a released
# step, add one. Every statement is idempotent (IF NOT EXISTS), so processes that start together
# may all run it.
# A step may also be a function of the client (a rebuild from the events). Step 1 makes the whole
# current schema (a new store needs no other step); step 2 adds to a store made by step 1 of
# version 1 the session tables and view and the latency table, and fills them from its events.
def _rebuild(client: Any) -> None:
    from . import upkeep

    upkeep.rebuild(client)


# Step 3 adds the turns the writer keeps (turns.py) and each user's first inbound message, and
# fills them from the events (a minimum: a write meanwhile, counted twice, changes nothing).
def _rebuild_turns(client: Any) -> None:
    turns.rebuild(client)
    client.command(
        "INSERT INTO rollup_user_firsts SELECT bot, user_id, min(first_in) FROM rollup_users "
        "WHERE inbound > 0 GROUP BY bot, user_id"
    )


MIGRATIONS: dict[int, list[Any]] = {1: ddl(), 2: [*ddl(), _rebuild], 3: [*ddl(), _rebuild_turns]}
