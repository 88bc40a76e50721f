"""Exports to JSON, CSV and Parquet files, and the import of exported events.

* ``export_events``: the stored events of a window, every column, for another tool or another store.
  The store writes them (``export_events`` on a store that keeps the events themselves); a store
  that keeps only metrics (CloudWatch) cannot, and says so.
* ``export_metrics``: for each catalogue metric, the rows ``botmeter query METRIC`` gives, from any
  store a ``Reader`` reads; what the store cannot give is listed, never written as zero.
* ``import_events``: an events export (or a file shaped like one) back into a store. The whole file is
  checked before anything is written; then it goes through ``store.write`` a batch at a time, which
  skips ids already stored, so importing twice adds nothing and the rollups stay right.

Every file is written beside its target and renamed into place: an error leaves no half-written file.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import secrets
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Protocol, runtime_checkable

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from ..analyse.catalogue import CATALOGUE, load_plugins
from ..analyse.query import FigureUnavailable, QueryError, iso, utc, window_of
from ..events import COLUMNS, KINDS
from ..exceptions import BotmeterError, first_line
from ..process.pipeline import SCHEMA
from ..store import Store

FORMATS: Final = ("json", "jsonl", "csv", "parquet")  # jsonl: JSON Lines, one object a line
WHAT: Final = ("events", "metrics")
DEFAULT_DAYS: Final = 30
METRICS_SCHEMA: Final = "botmeter.metrics_export"
METRICS_VERSION: Final = 1
REQUIRED: Final = ("event_id", "ts", "kind")
_NEEDS: Final = "every event needs event_id, ts and kind"
IMPORT_BATCH_ROWS: Final = 245_760  # a store without a preferred size gets DuckDB's two row groups
_EXTENSIONS: Final = {
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}

Window = tuple[datetime, datetime]


class ExportError(BotmeterError, ValueError):
    """An export or import that cannot run as asked; the message names the option or the file's
    field, row and value."""


@runtime_checkable
class KeepsEvents(Protocol):
    """A store that keeps the events themselves (DuckDB): it can give them back, and it skips ids it
    already holds on any later write, which is what makes an import safe to repeat."""

    url: str

    def export_events(self, start: datetime, end: datetime, fmt: str, path: Path) -> int: ...

    def write(self, batch: pa.Table, *, fresh: bool = False, keep_open: bool = False) -> int: ...


def file_format(path: str | Path, fmt: str | None = None) -> str:
    """The format asked for, else the one the file's extension names, else JSON."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise ExportError(f"format: {fmt!r} is not one of {', '.join(FORMATS)}")
        return fmt
    return _EXTENSIONS.get(Path(path).suffix.lower(), "json")


def export_window(
    days: int | None = None,
    start: datetime | str | None = None,
    end: datetime | str | None = None,
    now: datetime | None = None,
) -> Window:
    """``days`` (today so far and the days before it; 30 by default) or ``start``/``end`` (ISO, UTC),
    as ``botmeter query`` reads them."""
    return window_of(days, start, end, now, default_days=DEFAULT_DAYS)


