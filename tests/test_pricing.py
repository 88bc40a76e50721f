"""Pricing against the real price data bundled with genai-prices."""

from __future__ import annotations

import math
import random
from datetime import UTC, date, datetime, time
from pathlib import Path

import genai_prices
import pytest
from genai_prices import Usage, calc_price, data_snapshot
from genai_prices.types import StartDateConstraint, TimeOfDateConstraint

from botmeter.process.pricing import (
    LlmPricer,
    PriceList,
    PriceListError,
    TokenPrice,
    UnitPrice,
    _Exact,
    price_units,
    prices_version,
)

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "prices.toml"
GENAI = f"genai-prices {genai_prices.__version__}"


def epoch(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


def genai_cost(
    provider: str,
    model: str,
    ts: float,
    inp: int,
    out: int,
    cached: int = 0,
    write: int = 0,
    reasoning: int = 0,
) -> float:
    """genai-prices' own answer, with botmeter's token conventions mapped onto its Usage."""
    usage = Usage(
        input_tokens=inp,
        cache_read_tokens=cached,
        cache_write_tokens=write,
        output_tokens=out,
        output_reasoning_tokens=reasoning,
    )
    calc = calc_price(
        usage, model, provider_id=provider, genai_request_timestamp=datetime.fromtimestamp(ts, UTC)
    )
    return float(calc.total_price)


def genai_prices_at(provider: str, model: str, ts: float):
    _, info = data_snapshot.get_snapshot().find_provider_model(model, None, provider, None)
    return info.get_prices(datetime.fromtimestamp(ts, UTC))


def same(got: float | None, want: float) -> bool:
    return got is not None and math.isclose(got, want, rel_tol=1e-12, abs_tol=0.0)


def random_calls(rng: random.Random, n: int, max_input: int, ts_range: tuple[float, float]):
    for _ in range(n):
        inp = rng.randint(0, max_input)
        cached = rng.randint(0, inp)
        write = rng.randint(0, inp - cached)
        out = rng.randint(0, 30_000)
        reasoning = rng.randint(0, out)
        yield rng.uniform(*ts_range), inp, out, cached, write, reasoning


# -- equal to genai-prices ---------------------------------------------------------------------------

MODELS = [
    ("openai", "gpt-4o", 150_000),
    ("openai", "gpt-4o-mini", 150_000),
    ("openai", "o4-mini", 150_000),
    ("openai", "o3", 150_000),  # start-dated price cut
    ("anthropic", "claude-sonnet-4-5", 400_000),  # tiered at 200k, cache reads and writes
    ("anthropic", "claude-sonnet-4-6", 400_000),  # tiered, then flat from a start date
    ("anthropic", "claude-haiku-4-5", 150_000),
    ("anthropic", "claude-3-5-haiku-latest", 150_000),
    ("google", "gemini-2.5-pro", 400_000),  # tiered at 200k
    ("google", "gemini-2.5-flash", 150_000),
    ("google", "gemini-1.5-flash", 300_000),  # tiered at 128k
    ("deepseek", "deepseek-chat", 100_000),  # time-of-day prices
    ("perplexity", "sonar-deep-research", 50_000),  # distinct reasoning price
    ("perplexity", "sonar", 50_000),  # per-request fee
    ("azure", "gpt-4o", 100_000),  # genai-prices' fallback from azure to openai's models
]


@pytest.mark.parametrize(("provider", "model", "max_input"), MODELS)
def test_costs_equal_genai_prices(provider: str, model: str, max_input: int) -> None:
    rng = random.Random(f"{provider}/{model}")
    calls = list(random_calls(rng, 300, max_input, (epoch(2024, 6, 1), epoch(2027, 6, 1))))
    pricer = LlmPricer()
    for ts, inp, out, cached, write, reasoning in calls:
        cost, version = pricer.price(provider, model, ts, inp, out, cached, write, reasoning)
        assert version == GENAI
        want = genai_cost(provider, model, ts, inp, out, cached, write, reasoning)
        assert same(cost, want), (ts, inp, out, cached, write, reasoning, cost, want)

    # The batch path gives the very same numbers.
    columns = list(zip(*calls, strict=True))
    costs, versions = LlmPricer().price_batch([provider] * len(calls), [model] * len(calls), *columns)
    assert costs == [pricer.price(provider, model, *call)[0] for call in calls]
    assert versions == [GENAI] * len(calls)


def test_every_bundled_model_equals_genai_prices() -> None:
    rng = random.Random(7)
    pricer = LlmPricer()
    checked = 0
    for provider in data_snapshot.get_snapshot().providers:
        for model in provider.models:
            ts, inp, out, cached, write, reasoning = next(
                random_calls(rng, 1, 400_000, (epoch(2024, 1, 1), epoch(2028, 1, 1)))
            )
            cost, _ = pricer.price(provider.id, model.id, ts, inp, out, cached, write, reasoning)
            try:
                want = genai_cost(provider.id, model.id, ts, inp, out, cached, write, reasoning)
            except (LookupError, ValueError):
                assert cost is None, (provider.id, model.id)
                continue
            assert same(cost, want), (provider.id, model.id, ts, inp, out, cached, write, reasoning)
            checked += 1
    assert checked > 1000


def test_tiered_model_above_and_below_threshold() -> None:
    pricer = LlmPricer()
    ts = epoch(2025, 9, 1)
    below = pricer.price("google", "gemini-2.5-pro", ts, 200_000, 1_000, 50_000)[0]
    above = pricer.price("google", "gemini-2.5-pro", ts, 200_001, 1_000, 50_000)[0]
    assert same(below, genai_cost("google", "gemini-2.5-pro", ts, 200_000, 1_000, 50_000))
    assert same(above, genai_cost("google", "gemini-2.5-pro", ts, 200_001, 1_000, 50_000))
    assert above is not None and below is not None
    assert above > below * 1.5  # the whole prompt moves to the higher tier


def test_provider_matching_ignores_case_and_whitespace() -> None:
    pricer = LlmPricer()
    ts = epoch(2025, 9, 1)
    assert pricer.price(" OpenAI ", "GPT-4o", ts, 1000, 100) == pricer.price(
        "openai", "gpt-4o", ts, 1000, 100
    )
    assert pricer.price("openai", "gpt-4o", ts, 1000, 100)[0] is not None


# -- token conventions -------------------------------------------------------------------------------


def test_cached_tokens_are_not_double_counted() -> None:
    pricer = LlmPricer()
    ts = epoch(2025, 9, 1)
    cached, _ = pricer.price("openai", "gpt-4o", ts, input_tokens=1000, output_tokens=0, cached_tokens=1000)
    uncached, _ = pricer.price("openai", "gpt-4o", ts, input_tokens=1000, output_tokens=0, cached_tokens=0)
    assert cached is not None and uncached is not None
    assert cached < uncached
    read_price = genai_prices_at("openai", "gpt-4o", ts).cache_read_mtok
    assert same(cached, float(read_price) * 1000 / 1e6)
    assert same(uncached, float(genai_prices_at("openai", "gpt-4o", ts).input_mtok) * 1000 / 1e6)


def test_cache_writes_are_charged_once_at_the_write_price() -> None:
    pricer = LlmPricer()
    ts = epoch(2025, 9, 1)
    cost, _ = pricer.price("anthropic", "claude-haiku-4-5", ts, 1000, 0, cache_write_tokens=1000)
    write_price = genai_prices_at("anthropic", "claude-haiku-4-5", ts).cache_write_mtok
    assert same(cost, float(write_price) * 1000 / 1e6)


def test_reasoning_tokens_cost_output_price_unless_distinct() -> None:
    pricer = LlmPricer()
    ts = epoch(2025, 9, 1)
    # o4-mini has no separate reasoning price: reasoning is just output.
    with_r = pricer.price("openai", "o4-mini", ts, 100, 1000, reasoning_tokens=800)[0]
    without_r = pricer.price("openai", "o4-mini", ts, 100, 1000)[0]
    assert with_r == without_r
    # sonar-deep-research prices reasoning tokens on their own.
    prices = genai_prices_at("perplexity", "sonar-deep-research", ts)
    assert prices.output_reasoning_mtok != prices.output_mtok
    cost = pricer.price("perplexity", "sonar-deep-research", ts, 0, 1000, reasoning_tokens=1000)[0]
    assert same(cost, float(prices.output_reasoning_mtok) * 1000 / 1e6)


def test_inconsistent_token_counts_are_unpriced() -> None:
    pricer = LlmPricer()
    ts = epoch(2025, 9, 1)
    assert pricer.price("openai", "gpt-4o", ts, 100, 10, cached_tokens=101) == (None, None)
    assert pricer.price("openai", "gpt-4o", ts, 100, 10, reasoning_tokens=11) == (None, None)
    assert pricer.price("openai", "gpt-4o", ts, 100, 10, cached_tokens=60, cache_write_tokens=50) == (
        None,
        None,
    )
    assert pricer.invalid_usage[("openai", "gpt-4o")] == 3
    assert pricer.unpriced[("openai", "gpt-4o")] == 3


def test_unknown_model_is_unpriced_and_counted() -> None:
    pricer = LlmPricer()
    ts = epoch(2025, 9, 1)
    assert pricer.price("openai", "gpt-nonexistent-9", ts, 100, 10) == (None, None)
    assert pricer.price("openai", "gpt-nonexistent-9", ts, 100, 10) == (None, None)
    assert pricer.price("no-such-provider", "gpt-4o", ts, 100, 10) == (None, None)
    assert pricer.price("", "gpt-4o", ts, 100, 10) == (None, None)
    assert pricer.unpriced == {
        ("openai", "gpt-nonexistent-9"): 2,
        ("no-such-provider", "gpt-4o"): 1,
        ("", "gpt-4o"): 1,
    }
    assert not pricer.invalid_usage


# -- prices that change over time --------------------------------------------------------------------


def _models_with(constraint_type: type):
    """(provider id, model id, constraint) for bundled models with such a constraint, well-known first."""
    snapshot = data_snapshot.get_snapshot()
    preferred = {"deepseek", "openai", "anthropic", "google"}
    candidates = []
    for provider in snapshot.providers:
        for model in provider.models:
            if not isinstance(model.prices, list):
                continue
            for conditional in model.prices:
                if isinstance(conditional.constraint, constraint_type):
                    candidates.append(
                        (provider.id not in preferred, provider.id, model, conditional.constraint)
                    )
    for _, provider_id, model, constraint in sorted(candidates, key=lambda c: (c[0], c[1], c[2].id)):
        try:
            _, found = snapshot.find_provider_model(model.id, None, provider_id, None)
        except LookupError:
            continue
        if found is model:
            yield provider_id, model.id, constraint


def test_start_dated_price_switches_at_utc_midnight() -> None:
    usage = (50_000, 5_000, 10_000, 0, 1_000)
    for provider, model, constraint in _models_with(StartDateConstraint):
        start = datetime.combine(constraint.start_date, time(), UTC).timestamp()
        if genai_cost(provider, model, start - 1, *usage) != genai_cost(provider, model, start, *usage):
            break
    else:
        pytest.skip("no start-dated price in the bundled genai-prices data changes the cost")
    pricer = LlmPricer()
    before = pricer.price(provider, model, start - 1, *usage)[0]
    after = pricer.price(provider, model, start, *usage)[0]
    again = pricer.price(provider, model, start - 1, *usage)[0]
    assert same(before, genai_cost(provider, model, start - 1, *usage))
    assert same(after, genai_cost(provider, model, start, *usage))
    assert before != after and again == before, (provider, model)


def test_time_of_day_price_depends_on_the_utc_time() -> None:
    found = next(_models_with(TimeOfDateConstraint), None)
    if found is None:
        pytest.skip("no model in the bundled genai-prices data has a time-of-day price")
    provider, model, constraint = found
    day = datetime.combine(date(2025, 9, 1), time(), UTC).timestamp()
    start = constraint.start_time
    inside = day + start.hour * 3600 + start.minute * 60 + start.second
    pricer = LlmPricer()
    usage = (50_000, 5_000, 10_000, 0, 0)
    costs = set()
    # Each side of the window's start, then every half hour of the day, forwards and backwards.
    stamps = [inside - 1, inside, inside + 1] + [day + h * 1800 for h in range(48)]
    for ts in stamps + stamps[::-1]:
        cost = pricer.price(provider, model, ts, *usage)[0]
        assert same(cost, genai_cost(provider, model, ts, *usage)), (provider, model, ts)
        costs.add(cost)
    assert len(costs) >= 2, (provider, model)
    assert pricer.price(provider, model, inside - 1, *usage) != pricer.price(provider, model, inside, *usage)


# -- the user's price list ---------------------------------------------------------------------------


def acme() -> PriceList:
    return PriceList.from_mapping(
        {
            "name": "acme",
            "price": [
                {
                    "provider": "openai",
                    "model": "gpt-4o",
                    "effective": "2026-01-01",
                    "input_mtok": 2.0,
                    "cached_input_mtok": 1.0,
                    "cache_write_mtok": 2.5,
                    "output_mtok": 8.0,
                },
                {
                    "provider": "OpenAI",
                    "model": " GPT-4o ",
                    "effective": "2026-03-01T00:00:00Z",
                    "input_mtok": 1.0,
                    "output_mtok": 4.0,
                    "reasoning_mtok": 3.0,
                },
                {
                    "provider": "acme-llm",
                    "model": "house-model",
                    "effective": date(2025, 1, 1),
                    "input_mtok": 0.5,
                    "output_mtok": 1,
                },
            ],
        }
    )


def test_price_list_effective_dates_switch_at_the_boundary() -> None:
    prices = acme()
    switch = epoch(2026, 3, 1)
    first = prices.token_price("openai", "gpt-4o", switch - 1)
    second = prices.token_price(" OPENAI", "gpt-4o", switch)
    assert first is not None and second is not None
    assert (first.input_mtok, first.version) == (2.0, "custom:acme@2026-01-01")
    assert (second.input_mtok, second.version) == (1.0, "custom:acme@2026-03-01T00:00:00Z")
    assert prices.token_price("openai", "gpt-4o", epoch(2025, 12, 31, 23, 59)) is None
    assert prices.token_price("openai", "gpt-4o-mini", switch) is None

    pricer = LlmPricer(prices)
    usage = (10_000, 2_000, 4_000, 1_000, 500)  # input, output, cached, cache write, reasoning
    cost, version = pricer.price("openai", "gpt-4o", switch - 1, *usage)
    assert version == "custom:acme@2026-01-01"
    assert same(cost, (5_000 * 2.0 + 4_000 * 1.0 + 1_000 * 2.5 + 2_000 * 8.0) / 1e6)
    cost, version = pricer.price("openai", "gpt-4o", switch, *usage)
    assert version == "custom:acme@2026-03-01T00:00:00Z"
    # No cache discount given: cached and cache-write tokens cost the input price; reasoning its own.
    assert same(cost, (10_000 * 1.0 + 1_500 * 4.0 + 500 * 3.0) / 1e6)


def test_price_list_overrides_genai_prices_only_where_it_applies() -> None:
    pricer = LlmPricer(acme())
    usage = (10_000, 2_000, 4_000, 0, 0)
    # Before the list's first entry, genai-prices prices the call.
    early = epoch(2025, 9, 1)
    cost, version = pricer.price("openai", "gpt-4o", early, *usage)
    assert version == GENAI
    assert same(cost, genai_cost("openai", "gpt-4o", early, *usage))
    # A model genai-prices doesn't know, priced only by the list.
    cost, version = pricer.price("acme-llm", "house-model", early, 1_000_000, 1_000_000)
    assert (cost, version) == (1.5, "custom:acme@2025-01-01")
    assert pricer.price("acme-llm", "house-model", epoch(2024, 12, 31), 10, 10) == (None, None)
    # Other models are untouched.
    late = epoch(2026, 6, 1)
    assert pricer.price("openai", "gpt-4o-mini", late, *usage)[1] == GENAI
    costs, versions = pricer.price_batch(
        ["openai", "openai", "anthropic"],
        ["gpt-4o", "gpt-4o", "claude-haiku-4-5"],
        [early, late, late],
        [100, 100, 100],
        [10, 10, 10],
        [0, 0, 0],
        [0, 0, 0],
        [0, 0, 0],
    )
    assert versions == [GENAI, "custom:acme@2026-03-01T00:00:00Z", GENAI]
    assert all(c is not None for c in costs)


def test_token_price_cost_helper() -> None:
    tp = acme().token_price("openai", "gpt-4o", epoch(2026, 2, 1))
    assert isinstance(tp, TokenPrice)
    assert same(
        tp.cost(10_000, 2_000, 4_000, 1_000, 0), (5_000 * 2.0 + 4_000 * 1.0 + 1_000 * 2.5 + 2_000 * 8.0) / 1e6
    )


def sms_prices() -> PriceList:
    return PriceList.from_mapping(
        {
            "price": [
                {"provider": "twilio", "unit": "sms_segment", "per_unit": 0.0079, "effective": "2026-01-01"},
                {
                    "provider": "twilio",
                    "unit": "sms_segment",
                    "per_unit": 0.0083,
                    "direction": "out",
                    "country": "US",
                    "effective": "2026-01-01",
                },
                {
                    "provider": "twilio",
                    "unit": "sms_segment",
                    "per_unit": 0.0100,
                    "country": "gb",
                    "effective": "2026-01-01",
                },
                {
                    "provider": "twilio",
                    "unit": "sms_segment",
                    "per_unit": 0.0090,
                    "direction": "out",
                    "country": "US",
                    "effective": "2026-06-01",
                },
                {
                    "provider": "weather",
                    "name": "forecast",
                    "unit": "call",
                    "per_unit": 0.0004,
                    "effective": "2025-06-01",
                },
                {"provider": "weather", "unit": "call", "per_unit": 0.0001, "effective": "2025-06-01"},
            ]
        },
        name="carrier",
    )


def test_unit_prices_prefer_the_most_specific_entry() -> None:
    prices = sms_prices()
    ts = epoch(2026, 2, 1)
    us_out = prices.unit_price("twilio", None, "sms_segment", ts, direction="out", country="US")
    assert isinstance(us_out, UnitPrice)
    assert (us_out.per_unit, us_out.version) == (0.0083, "custom:carrier@2026-01-01")
    assert prices.unit_price("Twilio", None, "SMS_segment", ts, "outbound", "us").per_unit == 0.0083
    assert prices.unit_price("twilio", None, "sms_segment", ts, "in", "US").per_unit == 0.0079
    assert prices.unit_price("twilio", None, "sms_segment", ts).per_unit == 0.0079
    assert prices.unit_price("twilio", None, "sms_segment", ts, "in", "GB").per_unit == 0.0100
    # The specific entry's own later effective date.
    assert prices.unit_price("twilio", None, "sms_segment", epoch(2026, 6, 1), "out", "US").per_unit == 0.0090
    # Before any entry: no price.
    assert prices.unit_price("twilio", None, "sms_segment", epoch(2025, 12, 31), "out", "US") is None
    # An entry with a name only matches that name; one without matches any.
    assert prices.unit_price("weather", "Forecast", "call", ts).per_unit == 0.0004
    assert prices.unit_price("weather", "alerts", "call", ts).per_unit == 0.0001
    assert prices.unit_price("weather", None, "call", ts).per_unit == 0.0001
    assert prices.unit_price("weather", "forecast", "request", ts) is None


def test_price_units() -> None:
    prices = sms_prices()
    ts = epoch(2026, 2, 1)
    cost, version = price_units(prices, "twilio", None, "sms_segment", 3, ts, direction="out", country="US")
    assert same(cost, 3 * 0.0083) and version == "custom:carrier@2026-01-01"
    assert price_units(prices, "weather", "forecast", "call", 1, ts) == (0.0004, "custom:carrier@2025-06-01")
    assert price_units(None, "twilio", None, "sms_segment", 3, ts) == (None, None)
    assert price_units(prices, "vonage", None, "sms_segment", 3, ts) == (None, None)
    assert price_units(prices, "twilio", None, "sms_segment", None, ts) == (None, None)


def test_example_price_list_loads() -> None:
    prices = PriceList.load(EXAMPLE)
    assert prices.name == "acme-contract"
    tp = prices.token_price("openai", "gpt-4o", epoch(2026, 7, 1))
    assert tp is not None and tp.version == "custom:acme-contract@2026-07-01"
    assert tp.cache_write_mtok == tp.input_mtok == 1.80
    assert (
        price_units(prices, "twilio", None, "sms_segment", 2, epoch(2026, 2, 1), "out", "US")[0] == 2 * 0.0083
    )


def test_name_defaults_to_file_stem_and_toml_datetimes(tmp_path: Path) -> None:
    path = tmp_path / "my-rates.toml"
    path.write_text(
        "[[price]]\nprovider = 'openai'\nmodel = 'gpt-4o'\neffective = 2026-01-01T12:00:00Z\n"
        "input_mtok = 1\noutput_mtok = 2\n"
        "[[price]]\nprovider = 'twilio'\nunit = 'sms_segment'\nper_unit = 0.01\neffective = 2026-01-01\n"
    )
    prices = PriceList.load(path)
    assert prices.name == "my-rates"
    assert prices.token_price("openai", "gpt-4o", epoch(2026, 1, 1, 11, 59)) is None
    assert (
        prices.token_price("openai", "gpt-4o", epoch(2026, 1, 1, 12)).version
        == "custom:my-rates@2026-01-01T12:00:00Z"
    )
    assert (
        prices.unit_price("twilio", None, "sms_segment", epoch(2026, 1, 1)).version
        == "custom:my-rates@2026-01-01"
    )


GOOD_TOKEN = {
    "provider": "openai",
    "model": "gpt-4o",
    "effective": "2026-01-01",
    "input_mtok": 2.0,
    "output_mtok": 8.0,
}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"provider": None}, ["'provider'", "missing"]),
        ({"provider": "  "}, ["'provider'", "'  '"]),
        ({"input_mtok": -1.5}, ["'input_mtok'", "-1.5", "negative"]),
        ({"cached_input_mtok": -0.01}, ["'cached_input_mtok'", "-0.01", "negative"]),
        ({"output_mtok": "8"}, ["'output_mtok'", "'8'", "number"]),
        ({"effective": "next tuesday"}, ["'effective'", "'next tuesday'"]),
        ({"effective": "2026-13-01"}, ["'effective'", "'2026-13-01'"]),
        ({"effective": None}, ["'effective'", "missing"]),
        ({"input_mtok": None, "output_mtok": None}, ["neither token prices", "per_unit"]),
        ({"colour": "red"}, ["unknown field 'colour'", "'red'"]),
        ({"model": None}, ["'model'", "missing"]),
        ({"output_mtok": None}, ["'output_mtok'", "missing"]),
        ({"per_unit": 0.1}, ["'input_mtok'", "not both"]),
        ({"country": "US"}, ["'country'", "'US'"]),
    ],
)
def test_validation_errors_name_the_file_entry_field_and_value(
    tmp_path: Path, change: dict, expected: list[str]
) -> None:
    bad = {**GOOD_TOKEN, **change}
    bad = {k: v for k, v in bad.items() if v is not None}
    lines = ["name = 'x'"]
    for entry in (GOOD_TOKEN | {"model": "gpt-4o-mini"}, bad):
        lines.append("[[price]]")
        lines.extend(f"{k} = {v!r}" if isinstance(v, str) else f"{k} = {v}" for k, v in entry.items())
    path = tmp_path / "broken.toml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError) as info:
        PriceList.load(path)
    message = str(info.value)
    assert str(path) in message
    assert "entry 2" in message
    for part in expected:
        assert part in message, message


