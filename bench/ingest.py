"""Sustained ingest: track calls on the bot's thread -> background writer -> the DuckDB file.

Requirement: >= 300,000 events/s from track calls into the DuckDB file on this (2-core) machine.

A producer thread (the bot) tracks a realistic mix, per simulated turn: an inbound ``track_sms``
(3 turns in 4) or ``track_message`` (channel "web"), a ``track_llm_call`` with a real, priced model,
a ``track_timing`` of the reply and an outbound ``track_sms``; every 10th turn a ``track_api_call``,
every 20th a ``track_activity``, every 40th a ``track_error`` (about 4.18 events per turn). Users
are E.164 numbers in several countries, so SMS segments, countries and rates are all computed.

Throughput mode (default): N events (``--events``, default 3,000,000) as fast as the producer can
go; the time runs from the first call until ``meter.flush()`` returns; events/s = N / that time.
Paced mode (``--rate 300000 --seconds 10``): the producer holds itself to the rate (sleeping when
ahead) and the run reports whether the writer kept up: the buffer stayed bounded (max observed),
the producer reached the rate, and how long the final flush took after the last call.

Either way the file is checked afterwards: every event is there exactly once (row count and distinct
event ids per kind, against what the producer tracked), nothing was dropped, every LLM call priced.

    PYTHONPATH=src .venv/bin/python bench/ingest.py [--events 3000000] [--json PATH]
    PYTHONPATH=src .venv/bin/python bench/ingest.py --rate 300000 --seconds 10 [--json PATH]

``--store duckdb,chdb`` runs the same measurement on each store named (``chdb``: the embedded
ClickHouse engine), one after the other in this run, and compares them as ratios.
``--warmup-events N`` tracks and flushes N events first, untimed (a long-running bot's meter has
already imported genai-prices and written to the file); the default, 0, times a fresh meter.
``--phases`` (on by default) times the writer's stages per cycle by wrapping them on the instance
(per batch, not per event); ``--profile PATH`` also runs cProfile on the writer thread's cycles.
Exit status: 0 when the requirement is met, 1 when not, 2 when events were lost or duplicated.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import pstats
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from track_call import calibrate, environment

REQUIRED_EVENTS_PER_S = 300_000

# -- the realistic mix --------------------------------------------------------------------------

_rng = random.Random(20240611)

# (calling code, national number length): US/CA, UK, Germany, France, India, Brazil, Mexico, Nigeria.
_COUNTRIES = (
    ("1", 10),
    ("1", 10),
    ("1", 10),
    ("44", 10),
    ("49", 11),
    ("33", 9),
    ("91", 10),
    ("55", 11),
    ("52", 10),
    ("234", 10),
)
USERS = [
    f"+{code}{_rng.randrange(10 ** (digits - 1) * 2, 10**digits)}"
    for code, digits in (_COUNTRIES[i % len(_COUNTRIES)] for i in range(2000))
]
CONVERSATIONS = [f"conv-{i:05d}" for i in range(len(USERS))]

IN_TEXTS = [
    "hi",
    "what's the weather tomorrow in Lisbon?",
    "remind me to call mum at 6pm",
    "Can you summarise the article I sent earlier? It's the one about the new train line.",
    "¿Qué hora es en Madrid?",
    "ok thanks 👍",
    "reset",
    "How many steps did I walk this week compared to last week, and is that better than my average "
    "for the month? Also what was my longest walk?",
    "Ça marche, merci beaucoup !",
    "yes",
    "translate 'good morning' to Japanese",
]
OUT_TEXTS = [
    "Tomorrow in Lisbon: sunny, 24°C high, 15°C low, light wind from the north-west.",
    "Done! I'll remind you at 6:00 PM to call mum.",
    "The new line adds 12 stations between the airport and the centre; construction starts in spring, "
    "with trains expected in 2027. Fares will match the existing network and a day pass is planned.",
    "Son las 14:32 en Madrid.",
    "You're welcome! 😊",
    "Conversation reset. What would you like to talk about?",
    "This week: 54,210 steps (last week 48,900). That's 11% more than last week and above your monthly "
    "average of 7,100 a day. Your longest walk was 9.4 km on Saturday morning along the river.",
    "De rien ! Bonne journée.",
    "おはようございます (ohayō gozaimasu)",
    "Got it.",
    "Sorry, I couldn't reach the weather service just now. Please try again in a minute.",
    "Here is your summary: the council approved the budget, the library reopens on Monday, and the "
    "marathon closes the bridge on Sunday from 7am to 2pm. Want the full article?",
]

# (provider, model, input_tokens, output_tokens, cached_tokens, reasoning_tokens, latency_ms)
_MODELS = (
    ("openai", "gpt-4o"),
    ("openai", "gpt-4o-mini"),
    ("openai", "o3-mini"),
    ("anthropic", "claude-sonnet-4-20250514"),
    ("anthropic", "claude-3-5-haiku-20241022"),
    ("google", "gemini-2.0-flash"),
)
LLM_CALLS = []
for _i in range(37):
    _provider, _model = _MODELS[_i % len(_MODELS)]
    _inp = _rng.randrange(300, 6000)
    _out = _rng.randrange(20, 600)
    _cached = _rng.choice((0, 0, _inp // 2, _inp - _inp % 1024))
    _reasoning = _rng.randrange(0, _out) if _model == "o3-mini" else 0
    LLM_CALLS.append((_provider, _model, _inp, _out, _cached, _reasoning, float(_rng.randrange(250, 4000))))
REPLY_MS = [float(_rng.randrange(400, 6000)) for _ in range(29)]


class RateLimitError(Exception):
    """Shaped like the OpenAI client's: a status code and a body with an error code."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.status_code = 429
        self.body = {"error": {"code": "rate_limit_exceeded", "message": message}}


