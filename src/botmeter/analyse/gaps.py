"""Answers that combine figures: one figure the store cannot give costs only itself.

A figure a store cannot give by design raises ``FigureUnavailable``; one the backend fails to give this
time (a request that failed, a file another process holds) raises ``StoreUnavailable``. Either
way the answer keeps every other figure and lists the missing ones with the reason, as the
dashboard does. Only when the store answered nothing at all is its failure the answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from ..exceptions import StoreUnavailable, first_line
from .query import FigureUnavailable

T = TypeVar("T")


def store_failure(exc: BaseException) -> str:
    """Why a figure is missing when the store failed to give it: the first line of the error."""
    return f"the store failed to answer: {first_line(exc)}"


class Gaps:
    """The figures an answer could not get, by name, with the reason (``missing``)."""

    def __init__(self, missing: dict[str, str] | None = None) -> None:
        self.missing: dict[str, str] = {} if missing is None else missing
        self.failures: list[StoreUnavailable] = []
        self.answered = 0

    def get(self, name: str, fn: Callable[[], T], fallback: Any = None) -> T | Any:
        """``fn()``, or ``fallback`` with ``name`` and the reason noted when the store cannot give it."""
        try:
            value = fn()
        except FigureUnavailable as exc:
            self.missing[name] = str(exc)
            return fallback
        except StoreUnavailable as exc:
            self.missing[name] = store_failure(exc)
            self.failures.append(exc)
            return fallback
        self.answered += 1
        return value

    def raise_if_nothing(self) -> None:
        """The store's failure, when it failed every figure asked of it."""
        if self.failures and not self.answered:
            raise self.failures[0]


__all__ = ["Gaps", "store_failure"]
