"""The background writer: drains the buffer by count and time, processes, stores or spools.

It is the only place where botmeter does I/O for the bot, and it never lets an exception out:
failures are counted, logged and retried (through the spool), and the bot keeps running.

A batch goes to the store, else to the spool, else it stays in memory and is retried every half
interval; what is held so counts against the buffer's caps (events and bytes), so memory stays
within them, and only past them is the oldest batch dropped, counted and recorded. A batch the
store refuses for its content is written in halves down to the event(s) it refuses, which are
set aside in the spool's ``failed/`` folder with the reason. Every loss (buffer full, memory
full, an event set aside) reaches the store as a ``system`` event named ``dropped``.
"""

from __future__ import annotations

# Imported now, not by a library on the writer's threads while a fork waits for them: imported
# then, it registers fork handlers between the fork's "before" and "after" steps, and its "after"
# releases a lock its "before" never took (a stray error message in the bot's output).
import concurrent.futures.thread  # noqa: F401
import logging
import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..events import RECORD_CALLS
from ..exceptions import StoreUnavailable
from ..process.pipeline import Pipeline, system_frame
from ..store import Store
from ..store.spool import Spool
from .context import CONTEXT

log = logging.getLogger("botmeter")

_POLL_S = 0.05  # how often the writer looks at the buffer's size between timed writes
_ISOLATION_TRIES = 128  # most refused writes spent isolating the bad events of one batch
_BURST_LINGER_S = 0.2  # how long the file stays open after a write in a burst, for the next one
_FORK_WAIT_S = 30.0  # longest a fork waits for a write in progress to end


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
    rejected: int = 0  # events set aside: no stored row can be made of them, or the store refuses them
    dropped_memory_full: int = 0  # neither store nor spool took them, and memory was at its cap


