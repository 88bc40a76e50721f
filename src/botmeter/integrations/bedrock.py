"""Amazon Bedrock through boto3 (a ``bedrock-runtime`` client): ``converse``, ``converse_stream`` and
``invoke_model`` for the Anthropic and Amazon (Nova, Titan) model families.

Bedrock's ``inputTokens`` leaves out cache reads and writes; botmeter's ``input_tokens`` is the whole
prompt, so it is their sum. The model is the ``modelId`` the call names (an inference profile such
as ``us.anthropic...`` included), priced at Bedrock's prices. ``invoke_model``'s body is read to
find the usage and handed back to the caller as an unread body with the same bytes.
"""

from __future__ import annotations

import io
import json
from typing import Any, TypeVar

from ._calls import ORIGINALS, Usage, as_count, count_failure, get
from ._wrap import Operation, Watch, perf_counter, unwrap_object, wrap_object

T = TypeVar("T")
PROVIDER = "bedrock"


def converse_usage(
    usage: Any, reads_key: str = "cacheReadInputTokens", writes_key: str = "cacheWriteInputTokens"
) -> Usage | None:
    """Converse's usage (camelCase, prompt parts apart) in botmeter's convention. Nova's
    ``invoke_model`` body has the same shape, its cache counts named ``...TokenCount``."""
    if not isinstance(usage, dict):
        return None
    uncached = as_count(usage.get("inputTokens"))
    reads = as_count(usage.get(reads_key, 0))
    writes = as_count(usage.get(writes_key, 0))
    whole = None if uncached is None else uncached + (reads or 0) + (writes or 0)
    return Usage(whole, as_count(usage.get("outputTokens")), reads, writes, 0, {"usage": usage})


class Converse(Operation):
    name = "converse"

    def model(self, kwargs: dict[str, Any]) -> Any:
        return kwargs.get("modelId")

    def response_model(self, result: Any) -> Any:
        return None  # Converse does not name the model: the modelId asked for is it

    def is_stream(self, kwargs: dict[str, Any], result: Any) -> bool:
        return False

    def usage(self, result: Any) -> Usage | None:
        found = converse_usage(get(result, "usage"))
        if found is not None:
            tier = get(result, "serviceTier", "type")
            if isinstance(tier, str):
                found.properties["service_tier"] = tier
        return found


class ConverseStream(Converse):
    name = "converse_stream"

    def is_stream(self, kwargs: dict[str, Any], result: Any) -> bool:
        return True

    def see(self, watch: Watch, item: Any) -> bool:
        if not isinstance(item, dict):
            return True
        if watch.first_at is None and "contentBlockDelta" in item:
            watch.first_at = perf_counter()
        elif "metadata" in item:
            watch.usage = converse_usage(get(item, "metadata", "usage"))
        return True

    def watch_stream(self, result: Any, watch: Watch, is_async: bool) -> Any:
        # The caller iterates result["stream"], botocore's EventStream: watch the events it parses
        # (its own object stays in place) and finish when its raw events end.
        stream = result["stream"]
        parse = stream._parse_event
        raw = stream._event_generator

        def parse_event(event: Any) -> Any:
            try:
                parsed = parse(event)
            except Exception as exc:  # an error event in the stream (throttling, validation...)
                watch.fail(exc)
                raise
            if parsed is not None:
                watch.see(parsed)
            return parsed

        def events() -> Any:
            try:
                yield from raw
            except Exception as exc:
                watch.fail(exc)
                raise
            finally:
                watch.finish()

        stream._parse_event = parse_event
        stream._event_generator = events()
        return result


