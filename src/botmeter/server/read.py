"""The collector's reading routes: ``/metrics/{metric}``, ``/summary`` and ``/errors`` as the Lambda
function answers them, and ``GET /dashboard``, the HTML dashboard with a form to change its window.

The JSON routes are the Lambda handler's own (``aws_lambda._http``) over the server's store: the
same parameters, the same answers, the same errors, so a client written for one works with the
other. All need a read token (``Authorization: Bearer TOKEN``, or HTTP Basic with the token as the
password, which is how a browser asks for the dashboard).

``/dashboard`` takes ``?days=N`` or ``?start=...&end=...`` (ISO dates or times, UTC; ``end`` not
included) and ``?bot=NAME`` (one bot's events; all bots when empty). The page is the dashboard file
``botmeter dashboard`` writes, plus a plain GET form for those parameters and links between related
panels and to each panel's figures as JSON; it runs no script, and its content security policy
lets its form go to this server only.
"""

from __future__ import annotations

import os
from typing import Any, Final

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from ..analyse import Reader
from ..analyse.catalogue import CATALOGUE
from ..analyse.query import MAX_DAYS, QueryError, days_from_text
from ..exceptions import BotmeterError
from .auth import authenticate
from .collector import Collector

DEFAULT_DAYS: Final = 30
MAX_BOT_LENGTH: Final = 200


class OneBot(Reader):
    """A reader that sees one bot's events: every typed query gets a ``bot`` filter (every metric
    can be split by bot), and error groups are that bot's."""

    def __init__(self, store: Any, bot: str, **options: Any) -> None:
        super().__init__(store, **options)
        self.bot = bot

    def make(self, metric: str, **kw: Any) -> Any:
        kw["filters"] = {**(kw.get("filters") or {}), "bot": [self.bot]}
        return super().make(metric, **kw)

    def error_groups(
        self, days: int | None = 7, *, start: Any = None, end: Any = None, bot: str | None = None
    ) -> list[dict[str, Any]]:
        return super().error_groups(days, start=start, end=end, bot=self.bot)


def _collector(request: Request) -> Collector:
    return request.app.state.collector


def reader_for(request: Request, bot: str | None = None) -> Reader:
    """A reader over the server's own store, with the settings events are processed with (session
    gap, reply stage, the user-hash key); one per request, as a reader's session is not shared."""
    collector = _collector(request)
    config = collector.config.meter_config()
    options: dict[str, Any] = {
        "session_gap_minutes": config.session_gap_minutes,
        "reply_stage": config.reply_stage,
        "hash_key": config.hash_key,
    }
    _made(collector.store)
    if bot is not None:
        return OneBot(collector.store, bot, **options)
    return Reader(collector.store, **options)


def _made(store: Any) -> None:
    """A collector is read before its first event arrives: its store is then made, empty, so that
    the answer is zeros rather than 'no store here'."""
    path = getattr(store, "path", None)
    if path is not None and not os.path.exists(path) and hasattr(store, "writing"):
        with store.writing():
            pass


def _private(request: Request, text: str) -> str:
    """``text`` without the store's directory: a store's error names its file, for the log only."""
    path = getattr(_collector(request).store, "path", None)
    if path is None:
        return text
    for private in (str(path), os.path.dirname(str(path))):
        if len(private) > 1:
            text = text.replace(private, os.path.basename(private) or "(store)")
    return text


def _lambda_event(request: Request) -> dict[str, Any]:
    """The request as an API Gateway HTTP API (2.0) event, the shape ``aws_lambda._http`` reads."""
    path = request.scope.get("path", "/")
    return {
        "version": "2.0",
        "rawPath": path,
        "rawQueryString": request.url.query,
        "headers": {k: v for k, v in request.headers.items() if k != "authorization"},
        "requestContext": {"http": {"method": request.method, "path": path}, "stage": "$default"},
    }


async def lambda_route(request: Request) -> Response:
    """``/metrics/{metric}``, ``/summary``, ``/errors``: answered by the Lambda handler's routes."""
    from .. import aws_lambda

    authenticate(request, "read")
    answer = await run_in_threadpool(aws_lambda._http, _lambda_event(request), lambda: reader_for(request))
    headers = dict(answer.get("headers") or {})
    media_type = headers.pop("content-type", "application/json")
    body = "" if request.method == "HEAD" else _private(request, answer.get("body") or "")
    return Response(body, answer["statusCode"], headers=headers, media_type=media_type)


