"""Local stand-ins for the Twilio, Slack and OpenAI APIs, on 127.0.0.1, for the examples and the tests.

They answer the requests the SDKs really send (the Twilio SDK's ``POST .../Messages.json`` with
Basic auth, Slack's ``auth.test`` and ``chat.postMessage``) with bodies shaped like the real
APIs' answers, Twilio's error bodies included. The SDK clients are pointed at them:

* Twilio: ``Client(sid, token, http_client=twilio_http_client(stub.url))``, an ordinary
  ``TwilioHttpClient`` that sends to the stub's address instead of Twilio's host;
* Slack: ``WebClient(token, base_url=stub.api_url)``;
* OpenAI: ``OpenAI(base_url=stub.api_url, api_key="...")`` (or ``OPENAI_BASE_URL``).
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

# Numbers the Twilio stub refuses, as Twilio does, with its own error codes and statuses.
TWILIO_ERRORS: dict[str, tuple[int, int, str]] = {
    "+15005550001": (400, 21211, "The 'To' number +15005550001 is not a valid phone number."),
    "+15005550009": (400, 21614, "'To' number +15005550009 is not a valid mobile number"),
    "+15005550429": (429, 20429, "Too Many Requests"),
    "+15005550500": (500, 20500, "An internal server error has occurred"),
}


def _segments(body: str) -> int:
    if all(ord(c) < 128 for c in body):
        return 1 if len(body) <= 160 else -(-len(body) // 153)
    units = len(body.encode("utf-16-le")) // 2
    return 1 if units <= 70 else -(-units // 67)


class _Server(ThreadingHTTPServer):
    daemon_threads = True


class _Stub:
    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.requests: list[dict[str, Any]] = []
        handler.stub = self  # type: ignore[attr-defined]
        self.server = _Server(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> _Stub:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> _Stub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _JsonHandler(BaseHTTPRequestHandler):
    """What the stand-ins share: quiet logs, JSON answers."""

    def log_message(self, *args: Any) -> None:  # quiet
        return None

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _TwilioHandler(_JsonHandler):
    stub: TwilioApiStub

    def _error(self, status: int, code: int, message: str) -> None:
        self._answer(
            status,
            {
                "code": code,
                "message": message,
                "more_info": f"https://www.twilio.com/docs/errors/{code}",
                "status": status,
            },
        )

    def do_POST(self) -> None:
        stub = self.stub
        length = int(self.headers.get("Content-Length") or 0)
        form = {k: v if len(v) > 1 else v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
        stub.requests.append({"path": self.path, "form": form})
        expected = "Basic " + base64.b64encode(f"{stub.account_sid}:{stub.auth_token}".encode()).decode()
        if self.headers.get("Authorization") != expected:
            return self._error(401, 20003, "Authenticate")
        if not self.path.startswith(f"/2010-04-01/Accounts/{stub.account_sid}/Messages.json"):
            return self._error(404, 20404, f"The requested resource {self.path} was not found")
        to = form.get("To", "")
        if to in TWILIO_ERRORS:
            return self._error(*TWILIO_ERRORS[to])
        body = form.get("Body", "")
        media = form.get("MediaUrl", [])
        media = [media] if isinstance(media, str) else media
        sid = "SM" + uuid.uuid4().hex
        self._answer(
            201,
            {
                "account_sid": stub.account_sid,
                "api_version": "2010-04-01",
                "body": body,
                "date_created": formatdate(usegmt=True),
                "date_sent": None,
                "date_updated": formatdate(usegmt=True),
                "direction": "outbound-api",
                "error_code": None,
                "error_message": None,
                "from": form.get("From"),
                "messaging_service_sid": form.get("MessagingServiceSid"),
                "num_media": str(len(media)),
                "num_segments": str(_segments(body)),
                "price": stub.price,
                "price_unit": "USD",
                "sid": sid,
                "status": "queued",
                "subresource_uris": {
                    "media": f"/2010-04-01/Accounts/{stub.account_sid}/Messages/{sid}/Media.json"
                },
                "to": to,
                "uri": f"/2010-04-01/Accounts/{stub.account_sid}/Messages/{sid}.json",
            },
        )


class TwilioApiStub(_Stub):
    """Twilio's Messages API. ``price``: what Twilio reports at creation (a negative decimal string,
    or None, which is what Twilio usually answers before the message is sent)."""

    def __init__(
        self, account_sid: str = "AC" + "0" * 32, auth_token: str = "test-token", price: str | None = None
    ):
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.price = price
        super().__init__(type("TwilioHandler", (_TwilioHandler,), {}))


def twilio_http_client(stub_url: str) -> Any:
    """The Twilio SDK's own HTTP client, sending to ``stub_url`` instead of Twilio's API host."""
    from twilio.http.http_client import TwilioHttpClient

    class LocalTwilioHttpClient(TwilioHttpClient):
        def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            _, _, path = url.partition("://")[2].partition("/")
            return super().request(method, f"{stub_url}/{path}", *args, **kwargs)

    return LocalTwilioHttpClient()


def twilio_async_http_client(stub_url: str) -> Any:
    """The Twilio SDK's own asyncio HTTP client (aiohttp), sending to ``stub_url``."""
    from twilio.http.async_http_client import AsyncTwilioHttpClient

    class LocalAsyncTwilioHttpClient(AsyncTwilioHttpClient):
        async def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            _, _, path = url.partition("://")[2].partition("/")
            return await super().request(method, f"{stub_url}/{path}", *args, **kwargs)

    return LocalAsyncTwilioHttpClient()


