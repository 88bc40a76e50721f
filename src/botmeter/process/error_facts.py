"""Error facts, categories and fingerprints for ``track_error``.

``track_error`` takes an exception instance, an exception class or a str error code / type name.
``describe`` pulls what client libraries expose (without importing any of them), ``categorise`` maps
that to one of ``CATEGORIES`` through lookup tables, ``normalise_message`` masks what varies between
occurrences (ids, numbers, phone numbers, ...) and ``fingerprint`` groups the same error together.

Nothing here raises on odd input: client exceptions come from code we do not control, and losing an
error event because its exception was strange would hide exactly the errors worth seeing.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import sysconfig
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import TracebackType
from typing import Any, Final

CATEGORIES: Final = (
    "rate_limit",
    "quota",
    "timeout",
    "auth",
    "invalid_request",
    "not_found",
    "upstream_error",
    "network",
    "delivery",
    "internal",
)

_MAX_TYPE_CHARS: Final = 200
_MAX_MESSAGE_CHARS: Final = 500
# What is read of an error message at all. Masking holds the GIL (the bot's threads wait while it
# runs), so its cost is bounded by what it reads, whatever the message's length; the stored
# message is 500 characters at most anyway.
MAX_MESSAGE_INPUT_CHARS: Final = 2000


@dataclass(frozen=True, slots=True)
class ErrorFacts:
    """What is known about one error, before categorising."""

    error_type: str  # exception class name, or the error code / type name given as a str
    message: str | None  # raw message (not yet normalised)
    status_code: int | None  # HTTP status
    code: str | None  # provider error code: "insufficient_quota", "20429", "ThrottlingException", ...
    frame: str | None  # innermost frame of the bot's own code: "module:function"
    bases: tuple[str, ...] = ()  # names of the exception's base classes, nearest first
    codes: tuple[str, ...] = ()  # every code and error type the exception carries ("code" first)


# -- categories -------------------------------------------------------------------------------

# Provider error codes and error type strings (case-insensitive). Twilio's numeric codes live here
# too: they are the only numeric codes in the table, so they do not clash without a provider.
_CODE_CATEGORY: Final[dict[str, str]] = {
    # the categories themselves, so track_error("timeout") means what it says
    **{category: category for category in CATEGORIES},
    # OpenAI error codes / types
    "insufficient_quota": "quota",
    "billing_hard_limit_reached": "quota",
    "billing_not_active": "quota",
    "rate_limit_exceeded": "rate_limit",
    "context_length_exceeded": "invalid_request",
    "string_above_max_length": "invalid_request",
    "invalid_request_error": "invalid_request",
    "content_policy_violation": "invalid_request",
    "content_filter": "invalid_request",
    "invalid_api_key": "auth",
    "invalid_organization": "auth",
    "model_not_found": "not_found",
    "server_error": "upstream_error",
    "engine_overloaded": "upstream_error",
    # Anthropic error types
    "overloaded_error": "upstream_error",
    "api_error": "upstream_error",
    "rate_limit_error": "rate_limit",
    "authentication_error": "auth",
    "permission_error": "auth",
    "not_found_error": "not_found",
    "request_too_large": "invalid_request",
    "billing_error": "quota",
    "timeout_error": "timeout",
    # Twilio error codes
    "20003": "auth",  # authentication failed
    "20404": "not_found",  # resource not found
    "20429": "rate_limit",  # too many requests
    "21211": "invalid_request",  # invalid 'To' number
    "21408": "auth",  # permission to send to this region not enabled
    "21606": "invalid_request",  # 'From' number cannot send SMS
    "21610": "invalid_request",  # recipient unsubscribed (STOP)
    "21614": "invalid_request",  # 'To' number is not a mobile number
    "30001": "rate_limit",  # queue overflow
    "30002": "auth",  # account suspended
    "30003": "delivery",  # unreachable destination handset
    "30004": "delivery",  # message blocked
    "30005": "delivery",  # unknown destination handset
    "30006": "delivery",  # landline or unreachable carrier
    "30007": "delivery",  # carrier filtering
    "30008": "delivery",  # unknown error from the carrier
    "30032": "delivery",  # toll-free number not verified
    "30034": "delivery",  # unregistered 10DLC number
    "undelivered": "delivery",
    # AWS (botocore ClientError codes; modeled exceptions carry the same names as classes)
    "throttling": "rate_limit",
    "throttlingexception": "rate_limit",
    "toomanyrequestsexception": "rate_limit",
    "requestlimitexceeded": "rate_limit",
    "provisionedthroughputexceededexception": "rate_limit",
    "limitexceededexception": "rate_limit",
    "slowdown": "rate_limit",
    "servicequotaexceededexception": "quota",
    "accessdenied": "auth",
    "accessdeniedexception": "auth",
    "unrecognizedclientexception": "auth",
    "invalidclienttokenid": "auth",
    "invalidsignatureexception": "auth",
    "signaturedoesnotmatch": "auth",
    "expiredtoken": "auth",
    "expiredtokenexception": "auth",
    "validationexception": "invalid_request",
    "invalidparametervalue": "invalid_request",
    "invalidparameterexception": "invalid_request",
    "resourcenotfoundexception": "not_found",
    "nosuchkey": "not_found",
    "nosuchbucket": "not_found",
    "modeltimeoutexception": "timeout",
    "requesttimeout": "timeout",
    "requesttimeoutexception": "timeout",
    "serviceunavailable": "upstream_error",
    "serviceunavailableexception": "upstream_error",
    "internalfailure": "upstream_error",
    "internalserverexception": "upstream_error",
    "modelnotreadyexception": "upstream_error",
    # Bedrock: the model itself failed (HTTP 424)
    "modelerrorexception": "upstream_error",
    "modelstreamerrorexception": "upstream_error",
    # gRPC status names (Google clients)
    "resource_exhausted": "rate_limit",
    "deadline_exceeded": "timeout",
    "unavailable": "upstream_error",
    "unauthenticated": "auth",
    "permission_denied": "auth",
    "invalid_argument": "invalid_request",
    "not_found": "not_found",
    # Slack Web API error strings
    "ratelimited": "rate_limit",
    "invalid_auth": "auth",
    "not_authed": "auth",
    "token_revoked": "auth",
    "token_expired": "auth",
    "account_inactive": "auth",
    "missing_scope": "auth",
    "channel_not_found": "not_found",
    "user_not_found": "not_found",
    "not_in_channel": "delivery",
    "is_archived": "delivery",
    "msg_too_long": "invalid_request",
    # errno names of socket errors
    "etimedout": "timeout",
    "econnrefused": "network",
    "econnreset": "network",
    "econnaborted": "network",
    "ehostunreach": "network",
    "enetunreach": "network",
    "enetdown": "network",
    "epipe": "network",
}

# Exception class names (matched case-insensitively) across the common client libraries.
_TYPE_CATEGORY: Final[dict[str, str]] = {
    name.lower(): category
    for category, names in {
        "rate_limit": (
            "RateLimitError", "TooManyRequests", "TooManyRequestsError", "ResourceExhausted",
            "RetryAfter", "Throttled", "ThrottlingError",
        ),
        "timeout": (
            "TimeoutError", "APITimeoutError", "Timeout", "TimeoutException", "ReadTimeout",
            "ConnectTimeout", "WriteTimeout", "PoolTimeout", "ReadTimeoutError", "ConnectTimeoutError",
            "ServerTimeoutError", "DeadlineExceeded", "GatewayTimeout", "TimedOut",
        ),
        "auth": (
            "AuthenticationError", "PermissionDeniedError", "Unauthorized", "Unauthenticated",
            "Forbidden", "NoCredentialsError", "PartialCredentialsError", "InvalidToken",
        ),
        "invalid_request": (
            "BadRequestError", "BadRequest", "UnprocessableEntityError", "ConflictError",
            "InvalidArgument", "RequestTooLargeError", "InvalidRequestError",
        ),
        "not_found": ("NotFoundError", "NotFound"),
        "upstream_error": (
            "InternalServerError", "ServiceUnavailableError", "ServiceUnavailable", "OverloadedError",
            "BadGateway", "ServerError",
        ),
        "network": (
            "ConnectionError", "ConnectionRefusedError", "ConnectionResetError", "ConnectionAbortedError",
            "BrokenPipeError", "gaierror", "herror", "APIConnectionError", "ConnectError",
            "RemoteProtocolError", "NetworkError", "RemoteDisconnected", "ProtocolError",
            "NewConnectionError", "MaxRetryError", "ProxyError", "SSLError", "ClientConnectionError",
            "ClientConnectorError", "ServerDisconnectedError", "ClientOSError", "EndpointConnectionError",
            "ConnectionClosedError", "ConnectionClosed",
        ),
    }.items()
    for name in names
}  # fmt: skip

_STATUS_CATEGORY: Final[dict[int, str]] = {
    400: "invalid_request",
    401: "auth",
    402: "quota",  # payment required
    403: "auth",
    404: "not_found",
    408: "timeout",
    409: "invalid_request",
    410: "not_found",
    413: "invalid_request",
    422: "invalid_request",
    424: "upstream_error",  # Bedrock: the model failed
    429: "rate_limit",
    504: "timeout",
    529: "upstream_error",  # Anthropic: overloaded
}

# Where a provider gives a status or name its own meaning, checked before the shared tables.
_PROVIDER_CODE_CATEGORY: Final[dict[str, dict[str, str]]] = {
    # Telegram answers 403 Forbidden when the user blocked the bot: the message was not delivered.
    "telegram": {"403": "delivery", "forbidden": "delivery"},
    # Twilio status callbacks: a message that ended undelivered or failed was not delivered, whatever
    # Twilio's ErrorCode (21610 STOP, 30002 suspended...) means when an API call returns it.
    "twilio": {"undelivered": "delivery", "failed": "delivery"},
    # Discord JSON error codes
    "discord": {
        "50007": "delivery",  # cannot send messages to this user
        "50013": "auth",  # missing permissions
        "10003": "not_found",  # unknown channel
        "10013": "not_found",  # unknown user
    },
}

# A 429 or a 400 that is really about money: "insufficient_quota", "your credit balance is too low",
# "you have reached your specified workspace API usage limits", a spend limit.
_QUOTA_HINT: Final = re.compile(
    r"quota|billing|credit balance|insufficient.?funds|payment required|usage limits?\b|"
    r"spend(?:ing)?.?limit",
    re.I,
)
_QUOTA_MAY_OVERRIDE: Final = frozenset({"rate_limit", "invalid_request"})

_SEVERITY: Final[dict[str, str]] = {
    "rate_limit": "warning",
    "delivery": "warning",
    "auth": "critical",
    "quota": "critical",
}


def categorise(facts: ErrorFacts, provider: str | None = None) -> str:
    """One of ``CATEGORIES``: provider code, then exception type, then HTTP status, then base classes."""
    try:
        category = _lookup(facts, provider)
        if category in _QUOTA_MAY_OVERRIDE and any(
            isinstance(text, str) and _QUOTA_HINT.search(text) for text in (facts.code, facts.message)
        ):
            return "quota"
        return category
    except Exception:
        return "internal"


def _lookup(facts: ErrorFacts, provider: str | None) -> str:
    # A quota code anywhere on the error (OpenAI's type "insufficient_quota" beside a code for the
    # spend limit or the credit used up) is about money, whatever the status or message says.
    for other in facts.codes:
        if isinstance(other, str) and _CODE_CATEGORY.get(other.lower()) == "quota":
            return "quota"
    code = facts.code.lower() if isinstance(facts.code, str) else None
    error_type = facts.error_type.lower() if isinstance(facts.error_type, str) else ""
    status = facts.status_code if isinstance(facts.status_code, int) else None
    overrides = _PROVIDER_CODE_CATEGORY.get(provider.lower()) if isinstance(provider, str) else None
    if overrides:
        for key in (code, error_type, str(status) if status is not None else None):
            if key is not None and key in overrides:
                return overrides[key]
    if code is not None:
        category = _CODE_CATEGORY.get(code) or _TYPE_CATEGORY.get(code)
        if category:
            return category
    category = _TYPE_CATEGORY.get(error_type) or _CODE_CATEGORY.get(error_type)
    if category:
        return category
    if status is not None:
        category = _STATUS_CATEGORY.get(status)
        if category:
            return category
        if 500 <= status <= 599:
            return "upstream_error"
        if 400 <= status <= 499:
            return "invalid_request"
    for base in facts.bases:
        category = _TYPE_CATEGORY.get(base.lower())
        if category:
            return category
    return "internal"


# The provider an exception comes from, by the package that defines it.
_PACKAGE_PROVIDER: Final[dict[str, str]] = {
    "openai": "openai",
    "anthropic": "anthropic",
    "botocore": "aws",
    "boto3": "aws",
    "aiobotocore": "aws",
    "twilio": "twilio",
    "slack_sdk": "slack",
    "slack_bolt": "slack",
    "slack": "slack",
    "httpx": "httpx",
    "requests": "requests",
    "urllib3": "urllib3",
    "aiohttp": "aiohttp",
    "google": "google",
    "mistralai": "mistral",
    "cohere": "cohere",
    "groq": "groq",
    "telegram": "telegram",
    "discord": "discord",
    "stripe": "stripe",
}


def provider_of(error: object) -> str | None:
    """The provider an exception (or exception class) comes from, by its package: openai,
    anthropic, aws (botocore), twilio, slack (slack_sdk), httpx...; None for the bot's own and
    Python's."""
    try:
        cls = error if isinstance(error, type) else type(error)
        if not issubclass(cls, BaseException):
            return None
        module = cls.__module__
        return _PACKAGE_PROVIDER.get(module.split(".", 1)[0]) if isinstance(module, str) else None
    except Exception:
        return None