def test_more_validation_errors() -> None:
    unit = {"provider": "twilio", "unit": "sms_segment", "per_unit": 0.01, "effective": "2026-01-01"}
    with pytest.raises(PriceListError, match=r"'per_unit' = -0\.01"):
        PriceList.from_mapping({"price": [unit | {"per_unit": -0.01}]})
    with pytest.raises(PriceListError, match=r"'unit' is missing"):
        PriceList.from_mapping({"price": [{k: v for k, v in unit.items() if k != "unit"}]})
    with pytest.raises(PriceListError, match=r"'model' = 'gpt-4o'"):
        PriceList.from_mapping({"price": [unit | {"model": "gpt-4o"}]})
    with pytest.raises(PriceListError, match=r"same key and effective date as entry 1"):
        PriceList.from_mapping({"price": [unit, unit | {"per_unit": 0.02}]})
    with pytest.raises(PriceListError, match=r"unknown top-level field 'prices'"):
        PriceList.from_mapping({"prices": [unit]})
    with pytest.raises(PriceListError, match=r"'input_mtok' = nan"):
        PriceList.from_mapping({"price": [GOOD_TOKEN | {"input_mtok": float("nan")}]})


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "oops.toml"
    path.write_text("[[price]\n")
    with pytest.raises(PriceListError, match=r"oops\.toml"):
        PriceList.load(path)


