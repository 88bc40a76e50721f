"""Wrapping SDK methods: per object (instance attributes) or per class (every client at once).

An ``Operation`` says what one SDK method's calls look like: how to adjust its arguments (ask for
streamed usage), how to read usage from a response, and how to watch a stream. ``wrap`` builds the
sync or async wrapper around one original method. The SDK's result and exceptions pass through as
the same objects; everything botmeter does around them is guarded and counted.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from typing import Any

from ._calls import ORIGINALS, LazyUsage, Usage, count_failure, record_call, record_failure

perf_counter = time.perf_counter


class Watch:
    """Follows one streamed call: sees each item, records once when the stream ends or fails."""

    __slots__ = (
        "done",
        "extra",
        "first_at",
        "meter",
        "model",
        "op",
        "passthrough",
        "provider",
        "stage",
        "start",
        "state",
        "usage",
    )

    def __init__(
        self,
        op: Operation,
        meter: Any,
        provider: str,
        stage: str | None,
        model: Any,
        state: Any,
        start: float,
    ):
        self.op = op
        self.meter = meter
        self.provider = provider
        self.stage = stage
        self.model = model
        self.state = state
        self.start = start  # when the SDK call began
        self.first_at: float | None = None
        self.usage: Usage | LazyUsage | None = None
        self.extra: dict[str, Any] = {}  # properties seen on items other than the usage one
        self.passthrough = False  # set by the operation when no later item needs looking at
        self.done = False

    def see(self, item: Any) -> bool:
        """True to hand the item to the caller (False only for what botmeter itself asked for)."""
        try:
            return self.op.see(self, item)
        except Exception:
            count_failure(self.meter, f"{self.provider}.stream")
            return True

    def finish(self) -> None:
        if self.done:
            return
        self.done = True
        end = perf_counter()
        ttft = None if self.first_at is None else (self.first_at - self.start) * 1000.0
        record_call(
            self.meter,
            self.provider,
            self.stage,
            self.op.name,
            self.model,
            self.usage,
            (end - self.start) * 1000.0,
            ttft,
            self.extra if self.usage is not None else None,
        )

    def fail(self, error: BaseException) -> None:
        if self.done:
            return
        self.done = True
        latency = (perf_counter() - self.start) * 1000.0
        record_failure(self.meter, self.provider, self.stage, self.op.name, self.model, error, latency)


def _watch_sync(inner: Any, watch: Watch) -> Any:
    try:
        for item in inner:
            if watch.passthrough or watch.see(item):
                yield item
    except Exception as exc:
        watch.fail(exc)
        raise
    finally:
        watch.finish()
        close = getattr(inner, "close", None)
        if close is not None:
            close()


async def _watch_async(inner: Any, watch: Watch) -> Any:
    try:
        async for item in inner:
            if watch.passthrough or watch.see(item):
                yield item
    except Exception as exc:
        watch.fail(exc)
        raise
    finally:
        watch.finish()
        close = getattr(inner, "aclose", None)
        if close is not None:
            await close()


class Operation:
    """One SDK method. Subclasses override what differs; the defaults fit a plain call."""

    name = "call"
    stream_attr = "_iterator"  # the SDK stream object's iterator the caller's items come from
    # The usage is read on the writer's thread: only where reading it later sees the same values
    # (an SDK's response object; not a body the caller reads, nor a dict the caller may change).
    usage_later = False

    def prepare(self, kwargs: dict[str, Any]) -> Any:
        """May change ``kwargs`` in place (before the call); returns per-call state for ``see``."""
        return None

    def is_stream(self, kwargs: dict[str, Any], result: Any) -> bool:
        return kwargs.get("stream") is True

    def model(self, kwargs: dict[str, Any]) -> Any:
        return kwargs.get("model")

    def response_model(self, result: Any) -> Any:
        return getattr(result, "model", None)

    def usage(self, result: Any) -> Usage | None:
        raise NotImplementedError

    def see(self, watch: Watch, item: Any) -> bool:
        return True

    def watch_stream(self, result: Any, watch: Watch, is_async: bool) -> Any:
        """Puts the watch between the SDK's stream object and its items; returns what the caller gets."""
        inner = getattr(result, self.stream_attr)
        setattr(result, self.stream_attr, (_watch_async if is_async else _watch_sync)(inner, watch))
        return result


class _UsageOf(LazyUsage):
    """A response's usage, read from it on the writer's thread."""

    __slots__ = ("op", "result")

    def __init__(self, op: Operation, result: Any) -> None:
        self.op = op
        self.result = result

    def resolve(self) -> Usage | None:
        return self.op.usage(self.result)


# What the SDKs' with_raw_response / with_streaming_response calls return (by name: the check is
# made on every call, and a type test needs no import of either SDK).
_RAW_RESPONSES = frozenset({"LegacyAPIResponse", "APIResponse", "AsyncAPIResponse"})


