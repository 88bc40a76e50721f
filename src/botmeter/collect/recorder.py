"""The buffer behind the track calls, and the track calls themselves.

``make_recorder()`` returns the C fast path when it was built, else the pure-Python recorder
below. Both take the same parameter specs (``botmeter.events.RECORDS``), accept and reject the
same arguments, and raise the same messages (built by ``invalid()``), which the tests check.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from ..events import (
    AMOUNT,
    CHECK_NAMES,
    CHOICE,
    COUNT,
    INT64_MAX,
    INT64_MIN,
    OBJECT,
    OPT_AMOUNT,
    OPT_CHOICE,
    OPT_DICT,
    OPT_ID,
    OPT_STR,
    RECORD_CALLS,
    RECORDS,
    REQUIRED,
    STR,
    TS_AHEAD,
    TS_EARLIEST,
    RecordSpec,
    coerce_ts,
    free_form_fault,
    lone_surrogate_at,
    shown,
)
from .context import CONTEXT, context_slots

try:
    from .._fastpath import Buffer as CBuffer
    from .._fastpath import TrackFn as CTrackFn
except ImportError:  # not built (no compiler at install time): the pure-Python recorder does the same
    CBuffer = CTrackFn = None

# Memory accounting, as in _fastpath.c: slots + a flat allowance for small (usually shared)
# values + the length of strings over 64 characters + what a free-form dict holds. A dict over
# FREE_FORM_MAX is not kept: the record holds its size and the writer stores a marker instead.
RECORD_ALLOWANCE = 128
LONG_STR = 64
FREE_FORM_MAX = 32 * 1024
FREE_FORM_DEPTH = 100


def free_form_bytes(v: Any, depth: int, nodes: list[int]) -> int:
    """About what a free-form value holds; past FREE_FORM_MAX (or 4,096 values deep in) it stops."""
    nodes[0] -= 1
    if nodes[0] < 0 or depth > FREE_FORM_DEPTH:
        return FREE_FORM_MAX + 1
    if isinstance(v, str):
        return 48 + len(v)
    if isinstance(v, bytes):
        return 32 + len(v)
    total = 64
    if isinstance(v, dict):
        for key, item in v.items():
            if total > FREE_FORM_MAX:
                break
            total += 16 + free_form_bytes(key, depth + 1, nodes) + free_form_bytes(item, depth + 1, nodes)
        return total
    if isinstance(v, list | tuple):
        for item in v:
            if total > FREE_FORM_MAX:
                break
            total += 8 + free_form_bytes(item, depth + 1, nodes)
        return total
    return 32


def record_bytes(record: list[Any]) -> int:
    """What one record (stamp first) holds, about; replaces an oversized dict in it by its size."""
    total = len(record) * 8 + RECORD_ALLOWANCE
    for f in range(1, len(record)):
        v = record[f]
        if v.__class__ is str:
            total += len(v) if len(v) > LONG_STR else 0
        elif isinstance(v, dict):
            size = free_form_bytes(v, 0, [4096])
            if size > FREE_FORM_MAX:
                record[f] = size
                size = 32
            total += size
    return total


ERR_INVALID, ERR_MISSING, ERR_UNEXPECTED, ERR_DUPLICATE, ERR_POSITIONAL, ERR_AT_MOST = range(6)
ERR_SURROGATE = 6  # a str with a lone surrogate: it cannot be stored as UTF-8
FREE_FORM = 7  # not an error yet: check a non-empty properties/context dict, raise if it cannot be stored


def invalid(call: str, kind: int, name: str | None, check: int, value: Any, choices: Any) -> None:
    """Raises the error for a bad track-call argument, naming the argument and the value.

    Checks shared by both recorders that are too rare or too deep for C also live here: with
    ``FREE_FORM`` it walks a free-form dict and returns None when it can be stored.
    Arguments are checked in parameter order, each one fully (type, range, text, contents), then
    ``at_most`` pairs, then ``ts``: a call with several faults names the first in that order.
    """
    if kind == FREE_FORM:
        fault = free_form_fault(value)
        if fault is None:
            return
        raise ValueError(f"{call}: {name} cannot be stored as JSON: {fault}; got {shown(value)}")
    if kind == ERR_SURROGATE:
        at = lone_surrogate_at(value)
        raise ValueError(
            f"{call}: {name} must be valid Unicode text, got {shown(value)} "
            f"(a lone surrogate {value[at]!r} at index {at})"
        )
    if kind == ERR_MISSING:
        raise TypeError(f"{call}() missing required argument {name!r}")
    if kind == ERR_UNEXPECTED:
        raise TypeError(f"{call}() got an unexpected keyword argument {name!r}")
    if kind == ERR_DUPLICATE:
        raise TypeError(f"{call}() got multiple values for argument {name!r}")
    if kind == ERR_POSITIONAL:
        raise TypeError(f"{call}() takes {check} positional argument(s) but {value} were given; use keywords")
    if kind == ERR_AT_MOST:
        a, b = value
        raise ValueError(f"{call}: {name}={shown(a)} must not exceed {choices}={shown(b)}")
    wanted = CHECK_NAMES.get(check, "a valid value").format(choices=choices)
    # A value of the right type but out of range is a ValueError; the wrong type is a TypeError.
    right_type = (
        (check in (COUNT, OPT_ID) and isinstance(value, int) and not isinstance(value, bool))
        or (check in (AMOUNT, OPT_AMOUNT) and isinstance(value, int | float) and not isinstance(value, bool))
        or (check in (STR, CHOICE, OPT_CHOICE) and isinstance(value, str))
    )
    error = ValueError if right_type else TypeError
    raise error(f"{call}: {name} must be {wanted}, got {shown(value)}")


def _is_amount(v: Any) -> bool:
    if v.__class__ is float or isinstance(v, float):
        return math.isfinite(v) and v >= 0
    if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
        try:
            float(v)  # stored as a double: 10**400 is not a number there
        except OverflowError:
            return False
        return True
    return False


def _valid(check: int, v: Any, choices: tuple[str, ...]) -> bool:
    if check == STR:
        return isinstance(v, str) and len(v) > 0
    if check == OPT_STR:
        return v is None or isinstance(v, str)
    if check == COUNT:
        return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= INT64_MAX
    if check == OPT_AMOUNT:
        return v is None or _is_amount(v)
    if check == AMOUNT:
        return _is_amount(v)
    if check == CHOICE:
        return isinstance(v, str) and v in choices
    if check == OPT_CHOICE:
        return v is None or (isinstance(v, str) and v in choices)
    if check == OPT_DICT:
        return v is None or isinstance(v, dict)
    if check == OBJECT:
        return v is not None
    if check == OPT_ID:
        return (
            v is None
            or isinstance(v, str)
            or (isinstance(v, int) and not isinstance(v, bool) and INT64_MIN <= v <= INT64_MAX)
        )
    return True


class PyBuffer:
    """Pure-Python twin of ``_fastpath.Buffer``."""

    __slots__ = ("_dropped", "bytes", "cap", "enabled", "lanes", "max_bytes", "size")

    def __init__(self, lanes: int, cap: int, max_bytes: int = 1 << 62) -> None:
        self.lanes = [[] for _ in range(lanes)]
        self.size = 0
        self.cap = cap
        self.bytes = 0
        self.max_bytes = max_bytes
        self.enabled = True
        self._dropped = [0] * lanes

    def drain_columns(self) -> tuple[tuple[list, ...] | None, ...]:
        # Each lane list stays in place and loses its first n records (one slice, one delete: each
        # atomic under the GIL), so a record appended by a track call meanwhile waits for the next
        # drain. Swapping in new lists lost a record appended to the old one after it was read.
        taken = []
        for lane in self.lanes:
            n = len(lane)
            taken.append(lane[:n])
            del lane[:n]
        self.size = 0
        self.bytes = 0
        return tuple(tuple(map(list, zip(*lane, strict=True))) if lane else None for lane in taken)

    def dropped_counts(self) -> tuple[int, ...]:
        return tuple(self._dropped)

    def calibrate(self) -> bool:
        return False

    def now(self) -> float:
        return time.time()


def _py_track_fn(buf: PyBuffer, lane: int, spec: RecordSpec) -> Callable[..., None]:
    call = spec.call
    names = spec.names
    params = spec.params
    index = {name: i for i, name in enumerate(names)}
    at_most = [(index[a], index[b]) for a, b in spec.at_most]
    # (slot in the context tuple, parameter index) for the fields a meter.context block can fill
    from_context = [(k, i) for k, i in enumerate(context_slots(call)) if i >= 0]

    def track(*args: Any, **kwargs: Any) -> None:
        if not buf.enabled:
            return
        if len(args) > spec.positional:
            invalid(call, ERR_POSITIONAL, None, spec.positional, len(args), None)
        ts = kwargs.pop("ts", None)
        values: list[Any] = [REQUIRED] * len(params)
        given = [False] * len(params)
        for i, v in enumerate(args):
            values[i] = v
            given[i] = True
        for key, v in kwargs.items():
            i = index.get(key)
            if i is None:
                invalid(call, ERR_UNEXPECTED, key, 0, v, None)
            if given[i]:
                invalid(call, ERR_DUPLICATE, key, 0, v, None)
            values[i] = v
            given[i] = True
        for i, p in enumerate(params):
            if not given[i]:
                if p.default is REQUIRED:
                    invalid(call, ERR_MISSING, p.name, p.check, None, None)
                values[i] = p.default
            else:  # each argument fully, as the C path does: type and range, text, a dict's contents
                v = values[i]
                if not _valid(p.check, v, p.choices):
                    invalid(call, ERR_INVALID, p.name, p.check, v, p.choices)
                if isinstance(v, str):
                    if not v.isascii() and lone_surrogate_at(v) >= 0:
                        invalid(call, ERR_SURROGATE, p.name, p.check, v, p.choices)
                elif p.check == OPT_DICT and v:
                    invalid(call, FREE_FORM, p.name, p.check, v, p.choices)
        if any(values[i] is None for _, i in from_context):
            ctx = CONTEXT.get()
            if ctx is not None:
                for k, i in from_context:
                    if values[i] is None:
                        values[i] = ctx[k]
        for a, b in at_most:
            if values[a] > values[b]:
                invalid(call, ERR_AT_MOST, names[a], b, (values[a], values[b]), names[b])
        if ts is None:
            stamp = time.time()
        elif ts.__class__ is float and TS_EARLIEST <= ts <= time.time() + TS_AHEAD:
            stamp = ts
        else:
            stamp = coerce_ts(ts, call)
        if buf.size >= buf.cap:
            buf._dropped[lane] += 1
            return
        record = [stamp, *values]
        size = record_bytes(record)
        if buf.bytes + size > buf.max_bytes:
            buf._dropped[lane] += 1
            return
        item = tuple(record)  # built before the lane is read: nothing runs between read and append
        buf.lanes[lane].append(item)
        buf.size += 1
        buf.bytes += size

    track.__name__ = call
    return track


def make_recorder(
    cap: int, *, pure_python: bool = False, max_bytes: int = 1 << 62
) -> tuple[Any, dict[str, Callable[..., None]]]:
    """The buffer (at most ``cap`` records and about ``max_bytes``) and one track function per
    record kind, fast path first."""
    use_c = CBuffer is not None and not pure_python
    if use_c:
        buf = CBuffer(tuple(len(RECORDS[call].params) + 1 for call in RECORD_CALLS), cap, max_bytes)
    else:
        buf = PyBuffer(len(RECORD_CALLS), cap, max_bytes)
    fns: dict[str, Callable[..., None]] = {}
    for lane, call in enumerate(RECORD_CALLS):
        spec = RECORDS[call]
        if use_c:
            index = {name: i for i, name in enumerate(spec.names)}
            fns[call] = CTrackFn(
                buffer=buf,
                lane=lane,
                call=call,
                names=spec.names,
                checks=tuple(p.check for p in spec.params),
                defaults=tuple(p.default for p in spec.params),
                choices=tuple(p.choices for p in spec.params),
                positional=spec.positional,
                at_most=tuple((index[a], index[b]) for a, b in spec.at_most),
                required=REQUIRED,
                coerce_ts=coerce_ts,
                invalid=invalid,
            )
            fns[call].use_context(CONTEXT, context_slots(call))
        else:
            fns[call] = _py_track_fn(buf, lane, spec)
    return buf, fns


def fast_path_available() -> bool:
    return CBuffer is not None


__all__ = ["fast_path_available", "invalid", "make_recorder"]
