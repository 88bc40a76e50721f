"""The ``botmeter`` command: thin commands over the library."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from .. import __version__
from ..config import Config
from ..exceptions import BotmeterError
from ..store import open_store
from ..store.duckdb_store import DuckDBStore
from ..store.spool import Spool

console = Console()


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


def _duckdb_store(config: Config) -> DuckDBStore:
    store = open_store(config.store, lock_timeout=max(config.lock_timeout, 30.0))
    if not isinstance(store, DuckDBStore):
        raise click.UsageError(f"this command works on a DuckDB store for now; got {config.store!r}")
    return store


def _parse_date(value: str, option: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an ISO date such as 2026-11-01", param_hint=option
        ) from None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="botmeter")
def main() -> None:
    """botmeter: what your chatbot costs, how it is used, what goes wrong and how fast it answers."""


@main.command()
@store_option
@click.option("--days", default=30, show_default=True, type=click.IntRange(1, 3650), help="Days of history.")
@click.option(
    "--users", default=300, show_default=True, type=click.IntRange(1, 1_000_000), help="Simulated users."
)
@click.option(
    "--seed", default=7, show_default=True, type=int, help="Random seed; the same seed gives the same data."
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def demo(store: str | None, days: int, users: int, seed: int, quiet: bool) -> None:
    """Fill the store with a realistic simulated SMS bot (an LLM behind it) and print a summary."""
    from ..demo import print_summary, run_demo

    config = _config(store=store)
    result = run_demo(config.store, days=days, users=users, seed=seed, progress=not quiet, console=console)
    print_summary(result, console)


@main.command()
@store_option
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def status(store: str | None, fmt: str) -> None:
    """What is in the store: events by kind, time span, size, spool depth."""
    config = _config(store=store)
    db = _duckdb_store(config)
    info: dict[str, Any] = {"store": config.store, "path": str(db.path), "exists": db.path.exists()}
    if db.path.exists():
        with db.reading() as con:
            rows = con.execute("SELECT value FROM botmeter_meta WHERE key = 'schema_version'").fetchall()
            info["schema_version"] = int(rows[0][0]) if rows else None
            total, first, last = con.execute("SELECT count(*), min(ts), max(ts) FROM events").fetchall()[0]
            info["events"] = total
            info["first_event"] = first.isoformat() + "Z" if first else None
            info["last_event"] = last.isoformat() + "Z" if last else None
            info["by_kind"] = dict(
                con.execute("SELECT kind, count(*) FROM events GROUP BY 1 ORDER BY 2 DESC").fetchall()
            )
            dropped = con.execute(
                "SELECT coalesce(sum(units), 0) FROM events WHERE kind = 'system' AND name = 'dropped'"
            ).fetchall()[0]
            info["dropped_events_recorded"] = int(dropped[0])
        info["size_bytes"] = db.size_bytes()
    spool_dir = Path(config.spool_dir) if config.spool_dir else db.default_spool_dir()
    depth = Spool(spool_dir, 1).depth()
    info["spool"] = {
        "dir": str(spool_dir),
        "batches": depth.batches,
        "events": depth.events,
        "bytes": depth.bytes,
    }
    if fmt == "json":
        click.echo(json.dumps(info, indent=2, default=str))
        return
    table = Table(title=f"botmeter store: {db.path}", show_header=False)
    for key in (
        "events",
        "first_event",
        "last_event",
        "size_bytes",
        "schema_version",
        "dropped_events_recorded",
    ):
        if key in info:
            value = info[key]
            table.add_row(key.replace("_", " "), f"{value:,}" if isinstance(value, int) else str(value))
    for kind, n in info.get("by_kind", {}).items():
        table.add_row(f"  {kind}", f"{n:,}")
    table.add_row("spool", f"{depth.batches} batches, {depth.events:,} events in {spool_dir}")
    console.print(table)


@main.command()
@store_option
@click.option("--since", required=True, help="Recompute costs of events from this date (ISO, UTC).")
@click.option("--until", default=None, help="...up to this date (exclusive); default: now.")
@click.option(
    "--prices", default=None, envvar="BOTMETER_PRICES", help="A TOML price list (or BOTMETER_PRICES)."
)
@click.option("--sms-rates", default=None, envvar="BOTMETER_SMS_RATES", help="A TOML SMS rate table.")
def reprice(
    store: str | None, since: str, until: str | None, prices: str | None, sms_rates: str | None
) -> None:
    """Recompute costs from the stored raw usage (after a price change or a new price list)."""
    from ..process.reprice import reprice as run_reprice

    config = _config(store=store, prices=prices, sms_rates=sms_rates)
    start = _parse_date(since, "--since")
    end = _parse_date(until, "--until") if until else None
    try:
        result = run_reprice(_duckdb_store(config), config, start, end)
    except BotmeterError as exc:
        raise click.ClickException(str(exc)) from exc
    console.print(
        f"examined {result.examined:,} priced events since {start:%Y-%m-%d}; "
        f"{result.changed:,} costs changed; {result.unpriced:,} without a price"
    )


def run() -> None:  # pragma: no cover - console entry
    try:
        main()
    except BotmeterError as exc:
        console.print(f"[red]error:[/red] {exc}")
        sys.exit(2)
