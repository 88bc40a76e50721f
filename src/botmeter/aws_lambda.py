"""AWS Lambda: the bot's own handler, flushed at the end of every invocation; and botmeter's own
function, ``botmeter.aws_lambda.handler``, answering HTTP requests, schedules and Bedrock agents.

Lambda freezes the process between invocations, background threads included, so events still
in memory when the handler returns would wait for the next invocation, or be lost with the
container. ``flush_after(meter)`` (or ``@meter.lambda_handler``) flushes in ``finally``, bounded
by the time the invocation has left, and records a cold start (an ``activity`` named
``cold_start``) on the first invocation in the process.

With the CloudWatch store in EMF mode (its default in Lambda) the flush prints metric lines on
stdout, which Lambda sends to CloudWatch Logs: no API call inside the invocation.

``handler(event, context)`` reads the store ``BOTMETER_STORE`` names and answers three kinds of
event (see ``lambda_handler`` below for each shape):

* an API Gateway request (REST API proxy, payload 1.0, or HTTP API, payload 2.0):
  ``GET /metrics/{metric}?days=7&by=model&stat=p95&interval=day``, ``GET /summary?days=7``,
  ``GET /dashboard?days=30`` (the dashboard's figures as JSON), answered as a proxy response;
* an EventBridge scheduled event: the summary of the last ``BOTMETER_REPORT_DAYS`` days (or the
  event's ``detail.days``) sent to ``BOTMETER_REPORT_WEBHOOK`` and/or ``BOTMETER_REPORT_SNS_TOPIC``;
* an Amazon Bedrock agent action-group request for ``get_costs``, ``get_summary`` or
  ``get_metric``, answered in the function-details response format with a short text.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import urllib.parse
from collections.abc import Callable
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from .collect.meter import Meter

log = logging.getLogger("botmeter")
F = TypeVar("F", bound=Callable[..., Any])

COLD_START = "cold_start"
DEFAULT_FLUSH_TIMEOUT = 10.0
_MARGIN_S = 0.5  # left for the handler's own return once the flush is done


def _context_facts(context: Any) -> dict[str, Any]:
    facts = {}
    for name in ("function_name", "function_version", "memory_limit_in_mb", "aws_request_id"):
        value = getattr(context, name, None)
        if value is not None:
            facts[name] = value if isinstance(value, int | float | str) else str(value)
    return facts


def _flush_timeout(context: Any, timeout: float) -> float:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if callable(remaining):
        try:
            left = float(remaining()) / 1000.0 - _MARGIN_S
        except Exception:  # a context of another shape: keep the configured timeout
            return timeout
        return max(0.05, min(timeout, left))
    return timeout


def flush_after(
    meter: Meter, *, timeout: float = DEFAULT_FLUSH_TIMEOUT, cold_start: bool = True
) -> Callable[[F], F]:
    """Decorates a Lambda handler ``handler(event, context)``: flushes ``meter`` when it returns or
    raises, and tracks a ``cold_start`` activity on the first invocation.

    ``timeout`` caps the flush (seconds); it never runs past the invocation's remaining time.
    """

    def decorate(handler: F) -> F:
        first = [True]

        @functools.wraps(handler)
        def invoke(event: Any, context: Any = None, *args: Any, **kwargs: Any) -> Any:
            if first[0]:
                first[0] = False
                if cold_start:
                    try:
                        meter.track_activity(COLD_START, properties=_context_facts(context))
                    except Exception:  # recording must never break the bot's handler
                        log.exception("botmeter: could not record the cold start")
            try:
                return handler(event, context, *args, **kwargs)
            finally:
                if not meter.flush(timeout=_flush_timeout(context, timeout)):
                    log.warning("botmeter: flush at the end of the invocation timed out")

        return invoke  # type: ignore[return-value]

    return decorate


# -- botmeter's own function: HTTP, schedules, Bedrock agents ----------------------------------------
# Everything heavy (the analysis, boto3) is imported when an event needs it, so a bot that only
# uses flush_after does not pay for it on a cold start.

MAX_DAYS = 3650
JSON_HEADERS = {"content-type": "application/json", "cache-control": "no-store"}
BEDROCK_FUNCTIONS = ("get_costs", "get_summary", "get_metric")


class BadInput(ValueError):
    """A request botmeter cannot answer as asked: ``field`` names what to fix."""

    def __init__(self, field: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.field = field
        self.status = status


def handler(event: Any, context: Any = None) -> Any:
    """botmeter's Lambda entry point (``botmeter.aws_lambda.handler``): an API Gateway request, an
    EventBridge scheduled event or a Bedrock agent action-group request, over ``BOTMETER_STORE``."""
    if isinstance(event, dict) and event.get("messageVersion") == "1.0" and "actionGroup" in event:
        return _bedrock(event)
    if isinstance(event, dict) and event.get("source") == "aws.events":
        return _scheduled(event)
    if isinstance(event, dict) and ("httpMethod" in event or "routeKey" in event or "rawPath" in event):
        return _http(event)
    kind = type(event).__name__ if not isinstance(event, dict) else f"keys {sorted(event)[:8]}"
    log.warning("botmeter: unknown Lambda event (%s)", kind)
    return _response(
        400,
        {
            "error": "event: not an API Gateway request, an EventBridge scheduled event or a Bedrock "
            f"agent action-group request ({kind})",
            "field": "event",
        },
    )


def _reader() -> Any:
    from .analyse import Reader
    from .config import Config

    config = Config.resolve()
    return Reader(config.store, session_gap_minutes=config.session_gap_minutes)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        from .analyse.query import iso

        return iso(value)
    return str(value)


def _days(raw: Any, default: int) -> int:
    if raw is None or raw == "":
        return default
    text = str(raw).strip()
    if isinstance(raw, bool) or not re.fullmatch(r"\d{1,5}", text) or not 1 <= int(text) <= MAX_DAYS:
        raise BadInput("days", f"days: expected a whole number from 1 to {MAX_DAYS}, got {raw!r}")
    return int(text)


# -- API Gateway --------------------------------------------------------------------------------------


def _response(status: int, payload: Any, headers: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {**JSON_HEADERS, **(headers or {})},
        "body": json.dumps(payload, default=_json_default),
        "isBase64Encoded": False,
    }


def _request(event: dict[str, Any]) -> tuple[str, str, dict[str, list[str]]]:
    """(method, path, query parameters) of a REST API (1.0) or HTTP API (2.0) proxy event."""
    context = event.get("requestContext") or {}
    if event.get("version") == "2.0":
        method = (context.get("http") or {}).get("method", "GET")
        path = event.get("rawPath") or (context.get("http") or {}).get("path") or "/"
        params = {k: v for k, v in urllib.parse.parse_qs(event.get("rawQueryString") or "").items()}
        if not params:
            params = {k: str(v).split(",") for k, v in (event.get("queryStringParameters") or {}).items()}
        stage = context.get("stage")
        if stage and stage != "$default" and (path == f"/{stage}" or path.startswith(f"/{stage}/")):
            path = path[len(stage) + 1 :] or "/"  # HTTP API paths carry a named stage
    else:
        method = event.get("httpMethod") or context.get("httpMethod") or "GET"
        path = event.get("path") or "/"
        multi = event.get("multiValueQueryStringParameters") or {}
        single = event.get("queryStringParameters") or {}
        params = {k: list(v) for k, v in multi.items()} or {k: [v] for k, v in single.items()}
    return method.upper(), "/" + path.strip("/"), params


def _one(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    if not values:
        return None
    if len(values) > 1 and name not in ("filter",):
        raise BadInput(name, f"{name}: given {len(values)} times; give it once")
    return values[0]


def _http(event: dict[str, Any]) -> dict[str, Any]:
    from .analyse.query import QueryError, Unavailable
    from .exceptions import BotmeterError

    try:
        method, path, params = _request(event)
        parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/") if p]
        known = (len(parts) == 2 and parts[0] == "metrics") or parts in (["summary"], ["dashboard"])
        if not known:
            raise BadInput(
                "path",
                f"path: no such resource {path!r}; try /metrics/{{metric}}, /summary, /dashboard",
                404,
            )
        if method not in ("GET", "HEAD"):
            raise BadInput("method", f"method: {method} is not allowed here; use GET", 405)
        if parts[0] == "metrics":
            payload = _http_metric(parts[1], params)
        elif parts[0] == "summary":
            from .analyse.summary import summarise

            payload = summarise(_reader(), _days(_one(params, "days"), 7))
        else:
            from .analyse.dashboard import dashboard_data

            payload = dashboard_data(_reader(), _days(_one(params, "days"), 30))
        return _response(200, payload)
    except BadInput as exc:
        headers = {"allow": "GET, HEAD"} if exc.status == 405 else None
        return _response(exc.status, {"error": str(exc), "field": exc.field}, headers)
    except QueryError as exc:
        field = str(exc).split(":", 1)[0] if ":" in str(exc) else "query"
        return _response(400, {"error": str(exc), "field": field})
    except Unavailable as exc:
        return _response(422, {"error": str(exc), "unavailable": True})
    except BotmeterError as exc:
        log.warning("botmeter: the store could not answer: %s", exc)
        return _response(503, {"error": f"the store could not answer: {exc}"})
    except Exception:
        log.exception("botmeter: the HTTP request failed")
        return _response(500, {"error": "botmeter failed to answer; the function's log has the details"})


def _http_metric(metric: str, params: dict[str, list[str]]) -> dict[str, Any]:
    known = {"days", "start", "end", "by", "stat", "interval", "filter", "limit"}
    for name in params:
        if name not in known:
            raise BadInput(name, f"{name}: unknown parameter; valid: {', '.join(sorted(known))}")
    filters: dict[str, list[str]] = {}
    for item in params.get("filter", []):
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise BadInput("filter", f"filter: {item!r} is not dimension=value")
        filters.setdefault(name.strip(), []).extend(value.split("|"))
    limit = _one(params, "limit")
    if limit is not None and not re.fullmatch(r"\d{1,6}", limit):
        raise BadInput("limit", f"limit: expected a whole number, got {limit!r}")
    start, end = _one(params, "start"), _one(params, "end")
    days = _days(_one(params, "days"), 7) if (start is None and end is None) or _one(params, "days") else None
    result = _reader().query(
        metric,
        days=days,
        start=start,
        end=end,
        interval=_one(params, "interval") or "day",
        by=_one(params, "by") or (),
        filters=filters,
        stat=_one(params, "stat"),
        limit=int(limit) if limit is not None else None,
    )
    q = result.query
    return {
        "metric": q.metric,
        "unit": result.metric.unit,
        "start": q.start,
        "end": q.end,
        "interval": q.interval or "none",
        "by": list(q.by),
        "stats": list(q.stats),
        "rows": result.json_rows(),
        "notes": result.notes,
        "source": result.source,
    }


# -- EventBridge schedule ---------------------------------------------------------------------------


def _scheduled(event: dict[str, Any]) -> dict[str, Any]:
    """Computes the summary and sends it; failures are logged and returned, never raised (a raise
    would make EventBridge retry, and send the report twice)."""
    from .analyse.summary import as_text, summarise
    from .config import Config

    out: dict[str, Any] = {"sent": [], "failures": []}
    try:
        if event.get("detail-type") != "Scheduled Event":
            raise BadInput(
                "detail-type", f"detail-type: expected 'Scheduled Event', got {event.get('detail-type')!r}"
            )
        config = Config.resolve()
        detail = event.get("detail") or {}
        days = _days(detail.get("days") if isinstance(detail, dict) else None, config.report_days)
        summary = summarise(_reader(), days)
        text = as_text(summary)
    except Exception as exc:
        log.exception("botmeter: the scheduled report could not be made")
        out["failures"].append(f"report: {exc}")
        return out
    out["days"] = days
    out["text"] = text
    if config.report_webhook:
        from .analyse.alerts import _post

        payload = {
            "source": "botmeter",
            "text": text,
            "summary": json.loads(json.dumps(summary, default=_json_default)),
        }
        problems = _post(config.report_webhook, payload)
        (out["failures"] if problems else out["sent"]).extend(
            [f"webhook: {p}" for p in problems] if problems else ["webhook"]
        )
    if config.report_sns_topic:
        try:
            _publish(config.report_sns_topic, f"botmeter summary: last {days} days", text)
            out["sent"].append("sns")
        except Exception as exc:
            log.warning("botmeter: could not publish the report to SNS: %s", exc)
            out["failures"].append(f"sns: {exc}")
    if not (config.report_webhook or config.report_sns_topic):
        log.warning("botmeter: no BOTMETER_REPORT_WEBHOOK or BOTMETER_REPORT_SNS_TOPIC: report not sent")
        out["failures"].append("no destination: set BOTMETER_REPORT_WEBHOOK or BOTMETER_REPORT_SNS_TOPIC")
    for problem in out["failures"]:
        log.warning("botmeter: report: %s", problem)
    return out


def _publish(topic_arn: str, subject: str, text: str) -> None:
    parts = topic_arn.split(":")
    if len(parts) < 6 or parts[0] != "arn" or parts[2] != "sns":
        raise BadInput(
            "BOTMETER_REPORT_SNS_TOPIC", f"BOTMETER_REPORT_SNS_TOPIC: {topic_arn!r} is not an SNS topic ARN"
        )
    import boto3

    client = boto3.session.Session().client("sns", region_name=parts[3])
    # SNS takes at most 256 KB a message and 100 characters of subject.
    body = text.encode()[: 256 * 1024 - 1024].decode(errors="ignore")
    client.publish(TopicArn=topic_arn, Subject=subject[:100], Message=body)


# -- Bedrock agent action groups ----------------------------------------------------------------------


def _bedrock(event: dict[str, Any]) -> dict[str, Any]:
    from .analyse.query import QueryError, Unavailable
    from .exceptions import BotmeterError

    function = event.get("function") or ""
    state = None
    try:
        params = {p.get("name"): p.get("value") for p in event.get("parameters") or [] if isinstance(p, dict)}
        if function == "get_costs":
            text = _costs_text(_reader(), _days(params.get("days"), 7))
        elif function == "get_summary":
            text = _summary_text(_reader(), _days(params.get("days"), 7))
        elif function == "get_metric":
            if not params.get("metric"):
                raise BadInput("metric", "metric: which metric? For example cost_usd, messages, active_users")
            text = _metric_text(
                _reader(), str(params["metric"]), _days(params.get("days"), 7), params.get("by")
            )
        else:
            state = "FAILURE"
            text = f"Unknown function {function!r}; this action group offers {', '.join(BEDROCK_FUNCTIONS)}."
    except (BadInput, QueryError) as exc:
        state, text = "REPROMPT", f"Please check the request: {exc}"
    except Unavailable as exc:
        text = f"That figure is not available from this store: {exc}"
    except BotmeterError as exc:
        state, text = "FAILURE", f"The analytics store could not answer: {exc}"
    except Exception:
        log.exception("botmeter: the Bedrock agent request failed")
        state, text = "FAILURE", "botmeter failed to answer; the function's log has the details."
    function_response: dict[str, Any] = {"responseBody": {"TEXT": {"body": text}}}
    if state:
        function_response["responseState"] = state
    return {
        "messageVersion": "1.0",
        "response": {
            "actionGroup": event.get("actionGroup"),
            "function": function,
            "functionResponse": function_response,
        },
        "sessionAttributes": event.get("sessionAttributes") or {},
        "promptSessionAttributes": event.get("promptSessionAttributes") or {},
    }


def _money(value: Any) -> str:
    return "an unknown amount" if value is None else f"${value:,.2f}"


def _count(value: Any) -> str:
    return "-" if value is None else (f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}")


def _period(days: int) -> str:
    return "today so far" if days == 1 else f"the last {days} days"


def _costs_text(reader: Any, days: int) -> str:
    from .analyse.query import Unavailable

    with reader.session():
        total = reader.query("cost_usd", days=days, interval=None).total()
        by_provider = reader.query("cost_usd", days=days, interval=None, by="provider").rows
        calls = reader.query("llm_calls", days=days, interval=None).total()
        try:
            per_user = reader.query("cost_per_active_user", days=days, interval=None).total()
        except Unavailable:
            per_user = None
    parts = sorted(((r["provider"] or "other"), r["sum"]) for r in by_provider if r["sum"])
    parts.sort(key=lambda p: -p[1])
    text = f"The bot cost {_money(total)} over {_period(days)}"
    if parts:
        text += ": " + ", ".join(f"{_money(v)} {name}" for name, v in parts[:5])
    text += f". {_count(calls)} LLM calls."
    if per_user is not None:
        text += f" {_money(per_user)} per active user."
    return text


def _summary_text(reader: Any, days: int) -> str:
    from .analyse.summary import summarise

    s = summarise(reader, days)
    c, e, r, lat = s["costs"], s["engagement"], s["errors"], s["latency"]

    def delta(fig: dict[str, Any]) -> str:
        ch = fig.get("change")
        return "" if ch is None else f" ({'+' if ch >= 0 else ''}{ch:.0%} vs the previous period)"

    bits = [f"cost {_money(c['total_usd']['value'])}{delta(c['total_usd'])}"]
    for label, fig in (
        ("active users", e["active_users"]),
        ("messages", e["messages"]),
        ("errors", r["errors"]),
    ):
        if fig["value"] is not None:
            bits.append(f"{_count(fig['value'])} {label}{delta(fig)}")
    if r["error_rate"]["value"] is not None:
        bits.append(f"error rate {r['error_rate']['value']:.1%}")
    if lat["p95_ms"]["value"] is not None:
        bits.append(f"p95 latency {lat['p95_ms']['value']:,.0f} ms")
    text = f"Over {_period(days)}: " + ", ".join(bits) + "."
    if s["anomalies"]:
        text += " Unusual: " + "; ".join(a["explanation"] for a in s["anomalies"][:2]) + "."
    if s.get("unavailable"):
        text += " Not available from this store: " + ", ".join(sorted(s["unavailable"])) + "."
    return text


def _metric_text(reader: Any, metric: str, days: int, by: Any) -> str:
    result = reader.query(metric, days=days, interval=None, by=by or (), limit=10 if by else None)
    stat = result.stats[0]
    unit = result.metric.unit

    def show(value: Any) -> str:
        if value is None:
            return "no data"
        if unit == "USD":
            return _money(value)
        return f"{_count(value)} {unit}" if isinstance(value, int | float) else str(value)

    if not result.query.by:
        return f"{metric} over {_period(days)}: {show(result.total())}."
    dim = result.query.by[0]
    rows = sorted(result.rows, key=lambda r: -(r[stat] or 0))
    listed = ", ".join(f"{r[dim] or '(none)'} {show(r[stat])}" for r in rows[:10]) or "no data"
    return f"{metric} over {_period(days)} by {dim}: {listed}."


__all__ = ["COLD_START", "flush_after", "handler"]