def default_severity(category: str) -> str:
    """Severity when the caller gave none: money and credentials are critical, throttling a warning."""
    return _SEVERITY.get(category, "error")


# -- extracting facts -------------------------------------------------------------------------


def describe(
    error: object,
    message: str | None = None,
    status_code: float | int | None = None,
    code: str | int | None = None,
) -> ErrorFacts:
    """Facts about ``error`` (exception, exception class or str code); explicit arguments win."""
    try:
        facts = _extract(error)
    except Exception:
        facts = ErrorFacts(_type_name_of(error), None, None, None, None)
    explicit_message = _as_text(message) if message is not None else None
    explicit_status = _as_status(status_code)
    explicit_code = _as_code(code)
    message_text = explicit_message if explicit_message is not None else facts.message
    return ErrorFacts(
        error_type=_unicode(facts.error_type) or "unknown",
        message=_unicode(_bounded(message_text)),
        status_code=explicit_status if explicit_status is not None else facts.status_code,
        code=_unicode(explicit_code if explicit_code is not None else facts.code),
        frame=_unicode(facts.frame),
        bases=facts.bases,
        codes=(explicit_code, *facts.codes) if explicit_code is not None else facts.codes,
    )


# An error code or type name as libraries spell them: one token, no run of 7 digits (a phone
# number). "rate_limit_exceeded", "30003", "ThrottlingException", "HTTP429" are kept as given.
_CODE_LIKE: Final = re.compile(r"(?![\w.:-]*\d{7})[\w.:-]{1,200}", re.ASCII)


