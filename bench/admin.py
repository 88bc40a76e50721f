"""How long a bot waits for each chat admin command's reply over DuckDB stores of 1M and 10M events.

A real ``Meter`` of the bot the data belongs to (its writer running) over a copy of the store
``bench/analysis.py`` builds: the commands track themselves as activities, which must not change the
shared store. Each command is asked through ``meter.admin_reply`` as a bot would, once cold (the
meter's first reply) and then ``--repeat`` times; the figures are the first, the best and the median.
The analytics commands flush the meter first and read the store; ``admin:status`` counts the events
and finds the newest.

    python bench/admin.py                      # 1M and 10M
    python bench/admin.py --sizes 10 --repeat 5
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from analysis import _store
from botmeter import Meter
from botmeter.process.sms import sms_parts

ADMIN = "+15550001111"
COMMANDS = ("admin:status", "admin:analytics_status", "admin:costs 30", "admin:errors", "admin:help")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,10", help="Store sizes in millions of events.")
    parser.add_argument("--days", type=int, default=30, help="Days the events span.")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=Path("/tmp"))
    args = parser.parse_args()
    now = datetime.now(UTC)
    rows = []
    for size in (float(s) for s in args.sizes.split(",")):
        work = Path(tempfile.mkdtemp())
        copy = work / "store.duckdb"
        shutil.copyfile(_store(args.dir, size, args.days, now), copy)
        with Meter(
            bot="dadacat", store=f"duckdb://{copy}", admins=[ADMIN], spool_dir=str(work / "spool")
        ) as meter:
            for command in COMMANDS:
                times = []
                for _ in range(args.repeat + 1):
                    t = time.perf_counter()
                    reply = meter.admin_reply(sender=ADMIN, text=command)
                    times.append(time.perf_counter() - t)
                segments = sms_parts(reply)[0]
                first, warm = times[0], times[1:]
                rows.append((size, command, first, min(warm), statistics.median(warm), segments))
                print(
                    f"{size:g}M {command:<24} first {first * 1000:7.1f} ms, best {min(warm) * 1000:7.1f} ms, "
                    f"median {statistics.median(warm) * 1000:7.1f} ms; {segments} segment(s): {reply[:70]}..."
                )
        shutil.rmtree(work)
    print("\n| events | command | first | best | median | SMS segments |")
    print("|---:|---|---:|---:|---:|---:|")
    for size, command, first, best, median, segments in rows:
        print(
            f"| {size:g}M | `{command}` | {first * 1000:.0f} ms | {best * 1000:.0f} ms | "
            f"{median * 1000:.0f} ms | {segments} |"
        )


if __name__ == "__main__":
    main()