# -- the dashboard -----------------------------------------------------------------------------------


class BadWindow(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _window(request: Request) -> tuple[dict[str, str], dict[str, Any]]:
    """(the form's values as given, dashboard_data's arguments). Empty fields are absent: a form
    sends every field, filled or not. Start and end given together win over days."""
    given = {name: request.query_params.get(name, "").strip() for name in ("days", "start", "end", "bot")}
    for name in request.query_params:
        if name not in given:
            raise BadWindow(name[:40], f"{name[:40]}: unknown parameter; valid: bot, days, end, start")
        if len(request.query_params.getlist(name)) > 1:
            raise BadWindow(
                name, f"{name}: given {len(request.query_params.getlist(name))} times; give it once"
            )
    if len(given["bot"]) > MAX_BOT_LENGTH or any(ord(c) < 32 for c in given["bot"]):
        raise BadWindow("bot", f"bot: not a bot name ({given['bot'][:40]!r})")
    days: int | None = None
    if given["days"] and not (given["start"] and given["end"]):
        days = days_from_text(given["days"])
        if days is None:
            raise BadWindow(
                "days", f"days: expected a whole number from 1 to {MAX_DAYS}, got {given['days']!r}"
            )
    arguments: dict[str, Any] = {
        "days": days if days is not None or given["start"] or given["end"] else DEFAULT_DAYS,
        "start": given["start"] or None,
        "end": given["end"] or None,
    }
    return given, arguments


def _page(request: Request, given: dict[str, str], arguments: dict[str, Any]) -> str:
    from ..analyse.dashboard_figures import dashboard_data
    from ..report.dashboard import Served, render

    reader = reader_for(request, given["bot"] or None)
    data = dashboard_data(reader, arguments["days"], start=arguments["start"], end=arguments["end"])
    data["store"] = _store_label(request) + (f" · bot {given['bot']}" if given["bot"] else "")
    if given["bot"]:  # each panel's query, shown and linked, is the one that drew it
        for query in data.get("queries", {}).values():
            query["filters"] = {**(query.get("filters") or {}), "bot": [given["bot"]]}
    shown = dict(given)
    if not any(given[k] for k in ("days", "start", "end")):
        shown["days"] = str(DEFAULT_DAYS)
    return render(data, Served(**shown))


def _store_label(request: Request) -> str:
    """The store as a browser may see it: its kind and file name, no directory."""
    url = str(getattr(_collector(request).store, "url", "") or "store")
    scheme, _, rest = url.partition("://") if "://" in url else ("duckdb", "", url)
    return f"{scheme} {rest.split('?', 1)[0].rstrip('/').rsplit('/', 1)[-1]}".strip()


def _headers(served: bool = True) -> dict[str, str]:
    from ..report.dashboard import content_security_policy

    return {
        "content-security-policy": content_security_policy(served),
        "cache-control": "no-store",
        "referrer-policy": "no-referrer",
        "x-content-type-options": "nosniff",
    }


def _problem_page(given: dict[str, str], message: str) -> str:
    """A short page that says what is wrong with the request, with the form to fix it."""
    from ..report.dashboard import Served, draw_controls, page_shell

    return page_shell("botmeter: cannot show this period", draw_controls(Served(**given, error=message)))


async def dashboard(request: Request) -> Response:
    authenticate(request, "read")
    given = {name: request.query_params.get(name, "") for name in ("days", "start", "end", "bot")}
    try:
        given, arguments = _window(request)
        html = await run_in_threadpool(_page, request, given, arguments)
    except BadWindow as exc:
        return HTMLResponse(_problem_page(given, str(exc)), 400, headers=_headers())
    except QueryError as exc:
        return HTMLResponse(_problem_page(given, str(exc)), 400, headers=_headers())
    except BotmeterError as exc:
        # The store could not answer (held, failing): for the server's log in full, the page in brief.
        import logging

        logging.getLogger("botmeter").warning("botmeter: the dashboard could not be drawn: %s", exc)
        return HTMLResponse(
            _problem_page(given, "the store could not answer just now; try again in a moment"),
            503,
            headers={**_headers(), "retry-after": "5"},
        )
    return HTMLResponse("" if request.method == "HEAD" else html, headers=_headers())


routes: list[Route] = [
    Route("/metrics/{metric}", lambda_route, methods=["GET", "HEAD"]),
    Route("/summary", lambda_route, methods=["GET", "HEAD"]),
    Route("/errors", lambda_route, methods=["GET", "HEAD"]),
    Route("/dashboard", dashboard, methods=["GET", "HEAD"]),
]

__all__ = ["OneBot", "dashboard", "lambda_route", "reader_for", "routes"]

# -- /openapi.json -----------------------------------------------------------------------------------


def _parameter(name: str, description: str, schema: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
        **more,
    }


# A parameter given empty (days=) is absent, as a plain HTML form sends the fields left blank.
_BLANK: dict[str, Any] = {"type": "string", "maxLength": 0}


def _number(minimum: int, maximum: int) -> dict[str, Any]:
    return {"anyOf": [{"type": "integer", "minimum": minimum, "maximum": maximum}, _BLANK]}


_DAYS = _parameter(
    "days", "the last N days, today so far included (empty: the default)", _number(1, MAX_DAYS)
)
_START = _parameter("start", "start of the window, ISO 8601 (UTC when no zone is given)", {"type": "string"})
_END = _parameter("end", "end of the window (not included), ISO 8601", {"type": "string"})
_FORMAT = _parameter(
    "format",
    "the answer's form (empty: json)",
    {"type": "string", "enum": ["json", "text", "sms", "markdown", "slack", ""], "default": "json"},
)
_ERROR = {
    "type": "object",
    "properties": {"error": {"type": "string"}, "field": {"type": "string"}},
    "required": ["error"],
}
_ANSWERED = {
    "application/json": {"schema": {"type": "object"}},
    "text/plain": {"schema": {"type": "string"}},
    "text/markdown": {"schema": {"type": "string"}},
}


def _errors(*, html: bool = False) -> dict[str, Any]:
    content = (
        {"text/html": {"schema": {"type": "string"}}} if html else {"application/json": {"schema": _ERROR}}
    )
    return {
        "400": {"description": "a parameter is wrong; the answer names it", "content": content},
        "401": {"description": "no valid token (a browser is asked for HTTP Basic, the token as password)"},
        "403": {"description": "the token has no read scope"},
        "503": {"description": "the store could not answer just now", "content": content},
    }


def _reading(summary: str, parameters: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "security": [{"bearer": []}, {"basic": []}],
            "parameters": parameters,
            "responses": {"200": {"description": "the answer", "content": _ANSWERED}, **_errors(), **extra},
        }
    }


