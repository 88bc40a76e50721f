"""Cost of LLM calls, API calls and SMS, from genai-prices' bundled data or the user's own price list.

Prices are applied on the writer thread in large batches, so the per-event work is a dict lookup and a
few multiplications. For each (provider, model) the genai-prices model is resolved once; for each of
its price periods (start dates, time-of-day windows, input-size tiers) genai-prices itself is asked for
the per-token coefficients once, and those coefficients are checked against genai-prices' exact
``calc_price`` before they are trusted. Anything that cannot be reduced to coefficients is priced by
genai-prices per event.

Only the price data bundled with the installed genai-prices is used: nothing here touches the network.

Token conventions (those of ``track_llm_call``):

* ``input_tokens`` is the whole prompt, cached reads and cache writes included, so the uncached part is
  ``input_tokens - cached_tokens - cache_write_tokens``;
* ``output_tokens`` is the whole completion, reasoning included; reasoning tokens cost the output
  price unless genai-prices has a distinct reasoning price for the model.
"""

from __future__ import annotations

import json
import math
import tomllib
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import cache
from importlib.metadata import version as _dist_version
from itertools import repeat
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, model_validator

from ..exceptions import ConfigError, InputError
from ..validation import Amount, Problem, Text, first_problem, refuse

__all__ = (
    "LlmPricer",
    "PriceList",
    "PriceListError",
    "TokenPrice",
    "UnitPrice",
    "UnitPricer",
    "price_units",
    "prices_version",
)

# (fixed cost per call, uncached input, cache read, cache write, non-reasoning output, reasoning) in USD
# per token, then the price_version string. A plain tuple so the hot loop can unpack it in one step.
_Coefs = tuple[float, float, float, float, float, float, str]

_DAY = 86_400.0
_PROBE_TOKENS = 1_000_000
# Coefficients must reproduce genai-prices to this relative tolerance or the model is priced exactly.
_VERIFY_REL_TOL = 1e-9
# Caches keyed by caller-supplied strings are cleared past this size so junk model names can't grow them.
_MAX_KEYS = 20_000
_MAX_PERIODS = 10_000

_MISS = object()


@cache
def prices_version() -> str:
    """The price_version of costs computed from genai-prices' bundled data, e.g. "genai-prices 0.2.3"."""
    return f"genai-prices {_dist_version('genai-prices')}"


# -- the user's own price list -------------------------------------------------------------------


class PriceListError(ConfigError):
    """A price list that cannot be used; the message names the file, the entry, the field and the value."""


@dataclass(frozen=True, slots=True)
class TokenPrice:
    """A user price for an LLM model, in USD per million tokens."""

    provider: str
    model: str
    effective: datetime
    input_mtok: float
    cached_input_mtok: float
    cache_write_mtok: float
    output_mtok: float
    reasoning_mtok: float
    version: str

    def cost(
        self,
        input_tokens: int,
        output_tokens: int,
        cached_tokens: int = 0,
        cache_write_tokens: int = 0,
        reasoning_tokens: int = 0,
    ) -> float:
        """Cost in USD, with the same token conventions as LlmPricer."""
        c0, k_in, k_cr, k_cw, k_out, k_rs, _ = self._coefs()
        return (
            c0
            + k_in * (input_tokens - cached_tokens - cache_write_tokens)
            + k_cr * cached_tokens
            + k_cw * cache_write_tokens
            + k_out * (output_tokens - reasoning_tokens)
            + k_rs * reasoning_tokens
        )

    def _coefs(self) -> _Coefs:
        return (
            0.0,
            self.input_mtok / 1e6,
            self.cached_input_mtok / 1e6,
            self.cache_write_mtok / 1e6,
            self.output_mtok / 1e6,
            self.reasoning_mtok / 1e6,
            self.version,
        )


@dataclass(frozen=True, slots=True)
class UnitPrice:
    """A user price per unit (an API call, an SMS segment, ...)."""

    provider: str
    unit: str
    per_unit: float
    effective: datetime
    version: str
    name: str | None = None
    direction: str | None = None
    country: str | None = None

    def cost(self, units: float) -> float:
        return units * self.per_unit


_TOKEN_FIELDS = ("input_mtok", "cached_input_mtok", "cache_write_mtok", "output_mtok", "reasoning_mtok")
_UNIT_FIELDS = ("name", "unit", "per_unit", "direction", "country")
_DIRECTION_ALIASES = {"inbound": "in", "incoming": "in", "outbound": "out", "outgoing": "out"}


def _norm(value: str) -> str:
    return value.strip().lower()


def _norm_direction(value: str | None) -> str | None:
    if value is None:
        return None
    value = _norm(value)
    return _DIRECTION_ALIASES.get(value, value)


