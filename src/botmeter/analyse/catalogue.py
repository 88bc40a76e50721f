"""The metric catalogue: every figure botmeter reports is one entry here.

An entry says what a metric means (name, unit, description), which events it reads (kinds and
a filter), how they aggregate (one of ``AGGREGATIONS``, which each query dialect knows how to
compile) and by which dimensions it may be broken down. Adding a metric is one entry, or a
``botmeter.metrics`` entry point returning ``Metric`` objects; no other module changes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from importlib.metadata import entry_points
from typing import Final

from ..exceptions import InputError

# Dimension name (what users type) -> stored column.
DIMENSIONS: Final[dict[str, str]] = {
    "bot": "bot",
    "kind": "kind",
    "provider": "provider",
    "model": "model",
    "channel": "channel",
    "direction": "direction",
    "country": "country",
    "user": "user_id",
    "conversation": "conversation_id",
    "category": "error_category",
    "severity": "severity",
    "type": "error_type",
    "fingerprint": "fingerprint",
    "stage": "stage",
    "name": "name",
    "release": "release",
    "unit": "unit",
}

# How events become a number. Each dialect compiles every one of these.
AGGREGATIONS: Final = (
    "count",  # events
    "sum",  # sum of ``column``
    "distribution",  # exact percentiles, average and maximum of ``column``
    "active_users",  # distinct users with an inbound message
    "new_users",  # users whose first inbound message ever falls in the bucket
    "returning_users",  # active in the bucket and active before it
    "conversations",  # distinct conversations with a message in the bucket
    "per_conversation",  # ``column`` (messages or duration_s) per conversation started in the bucket
    "ratio",  # ``numerator`` / ``denominator`` (two other metrics)
    "retention",  # cohort table
    "failed_replies",  # inbound messages whose reply failed (see FAILED_REPLY below)
)

# Stands for the reply stage in a metric's ``where``; a query puts the configured stage in its
# place (``BOTMETER_REPLY_STAGE``, ``reply`` by default).
REPLY_STAGE: Final = "<reply stage>"
DEFAULT_REPLY_STAGE: Final = "reply"
# Time to first token, where the bot knows it: ``properties={"time_to_first_token_ms": ...}`` on an
# LLM call (a streamed answer's first chunk).
TTFT_PROPERTY: Final = "time_to_first_token_ms"
# A number kept in the events' properties: each dialect reads it its own way (SQLPrinter.measure).
_TTFT: Final = f"properties.{TTFT_PROPERTY}"

PERCENTILES: Final[dict[str, float]] = {
    "p10": 0.1,
    "p25": 0.25,
    "p50": 0.5,
    "p75": 0.75,
    "p90": 0.9,
    "p95": 0.95,
    "p99": 0.99,
}


@dataclass(frozen=True)
class Metric:
    name: str
    unit: str
    description: str
    aggregation: str
    kinds: tuple[str, ...] = ()  # which event kinds (empty: all)
    # (dimension, value) pairs every event must match; a value ending in '*' matches a prefix;
    # ("cost_usd", None) matches events without a price.
    where: tuple[tuple[str, str | None], ...] = ()
    # An event column, or ``properties.<key>``: a number in the events' properties.
    column: str | None = None
    dimensions: tuple[str, ...] = ()
    stats: tuple[str, ...] = ("value",)  # the first is the default
    numerator: str | None = None
    denominator: str | None = None
    # Figures are ``column`` times this (1/1000: milliseconds stored, seconds shown); counts are not.
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.aggregation not in AGGREGATIONS:
            raise InputError(
                f"metric {self.name!r}: aggregation {self.aggregation!r} is not one of "
                f"{', '.join(AGGREGATIONS)}"
            )
        for dim in self.dimensions + tuple(d for d, v in self.where if v is not None):
            if dim not in DIMENSIONS:
                raise InputError(f"metric {self.name!r}: unknown dimension {dim!r}")
        if self.aggregation == "ratio" and not (self.numerator and self.denominator):
            raise InputError(f"metric {self.name!r}: a ratio needs numerator and denominator")


def for_reply_stage(metric: Metric, stage: str) -> Metric:
    """``metric`` with the reply stage named in place of ``REPLY_STAGE``."""
    if not any(v == REPLY_STAGE for _, v in metric.where):
        return metric
    where = tuple((d, stage if v == REPLY_STAGE else v) for d, v in metric.where)
    return replace(metric, where=where)


# name: a paid API's operation; direction: SMS in or out (each priced at its own rate)
_COST_DIMS = (
    "provider",
    "model",
    "kind",
    "channel",
    "user",
    "conversation",
    "bot",
    "country",
    "unit",
    "name",
    "direction",
)
_LLM_DIMS = ("provider", "model", "channel", "user", "conversation", "bot")
_ERROR_DIMS = ("category", "severity", "type", "fingerprint", "stage", "provider", "model", "channel", "bot")
_ACTIVITY_DIMS = ("name", "channel", "user", "bot")
# The quartiles too: the dashboard draws the distribution of conversation length and duration.
_PER_CONVERSATION_STATS = ("avg", "p10", "p25", "p50", "p75", "p90", "max", "count")

CATALOGUE: dict[str, Metric] = {}


def register(metric: Metric) -> Metric:
    """Adds a metric to the catalogue (a plugin's way in); a name can be registered once."""
    if metric.name in CATALOGUE and CATALOGUE[metric.name] != metric:
        raise InputError(f"metric {metric.name!r} is already in the catalogue")
    CATALOGUE[metric.name] = metric
    return metric


def _register_all(metrics: Iterable[Metric]) -> None:
    for metric in metrics:
        register(metric)


_register_all(
    [
        Metric(
            "cost_usd",
            "USD",
            "Sum of event costs (LLM tokens, SMS segments, paid API calls). A group made only of LLM "
            "calls without a known price is unknown (null), not 0; unpriced calls add nothing elsewhere.",
            "sum",
            column="cost_usd",
            dimensions=_COST_DIMS,
            stats=("sum",),
        ),
        Metric(
            "llm_calls",
            "calls",
            "LLM calls.",
            "count",
            kinds=("llm_call",),
            dimensions=_LLM_DIMS,
            stats=("count",),
        ),
        Metric(
            "input_tokens",
            "tokens",
            "Prompt tokens of LLM calls, cached ones included.",
            "sum",
            kinds=("llm_call",),
            column="input_tokens",
            dimensions=_LLM_DIMS,
            stats=("sum",),
        ),
        Metric(
            "output_tokens",
            "tokens",
            "Completion tokens of LLM calls, reasoning ones included.",
            "sum",
            kinds=("llm_call",),
            column="output_tokens",
            dimensions=_LLM_DIMS,
            stats=("sum",),
        ),
        Metric(
            "cached_tokens",
            "tokens",
            "Prompt tokens read from the provider's cache.",
            "sum",
            kinds=("llm_call",),
            column="cached_tokens",
            dimensions=_LLM_DIMS,
            stats=("sum",),
        ),
        Metric(
            "reasoning_tokens",
            "tokens",
            "Completion tokens spent on reasoning.",
            "sum",
            kinds=("llm_call",),
            column="reasoning_tokens",
            dimensions=_LLM_DIMS,
            stats=("sum",),
        ),
        Metric(
            "unpriced_calls",
            "calls",
            "LLM calls whose model had no known price (their cost is not in cost_usd).",
            "count",
            kinds=("llm_call",),
            where=(("cost_usd", None),),
            dimensions=_LLM_DIMS,
            stats=("count",),
        ),
        Metric(
            "messages",
            "messages",
            "Messages in and out.",
            "count",
            kinds=("message",),
            dimensions=("direction", "channel", "country", "user", "conversation", "bot"),
            stats=("count",),
        ),
        Metric(
            "sms_segments",
            "segments",
            "SMS segments billed (a long message is several).",
            "sum",
            kinds=("message",),
            where=(("unit", "sms_segment"),),
            column="units",
            dimensions=("direction", "country", "channel", "user", "bot"),
            stats=("sum",),
        ),
        Metric(
            "api_calls",
            "calls",
            "Paid API calls other than LLMs.",
            "count",
            kinds=("api_call",),
            dimensions=("provider", "name", "channel", "user", "bot"),
            stats=("count",),
        ),
        Metric(
            "active_users",
            "users",
            "Distinct users with an inbound message in the bucket.",
            "active_users",
            dimensions=("channel", "country", "bot"),
            stats=("count",),
        ),
        Metric(
            "new_users",
            "users",
            "Users whose first inbound message ever falls in the bucket.",
            "new_users",
            dimensions=("bot",),
            stats=("count",),
        ),
        Metric(
            "returning_users",
            "users",
            "Users active in the bucket who were active before it.",
            "returning_users",
            dimensions=("bot",),
            stats=("count",),
        ),
        Metric(
            "conversations",
            "conversations",
            "Distinct conversations with a message in the bucket: the bot's conversation id, or for "
            "messages without one, a user's messages split at gaps longer than the session gap.",
            "conversations",
            dimensions=("channel", "bot"),
            stats=("count",),
        ),
        Metric(
            "messages_per_conversation",
            "messages",
            "Messages per conversation, for conversations that started in the bucket.",
            "per_conversation",
            column="messages",
            dimensions=("bot",),
            stats=_PER_CONVERSATION_STATS,
        ),
        Metric(
            "conversation_duration_s",
            "seconds",
            "Last message minus first, per conversation that started in the bucket.",
            "per_conversation",
            column="duration_s",
            dimensions=("bot",),
            stats=_PER_CONVERSATION_STATS,
        ),
        Metric(
            "retention",
            "share",
            "Users by first-seen day or week: the share active N days or weeks later.",
            "retention",
            stats=("share",),
        ),
        Metric(
            "resets",
            "resets",
            "Conversation resets (activity 'reset').",
            "count",
            kinds=("activity",),
            where=(("name", "reset"),),
            dimensions=("channel", "user", "bot"),
            stats=("count",),
        ),
        Metric(
            "admin_commands",
            "commands",
            "Admin commands (activities named admin:*).",
            "count",
            kinds=("activity",),
            where=(("name", "admin:*"),),
            dimensions=_ACTIVITY_DIMS,
            stats=("count",),
        ),
        Metric(
            "activities",
            "events",
            "Activity events (resets, admin commands, feature use), by name.",
            "count",
            kinds=("activity",),
            dimensions=_ACTIVITY_DIMS,
            stats=("count",),
        ),
        Metric(
            "errors",
            "errors",
            "Error events.",
            "count",
            kinds=("error",),
            dimensions=_ERROR_DIMS,
            stats=("count",),
        ),
        Metric(
            "error_rate",
            "errors per inbound message",
            "Errors divided by inbound messages in the bucket.",
            "ratio",
            numerator="errors",
            denominator="inbound_messages",
            dimensions=("bot",),
            stats=("ratio",),
        ),
        Metric(
            "inbound_messages",
            "messages",
            "Messages from users.",
            "count",
            kinds=("message",),
            where=(("direction", "in"),),
            dimensions=("channel", "country", "user", "conversation", "bot"),
            stats=("count",),
        ),
        Metric(
            "delivery_outcomes",
            "messages",
            "Outbound messages whose delivery outcome the provider reported (delivered, undelivered, "
            "failed; Twilio status callbacks record them as custom events named delivery:<status>).",
            "count",
            kinds=("custom",),
            where=(("name", "delivery:*"),),
            dimensions=("name", "channel", "user", "bot"),
            stats=("count",),
        ),
        Metric(
            "delivered_messages",
            "messages",
            "Outbound messages the provider reported delivered.",
            "count",
            kinds=("custom",),
            where=(("name", "delivery:delivered"),),
            dimensions=("channel", "user", "bot"),
            stats=("count",),
        ),
        Metric(
            "delivery_rate",
            "share",
            "Delivered messages divided by messages with a delivery outcome.",
            "ratio",
            numerator="delivered_messages",
            denominator="delivery_outcomes",
            dimensions=("channel", "bot"),
            stats=("ratio",),
        ),
        Metric(
            "latency_ms",
            "ms",
            "Exact percentiles, maximum and average of the bot's timings (track_timing), per stage: a "
            "stage's latency counts that stage's timing events only, never LLM calls (llm_latency_ms).",
            "distribution",
            kinds=("timing",),
            column="latency_ms",
            dimensions=("stage", "provider", "model", "channel", "bot"),
            stats=("p95", "p50", "p90", "p99", "max", "avg", "count"),
        ),
        Metric(
            "reply_latency_s",
            "seconds",
            "How long users wait for a reply: the timings of the reply stage (BOTMETER_REPLY_STAGE, "
            "'reply' by default), in seconds.",
            "distribution",
            kinds=("timing",),
            where=(("stage", REPLY_STAGE),),
            column="latency_ms",
            dimensions=("channel", "bot"),
            stats=("p95", "p50", "p90", "p99", "max", "avg", "count"),
            scale=0.001,
        ),
        Metric(
            "llm_latency_ms",
            "ms",
            "Exact percentiles, maximum and average of LLM-call latency, per provider and model.",
            "distribution",
            kinds=("llm_call",),
            column="latency_ms",
            dimensions=("provider", "model", "stage", "channel", "bot"),
            stats=("p95", "p50", "p90", "p99", "max", "avg", "count"),
        ),
        Metric(
            "llm_ttft_ms",
            "ms",
            "Time to first token of LLM calls, where the bot gave it (properties "
            '{"time_to_first_token_ms": ...} on track_llm_call); calls without it are not counted.',
            "distribution",
            kinds=("llm_call",),
            column=_TTFT,
            dimensions=("provider", "model", "stage", "channel", "bot"),
            stats=("p95", "p50", "p90", "p99", "max", "avg", "count"),
        ),
        Metric(
            "failed_replies",
            "messages",
            "Inbound messages whose reply failed. A turn is an inbound message and what follows it in "
            "its conversation (conversation id, else the user) until the next inbound message; its "
            "reply failed when the turn holds an error event or an outbound message marked failed "
            '(properties {"failed": true}) and no outbound message that is not marked failed. '
            "Events at an inbound message's time follow it; of inbound messages at one time, the one "
            "with the greater channel comes last. Counted on the day of the inbound message.",
            "failed_replies",
            dimensions=("channel", "bot"),
            stats=("count",),
        ),
        Metric(
            "reply_failure_rate",
            "failed replies per inbound message",
            "failed_replies divided by inbound messages in the bucket: the share of messages users "
            "got no proper reply to (error_rate counts every error event, retries included).",
            "ratio",
            numerator="failed_replies",
            denominator="inbound_messages",
            dimensions=("channel", "bot"),
            stats=("ratio",),
        ),
        Metric(
            "cost_per_conversation",
            "USD",
            "cost_usd divided by conversations over the bucket.",
            "ratio",
            numerator="cost_usd",
            denominator="conversations",
            dimensions=("bot",),
            stats=("ratio",),
        ),
        Metric(
            "cost_per_active_user",
            "USD",
            "cost_usd divided by active_users over the bucket.",
            "ratio",
            numerator="cost_usd",
            denominator="active_users",
            dimensions=("bot",),
            stats=("ratio",),
        ),
    ]
)


_plugins_loaded = False


def load_plugins() -> None:
    """Registers metrics from installed ``botmeter.metrics`` entry points (each returns Metrics), once."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in entry_points(group="botmeter.metrics"):
        provided = ep.load()
        _register_all(provided() if callable(provided) else provided)
