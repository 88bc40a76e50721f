"""Capture without glue: ``meter.instrument(client)`` records every model call an SDK client makes.

One module per SDK (``openai``, ``anthropic``, ``bedrock``, ...). Each offers:

* ``instrument_client(meter, client, stage=None) -> client`` and ``uninstrument_client(client)``:
  works on that object only (its resources get wrapped methods as instance attributes);
* ``instrument(meter, stage=None)`` and ``uninstrument()``: every client of the library at once.

``REGISTRY`` says which module handles a client: the first class in the client's MRO whose
``(top-level package, class name)`` is listed. Adding an SDK is one module and one entry here.
"""

from __future__ import annotations

import importlib
from typing import Any, TypeVar

from ..exceptions import InputTypeError

T = TypeVar("T")

# (top-level package of a class in the client's MRO, class name) -> integration module
REGISTRY: dict[tuple[str, str], str] = {
    ("openai", "OpenAI"): "openai",  # AzureOpenAI and the other variants derive from these two
    ("openai", "AsyncOpenAI"): "openai",
    ("anthropic", "SyncAPIClient"): "anthropic",  # Anthropic, AnthropicBedrock, AnthropicVertex, ...
    ("anthropic", "AsyncAPIClient"): "anthropic",
    ("botocore", "BedrockRuntime"): "bedrock",  # boto3.client("bedrock-runtime")
    ("twilio", "Client"): "twilio",  # twilio.rest.Client: messages.create is an outbound SMS
    ("slack_bolt", "App"): "slack",  # a Bolt app: its middleware records inbound messages
    ("slack_bolt", "AsyncApp"): "slack",
}


def integration_for(client: object) -> Any:
    """The integration module that handles this client, or a TypeError naming what it is."""
    for cls in type(client).__mro__:
        name = REGISTRY.get((cls.__module__.partition(".")[0], cls.__name__))
        if name is not None:
            return importlib.import_module(f"{__name__}.{name}")
    kind = f"{type(client).__module__}.{type(client).__qualname__}"
    known = ", ".join(sorted({f"{p}.{c}" for p, c in REGISTRY}))
    raise InputTypeError(f"instrument: no integration for a {kind} client (known: {known})")


def instrument_client(meter: Any, client: T, *, stage: str | None = None) -> T:
    if stage is not None and not isinstance(stage, str):
        raise InputTypeError(f"instrument: stage must be a str or None, got {stage!r}")
    return integration_for(client).instrument_client(meter, client, stage=stage)


def uninstrument_client(client: T) -> T:
    return integration_for(client).uninstrument_client(client)


__all__ = ["REGISTRY", "instrument_client", "integration_for", "uninstrument_client"]
