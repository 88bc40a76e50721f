"""Twilio capture: inbound webhooks through real Flask, Django and Starlette requests (signed with
Twilio's own RequestValidator), status callbacks, and the Twilio SDK sending to a local stand-in
of its Messages API (examples/local_stubs.py) over HTTP; a real DuckDB store underneath."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from urllib.parse import urlencode

import pytest
from fastapi import FastAPI, Request
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from botmeter import Meter
from botmeter.integrations import twilio as tw
from botmeter.process.sms import SmsRates

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from local_stubs import TwilioApiStub, twilio_async_http_client, twilio_http_client

TOKEN = "12345678901234567890123456789012"
RATES = SmsRates.default()
USER = "+15551230001"


def inbound_form(sid: str = "SM" + "a" * 32, body: str = "hello bot", **extra: str) -> dict[str, str]:
    form = {
        "MessageSid": sid,
        "SmsSid": sid,
        "AccountSid": "AC" + "0" * 32,
        "From": USER,
        "To": "+15557654321",
        "Body": body,
        "NumMedia": "0",
        "NumSegments": "1",
        "FromCountry": "US",
        "ApiVersion": "2010-04-01",
    }
    form.update(extra)
    return form


def sign(url: str, form: dict[str, str]) -> str:
    return RequestValidator(TOKEN).compute_signature(url, form)


@pytest.fixture
def meter(store_url):
    m = Meter(bot="smsbot", store=store_url, hash_users=False)
    yield m
    m.close()


def rows(meter: Meter, store_path: Path, sql: str) -> list[tuple]:
    """The stored events, read through the meter's own store (it may hold the file between writes)."""
    assert meter.flush()
    with meter.store.reading() as con:
        return con.execute(sql).fetchall()


# -- inbound webhooks ------------------------------------------------------------------------------


@pytest.fixture
def flask_app(meter):
    from flask import Flask, request

    app = Flask("smsbot")
    app.testing = True  # the view's exceptions reach the test, as they reach a bot's error handler

    @app.post("/sms")
    def sms():
        with tw.inbound(meter, request, validate=True, auth_token=TOKEN) as msg:
            meter.track_llm_call(provider="openai", model="gpt-4o-mini", input_tokens=50, output_tokens=20)
            return f"<Response><Message>you said {msg.text}</Message></Response>"

    @app.post("/decorated")
    @tw.webhook(meter, validate=True, auth_token=TOKEN, conversation=lambda form: "c-" + form["From"][-4:])
    def decorated():
        meter.track_activity("reset")
        return "<Response/>"

    return app


def test_flask_inbound_sms_is_priced_as_inbound_and_sets_the_context(meter, store_path, flask_app):
    client = flask_app.test_client()
    form = inbound_form(NumSegments="3", body="x" * 400)
    answer = client.post(
        "/sms", data=form, headers={"X-Twilio-Signature": sign("http://localhost/sms", form)}
    )
    assert answer.status_code == 200 and b"you said" in answer.data
    # Twilio retries a webhook that timed out with the same MessageSid: it counts once.
    client.post("/sms", data=form, headers={"X-Twilio-Signature": sign("http://localhost/sms", form)})
    got = rows(
        meter,
        store_path,
        "select kind, direction, channel, provider, units, country, cost_usd, user_id, stage "
        "from events order by kind, stage",
    )
    messages = [r for r in got if r[0] == "message"]
    assert messages == [
        ("message", "in", "sms", "twilio", 3.0, "US", pytest.approx(3 * RATES.rate("US", "in")), USER, None)
    ]
    llm = [r for r in got if r[0] == "llm_call"]
    assert len(llm) == 2 and all(r[7] == USER for r in llm)  # the context gave the LLM calls the user
    timings = [r for r in got if r[0] == "timing"]
    assert [(r[8], r[2], r[7]) for r in timings] == [("reply", "sms", USER)] * 2


def test_flask_bad_signature_raises_and_records_nothing(meter, store_path, flask_app):
    client = flask_app.test_client()
    form = inbound_form()
    forged = sign("http://localhost/sms", {**form, "Body": "something else"})
    with pytest.raises(tw.TwilioSignatureError):
        client.post("/sms", data=form, headers={"X-Twilio-Signature": forged})
    answer = client.post("/decorated", data=form, headers={"X-Twilio-Signature": forged})
    assert answer.status_code == 403  # the decorator answers as Flask would
    answer = client.post("/decorated", data=form)  # no signature at all
    assert answer.status_code == 403
    assert meter.flush() and meter.stats()["processed"] == 0


