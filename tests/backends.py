"""The backends the engine tests run against, by name: the metric oracle suite (test_metrics.py)
builds its store through each one and asks every catalogue metric of its engine, on both read
paths (rollups and events only). A new backend passes the same suite by adding one entry here.

Each entry says how to make a fresh store URL in a directory and how to read back rows of its
``events`` table with plain SQL (``event_id`` as text, ``ts`` as a naive UTC datetime), for the
figures the oracle takes from the store (costs, error categories, severities, fingerprints).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from conftest import query


@dataclass(frozen=True)
class TestBackend:
    name: str
    url: Callable[[Path], str]  # a fresh store in this directory
    rows: Callable[[str, str], list[tuple]]  # (store URL, SQL over events) -> rows

    __test__ = False  # not a test class


def _duckdb_rows(url: str, sql: str) -> list[tuple]:
    return query(Path(url.removeprefix("duckdb://")), sql)


def _chdb_rows(url: str, sql: str) -> list[tuple]:
    from botmeter.store import open_store

    store = open_store(url)
    try:
        with store.client() as client:
            return [tuple(row) for row in client.query(sql).result_rows]
    finally:
        store.close()  # the embedded engine holds one folder per process: let the next one in


TEST_BACKENDS: dict[str, TestBackend] = {
    "duckdb": TestBackend("duckdb", lambda d: f"duckdb://{d}/m.duckdb", _duckdb_rows),
    # The embedded ClickHouse engine, through the same clickhouse-connect client as a server.
    "chdb": TestBackend("chdb", lambda d: f"chdb://{d}/m.chdb", _chdb_rows),
}
ENGINES = list(TEST_BACKENDS)
