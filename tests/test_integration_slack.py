"""Slack capture: requests signed as Slack signs them, dispatched through real Bolt apps (sync App and
AsyncApp) whose Web API client talks over HTTP to a local stand-in of Slack's API
(examples/local_stubs.py); a real DuckDB store underneath."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest
from slack_bolt import App, BoltRequest
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk import WebClient
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from botmeter import Meter
from botmeter.integrations import slack

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from local_stubs import SlackApiStub

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
TOKEN = "xoxb-test-token"


def signed(body: str, content_type: str) -> dict[str, str]:
    timestamp = str(int(time.time()))
    signature = SignatureVerifier(SECRET).generate_signature(timestamp=timestamp, body=body)
    return {
        "content-type": content_type,
        "x-slack-request-timestamp": timestamp,
        "x-slack-signature": signature,
    }


def event_body(event: dict, event_id: str = "Ev01") -> str:
    return json.dumps(
        {
            "token": "verification-token",
            "team_id": "T0001",
            "api_app_id": "A0001",
            "event": {"team": "T0001", "event_ts": event.get("ts"), **event},
            "type": "event_callback",
            "event_id": event_id,
            "event_time": int(time.time()),
            "authorizations": [{"team_id": "T0001", "user_id": "U0BOT", "is_bot": True}],
        }
    )


def message(text: str, ts: str, user: str = "U0ALICE", channel: str = "C0GENERAL", **extra) -> dict:
    return {"type": "message", "channel": channel, "user": user, "text": text, "ts": ts,
            "channel_type": "channel", **extra}  # fmt: skip


def command_body(command: str, text: str, trigger: str) -> str:
    return urlencode(
        {
            "token": "verification-token",
            "team_id": "T0001",
            "team_domain": "example",
            "channel_id": "C0GENERAL",
            "channel_name": "general",
            "user_id": "U0ALICE",
            "user_name": "alice",
            "command": command,
            "text": text,
            "api_app_id": "A0001",
            "response_url": "https://hooks.slack.com/commands/T0001/1/abc",
            "trigger_id": trigger,
        }
    )


def event_request(event: dict, event_id: str = "Ev01", retry: int | None = None) -> BoltRequest:
    body = event_body(event, event_id)
    headers = signed(body, "application/json")
    if retry is not None:
        headers["x-slack-retry-num"] = str(retry)
    return BoltRequest(body=body, headers=headers)


@pytest.fixture
def slack_api():
    with SlackApiStub(TOKEN) as stub:
        yield stub


@pytest.fixture
def meter(store_url):
    m = Meter(bot="slackbot", store=store_url)
    yield m
    m.close()


def rows(meter: Meter, sql: str) -> list[tuple]:
    assert meter.flush()
    with meter.store.reading() as con:
        return con.execute(sql).fetchall()


def wait_for_timings(meter: Meter, n: int, timeout: float = 10.0) -> None:
    """Bolt runs listeners on its own threads after acknowledging: wait until they have finished."""
    deadline = time.monotonic() + timeout
    while rows(meter, "select count(*) from events where kind = 'timing'")[0][0] < n:
        assert time.monotonic() < deadline, "the listeners did not finish"
        time.sleep(0.05)


def make_app(meter: Meter, slack_api: SlackApiStub, **options) -> App:
    app = App(signing_secret=SECRET, client=WebClient(token=TOKEN, base_url=slack_api.api_url), **options)
    app.use(slack.middleware(meter))

    @app.message("weather")
    def weather(message, say):
        meter.track_llm_call(provider="openai", model="gpt-4o-mini", input_tokens=40, output_tokens=12)
        say(f"<@{message['user']}> sunny")

    @app.event("app_mention")
    def mention(event, say):
        say("you called?")

    @app.command("/forecast")
    def forecast(ack, respond, command):
        ack()
        meter.track_activity("feature:forecast")

    return app


@pytest.mark.parametrize("process_before_response", [True, False])
def test_sync_app_records_messages_mentions_and_commands(meter, slack_api, process_before_response):
    app = make_app(meter, slack_api, process_before_response=process_before_response)
    assert app.dispatch(event_request(message("weather today?", "1700000001.000100"))).status == 200
    # Slack retries an event it thinks we missed: same message, counted once.
    assert app.dispatch(event_request(message("weather today?", "1700000001.000100"), retry=1)).status == 200
    # A mention in a channel the bot is in comes as a message event and an app_mention event.
    mention = message("<@U0BOT> hi", "1700000002.000200", thread_ts="1700000001.000100")
    app.dispatch(event_request(mention, "Ev02"))
    app.dispatch(event_request({**mention, "type": "app_mention"}, "Ev03"))
    body = command_body("/forecast", "tomorrow", "13345224609.738474920.8088930838d88f008e0")
    assert (
        app.dispatch(BoltRequest(body=body, headers=signed(body, "application/x-www-form-urlencoded"))).status
        == 200
    )
    # Not inbound messages: another bot's post, an edit.
    app.dispatch(
        event_request(message("beep", "1700000003.000300", user="U0OTHER", bot_id="B0OTHER"), "Ev04")
    )
    app.dispatch(event_request(message("edit", "1700000004.000400", subtype="message_changed"), "Ev05"))
    wait_for_timings(meter, 4)  # weather twice (retry), mention, command

    hasher = meter.pipeline.hasher
    alice, general = hasher.hash("U0ALICE"), hasher.hash("C0GENERAL")
    messages = rows(
        meter,
        "select user_id, channel, direction, chars, conversation_id, properties->>'$.slack_type', "
        "properties->>'$.slack_channel', properties->>'$.command' "
        "from events where kind = 'message' order by chars",
    )
    thread = hasher.hash("C0GENERAL:1700000001.000100")
    assert messages == [
        (alice, "slack", "in", 11, thread, "message", general, None),
        (alice, "slack", "in", 14, None, "message", general, None),
        (alice, "slack", "in", 18, None, "command", general, "/forecast"),
    ]
    assert "U0ALICE" not in json.dumps(
        rows(meter, "select * exclude (event_id, ts) from events"), default=str
    )
    # The listeners ran inside the context: their own events carry the user, and they were timed.
    # (Bolt runs the listener again for Slack's retry: two LLM calls for one message.)
    assert rows(meter, "select user_id from events where kind in ('llm_call', 'activity')") == [(alice,)] * 3
    timings = rows(
        meter, "select stage, channel, user_id, count(*) from events where kind = 'timing' group by all"
    )
    assert timings == [("reply", "slack", alice, 4)]
    posted = [r["form"]["text"] for r in slack_api.requests if r["method"] == "chat.postMessage"]
    assert sorted(posted) == sorted(["<@U0ALICE> sunny", "<@U0ALICE> sunny", "you called?"])


def test_a_badly_signed_request_is_refused_by_bolt_and_not_recorded(meter, slack_api):
    app = make_app(meter, slack_api, process_before_response=True)
    body = event_body(message("weather?", "1700000009.000900"))
    headers = signed(body, "application/json")
    headers["x-slack-signature"] = "v0=" + "0" * 64
    assert app.dispatch(BoltRequest(body=body, headers=headers)).status == 401
    assert meter.flush() and meter.stats()["processed"] == 0


def test_async_app(meter, slack_api):
    async def run() -> None:
        app = AsyncApp(signing_secret=SECRET, client=AsyncWebClient(token=TOKEN, base_url=slack_api.api_url))
        assert meter.instrument(app) is app

        @app.event("app_mention")
        async def mention(event, say):
            meter.track_custom("mentioned")
            await say("hello from async")

        @app.command("/forecast")
        async def forecast(ack):
            await ack("on it")

        body = event_body({**message("<@U0BOT> hi", "1700000005.000500"), "type": "app_mention"})
        answer = await app.async_dispatch(
            AsyncBoltRequest(body=body, headers=signed(body, "application/json"))
        )
        assert answer.status == 200
        body = command_body("/forecast", "", "1.2.3")
        answer = await app.async_dispatch(
            AsyncBoltRequest(body=body, headers=signed(body, "application/x-www-form-urlencoded"))
        )
        assert answer.status == 200 and "on it" in answer.body
        deadline = time.monotonic() + 10
        while not any(r["method"] == "chat.postMessage" for r in slack_api.requests):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)  # the listener finishes after its post

    asyncio.run(run())
    wait_for_timings(meter, 2)
    alice = meter.pipeline.hasher.hash("U0ALICE")
    got = rows(meter, "select kind, user_id, properties->>'$.slack_type' from events order by kind, 3")
    assert got == [
        ("custom", alice, None),
        ("message", alice, "app_mention"),
        ("message", alice, "command"),
        ("timing", alice, None),
        ("timing", alice, None),
    ]


def test_uninstrument(meter, slack_api):
    app = App(signing_secret=SECRET, client=WebClient(token=TOKEN, base_url=slack_api.api_url),
              process_before_response=True)  # fmt: skip
    meter.instrument(app)
    meter.instrument(app)  # twice is once

    @app.message("x")
    def handler(say):
        say("y")

    app.dispatch(event_request(message("x", "1700000006.000600")))
    meter.uninstrument(app)
    app.dispatch(event_request(message("x", "1700000007.000700"), "Ev09"))
    assert rows(meter, "select count(*) from events where kind = 'message'") == [(1,)]


def test_payloads_that_are_not_messages():
    assert slack.inbound_of({"type": "url_verification", "challenge": "x"}) is None
    assert slack.inbound_of({"type": "block_actions", "user": {"id": "U1"}}) is None
    assert (
        slack.inbound_of({"type": "event_callback", "event": {"type": "reaction_added", "user": "U1"}})
        is None
    )
    assert (
        slack.inbound_of({"type": "event_callback", "event": {"type": "message", "subtype": "bot_message"}})
        is None
    )


def test_a_failure_inside_botmeter_never_reaches_the_listener(meter, slack_api):
    app = make_app(meter, slack_api, process_before_response=True)
    # A payload botmeter cannot record (a user that is not an id): the listener still answers.
    odd = message("weather here?", "1700000008.000800", user={"id": "U0ALICE"})
    assert app.dispatch(event_request(odd, "Ev10")).status == 200
    assert [r["form"]["text"] for r in slack_api.requests if r["method"] == "chat.postMessage"] == [
        "<@{'id': 'U0ALICE'}> sunny"
    ]
    assert meter.stats()["integration_failures"] == {"slack": 1}
    assert rows(meter, "select kind from events") == [("llm_call",)]  # not timed: nothing was recorded


def test_lazy_listeners_get_a_copy_of_the_request_without_copying_the_meter(meter, slack_api, caplog):
    # Bolt deep-copies the request context for lazy listeners (the FaaS pattern).
    app = make_app(meter, slack_api, process_before_response=True)
    done = []

    def acknowledge(ack):
        ack()

    def later(body, say):
        meter.track_custom("lazy")
        say("done later")
        done.append(True)

    app.command("/later")(ack=acknowledge, lazy=[later])
    body = command_body("/later", "", "4.5.6")
    assert (
        app.dispatch(BoltRequest(body=body, headers=signed(body, "application/x-www-form-urlencoded"))).status
        == 200
    )
    deadline = time.monotonic() + 10
    while not done:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert "Skipped setting" not in caplog.text
    assert meter.stats()["integration_failures"] == {}
    got = rows(meter, "select kind, properties->>'$.command' from events order by kind")
    assert got == [("custom", None), ("message", "/later"), ("timing", None)]
