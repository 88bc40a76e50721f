"""Anthropic clients (``Anthropic``, ``AsyncAnthropic``, ``AnthropicBedrock``, ``AnthropicVertex``...):
``messages.create`` (streamed with ``stream=True`` or not) and the ``messages.stream()`` helper, sync
and async.

Anthropic's usage counts the prompt in three parts (``input_tokens`` not cached, cache reads, cache
writes); botmeter's ``input_tokens`` is the whole prompt, so it is their sum, with ``cached_tokens``
the reads and ``cache_write_tokens`` the writes. One-hour cache writes
(``usage.cache_creation.ephemeral_1h_input_tokens``) go to ``properties.cache_write_1h_tokens`` and
are priced at the one-hour rate. A part the API leaves ``None`` is recorded as unknown.
"""

from __future__ import annotations

from typing import Any, TypeVar

from ._calls import ORIGINALS, Usage, as_count, count_failure, get, raw_usage, record_failure
from ._wrap import Operation, Watch, perf_counter, unwrap_class, unwrap_object, wrap_class, wrap_object

T = TypeVar("T")


def provider_of(client: Any) -> str:
    """Where the call is billed: ``bedrock`` and ``google-vertex`` resell Claude at their prices."""
    for cls in type(client).__mro__:
        if cls.__name__ == "BaseBedrockClient":
            return "bedrock"
        if cls.__name__ == "BaseVertexClient":
            return "google-vertex"
    return "anthropic"


def usage_of(usage: Any) -> Usage | None:
    """Anthropic's usage object (or the same as a dict) in botmeter's convention."""
    if usage is None:
        return None
    field = usage.get if isinstance(usage, dict) else usage.__dict__.get  # pydantic keeps fields there
    uncached = as_count(field("input_tokens"))
    reads = as_count(field("cache_read_input_tokens"))
    writes = as_count(field("cache_creation_input_tokens"))
    whole = None if uncached is None else uncached + (reads or 0) + (writes or 0)
    details = field("output_tokens_details")
    thinking = 0 if details is None else as_count(get(details, "thinking_tokens")) or 0  # within output
    found = Usage(whole, as_count(field("output_tokens")), reads, writes, thinking, {"usage": usage})
    creation = field("cache_creation")
    if creation is not None:
        one_hour = as_count(get(creation, "ephemeral_1h_input_tokens"))
        if one_hour:
            found.properties["cache_write_1h_tokens"] = min(one_hour, writes or 0)
    tier = field("service_tier")
    if tier.__class__ is str:
        found.properties["service_tier"] = tier
    return found


class Messages(Operation):
    name = "messages"
    usage_later = True  # an SDK response object

    def usage(self, result: Any) -> Usage | None:
        return usage_of(getattr(result, "usage", None))

    def see(self, watch: Watch, item: Any) -> bool:
        kind = getattr(item, "type", None)
        if kind == "content_block_delta":
            if watch.first_at is None:
                watch.first_at = perf_counter()
        elif kind == "message_start":
            message = getattr(item, "message", None)
            if getattr(message, "model", None):
                watch.model = message.model
            watch.usage = self.usage(message)
        elif kind == "message_delta":
            # Counts here are cumulative: output tokens always, the prompt's parts when the API sends them.
            delta = getattr(item, "usage", None)
            if delta is not None:
                merged = dict(raw_usage(watch.usage.properties.get("usage")) or {}) if watch.usage else {}
                merged.update({k: v for k, v in (raw_usage(delta) or {}).items() if v is not None})
                watch.usage = usage_of(merged)
        return True


MESSAGES = Messages()


def _wrap_stream_helper(original: Any, meter: Any, provider: str, stage: str | None) -> Any:
    """``messages.stream()`` returns a manager that sends the request on ``with``: timed and watched there."""
    is_async = getattr(type(original.__self__), "__name__", "").startswith("Async")

    def stream(*args: Any, **kwargs: Any) -> Any:
        manager = original(*args, **kwargs)
        try:
            attr = next(a for a in vars(manager) if a.endswith("__api_request"))
            request = getattr(manager, attr)
            model = kwargs.get("model")
            if is_async:
                setattr(manager, attr, _watched_async(request, meter, provider, stage, model))
            else:
                setattr(manager, attr, lambda: _watched(request, meter, provider, stage, model))
        except Exception:
            count_failure(meter, f"{provider}.messages.stream")
        return manager

    stream.__wrapped__ = original  # type: ignore[attr-defined]
    stream._botmeter = True  # type: ignore[attr-defined]
    return stream


def _watched(request: Any, meter: Any, provider: str, stage: str | None, model: Any) -> Any:
    start = perf_counter()
    try:
        raw = request()
    except Exception as exc:
        record_failure(meter, provider, stage, "messages", model, exc, (perf_counter() - start) * 1000.0)
        raise
    return _attach(raw, meter, provider, stage, model, start, False)


async def _watched_async(request: Any, meter: Any, provider: str, stage: str | None, model: Any) -> Any:
    start = perf_counter()
    try:
        raw = await request
    except Exception as exc:
        record_failure(meter, provider, stage, "messages", model, exc, (perf_counter() - start) * 1000.0)
        raise
    return _attach(raw, meter, provider, stage, model, start, True)


def _attach(
    raw: Any, meter: Any, provider: str, stage: str | None, model: Any, start: float, is_async: bool
) -> Any:
    try:
        MESSAGES.watch_stream(raw, Watch(MESSAGES, meter, provider, stage, model, None, start), is_async)
    except Exception:
        count_failure(meter, f"{provider}.messages.stream")
    return raw


def instrument_client(meter: Any, client: T, *, stage: str | None = None) -> T:
    """Records every ``messages`` call this client makes (``meter.instrument(client)`` calls this)."""
    provider = provider_of(client)
    messages = client.messages  # type: ignore[attr-defined]
    wrap_object(messages, "create", MESSAGES, meter, provider, stage)
    originals = messages.__dict__[ORIGINALS]
    if "stream" not in originals:
        current = messages.stream
        originals["stream"] = (
            current.__wrapped__.__get__(messages) if getattr(current, "_botmeter", False) else current
        )
    messages.stream = _wrap_stream_helper(originals["stream"], meter, provider, stage)
    return client


def uninstrument_client(client: T) -> T:
    unwrap_object(client.messages)  # type: ignore[attr-defined]
    return client


def _classes() -> list[type]:
    from anthropic.resources.messages import AsyncMessages
    from anthropic.resources.messages import Messages as SyncMessages

    return [SyncMessages, AsyncMessages]


def instrument(meter: Any, *, stage: str | None = None) -> None:
    """Records the ``messages`` calls of every Anthropic client in this process."""
    for cls in _classes():
        wrap_class(cls, "create", MESSAGES, meter, lambda resource: provider_of(resource._client), stage)
        current = cls.__dict__["stream"]
        original = current.__wrapped__ if getattr(current, "_botmeter", False) else current
        cls.stream = _class_stream(original, meter, stage)


def _class_stream(original: Any, meter: Any, stage: str | None) -> Any:
    def stream(self: Any, *args: Any, **kwargs: Any) -> Any:
        if ORIGINALS in self.__dict__:
            return original(self, *args, **kwargs)
        return _wrap_stream_helper(original.__get__(self), meter, provider_of(self._client), stage)(
            *args, **kwargs
        )

    stream.__wrapped__ = original  # type: ignore[attr-defined]
    stream._botmeter = True  # type: ignore[attr-defined]
    return stream


def uninstrument() -> None:
    for cls in _classes():
        unwrap_class(cls, "create")
        unwrap_class(cls, "stream")
