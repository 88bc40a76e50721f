"""botmeter: analytics and monitoring for chatbots — cost, engagement, errors and speed."""

from importlib.metadata import PackageNotFoundError, version

from .collect.context import Context, current_context
from .collect.meter import Meter, Timer
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
from .process.pipeline import Frame, per_event
from .store import open_store

try:
    __version__ = version("botmeter")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0"

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
