"""Chat admin commands: a bot passes each incoming message to ``meter.admin_reply(sender=..., text=...)``;
an admin's ``admin:status`` gets the answer back, anything else gets None and the bot carries on.

Commands (case-insensitive; ``days`` from 1 to 3650, 7 when left out):

* ``admin:status`` - is botmeter on, which store, events stored, the last event, the writer's queue,
  events dropped, the spool's depth, the version;
* ``admin:analytics_status [days]`` - today's and the period's cost, active users, conversations,
  error rate, p95 latency, anomalies;
* ``admin:costs [days]`` - cost, by provider and model, per conversation and per active user;
* ``admin:errors [days]`` - the error groups, new and regressed first among equals;
* ``admin:help`` - these commands.

Only senders on the admin list (``BOTMETER_ADMINS`` or ``Meter(admins=...)``) get an answer. The
sender and the list are compared as their keyed hashes, so "+1 (555) 123-4567" matches
"+15551234567" and no phone number is kept in the clear. Every command run is tracked as an
activity ``admin:<command>``; a refused attempt as ``admin_denied`` (not counted as an admin command).
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from . import answers
from .analyse.query import MAX_DAYS, days_from_text
from .answers.status import analytics_status_report, status_report
from .exceptions import InputError, InputTypeError
from .process.privacy import UserHasher
from .report import responses
from .report.responses import Report

if TYPE_CHECKING:
    from .facade import Meter

log = logging.getLogger("botmeter")

PREFIX = "admin:"
DEFAULT_DAYS = 7
COMMANDS = ("status", "analytics_status", "costs", "errors", "help")
TAKES_DAYS = ("analytics_status", "costs", "errors")
DENIED = "admin_denied"
_COMMAND = re.compile(r"admin:\s*([\w-]*)\s*(.*)", re.IGNORECASE | re.DOTALL)

# Every reply comes within this many seconds; a store that cannot answer by then (another process
# holds the DuckDB file, CloudWatch is slow) gets the busy reply.
REPLY_TIMEOUT_S = 5.0
BUSY = "botmeter: the analytics store is busy (another process is using it); try again in a moment."

# The forms a reply can take: the response builder's consumers.
FORMATS = ("sms", *(c for c in responses.CONSUMERS if c != "sms"))


class Admin:
    """The admin commands of one meter: who may run them, and the replies."""

    def __init__(self, meter: Meter, admins: Iterable[str | int]) -> None:
        self.meter = meter
        # A disabled meter has no store key: a key of this process's own still compares ids as hashes.
        self._hasher: UserHasher = meter.user_hasher or UserHasher(secrets.token_bytes(32))
        self._admins = frozenset(self._hasher.hash(a) for a in admins if str(a).strip())
        self.reply_timeout = REPLY_TIMEOUT_S
        self._slot = threading.Lock()  # held while an answer is being worked out

    def is_admin(self, sender: str | int | None) -> bool:
        return sender is not None and str(sender).strip() != "" and self._hasher.hash(sender) in self._admins

    def reply(
        self,
        sender: str | int | None,
        text: str | None,
        *,
        format: str = "sms",
        max_segments: int = 2,
        conversation: str | int | None = None,
        channel: str | None = None,
    ) -> Any:
        """The reply to ``text`` from ``sender`` in ``format``, or None when it is not an admin command
        or the sender is not an admin."""
        if format not in FORMATS:
            raise InputError(f"format: expected one of {', '.join(FORMATS)}, got {format!r}")
        if isinstance(max_segments, bool) or not isinstance(max_segments, int) or max_segments < 1:
            raise InputError(f"max_segments: expected a whole number >= 1, got {max_segments!r}")
        if text is None:
            return None
        if not isinstance(text, str):
            raise InputTypeError(f"text: expected the message text (a str) or None, got {text!r}")
        found = _COMMAND.fullmatch(text.strip())
        if found is None:
            return None
        command = found.group(1).lower().replace("-", "_")
        argument = found.group(2).strip()
        where = {"user": sender, "conversation": conversation, "channel": channel}
        name = command if command in COMMANDS else "unknown"
        if not self.is_admin(sender):
            self._track(DENIED, where, {"command": name})
            return None
        self._track(f"{PREFIX}{name}", where, _argument_facts(command, argument))
        try:
            report = self._within_bound(lambda: self._answer(command, argument))
        except Exception as exc:  # the bot asked for a reply, never for an exception
            from .exceptions import StoreLocked

            log.exception("botmeter: admin:%s failed", command)
            if isinstance(exc, StoreLocked):
                report = responses.message_report(BUSY)
            else:
                reason = str(exc) if _is_ours(exc) else "see the bot's log"
                report = responses.message_report(f"botmeter could not answer admin:{command}: {reason}")
        if format == "sms":
            return responses.to_sms(report, max_segments)
        return responses.CONSUMERS[format](report)

    def _within_bound(self, answer: Callable[[], Report]) -> Report:
        """``answer()``, or the busy reply after ``reply_timeout`` seconds: the bot's reply never
        waits on a store another process holds. One answer is worked out at a time (on its own
        thread, which finishes in the background when it overruns); a command that comes
        meanwhile waits for it within the same bound."""
        deadline = time.monotonic() + self.reply_timeout
        if not self._slot.acquire(timeout=self.reply_timeout):
            return responses.message_report(BUSY)
        box: dict[str, Any] = {}

        def work() -> None:
            try:
                box["report"] = answer()
            except BaseException as exc:  # handed to the caller's thread below
                box["error"] = exc
            finally:
                self._slot.release()

        worker = threading.Thread(target=work, name="botmeter-admin", daemon=True)
        try:
            worker.start()
        except BaseException:
            self._slot.release()
            raise
        worker.join(max(0.0, deadline - time.monotonic()))
        if "report" in box:
            return box["report"]
        if "error" in box:
            raise box["error"]
        log.warning("botmeter: an admin reply took over %gs; answered busy", self.reply_timeout)
        return responses.message_report(BUSY)

    def _track(self, name: str, where: dict[str, Any], properties: dict[str, Any] | None) -> None:
        try:
            self.meter.track_activity(name, properties=properties, **where)
        except Exception:  # a reply must not fail because it could not be counted
            log.exception("botmeter: could not track %s", name)

    # -- the commands -------------------------------------------------------------------------------

    def _answer(self, command: str, argument: str) -> Report:
        from .analyse.query import FigureUnavailable

        if command not in COMMANDS:
            return help_report(f"Unknown command admin:{command}.")
        if command == "help":
            return help_report()
        if command == "status":
            if argument:
                return _refuse(command, argument, "takes nothing after it")
            return answers.answer("status", self.meter)
        raw = {"days": argument} if argument else {}
        try:
            if not self.meter.enabled or self.meter.store is None:
                answers.parameters(command, raw)  # a bad argument is said first
                return responses.message_report(
                    "botmeter is off (BOTMETER_ENABLED=false): there are no analytics."
                )
            # Flushes first, so the admin sees what just happened; within half the reply's time.
            self.meter.flush(timeout=self.reply_timeout / 2)
            return answers.answer(command, self._reader(), raw)
        except answers.ParameterError as exc:
            return responses.message_report(f"admin:{command}: {exc}. Try admin:help.")
        except FigureUnavailable as exc:
            return responses.message_report(f"Not available from this store: {exc}")

    def _reader(self) -> Any:
        from .analyse.reader import Reader

        config = self.meter.config  # the meter's own settings, as meter.reader() reads with
        return Reader(
            self.meter.store,
            session_gap_minutes=config.session_gap_minutes,
            reply_stage=config.reply_stage,
            hash_key=config.hash_key,
        )


def _argument_facts(command: str, argument: str) -> dict[str, Any] | None:
    """What is kept of a command's argument: the days asked for, never the text typed (it may hold
    a phone number or anything else a person sends)."""
    if not argument:
        return None
    days = _days(argument) if command in TAKES_DAYS else None
    return {"days": days} if days is not None else {"argument": "not understood", "chars": len(argument)}


def _is_ours(exc: BaseException) -> bool:
    from .exceptions import BotmeterError

    return isinstance(exc, BotmeterError)


def _days(argument: str) -> int | None:
    return days_from_text(argument) if argument else DEFAULT_DAYS


def _refuse(command: str, argument: str, why: str) -> Report:
    return responses.message_report(f"admin:{command} {why}; got {argument[:40]!r}. Try admin:help.")


def help_report(first: str = "") -> Report:
    text = (
        "admin:status, admin:analytics_status [days], admin:costs [days], admin:errors [days], admin:help "
        f"(days: 1 to {MAX_DAYS}, default {DEFAULT_DAYS})"
    )
    return responses.message_report(
        f"{first} Commands: {text}" if first else f"botmeter commands: {text}", kind="help"
    )


__all__ = ["COMMANDS", "FORMATS", "Admin", "analytics_status_report", "help_report", "status_report"]
