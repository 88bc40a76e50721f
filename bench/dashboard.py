"""How long `botmeter dashboard` takes for 30 days over DuckDB stores of 1M and 10M events (and over
the same events in the embedded ClickHouse engine, ``--engines duckdb,chdb``), and how big the file
it writes is.

Timed end to end as the command does it: open the store, gather every figure
(``analyse.dashboard_figures.dashboard_data``: the period summary, 21 series, error groups, anomalies),
render the HTML, write it and the JSON beside it. The first run is cold (a fresh process's first
read of the file); the rest are warm. These runs are in this process, with botmeter and the
engine's client already imported; the command itself (``python -m botmeter dashboard``, a fresh
interpreter each time: start, imports, the same work) is timed too, as wall time, ``--commands``
times (the "command" column).

For comparison, in the same run: the same dashboard with the figures read from the ``events``
table alone (``use_rollups=False``: plain SQL over the events, as one would write it without
rollups).

    python bench/dashboard.py                  # 1M and 10M (the stores are shared with bench/analysis.py)
    python bench/dashboard.py --sizes 10 --repeat 5
    python bench/dashboard.py --sizes 10 --engines duckdb,chdb      # both engines, same events
    python bench/dashboard.py --sizes 10 --engines chdb --chdb-copies 10   # chdb at 100M
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from analysis import _chdb_store, _disk_bytes, _store
from botmeter.analyse import Reader
from botmeter.report.dashboard import write_dashboard


def _once(url: str, days: int, out: Path, *, use_rollups: bool = True) -> tuple[float, float, float]:
    """(total, figures, render+write) seconds for one dashboard."""
    import botmeter.report.dashboard as report

    gathered: dict[str, float] = {}
    gather = report.dashboard_data

    def timed_gather(*a, **kw):
        t = time.perf_counter()
        try:
            return gather(*a, **kw)
        finally:
            gathered["s"] = time.perf_counter() - t

    report.dashboard_data = timed_gather
    try:
        t = time.perf_counter()
        write_dashboard(Reader(url, use_rollups=use_rollups), days, out, with_json=True)
        total = time.perf_counter() - t
    finally:
        report.dashboard_data = gather
    return total, gathered["s"], total - gathered["s"]


def _command(url: str, days: int, out: Path) -> float:
    """Wall seconds of ``botmeter dashboard`` in a fresh interpreter, over this checkout's code."""
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    argv = [sys.executable, "-m", "botmeter", "dashboard", "--store", url, "--days", str(days)]
    t = time.perf_counter()
    subprocess.run([*argv, "--output", str(out), "--json"], check=True, env=env, capture_output=True)
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,10", help="Store sizes in millions of events.")
    parser.add_argument("--days", type=int, default=30, help="Days the events span and the dashboard shows.")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=Path("/tmp"))
    parser.add_argument("--no-events-only", action="store_true", help="Skip the events-only comparison.")
    parser.add_argument("--commands", type=int, default=3, help="Runs of the command itself (0: none).")
    parser.add_argument(
        "--engines",
        default="duckdb",
        help="Engines to time in this run, comma-separated: duckdb, chdb (the embedded ClickHouse "
        "engine, holding the same events as the DuckDB store of each size).",
    )
    parser.add_argument(
        "--chdb-copies",
        type=int,
        default=1,
        help="The chdb store holds the DuckDB store's events this many times (new ids, users and "
        "conversations per copy): 10 over the 10M store makes 100M.",
    )
    args = parser.parse_args()
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    now = datetime.now(UTC)
    out = Path(tempfile.mkdtemp()) / "dashboard.html"
    results = []
    for size in (float(s) for s in args.sizes.split(",")):
        duck = _store(args.dir, size, args.days, now)
        for engine in engines:
            if engine == "chdb":
                # Each run opens the engine, as the command does in a fresh process: the engine
                # kept open between runs (idle_hold) would make the repeats look faster than it.
                url = f"chdb://{_chdb_store(duck, args.chdb_copies)}?idle_hold=0"
                events = size * args.chdb_copies
            else:
                url = f"duckdb://{duck}"
                events = size
            print(f"{engine}: {events:g}M events over {args.days} days")
            first = _once(url, args.days, out)
            runs = [_once(url, args.days, out) for _ in range(args.repeat)]
            best = min(runs)
            median = statistics.median(r[0] for r in runs)
            html_kb = out.stat().st_size / 1024
            json_kb = out.with_suffix(".json").stat().st_size / 1024
            per_event = _disk_bytes(url) / (events * 1e6)
            print(
                f"  first {first[0]:.3f} s, best {best[0]:.3f} s (figures {best[1]:.3f} s, render and write "
                f"{best[2]:.3f} s), median {median:.3f} s; HTML {html_kb:,.0f} KiB, JSON {json_kb:,.0f} KiB; "
                f"{per_event:.1f} bytes per event on disk"
            )
            command = None
            if args.commands:
                command = statistics.median(_command(url, args.days, out) for _ in range(args.commands))
                print(f"  the command, a fresh interpreter each run: median {command:.3f} s")
            plain = None
            if not args.no_events_only:
                plain = _once(url, args.days, out, use_rollups=False)[0]
                print(f"  events only (no rollups): {plain:.3f} s = {plain / best[0]:.1f}x the rollups' best")
            row = (engine, events, first[0], best[0], median, command, plain, html_kb, json_kb, per_event)
            results.append(row)
    print("\n| engine | events | first run | best | median | command | events only | HTML | JSON ", end="")
    print("| bytes/event |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for engine, events, first_s, best_s, median, command, plain, html_kb, json_kb, per_event in results:
        shown = "-" if plain is None else f"{plain:.2f} s ({plain / best_s:.1f}x)"
        run = "-" if command is None else f"{command:.3f} s"
        print(
            f"| {engine} | {events:g}M | {first_s:.3f} s | {best_s:.3f} s | {median:.3f} s | {run} | "
            f"{shown} | {html_kb:,.0f} KiB | {json_kb:,.0f} KiB | {per_event:.1f} |"
        )


if __name__ == "__main__":
    main()
