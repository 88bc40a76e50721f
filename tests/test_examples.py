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
    recorded = out.split("recorded:\n", 1)[1].splitlines()
    # The inbound SMS once (Twilio's retry counted once), priced as inbound in the US.
    assert [line for line in recorded if line.startswith("  message in sms")] == [
        "  message in sms twilio units=1 cost_usd=0.008300 user=+15551230001"
    ]
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
