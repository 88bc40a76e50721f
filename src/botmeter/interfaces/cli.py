"""The ``botmeter`` command: thin commands over the library."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..backends.duckdb.store import DuckDBStore
from ..config import Config
from ..exceptions import BotmeterError
from ..store import open_store
from ..store.spool import Spool
from . import cli_aws, cli_clickhouse, cli_export, cli_server  # noqa: F401  (their commands: cloudwatch, clickhouse, copy, export, import, serve, tokens)
from .cli_group import _answer, _config, _fail, _gap_option, _reader, main, status_table, store_option

# No automatic highlighting: colour in the terminal is kept for what means something (an error).
console = Console(highlight=False)

# Control characters (C0, DEL, C1: ANSI and OSC escape sequences start with them) and the
# bidirectional overrides, which a stored value must never send to the terminal.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def terminal_text(value: Any, keep_lines: bool = False) -> str:
    """Stored text made safe for a terminal: control characters dropped (line breaks kept when
    ``keep_lines``, else made spaces), so no escape sequence in an event reaches the terminal."""
    text = str(value)
    if keep_lines:
        return "\n".join(
            _CONTROL.sub(lambda m: " " if m.group() == "\t" else "", line) for line in text.split("\n")
        )
    return _CONTROL.sub(lambda m: " " if m.group() in "\t\n\r" else "", text)


def plain(value: Any) -> Text:
    """Stored text for a Rich table or line: a ``Text``, which Rich never reads as markup."""
    return Text(terminal_text(value))


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
    described = open_store(config.store, lock_timeout=max(config.lock_timeout, 30.0))
    if hasattr(described, "summary"):  # a store that describes itself (ClickHouse)
        cli_clickhouse.status_of(described, config, fmt, console)
        return
    db = _duckdb_store(config)
    info: dict[str, Any] = {"store": config.store, "path": str(db.path), "exists": db.path.exists()}
    if db.path.exists():
        info.update(_answer("store_status", lambda: _reader(config), {}).data)
    spool_dir = Path(config.spool_dir) if config.spool_dir else db.default_spool_dir()
    depth = Spool(spool_dir, 1).depth()
    info["spool"] = {
        "dir": str(spool_dir),
        "batches": depth.batches,
        "events": depth.events,
        "bytes": depth.bytes,
    }
    if not info["exists"]:
        # No store there (a typo, another folder): say so, and fail, so scripts notice.
        if fmt == "json":
            click.echo(json.dumps(info, indent=2, default=str))
        waiting = f"; {depth.events:,} events wait in the spool {spool_dir}" if depth.events else ""
        raise click.ClickException(
            f"no store at {db.path}{waiting}: track some events or run `botmeter demo` first"
        )
    if fmt == "json":
        click.echo(json.dumps(info, indent=2, default=str))
        return
    spool = f"{depth.batches} batches, {depth.events:,} events in {spool_dir}"
    console.print(status_table(f"botmeter store: {db.path}", info, spool))


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


# -- analysis ----------------------------------------------------------------------------------


def _json(data: Any) -> str:
    from ..analyse.query import iso

    def default(value: Any) -> Any:
        if isinstance(value, datetime):
            return iso(value)
        return str(value)

    return json.dumps(data, indent=2, default=default)


# The response builder's forms (report.responses), offered by every command that answers a question.
RESPONSE_FORMS = ["text", "json", "markdown", "slack", "slack-blocks", "sms"]
RESPONSE_FORMS_HELP = "text; json; markdown; slack (mrkdwn); slack-blocks (Block Kit JSON); sms (2 segments)."
# What `botmeter query` offers besides its own table, json and csv.
QUERY_RESPONSE_FORMS = [f for f in RESPONSE_FORMS if f not in ("text", "json")]


def _window_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--end", default=None, help="Window end (ISO, UTC; default: now).")(fn)
    fn = click.option("--start", default=None, help="Window start (ISO, UTC), instead of --days.")(fn)
    return click.option(
        "--days", default=None, metavar="INTEGER", help="Today and the days before it, UTC [default: 7]."
    )(fn)


@main.command()
@click.argument("metric")
@_window_options
@click.option(
    "--interval",
    default="day",
    show_default=True,
    type=click.Choice(["hour", "day", "week", "month", "none"]),
    help="Bucket size (calendar-aligned, UTC).",
)
@click.option("--by", default="", help="Dimensions to break down by, comma-separated (e.g. model,provider).")
@click.option(
    "--filter", "filters", multiple=True, help="dimension=value (repeatable; value1|value2 for several)."
)
@click.option("--stat", default=None, help="Statistic(s), comma-separated, e.g. p95 or p50,p95,p99.")
@click.option(
    "--periods", default=8, show_default=True, type=int, help="retention: days or weeks after first seen."
)
@click.option(
    "--limit", default=None, type=int, help="With --interval none and --by: only the largest N groups."
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv", *QUERY_RESPONSE_FORMS]),
    default="table",
    show_default=True,
    help="table, json, csv, or a response form: markdown, slack, slack-blocks, sms.",
)
@_gap_option
@store_option
def query(
    metric: str,
    days: int | None,
    start: str | None,
    end: str | None,
    interval: str,
    by: str,
    filters: tuple[str, ...],
    stat: str | None,
    periods: int,
    limit: int | None,
    fmt: str,
    session_gap: float | None,
    store: str | None,
) -> None:
    """One metric over time: botmeter query cost_usd --days 7 --by model. `botmeter metrics` lists them."""
    config = _config(store=store)
    raw = {
        "metric": metric,
        "days": days,
        "start": start,
        "end": end,
        "interval": interval,
        "by": by,
        "filter": list(filters),
        "stat": stat,
        "periods": periods,
        "limit": limit,
    }
    result = _answer("metric", lambda: _reader(config, session_gap), raw).result
    rows = result.json_rows()
    if fmt == "json":
        click.echo(_json(rows))
        return
    if fmt in QUERY_RESPONSE_FORMS:
        click.echo(_rendered(result, fmt))
        return
    columns = list(rows[0]) if rows else ["bucket", *result.query.by, *result.value_keys()]
    if fmt == "csv":
        import csv

        writer = csv.DictWriter(sys.stdout, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return
    console.print(query_table(result, rows, columns))


def query_table(result: Any, rows: list[dict[str, Any]], columns: list[str]) -> Table:
    """A query's rows as people read them: money with its symbol and a total, the largest first when
    there is one bucket, long names wrapped rather than cut."""
    metric_def = result.metric
    values = result.value_keys()
    is_money = metric_def.unit == "USD"
    whole = result.query.interval is None
    if whole:
        # One bucket: its start says nothing, and the rows read best largest first.
        columns = [c for c in columns if c != "bucket"]
        first = values[0] if values else None
        rows = sorted(rows, key=lambda r: (r.get(first) is None, -(r.get(first) or 0)))
    additive = metric_def.aggregation in ("sum", "count") and len(rows) > 1

    def cell(value: Any) -> str:
        if is_money and value is None and metric_def.aggregation == "sum":
            return "unpriced"
        if is_money and isinstance(value, int | float):
            return money_text(value)
        return _cell(value)

    table = Table(
        title=f"{metric_def.name} ({metric_def.unit}) {result.query.start:%Y-%m-%d %H:%M} to "
        f"{result.query.end:%Y-%m-%d %H:%M} UTC",
        caption=plain("; ".join(result.notes)) if result.notes else None,
        show_footer=additive,
    )
    for i, column in enumerate(columns):
        footer = ""
        if additive and column in values:
            footer = cell(sum(r.get(column) or 0 for r in rows))
        elif additive and i == 0:
            footer = "total"
        table.add_column(
            column,
            justify="right" if column in values else "left",
            footer=footer,
            # Names wrap (between words where they have them) rather than being cut short.
            overflow="fold",
            no_wrap=column in values,
        )
    for row in rows:
        # A group without that dimension says so, never "-" or "(none)" as if it were a name.
        table.add_row(
            *(
                cell(row.get(c))
                if c in values
                else (f"(no {c})" if row.get(c) is None and c in result.query.by else _cell(row.get(c)))
                for c in columns
            )
        )
    return table


def money_text(value: float) -> str:
    """Dollars with the symbol: $1,234.56, $0.49, $0.0031 (small amounts keep their digits)."""
    if value == 0 or abs(value) >= 1:
        return f"${value:,.2f}" if value >= 0 else f"-${-value:,.2f}"
    return f"${value:,.4f}" if value > 0 else f"-${-value:,.4f}"


def _cell(value: Any) -> Text:
    if value is None:
        return Text("-")
    if isinstance(value, float):
        return Text(f"{value:,.6g}" if abs(value) < 1000 else f"{value:,.2f}")
    if isinstance(value, int):
        return Text(f"{value:,}")
    return plain(value)  # a model, a channel, a name: the bot's text, never markup


@main.command()
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def metrics(fmt: str) -> None:
    """The metric catalogue: names, units, dimensions and statistics."""
    from ..analyse.catalogue import CATALOGUE, load_plugins

    load_plugins()
    if fmt == "json":
        listed = [
            {
                "metric": m.name,
                "unit": m.unit,
                "description": m.description,
                "statistics": list(m.stats),
                "default_statistic": m.stats[0],
                "dimensions": list(m.dimensions),
            }
            for m in CATALOGUE.values()
        ]
        click.echo(json.dumps(listed, indent=2))
        return

    table = Table(title="botmeter metrics")
    # The names whole, however narrow the terminal: the other columns wrap instead.
    table.add_column("metric", no_wrap=True, min_width=max(len(m) for m in CATALOGUE))
    table.add_column("unit", overflow="fold")
    table.add_column("statistics", overflow="fold")
    table.add_column("dimensions", overflow="fold")
    table.add_column("description", overflow="fold")  # a long word folds, never cut
    for m in CATALOGUE.values():
        # Lists with a space after each comma, so a narrow terminal wraps them between words.
        table.add_row(m.name, m.unit, ", ".join(m.stats), ", ".join(m.dimensions) or "-", m.description)
    console.print(table)


@main.command()
@click.option("--days", default="7", show_default=True, metavar="INTEGER", help="Days in the period.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(RESPONSE_FORMS),
    default="text",
    show_default=True,
    help=RESPONSE_FORMS_HELP,
)
@click.option("--rules", default=None, envvar="BOTMETER_ALERTS", help="Alert rules (TOML) to include.")
@_gap_option
@store_option
def summary(days: str, fmt: str, rules: str | None, session_gap: float | None, store: str | None) -> None:
    """The period's cost, engagement, errors and latency against the previous period."""
    config = _config(store=store)
    report = _answer("summary", lambda: _reader(config, session_gap), {"days": days, "rules": rules})
    click.echo(_json(report.data) if fmt == "json" else _rendered(report, fmt))