class _OpenAiHandler(_JsonHandler):
    stub: OpenAiApiStub

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        request = json.loads(self.rfile.read(length) or b"{}")
        self.stub.requests.append({"path": self.path, "body": request})
        if not self.path.endswith("/chat/completions"):
            status, body = 404, {"error": {"message": "Unknown request URL", "type": "invalid_request_error"}}
        else:
            prompt = " ".join(str(m.get("content", "")) for m in request.get("messages", []))
            answer = "Sunny, 21°C." if "weather" in prompt.lower() else "Hello! How can I help?"
            usage = {"prompt_tokens": 12 + len(prompt) // 4, "completion_tokens": 9}
            usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
            usage["prompt_tokens_details"] = {"cached_tokens": 0, "audio_tokens": 0}
            usage["completion_tokens_details"] = {"reasoning_tokens": 0, "audio_tokens": 0}
            status, body = 200, {
                "id": "chatcmpl-" + uuid.uuid4().hex[:24],
                "object": "chat.completion",
                "created": 1741570283,
                "model": self.stub.model,
                "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                             "message": {"role": "assistant", "content": answer, "refusal": None}}],
                "usage": usage,
                "service_tier": "default",
                "system_fingerprint": "fp_06737a9306",
            }  # fmt: skip
        self._answer(status, body)


class OpenAiApiStub(_Stub):
    """OpenAI's chat completions endpoint: ``OpenAI(base_url=stub.api_url, api_key=...)``."""

    def __init__(self, model: str = "gpt-4o-mini-2024-07-18") -> None:
        self.model = model
        super().__init__(type("OpenAiHandler", (_OpenAiHandler,), {}))

    @property
    def api_url(self) -> str:
        return self.url + "/v1"


class _SlackHandler(_JsonHandler):
    stub: SlackApiStub

    def do_POST(self) -> None:
        stub = self.stub
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode()
        if self.headers.get("Content-Type", "").startswith("application/json"):
            form = json.loads(raw or "{}")
        else:
            form = {k: v[0] for k, v in parse_qs(raw).items()}
        method = self.path.partition("?")[0].rsplit("/", 1)[-1]
        stub.requests.append({"method": method, "form": form})
        if self.headers.get("Authorization") != f"Bearer {stub.token}":
            body: dict[str, Any] = {"ok": False, "error": "invalid_auth"}
        elif method == "auth.test":
            body = {"ok": True, "url": "https://example.slack.com/", "team": "Example", "user": "bot",
                    "team_id": "T0001", "user_id": "U0BOT", "bot_id": "B0001"}  # fmt: skip
        elif method == "chat.postMessage":
            body = {"ok": True, "channel": form.get("channel"), "ts": "1700000000.000200",
                    "message": {"type": "message", "text": form.get("text"), "user": "U0BOT"}}  # fmt: skip
        else:
            body = {"ok": False, "error": "unknown_method"}
        self._answer(200, body)


class SlackApiStub(_Stub):
    """Slack's Web API methods a Bolt bot calls: ``auth.test`` and ``chat.postMessage``."""

    def __init__(self, token: str = "xoxb-test-token") -> None:
        self.token = token
        super().__init__(type("SlackHandler", (_SlackHandler,), {}))

    @property
    def api_url(self) -> str:
        return self.url + "/api/"
