"""botmeter's Lambda function on events of the wrong shape, and what its answers may reveal.

Each malformed event is one a misconfigured integration, a hand-written test event or a hostile
caller can send: botmeter answers 400 naming the field, never 500. Answers never show the
store's absolute path, the interpreter's path or a process id: those stay in the function's log.
"""

from __future__ import annotations

import json
import os
import re
import sys

import pytest

from conftest import hold_store_file
from test_aws_lambda import agent_event, filled, http_api_event, rest_event, scheduled_event  # noqa: F401


def _rest(**changes) -> dict:
    event = rest_event("/summary", {"days": "7"})
    for key, value in changes.items():
        if value is KeyError:
            event.pop(key, None)
        else:
            event[key] = value
    return event


def _v2(**changes) -> dict:
    event = http_api_event("/summary", "days=7")
    event.update(changes)
    return event


MALFORMED = {
    "method is a number": (_rest(httpMethod=5), "httpMethod"),
    "path is a number": (_rest(path=12), "path"),
    "path is a list": (_rest(path=["/summary"]), "path"),
    "query string is text": (
        _rest(queryStringParameters="days=7", multiValueQueryStringParameters=None),
        "queryStringParameters",
    ),
    "query string is a list": (
        _rest(queryStringParameters=["days"], multiValueQueryStringParameters=None),
        "queryStringParameters",
    ),
    "multi-value parameter not a list": (
        _rest(multiValueQueryStringParameters={"days": "7"}),
        "multiValueQueryStringParameters",
    ),
    "multi-value parameter of numbers": (
        _rest(multiValueQueryStringParameters={"days": [7]}),
        "multiValueQueryStringParameters",
    ),
    "requestContext is text": (_rest(requestContext="x"), "requestContext"),
    "headers is text": (_rest(headers="x"), "headers"),
    "a JSON body that is not JSON": (_rest(body="{not json"), "body"),
    "a body that is not base64": (_rest(body="!!!not base64", isBase64Encoded=True), "body"),
    "isBase64Encoded not a boolean": (_rest(isBase64Encoded="yes"), "isBase64Encoded"),
    "2.0: http is text": (_v2(requestContext={"http": "GET", "stage": "prod"}), "requestContext.http"),
    "2.0: raw query string a number": (_v2(rawQueryString=5), "rawQueryString"),
    "2.0: raw path a number": (_v2(rawPath=5), "rawPath"),
    "2.0: stage a number": (
        _v2(requestContext={"http": {"method": "GET"}, "stage": 5}),
        "requestContext.stage",
    ),
    "a control character in the path": (_rest(path="/metrics/\x00"), "path"),
    "an unknown parameter on the dashboard": (rest_event("/dashboard", {"colour": "blue"}), "colour"),
    "format on the dashboard": (rest_event("/dashboard", {"format": "text"}), "format"),
    "an unknown route": (rest_event("/nope"), "path"),
    "an event of no known kind": ({"hello": "world"}, "event"),
    "a list for an event": ([1, 2], "event"),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_events_are_400_naming_the_field(filled, name):  # noqa: F811
    from botmeter.aws_lambda import handler

    event, field = MALFORMED[name]
    answer = handler(event, None)
    assert 400 <= answer["statusCode"] < 500, answer
    body = json.loads(answer["body"])
    assert body["field"] == field and field in body["error"], body


@pytest.mark.parametrize(
    ("event", "words"),
    [
        (agent_event("get_summary") | {"parameters": "days=7"}, "parameters"),
        (agent_event("get_summary") | {"parameters": [{"name": ["days"], "value": "7"}]}, "parameters"),
        (agent_event("get_metric") | {"parameters": [{"name": "metric", "value": None}]}, "parameters"),
        (agent_event("get_summary") | {"function": 5}, "function"),
    ],
)
def test_malformed_agent_requests_ask_to_reprompt(filled, event, words):  # noqa: F811
    from botmeter.aws_lambda import handler

    answer = handler(event, None)["response"]["functionResponse"]
    assert answer["responseState"] == "REPROMPT" and words in answer["responseBody"]["TEXT"]["body"]


def test_a_scheduled_event_with_a_detail_of_another_shape_fails_naming_it(filled):  # noqa: F811
    from botmeter.aws_lambda import handler

    out = handler(scheduled_event() | {"detail": "days"}, None)
    assert out["sent"] == [] and "detail" in out["failures"][0]


def _reveals(text: str, store_path: str) -> list[str]:
    found = []
    for private in (
        store_path,
        os.path.dirname(store_path),
        sys.executable,
        os.path.realpath(sys.executable),
    ):
        if private in text:
            found.append(private)
    if re.search(r"(?i)\bpid\W*\d+", text):
        found.append("a process id")
    return found


def test_answers_do_not_reveal_paths_or_process_ids(filled, tmp_path, store_path, monkeypatch):  # noqa: F811
    from botmeter.aws_lambda import handler

    dashboard = handler(rest_event("/dashboard", {"days": "7"}), None)
    assert dashboard["statusCode"] == 200 and not _reveals(dashboard["body"], str(store_path))
    assert json.loads(dashboard["body"])["store"] == f"duckdb {store_path.name}"

    # Another process holds the file: DuckDB's error names its path, its interpreter and its PID.
    monkeypatch.setenv("BOTMETER_LOCK_TIMEOUT", "0.2")
    holder = hold_store_file(store_path, tmp_path, 30)
    try:
        for event in (rest_event("/summary"), rest_event("/metrics/messages"), rest_event("/dashboard")):
            answer = handler(event, None)
            assert answer["statusCode"] == 503, answer
            assert not _reveals(answer["body"], str(store_path)), answer["body"]
            assert "could not answer" in answer["body"]
        agent = handler(agent_event("get_costs", days="7"), None)["response"]["functionResponse"]
        assert not _reveals(agent["responseBody"]["TEXT"]["body"], str(store_path))
    finally:
        holder.kill()
        holder.wait()

    # A damaged file: the error quotes the file's path, which stays in the log.
    store_path.write_bytes(b"this is not a database\n" * 10)
    answer = handler(rest_event("/summary"), None)
    assert answer["statusCode"] == 503 and not _reveals(answer["body"], str(store_path)), answer["body"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"start": "0001-01-01", "interval": "hour"}, "start"),
        ({"start": "0001-01-01", "interval": "day"}, "start"),
        ({"start": "2020-01-01", "interval": "hour"}, "interval"),
        ({"end": "9999-12-31T23:59:59"}, "end"),
        ({"days": "99999"}, "days"),
        ({"by": "model", "interval": "none", "limit": "999999"}, "limit"),
    ],
)
def test_windows_without_bounds_are_refused_at_once(filled, query, field):  # noqa: F811
    """start=0001-01-01&interval=hour took 3.1 GB before a MemoryError; now a 400 naming the field."""
    import tracemalloc

    from botmeter.aws_lambda import handler

    handler(rest_event("/summary"), None)  # the first call's imports and store opening, not measured
    # Refused before any bucket is built: memory, not the shared machine's clock, says so.
    tracemalloc.start()
    try:
        answer = handler(rest_event("/metrics/cost_usd", query), None)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"{peak:,} bytes to refuse a window"
    assert answer["statusCode"] == 400 and json.loads(answer["body"])["field"] == field, answer["body"]


def test_the_same_bounds_for_the_python_api_and_admin(filled, store_url):  # noqa: F811
    from botmeter import Meter
    from botmeter.analyse import Reader
    from botmeter.analyse.query import QueryError

    reader = Reader(store_url)
    with pytest.raises(QueryError, match=r"^interval: hour over .* at most 10,000"):
        reader.query("messages", start="2020-01-01", interval="hour")
    with pytest.raises(QueryError, match=r"^start: 0001-01-01"):
        reader.error_groups(start="0001-01-01")
    with pytest.raises(QueryError, match=r"^days: "):
        reader.costs(10**9)
    m = Meter(bot="b", store=store_url, admins=["+15550001111"], hash_key="ab" * 16)
    try:
        assert "1 to 3650" in m.admin_reply(sender="+15550001111", text="admin:costs 99999")
    finally:
        m.close()
