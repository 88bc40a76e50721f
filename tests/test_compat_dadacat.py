"""The DadaCat analytics package's drop-in: the original bot's calls, through the compat classes,
read back through their ``get_*`` methods and through ``botmeter query``, with the same numbers;
the same calls into CloudWatch (moto's server); the old JSON files imported; the commands' flags."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from botmeter.compat.dadacat import close_all
from botmeter.compat.dadacat.admin import admin_reply
from botmeter.compat.dadacat.costs import CostTracker
from botmeter.compat.dadacat.dashboard import MetricsDashboard, generate_html_dashboard
from botmeter.compat.dadacat.engagement import EngagementTracker, UserActivity
from botmeter.compat.dadacat.errors import ErrorCategory, ErrorTracker
from botmeter.compat.dadacat.generate_dashboard import main as generate_main
from botmeter.compat.dadacat.generate_dashboard import parse_args
from botmeter.interfaces.cli import main
from conftest import hold_store_file, query, scalar, subprocess_env

PHONE = "+15551234567"
ADMIN = "+15550001111"
HASH_KEY = "5a" * 16


@pytest.fixture(autouse=True)
def _own_store(monkeypatch, store_url, tmp_path):
    """Each test's trackers share one Meter over its own DuckDB file; closed after the test."""
    for name in ("AWS_ENDPOINT_URL", "AWS_LAMBDA_FUNCTION_NAME", "DYNAMODB_REGION", "DADACAT_SKIP_ESTIMATES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BOTMETER_STORE", store_url)
    monkeypatch.setenv("BOTMETER_HASH_KEY", HASH_KEY)
    monkeypatch.setenv("BOTMETER_FLUSH_INTERVAL", "0.05")
    monkeypatch.setenv("BOTMETER_SPOOL_DIR", str(tmp_path / "spool"))
    monkeypatch.setenv("BOTMETER_ADMINS", ADMIN)
    yield
    close_all()


def since() -> datetime:
    return datetime.now() - timedelta(days=1)  # naive, local time: as the original bot asks


def cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def query_json(store: str, metric: str, *args: str) -> list[dict]:
    return json.loads(cli("query", metric, "--store", store, "--days", "2", "--interval", "none",
                          "--format", "json", *args))  # fmt: skip


def one_inbound_sms(
    costs: CostTracker, engagement: EngagementTracker, errors: ErrorTracker, first: datetime, turn: int
) -> None:
    """The original bot's calls for one inbound SMS (app.py's /sms webhook), turn ``turn`` of a
    conversation that began at ``first``; the LLM reply itself is recorded by botmeter."""
    engagement.track_user_activity(user_id=PHONE, activity_type=UserActivity.MESSAGE)
    costs.meter.track_llm_call(provider="openai", model="gpt-4o", input_tokens=400, output_tokens=60,
                               latency_ms=900.0, cost_usd=0.0016, user=PHONE)  # fmt: skip
    # The original's guess: characters / 4 at fixed GPT-4 prices.
    costs.track_api_cost(api_name="openai", cost_estimate=0.0021, request_count=1, request_tokens=115)
    engagement.track_conversation(
        user_id=PHONE, message_count=2 * turn, duration_seconds=(datetime.now() - first).total_seconds()
    )
    engagement.track_response_time(1000.0 + 100 * turn)


# -- the bot's calls, read back two ways ----------------------------------------------------------


