"""ClickHouse as a store: the embedded engine (chdb://) in this process, and the HTTP path of
clickhouse-connect (clickhouse://) against a loopback fault injector (tests/clickhouse_faults.py,
which is NOT a ClickHouse server: it hands the requests it lets through to the embedded engine).

The embedded engine holds one folder per process: every test closes what it opened.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import textwrap
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from click.testing import CliRunner

pytest.importorskip("chdb")
pytest.importorskip("clickhouse_connect")

from botmeter import Meter
from botmeter.backends.clickhouse import schema
from botmeter.backends.clickhouse.store import ClickHouseStore, classify, parse_url, redact
from botmeter.exceptions import ConfigError, SchemaError, StoreError, StoreUnavailable
from botmeter.interfaces.cli import main
from botmeter.process.pipeline import SCHEMA
from botmeter.store import open_store
from clickhouse_faults import ClickHouseFaults
from conftest import subprocess_env

T0 = datetime(2026, 11, 3, 9, 0)


def events(n: int, start: datetime = T0, **fixed: object) -> pa.Table:
    """``n`` stored-event rows: messages in and out and LLM calls, three users, two conversations."""
    rows = []
    for i in range(n):
        kind = ("message", "message", "llm_call")[i % 3]
        row = {
            "event_id": uuid.uuid4().bytes,
            "ts": start + timedelta(seconds=i),
            "bot": "b",
            "kind": kind,
            "user_id": f"u{i % 3}",
            "conversation_id": f"c{i % 2}" if i % 5 else None,
            "channel": "sms",
            "direction": ("in", "out", None)[i % 3],
            "provider": "openai" if kind == "llm_call" else None,
            "model": "gpt-4o" if kind == "llm_call" else None,
            "input_tokens": 100 if kind == "llm_call" else None,
            "output_tokens": 20 if kind == "llm_call" else None,
            "cost_usd": 0.001 * (i % 7) if kind == "llm_call" else None,
            "latency_ms": float(100 + i) if kind == "llm_call" else None,
            "properties": json.dumps({"i": i}),
        } | fixed
        rows.append(row)
    columns = {}
    for field in SCHEMA:
        values = [r.get(field.name) for r in rows]
        if isinstance(field.type, pa.ExtensionType):
            columns[field.name] = pa.ExtensionArray.from_storage(field.type, pa.array(values, pa.binary(16)))
        else:
            columns[field.name] = pa.array(values, field.type)
    return pa.table(columns, schema=SCHEMA)


@pytest.fixture
def chdb_store(tmp_path):
    store = ClickHouseStore(f"chdb://{tmp_path}/ch")
    yield store
    store.close()


def totals(store: ClickHouseStore) -> dict[str, object]:
    """What the events hold and what the rollups say about them, side by side."""
    with store.client() as c:
        row = c.query(
            "SELECT count(), sum(coalesce(cost_usd, 0)), sum(coalesce(input_tokens, 0)), "
            "countIf(kind = 'message' AND direction = 'in'), countIf(user_id IS NOT NULL) FROM events"
        ).result_rows[0]
        hourly = c.query(
            "SELECT sum(events), sum(cost_usd), sum(input_tokens) FROM rollup_hourly"
        ).result_rows[0]
        users = c.query("SELECT sum(inbound), sum(events) FROM rollup_users").result_rows[0]
        days = c.command("SELECT sum(events) FROM rollup_days")
        conv = c.command("SELECT sum(messages) FROM rollup_conversation_totals")
        conv_events = c.command(
            "SELECT count() FROM events WHERE kind = 'message' AND conversation_id IS NOT NULL"
        )
        # Kept by the writer (upkeep.py): the sessions and the daily percentiles.
        session_events = c.command(
            "SELECT count() FROM events WHERE kind = 'message' AND conversation_id IS NULL "
            "AND user_id IS NOT NULL"
        )
        sessions = [
            int(c.command(f"SELECT sum(messages) FROM {t}"))
            for t in ("rollup_session_days FINAL", "rollup_session_totals FINAL", "rollup_session_points")
        ]
        timed = c.command("SELECT count(latency_ms) FROM events WHERE kind = 'llm_call'")
        kept_timed = c.command("SELECT sum(n) FROM rollup_latency_days FINAL WHERE dim = 'llm_call:'")
    return {
        "events": row[0],
        "hourly_events": hourly[0],
        "cost": round(row[1], 9),
        "hourly_cost": round(hourly[1], 9),
        "tokens": row[2],
        "hourly_tokens": hourly[2],
        "inbound": row[3],
        "users_inbound": users[0],
        "users_events": users[1],
        "events_with_user": row[4],
        "days_events": int(days),
        "conversation_messages": int(conv),
        "messages_with_conversation": int(conv_events),
        "session_messages": sessions,
        "messages_in_sessions": int(session_events),
        "timed": int(timed),
        "kept_timed": int(kept_timed),
    }


def assert_rollups_agree(store: ClickHouseStore, expected_events: int, days_over: bool = True) -> None:
    t = totals(store)
    assert t["events"] == expected_events
    assert t["hourly_events"] == t["days_events"] == expected_events
    assert t["users_events"] == t["events_with_user"]
    assert t["hourly_cost"] == t["cost"] and t["hourly_tokens"] == t["tokens"]
    assert t["users_inbound"] == t["inbound"]
    assert t["conversation_messages"] == t["messages_with_conversation"]
    assert t["session_messages"] == [t["messages_in_sessions"]] * 3
    if days_over:  # every day's percentiles are kept once it is over
        assert t["kept_timed"] == t["timed"]


# -- URLs -------------------------------------------------------------------------------------


def test_urls_name_a_server_or_a_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("CLICKHOUSE_PASSWORD", "from-env")
    conn = parse_url("clickhouse://alice@db.example:9440/metrics?secure=true&verify=false")
    assert (conn["host"], conn["port"], conn["username"], conn["database"]) == (
        "db.example",
        9440,
        "alice",
        "metrics",
    )
    assert conn["secure"] is True and conn["password"] == "from-env"
    assert parse_url("clickhouse://h?secure=true")["port"] == 8443
    assert (
        parse_url("clickhouse://h")["port"] == 8123 and parse_url("clickhouse://h")["database"] == "default"
    )
    assert parse_url("clickhouse://u:p%40ss@h/db")["password"] == "p@ss"  # the URL's own wins
    assert parse_url(f"chdb://{tmp_path}/x")["path"] == tmp_path / "x"
    monkeypatch.chdir(tmp_path)
    assert parse_url("chdb://rel/dir")["path"] == tmp_path / "rel" / "dir"
    with pytest.raises(ConfigError, match=r"unknown option.*sekure"):
        parse_url("clickhouse://u:topsecret@h/db?sekure=1")
    with pytest.raises(ConfigError) as err:
        parse_url("clickhouse://u:topsecret@h/db?sekure=1")
    assert "topsecret" not in str(err.value)
    assert redact("clickhouse://u:topsecret@h:8123/db") == "clickhouse://u:***@h:8123/db"
    assert isinstance(open_store("clickhouse://u:topsecret@h/db"), ClickHouseStore)
    assert "topsecret" not in open_store("clickhouse://u:topsecret@h/db").url


def test_errors_are_classified():
    assert classify(Exception("Code: 252. DB::Exception: Too many parts")) == "transient"
    assert classify(Exception("received ClickHouse error code 516 Authentication failed")) == "auth"
    assert classify(Exception("Code: 27. DB::Exception: Cannot parse input")) == "bad_batch"
    assert classify(Exception("HTTP driver received HTTP status 503")) == "transient"
    assert classify(Exception("Error executing HTTP request")) == "transient"


# -- writing on the embedded engine -------------------------------------------------------------


def test_meter_writes_to_chdb_and_rollups_follow(tmp_path):
    url = f"chdb://{tmp_path}/bot.chdb"
    meter = Meter(bot="shop", store=url)
    for i in range(300):
        meter.track_message(direction="in", user=f"u{i % 10}", conversation=f"c{i % 4}", text="hi")
        meter.track_llm_call(
            provider="openai",
            model="gpt-4o",
            input_tokens=10,
            output_tokens=5,
            latency_ms=50 + i,
            user=f"u{i % 10}",
        )
        meter.track_message(direction="out", user=f"u{i % 10}", conversation=f"c{i % 4}")
    assert meter.flush() is True
    meter.close()
    store = open_store(url)
    try:
        assert store.count() == 900
        newest = store.last_event_at()
        assert newest is not None and abs(datetime.now(UTC) - newest) < timedelta(minutes=5)
        assert_rollups_agree(store, 900, days_over=False)  # today's events
        with store.client() as c:
            assert c.command("SELECT uniqExact(user_id) FROM rollup_users") == 10
            assert c.command("SELECT count() FROM rollup_conversation_totals") == 4
            assert c.command("SELECT max(latency_max) FROM rollup_hourly") == 349.0
    finally:
        store.close()
    # botmeter status over it, in the words it uses for DuckDB.
    result = CliRunner().invoke(main, ["status", "--store", url, "--format", "json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["events"] == 900 and info["by_kind"] == {"message": 600, "llm_call": 300}
    assert info["schema_version"] == schema.SCHEMA_VERSION and info["size_bytes"] > 0


def test_status_of_an_empty_folder_fails(tmp_path):
    result = CliRunner().invoke(main, ["status", "--store", f"chdb://{tmp_path}/none"])
    assert result.exit_code == 1 and "no events in" in result.output
    assert not (tmp_path / "none").exists()


def test_replays_and_restarts_count_each_event_once(tmp_path):
    url = f"chdb://{tmp_path}/ch"
    first, second = events(60), events(60, start=T0 + timedelta(minutes=5))
    store = ClickHouseStore(url)
    assert store.write(first, fresh=True) == 60
    # The spool replays the same batch: nothing added, nothing counted twice by the views.
    assert store.write(first) == 0
    # A later batch holds half of the old events and new ones: only the new ones are stored.
    mixed = pa.concat_tables([first.slice(30), second])
    assert store.write(mixed) == 60
    assert_rollups_agree(store, 120)
    store.close()
    # A restarted process replays everything again.
    store = ClickHouseStore(url)
    try:
        assert store.write(pa.concat_tables([first, second])) == 0
        # A batch repeating an id inside itself keeps the first.
        third = events(10, start=T0 + timedelta(hours=1))
        assert store.write(pa.concat_tables([third, third])) == 10
        assert_rollups_agree(store, 130)
        assert totals(store)["messages_in_sessions"] > 0 and totals(store)["timed"] > 0
    finally:
        store.close()


def test_a_resent_batch_is_dropped_by_its_token(chdb_store):
    # A first attempt skips the id check (fresh): sent twice (its answer was lost), the server
    # drops the repeat by its deduplication token, and so do the views.
    batch = events(40)
    chdb_store.write(batch, fresh=True)
    chdb_store.write(batch, fresh=True)
    assert_rollups_agree(chdb_store, 40)


def test_caller_keyed_ids_repeat_days_later(chdb_store):
    from botmeter.events import CALLER_KEYS

    batch = events(5)
    chdb_store.write(batch, fresh=True)
    later = events(5, start=T0 + timedelta(days=2)).set_column(0, "event_id", batch.column("event_id"))
    later = later.replace_schema_metadata({CALLER_KEYS: b"1"})
    assert chdb_store.write(later, fresh=True) == 0
    assert chdb_store.count() == 5


def test_values_round_trip_exactly(chdb_store):
    batch = events(30)
    chdb_store.write(batch, fresh=True)
    back = chdb_store.read_events()
    assert back.schema == SCHEMA
    key = ["ts", "event_id"]
    assert (
        back.sort_by([(k, "ascending") for k in key[:1]]).to_pylist()
        == batch.sort_by([("ts", "ascending")]).to_pylist()
    )


def test_a_store_of_version_1_gets_its_sessions_and_percentiles_from_its_events(tmp_path):
    from botmeter.analyse import Reader

    url = f"chdb://{tmp_path}/ch"
    store = ClickHouseStore(url)
    try:
        store.write(events(90), fresh=True)
        with store.client() as c:  # as version 1 left it: no session or percentile tables
            for name in ("rollup_session_points_mv", *schema.KEPT, "rollup_session_points"):
                c.command(f"DROP TABLE {name}")
            c.command("INSERT INTO botmeter_meta (key, value) VALUES ('schema_version', '1')")
    finally:
        store.close()
    store = ClickHouseStore(url)
    try:
        assert_rollups_agree(store, 90)
    finally:
        store.close()
    start = datetime(2026, 11, 2, tzinfo=UTC)
    window = {"start": start, "end": start + timedelta(days=3), "interval": None}
    kept, read = (
        Reader(url, use_rollups=rollups).query("conversations", **window) for rollups in (True, False)
    )
    assert kept.source == "rollups" and kept.rows == read.rows and kept.total() > 0
    days = {**window, "interval": "day", "stat": "p50,p95"}
    kept, read = (Reader(url, use_rollups=r).query("llm_latency_ms", **days) for r in (True, False))
    assert kept.source == "rollups" and kept.rows == read.rows


def test_a_store_of_version_2_gets_its_turns_and_first_users_from_its_events(tmp_path):
    from botmeter.analyse import Reader

    url = f"chdb://{tmp_path}/ch"
    store = ClickHouseStore(url)
    later = T0 + timedelta(seconds=150)
    try:
        store.write(events(90), fresh=True)
        # Three inbound messages after the rest, each followed by an error and no reply: failed.
        store.write(events(3, start=later, kind="message", direction="in"), fresh=True)
        store.write(events(3, start=later + timedelta(seconds=10), kind="error", direction=None), fresh=True)
        with store.client() as c:  # as version 2 left it: no turns, no first inbound messages
            for name in ("rollup_turn_points_mv", "rollup_user_firsts_mv", "rollup_turn_points",
                         "rollup_user_firsts", "rollup_turn_heads", "rollup_turns", "rollup_turn_folded"):
                c.command(f"DROP TABLE {name}")
            c.command("INSERT INTO botmeter_meta (key, value) VALUES ('schema_version', '2')")
    finally:
        store.close()
    start = T0.replace(tzinfo=UTC) - timedelta(days=1)
    window = {"start": start, "end": start + timedelta(days=3), "interval": None}
    kept, read = (Reader(url, use_rollups=r).query("failed_replies", **window) for r in (True, False))
    assert kept.source == "rollups" and kept.rows == read.rows and kept.total() == 3
    days = {**window, "interval": "day"}
    for metric in ("new_users", "returning_users"):
        kept, read = (Reader(url, use_rollups=r).query(metric, **days) for r in (True, False))
        assert kept.source == "rollups" and kept.rows == read.rows, metric
        counted = sum(row["count"] for row in kept.rows)
        assert counted == {"new_users": 3, "returning_users": 0}[metric], (metric, kept.rows)
    store = ClickHouseStore(url)
    try:
        with store.client() as c:
            version = "SELECT argMax(value, updated) FROM botmeter_meta WHERE key = 'schema_version'"
            assert int(c.command(version)) == 3
    finally:
        store.close()


def test_a_newer_schema_is_refused_and_batches_wait(tmp_path):
    url = f"chdb://{tmp_path}/ch"
    store = ClickHouseStore(url)
    store.write(events(3), fresh=True)
    with store.client() as c:
        c.command("INSERT INTO botmeter_meta (key, value) VALUES ('schema_version', '99')")
    store.close()
    store = ClickHouseStore(url)
    try:
        with pytest.raises(SchemaError, match="schema version 99"):
            store.write(events(3))
    finally:
        store.close()


def test_cluster_ddl_parses_with_the_engine(chdb_store):
    statements = schema.deploy_sql("prod")
    text = "\n".join(statements)
    assert (
        "ON CLUSTER `prod`" in text
        and "ReplicatedMergeTree(" in text
        and "ReplicatedAggregatingMergeTree(" in text
    )
    assert f"Distributed(`prod`, currentDatabase(), events_local, {schema.SHARDING_KEY})" in text
    # a Distributed table with several shards refuses inserts without a sharding key
    distributed = [s for s in statements if "ENGINE = Distributed(" in s]
    assert len(distributed) == len(schema.ROLLUPS) + len(schema.KEPT) + 2
    for statement in distributed:
        keyed = re.search(r"Distributed\(`prod`, currentDatabase\(\), \w+_local, \S.*\)$", statement)
        assert keyed, statement
    assert "rollup_turns_local, cityHash64(bot, conversation))" in text  # a conversation on one shard
    assert (
        "CREATE MATERIALIZED VIEW IF NOT EXISTS rollup_hourly_mv_local ON CLUSTER `prod` TO "
        "rollup_hourly_local" in text
    )
    with chdb_store.client(migrate=False) as c:
        for statement in statements:
            c.query("EXPLAIN AST " + statement)  # raises on a syntax error
    result = CliRunner().invoke(main, ["clickhouse", "ddl", "--cluster", "prod"])
    assert result.exit_code == 0 and result.output.count(";\n") == len(statements)


def test_single_server_ddl_is_what_a_store_creates(chdb_store):
    chdb_store.write(events(1), fresh=True)
    with chdb_store.client() as c:
        tables = dict(
            c.query("SELECT name, engine FROM system.tables WHERE database = currentDatabase()").result_rows
        )
        sorting = c.command(
            "SELECT sorting_key FROM system.tables WHERE name = 'events' AND database = currentDatabase()"
        )
    assert tables["events"] == "MergeTree" and sorting == "bot, kind, ts, event_id"
    for name in schema.ROLLUPS:
        assert tables[name] == "AggregatingMergeTree" and tables[f"{name}_mv"] == "MaterializedView"
    for name in schema.KEPT:  # kept by the writer (upkeep.py)
        assert tables[name] == "ReplacingMergeTree"
    assert tables["rollup_turn_folded"] == "SummingMergeTree"  # the turn events the writer folded
    printed = CliRunner().invoke(main, ["clickhouse", "ddl"]).output
    # botmeter_meta, events and rollup_turn_folded besides the rollups and the kept tables
    assert printed.count("CREATE TABLE IF NOT EXISTS") == len(schema.ROLLUPS) + len(schema.KEPT) + 3


# -- the HTTP path, against the fault injector ----------------------------------------------------


@pytest.fixture
def faults(tmp_path, monkeypatch):
    # A server store keeps its spool and user-hash key under the cache folder: the test's own.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    injector = ClickHouseFaults(tmp_path / "engine")
    yield injector
    injector.close()


def test_http_writes_through_clickhouse_connect(faults):
    store = ClickHouseStore(faults.url)
    try:
        assert store.write(events(50), fresh=True) == 50
        assert store.count() == 50 and store.last_event_at() == (T0 + timedelta(seconds=49)).replace(
            tzinfo=UTC
        )
        assert_rollups_agree(store, 50)
    finally:
        store.close()


@pytest.mark.parametrize("action", ["status503", "too_many_parts", "drop_mid_body", "forward_then_drop"])
def test_transient_failures_are_retried_and_store_once(faults, action):
    store = ClickHouseStore(faults.url + "&send_receive_timeout=2", retries=2)
    try:
        store.write(events(5), fresh=True)  # the tables exist
        batch = events(20, start=T0 + timedelta(hours=1))
        faults.add("INSERT INTO", action, times=1)
        # forward_then_drop: the first attempt was stored, its answer lost; the retry is not "fresh"
        # in the server's eyes either: the token drops it.
        store.write(batch, fresh=True)
        assert_rollups_agree(store, 25)
        assert faults.rules[0].hits == 1
    finally:
        store.close()


def test_an_outage_spools_and_replays_in_order(faults, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="botmeter")
    spool = tmp_path / "spool"
    meter = Meter(bot="b", store=faults.url + "&send_receive_timeout=1&retries=1", spool_dir=str(spool))
    meter.track_message(direction="in", user="u")
    assert meter.flush() is True
    faults.refuse()  # the server goes away
    for i in range(30):
        meter.track_message(direction="in", user=f"u{i}")
    meter.flush(timeout=10)
    assert meter.stats()["spooled"] >= 30 and meter.stats()["written"] == 1
    faults.serve()  # back, on the same port
    for i in range(10):
        meter.track_message(direction="out", user=f"u{i}")
    assert meter.flush(timeout=20) is True
    meter.close()
    store = ClickHouseStore(faults.url)
    try:
        assert store.count() == 41
        assert_rollups_agree(store, 41)
    finally:
        store.close()


def test_a_hung_server_times_out_and_the_bot_goes_on(faults, tmp_path):
    store = ClickHouseStore(faults.url + "&send_receive_timeout=1", retries=1)
    try:
        store.write(events(2), fresh=True)
        faults.add("INSERT INTO", "hang")
        with pytest.raises(StoreUnavailable):
            store.write(events(3, start=T0 + timedelta(hours=2)), fresh=True)
        faults.clear()
        assert store.write(events(3, start=T0 + timedelta(hours=2))) == 3
        assert store.count() == 5
    finally:
        store.close()


def test_authentication_failure_spools_without_retrying_and_hides_the_password(faults, caplog):
    caplog.set_level(logging.DEBUG)
    url = faults.url.replace("default@", "default:s3cr3t-pw@")
    store = ClickHouseStore(url, retries=3)
    try:
        store.write(events(2), fresh=True)
        faults.add("INSERT INTO", "auth")
        with pytest.raises(StoreUnavailable, match="authentication failed") as err:
            store.write(events(2, start=T0 + timedelta(hours=3)), fresh=True)
        assert faults.rules[0].hits == 1  # not retried: it will not pass by itself
        assert "s3cr3t-pw" not in str(err.value) and "s3cr3t-pw" not in repr(store)
        assert "s3cr3t-pw" not in caplog.text
    finally:
        store.close()


def test_content_the_server_refuses_is_the_batch_s_fault(chdb_store):
    chdb_store.write(events(1), fresh=True)
    bad = (
        events(1, start=T0 + timedelta(hours=4))
        .drop_columns(["kind"])
        .append_column("kind", pa.array([None], pa.string()))
    )
    with pytest.raises(StoreError) as err:
        chdb_store.write(bad.select(SCHEMA.names), fresh=True)
    assert not isinstance(err.value, StoreUnavailable)


def test_several_processes_write_to_one_server_each_event_once(faults):
    script = textwrap.dedent(
        f"""
        import sys
        from botmeter import Meter
        m = Meter(bot="b", store={faults.url!r})
        for i in range(400):
            m.track_message(direction="in", user=f"p{{sys.argv[1]}}-{{i % 7}}", conversation=str(i % 3))
        assert m.flush(timeout=60)
        m.close()
        """
    )
    ClickHouseStore(faults.url).close()
    procs = [subprocess.Popen([sys.executable, "-c", script, str(n)], env=subprocess_env()) for n in range(3)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    store = ClickHouseStore(faults.url)
    try:
        assert store.count() == 1200
        assert_rollups_agree(store, 1200)
        with store.client() as c:
            assert c.command("SELECT count() - uniqExact(event_id) FROM events") == 0
    finally:
        store.close()


# -- botmeter copy ------------------------------------------------------------------------------


def test_copy_duckdb_to_chdb_and_back(tmp_path):
    duck = f"duckdb://{tmp_path}/a.duckdb"
    meter = Meter(bot="b", store=duck)
    for i in range(500):
        meter.track_message(
            direction="in",
            user=f"u{i % 9}",
            conversation=f"c{i % 5}",
            ts=T0.replace(tzinfo=UTC) + timedelta(minutes=i),
        )
        meter.track_llm_call(
            provider="openai",
            model="gpt-4o",
            input_tokens=i,
            latency_ms=10,
            ts=T0.replace(tzinfo=UTC) + timedelta(minutes=i, seconds=1),
        )
    meter.close()
    ch = f"chdb://{tmp_path}/ch"
    runner = CliRunner()
    result = runner.invoke(main, ["copy", "--from", duck, "--to", ch, "--quiet"])
    assert result.exit_code == 0, result.output
    assert "copied 1,000 events" in result.output
    again = runner.invoke(main, ["copy", "--from", duck, "--to", ch, "--quiet"])
    assert "copied 0 events" in again.output and "(1,000 were there already)" in again.output
    store = ClickHouseStore(ch)
    try:
        assert_rollups_agree(store, 1000)
    finally:
        store.close()
    # And back, into a new file, from a date on.
    back = f"duckdb://{tmp_path}/b.duckdb"
    since = (T0 + timedelta(minutes=250)).isoformat()
    result = runner.invoke(main, ["copy", "--from", ch, "--to", back, "--since", since, "--quiet"])
    assert result.exit_code == 0, result.output
    assert "copied 500 events" in result.output
    import duckdb

    def table(path: Path, where: str) -> list[tuple]:
        con = duckdb.connect(str(path), read_only=True)
        try:
            return con.execute(
                f"SELECT * EXCLUDE (properties), CAST(properties AS VARCHAR) FROM events {where} "
                "ORDER BY ts, event_id"
            ).fetchall()
        finally:
            con.close()

    cut = f"WHERE ts >= TIMESTAMP '{since}'"
    assert table(tmp_path / "b.duckdb", "") == table(tmp_path / "a.duckdb", cut)
    # The destination's rollups were built as it took the events.
    con = duckdb.connect(str(tmp_path / "b.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT sum(events) FROM rollup_hourly").fetchall()[0][0] == 500
        assert con.execute("SELECT sum(input_tokens) FROM rollup_hourly").fetchall()[0][0] == sum(
            range(250, 500)
        )
    finally:
        con.close()


def test_an_interrupted_copy_resumes(tmp_path, monkeypatch):
    from botmeter.store import copy as copying

    duck = f"duckdb://{tmp_path}/a.duckdb"
    meter = Meter(bot="b", store=duck)
    for i in range(300):
        meter.track_message(direction="in", user="u", ts=T0.replace(tzinfo=UTC) + timedelta(seconds=i))
    meter.close()
    src, dst = open_store(duck), open_store(f"chdb://{tmp_path}/ch")
    try:
        real_write = dst.write
        calls = []

        def failing_write(batch, **kw):
            calls.append(batch.num_rows)
            if len(calls) == 3:
                raise StoreUnavailable("the destination went away")
            return real_write(batch, **kw)

        monkeypatch.setattr(dst, "write", failing_write)
        with pytest.raises(StoreUnavailable):
            copying.copy_events(src, dst, page_rows=50)
        assert copying.checkpoint_path(src, dst, None).exists() and dst.count() == 100
        monkeypatch.setattr(dst, "write", real_write)
        result = copying.copy_events(src, dst, page_rows=50)
        assert result.resumed_from is not None and result.read == 200 and result.added == 200
        assert dst.count() == 300 and not copying.checkpoint_path(src, dst, None).exists()
        assert_rollups_agree(dst, 300)
    finally:
        src.close()
        dst.close()


def test_a_bot_process_lets_another_process_into_its_folder_between_writes(tmp_path):
    # The embedded engine keeps its folder for one process at a time: the bot's writer lets go of
    # it when idle, so a command in another process gets in, and the bot's next write gets in after.
    url = f"chdb://{tmp_path}/ch"
    script = textwrap.dedent(
        f"""
        import sys, time
        from botmeter import Meter
        m = Meter(bot="b", store={url!r}, flush_interval=0.2)
        for i in range(100):
            m.track_message(direction="in", user="u")
        assert m.flush(timeout=30)
        print("first", flush=True)
        sys.stdin.readline()  # the test reads the folder meanwhile
        for i in range(50):
            m.track_message(direction="out", user="u")
        assert m.flush(timeout=30)
        m.close()
        print("second", flush=True)
        """
    )
    bot = subprocess.Popen(
        [sys.executable, "-c", script],
        env=subprocess_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert bot.stdout.readline().strip() == "first"
        result = CliRunner().invoke(main, ["status", "--store", url, "--format", "json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["events"] == 100
        bot.stdin.write("go\n")
        bot.stdin.flush()
        assert bot.stdout.readline().strip() == "second"
        assert bot.wait(timeout=60) == 0
    finally:
        if bot.poll() is None:
            bot.kill()
    store = ClickHouseStore(url)
    try:
        assert store.count() == 150
        assert_rollups_agree(store, 150)
    finally:
        store.close()


# -- the embedded engine kept open while idle ---------------------------------------------------


def _count_in_another_process(url: str, lock_timeout: float) -> subprocess.CompletedProcess:
    script = (
        "import sys\n"
        "from botmeter.backends.clickhouse.store import ClickHouseStore\n"
        "s = ClickHouseStore(sys.argv[1], lock_timeout=float(sys.argv[2]))\n"
        "print(s.count()); s.close()\n"
    )
    return subprocess.run(
        [sys.executable, "-c", script, url, str(lock_timeout)],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _opens(monkeypatch) -> list[str]:
    """The paths the embedded engine is opened at, from now on, in this process."""
    import clickhouse_connect

    opened: list[str] = []
    real = clickhouse_connect.get_client

    def get_client(**kwargs):
        opened.append(kwargs.get("path"))
        return real(**kwargs)

    monkeypatch.setattr(clickhouse_connect, "get_client", get_client)
    return opened


def test_back_to_back_reads_reuse_the_engine_then_let_the_folder_go(tmp_path, monkeypatch):
    from botmeter.analyse import Reader

    url = f"chdb://{tmp_path}/ch?idle_hold=0.5"
    store = ClickHouseStore(url)
    try:
        store.write(events(30), fresh=True)
        store.release()
        opened = _opens(monkeypatch)
        for _ in range(3):  # as the query service reads: a reader per request, one store
            assert Reader(store).query("messages", start=T0, end=T0 + timedelta(hours=1)).total() == 20
        assert opened == []  # the engine the write opened answered all three
        # Idle past the hold, the folder is free: another process gets it without waiting.
        time.sleep(1.5)
        other = _count_in_another_process(f"chdb://{tmp_path}/ch", lock_timeout=0)
        assert other.returncode == 0, other.stderr
        assert other.stdout.strip() == "30"
        # and this process opens it again for its next read
        assert Reader(store).query("messages", start=T0, end=T0 + timedelta(hours=1)).total() == 20
        assert opened == [str(tmp_path / "ch")]
    finally:
        store.close()


@pytest.mark.parametrize(
    ("idle_hold", "lock_timeout"), [("600", 20), ("0", 0)], ids=["kept open, asked for", "let go at once"]
)
def test_another_process_gets_the_folder_of_an_idle_holder(tmp_path, idle_hold, lock_timeout):
    # Kept open while idle for up to ten minutes, the folder goes to another process as soon as it
    # waits for it; with idle_hold=0 it is free at once (the other process does not wait at all).
    url = f"chdb://{tmp_path}/ch?idle_hold={idle_hold}"
    store = ClickHouseStore(url)
    try:
        store.write(events(12), fresh=True)
        store.release()
        assert store.count() == 12  # in use again, then idle
        store.release()
        other = _count_in_another_process(url, lock_timeout=lock_timeout)
        assert other.returncode == 0, other.stderr
        assert other.stdout.strip() == "12"
        assert store.count() == 12
    finally:
        store.close()


def test_another_folder_in_the_same_process_takes_over_an_idle_engine(tmp_path):
    # The engine opens one folder per process: a store kept open while idle gives way at once.
    first = ClickHouseStore(f"chdb://{tmp_path}/a?idle_hold=600")
    second = ClickHouseStore(f"chdb://{tmp_path}/b?idle_hold=600", lock_timeout=0)
    try:
        first.write(events(5), fresh=True)
        first.release()
        second.write(events(7), fresh=True)
        assert second.count() == 7
        second.release()
        assert first.count() == 5
    finally:
        first.close()
        second.close()


@pytest.mark.parametrize("value", ["soon", "-1", "inf", "nan"])
def test_a_bad_idle_hold_is_named(tmp_path, value):
    with pytest.raises(ConfigError, match=rf"idle_hold must be seconds >= 0, not '{value}'"):
        ClickHouseStore(f"chdb://{tmp_path}/ch?idle_hold={value}")


@pytest.mark.parametrize(
    ("option", "value", "what"),
    [
        ("retries", "2.5", "a whole number >= 0"),
        ("retries", "-1", "a whole number >= 0"),
        ("connect_timeout", "five", "seconds >= 0"),
        ("send_receive_timeout", "-3", "seconds >= 0"),
    ],
)
def test_a_bad_number_in_the_url_is_named_when_the_store_is_made(option, value, what):
    # Checked when the store is made, not at its first connection (a bot's first write).
    with pytest.raises(ConfigError, match=rf"{option} must be {what}, not '{value}'"):
        ClickHouseStore(f"clickhouse://ch.test:8123/db?{option}={value}")
