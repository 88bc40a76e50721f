"""Files botmeter reads (price lists, SMS rates, alert rules) are checked by pydantic models; this
module holds the field types they share and turns pydantic's error into botmeter's words: the
entry, the field, the value and what it must be. Each file's loader adds the file and its wording.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, ValidationError
from pydantic_core import PydanticCustomError

__all__ = ["Amount", "Flag", "Number", "Problem", "Text", "first_problem", "number", "refuse"]


def refuse(reason: str) -> PydanticCustomError:
    """An error a model's validator raises; ``reason`` is said after the field and its value."""
    return PydanticCustomError("botmeter", "{reason}", {"reason": reason})


def number(value: Any) -> Any:
    # pydantic would take "8" or true as a number; a price or a threshold written so is a mistake.
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise refuse("must be a number")
    return value


def _text(value: Any) -> Any:
    if not isinstance(value, str) or not value.strip():
        raise refuse("must be a non-empty string")
    return value


def _flag(value: Any) -> Any:
    if not isinstance(value, bool):
        raise refuse("must be true or false")
    return value


Number = Annotated[float, BeforeValidator(number)]
# A price or a threshold: a finite number, not negative.
Amount = Annotated[float, Field(ge=0, allow_inf_nan=False), BeforeValidator(number)]
Text = Annotated[str, BeforeValidator(_text)]
Flag = Annotated[bool, BeforeValidator(_flag)]

_REASONS = {
    "finite_number": "must be a finite number",
    "dict_type": "must be a table",
    "model_type": "must be a table",
    "list_type": "must be an array",
    "int_from_float": "must be a whole number",
}


@dataclass(frozen=True)
class Problem:
    """The first thing wrong with an input, as botmeter says it."""

    kind: str  # "missing", "unknown" (a field the model does not have), or what was wrong with a value
    where: tuple[str | int, ...]  # the path to the field, as pydantic gives it
    value: Any
    reason: str  # "must not be negative", ...

    @property
    def field(self) -> str:
        return str(self.where[-1]) if self.where else ""


def first_problem(error: ValidationError) -> Problem:
    """The problem to report: an unknown field first (a misspelt key explains a missing one), else
    the first in declaration order, as one fixes a file one line at a time."""
    errors = error.errors()
    chosen = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    kind = {"missing": "missing", "extra_forbidden": "unknown"}.get(chosen["type"], chosen["type"])
    ctx = chosen.get("ctx") or {}
    if chosen["type"] == "botmeter":
        reason = ctx["reason"]
    elif chosen["type"] == "greater_than_equal":
        reason = "must not be negative" if ctx.get("ge") == 0 else f"must be >= {ctx.get('ge')}"
    else:
        msg = chosen["msg"]
        reason = _REASONS.get(chosen["type"], msg[:1].lower() + msg[1:])
    return Problem(kind, tuple(chosen["loc"]), chosen.get("input"), reason)