def test_one_inbound_sms_reads_back_the_same_through_get_and_botmeter_query(store_url, store_path):
    costs = CostTracker(skip_estimates_for={"openai"})  # botmeter records the real OpenAI calls
    engagement = EngagementTracker(namespace="DadaCatTwilio", region="us-east-1", local_file_fallback=True)
    errors = ErrorTracker()
    assert costs.meter is engagement.meter is errors.meter  # one writer for the file
    first = datetime.now() - timedelta(seconds=40)
    for turn in (1, 2, 3):
        one_inbound_sms(costs, engagement, errors, first, turn)
    # Twilio's flat estimate per webhook: kept, marked as the bot's estimate.
    assert costs.track_api_cost("twilio", 0.0075)
    assert errors.track_error(
        error_type="response_generation_error",
        error_message="Request timed out after 30 s",
        category=ErrorCategory.API_ERROR,
        context={"user_id": PHONE, "message": "tell me a story"},
        exception=TimeoutError("Request timed out after 30 s"),
    )
    assert errors.track_error("twilio_send_error", "queue full", category="rate_limit")
    assert errors.track_error("parse_error", "bad body", category="no such category")

    cost = costs.get_cost_metrics(since())
    assert cost["source"] == f"botmeter {store_url}"
    openai, twilio = cost["api_costs"]["openai"], cost["api_costs"]["twilio"]
    assert (openai["total_cost"], openai["total_requests"], openai["estimates"]) == (
        pytest.approx(0.0048),
        3,
        0,
    )
    assert (twilio["total_cost"], twilio["total_requests"], twilio["estimates"]) == (
        pytest.approx(0.0075),
        1,
        1,
    )
    # records: the API's days in the original's record shape; they add up to the totals.
    assert sum(r["cost_estimate"] for r in openai["records"]) == pytest.approx(openai["total_cost"])
    assert sum(r["request_count"] for r in openai["records"]) == 3
    assert {r["api_name"] for r in openai["records"]} == {"openai"}
    assert cost["total_cost"] == pytest.approx(3 * 0.0016 + 0.0075)
    assert cost["total_requests"] == 4
    assert costs.get_total_cost(since(), datetime.now()) == pytest.approx(cost["total_cost"])

    metrics = engagement.get_engagement_metrics(since())["metrics"]
    conversation = metrics["ConversationMessageCount"]
    # Re-sent cumulatively three times (2, 4, 6 messages): one conversation of 6 messages.
    assert (conversation["count"], conversation["total"], conversation["maximum"]) == (1, 6, 6)
    duration = metrics["ConversationDuration"]
    assert duration["count"] == 1 and 40 <= duration["maximum"] < 60
    assert metrics["ResponseTime"]["count"] == 3
    assert metrics["ResponseTime"]["average"] == pytest.approx(1200.0)
    assert metrics["ResponseTime"]["maximum"] == pytest.approx(1300.0)
    assert metrics["ResponseTime"]["p50"] == pytest.approx(1200.0)
    activity = metrics["UserActivity"]
    assert activity["count"] == 3 and activity["by_activity_type"] == {"message": 3}
    assert activity["unique_users"] == 1 and PHONE not in activity["by_user"]

    errs = errors.get_error_metrics(since())
    assert errs["total_errors"] == 3
    assert errs["error_counts"] == {
        "api_error": {"total": 1, "by_type": {"response_generation_error": 1}},
        "rate_limit": {"total": 1, "by_type": {"twilio_send_error": 1}},
        "unknown": {"total": 1, "by_type": {"parse_error": 1}},  # an unknown category string
    }
    assert errs["by_botmeter_category"]["timeout"] == 1  # botmeter's own category, from the exception
    only = errors.get_error_metrics(since(), categories=[ErrorCategory.RATE_LIMIT, "nonsense"])
    assert only["categories"] == ["rate_limit"] and only["total_errors"] == 1
    close_all()

    # The same numbers through `botmeter query`.
    assert query_json(store_url, "cost_usd")[0]["value"] == pytest.approx(cost["total_cost"])
    calls = query_json(store_url, "api_calls", "--by", "provider")
    assert {r["provider"]: r["value"] for r in calls} == {"twilio": 1}
    assert query_json(store_url, "llm_calls")[0]["value"] == 3
    per_conv = query_json(store_url, "messages_per_conversation", "--stat", "count,max")[0]
    assert (per_conv["count"], per_conv["max"]) == (conversation["count"], conversation["maximum"])
    dur = query_json(store_url, "conversation_duration_s", "--stat", "max")[0]["value"]
    assert dur == pytest.approx(duration["maximum"])
    reply = query_json(store_url, "latency_ms", "--filter", "stage=reply", "--stat", "count,avg")[0]
    assert (reply["count"], reply["avg"]) == (3, pytest.approx(1200.0))
    by_name = query_json(store_url, "activities", "--by", "name")
    assert {r["name"]: r["value"] for r in by_name} == activity["by_activity_type"]
    assert query_json(store_url, "errors")[0]["value"] == errs["total_errors"]
    assert query_json(store_url, "active_users")[0]["value"] == 1
    assert query_json(store_url, "inbound_messages")[0]["value"] == 3

    # The estimates are marked as the bot's; no phone number is stored in the clear.
    rows = query(store_path, "SELECT provider, name, json_extract(properties, '$.estimate') FROM events "
                             "WHERE kind = 'api_call'")  # fmt: skip
    assert rows == [("twilio", "estimate", "true")]
    clear = "SELECT count(*) FROM events WHERE concat_ws(' ', user_id, conversation_id, properties) LIKE ?"
    assert scalar(store_path, clear, ["%5551234567%"]) == 0
    assert scalar(store_path, "SELECT count(*) FROM events WHERE properties LIKE '%tell me a story%'") == 0


