"""AWS Lambda: the bot's own handler, flushed at the end of every invocation.

Lambda freezes the process between invocations, background threads included, so events still
in memory when the handler returns would wait for the next invocation, or be lost with the
container. ``flush_after(meter)`` (or ``@meter.lambda_handler``) flushes in ``finally``, bounded
by the time the invocation has left, and records a cold start (an ``activity`` named
``cold_start``) on the first invocation in the process.

With the CloudWatch store in EMF mode (its default in Lambda) the flush prints metric lines on
stdout, which Lambda sends to CloudWatch Logs: no API call inside the invocation.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from .collect.meter import Meter

log = logging.getLogger("botmeter")
F = TypeVar("F", bound=Callable[..., Any])

COLD_START = "cold_start"
DEFAULT_FLUSH_TIMEOUT = 10.0
_MARGIN_S = 0.5  # left for the handler's own return once the flush is done


def _context_facts(context: Any) -> dict[str, Any]:
    facts = {}
    for name in ("function_name", "function_version", "memory_limit_in_mb", "aws_request_id"):
        value = getattr(context, name, None)
        if value is not None:
            facts[name] = value if isinstance(value, int | float | str) else str(value)
    return facts


def _flush_timeout(context: Any, timeout: float) -> float:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if callable(remaining):
        try:
            left = float(remaining()) / 1000.0 - _MARGIN_S
        except Exception:  # a context of another shape: keep the configured timeout
            return timeout
        return max(0.05, min(timeout, left))
    return timeout


def flush_after(
    meter: Meter, *, timeout: float = DEFAULT_FLUSH_TIMEOUT, cold_start: bool = True
) -> Callable[[F], F]:
    """Decorates a Lambda handler ``handler(event, context)``: flushes ``meter`` when it returns or
    raises, and tracks a ``cold_start`` activity on the first invocation.

    ``timeout`` caps the flush (seconds); it never runs past the invocation's remaining time.
    """

    def decorate(handler: F) -> F:
        first = [True]

        @functools.wraps(handler)
        def invoke(event: Any, context: Any = None, *args: Any, **kwargs: Any) -> Any:
            if first[0]:
                first[0] = False
                if cold_start:
                    try:
                        meter.track_activity(COLD_START, properties=_context_facts(context))
                    except Exception:  # recording must never break the bot's handler
                        log.exception("botmeter: could not record the cold start")
            try:
                return handler(event, context, *args, **kwargs)
            finally:
                if not meter.flush(timeout=_flush_timeout(context, timeout)):
                    log.warning("botmeter: flush at the end of the invocation timed out")

        return invoke  # type: ignore[return-value]

    return decorate


__all__ = ["COLD_START", "flush_after"]