ERRORS = [  # (error, provider)
    (
        RateLimitError(
            "Rate limit reached for gpt-4o in organization org-abc123 on tokens per min: Limit 30000"
        ),
        "openai",
    ),
    (TimeoutError("Request timed out after 30.0 seconds"), "anthropic"),
    (ConnectionResetError(104, "Connection reset by peer"), "google"),
    ("30003", "twilio"),  # Twilio: unreachable destination handset
]
ACTIVITIES = ["reset", "admin:status", "feature:reminders", "feature:weather"]
MAX_EVENTS_PER_TURN = 7


def produce(
    meter: Any, n_events: int, rate: float | None = None, marks: dict[str, float] | None = None
) -> dict:
    """Tracks exactly ``n_events`` events of the mix; with ``rate``, no faster than that (events/s).

    Returns how many of each were tracked. ``marks`` gets ``first_call`` and ``last_call``
    (``time.perf_counter()``) as soon as they are known.
    """
    users, convs, in_texts, out_texts = USERS, CONVERSATIONS, IN_TEXTS, OUT_TEXTS
    llm_calls, reply_ms, errors, activities = LLM_CALLS, REPLY_MS, ERRORS, ACTIVITIES
    n_users, n_in, n_out, n_llm, n_reply = (
        len(users),
        len(in_texts),
        len(out_texts),
        len(llm_calls),
        len(reply_ms),
    )
    perf = time.perf_counter
    sleep = time.sleep
    limit = n_events - MAX_EVENTS_PER_TURN
    done = turns = sms_in = web_in = api = activity = error = 0
    chunk = 64  # turns between two looks at the clock when paced (about 270 events)
    marks = {} if marks is None else marks
    t0 = marks["first_call"] = perf()
    while done <= limit:
        i = turns
        u = i % n_users
        user = users[u]
        conv = convs[u]
        if i & 3:
            meter.track_sms(direction="in", text=in_texts[i % n_in], user=user, conversation=conv)
            sms_in += 1
        else:
            meter.track_message(
                direction="in", text=in_texts[i % n_in], user=user, conversation=conv, channel="web"
            )
            web_in += 1
        provider, model, inp, out, cached, reasoning, latency = llm_calls[i % n_llm]
        meter.track_llm_call(
            provider=provider, model=model, input_tokens=inp, output_tokens=out, cached_tokens=cached,
            reasoning_tokens=reasoning, latency_ms=latency, user=user, conversation=conv,
        )  # fmt: skip
        done += 4
        if i % 10 == 0:
            meter.track_api_call(
                provider="serpapi",
                name="search",
                cost_usd=0.005,
                latency_ms=420.0,
                user=user,
                conversation=conv,
            )
            api += 1
            done += 1
        if i % 40 == 13:
            err, err_provider = errors[i % 4]
            meter.track_error(err, provider=err_provider, stage="llm", user=user, conversation=conv)
            error += 1
            done += 1
        meter.track_timing("reply", reply_ms[i % n_reply], user=user, conversation=conv)
        meter.track_sms(direction="out", text=out_texts[i % n_out], user=user, conversation=conv)
        if i % 20 == 5:
            meter.track_activity(activities[i % 4], user=user, conversation=conv)
            activity += 1
            done += 1
        turns += 1
        if rate is not None and turns % chunk == 0:
            ahead = t0 + done / rate - perf()
            if ahead > 0:
                sleep(ahead)
    tail = n_events - done  # to land exactly on n_events
    for j in range(tail):
        meter.track_message(direction="in", text=in_texts[j % n_in], user=users[j % n_users], channel="web")
    marks["last_call"] = perf()
    return {
        "turns": turns,
        "track_sms_in": sms_in,
        "track_message_in": web_in + tail,
        "track_llm_call": turns,
        "track_timing": turns,
        "track_sms_out": turns,
        "track_api_call": api,
        "track_error": error,
        "track_activity": activity,
        "total": 4 * turns + api + error + activity + tail,
    }


