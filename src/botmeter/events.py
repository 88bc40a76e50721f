"""The event model: one wide, append-only record; every metric is a query over events.

Two shapes live here:

* ``COLUMNS`` is the stored event (what the store keeps and what exports show).
* ``RECORDS`` are the compact tuples the track calls put on the buffer, one layout per
  track call. The writer turns them into stored events (see ``botmeter.process``).
"""

from __future__ import annotations

import math
import re
import reprlib
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import pyarrow as pa

# -- stored events ---------------------------------------------------------------------------

KINDS: Final = (
    "message",  # a message in or out; SMS messages carry segments and cost
    "llm_call",
    "api_call",
    "error",
    "timing",
    "activity",  # resets, admin commands, feature use
    "custom",
    "system",  # botmeter's own events: dropped counts, writer health
)

# name -> (DuckDB type, description). Order is the stored column order.
COLUMNS: Final[dict[str, tuple[str, str]]] = {
    "event_id": ("UUID", "unique id; replays and retries are deduplicated on it"),
    "ts": ("TIMESTAMP", "when it happened, UTC"),
    "bot": ("VARCHAR", "the bot's name"),
    "kind": ("VARCHAR", "message, llm_call, api_call, error, timing, activity, custom, system"),
    "user_id": ("VARCHAR", "keyed hash of the user identifier (clear only if hashing is off)"),
    "conversation_id": ("VARCHAR", "the bot's conversation id"),
    "channel": ("VARCHAR", "sms, slack, web, ..."),
    "direction": ("VARCHAR", "in (from the user) or out (from the bot)"),
    "country": ("VARCHAR", "ISO country of the user's phone number, when it is one"),
    "provider": ("VARCHAR", "openai, anthropic, twilio, ..."),
    "model": ("VARCHAR", "the LLM model as the bot named it"),
    "input_tokens": ("BIGINT", "prompt tokens, cached ones included"),
    "output_tokens": ("BIGINT", "completion tokens, reasoning ones included"),
    "cached_tokens": ("BIGINT", "prompt tokens read from the provider's cache"),
    "cache_write_tokens": ("BIGINT", "prompt tokens written to the provider's cache"),
    "reasoning_tokens": ("BIGINT", "completion tokens spent on reasoning"),
    "units": ("DOUBLE", "non-token usage: SMS segments, API calls, ..."),
    "unit": ("VARCHAR", "what units counts: sms_segment, call, ..."),
    "chars": ("BIGINT", "message length in characters"),
    "cost_usd": ("DOUBLE", "cost in US dollars; NULL when no price is known"),
    "price_version": ("VARCHAR", "which price data produced cost_usd"),
    "latency_ms": ("DOUBLE", "how long it took, milliseconds"),
    "stage": ("VARCHAR", "for timings: which stage of the reply"),
    "error_type": ("VARCHAR", "exception class or error code"),
    "error_category": ("VARCHAR", "rate_limit, quota, timeout, auth, invalid_request, ..."),
    "severity": ("VARCHAR", "debug, info, warning, error, critical"),
    "fingerprint": ("VARCHAR", "groups the same error together"),
    "error_message": ("VARCHAR", "the error message with ids, numbers and phone numbers masked"),
    "name": ("VARCHAR", "activity, API operation or custom event name"),
    "release": ("VARCHAR", "the bot's release or version"),
    "text": ("VARCHAR", "message text, only when text storage is turned on"),
    "properties": ("JSON", "free-form details"),
}

SEVERITIES: Final = ("debug", "info", "warning", "error", "critical")
DIRECTIONS: Final = ("in", "out")


# -- records on the buffer --------------------------------------------------------------------


