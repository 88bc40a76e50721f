"""Chat admin commands, as a bot uses them: every incoming message goes to
``meter.admin_reply(sender=..., text=...)``; admins get an answer, everyone else gets None."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import duckdb
import pytest
from slack_sdk.models.blocks import Block

from botmeter import Meter
from botmeter.analyse import Reader
from botmeter.analyse.query import iso
from botmeter.chat_admin import BUSY, REPLY_TIMEOUT_S
from botmeter.process.sms import GSM7, sms_parts
from botmeter.report.numbers import count, money
from conftest import hold_store_file, query, scalar

ADMIN = "+15550001111"
HASH_KEY = "0f" * 16


def sms_ok(text: str, segments: int = 2) -> bool:
    parts, encoding = sms_parts(text)
    return encoding == GSM7 and parts <= segments


@pytest.fixture
def meter(store_url, tmp_path):
    """A bot's meter with a week of traffic: messages, LLM calls, SMS, errors."""
    m = Meter(
        bot="dadacat", store=store_url, admins=[ADMIN], hash_key=HASH_KEY, spool_dir=str(tmp_path / "sp")
    )
    now = datetime.now(UTC)
    for day in range(7):
        at = now - timedelta(days=day, seconds=1)  # not minutes: 'days=1' must hold day 0 just after midnight
        for i in range(4):
            user = f"+1555000020{i}"
            m.track_message(direction="in", text="hi", user=user, conversation=f"c{day}{i}", ts=at)
            m.track_llm_call(
                provider="openai", model="gpt-4o", input_tokens=100, output_tokens=20, cost_usd=0.25,
                latency_ms=800.0 + 10 * i, user=user, conversation=f"c{day}{i}", ts=at,
            )  # fmt: skip
            m.track_sms(direction="out", text="hello there", user=user, conversation=f"c{day}{i}", ts=at)
        m.track_error(TimeoutError("the model took too long"), user="+15550000200", ts=at)
    assert m.flush()
    yield m
    m.close()


def activities(m: Meter) -> dict[str, int]:
    rows = m.query("activities", days=1, interval=None, by="name").rows
    return {r["name"]: r["count"] for r in rows}


def test_ordinary_messages_are_left_to_the_bot(meter):
    before = activities(meter)
    for text in ("hello", "what is admin:status?", "", "   ", None, "administrator"):
        assert meter.admin_reply(sender=ADMIN, text=text) is None
    assert activities(meter) == before  # nothing tracked for ordinary messages


def test_only_admins_get_an_answer_and_refusals_are_recorded(meter, store_path):
    assert meter.admin_reply(sender="+15559999999", text="admin:status") is None
    assert meter.admin_reply(sender=None, text="admin:costs") is None
    # The same number written another way is the same admin: ids are compared as keyed hashes.
    assert meter.admin_reply(sender="+1 (555) 000-1111", text="admin:status")
    assert meter.admin_reply(sender=ADMIN, text="  ADMIN:Status ")
    seen = activities(meter)
    assert seen["admin_denied"] == 2 and seen["admin:status"] == 2
    assert meter.query("admin_commands", days=1, interval=None).total() == 2  # refusals are not commands
    meter.flush()
    # Neither the admin's nor the stranger's number is stored in the clear.
    stored = {r[0] for r in query(store_path, "SELECT DISTINCT user_id FROM events WHERE kind = 'activity'")}
    assert ADMIN not in stored and "+15559999999" not in stored and len(stored - {None}) == 2


def test_admins_from_the_environment(store_url, tmp_path, monkeypatch):
    monkeypatch.setenv("BOTMETER_ADMINS", "+15550002222, ops-team-lead")
    with Meter(bot="b", store=store_url, hash_key=HASH_KEY, spool_dir=str(tmp_path / "s")) as m:
        assert m.admin_reply(sender="+1 555 000 2222", text="admin:help").startswith("botmeter commands:")
        assert m.admin_reply(sender="ops-team-lead", text="admin:help")
        assert m.admin_reply(sender=ADMIN, text="admin:help") is None


def test_status_says_what_botmeter_holds(meter, store_path):
    meter.track_message(direction="in", text="one more", user="+15550000201")
    reply = meter.admin_reply(sender=ADMIN, text="admin:status")
    assert sms_ok(reply)
    # From memory (the file is not opened): what this process wrote, and when.
    assert reply.startswith("botmeter: status on; store duckdb bot.duckdb; written ")
    stats = meter.stats()
    assert f"written {count(stats['written'])}" in reply
    assert "dropped 0" in reply and "spool 0 events in 0 batches" in reply and "v " in reply
    assert meter.flush()
    stored = meter.store.count()  # through the store: the writer may have the file open
    full = json.loads(meter.admin_reply(sender=ADMIN, text="admin:status", format="json"))
    # Everything this meter wrote is in the file (the status reply's own activity may follow).
    assert full["enabled"] is True and stored <= full["events_written"] <= stored + 1 and full["dropped"] == 0
    assert full["last_write"] == iso(datetime.fromtimestamp(meter.stats()["last_write_at"], UTC))