def code_text(text: str) -> str:
    """An error type or code given as text, masked like a message unless it is a plain code: a bot
    may pass any string, and it is stored and shown as the error's name."""
    text = text.strip()[:_MAX_TYPE_CHARS]
    if not text or _CODE_LIKE.fullmatch(text):
        return text
    try:
        return mask_text(text).strip()[:_MAX_TYPE_CHARS]
    except Exception:
        return "unknown"


def _extract(error: object) -> ErrorFacts:
    if isinstance(error, str):
        return ErrorFacts(code_text(error) or "unknown", None, None, None, None)
    if isinstance(error, int) and not isinstance(error, bool):  # a bare numeric code, e.g. 30007
        return ErrorFacts(str(error), None, None, str(error), None)
    if isinstance(error, type) and issubclass(error, BaseException):
        return ErrorFacts(_class_name(error), None, None, None, None, _bases(error))
    if not isinstance(error, BaseException):
        return ErrorFacts(_type_name_of(error), _as_text(error), None, None, None)
    cls = type(error)
    codes = _codes_of(error)
    bases = _bases(cls)
    reason = _safe_attr(error, "reason")
    if isinstance(reason, BaseException) and reason is not error:
        # urllib's URLError wraps what happened (a refused connection, a DNS failure, a timeout):
        # its kind decides the category when nothing else does.
        bases = (_class_name(type(reason)), *_bases(type(reason)), *bases)
        codes = (*codes, *_codes_of(reason))
    return ErrorFacts(
        error_type=_class_name(cls),
        message=_message_of(error),
        status_code=_status_of(error),
        code=codes[0] if codes else None,
        frame=_frame_of(_safe_attr(error, "__traceback__")),
        bases=bases,
        codes=codes,
    )


