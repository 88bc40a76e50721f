"""botmeter: analytics and monitoring for chatbots — cost, engagement, errors and speed."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .version import __version__

if TYPE_CHECKING:
    from .collect.context import Context, current_context
    from .collect.meter import Timer
    from .config import Config
    from .events import COLUMNS, KINDS
    from .exceptions import (
        BotmeterError,
        ConfigError,
        InputError,
        InputTypeError,
        SchemaError,
        StoreError,
        StoreLocked,
        StoreUnavailable,
    )
    from .facade import Meter
    from .process.pipeline import Frame, per_event
    from .store import open_store

# Each name is imported when first asked for: a command that only reads a store (the dashboard, a
# query) then loads neither the recording side (writer, pipeline, price data) nor DuckDB's client
# for a ClickHouse store. `from botmeter import Meter` works as before.
_HOME = {
    "Context": ".collect.context",
    "current_context": ".collect.context",
    "Timer": ".collect.meter",
    "Config": ".config",
    "COLUMNS": ".events",
    "KINDS": ".events",
    "BotmeterError": ".exceptions",
    "ConfigError": ".exceptions",
    "InputError": ".exceptions",
    "InputTypeError": ".exceptions",
    "SchemaError": ".exceptions",
    "StoreError": ".exceptions",
    "StoreLocked": ".exceptions",
    "StoreUnavailable": ".exceptions",
    "Meter": ".facade",
    "Frame": ".process.pipeline",
    "per_event": ".process.pipeline",
    "open_store": ".store",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'botmeter' has no attribute {name!r}")
    value = getattr(import_module(home, __name__), name)
    globals()[name] = value  # found directly from now on
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOME})


__all__ = [
    "COLUMNS",
    "KINDS",
    "BotmeterError",
    "Config",
    "ConfigError",
    "Context",
    "Frame",
    "InputError",
    "InputTypeError",
    "Meter",
    "SchemaError",
    "StoreError",
    "StoreLocked",
    "StoreUnavailable",
    "Timer",
    "__version__",
    "current_context",
    "open_store",
    "per_event",
]
