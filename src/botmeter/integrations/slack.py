"""Slack capture: a Bolt middleware (sync ``App`` and async ``AsyncApp``).

::

    app = App(token=..., signing_secret=...)
    app.use(slack.middleware(meter))          # AsyncApp: app.use(slack.async_middleware(meter))
    # or, for either: meter.instrument(app)

records every inbound message, slash command and app mention as an inbound message on the
``slack`` channel (the user id is hashed like any user id; the Slack channel id, hashed the same
way, is kept in ``properties.slack_channel``), and for the listener that handles it sets
``meter.context(user=..., conversation=...)`` and times it as the ``reply`` stage.

Bolt's middleware runs before the listener rather than around it, and a listener may run on
another thread, so the context and the timing are set by wrapping the listener runner's start
and completion handlers, which Bolt calls on the listener's own thread or task; the middleware
does that once, the first time it sees the runner (``context.listener_runner``).

Ids: a message is recorded under ``slack:<team>:<channel>:<ts>``, so Slack's retries and the
``message`` and ``app_mention`` events of the same message count once; a command under its
``trigger_id``. Messages from bots, edits, deletions and other subtypes are not inbound messages.
A thread is a conversation (its id is hashed too); other messages have none, so conversations
are the user's messages split at the session gap.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

from slack_bolt.middleware import Middleware
from slack_bolt.middleware.async_middleware import AsyncMiddleware
from slack_bolt.request import BoltRequest
from slack_bolt.response import BoltResponse

log = logging.getLogger("botmeter")

CHANNEL: Final = "slack"
# Message subtypes that are a person writing to the bot; the rest are edits, joins, bots...
_USER_SUBTYPES: Final = frozenset({None, "file_share", "thread_broadcast", "me_message"})
_FIELDS: Final = "botmeter_fields"  # on Bolt's request context: a _Held(meter, stage, user, conversation)
_SCOPE: Final = "botmeter_scope"  # a _Held(context manager, start time) while the listener runs


class _Held(tuple):
    """What botmeter keeps on Bolt's request context. Bolt deep-copies the context for lazy
    listeners; a meter (threads, a store) must not be copied, so a copy is the same object."""

    __slots__ = ()

    def __deepcopy__(self, memo: dict) -> _Held:
        return self


def _hashed(meter: Any, value: str | None) -> str | None:
    """The id as the meter stores user ids: keyed hash unless hashing is off."""
    return None if value is None else meter.stored_id(value)


def _failed(meter: Any, what: str) -> None:
    log.exception("botmeter: slack integration could not %s", what)
    try:
        meter.count_integration_failure("slack")
    except Exception:
        pass


def inbound_of(body: dict[str, Any]) -> dict[str, Any] | None:
    """What an incoming Bolt payload says about a user's message, or None when it is not one:
    ``kind`` (message, app_mention, command), ``user``, ``channel``, ``text``, ``key``, ``thread``."""
    if not isinstance(body, dict):
        return None
    if body.get("command"):  # a slash command (form-encoded payload)
        return {
            "kind": "command",
            "command": body.get("command"),
            "user": body.get("user_id"),
            "channel": body.get("channel_id"),
            "text": " ".join(p for p in (body.get("command"), body.get("text")) if p),
            "key": f"slack:command:{body.get('trigger_id')}" if body.get("trigger_id") else None,
            "thread": None,
        }
    if body.get("type") != "event_callback":
        return None
    event = body.get("event")
    if not isinstance(event, dict) or event.get("type") not in ("message", "app_mention"):
        return None
    if event.get("bot_id") or event.get("subtype") not in _USER_SUBTYPES or not event.get("user"):
        return None
    channel, ts = event.get("channel"), event.get("ts")
    team = body.get("team_id") or event.get("team") or ""
    return {
        "kind": event["type"],
        "user": event.get("user"),
        "channel": channel,
        "text": event.get("text"),
        "key": f"slack:{team}:{channel}:{ts}" if channel and ts else None,
        "thread": event.get("thread_ts"),
    }


class _Recorder:
    """What both middlewares do: record the message, leave the fields for the listener's context."""

    def __init__(self, meter: Any, stage: str | None = "reply") -> None:
        self.meter = meter
        self.stage = stage

    def observe(self, req: BoltRequest) -> None:
        meter = self.meter
        try:
            found = inbound_of(req.body)
            if found is None:
                return
            channel = found["channel"]
            conversation = _hashed(meter, f"{channel}:{found['thread']}") if found["thread"] else None
            user = found["user"]
            properties: dict[str, Any] = {"slack_type": found["kind"]}
            if channel:
                properties["slack_channel"] = _hashed(meter, channel)
            if found["kind"] == "command":
                properties["command"] = found["command"]
            meter.track_message(
                direction="in",
                text=found["text"] if isinstance(found["text"], str) else None,
                user=user,
                conversation=conversation,
                channel=CHANNEL,
                properties=properties,
                event_id=found["key"],
            )
            req.context[_FIELDS] = _Held((meter, self.stage, user, conversation))
            runner = req.context.get("listener_runner")
            if runner is not None:
                hook_listener_runner(runner)
        except Exception:
            _failed(meter, "record a Slack message")


