"""Error facts, categories, severities, message masking and fingerprints."""

from __future__ import annotations

import errno
import itertools
import json
import socket
import threading
import time
from typing import Any

import pytest

from botmeter.process.error_facts import (
    CATEGORIES,
    ErrorFacts,
    categorise,
    default_severity,
    describe,
    fingerprint,
    normalise_message,
)

# -- stand-ins for client library exceptions ---------------------------------------------------
# These mirror the real libraries' class names, hierarchies and attribute names (openai, anthropic,
# httpx, requests, twilio, botocore, python-telegram-bot) so the extraction is exercised on the same
# shapes without depending on the libraries.


class OpenAI:
    class OpenAIError(Exception):
        pass

    class APIError(OpenAIError):
        def __init__(self, message: str, request: object, *, body: object) -> None:
            super().__init__(message)
            self.request = request
            self.message = message
            self.body = body
            if isinstance(body, dict):
                self.code = body.get("code")
                self.param = body.get("param")
                self.type = body.get("type")
            else:
                self.code = self.param = self.type = None

    class APIStatusError(APIError):
        def __init__(self, message: str, *, response: object, body: object) -> None:
            super().__init__(message, None, body=body)
            self.response = response
            self.status_code = response.status_code  # type: ignore[attr-defined]
            self.request_id = "req_8f3k2LmQ9xZ"

    class BadRequestError(APIStatusError):
        pass

    class AuthenticationError(APIStatusError):
        pass

    class NotFoundError(APIStatusError):
        pass

    class RateLimitError(APIStatusError):
        pass

    class InternalServerError(APIStatusError):
        pass

    class APIConnectionError(APIError):
        def __init__(self, *, message: str = "Connection error.", request: object = None) -> None:
            super().__init__(message, request, body=None)

    class APITimeoutError(APIConnectionError):
        def __init__(self, request: object = None) -> None:
            super().__init__(message="Request timed out.", request=request)


class Anthropic:
    class APIError(Exception):
        def __init__(self, message: str, request: object, *, body: object) -> None:
            super().__init__(message)
            self.request = request
            self.message = message
            self.body = body

    class APIStatusError(APIError):
        def __init__(self, message: str, *, response: object, body: object) -> None:
            super().__init__(message, None, body=body)
            self.response = response
            self.status_code = response.status_code  # type: ignore[attr-defined]

    class RateLimitError(APIStatusError):
        pass


class Httpx:
    class Response:
        def __init__(self, status_code: int) -> None:
            self.status_code = status_code

    class HTTPError(Exception):
        pass

    class HTTPStatusError(HTTPError):
        def __init__(self, message: str, *, request: object, response: object) -> None:
            super().__init__(message)
            self.request = request
            self.response = response

    class RequestError(HTTPError):
        pass

    class TransportError(RequestError):
        pass

    class TimeoutException(TransportError):
        pass

    class ReadTimeout(TimeoutException):
        pass

    class ConnectError(TransportError):
        pass


class Requests:
    class RequestException(OSError):
        def __init__(self, *args: object, response: object = None) -> None:
            super().__init__(*args)
            self.response = response

    class HTTPError(RequestException):
        pass

    class ConnectionError(RequestException):
        pass

    class Timeout(RequestException):
        pass

    class ReadTimeout(Timeout):
        pass


class TwilioException(Exception):
    pass


class TwilioRestException(TwilioException):
    """twilio.base.exceptions.TwilioRestException: status, uri, msg, code, method, details."""

    def __init__(
        self, status: int, uri: str, msg: str = "", code: int | None = None, method: str = "GET", details=None
    ) -> None:
        super().__init__(msg)
        self.uri = uri
        self.status = status
        self.msg = msg
        self.code = code
        self.method = method
        self.details = details

    def __str__(self) -> str:
        return f"HTTP Error Your request was:\n\n{self.method} {self.uri}\n\nTwilio returned: {self.msg}"


class ClientError(Exception):
    """botocore.exceptions.ClientError: response dict with Error and ResponseMetadata."""

    def __init__(self, error_response: dict[str, Any], operation_name: str) -> None:
        err = error_response.get("Error", {})
        super().__init__(f"An error occurred ({err.get('Code')}) when calling the {operation_name} operation")
        self.response = error_response
        self.operation_name = operation_name


class Telegram:
    class TelegramError(Exception):
        def __init__(self, message: str) -> None:
            super().__init__(message)
            self.message = message

    class Forbidden(TelegramError):
        pass