# (rank, name, direction, country, effective epochs ascending, prices in the same order)
_UnitGroup = tuple[
    tuple[int, int, int, int], str | None, str | None, str | None, list[float], list[UnitPrice]
]


class PriceList:
    """The user's own prices, overriding genai-prices for LLM calls and pricing API calls and SMS.

    Every entry has an ``effective`` date (UTC) and applies from then until the next entry for the same
    key. Matching of provider, model, name, unit, direction and country ignores case and surrounding
    whitespace. For unit prices an entry without ``name``/``direction``/``country`` matches any value of
    that field, and the most specific entry that applies wins (more filters first; on a tie name beats
    country beats direction).
    """

    def __init__(
        self, name: str, token_prices: Iterable[TokenPrice] = (), unit_prices: Iterable[UnitPrice] = ()
    ) -> None:
        self.name = name
        self.token_prices: tuple[TokenPrice, ...] = tuple(token_prices)
        self.unit_prices: tuple[UnitPrice, ...] = tuple(unit_prices)

        tokens: dict[tuple[str, str], list[TokenPrice]] = {}
        for tp in self.token_prices:
            tokens.setdefault((tp.provider, tp.model), []).append(tp)
        # key -> (effective epochs ascending, prices in the same order)
        self._tokens: dict[tuple[str, str], tuple[list[float], list[TokenPrice]]] = {}
        for key, items in tokens.items():
            items.sort(key=lambda tp: tp.effective)
            self._tokens[key] = ([tp.effective.timestamp() for tp in items], items)

        groups: dict[tuple[str, str, str | None, str | None, str | None], list[UnitPrice]] = {}
        for up in self.unit_prices:
            groups.setdefault((up.provider, up.unit, up.name, up.direction, up.country), []).append(up)
        self._units: dict[tuple[str, str], list[_UnitGroup]] = {}
        for (provider, unit, name, direction, country), items in groups.items():
            items.sort(key=lambda up: up.effective)
            has = (name is not None, country is not None, direction is not None)
            rank = (sum(has), *map(int, has))
            group = (rank, name, direction, country, [up.effective.timestamp() for up in items], items)
            self._units.setdefault((provider, unit), []).append(group)
        for unit_groups in self._units.values():
            unit_groups.sort(key=lambda g: g[0], reverse=True)

    def __repr__(self) -> str:
        counts = f"{len(self.token_prices)} token prices, {len(self.unit_prices)} unit prices"
        return f"PriceList({self.name!r}, {counts})"

    @classmethod
    def load(cls, path: str | Path) -> PriceList:
        """Read a TOML price list; its name defaults to the file stem."""
        path = Path(path)
        try:
            with path.open("rb") as f:
                data = tomllib.load(f)
        except tomllib.TOMLDecodeError as e:
            raise PriceListError(f"{path}: not valid TOML: {e}") from e
        except OSError as e:
            raise PriceListError(f"{path}: cannot read the price list: {e.strerror or e}") from e
        return cls.from_mapping(data, name=path.stem, source=str(path))

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, Any], name: str | None = None, source: str | None = None
    ) -> PriceList:
        """Build a price list from a mapping shaped like the TOML file.

        The mapping's own ``name`` wins over ``name``, which is the fallback (then "custom").
        ``source`` names the origin in error messages (a file path for ``load``).
        """
        src = source or "price list"
        if not isinstance(data, Mapping):
            raise PriceListError(f"{src}: expected a table of settings, got {type(data).__name__}")
        try:
            checked = _PriceListFile.model_validate(dict(data))
        except ValidationError as exc:
            raise _price_list_error(first_problem(exc), data, src) from None
        list_name = (checked.name or name or "custom").strip()

        token_prices: list[TokenPrice] = []
        unit_prices: list[UnitPrice] = []
        seen: dict[tuple[Any, ...], int] = {}
        for index, raw in enumerate(checked.price, start=1):
            entry = _price_of(raw, list_name)
            key = _entry_key(entry)
            if key in seen:
                raise PriceListError(
                    f"{src}: [[price]] entry {index}: field 'effective' = {entry.effective.isoformat()!r}: "
                    f"same key and effective date as entry {seen[key]}"
                )
            seen[key] = index
            (token_prices if isinstance(entry, TokenPrice) else unit_prices).append(entry)
        return cls(list_name, token_prices, unit_prices)

    def token_price(self, provider: str, model: str, ts: float) -> TokenPrice | None:
        """The entry for this model in effect at ``ts`` (epoch seconds, UTC), if any."""
        found = self._tokens.get((_norm(provider), _norm(model)))
        if found is None:
            return None
        epochs, items = found
        i = bisect_right(epochs, ts) - 1
        return items[i] if i >= 0 else None

    def unit_price(
        self,
        provider: str,
        name: str | None,
        unit: str,
        ts: float,
        direction: str | None = None,
        country: str | None = None,
    ) -> UnitPrice | None:
        """The most specific entry in effect at ``ts`` for this provider and unit, if any."""
        groups = self._units.get((_norm(provider), _norm(unit)))
        if not groups:
            return None
        name = _norm(name) if name else None
        direction = _norm_direction(direction) if direction else None
        country = _norm(country) if country else None
        for _, g_name, g_direction, g_country, epochs, items in groups:
            if (
                (g_name is None or g_name == name)
                and (g_direction is None or g_direction == direction)
                and (g_country is None or g_country == country)
            ):
                i = bisect_right(epochs, ts) - 1
                if i >= 0:
                    return items[i]
        return None