def _safe_attr(obj: object, name: str) -> Any:
    """getattr that never raises: client exceptions may compute attributes lazily and fail."""
    try:
        return getattr(obj, name, None)
    except Exception:
        return None


def _dig(obj: object, *keys: str) -> Any:
    """obj[k1][k2]... for dict-like values, None when any step is missing or misbehaves."""
    for key in keys:
        if not isinstance(obj, Mapping):
            return None
        try:
            obj = obj.get(key)
        except Exception:
            return None
    return obj


def _class_name(cls: type) -> str:
    try:
        name = cls.__name__
    except Exception:
        return "unknown"
    return name if isinstance(name, str) and name else "unknown"


def _type_name_of(obj: object) -> str:
    if isinstance(obj, str):
        return code_text(obj) or "unknown"
    return _class_name(type(obj))


def _bases(cls: type) -> tuple[str, ...]:
    try:
        mro = cls.__mro__[1:]
    except Exception:
        return ()
    generic = (BaseException, Exception, object)
    return tuple(_class_name(base) for base in mro if base not in generic)


def _as_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    try:
        text = str(value)
    except Exception:
        return None
    return text if isinstance(text, str) else None


_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def _unicode(text: str | None) -> str | None:
    """Text that can be stored: a lone surrogate (from a bytes-decoding error, say) becomes U+FFFD."""
    if text is None or text.isascii():
        return text
    return _SURROGATE.sub("\ufffd", text)


