"""The command line's exports: ``botmeter export`` (events or metrics to JSON, CSV or Parquet) and
``botmeter import`` (an events export back into a store). Thin over ``botmeter.report.export``.

Registered on ``main`` (``cli_group``) when ``cli.py`` imports it.
"""

from __future__ import annotations

import time
from pathlib import Path

import click
from click.core import ParameterSource

from ..exceptions import BotmeterError
from ..report.export import DEFAULT_DAYS, FORMATS, WHAT, export_events, export_metrics, export_window
from ..report.export import import_events as run_import
from ..store import open_store
from .cli_aws import namespace_options
from .cli_group import _config, _gap_option, _reader, main, store_option

METRICS_ONLY = ("metric", "interval", "stat", "session_gap")


@main.command("export")
@click.option(
    "--what", type=click.Choice(WHAT), default="events", show_default=True, help="Stored events or metrics."
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default=None,
    help="File format [default: from the --output extension, else json].",
)
@click.option(
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    help="The file to write (folders are made; written beside it, then renamed into place).",
)
@click.option(
    "--days",
    default=None,
    type=click.IntRange(1, 36500),
    help=f"Today so far and the N-1 days before, UTC [default: {DEFAULT_DAYS}].",
)
@click.option("--start", default=None, help="Window start (ISO, UTC), instead of --days.")
@click.option("--end", default=None, help="Window end (ISO, UTC, exclusive; default: now).")
@click.option("--metric", default=None, help="metrics: names, comma-separated [default: every metric].")
@click.option(
    "--interval",
    default="day",
    show_default=True,
    type=click.Choice(["hour", "day", "week", "month", "none"]),
    help="metrics: bucket size (calendar-aligned, UTC).",
)
@click.option("--stat", default=None, help="metrics: statistic(s) of the --metric named, e.g. p50,p95.")
@_gap_option
@store_option
def export_command(
    what: str,
    fmt: str | None,
    output: str,
    days: int | None,
    start: str | None,
    end: str | None,
    metric: str | None,
    interval: str,
    stat: str | None,
    session_gap: float | None,
    store: str | None,
) -> None:
    """Export stored events (for another tool or store) or metrics (as `botmeter query` gives them)."""
    ctx = click.get_current_context()
    if what == "events":
        given = [n for n in METRICS_ONLY if ctx.get_parameter_source(n) == ParameterSource.COMMANDLINE]
        if given:
            options = ", ".join(f"--{n.replace('_', '-')}" for n in given)
            raise click.UsageError(f"{options}: for --what metrics only")
    config = _config(store=store)
    began = time.perf_counter()
    try:
        window = export_window(days, start, end)
        if what == "events":
            opened = open_store(config.store, lock_timeout=max(config.lock_timeout, 30.0))
            count = export_events(opened, window, fmt, output)
            summary = f"{count:,} events"
        else:
            result = export_metrics(_reader(config, session_gap), window, fmt, output, metric, interval, stat)
            summary = f"{len(result.metrics)} metrics, {result.row_count:,} rows"
            for name, reason in result.unavailable.items():
                click.echo(f"not exported: {name}: {reason}", err=True)
    except BotmeterError as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:
        raise click.ClickException(f"--output {output}: cannot write it ({exc.strerror or exc})") from exc
    path = Path(output).resolve()
    click.echo(
        f"exported {summary} from {window[0]:%Y-%m-%d %H:%M} to {window[1]:%Y-%m-%d %H:%M} UTC "
        f"to {path} ({path.stat().st_size / 1e6:,.1f} MB) in {time.perf_counter() - began:.1f} s"
    )


namespace_options(export_command)


@main.command("import")
@click.argument("path", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default=None,
    help="File format [default: from the extension, else json; JSON Lines is json].",
)
@click.option(
    "--dadacat",
    "dadacat_dir",
    default=None,
    type=click.Path(exists=True, file_okay=False),
    help="Instead of PATH: the DadaCat analytics package's metrics folder (costs.json, engagement.json, "
    "errors.json).",
)
@store_option
def import_command(path: str | None, fmt: str | None, dadacat_dir: str | None, store: str | None) -> None:
    """Import an events export into the store; events already there are skipped."""
    if (path is None) == (dadacat_dir is None):
        raise click.UsageError("give the export file to import, or --dadacat FOLDER (one of them)")
    if dadacat_dir is not None and fmt is not None:
        raise click.UsageError("--format: for an events export only, not with --dadacat")
    config = _config(store=store)
    began = time.perf_counter()
    try:
        if dadacat_dir is not None:
            from ..compat.dadacat.history import import_history

            result: object = import_history(dadacat_dir, config.store)
        else:
            opened = open_store(config.store, lock_timeout=max(config.lock_timeout, 30.0))
            result = run_import(opened, path, fmt)
    except BotmeterError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{result} in {time.perf_counter() - began:.1f} s")
