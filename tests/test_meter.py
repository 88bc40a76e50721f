"""The Meter end to end on a real DuckDB file: what a bot tracks is what the store holds."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import stat
import time
from datetime import UTC, datetime

import pytest
from genai_prices import Usage, calc_price

from botmeter import Meter, per_event
from botmeter.process.pipeline import Frame
from conftest import query, scalar
from test_errors import stalls_while

USER = "+15551234567"


def rows(path, sql, params=None):
    con_rows = query(path, sql, params)
    return [dict(zip(_columns(path, sql, params), r, strict=True)) for r in con_rows]


def _columns(path, sql, params):
    import duckdb

    con = duckdb.connect(str(path), read_only=True)
    try:
        return [d[0] for d in con.execute(sql, params).description]
    finally:
        con.close()


def test_round_trip_of_every_kind(store_url, store_path):
    meter = Meter(bot="dadacat", store=store_url, channel="sms", release="1.2.3")
    meter.track_message(user=USER, conversation="c-1", direction="in", text="hi there")
    meter.track_llm_call(
        provider="openai",
        model="gpt-4o",
        input_tokens=812,
        output_tokens=95,
        cached_tokens=200,
        reasoning_tokens=0,
        latency_ms=840.0,
        user=USER,
        conversation="c-1",
    )
    meter.track_sms(user=USER, conversation="c-1", direction="out", text="purr " * 40)
    meter.track_api_call(provider="weather", name="forecast", cost_usd=0.0004, latency_ms=120.0)
    try:
        raise TimeoutError("upstream timed out after 30s")
    except TimeoutError as exc:
        meter.track_error(exc, user=USER, conversation="c-1", context={"attempt": 2})
    meter.track_timing("reply", 1234.5, user=USER, conversation="c-1")
    meter.track_activity("reset", user=USER, conversation="c-1")
    meter.track_custom("mood", value=3.0, unit="stars")
    assert meter.flush()
    meter.close()

    by_kind = dict(query(store_path, "SELECT kind, count(*) FROM events GROUP BY 1"))
    assert by_kind == {
        "message": 2,
        "llm_call": 1,
        "api_call": 1,
        "error": 1,
        "timing": 1,
        "activity": 1,
        "custom": 1,
    }
    assert scalar(store_path, "SELECT count(DISTINCT bot || release) FROM events") == 1
    assert scalar(store_path, "SELECT any_value(release) FROM events") == "1.2.3"

    (llm,) = rows(store_path, "SELECT * FROM events WHERE kind = 'llm_call'")
    expected = calc_price(
        Usage(input_tokens=812, cache_read_tokens=200, output_tokens=95), "gpt-4o", provider_id="openai"
    ).total_price
    assert llm["cost_usd"] == pytest.approx(float(expected), rel=1e-12)
    assert llm["price_version"].startswith("genai-prices ")
    assert (llm["input_tokens"], llm["cached_tokens"], llm["output_tokens"]) == (812, 200, 95)
    assert llm["channel"] == "sms"  # the meter's default channel

    (sms,) = rows(store_path, "SELECT * FROM events WHERE kind = 'message' AND direction = 'out'")
    assert sms["units"] == 2 and sms["unit"] == "sms_segment"  # 200 GSM chars: two parts
    assert sms["country"] == "US" and sms["cost_usd"] > 0
    assert sms["chars"] == 200 and sms["text"] is None  # text is not kept by default

    (inbound,) = rows(store_path, "SELECT * FROM events WHERE kind = 'message' AND direction = 'in'")
    assert inbound["cost_usd"] is None  # track_message records engagement, not cost

    (error,) = rows(store_path, "SELECT * FROM events WHERE kind = 'error'")
    assert (error["error_type"], error["error_category"], error["severity"]) == (
        "TimeoutError",
        "timeout",
        "error",
    )
    assert error["fingerprint"] and error["error_message"] == "upstream timed out after <n>s"
    props = json.loads(error["properties"])
    assert props["context"] == {"attempt": 2}
    assert props["frame"].endswith("test_round_trip_of_every_kind")

    (api,) = rows(store_path, "SELECT * FROM events WHERE kind = 'api_call'")
    assert (api["cost_usd"], api["price_version"], api["units"], api["unit"]) == (
        0.0004,
        "caller",
        1.0,
        "call",
    )

    assert scalar(store_path, "SELECT count(DISTINCT event_id) FROM events") == 8


def test_user_ids_are_keyed_hashes(store_url, store_path, tmp_path):
    meter = Meter(bot="b", store=store_url)
    meter.track_message(user=USER, direction="in")
    meter.track_message(user="+1 (555) 123-4567", direction="in")  # same person, other spelling
    meter.track_message(user="+15550000000", direction="in")
    meter.close()
    stored = [r[0] for r in query(store_path, "SELECT user_id FROM events ORDER BY event_id")]
    assert USER not in stored and "5551234567" not in "".join(stored)
    assert stored[0] == stored[1] != stored[2]

    key_file = store_path.with_name(store_path.name + ".key")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = bytes.fromhex(key_file.read_text())
    assert stored[0] == hmac.new(key, USER.encode(), hashlib.sha256).hexdigest()[:20]

    # A second meter (a restart) reuses the key: the same user keeps the same id.
    again = Meter(bot="b", store=store_url)
    again.track_message(user=USER, direction="in")
    again.close()
    assert (
        scalar(store_path, "SELECT count(DISTINCT user_id) FROM events WHERE user_id = ?", [stored[0]]) == 1
    )
    assert scalar(store_path, "SELECT count(*) FROM events WHERE user_id = ?", [stored[0]]) == 3


def test_text_kept_only_when_asked(store_url, store_path):
    meter = Meter(bot="b", store=store_url, store_text=True, hash_users=False)
    meter.track_message(user="alice", direction="in", text="hello")
    meter.close()
    assert query(store_path, "SELECT user_id, text, chars FROM events") == [("alice", "hello", 5)]


def test_writes_are_idempotent_on_event_id(store_url, store_path):
    meter = Meter(bot="b", store=store_url)
    # A bot retrying the same delivery passes the same id; it is stored once.
    for _ in range(3):
        meter.track_message(direction="in", event_id="SM0123456789abcdef")
    meter.flush()
    meter.track_message(direction="in", event_id="SM0123456789abcdef")
    meter.track_message(direction="in", event_id="SMother")
    meter.close()
    assert scalar(store_path, "SELECT count(*) FROM events") == 2

    # Writing a whole batch twice (what a replay after a crash does) stores it once.
    from botmeter.backends.duckdb.store import DuckDBStore

    store = DuckDBStore(store_url)
    con_rows = scalar(store_path, "SELECT count(*) FROM events")
    import duckdb

    con = duckdb.connect(str(store_path), read_only=True)
    con.execute("SET arrow_lossless_conversion = true")  # event_id as a UUID, as the writer sends it
    table = con.sql("SELECT * FROM events").to_arrow_table()
    con.close()
    assert store.write(table) == 0
    assert scalar(store_path, "SELECT count(*) FROM events") == con_rows


def test_unknown_model_is_kept_unpriced_and_counted(store_url, store_path):
    meter = Meter(bot="b", store=store_url)
    meter.track_llm_call(provider="openai", model="gpt-imaginary-9", input_tokens=10, output_tokens=5)
    meter.flush()
    assert meter.stats()["unpriced_models"] == {"openai/gpt-imaginary-9": 1}
    meter.close()
    assert query(store_path, "SELECT model, cost_usd, price_version FROM events") == [
        ("gpt-imaginary-9", None, None)
    ]


def test_caller_cost_wins(store_url, store_path):
    meter = Meter(bot="b", store=store_url)
    meter.track_llm_call(provider="openai", model="gpt-4o", input_tokens=10, cost_usd=0.5)
    meter.close()
    assert query(store_path, "SELECT cost_usd, price_version FROM events") == [(0.5, "caller")]


def test_full_buffer_drops_are_counted_and_stored(store_url, store_path):
    meter = Meter(bot="b", store=store_url, max_buffer=10, flush_interval=60, batch_size=1000)
    for i in range(100):
        meter.track_timing("reply", float(i))
    stats = meter.stats()
    assert stats["buffered"] == 10 and stats["dropped_buffer_full"] == 90
    meter.close()
    assert scalar(store_path, "SELECT count(*) FROM events WHERE kind = 'timing'") == 10
    (units, props) = query(
        store_path, "SELECT units, properties FROM events WHERE kind = 'system' AND name = 'dropped'"
    )[0]
    assert units == 90
    assert json.loads(props) == {"buffer_full": {"track_timing": 90}}


def test_disabled_by_the_seed_variable(monkeypatch, store_url, store_path):
    monkeypatch.setenv("ANALYTICS_ENABLED", "false")
    meter = Meter(bot="b", store=store_url)
    meter.track_message(direction="in", text="x")
    meter.track_llm_call(provider="openai", model="gpt-4o", input_tokens=-1)  # not even checked: a no-op
    assert meter.flush() and meter.stats()["buffered"] == 0
    meter.close()
    assert not store_path.exists()


def test_argument_beats_environment(monkeypatch, store_url):
    monkeypatch.setenv("BOTMETER_ENABLED", "false")
    monkeypatch.setenv("BOTMETER_BOT", "from-env")
    meter = Meter(store=store_url, enabled=True)
    assert meter.enabled and meter.config.bot == "from-env"
    meter.close()


def test_bad_setting_names_the_variable_and_value(monkeypatch, store_url):
    monkeypatch.setenv("BOTMETER_FLUSH_INTERVAL", "soon")
    with pytest.raises(ValueError, match=r"BOTMETER_FLUSH_INTERVAL.*'soon'"):
        Meter(store=store_url)


def test_a_failing_processor_loses_nothing(store_url, store_path):
    def broken(frame: Frame) -> Frame:
        raise RuntimeError("bug in a custom processor")

    meter = Meter(bot="b", store=store_url, processors=[broken])
    meter.track_message(direction="in")
    meter.flush()
    assert meter.stats()["processor_failures"] == {"broken": 1}
    meter.close()
    assert scalar(store_path, "SELECT count(*) FROM events") == 1


def test_per_event_processor_can_redact_and_drop(store_url, store_path):
    def rule(event):
        if event["kind"] == "activity" and event["name"] == "heartbeat":
            return None
        if event.get("properties"):
            event["properties"] = {k: v for k, v in event["properties"].items() if k != "email"}
        return event

    meter = Meter(bot="b", store=store_url, processors=[per_event(rule)])
    meter.track_activity("heartbeat")
    meter.track_activity("reset", properties={"email": "a@b.c", "reason": "stuck"})
    meter.close()
    assert query(store_path, "SELECT name, properties FROM events") == [("reset", '{"reason":"stuck"}')]


def test_timer_as_block_and_decorator(store_url, store_path):
    meter = Meter(bot="b", store=store_url)
    with meter.timer("llm", model="gpt-4o") as t:
        time.sleep(0.02)

    @meter.timer("reply")
    def reply():
        time.sleep(0.01)
        return "ok"

    assert reply() == "ok"
    meter.close()
    got = dict(query(store_path, "SELECT stage, latency_ms FROM events"))
    assert got["llm"] == pytest.approx(t.latency_ms) and got["llm"] >= 20
    assert got["reply"] >= 10
    assert scalar(store_path, "SELECT model FROM events WHERE stage = 'llm'") == "gpt-4o"


def test_history_through_the_same_path(store_url, store_path):
    meter = Meter(bot="b", store=store_url)
    meter.track_message(direction="in", ts=datetime(2026, 10, 1, 9, 30, tzinfo=UTC))
    meter.track_message(direction="in", ts=1_790_000_000.25)
    meter.close()
    assert [r[0] for r in query(store_path, "SELECT ts FROM events ORDER BY ts")] == [
        datetime(2026, 9, 21, 14, 13, 20, 250000),
        datetime(2026, 10, 1, 9, 30),
    ]


def test_flush_and_close_are_safe_to_repeat(store_url, store_path):
    meter = Meter(bot="b", store=store_url)
    meter.track_message(direction="in")
    assert meter.flush() and meter.flush()
    assert meter.close() and meter.close()
    meter.track_message(direction="in")  # after close: a no-op, no error
    assert scalar(store_path, "SELECT count(*) FROM events") == 1


def test_fork_child_gets_a_working_writer(store_url, store_path):
    meter = Meter(bot="b", store=store_url, flush_interval=0.1)
    meter.track_activity("parent-before")
    pid = os.fork()
    if pid == 0:  # the child: track, flush, leave without running the parent's atexit
        code = 0
        try:
            for _ in range(50):
                meter.track_activity("child")
            code = 0 if meter.flush(timeout=20) else 3
        except BaseException:
            code = 4
        os._exit(code)
    meter.track_activity("parent-after")
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    meter.close()
    counts = dict(query(store_path, "SELECT name, count(*) FROM events GROUP BY 1"))
    # Nothing the parent buffered before the fork is written twice, nothing of the child's is lost.
    assert counts == {"parent-before": 1, "child": 50, "parent-after": 1}


def test_the_documented_methods_do_what_the_fast_path_does(store_url, store_path):
    meter = Meter(bot="b", store=store_url)
    # Called through the class (as a wrapper or a mock might), the documented methods forward to
    # the instance's fast path with the same arguments, positional ones included.
    Meter.track_timing(meter, "reply", 12.5, user="u1")
    Meter.track_error(meter, "rate_limit_exceeded", provider="openai")
    Meter.track_llm_call(meter, provider="openai", model="gpt-4o", input_tokens=3)
    with pytest.raises(ValueError, match="input_tokens"):
        Meter.track_llm_call(meter, provider="openai", model="gpt-4o", input_tokens=-3)
    meter.close()
    assert dict(query(store_path, "SELECT kind, count(*) FROM events GROUP BY 1")) == {
        "timing": 1,
        "error": 1,
        "llm_call": 1,
    }
    assert scalar(store_path, "SELECT error_category FROM events WHERE kind = 'error'") == "rate_limit"


def test_events_reach_the_store_within_the_flush_interval_without_flush(store_url, store_path):
    # While busy the writer writes whole DuckDB row groups and holds the rest back, but never for
    # longer than a flush interval: 130,000 events are one row group and a remainder.
    meter = Meter(bot="b", store=store_url, flush_interval=0.3)
    for i in range(130_000):
        meter.track_timing("reply", float(i % 1000))
    deadline = time.monotonic() + 20
    stored = 0
    while time.monotonic() < deadline and stored < 130_000:
        time.sleep(0.2)
        stored = meter.stats()["written"]
    assert stored == 130_000
    meter.close()
    assert scalar(store_path, "SELECT count(*) FROM events") == 130_000


def test_phone_numbers_used_as_conversation_ids_are_hashed(store_url, store_path):
    meter = Meter(bot="b", store=store_url)
    meter.track_message(direction="in", user=USER, conversation=USER)
    meter.track_message(direction="in", user=USER, conversation="c-42")
    meter.close()
    conversations = [r[0] for r in query(store_path, "SELECT conversation_id FROM events ORDER BY event_id")]
    assert "c-42" in conversations  # ordinary ids stay readable
    assert USER not in conversations and "5551234567" not in "".join(conversations)
    # The same keyed hash as the user's, so the two can be joined.
    assert scalar(store_path, "SELECT count(*) FROM events WHERE conversation_id = user_id") == 1


def test_a_flush_with_nothing_to_write_does_not_wait_for_a_reader_in_the_same_process(store_url, tmp_path):
    """A notebook reading through a session, then flushing: the writer has nothing to write and must
    not wait for the reader's hold on the file."""
    meter = Meter(bot="b", store=store_url, spool_dir=str(tmp_path / "sp"))
    try:
        meter.track_message(direction="in", text="hi", user="u1")
        assert meter.flush()
        reader = meter.reader()
        with reader.session():
            assert reader.query("messages", days=1, interval=None).total() == 1
            started = time.monotonic()
            assert meter.flush(timeout=10)
            assert time.monotonic() - started < 2
    finally:
        meter.close()