def test_flask_decorator_with_a_conversation_function(meter, store_path, flask_app):
    form = inbound_form()
    client = flask_app.test_client()
    answer = client.post(
        "/decorated", data=form, headers={"X-Twilio-Signature": sign("http://localhost/decorated", form)}
    )
    assert answer.status_code == 200
    got = rows(meter, store_path, "select kind, user_id, conversation_id from events order by kind")
    assert got == [("activity", USER, "c-0001"), ("message", USER, "c-0001"), ("timing", USER, "c-0001")]


def test_starlette_request_async_with(meter, store_path):
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def sms(request):
        async with tw.inbound(
            meter, request, validate=True, auth_token=TOKEN, url="https://bot.example/sms"
        ) as msg:
            meter.track_custom("seen")
            return PlainTextResponse(msg.text)

    @tw.webhook(meter, validate=True, auth_token=TOKEN, url="https://bot.example/hook")
    async def hook(request):
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/sms", sms, methods=["POST"]), Route("/hook", hook, methods=["POST"])])
    form = inbound_form(body="héllo ✓", NumSegments="")  # no NumSegments: counted from the text
    good = asyncio.run(asgi_post(app, "/sms", form, sign("https://bot.example/sms", form)))
    assert good == (200, "héllo ✓")
    assert asyncio.run(asgi_post(app, "/hook", form, "bad"))[0] == 403
    got = rows(meter, store_path, "select kind, units, user_id from events order by kind")
    assert got == [("custom", None, USER), ("message", 1.0, USER), ("timing", None, USER)]


def test_fastapi_endpoint_decorated(meter, store_path):
    # Request is imported at module level: FastAPI resolves this module's string annotations there.
    app = FastAPI()

    @app.post("/sms")
    @tw.webhook(meter, validate=True, auth_token=TOKEN, url="https://bot.example/sms")
    async def sms(request: Request):  # FastAPI reads the signature through the decorator
        meter.track_custom("seen")
        return {"ok": True}

    form = inbound_form()
    answer = asyncio.run(asgi_post(app, "/sms", form, sign("https://bot.example/sms", form)))
    assert answer == (200, '{"ok":true}')
    assert asyncio.run(asgi_post(app, "/sms", form, "forged"))[0] == 403
    got = rows(meter, store_path, "select kind, user_id from events order by kind")
    assert got == [("custom", USER), ("message", USER), ("timing", USER)]


def test_a_starlette_request_in_a_plain_with_is_a_clear_error(meter):
    from starlette.requests import Request

    request = Request({"type": "http", "method": "POST", "headers": []}, receive=None)
    with pytest.raises(TypeError, match="async with"), tw.inbound(meter, request):
        pass


async def asgi_post(app, path: str, form: dict[str, str], signature: str) -> tuple[int, str]:
    """One POST through the ASGI app, as a server would deliver it."""
    body = urlencode(form).encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"content-type", b"application/x-www-form-urlencoded"),
            (b"content-length", str(len(body)).encode()),
            (b"x-twilio-signature", signature.encode()),
        ],
    }
    sent = [{"type": "http.request", "body": body, "more_body": False}]
    out: list[dict] = []

    async def receive():
        return sent.pop(0) if sent else {"type": "http.disconnect"}

    async def send(message):
        out.append(message)

    await app(scope, receive, send)
    status = next(m["status"] for m in out if m["type"] == "http.response.start")
    text = b"".join(m.get("body", b"") for m in out if m["type"] == "http.response.body").decode()
    return status, text


def _django():
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(ALLOWED_HOSTS=["testserver"], SECRET_KEY="test", ROOT_URLCONF=[], USE_TZ=True)
        django.setup()
    from django.http import HttpResponse
    from django.test import RequestFactory

    return RequestFactory(), HttpResponse


