"""The command line's ClickHouse part: ``botmeter clickhouse ddl`` prints the tables' DDL (one
server, or a cluster with ``--cluster``), and ``botmeter copy`` moves events between any two stores.

Registered on ``main`` (``cli_group``) when ``cli.py`` imports it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..config import Config
from ..exceptions import BotmeterError
from ..store import open_store
from ..store.spool import Spool
from .cli_group import _fail, main, status_table


@main.group()
def clickhouse() -> None:
    """ClickHouse stores (clickhouse://, chdb://): the tables' DDL for a server or a cluster."""


@clickhouse.command()
@click.option(
    "--cluster",
    default=None,
    help="Cluster name: ReplicatedMergeTree tables ON CLUSTER, Distributed tables over them.",
)
def ddl(cluster: str | None) -> None:
    """Print the SQL that creates botmeter's ClickHouse tables and views (run it with clickhouse-client)."""
    from ..backends.clickhouse import schema

    for statement in schema.deploy_sql(cluster):
        click.echo(statement + ";\n")


def _date(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(
            f"{value!r} is not an ISO date such as 2026-01-31", param_hint="--since"
        ) from exc
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


@main.command()
@click.option("--from", "source", required=True, help="Store URL to copy events from.")
@click.option("--to", "destination", required=True, help="Store URL to copy events to.")
@click.option("--since", default=None, help="Only events from this date (ISO, UTC) on.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def copy(source: str, destination: str, since: str | None, quiet: bool) -> None:
    """Copy events between two stores (DuckDB, ClickHouse); idempotent and resumable."""
    from ..store.copy import copy_events
    from ..store.copy import count as count_events

    start = _date(since)
    if source == destination:
        raise click.UsageError("--from and --to name the same store")
    try:
        src = open_store(source, lock_timeout=30.0)
        dst = open_store(destination, lock_timeout=30.0)
    except BotmeterError as exc:
        raise _fail(exc) from exc
    console = Console(stderr=True)
    try:
        total = count_events(src, start)
        with Progress(
            TextColumn("[bold]Copying events"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            disable=quiet,
        ) as bar:
            task = bar.add_task("copy", total=total)
            result = copy_events(src, dst, start, progress=lambda n: bar.update(task, advance=n))
    except BotmeterError as exc:
        raise _fail(exc) from exc
    finally:
        src.close()
        dst.close()
    resumed = f" (resumed after {result.resumed_from})" if result.resumed_from else ""
    click.echo(
        f"copied {result.added:,} events to {dst.url} ({result.read - result.added:,} were there "
        f"already){resumed}"
    )


def status_of(store: Any, config: Config, fmt: str, console: Console) -> None:
    """``botmeter status`` for a store that describes itself (``summary()``)."""
    try:
        info: dict[str, Any] = {"store": store.url, **store.summary()}
    except BotmeterError as exc:
        raise _fail(exc) from exc
    finally:
        store.close()
    spool_dir = Path(config.spool_dir) if config.spool_dir else store.default_spool_dir()
    depth = Spool(spool_dir, 1).depth()
    info["spool"] = {
        "dir": str(spool_dir),
        "batches": depth.batches,
        "events": depth.events,
        "bytes": depth.bytes,
    }
    if fmt == "json":
        click.echo(json.dumps(info, indent=2, default=str))
    if not info["exists"]:
        waiting = f"; {depth.events:,} events wait in the spool {spool_dir}" if depth.events else ""
        raise click.ClickException(
            f"no events in {store.url}{waiting}: track some events or run `botmeter demo` first"
        )
    if fmt == "json":
        return
    spool = f"{depth.batches} batches, {depth.events:,} events in {spool_dir}"
    console.print(status_table(f"botmeter store: {store.url}", info, spool))