def _loop() -> dict:
    value: dict = {"step": 1}
    value["again"] = value
    return value


def _deep(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth):
        value = {"a": value}
    return value


# Values the writer could not store: before, the track call took them and the whole batch they were
# drained with was lost (flush() True, dropped 0). Now the call refuses each one, naming the argument.
UNSTORABLE = [
    ("track_activity", {"name": "a", "properties": _loop()}, "properties"),
    ("track_activity", {"name": "a", "properties": _deep(5_000)}, "properties"),
    ("track_activity", {"name": "a", "properties": {"score": float("nan")}}, "properties"),
    ("track_sms", {"direction": "out", "text": "hi \udc80", "user": USER}, "text"),
    ("track_message", {"direction": "in", "user": "+1555\ud800"}, "user"),
    ("track_llm_call", {"provider": "openai", "model": "gpt-4o", "input_tokens": 2**64}, "input_tokens"),
    ("track_message", {"direction": "in", "conversation": 10**30}, "conversation"),
    ("track_activity", {"name": "a", "ts": 1e300}, "ts"),
    ("track_activity", {"name": "a", "ts": 10**400}, "ts"),
    ("track_activity", {"name": "a", "ts": time.time() * 1000}, "ts"),
    ("track_error", {"error": "Timeout", "context": {"wait": float("inf")}}, "context"),
]