def test_analytics_status_gives_the_key_figures(meter):
    reply = meter.admin_reply(sender=ADMIN, text="admin:analytics_status")
    assert sms_ok(reply), reply
    reader = Reader(meter.store)
    week = reader.query("cost_usd", days=7, interval=None).total()
    today = reader.query("cost_usd", days=1, interval=None).total()
    users = reader.query("active_users", days=7, interval=None).total()
    assert reply.startswith(f"botmeter 7d: today {money(today)}; 7d {money(week)}")
    assert f"users {users}" in reply and "err rate " in reply and "reply p95 " in reply
    assert "anomalies: none" in reply
    three = meter.admin_reply(sender=ADMIN, text="admin:analytics_status 3")
    assert three.startswith("botmeter 3d: today ")
    # One day is today: said once, against yesterday.
    one = meter.admin_reply(sender=ADMIN, text="admin:analytics_status 1")
    assert one.startswith(f"botmeter today: today {money(today)}") and one.count("today") == 2, one
    assert "failed " in one and "reply p95 " in one


def test_analytics_status_reads_with_the_meters_settings(store_url, tmp_path):
    # The admin's figures are the ones meter.reader() gives: the meter's reply stage, not the default.
    with Meter(bot="b", store=store_url, admins=[ADMIN], hash_key=HASH_KEY, reply_stage="answer",
               spool_dir=str(tmp_path / "s")) as m:  # fmt: skip
        m.track_message(direction="in", text="hi", user="+15550000200", conversation="c1")
        assert m.flush()
        full = json.loads(m.admin_reply(sender=ADMIN, text="admin:analytics_status", format="json"))
        assert full["summary"]["latency"]["reply_stage"] == "answer"


def test_costs_and_errors_with_days(meter):
    reader = Reader(meter.store)
    for days in (1, 7, 30):
        reply = meter.admin_reply(sender=ADMIN, text=f"admin:costs {days}")
        assert sms_ok(reply), reply
        total = reader.costs(days)["total_usd"]
        assert reply.startswith(f"botmeter {days}d: cost {money(total)}"), reply
        assert "openai " in reply and "twilio " in reply
    reply = meter.admin_reply(sender=ADMIN, text="admin:errors")
    assert sms_ok(reply)
    assert reply.startswith("botmeter errors 7d: errors 7; groups 1; new 1") and "TimeoutError x7" in reply


def test_bad_arguments_and_unknown_commands_get_a_helpful_reply(meter):
    assert meter.admin_reply(sender=ADMIN, text="admin:costs lots") == (
        "admin:costs: days: expected a whole number from 1 to 3650, got 'lots'. Try admin:help."
    )
    assert "got '0'" in meter.admin_reply(sender=ADMIN, text="admin:errors 0")
    assert "got 'now'" in meter.admin_reply(sender=ADMIN, text="admin:status now")
    unknown = meter.admin_reply(sender=ADMIN, text="admin:reboot")
    assert unknown.startswith("Unknown command admin:reboot. Commands: admin:status") and sms_ok(unknown)
    assert activities(meter)["admin:unknown"] == 1


def test_replies_for_slack_and_other_consumers(meter):
    blocks = meter.admin_reply(sender=ADMIN, text="admin:costs", format="slack_blocks")
    assert blocks["blocks"][0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "botmeter costs", "emoji": False},
    }
    for block in blocks["blocks"]:
        Block.parse(block).to_dict()
    mrkdwn = meter.admin_reply(sender=ADMIN, text="admin:errors", format="slack")
    assert mrkdwn.startswith("*botmeter errors*") and "TimeoutError (timeout, error): 7x" in mrkdwn
    assert meter.admin_reply(sender=ADMIN, text="admin:status", format="markdown").startswith(
        "## botmeter status"
    )
    one = meter.admin_reply(sender=ADMIN, text="admin:analytics_status", max_segments=1)
    assert sms_ok(one, 1)


def test_programmer_errors_raise_at_once_naming_the_argument(meter):
    with pytest.raises(
        ValueError, match="format: expected one of sms, text, slack, slack_blocks, markdown, json, got 'fax'"
    ):
        meter.admin_reply(sender=ADMIN, text="admin:status", format="fax")
    with pytest.raises(ValueError, match="max_segments: expected a whole number >= 1, got 0"):
        meter.admin_reply(sender=ADMIN, text="admin:status", max_segments=0)
    with pytest.raises(TypeError, match="text: expected the message text"):
        meter.admin_reply(sender=ADMIN, text=b"admin:status")
    with pytest.raises(ValueError, match="admins must be phone numbers or ids"):
        Meter(bot="b", enabled=False, admins=[None])