def _rendered(result: Any, fmt: str) -> str:
    """A result in one of the response builder's forms (``report.responses``)."""
    from ..report.responses import render

    out = render(result, fmt.replace("-", "_"))
    # Text forms quote stored text (error messages, names): no escape sequence may reach the terminal.
    return (
        terminal_text(out, keep_lines=True)
        if isinstance(out, str)
        else json.dumps(out, indent=2, ensure_ascii=False)
    )


@main.command()
@_window_options
@click.option(
    "--format", "fmt", type=click.Choice(RESPONSE_FORMS), default="text", show_default=True,
    help=RESPONSE_FORMS_HELP,
)  # fmt: skip
@store_option
def errors(days: str | None, start: str | None, end: str | None, fmt: str, store: str | None) -> None:
    """Error groups in the period: count, users, first and last seen, new or regressed."""
    config = _config(store=store)
    report = _answer("errors", lambda: _reader(config), {"days": days, "start": start, "end": end})
    click.echo(_rendered(report, fmt))


@main.command()
@click.option("--days", default=None, metavar="INTEGER", help="Days in the period [default: 7].")
@click.option("--start", default=None, help="Period start (ISO, UTC), instead of --days.")
@click.option("--end", default=None, help="Period end (ISO, UTC; default: now).")
@click.option(
    "--tz",
    "timezone",
    default="UTC",
    show_default=True,
    help="IANA time zone that times, hours and weekdays are shown in, e.g. Europe/London.",
)
@click.option(
    "--output",
    default="metrics/dashboard.html",
    show_default=True,
    type=click.Path(dir_okay=False, writable=True),
    help="The HTML file to write (folders are made).",
)
@click.option("--json", "with_json", is_flag=True, help="Also write the figures as JSON beside it (.json).")
@click.option(
    "--rules", default=None, envvar="BOTMETER_ALERTS", help="Alert rules (TOML): fired alerts are marked."
)
@click.option(
    "--budget",
    default=None,
    metavar="FLOAT",
    help="Monthly budget in USD for the forecast (else the rules').",
)
@_gap_option
@store_option
def dashboard(
    days: str | None,
    start: str | None,
    end: str | None,
    timezone: str,
    output: str,
    with_json: bool,
    rules: str | None,
    budget: str | None,
    session_gap: float | None,
    store: str | None,
) -> None:
    """Write the self-contained HTML dashboard: cost, engagement, errors and speed, one file, no network."""
    from ..report.dashboard import write_figures

    config = _config(store=store)
    raw = {
        # The command's own default period: a week (the dashboard answer's is 30 days).
        "days": days if days is not None or start or end else "7",
        "start": start,
        "end": end,
        "tz": timezone,
        "budget": budget,
        "rules": rules,
    }
    data = _answer("dashboard", lambda: _reader(config, session_gap), raw).data
    try:
        html_path, json_path = write_figures(data, output, with_json=with_json)
    except OSError as exc:
        raise click.ClickException(f"--output {output}: cannot write it ({exc.strerror or exc})") from exc
    size = html_path.stat().st_size
    click.echo(f"dashboard: {html_path.resolve()} ({size / 1024:,.0f} KiB)")
    if json_path:
        click.echo(f"figures:   {json_path.resolve()}")


