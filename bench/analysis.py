"""How long a 30-day dashboard's whole query set takes, over DuckDB stores of 1M, 10M and 100M events.

The query set is ``botmeter.analyse.dashboard_figures.dashboard_data``: KPIs against the previous period,
cost by provider and model per day, top users and conversations by cost, the month-end
forecast, active/new/returning users, conversations, messages, conversation length and
duration, weekly retention, activities, traffic by hour, errors by category and severity, error
rate, error groups, latency p50/p95/p99 per day by stage and by model, and anomalies (which read
four daily series over the period and the four weeks before it).

For comparison, in the same run: the same set answered from the ``events`` table alone
(``use_rollups=False``: plain DuckDB SQL over the events, as one would write it without rollups).

    python bench/analysis.py                       # 1M and 10M
    python bench/analysis.py --sizes 1,10,100      # 100M needs ~10 minutes to build and ~5 GB
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SRC = Path(__file__).resolve().parents[1] / "src"
sys.path.insert(0, str(SRC))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import duckdb  # noqa: E402

from analysis_data import fill  # noqa: E402
from botmeter.analyse import Reader  # noqa: E402
from botmeter.analyse.dashboard_figures import dashboard_data  # noqa: E402


def _store(directory: Path, millions: float, days: int, now: datetime) -> Path:
    path = directory / f"bench-{millions:g}m-{days}d.duckdb"
    events = int(millions * 1_000_000)
    if path.exists():
        con = duckdb.connect(str(path), read_only=True)
        try:
            (count, last) = con.execute("SELECT count(*), max(ts) FROM events").fetchall()[0]
        finally:
            con.close()
        # Reuse a store of the right size made within the hour (the windows are relative to now).
        if count >= events * 0.99 and (now.replace(tzinfo=None) - last).total_seconds() < 7200:
            print(f"  reusing {path} ({count:,} events)")
            return path
        for p in directory.glob(path.name + "*"):
            if p.is_dir():
                continue
            p.unlink()
    end = now.replace(minute=0, second=0, microsecond=0, tzinfo=None)
    seconds = fill(path, events, days, end)
    print(f"  built {events:,} events in {seconds:.1f} s (rollups included) -> {path}")
    return path


def _chdb_store(duck: Path, repeat: int = 1) -> Path:
    """The same events in the embedded ClickHouse engine (a ``chdb://`` folder beside the DuckDB
    file), written through ``ClickHouseStore.write`` in batches of a million in time order, so its
    materialized views keep the rollups as they would for a bot's writes. ``repeat`` > 1 writes the
    events that many times, each copy with new event ids and its own users and conversations
    (ids suffixed), for a store ``repeat`` times as big over the same days."""
    import shutil

    import pyarrow as pa
    import pyarrow.compute as pc

    from botmeter.store import open_store

    millions = float(duck.name.split("-")[1][:-1]) * repeat
    path = duck.with_name(f"bench-{millions:g}m-{duck.name.split('-')[2].split('.')[0]}.chdb")
    con = duckdb.connect(str(duck), read_only=True)
    try:
        con.execute("SET arrow_lossless_conversion = true")
        (count,) = con.execute("SELECT count(*) FROM events").fetchall()[0]
        store = open_store(f"chdb://{path}")
        try:
            if path.exists() and store.count() == count * repeat:
                print(f"  reusing {path} ({count * repeat:,} events)")
                return path
        finally:
            store.close()
        shutil.rmtree(path, ignore_errors=True)
        store = open_store(f"chdb://{path}")
        t = time.perf_counter()
        try:
            for r in range(repeat):
                reader = con.sql("SELECT * FROM events ORDER BY ts").to_arrow_reader(1_000_000)
                for batch in reader:
                    table = pa.Table.from_batches([batch])
                    if r:
                        table = _another_copy(table, r, pa, pc)
                    store.write(table, fresh=True)
        finally:
            store.close()
        print(f"  built {count * repeat:,} events in chdb in {time.perf_counter() - t:.1f} s -> {path}")
    finally:
        con.close()
    return path


def _another_copy(table: Any, r: int, pa: Any, pc: Any) -> Any:
    import uuid

    suffix = f"~{r}"
    ids = pa.array([uuid.uuid4().bytes for _ in range(table.num_rows)], pa.binary(16))
    column = table.column("event_id")
    typ = column.type
    ids = pa.ExtensionArray.from_storage(typ, ids) if isinstance(typ, pa.ExtensionType) else ids.cast(typ)
    table = table.set_column(table.schema.get_field_index("event_id"), "event_id", ids)
    for name in ("user_id", "conversation_id"):
        i = table.schema.get_field_index(name)
        table = table.set_column(i, name, pc.binary_join_element_wise(table.column(name), suffix, ""))
    return table


def _disk_bytes(url: str) -> int:
    """Bytes on disk of a store: the DuckDB file (and its WAL), or ClickHouse's active parts."""
    from botmeter.store import open_store

    store = open_store(url)
    try:
        if url.startswith("chdb://"):
            return store.size_bytes()
        path = Path(store.path)
        return sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file())
    finally:
        store.close()


