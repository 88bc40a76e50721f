"""The dashboard's JSON, as pydantic models; ``dashboard.schema.json`` beside this module is generated
from them (``python -m botmeter.report.dashboard_schema`` rewrites it, and a test checks it is current).

A new key is a minor change; a renamed or retyped one raises ``SCHEMA_VERSION``. A key the JSON may
leave out has a default; ``X | None`` is a figure that may be null (listed under ``unavailable``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import GenerateJsonSchema

from ..analyse.dashboard_figures import SCHEMA, SCHEMA_VERSION

SCHEMA_FILE = Path(__file__).with_name("dashboard.schema.json")


class Period(BaseModel):
    days: int = Field(ge=1)
    start: str
    end: str
    previous_start: str
    previous_end: str


class KpiChange(BaseModel):
    value: float | None
    previous: float | None
    change: float | None = Field(description="(value - previous) / previous; null when too little data")
    note: str = None


class Kpis(BaseModel):
    cost_usd: KpiChange
    active_users: KpiChange
    conversations: KpiChange
    messages: KpiChange
    error_rate: KpiChange
    latency_p95_ms: KpiChange
    reply_failure_rate: KpiChange = Field(
        None, description="failed replies / inbound messages (see the metric reply_failure_rate)"
    )
    reply_latency_p95_s: KpiChange = Field(
        None, description="p95 of the reply stage's timings, seconds (the headline reply latency)"
    )


class DailyByModel(BaseModel):
    bucket: str = Field(description="start of the UTC bucket, ISO 8601")
    provider: str | None
    model: str | None
    value: float | None


class DailyValue(BaseModel):
    bucket: str = Field(description="start of the UTC bucket, ISO 8601")
    value: float | None


class ByUser(BaseModel):
    user: str | None
    value: float | None
    messages: int | None = Field(
        None, description="messages in and out in the period (null for the events without a user)"
    )
    country: str | None = Field(
        None, description="the user's country (ISO code of their messages; the largest if several)"
    )


class ByConversation(BaseModel):
    conversation: str | None
    value: float | None


class Forecast(BaseModel):
    month: str
    month_to_date_usd: float
    daily_rate_usd: float
    days_left: float
    projected_usd: float
    method: str
    budget_usd: float | None = None
    over_budget: bool | None = None
    days_of_data: int = Field(
        None, description="complete days with cost the daily rate averages (0: the month so far)"
    )


class Distribution(BaseModel):
    p10: float | None
    p25: float | None
    p50: float | None
    p75: float | None
    p90: float | None
    max: float | None
    avg: float | None
    count: float | None


class CohortRow(BaseModel):
    bucket: str
    period: int
    cohort_users: int
    active_users: int | None
    value: float | None


class ByActivity(BaseModel):
    name: str | None
    value: float | None


class TrafficHeatmap(BaseModel):
    weekdays: Annotated[list[str], Field(min_length=7, max_length=7)]
    hours: Annotated[list[int], Field(min_length=24, max_length=24)]
    counts: Annotated[
        list[Annotated[list[float], Field(min_length=24, max_length=24)]], Field(min_length=7, max_length=7)
    ]
    timezone: str = Field(description="the IANA zone of the weekdays and hours")


class DailyErrorsByCategory(BaseModel):
    bucket: str = Field(description="start of the UTC bucket, ISO 8601")
    category: str | None
    severity: str | None
    value: float | None


class ErrorGroupRow(BaseModel):
    fingerprint: str
    count: int
    users: int
    conversations: int
    first_seen: str
    last_seen: str
    error_type: str | None
    category: str | None
    severity: str | None
    message: str | None
    status: Literal["new", "regressed", "ongoing"]
    daily: list[int] = Field(description="errors per day of the period")


class DailyLatency(BaseModel):
    bucket: str = Field(description="start of the UTC bucket, ISO 8601")
    p50: float | None
    p95: float | None
    p99: float | None
    stage: str | None


class StageLatency(BaseModel):
    stage: str | None
    p50: float | None
    p95: float | None
    count: float | None
    p99: float | None


class ModelLatency(BaseModel):
    provider: str | None
    model: str | None
    p50: float | None
    p95: float | None
    count: float | None


class AnomalyRow(BaseModel):
    model_config = ConfigDict(extra="allow")
    metric: Any
    day: Any
    direction: Any
    value: Any
    baseline_median: Any
    score: Any
    explanation: Any


class AlertRow(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: Any
    rule: Any
    message: Any


class QueryArguments(BaseModel):
    model_config = ConfigDict(extra="allow")
    metric: Any
    start: Any
    end: Any


class ByKind(BaseModel):
    kind: str | None
    value: float | None


class BySmsRoute(BaseModel):
    country: str | None
    direction: str | None
    value: float | None


class ByApiOperation(BaseModel):
    provider: str | None
    name: str | None
    value: float | None


class ByModel(BaseModel):
    provider: str | None
    model: str | None
    value: float | None


class ByCountry(BaseModel):
    country: str | None
    value: float | None


class ByStage(BaseModel):
    stage: str | None
    value: float | None


class CostDriver(BaseModel):
    dimension: Literal["country", "model", "user"]
    name: str
    current_usd: float
    previous_usd: float
    change_usd: float


class CostChange(BaseModel):
    change_usd: float | None
    drivers: list[CostDriver]


class CacheSavingRow(BaseModel):
    provider: str | None
    model: str | None
    input_tokens: float
    cached_tokens: float
    cache_hit_rate: float | None
    saved_usd: float | None


class DashboardFigures(BaseModel):
    """What `botmeter dashboard --json` writes beside the HTML: every figure the dashboard shows. Series
    are per UTC day of the period unless said otherwise; `queries` gives the `botmeter query` arguments
    of each. A figure the store cannot give is null and listed under `unavailable`."""

    schema_: Literal[SCHEMA] = Field(alias="schema")
    version: Literal[SCHEMA_VERSION] = Field(
        description=(
            "2: latency is the reply stage; latency_by_stage (with the reply stage's p50/p95/p99) and "
            "latency_by_model are period tables; new cost breakdowns"
        ),
    )
    generated_at: str = Field(description="the 'now' the period ends at, ISO 8601 UTC")
    store: str = Field(description="the store's file, or its kind")
    period: Period
    kpis: Kpis = Field(
        description="the period against the previous period of equal length (botmeter summary)"
    )
    cost_by_model: list[DailyByModel] | None = Field(description="cost_usd per day by provider and model")
    cost_per_conversation: list[DailyValue] | None = Field(description="USD per conversation, per day")
    cost_per_active_user: list[DailyValue] | None = Field(description="USD per active user, per day")
    top_users: list[ByUser] | None = Field(description="largest cost_usd per (hashed) user over the period")
    top_conversations: list[ByConversation] | None = Field(description="largest cost_usd per conversation")
    forecast: Forecast | None
    active_users: list[DailyValue] | None = Field(
        description="distinct users with an inbound message, per day"
    )
    new_users: list[DailyValue] | None = Field(description="users first seen that day")
    returning_users: list[DailyValue] | None = Field(description="active users first seen before that day")
    conversations: list[DailyValue] | None = Field(
        description="distinct conversations with a message, per day"
    )
    messages: list[DailyValue] | None = Field(description="messages in and out, per day")
    conversation_length: Distribution | None = Field(
        description="messages per conversation started in the period"
    )
    conversation_duration: Distribution | None = Field(
        description="seconds from first to last message, per conversation started in the period"
    )
    retention: list[CohortRow] | None = Field(
        description="weekly cohorts (at least 8 weeks back): share active N weeks later"
    )
    activities: list[ByActivity] | None = Field(description="activity events by name over the period")
    traffic_heatmap: TrafficHeatmap | None
    errors_by_category: list[DailyErrorsByCategory] | None = Field(
        description="error events per day by category and severity"
    )
    error_rate: list[DailyValue] | None = Field(description="errors / inbound messages, per day")
    error_groups: list[ErrorGroupRow] | None
    latency: list[DailyLatency] | None = Field(
        description=(
            "latency_ms per day and stage: p50, p95, p99 (the reply stage's rows are the reply time per day)"
        ),
    )
    latency_by_stage: list[StageLatency] | None = Field(
        description=(
            "latency_ms over the period per stage: p50, p95, p99 and how many timings (the reply "
            "stage's row is the period's reply latency)"
        ),
    )
    latency_by_model: list[ModelLatency] | None = Field(
        description="latency_ms of LLM calls over the period per provider and model: p50, p95, count"
    )
    anomalies: list[AnomalyRow]
    alerts: list[AlertRow]
    summary: dict[str, Any] = Field(
        description="the full period summary, as `botmeter summary --format json` gives it"
    )
    queries: dict[str, QueryArguments] = Field(
        description=(
            "per series key: the botmeter query arguments (metric, start, end, interval, by, stat, limit)"
        ),
    )
    unavailable: dict[str, str] = Field(description="figure -> why this store cannot give it")
    cost_by_kind: list[ByKind] | None = Field(description="cost_usd over the period per event kind")
    sms_cost: list[BySmsRoute] | None = Field(
        description="cost_usd of SMS segments over the period per country and direction"
    )
    sms_segments: list[BySmsRoute] | None = Field(
        None, description="SMS segments over the period per country and direction"
    )
    sms_messages: list[BySmsRoute] | None = Field(
        None, description="SMS messages over the period per country and direction"
    )
    api_cost: list[ByApiOperation] | None = Field(
        None, description="cost_usd of paid API calls over the period per provider and operation name"
    )
    api_calls: list[ByApiOperation] | None = Field(
        None, description="paid API calls over the period per provider and operation name"
    )
    llm_cost: list[ByModel] | None = Field(
        description="cost_usd of LLM calls over the period per provider and model (null: no price)"
    )
    llm_calls: list[ByModel] | None = Field(
        None, description="LLM calls over the period per provider and model"
    )
    llm_input_tokens: list[ByModel] | None = Field(
        None, description="prompt tokens over the period per provider and model"
    )
    llm_cached_tokens: list[ByModel] | None = Field(
        None, description="prompt tokens read from the provider's cache, per provider and model"
    )
    llm_unpriced: list[ByModel] | None = Field(
        None, description="LLM calls without a price, per provider and model"
    )
    cost_by_country: list[ByCountry] | None = Field(None, description="cost_usd over the period per country")
    cost_by_country_previous: list[ByCountry] | None = Field(
        None, description="cost_usd over the previous period per country"
    )
    cost_by_provider_model_previous: list[ByModel] | None = Field(
        None, description="cost_usd over the previous period per provider and model"
    )
    top_users_previous: list[ByUser] | None = Field(
        None, description="the largest cost_usd per user over the previous period"
    )
    errors_by_model: list[ByModel] | None = Field(
        None, description="errors over the period per provider and model"
    )
    errors_by_stage: list[ByStage] | None = Field(
        None,
        description=(
            "errors over the period per stage (null where the store cannot break errors down by stage)"
        ),
    )
    timezone: str = Field(
        description="IANA time zone hours, weekdays and times are shown in (--tz); days stay UTC days"
    )
    cost_change: CostChange = Field(
        description="the cost against the previous period, and what moved it most"
    )
    cache_savings: list[CacheSavingRow] | None = Field(
        description=(
            "per provider and model: prompt tokens, cached ones, their share, and what the cache saved "
            "at list prices (null: no price)"
        ),
    )
    reply_stage: str = Field(None, description="the stage whose timings are the reply latency")
    reply_failure_rate: list[DailyValue] | None = Field(
        None, description="failed replies / inbound messages, per day (metric reply_failure_rate)"
    )


class _WithoutTitles(GenerateJsonSchema):
    """pydantic titles every field and model after its Python name; the file reads better without."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the dashboard's JSON, from ``DashboardFigures``."""
    generated = DashboardFigures.model_json_schema(schema_generator=_WithoutTitles)
    for definition in generated.get("$defs", {}).values():
        definition.pop("title", None)
    generated.pop("title", None)
    generated["description"] = " ".join(generated["description"].split())  # the docstring, unwrapped
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"{SCHEMA}/{SCHEMA_VERSION}",
        "title": f"botmeter dashboard figures, version {SCHEMA_VERSION}",
        **generated,
    }


def schema_text() -> str:
    """The schema file's text, as committed."""
    return json.dumps(json_schema(), indent=1, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    SCHEMA_FILE.write_text(schema_text())
    sys.stdout.write(f"wrote {SCHEMA_FILE}\n")