def _openai(cls: type, status: int, body: dict[str, Any]) -> BaseException:
    return cls(f"Error code: {status} - {body}", response=Httpx.Response(status), body=body)


def _facts(error: object, **kwargs: Any) -> ErrorFacts:
    return describe(error, **kwargs)


def _category(error: object, provider: str | None = None, **kwargs: Any) -> str:
    return categorise(describe(error, **kwargs), provider)


# -- categories -------------------------------------------------------------------------------


def test_openai_errors() -> None:
    quota = _openai(
        OpenAI.RateLimitError,
        429,
        {
            "message": "You exceeded your current quota.",
            "type": "insufficient_quota",
            "code": "insufficient_quota",
        },
    )
    facts = describe(quota)
    assert facts.error_type == "RateLimitError"
    assert facts.status_code == 429
    assert facts.code == "insufficient_quota"
    assert facts.message == "You exceeded your current quota."
    assert categorise(facts) == "quota"

    limited = _openai(
        OpenAI.RateLimitError,
        429,
        {"message": "Rate limit reached for gpt-4o", "type": "tokens", "code": "rate_limit_exceeded"},
    )
    assert _category(limited) == "rate_limit"

    too_long = _openai(
        OpenAI.BadRequestError,
        400,
        {
            "message": "maximum context length",
            "type": "invalid_request_error",
            "code": "context_length_exceeded",
        },
    )
    assert _category(too_long) == "invalid_request"

    bad_key = _openai(OpenAI.AuthenticationError, 401, {"message": "Incorrect API key", "code": None})
    assert _category(bad_key) == "auth"
    missing = _openai(OpenAI.NotFoundError, 404, {"message": "no such model", "code": None})
    assert _category(missing) == "not_found"
    server = _openai(OpenAI.InternalServerError, 500, {"message": "oops", "type": "server_error"})
    assert _category(server) == "upstream_error"
    assert _category(OpenAI.APIConnectionError()) == "network"
    assert _category(OpenAI.APITimeoutError()) == "timeout"


def test_rate_limit_without_code_but_quota_message_is_quota() -> None:
    error = OpenAI.RateLimitError(
        "You exceeded your current quota, please check your plan and billing details.",
        response=Httpx.Response(429),
        body=None,
    )
    assert _category(error) == "quota"


