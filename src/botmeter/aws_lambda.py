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
  ``GET /errors?days=7``, ``GET /dashboard?days=30`` (the dashboard's figures as JSON), answered
  as a proxy response; ``format=text|markdown|slack|sms`` on the first three gives that form
  instead of JSON (``report.responses``);
* an EventBridge scheduled event: the summary of the last ``BOTMETER_REPORT_DAYS`` days (or the
  event's ``detail.days``) sent to ``BOTMETER_REPORT_WEBHOOK`` and/or ``BOTMETER_REPORT_SNS_TOPIC``;
* an Amazon Bedrock agent action-group request for ``get_costs``, ``get_summary`` or
  ``get_metric``, answered in the function-details response format with a short text.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import logging
import os
import re
import urllib.parse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from .exceptions import BotmeterError

if TYPE_CHECKING:
    from .facade import Meter

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
                    log.warning(
                        "botmeter: not everything tracked in this invocation is stored or spooled (flush "
                        "timed out, the store and spool are failing, or events were lost: meter.stats())"
                    )

        return invoke  # type: ignore[return-value]

    return decorate


# -- botmeter's own function: HTTP, schedules, Bedrock agents ----------------------------------------
# Everything heavy (the analysis, boto3) is imported when an event needs it, so a bot that only
# uses flush_after does not pay for it on a cold start.

# A Bedrock agent's functions: the answer each gives, the parameters it takes, and those it fixes.
BEDROCK_FUNCTIONS: dict[str, tuple[str, frozenset[str], dict[str, str]]] = {
    "get_costs": ("costs", frozenset({"days"}), {}),
    "get_summary": ("summary", frozenset({"days"}), {}),
    "get_metric": ("metric", frozenset({"metric", "days", "by"}), {"interval": "none"}),
}


class BadInput(BotmeterError, ValueError):
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
    from .store import open_store

    config = Config.resolve()
    # A file another process holds is waited for BOTMETER_LOCK_TIMEOUT at most, then 503.
    store = open_store(config.store, lock_timeout=config.lock_timeout)
    return Reader(
        store,
        session_gap_minutes=config.session_gap_minutes,
        reply_stage=config.reply_stage,
        hash_key=config.hash_key,
    )


# -- API Gateway --------------------------------------------------------------------------------------


def _response(status: int, payload: Any, headers: dict[str, str] | None = None) -> dict[str, Any]:
    from .report.responses import api_gateway_response, json_default

    return api_gateway_response(status, json.dumps(payload, default=json_default), headers=headers)


def _text_field(value: Any, field: str, default: str = "") -> str:
    if value is None:
        return default
    if not isinstance(value, str):
        raise BadInput(field, f"{field}: expected text, got {type(value).__name__}")
    return value


def _mapping(value: Any, field: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadInput(field, f"{field}: expected an object, got {type(value).__name__}")
    return value


def _query_values(value: Any, field: str, multi: bool) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, given in _mapping(value, field).items():
        values = given if multi else [given]
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise BadInput(
                field, f"{field}: {str(name)[:40]!r} must be {'a list of texts' if multi else 'text'}"
            )
        out[str(name)] = list(values)
    return out


def _request(event: dict[str, Any]) -> tuple[str, str, dict[str, list[str]]]:
    """(method, path, query parameters) of a REST API (1.0) or HTTP API (2.0) proxy event. An
    event of another shape (a field of the wrong type, a body these routes do not take) is
    ``BadInput`` naming the field."""
    context = _mapping(event.get("requestContext"), "requestContext")
    _mapping(event.get("headers"), "headers")
    body = event.get("body")
    encoded = event.get("isBase64Encoded", False)
    if not isinstance(encoded, bool):
        raise BadInput("isBase64Encoded", f"isBase64Encoded: expected true or false, got {encoded!r:.40}")
    if body not in (None, ""):
        # Every route is a GET with its parameters in the query string: a body is a mistake.
        if not isinstance(body, str):
            raise BadInput("body", f"body: expected text, got {type(body).__name__}")
        if encoded:
            try:
                base64.b64decode(body, validate=True)
            except (ValueError, binascii.Error):
                raise BadInput("body", "body: isBase64Encoded is true but the body is not base64") from None
        raise BadInput("body", "body: these routes take no body; give parameters in the query string")
    if event.get("version") == "2.0":
        http = _mapping(context.get("http"), "requestContext.http")
        method = _text_field(http.get("method"), "requestContext.http.method", "GET")
        path = _text_field(event.get("rawPath"), "rawPath") or _text_field(http.get("path"), "path") or "/"
        raw = _text_field(event.get("rawQueryString"), "rawQueryString")
        try:
            params = {k: v for k, v in urllib.parse.parse_qs(raw, strict_parsing=bool(raw)).items()}
        except ValueError:
            raise BadInput("rawQueryString", f"rawQueryString: {raw[:60]!r} is not a query string") from None
        if not params:
            single = _query_values(event.get("queryStringParameters"), "queryStringParameters", False)
            params = {k: v[0].split(",") for k, v in single.items()}
        stage = _text_field(context.get("stage"), "requestContext.stage")
        if stage and stage != "$default" and (path == f"/{stage}" or path.startswith(f"/{stage}/")):
            path = path[len(stage) + 1 :] or "/"  # HTTP API paths carry a named stage
    else:
        method = _text_field(event.get("httpMethod"), "httpMethod") or _text_field(
            context.get("httpMethod"), "requestContext.httpMethod", "GET"
        )
        path = _text_field(event.get("path"), "path") or "/"
        multi = _query_values(
            event.get("multiValueQueryStringParameters"), "multiValueQueryStringParameters", True
        )
        single = _query_values(event.get("queryStringParameters"), "queryStringParameters", False)
        params = multi or single
    if any(ord(c) < 32 for c in path):
        raise BadInput("path", "path: contains control characters")
    return method.upper(), "/" + path.strip("/"), params


def _http(event: dict[str, Any], reader: Callable[[], Any] | None = None) -> dict[str, Any]:
    """An API Gateway request onto the answers layer: the path picks the answer
    (``answers.http_route``), the query string is its raw parameters, the report goes out as a
    proxy response in the ``format`` asked for. ``reader`` opens the store to read (by default the
    one ``BOTMETER_STORE`` names; ``botmeter serve`` passes its own, so both answer alike)."""
    from . import answers
    from .report import responses

    try:
        method, path, params = _request(event)
        route = answers.http_route(path)
        if route is None:
            raise BadInput("path", f"path: no such resource {path!r}; try {answers.HTTP_PATHS}", 404)
        if method not in ("GET", "HEAD"):
            raise BadInput("method", f"method: {method} is not allowed here; use GET", 405)
        if not route.formats:
            report = route.reply(answers.Later(reader or _reader), params)
            data = dict(report.data)
            data["store"] = _store_label()  # a name, not the function's file system
            return _public(_response(200, data))
        fmt = params.pop("format", ["json"])[-1]
        if fmt not in responses.API_FORMATS:
            raise BadInput(
                "format", f"format: expected one of {', '.join(responses.API_FORMATS)}, got {fmt!r}"
            )
        report = route.reply(answers.Later(reader or _reader), params, also=("format",))
        return _public(responses.to_api_gateway(report, 200, fmt))
    except BotmeterError as exc:
        status, payload = answers.http_error(exc)
        if status == 503:
            log.warning("botmeter: the store could not answer: %s", exc)  # the details, for the log only
        headers = {"allow": "GET, HEAD"} if status == 405 else None
        response = _response(status, payload, headers)
        return _public(response) if status >= 422 else response  # a store's words may name its files
    except Exception:
        log.exception("botmeter: the HTTP request failed")
        return _response(500, {"error": "botmeter failed to answer; the function's log has the details"})


def _store_label() -> str:
    """The store as a caller may see it: its kind and file or namespace name, no directory."""
    from .answers.status import store_name
    from .config import Config

    return store_name(Config.resolve().store)


def _private_strings() -> list[str]:
    """What a caller must not learn about the function: where the store and Python live."""
    import sys

    from .config import Config

    found = []
    try:
        url = Config.resolve().store
        path = url.split("://", 1)[-1].split("?", 1)[0]
        if path.startswith("/"):
            found += [path, os.path.dirname(path)]
    except Exception:  # a store setting that does not resolve has nothing to hide
        pass
    for value in (sys.executable, os.path.realpath(sys.executable), sys.prefix, sys.base_prefix, os.getcwd()):
        if value and value != "/":
            found.append(value)
    return sorted({f for f in found if len(f) > 1}, key=len, reverse=True)


# DuckDB names who holds a file: 'held in /usr/bin/python3.12 (PID 1234) by user root'.
_PROCESS_FACTS = re.compile(
    r"(?i)(?:is )?held in \S+ \(pid[ :=]*\d+\)(?: by user \S+)?|\(?\bpid[ :=]*\d+\)?|/proc/\d+"
)


def _scrubbed(text: str) -> str:
    """``text`` without the store's path, the interpreter's path or a process id (a store's error
    says where its file is and who holds it: that is for the function's log, not the caller)."""
    for private in _private_strings():
        if private in text:
            text = text.replace(private, os.path.basename(private.rstrip("/")) or "(store)")
    return _PROCESS_FACTS.sub(lambda m: "is held by another process" if "held" in m.group() else "", text)


def _public(response: dict[str, Any]) -> dict[str, Any]:
    body = response.get("body")
    if isinstance(body, str):
        response["body"] = _scrubbed(body)
    return response


# -- EventBridge schedule ---------------------------------------------------------------------------


def _scheduled(event: dict[str, Any]) -> dict[str, Any]:
    """Computes the summary and sends it; failures are logged and returned, never raised (a raise
    would make EventBridge retry, and send the report twice)."""
    from . import answers
    from .config import Config
    from .report.responses import json_default, to_slack_blocks, to_text

    out: dict[str, Any] = {"sent": [], "failures": []}
    try:
        if event.get("detail-type") != "Scheduled Event":
            raise BadInput(
                "detail-type", f"detail-type: expected 'Scheduled Event', got {event.get('detail-type')!r}"
            )
        config = Config.resolve()
        detail = event.get("detail") or {}
        if not isinstance(detail, dict):
            raise BadInput("detail", f'detail: expected an object such as {{"days": 7}}, got {detail!r:.40}')
        given = detail.get("days")
        days_text = str(config.report_days) if given is None or given == "" else str(given)
        report = answers.answer("summary", answers.Later(_reader), {"days": days_text})
        summary, days = report.data, report.data["period"]["days"]
        text = to_text(report)
    except Exception as exc:
        log.exception("botmeter: the scheduled report could not be made")
        out["failures"].append(f"report: {exc}")
        return out
    out["days"] = days
    out["text"] = text
    if config.report_webhook:
        from .report.alert_delivery import post_json

        # One payload for any webhook: a Slack incoming webhook reads text and blocks, others the summary.
        payload = {
            "source": "botmeter",
            "text": text,
            "blocks": to_slack_blocks(report)["blocks"],
            "summary": json.loads(json.dumps(summary, default=json_default)),
        }
        problems = post_json(config.report_webhook, payload)
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


def _agent_parameters(raw: Any) -> dict[str, str]:
    """An action group's ``parameters``: a list of {"name", "type", "value"}, values as text."""
    if raw is None:
        return {}
    if not isinstance(raw, list):
        raise BadInput("parameters", f"parameters: expected a list, got {type(raw).__name__}")
    out = {}
    for item in raw:
        name = item.get("name") if isinstance(item, dict) else None
        value = item.get("value") if isinstance(item, dict) else None
        if not isinstance(name, str) or not isinstance(value, str | int | float) or isinstance(value, bool):
            raise BadInput("parameters", f"parameters: expected name and value texts, got {item!r:.60}")
        out[name] = str(value)
    return out


def _bedrock(event: dict[str, Any]) -> dict[str, Any]:
    """A Bedrock agent's function onto the answers layer (``BEDROCK_FUNCTIONS``): the agent's
    parameters are the answer's raw parameters; the report goes back as a function response."""
    from . import answers
    from .analyse.query import FigureUnavailable, QueryError
    from .exceptions import BotmeterError
    from .report import responses

    function = event.get("function") or ""
    state = None
    try:
        params = _agent_parameters(event.get("parameters"))
        if not isinstance(function, str):
            raise BadInput("function", f"function: expected a name such as get_summary, got {function!r:.40}")
        if function in BEDROCK_FUNCTIONS:
            name, offered, fixed = BEDROCK_FUNCTIONS[function]
            if name == "metric" and not params.get("metric"):
                raise BadInput("metric", "metric: which metric? For example cost_usd, messages, active_users")
            # An agent may pass what a function does not take: left out, as the agent's schema may grow.
            raw = {k: v for k, v in params.items() if k in offered}
            raw.update(fixed)
            if name == "metric" and raw.get("by"):
                raw["limit"] = "10"  # an agent reads the largest groups, not a long tail
            report = answers.answer(name, answers.Later(_reader), raw)
        else:
            state = "FAILURE"
            report = responses.message_report(
                f"Unknown function {function!r}; this action group offers {', '.join(BEDROCK_FUNCTIONS)}."
            )
    except (BadInput, answers.ParameterError, QueryError) as exc:
        state, report = "REPROMPT", responses.message_report(f"Please check the request: {exc}")
    except FigureUnavailable as exc:
        report = responses.message_report(f"That figure is not available from this store: {exc}")
    except BotmeterError as exc:
        log.warning("botmeter: the store could not answer: %s", exc)
        message = _scrubbed(f"The analytics store could not answer: {exc}")
        state, report = "FAILURE", responses.message_report(message)
    except Exception:
        log.exception("botmeter: the Bedrock agent request failed")
        state = "FAILURE"
        report = responses.message_report("botmeter failed to answer; the function's log has the details.")
    answer = responses.to_bedrock(report, event, state)
    body = answer["response"]["functionResponse"]["responseBody"]["TEXT"]
    body["body"] = _scrubbed(body["body"])  # a figure's reason may quote the store's own error
    return answer


__all__ = ["COLD_START", "flush_after", "handler"]