def _entry_key(entry: TokenPrice | UnitPrice) -> tuple[Any, ...]:
    if isinstance(entry, TokenPrice):
        return ("token", entry.provider, entry.model, entry.effective)
    return ("unit", entry.provider, entry.unit, entry.name, entry.direction, entry.country, entry.effective)


def _effective(value: Any) -> tuple[datetime, str]:
    """The entry's effective instant (UTC) and how it is written in price_version."""
    if isinstance(value, str):
        text = value.strip()
        try:
            value = date.fromisoformat(text)
        except ValueError:
            try:
                value = datetime.fromisoformat(text)
            except ValueError:
                raise refuse("not a date (YYYY-MM-DD) or ISO datetime") from None
    if isinstance(value, datetime):
        # Naive datetimes are UTC, like the rest of botmeter.
        dt = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return dt, dt.isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return datetime.combine(value, time(), UTC), value.isoformat()
    raise refuse("not a date (YYYY-MM-DD) or ISO datetime")


class _PriceEntry(BaseModel):
    """One ``[[price]]`` table: token prices for a model, or a price per unit; never both."""

    model_config = ConfigDict(extra="forbid")
    provider: Text
    effective: Annotated[Any, BeforeValidator(_effective)]
    model: Text | None = None
    input_mtok: Amount | None = None
    cached_input_mtok: Amount | None = None
    cache_write_mtok: Amount | None = None
    output_mtok: Amount | None = None
    reasoning_mtok: Amount | None = None
    name: Text | None = None
    unit: Text | None = None
    per_unit: Amount | None = None
    direction: Text | None = None
    country: Text | None = None

    @model_validator(mode="after")
    def _token_or_unit(self) -> _PriceEntry:
        given = self.model_fields_set
        tokens = [f for f in _TOKEN_FIELDS if f in given]
        if not tokens and "per_unit" not in given:
            raise refuse(
                f"has neither token prices ({', '.join(_TOKEN_FIELDS)}) nor per_unit "
                f"(provider = {self.provider!r})"
            )
        if tokens and "per_unit" in given:
            raise refuse(
                f"field {tokens[0]!r} = {getattr(self, tokens[0])!r}: "
                "an entry has either token prices or per_unit, not both"
            )
        if tokens:
            for field in _UNIT_FIELDS:
                if field in given:
                    raise refuse(
                        f"field {field!r} = {getattr(self, field)!r}: "
                        "only for per_unit prices, not token prices"
                    )
            # Input and output must be explicit: a missing one would silently price those tokens at zero.
            for field in ("model", "input_mtok", "output_mtok"):
                if field not in given:
                    raise refuse(f"field {field!r} is missing")
            return self
        if "model" in given:
            raise refuse(
                f"field 'model' = {self.model!r}: only for token prices; use 'name' for an API operation"
            )
        if "unit" not in given:
            raise refuse("field 'unit' is missing")
        return self


class _PriceListFile(BaseModel):
    """A price list: an optional name and the ``[[price]]`` entries."""

    model_config = ConfigDict(extra="forbid")
    name: Text | None = None
    price: list[_PriceEntry] = []


def _price_list_error(problem: Problem, data: Mapping[str, Any], src: str) -> PriceListError:
    where, value = problem.where, problem.value
    if where == ("price",):
        return PriceListError(f"{src}: field 'price' = {value!r}: must be an array of [[price]] tables")
    if len(where) == 1:
        if problem.kind == "unknown":
            return PriceListError(
                f"{src}: unknown top-level field {where[0]!r} = {value!r} (allowed: name, [[price]])"
            )
        return PriceListError(f"{src}: field {where[0]!r} = {value!r}: {problem.reason}")
    at = f"{src}: [[price]] entry {int(where[1]) + 1}"
    if len(where) == 2:  # the entry as a whole
        if problem.kind == "botmeter":
            return PriceListError(f"{at}: {problem.reason}")
        return PriceListError(f"{at}: expected a table, got {value!r}")
    field = problem.field
    if problem.kind == "unknown":
        allowed = ", ".join(sorted(_PriceEntry.model_fields))
        return PriceListError(f"{at}: unknown field {field!r} = {value!r} (allowed: {allowed})")
    if problem.kind == "missing":
        return PriceListError(f"{at}: field {field!r} is missing")
    return PriceListError(f"{at}: field {field!r} = {value!r}: {problem.reason}")