def test_anthropic_errors() -> None:
    overloaded = Anthropic.APIStatusError(
        "Overloaded",
        response=Httpx.Response(529),
        body={"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    )
    facts = describe(overloaded)
    assert (facts.status_code, facts.code, facts.message) == (529, "overloaded_error", "Overloaded")
    assert categorise(facts) == "upstream_error"
    limited = Anthropic.RateLimitError(
        "rate limited",
        response=Httpx.Response(429),
        body={
            "type": "error",
            "error": {"type": "rate_limit_error", "message": "Number of requests exceeded"},
        },
    )
    assert _category(limited) == "rate_limit"
    broke = Anthropic.APIStatusError(
        "credit",
        response=Httpx.Response(400),
        body={
            "type": "error",
            "error": {"type": "invalid_request_error", "message": "Your credit balance is too low."},
        },
    )
    assert _category(broke) == "quota"


def test_http_clients() -> None:
    status_error = Httpx.HTTPStatusError("Server error", request=None, response=Httpx.Response(503))
    assert describe(status_error).status_code == 503
    assert _category(status_error) == "upstream_error"
    assert _category(Httpx.HTTPStatusError("x", request=None, response=Httpx.Response(504))) == "timeout"
    assert _category(Httpx.ReadTimeout("read timed out")) == "timeout"
    assert _category(Httpx.ConnectError("connection refused")) == "network"

    assert (
        _category(Requests.HTTPError("429 Too Many Requests", response=Httpx.Response(429))) == "rate_limit"
    )
    assert _category(Requests.HTTPError("403 Forbidden", response=Httpx.Response(403))) == "auth"
    assert _category(Requests.ConnectionError("Max retries exceeded")) == "network"
    assert _category(Requests.ReadTimeout("Read timed out")) == "timeout"
    assert _category(Requests.HTTPError("no response")) == "internal"


@pytest.mark.parametrize(
    ("code", "status", "category"),
    [
        (20003, 401, "auth"),
        (20429, 429, "rate_limit"),
        (21211, 400, "invalid_request"),
        (21610, 400, "invalid_request"),
        (21614, 400, "invalid_request"),
        (30003, 400, "delivery"),
        (30005, 400, "delivery"),
        (30006, 400, "delivery"),
        (30007, 400, "delivery"),
        (30008, 400, "delivery"),
        (30034, 400, "delivery"),
        (99999, 500, "upstream_error"),  # unknown code: the status decides
    ],
)
def test_twilio_codes(code: int, status: int, category: str) -> None:
    error = TwilioRestException(
        status, "/2010-04-01/Accounts/AC0123/Messages.json", msg="Unable to create record", code=code
    )
    facts = describe(error)
    assert facts.code == str(code)
    assert facts.status_code == status
    assert facts.message == "Unable to create record"  # .msg, not the formatted str() with the URI
    assert categorise(facts, "twilio") == category


def test_botocore_client_errors() -> None:
    throttled = ClientError(
        {
            "Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"},
            "ResponseMetadata": {"HTTPStatusCode": 400},
        },
        "InvokeModel",
    )
    facts = describe(throttled)
    assert (facts.code, facts.status_code, facts.message) == ("ThrottlingException", 400, "Rate exceeded")
    assert categorise(facts) == "rate_limit"  # the code beats the generic 400
    denied = ClientError(
        {
            "Error": {"Code": "AccessDeniedException", "Message": "no"},
            "ResponseMetadata": {"HTTPStatusCode": 403},
        },
        "InvokeModel",
    )
    assert _category(denied) == "auth"
    s3_denied = ClientError({"Error": {"Code": "AccessDenied"}}, "GetObject")
    assert _category(s3_denied) == "auth"


def test_builtin_network_errors() -> None:
    # asyncio.TimeoutError and socket.timeout are aliases of TimeoutError since 3.11
    assert _category(TimeoutError("timed out")) == "timeout"
    assert _category(ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")) == "network"
    assert _category(ConnectionResetError("reset by peer")) == "network"
    assert _category(socket.gaierror(-2, "Name or service not known")) == "network"
    unreachable = OSError(errno.ENETUNREACH, "Network is unreachable")
    assert describe(unreachable).code == "ENETUNREACH"
    assert _category(unreachable) == "network"
    assert _category(FileNotFoundError("config.toml")) == "internal"
    assert _category(KeyError("user")) == "internal"


def test_exception_classes_and_subclasses() -> None:
    class ReplyTimeout(TimeoutError):
        pass

    class FlakyUpstream(Httpx.ConnectError):
        pass

    assert describe(OpenAI.RateLimitError).error_type == "RateLimitError"
    assert _category(OpenAI.RateLimitError) == "rate_limit"
    assert _category(ReplyTimeout) == "timeout"  # by base class
    assert _category(ReplyTimeout("slow")) == "timeout"
    assert _category(FlakyUpstream("x")) == "network"
    assert describe(ValueError).frame is None


@pytest.mark.parametrize(
    ("error", "category"),
    [
        ("insufficient_quota", "quota"),
        ("rate_limit_exceeded", "rate_limit"),
        ("context_length_exceeded", "invalid_request"),
        ("overloaded_error", "upstream_error"),
        ("ThrottlingException", "rate_limit"),
        ("RateLimitError", "rate_limit"),
        ("30007", "delivery"),
        ("21610", "invalid_request"),
        (20003, "auth"),
        ("timeout", "timeout"),
        ("delivery", "delivery"),
        ("ratelimited", "rate_limit"),
        ("something_odd", "internal"),
        ("", "internal"),
    ],
)
def test_string_codes(error: object, category: str) -> None:
    assert _category(error) == category


@pytest.mark.parametrize(
    ("status", "message", "category"),
    [
        (429, None, "rate_limit"),
        (429.0, "You exceeded your current quota", "quota"),
        (429, "billing hard limit reached", "quota"),
        (401, None, "auth"),
        (403, None, "auth"),
        (400, None, "invalid_request"),
        (404, None, "not_found"),
        (409, None, "invalid_request"),
        (413, None, "invalid_request"),
        (422, None, "invalid_request"),
        (418, None, "invalid_request"),
        (408, None, "timeout"),
        (504, None, "timeout"),
        (500, None, "upstream_error"),
        (503, None, "upstream_error"),
        (529, None, "upstream_error"),
        (200, None, "internal"),
        (1000, None, "internal"),
        (429.5, None, "internal"),
    ],
)
def test_status_codes(status: float, message: str | None, category: str) -> None:
    assert _category("HTTPError", status_code=status, message=message) == category


def test_explicit_arguments_win() -> None:
    error = _openai(OpenAI.RateLimitError, 429, {"message": "slow down", "code": "rate_limit_exceeded"})
    facts = describe(error, message="custom", status_code=503, code="server_error")
    assert (facts.message, facts.status_code, facts.code) == ("custom", 503, "server_error")
    assert categorise(facts) == "upstream_error"
    assert describe("SendFailed", code=30034).code == "30034"
    assert _category("SendFailed", code=30034) == "delivery"


def test_provider_specific_meaning() -> None:
    blocked = Telegram.Forbidden("Forbidden: bot was blocked by the user")
    assert _category(blocked) == "auth"
    assert _category(blocked, provider="telegram") == "delivery"
    assert _category("HTTPError", provider="Telegram", status_code=403) == "delivery"
    assert _category("50007", provider="discord") == "delivery"


def test_every_category_is_reachable_and_known() -> None:
    for category in CATEGORIES:
        assert _category(category) == category


# -- severities -------------------------------------------------------------------------------


def test_default_severity() -> None:
    assert default_severity("rate_limit") == "warning"
    assert default_severity("delivery") == "warning"
    assert default_severity("auth") == "critical"
    assert default_severity("quota") == "critical"
    for category in ("timeout", "invalid_request", "not_found", "upstream_error", "network", "internal"):
        assert default_severity(category) == "error"
    assert default_severity("made_up") == "error"


# -- messages ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("see https://api.example.com/v1/chat?x=1, then retry", "see <url>, then retry"),
        ("user bob.smith+bot@example.co.uk not found", "user <email> not found"),
        ("The 'To' number +1 415 555 0123 is not valid", "The 'To' number <phone> is not valid"),
        ("call (415) 555-0123 now", "call <phone> now"),
        ("conversation 3f2b1c4e-1111-2222-3333-444455556666 closed", "conversation <id> closed"),
        ("message SM0123456789abcdef0123456789abcdef failed", "message <id> failed"),
        ("request req_abc123XYZ failed", "request <id> failed"),
        ("completion chatcmpl-9xYz8AbC7 broke", "completion <id> broke"),
        ("object at 0x7f3a2b1c9d80", "object at <id>"),
        ("trace 5f2a9c3e8b7d6f1a0e4c", "trace <id>"),
        ("retry in 12.5s after 3 attempts", "retry in <n>s after <n> attempts"),
        (
            "rate_limit_exceeded for context_length_exceeded",
            "rate_limit_exceeded for context_length_exceeded",
        ),
        ("  many\n\n lines\t here ", "many lines here"),
        ("", ""),
        # Names keep their digits; numbers that stand alone are masked, a grouped amount as one.
        ("model gpt-4o-mini not found", "model gpt-4o-mini not found"),
        ("o4-mini over 50,000 tokens", "o4-mini over <n> tokens"),
        ("claude-3-5-sonnet-20241022 is overloaded", "claude-3-5-sonnet-<n> is overloaded"),  # 7+ digits
        ("no user_15551234567", "no user_<n>"),
        ("gpt-4.1-nano: 1,234.5 credits left of 2,000,000", "gpt-4.1-nano: <n> credits left of <n>"),
        ("Limit 30000, Used 29000, Requested 1500. Try again in 2.5s.",
         "Limit <n>, Used <n>, Requested <n>. Try again in <n>s."),
        ("at 2026-11-25T10:30:00Z after 500ms", "at <n>-<n>-<n>T<n>:<n>:<n>Z after <n>ms"),
        ("KeyError: 'r1234'", "KeyError: 'r<n>'"),  # an id's number
        ("items 1,2,3 and -5 and v10.5.3", "items <n>,<n>,<n> and -<n> and v10.5.3"),
    ],
)
def test_normalise_message(message: str, expected: str) -> None:
    assert normalise_message(message) == expected