def test_a_store_that_cannot_answer_gives_a_reply_not_an_exception(tmp_path, store_path, store_url):
    m = Meter(bot="b", store=store_url, admins=ADMIN, hash_key=HASH_KEY, lock_timeout=0.3,
              spool_dir=str(tmp_path / "sp"))  # fmt: skip
    try:
        m.track_message(direction="in", text="hi", user="+15550000300")
        assert m.flush()
        # Another process holds the DuckDB file for writing while the admin asks.
        locker = hold_store_file(store_path, tmp_path, 4)
        started = time.monotonic()
        reply = m.admin_reply(sender=ADMIN, text="admin:costs")
        assert reply == BUSY
        assert sms_ok(reply) and time.monotonic() - started < 3.5
        status = m.admin_reply(sender=ADMIN, text="admin:status")  # from memory: answers anyway
        assert status.startswith("botmeter: status on")
        locker.wait(timeout=30)
        # Once the file is free, the refused commands' own activity events arrive from the spool.
        assert m.admin_reply(sender=ADMIN, text="admin:status").startswith("botmeter: status on")
        assert m.flush()
        names = {r["name"] for r in m.query("activities", days=1, by="name", interval=None).rows}
        assert {"admin:costs", "admin:status"} <= names
    finally:
        m.close()


def test_a_disabled_meter_still_answers_its_admins(store_url):
    m = Meter(bot="b", store=store_url, enabled=False, admins=[ADMIN])
    status = m.admin_reply(sender=ADMIN, text="admin:status")
    assert status.startswith("botmeter: status off; queue 0; dropped 0; spool 0 events in 0 batches; v ")
    assert (
        m.admin_reply(sender=ADMIN, text="admin:costs")
        == "botmeter is off (BOTMETER_ENABLED=false): there are no analytics."
    )
    assert m.admin_reply(sender="+15550009999", text="admin:status") is None


def test_replies_keep_to_their_bound_while_another_process_holds_the_file(tmp_path, store_path, store_url):
    """Another process holds the DuckDB file for 30 s. The bot's flush keeps to about one lock
    timeout (it spools), a flush with a timeout to that timeout, admin:status answers from memory at
    once, and every other command answers busy within the reply's bound (it took 25-35 s)."""
    m = Meter(bot="b", store=store_url, admins=ADMIN, hash_key=HASH_KEY, lock_timeout=2.0,
              flush_interval=0.2, spool_dir=str(tmp_path / "sp"))  # fmt: skip
    locker = None
    try:
        m.track_message(direction="in", text="hi", user="+15550000300")
        assert m.flush()
        locker = hold_store_file(store_path, tmp_path, 30)
        for _ in range(4):
            for _ in range(200):
                m.track_message(direction="in", text="hi", user="+15550000300")
            started = time.monotonic()
            assert m.flush()  # spooled: durable, if not yet in the file
            assert time.monotonic() - started < 2.0 + 1.0  # one lock timeout, not four
        for _ in range(10):
            m.track_message(direction="in", text="hi")
        started = time.monotonic()
        m.flush(timeout=0.3)
        assert time.monotonic() - started < 0.3 + 0.2

        started = time.monotonic()
        status = m.admin_reply(sender=ADMIN, text="admin:status")
        assert status.startswith("botmeter: status on") and "spool 8" in status.replace(",", "")
        assert time.monotonic() - started < 0.5
        for command in ("admin:costs", "admin:analytics_status", "admin:errors 30"):
            started = time.monotonic()
            assert m.admin_reply(sender=ADMIN, text=command) == BUSY
            assert time.monotonic() - started < REPLY_TIMEOUT_S + 0.5
    finally:
        if locker is not None:
            locker.kill()
            locker.wait()
        m.close()
    assert scalar(store_path, "SELECT count(*) FROM events WHERE kind = 'message'") == 1 + 4 * 200 + 10


def test_status_works_over_events_stamped_beyond_any_calendar(meter, store_path):
    # Before the track call refused them, a millisecond timestamp was stored as seconds: the year
    # 56,896, which Python's datetime cannot hold. Reading must not crash on what is stored.
    assert meter.flush()
    con = duckdb.connect(str(store_path))
    con.execute(
        "INSERT INTO events (event_id, ts, bot, kind) "
        "VALUES (uuid(), make_timestamp(1733300000000 * 1000000), 'dadacat', 'message')"
    )
    con.close()
    reply = meter.admin_reply(sender=ADMIN, text="admin:status")
    assert reply.startswith("botmeter: status on;"), reply
    assert json.loads(meter.admin_reply(sender=ADMIN, text="admin:status", format="json"))["enabled"]
    for command in ("admin:analytics_status", "admin:costs", "admin:errors"):
        assert meter.admin_reply(sender=ADMIN, text=command).startswith("botmeter "), command