def _price_of(entry: _PriceEntry, list_name: str) -> TokenPrice | UnitPrice:
    effective, label = entry.effective
    version = f"custom:{list_name}@{label}"
    if entry.input_mtok is not None and entry.output_mtok is not None and entry.model is not None:
        inp, out = entry.input_mtok, entry.output_mtok
        return TokenPrice(
            provider=_norm(entry.provider),
            model=_norm(entry.model),
            effective=effective,
            input_mtok=inp,
            # Without a stated discount, cached and cache-write tokens cost the full input price.
            cached_input_mtok=inp if entry.cached_input_mtok is None else entry.cached_input_mtok,
            cache_write_mtok=inp if entry.cache_write_mtok is None else entry.cache_write_mtok,
            output_mtok=out,
            reasoning_mtok=out if entry.reasoning_mtok is None else entry.reasoning_mtok,
            version=version,
        )
    assert entry.unit is not None and entry.per_unit is not None  # the model's own check
    return UnitPrice(
        provider=_norm(entry.provider),
        unit=_norm(entry.unit),
        per_unit=entry.per_unit,
        effective=effective,
        version=version,
        name=_norm(entry.name) if entry.name is not None else None,
        direction=_norm_direction(entry.direction),
        country=_norm(entry.country) if entry.country is not None else None,
    )


def price_units(
    price_list: PriceList | None,
    provider: str,
    name: str | None,
    unit: str,
    units: float | None,
    ts: float,
    direction: str | None = None,
    country: str | None = None,
) -> tuple[float | None, str | None]:
    """(cost in USD, price_version) of ``units`` of ``unit`` from the user's price list, or (None, None)."""
    if price_list is None or units is None or units < 0:
        return None, None
    up = price_list.unit_price(provider, name, unit, ts, direction, country)
    if up is None:
        return None, None
    return units * up.per_unit, up.version


class UnitPricer:
    """What SMS segments and API units cost, in one order of precedence used on write and by
    ``botmeter reprice`` alike: the bot's own cost first (``caller``), then a custom price from the
    user's price list, then (for SMS) the SMS rate table. A missing direction is outbound."""

    def __init__(self, price_list: PriceList | None, sms_rates: Any) -> None:
        self.price_list = price_list
        self.sms_rates = sms_rates

    def sms(
        self,
        providers: Sequence[str],
        segments: Sequence[float | None],
        ts: Sequence[float],
        directions: Sequence[str | None],
        countries: Sequence[str | None],
        given: Sequence[float | None] | None = None,
    ) -> tuple[list[float | None], list[str | None]]:
        """(cost_usd, price_version) per SMS, column by column."""
        rates, prices = self.sms_rates, self.price_list
        rate_of: dict[tuple[str | None, str], float] = {}
        costs: list[float | None] = []
        versions: list[str | None] = []
        for i, units in enumerate(segments):
            if given is not None and given[i] is not None:
                costs.append(given[i])
                versions.append("caller")
                continue
            direction, country = directions[i] or "out", countries[i]
            if prices is not None:
                cost, version = price_units(
                    prices, providers[i], None, "sms_segment", units, ts[i], direction, country
                )
                if cost is not None:
                    costs.append(cost)
                    versions.append(version)
                    continue
            rate = rate_of.get((country, direction))
            if rate is None:
                rate = rate_of[country, direction] = rates.rate(country, direction)
            costs.append(None if units is None else units * rate)
            versions.append(rates.version)
        return costs, versions

    def api(
        self,
        providers: Sequence[str],
        names: Sequence[str | None],
        unit_names: Sequence[str],
        units: Sequence[float | None],
        ts: Sequence[float],
        given: Sequence[float | None] | None = None,
    ) -> tuple[list[float | None], list[str | None]]:
        """(cost_usd, price_version) per API call: the bot's own cost, else the price list's, else none."""
        costs: list[float | None] = []
        versions: list[str | None] = []
        for i, provider in enumerate(providers):
            if given is not None and given[i] is not None:
                costs.append(given[i])
                versions.append("caller")
                continue
            cost, version = price_units(self.price_list, provider, names[i], unit_names[i], units[i], ts[i])
            costs.append(cost)
            versions.append(version)
        return costs, versions


# -- genai-prices, reduced to coefficients ---------------------------------------------------------


@cache
def _snapshot() -> Any:
    """A snapshot of the price data bundled with genai-prices, never an auto-updated one."""
    from genai_prices import data, data_snapshot

    return data_snapshot.DataSnapshot(providers=data.providers, from_auto_update=False)