# Messages as botmeter masked them before names kept their digits: their fingerprints must not move.
MASKED_BEFORE = [
    ("Error code: 429 - rate_limit_exceeded", "Error code: <n> - rate_limit_exceeded"),
    ("Request timed out after 30.0 seconds", "Request timed out after <n> seconds"),
    ("HTTPSConnectionPool(host='api.openai.com', port=443): Read timed out. (read timeout=600)",
     "HTTPSConnectionPool(host='api.openai.com', port=<n>): Read timed out. (read timeout=<n>)"),
    ("at 2026-11-25 10:30:00 retry 3 of 5", "at <n>-<n>-<n> <n>:<n>:<n> retry <n> of <n>"),
    ("connection refused [Errno 111]", "connection refused [Errno <n>]"),
    ("Twilio error 30003: Unreachable handset", "Twilio error <n>: Unreachable handset"),
    ("quota exceeded: used 1500 of 1000 requests", "quota exceeded: used <n> of <n> requests"),
    ("user123 failed after 5.2s", "user<n> failed after <n>s"),
]


@pytest.mark.parametrize(("message", "before"), MASKED_BEFORE)
def test_fingerprints_unchanged_where_no_name_holds_digits(message: str, before: str) -> None:
    assert normalise_message(message) == before
    assert fingerprint("E", normalise_message(message), None) == fingerprint("E", before, None)


