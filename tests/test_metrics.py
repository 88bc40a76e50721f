"""Every metric against an independent computation over the same generated events.

A seeded generator makes a few thousand events over five weeks (users on several channels, messages
with and without conversation ids, LLM calls with known and unknown models, timings, errors,
activities) and keeps them as plain records. They are written through a real ``Meter`` in several
flushes, partly out of order (late arrivals into earlier days, a late message that bridges two
sessions, one that carries a session across midnight) and with replayed event ids. The expected
rows are computed here in plain Python from the records; both the rollup path and the events-only
path of the query engine must return exactly those rows.

Costs (pricing is tested elsewhere) and what the error pipeline derives (category, severity,
fingerprint) are read back per event id from the stored events; everything else comes from the
records.
"""

from __future__ import annotations

import math
import random
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from backends import ENGINES, TEST_BACKENDS, TestBackend
from botmeter import Meter
from botmeter.analyse import Reader

SEED = 20260318
NOW = datetime(2026, 3, 18, 15, 20, tzinfo=UTC)  # a Wednesday
FIRST_DAY = datetime(2026, 2, 16, tzinfo=UTC)  # a Monday
QUIET_DAYS = {date(2026, 3, 2), date(2026, 3, 3)}  # no events at all
LATE_CUTOFF = datetime(2026, 3, 4, tzinfo=UTC)  # the first flush holds events before this
GAP = timedelta(minutes=30)
BOT = "t"

# user -> (channel, country); sms users send SMS (segments, a country, a price per segment)
PROFILES: dict[str, tuple[str | None, str | None]] = {
    "u01": ("sms", "US"),
    "u02": ("sms", "GB"),
    "u03": ("sms", "US"),
    "u04": ("sms", "GB"),
    "u05": ("web", None),
    "u06": ("web", None),
    "u07": ("web", None),
    "u08": ("web", None),
    "u09": ("slack", None),
    "u10": ("slack", None),
    "u11": ("slack", None),
    "u12": (None, None),
    # crafted cases
    "solo": ("web", None),
    "edge": ("web", None),
    "bridge": ("web", None),
    "gap": ("web", None),
}
RANDOM_USERS = [u for u in PROFILES if u.startswith("u")]
MODELS = [
    ("openai", "gpt-4o"),
    ("openai", "gpt-4o-mini"),
    ("anthropic", "claude-3-5-haiku-latest"),
    ("openai", "no-such-model-x"),  # no price: cost NULL
]
LATENCIES = [80.0, 120.0, 120.0, 120.0, 250.0, 250.0, 400.0, 950.0]  # ties on purpose
ERRORS = [("timeout", None), ("rate_limit", None), ("auth", "critical"), ("upstream_error", "warning"),
          ("network", None)]
ACTIVITIES = ["reset", "admin:status", "feature:x"]


# -- the records ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ev:
    event_id: str
    kind: str
    ts: datetime
    user: str | None = None
    conversation: str | None = None
    channel: str | None = None
    direction: str | None = None
    country: str | None = None
    provider: str | None = None
    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None
    units: float | None = None
    unit: str | None = None
    latency_ms: float | None = None
    stage: str | None = None
    name: str | None = None
    error: str | None = None
    severity: str | None = None  # as given to track_error (None: the pipeline picks one)
    cost_usd: float | None = None  # as given to the track call
    failed: bool = False  # an outbound message the bot marks as failed (properties {"failed": true})
    ttft_ms: float | None = None  # an LLM call's time to first token, where the bot knows it


class Generator:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.events: list[Ev] = []
        self.late: list[Ev] = []  # crafted to arrive after later data

    def add(self, late: bool = False, **fields: Any) -> Ev:
        event = Ev(event_id=str(uuid.UUID(int=self.rng.getrandbits(128), version=4)), **fields)
        (self.late if late else self.events).append(event)
        return event

    def message(self, user: str | None, conversation: str | None, direction: str, ts: datetime,
                late: bool = False, channel: str | None = None, failed: bool = False) -> Ev:
        channel, country = PROFILES[user] if user else (channel, None)
        if channel == "sms":
            return self.add(late, kind="message", ts=ts, user=user, conversation=conversation, channel="sms",
                            direction=direction, country=country, provider="twilio",
                            units=float(self.rng.randint(1, 3)), unit="sms_segment", failed=failed)
        return self.add(late, kind="message", ts=ts, user=user, conversation=conversation, channel=channel,
                        direction=direction, failed=failed)

    def session(self, user: str, start: datetime) -> None:
        rng = self.rng
        channel = PROFILES[user][0]
        conversation = f"conv-{rng.randrange(10**6)}" if rng.random() < 0.45 else None
        common = {"user": user, "conversation": conversation, "channel": channel}
        t = start
        for _ in range(rng.randint(1, 5)):
            self.message(user, conversation, "in", t)
            t += timedelta(seconds=rng.randint(1, 4))
            if rng.random() < 0.4:
                latency = rng.choice(LATENCIES) / 4
                self.add(kind="timing", ts=t, stage="retrieval", latency_ms=latency, **common)
            provider, model = rng.choice(MODELS)
            latency = None if model == "no-such-model-x" else rng.choice(LATENCIES)
            # Known for some calls only (no draw, so the rest of the data stays as it was).
            ttft = latency / 5 if latency is not None and latency >= 250 else None
            self.add(kind="llm_call", ts=t, provider=provider, model=model,
                     input_tokens=rng.randint(600, 3000), output_tokens=rng.randint(70, 600),
                     cached_tokens=rng.choice([0, 0, 128, 512]), reasoning_tokens=rng.choice([0, 0, 64]),
                     latency_ms=latency, stage=rng.choice(["llm", None]), ttft_ms=ttft, **common)
            t += timedelta(seconds=rng.randint(1, 3))
            outcome = rng.random()
            if outcome < 0.06:  # the turn fails: an error and no reply at all
                self.add(kind="error", ts=t, error="unavailable", **common)
                t += timedelta(seconds=rng.randint(30, 1200))
                continue
            self.message(user, conversation, "out", t, failed=outcome < 0.1)  # an apology, marked failed
            self.add(kind="timing", ts=t, stage="total", latency_ms=rng.choice(LATENCIES) * 2, **common)
            if rng.random() < 0.08:
                error, severity = rng.choice(ERRORS)
                self.add(kind="error", ts=t, error=error, severity=severity, **common)
            if rng.random() < 0.12:
                self.add(kind="activity", ts=t, name=rng.choice(ACTIVITIES), **common)
            if rng.random() < 0.1:
                self.add(kind="api_call", ts=t, provider="serpapi", name=rng.choice(["search", "images"]),
                         cost_usd=rng.choice([0.01, 0.005, None]), **common)
            t += timedelta(seconds=rng.randint(30, 1200))

    def crafted(self) -> None:
        at = datetime
        # A single-message conversation of each kind: a session and a conversation id.
        self.message("solo", None, "in", at(2026, 3, 5, 9, 0, tzinfo=UTC))
        self.message("u05", "conv-single", "in", at(2026, 3, 6, 8, 0, tzinfo=UTC))
        # A session on Sunday night that a late message carries across midnight into a new week.
        self.message("edge", None, "in", at(2026, 3, 8, 23, 50, tzinfo=UTC))
        self.message("edge", None, "out", at(2026, 3, 8, 23, 52, tzinfo=UTC))
        self.message("edge", None, "in", at(2026, 3, 9, 0, 15, tzinfo=UTC), late=True)
        self.message("edge", None, "out", at(2026, 3, 9, 0, 16, tzinfo=UTC), late=True)
        # Two sessions 40 minutes apart; a late message in between makes them one.
        for hour, minute, direction in ((10, 0, "in"), (10, 20, "out"), (11, 0, "in"), (11, 10, "out")):
            self.message("bridge", None, direction, at(2026, 3, 11, hour, minute, tzinfo=UTC))
        self.message("bridge", None, "in", at(2026, 3, 11, 10, 40, tzinfo=UTC), late=True)
        # Exactly the session gap stays in the session; a second more starts a new one.
        self.message("gap", None, "in", at(2026, 3, 12, 12, 0, tzinfo=UTC))
        self.message("gap", None, "in", at(2026, 3, 12, 12, 30, tzinfo=UTC))
        self.message("gap", None, "in", at(2026, 3, 12, 13, 0, 1, tzinfo=UTC))
        # Without a user: a broadcast in a conversation, a message with neither, a background LLM call.
        self.message(None, "broadcast-1", "out", at(2026, 3, 10, 18, 0, tzinfo=UTC), channel="web")
        self.message(None, None, "out", at(2026, 3, 10, 18, 1, tzinfo=UTC), channel="web")
        self.add(kind="llm_call", ts=at(2026, 3, 10, 3, 0, tzinfo=UTC), provider="openai",
                 model="gpt-4o-mini", input_tokens=900, output_tokens=90, cached_tokens=0, reasoning_tokens=0,
                 latency_ms=777.0)
        # Percentiles over one value, two values and many equal ones.
        self.add(kind="timing", ts=at(2026, 3, 10, 12, 0, tzinfo=UTC), stage="rare", latency_ms=333.0)
        self.add(kind="timing", ts=at(2026, 3, 10, 13, 0, tzinfo=UTC), stage="pair", latency_ms=100.0)
        self.add(kind="timing", ts=at(2026, 3, 11, 13, 0, tzinfo=UTC), stage="pair", latency_ms=300.0)
        for minute in range(6):
            ts = at(2026, 3, 10, 14, minute, tzinfo=UTC)
            self.add(kind="timing", ts=ts, stage="flat", latency_ms=120.0)
        # Error groups: seen long ago and back (regressed), quiet for exactly the quiet days and back
        # (regressed), never quiet long enough (ongoing), and first seen in the period (new).
        for ts, user, conversation in (
            (at(2026, 2, 17, 10, 0), "u01", None),
            (at(2026, 3, 10, 9, 0), "u02", "conv-q"),
            (at(2026, 3, 11, 9, 0), "u01", None),
        ):
            self.add(kind="error", ts=ts.replace(tzinfo=UTC), error="quota", user=user,
                     conversation=conversation)
        for ts in (at(2026, 3, 5, 12, 0), at(2026, 3, 12, 12, 0)):
            self.add(kind="error", ts=ts.replace(tzinfo=UTC), error="internal", user="u06")
        for ts in (at(2026, 3, 1, 8, 0), at(2026, 3, 7, 7, 59), at(2026, 3, 10, 8, 0)):
            self.add(kind="error", ts=ts.replace(tzinfo=UTC), error="delivery", severity="info", user="u07")
        for minute in (0, 5):
            self.add(kind="error", ts=at(2026, 3, 13, 11, minute, tzinfo=UTC), error="not_found", user="u03",
                     conversation="conv-nf")