def _usage(
    input_tokens: int,
    output_tokens: int,
    cached: int,
    cache_write: int,
    reasoning: int,
    cache_write_1h: int = 0,
) -> Any:
    from genai_prices import Usage

    extra = {"cache_write_1h_tokens": cache_write_1h} if cache_write_1h else {}
    return Usage(
        input_tokens=input_tokens,
        cache_read_tokens=cached,
        cache_write_tokens=cache_write,
        output_tokens=output_tokens,
        output_reasoning_tokens=reasoning,
        **extra,
    )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _utc_dt(ts: float) -> datetime:
    # Floor to the microsecond (fromtimestamp rounds), so a ts just before a price change is never
    # looked up as the instant after it while the period cache files it before.
    return _EPOCH + timedelta(microseconds=math.floor(ts * 1_000_000))


class _Exact:
    """Prices every event with genai-prices itself (used when coefficients can't reproduce it)."""

    __slots__ = ("model", "provider", "version")

    def __init__(self, model: Any, provider: Any) -> None:
        self.model = model
        self.provider = provider
        self.version = prices_version()

    def at(self, ts: float, input_tokens: int) -> _Exact:
        return self

    def cost(
        self,
        ts: float,
        inp: int,
        out: int,
        cr: int,
        cw: int,
        rs: int,
        cw_1h: int = 0,
        tier: str | None = None,
    ) -> float | None:
        try:
            usage = _usage(inp, out, cr, cw, rs, cw_1h)
            context = {"service_tier": tier} if tier else None
            calc = self.model.calc_price(
                usage, self.provider, genai_request_timestamp=_utc_dt(ts), price_context=context
            )
        except (ValueError, ArithmeticError, TypeError):
            return None
        return float(calc.total_price)


class _Tiered:
    """Prices that depend on the prompt size: one set of coefficients per input-token bucket."""

    __slots__ = ("buckets", "thresholds")

    def __init__(self, thresholds: list[int], buckets: list[_Coefs | _Exact]) -> None:
        self.thresholds = thresholds
        self.buckets = buckets

    def at(self, ts: float, input_tokens: int) -> _Coefs | _Exact:
        # genai-prices applies a tier when input_tokens > tier.start: count thresholds strictly below.
        return self.buckets[bisect_left(self.thresholds, input_tokens)]


_Resolved = Any  # _Coefs | _Tiered | _Exact | _Conditional | _Custom


def _probe(calc: Callable[[Any], Decimal], version: str) -> _Coefs:
    """Per-token coefficients of a price without tiers, each asked of genai-prices."""
    n = _PROBE_TOKENS
    base = calc(_usage(0, 0, 0, 0, 0))  # per-request fees

    def per_token(usage: Any) -> float:
        return float((calc(usage) - base) / n)

    return (
        float(base),
        per_token(_usage(n, 0, 0, 0, 0)),
        per_token(_usage(n, 0, n, 0, 0)),
        per_token(_usage(n, 0, 0, n, 0)),
        per_token(_usage(0, n, 0, 0, 0)),
        per_token(_usage(0, n, 0, 0, n)),
        version,
    )


def _verified(coefs: _Coefs, exact: _Exact, ts: float, inp: int) -> _Coefs | _Exact:
    """Keep the coefficients only if they reproduce genai-prices on a mixed sample."""
    cr, cw, out, rs = inp // 3, inp // 7, 7_919, 2_311
    want = exact.cost(ts, inp, out, cr, cw, rs)
    if want is None:
        return exact
    c0, k_in, k_cr, k_cw, k_out, k_rs, _ = coefs
    got = c0 + k_in * (inp - cr - cw) + k_cr * cr + k_cw * cw + k_out * (out - rs) + k_rs * rs
    if abs(got - want) <= _VERIFY_REL_TOL * max(abs(want), 1e-12):
        return coefs
    return exact


def _for_model_price(model_price: Any, model: Any, provider: Any, ts: float) -> _Coefs | _Tiered | _Exact:
    """Coefficients for one resolved genai-prices ModelPrice (one price period of a model)."""
    from genai_prices.types import ModelPrice, TieredPrices

    exact = _Exact(model, provider)
    version = exact.version
    values = dict(model_price.__dict__)
    tiered = {k: v for k, v in values.items() if isinstance(v, TieredPrices)}
    try:
        if not tiered:
            coefs = _probe(lambda u: model_price.calc_price(u)["total_price"], version)
            return _verified(coefs, exact, ts, 123_457)

        thresholds = sorted({tier.start for v in tiered.values() for tier in v.tiers})
        buckets: list[_Coefs | _Exact] = []
        for k in range(len(thresholds) + 1):
            # Any prompt size in the bucket selects the same tier of every tiered price.
            sample = thresholds[0] if k == 0 else thresholds[k - 1] + 1
            flat = dict(values)
            for key, v in tiered.items():
                applied = v.base
                for tier in reversed(v.tiers):
                    if sample > tier.start:
                        applied = tier.price
                        break
                flat[key] = applied
            flat_price = ModelPrice(**flat)
            coefs = _probe(lambda u, p=flat_price: p.calc_price(u)["total_price"], version)
            buckets.append(_verified(coefs, exact, ts, max(sample, 0)))
        return _Tiered(thresholds, buckets)
    except (ValueError, ArithmeticError, TypeError, AttributeError):
        return exact


