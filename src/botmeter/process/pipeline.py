"""From buffered records to stored events, on the writer thread (never on the bot's).

The records of one drain become ``Frame``s, one per kind of track call, with columns named as
the stored event's. Processors are plain callables over a frame, run in order; the built-in
ones price LLM calls, SMS and API calls, describe errors and hash user ids. They work a column
at a time because a burst can bring hundreds of thousands of events in one batch. A processor
that fails is retried on halves of the frame down to the event that makes it fail: that event is
stored without the processor's work (a missing price shows as NULL cost, which reprice can fill in
later), the rest with it. An event that cannot be made into a stored row at all (its user id cannot
be hashed, a value does not fit its column) is set aside: counted in ``rejected`` with the reason,
never taking the other events of its batch with it.
"""

from __future__ import annotations

import json
import logging
import secrets
import uuid
from array import array
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..config import Config

try:
    from .._fastpath import column_buffers
except ImportError:  # the C fast path is not built: pyarrow converts, more slowly
    column_buffers = None
from ..events import CALLER_KEYS, EVENT_SCHEMA, RECORD_CALLS, RECORDS
from ..exceptions import InputError
from . import error_facts
from .pricing import LlmPricer, PriceList, UnitPricer, call_extras
from .privacy import UserHasher
from .sms import SmsRates, country_of, segments_column

log = logging.getLogger("botmeter")

SCHEMA = EVENT_SCHEMA
# The most one event's free-form JSON (properties, an error's context) or stored text may take.
MAX_FIELD_BYTES = 32 * 1024
_EVENT_ID_NAMESPACE = uuid.UUID("5b0f7c52-8a7e-4d55-9f57-3d1c2b7c9a10")


@dataclass(slots=True)
class Frame:
    """Events of one kind from one batch: stored column name -> values (lists or tuples of length n)."""

    call: str
    kind: str
    n: int
    columns: dict[str, Sequence] = field(default_factory=dict)

    def slice(self, start: int, stop: int) -> Frame:
        stop = min(stop, self.n)
        return Frame(self.call, self.kind, stop - start, {k: v[start:stop] for k, v in self.columns.items()})

    def copy(self) -> Frame:
        """The same events with a columns dict of their own: a processor that fails half-way
        (popping or replacing columns) leaves the original as it was."""
        return Frame(self.call, self.kind, self.n, dict(self.columns))

    @staticmethod
    def joined(frames: Sequence[Frame]) -> Frame | None:
        """Frames of one kind end to end; a column some lack is None there."""
        if not frames:
            return None
        if len(frames) == 1:
            return frames[0]
        names = list(dict.fromkeys(name for f in frames for name in f.columns))
        columns = {
            name: [v for f in frames for v in (f.columns[name] if name in f.columns else [None] * f.n)]
            for name in names
        }
        first = frames[0]
        return Frame(first.call, first.kind, sum(f.n for f in frames), columns)


Processor = Callable[[Frame], "Frame | None"]


def per_event(fn: Callable[[dict[str, Any]], dict[str, Any] | None]) -> Processor:
    """Adapts an event -> event (or None to drop) function to a frame processor.

    Slower than a column-wise processor (a dict per event), fine for a custom rule on a bot's
    ordinary traffic.
    """

    def run(frame: Frame) -> Frame | None:
        names = list(frame.columns)
        kept: list[dict[str, Any]] = []
        for row in zip(*(frame.columns[n] for n in names), strict=True):
            event = dict(zip(names, row, strict=True))
            event["kind"] = frame.kind
            result = fn(event)
            if result is not None:
                kept.append(result)
        if not kept:
            return None
        columns = {n: [e.get(n) for e in kept] for n in names if n != "kind"}
        return Frame(frame.call, frame.kind, len(kept), columns)

    run.__name__ = getattr(fn, "__name__", "per_event")
    return run


