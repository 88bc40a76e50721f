"""The collector's core: validates batches, processes them as a Meter's writer would, and answers
only once they are durable.

The server is the store's single writer. Requests are validated and processed (priced, hashed)
on one processing thread, a group at a time, then handed to the store's thread, which writes what
has arrived meanwhile in one go (a group commit: one DuckDB transaction for many requests) or,
when the store fails, to the fsynced spool, which it replays in order once the store is back.
A request is answered only when its events are in the store or in the spool; what neither takes
is refused (503), never accepted and lost. Events received but not yet durable are capped: past
the cap, 503.
"""

from __future__ import annotations

import asyncio
import logging
import math
import queue
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..events import CALLER_KEYS, RECORD_CALLS, shown
from ..exceptions import StoreUnavailable
from ..process.pipeline import SCHEMA, Pipeline
from ..process.privacy import UserHasher, key_from_setting, key_paths, load_or_create_key
from ..store import Store, open_store
from ..store.spool import Spool
from .auth import Token
from .settings import ServerConfig

log = logging.getLogger("botmeter.server")

KINDS: dict[str, str] = {call.removeprefix("track_"): call for call in RECORD_CALLS}
_GROUP_ROWS = 245_760  # most events written in one transaction (two of DuckDB's row groups)
# How long acknowledged batches held in the spool may wait for more before the store writes them:
# a write of 60,000 events cost twice the CPU per event of one of 122,880 or more.
_HOLD_S = 1.0
_QUIET_S = 0.05  # ...or until no request has come for this long (nothing more will join them soon)
_IDLE_S = 1.0  # how often an idle writer retries the spool
_POLL_S = 0.002  # how often the processor looks for new requests while the store writes
# Request latency buckets (seconds) for /metrics, as Prometheus histograms count them.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class BatchRejected(Exception):
    """One event of a batch is wrong: the batch is refused whole (400), naming the event's index,
    the field and the value."""

    def __init__(self, index: int | None, field: str | None, value: Any, message: str) -> None:
        super().__init__(message)
        self.index = index
        self.field = field
        self.value = value
        self.message = message

    def body(self) -> dict[str, Any]:
        """The 400's JSON: every text in it encodable as UTF-8 (a lone surrogate in the value, or
        in a field's name, is shown escaped rather than failing the answer)."""
        value = self.value if _plain_json(self.value) else shown(self.value)
        return {
            "error": _encodable(self.message),
            "index": self.index,
            "field": None if self.field is None else _encodable(self.field),
            "value": _encodable(value) if isinstance(value, str) else value,
        }