@main.group()
def alerts() -> None:
    """Alert rules: budgets, error rate, latency, new and regressed error groups."""


@alerts.command("check")
@click.option("--rules", default=None, envvar="BOTMETER_ALERTS", help="Alert rules file (TOML).")
@click.option("--webhook", default=None, help="Also POST the alerts as JSON to this URL.")
@click.option("--slack-webhook", default=None, help="Also send them to this Slack incoming webhook.")
@click.option("--state", default=None, help="Where sent alerts are remembered (default: beside the store).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@store_option
def alerts_check(
    rules: str | None,
    webhook: str | None,
    slack_webhook: str | None,
    state: str | None,
    fmt: str,
    store: str | None,
) -> None:
    """Check the rules now; exit status 1 when any alert fires (for cron and CI)."""
    from ..analyse import alerts as alerting
    from ..report.alert_delivery import deliver

    config = _config(store=store)
    if not rules:
        raise click.UsageError("no alert rules: pass --rules FILE or set BOTMETER_ALERTS")
    try:
        loaded = alerting.Rules.load(rules)  # where to deliver; checked before the store is opened
    except BotmeterError as exc:
        raise _fail(exc) from exc
    reader = _reader(config)
    fired = _answer("alerts", lambda: reader, {"rules": rules}).data["alerts"]
    targets = dict(loaded.deliver)
    if webhook:
        targets["webhook"] = webhook
    if slack_webhook:
        targets["slack_webhook"] = slack_webhook
    from dataclasses import replace

    loaded = replace(loaded, deliver=targets)
    path = getattr(reader.store, "path", None)
    state_path = Path(state) if state else (Path(f"{path}.alerts.json") if path else None)
    outcome = deliver(fired, loaded, state_path)
    if fmt == "json":
        click.echo(
            _json(
                {
                    "alerts": fired,
                    **{k: v for k, v in outcome.items() if k != "sent"},
                    "sent": [a["id"] for a in outcome["sent"]],
                }
            )
        )
    else:
        if not fired:
            click.echo("no alerts")
        for a in fired:
            repeat = "" if a in outcome["sent"] else " (already sent recently; not sent again)"
            if targets.get("stdout", True) or repeat:
                click.echo(terminal_text(f"ALERT {a['rule']}: {a['message']}{repeat}"))
    for failure in outcome["failures"]:
        click.echo(f"warning: {failure}", err=True)
    sys.exit(1 if fired else 0)


@main.command()
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option(
    "--top", default=5, show_default=True, type=click.IntRange(1, 100), help="Top values per dimension."
)
@store_option
def explore(fmt: str, top: int, store: str | None) -> None:
    """What is in the store: kinds, span, events per day, fields, dimensions, unpriced models, size."""
    config = _config(store=store)
    info = _answer("explore", lambda: _reader(config), {"top": top}).data
    if fmt == "json":
        click.echo(_json(info))
        return
    console.print(
        Text.assemble(
            (f"{info['events']:,} events", "bold"), f" from {info['first_event']} to {info['last_event']}"
        )
    )
    if "storage_bytes" in info:
        per = info["bytes_per_event"]
        console.print(
            f"storage: {info['storage_bytes'] / 1e6:,.1f} MB"
            + (f" ({per:,.0f} bytes per event)" if per else "")
        )
    kinds = Table(title="events by kind")
    kinds.add_column("kind")
    kinds.add_column("events", justify="right")
    for kind, n in info["kinds"].items():
        kinds.add_row(plain(kind), f"{n:,}")
    console.print(kinds)
    fields_table = Table(title="fields")
    for column in ("field", "type", "filled", "fill rate"):
        fields_table.add_column(column, justify="right" if column in ("filled", "fill rate") else "left")
    for name, f in info["fields"].items():
        fields_table.add_row(plain(name), plain(f["type"]), f"{f['filled']:,}", f"{f['fill_rate']:.1%}")
    console.print(fields_table)
    dims = Table(title="dimensions")
    for column in ("dimension", "distinct", "top values"):
        dims.add_column(column)
    for name, d in info["dimensions"].items():
        dims.add_row(
            plain(name),
            f"{d['cardinality']:,}",
            plain(", ".join(f"{t['value']} ({t['events']:,})" for t in d["top"])),
        )
    for name, d in info["identifiers"].items():
        dims.add_row(plain(name), f"{d['cardinality']:,}", "(ids: values not listed)")
    console.print(dims)
    if info["unpriced_models"]:
        console.print(
            plain(
                "models without a price: "
                + ", ".join(
                    f"{u['provider']}/{u['model']} ({u['calls']:,} calls)" for u in info["unpriced_models"]
                )
            )
        )
    days = info["events_per_day"]
    if days:
        console.print(
            f"events per day: {len(days)} days, from {min(d['events'] for d in days):,} "
            f"to {max(d['events'] for d in days):,}"
        )


def run() -> None:  # pragma: no cover - console entry
    try:
        main()
    except BotmeterError as exc:
        # One line, as text: an error may quote stored values, which must not be read as markup.
        click.echo(f"Error: {' '.join(str(exc).split())}", err=True)
        sys.exit(2)


# Reading CloudWatch from the shortcut commands: --namespace/--region (they must exist by now).
for _name in cli_aws.SHORTCUT_COMMANDS:
    cli_aws.namespace_options(main.commands[_name])