def _bounded(text: str | None) -> str | None:
    """At most what is read of a message: categorising and masking then take bounded time."""
    if text is None or len(text) <= MAX_MESSAGE_INPUT_CHARS:
        return text
    return text.lstrip()[:MAX_MESSAGE_INPUT_CHARS]


def _nonempty_text(value: object) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _as_status(value: object) -> int | None:
    """An HTTP status 100..599 from an int, an integral float or a digit string."""
    if isinstance(value, bool):
        return None
    try:
        if isinstance(value, str):
            value = int(value.strip())
        if isinstance(value, float):
            if not value.is_integer():
                return None
            value = int(value)
    except (ValueError, OverflowError):
        return None
    if isinstance(value, int) and 100 <= value <= 599:
        return int(value)
    return None


def _as_code(value: object) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip():
        return code_text(value)
    return None


def _message_of(error: BaseException) -> str | None:
    body = _safe_attr(error, "body")
    response = _safe_attr(error, "response")
    candidates = (
        _dig(body, "error", "message"),  # Anthropic: {"type": "error", "error": {"message": ...}}
        _dig(body, "message"),  # OpenAI: body is the error object itself
        _dig(response, "Error", "Message"),  # botocore ClientError
        _safe_attr(error, "msg"),  # Twilio: str(exc) adds the request URI and colours
        _safe_attr(error, "message"),
    )
    for candidate in candidates:
        text = _nonempty_text(candidate)
        if text is not None:
            return text
    return _nonempty_text(_as_text(error))