def test_django_view_decorator(meter, store_path):
    factory, HttpResponse = _django()

    @tw.webhook(meter, validate=True, auth_token=TOKEN)
    def view(request):
        meter.track_activity("feature:weather")
        return HttpResponse("ok")

    form = inbound_form(
        NumMedia="2", MediaUrl0="https://example.com/a.jpg", MediaUrl1="https://example.com/b.jpg"
    )
    good = view(factory.post("/sms", data=form, HTTP_X_TWILIO_SIGNATURE=sign("http://testserver/sms", form)))
    bad = view(factory.post("/sms", data=form, HTTP_X_TWILIO_SIGNATURE="nope"))
    assert (good.status_code, bad.status_code) == (200, 403)
    got = rows(
        meter,
        store_path,
        "select kind, channel, cost_usd, user_id, properties->>'$.media' from events order by kind",
    )
    # An MMS: counted on its channel, not priced with the SMS rate table.
    assert got[:2] == [("activity", None, None, USER, None), ("message", "mms", None, USER, "2")]


def test_form_as_a_dict_and_whatsapp(meter, store_path):
    msg = tw.record_inbound(meter, inbound_form(From="whatsapp:" + USER, To="whatsapp:+15557654321"))
    assert (msg.user, msg.channel) == (USER, "whatsapp")
    with pytest.raises(ValueError, match="url="):
        tw.record_inbound(meter, inbound_form(), validate=True, auth_token=TOKEN)
    got = rows(meter, store_path, "select kind, channel, cost_usd, user_id from events")
    assert got == [("message", "whatsapp", None, USER)]


def test_a_request_that_is_not_a_message_records_no_sms(meter, flask_app):
    client = flask_app.test_client()
    assert client.post("/decorated", data={}).status_code == 403  # validated: refused
    msg = tw.record_inbound(meter, {})  # e.g. a health check through an undecorated helper
    assert (msg.sid, msg.user, msg.text) == (None, None, None)
    assert meter.flush() and meter.stats()["processed"] == 0


def test_validation_needs_a_token(meter, monkeypatch):
    monkeypatch.delenv("TWILIO_AUTH_TOKEN", raising=False)
    with pytest.raises(tw.ConfigError, match="TWILIO_AUTH_TOKEN"):
        tw.record_inbound(meter, inbound_form(), validate=True, url="https://bot.example/sms")
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", TOKEN)
    form = inbound_form()
    signed = tw.TwilioRequest(form, "https://bot.example/sms", sign("https://bot.example/sms", form))
    assert tw.record_inbound(meter, signed, validate=True).sid == form["MessageSid"]


def test_a_failure_inside_botmeter_never_reaches_the_webhook(meter, store_path):
    # A conversation function returning something that is not an id: the track call rejects it, the
    # webhook goes on, the failure is counted.
    with tw.inbound(meter, inbound_form(), conversation=lambda form: {"not": "an id"}) as msg:
        assert msg.text == "hello bot"
    assert meter.stats()["integration_failures"] == {"twilio": 2}  # the message and the context
    assert rows(meter, store_path, "select kind from events") == [("timing",)]


# -- status callbacks ------------------------------------------------------------------------------


def status_form(sid: str, status: str, code: str | None = None, to: str = USER) -> dict[str, str]:
    form = {"MessageSid": sid, "SmsSid": sid, "MessageStatus": status, "SmsStatus": status, "To": to,
            "From": "+15557654321", "AccountSid": "AC" + "0" * 32, "ApiVersion": "2010-04-01"}  # fmt: skip
    if code is not None:
        form["ErrorCode"] = code
    return form


def test_status_callbacks_become_delivery_outcomes_and_errors(meter, store_path):
    from flask import Flask, request

    app = Flask("status")

    @app.post("/status")
    def status():
        tw.record_status(meter, request, validate=True, auth_token=TOKEN)
        return "", 204

    client = app.test_client()
    callbacks = [
        status_form("SM01", "sent"),
        status_form("SM01", "delivered"),
        status_form("SM01", "delivered"),  # Twilio retries callbacks too
        status_form("SM02", "undelivered", "30003"),
        status_form("SM03", "failed", "21610"),
        status_form("SM04", "delivered", to="+447700900123"),
    ]
    for form in callbacks:
        answer = client.post(
            "/status", data=form, headers={"X-Twilio-Signature": sign("http://localhost/status", form)}
        )
        assert answer.status_code == 204
    errors = rows(
        meter,
        store_path,
        "select error_type, error_category, severity, provider, properties->>'$.code', error_message, "
        "user_id "
        "from events where kind = 'error' order by error_type desc",
    )
    assert errors == [
        ("undelivered", "delivery", "warning", "twilio", "30003",
         "message undelivered: Twilio error <n> (unreachable destination handset)", USER),
        ("failed", "delivery", "warning", "twilio", "21610",
         "message failed: Twilio error <n> (recipient unsubscribed)", USER),
    ]  # fmt: skip
    rate = meter.query("delivery_rate", days=1)
    assert [r["ratio"] for r in rate.rows] == [pytest.approx(2 / 4)]
    outcomes = meter.query("delivery_outcomes", days=1, by="name")
    assert {r["name"]: r["count"] for r in outcomes.rows} == {
        "delivery:delivered": 2,
        "delivery:undelivered": 1,
        "delivery:failed": 1,
    }


