"""The ``botmeter`` command group and what its command modules share: the store option, the settings
from options, a reader over the store. ``cli.py``, ``cli_aws.py`` and ``cli_export.py`` add commands to
``main``; ``cli.py`` imports the other two, so importing it gives the whole command line.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ..answers.questions import STORE_STATUS_KEYS
from ..config import Config
from ..exceptions import BotmeterError
from ..store import open_store
from ..version import __version__


def status_table(title: str, info: dict[str, Any], spool: str) -> Any:
    """``botmeter status`` as a terminal table, for any store: its figures, events by kind, the spool."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, show_header=False)
    for key in STORE_STATUS_KEYS:
        if key in info:
            value = info[key]
            table.add_row(key.replace("_", " "), f"{value:,}" if isinstance(value, int) else str(value))
    for kind, n in info.get("by_kind", {}).items():
        table.add_row(Text(f"  {kind}"), f"{n:,}")  # a kind is shown as given, never as markup
    table.add_row("spool", spool)
    return table


def store_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--store",
        envvar="BOTMETER_STORE",
        default=None,
        help="Store URL (default: duckdb://botmeter.duckdb, or BOTMETER_STORE).",
    )(fn)


def _config(**arguments: Any) -> Config:
    try:
        return Config.resolve(**arguments)
    except (BotmeterError, TypeError) as exc:
        raise click.UsageError(str(exc)) from exc


def _fail(exc: BotmeterError) -> click.ClickException:
    return click.ClickException(" ".join(str(exc).split()))  # one line, whatever the store said


class _OneLineErrors(click.Group):
    """Any error botmeter raises on purpose ends a command as one line naming what is wrong, and exit 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BotmeterError as exc:
            raise _fail(exc) from exc


@click.group(cls=_OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="botmeter")
def main() -> None:
    """botmeter: what your chatbot costs, how it is used, what goes wrong and how fast it answers."""


def _reader(config: Config, session_gap: float | None = None) -> Any:
    from ..analyse import Reader

    store = open_store(config.store, lock_timeout=max(config.lock_timeout, 30.0))
    path = getattr(store, "path", None)
    if path is not None and not Path(path).exists():
        raise click.ClickException(f"no store at {path}: track some events or run `botmeter demo` first")
    gap = config.session_gap_minutes if session_gap is None else session_gap
    return Reader(store, session_gap_minutes=gap, reply_stage=config.reply_stage, hash_key=config.hash_key)


def _answer(name: str, open_reader: Callable[[], Any], raw: dict[str, Any]) -> Any:
    """The answer to question ``name`` (``botmeter.answers``) with the options as raw text; the
    store is opened once they have been read. A bad option value ends the command as a usage error
    naming the option (exit 2); any other error botmeter raises, as one line (exit 1)."""
    from .. import answers

    given = {k: v if isinstance(v, str | list | tuple) else str(v) for k, v in raw.items() if v is not None}
    try:
        return answers.answer(name, answers.Later(open_reader), given)
    except answers.ParameterError as exc:
        raise click.BadParameter(str(exc), param_hint=f"--{exc.field.replace('_', '-')}") from exc
    except BotmeterError as exc:
        raise _fail(exc) from exc


def _gap_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--session-gap",
        type=float,
        default=None,
        help="Minutes of silence that end a conversation without an id (or BOTMETER_SESSION_GAP; 30).",
    )(fn)
