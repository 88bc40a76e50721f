"""``botmeter import --dadacat ./metrics``: the DadaCat package's JSON files into a botmeter store.

Files (each optional, at least one present), as the original wrote them:

* ``costs.json``: ``{"costs": [{timestamp, api_name, cost_estimate, request_count, request_tokens}]}``;
* ``engagement.json``: ``{"conversations": [{id, timestamp, user_id, message_count, duration_seconds}],
  "user_activities": [{id, timestamp, user_id, activity_type}], "response_times": [{id, timestamp,
  response_time_ms}]}`` (``activities`` is read as ``user_activities``);
* ``errors.json``: ``{"errors": [{id, timestamp, error_type, error_message, category, context}]}``.

Each file may also be a plain list of its records (for engagement.json, each record is known by its
fields: ``message_count``, ``activity_type`` or ``response_time_ms``). A naive timestamp is this
machine's local time, as the original's ``datetime.now()`` wrote it (set ``TZ`` to read files
from a machine elsewhere).

Everything is read and checked before anything is written: a malformed file or record stops the
import with its file, record number and field named, and nothing written. The events go through the
DadaCat trackers (the same events a live bot records), with ids derived from each record (its ``id``,
or for costs its content and position among equal records), so importing twice adds nothing to a
DuckDB store. CloudWatch cannot be asked what it holds and keeps nothing older than 14 days: there an
import counts once and only its recent part.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ...events import INT64_MAX, INT64_MIN, TS_AHEAD, TS_EARLIEST, free_form_fault, lone_surrogate_at
from ...exceptions import BotmeterError
from ...facade import Meter
from ._store import DEFAULT_BOT
from .costs import CostTracker
from .engagement import EngagementTracker, derived_id
from .errors import ErrorTracker

FILES = ("costs.json", "engagement.json", "errors.json")
SECTIONS = {
    "costs.json": ("costs",),
    "engagement.json": ("conversations", "user_activities", "response_times"),
    "errors.json": ("errors",),
}
ALIASES = {"activities": "user_activities"}


class HistoryError(BotmeterError):
    """A DadaCat metrics file that cannot be imported (the message names the file, record and field)."""


@dataclass
class Record:
    file: str
    section: str
    index: int
    ts: float
    values: dict[str, Any]
    event_id: str


@dataclass
class ImportResult:
    directory: str
    store: str
    counts: dict[str, int] = field(default_factory=dict)
    events: int = 0

    def __str__(self) -> str:
        parts = ", ".join(f"{n:,} {section}" for section, n in self.counts.items())
        return f"imported {parts or 'nothing'} from {self.directory} into {self.store}"


# -- reading and checking --------------------------------------------------------------------------


def read_history(directory: str | Path) -> list[Record]:
    """Every record of the DadaCat files in ``directory``, checked; raises ``HistoryError`` naming the
    file, record and field of the first problem."""
    folder = Path(directory)
    if not folder.is_dir():
        raise HistoryError(f"--dadacat {directory}: not a folder")
    found = [name for name in FILES if (folder / name).is_file()]
    if not found:
        raise HistoryError(f"--dadacat {directory}: none of {', '.join(FILES)} is there")
    records: list[Record] = []
    for name in found:
        path = folder / name
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise HistoryError(f"{path}: not readable as JSON ({exc})") from None
        for section, items in _sections(path, name, data):
            seen: dict[str, int] = {}
            for index, item in enumerate(items):
                records.append(_check(path, name, section, index, item, seen))
    records.sort(key=lambda r: r.ts)  # conversations are re-sent cumulatively: replay them in order
    return records


def _sections(path: Path, name: str, data: Any) -> list[tuple[str, list]]:
    expected = SECTIONS[name]
    if isinstance(data, list):
        if name != "engagement.json":
            return [(expected[0], data)]
        grouped: dict[str, list] = {s: [] for s in expected}
        for index, item in enumerate(data):
            grouped[_engagement_kind(path, index, item)].append(item)
        return list(grouped.items())
    if not isinstance(data, dict):
        raise HistoryError(
            f"{path}: expected an object with {', '.join(expected)} or a list, got {type(data).__name__}"
        )
    out = []
    for key, value in data.items():
        section = ALIASES.get(key, key)
        if section not in expected:
            continue  # last_updated and anything else the original kept
        if not isinstance(value, list):
            raise HistoryError(f"{path}: {key}: expected a list of records, got {type(value).__name__}")
        out.append((section, value))
    return out


def _engagement_kind(path: Path, index: int, item: Any) -> str:
    if isinstance(item, dict):
        for key, section in (
            ("message_count", "conversations"),
            ("activity_type", "user_activities"),
            ("response_time_ms", "response_times"),
        ):
            if key in item:
                return section
    raise HistoryError(
        f"{path}: record {index}: expected a conversation (message_count), activity (activity_type) "
        f"or response time (response_time_ms) record, got {_short(item)}"
    )


def _check(path: Path, name: str, section: str, index: int, item: Any, seen: dict[str, int]) -> Record:
    where = f"{path}: {section} record {index}"
    if not isinstance(item, dict):
        raise HistoryError(f"{where}: expected an object, got {_short(item)}")

    def need(key: str, check: Callable[[Any], bool], what: str, default: Any = ...) -> Any:
        if key not in item or (item[key] is None and default is not ...):
            if default is ...:
                raise HistoryError(f"{where}: field {key} is missing")
            return default
        value = item[key]
        if not check(value):
            raise HistoryError(f"{where}: field {key}: expected {what}, got {_short(value)}")
        return value

    ts = _timestamp(where, item)
    if section == "costs":
        values = {
            "api_name": need("api_name", _is_text, "a non-empty str"),
            "cost_estimate": need("cost_estimate", _amount, "a number of US dollars >= 0"),
            "request_count": need("request_count", _whole(1), "a whole number >= 1", 1),
            "request_tokens": need("request_tokens", _amount, "a number >= 0 or null", None),
        }
    elif section == "conversations":
        values = {
            "user_id": need("user_id", _is_user, "the user's id or phone number"),
            "message_count": need("message_count", _whole(0), "a whole number >= 0"),
            "duration_seconds": need("duration_seconds", _amount, "a number of seconds >= 0"),
        }
    elif section == "user_activities":
        values = {
            "user_id": need("user_id", _is_user, "the user's id or phone number"),
            "activity_type": need("activity_type", _is_text, "a non-empty str"),
        }
    elif section == "response_times":
        values = {"response_time_ms": need("response_time_ms", _amount, "a number of milliseconds >= 0")}
    else:  # errors
        values = {
            "error_type": need("error_type", _is_text, "a non-empty str"),
            "error_message": need("error_message", lambda v: isinstance(v, str), "a str", ""),
            "category": need("category", lambda v: isinstance(v, str), "a str such as api_error", "unknown"),
            "context": need("context", lambda v: isinstance(v, dict), "an object or null", None),
        }
    _storable(where, values)
    if "id" in item and item["id"] is not None:
        if (
            not isinstance(item["id"], str | int)
            or isinstance(item["id"], bool)
            or str(item["id"]).strip() == ""
        ):
            raise HistoryError(f"{where}: field id: expected a str or int, got {_short(item['id'])}")
        key = f"id:{item['id']}"
    else:  # the original's cost records have no id: their content, and which of equal records
        key = "content:" + json.dumps(item, sort_keys=True, default=str)
    nth = seen.get(key, 0)
    seen[key] = nth + 1
    return Record(name, section, index, ts, values, derived_id("dadacat-import", name, section, key, nth))


def _timestamp(where: str, item: dict[str, Any]) -> float:
    raw = item.get("timestamp")
    if not isinstance(raw, str):
        raise HistoryError(f"{where}: field timestamp: expected an ISO date and time, got {_short(raw)}")
    try:
        seconds = datetime.fromisoformat(raw.strip().replace("Z", "+00:00")).timestamp()  # naive: local time
    except ValueError:
        raise HistoryError(
            f"{where}: field timestamp: expected an ISO date and time, got {_short(raw)}"
        ) from None
    if not TS_EARLIEST <= seconds <= time.time() + TS_AHEAD:  # the track call would refuse it mid-import
        raise HistoryError(
            f"{where}: field timestamp: expected a time from 2000-01-01 to one day ahead of now, "
            f"got {_short(raw)}"
        )
    return seconds


def _storable(where: str, values: dict[str, Any]) -> None:
    """What the track calls would refuse (a lone surrogate, a context JSON cannot hold), refused here,
    before anything is written."""
    for key, value in values.items():
        if isinstance(value, str) and lone_surrogate_at(value) >= 0:
            raise HistoryError(f"{where}: field {key}: not valid Unicode text, got {_short(value)}")
        if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
            raise HistoryError(f"{where}: field {key}: an integer beyond 64 bits, got {_short(value)}")
        if isinstance(value, dict):
            fault = free_form_fault(value)
            if fault:
                raise HistoryError(f"{where}: field {key}: cannot be stored as JSON: {fault}")


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


def _is_user(value: Any) -> bool:
    return _is_text(value) or (isinstance(value, int) and not isinstance(value, bool))


def _amount(value: Any) -> bool:
    return (
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
    )


def _whole(minimum: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= minimum


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# -- writing ---------------------------------------------------------------------------------------


def import_history(
    directory: str | Path, store: str | None = None, *, flush_timeout: float = 120.0
) -> ImportResult:
    """Reads and checks the DadaCat files in ``directory``, then records them into ``store`` (botmeter's
    default store when None). Raises ``HistoryError`` before writing anything if a record is malformed."""
    records = read_history(directory)
    meter = Meter(bot=os.environ.get("BOTMETER_BOT") or DEFAULT_BOT, store=store)
    result = ImportResult(str(directory), meter.config.store)
    try:
        if not meter.enabled:
            raise HistoryError(
                "botmeter is off (BOTMETER_ENABLED or ANALYTICS_ENABLED is false): nothing imported"
            )
        costs, engagement, errors = (
            cls(meter=meter) for cls in (CostTracker, EngagementTracker, ErrorTracker)
        )
        costs.skip_estimates_for = frozenset()  # history is history: every estimate the bot made
        for r in records:
            v = r.values
            if r.section == "costs":
                costs.record_estimate(
                    v["api_name"], v["cost_estimate"], v["request_count"], v["request_tokens"],
                    ts=r.ts, event_id=r.event_id,
                )  # fmt: skip
            elif r.section == "conversations":
                engagement.record_conversation(
                    v["user_id"], v["message_count"], v["duration_seconds"], ts=r.ts
                )
            elif r.section == "user_activities":
                engagement.record_activity(v["user_id"], v["activity_type"], ts=r.ts, event_id=r.event_id)
            elif r.section == "response_times":
                engagement.record_response_time(v["response_time_ms"], ts=r.ts, event_id=r.event_id)
            else:
                errors.record_error(
                    v["error_type"],
                    v["error_message"],
                    v["category"],
                    v["context"],
                    ts=r.ts,
                    event_id=r.event_id,
                )
            result.counts[r.section] = result.counts.get(r.section, 0) + 1
        if not meter.flush(flush_timeout):
            raise HistoryError(
                f"the store did not take the events within {flush_timeout:g} s; run the import again"
            )
        stats = meter.stats()
        if stats.get("dropped"):
            raise HistoryError(
                f"{stats['dropped']:,} events were dropped (see botmeter status); run the import again"
            )
        result.events = int(stats.get("processed", 0))
    finally:
        meter.close()
    return result


__all__ = ["HistoryError", "ImportResult", "import_history", "read_history"]