def expected_rows(counts: dict) -> dict[tuple[str, str | None], int]:
    """(kind, direction) -> rows the file must hold."""
    return {
        ("message", "in"): counts["track_sms_in"] + counts["track_message_in"],
        ("message", "out"): counts["track_sms_out"],
        ("llm_call", None): counts["track_llm_call"],
        ("timing", None): counts["track_timing"],
        ("api_call", None): counts["track_api_call"],
        ("error", None): counts["track_error"],
        ("activity", None): counts["track_activity"],
    }


def verify(path: Path, counts: dict, store: str = "duckdb") -> dict:
    """Counts what is in the store: all events exactly once, per kind; no system (dropped) events."""
    if store == "chdb":
        from botmeter.store import open_store

        ch = open_store(f"chdb://{path}")
        with ch.client() as client:

            def fetch(sql: str) -> list[tuple]:
                return [
                    tuple(r)
                    for r in client.query(
                        sql.replace("count(DISTINCT event_id)", "uniqExact(event_id)")
                        .replace("GROUP BY ALL", "GROUP BY kind, direction")
                        .replace("count(*)", "count()")
                    ).result_rows
                ]

            return _verified(fetch, counts, close=ch.close)
    import duckdb

    con = duckdb.connect(str(path), read_only=True)
    return _verified(lambda sql: con.execute(sql).fetchall(), counts, close=con.close)


def _verified(fetch: Any, counts: dict, close: Any) -> dict:
    try:
        rows = fetch("SELECT kind, direction, count(*), count(DISTINCT event_id) FROM events GROUP BY ALL")
        total, distinct = fetch("SELECT count(*), count(DISTINCT event_id) FROM events")[0]
        unpriced = fetch("SELECT count(*) FROM events WHERE kind = 'llm_call' AND cost_usd IS NULL")[0][0]
        sms_unpriced = fetch(
            "SELECT count(*) FROM events WHERE kind = 'message' AND channel = 'sms' AND cost_usd IS NULL"
        )[0][0]
    finally:
        close()
    found = {(k, d): (n, nd) for k, d, n, nd in rows}
    want = expected_rows(counts)
    mismatches = {}
    for key, n in want.items():
        got = found.get(key, (0, 0))
        if got != (n, n):
            mismatches[f"{key[0]}/{key[1]}"] = {"expected": n, "rows": got[0], "distinct_ids": got[1]}
    extra = {f"{k}/{d}": v[0] for (k, d), v in found.items() if (k, d) not in want}
    return {
        "rows": total,
        "distinct_event_ids": distinct,
        "expected": counts["total"],
        "mismatches": mismatches,
        "unexpected_rows": extra,  # e.g. system/None rows: the writer's "dropped" events
        "llm_calls_unpriced": unpriced,
        "sms_unpriced": sms_unpriced,
        "ok": total == distinct == counts["total"] and not mismatches and not extra,
    }


