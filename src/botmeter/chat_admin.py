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
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .analyse.gaps import Gaps
from .analyse.query import MAX_DAYS, days_from_text
from .exceptions import InputError, InputTypeError
from .process.privacy import UserHasher
from .report import responses
from .report.numbers import count, latency_s, money, percent
from .report.responses import Figure, Line, Report, Section, anomalies_section, change_figure, period_text
from .version import __version__

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
        if command not in COMMANDS:
            return help_report(f"Unknown command admin:{command}.")
        if command == "help":
            return help_report()
        if command == "status":
            if argument:
                return _refuse(command, argument, "takes nothing after it")
            return status_report(self.meter)
        days = _days(argument)
        if days is None:
            return _refuse(command, argument, f"takes a number of days from 1 to {MAX_DAYS}")
        if not self.meter.enabled or self.meter.store is None:
            return responses.message_report(
                "botmeter is off (BOTMETER_ENABLED=false): there are no analytics."
            )
        # Flushes first, so the admin sees what just happened; within half the reply's time.
        self.meter.flush(timeout=self.reply_timeout / 2)
        from .analyse.reader import Reader

        config = self.meter.config  # the meter's own settings, as meter.reader() reads with
        reader = Reader(
            self.meter.store,
            session_gap_minutes=config.session_gap_minutes,
            reply_stage=config.reply_stage,
            hash_key=config.hash_key,
        )
        from .analyse.query import FigureUnavailable

        try:
            if command == "analytics_status":
                return analytics_status_report(reader, days)
            window = reader.window(days)
            if command == "costs":
                return responses.costs_report(reader.costs(start=window[0], end=window[1]))
            return responses.error_groups_report(reader.error_groups(start=window[0], end=window[1]), *window)
        except FigureUnavailable as exc:
            return responses.message_report(f"Not available from this store: {exc}")


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


def _store_name(url: str) -> str:
    """duckdb://…/bot.duckdb -> duckdb bot.duckdb; cloudwatch://?namespace=X -> cloudwatch X (fits an SMS)."""
    scheme, _, rest = url.partition("://") if "://" in url else ("duckdb", "", url)
    found = re.search(r"namespace=([^&]+)", rest)
    name = found.group(1) if found else rest.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    return f"{scheme} {name}".strip()


def _ago(at: datetime | None, now: datetime) -> str:
    if at is None:
        return "none"
    seconds = max(0.0, (now - at).total_seconds())
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{at:%m-%d %H:%M} UTC ({seconds / size:.0f} {unit} ago)"
    return f"{at:%m-%d %H:%M} UTC ({seconds:.0f} s ago)"


def status_report(meter: Meter) -> Report:
    """botmeter's own health: on or off, the store, what is stored, queued, dropped and spooled."""
    stats = meter.stats()
    now = datetime.now(UTC)
    on = bool(stats["enabled"])
    data: dict[str, Any] = {"enabled": on, "store": meter.config.store, "version": __version__}
    figures = [Figure("Status", "on" if on else "off", short="status", key=True)]
    store = meter.store
    if store is not None:
        # From memory only: the store's file may be held by another process, and a status must
        # answer then most of all. What this process wrote, and when it last wrote.
        last_write = stats.get("last_write_at")
        data["events_written"] = stats.get("written", 0) + stats.get("replayed", 0)
        data["last_write"] = None if last_write is None else datetime.fromtimestamp(last_write, UTC)
        figures += [
            Figure("Store", _store_name(meter.config.store), short="store", key=True),
            Figure("Events written", count(data["events_written"]), short="written", key=True),
            Figure("Last write", _ago(data["last_write"], now), short="last", key=True),
        ]
    data.update(
        queued=stats.get("buffered", 0),
        dropped=stats.get("dropped", 0),
        spool_batches=stats.get("spool_batches", 0),
        spool_events=stats.get("spool_events", 0),
        writer_alive=stats.get("writer_alive"),
        last_error=stats.get("last_error"),
    )
    figures += [
        Figure("Writer queue", count(data["queued"]), short="queue", key=True),
        Figure("Dropped", count(data["dropped"]), short="dropped", key=True),
        Figure(
            "Spool", f"{count(data['spool_events'])} events in {count(data['spool_batches'])} batches",
            short="spool", key=True,
        ),
        Figure("Version", __version__, short="v", key=True),
    ]  # fmt: skip
    notes = []
    if store is not None and data["writer_alive"] is False:
        notes.append("The background writer is not running.")
    if data["last_error"]:
        notes.append(f"Last write error: {data['last_error']}")
    sections = (Section("Problems", tuple(Line(n, n) for n in notes)),) if notes else ()
    return Report(
        "status",
        "botmeter status",
        figures=tuple(figures),
        sections=sections,
        data=data,
        short_title="botmeter",
    )


def analytics_status_report(reader: Any, days: int) -> Report:
    """Key metrics: today's and the period's cost, users, conversations, error rate, p95, anomalies."""
    from .analyse.summary import summarise

    with reader.session():
        summary = summarise(reader, days, compare_weeks=False, with_groups=False)
        now = datetime.fromisoformat(summary["period"]["end"].replace("Z", "+00:00"))
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
        gaps = Gaps(summary["unavailable"])
        today = gaps.get(
            "cost_today", lambda: reader.query("cost_usd", start=midnight, end=now, interval=None).total()
        )
    c, e, r, lat = summary["costs"], summary["engagement"], summary["errors"], summary["latency"]

    period = "today" if days == 1 else f"{days}d"
    # A period of one day is today: its cost is today's cost, said once (against yesterday).
    costs = (
        (change_figure("Cost today", "today", c["total_usd"], money, True),)
        if days == 1
        else (
            Figure(
                "Cost today",
                "-" if "cost_today" in gaps.missing else money(today or 0.0),
                short="today",
                key=True,
            ),
            change_figure(f"Cost, last {days} days", period, c["total_usd"], money, True),
        )
    )
    figures = (
        *costs,
        change_figure("Active users", "users", e["active_users"], count, True),
        change_figure("Conversations", "convs", e["conversations"], count, True),
        change_figure("Error rate", "err rate", r["error_rate"], percent, True),
        change_figure("Failed replies", "failed", r["reply_failure_rate"], percent, True),
        change_figure("Reply p95", "reply p95", lat["reply_p95_s"], latency_s, True),
    )
    sections = (anomalies_section(summary["anomalies"], say_none=True),)
    notes = responses.unavailable_notes(summary)
    p = summary["period"]
    return Report(
        "analytics_status",
        f"botmeter analytics: last {days} days",
        period_text(p["start"], p["end"]),
        figures,
        sections,
        {"today_cost_usd": today, "summary": summary},
        short_title=f"botmeter {period}",
        notes=notes,
    )


__all__ = ["COMMANDS", "FORMATS", "Admin", "analytics_status_report", "help_report", "status_report"]