def _utc_seconds_of_day(value: time) -> float:
    if value.tzinfo is not None:
        # As genai-prices does: convert on 1970-01-01 so an offset that crosses midnight wraps.
        value = datetime.combine(date(1970, 1, 1), value).astimezone(UTC).time()
    return value.hour * 3600 + value.minute * 60 + value.second + value.microsecond / 1e6


class _Conditional:
    """A model whose genai-prices price depends on the date or the time of day.

    The price can only change at a start date (UTC midnight) or a time-of-day boundary, so the period
    containing ts is (start dates passed, boundaries of the day passed). Constraint kinds this doesn't
    know fall back to periods of one UTC minute.
    """

    __slots__ = ("by_minute", "date_bounds", "model", "periods", "provider", "tod_bounds")

    def __init__(self, model: Any, provider: Any) -> None:
        from genai_prices.types import StartDateConstraint, TimeOfDateConstraint

        self.model = model
        self.provider = provider
        self.periods: dict[Any, _Coefs | _Tiered | _Exact] = {}
        dates: set[float] = set()
        tods: set[float] = set()
        self.by_minute = False
        for conditional in model.prices:
            c = conditional.constraint
            if c is None:
                continue
            if isinstance(c, StartDateConstraint):
                dates.add(datetime.combine(c.start_date, time(), UTC).timestamp())
            elif isinstance(c, TimeOfDateConstraint):
                tods.add(_utc_seconds_of_day(c.start_time))
                tods.add(_utc_seconds_of_day(c.end_time))
            else:
                self.by_minute = True
        self.date_bounds = sorted(dates)
        self.tod_bounds = sorted(tods)

    def at(self, ts: float, input_tokens: int) -> _Coefs | _Exact:
        if self.by_minute:
            key: Any = ts // 60
        elif self.tod_bounds:
            key = (bisect_right(self.date_bounds, ts), bisect_right(self.tod_bounds, ts % _DAY))
        else:
            key = bisect_right(self.date_bounds, ts)
        found = self.periods.get(key)
        if found is None:
            if len(self.periods) >= _MAX_PERIODS:
                self.periods.clear()
            model_price = self.model.get_prices(_utc_dt(ts))
            found = self.periods[key] = _for_model_price(model_price, self.model, self.provider, ts)
        if type(found) is tuple:
            return found
        return found.at(ts, input_tokens)


class _Custom:
    """The user's price list for a model, falling back to genai-prices before its first entry."""

    __slots__ = ("coefs", "epochs", "fallback")

    def __init__(self, epochs: list[float], coefs: list[_Coefs], fallback: _Resolved) -> None:
        self.epochs = epochs
        self.coefs = coefs
        self.fallback = fallback

    def at(self, ts: float, input_tokens: int) -> _Coefs | _Exact | None:
        i = bisect_right(self.epochs, ts) - 1
        if i >= 0:
            return self.coefs[i]
        fallback = self.fallback
        if fallback is None or type(fallback) is tuple:
            return fallback
        return fallback.at(ts, input_tokens)


# Service tiers priced as the standard one (what the API reports for an ordinary call, or was asked).
_STANDARD_TIERS = frozenset({"default", "auto", "standard", "on_demand"})


@dataclass(frozen=True, slots=True)
class CallExtras:
    """What an LLM call's properties add to its token counts for pricing."""

    service_tier: str | None = None  # OpenAI's flex, priority...: priced by tier where genai-prices has it
    cache_write_1h_tokens: int = 0  # of cache_write_tokens, those written for one hour (Anthropic)
    unknown: bool = False  # the provider did not report input or output tokens: left unpriced


def call_extras(properties: Sequence[Any]) -> dict[int, CallExtras]:
    """Rows of an ``llm_call`` properties column (dicts, JSON text or None) priced beyond tokens."""
    found: dict[int, CallExtras] = {}
    for i, p in enumerate(properties):
        if not p:
            continue
        if isinstance(p, str):
            if "service_tier" not in p and "cache_write_1h" not in p and "usage_unknown" not in p:
                continue
            try:
                p = json.loads(p)
            except ValueError:
                continue
        if not isinstance(p, dict):
            continue
        tier = p.get("service_tier")
        tier = tier if isinstance(tier, str) and tier not in _STANDARD_TIERS else None
        one_hour = p.get("cache_write_1h_tokens")
        one_hour = (
            one_hour if isinstance(one_hour, int) and not isinstance(one_hour, bool) and one_hour > 0 else 0
        )
        unknown = p.get("usage_unknown")
        unknown = isinstance(unknown, list) and ("input_tokens" in unknown or "output_tokens" in unknown)
        if tier or one_hour or unknown:
            found[i] = CallExtras(tier, one_hour, unknown)
    return found