# -- writer instrumentation (per batch, on the instance; the package is not modified) -------------

EXECUTE = "    store: execute (SET threads, INSERT ... WHERE NOT EXISTS)"
CONNECT = "    store: connect (open file)"
CLOSE = "    store: close (checkpoint)"
_ORDER = ("writer", "  pipeline", "store thread", "  store.write", "    store")


class Phases:
    """Wall time per writer stage and the CPU time of the thread that ran it, summed over batches."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self.batches: dict[str, list[dict[str, float]]] = defaultdict(list)
        self._current = threading.local()  # per thread: the batch being timed

    def add(self, name: str, seconds: float) -> None:
        self.wall[name] += seconds
        current = getattr(self._current, "batch", None)
        if current is not None:
            current[name] = current.get(name, 0.0) + seconds

    def timed(self, name: str, fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.add(name, time.perf_counter() - t)

        wrapper.__name__ = getattr(fn, "__name__", name)
        return wrapper

    @contextlib.contextmanager
    def _stage(self, name: str, rows: Any, args: Any, profile: cProfile.Profile | None) -> Iterator[None]:
        """Times one run of a whole stage on its thread: wall, thread CPU, rows, nested stages."""
        batch: dict[str, float] = {}
        self._current.batch = batch
        cpu, t = time.thread_time(), time.perf_counter()
        if profile is not None:
            profile.enable()
        try:
            yield
        finally:
            if profile is not None:
                profile.disable()
            wall = time.perf_counter() - t
            self.wall[name] += wall
            self.cpu[name] += time.thread_time() - cpu
            batch[name] = wall
            batch["rows"] = rows(args)
            self.batches[name].append(batch)
            self._current.batch = None

    def top(self, name: str, fn: Any, rows: Any, profile: cProfile.Profile | None) -> Any:
        """A whole stage as run by its thread, timed per call."""

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self._stage(name, rows, args, profile):
                return fn(*args, **kwargs)

        wrapper.__name__ = getattr(fn, "__name__", name)
        return wrapper

    def top_chunks(self, name: str, fn: Any, rows: Any, profile: cProfile.Profile | None) -> Any:
        """Like ``top`` for a stage that yields its output in chunks: each step is timed as a batch."""
        done = object()

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            steps = fn(*args, **kwargs)
            while True:
                with self._stage(name, rows, args, profile):
                    item = next(steps, done)
                if item is done:
                    return
                yield item

        wrapper.__name__ = getattr(fn, "__name__", name)
        return wrapper


class _TimedConnection:
    def __init__(self, con: Any, phases: Phases) -> None:
        self._con = con
        self._phases = phases

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return self._con.execute(*args, **kwargs)
        finally:
            self._phases.add(EXECUTE, time.perf_counter() - t)

    def close(self) -> None:
        t = time.perf_counter()
        try:
            self._con.close()
        finally:
            self._phases.add(CLOSE, time.perf_counter() - t)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


def instrument(meter: Any, profiles: dict[str, cProfile.Profile] | None) -> Phases:
    """Wraps the writer's stages on this meter's instances (the threads look them up on each batch)."""
    phases = Phases()
    writer, pipeline, store = meter._writer, meter.pipeline, meter.store
    profiles = profiles or {}

    def table_rows(args: Any) -> int:
        return args[0].num_rows if args and args[0] is not None else 0

    # Processing on the writer thread, storing on the store thread, overlapping.
    processed = [writer.stats.processed]

    def process_rows(args: Any) -> int:
        n = writer.stats.processed - processed[0]
        processed[0] = writer.stats.processed
        return n

    # process() yields tables chunk by chunk.
    writer.process = phases.top_chunks(
        "writer thread: process (drain + pipeline)", writer.process, process_rows, profiles.get("process")
    )
    writer.store_or_spool = phases.top(
        "store thread: store_or_spool", writer.store_or_spool, table_rows, profiles.get("store")
    )
    pipeline.frames = phases.timed("  pipeline: buffer columns -> frames", pipeline.frames)
    pipeline.to_arrow = phases.timed("  pipeline: frames -> Arrow (to_arrow)", pipeline.to_arrow)
    pipeline.steps = [phases.timed(f"  pipeline: {getattr(s, '__name__', s)}", s) for s in pipeline.steps]
    store.write = phases.timed("  store.write", store.write)
    if hasattr(store, "_keep"):  # the ClickHouse store: its statements and its upkeep
        from botmeter.backends.clickhouse import store as ch_store
        from botmeter.backends.clickhouse import upkeep

        store._unstored = phases.timed("    store: ids already stored (SELECT)", store._unstored)
        store._keep = phases.timed("    store: upkeep after the insert", store._keep)
        ch_store._for_insert = phases.timed("    store: Arrow as sent (dictionaries)", ch_store._for_insert)
        for name, label in [
            ("fold_sessions", "sessions"),
            ("refresh_latency_days", "daily percentiles"),
        ]:
            setattr(upkeep, name, phases.timed(f"      upkeep: {label}", getattr(upkeep, name)))
        upkeep.turns.add = phases.timed("      upkeep: turns", upkeep.turns.add)
    if not hasattr(store, "reading"):
        return phases  # not a DuckDB file: no connection to time
    open_ = store._open

    def timed_open(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        con = open_(*args, **kwargs)
        phases.add(CONNECT, time.perf_counter() - t)
        return _TimedConnection(con, phases)

    store._open = timed_open
    return phases


def phase_report(phases: Phases, events: int, elapsed: float) -> dict[str, Any]:
    out = {}
    rank = {prefix: i for i, prefix in enumerate(_ORDER)}

    def order(item: tuple[str, float]) -> tuple[int, float]:
        name, seconds = item
        matches = [i for prefix, i in rank.items() if name.startswith(prefix)]
        return (max(matches) if matches else len(rank), -seconds)

    for name, seconds in sorted(phases.wall.items(), key=order):
        out[name] = {
            "seconds": seconds,
            "busy_share_of_run": seconds / elapsed,  # for a thread's top stage: how busy that thread was
            "us_per_event": seconds / events * 1e6 if events else None,
            "thread_cpu_seconds": phases.cpu.get(name),
        }
    return out


def batch_trend(phases: Phases) -> list[dict[str, Any]]:
    """Per-event cost of each thread's stage and its steps: first, middle and last third of the batches."""
    out = []
    for top, batches in phases.batches.items():
        batches = [b for b in batches if b.get("rows")]
        if len(batches) < 3:
            continue
        third = len(batches) // 3
        parts = (
            ("first third", batches[:third]),
            ("middle", batches[third:-third]),
            ("last third", batches[-third:]),
        )
        for label, part in parts:
            rows = sum(b["rows"] for b in part)
            row: dict[str, Any] = {
                "stage": top,
                "part": label,
                "batches": len(part),
                "rows_per_batch": rows / len(part),
            }
            for key in sorted({k for b in part for k in b} - {"rows"}):
                row[f"{key.strip()} us/event"] = sum(b.get(key, 0.0) for b in part) / rows * 1e6
            out.append(row)
    return out