def test_normalise_message_same_shape_same_output() -> None:
    first = normalise_message(
        "order 1182 for +44 7911 123456 failed (req_AbC123xyz9), see https://x.io/o/1182"
    )
    second = normalise_message("order 77 for +1 212 555 0199 failed (req_zzZ987qqq1), see https://x.io/o/77")
    assert first == second == "order <n> for <phone> failed (<id>), see <url>"


def test_normalise_message_is_bounded_and_total() -> None:
    assert len(normalise_message("word " * 1000)) == 500

    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert normalise_message(Unprintable()) == ""  # type: ignore[arg-type]
    assert normalise_message(None) == ""  # type: ignore[arg-type]
    assert normalise_message(12345) == "<n>"  # type: ignore[arg-type]


# Messages built to make a backtracking pattern read a long run again from each of its positions.
ADVERSARIAL = {
    "letters": lambda n: "a" * n,
    "dotted": lambda n: "a." * (n // 2),
    "digits": lambda n: "1" * n,
    "hex and digits": lambda n: "a1" * (n // 2),
    "dashes": lambda n: "a-" * (n // 2),
    "after an at sign": lambda n: "a@" + "a-" * (n // 2),
    "url of dots": lambda n: "http://" + "." * n,
    "plus and spaces": lambda n: "+1" + " " * n,
    "quotes": lambda n: " '" * (n // 2),
    "open quote": lambda n: "'" + "a " * (n // 2),
}


def stalls_while(work: Any) -> tuple[Any, float]:
    """Runs ``work`` while another thread ticks; the other thread's longest stall between ticks."""
    stop = threading.Event()
    ticks: list[float] = []

    def count() -> None:
        while not stop.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.001)

    other = threading.Thread(target=count)
    other.start()
    while not ticks:
        time.sleep(0.001)
    try:
        result = work()
    finally:
        stop.set()
        other.join()
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    return result, max(gaps, default=0.0)


@pytest.mark.parametrize("length", [150_000, 10_000_000])
def test_long_messages_are_masked_without_freezing_other_threads(length: int) -> None:
    # A 150,000-character message once held the GIL for 70 s: every thread of the bot stood still.
    def mask_all() -> list[str]:
        out = []
        for shape in ADVERSARIAL.values():
            text = shape(length)
            facts = describe(RuntimeError(text))
            out.append(normalise_message(facts.message or ""))
            out.append(normalise_message(text))
        return out

    results, longest_stall = stalls_while(mask_all)
    assert all(len(r) <= 500 for r in results)
    assert results[0] == "<id>" or results[0].startswith("a")  # masked, not dropped
    # Generous against a loaded machine; before, one message stalled the other thread for a minute.
    assert longest_stall < 2.0, longest_stall


def test_what_is_read_of_a_message_is_bounded() -> None:
    head = "payment for order 1182 failed: "
    facts = describe(RuntimeError(head + "x" * 5_000_000))
    assert facts.message is not None and len(facts.message) == 2000
    assert normalise_message(head + "y" * 10_000).startswith("payment for order <n> failed: yyy")
    # the message's text up to the bound is masked as before
    assert normalise_message("  write to ana@example.com failed " + "z" * 3000).startswith(
        "write to <email> failed "
    )


def test_email_mask_still_takes_whole_addresses() -> None:
    assert normalise_message("to ana.b+x@mail.example.com and bo@x.io") == "to <email> and <email>"
    assert normalise_message("mailto:ana@example.com;") == "mailto:<email>;"


# -- frames and fingerprints ------------------------------------------------------------------


def send_reply(first: bool, order: int, request_id: str) -> None:
    if first:
        raise LookupError(f"order {order} not found (request {request_id})")
    # a few lines apart, as after an edit that moved the raise
    raise LookupError(f"order {order} not found (request {request_id})")


def send_receipt(order: int, request_id: str) -> None:
    raise LookupError(f"order {order} not found (request {request_id})")


def parse_payload(raw: str) -> object:
    return json.loads(raw)  # raises inside the standard library


def _caught(fn, *args: object) -> BaseException:
    try:
        fn(*args)
    except Exception as exc:
        return exc
    raise AssertionError("did not raise")


def _fingerprint(error: BaseException) -> str:
    facts = describe(error)
    return fingerprint(facts.error_type, normalise_message(facts.message or ""), facts.frame)


def test_frame_is_the_bots_innermost_frame_without_line_number() -> None:
    facts = describe(_caught(send_reply, True, 1, "req_a1b2c3d4"))
    assert facts.frame == f"{__name__}:send_reply"
    # the innermost frames are in the json module; the bot's own frame is the one that called it
    assert describe(_caught(parse_payload, "{")).frame == f"{__name__}:parse_payload"
    assert describe(LookupError("never raised")).frame is None


def test_fingerprint_groups_same_error_across_lines_and_ids() -> None:
    one = _caught(send_reply, True, 1182, "req_a1b2c3d4e5")
    two = _caught(send_reply, False, 77, "req_ZZ99yy88xx")
    assert one.__traceback__ is not None and two.__traceback__ is not None
    assert one.__traceback__.tb_next.tb_lineno != two.__traceback__.tb_next.tb_lineno  # type: ignore[union-attr]
    assert _fingerprint(one) == _fingerprint(two)
    assert len(_fingerprint(one)) == 16
    int(_fingerprint(one), 16)


def test_fingerprint_differs_by_function_and_type() -> None:
    base = _fingerprint(_caught(send_reply, True, 1, "req_a1b2c3d4e5"))
    assert _fingerprint(_caught(send_receipt, 1, "req_a1b2c3d4e5")) != base
    assert fingerprint("KeyError", "order <n> not found (request <id>)", f"{__name__}:send_reply") != base
    assert fingerprint("LookupError", "order <n> not found (request <id>)", f"{__name__}:send_reply") == base


def test_fingerprint_is_total() -> None:
    assert len(fingerprint(None, None, None)) == 16  # type: ignore[arg-type]
    assert fingerprint("E", "m", None) != fingerprint("E", "m", "mod:f")


# -- robustness -------------------------------------------------------------------------------


class Hostile(Exception):
    """Every attribute a client exception might have raises when read."""

    def __getattribute__(self, name: str) -> Any:
        if name in {"__traceback__", "__class__", "__dict__"}:
            return super().__getattribute__(name)
        if not name.startswith("__"):
            raise RuntimeError(f"no {name} for you")
        return super().__getattribute__(name)

    def __str__(self) -> str:
        raise RuntimeError("no message either")


class ExplodingProperties(Exception):
    @property
    def status_code(self) -> int:
        raise ValueError("lazy response not loaded")

    @property
    def body(self) -> dict[str, Any]:
        raise KeyError("body")

    @property
    def code(self) -> str:
        raise TypeError("code")

    @property
    def response(self) -> object:
        class Response:
            def __getattr__(self, name: str) -> Any:
                raise RuntimeError(name)

        return Response()


class ExplodingMapping(dict):
    def get(self, key: object, default: object = None) -> object:
        raise RuntimeError("no get")


def test_odd_errors_never_raise() -> None:
    hostile = _caught(_raise, Hostile("x"))
    facts = describe(hostile)
    assert facts.error_type == "Hostile"
    assert facts.message is None
    assert facts.frame == f"{__name__}:_raise"
    assert categorise(facts) == "internal"

    exploding = describe(ExplodingProperties("still a message"))
    assert (exploding.status_code, exploding.code, exploding.message) == (None, None, "still a message")
    assert categorise(exploding) == "internal"

    weird_body = OpenAI.APIError("m", None, body=None)
    weird_body.body = ExplodingMapping(code="insufficient_quota")
    assert describe(weird_body).message == "m"

    for odd in (None, object(), 3.5, b"bytes", {"error": "x"}, "x" * 5000, True):
        facts = describe(odd)
        assert isinstance(facts.error_type, str)
        assert len(facts.error_type) <= 200
        assert categorise(facts) in CATEGORIES
    assert describe("x", message=Hostile("y")).message is None  # type: ignore[arg-type]
    assert describe("x", status_code="abc", code=object()).status_code is None  # type: ignore[arg-type]
    assert categorise(ErrorFacts(None, 5, "429", 7, None)) in CATEGORIES  # type: ignore[arg-type]


def _raise(error: BaseException) -> None:
    raise error
