"""The demo bot, end to end: a real DuckDB file filled through the Meter, checked with plain SQL."""

from __future__ import annotations

import io
import math
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from rich.console import Console

from botmeter.demo import DemoResult, print_summary, run_demo
from botmeter.process.sms import sms_parts

END = datetime(2026, 3, 2, 15, 30, tzinfo=UTC)
SMALL = {"days": 7, "users": 40, "seed": 7, "end": END, "progress": False}


def query(path: Path, sql: str, params: list | None = None) -> list[tuple]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def count(path: Path) -> int:
    return query(path, "SELECT count(*) FROM events")[0][0]


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> DemoResult:
    path = tmp_path_factory.mktemp("demo") / "small.duckdb"
    # Message text is kept for this run so the test can see which replies were UCS-2.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BOTMETER_STORE_TEXT", "true")
        return run_demo(f"duckdb://{path}", **SMALL)


def test_result_describes_the_run(small: DemoResult) -> None:
    assert small.path is not None and small.path.exists()
    assert small.events > 1_000
    assert small.added == small.events == count(small.path)
    assert small.spooled == 0 and small.dropped == 0
    assert small.start == END - timedelta(days=7) and small.end == END


def test_every_kind_of_event(small: DemoResult) -> None:
    kinds = dict(query(small.path, "SELECT kind, count(*) FROM events GROUP BY kind"))
    for kind in ("message", "llm_call", "api_call", "error", "timing", "activity"):
        assert kinds.get(kind, 0) > 0, kind
    stages = {s for (s,) in query(small.path, "SELECT DISTINCT stage FROM events WHERE kind = 'timing'")}
    assert {"llm", "sms_send", "reply"} <= stages
    names = {n for (n,) in query(small.path, "SELECT DISTINCT name FROM events WHERE kind = 'activity'")}
    assert "reset" in names and "admin:status" in names
    assert any(n.startswith("feature:") for n in names)


def test_events_lie_in_the_window(small: DemoResult) -> None:
    lo, hi = query(small.path, "SELECT min(ts), max(ts) FROM events")[0]
    assert lo.replace(tzinfo=UTC) >= END - timedelta(days=7)
    assert hi.replace(tzinfo=UTC) < END


def test_llm_and_sms_are_priced(small: DemoResult) -> None:
    llm, sms = query(
        small.path,
        "SELECT sum(cost_usd) FILTER (WHERE kind = 'llm_call'), "
        "sum(cost_usd) FILTER (WHERE kind = 'message' AND provider = 'twilio') FROM events",
    )[0]
    assert llm > 0 and sms > 0
    models = {m for (m,) in query(small.path, "SELECT DISTINCT model FROM events WHERE kind = 'llm_call'")}
    assert {"gpt-4o-mini", "claude-haiku-4-5", "o4-mini"} <= models
    countries = query(small.path, "SELECT DISTINCT country FROM events WHERE country IS NOT NULL")
    countries = {c for (c,) in countries}
    assert "US" in countries and len(countries) >= 3


def test_tokens_include_reasoning_and_cache(small: DemoResult) -> None:
    reasoning, cached, written = query(
        small.path,
        "SELECT count(*) FILTER (WHERE reasoning_tokens > 0), count(*) FILTER (WHERE cached_tokens > 0), "
        "count(*) FILTER (WHERE cache_write_tokens > 0) FROM events WHERE kind = 'llm_call'",
    )[0]
    assert reasoning > 0 and cached > 0 and written > 0
    # the prompt grows with the conversation: later turns send more tokens than first ones
    (growth,) = query(
        small.path,
        "SELECT max(input_tokens) - min(input_tokens) FROM events "
        "WHERE kind = 'llm_call' AND model = 'gpt-4o-mini'",
    )[0]
    assert growth > 1_000


def test_several_error_categories(small: DemoResult) -> None:
    categories = dict(
        query(small.path, "SELECT error_category, count(*) FROM events WHERE kind = 'error' GROUP BY 1")
    )
    assert len(categories) >= 4, categories
    assert None not in categories
    # the bot's own bug is grouped by the frame that raised it
    frames = query(
        small.path,
        "SELECT DISTINCT properties->>'frame' FROM events "
        "WHERE kind = 'error' AND error_category = 'internal'",
    )
    assert all(f is not None and f.startswith("dadacat.handlers:") for (f,) in frames)