def generate() -> tuple[list[list[Ev]], list[Ev]]:
    """The flushes (events in the order they are tracked, replays included) and the distinct events."""
    gen = Generator(SEED)
    rng = gen.rng
    joined = {u: FIRST_DAY + timedelta(days=rng.randrange(0, 26)) for u in RANDOM_USERS}
    joined["u01"] = FIRST_DAY  # someone is there from the first day
    day = FIRST_DAY
    while day < NOW:
        if day.date() not in QUIET_DAYS:
            for user in RANDOM_USERS:
                if joined[user] <= day and rng.random() < 0.5:
                    for _ in range(rng.choice([1, 1, 2])):
                        gen.session(user, day + timedelta(seconds=rng.randrange(6 * 3600, 23 * 3600)))
        day += timedelta(days=1)
    gen.crafted()
    events = [e for e in gen.events if e.ts < NOW and e.ts.date() not in QUIET_DAYS]
    late = gen.late
    held = [e for e in events if e.ts < LATE_CUTOFF and rng.random() < 0.15]
    held_ids = {e.event_id for e in held}
    first = [e for e in events if e.ts < LATE_CUTOFF and e.event_id not in held_ids]
    second = [e for e in events if e.ts >= LATE_CUTOFF]
    third = held + late
    third += rng.sample(third, 10)  # the same event twice in one flush
    replays = rng.sample(first, 30) + rng.sample(second, 30) + rng.sample(held + late, 5)
    flushes = [first, second, third, replays]
    for batch in flushes:
        rng.shuffle(batch)
    return flushes, events + late


def track(meter: Meter, e: Ev, as_datetime: bool) -> None:
    ts: datetime | float = e.ts if as_datetime else e.ts.timestamp()
    ids = {"user": e.user, "conversation": e.conversation, "channel": e.channel, "event_id": e.event_id,
           "ts": ts, "properties": {"failed": True} if e.failed else None}
    if e.ttft_ms is not None:
        ids["properties"] = {"time_to_first_token_ms": e.ttft_ms}
    if e.kind == "message" and e.unit == "sms_segment":
        del ids["channel"]
        meter.track_sms(direction=e.direction, text="hello", segments=e.units, country=e.country, **ids)
    elif e.kind == "message":
        meter.track_message(direction=e.direction, text="hello", **ids)
    elif e.kind == "llm_call":
        meter.track_llm_call(provider=e.provider, model=e.model, input_tokens=e.input_tokens,
                             output_tokens=e.output_tokens, cached_tokens=e.cached_tokens,
                             reasoning_tokens=e.reasoning_tokens, latency_ms=e.latency_ms, stage=e.stage,
                             **ids)
    elif e.kind == "timing":
        meter.track_timing(e.stage, e.latency_ms, **ids)
    elif e.kind == "error":
        meter.track_error(e.error, severity=e.severity, **ids)
    elif e.kind == "activity":
        meter.track_activity(e.name, **ids)
    elif e.kind == "api_call":
        meter.track_api_call(provider=e.provider, name=e.name, cost_usd=e.cost_usd, **ids)
    else:
        raise AssertionError(e.kind)


@dataclass
class Data:
    events: list[Ev]
    backend: TestBackend
    url: str
    # read back per event id: what pricing and the error pipeline derived
    cost: dict[str, float | None] = field(default_factory=dict)
    category: dict[str, str | None] = field(default_factory=dict)
    severity: dict[str, str | None] = field(default_factory=dict)
    fingerprint: dict[str, str | None] = field(default_factory=dict)


@pytest.fixture(scope="module", params=ENGINES)
def data(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
         clean_env_for_module: None) -> Data:
    """The generated events, tracked into a store of each backend in ``backends.TEST_BACKENDS``."""
    backend = TEST_BACKENDS[request.param]
    url = backend.url(tmp_path_factory.mktemp(f"metrics-{backend.name}"))
    flushes, events = generate()
    meter = Meter(bot=BOT, store=url, hash_users=False, flush_interval=0.05)
    try:
        for batch in flushes:
            for i, event in enumerate(batch):
                track(meter, event, as_datetime=i % 2 == 0)
            assert meter.flush()
    finally:
        meter.close()
    result = Data(events, backend, url)
    for event_id, cost, category, severity, fp in backend.rows(
        url, "SELECT event_id, cost_usd, error_category, severity, fingerprint FROM events"
    ):
        key = str(event_id)
        result.cost[key], result.category[key] = cost, category
        result.severity[key], result.fingerprint[key] = severity, fp
    return result


@pytest.fixture(scope="module", params=["rollups", "events"])
def reader(request: pytest.FixtureRequest, data: Data) -> Reader:
    return Reader(data.url, now=NOW, use_rollups=request.param == "rollups", reply_stage=REPLY_STAGE)


# -- the oracle: plain Python over the records ------------------------------------------------------


def parse_ts(value: str | datetime) -> datetime:
    if isinstance(value, datetime):
        return value
    if len(value) == 10:
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def midnight(ts: datetime) -> datetime:
    return ts.replace(hour=0, minute=0, second=0, microsecond=0)


def floor(ts: datetime, interval: str) -> datetime:
    if interval == "hour":
        return ts.replace(minute=0, second=0, microsecond=0)
    if interval == "day":
        return midnight(ts)
    if interval == "week":
        return midnight(ts) - timedelta(days=ts.weekday())
    assert interval == "month"
    return midnight(ts).replace(day=1)


def after(bucket: datetime, interval: str) -> datetime:
    if interval == "month":
        return bucket.replace(year=bucket.year + bucket.month // 12, month=bucket.month % 12 + 1)
    steps = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(weeks=1)}
    return bucket + steps[interval]


@dataclass
class Spec:
    """A query as the oracle reads it."""

    metric: str
    start: datetime
    end: datetime
    interval: str | None
    by: tuple[str, ...]
    filters: dict[str, tuple[str, ...]]
    stats: tuple[str, ...]
    periods: int
    gap: timedelta = GAP

    def buckets(self) -> list[datetime]:
        if self.interval is None:
            return [self.start]
        out, b = [], floor(self.start, self.interval)
        while b < self.end:
            out.append(b)
            b = after(b, self.interval)
        return out

    def bucket(self, ts: datetime) -> datetime:
        return self.start if self.interval is None else floor(ts, self.interval)

    def inside(self, ts: datetime) -> bool:
        return self.start <= ts < self.end