class LlmPricer:
    """Cost of LLM calls from genai-prices' bundled data, overridden by an optional PriceList.

    ``unpriced`` counts, per (provider, model) as given, the calls that got no price (unknown model,
    or token counts that contradict each other, which ``invalid_usage`` also counts). Meant for the
    writer thread; sharing it between threads is safe but may resolve a model twice.
    """

    @staticmethod
    def warm() -> None:
        """Loads genai-prices' bundled data and the code that prices with it (about 70 ms and
        8 MB, once per process), by resolving one model on a pricer of its own."""
        LlmPricer()._resolve(("openai", "gpt-4o-mini"))

    def __init__(self, price_list: PriceList | None = None) -> None:
        self._price_list = price_list
        self.unpriced: Counter[tuple[str, str]] = Counter()
        self.invalid_usage: Counter[tuple[str, str]] = Counter()
        # (provider, model) exactly as given -> resolved prices, or None when there is no price
        self._cache: dict[tuple[Any, Any], _Resolved] = {}
        # (genai provider id, id of genai ModelInfo) -> resolved prices, shared by all spellings of a model
        self._models: dict[tuple[str, int], _Resolved] = {}
        # (provider, model) -> genai-prices' own calculation, for calls priced beyond token counts
        self._exacts: dict[tuple[Any, Any], _Exact | None] = {}

    @property
    def price_list(self) -> PriceList | None:
        return self._price_list

    @price_list.setter
    def price_list(self, price_list: PriceList | None) -> None:
        # Resolutions embed the old list's entries; genai-prices ones stay valid.
        self._price_list = price_list
        self._cache = {}
        self._exacts = {}

    def price(
        self,
        provider: str,
        model: str,
        ts: float,
        input_tokens: int,
        output_tokens: int,
        cached_tokens: int = 0,
        cache_write_tokens: int = 0,
        reasoning_tokens: int = 0,
    ) -> tuple[float | None, str | None]:
        """(cost in USD, price_version) of one call at ``ts`` (epoch seconds, UTC).

        (None, None) when there is no price for the model.
        """
        costs, versions = self.price_batch(
            [provider],
            [model],
            [ts],
            [input_tokens],
            [output_tokens],
            [cached_tokens],
            [cache_write_tokens],
            [reasoning_tokens],
        )
        return costs[0], versions[0]

    def price_batch(
        self,
        providers: Sequence[str],
        models: Sequence[str],
        ts: Sequence[float] | float,
        input_tokens: Sequence[int | None],
        output_tokens: Sequence[int | None],
        cached_tokens: Sequence[int | None] | None = None,
        cache_write_tokens: Sequence[int | None] | None = None,
        reasoning_tokens: Sequence[int | None] | None = None,
        extras: Mapping[int, CallExtras] | None = None,
    ) -> tuple[list[float | None], list[str | None]]:
        """Price parallel columns of calls; returns (costs, price_versions) in the same order.

        ``ts`` may be one epoch-seconds value for the whole batch. A missing token count (None, or a
        whole column of None) counts as 0. ``extras`` (row -> ``CallExtras``, see ``call_extras``)
        names the few calls priced beyond token counts: a service tier, 1-hour cache writes.
        """
        costs, versions = self._price_columns(
            providers,
            models,
            ts,
            input_tokens,
            output_tokens,
            cached_tokens,
            cache_write_tokens,
            reasoning_tokens,
        )
        for i, extra in (extras or {}).items():
            if costs[i] is None:
                continue  # no price (or contradicting counts): nothing to refine
            if extra.unknown:
                costs[i] = versions[i] = None  # tokens the provider did not report: a cost would be a guess
                continue
            exact = self._exact((providers[i], models[i]))
            if exact is None:
                continue  # priced by your price list, which has no tiers or 1-hour writes
            t = float(ts) if isinstance(ts, int | float) else ts[i]
            cost = exact.cost(
                t,
                input_tokens[i] or 0,
                output_tokens[i] or 0,
                (cached_tokens[i] if cached_tokens is not None else 0) or 0,
                (cache_write_tokens[i] if cache_write_tokens is not None else 0) or 0,
                (reasoning_tokens[i] if reasoning_tokens is not None else 0) or 0,
                extra.cache_write_1h_tokens,
                extra.service_tier,
            )
            if cost is not None:
                costs[i] = cost
                versions[i] = exact.version
        return costs, versions

    def _exact(self, key: tuple[Any, Any]) -> _Exact | None:
        """genai-prices itself for a model, when genai-prices (not a price list) prices it."""
        found = self._exacts.get(key, _MISS)
        if found is not _MISS:
            return found
        resolved = self._cache.get(key)
        exact = None
        if resolved is not None and not isinstance(resolved, _Custom):
            provider, model = key
            try:
                gp_provider, gp_model = _snapshot().find_provider_model(model.strip(), None, provider, None)
                exact = _Exact(gp_model, gp_provider)
            except LookupError:
                exact = None
        self._exacts[key] = exact
        return exact

    def _price_columns(
        self,
        providers: Sequence[str],
        models: Sequence[str],
        ts: Sequence[float] | float,
        input_tokens: Sequence[int | None],
        output_tokens: Sequence[int | None],
        cached_tokens: Sequence[int | None] | None,
        cache_write_tokens: Sequence[int | None] | None,
        reasoning_tokens: Sequence[int | None] | None,
    ) -> tuple[list[float | None], list[str | None]]:
        n = len(providers)
        columns = [models, input_tokens, output_tokens, cached_tokens, cache_write_tokens, reasoning_tokens]
        if not isinstance(ts, int | float):
            columns.append(ts)
        for col in columns:
            if col is not None and len(col) != n:
                raise InputError(f"price_batch: columns differ in length ({len(col)} != {n})")
        zeros = repeat(0)
        ts_col = repeat(float(ts)) if isinstance(ts, int | float) else ts

        cache = self._cache
        get = cache.get
        resolve = self._resolve
        costs: list[float | None] = []
        versions: list[str | None] = []
        add_cost = costs.append
        add_version = versions.append
        miss = _MISS

        for provider, model, t, inp, out, cr, cw, rs in zip(
            providers,
            models,
            ts_col,
            input_tokens,
            output_tokens,
            zeros if cached_tokens is None else cached_tokens,
            zeros if cache_write_tokens is None else cache_write_tokens,
            zeros if reasoning_tokens is None else reasoning_tokens,
            strict=False,
        ):
            key = (provider, model)
            c = get(key, miss)
            if c is miss:
                c = resolve(key)
            inp = inp or 0
            out = out or 0
            cr = cr or 0
            cw = cw or 0
            rs = rs or 0
            uncached = inp - cr - cw
            plain_out = out - rs
            if uncached < 0 or plain_out < 0 or cr < 0 or cw < 0 or rs < 0 or c is None:
                if c is not None:
                    self.invalid_usage[key] += 1
                self.unpriced[key] += 1
                add_cost(None)
                add_version(None)
                continue
            if type(c) is not tuple:
                c = c.at(t, inp)
                if type(c) is not tuple:
                    cost = None if c is None else c.cost(t, inp, out, cr, cw, rs)
                    if cost is None:
                        self.unpriced[key] += 1
                        add_cost(None)
                        add_version(None)
                    else:
                        add_cost(cost)
                        add_version(c.version)
                    continue
            c0, k_in, k_cr, k_cw, k_out, k_rs, version = c
            add_cost(c0 + k_in * uncached + k_cr * cr + k_cw * cw + k_out * plain_out + k_rs * rs)
            add_version(version)
        return costs, versions

    # -- resolution, once per (provider, model) --------------------------------------------------

    def _resolve(self, key: tuple[Any, Any]) -> _Resolved:
        if len(self._cache) >= _MAX_KEYS:
            self._cache.clear()
        provider, model = key
        resolved: _Resolved = None
        if isinstance(provider, str) and isinstance(model, str) and provider.strip() and model.strip():
            resolved = self._from_genai(provider, model)
            if self._price_list is not None:
                found = self._price_list._tokens.get((_norm(provider), _norm(model)))
                if found is not None:
                    epochs, items = found
                    resolved = _Custom(epochs, [tp._coefs() for tp in items], resolved)
        self._cache[key] = resolved
        return resolved

    def _from_genai(self, provider: str, model: str) -> _Resolved:
        try:
            # genai-prices' own provider and model matching: provider ids ignore case and whitespace,
            # model refs ignore case, and a provider may fall back to the models of another it resells.
            gp_provider, gp_model = _snapshot().find_provider_model(model.strip(), None, provider, None)
        except LookupError:
            return None
        mkey = (gp_provider.id, id(gp_model))
        found = self._models.get(mkey, _MISS)
        if found is not _MISS:
            return found
        from genai_prices.types import ModelPrice

        if isinstance(gp_model.prices, ModelPrice):
            resolved: _Resolved = _for_model_price(gp_model.prices, gp_model, gp_provider, 0.0)
        else:
            resolved = _Conditional(gp_model, gp_provider)
        self._models[mkey] = resolved
        return resolved
