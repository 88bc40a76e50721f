"""Twilio capture: the inbound webhook, status callbacks and messages sent with the Twilio SDK.

Inbound (Flask, Django and Starlette/FastAPI request objects, or the form as a dict)::

    @app.post("/sms")
    def sms():
        with twilio.inbound(meter, request) as msg:     # `async with` for Starlette/FastAPI
            text = answer(msg.text)                     # every track call here has the user
            return twilio.reply(meter, msg, text)       # TwiML; the reply recorded as an outbound SMS

records the message as an inbound SMS (priced from the rate table; segments from Twilio's
``NumSegments``, country from ``FromCountry``, the ``MessageSid`` as event id so Twilio's retries
count once), sets ``meter.context(user=From, conversation=...)`` for the block, times it as the
``reply`` stage and, with ``validate=True``, checks Twilio's signature first.

Status callbacks: ``twilio.record_status(meter, request)`` turns ``delivered``, ``undelivered``
and ``failed`` into delivery outcomes (the ``delivery_rate`` metric); undelivered and failed ones
are also errors in the ``delivery`` category with Twilio's ``ErrorCode``.

Outbound: ``meter.instrument(client)`` (or ``twilio.instrument_client(meter, client)``) records
every ``client.messages.create`` as an outbound SMS, priced with Twilio's reported price when it
gives one, else the rate table.

MMS and WhatsApp messages are counted as messages on the ``mms`` and ``whatsapp`` channels; the
SMS rate table has no price for them, so they carry a cost only when Twilio reports one.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from ..exceptions import BotmeterError, ConfigError, InputError, InputTypeError

log = logging.getLogger("botmeter")

DELIVERY_OUTCOMES: Final = ("delivered", "undelivered", "failed")
OUTCOME_PREFIX: Final = "delivery:"  # custom events "delivery:delivered", ... (see the delivery_rate metric)

# A few of Twilio's delivery error codes, for readable error groups (the code is kept in any case).
_ERROR_TEXT: Final[dict[str, str]] = {
    "30001": "queue overflow",
    "30002": "account suspended",
    "30003": "unreachable destination handset",
    "30004": "message blocked",
    "30005": "unknown destination handset",
    "30006": "landline or unreachable carrier",
    "30007": "message filtered by the carrier",
    "30008": "unknown error",
    "30032": "toll-free number not verified",
    "30034": "message from an unregistered number",
    "21610": "recipient unsubscribed",
    "21614": "not a mobile number",
    "63016": "outside the WhatsApp 24-hour window",
}


class TwilioSignatureError(BotmeterError, PermissionError):
    """The request's ``X-Twilio-Signature`` does not match: it did not come from Twilio (answer 403)."""


# -- reading requests -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TwilioRequest:
    """The parts of a webhook request botmeter reads: the form, the URL and the signature header."""

    form: dict[str, str]
    url: str | None = None
    signature: str | None = None


def _first_values(form: Any) -> dict[str, str]:
    if isinstance(form, Mapping) and not hasattr(form, "getlist"):
        return {str(k): "" if v is None else str(v) for k, v in form.items()}
    return {str(k): str(v) for k, v in form.items()}


def _is_starlette(request: Any) -> bool:
    return (
        hasattr(request, "scope") and hasattr(request, "receive") and callable(getattr(request, "form", None))
    )


def read_request(request: Any) -> TwilioRequest:
    """The form, URL and signature of a Flask or Django request, or a form given as a dict.

    A Starlette/FastAPI request's form is read asynchronously: use ``await aread_request(request)``.
    """
    if isinstance(request, TwilioRequest):
        return request
    if _is_starlette(request):  # before Mapping: a Starlette request is a mapping of its ASGI scope
        raise InputTypeError(
            "a Starlette/FastAPI request's form is read asynchronously: use `async with twilio.inbound(...)`"
            " or `await twilio.arecord_inbound(...)`"
        )
    if isinstance(request, Mapping):
        return TwilioRequest(_first_values(request))
    if hasattr(request, "POST") and hasattr(request, "build_absolute_uri"):  # Django
        headers = getattr(request, "headers", None) or {}
        signature = headers.get("X-Twilio-Signature") or request.META.get("HTTP_X_TWILIO_SIGNATURE")
        return TwilioRequest(_first_values(request.POST), request.build_absolute_uri(), signature)
    if hasattr(request, "form") and hasattr(request, "url"):  # Flask / Werkzeug
        return TwilioRequest(
            _first_values(request.form), str(request.url), request.headers.get("X-Twilio-Signature")
        )
    raise InputTypeError(
        "request must be a Flask, Django or Starlette/FastAPI request or the webhook's form as a dict, "
        f"got {type(request).__name__}"
    )