DEFAULT_STAT = {
    **dict.fromkeys(["cost_usd", "input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens",
                     "sms_segments"], "sum"),
    **dict.fromkeys(["llm_calls", "messages", "inbound_messages", "errors", "activities", "resets",
                     "admin_commands", "api_calls", "unpriced_calls", "active_users", "new_users",
                     "returning_users", "conversations"], "count"),
    "messages_per_conversation": "avg",
    "conversation_duration_s": "avg",
    **dict.fromkeys(["latency_ms", "llm_latency_ms", "reply_latency_s", "llm_ttft_ms"], "p95"),
    "failed_replies": "count",
    **dict.fromkeys(["error_rate", "reply_failure_rate", "cost_per_conversation", "cost_per_active_user"],
                    "ratio"),
    "retention": "share",
}


def spec_of(metric: str, kw: dict[str, Any], gap: timedelta = GAP) -> Spec:
    if "start" in kw or "end" in kw:
        start, end = parse_ts(kw["start"]), parse_ts(kw.get("end", NOW))
    else:
        start, end = midnight(NOW) - timedelta(days=kw.get("days", 7) - 1), NOW
    by = kw.get("by", ())
    by = tuple(d for d in by.split(",") if d) if isinstance(by, str) else tuple(by)
    filters = {k: (v,) if isinstance(v, str) else tuple(v) for k, v in (kw.get("filters") or {}).items()}
    stat = kw.get("stat") or DEFAULT_STAT[metric]
    stats = tuple(stat.split(",")) if isinstance(stat, str) else tuple(stat)
    return Spec(metric, start, end, kw.get("interval", "day"), by, filters, stats, kw.get("periods", 8), gap)


def dim(d: Data, e: Ev, name: str) -> Any:
    if name == "bot":
        return BOT
    if name == "kind":
        return e.kind
    if name == "category":
        return d.category[e.event_id]
    if name == "severity":
        return d.severity[e.event_id]
    return getattr(e, name)


def matches(d: Data, q: Spec, e: Ev) -> bool:
    return all(dim(d, e, k) in values for k, values in q.filters.items())


def bot_matches(q: Spec) -> bool:
    """For figures per user or per conversation, which only the bot can filter."""
    return BOT in q.filters.get("bot", (BOT,))


def key_of(d: Data, q: Spec, e: Ev) -> tuple:
    return tuple(dim(d, e, k) for k in q.by)


Cells = dict[tuple[datetime, tuple], dict[str, Any]]  # (bucket, group) -> statistics


def assemble(q: Spec, cells: Cells, empty: dict[str, Any]) -> list[dict]:
    """Every bucket of every group that has data (one group without dimensions), in bucket order."""
    groups = {key for _, key in cells} if q.by else {()}
    rows = []
    for key in groups:
        for b in q.buckets():
            rows.append({"bucket": b, **dict(zip(q.by, key, strict=True)), **cells.get((b, key), empty)})
    rows.sort(key=lambda r: (r["bucket"], *((r[k] is None, str(r[k])) for k in q.by)))
    return rows


def percentile(values: list[float], p: float) -> float:
    xs = sorted(values)
    h = (len(xs) - 1) * p
    lo = math.floor(h)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (h - lo) * (xs[hi] - xs[lo])


PERCENTILES = {"p10": 0.1, "p25": 0.25, "p50": 0.5, "p75": 0.75, "p90": 0.9, "p95": 0.95, "p99": 0.99}