def test_status_of_a_dict_form_and_unknown_statuses(meter, store_path):
    assert tw.record_status(meter, status_form("SM9", "queued")).outcome is False
    found = tw.record_status(meter, status_form("SM9", "failed", "0"))  # "0": no error code
    assert (found.status, found.error_code) == ("failed", None)
    got = rows(meter, store_path, "select kind, error_category, error_message from events order by kind")
    assert got == [("custom", None, None), ("error", "delivery", "message failed")]


# -- outbound through the Twilio SDK -----------------------------------------------------------------


@pytest.fixture
def twilio_api():
    with TwilioApiStub(auth_token=TOKEN) as stub:
        yield stub


def test_instrumented_client_records_outbound_sms(meter, store_path, twilio_api):
    client = meter.instrument(Client("AC" + "0" * 32, TOKEN, http_client=twilio_http_client(twilio_api.url)))
    long_text = "y" * 200
    sent = client.messages.create(to=USER, from_="+15557654321", body=long_text)
    assert sent.sid.startswith("SM") and sent.num_segments == "2"
    twilio_api.price = "-0.01580"  # Twilio reports a price: negative, a string
    priced = client.messages.create(to="+447700900123", from_="+15557654321", body="hi")
    mms = client.messages.create(USER, from_="+15557654321", media_url=["https://example.com/cat.jpg"])
    got = rows(
        meter,
        store_path,
        "select direction, channel, units, country, cost_usd, price_version, user_id, provider from events "
        "where kind = 'message' order by channel desc, units desc",
    )
    assert got == [
        ("out", "sms", 2.0, "US", pytest.approx(2 * RATES.rate("US", "out")), RATES.version, USER, "twilio"),
        ("out", "sms", 1.0, "GB", pytest.approx(0.0158), "caller", "+447700900123", "twilio"),
        ("out", "mms", 1.0, "US", pytest.approx(0.0158), "caller", USER, "twilio"),
    ]
    assert len({sent.sid, priced.sid, mms.sid}) == 3
    # The sid is the event id: recording the same message again stores nothing new.
    meter.track_sms(direction="out", text=long_text, user=USER, event_id=sent.sid)
    assert rows(meter, store_path, "select count(*) from events") == [(3,)]


def test_twilio_errors_reach_the_caller_unchanged_and_are_recorded(meter, store_path, twilio_api):
    client = meter.instrument(Client("AC" + "0" * 32, TOKEN, http_client=twilio_http_client(twilio_api.url)))
    with pytest.raises(TwilioRestException) as caught:
        client.messages.create(to="+15005550001", from_="+15557654321", body="hi")
    assert caught.value.code == 21211 and caught.value.status == 400
    with pytest.raises(TwilioRestException) as caught:
        client.messages.create(to="+15005550429", from_="+15557654321", body="hi")
    assert caught.value.status == 429
    bad = Client("AC" + "0" * 32, "wrong-token", http_client=twilio_http_client(twilio_api.url))
    meter.instrument(bad)
    with pytest.raises(TwilioRestException):
        bad.messages.create(to=USER, from_="+15557654321", body="hi")
    got = rows(
        meter,
        store_path,
        "select error_category, properties->>'$.code', properties->>'$.status_code', stage, provider "
        "from events where kind = 'error' order by 2",
    )
    assert got == [
        ("auth", "20003", "401", "send", "twilio"),
        ("rate_limit", "20429", "429", "send", "twilio"),
        ("invalid_request", "21211", "400", "send", "twilio"),
    ]


