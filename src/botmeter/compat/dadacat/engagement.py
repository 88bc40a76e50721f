"""``EngagementTracker``: the DadaCat package's engagement calls over botmeter.

* ``track_user_activity(user, activity)`` is a botmeter activity named as the original's value
  (``message``, ``reset``, ``new_conversation``, ``admin_command``, ``donation_prompt``).
* ``track_response_time(ms)`` is a timing of the stage ``reply``.
* ``track_conversation(user, message_count, duration_seconds)`` is re-sent by the bot after every
  reply with the conversation's running totals. botmeter turns it into the conversation's messages:
  message *i* of a conversation is one ``message`` event (odd ones from the user, even ones from the
  bot) whose ``event_id`` is derived from the conversation and *i*, so a re-send adds only the
  messages that are new and a replayed one adds nothing. The conversation is known by its user and
  its start (the call's time minus ``duration_seconds``, to the second); its first message is stamped
  at the start and each new one at the call that first counts it. Conversations, messages per
  conversation, duration, active users and the error rate are then botmeter's own figures: a
  conversation is counted once, with its latest message count and the duration up to its last new
  message. A re-send with the same count adds nothing.

  A bot that trims a conversation's oldest messages (so that its first message time moves on)
  starts a new conversation in this count.

  Within one process the trackers remember what they recorded. A process that sees a conversation
  for the first time part-way (a new Lambda container) sends its messages from the first: DuckDB
  skips the ids it has; CloudWatch cannot check, so there those earlier messages count again.
"""

from __future__ import annotations

import functools
import threading
import time
import uuid
import weakref
from collections import OrderedDict
from datetime import datetime
from enum import Enum
from typing import Any

from ...analyse.query import FigureUnavailable
from ...exceptions import BotmeterError, InputError
from ...facade import Meter
from ._store import Face, as_utc, check_amount, check_count, never_raises, source_of

REPLY_STAGE = "reply"
CHANNEL = "sms"
# The bot's two datetime.now() calls and the clocks of two processes differ by far less than this.
SAME_START_S = 2.0
MAX_OPEN_CONVERSATIONS = 100_000
_IDS = uuid.UUID("6d0c7a52-3f41-5d1e-9a8b-0dadaca70001")  # namespace of the derived event ids


class UserActivity(Enum):
    """User activity types, as the original's."""

    NEW_CONVERSATION = "new_conversation"
    RESET = "reset"
    MESSAGE = "message"
    ADMIN_COMMAND = "admin_command"
    DONATION_PROMPT = "donation_prompt"


METRIC_NAMES = ("ConversationMessageCount", "ConversationDuration", "ResponseTime", "UserActivity")


def derived_id(*parts: object) -> str:
    """A stable event id from the parts (deterministic, so replays and imports dedupe)."""
    return str(uuid.uuid5(_IDS, "/".join(str(p) for p in parts)))


class _Conversations:
    """Which conversation each user is in and how many of its messages were recorded here."""

    def __init__(self) -> None:
        self._open: OrderedDict[str, tuple[str, float, int]] = OrderedDict()
        self._lock = threading.Lock()

    def advance(self, who: str, count: int, start: float) -> tuple[str, float, int]:
        """(conversation id, its start, messages recorded before) and remembers ``count``."""
        with self._lock:
            known = self._open.get(who)
            if known is not None and abs(known[1] - start) <= SAME_START_S:
                conversation, first, done = known
            else:
                conversation, first, done = f"dadacat-{who}-{round(start)}", start, 0
            self._open[who] = (conversation, first, max(done, count))
            self._open.move_to_end(who)
            if len(self._open) > MAX_OPEN_CONVERSATIONS:
                self._open.popitem(last=False)
            return conversation, first, done


# One memory per Meter: every EngagementTracker of a process over the same store shares it.
_memories: weakref.WeakKeyDictionary[Meter, _Conversations] = weakref.WeakKeyDictionary()
_memories_lock = threading.Lock()