def _status_of(error: BaseException) -> int | None:
    response = _safe_attr(error, "response")
    candidates = (
        _safe_attr(error, "status_code"),  # OpenAI, Anthropic
        _safe_attr(error, "status"),  # Twilio, aiohttp
        _safe_attr(error, "http_status"),  # Stripe
        _safe_attr(response, "status_code"),  # httpx, requests
        _safe_attr(response, "status"),
        _dig(response, "ResponseMetadata", "HTTPStatusCode"),  # botocore
        _code_as_status(error),  # google-api-core, urllib: .code is the HTTP status
    )
    for candidate in candidates:
        status = _as_status(candidate)
        if status is not None:
            return status
    return None


def _code_as_status(error: BaseException) -> int | None:
    code = _safe_attr(error, "code")
    if isinstance(code, int) and not isinstance(code, bool) and 400 <= code <= 599:
        return code
    return None


def _code_of(error: BaseException) -> str | None:
    codes = _codes_of(error)
    return codes[0] if codes else None


def _codes_of(error: BaseException) -> tuple[str, ...]:
    """Every code and error type on ``error``, most specific first."""
    body = _safe_attr(error, "body")
    response = _safe_attr(error, "response")
    error_code = _safe_attr(error, "code")
    if isinstance(error_code, int) and 100 <= error_code <= 599:
        error_code = None  # an HTTP status under another name, taken by _status_of
    body_type = _dig(body, "type")
    candidates = (
        error_code,  # OpenAI "insufficient_quota", Twilio 20429, Stripe "card_declined"
        _dig(body, "code"),
        _dig(body, "error", "code"),
        _dig(body, "error", "type"),  # Anthropic "overloaded_error"
        body_type if body_type != "error" else None,
        _safe_attr(error, "type"),  # OpenAI copies the error type onto the exception
        _dig(response, "Error", "Code"),  # botocore "ThrottlingException"
        _dig(response, "error"),  # Slack "ratelimited"
        _errno_name(error),
    )
    found: list[str] = []
    for candidate in candidates:
        code = _as_code(candidate)
        if code is not None and code not in found:
            found.append(code)
    return tuple(found)


def _errno_name(error: BaseException) -> str | None:
    number = _safe_attr(error, "errno") if isinstance(error, OSError) else None
    if isinstance(number, int):
        return errno.errorcode.get(number)
    return None


# -- the bot's own frame ----------------------------------------------------------------------