async def aread_request(request: Any) -> TwilioRequest:
    """``read_request`` for any request, Starlette/FastAPI included (its form is awaited)."""
    if _is_starlette(request):
        form = await request.form()
        return TwilioRequest(_first_values(form), str(request.url), request.headers.get("x-twilio-signature"))
    return read_request(request)


def check_signature(req: TwilioRequest, auth_token: str | None = None, url: str | None = None) -> None:
    """Raises ``TwilioSignatureError`` unless the request carries Twilio's signature for this form.

    ``auth_token`` defaults to ``TWILIO_AUTH_TOKEN``; ``url`` to the request's own URL (give the
    public URL when a proxy changes it, e.g. TLS ended in front of the app).
    """
    from twilio.request_validator import RequestValidator

    token = auth_token or os.environ.get("TWILIO_AUTH_TOKEN")
    if not token:
        raise ConfigError("validate=True needs auth_token= or TWILIO_AUTH_TOKEN (your Twilio auth token)")
    where = url or req.url
    if not where:
        raise InputError(
            "validate=True with a form given as a dict needs url= (the webhook URL Twilio called)"
        )
    if not req.signature or not RequestValidator(token).validate(where, req.form, req.signature):
        raise TwilioSignatureError(f"X-Twilio-Signature does not match the request to {where}")


# -- inbound messages ------------------------------------------------------------------------------


@dataclass(frozen=True)
class InboundMessage:
    """An inbound message as Twilio described it."""

    sid: str | None
    user: str | None  # the sender's number (``From``, without a ``whatsapp:`` prefix)
    to: str | None
    text: str | None
    channel: str  # sms, mms or whatsapp
    segments: float | None
    media: int
    country: str | None
    form: dict[str, str] = field(repr=False, default_factory=dict)


def _number(value: str | None) -> float | None:
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _address(value: str | None) -> tuple[str | None, str | None]:
    """(number, channel prefix) from ``whatsapp:+1555...`` or ``+1555...``."""
    if not value:
        return None, None
    if ":" in value:
        prefix, _, rest = value.partition(":")
        return rest or None, prefix.lower()
    return value, None


def parse_inbound(form: Mapping[str, str]) -> InboundMessage:
    """The message a webhook form describes (fields Twilio did not send are None)."""
    user, prefix = _address(form.get("From"))
    to, _ = _address(form.get("To"))
    media = int(_number(form.get("NumMedia")) or 0)
    channel = "whatsapp" if prefix == "whatsapp" else ("mms" if media > 0 else "sms")
    return InboundMessage(
        sid=form.get("MessageSid") or form.get("SmsSid") or None,
        user=user,
        to=to,
        text=form.get("Body"),
        channel=channel,
        segments=_number(form.get("NumSegments")),
        media=media,
        country=(form.get("FromCountry") or "").upper() or None,
        form=dict(form),
    )


def _failed(meter: Any, what: str) -> None:
    """An exception inside botmeter's own code: logged and counted, never raised into the bot."""
    log.exception("botmeter: twilio integration could not %s", what)
    counted = getattr(meter, "count_integration_failure", None)
    if callable(counted):
        with contextlib.suppress(Exception):
            counted("twilio")


def _record_message(
    meter: Any,
    *,
    direction: str,
    channel: str,
    user: str | None,
    text: str | None,
    segments: float | None,
    country: str | None,
    cost_usd: float | None,
    event_id: str | None,
    conversation: Any = None,
    properties: dict | None = None,
) -> None:
    common = {"user": user, "conversation": conversation, "channel": channel, "event_id": event_id}
    if properties:
        common["properties"] = properties
    if channel == "sms" or cost_usd is not None:
        meter.track_sms(
            direction=direction,
            text=text,
            segments=segments,
            country=country,
            cost_usd=cost_usd,
            provider="twilio",
            **common,
        )
    else:  # MMS and WhatsApp have no per-segment rate: counted, not priced
        meter.track_message(direction=direction, text=text, **common)


