"""The embedded default: one DuckDB file.

DuckDB lets one process at a time open a file for writing, and a reader in another process cannot
open it while that lasts. So nobody holds the file: each write opens it, appends one batch in one
statement and closes it (tens of milliseconds for a second's worth of events), and each read does
the same in read-only mode. A process that finds the file busy retries for ``lock_timeout``
seconds; a writer that still cannot get in hands the batch to the spool, which replays it later.
Several bot processes (forked workers, say) can share one file the same way.

Writes are idempotent on ``event_id``: a batch is inserted minus the ids already stored in its
time range (the range keeps the check to the row groups that can hold them).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from ...events import CALLER_KEYS, COLUMNS
from ...exceptions import SchemaError, StoreError, StoreLocked, StoreUnavailable, first_line
from ...store.waiting import WaitingRoom
from . import rollups

SCHEMA_VERSION = 4
CALLER_KEY_WINDOW = timedelta(days=7)
log = logging.getLogger("botmeter")
# DuckDB's file header (a main header and two database headers of 4 KiB): a shorter file holds no data.
_HEADER_BYTES = 3 * 4096
_TORN_AFTER_S = 2.0
_READER_WAIT = 2.0  # seconds a writer waits for requesting readers to get in

# Each step takes the schema from the version before it to its own number; never edit a
# released step, add one. A step is SQL or a function of the connection.
MIGRATIONS: dict[int, list[str | Callable[[duckdb.DuckDBPyConnection], None]]] = {
    1: [
        "CREATE TABLE IF NOT EXISTS events ("
        + ", ".join(
            f"{name} {sql_type}{' NOT NULL' if name in ('event_id', 'ts', 'kind') else ''}"
            for name, (sql_type, _) in COLUMNS.items()
        )
        + ")",
    ],
    2: [*rollups.DDL, lambda con: rollups.rebuild(con, rollups.session_gap(con))],
    # Latency per day kept per kind (a stage's timings apart from LLM calls), no longer pooled;
    # each inbound message's turn, for failed replies; each user's messages and country per day.
    3: [rollups.recompute_latency_days, rollups.TURNS_DDL, rollups.rebuild_turns, rollups.add_user_messages],
    # Turns: each conversation's latest turn (with its figures) and only the closed turns that
    # failed, instead of every inbound message's turn.
    4: [
        "DROP TABLE IF EXISTS rollup_turns",
        "DROP TABLE IF EXISTS rollup_turn_heads",
        rollups.TURNS_DDL,
        rollups.HEADS_DDL,
        rollups.rebuild_turns,
    ],
}

# One process, one file, one connection at a time: DuckDB refuses a second connection to the
# same file with a different mode, and the writer thread and a reader may share a process.
_PATH_LOCKS: dict[Path, threading.RLock] = {}
_PATH_LOCKS_GUARD = threading.Lock()


_BUSY_PROBE_S = 0.25  # how long a write waits for a file another process was found holding


# Every store object of a path in this process, so that a reader can close what another object
# (the bot's writer) keeps open: it needs the path lock for that, which the reader is holding.
_STORES: dict[Path, weakref.WeakSet] = {}


def _release_held(path: Path) -> None:
    with _PATH_LOCKS_GUARD:
        stores = list(_STORES.get(path, ()))
    for store in stores:
        store.release()


def _path_lock(path: Path) -> threading.RLock:
    with _PATH_LOCKS_GUARD:
        lock = _PATH_LOCKS.get(path)
        if lock is None:
            lock = _PATH_LOCKS[path] = threading.RLock()
        return lock


def _is_lock_conflict(exc: BaseException) -> bool:
    text = str(exc).lower()
    # In one process, DuckDB refuses a read-only connection while a writer of the same process
    # holds the file read-write ("different configuration"): like a lock, it passes when the
    # writer lets go for the reader's note.
    return ("lock" in text and ("conflicting" in text or "could not set lock" in text)) or (
        "different configuration" in text
    )


def path_from_url(url: str) -> Path:
    """``duckdb://relative.duckdb`` or ``duckdb:///absolute.duckdb`` (query string ignored)."""
    rest = url.split("://", 1)[1] if "://" in url else url
    rest = rest.split("?", 1)[0]
    if not rest:
        raise StoreError(f"store URL {url!r} names no file; use duckdb://botmeter.duckdb")
    return Path(rest).expanduser()


