"""The DadaCat bot's two SMS admin commands, ``admin:status`` and ``admin:analytics_status``, with the
original's reply texts, answered only to senders on botmeter's admin list (``BOTMETER_ADMINS``);
the original answered any phone number. Other ``admin:`` commands get botmeter's own replies.

    reply = admin_reply(from_number, incoming_message, rate_limiter=rate_limiter,
                        message_count=conversation_manager.get_message_count(from_number))
    if reply is not None:
        return reply   # else handle the message as usual

Every command run is tracked as botmeter tracks its own (activity ``admin:status``...; a refused
attempt as ``admin_denied``), so the bot need not call ``track_user_activity(ADMIN_COMMAND)`` too.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from ...chat_admin import DENIED, PREFIX, Admin, status_report
from ...facade import Meter
from ._store import DEFAULT_NAMESPACE, DEFAULT_REGION, shared_meter

log = logging.getLogger("botmeter")

STATUS = "admin:status"
ANALYTICS_STATUS = "admin:analytics_status"
DAYS = 7


def admin_reply(
    sender: str | int | None,
    text: str | None,
    *,
    rate_limiter: Any = None,
    message_count: int | None = None,
    meter: Meter | None = None,
    namespace: str = DEFAULT_NAMESPACE,
    region: str = DEFAULT_REGION,
) -> str | None:
    """The reply to an admin command from an admin, else None (the bot answers the message as usual).

    ``rate_limiter`` (with ``enabled``, ``threshold``, ``time_window``) and ``message_count`` fill the
    original's status lines; lines without them are left out."""
    meter = meter if meter is not None else shared_meter(namespace, region)
    if not isinstance(text, str):
        return None
    command = text.strip().lower()
    if command not in (STATUS, ANALYTICS_STATUS):
        return meter.admin_reply(sender, text)  # botmeter's own admin:costs, admin:errors, admin:help
    admin = Admin(meter, meter.config.admins)
    if not admin.is_admin(sender):
        _track(meter, DENIED, sender, {"command": command[len(PREFIX) :]})
        return None
    _track(meter, command, sender, None)
    if command == STATUS:
        return _status(meter, rate_limiter, message_count)
    try:
        return _analytics_status(meter)
    except Exception as exc:
        log.exception("botmeter: admin:analytics_status failed")
        from .errors import ErrorCategory, ErrorTracker

        ErrorTracker(meter=meter).track_error(
            "admin_command_error",
            f"Error getting analytics status: {exc}",
            ErrorCategory.INTERNAL,
            exception=exc,
        )
        return "Error getting analytics status"


def _track(meter: Meter, name: str, sender: Any, properties: dict[str, Any] | None) -> None:
    try:
        meter.track_activity(name, user=sender, channel="sms", properties=properties)
    except Exception:  # a reply must not fail because it could not be counted
        log.exception("botmeter: could not track %s", name)


def _status(meter: Meter, rate_limiter: Any, message_count: int | None) -> str:
    lines = ["DadaCat Status:"]
    if rate_limiter is not None:
        lines.append(
            f"- Rate limiter: {'ENABLED' if getattr(rate_limiter, 'enabled', False) else 'DISABLED'}"
        )
    if message_count is not None:
        lines.append(f"- Message count: {message_count}")
    if rate_limiter is not None:
        lines.append(f"- Threshold: {getattr(rate_limiter, 'threshold', '?')} messages")
        window = getattr(rate_limiter, "time_window", None)
        if isinstance(window, int | float):
            lines.append(f"- Time window: {window / 3600:.1f} hours")
    if not meter.enabled:
        lines.append("- Analytics: DISABLED")
        return "\n".join(lines)
    data = status_report(meter).data
    lines.append(f"- Analytics: ENABLED (botmeter, {meter.config.store})")
    if "events_written" in data:  # from memory: the status answers while the store's file is busy
        lines.append(f"- Events written: {data['events_written']:,}, dropped: {data['dropped']:,}")
    return "\n".join(lines)


def _analytics_status(meter: Meter) -> str:
    if not meter.enabled:
        return "DadaCat Analytics Status: analytics DISABLED"
    from .costs import CostTracker
    from .engagement import EngagementTracker
    from .errors import ErrorTracker

    end = datetime.now(UTC)
    start = end - timedelta(days=DAYS)
    costs = CostTracker(meter=meter).get_cost_metrics(start, end)
    activity = EngagementTracker(meter=meter).get_engagement_metrics(start, end, ["UserActivity"])
    errors = ErrorTracker(meter=meter).get_error_metrics(start, end)
    users = activity["metrics"].get("UserActivity", {})  # none when the store could not answer
    return "\n".join(
        [
            f"DadaCat Analytics Status (last {DAYS} days):",
            f"- Costs: {_money(costs['total_cost'])} (source: {costs['source']})",
            f"- Total activities: {_figure(users.get('count'))}",
            f"- Unique users: {_figure(users.get('unique_users'))}",
            f"- Total errors: {_figure(errors['total_errors'])}",
        ]
    )


def _money(value: float | None) -> str:
    return "not available from this store" if value is None else f"${value:.2f}"


def _figure(value: Any) -> str:
    return "not available from this store" if value is None else f"{value:,}"


__all__ = ["admin_reply"]
