"""Size on disk of the realistic mix, and a few plain DuckDB queries over it (recorded, not gated).

Tracks N events (``--events``, default 1,000,000) of bench/ingest.py's mix (the same producer)
through a real Meter into a fresh DuckDB file, closes the meter, and reports the file's size
(file + WAL, after close) per event and per million events: the file exactly as the writer wrote it,
batch by batch. For reference: DuckDB's own block counts for it, a zstd Parquet export of it, and
the same rows written at once into a fresh file with the timestamps spread over the last ``--days``
days (30).

The queries run on that re-timed copy, so that per-day queries see days: events keep the order in
which they were tracked (kinds interleaved, as in time) and are spaced evenly over the days. Each
query runs ``--repeat`` times on a fresh read-only connection (first and median): count by kind,
LLM cost by model by day, daily distinct users.

Last, an append probe (``--probe-rows``, default 200,000; 0 skips it): one new batch appended to
fresh copies of the writer's file by ``DuckDBStore.write`` (the writer's store step) and by a bare
``INSERT INTO events SELECT * FROM batch`` (DuckDB on 1 thread, and on its default threads),
in interleaved rounds: what the store step costs per event against DuckDB's own append.

    PYTHONPATH=src .venv/bin/python bench/storage.py [--events 1000000] [--days 30] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ingest import produce, verify
from track_call import environment

QUERIES = {
    "count by kind": "SELECT kind, count(*) AS n FROM events GROUP BY kind ORDER BY n DESC",
    "LLM cost by model by day": (
        "SELECT date_trunc('day', ts) AS day, provider, model, count(*) AS calls, sum(cost_usd) AS cost_usd "
        "FROM events WHERE kind = 'llm_call' GROUP BY ALL ORDER BY day, cost_usd DESC"
    ),
    "daily distinct users": (
        "SELECT date_trunc('day', ts) AS day, count(DISTINCT user_id) AS users "
        "FROM events WHERE user_id IS NOT NULL GROUP BY day ORDER BY day"
    ),
}


def append_probe(path: Path, tmp: Path, rows: int, rounds: int) -> dict[str, Any]:
    """Appends one new batch of ``rows`` events to fresh copies of the file, three ways, interleaved.

    ``DuckDBStore.write`` (what the writer's store thread does per batch: open, dedupe check,
    INSERT ... WHERE NOT EXISTS, close) against a bare ``INSERT INTO events SELECT * FROM batch`` on
    one connection (open, insert, close) with DuckDB on 1 thread and with its default threads.
    The batch is the file's latest rows with new event ids and timestamps one hour later.
    """
    import random
    import uuid

    import duckdb
    import pyarrow as pa
    import pyarrow.compute as pc

    from botmeter.backends.duckdb.store import DuckDBStore
    from botmeter.process.pipeline import SCHEMA

    con = duckdb.connect(str(path), read_only=True)
    try:
        table = con.sql(f"SELECT * FROM events ORDER BY ts DESC LIMIT {int(rows)}").to_arrow_table()
    finally:
        con.close()
    ids = pa.array([uuid.uuid4().bytes for _ in range(table.num_rows)], pa.binary(16))
    later = pc.add(table.column("ts"), pa.scalar(3_600_000_000, pa.duration("us")))
    arrays = [pa.ExtensionArray.from_storage(pa.uuid(), ids), later.cast(SCHEMA.field("ts").type)]
    arrays += [table.column(name).cast(SCHEMA.field(name).type) for name in SCHEMA.names[2:]]
    batch = pa.Table.from_arrays(arrays, schema=SCHEMA)

    def bare(target: Path, threads: int | None) -> None:
        c = duckdb.connect(str(target))
        try:
            if threads is not None:
                c.execute(f"SET threads = {threads}")
            c.register("batch", batch)
            c.execute("INSERT INTO events SELECT * FROM batch").fetchall()
        finally:
            c.close()

    ways = {
        "DuckDBStore.write (the writer's store step)": lambda t: DuckDBStore(f"duckdb://{t}").write(batch),
        "bare INSERT, SET threads = 1": lambda t: bare(t, 1),
        "bare INSERT, default threads": lambda t: bare(t, None),
    }
    times: dict[str, list[float]] = {name: [] for name in ways}
    rng = random.Random(7)
    order = list(ways)
    for _ in range(rounds):
        rng.shuffle(order)
        for name in order:
            target = tmp / "probe.duckdb"
            for leftover in (target, target.with_name(target.name + ".wal")):
                leftover.unlink(missing_ok=True)
            shutil.copyfile(path, target)
            t = time.perf_counter()
            ways[name](target)
            times[name].append(time.perf_counter() - t)
    return {
        name: {
            "rows": batch.num_rows,
            "median_ms": statistics.median(ts) * 1e3,
            "us_per_row": statistics.median(ts) / batch.num_rows * 1e6,
            "all_ms": [round(x * 1e3, 1) for x in ts],
        }
        for name, ts in times.items()
    }


def file_size(path: Path) -> int:
    wal = path.with_name(path.name + ".wal")
    return sum(p.stat().st_size for p in (path, wal) if p.exists())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events to track (default 1,000,000)")
    parser.add_argument("--days", type=float, default=30.0, help="days the timestamps span (default 30)")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each query (default 5)")
    parser.add_argument(
        "--probe-rows", type=int, default=200_000, help="rows of the append probe batch (0: skip the probe)"
    )
    parser.add_argument("--probe-rounds", type=int, default=3, help="runs of each append way (default 3)")
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the DuckDB file")
    args = parser.parse_args(argv)

    import duckdb

    from botmeter import Meter

    env = environment()
    print(f"python {env['python']}, {env['nproc']} cores, {env['cpu_model']}, load {env['loadavg_at_start']}")
    tmp = Path(tempfile.mkdtemp(prefix="botmeter-storage-"))
    path = tmp / "bench.duckdb"
    meter = Meter(
        bot="bench",
        store=f"duckdb://{path}",
        max_buffer=args.events + 1_000,
        max_buffer_mb=args.events * 400 / 2**20 + 64,
    )
    t0 = time.perf_counter()
    counts = produce(meter, args.events)
    flushed = meter.flush(timeout=900)
    dropped = meter.stats()["dropped"]
    meter.close()
    write_s = time.perf_counter() - t0
    check = verify(path, counts)
    size = file_size(path)

    con = duckdb.connect(str(path), read_only=True)
    try:
        db_size = con.execute("PRAGMA database_size").fetchall()
        db_cols = [d[0] for d in con.description]
    finally:
        con.close()
    retimed = tmp / "retimed.duckdb"
    parquet = tmp / "events.parquet"
    end_us = int(datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0).timestamp() * 1e6)
    start_us = end_us - int(args.days * 86_400e6)
    step_us = (end_us - start_us) / args.events
    con = duckdb.connect()
    try:
        con.execute(f"ATTACH '{path}' AS src (READ_ONLY)")
        con.execute(f"COPY src.events TO '{parquet}' (FORMAT parquet, COMPRESSION zstd)")
        con.execute(f"ATTACH '{retimed}' AS retimed")
        con.execute(
            "CREATE TABLE retimed.events AS SELECT * REPLACE (make_timestamp(CAST("
            f"{start_us} + (row_number() OVER (ORDER BY ts, event_id) - 1) * {step_us!r} AS BIGINT)) AS ts) "
            "FROM src.events ORDER BY ts, event_id"
        )
        con.execute("DETACH retimed")
    finally:
        con.close()
    retimed_size = file_size(retimed)
    parquet_size = parquet.stat().st_size
    con = duckdb.connect(str(retimed), read_only=True)
    try:
        first_ts, last_ts = con.execute("SELECT min(ts), max(ts) FROM events").fetchone()
    finally:
        con.close()

    timings: dict[str, dict[str, Any]] = {}
    opens = []
    for name, sql in QUERIES.items():
        runs = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            con = duckdb.connect(str(retimed), read_only=True)
            opened = time.perf_counter()
            rows = con.execute(sql).fetchall()
            done = time.perf_counter()
            con.close()
            opens.append(opened - t)
            runs.append(done - opened)
        timings[name] = {
            "sql": sql,
            "result_rows": len(rows),
            "first_ms": runs[0] * 1e3,
            "median_ms": statistics.median(runs) * 1e3,
            "min_ms": min(runs) * 1e3,
        }

    probe = append_probe(path, tmp, args.probe_rows, args.probe_rounds) if args.probe_rows else {}

    mb = lambda b: b / 1e6  # noqa: E731
    print(f"\n{args.events:,} events of the mix")
    print(f"  tracked, written and closed in {write_s:.1f} s; flushed={flushed}, dropped={dropped}")
    print(
        f"  check: rows {check['rows']:,}, distinct ids {check['distinct_event_ids']:,}, "
        f"expected {check['expected']:,} -> {'ok' if check['ok'] else 'NOT OK'}"
    )
    print(
        f"  file after close:           {mb(size):8.1f} MB = {size / args.events:6.1f} bytes/event "
        f"= {mb(size) / (args.events / 1e6):6.1f} MB per million events"
    )
    print(f"  PRAGMA database_size: {dict(zip(db_cols, db_size[0], strict=True))}")
    pq = parquet_size / args.events
    print(f"  zstd Parquet export:        {mb(parquet_size):8.1f} MB = {pq:6.1f} bytes/event")
    print(
        f"  re-timed copy, written at once: {mb(retimed_size):.1f} MB = {retimed_size / args.events:.1f} "
        f"bytes/event ({first_ts} .. {last_ts})"
    )
    print(
        f"\n  queries on the re-timed copy; read-only connect: median {statistics.median(opens) * 1e3:.1f} ms"
    )
    print(f"  {'query':<28} {'first ms':>9} {'median ms':>10} {'min ms':>8}  rows")
    for name, t in timings.items():
        print(
            f"  {name:<28} {t['first_ms']:9.1f} {t['median_ms']:10.1f} {t['min_ms']:8.1f}  {t['result_rows']}"
        )

    if probe:
        print(f"\n  appending one new batch of {args.probe_rows:,} events to a copy of the file (median):")
        for name, p in probe.items():
            print(f"  {name:<45} {p['median_ms']:8.1f} ms = {p['us_per_row']:5.2f} us/event  {p['all_ms']}")

    if args.json:
        out = {
            "benchmark": "storage",
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "environment": env,
            "events": args.events,
            "days": args.days,
            "write_seconds": write_s,
            "flushed": flushed,
            "dropped": dropped,
            "check": check,
            "file_bytes": size,
            "bytes_per_event": size / args.events,
            "mb_per_million_events": mb(size) / (args.events / 1e6),
            "retimed_copy_bytes": retimed_size,
            "retimed_span": [str(first_ts), str(last_ts)],
            "parquet_zstd_bytes": parquet_size,
            "database_size": dict(zip(db_cols, [str(v) for v in db_size[0]], strict=True)),
            "connect_ms_median": statistics.median(opens) * 1e3,
            "queries": timings,
            "append_probe": probe,
            "counts": counts,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2, default=str) + "\n")
        print(f"wrote {args.json}")
    if args.keep:
        print(f"kept {path}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if check["ok"] and not dropped else 2


if __name__ == "__main__":
    sys.exit(main())