def _timed_parts(reader: Reader, days: int) -> tuple[float, list[tuple[float, str]]]:
    parts: list[tuple[float, str]] = []
    run = reader.engine.run

    def timed(query):
        t = time.perf_counter()
        try:
            return run(query)
        finally:
            label = query.metric + (f" by {','.join(query.by)}" if query.by else "")
            label += f" {','.join(query.stats)} {query.interval or 'total'}"
            parts.append((time.perf_counter() - t, label))

    reader.engine.run = timed
    try:
        t = time.perf_counter()
        dashboard_data(reader, days)
        return time.perf_counter() - t, parts
    finally:
        reader.engine.run = run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,10", help="Store sizes in millions of events.")
    parser.add_argument("--days", type=int, default=30, help="Days the events span and the dashboard shows.")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=Path("/tmp"))
    parser.add_argument("--no-events-only", action="store_true", help="Skip the events-only comparison.")
    parser.add_argument("--all", action="store_true", help="Print every query's time in the best run.")
    args = parser.parse_args()
    now = datetime.now(UTC)
    results = []
    for size in (float(s) for s in args.sizes.split(",")):
        print(f"{size:g}M events over {args.days} days")
        path = _store(args.dir, size, args.days, now)
        reader = Reader(f"duckdb://{path}")
        first, _ = _timed_parts(reader, args.days)
        runs = [_timed_parts(reader, args.days) for _ in range(args.repeat)]
        best_total, best_parts = min(runs, key=lambda r: r[0])
        median = statistics.median(r[0] for r in runs)
        print(
            f"  dashboard query set: first {first:.3f} s, best {best_total:.3f} s, median {median:.3f} s "
            f"({len(best_parts)} queries)"
        )
        for seconds, label in sorted(best_parts, reverse=True)[: None if args.all else 6]:
            print(f"    {seconds * 1000:7.1f} ms  {label}")
        plain = None
        if not args.no_events_only:
            plain_reader = Reader(f"duckdb://{path}", use_rollups=False)
            plain, _ = _timed_parts(plain_reader, args.days)
            print(f"  events only (no rollups): {plain:.3f} s = {plain / best_total:.1f}x the rollups' best")
        size_mb = sum(p.stat().st_size for p in path.parent.glob(path.name + "*") if p.is_file()) / 1e6
        results.append((size, first, best_total, median, plain, size_mb))
    print("\n| events | first run | best | median | events only | store size |")
    print("|---:|---:|---:|---:|---:|---:|")
    for size, first, best, median, plain, size_mb in results:
        shown = "-" if plain is None else f"{plain:.2f} s ({plain / best:.1f}x)"
        print(f"| {size:g}M | {first:.3f} s | {best:.3f} s | {median:.3f} s | {shown} | {size_mb:,.0f} MB |")


if __name__ == "__main__":
    main()