class EventIds:
    """Unique, time-ordered-per-process event ids: a random 64-bit session prefix + a counter.

    Ids are given on the writer, so the track call pays nothing for them, and before a batch is
    stored or spooled, so a replay carries the same ids and is deduplicated.
    """

    __slots__ = ("_next", "_prefix")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        # After fork the child must not reuse the parent's sequence.
        self._prefix = int.from_bytes(secrets.token_bytes(8), "little")
        self._next = 0

    def take(self, n: int) -> pa.Array:
        start = self._next
        self._next += n
        words = array("Q", bytes(16 * n))
        words[0::2] = array("Q", [self._prefix]) * n
        counters = array("Q", range(start, start + n))
        if counters.itemsize == 8 and array("H", [1]).tobytes() == b"\x01\x00":
            counters.byteswap()  # big-endian low half, so ids sort by counter
        words[1::2] = counters
        return pa.FixedSizeBinaryArray.from_buffers(pa.binary(16), n, [None, pa.py_buffer(words.tobytes())])


_BUFFER_KINDS = {pa.float64(): 0, pa.int64(): 1, pa.string(): 2}


def to_array(values: Sequence, typ: pa.DataType, convert: Callable[[Any], Any] | None = None) -> pa.Array:
    """A column of Python values as an Arrow array: the C buffer builder when it can, else pyarrow.

    ``convert`` maps each value first, only when the fast path cannot take the values as they are.
    """
    kind = _BUFFER_KINDS.get(typ)
    if column_buffers is not None and kind is not None:
        buffers = column_buffers(values, kind)
        if buffers is not None:
            validity, *data, nulls = buffers
            return pa.Array.from_buffers(
                typ,
                len(values),
                [None if validity is None else pa.py_buffer(validity), *map(pa.py_buffer, data)],
                null_count=nulls,
            )
    if convert is not None:
        values = [convert(v) for v in values]
    return pa.array(values, typ)


def _json_default(value: Any) -> Any:
    # SDK objects an integration kept as they came (a usage object): serialised here, on the
    # writer's thread, rather than on the bot's.
    dump = getattr(value, "model_dump", None)
    if dump is not None:
        try:
            return dump(mode="json", exclude_none=True)
        except Exception:
            pass
    return str(value)


def _json_column(values: list) -> list:
    dumps = json.dumps
    # NaN and infinities are not JSON: refuse them (the event is set aside) rather than store text
    # that no JSON reader takes.
    out = [
        None if v is None else dumps(v, default=_json_default, separators=(",", ":"), allow_nan=False)
        for v in values
    ]
    for i, text in enumerate(out):
        if text is not None and len(text) > MAX_FIELD_BYTES:  # ASCII JSON: one byte per character
            out[i] = dumps(too_large(len(text)), separators=(",", ":"))
    return out


def too_large(size: int) -> dict[str, Any]:
    """What is stored instead of free-form JSON over ``MAX_FIELD_BYTES`` (``size``: its size, or
    as much of it as was measured before giving up)."""
    return {"_truncated": {"at_least_bytes": size, "limit_bytes": MAX_FIELD_BYTES}}


def _clip_text(values: Sequence) -> list:
    limit = MAX_FIELD_BYTES
    return [
        t
        if t is None or len(t) <= limit // 4 or len(t.encode("utf-8", "surrogatepass")) <= limit
        else t.encode("utf-8", "surrogatepass")[: limit - 16].decode("utf-8", "ignore") + " [truncated]"
        for t in values
    ]