def describe(values: list[float], stats: Iterable[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for s in stats:
        if s == "count":
            out[s] = len(values)
        elif s == "avg":
            out[s] = sum(values) / len(values)
        elif s == "max":
            out[s] = max(values)
        else:
            out[s] = percentile(values, PERCENTILES[s])
    return out


Selector = Callable[[Data, Ev], bool]
ADDITIVE: dict[str, tuple[Selector, Callable[[Data, Ev], float]]] = {
    "llm_calls": (lambda d, e: e.kind == "llm_call", lambda d, e: 1),
    "messages": (lambda d, e: e.kind == "message", lambda d, e: 1),
    "inbound_messages": (lambda d, e: e.kind == "message" and e.direction == "in", lambda d, e: 1),
    "errors": (lambda d, e: e.kind == "error", lambda d, e: 1),
    "activities": (lambda d, e: e.kind == "activity", lambda d, e: 1),
    "resets": (lambda d, e: e.kind == "activity" and e.name == "reset", lambda d, e: 1),
    "admin_commands": (lambda d, e: e.kind == "activity" and e.name.startswith("admin:"), lambda d, e: 1),
    "api_calls": (lambda d, e: e.kind == "api_call", lambda d, e: 1),
    "unpriced_calls": (lambda d, e: e.kind == "llm_call" and d.cost[e.event_id] is None, lambda d, e: 1),
    "cost_usd": (lambda d, e: True, lambda d, e: d.cost[e.event_id] or 0.0),
    "input_tokens": (lambda d, e: e.kind == "llm_call", lambda d, e: e.input_tokens),
    "output_tokens": (lambda d, e: e.kind == "llm_call", lambda d, e: e.output_tokens),
    "cached_tokens": (lambda d, e: e.kind == "llm_call", lambda d, e: e.cached_tokens),
    "reasoning_tokens": (lambda d, e: e.kind == "llm_call", lambda d, e: e.reasoning_tokens),
    "sms_segments": (lambda d, e: e.kind == "message" and e.unit == "sms_segment", lambda d, e: e.units),
}


def additive(d: Data, q: Spec) -> list[dict]:
    selected, value = ADDITIVE[q.metric]
    stat = q.stats[0]
    cells: dict[tuple, dict[str, Any]] = {}
    priced: dict[tuple, int] = defaultdict(int)
    unpriced: dict[tuple, int] = defaultdict(int)
    for e in d.events:
        if selected(d, e) and q.inside(e.ts) and matches(d, q, e):
            key = (q.bucket(e.ts), key_of(d, q, e))
            cell = cells.setdefault(key, {stat: 0})
            cell[stat] += value(d, e)
            priced[key] += d.cost[e.event_id] is not None
            unpriced[key] += e.kind == "llm_call" and d.cost[e.event_id] is None
    if q.metric == "cost_usd" and not {"user", "conversation"} & set(q.by):
        # Only unpriced LLM calls and nothing priced: the cost is unknown, not zero.
        for key, cell in cells.items():
            if not priced[key] and unpriced[key]:
                cell[stat] = None
    return assemble(q, cells, {stat: 0})


REPLY_STAGE = "total"  # the reader below names this test's reply stage


def latency(d: Data, q: Spec) -> list[dict]:
    """A stage's latency is its timing events; an LLM call's its own figure; the reply latency the
    reply stage's timings in seconds."""
    kind = "llm_call" if q.metric in ("llm_latency_ms", "llm_ttft_ms") else "timing"
    scale = 0.001 if q.metric == "reply_latency_s" else 1.0
    values: dict[tuple, list[float]] = defaultdict(list)
    for e in d.events:
        value = e.ttft_ms if q.metric == "llm_ttft_ms" else e.latency_ms
        timed = e.kind == kind and value is not None
        if q.metric == "reply_latency_s":
            timed = timed and e.stage == REPLY_STAGE
        if timed and q.inside(e.ts) and matches(d, q, e):
            values[(q.bucket(e.ts), key_of(d, q, e))].append(value)
    cells = {}
    for k, v in values.items():
        cells[k] = {s: x if s == "count" else x * scale for s, x in describe(v, q.stats).items()}
    return assemble(q, cells, {s: 0 if s == "count" else None for s in q.stats})


def failed_replies(d: Data, q: Spec) -> list[dict]:
    """Walks each conversation (its id, else its user) in time order: a turn runs from an inbound
    message to the next; it failed with an error or a reply marked failed and no good reply."""
    threads: dict[str, list[Ev]] = defaultdict(list)
    for e in d.events:
        if e.kind in ("message", "error") and (e.conversation or e.user):
            threads[f"c:{e.conversation}" if e.conversation else f"u:{e.user}"].append(e)
    stat = q.stats[0]
    cells: dict[tuple, dict[str, Any]] = {}
    for events in threads.values():
        # An inbound message first among equal times; among inbound messages at one time, the one
        # with the greater channel last (no channel first): the events of that time are its turn's.
        events.sort(key=lambda e: (e.ts, not (e.kind == "message" and e.direction == "in"),
                                   e.channel is not None, e.channel or ""))
        turns: list[list[Ev]] = []
        for e in events:
            if e.kind == "message" and e.direction == "in":
                turns.append([e])
            elif turns:
                turns[-1].append(e)
        for inbound, *rest in turns:
            bad = any(e.kind == "error" or (e.direction == "out" and e.failed) for e in rest)
            answered = any(e.kind == "message" and e.direction == "out" and not e.failed for e in rest)
            if bad and not answered and q.inside(inbound.ts) and matches(d, q, inbound):
                cell = cells.setdefault((q.bucket(inbound.ts), key_of(d, q, inbound)), {stat: 0})
                cell[stat] += 1
    return assemble(q, cells, {stat: 0})


def inbound(d: Data) -> list[Ev]:
    return [e for e in d.events if e.kind == "message" and e.direction == "in" and e.user is not None]


def first_inbound(d: Data) -> dict[str, datetime]:
    firsts: dict[str, datetime] = {}
    for e in inbound(d):
        firsts[e.user] = min(e.ts, firsts.get(e.user, e.ts))
    return firsts


def users(d: Data, q: Spec) -> list[dict]:
    stat = q.stats[0]
    firsts = first_inbound(d)
    active: dict[tuple, set[str]] = defaultdict(set)
    for e in inbound(d):
        if q.inside(e.ts) and matches(d, q, e):
            active[(q.bucket(e.ts), key_of(d, q, e))].add(e.user)
    if q.metric == "active_users":
        counted = active
    elif q.metric == "new_users":
        counted = defaultdict(set)
        for user, first in firsts.items():
            if q.inside(first) and bot_matches(q):
                counted[(q.bucket(first), (BOT,) * len(q.by))].add(user)
    else:
        counted = {
            k: {u for u in members if firsts[u] < max(k[0], q.start)} for k, members in active.items()
        }
    return assemble(q, {k: {stat: len(v)} for k, v in counted.items() if v}, {stat: 0})


def conversation_keys(d: Data, gap: timedelta = GAP) -> dict[str, tuple]:
    """Each message's conversation: its id, or the user's session (split at gaps longer than ``gap``)."""
    keys: dict[str, tuple] = {}
    sessions: dict[str, list[Ev]] = defaultdict(list)
    for e in d.events:
        if e.kind != "message":
            continue
        if e.conversation is not None:
            keys[e.event_id] = ("c", e.conversation)
        elif e.user is not None:
            sessions[e.user].append(e)
    for user, messages in sessions.items():
        number, previous = 0, None
        for e in sorted(messages, key=lambda m: m.ts):
            if previous is None or e.ts - previous > gap:
                number += 1
            keys[e.event_id] = ("s", user, number)
            previous = e.ts
    return keys


def conversations(d: Data, q: Spec) -> list[dict]:
    stat = q.stats[0]
    keys = conversation_keys(d, q.gap)
    seen: dict[tuple, set] = defaultdict(set)
    for e in d.events:
        if e.event_id in keys and q.inside(e.ts) and matches(d, q, e):
            seen[(q.bucket(e.ts), key_of(d, q, e))].add(keys[e.event_id])
    return assemble(q, {k: {stat: len(v)} for k, v in seen.items()}, {stat: 0})


def conversation_spans(d: Data, gap: timedelta = GAP) -> dict[tuple, list[datetime]]:
    """Every conversation's message times, over all time."""
    keys = conversation_keys(d, gap)
    spans: dict[tuple, list[datetime]] = defaultdict(list)
    for e in d.events:
        if e.event_id in keys:
            spans[keys[e.event_id]].append(e.ts)
    return spans


def per_conversation(d: Data, q: Spec) -> list[dict]:
    values: dict[tuple, list[float]] = defaultdict(list)
    for times in conversation_spans(d, q.gap).values():
        first, last = min(times), max(times)
        if q.inside(first) and bot_matches(q):
            x = len(times) if q.metric == "messages_per_conversation" else (last - first).total_seconds()
            values[(q.bucket(first), (BOT,) * len(q.by))].append(x)
    cells = {k: describe(v, q.stats) for k, v in values.items()}
    return assemble(q, cells, {s: 0 if s == "count" else None for s in q.stats})


RATIOS = {
    "error_rate": ("errors", "inbound_messages"),
    "reply_failure_rate": ("failed_replies", "inbound_messages"),
    "cost_per_conversation": ("cost_usd", "conversations"),
    "cost_per_active_user": ("cost_usd", "active_users"),
}


def ratio(d: Data, q: Spec) -> list[dict]:
    numerator, denominator = RATIOS[q.metric]

    def part(metric: str) -> dict[tuple, Any]:
        stats = (DEFAULT_STAT[metric],)
        sub = Spec(metric, q.start, q.end, q.interval, q.by, q.filters, stats, q.periods, q.gap)
        rows = oracle(d, sub)
        return {(r["bucket"], *(r[k] for k in q.by)): r[DEFAULT_STAT[metric]] for r in rows}

    nums, dens = part(numerator), part(denominator)
    cells = {}
    for k in nums.keys() | dens.keys():
        n, den = nums.get(k, 0), dens.get(k, 0)
        cells[(k[0], k[1:])] = {"ratio": n / den if den else None}
    return assemble(q, cells, {"ratio": None})


def retention(d: Data, q: Spec) -> list[dict]:
    unit = q.interval
    assert unit in ("day", "week")
    step = timedelta(days=7 if unit == "week" else 1)
    cohorts = {user: floor(first, unit) for user, first in first_inbound(d).items()}
    active = {(e.user, floor(e.ts, unit)) for e in inbound(d)}
    rows = []
    for cohort in q.buckets():
        members = [u for u, c in cohorts.items() if c == cohort]
        if not members:
            continue
        for n in range(q.periods + 1):
            period = cohort + n * step
            observed = period < q.end
            count = sum((u, period) in active for u in members)
            rows.append({
                "bucket": cohort,
                "period": n,
                "cohort_users": len(members),
                "active_users": count if observed else None,
                "share": count / len(members) if observed else None,
            })
    return rows


def oracle(d: Data, q: Spec) -> list[dict]:
    if q.metric in ADDITIVE:
        return additive(d, q)
    if q.metric in ("latency_ms", "llm_latency_ms", "reply_latency_s", "llm_ttft_ms"):
        return latency(d, q)
    if q.metric == "failed_replies":
        return failed_replies(d, q)
    if q.metric in ("active_users", "new_users", "returning_users"):
        return users(d, q)
    if q.metric == "conversations":
        return conversations(d, q)
    if q.metric in ("messages_per_conversation", "conversation_duration_s"):
        return per_conversation(d, q)
    if q.metric in RATIOS:
        return ratio(d, q)
    if q.metric == "retention":
        return retention(d, q)
    raise AssertionError(q.metric)


def same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9)
    return a == b


def assert_rows(actual: list[dict], expected: list[dict]) -> None:
    problems = []
    for i, (got, want) in enumerate(zip(actual, expected, strict=False)):
        if got.keys() != want.keys() or not all(same(got[k], want[k]) for k in want):
            problems.append(f"row {i}: got {got}\n        want {want}")
    if len(actual) != len(expected):
        problems.append(f"{len(actual)} rows, expected {len(expected)}")
    assert not problems, "\n".join(problems[:8])


# -- what is asked ----------------------------------------------------------------------------------

DAYS = {"days": 28}  # starts 2026-02-19, after the first users' first messages
ALL = {"days": 35, "interval": None}
WEEKS = {"start": "2026-02-16", "end": "2026-03-16", "interval": "week"}
MONTHS = {"days": 35, "interval": "month"}
EDGES = {"start": "2026-03-10T10:30:00Z", "end": "2026-03-12T16:45:00Z"}  # edges inside days and hours
EDGES_TOTAL = {**EDGES, "interval": None}
HOURS = {"start": "2026-03-11T08:30:00Z", "end": "2026-03-12T02:00:00Z", "interval": "hour"}
EMPTY = {"start": "2026-03-02", "end": "2026-03-04"}  # no events at all
BEFORE = {"start": "2026-01-05", "end": "2026-01-19", "interval": "week"}  # before the first event
WINDOWS = {"days": DAYS, "all": ALL, "weeks": WEEKS, "months": MONTHS, "edges": EDGES,
           "edges_total": EDGES_TOTAL, "hours": HOURS, "empty": EMPTY, "before": BEFORE}


def cases() -> list[Any]:
    out: list[tuple[str, dict[str, Any]]] = []

    def add(metric: str, windows: Iterable[str], **kw: Any) -> None:
        for w in windows:
            out.append((metric, {**WINDOWS[w], **kw}))

    every = ["days", "all", "weeks", "months", "edges", "edges_total", "hours", "empty", "before"]
    for metric in ADDITIVE:
        add(metric, ["days", "all", "edges", "empty"])
    for metric in ("messages", "cost_usd", "llm_calls", "sms_segments", "unpriced_calls", "input_tokens"):
        add(metric, ["weeks", "months", "edges_total", "hours", "before"])
    add("cost_usd", ["days"], by="provider,model")
    add("cost_usd", ["edges_total", "hours"], by="kind")
    add("cost_usd", ["all"], by="channel,country")
    add("cost_usd", ["days"], by="user")
    add("cost_usd", ["days", "edges_total", "weeks"], by="conversation")
    add("cost_usd", ["edges_total", "weeks"], by="user")
    add("llm_calls", ["days", "edges"], by="model")
    add("llm_calls", ["days"], filters={"model": "gpt-4o"})
    add("input_tokens", ["all", "weeks"], by="provider,model")
    add("output_tokens", ["edges_total"], by="model")
    add("unpriced_calls", ["all"], by="model")
    add("errors", ["days", "all", "empty"], by="category,severity")
    add("errors", ["days"], filters={"category": "timeout"})
    add("activities", ["days", "edges", "all"], by="name")
    add("admin_commands", ["all"], by="name")
    add("resets", ["days"], by="channel")
    add("messages", ["days", "hours"], by="direction,channel")
    add("messages", ["all"], by="user")
    add("messages", ["edges_total"], by="conversation")
    add("messages", ["days"], filters={"channel": ["sms", "web"]})
    add("inbound_messages", ["all"], by="country")
    add("sms_segments", ["days", "all"], by="country,direction")
    add("api_calls", ["all", "days"], by="provider,name")
    for metric in ("active_users", "new_users", "returning_users"):
        add(metric, every)
        add(metric, ["days", "all"], by="bot")
    add("active_users", ["days", "all", "hours"], by="channel")
    add("active_users", ["all"], by="country")
    add("active_users", ["days"], filters={"channel": "sms"})
    per_bot = ("active_users", "new_users", "returning_users", "conversations", "messages_per_conversation",
               "error_rate")
    for metric in per_bot:
        for bot in (BOT, "another"):
            add(metric, ["days"], filters={"bot": bot})
    add("conversations", every)
    add("conversations", ["days", "all", "edges"], by="channel")
    add("conversations", ["days", "weeks"], by="bot")
    every_stat = "avg,p10,p25,p50,p75,p90,max,count"
    for metric in ("messages_per_conversation", "conversation_duration_s"):
        add(metric, ["days", "all", "weeks", "edges_total", "empty", "before"], stat=every_stat)
        add(metric, ["days"])
        add(metric, ["all", "days"], by="bot", stat=every_stat)
    all_latency = "p50,p90,p95,p99,max,avg,count"
    add("latency_ms", every, stat=all_latency)
    add("latency_ms", ["days"])
    add("latency_ms", ["all", "edges_total", "days"], by="stage", stat=all_latency)
    add("latency_ms", ["days"], filters={"stage": "total"}, stat=all_latency)
    add("latency_ms", every, stat="avg,max,count")  # what the hourly rollup can answer
    add("latency_ms", ["all", "hours"], by="stage", stat="count,max")
    add("llm_latency_ms", ["days", "all", "edges", "hours", "empty"], stat=all_latency)
    add("llm_latency_ms", ["all", "days"], by="model", stat=all_latency)
    add("llm_latency_ms", ["all", "days"], by="provider", stat=all_latency)
    add("llm_latency_ms", ["all", "days", "edges_total"], by="model", stat="avg,max,count")
    add("llm_latency_ms", ["days"], by="stage", stat="p50,p95,count")
    # What the summary and the dashboard ask over a whole window (one shared scan answers them).
    add("latency_ms", ["all", "edges_total", "empty", "before"], by="stage", stat="p50,p95,p99,count")
    add("reply_latency_s", ["all", "edges_total", "empty"], stat="p50,p95,p99")
    add("llm_latency_ms", ["all", "edges_total", "empty"], by="provider,model", stat="p50,p95,count")
    add("llm_ttft_ms", ["days", "all", "edges", "empty"], stat=all_latency)
    add("llm_ttft_ms", ["all", "days"], by="model", stat="p50,p95,count")
    add("reply_latency_s", every, stat=all_latency)
    add("reply_latency_s", ["days", "all"], by="channel", stat="p50,p95,p99")
    add("reply_latency_s", ["days", "hours"], stat="avg,max,count")
    add("failed_replies", every)
    add("failed_replies", ["days", "all"], by="channel")
    add("failed_replies", ["days"], filters={"channel": "sms"})
    for metric in RATIOS:
        add(metric, ["days", "all", "weeks", "edges", "edges_total", "empty"])
    add("retention", ["days"], interval="day", periods=7)
    add("retention", ["days"], days=21, interval="day", periods=30)
    add("retention", ["weeks"], periods=4)
    add("retention", ["days"], start="2026-02-16", interval="week", periods=3)
    add("retention", ["empty"], periods=2)
    return [pytest.param(m, kw, id=f"{m}-{'-'.join(f'{k}={v}' for k, v in kw.items())}") for m, kw in out]


@pytest.mark.parametrize(("metric", "kw"), cases())
def test_metric_matches_independent_computation(data: Data, reader: Reader, metric: str, kw: dict) -> None:
    result = reader.query(metric, **kw)
    assert_rows(result.rows, oracle(data, spec_of(metric, kw)))


# -- the data behind the oracle ---------------------------------------------------------------------


def test_store_holds_each_event_once_as_tracked(data: Data) -> None:
    stored = data.backend.rows(
        data.url,
        "SELECT event_id, kind, ts, user_id, conversation_id, channel, direction, country, provider, model, "
        "input_tokens, output_tokens, units, unit, latency_ms, stage, name FROM events",
    )
    assert len(stored) == len(data.events)  # replays and duplicates added nothing
    by_id = {str(r[0]): r[1:] for r in stored}
    for e in data.events:
        assert by_id[e.event_id] == (
            e.kind, e.ts.replace(tzinfo=None), e.user, e.conversation, e.channel, e.direction, e.country,
            e.provider, e.model, e.input_tokens, e.output_tokens,
            e.units if e.kind == "message" else (1.0 if e.kind == "api_call" else None),
            e.unit if e.kind == "message" else ("call" if e.kind == "api_call" else None),
            e.latency_ms, e.stage, e.name,
        ), e


def test_generated_data_has_the_cases_it_is_meant_to(data: Data) -> None:
    unpriced = [e for e in data.events if e.kind == "llm_call" and data.cost[e.event_id] is None]
    assert unpriced and all(e.model == "no-such-model-x" for e in unpriced)
    assert any(e.kind == "llm_call" and data.cost[e.event_id] for e in data.events)
    assert {e.name for e in data.events if e.kind == "activity"} == set(ACTIVITIES)
    assert len({data.category[e.event_id] for e in data.events if e.kind == "error"}) >= 5
    messages = [e for e in data.events if e.kind == "message"]
    assert any(e.conversation for e in messages) and any(not e.conversation for e in messages)
    assert 1500 < len(data.events) < 6000
    spans = conversation_spans(data)
    assert any(len(times) == 1 for times in spans.values())
    # The bridged user has one session that day; the gap user two; the edge user one across midnight.
    keys = conversation_keys(data)
    sessions = defaultdict(set)
    for e in messages:
        if e.user in ("bridge", "gap", "edge"):
            sessions[e.user].add(keys[e.event_id])
    assert {u: len(s) for u, s in sessions.items()} == {"bridge": 1, "gap": 2, "edge": 1}
    calls = [e for e in data.events if e.kind == "llm_call" and e.latency_ms is not None]
    assert any(e.ttft_ms for e in calls) and any(e.ttft_ms is None for e in calls)
    # Failed replies of both kinds, and errors in turns that were answered anyway (retries).
    assert any(e.failed for e in messages)
    whole = spec_of("failed_replies", ALL)
    failed = sum(r["count"] for r in failed_replies(data, whole))
    errors = sum(1 for e in data.events if e.kind == "error")
    assert 20 < failed < errors


def test_stage_latency_counts_only_that_stages_timings(reader: Reader, data: Data) -> None:
    # LLM calls carry stages too ("llm" here, "reply" in the demo); a stage's figure ignores them.
    llm_stage = reader.query("latency_ms", **ALL, filters={"stage": "llm"}, stat="count").rows
    assert llm_stage[0]["count"] == 0
    calls = reader.query("llm_latency_ms", **ALL, filters={"stage": "llm"}, stat="count").rows
    assert calls[0]["count"] == sum(1 for e in data.events if e.kind == "llm_call" and e.stage == "llm"
                                    and e.latency_ms is not None) > 0
    reply = reader.query("reply_latency_s", **ALL, stat="max").total()
    total = reader.query("latency_ms", **ALL, filters={"stage": REPLY_STAGE}, stat="max").total()
    assert total == max(e.latency_ms for e in data.events if e.stage == REPLY_STAGE)
    assert math.isclose(reply, total / 1000)


# -- named edge cases (also among the cases above, stated plainly here) --------------------------------


@pytest.mark.parametrize("use_rollups", [True, False], ids=["rollups", "events"])
def test_another_session_gap(data: Data, use_rollups: bool) -> None:
    reader = Reader(data.url, now=NOW, use_rollups=use_rollups, session_gap_minutes=10)
    gap = timedelta(minutes=10)
    for metric, kw in (
        ("conversations", DAYS),
        ("conversations", EDGES_TOTAL),
        ("conversations", HOURS),
        ("messages_per_conversation", {**ALL, "stat": "avg,p10,p25,p50,p75,p90,max,count"}),
        ("conversation_duration_s", {**DAYS, "stat": "avg,p25,p75,p90,count"}),
        ("cost_per_conversation", WEEKS),
    ):
        result = reader.query(metric, **kw)
        assert_rows(result.rows, oracle(data, spec_of(metric, kw, gap)))
        assert "gaps of more than 10 minutes" in " ".join(result.notes)


def test_turns_kept_write_by_write_equal_turns_rebuilt_from_the_events(data: Data, tmp_path: Path) -> None:
    # The writes came shuffled, late (inbound messages after their replies and errors) and replayed.
    import shutil

    import duckdb

    from botmeter.backends.duckdb.rollups import add_user_messages, rebuild_turns

    if data.backend.name != "duckdb":
        pytest.skip("DuckDB's own rollup upkeep")
    copy = tmp_path / "copy.duckdb"
    shutil.copy(data.url.removeprefix("duckdb://"), copy)
    con = duckdb.connect(str(copy))
    try:
        order = [f"SELECT * FROM {t} ORDER BY ALL" for t in ("rollup_turns", "rollup_turn_heads")]
        kept = [con.execute(sql).fetchall() for sql in order]
        rebuild_turns(con)
        assert kept == [con.execute(sql).fetchall() for sql in order]
        closed, heads = kept
        assert sum(1 for row in closed if row[5]) + sum(1 for row in heads if row[5] and not row[6]) > 20
        # The users' messages and country per day likewise.
        users = "SELECT day, bot, user_id, messages, country FROM rollup_users ORDER BY ALL"
        kept_users = con.execute(users).fetchall()
        add_user_messages(con)
        assert kept_users == con.execute(users).fetchall()
    finally:
        con.close()


def test_clickhouse_sessions_and_percentiles_kept_write_by_write_equal_a_rebuild(data: Data) -> None:
    # The writes came shuffled, late (a message bridging two sessions) and replayed; the writer
    # folded each into the sessions and the daily percentiles (backends/clickhouse/upkeep.py). The
    # rebuild runs on the test's store itself (the embedded engine opens one folder per process).
    from botmeter.backends.clickhouse import upkeep
    from botmeter.store import open_store

    if data.backend.name != "chdb":
        pytest.skip("the ClickHouse writer's own upkeep")
    tables = [
        "SELECT bot, day, conversation, user_id, first_ts, last_ts, messages FROM rollup_session_days FINAL "
        "ORDER BY ALL",
        "SELECT bot, conversation, user_id, first_ts, last_ts, messages FROM rollup_session_totals FINAL "
        "ORDER BY ALL",
        "SELECT day, bot, dim, value, n, round(latency_sum, 6), latency_max, q "
        "FROM rollup_latency_days FINAL ORDER BY ALL",
    ]
    store = open_store(data.url)
    try:
        with store.client() as client:
            kept = [client.query(sql).result_rows for sql in tables]
            upkeep.rebuild(client)
            rebuilt = [client.query(sql).result_rows for sql in tables]
    finally:
        store.close()
    for a, b in zip(kept, rebuilt, strict=True):
        a_rows, b_rows = {repr(r) for r in a}, {repr(r) for r in b}
        assert sorted(a_rows - b_rows) == sorted(b_rows - a_rows)
    assert kept == rebuilt
    sessions, _, days = kept
    assert sum(1 for row in sessions if row[2].startswith("s:")) > 10
    assert {row[2] for row in days} >= {"timing:", "timing:stage", "llm_call:model"}


def test_clickhouse_reads_events_when_the_kept_sessions_fall_short(data: Data) -> None:
    # A fold that never happened, or one folded twice (two writers at once): the sessions no
    # longer add up to the messages the view counted with the events, and readers use the events.
    from botmeter.store import open_store

    if data.backend.name != "chdb":
        pytest.skip("the ClickHouse writer's own upkeep")

    def session(version: int, deleted: int) -> None:
        store = open_store(data.url)
        try:
            with store.client() as client:
                client.command(
                    "INSERT INTO rollup_session_totals (bot, conversation, user_id, first_ts, last_ts, "
                    f"messages, version, deleted) VALUES ('{BOT}', 's:nobody:0', 'nobody', "
                    f"'2026-03-01 00:00:00', '2026-03-01 00:00:00', 1, {version}, {deleted})"
                )
        finally:
            store.close()

    kw = DAYS
    assert Reader(data.url, now=NOW).query("conversations", **kw).source == "rollups"
    session(10**17, 0)  # one message too many
    try:
        result = Reader(data.url, now=NOW).query("conversations", **kw)
        assert result.source == "events"
        assert_rows(result.rows, oracle(data, spec_of("conversations", kw)))
    finally:
        session(10**17 + 1, 1)  # taken out again
    assert Reader(data.url, now=NOW).query("conversations", **kw).source == "rollups"


def test_clickhouse_reads_events_when_a_turn_fold_is_missing(data: Data) -> None:
    # A write whose turns were never folded (its answer lost, the fold failed): the view counted
    # more turn events than the writer folded, and readers walk the events instead.
    from botmeter.store import open_store

    if data.backend.name != "chdb":
        pytest.skip("the ClickHouse writer's own upkeep")

    def add(table: str) -> None:
        store = open_store(data.url)
        try:
            with store.client() as client:
                client.command(f"INSERT INTO {table} (day, events) VALUES ('2026-03-01', 1)")
        finally:
            store.close()

    kw = {**DAYS, "by": "channel"}
    assert Reader(data.url, now=NOW).query("failed_replies", **kw).source == "rollups"
    add("rollup_turn_points")  # one event the writer did not fold
    try:
        result = Reader(data.url, now=NOW).query("failed_replies", **kw)
        assert result.source == "events"
        assert_rows(result.rows, oracle(data, spec_of("failed_replies", kw)))
    finally:
        add("rollup_turn_folded")  # folded after all
    assert Reader(data.url, now=NOW).query("failed_replies", **kw).source == "rollups"


@pytest.mark.parametrize("window", ["days", "edges_total", "all"])
def test_messages_and_country_per_user(data: Data, reader: Reader, window: str) -> None:
    q = spec_of("messages", WINDOWS[window])
    users = ["u01", "u02", "u05", "solo", "nobody"]
    expected: dict[str, tuple[int, str | None]] = {}
    for e in data.events:
        if e.kind == "message" and e.user in users and q.inside(e.ts):
            n, country = expected.get(e.user, (0, None))
            expected[e.user] = (n + 1, max(filter(None, (country, e.country)), default=None))
    assert reader.user_messages(users, start=q.start, end=q.end) == expected
    assert any(country for _, country in expected.values())


def test_rollup_path_answers_from_the_rollups(data: Data) -> None:
    reader = Reader(data.url, now=NOW)
    for metric, kw in (
        ("cost_usd", DAYS),
        ("active_users", DAYS),
        ("new_users", DAYS),
        ("conversations", DAYS),
        ("conversations", WEEKS),
        ("messages_per_conversation", ALL),
        ("latency_ms", {**DAYS, "stat": "avg,count"}),
        ("reply_latency_s", {**DAYS, "stat": "p50,p95"}),
        ("latency_ms", {**DAYS, "filters": {"stage": "total"}, "stat": "p95"}),
        ("llm_latency_ms", {**DAYS, "by": "model", "stat": "p95"}),
        ("failed_replies", DAYS),
    ):
        assert reader.query(metric, **kw).source == "rollups", (metric, kw)
    assert Reader(data.url, now=NOW, use_rollups=False).query("cost_usd", **DAYS).source == "events"


def test_window_edges(reader: Reader) -> None:
    # days=28: today so far and the 27 days before it, by UTC calendar day.
    days = [r["bucket"] for r in reader.query("messages", days=28).rows]
    assert days[0] == datetime(2026, 2, 19, tzinfo=UTC) and days[-1] == datetime(2026, 3, 18, tzinfo=UTC)
    assert len(days) == 28
    # Edges inside days: the first bucket is labelled with its calendar start, only data from 10:30 counts.
    for metric in ("messages", "cost_usd", "active_users", "conversations"):
        inside = reader.query(metric, **EDGES).rows
        whole = reader.query(metric, start="2026-03-10", end="2026-03-13").rows
        stat = next(k for k in inside[0] if k != "bucket")
        assert [r["bucket"] for r in inside] == [r["bucket"] for r in whole]
        assert inside[0][stat] < whole[0][stat] and inside[-1][stat] < whole[-1][stat], metric
        assert same(inside[1][stat], whole[1][stat])


def test_empty_window_has_a_row_per_bucket(reader: Reader) -> None:
    for metric, empty in (
        ("messages", {"count": 0}),
        ("cost_usd", {"sum": 0.0}),
        ("active_users", {"count": 0}),
        ("conversations", {"count": 0}),
        ("error_rate", {"ratio": None}),
        ("latency_ms", {"p95": None}),
    ):
        rows = reader.query(metric, **EMPTY).rows
        assert [r["bucket"] for r in rows] == [datetime(2026, 3, d, tzinfo=UTC) for d in (2, 3)], metric
        assert [{k: v for k, v in r.items() if k != "bucket"} for r in rows] == [empty, empty], metric
    rows = reader.query("conversation_duration_s", **EMPTY, stat="avg,count").rows
    assert [(r["avg"], r["count"]) for r in rows] == [(None, 0), (None, 0)]


def test_single_message_conversation_lasts_zero_seconds(reader: Reader) -> None:
    for day in ("2026-03-05", "2026-03-06"):  # a session of one message; a conversation id with one
        start = datetime.fromisoformat(day).replace(tzinfo=UTC)
        rows = reader.query("conversation_duration_s", start=start, end=start + timedelta(days=1),
                            interval=None, stat="max,count").rows
        lengths = reader.query("messages_per_conversation", start=start, end=start + timedelta(days=1),
                               interval=None, stat="p50,count").rows
        assert rows[0]["count"] >= 1 and lengths[0]["count"] == rows[0]["count"]
    solo = reader.query("conversation_duration_s", start="2026-03-05T08:59:00Z", end="2026-03-05T09:01:00Z",
                        interval=None, stat="avg,max,count").rows
    assert solo == [{"bucket": datetime(2026, 3, 5, 8, 59, tzinfo=UTC), "avg": 0.0, "max": 0.0, "count": 1}]


def test_session_bridged_by_a_late_message_and_carried_across_midnight(reader: Reader) -> None:
    # bridge: 10:00, 10:20, 11:00, 11:10 and a late 10:40: one conversation of five messages.
    rows = reader.query("messages_per_conversation", start="2026-03-11T09:59:00Z", end="2026-03-11T10:01:00Z",
                        interval=None, stat="max,count").rows
    assert (rows[0]["max"], rows[0]["count"]) == (5.0, 1)
    duration = reader.query("conversation_duration_s", start="2026-03-11T09:59:00Z",
                            end="2026-03-11T10:01:00Z", interval=None, stat="max").rows
    assert duration[0]["max"] == 70 * 60
    # edge: Sunday 23:50 to Monday 00:16, one conversation counted on both days and in both weeks.
    sunday = reader.query("conversation_duration_s", start="2026-03-08T23:49:00Z", end="2026-03-08T23:51:00Z",
                          interval=None, stat="max,count").rows
    assert (sunday[0]["max"], sunday[0]["count"]) == (26 * 60.0, 1)
    for interval in ("day", "week"):
        active = reader.query("active_users", start="2026-03-08", end="2026-03-10", interval=interval).rows
        assert all(r["count"] >= 1 for r in active)


def test_percentiles_with_ties_and_tiny_groups(reader: Reader) -> None:
    rows = reader.query("latency_ms", start="2026-03-10", end="2026-03-12", interval=None, by="stage",
                        stat="p50,p90,p99,max,avg,count").rows
    by_stage = {r["stage"]: r for r in rows}
    assert {k: by_stage["rare"][k] for k in ("p50", "p90", "p99", "max", "count")} == {
        "p50": 333.0, "p90": 333.0, "p99": 333.0, "max": 333.0, "count": 1}
    assert (by_stage["pair"]["p50"], by_stage["pair"]["p90"], by_stage["pair"]["count"]) == (200.0, 280.0, 2)
    flat = reader.query("latency_ms", start="2026-03-10T14:00:00Z", end="2026-03-10T14:06:00Z", interval=None,
                        filters={"stage": "flat"}, stat="p50,p99,avg,count").rows
    bucket = datetime(2026, 3, 10, 14, tzinfo=UTC)
    assert flat == [{"bucket": bucket, "p50": 120.0, "p99": 120.0, "avg": 120.0, "count": 6}]


def test_json_rows(reader: Reader, data: Data) -> None:
    one = reader.query("cost_usd", **DAYS, by="model")
    expected = oracle(data, spec_of("cost_usd", {**DAYS, "by": "model"}))
    assert [{k: v for k, v in r.items() if k != "value"} for r in one.json_rows()] == [
        {"bucket": r["bucket"].strftime("%Y-%m-%dT%H:%M:%SZ"), "model": r["model"]} for r in expected
    ]
    assert all(same(j["value"], r["sum"]) for j, r in zip(one.json_rows(), expected, strict=True))
    several = reader.query("latency_ms", **ALL, stat="p50,count").json_rows()
    assert several == [{"bucket": "2026-02-12T00:00:00Z", **{k: v for k, v in several[0].items()
                                                            if k in ("p50", "count")}}]
    assert several[0]["count"] == sum(1 for e in data.events if e.kind == "timing")


# -- error groups --------------------------------------------------------------------------------------


def expected_groups(d: Data, start: datetime, end: datetime, quiet: timedelta = timedelta(days=7)) -> list:
    errors: dict[str, list[Ev]] = defaultdict(list)
    for e in d.events:
        if e.kind == "error" and e.ts < end:
            errors[d.fingerprint[e.event_id]].append(e)
    out = []
    for fp, history in errors.items():
        history.sort(key=lambda e: e.ts)
        inside = [e for e in history if e.ts >= start]
        if not inside:
            continue
        came_back = any(e.ts >= start and e.ts - before.ts >= quiet for before, e in pairwise(history))
        first_seen = history[0].ts
        hourly: dict[datetime, int] = defaultdict(int)
        for e in inside:
            hourly[floor(e.ts, "hour")] += 1
        out.append({
            "fingerprint": fp,
            "count": len(inside),
            "users": len({e.user for e in inside if e.user is not None}),
            "conversations": len({e.conversation for e in inside if e.conversation is not None}),
            "first_seen": first_seen,
            "last_seen": inside[-1].ts,
            "status": "new" if first_seen >= start else ("regressed" if came_back else "ongoing"),
            "hourly": sorted(hourly.items()),
        })
    out.sort(key=lambda g: (-g["count"], g["fingerprint"]))
    return out


@pytest.mark.parametrize(
    ("start", "end"),
    [("2026-03-09", NOW), ("2026-02-12", NOW), ("2026-03-10T08:30:00Z", "2026-03-12T12:00:00Z"),
     ("2026-03-02", "2026-03-04")],
)
def test_error_groups(data: Data, reader: Reader, start: str, end: datetime | str) -> None:
    start_ts, end_ts = parse_ts(start), parse_ts(end)
    groups = reader.error_groups(start=start, end=end)
    keys = ("fingerprint", "count", "users", "conversations", "first_seen", "last_seen", "status", "hourly")
    assert [{k: g[k] for k in keys} for g in groups] == expected_groups(data, start_ts, end_ts)


def test_error_group_statuses(data: Data, reader: Reader) -> None:
    groups = reader.error_groups(start="2026-03-09", end=NOW)
    fingerprints = {e.error: data.fingerprint[e.event_id] for e in data.events if e.kind == "error"}
    status = {g["fingerprint"]: g["status"] for g in groups}
    assert status[fingerprints["quota"]] == "regressed"  # 21 days quiet
    assert status[fingerprints["internal"]] == "regressed"  # exactly 7 days quiet
    assert status[fingerprints["delivery"]] == "ongoing"  # never quiet for 7 days
    assert status[fingerprints["not_found"]] == "new"


def test_error_groups_of_one_bot(data: Data, reader: Reader) -> None:
    every = reader.error_groups(start="2026-03-09", end=NOW)
    assert every and reader.error_groups(start="2026-03-09", end=NOW, bot=BOT) == every
    assert reader.error_groups(start="2026-03-09", end=NOW, bot="another-bot") == []


def test_a_cost_group_of_unpriced_calls_only_is_unknown_not_zero(reader: Reader, data: Data) -> None:
    from click.testing import CliRunner

    from botmeter.interfaces.cli import main
    from botmeter.report.responses import query_report, render, to_sms

    result = reader.query("cost_usd", **ALL, by="model")
    by_model = {r["model"]: r["sum"] for r in result.rows}
    assert by_model["no-such-model-x"] is None and by_model["gpt-4o"] > 0
    assert {r["model"]: r["value"] for r in result.json_rows()}["no-such-model-x"] is None
    text = render(query_report(result), "text")
    assert "no-such-model-x: unpriced" in text and "without 1 unpriced group" in text
    assert "no-such-model-x unpriced" in to_sms(query_report(result), 10)
    args = ["query", "cost_usd", "--by", "model", "--start", "2026-02-12", "--interval", "none"]
    table = CliRunner().invoke(main, [*args, "--store", data.url], terminal_width=200)
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    assert any("no-such-model-x" in line and "unpriced" in line for line in lines)
    assert any("(no model)" in line for line in lines) and "(none)" not in table.output
    # A group with priced events keeps its known cost (the unpriced calls are counted apart).
    openai = reader.query("cost_usd", **ALL, filters={"provider": "openai"}).total()
    assert openai is not None and openai > 0


# -- failed replies: any order of writes, equal times -----------------------------------------------


def turn_events(seed: int) -> list[Ev]:
    """Conversations (by id, and by user without one) whose messages and errors share few times:
    inbound messages at one time on one channel or several, replies at their message's time, and
    errors and replies marked failed among them."""
    rng = random.Random(seed)
    base = datetime(2026, 3, 16, 9, 0, tzinfo=UTC)
    events = []
    for c in range(10):
        user = f"t{c % 7}"
        conversation = f"tc{c}" if c % 3 else None
        for _ in range(rng.randint(1, 16)):
            ts = base + timedelta(seconds=rng.randrange(30), hours=rng.choice([0, 0, 0, 5]))
            what = rng.choice(["in", "in", "out", "out", "failed", "error"])
            event_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            ids = {"user": user, "conversation": conversation}
            if what == "error":
                events.append(Ev(event_id, "error", ts, error="timeout", **ids))
            else:
                events.append(Ev(event_id, "message", ts, channel=rng.choice(["sms", "web", None]),
                                 direction="in" if what == "in" else "out", failed=what == "failed", **ids))
    return events


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("seed", range(8))
def test_failed_replies_kept_write_by_write_whatever_the_order(
    seed: int, engine: str, tmp_path: Path
) -> None:
    # Written in a random order, in one to six writes, some twice: every stored figure equals the
    # one rebuilt from the events and the plain walk above, per channel.
    import shutil

    import duckdb

    from botmeter.backends.duckdb.rollups import rebuild_turns

    events = turn_events(seed)
    rng = random.Random(seed)
    order = events[:]
    rng.shuffle(order)
    cuts = sorted(rng.sample(range(1, len(order)), min(len(order) - 1, rng.randint(0, 5))))
    batches = [order[a:b] for a, b in pairwise([0, *cuts, len(order)])]
    batches.append(rng.sample(order, len(order) // 4))  # replayed
    backend = TEST_BACKENDS[engine]
    url = backend.url(tmp_path)
    meter = Meter(bot=BOT, store=url, hash_users=False, flush_interval=0.05)
    try:
        for batch in batches:
            for i, event in enumerate(batch):
                track(meter, event, as_datetime=i % 2 == 0)
            assert meter.flush()
    finally:
        meter.close()
    data = Data(events, backend, url)
    window = {"start": "2026-03-16", "end": "2026-03-17", "interval": "hour", "by": "channel"}
    expected = failed_replies(data, spec_of("failed_replies", window))
    assert sum(r["count"] for r in expected) > 0
    for use_rollups in (True, False):
        reader = Reader(url, now=NOW, use_rollups=use_rollups)
        result = reader.query("failed_replies", **window)
        assert result.source == ("rollups" if use_rollups else "events")
        assert_rows(result.rows, expected)
    if engine == "chdb":
        assert_clickhouse_turns_equal_a_rebuild(url)
        return
    copy = tmp_path / "copy.duckdb"
    shutil.copy(url.removeprefix("duckdb://"), copy)
    con = duckdb.connect(str(copy))
    try:
        tables = [f"SELECT * FROM {t} ORDER BY ALL" for t in ("rollup_turns", "rollup_turn_heads")]
        kept = [con.execute(sql).fetchall() for sql in tables]
        rebuild_turns(con)
        assert kept == [con.execute(sql).fetchall() for sql in tables]
    finally:
        con.close()


def assert_clickhouse_turns_equal_a_rebuild(url: str) -> None:
    """The turns the ClickHouse writer kept write by write are those rebuilt from the events."""
    from botmeter.backends.clickhouse import turns
    from botmeter.store import open_store

    tables = [
        "SELECT bot, conversation, ts, channel, last_ts, bad, answered FROM rollup_turn_heads FINAL "
        "ORDER BY ALL",
        "SELECT bot, conversation, ts, channel, bad FROM rollup_turns FINAL ORDER BY ALL",
    ]
    store = open_store(url)
    try:
        with store.client() as client:
            kept = [client.query(sql).result_rows for sql in tables]
            turns.rebuild(client)
            assert kept == [client.query(sql).result_rows for sql in tables]
    finally:
        store.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_inbound_messages_at_one_time_are_a_turn_each(engine: str, tmp_path: Path) -> None:
    # Two inbound messages at one time, then an error: the later one (by channel) failed, the
    # other had nothing after it. A third at that time, written later, takes the error over.
    url = TEST_BACKENDS[engine].url(tmp_path)
    at = datetime(2026, 3, 16, 9, 0, tzinfo=UTC)
    meter = Meter(bot=BOT, store=url, hash_users=False, flush_interval=0.05)
    window = {"start": "2026-03-16", "end": "2026-03-17", "interval": None, "by": "channel"}
    try:
        meter.track_message(direction="in", text="a", user="x", conversation="c", channel="sms", ts=at)
        meter.track_message(direction="in", text="b", user="x", conversation="c", channel="api", ts=at)
        meter.track_error("timeout", user="x", conversation="c", ts=at + timedelta(seconds=1))
        assert meter.flush()
        rows = Reader(url, now=NOW).query("failed_replies", **window).rows
        assert {r["channel"]: r["count"] for r in rows} == {"sms": 1}
        assert Reader(url, now=NOW).query("inbound_messages", **{**window, "by": ""}).total() == 2
        meter.track_message(direction="in", text="c", user="x", conversation="c", channel="web", ts=at)
        assert meter.flush()
    finally:
        meter.close()
    for use_rollups in (True, False):
        rows = Reader(url, now=NOW, use_rollups=use_rollups).query("failed_replies", **window).rows
        assert {r["channel"]: r["count"] for r in rows} == {"web": 1}