def test_estimates_count_unless_skipped(store_url):
    costs = CostTracker()
    costs.meter.track_llm_call(provider="openai", model="gpt-4o", input_tokens=10, cost_usd=0.01)
    assert costs.track_api_cost("openai", 0.02, request_count=2, request_tokens=100)
    cost = costs.get_cost_metrics(since())["api_costs"]["openai"]
    # Without skip_estimates_for, the guess adds to the real call: the double count the docs warn of.
    assert (cost["total_cost"], cost["total_requests"], cost["estimates"]) == (pytest.approx(0.03), 3, 2)


def test_skip_estimates_from_the_environment(monkeypatch):
    monkeypatch.setenv("DADACAT_SKIP_ESTIMATES", "OpenAI, anthropic")
    costs = CostTracker()
    assert costs.skip_estimates_for == {"openai", "anthropic"}
    assert costs.track_api_cost("openai", 0.5) is True  # accepted, not recorded
    assert costs.get_cost_metrics(since())["total_cost"] == 0.0


def test_a_conversation_seen_again_by_another_process_counts_once(store_url):
    first = datetime.now() - timedelta(seconds=100)
    bot = EngagementTracker()
    assert bot.track_conversation(PHONE, 2, (datetime.now() - first).total_seconds())
    assert bot.track_conversation(PHONE, 4, (datetime.now() - first).total_seconds())
    assert bot.track_conversation(PHONE, 4, (datetime.now() - first).total_seconds())  # replayed
    same_process = EngagementTracker()  # shares the meter and what it recorded
    assert same_process._conversations is bot._conversations
    assert same_process.track_conversation(PHONE, 4, (datetime.now() - first).total_seconds())
    # Another process (a new Lambda container) sees the conversation for the first time at turn 3.
    other = EngagementTracker()
    other._conversations = type(bot._conversations)()  # its own memory, as a new process has
    assert other.track_conversation(PHONE, 6, (datetime.now() - first).total_seconds())
    # A new conversation after a reset.
    assert bot.track_conversation(PHONE, 2, 1.0)
    per = bot.get_engagement_metrics(since(), metric_names=["ConversationMessageCount"])["metrics"]
    assert list(per) == ["ConversationMessageCount"]
    assert per["ConversationMessageCount"]["count"] == 2
    assert per["ConversationMessageCount"]["maximum"] == 6 and per["ConversationMessageCount"]["total"] == 8


def test_tracking_calls_answer_false_and_never_raise(caplog):
    costs, engagement, errors = CostTracker(), EngagementTracker(), ErrorTracker()
    assert costs.track_api_cost("openai", -1.0) is False
    assert costs.track_api_cost("", 0.1) is False
    assert costs.track_api_cost("openai", 0.1, request_count=0) is False
    assert engagement.track_conversation(PHONE, "three", 1.0) is False
    assert engagement.track_conversation(None, 2, 1.0) is False
    assert engagement.track_response_time(float("nan")) is False
    assert engagement.track_user_activity(PHONE, 42) is False
    assert errors.track_error(None, "no type") is False
    assert errors.track_error("x", "y", context="not a dict") is False
    assert "request_count: expected a whole number >= 1, got 0" in caplog.text
    assert "message_count: expected a whole number >= 0, got 'three'" in caplog.text
    costs.meter.flush()
    assert costs.meter.stats()["processed"] == 0


def test_analytics_disabled_records_nothing(monkeypatch, store_path):
    monkeypatch.setenv("ANALYTICS_ENABLED", "false")
    costs, engagement = CostTracker(), EngagementTracker()
    assert costs.track_api_cost("openai", 0.1) is False
    assert engagement.track_user_activity(PHONE, "reset") is False
    assert costs.get_cost_metrics(since())["total_cost"] == 0.0
    assert not store_path.exists()