class Required:
    """Marks a parameter without a default."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Final = Required()

# Parameter checks, shared by the C fast path and the pure-Python recorder (same codes).
ANY: Final = 0  # anything, stored as given
STR: Final = 1  # a non-empty str
OPT_STR: Final = 2  # a str or None
COUNT: Final = 3  # an int >= 0 (not a bool)
OPT_AMOUNT: Final = 4  # an int or float, finite and >= 0, or None
AMOUNT: Final = 5  # an int or float, finite and >= 0
CHOICE: Final = 6  # one of the strings in the parameter's choices
OPT_DICT: Final = 7  # a dict or None
TIMESTAMP: Final = 8  # None (now), epoch seconds, or an aware datetime
OBJECT: Final = 9  # anything but None
OPT_ID: Final = 10  # a str or int identifier, or None
OPT_CHOICE: Final = 11  # one of the choices, or None

CHECK_NAMES: Final = {
    ANY: "any value",
    STR: "a non-empty str",
    OPT_STR: "a str or None",
    COUNT: "a non-negative int below 2**63",
    OPT_AMOUNT: "a non-negative finite number or None",
    AMOUNT: "a non-negative finite number",
    CHOICE: "one of {choices}",
    OPT_DICT: "a dict or None",
    TIMESTAMP: "an aware datetime or epoch seconds",
    OBJECT: "an exception, an exception class or an error code",
    OPT_ID: "a str, an int from -2**63 to 2**63-1, or None",
    OPT_CHOICE: "one of {choices} or None",
}


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    check: int
    default: Any = REQUIRED
    choices: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RecordSpec:
    """One track call: its parameters in record order (after ``ts``, which is always first)."""

    call: str
    params: tuple[Param, ...]
    positional: int = 0  # how many leading parameters may be passed by position
    at_most: tuple[tuple[str, str], ...] = ()  # (a, b): a must not exceed b

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def index(self, name: str) -> int:
        """Position of a parameter in the record tuple (``ts`` is position 0)."""
        return self.names.index(name) + 1


_COMMON: Final = (
    Param("user", OPT_ID, None),
    Param("conversation", OPT_ID, None),
    Param("channel", OPT_STR, None),
    Param("properties", OPT_DICT, None),
    Param("event_id", OPT_STR, None),
)

RECORDS: Final[dict[str, RecordSpec]] = {
    spec.call: spec
    for spec in (
        RecordSpec(
            "track_message",
            (
                Param("direction", CHOICE, REQUIRED, DIRECTIONS),
                Param("text", OPT_STR, None),
                *_COMMON,
            ),
        ),
        RecordSpec(
            "track_sms",
            (
                Param("direction", CHOICE, REQUIRED, DIRECTIONS),
                Param("text", OPT_STR, None),
                Param("segments", OPT_AMOUNT, None),
                Param("country", OPT_STR, None),
                Param("cost_usd", OPT_AMOUNT, None),
                Param("provider", OPT_STR, None),
                *_COMMON,
            ),
        ),
        RecordSpec(
            "track_llm_call",
            (
                Param("provider", STR),
                Param("model", STR),
                Param("input_tokens", COUNT, 0),
                Param("output_tokens", COUNT, 0),
                Param("cached_tokens", COUNT, 0),
                Param("reasoning_tokens", COUNT, 0),
                Param("cache_write_tokens", COUNT, 0),
                Param("latency_ms", OPT_AMOUNT, None),
                Param("cost_usd", OPT_AMOUNT, None),
                Param("stage", OPT_STR, None),
                *_COMMON,
            ),
            at_most=(
                ("cached_tokens", "input_tokens"),
                ("reasoning_tokens", "output_tokens"),
            ),
        ),
        RecordSpec(
            "track_api_call",
            (
                Param("provider", STR),
                Param("name", STR),
                Param("cost_usd", OPT_AMOUNT, None),
                Param("units", OPT_AMOUNT, None),
                Param("unit", OPT_STR, None),
                Param("latency_ms", OPT_AMOUNT, None),
                *_COMMON,
            ),
        ),
        RecordSpec(
            "track_error",
            (
                Param("error", OBJECT),
                Param("severity", OPT_CHOICE, None, SEVERITIES),  # None: from the category
                Param("message", OPT_STR, None),
                Param("status_code", OPT_AMOUNT, None),
                Param("code", OPT_ID, None),
                Param("provider", OPT_STR, None),
                Param("stage", OPT_STR, None),
                Param("context", OPT_DICT, None),
                *_COMMON,
            ),
            positional=1,
        ),
        RecordSpec(
            "track_timing",
            (
                Param("stage", STR),
                Param("latency_ms", AMOUNT),
                Param("provider", OPT_STR, None),
                Param("model", OPT_STR, None),
                *_COMMON,
            ),
            positional=2,
        ),
        RecordSpec(
            "track_activity",
            (Param("name", STR), *_COMMON),
            positional=1,
        ),
        RecordSpec(
            "track_custom",
            (
                Param("name", STR),
                Param("value", OPT_AMOUNT, None),
                Param("unit", OPT_STR, None),
                *_COMMON,
            ),
            positional=1,
        ),
    )
}

RECORD_CALLS: Final = tuple(RECORDS)  # buffer lane i holds records of RECORD_CALLS[i]


# What a track call accepts as ``ts`` (epoch seconds): from 2000-01-01 to a day ahead of the clock.
# A millisecond timestamp (the usual mistake) would be stored in the year 58,000 and break readers.
TS_EARLIEST: Final = 946_684_800.0  # 2000-01-01T00:00:00Z; the C fast path holds the same numbers
TS_AHEAD: Final = 86_400.0
# Free-form dicts (properties, context) are stored as JSON: how deep they may nest.
MAX_NESTING: Final = 32
INT64_MIN: Final = -(2**63)
# Arrow schema metadata marking a batch that holds ids the bot chose: a retry of one may come later
# than the first with another ts (the pipeline sets it, a store reads it).
# The hourly rollup every backend keeps: one row per hour and combination of these columns (NULL
# kept as ''), summing these figures. The planner reads it wherever a query needs no more.
HOURLY_KEYS: Final = (
    "bot",
    "kind",
    "channel",
    "direction",
    "provider",
    "model",
    "error_category",
    "severity",
    "stage",
    "name",
    "unit",
    "country",
)
HOURLY_SUMS: Final = frozenset(
    {"cost_usd", "input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens", "units"}
)

_ARROW_TYPES = {
    "UUID": pa.uuid(),
    "TIMESTAMP": pa.timestamp("us"),
    "VARCHAR": pa.string(),
    "BIGINT": pa.int64(),
    "DOUBLE": pa.float64(),
    "JSON": pa.string(),
}
# A processed batch as the pipeline hands it to any store: ``COLUMNS`` as Arrow types.
EVENT_SCHEMA: Final = pa.schema([(name, _ARROW_TYPES[sql_type]) for name, (sql_type, _) in COLUMNS.items()])

CALLER_KEYS: Final = b"botmeter.caller_keys"
INT64_MAX: Final = 2**63 - 1

_shown_repr = reprlib.Repr()
_shown_repr.maxstring = _shown_repr.maxother = 80
_shown_repr.maxlong = 60
_shown_repr.maxlevel = 3
_shown_repr.maxdict = _shown_repr.maxlist = _shown_repr.maxtuple = 6


def shown(value: Any) -> str:
    """The value as error messages show it: its repr, clipped (a long text, a deep dict, 10**400)."""
    if isinstance(value, int) and value.bit_length() > 192:  # its digits could not even be printed
        return f"<an int of {value.bit_length()} bits>"
    try:
        return _shown_repr.repr(value)
    except Exception:
        return f"<{type(value).__name__}>"


def coerce_ts(value: Any, call: str = "track") -> float:
    """Turns a ``ts=`` argument into epoch seconds, or raises naming the argument and value."""
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"{call}: ts must be timezone-aware (UTC is assumed nowhere), got {value!r}")
        seconds = value.timestamp()
    elif isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{call}: ts must be an aware datetime or epoch seconds, got {shown(value)}")
    else:
        try:
            seconds = float(value)
        except OverflowError:  # an int beyond any float: 10**400
            seconds = math.inf
    latest = time.time() + TS_AHEAD
    if TS_EARLIEST <= seconds <= latest:  # false for NaN too
        return seconds
    hint = ""
    if TS_EARLIEST * 1e3 <= seconds <= latest * 1e3:
        hint = " (it looks like milliseconds: divide by 1000)"
    elif TS_EARLIEST * 1e6 <= seconds <= latest * 1e6:
        hint = " (it looks like microseconds: divide by 1,000,000)"
    raise ValueError(
        f"{call}: ts must be epoch seconds from 2000-01-01 to one day ahead of now, got {shown(value)}{hint}"
    )


_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def lone_surrogate_at(text: str) -> int:
    """Index of the first lone surrogate in ``text`` (it cannot be stored as UTF-8), or -1."""
    if text.isascii():
        return -1
    found = _SURROGATE.search(text)
    return -1 if found is None else found.start()


def free_form_fault(value: Any) -> str | None:
    """Why a properties or context dict cannot be stored as JSON, or None when it can.

    Refused: nesting deeper than ``MAX_NESTING``, a dict or list that contains itself, NaN or
    Infinity (JSON has neither), integers beyond 64 bits, lone surrogates, keys that are not
    text or numbers. Other objects are stored as their ``str()``.
    """
    return _fault(value, 1, set())


def _fault(value: Any, depth: int, path: set[int]) -> str | None:
    if isinstance(value, str):
        at = lone_surrogate_at(value)
        return None if at < 0 else f"a lone surrogate {value[at]!r} in {shown(value)} is not valid Unicode"
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{value!r} is not a JSON number"
    if isinstance(value, int):
        return None if INT64_MIN <= value < 2**64 else f"{shown(value)} is beyond 64 bits"
    if isinstance(value, dict | list | tuple):
        if depth > MAX_NESTING:
            return f"it nests deeper than {MAX_NESTING} levels"
        if id(value) in path:
            return "it contains itself"
        path.add(id(value))
        try:
            if isinstance(value, dict):
                for key, item in value.items():
                    if key is not None and not isinstance(key, str | int | float):
                        return f"a key of type {type(key).__name__} is not text"
                    fault = _fault(key, depth, path) or _fault(item, depth + 1, path)
                    if fault:
                        return fault
            else:
                for item in value:
                    fault = _fault(item, depth + 1, path)
                    if fault:
                        return fault
        finally:
            path.discard(id(value))
    return None