def _finish(
    op: Operation,
    meter: Any,
    provider: str,
    stage: str | None,
    kwargs: dict,
    state: Any,
    result: Any,
    start: float,
    is_async: bool,
) -> Any:
    """Records a completed call, or hooks a watch onto a stream. Returns what the caller gets."""
    end = perf_counter()
    try:
        kind = type(result).__name__
        if kind in _RAW_RESPONSES:  # the SDK's raw-response forms
            headers = kwargs.get("extra_headers")
            mode = headers.get("X-Stainless-Raw-Response") if isinstance(headers, dict) else None
            if mode == "stream" or kind == "AsyncAPIResponse":
                # with_streaming_response: the caller reads the body itself, so botmeter must not
                # (and an async one parses only when awaited): recorded with its usage unknown
                record_call(meter, provider, stage, op.name, op.model(kwargs), None, (end - start) * 1000.0)
                return result
            # with_raw_response: the body is read; parse() caches, so the caller gets this same object
            parsed = result.parse()
            if op.is_stream(kwargs, parsed):
                op.watch_stream(
                    parsed, Watch(op, meter, provider, stage, op.model(kwargs), state, start), is_async
                )
                return result
            model = op.response_model(parsed) or op.model(kwargs)
            usage = _UsageOf(op, parsed) if op.usage_later else op.usage(parsed)
            record_call(meter, provider, stage, op.name, model, usage, (end - start) * 1000.0)
            return result
        if op.is_stream(kwargs, result):
            return op.watch_stream(
                result, Watch(op, meter, provider, stage, op.model(kwargs), state, start), is_async
            )
        model = op.response_model(result) or op.model(kwargs)
        usage = _UsageOf(op, result) if op.usage_later else op.usage(result)
        record_call(meter, provider, stage, op.name, model, usage, (end - start) * 1000.0)
    except Exception:
        count_failure(meter, f"{provider}.{op.name}")
    return result


def _prepare(op: Operation, meter: Any, provider: str, kwargs: dict) -> tuple[dict, Any]:
    # ``kwargs`` is the wrapper's own dict (Python makes one per call), and ``prepare`` changes it
    # only as its last step: a failing ``prepare`` leaves it as the caller gave it.
    try:
        return kwargs, op.prepare(kwargs)
    except Exception:
        count_failure(meter, f"{provider}.{op.name}")
        return kwargs, None


def wrap(
    original: Callable[..., Any],
    op: Operation,
    meter: Any,
    provider: str | Callable[[Any], str],
    stage: str | None,
    *,
    bound: bool = True,
) -> Callable[..., Any]:
    """A wrapper around ``original`` that records each call. ``bound``: ``original`` is a bound
    method (per-object wrapping); otherwise it is the class's function and the wrapper is installed
    on the class (every client), where ``provider`` may be a function of the resource object."""
    # The SDKs' async methods sit under sync decorators (argument checks): look beneath them.
    is_async = inspect.iscoroutinefunction(original) or inspect.iscoroutinefunction(inspect.unwrap(original))
    provider_of = provider if callable(provider) else None

    if is_async:

        async def call_async(*args: Any, **kwargs: Any) -> Any:
            if not bound and ORIGINALS in getattr(args[0], "__dict__", {}):
                return await original(*args, **kwargs)  # that object records by itself
            name = provider_of(args[0]) if provider_of else provider
            kwargs, state = _prepare(op, meter, name, kwargs)
            start = perf_counter()
            try:
                result = await original(*args, **kwargs)
            except Exception as exc:
                record_failure(
                    meter, name, stage, op.name, op.model(kwargs), exc, (perf_counter() - start) * 1000.0
                )
                raise
            return _finish(op, meter, name, stage, kwargs, state, result, start, True)

        wrapper: Callable[..., Any] = call_async
    else:

        def call(*args: Any, **kwargs: Any) -> Any:
            if not bound and ORIGINALS in getattr(args[0], "__dict__", {}):
                return original(*args, **kwargs)
            name = provider_of(args[0]) if provider_of else provider
            kwargs, state = _prepare(op, meter, name, kwargs)
            start = perf_counter()
            try:
                result = original(*args, **kwargs)
            except Exception as exc:
                record_failure(
                    meter, name, stage, op.name, op.model(kwargs), exc, (perf_counter() - start) * 1000.0
                )
                raise
            return _finish(op, meter, name, stage, kwargs, state, result, start, False)

        wrapper = call
    wrapper.__wrapped__ = original  # type: ignore[attr-defined]
    wrapper.__doc__ = getattr(original, "__doc__", None)
    wrapper.__name__ = getattr(original, "__name__", "create")
    wrapper._botmeter = True  # type: ignore[attr-defined]
    return wrapper


def wrap_object(
    resource: Any, method: str, op: Operation, meter: Any, provider: str, stage: str | None
) -> None:
    """Wraps ``resource.<method>`` on this object only (an instance attribute over the class's)."""
    originals = resource.__dict__.setdefault(ORIGINALS, {})
    if method in originals:  # instrumented again (another meter or stage): the last one wins
        original = originals[method]
    else:
        original = getattr(resource, method)
        if getattr(original, "_botmeter", False):  # the class is wrapped: wrap what it wraps
            original = original.__wrapped__.__get__(resource)
        originals[method] = original
    setattr(resource, method, wrap(original, op, meter, provider, stage))


def unwrap_object(resource: Any) -> None:
    originals = resource.__dict__.pop(ORIGINALS, None) or {}
    for method in originals:
        resource.__dict__.pop(method, None)


def wrap_class(cls: type, method: str, op: Operation, meter: Any, provider: Any, stage: str | None) -> None:
    """Wraps ``cls.<method>`` for every object of the class (``integrations.<sdk>.instrument``)."""
    current = cls.__dict__[method]
    original = current.__wrapped__ if getattr(current, "_botmeter", False) else current
    setattr(cls, method, wrap(original, op, meter, provider, stage, bound=False))


def unwrap_class(cls: type, method: str) -> None:
    current = cls.__dict__.get(method)
    if current is not None and getattr(current, "_botmeter", False):
        setattr(cls, method, current.__wrapped__)
