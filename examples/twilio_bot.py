"""An SMS bot on Twilio with an LLM behind it, recorded by botmeter with nothing computed by hand.

Run it for real (Twilio calls http://<your host>:5000/sms, its status callbacks /status)::

    TWILIO_AUTH_TOKEN=... OPENAI_API_KEY=... python examples/twilio_bot.py

or against local stand-ins of Twilio and OpenAI, which sends a signed webhook and a status
callback to the running bot and prints what botmeter recorded::

    python examples/twilio_bot.py --selftest
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import urllib.request
from pathlib import Path
from urllib.parse import urlencode

from flask import Flask, request
from openai import OpenAI

from botmeter import Meter
from botmeter.integrations import twilio


def create_app(meter: Meter) -> Flask:
    llm = meter.instrument(OpenAI())  # every call: tokens, cost, latency, failures
    app = Flask(__name__)

    @app.post("/sms")
    def sms():
        with twilio.inbound(meter, request, validate=True) as msg:  # inbound SMS priced; the user is set
            answer = llm.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": msg.text or ""}]
            )
            return twilio.reply(meter, msg, answer.choices[0].message.content)  # TwiML; the reply priced

    @app.post("/status")
    def status():
        twilio.record_status(meter, request, validate=True)  # delivered / undelivered / failed
        return "", 204

    return app


def selftest() -> int:
    from local_stubs import OpenAiApiStub
    from twilio.request_validator import RequestValidator
    from werkzeug.serving import WSGIRequestHandler, make_server

    WSGIRequestHandler.log_request = lambda *a, **k: None  # keep the output to what botmeter recorded

    token = "selftest-auth-token"
    store = Path(tempfile.mkdtemp()) / "twilio_bot.duckdb"
    with OpenAiApiStub() as openai_api:
        os.environ.update(
            TWILIO_AUTH_TOKEN=token, OPENAI_BASE_URL=openai_api.api_url, OPENAI_API_KEY="sk-local"
        )
        meter = Meter(bot="smsbot", store=f"duckdb://{store}")
        server = make_server("127.0.0.1", 0, create_app(meter))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{server.server_port}"

        def post(path: str, form: dict[str, str]) -> tuple[int, str]:
            signature = RequestValidator(token).compute_signature(base + path, form)
            req = urllib.request.Request(
                base + path, data=urlencode(form).encode(), headers={"X-Twilio-Signature": signature}
            )
            with urllib.request.urlopen(req, timeout=10) as answer:
                return answer.status, answer.read().decode()

        sid = "SM" + "1" * 32
        inbound = {"MessageSid": sid, "From": "+15551230001", "To": "+15557654321", "Body": "weather today?",
                   "NumSegments": "1", "NumMedia": "0", "FromCountry": "US"}  # fmt: skip
        status, twiml = post("/sms", inbound)
        print(f"webhook answered {status}: {twiml}")
        post("/sms", inbound)  # Twilio retries a slow webhook: counted once
        post("/status", {"MessageSid": "SM" + "2" * 32, "MessageStatus": "delivered", "To": "+15551230001"})
        post("/status", {"MessageSid": "SM" + "3" * 32, "MessageStatus": "undelivered", "ErrorCode": "30003",
                         "To": "+15551230001"})  # fmt: skip
        server.shutdown()
        meter.flush()
        with meter.store.reading() as con:
            events = con.execute(
                "select kind, direction, channel, provider, model, units, cost_usd, stage, "
                "error_category, name, user_id from events order by ts"
            ).fetchall()
        print("recorded (user ids are keyed hashes):")
        for kind, direction, channel, provider, model, units, cost, stage, category, name, user in events:
            parts = [kind, direction, channel, provider, model, name, stage, category]
            text = " ".join(p for p in parts if p)
            if units is not None:
                text += f" units={units:g}"
            if cost is not None:
                text += f" cost_usd={cost:.6f}"
            print(f"  {text} user={user[:12]}...")
        print(f"delivery_rate: {meter.query('delivery_rate', days=1).rows[0]['ratio']:.2f}")
        meter.close()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--selftest", action="store_true", help="run against local Twilio/OpenAI stand-ins")
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args()
    if args.selftest:
        return selftest()
    create_app(Meter(bot="smsbot")).run(port=args.port)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
