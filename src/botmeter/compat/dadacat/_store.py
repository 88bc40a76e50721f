"""What the DadaCat faces share: one Meter per store, the time window, and calls that never raise.

The store is botmeter's: ``BOTMETER_STORE`` when set; else CloudWatch (the tracker's namespace and
region) when the environment says the bot runs against AWS, as the original package always did
(``ANALYTICS_NAMESPACE`` or ``AWS_ENDPOINT_URL`` set, or inside AWS Lambda); else the DuckDB default,
``./botmeter.duckdb``. ``ANALYTICS_ENABLED=false`` turns botmeter off, as ``BOTMETER_ENABLED`` does.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

from ...config import Config
from ...exceptions import InputError, InputTypeError
from ...facade import Meter

log = logging.getLogger("botmeter")
F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_NAMESPACE = "DadaCatTwilio"
DEFAULT_REGION = "us-east-1"
DEFAULT_BOT = "dadacat"
# Any of these says the bot runs against AWS (the original sent everything to CloudWatch).
AWS_SIGNS = ("ANALYTICS_NAMESPACE", "AWS_ENDPOINT_URL", "AWS_LAMBDA_FUNCTION_NAME")

_meters: dict[str, Meter] = {}
_lock = threading.Lock()


def store_url(
    namespace: str = DEFAULT_NAMESPACE, region: str = DEFAULT_REGION, *, cloudwatch: bool = False
) -> str:
    """The store a tracker built with ``namespace`` and ``region`` writes to (see the module's doc);
    ``cloudwatch=True``: that CloudWatch namespace whatever the environment says."""
    if os.environ.get("BOTMETER_STORE") and not cloudwatch:
        return os.environ["BOTMETER_STORE"]
    if cloudwatch or any(os.environ.get(name) for name in AWS_SIGNS):
        return "cloudwatch://?" + urlencode({"namespace": namespace, "region": region})
    return Config.resolve().store


def shared_meter(namespace: str, region: str, store: str | None = None) -> Meter:
    """The one Meter of this process for that store: the three trackers (and a dashboard) share it,
    so there is one writer per DuckDB file, not three fighting over it."""
    url = store or store_url(namespace, region)
    with _lock:
        meter = _meters.get(url)
        if meter is None or meter._closed:
            meter = Meter(bot=os.environ.get("BOTMETER_BOT") or DEFAULT_BOT, store=url)
            _meters[url] = meter
        return meter


def close_all(timeout: float = 30.0) -> bool:
    """Flushes and closes every shared Meter (tests, or a script that wants its events written now)."""
    with _lock:
        meters = list(_meters.values())
        _meters.clear()
    return all([m.close(timeout) for m in meters])


def source_of(meter: Meter) -> str:
    """The ``source`` of every result: botmeter and its store (the original said local_file or cloudwatch)."""
    return f"botmeter {meter.config.store}"


def as_utc(value: datetime | None, field_name: str) -> datetime:
    """A window edge as the bot passes it: a naive datetime is the machine's local time, as the
    original's ``datetime.now()`` meant it; None is now."""
    if value is None:
        return datetime.now(UTC)
    if not isinstance(value, datetime):
        raise InputTypeError(f"{field_name}: expected a datetime, got {value!r}")
    return value.astimezone(UTC)


def check_count(value: Any, field_name: str, least: int = 0) -> None:
    """A count as the original took it: a whole number (not a bool) of at least ``least``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise InputError(f"{field_name}: expected a whole number >= {least}, got {value!r}")


def check_amount(value: Any, field_name: str, unit: str) -> None:
    """A finite number of ``unit`` >= 0 (a duration, a response time)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < float("inf"):
        raise InputError(f"{field_name}: expected a number of {unit} >= 0, got {value!r}")


def never_raises(fn: F) -> F:
    """A tracking call answers True or False and never raises, as the original promised."""

    @functools.wraps(fn)
    def call(self: Any, *args: Any, **kwargs: Any) -> bool:
        try:
            return bool(fn(self, *args, **kwargs))
        except Exception:
            log.exception("botmeter: %s.%s failed", type(self).__name__, fn.__name__)
            return False

    return call  # type: ignore[return-value]


class Face:
    """The constructor every DadaCat class shares, over one botmeter Meter."""

    def __init__(
        self,
        namespace: str = DEFAULT_NAMESPACE,
        region: str = DEFAULT_REGION,
        local_file_fallback: bool = True,
        local_file_path: str | None = None,
        *,
        meter: Meter | None = None,
        store: str | None = None,
    ) -> None:
        # local_file_fallback/local_file_path are kept for the original's callers; botmeter's spool is
        # the fallback now (an outage spools beside the store and replays), and the old JSON files come
        # in with `botmeter import --dadacat`.
        self.namespace = namespace
        self.region = region
        self.local_file_fallback = local_file_fallback
        self.local_file_path = local_file_path
        self.meter = meter if meter is not None else shared_meter(namespace, region, store)
        self.logger = log

    @property
    def use_cloudwatch(self) -> bool:
        return self.meter.config.store.startswith("cloudwatch:")

    @property
    def recording(self) -> bool:
        return self.meter.enabled and not self.meter._closed

    def reader(self) -> Any:
        """botmeter's Reader over the shared store, after flushing what this process holds; None when
        nothing was ever stored (no DuckDB file yet): every figure is then zero, truthfully."""
        self.meter.flush()
        path = getattr(self.meter.store, "path", None)
        if path is not None and not Path(path).exists():
            return None
        return self.meter.reader()

    def flush(self, timeout: float | None = 30.0) -> bool:
        return self.meter.flush(timeout)
