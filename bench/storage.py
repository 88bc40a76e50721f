"""Size on disk of the realistic mix, and a few plain DuckDB queries over it (recorded, not gated).

Tracks N events (``--events``, default 1,000,000) of bench/ingest.py's mix through a real Meter
into a fresh DuckDB file, closes the meter, and reports the file's size (file + WAL, after close)
per event and per million events. For reference it also reports the same rows copied once into a
fresh file (what the data takes when written in one go, against the writer's batch-by-batch
appends) and as a zstd Parquet export, plus DuckDB's own block counts for the file.

The mix is the same producer as bench/ingest.py; so that per-day queries see days, a processor on
the writer thread rewrites timestamps to spread the events evenly over the last ``--days`` days
(in tracking order; pricing has already run with the real time by then).

Then it times, on a read-only connection, each query ``--repeat`` times (first and median):
count by kind, LLM cost by model by day, daily distinct users.

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


def spread_timestamps(n_events: int, days: float) -> Any:
    """A processor: the k-th event written gets start + k * step; ``days`` days up to today 00:00 UTC."""
    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    start = end - days * 86_400
    step = days * 86_400 / n_events
    seen = 0

    def spread_ts(frame: Any) -> Any:
        nonlocal seen
        frame.columns["ts"] = [start + (seen + j) * step for j in range(frame.n)]
        seen += frame.n
        return frame

    return spread_ts


def file_size(path: Path) -> int:
    wal = path.with_name(path.name + ".wal")
    return sum(p.stat().st_size for p in (path, wal) if p.exists())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events to track (default 1,000,000)")
    parser.add_argument("--days", type=float, default=30.0, help="days the timestamps span (default 30)")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each query (default 5)")
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the DuckDB file")
    args = parser.parse_args(argv)

    import duckdb

    from botmeter.collect.meter import Meter

    env = environment()
    print(f"python {env['python']}, {env['nproc']} cores, {env['cpu_model']}, load {env['loadavg_at_start']}")
    tmp = Path(tempfile.mkdtemp(prefix="botmeter-storage-"))
    path = tmp / "bench.duckdb"
    meter = Meter(
        bot="bench",
        store=f"duckdb://{path}",
        max_buffer=args.events + 1_000,
        processors=[spread_timestamps(args.events, args.days)],
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
        first_ts, last_ts = con.execute("SELECT min(ts), max(ts) FROM events").fetchone()
    finally:
        con.close()
    compact = tmp / "compact.duckdb"
    parquet = tmp / "events.parquet"
    con = duckdb.connect()
    try:
        con.execute(f"ATTACH '{path}' AS src (READ_ONLY)")
        con.execute(f"ATTACH '{compact}' AS compact")
        con.execute("CREATE TABLE compact.events AS SELECT * FROM src.events")
        con.execute("DETACH compact")
        con.execute(f"COPY src.events TO '{parquet}' (FORMAT parquet, COMPRESSION zstd)")
    finally:
        con.close()
    compact_size = file_size(compact)
    parquet_size = parquet.stat().st_size

    timings: dict[str, dict[str, Any]] = {}
    opens = []
    for name, sql in QUERIES.items():
        runs = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            con = duckdb.connect(str(path), read_only=True)
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

    mb = lambda b: b / 1e6  # noqa: E731
    print(f"\n{args.events:,} events of the mix over {args.days:g} days ({first_ts} .. {last_ts})")
    print(f"  tracked, written and closed in {write_s:.1f} s; flushed={flushed}, dropped={dropped}")
    print(
        f"  check: rows {check['rows']:,}, distinct ids {check['distinct_event_ids']:,}, "
        f"expected {check['expected']:,} -> {'ok' if check['ok'] else 'NOT OK'}"
    )
    print(
        f"  file after close:           {mb(size):8.1f} MB = {size / args.events:6.1f} bytes/event "
        f"= {mb(size) / (args.events / 1e6):6.1f} MB per million events"
    )
    for label, b in (("same rows written at once:", compact_size), ("zstd Parquet export:", parquet_size)):
        print(f"  {label:<27} {mb(b):8.1f} MB = {b / args.events:6.1f} bytes/event")
    print(f"  PRAGMA database_size: {dict(zip(db_cols, db_size[0], strict=True))}")
    print(f"\n  read-only connect: median {statistics.median(opens) * 1e3:.1f} ms")
    print(f"  {'query':<28} {'first ms':>9} {'median ms':>10} {'min ms':>8}  rows")
    for name, t in timings.items():
        print(
            f"  {name:<28} {t['first_ms']:9.1f} {t['median_ms']:10.1f} {t['min_ms']:8.1f}  {t['result_rows']}"
        )

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
            "compact_copy_bytes": compact_size,
            "parquet_zstd_bytes": parquet_size,
            "database_size": dict(zip(db_cols, [str(v) for v in db_size[0]], strict=True)),
            "connect_ms_median": statistics.median(opens) * 1e3,
            "queries": timings,
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
