"""Reading back what an instrumented SDK call stored: shared by the test_instrument_* files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb


def events(meter: Any, store_path: Path, kind: str | None = None) -> list[dict[str, Any]]:
    """Closes ``meter`` (everything written) and returns the stored events, oldest first, as dicts
    with ``properties`` parsed from JSON."""
    meter.close()
    sql = "SELECT * FROM events" + (f" WHERE kind = '{kind}'" if kind else "") + " ORDER BY ts"
    con = duckdb.connect(str(store_path), read_only=True)
    try:
        cur = con.execute(sql)
        names = [d[0] for d in cur.description]
        rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    finally:
        con.close()
    for row in rows:
        row["properties"] = json.loads(row["properties"]) if row["properties"] else {}
    return rows
