"""The query service's answer time per request: ``botmeter serve`` reading a DuckDB file and the
embedded ClickHouse engine, as a client polling it sees it.

Each store is served by a fresh ``botmeter serve`` process on 127.0.0.1; one client (a read token
of the store's bot) asks ``GET /metrics/<metric>?start=...&end=...&interval=day`` for the last
seven days ``--requests`` times, ``--gap`` seconds apart, each window an hour longer than the last
(no answer is a repeat of the one before). The first request (which opens the store and loads the server's
code) is reported apart. The embedded engine runs twice: with its default ``idle_hold`` (the
engine stays open between requests) and with ``idle_hold=0`` (let go after each request, as
before the option existed), to show what keeping it open is worth.

The stores are the dashboard benchmark's (``bench/dashboard.py --sizes 1 --dir DIR`` makes
``bench-1m-30d.duckdb`` and ``bench-1m-30d.chdb`` there):

    PYTHONPATH=src .venv/bin/python bench/query_service.py --dir DIR [--size 1] [--requests 20]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from collector_server import CollectorProcess, create_token  # noqa: E402


def bot_of(url: str) -> str:
    from botmeter.analyse import Reader

    reader = Reader(url)
    try:
        by_bot = reader.query("messages", days=3650, by=["bot"], interval=None).json_rows()
    finally:
        reader.store.close()
    return max(by_bot, key=lambda row: row.get("count") or 0)["bot"]


def serve_and_ask(url: str, bot: str, metric: str, requests: int, gap: float, log: Path) -> dict[str, Any]:
    token = create_token(url, bot, "read")
    server = CollectorProcess(url).start(log, timeout=120)
    times = []
    try:
        headers = {"authorization": f"Bearer {token}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=120) as client:
            end = datetime.now(UTC).replace(microsecond=0)
            for i in range(requests + 1):
                window = {"start": (end - timedelta(days=7, hours=i)).isoformat(), "end": end.isoformat()}
                start = time.perf_counter()
                answer = client.get(f"/metrics/{metric}", params={**window, "interval": "day"})
                times.append(time.perf_counter() - start)
                answer.raise_for_status()
                time.sleep(gap)
    except httpx.HTTPError as exc:
        raise SystemExit(f"{url}: {exc}: {server.logs()}") from exc
    finally:
        server.stop()
    later = times[1:]
    return {
        "first_ms": times[0] * 1000,
        "median_ms": statistics.median(later) * 1000,
        "p90_ms": statistics.quantiles(later, n=10)[-1] * 1000,
        "requests": len(later),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, required=True, help="where bench/dashboard.py left its stores")
    parser.add_argument("--size", default="1", help="the stores' size in millions of events (default 1)")
    parser.add_argument("--metric", default="cost_usd")
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--gap", type=float, default=0.2, help="seconds between requests (default 0.2)")
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    args = parser.parse_args()

    base = args.dir / f"bench-{args.size}m-30d"
    stores = {
        "duckdb": f"duckdb://{base}.duckdb",
        "chdb (idle_hold default, 1 s)": f"chdb://{base}.chdb",
        "chdb (idle_hold=0)": f"chdb://{base}.chdb?idle_hold=0",
    }
    bot = bot_of(stores["duckdb"])
    print(
        f"{args.requests} requests {args.gap} s apart, GET /metrics/{args.metric} over 7 days by day; "
        f"{args.size}M-event stores in {args.dir}; {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}"
    )
    results = {}
    for name, url in stores.items():
        r = serve_and_ask(url, bot, args.metric, args.requests, args.gap, args.dir / "query_service.log")
        results[name] = r
        print(
            f"  {name:<32} first {r['first_ms']:7.0f} ms   then median {r['median_ms']:6.1f} ms, "
            f"p90 {r['p90_ms']:6.1f} ms"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
