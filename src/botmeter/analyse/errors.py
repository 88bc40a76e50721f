"""Error groups: one per fingerprint (type + masked message + innermost own frame).

For each group with errors in the period: how many, users and conversations affected, first and
last seen, an hourly series, and its status: ``new`` (first seen ever in the period),
``regressed`` (seen before, then quiet for ``QUIET_DAYS`` or more, and back in the period) or
``ongoing``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

QUIET_DAYS = 7


def error_groups(
    reader: Any, window: tuple[datetime, datetime], quiet_days: int = QUIET_DAYS, bot: str | None = None
) -> list[dict[str, Any]]:
    """Groups with errors in the window (of one ``bot`` when given), most frequent first."""
    with reader.session():
        if bot is None:
            return reader.engine.error_groups(window[0], window[1], quiet_days)
        return reader.engine.error_groups(window[0], window[1], quiet_days, bot)
