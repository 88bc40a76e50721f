"""The runnable examples: each bot runs as its own process against local stand-ins of the APIs it
calls (examples/local_stubs.py) and prints what botmeter recorded."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import subprocess_env

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name: str) -> str:
    env = subprocess_env()
    for key in (
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "TWILIO_AUTH_TOKEN",
        "SLACK_BOT_TOKEN",
        "SLACK_SIGNING_SECRET",
    ):
        env.pop(key, None)
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), "--selftest"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_twilio_bot():
    out = run_example("twilio_bot.py")
    assert "webhook answered 200" in out and "<Message>Sunny, 21°C.</Message>" in out
    recorded = out.split("recorded (user ids are keyed hashes):\n", 1)[1].splitlines()
    # The inbound SMS once (Twilio's retry counted once), priced as inbound in the US.
    inbound = [line for line in recorded if line.startswith("  message in sms")]
    assert len(inbound) == 1
    assert inbound[0].startswith("  message in sms twilio units=1 cost_usd=0.008300 user=")
    # One person, and their number nowhere in what was stored.
    users = {line.rsplit("user=", 1)[1] for line in recorded if "user=" in line}
    assert len(users) == 1 and "+15551230001" not in out
    assert sum(line.startswith("  message out sms twilio units=1") for line in recorded) == 1
    assert sum(line.startswith("  llm_call openai gpt-4o-mini-2024-07-18") for line in recorded) == 2
    assert any(line.startswith("  error sms twilio delivery delivery") for line in recorded)
    assert out.rstrip().endswith("delivery_rate: 0.50")


def test_slack_bot():
    out = run_example("slack_bot.py")
    assert "mention answered 200" in out and "command answered 200" in out
    assert "posted to Slack: ['Hello! How can I help?']" in out
    recorded = out.split("recorded (user ids are keyed hashes):\n", 1)[1].splitlines()
    kinds = [line.split()[0] for line in recorded]
    assert kinds == ["message", "llm_call", "timing", "message", "llm_call", "timing"]
    users = {line.rsplit("user=", 1)[1] for line in recorded}
    assert len(users) == 1 and "U0ALICE" not in out


def test_the_readme_first_example_is_a_working_bot_under_15_lines(tmp_path, monkeypatch):
    import re

    from twilio.request_validator import RequestValidator

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    assert len(code.strip().splitlines()) < 15 and "meter.instrument(OpenAI())" in code
    monkeypatch.syspath_prepend(str(EXAMPLES))  # undone after the test
    from local_stubs import OpenAiApiStub

    monkeypatch.chdir(tmp_path)  # Meter(bot=...) writes ./botmeter.duckdb
    with OpenAiApiStub() as openai_api:
        monkeypatch.setenv("OPENAI_BASE_URL", openai_api.api_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-local")
        monkeypatch.setenv("TWILIO_AUTH_TOKEN", "readme-token")
        bot: dict = {"__name__": "readme_bot"}
        exec(compile(code, "README.md", "exec"), bot)
        form = {"MessageSid": "SM" + "9" * 32, "From": "+15551230001", "To": "+15557654321",
                "Body": "what's the weather?", "NumSegments": "1", "FromCountry": "US"}  # fmt: skip
        signature = RequestValidator("readme-token").compute_signature("http://localhost/sms", form)
        answer = bot["app"].test_client().post("/sms", data=form, headers={"X-Twilio-Signature": signature})
        assert answer.status_code == 200 and b"<Message>Sunny, 21" in answer.data
        meter = bot["meter"]
        try:
            assert meter.flush()
            with meter.store.reading() as con:
                got = con.execute(
                    "select kind, direction, provider, cost_usd > 0, count(distinct user_id) from events "
                    "where kind in ('message', 'llm_call') group by all order by all"
                ).fetchall()
        finally:
            meter.close()
    assert got == [("llm_call", None, "openai", True, 1), ("message", "in", "twilio", True, 1),
                   ("message", "out", "twilio", True, 1)]  # fmt: skip
