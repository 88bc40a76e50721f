"""Who and which conversation: fields every track call inside ``with meter.context(...)`` gets.

The context lives in one ``contextvars.ContextVar``, so it follows the code that runs inside the
block: the same thread, asyncio tasks created inside it (they copy the context), and threads
started with a copied context (``contextvars.copy_context().run``, ``asyncio.to_thread``).

The value is a tuple ``(user, conversation, stage)``; ``None`` in a slot means "not set". The
track calls read it (the C fast path with ``PyContextVar_Get``) only when a call leaves one of
those fields as ``None``, so a call that gives them all pays nothing.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ..events import RECORDS

Id = str | int | None

# (user, conversation, stage); the slot order is the one the track calls read.
CONTEXT: contextvars.ContextVar[tuple[Id, Id, str | None] | None] = contextvars.ContextVar(
    "botmeter_context", default=None
)
CONTEXT_FIELDS = ("user", "conversation", "stage")


@dataclass(frozen=True, slots=True)
class Context:
    """What ``with meter.context(...)`` has set here (``None`` where nothing is set)."""

    user: Id = None
    conversation: Id = None
    stage: str | None = None


def current_context() -> Context:
    """The user, conversation and stage in force here (the innermost ``meter.context`` block's)."""
    value = CONTEXT.get()
    return Context() if value is None else Context(*value)


def _check_id(name: str, value: object) -> None:
    if value is None or isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return
    raise TypeError(f"context: {name} must be a str or int or None, got {value!r}")


@contextmanager
def context(user: Id = None, conversation: Id = None, stage: str | None = None) -> Iterator[Context]:
    """Gives every track call inside the block these fields when the call leaves them ``None``.

    Nested blocks: the inner one's values win; what it leaves ``None`` comes from the outer one.
    """
    _check_id("user", user)
    _check_id("conversation", conversation)
    if stage is not None and not isinstance(stage, str):
        raise TypeError(f"context: stage must be a str or None, got {stage!r}")
    outer = CONTEXT.get()
    if outer is not None:
        user = outer[0] if user is None else user
        conversation = outer[1] if conversation is None else conversation
        stage = outer[2] if stage is None else stage
    value = None if user is None and conversation is None and stage is None else (user, conversation, stage)
    token = CONTEXT.set(value)
    try:
        yield Context(user, conversation, stage)
    finally:
        try:
            CONTEXT.reset(token)
        except ValueError:  # left in another context (a generator finished elsewhere): undo by value
            CONTEXT.set(outer)


def context_slots(call: str) -> tuple[int, int, int]:
    """Where a track call keeps user, conversation and stage among its parameters (-1: it has none,
    or the field is required there, like ``track_timing``'s stage, so a context never fills it)."""
    spec = RECORDS[call]
    slots = []
    for name in CONTEXT_FIELDS:
        i = spec.names.index(name) if name in spec.names else -1
        if i >= 0 and spec.params[i].default is not None:
            i = -1
        slots.append(i)
    return slots[0], slots[1], slots[2]
