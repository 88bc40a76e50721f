"""OpenAI clients (``OpenAI``, ``AsyncOpenAI``, ``AzureOpenAI``...): chat completions, the Responses
API and embeddings, sync and async, streamed or not.

Recorded per call: the model as the response names it, input (prompt, cached included), cached,
output (reasoning included) and reasoning tokens, ``service_tier`` (priced by tier), latency, and
for streams the time to the first token (``properties.ttft_ms``). A streamed chat completion asks
the API for its usage (``stream_options.include_usage``) when the caller did not, and drops that
extra usage-only chunk so the caller sees the chunks it would have had without botmeter.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from ._calls import LazyUsage, RawUsage, Usage, as_count, count_failure
from ._wrap import Operation, Watch, perf_counter, unwrap_class, unwrap_object, wrap_class, wrap_object

try:  # the usage line of a stream, parsed in about a quarter of the json module's time
    from orjson import loads as _fast_loads
except ImportError:  # orjson is not a dependency of botmeter's core
    _fast_loads = None


def _remove_all_py(data: bytes, pattern: bytes, cut_from: int = 0, cut_to: int = 0) -> bytes:
    """``data`` without ``data[cut_from:cut_to]`` and without ``pattern`` before or after it."""
    if cut_to > cut_from:
        return b"".join(data[:cut_from].split(pattern) + data[cut_to:].split(pattern))
    return b"".join(data.split(pattern))  # one pass over the bytes, where replace makes two


try:  # one pass in C, where split and join take about three times as long
    from .._fastpath import remove_all as _remove_all
except ImportError:  # the C fast path is not built
    _remove_all = _remove_all_py


T = TypeVar("T")


def provider_of(client: Any) -> str:
    """``azure`` for Azure OpenAI clients (priced with Azure's prices), else ``openai``."""
    for cls in type(client).__mro__:
        if cls.__name__ in ("AzureOpenAI", "AsyncAzureOpenAI", "BaseAzureClient"):
            return "azure"
    return "openai"


def _tier(properties: dict[str, Any], obj: Any) -> None:
    tier = getattr(obj, "service_tier", None)
    if isinstance(tier, str):
        properties["service_tier"] = tier


def _usage(result: Any, prompt_name: str, completion_name: str) -> Usage | None:
    """The usage of a chat completion (``prompt_tokens``...) or a response (``input_tokens``...):
    the two APIs name the same counts differently, and their details objects ``<name>_details``."""
    usage = getattr(result, "usage", None)
    if usage is None:
        return None
    # Models without cache or reasoning send no details: nothing was cached or reasoned.
    prompt = getattr(usage, prompt_name + "_details", None)
    completion = getattr(usage, completion_name + "_details", None)
    found = Usage(
        as_count(getattr(usage, prompt_name, None)),
        as_count(getattr(usage, completion_name, None)),
        0 if prompt is None else as_count(getattr(prompt, "cached_tokens", None)),
        0,
        0 if completion is None else as_count(getattr(completion, "reasoning_tokens", None)),
        {"usage": usage},
    )
    _tier(found.properties, result)
    return found


# The extra body of most streamed calls: one object, never changed (the SDK merges it into a new
# dict for each request).
_ASK_FOR_USAGE: dict[str, Any] = {"stream_options": {"include_usage": True}}


class ChatCompletions(Operation):
    name = "chat.completions"
    usage_later = True  # an SDK response object

    def prepare(self, kwargs: dict[str, Any]) -> Any:
        if kwargs.get("stream") is not True:
            return False
        headers = kwargs.get("extra_headers")
        if isinstance(headers, dict) and headers.get("X-Stainless-Raw-Response") == "stream":
            return False  # with_streaming_response: the caller reads the raw lines; leave them as asked
        options = kwargs.get("stream_options")
        if isinstance(options, dict):
            if options.get("include_usage") is True:
                return False  # the caller asked for usage: it gets the usage chunk
            kwargs["stream_options"] = {**options, "include_usage": True}
            return True
        # Sent as extra body, which the SDK merges as it is, rather than a parameter it would check
        # and transform (the cheaper way, by about 20 us a call).
        extra = kwargs.get("extra_body")
        if extra is None:
            kwargs["extra_body"] = _ASK_FOR_USAGE
            return True
        extra = dict(extra) if isinstance(extra, dict) else {}
        given = extra.get("stream_options")
        if isinstance(given, dict) and given.get("include_usage") is True:
            return False  # asked for in the caller's own extra body
        extra["stream_options"] = {**(given if isinstance(given, dict) else {}), "include_usage": True}
        kwargs["extra_body"] = extra
        return True  # drop the usage-only chunk the caller did not ask for

    def usage(self, result: Any) -> Usage | None:
        return _usage(result, "prompt_tokens", "completion_tokens")

    def see(self, watch: Watch, item: Any) -> bool:
        # Runs for every chunk: after the first content, only the usage check remains.
        usage = getattr(item, "usage", None)
        if watch.first_at is None:
            # The first chunk names the model and the tier, as every chunk does (but Azure's
            # content-filter chunk, which names no model).
            if not watch.extra and getattr(item, "model", None):
                watch.extra["operation"] = self.name
                watch.model = item.model
                _tier(watch.extra, item)
            choices = getattr(item, "choices", None)
            delta = getattr(choices[0], "delta", None) if choices else None
            if delta is not None and (delta.content or delta.tool_calls or getattr(delta, "refusal", None)):
                watch.first_at = perf_counter()
                # the usage comes out of the bytes: nothing later needs looking at
                watch.passthrough = watch.state is _FROM_BYTES
        if usage is not None:
            watch.usage = self.usage(item)
            if watch.state and not item.choices:
                return False  # the usage-only chunk botmeter asked for: not the caller's
        return True

    def watch_stream(self, result: Any, watch: Watch, is_async: bool) -> Any:
        super().watch_stream(result, watch, is_async)
        decoder = getattr(result, "_decoder", None)
        if watch.state and decoder is not None:
            # The usage-only chunk botmeter asked for is cut out of the bytes before the SDK decodes
            # the events and builds chunk objects (which costs as much as any other chunk). The
            # decoder is wrapped rather than the response's iter_bytes: a function on the response
            # holding its own bound method made a reference cycle, which kept every call's response
            # and request alive until the garbage collector's next pass (and made that pass longer).
            try:
                result._decoder = _FilteringDecoder(decoder, watch)
            except AttributeError:  # a stream object that takes no attributes: chunks are checked
                return result
            watch.state = _FROM_BYTES
            # The model and the first content are read from the bytes too (_look, _seen): no chunk
            # object needs looking at, unless the bytes turn out not to be the API's compact JSON.
            watch.passthrough = True
        return result


# Watch.state: botmeter reads the usage from the bytes and cuts its chunk out of them.
_FROM_BYTES = "from bytes"
_LINE_ENDS = (b"\n", b"\r")
_EVENT_ENDS = (b"\n\n", b"\r\r", b"\r\n\r\n")


def _whole_lines(chunk: bytes, carry: bytes) -> tuple[bytes, bytes]:
    """``chunk`` up to its last line end (with ``carry``, the unfinished line before it, in
    front), and what comes after: the patterns looked for never span two network reads."""
    if carry:
        chunk = carry + chunk
    if chunk.endswith(_LINE_ENDS):  # the usual case: the server writes whole events
        return chunk, b""
    end = max(chunk.rfind(b"\n"), chunk.rfind(b"\r")) + 1
    return chunk[:end], chunk[end:]


def _filter(chunk: bytes, watch: Watch, decoder: Any, at_event_start: bool) -> bytes:
    """Whole lines of the stream, as the caller would have had them without usage asked for."""
    at = chunk.find(b'"usage":')
    if at < 0:
        return chunk  # nothing botmeter asked for in these lines
    # Asking for usage adds "usage":null to every chunk: taken out again, the caller's chunk objects
    # are the ones it would have had. (The API's compact JSON, or JSON written with spaces, told
    # by the first one.)
    null = b', "usage": null' if chunk.startswith(b" ", at + 8) else b',"usage":null'
    # The usage-only chunk is the last before [DONE]: looked for from the end, and cut out in the
    # same copy that takes out the nulls.
    cut = None
    at = chunk.rfind(b'"usage":')
    if chunk[at + 8 : at + 10].lstrip().startswith(b"{"):
        try:
            cut = _usage_event(chunk, at, watch, decoder, at_event_start)
        except Exception:
            count_failure(watch.meter, f"{watch.provider}.stream")
        if cut is None:
            _check_chunks(watch)  # the SDK builds the chunk, and botmeter takes it out then
    return _remove_all(chunk, null) if cut is None else _remove_all(chunk, null, *cut)


def _usage_event(chunk: bytes, at: int, watch: Watch, decoder: Any, at_event_start: bool) -> tuple | None:
    """Where the usage-only event's data line is in ``chunk`` (its usage becomes the watch's), or
    None when the line at ``at`` is not that event or cannot be cut out whole."""
    start = chunk.rfind(b"\n", 0, at) + 1
    start = max(start, chunk.rfind(b"\r", start, at) + 1)  # (each search stops at the line's ends)
    end = chunk.find(b"\n", at)
    cr = chunk.find(b"\r", at, None if end < 0 else end)
    end = end if cr < 0 else cr
    if end < 0 or not chunk.startswith(b"data:", start):
        return None
    if (
        not (chunk.endswith(_EVENT_ENDS, 0, start) or (start == 0 and at_event_start))
        or getattr(decoder, "_last_event_id", None)
        or not chunk.startswith(_EVENT_ENDS, end)
    ):
        # The event has more lines than its data (an id, an event name): without its data the SDK
        # would see an empty event.
        return None
    line = chunk[start + 5 : end]
    # The API's compact JSON: no choices, and (found at ``at``) a usage object. A quote inside a
    # string is escaped, so these bytes are the chunk's own keys. Read on the writer's thread.
    if line.find(b'"choices":[]') >= 0:
        watch.usage = _UsageLine(line)
    else:
        body = _usage_line(line)
        if not isinstance(body, dict) or body.get("choices") != [] or not isinstance(body.get("usage"), dict):
            return None  # usage in a chunk with content: the chunk is the caller's
        watch.usage = _read_usage(body)
    # the data line and the line end after it; the blank line that ends the event stays, empty
    return start, end + (2 if chunk.startswith(b"\r\n", end) else 1)


class _UsageLine(LazyUsage):
    """The usage-only chunk's data line, parsed when the call is recorded."""

    __slots__ = ("line",)

    def __init__(self, line: bytes) -> None:
        self.line = line

    def resolve(self) -> Usage | None:
        body = _usage_line(self.line)
        if not isinstance(body, dict) or not isinstance(body.get("usage"), dict):
            raise ValueError(f"not a usage chunk: {self.line[:200]!r}")
        return _read_usage(body)


def _read_usage(body: dict) -> Usage:
    """The counts of a usage-only chunk, parsed."""
    usage = body["usage"]
    prompt = usage.get("prompt_tokens_details") or {}
    completion = usage.get("completion_tokens_details") or {}
    found = Usage(
        as_count(usage.get("prompt_tokens")),
        as_count(usage.get("completion_tokens")),
        as_count(prompt.get("cached_tokens", 0)),
        0,
        as_count(completion.get("reasoning_tokens", 0)),
        {"usage": RawUsage(usage)},
    )
    if isinstance(body.get("service_tier"), str):
        found.properties["service_tier"] = body["service_tier"]
    return found


def _usage_line(data: bytes) -> Any:
    if _fast_loads is not None:
        try:
            return _fast_loads(data)
        except ValueError:  # what orjson refuses and the json module takes (NaN, an integer past 64 bits)
            pass
    return json.loads(data)


_CONTENT_KEYS = (b'"content":"', b'"refusal":"')


def _look(lines: bytes, want_model: bool) -> tuple[bytes | None, bool, bool]:
    """``ChatCompletions.see`` on whole lines of the stream, until the first content, as
    ``_fastpath.stream_step`` does it too: the first non-empty model named (when wanted; the first
    chunk names it, as each does), whether a data line names none in the compact form, and whether
    content arrived."""
    model, no_model = None, False
    if want_model:
        at = lines.find(b'"model":"')
        no_model = at < 0 and lines.find(b"data:") >= 0
        while at >= 0:
            end = lines.find(b'"', at + 9)
            if end > at + 9:  # (Azure's content-filter chunk names no model: the next one does)
                model = lines[at + 9 : end]
                break
            at = lines.find(b'"model":"', at + 9)
    for key in _CONTENT_KEYS:  # a non-empty string (the role chunk's content is "")
        at = lines.find(key)
        while at >= 0:
            at += len(key)
            if not lines.startswith(b'"', at):
                return model, no_model, True
            at = lines.find(key, at)
    return model, no_model, lines.find(b'"tool_calls":[') >= 0


def _seen(watch: Watch, model: bytes | None, no_model: bool, content: bool) -> None:
    """The watch told what a read showed. Bytes that are not the API's compact JSON hand the job
    back to ``see``, chunk by chunk."""
    if not watch.extra:
        if no_model:  # a chunk, not in the form looked for
            watch.passthrough = False
            return
        if model is not None:
            watch.model = model.decode("utf-8", "replace")
            watch.extra["operation"] = ChatCompletions.name
    if content:
        watch.first_at = perf_counter()


def _check_chunks(watch: Watch) -> None:
    """From here on the chunks themselves are looked at (for the usage chunk)."""
    watch.state = True
    watch.passthrough = False


def _step_py(chunk: bytes, carry: bytes, at_event_start: bool, watch: Watch, decoder: Any) -> tuple:
    """A read's whole lines, looked at and filtered; and what is kept back for the next read."""
    lines, rest = _whole_lines(chunk, carry)
    if watch.first_at is None and watch.passthrough:
        _seen(watch, *_look(lines, not watch.extra))
    return _filter(lines, watch, decoder, at_event_start), rest


def _step_c(chunk: bytes, carry: bytes, at_event_start: bool, watch: Watch, decoder: Any) -> tuple:
    """``_step_py`` in one C call (``_fastpath.stream_step``), which hands back to ``_filter`` the
    reads it does not take whole (a usage object other than the compact usage-only event)."""
    see = watch.first_at is None and watch.passthrough
    lines, rest, out, model, no_model, content, usage = _stream_step(chunk, carry, see, at_event_start)
    if see:
        _seen(watch, model, no_model, content)
    if out is None or (usage is not None and getattr(decoder, "_last_event_id", None)):
        return _filter(lines, watch, decoder, at_event_start), rest
    if usage is not None:
        watch.usage = _UsageLine(usage)
    return out, rest


try:  # one C call for the whole read
    from .._fastpath import stream_step as _stream_step

    _step_lines = _step_c
except ImportError:  # the C fast path is not built
    _step_lines = _step_py


def _step(chunk: bytes, carry: bytes, at_event_start: bool, watch: Watch, decoder: Any) -> tuple:
    """One network read: (the bytes for the SDK, the unfinished line kept back, whether they end
    an event)."""
    if watch.state is not _FROM_BYTES:
        return carry + chunk, b"", at_event_start
    try:
        lines, rest = _step_lines(chunk, carry, at_event_start, watch, decoder)
    except Exception:  # the bytes go on as they came; the chunks are checked instead
        count_failure(watch.meter, f"{watch.provider}.stream")
        _check_chunks(watch)
        return carry + chunk, b"", at_event_start
    return lines, rest, lines.endswith(_EVENT_ENDS) if lines else at_event_start


class _FilteringDecoder:
    """The SDK's server-sent-event decoder, handed the stream's bytes through ``_filter``."""

    __slots__ = ("decoder", "watch")

    def __init__(self, decoder: Any, watch: Watch) -> None:
        self.decoder = decoder
        self.watch = watch

    def iter_bytes(self, iterator: Any) -> Any:
        return self.decoder.iter_bytes(_bytes(iterator, self.watch, self.decoder))

    def aiter_bytes(self, iterator: Any) -> Any:
        return self.decoder.aiter_bytes(_bytes_async(iterator, self.watch, self.decoder))

    def __getattr__(self, name: str) -> Any:  # anything else the SDK asks of its decoder
        return getattr(self.decoder, name)


def _bytes(read: Any, watch: Watch, decoder: Any) -> Any:
    carry, at_event_start = b"", True
    for chunk in read:
        chunk, carry, at_event_start = _step(chunk, carry, at_event_start, watch, decoder)
        if chunk:
            yield chunk
    if carry:
        yield carry


async def _bytes_async(read: Any, watch: Watch, decoder: Any) -> Any:
    carry, at_event_start = b"", True
    async for chunk in read:
        chunk, carry, at_event_start = _step(chunk, carry, at_event_start, watch, decoder)
        if chunk:
            yield chunk
    if carry:
        yield carry


class Responses(Operation):
    name = "responses"
    usage_later = True  # an SDK response object

    def usage(self, result: Any) -> Usage | None:
        return _usage(result, "input_tokens", "output_tokens")

    def see(self, watch: Watch, item: Any) -> bool:
        kind = getattr(item, "type", "")
        if watch.first_at is None and kind.endswith(".delta"):
            watch.first_at = perf_counter()
        if kind in ("response.completed", "response.incomplete", "response.failed"):
            response = getattr(item, "response", None)
            if getattr(response, "model", None):
                watch.model = response.model
            watch.usage = self.usage(response)
        return True


class Embeddings(Operation):
    name = "embeddings"
    usage_later = True  # an SDK response object

    def usage(self, result: Any) -> Usage | None:
        usage = getattr(result, "usage", None)
        if usage is None:
            return None
        return Usage(as_count(getattr(usage, "prompt_tokens", None)), 0, 0, 0, 0, {"usage": usage})


CHAT, RESPONSES, EMBEDDINGS = ChatCompletions(), Responses(), Embeddings()


def _resources(client: Any) -> list[tuple[Any, Operation]]:
    return [
        (client.chat.completions, CHAT),
        (client.responses, RESPONSES),
        (client.embeddings, EMBEDDINGS),
    ]


def instrument_client(meter: Any, client: T, *, stage: str | None = None) -> T:
    """Records every call this client makes (``meter.instrument(client)`` calls this)."""
    provider = provider_of(client)
    for resource, op in _resources(client):
        wrap_object(resource, "create", op, meter, provider, stage)
    return client


def uninstrument_client(client: T) -> T:
    for resource, _ in _resources(client):
        unwrap_object(resource)
    return client


def _classes() -> list[tuple[type, Operation]]:
    from openai.resources.chat.completions import AsyncCompletions, Completions
    from openai.resources.embeddings import AsyncEmbeddings
    from openai.resources.embeddings import Embeddings as SyncEmbeddings
    from openai.resources.responses import AsyncResponses
    from openai.resources.responses import Responses as SyncResponses

    return [
        (Completions, CHAT),
        (AsyncCompletions, CHAT),
        (SyncResponses, RESPONSES),
        (AsyncResponses, RESPONSES),
        (SyncEmbeddings, EMBEDDINGS),
        (AsyncEmbeddings, EMBEDDINGS),
    ]


def instrument(meter: Any, *, stage: str | None = None) -> None:
    """Records the calls of every OpenAI client in this process, made before or after this call."""
    for cls, op in _classes():
        wrap_class(cls, "create", op, meter, lambda resource: provider_of(resource._client), stage)


def uninstrument() -> None:
    for cls, _ in _classes():
        unwrap_class(cls, "create")