# -- the run ----------------------------------------------------------------------------------


def sample_buffer(meter: Any, stop: threading.Event, samples: list, every: float) -> None:
    buf = meter._buffer
    while not stop.wait(every):
        samples.append((time.perf_counter(), buf.size))


def run(args: argparse.Namespace, store: str = "duckdb") -> dict[str, Any]:
    from botmeter import Meter

    paced = args.rate is not None
    n_events = int(args.rate * args.seconds) if paced else args.events
    tmp = Path(tempfile.mkdtemp(prefix="botmeter-ingest-"))
    path = tmp / f"bench.{store}"
    # Room for every event, in count and in bytes (a record is accounted at about 300 bytes).
    settings: dict[str, Any] = {"max_buffer": n_events + 1_000, "max_buffer_mb": n_events * 400 / 2**20 + 64}
    if args.batch_size is not None:
        settings["batch_size"] = args.batch_size
    if args.flush_interval is not None:
        settings["flush_interval"] = args.flush_interval
    meter = Meter(bot="bench", store=f"{store}://{path}", **settings)
    warm_counts = None
    if args.warmup_events:
        # Not timed: a long-running bot's meter has priced, hashed and written before.
        warm_counts = produce(meter, args.warmup_events)
        meter.flush(timeout=args.timeout)
    profiles = {"process": cProfile.Profile(), "store": cProfile.Profile()} if args.profile else None
    phases = instrument(meter, profiles) if args.phases or profiles is not None else None

    samples: list[tuple[float, int]] = []
    stop = threading.Event()
    sampler = threading.Thread(target=sample_buffer, args=(meter, stop, samples, 0.02), daemon=True)
    marks: dict[str, float] = {}
    result: dict[str, Any] = {}

    def bot() -> None:
        counts = produce(meter, n_events, args.rate, marks)
        flushed = meter.flush(timeout=args.timeout)
        marks["flushed"] = time.perf_counter()
        result.update(counts=counts, flushed=flushed)

    sampler.start()
    producer = threading.Thread(target=bot, name="bot")
    producer.start()
    producer.join()
    stop.set()
    sampler.join()
    stats = meter.stats()
    closed = meter.close(timeout=args.timeout)
    size = meter.store.size_bytes()
    events_size = meter.store.size_bytes("events") if store == "chdb" else None
    meter.store.close()
    stored_counts = result["counts"]
    if warm_counts is not None:
        stored_counts = {k: v + warm_counts[k] for k, v in stored_counts.items()}
    check = verify(path, stored_counts, store)

    t0, t_last, t_flushed = marks["first_call"], marks["last_call"], marks["flushed"]
    elapsed = t_flushed - t0
    sizes = [s for _, s in samples]
    backlog_at_last = max((s for t, s in samples if t <= t_last), default=0)
    per_second = defaultdict(int)
    for t, s in samples:
        sec = int(t - t0)
        per_second[sec] = max(per_second[sec], s)
    out: dict[str, Any] = {
        "store": store,
        "mode": "paced" if paced else "throughput",
        "events": n_events,
        "settings": {
            "batch_size": meter.config.batch_size,
            "flush_interval": meter.config.flush_interval,
            "max_buffer": meter.config.max_buffer,
            "hash_users": meter.config.hash_users,
            "store_text": meter.config.store_text,
            "fast_path": meter.fast_path,
        },
        "seconds_first_call_to_flushed": elapsed,
        "events_per_s": n_events / elapsed,
        "producer_seconds": t_last - t0,
        "producer_events_per_s": n_events / (t_last - t0),
        "final_flush_lag_s": t_flushed - t_last,
        "flushed": result["flushed"],
        "closed": closed,
        "buffer_max": max(sizes, default=0),
        "buffer_p50": statistics.median(sizes) if sizes else 0,
        "buffer_at_last_call": backlog_at_last,
        "buffer_max_per_second": [per_second[s] for s in sorted(per_second)],
        "writer_cycles": meter._writer.stats.cycles,
        "dropped": stats["dropped"],
        "warmup_events": args.warmup_events,
        "file_bytes": size,
        "bytes_per_event": size / stored_counts["total"],
        "mb_per_million_events": size / stored_counts["total"],  # bytes/event == MB per 10^6 events
        # ClickHouse: the events table alone (the rest is the rollups and their parts).
        "events_table_bytes_per_event": None if events_size is None else events_size / stored_counts["total"],
        "counts": result["counts"],
        "check": check,
    }
    if paced:
        out["target_rate"] = args.rate
        reached = out["producer_events_per_s"] >= 0.98 * args.rate
        bounded = out["buffer_max"] <= args.rate * 1.0
        lag_ok = out["final_flush_lag_s"] <= 1.0 + meter.config.flush_interval
        out["kept_up"] = {
            "producer_reached_98pct_of_rate": reached,
            "buffer_max_within_1s_of_events": bounded,
            "final_flush_lag_within_1s_plus_flush_interval": lag_ok,
            "all": reached and bounded and lag_ok,
        }
    if phases is not None:
        out["writer_phases"] = phase_report(phases, n_events, elapsed)
        out["writer_trend"] = batch_trend(phases)
        out["writer_batches"] = {
            stage: [{k.strip(): round(v, 6) for k, v in b.items()} for b in batches if b.get("rows")]
            for stage, batches in phases.batches.items()
        }
    if profiles is not None:
        stream = io.StringIO()
        for name, profile in profiles.items():
            try:
                st = pstats.Stats(profile, stream=stream)
            except TypeError:  # that thread never ran a batch
                continue
            print(f"\n==== cProfile: {name} thread ====", file=stream)
            st.sort_stats("tottime").print_stats(25)
            st.sort_stats("cumulative").print_stats(25)
            st.dump_stats(f"{args.profile}.{name}")
        out["profile_text"] = stream.getvalue()
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        out["file"] = str(path)
    return out


