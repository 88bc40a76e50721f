"""A Slack bot (Bolt) with an LLM behind it, recorded by botmeter with one line for each.

Run it for real (Slack calls http://<your host>:3000/slack/events)::

    SLACK_BOT_TOKEN=xoxb-... SLACK_SIGNING_SECRET=... OPENAI_API_KEY=... python examples/slack_bot.py

or against local stand-ins of Slack's Web API and OpenAI, which dispatches signed events and a
slash command through the app and prints what botmeter recorded::

    python examples/slack_bot.py --selftest
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

from openai import OpenAI
from slack_bolt import App, BoltRequest
from slack_sdk import WebClient

from botmeter import Meter


def create_app(meter: Meter, client: WebClient | None = None, **options) -> App:
    app = App(signing_secret=os.environ["SLACK_SIGNING_SECRET"],
              client=client or WebClient(os.environ["SLACK_BOT_TOKEN"]), **options)  # fmt: skip
    meter.instrument(app)  # inbound messages, commands and mentions; context and timing per listener
    llm = meter.instrument(OpenAI())

    @app.event("app_mention")
    def mention(event, say):
        answer = llm.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": event.get("text", "")}]
        )
        say(answer.choices[0].message.content, thread_ts=event.get("thread_ts") or event["ts"])

    @app.command("/weather")
    def weather(ack, command):
        answer = llm.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "weather " + command.get("text", "")}]
        )
        ack(answer.choices[0].message.content)

    return app


def selftest() -> int:
    from local_stubs import OpenAiApiStub, SlackApiStub
    from slack_sdk.signature import SignatureVerifier

    secret, token = "selftest-signing-secret", "xoxb-selftest"
    store = Path(tempfile.mkdtemp()) / "slack_bot.duckdb"
    with OpenAiApiStub() as openai_api, SlackApiStub(token) as slack_api:
        os.environ.update(
            SLACK_SIGNING_SECRET=secret, OPENAI_BASE_URL=openai_api.api_url, OPENAI_API_KEY="sk-local"
        )
        meter = Meter(bot="slackbot", store=f"duckdb://{store}")
        app = create_app(meter, WebClient(token, base_url=slack_api.api_url), process_before_response=True)

        def dispatch(body: str, content_type: str) -> int:
            ts = str(int(time.time()))  # signed as Slack signs its requests
            signature = SignatureVerifier(secret).generate_signature(timestamp=ts, body=body)
            headers = {
                "content-type": content_type,
                "x-slack-request-timestamp": ts,
                "x-slack-signature": signature,
            }
            return app.dispatch(BoltRequest(body=body, headers=headers)).status

        event = {"type": "app_mention", "user": "U0ALICE", "channel": "C0GENERAL", "text": "<@U0BOT> hello",
                 "ts": "1700000001.000100"}  # fmt: skip
        body = json.dumps({"type": "event_callback", "team_id": "T0001", "event_id": "Ev01", "event": event})
        print("mention answered", dispatch(body, "application/json"))
        command = {"command": "/weather", "text": "Paris", "user_id": "U0ALICE", "channel_id": "C0GENERAL",
                   "team_id": "T0001", "trigger_id": "1.2.3"}  # fmt: skip
        print("command answered", dispatch(urlencode(command), "application/x-www-form-urlencoded"))
        posted = [r["form"].get("text") for r in slack_api.requests if r["method"] == "chat.postMessage"]
        print(f"posted to Slack: {posted}")
        meter.flush()
        with meter.store.reading() as con:
            events = con.execute(
                "select kind, channel, provider, model, chars, cost_usd, stage, user_id, "
                "properties->>'$.slack_type' from events order by ts"
            ).fetchall()
        print("recorded (user ids are keyed hashes):")
        for kind, channel, provider, model, chars, cost, stage, user, slack_type in events:
            parts = [kind, channel, slack_type, provider, model, stage]
            text = " ".join(p for p in parts if p)
            if chars is not None:
                text += f" chars={chars}"
            if cost is not None:
                text += f" cost_usd={cost:.6f}"
            print(f"  {text} user={user}")
        meter.close()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--selftest", action="store_true", help="run against local Slack/OpenAI stand-ins")
    parser.add_argument("--port", type=int, default=3000)
    args = parser.parse_args()
    if args.selftest:
        return selftest()
    create_app(Meter(bot="slackbot")).start(port=args.port)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
