"""One error hierarchy. Programmer errors raise at once; infrastructure failures never reach the bot."""

from __future__ import annotations


class BotmeterError(Exception):
    """Base of every error botmeter raises on purpose."""


class ConfigError(BotmeterError, ValueError):
    """A setting or a configuration file has a bad value; the message names it."""


class StoreError(BotmeterError):
    """The store failed; the writer spools the batch and retries."""


class StoreUnavailable(StoreError):
    """The store cannot be reached or opened right now (locked, read-only, full, down)."""


class StoreLocked(StoreUnavailable):
    """Another process holds the store's file for longer than the lock timeout."""


class SchemaError(StoreUnavailable):
    """The store was written by a newer botmeter: batches wait in the spool until botmeter is upgraded."""


class InputError(BotmeterError, ValueError):
    """An argument or a request botmeter was given has a bad value; the message names it and shows it."""


class InputTypeError(BotmeterError, TypeError):
    """An argument botmeter was given has the wrong type; the message names it and shows it."""


def first_line(exc: BaseException) -> str:
    """The first line of an error's message (or its type's name when it has none), for one-line reports."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
