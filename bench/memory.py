"""Peak memory of a bot that tracks as fast as it can: small events, or 100 KB of properties each.

A real ``Meter`` on a DuckDB file in a temporary directory, default settings (400,000 events,
100 MB), writer running. The bot tracks for ``--seconds`` (default 10) in a tight loop, so the
buffer fills and the track calls drop (and count) what does not fit; then it flushes. Reported:
the process's peak resident memory (``ru_maxrss``) against its size at the start, the most
records the buffer held and what it accounted for them, and what was stored and dropped.

    PYTHONPATH=src .venv/bin/python bench/memory.py [--events small|big] [--seconds 10]

Recorded, not gated: the figure depends on the allocator and on DuckDB's own memory for a write.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time

from botmeter import Meter


def resident_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", choices=("small", "big"), default="small")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    meter = Meter(bot="bench", store=f"duckdb://{tempfile.mkdtemp(prefix='botmeter-memory-')}/m.duckdb")
    at_start = resident_mb()
    properties = {"blob": "x" * 100_000}
    tracked = 0
    most, most_bytes = 0, 0
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        for _ in range(1000):
            if args.events == "big":
                meter.track_custom("e", properties=properties)
            else:
                meter.track_message(direction="in", user="+15551234567", conversation="c-1")
        tracked += 1000
        if meter._buffer.size > most:
            most, most_bytes = meter._buffer.size, meter._buffer.bytes
    flushed = meter.flush(300)
    stats = meter.stats()
    meter.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{args.events} events for {args.seconds:g} s: tracked {tracked:,}, stored {stats['written']:,}, "
        f"dropped {stats['dropped']:,} (flush {flushed}); "
        f"peak RSS {peak:.0f} MB, {at_start:.0f} MB at start; "
        f"buffer at most {most:,} records, {most_bytes / 2**20:.0f} MB accounted"
    )


if __name__ == "__main__":
    main()
