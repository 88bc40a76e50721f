"""``botmeter.Meter``: the recording core (``collect.meter.RecordingMeter``) with what the layers above it
offer, as methods: reading back (``meter.query``, ``meter.costs``...), chat admin replies
(``meter.admin_reply``), the Lambda decorator (``@meter.lambda_handler``) and instrumented SDK clients
(``meter.instrument``). The recording core imports none of them; this module sits above them all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from .analyse.reader import Reader
from .aws_lambda import flush_after
from .chat_admin import Admin
from .collect.meter import Id, RecordingMeter, Timer
from .exceptions import ConfigError
from .integrations import instrument_client, uninstrument_client

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

__all__ = ["Meter", "Timer"]


class Meter(RecordingMeter):
    """Records a bot's events and writes them, in the background, to a store; reads them back.

    ``Meter(bot="dadacat")`` writes to ``./botmeter.duckdb`` (or ``BOTMETER_STORE``). Every
    setting can be given here or as a ``BOTMETER_*`` variable; see ``botmeter.config``.
    """

    _admin: Admin | None = None  # made on the first admin command

    # -- instrumented SDK clients -------------------------------------------------------------

    def instrument(self, client: T, *, stage: str | None = None) -> T:
        """Returns ``client`` (an OpenAI, Anthropic or Bedrock client...) with every model call recorded
        on this meter: tokens, cost, latency, failures. Works on this object only; see
        ``botmeter.integrations``."""
        return instrument_client(self, client, stage=stage)

    def uninstrument(self, client: T) -> T:
        """Undoes ``instrument(client)``: the client's calls are no longer recorded."""
        return uninstrument_client(client)

    # -- reading back ---------------------------------------------------------------------------

    def reader(self) -> Any:
        """A ``Reader`` over this meter's store, after flushing what the meter holds."""
        if self.store is None:
            raise ConfigError("this meter is disabled (BOTMETER_ENABLED=false): there is no store to read")
        self.flush()
        return Reader(
            self.store,
            session_gap_minutes=self.config.session_gap_minutes,
            reply_stage=self.config.reply_stage,
            hash_key=self.config.hash_key,
        )

    def query(self, metric: str, **kw: Any) -> Any:
        """One metric over a window: ``meter.query("cost_usd", days=7, by="model")`` (``Reader.query``)."""
        return self.reader().query(metric, **kw)

    def costs(self, days: int | None = 7, **kw: Any) -> Any:
        """Cost totals for the last ``days`` days (or ``start``/``end``); see ``Reader.costs``."""
        return self.reader().costs(days, **kw)

    def engagement(self, days: int | None = 7, **kw: Any) -> Any:
        """Users, conversations and messages for the period; see ``Reader.engagement``."""
        return self.reader().engagement(days, **kw)

    def errors(self, days: int | None = 7, **kw: Any) -> Any:
        """Errors, error rate and error groups for the period; see ``Reader.errors``."""
        return self.reader().errors(days, **kw)

    def latency(self, days: int | None = 7, **kw: Any) -> Any:
        """Response-time percentiles for the period; see ``Reader.latency``."""
        return self.reader().latency(days, **kw)

    # -- chat admin commands ----------------------------------------------------------------------

    def admin_reply(
        self,
        sender: str | int | None,
        text: str | None,
        *,
        format: str = "sms",
        max_segments: int = 2,
        conversation: Id = None,
        channel: str | None = None,
    ) -> Any:
        """The reply to an admin command (``admin:status``, ``admin:costs 30``...), or None when ``text``
        is not one or ``sender`` is not on the admin list (``admins``, ``BOTMETER_ADMINS``); then the
        bot answers the message as usual. ``format``: ``sms`` (plain text of at most ``max_segments``
        segments), ``text``, ``slack`` (mrkdwn), ``slack_blocks`` (Block Kit dict), ``markdown``,
        ``json``. See ``botmeter.chat_admin``."""
        if self._admin is None:
            self._admin = Admin(self, self.config.admins)
        return self._admin.reply(
            sender, text, format=format, max_segments=max_segments, conversation=conversation, channel=channel
        )

    def lambda_handler(
        self, handler: F | None = None, *, timeout: float = 10.0, cold_start: bool = True
    ) -> Any:
        """Decorates an AWS Lambda handler: flushes at the end of every invocation (Lambda freezes
        background threads in between) and records cold starts. ``@meter.lambda_handler`` or
        ``@meter.lambda_handler(timeout=5)``; see ``botmeter.aws_lambda.flush_after``."""
        decorate = flush_after(self, timeout=timeout, cold_start=cold_start)
        return decorate if handler is None else decorate(handler)
