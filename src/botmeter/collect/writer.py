"""The background writer: drains the buffer by count and time, processes, stores or spools.

It is the only place where botmeter does I/O for the bot, and it never lets an exception out:
failures are counted, logged and retried (through the spool), and the bot keeps running.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from ..events import RECORD_CALLS
from ..exceptions import StoreUnavailable
from ..process.pipeline import Pipeline, system_frame
from ..store import Store
from ..store.spool import Spool

log = logging.getLogger("botmeter")

_POLL_S = 0.05  # how often the writer looks at the buffer's size between timed writes


@dataclass
class WriterStats:
    processed: int = 0  # events that left the buffer and were processed
    written: int = 0  # events the store took (duplicates it skipped not included)
    spooled: int = 0  # events written to the spool because the store failed
    write_failures: int = 0
    cycles: int = 0
    last_write_at: float | None = None
    last_error: str | None = None
    dropped_reported: list[int] = field(default_factory=list)


class Writer:
    def __init__(
        self, buffer: Any, pipeline: Pipeline, store: Store, spool: Spool, *, interval: float, batch_size: int
    ) -> None:
        self.buffer = buffer
        self.pipeline = pipeline
        self.store = store
        self.spool = spool
        self.interval = interval
        self.batch_size = batch_size
        self.stats = WriterStats(dropped_reported=list(buffer.dropped_counts()))
        self._reset_sync()

    def _reset_sync(self) -> None:
        self._cond = threading.Condition()
        self._requested = 0
        self._done = 0
        self._stop = False
        self._thread: threading.Thread | None = None
        self._store_thread: threading.Thread | None = None
        # One processed batch waits for the store while the next is processed: processing holds the
        # GIL, a DuckDB write mostly does not, so on two cores the two overlap. One slot keeps
        # memory bounded: a slow store backs up into the buffer, which counts what it drops.
        self._outbox: queue.Queue = queue.Queue(maxsize=1)
        self._store_ok = True

    # -- control ------------------------------------------------------------------------------

    def start(self) -> None:
        if self.alive:
            return
        self._stop = False
        self.buffer.calibrate()  # anchors the fast clock; the writer's cycles refine it
        self._outbox = queue.Queue(maxsize=1)
        self._thread = threading.Thread(target=self._run, name="botmeter-writer", daemon=True)
        self._store_thread = threading.Thread(target=self._run_store, name="botmeter-store", daemon=True)
        self._store_thread.start()
        self._thread.start()

    @property
    def alive(self) -> bool:
        return all(t is not None and t.is_alive() for t in (self._thread, self._store_thread))

    def flush(self, timeout: float | None = None) -> bool:
        """Waits until everything buffered before the call is stored or spooled. False on timeout."""
        if not self.alive:
            if self._stop:
                return self.buffer.size == 0
            self.start()
        with self._cond:
            self._requested += 1
            ticket = self._requested
            self._cond.notify_all()
            return self._cond.wait_for(lambda: self._done >= ticket, timeout=timeout)

    def stop(self, timeout: float | None = None) -> bool:
        done = self.flush(timeout)
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        for thread in (self._thread, self._store_thread):
            if thread is not None:
                thread.join(timeout)
        self.store.close()
        return done

    def after_fork(self) -> None:
        """In a forked child: the parent writes what it had buffered; the child starts afresh."""
        self.buffer.drain_columns()
        self.stats = WriterStats(dropped_reported=list(self.buffer.dropped_counts()))
        self._reset_sync()
        self.pipeline.after_fork()
        self.store.after_fork()
        self.start()

    # -- the loop -----------------------------------------------------------------------------

    def _run(self) -> None:
        next_write = time.monotonic() + self.interval
        sent = 0
        while True:
            with self._cond:
                while (
                    not self._stop
                    and self._requested == self._done
                    and self.buffer.size < self.batch_size
                    and (remaining := next_write - time.monotonic()) > 0
                ):
                    self._cond.wait(min(_POLL_S, remaining))
                ticket = self._requested
                stopping = self._stop
            try:
                for table in self.process():
                    self._outbox.put((None, table, False, False))
            except Exception as exc:  # never let the writer die: the bot would silently lose everything after
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("botmeter: processing failed")
            next_write = time.monotonic() + self.interval
            # End of a cycle: done once the store has what came before. "forced" when someone is
            # waiting (flush, close): then nothing may be held back for a fuller write.
            forced = ticket > sent or stopping
            sent = ticket
            self._outbox.put((ticket, None, stopping, forced))
            if stopping:
                return

    def _run_store(self) -> None:
        held = _Aligned(getattr(self.store, "preferred_batch_rows", 0) or 0)
        while True:
            try:
                ticket, table, stopping, forced = self._outbox.get(timeout=self.interval / 2)
            except queue.Empty:
                if held.rows and held.age() >= self.interval:
                    self._store_safely(held.take_all())
                continue
            if table is not None:
                held.add(table)
            out = held.take_all() if forced or held.age() >= self.interval else held.take_whole_units()
            if out is not None or ticket is not None:
                self._store_safely(out)
            if self._outbox.empty():
                # A write kept the file open for a batch that turned out to be a flush's ticket:
                # nothing follows, so let other processes have it now, not at the next write.
                self._release_safely()
            if ticket is not None:
                with self._cond:
                    self._done = max(self._done, ticket)
                    self._cond.notify_all()
            if stopping:
                return

    def _release_safely(self) -> None:
        try:
            self.store.release()
        except Exception:
            log.exception("botmeter: could not release the store")

    def _store_safely(self, table: Any) -> None:
        try:
            self.store_or_spool(table)
        except Exception as exc:
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("botmeter: store step failed")

    def process(self) -> Iterator[Any]:
        """Drains the buffer and yields what it held as tables of at most ``batch_size`` events."""
        self.buffer.calibrate()
        lanes = self.buffer.drain_columns()
        self.stats.cycles += 1
        extra = []
        dropped = self.buffer.dropped_counts()
        delta = [now - before for now, before in zip(dropped, self.stats.dropped_reported, strict=True)]
        if any(delta):
            self.stats.dropped_reported = list(dropped)
            per_call = {call: n for call, n in zip(RECORD_CALLS, delta, strict=True) if n}
            log.warning("botmeter: buffer full, %d events dropped: %s", sum(delta), per_call)
            extra.append(system_frame(time.time(), "dropped", sum(delta), "event", {"buffer_full": per_call}))
        for table in self.pipeline.run_chunks(lanes, extra, self.batch_size):
            self.stats.processed += table.num_rows
            yield table

    def store_or_spool(self, table: Any) -> None:
        """Writes the table; spooled batches go first, so a newer batch waits behind them."""
        if self.spool.has_pending() and not self._replay():
            if table is not None:
                self._spool(table)
            return
        if table is not None:
            self._write(table)

    def _write(self, table: Any) -> None:
        try:
            # More batches already waiting (a burst): keep the store open for them. Between
            # batches the file is free, so any process (a notebook, the duckdb shell) can open it.
            self.store.write(table, fresh=True, keep_open=not self._outbox.empty())
        except Exception as exc:
            self.stats.write_failures += 1
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            if self._store_ok:
                log.warning("botmeter: store failed (%s); spooling to %s", exc, self.spool.directory)
            self._store_ok = False
            self._spool(table)
            return
        self.stats.written += table.num_rows
        self.stats.last_write_at = time.time()
        if not self._store_ok:
            log.warning("botmeter: store is back")
        self._store_ok = True

    def _spool(self, table: Any) -> None:
        if self.spool.append(table):
            self.stats.spooled += table.num_rows

    def _replay(self) -> bool:
        """Replays the spool; True when it is empty afterwards."""
        try:
            self.spool.replay(self.store.write)
        except StoreUnavailable as exc:
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            self._store_ok = False
            return False
        except Exception as exc:
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("botmeter: spool replay failed")
            return False
        if not self._store_ok and not self.spool.has_pending():
            log.warning("botmeter: store is back; spool replayed")
            self._store_ok = True
        return not self.spool.has_pending()


class _Aligned:
    """Holds processed tables so that writes come in whole units of the store's preferred size.

    DuckDB appends a batch of exactly one row group (122,880 rows) or several about twice as
    cheaply as 90,000 rows, which leave a partial row group to be rewritten at the next append
    (bench/README.md). What is held back is at most one unit, for at most one flush interval,
    and never when someone waits on a flush.
    """

    __slots__ = ("_since", "rows", "tables", "unit")

    def __init__(self, unit: int) -> None:
        self.unit = unit
        self.tables: list[Any] = []
        self.rows = 0
        self._since: float | None = None

    def add(self, table: Any) -> None:
        self.tables.append(table)
        self.rows += table.num_rows
        if self._since is None:
            self._since = time.monotonic()

    def age(self) -> float:
        return 0.0 if self._since is None else time.monotonic() - self._since

    def _combined(self) -> Any:
        tables = self.tables
        if len(tables) == 1:
            return tables[0]
        metadata = next((t.schema.metadata for t in tables if t.schema.metadata), None)
        return pa.concat_tables([t.replace_schema_metadata(metadata) for t in tables])

    def take_all(self) -> Any:
        if not self.tables:
            return None
        table = self._combined()
        self.tables, self.rows, self._since = [], 0, None
        return table

    def take_whole_units(self) -> Any:
        if self.unit <= 0:
            return self.take_all()
        whole = self.rows // self.unit * self.unit
        if not whole:
            return None
        table = self._combined()
        rest = table.slice(whole)
        self.tables = [rest] if rest.num_rows else []
        self.rows = rest.num_rows
        self._since = time.monotonic() if rest.num_rows else None
        return table.slice(0, whole)