# -- batches -----------------------------------------------------------------------------------------


def test_price_batch_over_100k_events() -> None:
    rng = random.Random(3)
    models = [(p, m) for p, m, _ in MODELS] + [("openai", "not-a-model")]
    n = 100_000
    picks = [rng.choice(models) for _ in range(n)]
    calls = list(random_calls(rng, n, 300_000, (epoch(2025, 1, 1), epoch(2027, 1, 1))))
    providers = [p for p, _ in picks]
    names = [m for _, m in picks]
    columns = list(zip(*calls, strict=True))
    pricer = LlmPricer()
    costs, versions = pricer.price_batch(providers, names, *columns)
    assert len(costs) == len(versions) == n
    unknown = names.count("not-a-model")
    assert sum(c is None for c in costs) == unknown == pricer.unpriced[("openai", "not-a-model")]
    for i in range(0, n, 997):
        if names[i] != "not-a-model":
            assert same(costs[i], genai_cost(providers[i], names[i], *calls[i]))


def test_price_batch_columns() -> None:
    pricer = LlmPricer()
    ts = epoch(2025, 9, 1)
    costs, versions = pricer.price_batch(
        ["openai"] * 2, ["gpt-4o"] * 2, ts, [1000, None], [100, 100], None, None, None
    )
    assert costs == [
        pricer.price("openai", "gpt-4o", ts, 1000, 100)[0],
        pricer.price("openai", "gpt-4o", ts, 0, 100)[0],
    ]
    assert versions == [GENAI, GENAI]
    with pytest.raises(ValueError, match="length"):
        pricer.price_batch(["openai"], ["gpt-4o", "gpt-4o"], ts, [1], [1], None, None, None)
    assert pricer.price_batch([], [], [], [], [], [], [], []) == ([], [])