def test_which_store_the_environment_names(monkeypatch, store_url):
    from botmeter.compat.dadacat._store import store_url as chosen

    assert chosen() == store_url  # BOTMETER_STORE wins
    monkeypatch.delenv("BOTMETER_STORE")
    assert chosen() == "duckdb://botmeter.duckdb"  # the default, as for any botmeter bot
    monkeypatch.setenv("ANALYTICS_NAMESPACE", "Ignored")  # says "AWS"; the tracker's namespace names it
    assert chosen("DadaProd", "eu-west-1") == "cloudwatch://?namespace=DadaProd&region=eu-west-1"
    monkeypatch.delenv("ANALYTICS_NAMESPACE")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "dadacat")
    assert chosen().startswith("cloudwatch://?namespace=DadaCatTwilio&region=us-east-1")


# -- CloudWatch ------------------------------------------------------------------------------------


def test_the_bot_against_cloudwatch_reads_back_what_it_wrote(aws, monkeypatch, tmp_path):
    """The original wrote Cost per APIName and read it without the dimension, so it read 0 back;
    here the same calls into moto's CloudWatch read back their totals."""
    from aws_emulator import clients

    monkeypatch.delenv("BOTMETER_STORE")
    namespace = f"DadaCat{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("ANALYTICS_NAMESPACE", namespace)  # the bot's environment: AWS
    monkeypatch.setenv("BOTMETER_BOT", f"bot-{namespace}")  # moto's reads match a namespace loosely
    costs = CostTracker(namespace=namespace, region="us-east-1", skip_estimates_for={"openai"})
    engagement = EngagementTracker(namespace=namespace, region="us-east-1")
    errors = ErrorTracker(namespace=namespace, region="us-east-1")
    assert costs.use_cloudwatch and costs.meter is errors.meter
    first = datetime.now() - timedelta(seconds=30)
    for turn in (1, 2):
        one_inbound_sms(costs, engagement, errors, first, turn)
    costs.track_api_cost("twilio", 0.0075)
    errors.track_error(
        "response_generation_error", "boom", ErrorCategory.API_ERROR, exception=TimeoutError("x")
    )

    cost = costs.get_cost_metrics(since())
    assert cost["source"] == f"botmeter cloudwatch://?namespace={namespace}&region=us-east-1"
    assert cost["total_cost"] == pytest.approx(2 * 0.0016 + 0.0075)
    assert cost["api_costs"]["openai"]["total_requests"] == 2
    assert cost["api_costs"]["twilio"]["total_cost"] == pytest.approx(0.0075)
    assert sum(r["request_count"] for r in cost["api_costs"]["openai"]["records"]) == 2
    errs = errors.get_error_metrics(since())
    assert errs["error_counts"] == {"api_error": {"total": 1, "by_type": {"response_generation_error": 1}}}
    metrics = engagement.get_engagement_metrics(since())
    assert "error" not in metrics, metrics["error"]
    assert metrics["metrics"]["UserActivity"]["by_activity_type"] == {"message": 2}
    assert metrics["metrics"]["ResponseTime"]["count"] == 2
    assert metrics["metrics"]["ResponseTime"]["average"] == pytest.approx(1150.0)
    # moto runs no Logs Insights statistics: per-conversation figures and users are said, not zero.
    assert metrics["metrics"]["ConversationMessageCount"]["count"] is None
    assert metrics["metrics"]["UserActivity"]["unique_users"] is None
    assert {"ConversationMessageCount", "UserActivity.by_user"} <= set(metrics["unavailable"])
    # Written where the original wrote: the bot's namespace.
    cw, _ = clients(aws.url)
    names = {m["MetricName"] for m in cw.list_metrics(Namespace=namespace)["Metrics"]}
    assert {"CostUSD", "ApiCalls", "Errors", "LatencyMs", "Activities", "Messages"} <= names


# -- admin commands --------------------------------------------------------------------------------


class RateLimiter:
    enabled, threshold, time_window = True, 20, 86400