def _memory_of(meter: Meter) -> _Conversations:
    with _memories_lock:
        memory = _memories.get(meter)
        if memory is None:
            memory = _memories[meter] = _Conversations()
        return memory


class EngagementTracker(Face):
    """Tracks conversations, response times and user activities; reads back botmeter's figures."""

    @functools.cached_property
    def _conversations(self) -> _Conversations:
        # Found once per tracker: every tracker over the same meter shares this memory.
        return _memory_of(self.meter)

    def _who(self, user_id: str) -> str:
        return self.meter.stored_id(user_id)

    # -- tracking ---------------------------------------------------------------------------------

    @never_raises
    def track_conversation(self, user_id: str, message_count: int, duration_seconds: float) -> bool:
        """The conversation's running totals, as the bot re-sends them after every reply."""
        return self.record_conversation(user_id, message_count, duration_seconds)

    def record_conversation(
        self, user_id: str, message_count: int, duration_seconds: float, *, ts: float | None = None
    ) -> bool:
        """``track_conversation`` at a given time (the history import); raises on bad input."""
        _user(user_id)
        check_count(message_count, "message_count")
        check_amount(duration_seconds, "duration_seconds", "seconds")
        if not self.recording:
            return False
        now = time.time() if ts is None else ts
        conversation, start, done = self._conversations.advance(
            self._who(user_id), message_count, now - float(duration_seconds)
        )
        for i in range(done + 1, message_count + 1):
            self.meter.track_message(
                direction="in" if i % 2 else "out",
                user=user_id,
                conversation=conversation,
                channel=CHANNEL,
                event_id=derived_id(conversation, i),
                ts=start if i == 1 else max(now, start),
            )
        return True

    @never_raises
    def track_response_time(self, response_time_ms: float) -> bool:
        """How long the bot took to answer, in milliseconds (botmeter's ``reply`` stage)."""
        return self.record_response_time(response_time_ms)

    def record_response_time(
        self, response_time_ms: float, *, ts: float | None = None, event_id: str | None = None
    ) -> bool:
        check_amount(response_time_ms, "response_time_ms", "milliseconds")
        if not self.recording:
            return False
        self.meter.track_timing(
            REPLY_STAGE, float(response_time_ms), channel=CHANNEL, event_id=event_id, ts=ts
        )
        return True

    @never_raises
    def track_user_activity(self, user_id: str, activity_type: str | UserActivity) -> bool:
        """Something the user did: one of ``UserActivity`` or any name."""
        return self.record_activity(user_id, activity_type)

    def record_activity(
        self,
        user_id: str,
        activity_type: str | UserActivity,
        *,
        ts: float | None = None,
        event_id: str | None = None,
    ) -> bool:
        _user(user_id)
        name = activity_type.value if isinstance(activity_type, UserActivity) else activity_type
        if not isinstance(name, str) or not name.strip():
            raise InputError(
                f"activity_type: expected a UserActivity or a non-empty str, got {activity_type!r}"
            )
        if not self.recording:
            return False
        self.meter.track_activity(name, user=user_id, channel=CHANNEL, event_id=event_id, ts=ts)
        return True

    # -- reading ----------------------------------------------------------------------------------

    def get_engagement_metrics(
        self,
        start_time: datetime,
        end_time: datetime | None = None,
        metric_names: list[str] | None = None,
    ) -> dict[str, Any]:
        """The original's metrics for the period, from botmeter's figures, percentiles added:

        * ``ConversationMessageCount`` and ``ConversationDuration`` (seconds): ``count`` (conversations
          started in the period), ``average``, ``maximum``, ``total``, ``p25``, ``p50``, ``p75``, ``p90``;
        * ``ResponseTime`` (ms): ``count``, ``average``, ``maximum``, ``p50``, ``p90``, ``p95``, ``p99``
          (``minimum`` is None: botmeter keeps percentiles, not the minimum);
        * ``UserActivity``: ``count``, ``by_activity_type``, ``by_user`` (hashed user ids),
          ``unique_users``.

        A figure the store cannot give is None and named, with the reason, under ``unavailable``."""
        start, end = as_utc(start_time, "start_time"), as_utc(end_time, "end_time")
        names = list(METRIC_NAMES) if metric_names is None else list(metric_names)
        out: dict[str, Any] = {
            "start_time": start.isoformat(),
            "end_time": end.isoformat(),
            "metrics": {},
            "source": source_of(self.meter),
        }
        if not self.meter.enabled:
            return {**out, "note": "botmeter is off"}
        try:
            return self._read(out, start, end, names)
        except BotmeterError as exc:  # as the original: the figures it has not, and why
            return {**out, "error": str(exc)}

    def _read(self, out: dict[str, Any], start: datetime, end: datetime, names: list[str]) -> dict[str, Any]:
        reader = self.reader()
        if reader is None:
            return out
        unavailable: dict[str, str] = {}

        def ask(label: str, metric: str, *, tolerate: type[Exception] = FigureUnavailable, **kw: Any) -> Any:
            try:
                return reader.query(metric, start=start, end=end, interval=None, **kw)
            except tolerate as exc:
                unavailable[label] = str(exc)
                return None

        metrics = out["metrics"]
        with reader.session():
            for name, metric in (
                ("ConversationMessageCount", "messages_per_conversation"),
                ("ConversationDuration", "conversation_duration_s"),
            ):
                if name in names:
                    result = ask(name, metric, stat="count,avg,max,p25,p50,p75,p90")
                    metrics[name] = _per_conversation(result.rows[0] if result and result.rows else None)
            if "ResponseTime" in names:
                metrics["ResponseTime"] = self._response_time(ask)
            if "UserActivity" in names:
                metrics["UserActivity"] = _activities(ask)
        if unavailable:
            out["unavailable"] = unavailable
        return out

    @staticmethod
    def _response_time(ask: Any) -> dict[str, Any]:
        stats = "count,avg,max,p50,p90,p95,p99"
        # CloudWatch may refuse the percentiles (several series, or an emulator without them): the rest.
        result = ask(
            "ResponseTime", "latency_ms", filters={"stage": REPLY_STAGE}, stat=stats, tolerate=BotmeterError
        )
        if result is None:
            result = ask(
                "ResponseTime.count", "latency_ms", filters={"stage": REPLY_STAGE}, stat="count,avg,max"
            )
        row = result.rows[0] if result is not None and result.rows else {}
        return {
            "count": None if result is None else row.get("count") or 0,
            "average": row.get("avg"),
            "maximum": row.get("max"),
            "minimum": None,
            **{p: row.get(p) for p in ("p50", "p90", "p95", "p99")},
        }