def test_some_replies_are_ucs2_and_multi_segment(small: DemoResult) -> None:
    rows = query(small.path, "SELECT text, units FROM events WHERE kind = 'message' AND direction = 'out'")
    ucs2_long = [(t, u) for t, u in rows if u > 1 and sms_parts(t) == (int(u), "UCS-2")]
    assert ucs2_long
    assert any(u > 1 and sms_parts(t)[1] == "GSM-7" for t, u in rows)


def test_new_users_join_on_later_days(small: DemoResult) -> None:
    firsts = query(
        small.path,
        "SELECT min(ts)::DATE FROM events WHERE kind = 'message' AND direction = 'in' GROUP BY user_id",
    )
    first_day = min(d for (d,) in firsts)
    assert sum(1 for (d,) in firsts if d > first_day + timedelta(days=1)) >= 2


def quantile_cont(values: list[float], q: float) -> float:
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def test_summary_matches_an_independent_count(small: DemoResult) -> None:
    rows = query(
        small.path,
        "SELECT kind, direction, user_id, conversation_id, provider, cost_usd, stage, latency_ms, "
        "error_category, ts FROM events WHERE bot = 'dadacat'",
    )
    users, conversations = set(), set()
    cost, by_provider = [], defaultdict(list)
    messages, errors, replies = Counter(), Counter(), []
    llm_calls = unpriced = 0
    for kind, direction, user, conversation, provider, cost_usd, stage, latency, category, _ in rows:
        if conversation is not None:
            conversations.add(conversation)
        if cost_usd is not None:
            cost.append(cost_usd)
            by_provider[provider].append(cost_usd)
        if kind == "message":
            messages[direction] += 1
            if direction == "in":
                users.add(user)
        elif kind == "error":
            errors[category] += 1
        elif kind == "timing" and stage == "reply":
            replies.append(latency)
        elif kind == "llm_call":
            llm_calls += 1
            unpriced += cost_usd is None
    s = small.summary
    assert s["events"] == len(rows) == small.events
    assert s["cost_usd"] == pytest.approx(math.fsum(cost), rel=1e-9)
    assert s["cost_by_provider"].keys() == by_provider.keys()
    for provider, costs in by_provider.items():
        assert s["cost_by_provider"][provider] == pytest.approx(math.fsum(costs), rel=1e-9)
    assert list(s["cost_by_provider"].values()) == sorted(s["cost_by_provider"].values(), reverse=True)
    assert s["users"] == len(users)
    assert s["conversations"] == len(conversations)
    assert (s["messages_in"], s["messages_out"]) == (messages["in"], messages["out"])
    assert s["errors"] == sum(errors.values())
    assert s["errors_by_category"] == dict(errors)
    assert s["p95_reply_ms"] == pytest.approx(quantile_cont(replies, 0.95))
    assert s["llm_calls"] == llm_calls
    assert s["unpriced_llm_calls"] == unpriced > 0
    assert (s["start"], s["end"]) == (END - timedelta(days=7), END)
    assert s["first_event"] == min(r[-1] for r in rows).replace(tzinfo=UTC)
    assert s["last_event"] == max(r[-1] for r in rows).replace(tzinfo=UTC)


def test_same_seed_same_summary(small: DemoResult, tmp_path: Path) -> None:
    again = run_demo(str(tmp_path / "again.duckdb"), **SMALL)
    assert again.events == small.events
    assert again.summary == small.summary


def test_other_seed_other_data(small: DemoResult, tmp_path: Path) -> None:
    other = run_demo(str(tmp_path / "other.duckdb"), **{**SMALL, "seed": 8})
    assert other.summary != small.summary


def test_rerun_into_the_same_file_adds_nothing(tmp_path: Path) -> None:
    path = tmp_path / "twice.duckdb"
    first = run_demo(str(path), **SMALL)
    second = run_demo(str(path), **SMALL)
    assert second.events == first.events > 0
    assert second.added == 0
    assert count(path) == first.events
    assert second.summary == first.summary