openapi_paths: dict[str, Any] = {
    "/metrics/{metric}": _reading(
        "One metric of the catalogue over a window (as botmeter query answers it)",
        [
            {
                "name": "metric",
                "in": "path",
                "required": True,
                "description": "a metric of the catalogue (botmeter metrics lists them)",
                "schema": {"type": "string", "enum": sorted(CATALOGUE)},
            },
            _DAYS,
            _START,
            _END,
            _parameter("by", "a dimension to split by (provider, model, bot...)", {"type": "string"}),
            _parameter("stat", "which statistic (p50, p95, avg...)", {"type": "string"}),
            _parameter("interval", "hour, day, week, month or none", {"type": "string"}),
            _parameter(
                "filter",
                "dimension=value (values joined by |); may be given several times",
                {"type": "array", "items": {"type": "string"}},
                style="form",
                explode=True,
            ),
            _parameter("limit", "the top N groups", _number(0, 999_999)),
            _FORMAT,
        ],
        **{
            "422": {"description": "this store cannot give this figure", "content": {"application/json": {}}},
        },
    ),
    "/summary": _reading("The period's costs, engagement, errors and speed", [_DAYS, _FORMAT]),
    "/errors": _reading(
        "Error groups (one per fingerprint) with activity in the last days", [_DAYS, _FORMAT]
    ),
    "/dashboard": {
        "get": {
            "summary": "The dashboard page, with a form to change its window and bot",
            "security": [{"basic": []}, {"bearer": []}],
            "parameters": [
                _DAYS,
                _START,
                _END,
                _parameter(
                    "bot",
                    "one bot's events; all bots when empty",
                    {"type": "string", "maxLength": MAX_BOT_LENGTH},
                ),
            ],
            "responses": {
                "200": {
                    "description": "the page (no script)",
                    "content": {"text/html": {"schema": {"type": "string"}}},
                },
                **_errors(html=True),
            },
        }
    },
}
