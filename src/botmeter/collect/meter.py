"""The recording core of a Meter: what a bot holds to record events.

Each ``track_*`` method checks its arguments, stamps the time and appends a compact record to a
bounded in-memory buffer: no I/O, no locks, no pricing. The methods below document the calls;
at construction each is replaced on the instance by the C fast path (or its pure-Python twin),
which takes the same arguments. A background writer does everything else.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import logging
import os
import secrets
import time
import weakref
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Self, TypeVar

from ..config import Config
from ..events import RECORDS
from ..process.pipeline import Pipeline, Processor
from ..process.privacy import UserHasher, key_from_setting, key_paths, load_or_create_key
from ..store import Store, open_store
from ..store.spool import Spool
from .context import CONTEXT, Context
from .context import context as _context
from .recorder import fast_path_available, make_recorder
from .writer import Writer

log = logging.getLogger("botmeter")
F = TypeVar("F", bound=Callable[..., Any])

# Most calls waiting for the writer to record them (Meter.defer). Each may hold an SDK response;
# the writer takes them every cycle, so only a stalled store lets them pile up: past this, a call
# is recorded on its caller's thread, into the buffer and its memory caps.
_MAX_DEFERRED = 2_000
Ts = datetime | float | int | None
Id = str | int | None


class RecordingMeter:
    """Records a bot's events and writes them, in the background, to a store.

    The recording core: track calls, flush, close, stats. ``botmeter.Meter`` (``botmeter.facade``) is
    this plus reading back, chat admin replies, the Lambda decorator and instrumented clients, which
    live in the layers above and are not imported here.

    ``Meter(bot="dadacat")`` writes to ``./botmeter.duckdb`` (or ``BOTMETER_STORE``). Every
    setting can be given here or as a ``BOTMETER_*`` variable; see ``botmeter.config``.
    """

    def __init__(
        self,
        bot: str | None = None,
        *,
        store: str | None = None,
        processors: Sequence[Processor] = (),
        pure_python: bool = False,
        **settings: Any,
    ) -> None:
        self.config = Config.resolve(bot=bot, store=store, **settings)
        self.enabled = self.config.enabled
        self._buffer, fns = make_recorder(
            self.config.max_buffer,
            pure_python=pure_python,
            max_bytes=int(self.config.max_buffer_mb * 1024 * 1024),
        )
        self.fast_path = fast_path_available() and not pure_python
        for call, fn in fns.items():
            setattr(self, call, fn)  # the instance attribute wins over the documented method
        self._closed = False
        self._integration_failures: dict[str, int] = {}
        self._writer: Writer | None = None
        self.store: Store | None = None
        if not self.enabled:
            self._buffer.enabled = False
            return
        # The whole configuration goes along: a backend reads its own settings (CloudWatch's namespace...).
        self.store = open_store(
            self.config.store,
            lock_timeout=self.config.lock_timeout,
            session_gap_s=round(self.config.session_gap_minutes * 60),
            config=self.config,
        )
        spool_dir = Path(self.config.spool_dir) if self.config.spool_dir else self.store.default_spool_dir()
        self.spool = Spool(spool_dir, int(self.config.max_spool_mb * 1024 * 1024))
        hasher = UserHasher(self._hash_key()) if self.config.hash_users else None
        self.pipeline = Pipeline(self.config, hasher, processors)
        self._writer = Writer(
            self._buffer,
            self.pipeline,
            self.store,
            self.spool,
            interval=self.config.flush_interval,
            batch_size=self.config.batch_size,
        )
        self._writer.start()
        ref = weakref.ref(self)
        self._atexit = functools.partial(_close_at_exit, ref)
        atexit.register(self._atexit)
        os.register_at_fork(
            before=functools.partial(_before_fork, ref),
            after_in_parent=functools.partial(_after_fork_in_parent, ref),
            after_in_child=functools.partial(_after_fork_in_child, ref),
        )

    def _hash_key(self) -> bytes:
        if self.config.hash_key:
            return key_from_setting(self.config.hash_key)
        assert self.store is not None
        for path in key_paths(self.store.default_key_path(), self.config.store):
            try:
                return load_or_create_key(path)
            except OSError as exc:
                log.warning("botmeter: cannot keep the user-hash key at %s: %s", path, exc)
        # Never stop the bot for this: hashes stay consistent for this process only, and we say so.
        log.error("botmeter: no writable place for the user-hash key; using a key for this process only")
        return secrets.token_bytes(32)

    # -- track calls (documentation; the instance attributes set in __init__ do the work) ---------

    def track_message(
        self,
        *,
        direction: str,
        text: str | None = None,
        user: Id = None,
        conversation: Id = None,
        channel: str | None = None,
        properties: dict | None = None,
        event_id: str | None = None,
        ts: Ts = None,
    ) -> None:
        """A message from the user (``direction="in"``) or the bot (``"out"``).

        The text is used for its length (and SMS segments); it is stored only with ``store_text``.
        """
        return self._forward("track_message", locals())

    def track_sms(
        self,
        *,
        direction: str,
        text: str | None = None,
        segments: float | None = None,
        country: str | None = None,
        cost_usd: float | None = None,
        provider: str | None = None,
        user: Id = None,
        conversation: Id = None,
        channel: str | None = None,
        properties: dict | None = None,
        event_id: str | None = None,
        ts: Ts = None,
    ) -> None:
        """An SMS in or out: a message whose segments and cost are computed from the text and country.

        The country comes from the user's phone number (E.164) unless given; the rate from the
        SMS rate table (``sms_rates``) or a custom price list; ``cost_usd`` overrides both.
        """
        return self._forward("track_sms", locals())

    def track_llm_call(
        self,
        *,
        provider: str,
        model: str,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cached_tokens: int = 0,
        reasoning_tokens: int = 0,
        cache_write_tokens: int = 0,
        latency_ms: float | None = None,
        cost_usd: float | None = None,
        stage: str | None = None,
        user: Id = None,
        conversation: Id = None,
        channel: str | None = None,
        properties: dict | None = None,
        event_id: str | None = None,
        ts: Ts = None,
    ) -> None:
        """One LLM call. ``input_tokens`` counts the whole prompt, cached and cache-write tokens included;
        ``output_tokens`` the whole completion, reasoning tokens included. Cost comes from genai-prices
        (or your price list) unless ``cost_usd`` is given; an unknown model is stored unpriced.
        """
        return self._forward("track_llm_call", locals())

    def track_api_call(
        self,
        *,
        provider: str,
        name: str,
        cost_usd: float | None = None,
        units: float | None = None,
        unit: str | None = None,
        latency_ms: float | None = None,
        user: Id = None,
        conversation: Id = None,
        channel: str | None = None,
        properties: dict | None = None,
        event_id: str | None = None,
        ts: Ts = None,
    ) -> None:
        """Any other paid or timed API call; priced from your price list when ``cost_usd`` is not given."""
        return self._forward("track_api_call", locals())

    def track_error(
        self,
        error: BaseException | type[BaseException] | str,
        *,
        severity: str | None = None,
        message: str | None = None,
        status_code: int | None = None,
        code: str | int | None = None,
        provider: str | None = None,
        stage: str | None = None,
        context: dict | None = None,
        user: Id = None,
        conversation: Id = None,
        channel: str | None = None,
        properties: dict | None = None,
        event_id: str | None = None,
        ts: Ts = None,
    ) -> None:
        """An error: an exception, an exception class or an error code. It is categorised (rate_limit,
        quota, timeout, auth, ...), given a severity (from the category unless given) and a fingerprint
        that groups the same error together.
        """
        return self._forward("track_error", locals())

    def track_timing(
        self,
        stage: str,
        latency_ms: float,
        *,
        provider: str | None = None,
        model: str | None = None,
        user: Id = None,
        conversation: Id = None,
        channel: str | None = None,
        properties: dict | None = None,
        event_id: str | None = None,
        ts: Ts = None,
    ) -> None:
        """How long one stage of a reply took, in milliseconds (see also ``timer``)."""
        return self._forward("track_timing", locals())

    def track_activity(
        self,
        name: str,
        *,
        user: Id = None,
        conversation: Id = None,
        channel: str | None = None,
        properties: dict | None = None,
        event_id: str | None = None,
        ts: Ts = None,
    ) -> None:
        """Something the user did: ``"reset"``, an admin command (``"admin:status"``), a feature
        (``"feature:x"``)."""
        return self._forward("track_activity", locals())

    def track_custom(
        self,
        name: str,
        *,
        value: float | None = None,
        unit: str | None = None,
        user: Id = None,
        conversation: Id = None,
        channel: str | None = None,
        properties: dict | None = None,
        event_id: str | None = None,
        ts: Ts = None,
    ) -> None:
        """An event of your own, with an optional value and unit."""
        return self._forward("track_custom", locals())

    def _forward(self, call: str, arguments: dict[str, Any]) -> None:
        # Only reached through the class (Meter.track_x(meter, ...)): instances call the fast path directly.
        arguments.pop("self")
        spec = RECORDS[call]
        positional = [arguments.pop(name) for name in spec.names[: spec.positional]]
        return self.__dict__[call](*positional, **arguments)

    def timer(self, stage: str, **fields: Any) -> Timer:
        """Times a block or a function as a ``timing`` event: ``with meter.timer("llm"): ...``."""
        return Timer(self, stage, fields)

    def context(
        self, user: Id = None, conversation: Id = None, stage: str | None = None
    ) -> contextlib.AbstractContextManager[Context]:
        """``with meter.context(user=..., conversation=..., stage=...):`` gives every track call inside
        the block (and the calls of instrumented clients) these fields when the call leaves them None.
        Follows contextvars: asyncio tasks and copied contexts see it; nested blocks override."""
        return _context(user=user, conversation=conversation, stage=stage)

    @property
    def user_hasher(self) -> UserHasher | None:
        """The keyed hash the writer stores user ids with; None when hashing is off or the meter is
        disabled."""
        pipeline = getattr(self, "pipeline", None)
        return pipeline.hasher if pipeline is not None else None

    def stored_id(self, value: str | int) -> str:
        """An id as the store keeps it (the keyed hash, unless hashing is off), for code that records
        or compares ids outside a track call."""
        hasher = self.user_hasher
        return hasher.hash(value) if hasher is not None else str(value)

    def defer(self, fn: Callable[..., None], args: tuple) -> None:
        """Runs ``fn(*args, ts)`` on the writer's thread before its next drain, in the context (user,
        conversation, stage) in force here, ``ts`` being now (epoch seconds): what an integration
        records after an SDK call costs the bot's thread a tuple, not the reading and checking.
        Without a running writer (disabled, closed, or ``_MAX_DEFERRED`` already waiting) it
        runs now, with ``ts`` None. ``fn`` must not raise (what it records is counted by itself)."""
        writer = self._writer
        if writer is not None and not self._closed and len(writer.deferred) < _MAX_DEFERRED:
            writer.deferred.append((fn, args, CONTEXT.get(), time.time()))
        else:
            fn(*args, None)

    def count_integration_failure(self, where: str) -> None:
        """Counts a failure inside an integration's wrapper (swallowed; shown by ``stats()``)."""
        self._integration_failures[where] = self._integration_failures.get(where, 0) + 1

    # -- lifecycle ----------------------------------------------------------------------------

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Returns once everything tracked before it is in the store or the spool (True), or on timeout.

        False also while batches wait in memory because neither the store nor the spool takes them
        (they are retried), and when events were dropped or set aside since the previous flush."""
        if self._writer is None:
            return True
        try:
            return self._writer.flush(timeout)
        except Exception:  # flush is called from the bot's code: it must not raise
            log.exception("botmeter: flush failed")
            return False

    def close(self, timeout: float | None = 30.0) -> bool:
        """Flushes, stops the writer; later track calls do nothing."""
        if self._closed:
            return True
        self._closed = True
        if self._writer is not None:
            # Recorded before the buffer closes (defer() now runs what comes in on its caller).
            self._writer.run_deferred()
        self._buffer.enabled = False
        if self._writer is None:
            return True
        with contextlib.suppress(Exception):
            atexit.unregister(self._atexit)
        try:
            return self._writer.stop(timeout)
        except Exception:
            log.exception("botmeter: close failed")
            return False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stats(self) -> dict[str, Any]:
        """What the meter has done: buffered, written, spooled, dropped, and why."""
        dropped_buffer = sum(self._buffer.dropped_counts())
        out: dict[str, Any] = {
            "enabled": self.enabled and not self._closed,
            "fast_path": self.fast_path,
            "store": self.config.store,
            "buffered": self._buffer.size + (len(self._writer.deferred) if self._writer else 0),
            "buffered_bytes": self._buffer.bytes,
            "max_buffer": self.config.max_buffer,
            "max_buffer_bytes": int(self.config.max_buffer_mb * 1024 * 1024),
            "dropped_buffer_full": dropped_buffer,
            "integration_failures": dict(self._integration_failures),
        }
        if self._writer is None:
            out["dropped"] = dropped_buffer
            return out
        w = self._writer.stats
        depth = self.spool.depth()
        out.update(
            writer_alive=self._writer.alive,
            processed=w.processed,
            written=w.written,
            spooled=w.spooled,
            replayed=self.spool.replayed_events,
            spool_batches=depth.batches,
            spool_events=depth.events,
            spool_bytes=depth.bytes,
            unsaved_events=self._writer.unsaved_events,
            unsaved_bytes=self._writer.unsaved_bytes,
            dropped_memory_full=w.dropped_memory_full,
            rejected=w.rejected,
            quarantined=self.spool.quarantined_events,
            dropped=dropped_buffer + w.dropped_memory_full + w.rejected,
            write_failures=w.write_failures,
            processor_failures=dict(self.pipeline.failures),
            unpriced_models={f"{p}/{m}": n for (p, m), n in self.pipeline.llm.unpriced.items()},
            last_write_at=w.last_write_at,
            last_error=w.last_error,
        )
        return out

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}(bot={self.config.bot!r}, store={self.config.store!r}, enabled={self.enabled})"


class Timer:
    """``with meter.timer("llm"):`` or ``@meter.timer("reply")``: tracks the elapsed milliseconds."""

    __slots__ = ("_fields", "_meter", "_stage", "_start", "latency_ms")

    def __init__(self, meter: RecordingMeter, stage: str, fields: dict[str, Any]) -> None:
        self._meter = meter
        self._stage = stage
        self._fields = fields
        self._start = 0.0
        self.latency_ms: float | None = None

    def __enter__(self) -> Timer:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.latency_ms = (time.perf_counter() - self._start) * 1000.0
        self._meter.track_timing(self._stage, self.latency_ms, **self._fields)

    def __call__(self, fn: F) -> F:
        meter, stage, fields = self._meter, self._stage, self._fields

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            with Timer(meter, stage, fields):
                return fn(*args, **kwargs)

        return timed  # type: ignore[return-value]


def _close_at_exit(ref: weakref.ref) -> None:
    meter = ref()
    if meter is not None:
        meter.close(timeout=10.0)


def _before_fork(ref: weakref.ref) -> None:
    meter = ref()
    if meter is not None and meter.store is not None and meter._writer is not None and not meter._closed:
        try:
            meter._writer.before_fork()  # waits for a write in progress; the next waits for the fork
            meter.store.before_fork()
        except Exception:
            log.exception("botmeter: could not prepare the store for fork")


def _after_fork_in_parent(ref: weakref.ref) -> None:
    meter = ref()
    if meter is not None and meter._writer is not None:
        meter._writer.after_fork_in_parent()


def _after_fork_in_child(ref: weakref.ref) -> None:
    meter = ref()
    if meter is None or meter._writer is None or meter._closed:
        return
    try:
        meter._writer.after_fork()
    except Exception:
        log.exception("botmeter: could not restart the writer after fork")