def test_uninstrument_and_other_clients_untouched(meter, store_path, twilio_api):
    http = twilio_http_client(twilio_api.url)
    client = meter.instrument(Client("AC" + "0" * 32, TOKEN, http_client=http))
    other = Client("AC" + "0" * 32, TOKEN, http_client=http)
    other.messages.create(to=USER, from_="+15557654321", body="not recorded")
    assert meter.instrument(client) is client  # twice is once
    client.messages.create(to=USER, from_="+15557654321", body="recorded")
    meter.uninstrument(client)
    client.messages.create(to=USER, from_="+15557654321", body="not recorded either")
    assert rows(meter, store_path, "select count(*) from events") == [(1,)]
    assert len(twilio_api.requests) == 3


def test_async_create_is_recorded(meter, store_path, twilio_api):
    async def send():
        client = meter.instrument(
            Client("AC" + "0" * 32, TOKEN, http_client=twilio_async_http_client(twilio_api.url))
        )
        with meter.context(conversation="c-async"):
            sent = await client.messages.create_async(to=USER, from_="+15557654321", body="async hello")
        with pytest.raises(TwilioRestException):
            await client.messages.create_async(to="+15005550500", from_="+15557654321", body="x")
        await client.http_client.close()
        return sent

    sent = asyncio.run(send())
    got = rows(meter, store_path, "select kind, error_category, conversation_id from events order by kind")
    assert got == [("error", "upstream_error", None), ("message", None, "c-async")]
    assert json.loads(json.dumps(sent.sid)).startswith("SM")


# -- the delivery rate on CloudWatch (moto's server, a real process on 127.0.0.1) ---------------------


def test_delivery_rate_from_cloudwatch_metrics(aws, tmp_path):
    import uuid

    from botmeter.analyse import Reader
    from botmeter.store import open_store

    tag = uuid.uuid4().hex[:8]
    url = f"cloudwatch://?namespace=Delivery{tag}&region=us-east-1&mode=api"
    cw_meter = Meter(bot=f"bot-{tag}", store=url, spool_dir=str(tmp_path / "spool"), hash_key="ab" * 16)
    try:
        for i, (status, code) in enumerate(
            [("delivered", None)] * 3 + [("undelivered", "30007"), ("sent", None)]
        ):
            tw.record_status(cw_meter, status_form(f"SM{i}", status, code))
        assert cw_meter.flush()
    finally:
        cw_meter.close()
    reader = Reader(open_store(url))
    rate = reader.query("delivery_rate", days=1, interval=None)
    assert rate.rows[0]["ratio"] == pytest.approx(3 / 4)
    assert "cloudwatch metrics" in rate.source
    outcomes = reader.query("delivery_outcomes", days=1, interval=None, by="name")
    assert {r["name"]: r["count"] for r in outcomes.rows} == {
        "delivery:delivered": 3,
        "delivery:undelivered": 1,
    }
    errors = reader.query("errors", days=1, interval=None, by="category")
    assert {r["category"]: r["count"] for r in errors.rows} == {"delivery": 1}


def test_every_client_at_once(meter, store_path, twilio_api, store_url, tmp_path):
    http = twilio_http_client(twilio_api.url)
    own_meter = Meter(bot="other", store=f"duckdb://{tmp_path / 'other.duckdb'}", hash_users=False)
    try:
        made_before = Client("AC" + "0" * 32, TOKEN, http_client=http)
        own = own_meter.instrument(Client("AC" + "0" * 32, TOKEN, http_client=http))
        tw.instrument(meter)
        try:
            made_after = Client("AC" + "0" * 32, TOKEN, http_client=http)
            made_before.messages.create(to=USER, from_="+15557654321", body="one")
            made_after.messages.create(to=USER, from_="+15557654321", body="two")
            own.messages.create(to=USER, from_="+15557654321", body="recorded by its own meter only")
            with pytest.raises(TwilioRestException):
                made_after.messages.create(to="+15005550001", from_="+15557654321", body="x")
        finally:
            tw.uninstrument()
        made_after.messages.create(to=USER, from_="+15557654321", body="after uninstrument")
        assert rows(meter, store_path, "select kind, count(*) from events group by kind order by kind") == [
            ("error", 1),
            ("message", 2),
        ]
        assert own_meter.flush() and own_meter.stats()["processed"] == 1
    finally:
        own_meter.close()