def record_inbound(
    meter: Any, request: Any, *, conversation: Any = None, validate: bool = False,
    auth_token: str | None = None, url: str | None = None,
) -> InboundMessage:  # fmt: skip
    """Records an inbound webhook's message and returns it (see the module's documentation).

    ``conversation``: an id, or a function of the form returning one (default: none, so
    conversations are the user's messages split at the session gap).
    """
    req = read_request(request)
    if validate:
        check_signature(req, auth_token, url)
    return _record_inbound(meter, req, conversation)


async def arecord_inbound(
    meter: Any, request: Any, *, conversation: Any = None, validate: bool = False,
    auth_token: str | None = None, url: str | None = None,
) -> InboundMessage:  # fmt: skip
    """``record_inbound`` for any request, Starlette/FastAPI included."""
    req = await aread_request(request)
    if validate:
        check_signature(req, auth_token, url)
    return _record_inbound(meter, req, conversation)


def _conversation_of(conversation: Any, form: Mapping[str, str]) -> Any:
    if callable(conversation):
        try:
            return conversation(form)
        except Exception:
            log.exception("botmeter: the conversation function raised; the message is recorded without one")
            return None
    return conversation


def _record_inbound(meter: Any, req: TwilioRequest, conversation: Any) -> InboundMessage:
    msg = parse_inbound(req.form)
    if msg.sid is None and msg.user is None:  # not a message webhook (a health check, a GET): no SMS
        return msg
    try:
        properties = {"media": msg.media} if msg.media else None
        _record_message(
            meter,
            direction="in",
            channel=msg.channel,
            user=msg.user,
            text=msg.text,
            segments=msg.segments,
            country=msg.country,
            cost_usd=None,
            event_id=msg.sid,
            conversation=_conversation_of(conversation, req.form),
            properties=properties,
        )
    except Exception:
        _failed(meter, "record an inbound message")
    return msg


class Inbound:
    """``with twilio.inbound(meter, request) as msg:`` (``async with`` for Starlette/FastAPI)."""

    def __init__(
        self, meter: Any, request: Any, *, conversation: Any = None, validate: bool = False,
        auth_token: str | None = None, url: str | None = None, stage: str | None = "reply",
    ) -> None:  # fmt: skip
        self._meter = meter
        self._request = request
        self._conversation = conversation
        self._validate = validate
        self._auth_token = auth_token
        self._url = url
        self._stage = stage
        self._scope: Any = None
        self._start = 0.0
        self.message: InboundMessage | None = None

    def _enter(self, req: TwilioRequest) -> InboundMessage:
        if self._validate:
            check_signature(req, self._auth_token, self._url)
        conversation = _conversation_of(self._conversation, req.form)
        msg = _record_inbound(self._meter, req, conversation)
        self.message = msg
        try:
            self._scope = self._meter.context(user=msg.user, conversation=conversation)
            self._scope.__enter__()
        except Exception:
            self._scope = None
            _failed(self._meter, "set the context")
        self._start = time.perf_counter()
        return msg

    def __enter__(self) -> InboundMessage:
        return self._enter(read_request(self._request))

    async def __aenter__(self) -> InboundMessage:
        return self._enter(await aread_request(self._request))

    def __exit__(self, *exc: object) -> None:
        elapsed = (time.perf_counter() - self._start) * 1000.0
        msg = self.message
        try:
            if self._stage and msg is not None:
                self._meter.track_timing(self._stage, elapsed, channel=msg.channel)
        except Exception:
            _failed(self._meter, "time the reply")
        if self._scope is not None:
            try:
                self._scope.__exit__(None, None, None)
            except Exception:
                _failed(self._meter, "leave the context")

    async def __aexit__(self, *exc: object) -> None:
        self.__exit__(*exc)


