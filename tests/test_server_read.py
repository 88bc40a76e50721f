"""The collector's reading routes: ``/metrics/{metric}``, ``/summary`` and ``/errors`` answer as the
Lambda function does over the same store; ``/dashboard`` in Chromium, with HTTP Basic and its form.

``botmeter serve`` runs as a subprocess on a free port; its events arrive through ``/v1/events``.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from botmeter import aws_lambda
from collector_server import running_collector

pytestmark = pytest.mark.slow

NOW = datetime.now(UTC)


def _day(days_ago: int) -> str:
    return (NOW - timedelta(days=days_ago)).replace(hour=1, minute=0, second=0, microsecond=0).isoformat()


# Costs given outright, so each window's total is known: smsbot $1.50 two days ago and $4.00
# twenty days ago; webbot $0.25 today. Each bot has an error of its own.
SMSBOT = [
    {"kind": "llm_call", "provider": "openai", "model": "gpt-4o", "cost_usd": 1.5, "ts": _day(2)},
    {"kind": "llm_call", "provider": "openai", "model": "gpt-4o", "cost_usd": 4.0, "ts": _day(20)},
    {"kind": "message", "direction": "in", "user": "+15551230001", "conversation": "c1", "ts": _day(2)},
    {"kind": "error", "error": "TimeoutError", "stage": "llm", "ts": _day(2)},
]
WEBBOT = [
    {"kind": "llm_call", "provider": "anthropic", "model": "claude-sonnet-4-5", "cost_usd": 0.25},
    {"kind": "error", "error": "KeyError", "stage": "reply"},
]


def _fill(server) -> None:
    for token, events in ((server.tokens["ingest"], SMSBOT), (server.tokens["webbot"], WEBBOT)):
        with server.client(token) as client:
            sent = client.post("/v1/events", json={"events": events})
            assert sent.status_code == 202, sent.text


@pytest.fixture(scope="module")
def collector(tmp_path_factory, clean_env_for_module):
    with running_collector(tmp_path_factory.mktemp("read")) as server:
        _fill(server)
        yield server


def test_json_routes_answer_as_the_lambda_function_does(tmp_path, monkeypatch):
    start, end = _day(30)[:10], (NOW + timedelta(days=1)).date().isoformat()
    paths = [
        f"/metrics/cost_usd?start={start}&end={end}&by=bot&interval=day",
        f"/metrics/llm_calls?start={start}&end={end}&filter=bot=smsbot&interval=none",
        "/metrics/cost_usd?days=0",
        "/metrics/no_such_metric",
        "/summary?days=3&format=text&verbose=1",
    ]
    with running_collector(tmp_path) as server:
        _fill(server)
        with server.client(server.tokens["read"]) as client:
            served = {path: client.get(path) for path in paths}
            summary = client.get("/summary?days=30").json()
            errors = client.get("/errors?days=30").json()
        store = server.store
    # The server is stopped; the Lambda handler reads the same file.
    monkeypatch.setenv("BOTMETER_STORE", store)

    def lambda_get(path: str) -> dict:
        raw, _, query = path.partition("?")
        return aws_lambda.handler(
            {
                "version": "2.0",
                "rawPath": raw,
                "rawQueryString": query,
                "requestContext": {"http": {"method": "GET"}},
            }
        )

    for path, answer in served.items():
        expected = lambda_get(path)
        assert answer.status_code == expected["statusCode"], path
        assert answer.headers["content-type"] == expected["headers"]["content-type"], path
        assert answer.text == expected["body"], path
    assert served["/metrics/cost_usd?days=0"].json()["field"] == "days"
    assert served["/summary?days=3&format=text&verbose=1"].json()["field"] == "verbose"
    rows = served[paths[0]].json()["rows"]
    assert sum(r["value"] for r in rows if r["bot"] == "smsbot") == pytest.approx(5.5)
    # Summaries end "now": the same figures, a moment apart.
    expected_summary = json.loads(lambda_get("/summary?days=30")["body"])
    assert summary["costs"]["total_usd"] == expected_summary["costs"]["total_usd"]
    assert summary["costs"]["total_usd"]["value"] == pytest.approx(5.75)
    assert summary["engagement"] == expected_summary["engagement"]
    expected_errors = json.loads(lambda_get("/errors?days=30")["body"])
    assert [g["fingerprint"] for g in errors["groups"]] == [
        g["fingerprint"] for g in expected_errors["groups"]
    ]
    assert sorted(g["error_type"] for g in errors["groups"]) == ["KeyError", "TimeoutError"]


def test_reading_needs_a_read_token(collector):
    for path in ("/summary", "/errors", "/metrics/cost_usd", "/dashboard"):
        bare = httpx.get(collector.url + path)
        assert bare.status_code == 401, path
        assert bare.headers["www-authenticate"].startswith("Basic"), path  # so a browser asks
        with collector.client(collector.tokens["ingest"]) as client:
            assert client.get(path).status_code == 403, path
        basic = httpx.get(collector.url + path, auth=("anyone", collector.tokens["read"]))
        assert basic.status_code == 200, path
        wrong = httpx.get(collector.url + path, auth=("anyone", collector.tokens["read"] + "x"))
        assert wrong.status_code == 401, path


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("days=abc", "days"),
        ("days=0", "days"),
        ("start=yesterday&end=2026-01-01", "start"),
        ("colour=blue", "colour"),
        ("days=3&days=4", "days"),
    ],
)
def test_a_dashboard_request_that_cannot_be_answered_says_why_with_the_form(collector, query, field):
    answer = httpx.get(f"{collector.url}/dashboard?{query}", auth=("me", collector.tokens["read"]))
    assert answer.status_code == 400
    assert answer.headers["content-type"].startswith("text/html")
    assert re.search(rf'<p class="error" role="alert">{field}: ', answer.text), answer.text[-800:]
    assert "<form" in answer.text and "<script" not in answer.text


def _cost(page) -> str:
    return page.locator('[data-kpi="cost_usd"] .figure').inner_text()


def test_dashboard_in_a_browser_with_basic_auth_and_its_form(browser, collector):
    context = browser.new_context(http_credentials={"username": "me", "password": collector.tokens["read"]})
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    # A browser asks for /favicon.ico by itself when it shows the JSON (which has no policy to stop it).
    page.on(
        "response",
        lambda r: (
            problems.append(f"{r.status} {r.url}") if r.status >= 400 and "favicon" not in r.url else None
        ),
    )
    page.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)
    answer = page.goto(f"{collector.url}/dashboard", wait_until="load")
    assert answer.status == 200
    policy = answer.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "form-action 'self'" in policy and "script" not in policy
    assert page.locator("script").count() == 0
    assert "30 days" in page.locator(".period").inner_text()
    assert _cost(page) == "$5.75"

    # The form: seven days, then a window given by dates, then one bot.
    page.fill("input[name=days]", "7")
    page.click("form.window button[type=submit]")
    page.wait_for_url(re.compile(r"days=7"))
    assert "7 days" in page.locator(".period").inner_text()
    assert _cost(page) == "$1.75"
    assert page.input_value("input[name=days]") == "7"  # the form shows the window it drew

    page.fill("input[name=start]", _day(25)[:10])
    page.fill("input[name=end]", _day(10)[:10])
    page.click("form.window button[type=submit]")
    page.wait_for_url(re.compile(r"start="))
    assert _cost(page) == "$4.00"
    assert page.input_value("input[name=start]") == _day(25)[:10]

    page.fill("input[name=start]", "")
    page.fill("input[name=end]", "")
    page.fill("input[name=days]", "30")
    page.fill("input[name=bot]", "webbot")
    page.click("form.window button[type=submit]")
    page.wait_for_url(re.compile(r"bot=webbot"))
    assert _cost(page) == "$0.2500"
    assert "bot webbot" in page.locator(".period").inner_text()
    # Error groups are this bot's: its KeyError, not the other bot's TimeoutError.
    groups = page.locator('[data-panel="error_groups"]').inner_text()
    assert "KeyError" in groups and "TimeoutError" not in groups

    # The presets keep the bot.
    page.click(".presets a:text-is('7 days')")
    page.wait_for_url(re.compile(r"days=7&bot=webbot|bot=webbot&days=7"))

    # Panels link to each other, and to their figures as JSON.
    links = page.locator('[data-panel="cost_by_model"] p.links a[href^="#"]')
    assert links.count() >= 2
    target = links.first.get_attribute("href")
    links.first.click()
    page.wait_for_function(f"location.hash === '{target}'")
    top = page.evaluate(f"document.getElementById('{target[1:]}').getBoundingClientRect().top")
    assert 0 <= top < 100
    for href in page.locator("p.links a[href^='#']").evaluate_all(
        "links => links.map(a => a.getAttribute('href'))"
    ):
        assert page.locator(f"[id='{href[1:]}']").count() == 1, href
    json_link = page.locator('[data-panel="cost_by_model"] p.links a[href^="metrics/"]').first
    json_link.click()
    page.wait_for_load_state()
    body = json.loads(page.locator("body").inner_text())
    # The panel's own figures, for this bot only: webbot's $0.25, not every bot's $5.75.
    assert body["metric"] == "cost_usd" and "bot=webbot" in page.url.replace("%3D", "=")
    assert sum(r["value"] for r in body["rows"]) == pytest.approx(0.25)
    assert not problems, problems
    context.close()


def test_the_dashboard_asks_a_browser_for_credentials(browser, collector):
    from playwright.sync_api import Error

    # A Basic challenge makes the browser ask for a password; headless, it has none to give.
    context = browser.new_context()
    with pytest.raises(Error, match="ERR_INVALID_AUTH_CREDENTIALS"):
        context.new_page().goto(f"{collector.url}/dashboard")
    context.close()
    # A wrong password is refused, and nothing of the page is shown.
    context = browser.new_context(http_credentials={"username": "me", "password": "bm_wrong_token"})
    page = context.new_page()
    assert page.goto(f"{collector.url}/dashboard").status == 401
    assert page.locator("[data-kpi]").count() == 0
    context.close()
