"""Alerts: rules in a TOML file, checked on demand (``botmeter alerts check``, from cron or CI),
delivered to stdout, a webhook or a Slack incoming webhook, and not repeated within
``repeat_minutes``.

A rules file (every key optional; a rule without its key is off)::

    daily_budget_usd = 20.0        # today's cost so far reached it
    monthly_budget_usd = 400.0     # this month's cost so far reached it
    forecast_over_budget = true    # the month-end forecast exceeds monthly_budget_usd
    error_rate_max = 0.05          # errors / inbound messages over the last window_hours
    error_rate_spike = true        # the last complete day's error rate is an anomaly
    p95_latency_ms = 5000          # p95 of one stage's timings over the last window_hours
    latency_stage = "reply"        # which stage (default: BOTMETER_REPLY_STAGE, 'reply')
    new_error_group = true         # an error fingerprint first seen in the last window_hours
    regression = true              # an error group back after a quiet week
    window_hours = 24
    min_messages = 20              # inbound messages needed before error_rate_max applies
    repeat_minutes = 360

    [deliver]
    stdout = true
    webhook = "https://example.com/hooks/botmeter"
    slack_webhook = "https://hooks.slack.com/services/..."
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from ..exceptions import ConfigError
from ..validation import Amount, Flag, Problem, Text, first_problem, number, refuse
from .catalogue import CATALOGUE
from .query import floor_to, iso, ratio
from .trends import WATCHED, anomalies, month_end_forecast


@dataclass(frozen=True)
class Rules:
    daily_budget_usd: float | None = None
    monthly_budget_usd: float | None = None
    forecast_over_budget: bool = False
    error_rate_max: float | None = None
    error_rate_spike: bool = False
    p95_latency_ms: float | None = None
    latency_stage: str | None = None
    new_error_group: bool = False
    regression: bool = False
    window_hours: float = 24.0
    min_messages: int = 20
    repeat_minutes: float = 360.0
    deliver: dict[str, Any] = field(default_factory=lambda: {"stdout": True})

    @classmethod
    def load(cls, path: str | Path) -> Rules:
        try:
            data = tomllib.loads(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(f"alert rules {path}: cannot read: {exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"alert rules {path}: not valid TOML: {exc}") from exc
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "alert rules") -> Rules:
        try:
            checked = _RulesFile.model_validate(data)
        except ValidationError as exc:
            raise _rules_error(first_problem(exc), source) from None
        values = checked.model_dump(exclude_unset=True)
        if checked.deliver is not None:
            values["deliver"] = checked.deliver.model_dump(exclude_unset=True)
        return cls(**values)


class _Delivery(BaseModel):
    """The ``[deliver]`` table: where fired alerts go."""

    model_config = ConfigDict(extra="forbid")
    stdout: Flag = True
    webhook: Text | None = None
    slack_webhook: Text | None = None


def _stage(value: Any) -> Any:
    if not isinstance(value, str):
        raise refuse("must be a stage name")
    return value


class _RulesFile(BaseModel):
    """A rules file as written; every key is optional (a rule without its key is off)."""

    model_config = ConfigDict(extra="forbid")
    daily_budget_usd: Amount | None = None
    monthly_budget_usd: Amount | None = None
    forecast_over_budget: Flag = False
    error_rate_max: Amount | None = None
    error_rate_spike: Flag = False
    p95_latency_ms: Amount | None = None
    latency_stage: Annotated[str, BeforeValidator(_stage)] | None = None
    new_error_group: Flag = False
    regression: Flag = False
    window_hours: Amount = 24.0
    min_messages: Annotated[int, Field(ge=0), BeforeValidator(number)] = 20
    repeat_minutes: Amount = 360.0
    deliver: _Delivery | None = None


def _rules_error(problem: Problem, source: str) -> ConfigError:
    name, value = problem.field, problem.value
    if problem.where[:1] == ("deliver",):
        if problem.kind == "unknown":
            valid = ", ".join(sorted(_Delivery.model_fields))
            return ConfigError(f"{source}: [deliver] unknown key {name!r}; valid: {valid}")
        if len(problem.where) == 1:
            return ConfigError(f"{source}: [deliver] must be a table, got {value!r}")
        return ConfigError(f"{source}: [deliver] {name} {problem.reason}, got {value!r}")
    if problem.kind == "unknown":
        return ConfigError(
            f"{source}: unknown key {name!r}; valid keys: {', '.join(sorted(_RulesFile.model_fields))}"
        )
    if problem.kind in ("greater_than_equal", "finite_number") or problem.reason == "must be a number":
        return ConfigError(f"{source}: {name} must be a number >= 0, got {value!r}")
    return ConfigError(f"{source}: {name} {problem.reason}, got {value!r}")


def check(reader: Any, rules: Rules, now: datetime | None = None) -> list[dict[str, Any]]:
    """The alerts that fire now, each with an ``id`` (rule and subject) and a one-line message."""
    now = (now or reader.now or datetime.now(UTC)).astimezone(UTC)
    recent = (now - timedelta(hours=rules.window_hours), now)
    fired: list[dict[str, Any]] = []

    def fire(rule: str, message: str, subject: str = "", **extra: Any) -> None:
        fired.append(
            {"id": f"{rule}:{subject}" if subject else rule, "rule": rule, "message": message, **extra}
        )

    with reader.session():
        if rules.daily_budget_usd is not None:
            today = (
                reader.query("cost_usd", start=floor_to(now, "day"), end=now, interval=None).total() or 0.0
            )
            if today >= rules.daily_budget_usd:
                fire(
                    "daily_budget",
                    f"today's cost ${today:,.2f} reached the daily budget ${rules.daily_budget_usd:,.2f}",
                    f"{now:%Y-%m-%d}",
                    value=today,
                    threshold=rules.daily_budget_usd,
                )
        if rules.monthly_budget_usd is not None:
            forecast = month_end_forecast(reader, now, rules.monthly_budget_usd)
            so_far = forecast["month_to_date_usd"]
            if so_far >= rules.monthly_budget_usd:
                fire(
                    "monthly_budget",
                    f"this month's cost ${so_far:,.2f} reached the monthly budget "
                    f"${rules.monthly_budget_usd:,.2f}",
                    forecast["month"],
                    value=so_far,
                    threshold=rules.monthly_budget_usd,
                )
            elif rules.forecast_over_budget and forecast["over_budget"]:
                fire(
                    "forecast_over_budget",
                    f"month-end cost forecast ${forecast['projected_usd']:,.2f} is over "
                    f"the monthly budget ${rules.monthly_budget_usd:,.2f} (so far ${so_far:,.2f})",
                    forecast["month"],
                    value=forecast["projected_usd"],
                    threshold=rules.monthly_budget_usd,
                )
        if rules.error_rate_max is not None:
            parts = CATALOGUE["error_rate"]  # errors / inbound messages, as the metric defines it
            errors = reader.query(parts.numerator, start=recent[0], end=recent[1], interval=None).total() or 0
            inbound = (
                reader.query(parts.denominator, start=recent[0], end=recent[1], interval=None).total() or 0
            )
            rate = ratio(errors, inbound)
            if inbound >= rules.min_messages and rate is not None and rate > rules.error_rate_max:
                fire(
                    "error_rate",
                    f"error rate {rate:.1%} over the last {rules.window_hours:g} h "
                    f"({errors:,} errors / {inbound:,} messages) is above {rules.error_rate_max:.1%}",
                    value=rate,
                    threshold=rules.error_rate_max,
                )
        if rules.error_rate_spike:
            yesterday = floor_to(now, "day") - timedelta(days=1)
            watched = [w for w in WATCHED if w.metric == "error_rate"]
            for a in anomalies(reader, yesterday, floor_to(now, "day"), watched=watched):
                fire("error_rate_spike", a["explanation"], a["day"][:10], value=a["value"])
        if rules.p95_latency_ms is not None:
            # One stage's timings: the reply stage unless the rules name another.
            stage_name = rules.latency_stage or getattr(reader, "reply_stage", "reply")
            p95 = reader.query(
                "latency_ms",
                start=recent[0],
                end=recent[1],
                interval=None,
                stat="p95",
                filters={"stage": stage_name},
            ).total()
            if p95 is not None and p95 > rules.p95_latency_ms:
                fire(
                    "p95_latency",
                    f"p95 latency of stage {stage_name} {p95:,.0f} ms over the last {rules.window_hours:g} h "
                    f"is above the target {rules.p95_latency_ms:,.0f} ms",
                    value=p95,
                    threshold=rules.p95_latency_ms,
                )
        if rules.new_error_group or rules.regression:
            for g in reader.error_groups(start=recent[0], end=recent[1]):
                kind = f"{g['error_type'] or 'error'} ({g['category'] or 'uncategorised'})"
                what = f"{kind}: {g['message'] or ''}".strip()
                if rules.new_error_group and g["status"] == "new":
                    fire(
                        "new_error_group",
                        f"new error group {g['fingerprint']}: {what}; {g['count']} times, {g['users']} users",
                        g["fingerprint"],
                        value=g["count"],
                    )
                if rules.regression and g["status"] == "regressed":
                    fire(
                        "regression",
                        f"error group {g['fingerprint']} is back after a quiet week: {what}; "
                        f"{g['count']} times",
                        g["fingerprint"],
                        value=g["count"],
                    )
    for a in fired:
        a["at"] = iso(now)
    return fired