def _user(user_id: Any) -> None:
    if not isinstance(user_id, str | int) or isinstance(user_id, bool) or not str(user_id).strip():
        raise InputError(f"user_id: expected the user's id or phone number, got {user_id!r}")


def _per_conversation(row: dict[str, Any] | None) -> dict[str, Any]:
    if row is None:
        return {"count": None, "average": None, "maximum": None, "total": None}
    count, avg = row.get("count") or 0, row.get("avg")
    return {
        "count": count,
        "average": avg,
        "maximum": row.get("max"),
        "total": None if avg is None else round(avg * count, 6),
        **{p: row.get(p) for p in ("p25", "p50", "p75", "p90")},
    }


def _activities(ask: Any) -> dict[str, Any]:
    by_name = ask("UserActivity", "activities", by="name")
    by_user = ask("UserActivity.by_user", "activities", by="user")
    by_type = {} if by_name is None else {r["name"]: r["count"] for r in by_name.rows if r["count"]}
    users = None if by_user is None else {r["user"]: r["count"] for r in by_user.rows if r["count"]}
    return {
        "count": None if by_name is None else sum(by_type.values()),
        "by_activity_type": by_type,
        "by_user": users,
        "unique_users": None if users is None else len(users),
    }


__all__ = ["EngagementTracker", "UserActivity"]