def report(r: dict[str, Any]) -> None:
    s = r["settings"]
    print(
        f"\n{r['store']}: {r['mode']} run: {r['events']:,} events; batch_size={s['batch_size']}, "
        f"flush_interval={s['flush_interval']}s, max_buffer={s['max_buffer']:,}, fast_path={s['fast_path']}"
    )
    if r["warmup_events"]:
        print(f"  (after {r['warmup_events']:,} untimed warm-up events, tracked and flushed first)")
    print(f"  first call -> flush() returned: {r['seconds_first_call_to_flushed']:.2f} s")
    print(f"  ingest rate:                    {r['events_per_s']:,.0f} events/s")
    print(
        f"  producer alone (calls only):    {r['producer_seconds']:.2f} s = "
        f"{r['producer_events_per_s']:,.0f} events/s"
    )
    print(f"  final flush after last call:    {r['final_flush_lag_s']:.2f} s")
    print(
        f"  buffer: max {r['buffer_max']:,}, median {r['buffer_p50']:,.0f}, "
        f"at last call {r['buffer_at_last_call']:,}"
        f"; writer cycles {r['writer_cycles']}"
    )
    per_s = r["buffer_max_per_second"]
    print(
        f"  buffer max per second: {', '.join(f'{v:,}' for v in per_s[:30])}"
        f"{' ...' if len(per_s) > 30 else ''}"
    )
    print(
        f"  file: {r['file_bytes'] / 1e6:.1f} MB = {r['bytes_per_event']:.1f} bytes/event "
        f"= {r['mb_per_million_events']:.1f} MB per million events"
        + (
            f" (events table alone: {r['events_table_bytes_per_event']:.1f} bytes/event)"
            if r.get("events_table_bytes_per_event") is not None
            else ""
        )
    )
    c = r["check"]
    print(
        f"  check: rows {c['rows']:,}, distinct ids {c['distinct_event_ids']:,}, expected {c['expected']:,}, "
        f"dropped {r['dropped']}, unpriced LLM {c['llm_calls_unpriced']}, unpriced SMS {c['sms_unpriced']}"
        f" -> {'ok' if c['ok'] else 'NOT OK ' + json.dumps([c['mismatches'], c['unexpected_rows']])}"
    )
    if "kept_up" in r:
        k = r["kept_up"]
        print(f"  paced at {r['target_rate']:,}/s: " + ", ".join(f"{n}={v}" for n, v in k.items()))
    cal = r.get("calibration_ns_per_deque_append")
    if cal:
        print(
            f"  machine-speed reference (deque append, alone, before/after): "
            f"{cal['before']:.1f} / {cal['after']:.1f} ns"
        )
    if "writer_phases" in r:
        print(
            "  writer stages (wall s; % of the run's first-call-to-flushed time; us per event; thread CPU s)."
            "\n  Indented stages run inside the unindented one above them:"
        )
        for name, p in r["writer_phases"].items():
            cpu = f"  cpu {p['thread_cpu_seconds']:.2f} s" if p["thread_cpu_seconds"] is not None else ""
            print(
                f"    {name:<60} {p['seconds']:7.2f} s {100 * p['busy_share_of_run']:5.1f}% "
                f"{p['us_per_event']:6.2f} us/ev{cpu}"
            )
        for t in r.get("writer_trend", []):
            costs = ", ".join(
                f"{k.replace(' us/event', '')}={v:.2f}" for k, v in t.items() if k.endswith("us/event")
            )
            print(
                f"    {t['stage'].split(':')[0]} {t['part']:<11} {t['batches']:4d} batches, "
                f"{t['rows_per_batch']:9,.0f} rows/batch: {costs} us/event"
            )
    if "profile_text" in r:
        print(r["profile_text"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=3_000_000, help="events to track (default 3,000,000)")
    parser.add_argument("--rate", type=float, help="paced mode: events/s the producer holds itself to")
    parser.add_argument("--seconds", type=float, default=10.0, help="paced mode: how long (default 10)")
    parser.add_argument("--batch-size", type=int, help="writer batch_size (default: the Meter's)")
    parser.add_argument("--flush-interval", type=float, help="writer flush_interval (default: the Meter's)")
    parser.add_argument(
        "--warmup-events",
        type=int,
        default=0,
        help="track and flush this many events first, untimed (default 0: a fresh meter, as specified)",
    )
    parser.add_argument("--timeout", type=float, default=900.0, help="longest wait for the final flush")
    parser.add_argument(
        "--no-phases", dest="phases", action="store_false", help="do not time the writer's stages"
    )
    parser.add_argument("--profile", type=Path, help="cProfile the writer thread's cycles; pstats file here")
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the DuckDB file")
    parser.add_argument(
        "--store",
        default="duckdb",
        help="stores to run, one after the other in this run, comma-separated: duckdb, chdb (default duckdb)",
    )
    args = parser.parse_args(argv)

    env = environment()
    print(f"python {env['python']}, {env['nproc']} cores, {env['cpu_model']}, load {env['loadavg_at_start']}")
    stores = [name.strip() for name in args.store.split(",") if name.strip()]
    runs = []
    for store in stores:
        calibration_before = calibrate()
        r = run(args, store)
        r["calibration_ns_per_deque_append"] = {"before": calibration_before, "after": calibrate()}
        report(r)
        runs.append(r)
    if len(runs) > 1:
        base = runs[0]
        print("\nin this run, relative to " + base["store"] + ":")
        for r in runs[1:]:
            print(
                f"  {r['store']}: {r['events_per_s'] / base['events_per_s']:.2f}x the events/s, "
                f"{r['bytes_per_event'] / base['bytes_per_event']:.2f}x the bytes/event"
            )
    verdicts = [_verdict(r) for r in runs]
    passed = all(v for v, _ in verdicts)
    if args.json:
        out = {
            "benchmark": "ingest",
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "environment": env,
            "result": runs[0] if len(runs) == 1 else {r["store"]: r for r in runs},
            "requirement": {"events_per_s": REQUIRED_EVENTS_PER_S, "passed": passed},
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2, default=str) + "\n")
        print(f"wrote {args.json}")
    if any(not r["check"]["ok"] or r["dropped"] for r in runs):
        print("the run is not valid: events were lost, duplicated or dropped", file=sys.stderr)
        return 2
    return 0 if passed else 1


def _verdict(r: dict[str, Any]) -> tuple[bool, str]:
    if r["mode"] == "throughput":
        passed = r["events_per_s"] >= REQUIRED_EVENTS_PER_S
        print(
            f"\n{r['store']}: requirement >= {REQUIRED_EVENTS_PER_S:,} events/s: "
            f"{'PASS' if passed else 'FAIL'} ({r['events_per_s']:,.0f})"
        )
    else:
        passed = r["kept_up"]["all"] and r["target_rate"] >= REQUIRED_EVENTS_PER_S
        print(
            f"\n{r['store']}: writer kept up at {r['target_rate']:,.0f} events/s: "
            f"{'YES' if r['kept_up']['all'] else 'NO'}"
        )
    return passed, r["store"]


if __name__ == "__main__":
    sys.exit(main())
