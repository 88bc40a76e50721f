"""Privacy on a real DuckDB file: what a bot tracks is never stored with a person's number or words in it."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from botmeter import Meter, per_event
from botmeter.interfaces.cli import main
from conftest import query, scalar, start_python

NUMBER = "+15551234567"
DIGITS = "5551234567"
HASH_KEY = "0f" * 16
ADMIN = "+15550001111"


def user_hash(user: str, key: str = HASH_KEY) -> str:
    return hmac.new(bytes.fromhex(key), user.encode(), hashlib.sha256).hexdigest()[:20]


def every_text_in(path: Path) -> list[str]:
    """Every text value of every table in the file: events, rollups, metadata."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        columns = con.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE data_type IN ('VARCHAR', 'JSON') AND table_schema = 'main'"
        ).fetchall()
        texts = []
        for table, column in columns:
            rows = con.execute(f'SELECT DISTINCT CAST("{column}" AS VARCHAR) FROM "{table}"').fetchall()
            texts += [r[0] for r in rows if r[0] is not None]
        return texts
    finally:
        con.close()


@pytest.mark.parametrize("prefix", ["whatsapp:", "sms:", "tel:", "WhatsApp: "])
def test_prefixed_phone_numbers_are_hashed_like_bare_ones(store_url, store_path, tmp_path, prefix):
    with Meter(bot="b", store=store_url, hash_key=HASH_KEY) as meter:
        for spelling in (f"{prefix}{NUMBER}", f"{prefix}+1 (555) 123-4567"):
            meter.track_message(
                direction="in", text="hi", user=spelling, conversation=spelling, channel="whatsapp"
            )
            meter.track_llm_call(provider="openai", model="gpt-4o", input_tokens=5, user=spelling,
                                 conversation=spelling)  # fmt: skip
        meter.track_message(direction="in", text="hi", user=NUMBER, conversation="c-7")
    stored = query(store_path, "SELECT DISTINCT user_id FROM events WHERE user_id IS NOT NULL")
    assert stored == [(user_hash(NUMBER),)]  # one person, whichever channel spelling
    conversations = {r[0] for r in query(store_path, "SELECT DISTINCT conversation_id FROM events")}
    assert conversations == {user_hash(NUMBER), "c-7"}
    texts = every_text_in(store_path)
    assert texts and not [t for t in texts if DIGITS in t or "555) 123" in t]

    out = tmp_path / "events.json"
    result = CliRunner().invoke(main, ["export", "--store", store_url, "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert DIGITS not in out.read_text() and user_hash(NUMBER) in out.read_text()
    shown = CliRunner().invoke(main, ["query", "messages", "--store", store_url, "--by", "conversation"])
    assert shown.exit_code == 0, shown.output
    assert DIGITS not in shown.output
    page = tmp_path / "dashboard.html"
    drawn = CliRunner().invoke(main, ["dashboard", "--store", store_url, "--output", str(page), "--json"])
    assert drawn.exit_code == 0, drawn.output
    assert DIGITS not in page.read_text() and DIGITS not in page.with_suffix(".json").read_text()


def test_error_types_and_codes_given_as_text_are_masked(store_url, store_path):
    with Meter(bot="b", store=store_url) as meter:
        meter.track_error(f"could not text {NUMBER} or ana@example.com")
        meter.track_error("rate_limit_exceeded")
        meter.track_error(30003)
        meter.track_error("HTTP429", code=f"blocked {NUMBER}")
        meter.track_error("user_15551234567")
    types = [r[0] for r in query(store_path, "SELECT error_type FROM events ORDER BY ts, event_id")]
    assert "could not text <phone> or <email>" in types
    assert {"rate_limit_exceeded", "30003", "HTTP429"} <= set(types)
    assert not [t for t in every_text_in(store_path) if DIGITS in t or "ana@" in t]
    assert scalar(store_path, "SELECT error_category FROM events WHERE error_type = '30003'") == "delivery"


@pytest.mark.parametrize("store_text", [False, True])
def test_message_text_inside_exception_messages_follows_the_text_setting(store_url, store_path, store_text):
    with Meter(bot="b", store=store_url, store_text=store_text) as meter:
        meter.track_error(KeyError("what is my balance"))
        meter.track_error(ValueError("cannot parse \"call me at home\" as a date; field 'To'"))
    messages = {r[0] for r in query(store_path, "SELECT error_message FROM events")}
    if store_text:
        assert messages == {
            "'what is my balance'",
            "cannot parse \"call me at home\" as a date; field 'To'",
        }
    else:
        assert messages == {"<text>", "cannot parse <text> as a date; field 'To'"}


def test_admin_command_arguments_are_not_stored_as_typed(store_url, store_path, tmp_path):
    with Meter(bot="b", store=store_url, admins=[ADMIN], hash_key=HASH_KEY) as meter:
        assert meter.admin_reply(sender=ADMIN, text=f"admin:costs {NUMBER}")
        assert meter.admin_reply(sender=ADMIN, text="admin:costs 30")
        assert meter.admin_reply(sender=ADMIN, text="admin:errors my password is hunter2")
        assert meter.admin_reply(sender=NUMBER, text=f"admin:{DIGITS} please") is None
        assert meter.flush()
    props = [
        json.loads(r[0])
        for r in query(
            store_path, "SELECT properties FROM events WHERE kind = 'activity' ORDER BY ts, event_id"
        )
    ]
    assert {"days": 30} in props
    assert {"argument": "not understood", "chars": len(NUMBER)} in props
    assert {"command": "unknown"} in props
    texts = every_text_in(store_path)
    assert not [t for t in texts if DIGITS in t or "hunter2" in t]


def test_user_hashing_fails_closed(store_url, store_path):
    # A processor (the bot's own redaction rule, with a bug) leaves ids the hasher cannot take: a
    # str with a lone surrogate makes the HMAC's encode raise, an object whose str() raises makes
    # the phone-number test raise, for real. Before, the whole hashing step was skipped and every
    # id of the batch was stored in the clear; now that event is set aside, the others hashed.
    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no text for this id")

    def mangle(event: dict) -> dict:
        if event.get("name") == "broken":
            event["user_id"] = "+1555\udc80"
            event["conversation_id"] = Unprintable()
        return event

    with Meter(bot="b", store=store_url, hash_key=HASH_KEY, processors=[per_event(mangle)]) as meter:
        for i in range(3):
            meter.track_activity("fine", user=f"+1555000000{i}", conversation=f"whatsapp:+1555000000{i}")
        meter.track_activity("broken", user=NUMBER, conversation=NUMBER)
        meter.track_message(direction="in", user=NUMBER, conversation=NUMBER)
        meter.flush()  # False: one event could not be stored (its ids could not be hashed)
        stats = meter.stats()
    assert stats["processor_failures"].get("hash_users", 0) >= 1
    assert stats["rejected"] == 1 and stats["dropped"] == 1  # set aside and counted, not lost silently
    rows = query(
        store_path, "SELECT name, user_id, conversation_id FROM events WHERE kind <> 'system' ORDER BY name"
    )
    assert len(rows) == 4  # the others, each with its ids hashed
    by_name: dict = {}
    for name, user, conversation in rows:
        by_name.setdefault(name, []).append((user, conversation))
    assert "broken" not in by_name
    assert sorted(u for u, _ in by_name["fine"]) == sorted(user_hash(f"+1555000000{i}") for i in range(3))
    assert all(u == c for u, c in by_name["fine"])
    assert by_name[None] == [(user_hash(NUMBER), user_hash(NUMBER))]
    reasons = scalar(store_path, "SELECT properties FROM events WHERE kind = 'system' AND name = 'dropped'")
    assert "hash_users" in reasons
    assert not [t for t in every_text_in(store_path) if "+1555" in t]


def test_processes_started_together_on_a_fresh_store_share_one_key(tmp_path):
    store = tmp_path / "fresh" / "bot.duckdb"
    start_at = time.time() + 2.0
    code = f"""
        import time
        from botmeter import Meter
        while time.time() < {start_at}:
            pass
        meter = Meter(bot="b", store="duckdb://{store}", flush_interval=60)
        print(meter.pipeline.hasher.hash("{NUMBER}"))
        meter.close()
    """
    bots = [start_python(code, tmp_path, name=f"bot{i}.py") for i in range(6)]
    said = []
    for bot in bots:
        out, err = bot.communicate(timeout=120)
        assert bot.returncode == 0, err
        said.append(out.strip())
    key = (store.parent / "bot.duckdb.key").read_text().strip()
    assert said == [user_hash(NUMBER, key)] * 6
    assert not [p.name for p in store.parent.iterdir() if p.name.endswith(".tmp")]


def test_a_damaged_key_file_does_not_stop_the_bot(store_url, store_path, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    Path(f"{store_path}.key").write_text("not a key\n")
    with Meter(bot="b", store=store_url) as meter:
        meter.track_message(direction="in", user=NUMBER)
    assert "does not hold a user-hash key" in caplog.text
    kept = next((tmp_path / "home" / ".cache" / "botmeter" / "keys").iterdir()).read_text().strip()
    assert scalar(store_path, "SELECT user_id FROM events") == user_hash(NUMBER, kept)