class Writer:
    def __init__(
        self,
        buffer: Any,
        pipeline: Pipeline,
        store: Store,
        spool: Spool,
        *,
        interval: float,
        batch_size: int,
    ) -> None:
        self.buffer = buffer
        self.pipeline = pipeline
        self.store = store
        self.spool = spool
        self.interval = interval
        self.batch_size = batch_size
        # A store that sends each write as requests of at most batch_size events, several at once
        # (a collector), is handed larger writes: one request per round trip would cap the rate.
        self.chunk_rows = max(batch_size, getattr(store, "max_write_rows", 0) or 0)
        # The memory caps, as the meter built the buffer with them, shared by the buffer and the
        # batches held here while nothing takes them (the buffer's own caps shrink meanwhile).
        self.max_events = buffer.cap
        self.max_bytes = buffer.max_bytes
        self.stats = WriterStats(dropped_reported=list(buffer.dropped_counts()))
        self._lost_at_flush = 0
        # Work the bot's thread hands over (an SDK call's usage to read and record): run here
        # before each drain, so what it records goes out in the same cycle. Entries are
        # (function, arguments, the caller's context, the caller's time); see Meter.defer.
        self.deferred: deque[tuple] = deque()
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
        # Held around every store and spool operation, and by a fork: a child must not inherit a
        # write in progress (DuckDB's open instance, its locks), which cost it its events.
        self._io = threading.Lock()
        # Held while the writer processes a batch, and by a fork: a child that inherits Arrow in
        # the middle of a computation on another thread finds its locks taken for good.
        self._processing = threading.Lock()
        self._fork_held: list[threading.Lock] = []
        # In a burst (whole units written one after the other) the file stays open between writes
        # for a moment: closing checkpoints, and the next write would reopen it at once.
        self._burst = False
        # Batches neither the store nor the spool took, oldest first: [table, tried before].
        self._unsaved: deque[list] = deque()
        self.unsaved_events = 0
        self.unsaved_bytes = 0
        # Losses not yet recorded in the store: kind -> events, and the reasons events were set aside.
        self._losses: Counter[str] = Counter()
        self._reasons: Counter[str] = Counter()
        self._losses_lock = threading.Lock()

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
        """Waits until everything buffered before the call is stored or spooled.

        True only when it all is durable: False on timeout, while batches wait in memory because
        neither the store nor the spool takes them, and when events were lost (dropped or set
        aside) since the previous flush.
        """
        if not self.alive:
            if self._stop:
                return self.buffer.size == 0 and not self._unsaved
            self.start()
        with self._cond:
            self._requested += 1
            ticket = self._requested
            self._cond.notify_all()
            done = self._cond.wait_for(lambda: self._done >= ticket, timeout=timeout)
        lost, self._lost_at_flush = self._lost_at_flush, self.lost()
        return done and not self._unsaved and lost == self._lost_at_flush

    def lost(self) -> int:
        """Events lost so far: dropped (buffer or memory full) or set aside."""
        return sum(self.buffer.dropped_counts()) + self.stats.dropped_memory_full + self.stats.rejected

    def stop(self, timeout: float | None = None) -> bool:
        done = self.flush(timeout)
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        for thread in (self._thread, self._store_thread):
            if thread is not None:
                thread.join(timeout)
        if self._unsaved and not (self._store_thread is not None and self._store_thread.is_alive()):
            # The process is ending with batches nothing would take: say so, and count them.
            log.error(
                "botmeter: closing with %d events neither the store nor the spool took; they are lost",
                self.unsaved_events,
            )
            while self._unsaved:
                table = self._unsaved.popleft()[0]
                self._count_unsaved(table, -1)
                self._lose("memory_full", table.num_rows)
            done = False
        self.store.close()
        return done

    def before_fork(self) -> None:
        """Waits for a processing step and a store or spool operation in progress, and holds off
        the next until after."""
        held = []
        for lock, what in ((self._processing, "processing"), (self._io, "a write")):
            if lock.acquire(timeout=_FORK_WAIT_S):
                held.append(lock)
            else:
                log.error("botmeter: %s took over %gs; forking during it", what, _FORK_WAIT_S)
        self._fork_held = held

    def after_fork_in_parent(self) -> None:
        held, self._fork_held = self._fork_held, []
        for lock in reversed(held):
            lock.release()

    def after_fork(self) -> None:
        """In a forked child: the parent writes what it had buffered; the child starts afresh."""
        self.buffer.drain_columns()
        self.deferred.clear()
        self.stats = WriterStats(dropped_reported=list(self.buffer.dropped_counts()))
        self._lost_at_flush = self.lost()
        self._reset_sync()
        self._fit_buffer()
        self.pipeline.after_fork()
        self.store.after_fork()
        self.start()

    # -- the loop -----------------------------------------------------------------------------

    def _run(self) -> None:
        # The price data, loaded while the bot is likely still starting: loaded in the first cycle
        # instead, on a thread competing for the GIL with a busy bot, the import took seconds (each
        # file it reads hands the GIL over and waits for it back), and calls piled up meanwhile.
        # (Under the processing lock: a fork waits for it rather than copy a half-done import.)
        try:
            with self._processing:
                self.pipeline.warm()
        except Exception:  # priced (or not) in the first batch, as before
            log.exception("botmeter: loading the price data failed")
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
                tables = self.process()
                while True:
                    with self._processing:
                        table = next(tables, None)
                    if table is None:
                        break
                    # Outside the lock: this waits for the store, and a fork need not.
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
        # A store whose every write is a round trip (a collector) takes what was processed while
        # its last write was in flight in one write, up to this many events: the rate is then not
        # one batch per round trip.
        coalesce = getattr(self.store, "max_write_rows", 0) or 0
        release_at: float | None = None
        while True:
            wait = self.interval / 2
            if release_at is not None:
                wait = max(0.0, min(wait, release_at - time.monotonic()))
            try:
                ticket, table, stopping, forced = self._outbox.get(timeout=wait)
            except queue.Empty:
                if release_at is not None and time.monotonic() >= release_at:
                    self._burst, release_at = False, None
                    self._release_safely()
                if held.rows and held.age() >= self.interval:
                    self._store_safely(held.take_all())
                elif self._unsaved:
                    self._store_safely(None)  # retry what neither the store nor the spool took
                continue
            if table is not None:
                held.add(table)
                if coalesce:
                    ticket, stopping, forced = self._take_waiting(held, coalesce, ticket, stopping, forced)
            out = held.take_all() if forced or held.age() >= self.interval else held.take_whole_units()
            if forced:
                self._burst = False
            elif out is not None:
                # A whole unit, nobody waiting on a flush: more is likely on its way.
                self._burst = held.unit > 0 and out.num_rows >= held.unit
            if out is not None or ticket is not None:
                self._store_safely(out)
            if self._burst:
                if out is not None:
                    release_at = time.monotonic() + _BURST_LINGER_S
            elif self._outbox.empty():
                # A write kept the file open for a batch that turned out to be a flush's ticket:
                # nothing follows, so let other processes have it now, not at the next write.
                release_at = None
                self._release_safely()
            if ticket is not None:
                with self._cond:
                    self._done = max(self._done, ticket)
                    self._cond.notify_all()
            if stopping:
                return

    def _take_waiting(
        self, held: _Aligned, limit: int, ticket: Any, stopping: bool, forced: bool
    ) -> tuple[Any, bool, bool]:
        """Adds the tables already waiting in the outbox to ``held`` (up to ``limit`` rows); returns
        the latest ticket among what it took (a write done answers every ticket before it), and
        whether any of it asked to stop or to force the write."""
        while held.rows < limit and not stopping:
            try:
                more_ticket, table, more_stopping, more_forced = self._outbox.get_nowait()
            except queue.Empty:
                break
            if table is not None:
                held.add(table)
            if more_ticket is not None:
                ticket = more_ticket if ticket is None else max(ticket, more_ticket)
            stopping = stopping or more_stopping
            forced = forced or more_forced
        return ticket, stopping, forced

    def _release_safely(self) -> None:
        try:
            with self._io:
                self.store.release()
        except Exception:
            log.exception("botmeter: could not release the store")

    def _store_safely(self, table: Any) -> None:
        try:
            with self._io:
                self.store_or_spool(table)
        except Exception as exc:
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("botmeter: store step failed")

    def run_deferred(self) -> None:
        """Runs the work handed over by ``Meter.defer``, each in its caller's context; one that
        fails costs only itself."""
        deferred = self.deferred
        while deferred:
            try:
                fn, args, context, ts = deferred.popleft()
            except IndexError:  # another thread (a close) took the last one
                return
            token = CONTEXT.set(context)
            try:
                fn(*args, ts)
            except Exception as exc:
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("botmeter: deferred recording failed")
            finally:
                CONTEXT.reset(token)

    def process(self) -> Iterator[Any]:
        """Drains the buffer and yields what it held as tables of at most ``batch_size`` events."""
        self.run_deferred()
        self.buffer.calibrate()
        lanes = self.buffer.drain_columns()
        self.stats.cycles += 1
        extra = []
        dropped = self.buffer.dropped_counts()
        delta = [now - before for now, before in zip(dropped, self.stats.dropped_reported, strict=True)]
        details: dict[str, Any] = {}
        if any(delta):
            self.stats.dropped_reported = list(dropped)
            per_call = {call: n for call, n in zip(RECORD_CALLS, delta, strict=True) if n}
            log.warning("botmeter: buffer full, %d events dropped: %s", sum(delta), per_call)
            details["buffer_full"] = per_call
        for table in self.pipeline.run_chunks(lanes, (), self.chunk_rows):
            self.stats.processed += table.num_rows
            yield table
        self._note_rejected_in_processing()
        with self._losses_lock:
            losses, self._losses = self._losses, Counter()
            reasons, self._reasons = self._reasons, Counter()
        details.update(losses)
        if reasons:
            details["reasons"] = dict(reasons.most_common(20))
        total = sum(delta) + sum(losses.values())
        if total:
            extra.append(system_frame(time.time(), "dropped", total, "event", details))
            for table in self.pipeline.run_chunks([None] * len(RECORD_CALLS), extra, self.batch_size):
                yield table

    def _note_rejected_in_processing(self) -> None:
        rejected, self.pipeline.rejected = self.pipeline.rejected, Counter()
        for (call, reason), n in rejected.items():
            log.error("botmeter: %d %s event(s) set aside: %s", n, call, reason)
            self._lose(f"rejected_{call}", n, f"{call}: {reason}")

    def _lose(self, kind: str, n: int, reason: str | None = None) -> None:
        """Counts events lost on the writer; the next cycle records them in the store."""
        with self._losses_lock:
            if kind.startswith("rejected"):
                self.stats.rejected += n
            else:
                self.stats.dropped_memory_full += n
            self._losses[kind] += n
            if reason:
                self._reasons[reason] += n

    def store_or_spool(self, table: Any) -> None:
        """Writes the table; spooled batches go first, so a newer batch waits behind them.

        What neither the store nor the spool takes stays in memory, oldest first, and is retried.
        """
        if table is not None:
            self._unsaved.append([table, False])
            self._count_unsaved(table, 1)
        if self.spool.has_pending() and not self._replay():
            self._spool_unsaved()
            return
        while self._unsaved:
            entry = self._unsaved[0]
            if not self._write(entry[0], fresh=not entry[1]):
                entry[1] = True
                self._spool_unsaved()
                return
            self._unsaved.popleft()
            self._count_unsaved(entry[0], -1)
        self._fit_buffer()

    def _count_unsaved(self, table: Any, sign: int) -> None:
        self.unsaved_events += sign * table.num_rows
        self.unsaved_bytes += sign * table.nbytes

    def _write(self, table: Any, fresh: bool) -> bool:
        """True once the store has the batch (minus any events it refused); False when it is unavailable."""
        try:
            # More batches already waiting (a burst): keep the store open for them. Between
            # batches the file is free, so any process (a notebook, the duckdb shell) can open it.
            keep_open = self._burst or not self._outbox.empty()
            self._write_isolating(table, fresh=fresh, keep_open=keep_open)
        except Exception as exc:
            self.stats.write_failures += 1
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            if self._store_ok:
                log.warning("botmeter: store failed (%s); spooling to %s", exc, self.spool.directory)
            self._store_ok = False
            return False
        self.stats.written += table.num_rows
        self.stats.last_write_at = time.time()
        if not self._store_ok:
            log.warning("botmeter: store is back")
        self._store_ok = True
        return True

    def _write_isolating(
        self, table: Any, fresh: bool = False, keep_open: bool = False, budget: list[int] | None = None
    ) -> int:
        """Writes the table; if the store refuses its content, writes halves down to the refused events,
        which are set aside. ``StoreUnavailable`` (the store cannot take anything now) goes up.

        The halving stops after ``_ISOLATION_TRIES`` refused writes (a store refusing every event
        would otherwise be asked twice per event): what is still refused then is set aside whole.
        """
        budget = [_ISOLATION_TRIES] if budget is None else budget
        try:
            return self.store.write(table, fresh=fresh, keep_open=keep_open)
        except StoreUnavailable:
            raise
        except Exception as exc:
            budget[0] -= 1
            if table.num_rows <= 1 or budget[0] <= 0:
                self._set_aside(table, exc)
                return 0
        half = table.num_rows // 2
        # Halves are never fresh: a backend without transactions may have taken part of the whole.
        return self._write_isolating(table.slice(0, half), budget=budget) + self._write_isolating(
            table.slice(half), budget=budget
        )

    def _set_aside(self, table: Any, exc: Exception) -> None:
        reason = f"the store refused it: {type(exc).__name__}: {exc}"[:300]
        log.error("botmeter: %d event(s) set aside in %s: %s", table.num_rows, self.spool.failed_dir, reason)
        self.spool.set_aside(table, reason)
        self._lose("rejected_by_store", table.num_rows, reason)

    def _spool_unsaved(self) -> None:
        """Hands what waits in memory to the spool; what it cannot take stays, within the memory caps."""
        while self._unsaved:
            table = self._unsaved[0][0]
            if not self.spool.append(table):
                break
            self._unsaved.popleft()
            self._count_unsaved(table, -1)
            self.stats.spooled += table.num_rows
        while self._unsaved and (
            self.unsaved_events > self.max_events or self.unsaved_bytes > self.max_bytes
        ):
            table = self._unsaved.popleft()[0]
            self._count_unsaved(table, -1)
            # botmeter's own records of earlier losses are not events to count: their figures are
            # carried into the next record instead, so the store still learns of them.
            own = pc.equal(table.column("kind"), "system")
            carried = pc.sum(pc.filter(table.column("units"), own)).as_py() or 0
            events = table.num_rows - (pc.sum(own).as_py() or 0)
            log.error(
                "botmeter: neither the store nor the spool takes events and memory is at its cap; "
                "%d events dropped",
                events,
            )
            self._lose("memory_full", events)
            with self._losses_lock:
                self._losses["earlier"] += int(carried)
        self._fit_buffer()

    def _fit_buffer(self) -> None:
        """The buffer may hold what the caps leave after the batches held here."""
        try:
            self.buffer.cap = max(0, self.max_events - self.unsaved_events)
            if hasattr(self.buffer, "max_bytes"):
                self.buffer.max_bytes = max(0, self.max_bytes - self.unsaved_bytes)
        except Exception:
            log.exception("botmeter: could not resize the buffer")

    def _replay(self) -> bool:
        """Replays the spool; True when it is empty afterwards."""
        try:
            self.spool.replay(self._write_isolating)
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