def test_a_later_run_only_adds_the_new_days(tmp_path: Path) -> None:
    # The world is laid on the calendar: a run ending a day later recreates the shared days exactly.
    later = {**SMALL, "end": END + timedelta(days=1)}
    path = tmp_path / "rolling.duckdb"
    run_demo(str(path), **SMALL)
    rolled = run_demo(str(path), **later)
    fresh = run_demo(str(tmp_path / "fresh.duckdb"), **later)
    assert 0 < rolled.added < rolled.events
    assert rolled.summary == fresh.summary
    assert count(path) == count(tmp_path / "fresh.duckdb") + count_before(path, END - timedelta(days=6))


def count_before(path: Path, ts: datetime) -> int:
    return query(path, "SELECT count(*) FROM events WHERE ts < ?", [ts.replace(tzinfo=None)])[0][0]


def test_progress_and_summary_print_to_the_console(tmp_path: Path) -> None:
    out = io.StringIO()
    console = Console(file=out, width=120, force_terminal=False)
    result = run_demo(str(tmp_path / "tiny.duckdb"), days=2, users=10, end=END, console=console)
    assert "Writing" in out.getvalue()
    print_summary(result, console)
    text = out.getvalue()
    assert str(result.path) in text
    assert "Next:" in text and "Cost" in text and "Errors" in text


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="days"):
        run_demo("unused.duckdb", days=0)


def test_reply_latency_and_failed_replies_match_an_independent_computation(small: DemoResult) -> None:
    from botmeter.analyse import Reader
    from botmeter.analyse.summary import summarise

    reader = Reader(f"duckdb://{small.path}", now=END)
    summary = summarise(reader, 7, END, compare_weeks=False, with_groups=False)
    start = datetime.fromisoformat(summary["period"]["start"].replace("Z", "+00:00"))
    rows = query(
        small.path,
        "SELECT kind, direction, conversation_id, stage, latency_ms, properties->>'$.failed', ts "
        "FROM events WHERE ts >= $1 ORDER BY ts",
        [start.replace(tzinfo=None)],
    )
    replies = [lat for kind, _, _, stage, lat, _, _ in rows if kind == "timing" and stage == "reply"]
    # The demo's LLM calls carry the stage "reply" too: they are not the users' wait.
    llm_reply = [lat for kind, _, _, stage, lat, _, _ in rows if kind == "llm_call" and stage == "reply"]
    assert llm_reply and replies
    lat = summary["latency"]
    assert lat["reply_stage"] == "reply"
    assert lat["reply_p95_s"]["value"] == pytest.approx(quantile_cont(replies, 0.95) / 1000)
    assert lat["reply_p50_s"]["value"] == pytest.approx(quantile_cont(replies, 0.5) / 1000)
    assert lat["p95_ms"]["value"] == pytest.approx(quantile_cont(replies, 0.95))
    by_stage = reader.query("latency_ms", start=start, end=END, interval=None, by="stage", stat="p95").rows
    assert {r["stage"]: r["p95"] for r in by_stage}["reply"] == pytest.approx(quantile_cont(replies, 0.95))
    # Failed replies: walk each conversation's turns (an inbound message to the next).
    turns: dict[str, list[list[tuple]]] = defaultdict(list)
    for kind, direction, conversation, _, _, failed, ts in rows:
        if kind not in ("message", "error") or conversation is None:
            continue
        if kind == "message" and direction == "in":
            turns[conversation].append([ts])
        elif turns[conversation]:
            turns[conversation][-1].append((kind, direction, failed == "true"))
    failed_turns = 0
    for conversation_turns in turns.values():
        for _, *rest in conversation_turns:
            bad = any(k == "error" or (d == "out" and f) for k, d, f in rest)
            good = any(k == "message" and d == "out" and not f for k, d, f in rest)
            failed_turns += bad and not good
    errors = summary["errors"]
    inbound = summary["engagement"]["inbound_messages"]["value"]
    assert errors["failed_replies"]["value"] == failed_turns > 0
    assert errors["reply_failure_rate"]["value"] == pytest.approx(failed_turns / inbound)
    # Retried errors make the error rate larger than the share of replies that failed.
    assert errors["reply_failure_rate"]["value"] < errors["error_rate"]["value"]