class Pipeline:
    """Turns one drain of the buffer into an Arrow table of stored events."""

    def __init__(
        self,
        config: Config,
        hasher: UserHasher | None,
        processors: Sequence[Processor] = (),
    ) -> None:
        self.config = config
        self.hasher = hasher
        self.price_list = PriceList.load(config.prices) if config.prices else None
        self.llm = LlmPricer(self.price_list)
        self.sms_rates = SmsRates.load(config.sms_rates) if config.sms_rates else SmsRates.default()
        self.units_pricer = UnitPricer(self.price_list, self.sms_rates)
        self.ids = EventIds()
        self.failures: Counter[str] = Counter()
        # Events set aside since the writer last looked: (track call, reason) -> count.
        self.rejected: Counter[tuple[str, str]] = Counter()
        self.steps: list[Processor] = [
            self.price_llm,
            self.price_sms,
            self.price_api,
            self.describe_errors,
            *processors,
            self.hash_users,
        ]
        self._builders = {
            "track_message": self._message,
            "track_sms": self._sms,
            "track_llm_call": self._llm_call,
            "track_api_call": self._api_call,
            "track_error": self._error,
            "track_timing": self._timing,
            "track_activity": self._activity,
            "track_custom": self._custom,
        }

    # -- records to frames ------------------------------------------------------------------

    def frames(self, lanes: Sequence[tuple[list, ...] | None]) -> list[Frame]:
        """One frame per non-empty lane; a lane is the buffer's columns for one track call."""
        out = []
        for call, columns in zip(RECORD_CALLS, lanes, strict=True):
            if columns:
                names = ("ts", *RECORDS[call].names)
                raw = dict(zip(names, columns, strict=True))
                out.append(self._builders[call](len(columns[0]), raw))
        return out

    def _common(self, call: str, kind: str, n: int, raw: dict[str, list], **columns: list) -> Frame:
        columns.update(
            ts=raw["ts"],
            user_id=raw["user"],
            conversation_id=raw["conversation"],
            channel=raw["channel"],
            properties=_oversized(raw["properties"]),
        )
        frame = Frame(call, kind, n, columns)
        if raw["event_id"].count(None) != n:
            frame.columns["_event_key"] = raw["event_id"]
        return frame

    def _text_columns(self, raw: dict[str, list]) -> dict[str, list]:
        texts = raw["text"]
        columns = {"chars": [None if t is None else len(t) for t in texts]}
        if self.config.store_text:
            columns["text"] = _clip_text(texts)
        return columns

    def _message(self, n: int, raw: dict[str, list]) -> Frame:
        return self._common(
            "track_message", "message", n, raw, direction=raw["direction"], **self._text_columns(raw)
        )

    def _sms(self, n: int, raw: dict[str, list]) -> Frame:
        frame = self._common(
            "track_sms",
            "message",
            n,
            raw,
            direction=raw["direction"],
            provider=[p or "twilio" for p in raw["provider"]],
            units=raw["segments"],
            unit=["sms_segment"] * n,
            country=raw["country"],
            cost_usd=raw["cost_usd"],
            **self._text_columns(raw),
        )
        frame.columns["channel"] = [c or "sms" for c in frame.columns["channel"]]
        frame.columns["_text"] = raw["text"]
        return frame

    def _llm_call(self, n: int, raw: dict[str, list]) -> Frame:
        names = ("provider", "model", "input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens")
        columns = {name: raw[name] for name in names}
        return self._common(
            "track_llm_call",
            "llm_call",
            n,
            raw,
            cache_write_tokens=raw["cache_write_tokens"],
            latency_ms=raw["latency_ms"],
            cost_usd=raw["cost_usd"],
            stage=raw["stage"],
            **columns,
        )

    def _api_call(self, n: int, raw: dict[str, list]) -> Frame:
        return self._common(
            "track_api_call",
            "api_call",
            n,
            raw,
            provider=raw["provider"],
            name=raw["name"],
            cost_usd=raw["cost_usd"],
            units=[1.0 if u is None else u for u in raw["units"]],
            unit=[u or "call" for u in raw["unit"]],
            latency_ms=raw["latency_ms"],
        )

    def _error(self, n: int, raw: dict[str, list]) -> Frame:
        frame = self._common(
            "track_error",
            "error",
            n,
            raw,
            provider=raw["provider"],
            stage=raw["stage"],
            severity=raw["severity"],
        )
        frame.columns["_error"] = raw["error"]
        frame.columns["_message"] = raw["message"]
        frame.columns["_status_code"] = raw["status_code"]
        frame.columns["_code"] = raw["code"]
        frame.columns["_context"] = _oversized(raw["context"])
        return frame

    def _timing(self, n: int, raw: dict[str, list]) -> Frame:
        return self._common(
            "track_timing",
            "timing",
            n,
            raw,
            stage=raw["stage"],
            latency_ms=raw["latency_ms"],
            provider=raw["provider"],
            model=raw["model"],
        )

    def _activity(self, n: int, raw: dict[str, list]) -> Frame:
        return self._common("track_activity", "activity", n, raw, name=raw["name"])

    def _custom(self, n: int, raw: dict[str, list]) -> Frame:
        return self._common(
            "track_custom", "custom", n, raw, name=raw["name"], units=raw["value"], unit=raw["unit"]
        )

    # -- built-in processors ------------------------------------------------------------------

    def price_llm(self, frame: Frame) -> Frame:
        if frame.kind != "llm_call":
            return frame
        c = frame.columns
        costs, versions = self.llm.price_batch(
            c["provider"],
            c["model"],
            c["ts"],
            c["input_tokens"],
            c["output_tokens"],
            c["cached_tokens"],
            c["cache_write_tokens"],
            c["reasoning_tokens"],
            call_extras(c["properties"]),
        )
        given = c["cost_usd"]
        c["cost_usd"] = [g if g is not None else cost for g, cost in zip(given, costs, strict=True)]
        c["price_version"] = [
            "caller" if g is not None else version for g, version in zip(given, versions, strict=True)
        ]
        return frame

    def price_sms(self, frame: Frame) -> Frame:
        if frame.call != "track_sms":
            return frame
        c = frame.columns
        texts = c.pop("_text")
        counted = segments_column(texts)
        units = [n if u is None else u for u, n in zip(c["units"], counted, strict=True)]
        default_country = self.config.default_country
        # Countries come from the clear phone numbers, so this runs before user ids are hashed.
        by_user = {
            u: (country_of(u) if isinstance(u, str) else None) or default_country for u in set(c["user_id"])
        }
        countries = [
            by_user[u] if given is None else given
            for u, given in zip(c["user_id"], c["country"], strict=True)
        ]
        costs, versions = self.units_pricer.sms(
            c["provider"], units, c["ts"], c["direction"], countries, c["cost_usd"]
        )
        c.update(units=units, country=countries, cost_usd=costs, price_version=versions)
        return frame

    def price_api(self, frame: Frame) -> Frame:
        if frame.kind != "api_call":
            return frame
        c = frame.columns
        costs, versions = self.units_pricer.api(
            c["provider"], c["name"], c["unit"], c["units"], c["ts"], c["cost_usd"]
        )
        c.update(cost_usd=costs, price_version=versions)
        return frame

    def describe_errors(self, frame: Frame) -> Frame:
        if frame.kind != "error":
            return frame
        c = frame.columns
        errors, messages = c.pop("_error"), c.pop("_message")
        statuses, codes, contexts = c.pop("_status_code"), c.pop("_code"), c.pop("_context")
        columns = {
            k: [None] * frame.n for k in ("error_type", "error_category", "fingerprint", "error_message")
        }
        # New lists, not the frame's: a retry after a failure must see the values as they came.
        c["severity"], c["properties"] = list(c["severity"]), list(c["properties"])
        c["provider"] = list(c["provider"])
        for i in range(frame.n):
            facts = error_facts.describe(errors[i], messages[i], statuses[i], codes[i])
            if c["provider"][i] is None:  # the exception's package says whose it is
                c["provider"][i] = error_facts.provider_of(errors[i])
            category = error_facts.categorise(facts, c["provider"][i])
            message = error_facts.normalise_message(facts.message or "", keep_quoted=self.config.store_text)
            columns["error_type"][i] = facts.error_type
            columns["error_category"][i] = category
            columns["error_message"][i] = message
            columns["fingerprint"][i] = error_facts.fingerprint(facts.error_type, message, facts.frame)
            if c["severity"][i] is None:
                c["severity"][i] = error_facts.default_severity(category)
            extra = {}
            if facts.status_code is not None:
                extra["status_code"] = facts.status_code
            if facts.code is not None:
                extra["code"] = facts.code
            if facts.frame is not None:
                extra["frame"] = facts.frame
            if contexts[i]:
                extra["context"] = contexts[i]
            if extra:
                c["properties"][i] = {**(c["properties"][i] or {}), **extra}
        c.update(columns)
        return frame

    def hash_users(self, frame: Frame) -> Frame:
        users = frame.columns.get("user_id")
        conversations = frame.columns.get("conversation_id")
        if self.hasher is not None and conversations is not None:
            # Bots often use the user's number as the conversation id: it is not stored in the clear either.
            frame.columns["conversation_id"] = self.hasher.hash_phone_like(conversations)
        if users is None:
            return frame
        if self.hasher is not None:
            frame.columns["user_id"] = self.hasher.hash_column(users)
        else:
            frame.columns["user_id"] = [None if u is None else str(u) for u in users]
        return frame

    # -- frames to a table --------------------------------------------------------------------

    def run(self, lanes: Sequence[tuple[list, ...] | None], extra: Sequence[Frame] = ()) -> pa.Table | None:
        """Everything in one table (None when there is nothing to store)."""
        tables = list(self.run_chunks(lanes, extra, chunk_rows=1 << 62))
        return tables[0] if tables else None

    def run_chunks(
        self, lanes: Sequence[tuple[list, ...] | None], extra: Sequence[Frame] = (), chunk_rows: int = 100_000
    ) -> Iterator[pa.Table]:
        """Tables of about ``chunk_rows`` events each, as they are ready.

        After a backlog (a burst, a slow store) the buffer can hold millions of events: handing
        them on in chunks lets the store write one while the next is processed, and keeps memory
        to a few chunks.
        """
        pending: list[pa.Table] = []
        rows = 0
        caller_keys = False
        for whole in [*self.frames(lanes), *extra]:
            for start in range(0, whole.n, chunk_rows):
                frame = whole.slice(start, start + chunk_rows) if whole.n > chunk_rows else whole
                caller_keys = caller_keys or "_event_key" in frame.columns
                processed = self._process(frame)
                table = None if processed is None or not processed.n else self._table(processed)
                if table is not None:
                    pending.append(table)
                    rows += table.num_rows
                if rows >= chunk_rows:
                    yield self._combine(pending, caller_keys)
                    pending, rows, caller_keys = [], 0, False
        if pending:
            yield self._combine(pending, caller_keys)

    def _process(self, frame: Frame) -> Frame | None:
        for step in self.steps:
            result = self._step(step, frame, top=True)
            if result is None:
                return None
            frame = result
        return frame

    def _step(self, step: Processor, frame: Frame, top: bool = False) -> Frame | None:
        """One processor over the frame; on failure, over each half, down to the event that fails it.

        A batch with one bad event costs a few retries of halves (log2 of its size), never the
        work done for the others.
        """
        try:
            return step(frame.copy())
        except Exception as exc:  # a processor bug or an odd value must not lose the events
            name = getattr(step, "__name__", repr(step))
            if top:
                log.warning(
                    "botmeter: processor %s failed on %d %s events (%s); isolating the event(s)",
                    name,
                    frame.n,
                    frame.kind,
                    _reason(exc),
                )
            if frame.n > 1:
                half = frame.n // 2
                parts = (self._step(step, frame.slice(0, half)), self._step(step, frame.slice(half, frame.n)))
                return Frame.joined([p for p in parts if p is not None and p.n])
            self.failures[name] += 1
            if step == self.hash_users:
                # Fail closed: an id that cannot be hashed is never stored in the clear.
                self.rejected[frame.call, f"{name}: {_reason(exc)}"] += 1
                return None
            return frame  # stored without this processor's work

    def _table(self, frame: Frame) -> pa.Table | None:
        """The frame as Arrow; an event whose values do not fit their columns is set aside alone."""
        try:
            return self.to_arrow(frame)
        except Exception as exc:
            if frame.n == 1:
                self.rejected[frame.call, _reason(exc)] += 1
                return None
        half = frame.n // 2
        tables = [
            t
            for t in (self._table(frame.slice(0, half)), self._table(frame.slice(half, frame.n)))
            if t is not None
        ]
        if not tables:
            return None
        return tables[0] if len(tables) == 1 else pa.concat_tables(tables)

    @staticmethod
    def _combine(tables: list[pa.Table], caller_keys: bool) -> pa.Table:
        table = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
        if caller_keys:
            table = table.replace_schema_metadata({CALLER_KEYS: b"1"})
        return table

    def to_arrow(self, frame: Frame) -> pa.Table:
        """The frame as a table of stored events; an error names the column that failed."""
        arrays = []
        for name, typ in zip(SCHEMA.names, SCHEMA.types, strict=True):
            try:
                arrays.append(self._column(frame, name, typ))
            except Exception as exc:
                raise InputError(f"{name}: {_reason(exc)}") from exc
        return pa.Table.from_arrays(arrays, schema=SCHEMA)

    def _column(self, frame: Frame, name: str, typ: pa.DataType) -> pa.Array:
        n = frame.n
        values = frame.columns.get(name)
        if name == "event_id":
            return self._event_ids(frame)
        if name == "ts":
            seconds = to_array(values, pa.float64())
            micros = pc.cast(pc.round(pc.multiply(seconds, 1e6)), pa.int64())
            return micros.cast(pa.timestamp("us"))
        if name in ("kind", "bot", "release"):
            constant = {"kind": frame.kind, "bot": self.config.bot, "release": self.config.release}[name]
            return pa.repeat(pa.scalar(constant, typ), n)
        if name == "channel":
            default = self.config.channel
            if values is None:
                return pa.repeat(pa.scalar(default, typ), n)
            if default is not None:
                values = [v or default for v in values]
            return to_array(values, typ)
        if values is None:
            return pa.nulls(n, typ)
        if name == "properties":
            return pa.nulls(n, typ) if values.count(None) == n else to_array(_json_column(values), typ)
        if name == "conversation_id":
            # Conversation ids may be ints; they are stored as text.
            return to_array(values, typ, lambda v: v if v is None or isinstance(v, str) else str(v))
        return to_array(values, typ)

    def _event_ids(self, frame: Frame) -> pa.Array:
        ids = self.ids.take(frame.n)
        keys = frame.columns.get("_event_key")
        if keys is not None:
            # A caller-given id (a Twilio MessageSid, a retry key) maps to the same UUID every time.
            values = ids.to_pylist()
            for i, key in enumerate(keys):
                if key is not None:
                    values[i] = _caller_event_id(self.config.bot, key)
            ids = pa.array(values, pa.binary(16))
        return pa.ExtensionArray.from_storage(pa.uuid(), ids)

    def warm(self) -> None:
        """What the first batch would load, loaded now: the bundled LLM price data, and what
        pyarrow imports on its first conversion (pandas, when installed)."""
        LlmPricer.warm()
        # pyarrow imports pandas (when installed) the first time a compute function is given a
        # Python number, as the batch's times are.
        pc.multiply(to_array([0.0], pa.float64()), 1e6)

    def after_fork(self) -> None:
        self.ids.reset()


def _caller_event_id(bot: str, key: str) -> bytes:
    try:
        return uuid.UUID(key).bytes
    except ValueError:
        return uuid.uuid5(_EVENT_ID_NAMESPACE, f"{bot}\x00{key}").bytes


def _reason(exc: BaseException) -> str:
    """An exception as a short, storable line (no lone surrogates, bounded)."""
    text = f"{type(exc).__name__}: {exc}".encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= 200 else text[:199] + "…"


def _oversized(values: list) -> list:
    """Free-form dicts the track call found over the size limit arrive as their size (an int)."""
    if values.count(None) == len(values) or not any(v.__class__ is int for v in values):
        return values
    return [too_large(v) if v.__class__ is int else v for v in values]


def system_frame(ts: float, name: str, units: float, unit: str, properties: dict[str, Any]) -> Frame:
    """botmeter's own event (dropped counts, for example), stored like any other."""
    return Frame(
        "system",
        "system",
        1,
        {"ts": [ts], "name": [name], "units": [float(units)], "unit": [unit], "properties": [properties]},
    )


__all__ = ["SCHEMA", "EventIds", "Frame", "Pipeline", "Processor", "per_event", "system_frame"]