@pytest.mark.parametrize("pure_python", [False, True], ids=["c", "python"])
def test_unstorable_values_are_refused_at_the_call_and_the_batch_is_kept(store_url, store_path, pure_python):
    meter = Meter(bot="b", store=store_url, pure_python=pure_python)
    said = []
    for call, kwargs, name in UNSTORABLE:
        meter.track_sms(direction="in", text="before", user=USER)
        with pytest.raises(ValueError, match=name) as info:
            getattr(meter, call)(**kwargs)
        said.append(str(info.value))
        meter.track_llm_call(provider="openai", model="gpt-4o", input_tokens=10, user=USER, conversation="c")
    assert meter.flush()
    stats = meter.stats()
    meter.close()
    assert stats["dropped"] == 0 and not stats["processor_failures"], stats
    assert scalar(store_path, "SELECT count(*) FROM events WHERE kind <> 'system'") == 2 * len(UNSTORABLE)
    assert scalar(store_path, "SELECT count(*) FROM events WHERE kind = 'message' AND cost_usd > 0") == len(
        UNSTORABLE
    )
    assert any("milliseconds" in s for s in said)


@pytest.mark.parametrize("pure_python", [False, True], ids=["c", "python"])
def test_an_exception_with_a_lone_surrogate_is_stored_with_its_batch(store_url, store_path, pure_python):
    # Exceptions are described on the writer (the call does not read them): a message holding a
    # lone surrogate (bytes decoded with errors="surrogateescape") once lost every event of its batch.
    meter = Meter(bot="b", store=store_url, pure_python=pure_python)
    meter.track_message(direction="in", text="hi", user=USER)
    meter.track_error(ValueError(b"caf\xe9 closed".decode("utf-8", "surrogateescape")), user=USER)
    meter.track_sms(direction="out", text="bye", user=USER)
    assert meter.flush()
    assert meter.stats()["last_error"] is None
    meter.close()
    assert scalar(store_path, "SELECT count(*) FROM events") == 3
    assert scalar(store_path, "SELECT error_message FROM events WHERE kind = 'error'") == "caf\ufffd closed"