def inbound(
    meter: Any, request: Any, *, conversation: Any = None, validate: bool = False,
    auth_token: str | None = None, url: str | None = None, stage: str | None = "reply",
) -> Inbound:  # fmt: skip
    """Records the inbound message and sets the meter's context (user, conversation) for the block,
    timing it as ``stage`` (None: not timed). Raises ``TwilioSignatureError`` with ``validate=True``
    when the request is not signed by Twilio."""
    return Inbound(
        meter,
        request,
        conversation=conversation,
        validate=validate,
        auth_token=auth_token,
        url=url,
        stage=stage,
    )


def reply(meter: Any, msg: InboundMessage, text: str) -> str:
    """The TwiML answering ``msg`` with ``text``, recorded as the outbound SMS Twilio will send
    (segments from the text, priced from the rate table; once per inbound message, so a webhook
    Twilio retries is not counted twice)."""
    from twilio.twiml.messaging_response import MessagingResponse

    answer = MessagingResponse()
    answer.message(text)
    try:
        _record_message(
            meter,
            direction="out",
            channel=msg.channel if msg.channel != "mms" else "sms",
            user=msg.user,
            text=text,
            segments=None,
            country=msg.country,
            cost_usd=None,
            event_id=f"{msg.sid}:reply" if msg.sid else None,
        )
    except Exception:
        _failed(meter, "record a reply")
    return str(answer)


def _forbidden(request: Any) -> Any:
    """The framework's own 403 answer for a request that failed the signature check."""
    if request is None:  # Flask: the request is the context-local proxy
        from flask import abort

        abort(403)
    if _is_starlette(request):
        from starlette.responses import PlainTextResponse

        return PlainTextResponse("Twilio signature does not match", status_code=403)
    from django.http import HttpResponseForbidden

    return HttpResponseForbidden("Twilio signature does not match")


def _request_in(args: tuple, kwargs: dict) -> Any:
    """The request among a view's arguments (Django, Starlette/FastAPI), or None (Flask)."""
    for value in (*args, *kwargs.values()):
        if _is_starlette(value) or (hasattr(value, "POST") and hasattr(value, "build_absolute_uri")):
            return value
    return None


