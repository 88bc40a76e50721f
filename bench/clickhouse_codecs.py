"""Bytes per event of the ClickHouse events table: the codecs botmeter chose against the defaults.

Tracks N events of the ingest benchmark's realistic mix (bench/ingest.py) into a ``chdb://`` store,
then copies its ``events`` table into tables that differ only in their codecs, merges every table
to one part per month (as the background merges end up) and reports the bytes on disk per event
of each, per column and in total, with the DuckDB file's for the same events.

    PYTHONPATH=src .venv/bin/python bench/clickhouse_codecs.py [--events 1000000] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from ingest import produce
from track_call import environment

VARIANTS = {
    "chosen": None,  # schema._CODECS as shipped
    "default (LZ4)": {},
    "ZSTD(1) everywhere": "ZSTD(1)",
    "ZSTD(3) everywhere": "ZSTD(3)",
}


def main(argv: list[str] | None = None) -> int:
    from botmeter import Meter
    from botmeter.backends.clickhouse import schema

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    env = environment()
    print(f"python {env['python']}, {env['nproc']} cores, {env['cpu_model']}, load {env['loadavg_at_start']}")
    tmp = Path(tempfile.mkdtemp(prefix="botmeter-codecs-"))
    sizes: dict[str, Any] = {}
    try:
        settings = {"max_buffer": args.events + 1000, "max_buffer_mb": args.events * 400 / 2**20 + 64}
        for scheme in ("duckdb", "chdb"):
            meter = Meter(bot="bench", store=f"{scheme}://{tmp}/events.{scheme}", **settings)
            produce(meter, args.events)
            meter.close(timeout=900)
            if scheme == "duckdb":
                sizes["duckdb file"] = meter.store.size_bytes()
                continue
            store = meter.store
        with store.client() as c:
            n = int(c.command("SELECT count() FROM events"))
            per_column: dict[str, dict[str, float]] = {}
            for label, codec in VARIANTS.items():
                table = "events" if codec is None else f"events_{len(per_column)}"
                if codec is not None:
                    columns = ", ".join(
                        f"{name} {schema.column_type(name, sql_type)}"
                        + (f" CODEC({codec})" if isinstance(codec, str) else "")
                        for name, (sql_type, _) in schema.COLUMNS.items()
                    )
                    c.command(
                        f"CREATE TABLE {table} ({columns}) ENGINE = MergeTree PARTITION BY "
                        f"{schema.PARTITION_KEY} "
                        f"ORDER BY {schema.ORDER_KEY} SETTINGS allow_nullable_key = 1"
                    )
                    c.command(f"INSERT INTO {table} SELECT * FROM events")
                c.command(f"OPTIMIZE TABLE {table} FINAL")
                rows = c.query(
                    "SELECT column, sum(column_data_compressed_bytes) FROM system.parts_columns "
                    "WHERE active AND database = currentDatabase() AND table = {t:String} GROUP BY column",
                    parameters={"t": table},
                ).result_rows
                per_column[label] = {name: int(b) / n for name, b in rows}
                total = c.command(
                    "SELECT sum(bytes_on_disk) FROM system.parts WHERE active AND database = "
                    "currentDatabase() "
                    "AND table = {t:String}",
                    parameters={"t": table},
                )
                sizes[label] = int(total)
            rollups = c.command(
                "SELECT sum(bytes_on_disk) FROM system.parts WHERE active AND database = currentDatabase() "
                "AND table LIKE 'rollup_%'"
            )
        store.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n{n:,} events of the ingest mix; bytes on disk per event, after merging:")
    for label, total in sizes.items():
        print(f"  {label:<22} {total / n:6.1f}")
    print(f"  rollups (chdb, all)    {int(rollups) / n:6.1f}")
    print("\nper column (compressed bytes/event): " + ", ".join(VARIANTS))
    for name in schema.COLUMNS:
        print(f"  {name:<20} " + " ".join(f"{per_column[v].get(name, 0):7.2f}" for v in VARIANTS))
    if args.json:
        out = {
            "benchmark": "clickhouse_codecs",
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "environment": env,
            "events": n,
            "bytes_per_event": {k: v / n for k, v in sizes.items()},
            "rollup_bytes_per_event": int(rollups) / n,
            "per_column": per_column,
        }
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