def test_a_long_error_message_does_not_freeze_the_bots_threads(store_url, store_path):
    # The writer masks error messages while holding the GIL: a 150,000-character message once
    # stopped every thread of the bot for 70 s. The bot's thread keeps ticking while it is written.
    meter = Meter(bot="b", store=store_url)

    def write_long_errors() -> bool:
        for shape in ("a" * 150_000, "a." * 75_000, "x@" + "a-" * 75_000):
            meter.track_error(RuntimeError(shape))
        return meter.flush(timeout=60)

    try:
        flushed, longest_stall = stalls_while(write_long_errors)
    finally:
        meter.close()
    assert flushed
    assert longest_stall < 2.0, longest_stall
    lengths = [r[0] for r in query(store_path, "SELECT length(error_message) FROM events")]
    assert len(lengths) == 3 and max(lengths) <= 500


def test_work_handed_to_a_stalled_writer_is_bounded(store_url, monkeypatch):
    # Handed-over calls hold SDK responses: while the writer does not take them (here it waits
    # for a long flush interval, as it would behind a stalled store), at most _MAX_DEFERRED wait;
    # the next is recorded at once on its caller's thread.
    import botmeter.collect.meter as meter_module

    monkeypatch.setattr(meter_module, "_MAX_DEFERRED", 3)
    meter = Meter(bot="b", store=store_url, flush_interval=600)
    run = []
    for n in range(5):
        meter.defer(lambda n, ts: run.append((n, ts)), (n,))
    assert run == [(3, None), (4, None)]  # the two past the cap, at once
    assert meter.stats()["buffered"] == 3
    meter.close()
    assert [n for n, _ in run] == [3, 4, 0, 1, 2] and all(ts is not None for _, ts in run[2:])