def _library_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {paths.get(key) for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    roots.add(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # botmeter itself
    return tuple(os.path.normcase(os.path.abspath(root)) + os.sep for root in roots if root)


_LIBRARY_ROOTS: Final = _library_roots()
_LIBRARY_DIRS: Final = (f"{os.sep}site-packages{os.sep}", f"{os.sep}dist-packages{os.sep}")


@lru_cache(maxsize=1024)
def _is_library_file(filename: str) -> bool:
    if filename.startswith("<frozen "):  # frozen stdlib modules (importlib, os, ...)
        return True
    if filename.startswith("<"):  # <string>, <stdin>: code the bot built itself
        return False
    path = os.path.normcase(os.path.abspath(filename))
    return path.startswith(_LIBRARY_ROOTS) or any(part in path for part in _LIBRARY_DIRS)


def _frame_of(tb: object) -> str | None:
    """The innermost traceback frame in the bot's own code, as "module:function" (no line number)."""
    found = None
    steps = 0
    while isinstance(tb, TracebackType) and steps < 1000:  # a bound, in case of a cycle
        try:
            frame = tb.tb_frame
            code = frame.f_code
            if not _is_library_file(code.co_filename):
                found = (frame, code)
            tb = tb.tb_next
        except Exception:
            break
        steps += 1
    if found is None:
        return None
    frame, code = found
    try:
        module = frame.f_globals.get("__name__")
        if not isinstance(module, str) or not module or module == "__main__":
            module = os.path.splitext(os.path.basename(code.co_filename))[0] or "unknown"
        return f"{module}:{code.co_qualname}"
    except Exception:
        return None


# -- messages and fingerprints ----------------------------------------------------------------

# Numbers that stand alone (counts, ids, amounts, times) vary between occurrences; digits inside a
# name (gpt-4o-mini, o4-mini, claude-3-5-sonnet) do not. A word (letters, digits, '_', '.', '-')
# with a letter is a name and kept, unless it is a number with a unit (30s, 2.5MB), ends in an
# id's number (r1234) or holds 7 digits in a row (a phone number); a word without letters (42,
# 1.5, -3, 10.5.3) has each number masked, as are dates and times.
# Words are matched only where they start, so the time stays linear.
_NUMBER: Final = re.compile(r"\d+(?:\.\d+)?")
_NUMBER_WITH_UNIT: Final = re.compile(
    r"-?\d+(?:\.\d+)?(?:ms|us|ns|s|sec|secs|m|min|mins|h|hr|hrs|d|days?|[kmgt]i?b|k|x|b)", re.I
)
_LETTER: Final = re.compile(r"[^\W\d_]")
_ID_NUMBER: Final = re.compile(r"(?<=[^\W\d_])\d{3,}(?![\w])")
_LONG_DIGITS: Final = re.compile(r"\d{7,}")
_DATE_OR_WORD: Final = re.compile(
    r"(?P<date>\d{4}-\d\d-\d\d(?:[T ]\d\d:\d\d(?::\d\d)?(?:\.\d+)?Z?)?)|(?<![\w.-])[\w.-]*\d[\w.-]*"
)
# 50,000 and 1,234.5: one amount, before the words split it at the comma.
_GROUPED_NUMBER: Final = re.compile(r"(?<![\w.,])\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\w,])")


def _mask_numbers(match: re.Match[str]) -> str:
    word = match.group()
    if match.group("date") or _LETTER.search(word) is None or _NUMBER_WITH_UNIT.fullmatch(word.strip(".-")):
        return _NUMBER.sub("<n>", word)
    # A name (gpt-4o-mini, o4-mini, claude-3-5-sonnet) is kept; a run of 3+ digits that ends a
    # word straight after a letter is an id's number (r1234, user123), and a run of 7 or more
    # anywhere may be a phone number or a date (user_15551234567): both are masked.
    return _LONG_DIGITS.sub("<n>", _ID_NUMBER.sub("<n>", word))


# Order matters: whole structures (URLs, emails, ids) are masked before the numbers inside them.
_MASKS: Final = tuple(
    (re.compile(pattern), placeholder)
    for pattern, placeholder in (
        (r"\b(?:https?|wss?|ftp)://[^\s<>\"'()\[\]{}]*[^\s<>\"'()\[\]{}.,;:!?]", "<url>"),
        # starts only where a run of address characters starts: tried from every position of a
        # long run, the run is read again each time (quadratic: minutes on a long token)
        (r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+", "<email>"),
        (r"(?i)\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", "<id>"),
        (r"\b[A-Z]{2}[0-9a-fA-F]{32}\b", "<id>"),  # Twilio SIDs: SM..., AC..., MM...
        # prefixed ids: req_abc123XYZ, chatcmpl-AbC123, msg_01XF..., org-9aZ...
        (r"\b[A-Za-z]{2,16}[_-](?=[A-Za-z]*[0-9])(?=[0-9]*[A-Za-z])[A-Za-z0-9]{6,}\b", "<id>"),
        (r"\b0x[0-9a-fA-F]+\b", "<id>"),  # addresses in reprs
        (r"\b(?=[A-Za-z]*[0-9])(?=[0-9]*[A-Za-z])[0-9a-fA-F]{12,}\b", "<id>"),  # long hex
        (r"\b(?=[A-Za-z]*[0-9])(?=[0-9]*[A-Za-z])[A-Za-z0-9]{16,}\b", "<id>"),  # opaque tokens
        (r"\+\d[\d ().-]{5,}\d", "<phone>"),  # international: +44 20 7946 0958
        (r"(?<![\d-])\(?\d{3}\)?[ .-]\d{3}[ .-]\d{4}(?![\d-])", "<phone>"),  # (415) 555-0123
        (_GROUPED_NUMBER, "<n>"),
        (_DATE_OR_WORD, _mask_numbers),
        (r"\s+", " "),
    )
)


# Text in quotes that reads as prose (it holds a space) is often what the user wrote, echoed by the
# code that failed: KeyError('what is my balance'), "cannot parse 'call me at 6'". Masked unless
# message text is kept (BOTMETER_STORE_TEXT). A quote opens a match only after a non-word
# character, and each scan stops at the next quote, so the time stays linear.
_QUOTED_PROSE: Final = tuple(
    re.compile(pattern)
    for pattern in (
        r"(?<!\w)'(?=[^'\n]*\s)[^'\n]*+'(?!\w)",
        r'(?<!\w)"(?=[^"\n]*\s)[^"\n]*+"(?!\w)',
        r"(?<!\w)\u201c(?=[^\u201d\n]*\s)[^\u201d\n]*+\u201d",  # “curly quotes”
    )
)


def normalise_message(message: str, *, keep_quoted: bool = False) -> str:
    """Masks what varies between occurrences or may be personal; at most 500 characters.

    Quoted prose becomes ``<text>`` unless ``keep_quoted`` (the pipeline passes
    ``BOTMETER_STORE_TEXT``). Reads the first ``MAX_MESSAGE_INPUT_CHARS`` (2,000) characters only;
    each pattern takes time linear in what it reads, so a message of any length is masked in about
    the same time.
    """
    text = _as_text(message)
    if not text:
        return ""
    try:
        return _masked(text.lstrip()[:MAX_MESSAGE_INPUT_CHARS], keep_quoted)
    except Exception:
        return ""


@lru_cache(maxsize=1024)
def _masked(text: str, keep_quoted: bool) -> str:
    # Bots raise the same few errors again and again: masking each once is most of the cost of
    # describing an error. At most 1,024 texts of at most 2,000 characters are kept.
    return mask_text(text, keep_quoted=keep_quoted).strip()[:_MAX_MESSAGE_CHARS]


def mask_text(text: str, *, keep_quoted: bool = True) -> str:
    """The masks applied to all of ``text`` (no length bound: ``normalise_message`` bounds it)."""
    if not keep_quoted:
        for pattern in _QUOTED_PROSE:
            text = pattern.sub("<text>", text)
    for pattern, placeholder in _MASKS:
        text = pattern.sub(placeholder, text)
    return text


def fingerprint(error_type: str, normalised_message: str, frame: str | None) -> str:
    """16 hex characters grouping the same error: same type, message shape and code location."""
    parts = (_as_text(error_type) or "", _as_text(normalised_message) or "", _as_text(frame) or "")
    return hashlib.sha256("\x1f".join(parts).encode("utf-8", "surrogatepass")).hexdigest()[:16]