def test_price_list_can_be_swapped() -> None:
    pricer = LlmPricer()
    ts = epoch(2026, 6, 1)
    assert pricer.price("openai", "gpt-4o", ts, 100, 10)[1] == GENAI
    pricer.price_list = acme()
    assert pricer.price("openai", "gpt-4o", ts, 100, 10)[1] == "custom:acme@2026-03-01T00:00:00Z"
    pricer.price_list = None
    assert pricer.price("openai", "gpt-4o", ts, 100, 10)[1] == GENAI


def test_exact_fallback_equals_genai_prices() -> None:
    # The per-event path used when coefficients can't reproduce genai-prices (none in today's data).
    provider, model = data_snapshot.get_snapshot().find_provider_model("gemini-2.5-pro", None, "google", None)
    exact = _Exact(model, provider)
    ts = epoch(2025, 9, 1)
    for call in [(250_000, 1_000, 10_000, 0, 200), (1_000, 1_000, 0, 0, 0)]:
        assert same(exact.cost(ts, *call[:2], *call[2:]), genai_cost("google", "gemini-2.5-pro", ts, *call))
    assert exact.cost(ts, 10, 10, 20, 0, 0) is None  # genai-prices refuses cached > input


def test_prices_version() -> None:
    assert prices_version() == GENAI