def test_admin_commands_answer_admins_with_the_original_texts(store_url):
    costs, engagement, errors = CostTracker(), EngagementTracker(), ErrorTracker()
    costs.track_api_cost("twilio", 0.0075)
    engagement.track_user_activity(PHONE, UserActivity.MESSAGE)
    errors.track_error("response_generation_error", "boom", ErrorCategory.API_ERROR)

    status = admin_reply(ADMIN, "ADMIN:STATUS ", rate_limiter=RateLimiter(), message_count=4)
    assert status.startswith(
        "DadaCat Status:\n- Rate limiter: ENABLED\n- Message count: 4\n- Threshold: 20 messages\n"
        f"- Time window: 24.0 hours\n- Analytics: ENABLED (botmeter, {store_url})\n- Events written: "
    )
    assert admin_reply(ADMIN, "admin:analytics_status") == (
        "DadaCat Analytics Status (last 7 days):\n"
        f"- Costs: $0.01 (source: botmeter {store_url})\n"
        "- Total activities: 3\n"  # the message, admin:status and this command, tracked as it runs
        "- Unique users: 2\n"
        "- Total errors: 1"
    )
    # The original answered any number; botmeter answers its admins only.
    assert admin_reply(PHONE, "admin:status") is None
    assert admin_reply(ADMIN, "hello") is None
    assert "botmeter commands" in admin_reply(ADMIN, "admin:help")
    close_all()  # written, for the command line
    names = {r["name"]: r["value"] for r in query_json(store_url, "activities", "--by", "name")}
    assert names == {"message": 1, "admin:status": 1, "admin:analytics_status": 1, "admin_denied": 1,
                     "admin:help": 1}  # fmt: skip


# -- the dashboard ---------------------------------------------------------------------------------


def test_dashboard_figures_and_html(tmp_path, store_url):
    costs = CostTracker()
    costs.track_api_cost("openai", 0.25)
    board = MetricsDashboard(metrics_dir=str(tmp_path / "metrics"))
    assert board.meter is costs.meter
    data = board.generate_dashboard(days=7)
    assert set(data) >= {"timestamp", "period_days", "costs", "engagement", "errors"}
    assert data["period_days"] == 7 and data["costs"]["total_cost"] == pytest.approx(0.25)
    saved = Path(board.save_dashboard(days=7))
    assert saved.parent == tmp_path / "metrics" and saved.name.startswith("dashboard_")
    assert json.loads(saved.read_text())["costs"]["api_costs"]["openai"]["total_requests"] == 1
    page = Path(generate_html_dashboard(days=3, output_path=str(tmp_path / "out" / "d.html")))
    assert page.exists() and "$0.25" in page.read_text() and "<html" in page.read_text()


def test_generate_dashboard_flags(monkeypatch, tmp_path):
    args = parse_args([])
    assert (args.days, args.output, args.namespace, args.region, args.json) == (
        7, None, "DadaCatTwilio", "us-east-1", False,
    )  # fmt: skip
    monkeypatch.setenv("ANALYTICS_NAMESPACE", "FromEnv")
    monkeypatch.setenv("DYNAMODB_REGION", "eu-west-1")
    args = parse_args(["--days", "3", "--output", "x.html", "--json"])
    assert (args.days, args.output, args.namespace, args.region, args.json) == (
        3,
        "x.html",
        "FromEnv",
        "eu-west-1",
        True,
    )
    assert args.store is None  # the environment's store, as the trackers'
    typed = parse_args(["--namespace", "DadaProd"])  # typed on the command line: that CloudWatch
    assert typed.store == "cloudwatch://?namespace=DadaProd&region=eu-west-1"
    with pytest.raises(SystemExit):
        parse_args(["--days", "0"])
    monkeypatch.delenv("ANALYTICS_NAMESPACE")
    CostTracker().track_api_cost("openai", 0.5)
    close_all()
    out = tmp_path / "metrics" / "dashboard.html"
    assert generate_main(["--days", "2", "--output", str(out), "--json"]) == 0
    assert "$0.50" in out.read_text()
    assert json.loads(out.with_suffix(".json").read_text())["costs"]["total_cost"] == pytest.approx(0.5)