def webhook(
    meter: Any, *, conversation: Any = None, validate: bool = False, auth_token: str | None = None,
    url: str | None = None, stage: str | None = "reply",
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:  # fmt: skip
    """Decorates a webhook view (Flask, Django, Starlette/FastAPI; sync or async) as ``inbound``
    does a block. A request that fails the signature check gets the framework's 403 answer."""
    options = {
        "conversation": conversation,
        "validate": validate,
        "auth_token": auth_token,
        "url": url,
        "stage": stage,
    }

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.iscoroutinefunction(view):

            @functools.wraps(view)
            async def async_view(*args: Any, **kwargs: Any) -> Any:
                request = _request_in(args, kwargs)
                try:
                    scope = Inbound(meter, request if request is not None else _flask_request(), **options)
                    await scope.__aenter__()
                except TwilioSignatureError:
                    return _forbidden(request)
                try:
                    return await view(*args, **kwargs)
                finally:
                    await scope.__aexit__(None, None, None)

            return async_view

        @functools.wraps(view)
        def sync_view(*args: Any, **kwargs: Any) -> Any:
            request = _request_in(args, kwargs)
            try:
                scope = Inbound(meter, request if request is not None else _flask_request(), **options)
                scope.__enter__()
            except TwilioSignatureError:
                return _forbidden(request)
            try:
                return view(*args, **kwargs)
            finally:
                scope.__exit__(None, None, None)

        return sync_view

    return decorate


def _flask_request() -> Any:
    from flask import request

    return request


# -- status callbacks ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryStatus:
    """A status callback: the message, its status and Twilio's error code when it has one."""

    sid: str | None
    status: str | None
    error_code: str | None
    user: str | None  # the recipient (``To``)
    channel: str

    @property
    def outcome(self) -> bool:
        """True for a final outcome (delivered, undelivered, failed); sent, queued... are not."""
        return self.status in DELIVERY_OUTCOMES


def parse_status(form: Mapping[str, str]) -> DeliveryStatus:
    user, prefix = _address(form.get("To"))
    code = (form.get("ErrorCode") or "").strip() or None
    status = (form.get("MessageStatus") or form.get("SmsStatus") or "").strip().lower() or None
    return DeliveryStatus(
        sid=form.get("MessageSid") or form.get("SmsSid") or None,
        status=status,
        error_code=None if code in (None, "0") else code,
        user=user,
        channel="whatsapp" if prefix == "whatsapp" else "sms",
    )


def _record_status(meter: Any, req: TwilioRequest) -> DeliveryStatus:
    found = parse_status(req.form)
    if not found.outcome:
        return found
    try:
        status = found.status
        assert status is not None
        properties: dict[str, Any] = {"status": status}
        if found.error_code:
            properties["error_code"] = found.error_code
        common = {"user": found.user, "channel": found.channel}
        meter.track_custom(
            OUTCOME_PREFIX + status,
            properties=properties,
            event_id=f"{found.sid}:{status}" if found.sid else None,
            **common,
        )
        if status != "delivered":
            code = found.error_code
            described = _ERROR_TEXT.get(code or "")
            message = f"message {status}" + (f": Twilio error {code}" if code else "")
            if described:
                message += f" ({described})"
            meter.track_error(
                status,  # "undelivered" / "failed": always the delivery category, whatever the code
                code=code,
                message=message,
                provider="twilio",
                stage="delivery",
                event_id=f"{found.sid}:{status}:error" if found.sid else None,
                **common,
            )
    except Exception:
        _failed(meter, "record a status callback")
    return found


def record_status(
    meter: Any, request: Any, *, validate: bool = False, auth_token: str | None = None, url: str | None = None
) -> DeliveryStatus:
    """Records a status callback's delivery outcome (Flask, Django or a dict; ``arecord_status`` for
    Starlette/FastAPI) and returns what it said. Statuses before the outcome are returned, not recorded."""
    req = read_request(request)
    if validate:
        check_signature(req, auth_token, url)
    return _record_status(meter, req)


async def arecord_status(
    meter: Any, request: Any, *, validate: bool = False, auth_token: str | None = None, url: str | None = None
) -> DeliveryStatus:
    """``record_status`` for any request, Starlette/FastAPI included."""
    req = await aread_request(request)
    if validate:
        check_signature(req, auth_token, url)
    return _record_status(meter, req)


# -- outbound messages through the Twilio SDK ---------------------------------------------------------

_WRAPPED: Final = "_botmeter_wrapped"


def _twilio_price(price: Any, unit: Any) -> float | None:
    """Twilio reports a price as a negative decimal string in ``price_unit`` (None until it is known)."""
    if price is None or (unit is not None and str(unit).upper() != "USD"):
        return None
    try:
        value = abs(float(price))
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _record_sent(meter: Any, sent: Any, arguments: Mapping[str, Any]) -> None:
    to, prefix = _address(getattr(sent, "to", None) or arguments.get("to"))
    media = int(_number(str(getattr(sent, "num_media", None) or "")) or 0)
    if not media and arguments.get("media_url") not in (None, [], ""):
        media = 1 if isinstance(arguments.get("media_url"), str) else len(arguments["media_url"])
    channel = "whatsapp" if prefix == "whatsapp" else ("mms" if media > 0 else "sms")
    body = getattr(sent, "body", None)
    if body is None:
        body = arguments.get("body")
    _record_message(
        meter,
        direction="out",
        channel=channel,
        user=to,
        text=body if isinstance(body, str) else None,
        segments=_number(str(getattr(sent, "num_segments", None) or "")),
        country=None,
        cost_usd=_twilio_price(getattr(sent, "price", None), getattr(sent, "price_unit", None)),
        event_id=getattr(sent, "sid", None),
        properties={"media": media} if media else None,
    )


def _record_send_error(meter: Any, exc: BaseException, arguments: Mapping[str, Any]) -> None:
    to, prefix = _address(arguments.get("to"))
    meter.track_error(
        exc, provider="twilio", stage="send", user=to, channel="whatsapp" if prefix == "whatsapp" else "sms"
    )


def _recorded(meter: Any, create: Callable[..., Any], skip: Callable[[tuple], bool]) -> tuple[Any, Any]:
    """Sync and async wrappers of ``create`` (a bound method, or the class's function when every
    client is instrumented) recording each call; ``skip(args)`` says when another wrapper records it."""
    signature = inspect.signature(create)

    def record(outcome: Any, error: BaseException | None, args: tuple, kwargs: dict) -> None:
        try:
            try:
                arguments: Mapping[str, Any] = signature.bind_partial(*args, **kwargs).arguments
            except TypeError:
                arguments = kwargs
            if error is not None:
                _record_send_error(meter, error, arguments)
            else:
                _record_sent(meter, outcome, arguments)
        except Exception:
            _failed(meter, "record a sent message")

    def sync_wrapper(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def create_recorded(*args: Any, **kwargs: Any) -> Any:
            if skip(args):
                return fn(*args, **kwargs)
            try:
                sent = fn(*args, **kwargs)
            except Exception as exc:
                record(None, exc, args, kwargs)
                raise
            record(sent, None, args, kwargs)
            return sent

        return create_recorded

    def async_wrapper(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(fn)
        async def create_async_recorded(*args: Any, **kwargs: Any) -> Any:
            if skip(args):
                return await fn(*args, **kwargs)
            try:
                sent = await fn(*args, **kwargs)
            except Exception as exc:
                record(None, exc, args, kwargs)
                raise
            record(sent, None, args, kwargs)
            return sent

        return create_async_recorded

    return sync_wrapper, async_wrapper


def instrument_client(meter: Any, client: Any, *, stage: str | None = None) -> Any:
    """Records every ``client.messages.create`` (and ``create_async``) of this Twilio ``Client`` as an
    outbound message; returns the client. Other clients are not touched. (``stage`` is accepted for
    ``meter.instrument``'s sake; a message has no stage.)"""
    messages = client.messages
    if getattr(messages, _WRAPPED, None) is not None:
        return client
    sync_wrapper, async_wrapper = _recorded(meter, messages.create, lambda args: False)
    messages.create = sync_wrapper(messages.create)
    if getattr(messages, "create_async", None) is not None:
        messages.create_async = async_wrapper(messages.create_async)
    setattr(messages, _WRAPPED, meter)
    return client


def uninstrument_client(client: Any) -> Any:
    """Undoes ``instrument_client``; returns the client."""
    messages = client.messages
    if getattr(messages, _WRAPPED, None) is None:
        return client
    for name in ("create", "create_async", _WRAPPED):
        with contextlib.suppress(AttributeError):
            delattr(messages, name)
    return client


_ORIGINALS: dict[str, Any] = {}  # MessageList's own methods while every client is instrumented


def instrument(meter: Any, *, stage: str | None = None) -> None:
    """Records ``messages.create`` of every Twilio client in this process, made before or after this
    call (a client instrumented on its own is recorded once, by its own meter)."""
    from twilio.rest.api.v2010.account.message import MessageList

    uninstrument()
    sync_wrapper, async_wrapper = _recorded(
        meter, MessageList.create, lambda args: bool(args) and getattr(args[0], _WRAPPED, None) is not None
    )
    for name, wrap in (("create", sync_wrapper), ("create_async", async_wrapper)):
        original = MessageList.__dict__.get(name)
        if original is not None:
            _ORIGINALS[name] = original
            setattr(MessageList, name, wrap(original))


def uninstrument() -> None:
    """Undoes ``instrument(meter)``."""
    from twilio.rest.api.v2010.account.message import MessageList

    for name, original in list(_ORIGINALS.items()):
        setattr(MessageList, name, original)
        del _ORIGINALS[name]


def is_client(obj: Any) -> bool:
    """True for a Twilio REST ``Client`` (what ``meter.instrument`` hands here)."""
    try:
        from twilio.rest import Client
    except ImportError:
        return False
    return isinstance(obj, Client)


__all__ = [
    "DeliveryStatus",
    "Inbound",
    "InboundMessage",
    "TwilioRequest",
    "TwilioSignatureError",
    "aread_request",
    "arecord_inbound",
    "arecord_status",
    "check_signature",
    "inbound",
    "instrument",
    "instrument_client",
    "parse_inbound",
    "parse_status",
    "read_request",
    "record_inbound",
    "record_status",
    "reply",
    "uninstrument",
    "uninstrument_client",
    "webhook",
]
