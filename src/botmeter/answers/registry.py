"""The registry of answers, the one entry every interface calls, and the HTTP routes onto it."""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..exceptions import BotmeterError, InputError
from ..report.responses import Report
from .params import ParameterError, Raw, names, parse


@dataclass(frozen=True)
class Answer:
    """One question botmeter answers: ``function(source, params) -> Report``. ``source`` is a
    ``Reader`` (or what gives one: a meter, a store); ``needs = "meter"`` for botmeter's own
    health, which only the recording meter knows."""

    name: str
    params: type
    function: Callable[[Any, Any], Report]
    help: str
    needs: str = "reader"

    def parameters(self) -> tuple[str, ...]:
        return names(self.params)


ANSWERS: dict[str, Answer] = {}


def register(
    name: str, params: type, help: str, *, needs: str = "reader"
) -> Callable[[Callable[[Any, Any], Report]], Callable[[Any, Any], Report]]:
    """Adds the decorated function to ``ANSWERS`` under ``name``: every interface offers it."""

    def add(function: Callable[[Any, Any], Report]) -> Callable[[Any, Any], Report]:
        ANSWERS[name] = Answer(name, params, function, help, needs)
        return function

    return add


class Later:
    """A source opened only once the parameters have been read, so a request with a bad parameter
    is refused at once, without opening (or waiting on) a store: ``Later(lambda: Reader(url))``."""

    def __init__(self, open_reader: Callable[[], Any]) -> None:
        self._open = open_reader

    def reader(self) -> Any:
        return self._open()


def reader_of(source: Any) -> Any:
    """A ``Reader`` from what an interface holds: a Reader, a meter (``meter.reader()``), a store."""
    from ..analyse.reader import Reader

    if isinstance(source, Reader):
        return source
    if callable(getattr(source, "reader", None)):
        return source.reader()
    return Reader(source)


def parameters(name: str, raw: Raw | None = None, *, accepts: Iterable[str] | None = None) -> Any:
    """The typed parameters of question ``name`` from raw text: what ``answer`` reads first, for
    an interface that checks a request before it opens a store."""
    found = ANSWERS.get(name)
    if found is None:
        raise ParameterError("answer", f"answer: unknown question {name!r}; valid: {', '.join(ANSWERS)}")
    return parse(found.params, raw or {}, None if accepts is None else frozenset(accepts))


def answer(name: str, source: Any, raw: Raw | None = None, *, accepts: Iterable[str] | None = None) -> Report:
    """The answer to question ``name`` (a key of ``ANSWERS``) from ``source`` with parameters as
    raw text (``{"days": "7", "filter": ["model=a|b"]}``), parsed here and nowhere else.
    ``accepts`` limits the parameters to those an interface offers. A parameter that cannot be
    read is a ``ParameterError`` naming it; a query that cannot run, the query's ``QueryError``."""
    params = parameters(name, raw, accepts=accepts)
    found = ANSWERS[name]
    return found.function(source if found.needs == "meter" else reader_of(source), params)


@dataclass(frozen=True)
class Route:
    """An HTTP path onto an answer: the answer, the parameters the path gives (``/metrics/cost_usd``
    gives ``metric``), the query-string parameters it takes, and whether ``format=`` may pick the
    report's form (``/dashboard`` answers its figures as JSON only)."""

    answer: str
    params: dict[str, list[str]] = field(default_factory=dict)
    accepts: frozenset[str] = frozenset()
    formats: bool = True

    def reply(self, source: Any, query: Raw, *, also: Iterable[str] = ()) -> Report:
        """The route's answer to a request's query string. ``also``: the names the server reads
        itself (``format``), listed among the valid ones when a name is refused."""
        offered = self.accepts | set(also)
        for name in query:
            if name not in offered:
                cut = str(name)[:40]
                raise ParameterError(cut, f"{cut}: unknown parameter; valid: {', '.join(sorted(offered))}")
        return answer(self.answer, source, {**query, **self.params})


_WINDOW = frozenset({"days", "start", "end"})
# The HTTP API: the Lambda's API Gateway routes and botmeter's own server take the same paths.
HTTP_ROUTES: dict[str, Route] = {
    "/summary": Route("summary", accepts=frozenset({"days"})),
    "/errors": Route("errors", accepts=frozenset({"days"})),
    "/dashboard": Route("dashboard", accepts=frozenset({"days"}), formats=False),
    "/metrics/{metric}": Route("metric", accepts=_WINDOW | {"by", "stat", "interval", "filter", "limit"}),
}
HTTP_PATHS = "/metrics/{metric}, /summary, /errors, /dashboard"


def http_error(exc: BotmeterError) -> tuple[int, dict[str, Any]]:
    """The HTTP status and JSON body of an error an answer (or the request around it) raised: 400
    naming the field for a bad parameter or query (or the error's own ``status``, such as 404 or
    405), 422 for a figure the store cannot give, 503 for a store that could not answer."""
    from ..analyse.query import FigureUnavailable, QueryError

    if isinstance(getattr(exc, "field", None), str):
        return int(getattr(exc, "status", 400)), {"error": str(exc), "field": exc.field}  # type: ignore[attr-defined]
    if isinstance(exc, QueryError | InputError):
        text = str(exc)
        return 400, {"error": text, "field": text.split(":", 1)[0] if ":" in text else "query"}
    if isinstance(exc, FigureUnavailable):
        return 422, {"error": str(exc), "unavailable": True}
    return 503, {"error": f"the store could not answer: {exc}"}


def http_route(path: str) -> Route | None:
    """The route of an HTTP path (``/metrics/cost_usd`` -> the ``metric`` answer with
    ``metric=cost_usd``), or None when no answer lives there. Segments are percent-decoded."""
    parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/") if p]
    if len(parts) == 2 and parts[0] == "metrics":
        route = HTTP_ROUTES["/metrics/{metric}"]
        return Route(route.answer, {"metric": [parts[1]]}, route.accepts, route.formats)
    if len(parts) == 1 and f"/{parts[0]}" in HTTP_ROUTES:
        return HTTP_ROUTES[f"/{parts[0]}"]
    return None
