"""``ErrorTracker``: the DadaCat package's error calls over botmeter.

``track_error`` is botmeter's ``track_error``: the exception when the bot passes one (else the
``error_type`` as an error code), so botmeter's own category, severity and fingerprint are worked
out as for any error. The original's category and ``error_type`` are kept beside them, in the
error's stage: ``dadacat:<category>:<error_type>`` (a string category is coerced to an
``ErrorCategory``, an unknown one to ``unknown``). The stage is a dimension every store keeps
(CloudWatch's ``Errors`` per ``Stage`` included), so ``error_counts`` reads back everywhere.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

from ...analyse.query import FigureUnavailable
from ...exceptions import BotmeterError, InputError
from ._store import Face, as_utc, never_raises, source_of

STAGE_PREFIX = "dadacat:"
MAX_TYPE_CHARS = 100


class ErrorCategory(Enum):
    """Error categories, as the original's."""

    API_ERROR = "api_error"
    TIMEOUT = "timeout"
    RATE_LIMIT = "rate_limit"
    AUTHENTICATION = "authentication"
    VALIDATION = "validation"
    INTERNAL = "internal"
    PROCESSING_ERROR = "processing_error"
    UNKNOWN = "unknown"


def coerce_category(category: ErrorCategory | str | None) -> ErrorCategory:
    """The original's rule: an ErrorCategory, or its value as a str; anything else is UNKNOWN."""
    if isinstance(category, ErrorCategory):
        return category
    try:
        return ErrorCategory(str(category).strip().lower())
    except ValueError:
        return ErrorCategory.UNKNOWN


def stage_of(category: ErrorCategory, error_type: str) -> str:
    return f"{STAGE_PREFIX}{category.value}:{error_type[:MAX_TYPE_CHARS]}"


def parse_stage(stage: str | None) -> tuple[str, str] | None:
    """(category, error_type) from a stage written by ``stage_of``; None for other errors."""
    if not stage or not stage.startswith(STAGE_PREFIX):
        return None
    category, _, error_type = stage[len(STAGE_PREFIX) :].partition(":")
    return category, error_type


class ErrorTracker(Face):
    """Tracks errors with the original's categories; reads back counts per category and type."""

    @never_raises
    def track_error(
        self,
        error_type: str,
        error_message: str,
        category: ErrorCategory | str = ErrorCategory.UNKNOWN,
        context: dict[str, Any] | None = None,
        exception: BaseException | None = None,
    ) -> bool:
        """Records an error. Returns False (and logs why) for bad input; never raises."""
        return self.record_error(error_type, error_message, category, context, exception)

    def record_error(
        self,
        error_type: str,
        error_message: str | None,
        category: ErrorCategory | str | None = ErrorCategory.UNKNOWN,
        context: dict[str, Any] | None = None,
        exception: BaseException | None = None,
        *,
        ts: float | None = None,
        event_id: str | None = None,
    ) -> bool:
        if not isinstance(error_type, str) or not error_type.strip():
            raise InputError(f"error_type: expected a non-empty str, got {error_type!r}")
        if error_message is not None and not isinstance(error_message, str):
            error_message = str(error_message)
        if context is not None and not isinstance(context, dict):
            raise InputError(f"context: expected a dict or None, got {context!r}")
        if not self.recording:
            return False
        chosen = coerce_category(category)
        context = dict(context or {})
        # The original put the sender's number and text in the context: the number goes where
        # botmeter hashes it, the text is kept only as its length unless text storage is on.
        user = context.pop("user_id", None)
        if not self.meter.config.store_text and isinstance(context.get("message"), str):
            context["message_chars"] = len(context.pop("message"))
        self.meter.track_error(
            exception if exception is not None else error_type,
            message=error_message or None,
            stage=stage_of(chosen, error_type),
            context=context or None,
            user=user if isinstance(user, str | int) and not isinstance(user, bool) else None,
            channel="sms",
            properties={"dadacat_category": chosen.value, "dadacat_error_type": error_type},
            event_id=event_id,
            ts=ts,
        )
        return True

    def get_error_metrics(
        self,
        start_time: datetime,
        end_time: datetime | None = None,
        categories: list[ErrorCategory | str] | None = None,
    ) -> dict[str, Any]:
        """Errors for the period: ``total_errors``, ``error_counts[category] = {total, by_type}`` for the
        errors tracked here, and beside them botmeter's ``by_botmeter_category`` and ``by_severity``
        over every error stored (``other_errors``: those not tracked through this class)."""
        start, end = as_utc(start_time, "start_time"), as_utc(end_time, "end_time")
        wanted = None
        if categories is not None:  # the original skipped names that are not categories
            wanted = [c.value if isinstance(c, ErrorCategory) else c for c in categories]
            wanted = [c for c in wanted if c in {e.value for e in ErrorCategory}]
        out: dict[str, Any] = {
            "start_time": start.isoformat(),
            "end_time": end.isoformat(),
            "categories": wanted,
            "source": source_of(self.meter),
        }
        empty = {**out, "total_errors": 0, "error_counts": {}}
        if not self.meter.enabled:
            return {**empty, "note": "botmeter is off"}
        try:
            return self._read(out, empty, start, end, wanted)
        except BotmeterError as exc:  # as the original: no figures, and why
            return {**out, "total_errors": None, "error_counts": {}, "error": str(exc)}

    def _read(
        self, out: dict[str, Any], empty: dict[str, Any], start: datetime, end: datetime, wanted: list | None
    ) -> dict[str, Any]:
        reader = self.reader()
        if reader is None:
            return empty
        unavailable: dict[str, str] = {}

        def breakdown(dim: str) -> dict[Any, int] | None:
            try:
                result = reader.query("errors", start=start, end=end, interval=None, by=dim)
            except FigureUnavailable as exc:
                unavailable[f"errors by {dim}"] = str(exc)
                return None
            return {r[dim]: r["count"] for r in result.rows if r["count"]}

        with reader.session():
            by_stage = breakdown("stage")
            by_category = breakdown("category")
            by_severity = breakdown("severity")
        error_counts: dict[str, dict[str, Any]] = {}
        other = 0
        for stage, n in (by_stage or {}).items():
            parsed = parse_stage(stage)
            if parsed is None:
                other += n
                continue
            category, error_type = parsed
            if wanted is not None and category not in wanted:
                continue
            entry = error_counts.setdefault(category, {"total": 0, "by_type": {}})
            entry["total"] += n
            entry["by_type"][error_type] = entry["by_type"].get(error_type, 0) + n
        tracked = sum(e["total"] for e in error_counts.values())
        out.update(
            total_errors=None if by_stage is None else tracked + (other if wanted is None else 0),
            error_counts=None if by_stage is None else error_counts,
            other_errors=None if by_stage is None else other,
            by_botmeter_category=None
            if by_category is None
            else {k or "(none)": v for k, v in by_category.items()},
            by_severity=None if by_severity is None else {k or "(none)": v for k, v in by_severity.items()},
        )
        if unavailable:
            out["unavailable"] = unavailable
        return out


__all__ = ["ErrorCategory", "ErrorTracker", "coerce_category"]