def test_generate_dashboard_runs_as_a_module(tmp_path, store_url):
    CostTracker().track_api_cost("openai", 0.125)
    close_all()
    out = tmp_path / "board.html"
    env = subprocess_env(BOTMETER_STORE=store_url, BOTMETER_HASH_KEY=HASH_KEY)
    done = subprocess.run(
        [sys.executable, "-m", "botmeter.compat.dadacat.generate_dashboard", "--days", "1",
         "--output", str(out)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"Dashboard generated at: {out}" in done.stdout and "$0.1250" in out.read_text()


# -- history -----------------------------------------------------------------------------------------


def _write_history(folder: Path, *, as_lists: bool = False) -> None:
    """Files as the original package wrote them (naive local timestamps, cumulative conversations)."""
    folder.mkdir(parents=True, exist_ok=True)
    t = datetime.now() - timedelta(hours=3)

    def at(minutes: float) -> str:
        return (t + timedelta(minutes=minutes)).isoformat()

    def cost(minutes: float, api: str, usd: float, tokens: int | None) -> dict:
        return {"timestamp": at(minutes), "api_name": api, "cost_estimate": usd, "request_count": 1,
                "request_tokens": tokens}  # fmt: skip

    # The third is the same as the second (the original's cost records have no id): both count.
    costs = [cost(0, "openai", 0.002, 120), cost(1, "openai", 0.003, 200), cost(1, "openai", 0.003, 200),
             cost(2, "twilio", 0.0075, None)]  # fmt: skip
    other = "+15559876543"
    conversations = [  # two users; the first re-sent after every reply, then reset
        {"id": "c1", "timestamp": at(0), "user_id": PHONE, "message_count": 2, "duration_seconds": 0.0},
        {"id": "c2", "timestamp": at(1), "user_id": PHONE, "message_count": 4, "duration_seconds": 60.0},
        {"id": "c3", "timestamp": at(2), "user_id": PHONE, "message_count": 6, "duration_seconds": 120.0},
        {"id": "c4", "timestamp": at(3), "user_id": other, "message_count": 2, "duration_seconds": 5.0},
        {"id": "c5", "timestamp": at(30), "user_id": PHONE, "message_count": 2, "duration_seconds": 10.0},
    ]
    activities = [
        {"id": f"a{i}", "timestamp": at(i), "user_id": user, "activity_type": kind}
        for i, (user, kind) in enumerate([(PHONE, "message"), (PHONE, "message"), (other, "message"),
                                          (PHONE, "reset"), (PHONE, "donation_prompt")])
    ]  # fmt: skip
    response_times = [
        {"id": f"r{i}", "timestamp": at(i), "response_time_ms": 900.0 + 100 * i} for i in range(4)
    ]
    errors = [
        {"id": "e1", "timestamp": at(5), "error_type": "response_generation_error",
         "error_message": "timeout", "category": "api_error", "context": {"user_id": PHONE, "message": "hi"}},
        {"id": "e2", "timestamp": at(6), "error_type": "admin_command_error", "error_message": "x",
         "category": "internal", "context": None},
    ]  # fmt: skip
    if as_lists:
        files = {"costs.json": costs, "engagement.json": conversations + activities + response_times,
                 "errors.json": errors}  # fmt: skip
    else:
        stamp = datetime.now().isoformat()
        files = {
            "costs.json": {"costs": costs, "last_updated": stamp},
            "engagement.json": {"conversations": conversations, "user_activities": activities,
                                "response_times": response_times, "last_updated": stamp},
            "errors.json": {"errors": errors, "last_updated": stamp},
        }  # fmt: skip
    for name, data in files.items():
        (folder / name).write_text(json.dumps(data, indent=2))


@pytest.mark.parametrize("as_lists", [False, True], ids=["original-files", "plain-lists"])
def test_history_import_is_checked_complete_and_idempotent(tmp_path, store_url, store_path, as_lists):
    folder = tmp_path / "metrics"
    _write_history(folder, as_lists=as_lists)
    out = cli("import", "--dadacat", str(folder), "--store", store_url)
    assert "imported 4 costs, 5 conversations, 5 user_activities, 4 response_times, 2 errors" in out
    events = scalar(store_path, "SELECT count(*) FROM events")
    again = cli("import", "--dadacat", str(folder), "--store", store_url)
    assert "imported" in again
    assert scalar(store_path, "SELECT count(*) FROM events") == events  # importing twice adds nothing

    costs, engagement, errors = CostTracker(), EngagementTracker(), ErrorTracker()
    cost = costs.get_cost_metrics(since())
    assert cost["total_cost"] == pytest.approx(0.002 + 0.003 + 0.003 + 0.0075)
    openai = cost["api_costs"]["openai"]
    assert (openai["total_cost"], openai["total_requests"], openai["estimates"]) == (
        pytest.approx(0.008),
        3,
        3,
    )
    assert sum(r["cost_estimate"] for r in openai["records"]) == pytest.approx(0.008)
    marked = "SELECT count(*) FROM events WHERE kind = 'api_call' AND json_extract(properties, '$.estimate')"
    assert scalar(store_path, marked) == 4
    metrics = engagement.get_engagement_metrics(since())["metrics"]
    conv = metrics["ConversationMessageCount"]
    assert (conv["count"], conv["total"], conv["maximum"]) == (3, 6 + 2 + 2, 6)
    assert metrics["ConversationDuration"]["maximum"] == pytest.approx(120.0)
    assert metrics["ResponseTime"]["count"] == 4 and metrics["ResponseTime"]["maximum"] == 1200.0
    assert metrics["UserActivity"]["by_activity_type"] == {"message": 3, "reset": 1, "donation_prompt": 1}
    assert metrics["UserActivity"]["unique_users"] == 2
    errs = errors.get_error_metrics(since())
    assert errs["error_counts"] == {
        "api_error": {"total": 1, "by_type": {"response_generation_error": 1}},
        "internal": {"total": 1, "by_type": {"admin_command_error": 1}},
    }
    assert scalar(store_path, "SELECT count(*) FROM events WHERE properties LIKE '%5551234567%'") == 0


def _import_mangled(tmp_path: Path, store_url: str, file: str, mangle: Any) -> Any:
    """``botmeter import --dadacat`` of the original's files with ``file`` changed by ``mangle``."""
    folder = tmp_path / "metrics"
    _write_history(folder)
    data = json.loads((folder / file).read_text())
    mangle(data)
    (folder / file).write_text(json.dumps(data))
    return CliRunner().invoke(main, ["import", "--dadacat", str(folder), "--store", store_url])


@pytest.mark.parametrize(
    ("file", "mangle", "expected"),
    [
        ("costs.json", lambda d: d["costs"][2].update(cost_estimate="cheap"),
         "costs.json: costs record 2: field cost_estimate: expected a number of US dollars >= 0, "
         "got 'cheap'"),
        ("engagement.json", lambda d: d["conversations"][1].pop("message_count"),
         "engagement.json: conversations record 1: field message_count is missing"),
        ("engagement.json", lambda d: d["user_activities"][0].update(timestamp="yesterday"),
         "engagement.json: user_activities record 0: field timestamp: expected an ISO date and time, "
         "got 'yesterday'"),
        ("errors.json", lambda d: d["errors"][1].update(context=["not", "an", "object"]),
         "errors.json: errors record 1: field context: expected an object or null"),
        ("errors.json", lambda d: d.update(errors="none"), "errors.json: errors: expected a list of records"),
    ],
)  # fmt: skip
def test_history_import_names_the_bad_record_and_writes_nothing(tmp_path, store_url, store_path, file, mangle,
                                                                expected):  # fmt: skip
    result = _import_mangled(tmp_path, store_url, file, mangle)
    assert result.exit_code != 0
    assert expected in " ".join(result.output.split())
    assert not store_path.exists()  # checked before anything was written


def test_history_import_flags(tmp_path, store_url):
    runner = CliRunner()
    empty = tmp_path / "empty"
    empty.mkdir()
    neither = runner.invoke(main, ["import", "--store", store_url])
    assert neither.exit_code == 2 and "--dadacat FOLDER" in neither.output
    export = tmp_path / "events.json"
    export.write_text("[]")
    both = runner.invoke(main, ["import", str(export), "--dadacat", str(empty), "--store", store_url])
    assert both.exit_code == 2 and "one of them" in both.output
    fmt = runner.invoke(main, ["import", "--dadacat", str(empty), "--format", "json", "--store", store_url])
    assert fmt.exit_code == 2 and "--format" in fmt.output
    nothing = runner.invoke(main, ["import", "--dadacat", str(empty), "--store", store_url])
    assert nothing.exit_code == 1 and "none of costs.json, engagement.json, errors.json" in nothing.output
    missing = runner.invoke(main, ["import", "--dadacat", str(tmp_path / "nope"), "--store", store_url])
    assert missing.exit_code == 2
    assert "--dadacat" in cli("import", "--help")


def test_naive_window_edges_are_local_time(monkeypatch):
    from botmeter.compat.dadacat._store import as_utc

    aware = datetime(2026, 11, 1, 12, tzinfo=UTC)
    assert as_utc(aware, "start_time") == aware
    naive = datetime(2026, 11, 1, 12)
    assert as_utc(naive, "start_time") == naive.astimezone(UTC)
    with pytest.raises(TypeError, match="start_time"):
        as_utc("2026-11-01", "start_time")


def test_a_store_that_cannot_answer_gives_no_figures_not_zeros(monkeypatch, store_path, tmp_path):
    CostTracker().track_api_cost("openai", 0.25)
    close_all()
    monkeypatch.setenv("BOTMETER_LOCK_TIMEOUT", "0.2")
    holder = hold_store_file(store_path, tmp_path, 10.0)  # another process writes the file meanwhile
    try:
        costs, errors = CostTracker(), ErrorTracker()
        cost = costs.get_cost_metrics(since())
        assert cost["total_cost"] is None and cost["error"]
        assert math.isnan(costs.get_total_cost(since()))  # not 0.0
        assert errors.get_error_metrics(since())["total_errors"] is None
        assert costs.track_api_cost("openai", 0.5) is True  # the bot carries on; it spools or waits
    finally:
        holder.kill()
        holder.wait()


def test_history_import_into_cloudwatch(aws, monkeypatch, tmp_path):
    monkeypatch.delenv("BOTMETER_STORE")
    namespace = f"DadaHist{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("BOTMETER_BOT", f"bot-{namespace}")  # moto's reads match a namespace loosely
    folder = tmp_path / "metrics"
    _write_history(folder)
    url = f"cloudwatch://?namespace={namespace}&region=us-east-1&mode=api"
    out = cli("import", "--dadacat", str(folder), "--store", url)
    assert f"into {url}" in out
    costs, errors = CostTracker(store=url), ErrorTracker(store=url)
    assert costs.get_cost_metrics(since())["total_cost"] == pytest.approx(0.0155)
    assert errors.get_error_metrics(since())["error_counts"]["internal"] == {
        "total": 1,
        "by_type": {"admin_command_error": 1},
    }


def test_history_timestamps_without_an_offset_are_local_time(monkeypatch, tmp_path):
    import time

    from botmeter.compat.dadacat.history import read_history

    folder = tmp_path / "metrics"
    folder.mkdir()
    record = {"timestamp": "2026-11-20T09:30:00", "api_name": "openai", "cost_estimate": 0.01}
    (folder / "costs.json").write_text(
        json.dumps({"costs": [record, {**record, "timestamp": "2026-11-20T09:30Z"}]})
    )
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        local, utc = sorted(read_history(folder), key=lambda r: r.index)  # read sorted by time
    finally:
        monkeypatch.undo()
        time.tzset()
    assert local.ts - utc.ts == 5 * 3600  # 09:30 in New York (EST) is 14:30 UTC
    assert local.values["request_count"] == 1 and local.event_id != utc.event_id


@pytest.mark.parametrize(
    ("file", "mangle", "expected"),
    [
        ("engagement.json", lambda d: d["user_activities"][0].update(timestamp="1999-12-31T23:00:00+00:00"),
         "user_activities record 0: field timestamp: expected a time from 2000-01-01 to one day ahead"),
        ("engagement.json", lambda d: d["user_activities"][1].update(timestamp="2999-01-01T00:00:00+00:00"),
         "user_activities record 1: field timestamp: expected a time from 2000-01-01"),
        ("errors.json", lambda d: d["errors"][1].update(context={"retry": float("nan")}),
         "errors.json: errors record 1: field context: cannot be stored as JSON: nan is not a JSON number"),
        ("errors.json", lambda d: d["errors"][0].update(error_message="bad \udc80 byte"),
         "errors.json: errors record 0: field error_message: not valid Unicode text"),
        ("engagement.json", lambda d: d["conversations"][0].update(user_id=2**70),
         "conversations record 0: field user_id: an integer beyond 64 bits"),
    ],
)  # fmt: skip
def test_history_import_refuses_what_track_calls_refuse_before_writing(tmp_path, store_url, store_path, file,
                                                                       mangle, expected):  # fmt: skip
    # The track calls refuse these values; found only mid-import, they would leave it half-written.
    result = _import_mangled(tmp_path, store_url, file, mangle)
    assert result.exit_code != 0
    assert expected in " ".join(result.output.split()), result.output
    assert not store_path.exists()