class CollectorBusy(Exception):
    """The collector cannot take this batch now (overloaded, or neither store nor spool takes it): 503."""

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _encodable(text: str) -> str:
    """The text with anything UTF-8 cannot carry (lone surrogates) as backslash escapes."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _plain_json(value: Any) -> bool:
    if value is None or isinstance(value, bool | int | float):
        return not isinstance(value, float) or math.isfinite(value)
    return isinstance(value, str) and len(value) <= 200


@dataclass
class _Latency:
    buckets: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKETS))
    count: int = 0
    total: float = 0.0


@dataclass
class _Pending:
    """One request's events waiting for the writer: a processed table (a remote Meter's), or a
    JSON batch's events, which the writer checks (``lanes``: their records) and processes together
    with the others queued for the same bot (the pipeline's cost per run is then shared)."""

    done: Callable[[str | BaseException], None]
    table: pa.Table | None = None
    bot: str = ""
    lanes: tuple | None = None
    events: list | None = None
    rows: int = 0


class Collector:
    """The store's single writer, shared by the server's routes as ``request.app.state.collector``."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.meter_config = config.meter_config()
        mc = self.meter_config
        self.store: Store = open_store(
            mc.store,
            lock_timeout=mc.lock_timeout,
            session_gap_s=round(mc.session_gap_minutes * 60),
            config=mc,
        )
        spool_dir = Path(mc.spool_dir) if mc.spool_dir else self.store.default_spool_dir()
        self.spool = Spool(spool_dir, int(mc.max_spool_mb * 1024 * 1024))
        self.hasher = UserHasher(self._hash_key()) if mc.hash_users else None
        self._pipelines: dict[str, tuple[Pipeline, threading.Lock]] = {}
        self._pipelines_lock = threading.Lock()
        self.counters: Counter[str] = Counter()
        self._latency: dict[str, _Latency] = {}
        self._pending_events = 0
        self._pending_lock = threading.Lock()
        self._queue: queue.Queue[_Pending | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._store_thread: threading.Thread | None = None
        # One processed group waits for the store while the next is processed: processing holds
        # the GIL, a DuckDB write mostly does not, so the two overlap on two cores.
        self._outbox: queue.Queue[tuple | None] = queue.Queue(maxsize=1)
        self._store_free = threading.Event()  # set while the store thread waits for work
        self._store_free.set()
        self._hold_file = config.workers <= 1
        # Appends held batches to the spool (fsync mostly) while the next group is processed.
        self._spooler = ThreadPoolExecutor(1, thread_name_prefix="botmeter-spool")
        self.store_ok = True
        self.last_error: str | None = None

    def _hash_key(self) -> bytes:
        mc = self.meter_config
        if mc.hash_key:
            return key_from_setting(mc.hash_key)
        for path in key_paths(self.store.default_key_path(), mc.store):
            try:
                return load_or_create_key(path)
            except OSError as exc:
                log.warning("botmeter: cannot keep the user-hash key at %s: %s", path, exc)
        raise StoreUnavailable("no writable place for the user-hash key: set BOTMETER_HASH_KEY")

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        if not self.writer_alive:
            self._outbox = queue.Queue(maxsize=1)
            self._store_free.set()
            self._store_thread = threading.Thread(target=self._run_store, name="botmeter-store", daemon=True)
            self._thread = threading.Thread(target=self._run, name="botmeter-collector", daemon=True)
            self._store_thread.start()
            self._thread.start()

    def warm_up(self) -> None:
        """Checks and processes a few events once, storing nothing: the first request then does
        not pay for what the pipeline imports and loads on first use (about half a second)."""
        try:
            lanes = self._check(_WARM_UP_EVENTS)
            pipeline = Pipeline(self.meter_config, self.hasher)
            list(pipeline.run_chunks(lanes, (), chunk_rows=1 << 62))
        except Exception:  # only a head start: the first request does it otherwise
            log.warning("botmeter: warming up the pipeline failed", exc_info=True)

    @property
    def writer_alive(self) -> bool:
        return all(t is not None and t.is_alive() for t in (self._thread, self._store_thread))

    def close(self, timeout: float = 30.0) -> None:
        """Writes what is queued, then closes the store (graceful shutdown)."""
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout)
        if self._store_thread is not None and self._store_thread.is_alive():
            self._store_thread.join(timeout)
        self.store.close()

    # -- counters -----------------------------------------------------------------------------

    def count(self, name: str, n: int = 1) -> None:
        """Adds to a named counter shown by ``/metrics`` as ``botmeter_server_<name>_total``."""
        self.counters[name] += n

    def observe_latency(self, route: str, seconds: float) -> None:
        entry = self._latency.get(route)
        if entry is None:
            entry = self._latency[route] = _Latency()
        entry.count += 1
        entry.total += seconds
        for i, bound in enumerate(LATENCY_BUCKETS):
            if seconds <= bound:
                entry.buckets[i] += 1

    @property
    def latency(self) -> dict[str, _Latency]:
        return self._latency

    @property
    def pending_events(self) -> int:
        return self._pending_events

    # -- ingest -------------------------------------------------------------------------------

    async def accept(self, events: list[dict], token: Token) -> int:
        """Stores a batch in the ``/v1/events`` format; returns its size once it is durable.

        Each event is a dict of ``kind`` and the keyword arguments of the matching ``track_*``
        call; the events are left as they were given. Raises ``BatchRejected``
        (nothing written) or ``CollectorBusy`` (503)."""
        if not isinstance(events, list):
            raise BatchRejected(None, "events", events, "events must be an array of event objects")
        with self._reserved(len(events)):
            # Checked on the writer's processing thread, with the other requests of its group:
            # checks on a thread per request kept several threads asking for the GIL at once, and
            # the store's thread, which needs it back after every statement, waited behind them.
            await self._commit(_Pending(_never, bot=token.bot, events=events, rows=len(events)))
        self.count("accepted_events", len(events))
        return len(events)

    async def accept_table(self, table: pa.Table, token: Token) -> int:
        """Stores events a remote Meter processed already (Arrow); returns the count once durable."""
        table = self.conform(table, token.bot)
        with self._reserved(table.num_rows):
            await self._commit(_Pending(_never, table=table, rows=table.num_rows))
        self.count("accepted_events", table.num_rows)
        return table.num_rows

    def conform(self, table: pa.Table, bot: str) -> pa.Table:
        """The table in the stored schema, every event for the token's bot, or BatchRejected."""
        names = set(table.schema.names)
        missing = [n for n in SCHEMA.names if n not in names]
        if missing:
            raise BatchRejected(None, missing[0], None, f"the batch has no {missing[0]} column")
        extra = [n for n in table.schema.names if n not in SCHEMA.names]
        if extra:
            raise BatchRejected(None, extra[0], None, f"unknown column {extra[0]}")
        try:
            out = table.select(SCHEMA.names).cast(SCHEMA.with_metadata(table.schema.metadata))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            raise BatchRejected(None, None, None, f"the batch does not fit the stored columns: {exc}")
        for name in ("event_id", "ts", "kind"):
            nulls = out.column(name).null_count
            if nulls:
                raise BatchRejected(None, name, None, f"{name} must not be null ({nulls} events)")
        bots = out.column("bot")
        others = pc.invert(pc.fill_null(pc.equal(bots, bot), False))
        if pc.any(others).as_py():  # name the first stranger
            i = pc.index(others, True).as_py()
            value = bots[i].as_py()
            raise BatchRejected(i, "bot", value, f"this token writes events for bot {bot!r} only")
        return out

    def _reserved(self, n: int) -> _Reservation:
        with self._pending_lock:
            if self._pending_events and self._pending_events + n > self.config.max_pending_events:
                self.count("refused_busy_events", n)
                raise CollectorBusy(
                    f"{self._pending_events} events are waiting to be stored; try again shortly"
                )
            self._pending_events += n
        return _Reservation(self, n)

    def _release(self, n: int) -> None:
        with self._pending_lock:
            self._pending_events -= n

    def _pipeline(self, bot: str) -> tuple[Pipeline, threading.Lock]:
        with self._pipelines_lock:
            found = self._pipelines.get(bot)
            if found is None:
                config = self.config.meter_config(bot)
                found = self._pipelines[bot] = (Pipeline(config, self.hasher), threading.Lock())
            return found

    def _check(self, events: list[Any]) -> tuple:
        """Checks every event as its track call would (BatchRejected names the first bad one);
        returns their records, column by column, for the pipeline."""
        recorder = getattr(_recorders, "recorder", None)
        if recorder is None or recorder[0] < len(events):
            # One recorder per thread, reused: making one costs as much as checking 150 events.
            from ..collect.recorder import make_recorder

            cap = max(len(events), self.config.max_batch_events) + 1
            buffer, track = make_recorder(cap, max_bytes=1 << 62)
            recorder = _recorders.recorder = (cap, buffer, track)
        _, buffer, track = recorder
        buffer.calibrate()
        try:
            for index, event in enumerate(events):
                _record(track, index, event)
        except BaseException:
            buffer.drain_columns()  # the refused batch's first events: the next batch starts empty
            raise
        return buffer.drain_columns()

    def _process(self, bot: str, lanes: list[tuple]) -> list[pa.Table]:
        """Runs the bot's pipeline once over the records of several requests."""
        pipeline, lock = self._pipeline(bot)
        with lock:
            tables = list(pipeline.run_chunks(_merged_lanes(lanes), (), chunk_rows=1 << 62))
            refused, pipeline.rejected = pipeline.rejected, Counter()
        if refused:
            (call, reason), _ = refused.most_common(1)[0]
            raise BatchRejected(
                None, None, None, f"a {call.removeprefix('track_')} event cannot be stored: {reason}"
            )
        return tables

    async def _commit(self, item: _Pending) -> str:
        """Hands the events to the writer thread; returns "stored" or "spooled" once they are."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[str] = loop.create_future()

        def done(outcome: str | BaseException) -> None:
            def settle() -> None:
                if future.done():
                    return
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)

            loop.call_soon_threadsafe(settle)

        item.done = done
        self.start()
        self._queue.put(item)
        return await future

    # -- the writer thread --------------------------------------------------------------------

    def _run(self) -> None:
        """Processes requests as they arrive, and hands the store everything processed since its
        last write once it is free: processing overlaps the write in progress, and each write
        takes all that arrived meanwhile (a write's fixed cost is shared by more events).

        While the store writes, each processed group goes to the spool, held (fsynced, locked by
        this process), and its requests are answered at once; so do the groups after it, until
        the held ones add up to a large write (or have waited _HOLD_S, or no request came for
        _QUIET_S), which the store then takes in one transaction before discarding their files.
        A write's size is then not bounded by how many requests wait at once, and its fixed cost
        is shared by many more."""
        ready: list[_Pending] = []
        tables: list[pa.Table] = []
        fresh = True
        # Groups on their way to the spool (appended on the spool thread while the next group is
        # processed here): the append's future, its requests, tables and whether fresh.
        holding: list[tuple[Future[str | None], list[_Pending], list[pa.Table], bool]] = []
        held_since = arrived = 0.0
        rows = 0
        stopping = False
        while True:
            group: list[_Pending] = []
            if not stopping and rows < _GROUP_ROWS:
                try:
                    first = self._queue.get(timeout=_POLL_S if ready or holding else _IDLE_S)
                except queue.Empty:
                    first = _NOTHING
                if first is None:
                    stopping = True
                elif first is not _NOTHING:
                    group.append(first)
                    while rows + sum(i.rows for i in group) < _GROUP_ROWS:
                        try:
                            item = self._queue.get_nowait()
                        except queue.Empty:
                            break
                        if item is None:
                            stopping = True
                            break
                        group.append(item)
            elif not stopping:
                self._store_free.wait(_POLL_S)  # a full group waits for the store
            if group:
                try:
                    more, more_tables, more_fresh = self._processed(group)
                except Exception as exc:  # never let the writer die; every waiting request gets an answer
                    log.exception("botmeter: the collector's processing failed")
                    for item in group:
                        item.done(CollectorBusy(f"processing failed: {type(exc).__name__}"))
                else:
                    if more_tables and not stopping and (holding or not self._store_free.is_set()):
                        if not holding:
                            held_since = time.monotonic()
                        future = self._spooler.submit(self._hold, more, more_tables)
                        holding.append((future, more, more_tables, more_fresh))
                    else:
                        ready += more
                        tables += more_tables
                        fresh = fresh and more_fresh
                    rows += sum(i.rows for i in more)
                arrived = time.monotonic()  # the last group is done (a large one takes a while)
            # Held batches are answered already: they wait for a larger write, up to _HOLD_S,
            # unless the requests stopped coming.
            now = time.monotonic()
            due = ready or (
                holding
                and (
                    stopping
                    or rows >= _GROUP_ROWS
                    or now - held_since >= _HOLD_S
                    or now - arrived >= _QUIET_S
                )
            )
            if due and (self._store_free.is_set() or stopping):
                held: list[str] = []
                held_tables: list[pa.Table] = []
                held_fresh = True
                for future, items, more_tables, more_fresh in holding:
                    name = future.result()
                    if name is not None:
                        held.append(name)
                        held_tables += more_tables
                        held_fresh = held_fresh and more_fresh
                    else:  # the spool did not take it: its requests wait for this write
                        ready += items
                        tables += more_tables
                        fresh = fresh and more_fresh
                self._store_free.wait()
                self._store_free.clear()
                self._outbox.put((ready, tables, fresh, held, held_tables, held_fresh))
                ready, tables, fresh, rows, holding = [], [], True, 0, []
            elif not ready and not holding and not group and not stopping and self._store_free.is_set():
                self._store_free.clear()
                self._outbox.put(_IDLE)
            if stopping and not ready and not holding:
                self._store_free.wait()
                self._outbox.put(None)
                return

    def _hold(self, group: list[_Pending], tables: list[pa.Table]) -> str | None:
        """Puts a processed group in the spool, held for the store's next write, and answers its
        requests (they are durable); None when the spool does not take it (they wait for the store)."""
        table = _combined(tables)
        try:
            name = self.spool.append(table, hold=True)
        except Exception:  # never lose the group: its requests then wait for the store's write
            log.exception("botmeter: could not hold a batch in the spool")
            return None
        if name is None:
            return None
        self.count("spool_acknowledged_events", table.num_rows)
        for item in group:
            item.done("spooled")
        return name

    def _run_store(self) -> None:
        """Writes each processed group (or spools it), then answers its requests."""
        while True:
            got = self._outbox.get()
            try:
                if got is None:
                    break
                if got is _IDLE:
                    # Idle for a while: let go of the file (another process may want it), retry the spool.
                    self._replay_when_idle()
                    self._release_store()
                    continue
                ready, tables, fresh, held, held_tables, held_fresh = got
                try:
                    self._write_processed(ready, tables, fresh, held, held_tables, held_fresh)
                except Exception as exc:  # never let the writer die; every waiting request gets an answer
                    log.exception("botmeter: the collector's write failed")
                    for item in ready:
                        item.done(CollectorBusy(f"the write failed: {type(exc).__name__}"))
                    self._let_go(held)
            finally:
                self._store_free.set()
        self._release_store()

    def _processed(self, group: list[_Pending]) -> tuple[list[_Pending], list[pa.Table], bool]:
        """The group's requests that could be processed, their tables, and whether every id in
        them was made here just now (the store may then skip its duplicate check)."""
        ready: list[_Pending] = []
        tables: list[pa.Table] = []
        fresh = True
        by_bot: dict[str, list[_Pending]] = {}
        for item in group:
            if item.table is not None:
                ready.append(item)
                tables.append(item.table)
                fresh = False  # a remote Meter's ids: perhaps a retry
            else:
                if item.lanes is None:
                    try:
                        item.lanes = self._check(item.events or [])
                    except Exception as exc:  # BatchRejected (400) or a fault: this request's alone
                        item.done(exc)
                        continue
                    item.events = None  # its records are what is kept
                by_bot.setdefault(item.bot, []).append(item)
        for bot, items in by_bot.items():
            try:
                made = self._process(bot, [i.lanes for i in items])
            except BatchRejected as exc:
                if len(items) == 1:
                    items[0].done(exc)
                    continue
                # One request's event cannot be stored: each alone, so it costs only itself.
                for item in items:
                    more, more_tables, more_fresh = self._processed([item])
                    ready += more
                    tables += more_tables
                    fresh = fresh and more_fresh
                continue
            ready += items
            tables += made
            fresh = fresh and all(CALLER_KEYS not in (t.schema.metadata or {}) for t in made)
        return ready, tables, fresh

    def _write_group(self, group: list[_Pending]) -> None:
        self._write_processed(*self._processed(group))

    def _write_processed(
        self,
        group: list[_Pending],
        tables: list[pa.Table],
        fresh: bool,
        held: list[str] | tuple = (),
        held_tables: list[pa.Table] | tuple = (),
        held_fresh: bool = True,
    ) -> None:
        """Writes the requests still waiting (``group``) and the held spool batches together;
        answers the first and discards the second once stored."""
        if not group and not held:
            return
        if not tables and not held:  # nothing to store (every event dropped by a processor): done
            for item in group:
                item.done("stored")
            return
        table = _combined([*tables, *held_tables])
        if self.spool.has_pending(skip_locked=True) and not self._replay():
            self._let_go(held)
            self._spool_waiting(group, tables)
            return
        try:
            # One worker keeps the file open between writes while requests keep coming: closing
            # it costs a checkpoint each time (a reader in another process asks and is let in).
            # Several workers share the file, so each lets go once its queue is empty.
            self.store.write(
                table, fresh=fresh and held_fresh, keep_open=self._hold_file or not self._queue.empty()
            )
        except StoreUnavailable as exc:
            self._store_failed(exc)
            self._let_go(held)
            self._spool_waiting(group, tables)
            return
        except Exception as exc:
            if held:
                # Acknowledged already: left for replay, which sets aside a batch the store
                # refuses (counted as quarantined), so each batch costs only itself.
                self._let_go(held)
                self._write_processed(group, tables, fresh)
                return
            # The store refuses the content: each request alone, so one request costs only itself.
            if len(group) > 1:
                for item in group:
                    self._write_group([item])
                return
            self.count("rejected_by_store_events", table.num_rows)
            log.error("botmeter: the store refused a batch of %d events: %s", table.num_rows, exc)
            group[0].done(BatchRejected(None, None, None, f"the store refused the batch: {exc}"))
            return
        self._store_back()
        self.count("stored_events", table.num_rows)
        for name in held:
            try:
                self.spool.discard(name)
            except OSError as exc:  # stays in the spool: its replay skips what is stored
                log.warning("botmeter: cannot remove the stored spool batch %s: %s", name, exc)
        for item in group:
            item.done("stored")
        if not self._hold_file and self._queue.empty():
            self._release_store()

    def _spool_waiting(self, group: list[_Pending], tables: list[pa.Table]) -> None:
        if not group:
            return
        if not tables:
            for item in group:
                item.done("stored")
            return
        self._spool(group, _combined(tables))

    def _let_go(self, held: list[str] | tuple) -> None:
        """Leaves held batches the store did not take in the spool, for replay."""
        for name in held:
            self.count("spooled_events", self.spool.let_go(name))

    def _spool(self, group: list[_Pending], table: pa.Table) -> None:
        if self.spool.append(table):
            self.count("spooled_events", table.num_rows)
            for item in group:
                item.done("spooled")
            return
        self.count("refused_unavailable_events", table.num_rows)
        for item in group:
            item.done(CollectorBusy("the store is unavailable and the spool cannot take the batch", 5))

    def _replay(self) -> bool:
        try:
            replayed = self.spool.replay(lambda t: self.store.write(t, keep_open=True))
        except StoreUnavailable as exc:
            self._store_failed(exc)
            return False
        except Exception as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("botmeter: spool replay failed")
            return False
        if replayed:
            self.count("replayed_events", replayed)
        if not self.spool.has_pending(skip_locked=True):
            self._store_back()
            return True
        return False

    def _replay_when_idle(self) -> None:
        if self.spool.has_pending(skip_locked=True):
            self._replay()

    def _release_store(self) -> None:
        try:
            self.store.release()
        except Exception:
            log.exception("botmeter: could not release the store")

    def _store_failed(self, exc: BaseException) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"
        self.count("store_failures")
        if self.store_ok:
            log.warning("botmeter: store failed (%s); spooling to %s", exc, self.spool.directory)
        self.store_ok = False

    def _store_back(self) -> None:
        if not self.store_ok:
            log.warning("botmeter: store is back")
        self.store_ok = True

    # -- health -------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        depth = self.spool.depth()
        return {
            "store": self.store.url,
            "store_reachable": self.store_ok,
            "writer_alive": self.writer_alive,
            "pending_events": self._pending_events,
            "held_events": self.spool.held_events,
            "spool_batches": depth.batches,
            "spool_events": depth.events,
            "spool_bytes": depth.bytes,
            "last_error": self.last_error,
        }


class _Reservation:
    __slots__ = ("collector", "n")

    def __init__(self, collector: Collector, n: int) -> None:
        self.collector = collector
        self.n = n

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        self.collector._release(self.n)


_WARM_UP_EVENTS = [
    {"kind": "message", "direction": "in", "user": "+15550000000", "conversation": "c", "text": "hi"},
    {"kind": "llm_call", "provider": "openai", "model": "gpt-4o", "input_tokens": 1, "output_tokens": 1},
    {"kind": "timing", "stage": "reply", "latency_ms": 1.0},
    {"kind": "error", "error": "Timeout"},
]
_recorders = threading.local()  # each thread's recorder for _check
_IDLE = ("idle",)  # the processor found nothing to do for a while
_NOTHING: Any = object()


def _never(outcome: str | BaseException) -> None:
    raise AssertionError("replaced by _commit")


def _merged_lanes(lanes: list[tuple]) -> tuple:
    """The records of several requests as one drain of the buffer: per track call, per column."""
    if len(lanes) == 1:
        return lanes[0]
    merged = []
    for k in range(len(RECORD_CALLS)):
        parts = [lane[k] for lane in lanes if lane[k]]
        if len(parts) <= 1:
            merged.append(parts[0] if parts else None)
        else:
            columns = []
            for c in range(len(parts[0])):
                column = list(parts[0][c])
                for part in parts[1:]:
                    column.extend(part[c])
                columns.append(column)
            merged.append(tuple(columns))
    return tuple(merged)


def _combined(tables: list[pa.Table]) -> pa.Table:
    if len(tables) == 1:
        return tables[0]
    caller_keys = any(CALLER_KEYS in (t.schema.metadata or {}) for t in tables)
    table = pa.concat_tables([t.replace_schema_metadata(None) for t in tables])
    return table.replace_schema_metadata({CALLER_KEYS: b"1"}) if caller_keys else table


# How a track call's error names its argument: "track_x: name must ...", "name=5 must not exceed",
# "missing required argument 'name'", "unexpected keyword argument 'name'".
_FIELD = re.compile(r"argument '([^']+)'|^track_\w+: (\w+)[ =]|^track: (ts) ")


def _record(track: dict[str, Callable[..., None]], index: int, event: Any) -> None:
    """Records one event of a batch on a private buffer, or raises BatchRejected naming it."""
    if not isinstance(event, dict):
        raise BatchRejected(index, None, event, f"event {index} must be an object, got {shown(event)}")
    kind = event.get("kind")
    call = KINDS.get(kind) if kind.__class__ is str else None
    if call is None:
        raise BatchRejected(
            index, "kind", kind, f"event {index}: kind must be one of {', '.join(KINDS)}, got {shown(kind)}"
        )
    # The call's arguments: the event without its kind (a copy; the caller's dict is left alone).
    arguments = event.copy()
    del arguments["kind"]
    ts = arguments.get("ts")
    if ts.__class__ is str:
        arguments["ts"] = _iso_time(index, ts)
    if call == "track_error" and not (isinstance(arguments.get("error"), str) and arguments["error"]):
        value = arguments.get("error")
        raise BatchRejected(
            index,
            "error",
            value,
            f"event {index}: error must be the error's type or code, got {shown(value)}",
        )
    try:
        track[call](**arguments)
    except (TypeError, ValueError) as exc:
        message = str(exc)
        found = _FIELD.search(message)
        name = next((g for g in found.groups() if g), None) if found else None
        value = ts if name == "ts" else event.get(name) if name else None
        raise BatchRejected(index, name, value, f"event {index}: {message}")


def _iso_time(index: int, text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        raise BatchRejected(
            index,
            "ts",
            text,
            f"event {index}: ts must be ISO 8601 with a time zone (or epoch seconds), got {text!r}",
        )
    return value