class DuckDBStore:
    """Events in one DuckDB file, shared by writers and readers in any number of processes."""

    # Two of DuckDB's row groups (122,880 rows each): whole row groups are written compressed, once,
    # and the rollups' fixed cost per write is shared by twice the events.
    preferred_batch_rows = 245_760

    def __init__(
        self, url: str, *, lock_timeout: float = 5.0, session_gap_s: int | None = None, **_: Any
    ) -> None:
        self.url = url
        self.path = path_from_url(url).absolute()
        self.lock_timeout = lock_timeout
        # None: keep the gap the stored sessions were built with (readers never rebuild them).
        self.session_gap_s = session_gap_s
        self._gap_s = rollups.DEFAULT_SESSION_GAP_S
        self._lock = _path_lock(self.path)
        with _PATH_LOCKS_GUARD:
            _STORES.setdefault(self.path, weakref.WeakSet()).add(self)
        self._migrated = False
        # Set when a write found the file held by another process for the whole lock timeout:
        # until a write gets in again, writes only probe (_BUSY_PROBE_S), so that a writer retrying
        # the spool and the next batch does not wait out the lock timeout at every step (a flush
        # took about four lock timeouts).
        self._held_elsewhere = False
        # While batches queue up (a burst, a backlog) the writer keeps the file open from one to
        # the next: reopening and checkpointing each time costs a third of a write. Readers ask
        # for the file by leaving a note in <store>.readers/; the writer then lets go.
        self._held: duckdb.DuckDBPyConnection | None = None
        # An in-memory connection the rollups' work beside a write computes with (hashes, JSON):
        # made once, as making one costs about 17 ms.
        self._scratch: duckdb.DuckDBPyConnection | None = None
        self._waiting = WaitingRoom(self.path)

    # -- connections ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _connection(
        self, read_only: bool, timeout: float | None = None
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        timeout = self.lock_timeout if timeout is None else timeout
        with self._lock:
            con = self._open(read_only, timeout)
            try:
                yield con
            finally:
                with contextlib.suppress(duckdb.Error):
                    con.close()

    def _open(self, read_only: bool, timeout: float) -> duckdb.DuckDBPyConnection:
        if not read_only and self._held_elsewhere:
            timeout = min(timeout, _BUSY_PROBE_S)
        deadline = time.monotonic() + timeout
        pause = 0.002
        collected = False
        while True:
            try:
                if not read_only:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                con = duckdb.connect(str(self.path), read_only=read_only)
                # No progress bar: a long query must not draw on the bot's (or the CLI's) terminal.
                con.execute("SET enable_progress_bar = false")
                if not read_only:
                    self._held_elsewhere = False
                return con
            except duckdb.Error as exc:
                if not read_only and self._set_aside_if_torn(exc):
                    continue
                if not collected and "different configuration" in str(exc):
                    # A result of an earlier read in this process that nothing refers to any more
                    # can keep the file's other opening alive until it is collected.
                    collected = True
                    gc.collect()
                    continue
                if not _is_lock_conflict(exc):
                    if read_only and not self.path.exists():
                        raise StoreError(
                            f"no store at {self.path}: track some events or run `botmeter demo` first"
                        ) from exc
                    raise StoreUnavailable(f"cannot open {self.path}: {exc}") from exc
                if time.monotonic() >= deadline:
                    if not read_only:
                        self._held_elsewhere = True
                    raise StoreLocked(
                        f"{self.path} is held by another process for more than {timeout:g}s: {exc}"
                    ) from exc
            except OSError as exc:
                raise StoreUnavailable(f"cannot open {self.path}: {exc}") from exc
            time.sleep(pause)
            pause = min(pause * 2, 0.05)

    def _set_aside_if_torn(self, exc: BaseException) -> bool:
        """A file cut short while DuckDB created it (a full disk) holds no data but refuses every
        open; it is renamed aside, never deleted, so that the next open starts a new file."""
        if "not a valid duckdb database file" not in str(exc).lower():
            return False
        try:
            info = self.path.stat()
            if info.st_size >= _HEADER_BYTES:
                return False  # a real file of something else: not ours to move
            if time.time() - info.st_mtime < _TORN_AFTER_S:
                return False  # maybe another process creating it this moment: wait as for a lock
            aside = self.path.with_name(f"{self.path.name}.torn-{int(time.time())}")
            self.path.rename(aside)
        except OSError:
            return False
        log.warning("botmeter: %s was cut short at its creation; set aside as %s", self.path, aside.name)
        return True

    def _migrate(self, con: duckdb.DuckDBPyConnection) -> None:
        if self._migrated:
            return
        con.execute("CREATE TABLE IF NOT EXISTS botmeter_meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
        rows = con.execute("SELECT value FROM botmeter_meta WHERE key = 'schema_version'").fetchall()
        current = int(rows[0][0]) if rows else 0
        if current > SCHEMA_VERSION:
            raise SchemaError(
                f"{self.path} has schema version {current}, newer than this botmeter's {SCHEMA_VERSION}; "
                "upgrade botmeter"
            )
        if current < SCHEMA_VERSION:
            con.execute("BEGIN")
            try:
                for version in range(current + 1, SCHEMA_VERSION + 1):
                    for statement in MIGRATIONS[version]:
                        if callable(statement):
                            statement(con)
                        else:
                            con.execute(statement)
                con.execute(
                    "INSERT OR REPLACE INTO botmeter_meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)]
                )
                con.execute("COMMIT")
            except Exception:
                con.execute("ROLLBACK")
                raise
        self._gap_s = rollups.session_gap(con)
        if self.session_gap_s is not None and self.session_gap_s != self._gap_s:
            # Sessions split at another gap now: rebuild them once, in one transaction.
            con.execute("BEGIN")
            try:
                rollups.rebuild(con, self.session_gap_s)
                con.execute("COMMIT")
            except Exception:
                con.execute("ROLLBACK")
                raise
            self._gap_s = self.session_gap_s
        self._migrated = True

    @contextlib.contextmanager
    def reading(self, timeout: float | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection for queries; held briefly so the bot's writes are not kept waiting."""
        with self._lock, self._waiting.waiting() as note:
            _release_held(self.path)
            if not self._migrated and self._stored_version(timeout) < SCHEMA_VERSION:
                # A store written by an older botmeter is migrated once, by whoever opens it first.
                note.withdraw()
                with self.writing(timeout):
                    pass
            with self._connection(read_only=True, timeout=timeout) as con, damaged_file(self.path):
                note.withdraw()
                yield con

    def _let_readers_in(self) -> None:
        """Waits (briefly) for readers who asked for the file to open it."""
        deadline = time.monotonic() + _READER_WAIT
        while self._waiting.anyone_waiting() and time.monotonic() < deadline:
            time.sleep(0.005)

    def release(self) -> None:
        """Closes the file if the writer kept it open."""
        if self._held is None:
            # Nothing held: return without the lock, which a reader in this process may hold for a
            # while (the writer calls this whenever it goes idle, and a flush waits for that).
            return
        with self._lock:
            con, self._held = self._held, None
            if con is not None:
                with contextlib.suppress(duckdb.Error):
                    con.close()

    def _stored_version(self, timeout: float | None) -> int:
        with self._connection(read_only=True, timeout=timeout) as con:
            try:
                rows = con.execute("SELECT value FROM botmeter_meta WHERE key = 'schema_version'").fetchall()
            except duckdb.CatalogException:
                return 0
        version = int(rows[0][0]) if rows else 0
        if version == SCHEMA_VERSION:
            self._migrated = True
        return version

    @contextlib.contextmanager
    def writing(
        self, timeout: float | None = None, keep_open: bool = False
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        """A write connection; with ``keep_open`` it stays open for the next write unless a reader waits."""
        with self._lock:
            con, self._held = self._held, None
            if self._waiting.anyone_waiting():
                if con is not None:
                    with contextlib.suppress(duckdb.Error):
                        con.close()
                    con = None
                self._let_readers_in()
            if con is None:
                con = self._open(False, self.lock_timeout if timeout is None else timeout)
            keep = False
            try:
                self._migrate(con)
                yield con
                keep = keep_open
            except duckdb.Error as exc:
                raise _mapped(exc, self.path) from exc
            finally:
                if keep and not self._waiting.anyone_waiting():
                    self._held = con
                else:
                    with contextlib.suppress(duckdb.Error):
                        con.close()

    # -- the seam -----------------------------------------------------------------------------

    def write(self, batch: pa.Table, *, fresh: bool = False, keep_open: bool = False) -> int:
        """Appends the batch, skipping event ids already stored.

        ``fresh`` says the ids were just made by this process's writer and never written before
        (the writer's first attempt at a batch): the check for stored ids is skipped, a fifth of
        the write's cost. Retries and spool replays are never fresh. ``keep_open``: another batch
        follows at once, so the file stays open for it (unless a reader asks for it).
        """
        if batch.num_rows == 0:
            return 0
        caller_keys = CALLER_KEYS in (batch.schema.metadata or {})
        params: dict[str, Any] | None = None
        any_stored = None
        if fresh and not caller_keys:
            added = None  # the batch itself
        else:
            bounds = pc.min_max(batch.column("ts"))
            lo, hi = bounds["min"].as_py(), bounds["max"].as_py()
            if caller_keys:
                # Ids the bot chose (a retried webhook) may repeat with a later ts: look further back.
                lo, hi = lo - CALLER_KEY_WINDOW, hi + CALLER_KEY_WINDOW
            ids = batch.column("event_id")
            storage = pa.chunked_array([chunk.storage for chunk in ids.chunks], pa.binary(16))
            unique = pc.count_distinct(storage).as_py() == batch.num_rows
            # Retried and replayed batches carry the ids they had: skip what is already stored.
            keep_first = "" if unique else " QUALIFY row_number() OVER (PARTITION BY b.event_id) = 1"
            stored = "SELECT 1 FROM events AS e WHERE e.ts BETWEEN $lo AND $hi AND e.event_id = b.event_id"
            added = (
                "CREATE OR REPLACE TEMP TABLE _bm_added AS "
                f"SELECT b.* FROM batch AS b WHERE NOT EXISTS ({stored}){keep_first}"
            )
            # Most batches sent again hold nothing stored yet (a collector's, a spool's after an
            # outage): found so, the batch goes in whole, as cheaply as a fresh one.
            if unique:
                any_stored = f"SELECT EXISTS (SELECT 1 FROM batch AS b WHERE EXISTS ({stored}))"
            params = {"lo": lo, "hi": hi}
        with self.writing(keep_open=keep_open) as con:
            # One thread: DuckDB then compresses row groups as it appends, so closing has almost
            # nothing left to checkpoint (half the time of the default on two cores), and the
            # other core stays with the bot.
            con.execute("SET threads = 1")
            con.register("batch", batch)
            con.execute("BEGIN")
            prepared = None
            try:
                src = "batch"
                if any_stored is not None and not con.execute(any_stored, params).fetchall()[0][0]:
                    added = None
                if added is not None:
                    con.execute(added, params)
                    src = "_bm_added"
                elif batch.num_rows >= rollups.PARTIALS_THREAD_MIN_ROWS:
                    if self._scratch is None:
                        # One thread: no background threads for a forked child to inherit.
                        self._scratch = duckdb.connect(config={"threads": 1})
                    prepared = rollups.BatchPartials(batch, self._scratch)  # every event of the batch goes in
                rows = con.execute(f"INSERT INTO events SELECT * FROM {src}").fetchall()
                count = int(rows[0][0]) if rows else 0
                if count:
                    # The rollups move with the events, in the same transaction.
                    added_rows = (
                        batch if added is None else con.sql("SELECT * FROM _bm_added").to_arrow_table()
                    )
                    rollups.add(con, src, self._gap_s, added_rows, prepared)
                elif prepared is not None:
                    prepared.wait()
                if added is not None:
                    con.execute("DROP TABLE _bm_added")
                con.execute("COMMIT")
            except BaseException:
                if prepared is not None:
                    prepared.wait()  # the scratch connection is free for the next write
                with contextlib.suppress(duckdb.Error):
                    con.execute("ROLLBACK")
                raise
            finally:
                con.unregister("batch")
        return count

    def count(self) -> int:
        if not self.path.exists():
            return 0
        with self.reading() as con:
            if not _has_events(con):
                return 0
            return int(con.execute("SELECT count(*) FROM events").fetchall()[0][0])

    def last_event_at(self) -> datetime | None:
        """When the newest event happened (botmeter's own system events aside).

        Events stamped more than a day ahead (a millisecond timestamp stored before the track call
        refused them lands in the year 58,000, beyond what Python's datetime holds) are not "newest".
        """
        if not self.path.exists():
            return None
        latest = (datetime.now(UTC) + timedelta(days=1)).replace(tzinfo=None)
        with self.reading() as con:
            if not _has_events(con):
                return None
            newest = con.execute(
                "SELECT max(ts) FROM events WHERE kind <> 'system' AND ts <= ?", [latest]
            ).fetchall()[0][0]
        return newest.replace(tzinfo=UTC) if isinstance(newest, datetime) else None

    @contextlib.contextmanager
    def usage_to_reprice(
        self, since: datetime, until: datetime | None = None, chunk: int = 100_000
    ) -> Iterator[tuple[Iterator[pa.RecordBatch], Iterator[pa.RecordBatch]]]:
        """The raw usage of the events whose cost botmeter worked out (not the bot: ``price_version``
        'caller' is left alone) in ``[since, until)``, as Arrow batches: LLM calls, then the events priced
        by units (SMS segments, API calls). ``epoch`` is the event's time in seconds; event ids are UUIDs.
        ``update_costs`` writes the new costs back. Read the first before the second (one connection)."""
        where = "ts >= $since" + (" AND ts < $until" if until else "")
        params = {"since": since.replace(tzinfo=None)} | (
            {"until": until.replace(tzinfo=None)} if until else {}
        )
        with self.reading() as con:
            con.execute("SET arrow_lossless_conversion = true")  # event ids as UUIDs, not text

            def batches(sql: str) -> Iterator[pa.RecordBatch]:  # runs when first read
                yield from con.sql(sql, params=params).to_arrow_reader(chunk)

            llm_calls = batches(
                "SELECT event_id, provider, model, epoch(ts) AS epoch, input_tokens, output_tokens, "
                "cached_tokens, cache_write_tokens, reasoning_tokens, properties FROM events "
                f"WHERE kind = 'llm_call' AND price_version IS DISTINCT FROM 'caller' AND {where}"
            )
            by_units = batches(
                "SELECT event_id, kind, provider, name, unit, units, epoch(ts) AS epoch, direction, country "
                "FROM events WHERE units IS NOT NULL AND ((kind = 'message' AND unit = 'sms_segment') "
                f"OR kind = 'api_call') AND price_version IS DISTINCT FROM 'caller' AND {where}"
            )
            yield llm_calls, by_units

    def update_costs(self, changes: pa.Table) -> int:
        """Sets cost_usd and price_version by event_id (for reprice). Returns rows changed."""
        if changes.num_rows == 0:
            return 0
        with self.writing() as con:
            con.register("changes", changes)
            con.execute("BEGIN")
            try:
                span = con.execute(
                    "SELECT min(e.ts), max(e.ts) FROM events AS e SEMI JOIN changes AS c "
                    "ON e.event_id = c.event_id"
                ).fetchall()[0]
                rows = con.execute(
                    "UPDATE events SET cost_usd = c.cost_usd, price_version = c.price_version "
                    "FROM changes AS c WHERE events.event_id = c.event_id "
                    "AND events.cost_usd IS DISTINCT FROM c.cost_usd"
                ).fetchall()
                if span[0] is not None:
                    rollups.rebuild_costs(con, span[0], span[1])
                con.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(duckdb.Error):
                    con.execute("ROLLBACK")
                raise
            finally:
                con.unregister("changes")
        return int(rows[0][0]) if rows else 0

    def export_events(self, start: datetime, end: datetime, fmt: str, path: Path) -> int:
        """Writes the events with ``start <= ts < end`` to ``path``, oldest first: ``json`` (one array),
        ``jsonl`` (one event a line), ``csv`` (with a header) or ``parquet``, every column in stored
        order. Returns events written.

        DuckDB's COPY streams them from the file, so a million events take seconds, not minutes.
        """
        options = _EXPORT_OPTIONS[fmt]
        columns = ", ".join(_export_column(name, fmt) for name in COLUMNS)
        target = str(path).replace("'", "''")
        with self.reading() as con:
            # Parquet's UTC timestamps are made in the session's zone: make it UTC, whatever the machine's.
            con.execute("SET TimeZone = 'UTC'")
            rows = con.execute(
                f"COPY (SELECT {columns} FROM events WHERE ts >= $start AND ts < $end "
                f"ORDER BY ts, event_id) TO '{target}' ({options})",
                {"start": _naive_utc(start), "end": _naive_utc(end)},
            ).fetchall()
        return int(rows[0][0]) if rows else 0

    def size_bytes(self) -> int:
        wal = self.path.with_name(self.path.name + ".wal")
        return sum(p.stat().st_size for p in (self.path, wal) if p.exists())

    def default_spool_dir(self) -> Path:
        return self.path.with_name(self.path.name + ".spool")

    def default_key_path(self) -> Path:
        return self.path.with_name(self.path.name + ".key")

    def before_fork(self) -> None:
        # A child must not inherit an open DuckDB file: closing it there would write to it. (The
        # writer also holds off its own writes across the fork: see Writer.before_fork.) Nor any
        # DuckDB instance: a child that let go of one it inherited crashed.
        self.release()
        self._close_scratch()

    def after_fork(self) -> None:
        # The parent may have been inside a write when it forked: the child gets its own lock.
        self._held = None
        self._scratch = None
        self._lock = threading.RLock()
        with _PATH_LOCKS_GUARD:
            _PATH_LOCKS[self.path] = self._lock

    def close(self) -> None:
        """Closes the file if a write left it open."""
        self.release()
        self._close_scratch()

    def _close_scratch(self) -> None:
        scratch, self._scratch = self._scratch, None
        if scratch is not None:
            with contextlib.suppress(duckdb.Error):
                scratch.close()

    def __repr__(self) -> str:
        return f"DuckDBStore({str(self.path)!r})"


# Events exports: JSON and CSV carry the id as its UUID text and the time as ISO-8601 UTC with a Z
# (microseconds, so it reads back exactly); Parquet keeps native types, the time as a UTC timestamp.
_EXPORT_OPTIONS = {
    "json": "FORMAT JSON, ARRAY true",
    "jsonl": "FORMAT JSON",  # JSON Lines: one event a line
    "csv": "FORMAT CSV, HEADER true",
    "parquet": "FORMAT PARQUET, COMPRESSION zstd",
}


def _export_column(name: str, fmt: str) -> str:
    if name == "ts":
        if fmt == "parquet":
            return "CAST(ts AS TIMESTAMPTZ) AS ts"
        return "strftime(ts, '%Y-%m-%dT%H:%M:%S.%fZ') AS ts"
    if name == "event_id" and fmt != "parquet":
        return "CAST(event_id AS VARCHAR) AS event_id"
    if name == "properties" and fmt == "csv":
        return "CAST(properties AS VARCHAR) AS properties"  # JSON text in one cell
    return name


def _naive_utc(ts: datetime) -> datetime:
    return ts.astimezone(UTC).replace(tzinfo=None) if ts.tzinfo else ts


def _has_events(con: duckdb.DuckDBPyConnection) -> bool:
    rows = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'events'"
    ).fetchall()
    return bool(rows[0][0])


@contextlib.contextmanager
def damaged_file(path: Path) -> Iterator[None]:
    """Reading a file that turns out damaged (truncated, overwritten: DuckDB finds it block by block,
    as it reads) raises ``StoreUnavailable`` naming the file, not DuckDB's own error."""
    try:
        yield
    except duckdb.Error as exc:
        if type(exc) is duckdb.Error or isinstance(exc, _DAMAGED):
            raise StoreUnavailable(f"cannot read {path}, the file may be damaged: {first_line(exc)}") from exc
        raise


_DAMAGED = (
    duckdb.IOException,
    duckdb.FatalException,
    duckdb.InternalException,
    duckdb.SerializationException,
)


def _mapped(exc: duckdb.Error, path: Path) -> StoreError:
    # Only errors about the batch itself are final (the spool sets such a batch aside); anything
    # else (a full disk, a read-only file, a failed commit) may pass, so the batch waits and retries.
    if isinstance(exc, _BAD_BATCH):
        return StoreError(f"{path}: {exc}")
    return StoreUnavailable(f"{path}: {exc}")


# A constraint (a NULL where none may be), a value out of range or of the wrong type: the batch's
# content, which no retry changes. The writer then finds the event(s) at fault and sets them aside.
_BAD_BATCH = (duckdb.BinderException, duckdb.InvalidInputException, duckdb.DataError, duckdb.IntegrityError)