class SlackMiddleware(Middleware, _Recorder):
    """The middleware for a sync Bolt ``App``."""

    def process(
        self, *, req: BoltRequest, resp: BoltResponse, next: Callable[[], BoltResponse]
    ) -> BoltResponse | None:
        self.observe(req)
        return next()


class AsyncSlackMiddleware(AsyncMiddleware, _Recorder):
    """The middleware for an ``AsyncApp``."""

    async def async_process(
        self, *, req: Any, resp: BoltResponse, next: Callable[[], Awaitable[BoltResponse]]
    ) -> BoltResponse | None:
        self.observe(req)
        return await next()


def middleware(meter: Any, *, stage: str | None = "reply") -> SlackMiddleware:
    """``app.use(slack.middleware(meter))`` for a sync Bolt ``App``; ``stage=None``: no timing."""
    return SlackMiddleware(meter, stage)


def async_middleware(meter: Any, *, stage: str | None = "reply") -> AsyncSlackMiddleware:
    """``app.use(slack.async_middleware(meter))`` for an ``AsyncApp``."""
    return AsyncSlackMiddleware(meter, stage)


# -- the listener's context and timing ------------------------------------------------------------


def _listener_started(request: Any) -> None:
    fields = request.context.get(_FIELDS)
    if fields is None:
        return
    meter, _, user, conversation = fields
    try:
        scope = meter.context(user=user, conversation=conversation)
        scope.__enter__()
        request.context[_SCOPE] = _Held((scope, time.perf_counter()))
    except Exception:
        _failed(meter, "set the context")


def _listener_completed(request: Any) -> None:
    fields = request.context.get(_FIELDS)
    held = request.context.pop(_SCOPE, None) if fields is not None else None
    if held is None:
        return
    meter, stage, _, _ = fields
    scope, start = held
    try:
        if stage:
            meter.track_timing(stage, (time.perf_counter() - start) * 1000.0, channel=CHANNEL)
    except Exception:
        _failed(meter, "time the reply")
    try:
        scope.__exit__(None, None, None)
    except Exception:
        _failed(meter, "leave the context")


class _StartHandler:
    def __init__(self, original: Any) -> None:
        self.original = original

    def handle(self, request: Any, response: Any) -> None:
        _listener_started(request)
        self.original.handle(request=request, response=response)


class _CompletionHandler:
    def __init__(self, original: Any) -> None:
        self.original = original

    def handle(self, request: Any, response: Any) -> None:
        try:
            self.original.handle(request=request, response=response)
        finally:
            _listener_completed(request)


class _AsyncStartHandler(_StartHandler):
    async def handle(self, request: Any, response: Any) -> None:  # type: ignore[override]
        _listener_started(request)
        await self.original.handle(request=request, response=response)


class _AsyncCompletionHandler(_CompletionHandler):
    async def handle(self, request: Any, response: Any) -> None:  # type: ignore[override]
        try:
            await self.original.handle(request=request, response=response)
        finally:
            _listener_completed(request)


def hook_listener_runner(runner: Any) -> None:
    """Wraps a Bolt listener runner's start and completion handlers (once) so the listener of a
    recorded message runs inside ``meter.context`` and is timed."""
    start = getattr(runner, "listener_start_handler", None)
    done = getattr(runner, "listener_completion_handler", None)
    if start is None or done is None or isinstance(start, _StartHandler):
        return
    is_async = inspect.iscoroutinefunction(start.handle)
    runner.listener_start_handler = (_AsyncStartHandler if is_async else _StartHandler)(start)
    runner.listener_completion_handler = (_AsyncCompletionHandler if is_async else _CompletionHandler)(done)


# -- meter.instrument(app) ---------------------------------------------------------------------------


def instrument_client(meter: Any, app: Any, *, stage: str | None = None) -> Any:
    """``meter.instrument(app)`` for a Bolt ``App`` or ``AsyncApp``: adds the middleware once and
    returns the app. ``stage`` names the listener's timing (default ``reply``)."""
    if getattr(app, "_botmeter_middleware", None) is not None:
        return app
    is_async = hasattr(app, "async_dispatch")
    made = (async_middleware if is_async else middleware)(meter, stage=stage or "reply")
    app.use(made)
    app._botmeter_middleware = made
    return app


def uninstrument_client(app: Any) -> Any:
    """Stops recording: the middleware stays in Bolt's list (Bolt cannot remove one) but does nothing."""
    made = getattr(app, "_botmeter_middleware", None)
    if made is not None:
        made.observe = lambda req: None  # type: ignore[method-assign]
        app._botmeter_middleware = None
    return app


__all__ = [
    "AsyncSlackMiddleware",
    "SlackMiddleware",
    "async_middleware",
    "hook_listener_runner",
    "inbound_of",
    "instrument_client",
    "middleware",
    "uninstrument_client",
]
