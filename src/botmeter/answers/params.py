"""The parameters of the questions botmeter answers, parsed once from raw text.

A parameter arrives as text from a command-line option, a chat command's argument, an HTTP query
string or a Bedrock agent's parameters: ``{"days": "7", "filter": ["model=a|b"]}``. Each answer
declares a frozen dataclass of typed parameters; ``parse`` fills it from the raw text and a value
it cannot read is a ``ParameterError`` naming the parameter and the value. What depends on the
data (a metric's dimensions and statistics, a window's bounds) is checked by the query itself.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from ..analyse.query import INTERVALS, MAX_DAYS, QueryError, days_from_text, utc
from ..exceptions import InputError

# Raw parameters as they arrive: one text, or several for a parameter given more than once.
Raw = Mapping[str, "str | Sequence[str] | None"]

P = TypeVar("P")


class ParameterError(InputError):
    """A parameter of a question that cannot be read as given; ``field`` names it (``days``,
    ``filter``...) and the message starts with it and shows the value."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


# -- one parser per parameter name: the same reading on every interface -------------------------


def _days(name: str, text: str) -> int:
    days = days_from_text(text)
    if days is None:
        raise ParameterError(name, f"{name}: expected a whole number from 1 to {MAX_DAYS}, got {text!r}")
    return days


def _time(name: str, text: str) -> datetime:
    try:
        return utc(text, name)
    except QueryError as exc:  # the query's own message: field, value and an example
        raise ParameterError(name, str(exc)) from None


def _whole(name: str, text: str) -> int:
    # The range is the query's to check (its message gives the bounds); six digits at most here.
    if not re.fullmatch(r"\d{1,6}", text.strip()):
        raise ParameterError(name, f"{name}: expected a whole number, got {text!r}")
    return int(text)


def _interval(name: str, text: str) -> str | None:
    if text == "none":
        return None
    if text not in INTERVALS:
        raise ParameterError(name, f"{name}: {text!r} is not one of {', '.join(INTERVALS)} or none")
    return text


def _names(name: str, text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _zone(name: str, text: str) -> str:
    try:
        ZoneInfo(text)
    except (ValueError, KeyError, OSError):
        raise ParameterError(
            name, f"{name}: {text!r} is not an IANA time zone such as UTC, Europe/London or America/New_York"
        ) from None
    return text


def _budget(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ParameterError(name, f"{name}: {text!r} is not a budget: give a positive amount in USD")
    return value


def _text(name: str, text: str) -> str:
    return text


def _filters(name: str, texts: Sequence[str]) -> dict[str, list[str]]:
    """``dim=a|b`` (repeatable): the only place a filter is read from text."""
    out: dict[str, list[str]] = {}
    for item in texts:
        dim, sep, value = item.partition("=")
        if not sep or not dim.strip():
            raise ParameterError(name, f"{name}: {item!r} is not dimension=value")
        out.setdefault(dim.strip(), []).extend(value.split("|"))
    return out


PARSERS: dict[str, Callable[[str, Any], Any]] = {
    "days": _days,
    "start": _time,
    "end": _time,
    "tz": _zone,
    "interval": _interval,
    "by": _names,
    "stat": _names,
    "limit": _whole,
    "periods": _whole,
    "top": _whole,
    "budget": _budget,
}
REPEATABLE = {"filter": _filters}  # parameters that may be given more than once


def raw_name(f: Any) -> str:
    """The name a parameter has where it is typed (``filter``), which may differ from the field's."""
    return f.metadata.get("raw", f.name)


def names(model: type) -> tuple[str, ...]:
    return tuple(raw_name(f) for f in fields(model))


def _values(raw: Raw, name: str) -> list[str]:
    value = raw.get(name)
    if value is None:
        return []
    given = [value] if isinstance(value, str) else list(value)
    if not all(isinstance(v, str) for v in given):
        raise ParameterError(name, f"{name}: expected text, got {value!r:.60}")
    return [v.strip() for v in given if v.strip()]  # an empty value is a value left out


def parse(model: type[P], raw: Raw, accepts: set[str] | frozenset[str] | None = None) -> P:
    """``model`` from raw text. ``accepts``: the parameters this interface offers (default: all of
    the model's); any other name is refused, listing the valid ones."""
    known = set(names(model))
    offered = known if accepts is None else set(accepts)
    for name in raw:
        if name not in known or name not in offered:
            cut = str(name)[:40]
            valid = ", ".join(sorted(offered))
            raise ParameterError(cut, f"{cut}: unknown parameter; valid: {valid or 'none'}")
    kw: dict[str, Any] = {}
    for f in fields(model):
        name = raw_name(f)
        values = _values(raw, name)
        if not values:
            continue
        if name in REPEATABLE:
            kw[f.name] = REPEATABLE[name](name, values)
            continue
        if len(values) > 1:
            raise ParameterError(name, f"{name}: given {len(values)} times; give it once")
        kw[f.name] = PARSERS.get(name, _text)(name, values[0])
    return model(**kw)


# -- the parameter models ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """The last ``days`` days (today so far and the days before it), or ``start`` to ``end``."""

    days: int | None = None
    start: datetime | None = None
    end: datetime | None = None


@dataclass(frozen=True)
class Days:
    days: int = 7


@dataclass(frozen=True)
class SummaryParams:
    days: int = 7
    rules: str | None = None  # alert rules (TOML) whose fired alerts the summary lists


@dataclass(frozen=True)
class MetricParams:
    metric: str = ""
    days: int | None = None
    start: datetime | None = None
    end: datetime | None = None
    interval: str | None = "day"
    by: tuple[str, ...] = ()
    filters: dict[str, list[str]] = field(default_factory=dict, metadata={"raw": "filter"})
    stat: tuple[str, ...] | None = None
    periods: int = 8
    limit: int | None = None
    bot: str | None = None  # a filter on the bot, said the short way


@dataclass(frozen=True)
class ExploreParams:
    top: int = 5


@dataclass(frozen=True)
class DashboardParams:
    days: int | None = None  # 30 when no window is given
    start: datetime | None = None
    end: datetime | None = None
    tz: str = "UTC"
    budget: float | None = None
    rules: str | None = None


@dataclass(frozen=True)
class AlertsParams:
    rules: str = ""


@dataclass(frozen=True)
class NoParams:
    pass
