"""What every SDK integration shares: turning one model call into events, without ever breaking it.

An integration's wrapper times the SDK call, lets the SDK's result or exception through unchanged,
and hands what it learned to ``record_call`` or ``record_failure``. Both swallow and count their own
failures (``meter.stats()["integration_failures"]``): botmeter must never change what the bot sees.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from ..collect.context import CONTEXT

log = logging.getLogger("botmeter")

# Marks a resource object (or a client) as instrumented: {method name: original bound method}.
ORIGINALS = "_botmeter_originals"


@dataclass(slots=True)
class Usage:
    """Token counts in botmeter's convention (``input_tokens`` is the whole prompt, cached and
    cache-write tokens included; ``output_tokens`` the whole completion, reasoning included).
    ``None`` means the provider did not say: stored as 0 and listed in ``usage_unknown``."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_tokens: int | None = 0
    cache_write_tokens: int | None = 0
    reasoning_tokens: int | None = 0
    properties: dict[str, Any] = field(default_factory=dict)


class RawUsage:
    """A usage object botmeter read from JSON itself (a stream's usage chunk), kept as it came.

    Like an SDK's usage object, the writer serialises it (``model_dump``) off the bot's thread; the
    track call only checks that it is there, not each value inside it."""

    __slots__ = ("value",)

    def __init__(self, value: dict[str, Any]) -> None:
        self.value = value

    def model_dump(self, **_: Any) -> dict[str, Any]:
        return self.value


def as_count(value: Any) -> int | None:
    """A token count from a usage object: an int >= 0, or None when missing or odd."""
    if value.__class__ is int:
        return value if value >= 0 else None
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    return None


def get(obj: Any, *path: str) -> Any:
    """``obj.a.b`` or ``obj["a"]["b"]``, None where anything along the way is missing."""
    for key in path:
        if obj is None:
            return None
        obj = obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)
    return obj


def raw_usage(usage: Any) -> dict[str, Any] | None:
    """The provider's usage object as plain JSON. (Events keep the object itself in
    ``properties["usage"]``; the writer serialises it, off the bot's thread.)"""
    if usage is None:
        return None
    if isinstance(usage, dict):
        return usage
    dump = getattr(usage, "model_dump", None)
    if dump is not None:
        return dump(exclude_none=True, mode="json")
    return None


# Usage's counts, in the order record_call reads them (names as listed in ``usage_unknown``).
_COUNTS = ("input_tokens", "output_tokens", "cached_tokens", "cache_write_tokens", "reasoning_tokens")


def count_failure(meter: Any, where: str) -> None:
    try:
        meter.count_integration_failure(where)
    except Exception:  # a meter of another kind (a test double): nothing more to do
        pass
    log.debug("botmeter: integration failure in %s", where, exc_info=True)


class LazyUsage:
    """Usage still to be read (from a response object, or a stream's usage line as bytes): read on
    the writer's thread, when the call is recorded."""

    __slots__ = ()

    def resolve(self) -> Usage | None:
        raise NotImplementedError


def record_call(
    meter: Any,
    provider: str,
    stage: str | None,
    operation: str,
    model: Any,
    usage: Usage | LazyUsage | None,
    latency_ms: float,
    ttft_ms: float | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """One successful model call as an ``llm_call`` event, recorded on the writer's thread (the
    context and the time are taken here). ``extra``: properties seen on the stream's other items.
    Never raises."""
    call = (meter, provider, stage, operation, model, usage, latency_ms, ttft_ms, extra)
    try:
        defer = meter.defer
    except AttributeError:  # a meter of another kind (a test double): recorded now
        _record_call(call, None)
        return
    try:
        defer(_record_call, (call,))
    except Exception:
        count_failure(meter, f"{provider}.record")


def _record_call(call: tuple, ts: float | None) -> None:
    """``record_call``'s work, on the writer's thread: ``call`` is its arguments, ``ts`` the time
    the call ended."""
    meter, provider, stage, operation, model, usage, latency_ms, ttft_ms, extra = call
    if isinstance(usage, LazyUsage):
        try:
            usage = usage.resolve()
        except Exception:  # recorded all the same, its counts unknown
            count_failure(meter, f"{provider}.{operation}")
            usage = None
    try:
        if usage is None:
            usage = Usage(None, None, None, None, None)
        properties = usage.properties  # the Usage is this call's own: its dict becomes the event's
        if extra:
            properties = usage.properties = {**extra, **properties}
        properties["operation"] = operation
        if ttft_ms is not None:
            properties["ttft_ms"] = round(ttft_ms, 3)
        inp, out = usage.input_tokens, usage.output_tokens
        cached, written, reasoning = usage.cached_tokens, usage.cache_write_tokens, usage.reasoning_tokens
        if inp is None or out is None or cached is None or written is None or reasoning is None:
            values = (inp, out, cached, written, reasoning)
            properties["usage_unknown"] = [n for n, v in zip(_COUNTS, values, strict=True) if v is None]
            inp, out, cached, written, reasoning = (v or 0 for v in values)
        # Numbers that contradict each other stay as given in the raw usage; the event stays valid
        # (cached within the prompt, reasoning within the completion).
        if cached > inp:
            cached = inp
        if reasoning > out:
            reasoning = out
        meter.track_llm_call(
            provider=provider,
            model=model if model.__class__ is str and model else "unknown",
            input_tokens=inp,
            output_tokens=out,
            cached_tokens=cached,
            reasoning_tokens=reasoning,
            cache_write_tokens=written,
            latency_ms=latency_ms,
            stage=stage,
            properties=properties,
            ts=ts,
        )
    except Exception:
        count_failure(meter, f"{provider}.record")


def record_failure(
    meter: Any,
    provider: str,
    stage: str | None,
    operation: str,
    model: Any,
    error: BaseException,
    latency_ms: float,
) -> None:
    """A failed model call: an error event (categorised from the SDK's exception) and a timing
    event with the call's latency, so timeouts count in latency. Never raises."""
    try:
        model = model if isinstance(model, str) and model else None
        details = {"operation": operation, "latency_ms": round(latency_ms, 3)}
        if model:
            details["model"] = model
        meter.track_error(error, provider=provider, stage=stage, properties=details)
        if stage is None:
            ctx = CONTEXT.get()
            stage = ctx[2] if ctx is not None and ctx[2] is not None else "llm"
        meter.track_timing(
            stage,
            latency_ms,
            provider=provider,
            model=model,
            properties={"operation": operation, "failed": True, "error_type": type(error).__name__},
        )
    except Exception:
        count_failure(meter, f"{provider}.record_failure")
