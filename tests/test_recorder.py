"""Track-call argument checks: the C fast path and the pure-Python recorder must agree exactly."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone

import pytest

from botmeter.collect.recorder import fast_path_available, make_recorder
from botmeter.events import RECORD_CALLS, RECORDS

IMPLEMENTATIONS = [pytest.param(True, id="python")]
if fast_path_available():
    IMPLEMENTATIONS.insert(0, pytest.param(False, id="c"))

LLM = dict(
    provider="openai",
    model="gpt-4o",
    input_tokens=812,
    output_tokens=95,
    cached_tokens=200,
    reasoning_tokens=0,
    latency_ms=840.0,
    user="+15551234567",
    conversation="c-1",
)


@pytest.fixture(params=IMPLEMENTATIONS)
def recorder(request):
    return make_recorder(1000, pure_python=request.param)


def records(buf):
    """Every buffered record as a tuple, per lane (the buffer hands them over as columns)."""
    return [list(zip(*columns, strict=True)) if columns else [] for columns in buf.drain_columns()]


def lane(buf, call):
    return records(buf)[RECORD_CALLS.index(call)]


def test_fast_path_is_built():
    # The package builds it on this machine; a silent fallback would make every track call 20x slower.
    assert fast_path_available()


def test_record_layout_follows_the_spec(recorder):
    buf, fns = recorder
    fns["track_llm_call"](**LLM, ts=1_700_000_000.5)
    (record,) = lane(buf, "track_llm_call")
    spec = RECORDS["track_llm_call"]
    assert record[0] == 1_700_000_000.5
    assert record[spec.index("provider")] == "openai"
    assert record[spec.index("input_tokens")] == 812
    assert record[spec.index("cache_write_tokens")] == 0  # the default
    assert record[spec.index("user")] == "+15551234567"
    assert len(record) == len(spec.params) + 1


def test_positional_arguments_where_documented(recorder):
    buf, fns = recorder
    fns["track_timing"]("reply", 1234.5, user="u1")
    fns["track_activity"]("reset")
    lanes = records(buf)
    timing = lanes[RECORD_CALLS.index("track_timing")][0]
    assert timing[1:3] == ("reply", 1234.5)
    assert lanes[RECORD_CALLS.index("track_activity")][0][1] == "reset"


def test_timestamp_defaults_to_now_and_accepts_aware_datetimes(recorder):
    buf, fns = recorder
    before = datetime.now(UTC).timestamp()
    fns["track_activity"]("a")
    when = datetime(2026, 11, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    fns["track_activity"]("b", ts=when)
    fns["track_activity"]("c", ts=1_700_000_000)
    now_rec, dt_rec, int_rec = lane(buf, "track_activity")
    assert before <= now_rec[0] <= datetime.now(UTC).timestamp()
    assert dt_rec[0] == datetime(2026, 11, 1, 10, 0, tzinfo=UTC).timestamp()
    assert int_rec[0] == 1_700_000_000.0


class Ratio(float):
    """A float subclass (as numpy's float64 is one)."""


BAD_CALLS = [
    # (call, kwargs, exception, words the message must contain)
    ("track_llm_call", {**LLM, "input_tokens": -5}, ValueError, ["input_tokens", "-5"]),
    ("track_llm_call", {**LLM, "output_tokens": 9.5}, TypeError, ["output_tokens", "9.5"]),
    ("track_llm_call", {**LLM, "input_tokens": True}, TypeError, ["input_tokens", "True"]),
    ("track_llm_call", {**LLM, "latency_ms": "fast"}, TypeError, ["latency_ms", "'fast'"]),
    ("track_llm_call", {**LLM, "latency_ms": -1.0}, ValueError, ["latency_ms", "-1.0"]),
    ("track_llm_call", {**LLM, "latency_ms": math.nan}, ValueError, ["latency_ms", "nan"]),
    ("track_llm_call", {**LLM, "latency_ms": math.inf}, ValueError, ["latency_ms", "inf"]),
    ("track_llm_call", {**LLM, "cached_tokens": 900}, ValueError, ["cached_tokens=900", "input_tokens=812"]),
    (
        "track_llm_call",
        {**LLM, "reasoning_tokens": 96},
        ValueError,
        ["reasoning_tokens=96", "output_tokens=95"],
    ),
    ("track_llm_call", {**LLM, "provider": ""}, ValueError, ["provider", "''"]),
    ("track_llm_call", {**LLM, "model": None}, TypeError, ["model", "None"]),
    ("track_llm_call", {**LLM, "tokens": 5}, TypeError, ["unexpected keyword", "tokens"]),
    ("track_llm_call", {"model": "gpt-4o"}, TypeError, ["missing", "provider"]),
    ("track_llm_call", {**LLM, "properties": ["x"]}, TypeError, ["properties", "['x']"]),
    ("track_llm_call", {**LLM, "user": 1.5}, TypeError, ["user", "1.5"]),
    ("track_llm_call", {**LLM, "ts": "yesterday"}, TypeError, ["ts", "'yesterday'"]),
    ("track_llm_call", {**LLM, "ts": datetime(2026, 1, 1)}, ValueError, ["ts", "timezone-aware"]),
    ("track_llm_call", {**LLM, "ts": -3.0}, ValueError, ["ts", "-3.0"]),
    ("track_message", {"direction": "sideways"}, ValueError, ["direction", "'sideways'", "'in'", "'out'"]),
    ("track_message", {"direction": 1}, TypeError, ["direction", "1"]),
    ("track_message", {}, TypeError, ["missing", "direction"]),
    ("track_error", {"error": None}, TypeError, ["error", "None"]),
    ("track_error", {"error": "X", "severity": "loud"}, ValueError, ["severity", "'loud'"]),
    ("track_timing", {"stage": "reply", "latency_ms": -2}, ValueError, ["latency_ms", "-2"]),
    # timestamps: milliseconds (the usual mistake), far future, far past, beyond any float
    ("track_llm_call", {**LLM, "ts": 1_733_300_000_000}, ValueError, ["ts", "1733300000000", "milliseconds"]),
    ("track_llm_call", {**LLM, "ts": 1_733_300_000_000.0}, ValueError, ["ts", "milliseconds"]),
    ("track_llm_call", {**LLM, "ts": 1_733_300_000_000_000}, ValueError, ["ts", "microseconds"]),
    ("track_llm_call", {**LLM, "ts": 1e300}, ValueError, ["ts", "1e+300", "2000-01-01"]),
    ("track_llm_call", {**LLM, "ts": 10**400}, ValueError, ["ts", "one day ahead"]),
    ("track_llm_call", {**LLM, "ts": math.nan}, ValueError, ["ts", "nan"]),
    ("track_llm_call", {**LLM, "ts": -math.inf}, ValueError, ["ts", "-inf"]),
    ("track_llm_call", {**LLM, "ts": 946_684_799.0}, ValueError, ["ts", "946684799.0"]),
    ("track_activity", {"name": "a", "ts": datetime(1999, 12, 31, tzinfo=UTC)}, ValueError, ["ts", "1999"]),
    ("track_activity", {"name": "a", "ts": datetime(9999, 1, 1, tzinfo=UTC)}, ValueError, ["ts", "9999"]),
    # integers beyond 64 bits (tokens, ids) and beyond a double (amounts)
    ("track_llm_call", {**LLM, "input_tokens": 2**64}, ValueError, ["input_tokens", "18446744073709551616"]),
    ("track_llm_call", {**LLM, "output_tokens": 2**63}, ValueError, ["output_tokens", "2**63"]),
    ("track_llm_call", {**LLM, "user": 2**64}, ValueError, ["user", "18446744073709551616"]),
    ("track_message", {"direction": "in", "conversation": -(2**63) - 1}, ValueError, ["conversation"]),
    ("track_message", {"direction": "in", "user": 10**5000}, ValueError, ["user", "16610 bits"]),
    ("track_api_call", {"provider": "p", "name": "n", "cost_usd": 10**400}, ValueError, ["cost_usd"]),
    # lone surrogates: text that cannot be stored as UTF-8
    ("track_sms", {"direction": "out", "text": "hi \udc80"}, ValueError, ["text", "surrogate", "'\\udc80'"]),
    ("track_llm_call", {**LLM, "model": "gpt\ud800"}, ValueError, ["model", "surrogate", "index 3"]),
    ("track_message", {"direction": "in", "user": "\udfff"}, ValueError, ["user", "surrogate"]),
    ("track_error", {"error": "Boom\ud83d"}, ValueError, ["error", "surrogate"]),
    ("track_error", {"error": "X", "message": "\ud800 oops"}, ValueError, ["message", "surrogate"]),
    ("track_activity", {"name": "a", "event_id": "SM\udc00"}, ValueError, ["event_id", "surrogate"]),
    # properties and context that JSON cannot hold
    ("track_activity", {"name": "a", "properties": {"x": math.nan}}, ValueError, ["properties", "nan"]),
    (
        "track_activity",
        {"name": "a", "properties": {"x": [1, -math.inf]}},
        ValueError,
        ["properties", "-inf"],
    ),
    ("track_activity", {"name": "a", "properties": {"x": 2**64}}, ValueError, ["properties", "64 bits"]),
    ("track_activity", {"name": "a", "properties": {"\udc80": 1}}, ValueError, ["properties", "surrogate"]),
    ("track_activity", {"name": "a", "properties": {"x": ["ok", "\ud800"]}}, ValueError, ["properties"]),
    ("track_activity", {"name": "a", "properties": {(1, 2): 1}}, ValueError, ["properties", "tuple"]),
    ("track_error", {"error": "X", "context": {"retry": math.inf}}, ValueError, ["context", "inf"]),
    # flat dicts, which the fast path checks without the walk: every doubtful value still refused
    ("track_activity", {"name": "a", "properties": {"ok": 1, "note": "a\udc80"}}, ValueError, ["surrogate"]),
    ("track_activity", {"name": "a", "properties": {"x": Ratio("nan")}}, ValueError, ["properties", "nan"]),
    ("track_activity", {"name": "a", "properties": {"x": -(2**63) - 1}}, ValueError, ["64 bits"]),
]


def nested(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def self_referring() -> dict:
    value: dict = {"name": "loop"}
    value["again"] = value
    return value


def list_referring_to_itself() -> dict:
    items: list = [1]
    items.append(items)
    return {"items": items}


BAD_CALLS += [
    ("track_activity", {"name": "a", "properties": self_referring()}, ValueError, ["properties", "itself"]),
    (
        "track_custom",
        {"name": "a", "properties": list_referring_to_itself()},
        ValueError,
        ["properties", "itself"],
    ),
    ("track_activity", {"name": "a", "properties": nested(33)}, ValueError, ["properties", "32 levels"]),
    ("track_activity", {"name": "a", "properties": nested(20_000)}, ValueError, ["properties", "32 levels"]),
    # several faults in one call: the first in parameter order is named, whatever the keyword order
    ("track_llm_call", {"ts": 1e300, "user": 1.5, **LLM, "input_tokens": -1}, ValueError, ["input_tokens"]),
    (
        "track_llm_call",
        {**LLM, "properties": {"x": math.nan}, "model": "", "ts": -1.0},
        ValueError,
        ["model"],
    ),
    ("track_llm_call", {**LLM, "cached_tokens": 10**6, "ts": 1e300}, ValueError, ["cached_tokens"]),
    ("track_llm_call", {**LLM, "cached_tokens": 10**6, "stage": "\udc80"}, ValueError, ["stage"]),
    ("track_message", {"properties": {"x": math.nan}, "direction": "up"}, ValueError, ["direction"]),
    ("track_message", {"properties": {"x": math.nan}}, TypeError, ["missing", "direction"]),
    ("track_message", {"direction": "in", "ts": 1e300, "bogus": 1}, TypeError, ["unexpected", "bogus"]),
]


@pytest.mark.parametrize(("call", "kwargs", "error", "words"), BAD_CALLS)
def test_bad_arguments_raise_at_once_naming_argument_and_value(recorder, call, kwargs, error, words):
    buf, fns = recorder
    with pytest.raises(error) as info:
        fns[call](**kwargs)
    for word in words:
        assert word in str(info.value)
    assert buf.size == 0  # nothing half-written


def test_several_faults_positional_and_keyword(recorder):
    _, fns = recorder
    # the positional stage is first in parameter order, so it is named before the keyword's fault
    with pytest.raises(ValueError, match="stage") as info:
        fns["track_timing"]("", -1.0, properties={"x": math.nan}, ts=1e300)
    assert "latency_ms" not in str(info.value)
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
        fns["track_timing"]("", -1.0, colour="red")


def test_what_is_refused_is_only_what_cannot_be_stored(recorder):
    buf, fns = recorder
    now = datetime.now(UTC)
    fns["track_activity"]("a", ts=946_684_800.0)  # 2000-01-01, the earliest
    fns["track_activity"]("a", ts=now.timestamp() + 3600.0)  # clocks disagree by an hour
    fns["track_activity"]("a", ts=now + timedelta(hours=23))
    fns["track_activity"]("a", ts=int(now.timestamp()))
    fns["track_llm_call"](**{**LLM, "input_tokens": 2**63 - 1, "cached_tokens": 2**62})
    fns["track_message"](direction="in", user=-(2**63), conversation=2**63 - 1, text="héllo 👋 \U0001f600")
    fns["track_api_call"](provider="p", name="n", cost_usd=10**300, units=2**70)
    fns["track_activity"](
        "a", properties={"deep": nested(31), "n": 2**64 - 1, "f": 1e308, 1: "k", None: [()]}
    )
    fns["track_activity"]("a", properties={"same": [LLM, LLM], "obj": object(), "emoji": "👋"})
    fns["track_activity"]("a", properties={"n": 2**63, "yes": True, "no": None, "f": Ratio(0.5), "t": "é"})
    fns["track_error"](ValueError("bad \udc80 byte"))  # exceptions are the writer's to describe
    assert buf.size == 11


def test_positional_where_not_allowed(recorder):
    _, fns = recorder
    with pytest.raises(TypeError, match="positional"):
        fns["track_llm_call"]("openai", "gpt-4o")
    with pytest.raises(TypeError, match="multiple values for argument 'stage'"):
        fns["track_timing"]("reply", 10.0, stage="x")


def test_both_implementations_say_the_same_words():
    if not fast_path_available():
        pytest.skip("C fast path not built")
    messages = []
    for pure in (False, True):
        _, fns = make_recorder(10, pure_python=pure)
        said = []
        for call, kwargs, error, _ in BAD_CALLS:
            with pytest.raises(error) as info:
                fns[call](**kwargs)
            said.append(str(info.value))
        messages.append(said)
    assert messages[0] == messages[1]


def test_full_buffer_drops_and_counts_never_blocks(recorder):
    buf, fns = recorder
    for _ in range(1500):
        fns["track_timing"]("reply", 1.0)
    assert buf.size == 1000
    dropped = buf.dropped_counts()
    assert dropped[RECORD_CALLS.index("track_timing")] == 500
    assert sum(dropped) == 500


def test_disabled_records_nothing_and_checks_nothing(recorder):
    buf, fns = recorder
    buf.enabled = False
    fns["track_llm_call"](**{**LLM, "input_tokens": -1})
    assert buf.size == 0
    assert lane(buf, "track_llm_call") == []


def test_numpy_style_and_subclass_values_are_accepted(recorder):
    buf, fns = recorder

    class Tokens(int):
        pass

    fns["track_llm_call"](provider="openai", model="gpt-4o", input_tokens=Tokens(10), latency_ms=3)
    assert len(lane(buf, "track_llm_call")) == 1


def test_fast_clock_agrees_with_the_wall_clock(recorder):
    import time

    buf, fns = recorder
    buf.calibrate()
    time.sleep(0.25)
    buf.calibrate()  # on x86 the TSC clock is now in use; elsewhere (and in Python) clock_gettime
    stamps = []
    for _ in range(50):
        before = time.time()
        fns["track_activity"]("tick")
        after = time.time()
        stamps.append((before, after))
        time.sleep(0.002)
    recorded = [r[0] for r in lane(buf, "track_activity")]
    for (before, after), ts in zip(stamps, recorded, strict=True):
        assert before - 0.001 <= ts <= after + 0.001