class InvokeModel(Operation):
    name = "invoke_model"

    def model(self, kwargs: dict[str, Any]) -> Any:
        return kwargs.get("modelId")

    def response_model(self, result: Any) -> Any:
        return None

    def is_stream(self, kwargs: dict[str, Any], result: Any) -> bool:
        return False

    def usage(self, result: Any) -> Usage | None:
        from botocore.response import StreamingBody

        try:
            data = result["body"].read()
        except Exception as exc:  # the body broke off: the caller's read must fail the same way
            result["body"] = _BrokenBody(exc)
            raise
        result["body"] = StreamingBody(io.BytesIO(data), len(data))  # the caller reads it as if untouched
        try:
            body = json.loads(data)
        except ValueError:
            body = None
        found = invoke_usage(body) if isinstance(body, dict) else None
        if found is None:  # a model family without usage in its body: Bedrock's headers count it
            headers = get(result, "ResponseMetadata", "HTTPHeaders") or {}
            inp = as_count(_int(headers.get("x-amzn-bedrock-input-token-count")))
            out = as_count(_int(headers.get("x-amzn-bedrock-output-token-count")))
            if inp is not None or out is not None:
                found = Usage(inp, out, 0, 0, 0, {"usage": {"input": inp, "output": out}})
        return found


class _BrokenBody:
    """Stands in for a body whose reading failed: reading it raises what the read raised."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def read(self, *args: Any) -> bytes:
        raise self.error

    def close(self) -> None:
        pass


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def invoke_usage(body: dict[str, Any]) -> Usage | None:
    """Usage from an ``invoke_model`` body: Anthropic's Messages shape, Nova's, or Titan's."""
    usage = body.get("usage")
    if isinstance(usage, dict) and "input_tokens" in usage:  # Anthropic (Claude)
        from .anthropic import usage_of

        return usage_of(usage)
    if isinstance(usage, dict) and "inputTokens" in usage:  # Amazon Nova
        return converse_usage(usage, "cacheReadInputTokenCount", "cacheWriteInputTokenCount")
    if "inputTextTokenCount" in body:  # Amazon Titan Text
        results = body.get("results") or []
        counts = [as_count(get(r, "tokenCount")) for r in results]
        out = None if not counts or None in counts else sum(c for c in counts if c is not None)
        raw = {"inputTextTokenCount": body.get("inputTextTokenCount"), "tokenCount": out}
        return Usage(as_count(body.get("inputTextTokenCount")), out, 0, 0, 0, {"usage": raw})
    return None


CONVERSE, CONVERSE_STREAM, INVOKE_MODEL = Converse(), ConverseStream(), InvokeModel()
_METHODS = (("converse", CONVERSE), ("converse_stream", CONVERSE_STREAM), ("invoke_model", INVOKE_MODEL))


def instrument_client(meter: Any, client: T, *, stage: str | None = None) -> T:
    """Records this ``bedrock-runtime`` client's model calls (``meter.instrument(client)`` calls this)."""
    for method, op in _METHODS:
        wrap_object(client, method, op, meter, PROVIDER, stage)
    return client


def uninstrument_client(client: T) -> T:
    unwrap_object(client)
    return client


_library: dict[str, Any] = {}


def instrument(meter: Any, *, stage: str | None = None) -> None:
    """Records the calls of every ``bedrock-runtime`` client created from now on (boto3 makes a new
    client class per client, so this hooks client creation)."""
    from botocore.client import ClientCreator

    original = _library.setdefault("create_client", ClientCreator.create_client)

    def create_client(self: Any, *args: Any, **kwargs: Any) -> Any:
        client = original(self, *args, **kwargs)
        try:
            if client.meta.service_model.service_name == "bedrock-runtime" and ORIGINALS not in vars(client):
                instrument_client(meter, client, stage=stage)
        except Exception:
            count_failure(meter, "bedrock.instrument")
        return client

    ClientCreator.create_client = create_client


def uninstrument() -> None:
    from botocore.client import ClientCreator

    original = _library.pop("create_client", None)
    if original is not None:
        ClientCreator.create_client = original


__all__ = ["instrument", "instrument_client", "invoke_usage", "uninstrument", "uninstrument_client"]
