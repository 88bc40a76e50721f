"""botmeter: analytics and monitoring for chatbots — cost, engagement, errors and speed."""

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
from .version import __version__

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