@contextlib.contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` that becomes ``path`` when the block succeeds; on an error it
    is removed and ``path`` is left as it was."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")
    try:
        yield temporary
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())  # on disk before it takes the name
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


# -- events ------------------------------------------------------------------------------------


def export_events(store: Store, window: Window, fmt: str | None, path: str | Path) -> int:
    """Writes the stored events with ``window[0] <= ts < window[1]`` to ``path``; returns how many."""
    fmt = file_format(path, fmt)
    if not isinstance(store, KeepsEvents):
        raise FigureUnavailable(
            f"{store.url}: this store keeps metrics and records for queries, not the events themselves, "
            "so it cannot give them back; export its metrics instead (--what metrics)"
        )
    with replacing(path) as temporary:
        return store.export_events(window[0], window[1], fmt, temporary)


@dataclass(frozen=True)
class ImportResult:
    read: int  # events in the file
    added: int  # stored now
    skipped: int  # already in the store (or twice in the file): stored once

    def __str__(self) -> str:
        return f"read {self.read:,} events: added {self.added:,}, skipped {self.skipped:,} already stored"


def import_events(
    store: Store, path: str | Path, fmt: str | None = None, *, batch_rows: int | None = None
) -> ImportResult:
    """Stores the events of an events export (JSON array or JSON Lines, CSV, Parquet).

    The whole file is checked first; a problem raises ``ExportError`` naming the row, field and value,
    and nothing is written. Then the events go to ``store.write``, oldest first, ``batch_rows`` at a
    time; each write is all-or-nothing and skips ids already stored, so an import cut short (a full
    disk) is finished by running it again.
    """
    if not isinstance(store, KeepsEvents):
        raise FigureUnavailable(
            f"{store.url}: this store does not keep the events themselves, so it cannot tell which "
            "are already there; importing could count events twice. Import into a DuckDB store"
        )
    rows = batch_rows or getattr(store, "preferred_batch_rows", None) or IMPORT_BATCH_ROWS
    read = added = 0
    with contextlib.closing(read_events(path, fmt, rows)) as batches:
        for batch in batches:
            read += batch.num_rows
            added += store.write(batch)
    return ImportResult(read, added, read - added)


def read_events(
    path: str | Path, fmt: str | None = None, batch_rows: int = IMPORT_BATCH_ROWS
) -> Iterator[pa.Table]:
    """The events of an events file as Arrow tables in the stored schema, oldest first, ``batch_rows``
    at a time. The whole file is checked before the first table is given: a wrong value raises
    ``ExportError`` naming its row, field and value."""
    source = Path(path)
    if not source.is_file():
        raise ExportError(f"{source}: no such file")
    fmt = file_format(source, fmt)
    if source.stat().st_size == 0:
        return  # an empty file holds no events (a CSV without even a header too)
    with tempfile.TemporaryDirectory(prefix="botmeter-import-") as spill:
        con = duckdb.connect()
        try:
            # UTC whatever the machine's zone; beyond memory DuckDB spills to the temporary folder;
            # UUIDs come out as Arrow UUIDs, as the store's writer gives them.
            con.execute("SET TimeZone = 'UTC'")
            con.execute(f"SET temp_directory = '{_quoted_text(spill)}'")
            con.execute("SET arrow_lossless_conversion = true")
            kinds = _stage(con, source, fmt)
            unknown = [name for name in kinds if name not in COLUMNS]
            if unknown:
                raise ExportError(
                    f"{source}: unknown column{'s' if len(unknown) > 1 else ''} "
                    f"{', '.join(map(repr, unknown))}; the columns of an event are {', '.join(COLUMNS)}"
                )
            missing = [name for name in REQUIRED if name not in kinds]
            if missing:
                raise ExportError(f"{source}: no {' or '.join(missing)} column; {_NEEDS}")
            columns = {name: _Column(name, kinds[name]) for name in kinds}
            _check(con, source, columns)
            select = ", ".join(
                f'{columns[name].value} AS "{name}"' if name in columns else f'NULL::{sql_type} AS "{name}"'
                for name, (sql_type, _) in COLUMNS.items()
            )
            # Oldest first: each write then spans a short time, which keeps its check for stored ids short.
            reader = con.sql(
                f"SELECT * EXCLUDE (_row) FROM (SELECT rowid AS _row, {select} FROM staged) ORDER BY ts, _row"
            ).to_arrow_reader(batch_rows)
            for batch in reader:
                # The writer's names, order and types (properties as JSON text).
                yield pa.Table.from_batches([batch]).cast(SCHEMA)
        finally:
            con.close()


def _quoted_text(text: str) -> str:
    return text.replace("'", "''")


def _stage(con: duckdb.DuckDBPyConnection, source: Path, fmt: str) -> dict[str, str]:
    """Loads the file into the table ``staged`` (rowid = the event's place in the file, from 0) and
    returns each column's staged kind: ``json`` (JSON values), ``text`` (CSV cells) or a DuckDB type."""
    path = f"'{_quoted_text(str(source))}'"
    try:
        if fmt in ("json", "jsonl"):
            # First the keys every object uses (a value of a column never named must not be ignored).
            keys = [
                row[0]
                for row in con.execute(
                    f"SELECT DISTINCT unnest(json_keys(json)) FROM read_json_objects({path}, format='auto')"
                ).fetchall()
            ]
            if not keys:
                # An empty file or array holds no events; items that are not objects are no events.
                items = con.execute(f"SELECT count(*) FROM read_json_objects({path}, format='auto')")
                if items.fetchall()[0][0]:
                    raise ExportError(f"{source}: not JSON events: the items are not objects")
                keys = list(REQUIRED)
            spec = "{" + ", ".join(f"'{_quoted_text(k)}': 'JSON'" for k in keys) + "}"
            con.execute(
                f"CREATE TABLE staged AS SELECT * FROM read_json({path}, format='auto', columns={spec})"
            )
            return {k: "json" for k in keys}
        if fmt == "csv":
            # Every cell as text, and "" (an empty text) kept apart from an empty cell (no value).
            con.execute(
                f"CREATE TABLE staged AS SELECT * FROM read_csv({path}, header=true, delim=',', quote='\"', "
                "escape='\"', all_varchar=true, allow_quoted_nulls=false)"
            )
            return {row[0]: "text" for row in con.execute("DESCRIBE staged").fetchall()}
        con.execute(f"CREATE TABLE staged AS SELECT * FROM read_parquet({path})")
        return {row[0]: row[1] for row in con.execute("DESCRIBE staged").fetchall()}
    except duckdb.Error as exc:
        what = {
            "json": "a JSON array of events or JSON Lines",
            "jsonl": "JSON Lines",
            "csv": "CSV",
            "parquet": "Parquet",
        }[fmt]
        raise ExportError(f"{source}: not {what}: {first_line(exc)}") from None


_NUMBER_TYPES: Final = frozenset(
    {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "FLOAT", "DOUBLE"}
    | {"UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT"}
)
_TIME_TYPES: Final = frozenset(
    ("TIMESTAMP", "TIMESTAMP WITH TIME ZONE", "TIMESTAMP_S", "TIMESTAMP_MS", "TIMESTAMP_NS", "DATE")
)
_EXPECTED: Final = {
    "uuid": "a UUID",
    "time": "an ISO-8601 time such as 2026-11-01T12:00:00Z",
    "kind": f"one of {', '.join(KINDS)}",
    "text": "text",
    "count": "a whole number >= 0",
    "amount": "a finite number >= 0",
    "object": "a JSON object",
}


def _target(name: str) -> str:
    """What a stored column holds, for checking: uuid, time, kind, text, count, amount or object."""
    if name in ("event_id", "ts", "kind", "properties"):
        return {"event_id": "uuid", "ts": "time", "kind": "kind", "properties": "object"}[name]
    return {"BIGINT": "count", "DOUBLE": "amount"}.get(COLUMNS[name][0], "text")


@dataclass
class _Column:
    """One column of the file: the SQL giving its stored value (NULL when absent or wrong) and the SQL
    saying the value is wrong."""

    name: str
    staged: str  # json, text, or the Parquet column's DuckDB type
    value: str = field(init=False)
    bad: str = field(init=False)

    def __post_init__(self) -> None:
        x, target, staged = f'"{self.name}"', _target(self.name), self.staged
        # ``text``: the value when it is text, else NULL; ``number``: the value when it is a number.
        if staged == "json":
            text = f"CASE WHEN json_type({x}) = 'VARCHAR' THEN {x} ->> '$' END"
            numeral = f"CASE WHEN json_type({x}) IN ('BIGINT', 'UBIGINT', 'DOUBLE') THEN {x} ->> '$' END"
            number = f"TRY_CAST({numeral} AS DOUBLE)"
            whole = f"TRY_CAST({numeral} AS BIGINT)"
        elif staged == "text":  # a CSV cell: text that may spell a number
            text = x
            number, whole = f"TRY_CAST({x} AS DOUBLE)", f"TRY_CAST({x} AS BIGINT)"
        elif staged in ("VARCHAR", "JSON"):  # a Parquet text column: wrong where numbers belong
            text = f"CAST({x} AS VARCHAR)"
            number = whole = "NULL"
        else:  # a Parquet column of another type: numbers are numbers, and nothing is text
            text = "NULL"
            numeric = staged in _NUMBER_TYPES or staged.startswith("DECIMAL")
            number = f"TRY_CAST({x} AS DOUBLE)" if numeric else "NULL"
            whole = f"TRY_CAST({x} AS BIGINT)" if numeric else "NULL"
        if target == "uuid":
            value = f"CAST({x} AS UUID)" if staged == "UUID" else f"TRY_CAST({text} AS UUID)"
        elif target == "time":
            if staged == "TIMESTAMP WITH TIME ZONE":
                value = f"CAST({x} AS TIMESTAMP)"  # in UTC, the session's zone
            elif staged in _TIME_TYPES:
                value = f"CAST({x} AS TIMESTAMP)"  # a time without a zone is UTC
            else:
                value = f"CAST(TRY_CAST({text} AS TIMESTAMPTZ) AS TIMESTAMP)"
        elif target == "kind":
            value = f"CASE WHEN {text} IN ({', '.join(repr(k) for k in KINDS)}) THEN {text} END"
        elif target == "text":
            value = text
        elif target == "count":
            # TRY_CAST alone would round 2.5 to 3: only whole numbers pass.
            value = (
                f"CASE WHEN isfinite({number}) AND {number} = trunc({number}) AND {number} >= 0 "
                f"THEN {whole} END"
            )
        elif target == "amount":
            value = f"CASE WHEN isfinite({number}) AND {number} >= 0 THEN {number} END"
        else:  # a JSON object; from JSON files the object itself, elsewhere text holding one
            holder = (
                f"CASE WHEN json_type({x}) = 'OBJECT' THEN CAST({x} AS VARCHAR) ELSE {text} END"
                if staged == "json"
                else text
            )
            value = f"CASE WHEN json_type(TRY_CAST({holder} AS JSON)) = 'OBJECT' THEN {holder} END"
        self.value = value
        missing = f"{x} IS NULL" if self.name in REQUIRED else "false"
        self.bad = f"({missing} OR ({x} IS NOT NULL AND ({value}) IS NULL))"


def _check(con: duckdb.DuckDBPyConnection, source: Path, columns: dict[str, _Column]) -> None:
    """Raises ``ExportError`` listing each wrong column's first wrong row and value, if any."""
    if not columns:
        return
    parts = ", ".join(
        f"count(*) FILTER (WHERE {c.bad}), min(rowid) FILTER (WHERE {c.bad})" for c in columns.values()
    )
    figures = con.execute(f"SELECT {parts} FROM staged").fetchall()[0]
    problems = []
    for i, column in enumerate(columns.values()):
        count, row = figures[2 * i], figures[2 * i + 1]
        if count:
            shown = con.execute(
                f'SELECT CAST("{column.name}" AS VARCHAR) FROM staged WHERE rowid = $row', {"row": row}
            ).fetchall()[0][0]
            if shown is None:
                what = f"missing; {_NEEDS}"
            else:
                what = f"{_shown(shown, column.staged)} is not {_EXPECTED[_target(column.name)]}"
                if column.staged not in ("json", "text"):
                    what += f" (the file's column is {column.staged})"
            more = f" (and {count - 1:,} more row{'s' if count > 2 else ''})" if count > 1 else ""
            problems.append((row, f"row {row + 1:,}, {column.name}: {what}{more}"))
    if problems:
        lines = "\n".join(f"  {text}" for _, text in sorted(problems))
        raise ExportError(f"{source}: nothing imported; fix these and import again:\n{lines}")


def _shown(value: str, staged: str) -> str:
    # JSON values are shown as written (a string in quotes); others as the text they hold.
    shown = value if staged == "json" else repr(value)
    return shown if len(shown) <= 80 else shown[:77] + "..."


# -- metrics -----------------------------------------------------------------------------------


@dataclass
class MetricsExport:
    """What an export of metrics holds: per metric its unit, statistics and ``botmeter query`` rows,
    and the metrics the store could not give, with the reason."""

    period: Window
    interval: str | None
    metrics: dict[str, dict[str, Any]]
    unavailable: dict[str, str]
    session_gap_minutes: float

    def document(self) -> dict[str, Any]:
        """The JSON export: schema botmeter.metrics_export, version 1."""
        return {
            "schema": METRICS_SCHEMA,
            "version": METRICS_VERSION,
            "period": {"start": iso(self.period[0]), "end": iso(self.period[1])},
            "interval": self.interval,
            "session_gap_minutes": self.session_gap_minutes,
            "metrics": self.metrics,
            "unavailable": self.unavailable,
        }

    def long_rows(self) -> list[dict[str, Any]]:
        """One row per metric, bucket and group, with ``metric`` and ``unit`` first and an
        ``unavailable`` reason last (then the row has no bucket and no value)."""
        out = [
            {"metric": name, "unit": entry["unit"], **row}
            for name, entry in self.metrics.items()
            for row in entry["rows"]
        ]
        out += [
            {"metric": name, "unit": CATALOGUE[name].unit, "unavailable": reason}
            for name, reason in self.unavailable.items()
        ]
        return out

    def long_columns(self) -> list[str]:
        """``metric``, ``unit``, ``bucket``, the groups (dimensions; retention's period and cohort
        sizes), the figures (``value``, or one per statistic) and ``unavailable``."""
        values: dict[str, None] = {}
        groups: dict[str, None] = {}
        for entry in self.metrics.values():
            keys = value_keys(entry["stats"])
            values.update(dict.fromkeys(keys))
            for row in entry["rows"]:
                groups.update((k, None) for k in row if k not in keys and k != "bucket")
        return ["metric", "unit", "bucket", *(g for g in groups if g not in values), *values, "unavailable"]

    @property
    def row_count(self) -> int:
        return sum(len(entry["rows"]) for entry in self.metrics.values())


def value_keys(stats: Sequence[str]) -> list[str]:
    """The keys of the figures in ``botmeter query`` JSON rows: ``value``, or one per statistic."""
    return ["value"] if len(stats) == 1 else list(stats)


def metrics_export(
    reader: Any,
    window: Window,
    metrics: Sequence[str] | str | None = None,
    interval: str | None = "day",
    stat: str | None = None,
) -> MetricsExport:
    """Asks the reader each metric over the window, as ``botmeter query METRIC --start --end
    --interval`` would (``stat`` for every metric named, e.g. p50,p95 for latency_ms)."""
    load_plugins()
    named = [m.strip() for m in metrics.split(",")] if isinstance(metrics, str) else list(metrics or [])
    named = [m for m in named if m]
    for name in named:
        if name not in CATALOGUE:
            valid = ", ".join(sorted(CATALOGUE))
            raise QueryError(f"metric: unknown metric {name!r}; valid metrics: {valid}")
    if stat and not named:
        raise QueryError("stat: statistics differ by metric; name the metrics too (--metric)")
    interval = None if interval in (None, "", "none") else interval
    out: dict[str, dict[str, Any]] = {}
    unavailable: dict[str, str] = {}
    with reader.session():
        for name in named or list(CATALOGUE):
            try:
                result = reader.query(name, start=window[0], end=window[1], interval=interval, stat=stat)
            except FigureUnavailable as exc:
                unavailable[name] = str(exc)
                continue
            except QueryError as exc:
                if named:
                    raise
                unavailable[name] = str(exc)  # every metric asked at once: retention is by day or week
                continue
            out[name] = {
                "unit": result.metric.unit,
                "description": result.metric.description,
                "stats": list(result.stats),
                "rows": result.json_rows(),
                "notes": result.notes,
            }
    return MetricsExport(window, interval, out, unavailable, reader.session_gap_minutes)


def export_metrics(
    reader: Any,
    window: Window,
    fmt: str | None,
    path: str | Path,
    metrics: Sequence[str] | str | None = None,
    interval: str | None = "day",
    stat: str | None = None,
) -> MetricsExport:
    """Writes the metrics of ``metrics_export`` to ``path``: JSON (one document), or JSON Lines, CSV
    and Parquet in long form (one row per metric, bucket and group)."""
    fmt = file_format(path, fmt)
    export = metrics_export(reader, window, metrics, interval, stat)
    with replacing(path) as temporary:
        if fmt == "json":
            temporary.write_text(json.dumps(export.document(), indent=2) + "\n")
        elif fmt == "jsonl":  # the long rows, one JSON object a line
            with open(temporary, "w") as out:
                for row in export.long_rows():
                    out.write(json.dumps(row, default=str) + "\n")
        elif fmt == "csv":
            with open(temporary, "w", newline="") as out:
                writer = csv.DictWriter(out, fieldnames=export.long_columns(), lineterminator="\n")
                writer.writeheader()
                writer.writerows(export.long_rows())
        else:
            pq.write_table(_metrics_table(export), temporary, compression="zstd")
    return export


def _metrics_table(export: MetricsExport) -> pa.Table:
    columns = export.long_columns()
    rows = export.long_rows()
    arrays = {}
    for name in columns:
        values = [row.get(name) for row in rows]
        if name == "bucket":
            # Parquet keeps the bucket as a UTC timestamp (the JSON and CSV exports: the ISO text).
            parsed = [None if v is None else utc(v, "bucket") for v in values]
            arrays[name] = pa.array(parsed, pa.timestamp("us", tz="UTC"))
        elif name in ("metric", "unit", "unavailable"):
            arrays[name] = pa.array(values, pa.string())
        else:
            try:
                arrays[name] = pa.array(values)  # figures as numbers, groups as they come
            except (pa.ArrowInvalid, pa.ArrowTypeError):  # a group that is text here, a number there
                arrays[name] = pa.array([None if v is None else str(v) for v in values], pa.string())
    header = {k: v for k, v in export.document().items() if k != "metrics"}
    header["units"] = {name: entry["unit"] for name, entry in export.metrics.items()}
    table = pa.table(arrays) if arrays else pa.table({})
    return table.replace_schema_metadata({METRICS_SCHEMA.encode(): json.dumps(header).encode()})


__all__ = [
    "FORMATS",
    "ExportError",
    "ImportResult",
    "KeepsEvents",
    "MetricsExport",
    "export_events",
    "export_metrics",
    "export_window",
    "file_format",
    "import_events",
    "metrics_export",
    "read_events",
    "value_keys",
]
