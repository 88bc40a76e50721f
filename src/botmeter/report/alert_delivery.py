"""Alert delivery: fired alerts (``analyse.alerts.check``) posted to a webhook or to Slack, each at most
once per ``repeat_minutes`` (state kept in a small JSON file). Apart from the checks so that working out
alerts needs no report forms; the Slack message is ``report.responses``' form of them."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..analyse.alerts import Rules
from .responses import alerts_report, to_slack_blocks


def deliver(
    alerts: list[dict[str, Any]], rules: Rules, state_path: Path | None, now: datetime | None = None
) -> dict[str, Any]:
    """Sends alerts not sent within ``repeat_minutes``; returns what was sent, held back and failed."""
    now_s = (now or datetime.now(UTC)).timestamp()
    state: dict[str, float] = {}
    if state_path is not None and state_path.exists():
        try:
            state = json.loads(state_path.read_text())
        except (OSError, ValueError):
            state = {}  # a damaged state file only means an alert may repeat once
    due = [a for a in alerts if now_s - state.get(a["id"], float("-inf")) >= rules.repeat_minutes * 60]
    held = [a for a in alerts if a not in due]
    failures: list[str] = []
    if due:
        targets = rules.deliver
        if targets.get("webhook"):
            failures += post_json(targets["webhook"], {"source": "botmeter", "alerts": due})
        if targets.get("slack_webhook"):
            failures += post_json(targets["slack_webhook"], slack_payload(due))
        for a in due:
            state[a["id"]] = now_s
        if state_path is not None:
            try:
                state_path.parent.mkdir(parents=True, exist_ok=True)
                tmp = state_path.with_name(state_path.name + ".tmp")
                tmp.write_text(json.dumps(state))
                tmp.replace(state_path)
            except OSError as exc:
                failures.append(f"cannot keep alert state at {state_path}: {exc}")
    return {"sent": due, "held_back": held, "failures": failures}


def slack_payload(alerts: list[dict[str, Any]]) -> dict[str, Any]:
    """An incoming-webhook message: a plain-text fallback and Block Kit blocks (``report.responses``)."""
    return to_slack_blocks(alerts_report(alerts))


def post_json(url: str, payload: dict[str, Any]) -> list[str]:
    """POSTs ``payload`` as JSON, three tries for a server error; returns the problems (none: sent)."""
    body = json.dumps(payload, default=str).encode()
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    for attempt in range(3):
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                if 200 <= response.status < 300:
                    return []
                problem = f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            problem = f"HTTP {exc.code}"
            if exc.code < 500 and exc.code != 429:
                break
        except (urllib.error.URLError, OSError) as exc:
            problem = str(getattr(exc, "reason", exc))
        time.sleep(0.2 * (attempt + 1))
    return [f"delivery to {url} failed: {problem}"]
