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
]


@pytest.mark.parametrize(("call", "kwargs", "error", "words"), BAD_CALLS)
def test_bad_arguments_raise_at_once_naming_argument_and_value(recorder, call, kwargs, error, words):
    buf, fns = recorder
    with pytest.raises(error) as info:
        fns[call](**kwargs)
    for word in words:
        assert word in str(info.value)
    assert buf.size == 0  # nothing half-written


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
