"""The command line's AWS part: ``--namespace``/``--region`` on ``query`` and ``summary`` (a shortcut
for ``--store cloudwatch://?namespace=...&region=...``), and ``botmeter cloudwatch dashboard``,
which writes a native CloudWatch dashboard over the metrics the CloudWatch store records.

Registered on ``main`` (``cli_group``) when ``cli.py`` imports it; ``cli.py`` adds the options to its
shortcut commands with ``namespace_options`` rather than repeating them.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any
from urllib.parse import urlencode

import click
from click.core import ParameterSource

from ..exceptions import BotmeterError
from .cli_group import _config, main

SHORTCUT_COMMANDS = ("query", "summary", "dashboard")
LATENCY_STATS = ("p50", "p95", "p99")


def cloudwatch_url(namespace: str | None, region: str | None) -> str:
    """The CloudWatch store URL for a namespace and region (either may be left to the settings)."""
    options = {k: v for k, v in (("namespace", namespace), ("region", region)) if v}
    return f"cloudwatch://?{urlencode(options)}" if options else "cloudwatch://"


def namespace_options(command: click.Command) -> None:
    """Adds --namespace and --region to a command that takes --store, and turns them into its store."""
    command.params += [
        click.Option(
            ["--namespace"],
            default=None,
            help="CloudWatch namespace: reads the CloudWatch store (instead of --store).",
        ),
        click.Option(["--region"], default=None, help="AWS region of the CloudWatch store."),
    ]
    callback = command.callback
    assert callback is not None

    @functools.wraps(callback)
    def run(*args: Any, namespace: str | None, region: str | None, **kwargs: Any) -> Any:
        if namespace or region:
            ctx = click.get_current_context()
            if ctx.get_parameter_source("store") == ParameterSource.COMMANDLINE:
                raise click.UsageError("give --store or --namespace/--region, not both")
            kwargs["store"] = cloudwatch_url(namespace, region)
        return callback(*args, **kwargs)

    command.callback = run


# -- botmeter cloudwatch dashboard ---------------------------------------------------------------


def _search(namespace: str, dims: tuple[str, ...], metric: str, stat: str, period: int) -> str:
    # SEARCH finds every series (every bot, model, stage...) as it appears: no list to keep up to date.
    schema = ",".join([_quote(namespace), *dims])
    return f"SEARCH('{{{schema}}} MetricName=\"{metric}\"', '{stat}', {period})"


def _quote(text: str) -> str:
    # In a SEARCH schema a name with anything but letters, digits, '.', '_' or '-' is quoted.
    if re.fullmatch(r"[A-Za-z0-9._-]+", text):
        return text
    return '"' + text.replace('"', '\\"') + '"'


def _widget(
    title: str, expressions: list[tuple[str, str]], region: str, x: int, y: int, *, stat: str = "Sum"
) -> dict[str, Any]:
    return {
        "type": "metric",
        "x": x,
        "y": y,
        "width": 12,
        "height": 6,
        "properties": {
            "title": title,
            "region": region,
            "view": "timeSeries",
            "stacked": False,
            "stat": stat,
            "metrics": [[{"expression": expr, "id": ident, "label": ""}] for ident, expr in expressions],
        },
    }


def dashboard_body(namespace: str, region: str, period: int = 3600) -> dict[str, Any]:
    """A CloudWatch dashboard (PutDashboard's DashboardBody) over the store's metrics: cost,
    messages, LLM calls, errors by category, latency p50/p95/p99 per stage."""
    ns = namespace
    widgets = [
        {
            "type": "text",
            "x": 0,
            "y": 0,
            "width": 24,
            "height": 2,
            "properties": {
                "markdown": f"## botmeter: {namespace}\nWhat the bot costs, how it is used, what goes wrong "
                "and how fast it answers (metrics recorded by botmeter's CloudWatch store)."
            },
        },
        _widget(
            "Cost (USD)",
            [
                ("cost", _search(ns, ("Bot",), "CostUSD", "Sum", period)),
                ("costprovider", _search(ns, ("Bot", "Provider"), "CostUSD", "Sum", period)),
            ],
            region,
            0,
            2,
        ),
        _widget(
            "Messages",
            [
                ("inbound", _search(ns, ("Bot",), "InboundMessages", "Sum", period)),
                ("outbound", _search(ns, ("Bot",), "OutboundMessages", "Sum", period)),
            ],
            region,
            12,
            2,
        ),
        _widget(
            "LLM calls by model",
            [("llm", _search(ns, ("Bot", "Provider", "Model"), "LlmCalls", "Sum", period))],
            region,
            0,
            8,
        ),
        _widget(
            "Errors by category",
            [("errors", _search(ns, ("Bot", "ErrorCategory"), "Errors", "Sum", period))],
            region,
            12,
            8,
        ),
    ]
    for i, stat in enumerate(LATENCY_STATS):
        widgets.append(
            _widget(
                f"Latency {stat} per stage (ms)",
                [(f"latency{stat}", _search(ns, ("Bot", "Stage"), "LatencyMs", stat, period))],
                region,
                (i % 2) * 12,
                14 + (i // 2) * 6,
                stat=stat,
            )
        )
    widgets.append(
        _widget(
            "LLM latency p95 per model (ms)",
            [("llmlatency", _search(ns, ("Bot", "Provider", "Model"), "LlmLatencyMs", "p95", period))],
            region,
            12,
            20,
            stat="p95",
        )
    )
    return {"start": "-P7D", "periodOverride": "inherit", "widgets": widgets}


def dashboard_name(namespace: str) -> str:
    return ("botmeter-" + re.sub(r"[^A-Za-z0-9_-]", "-", namespace))[:255]


@main.group()
def cloudwatch() -> None:
    """CloudWatch: a native dashboard over the metrics the CloudWatch store records."""


@cloudwatch.command("dashboard")
@click.option("--namespace", default=None, help="CloudWatch namespace (or BOTMETER_CLOUDWATCH_NAMESPACE).")
@click.option("--region", default=None, help="AWS region (or BOTMETER_CLOUDWATCH_REGION, AWS_REGION).")
@click.option("--name", default=None, help="Dashboard name [default: botmeter-<namespace>].")
@click.option("--print", "print_only", is_flag=True, help="Print the dashboard body instead of writing it.")
def cloudwatch_dashboard(
    namespace: str | None, region: str | None, name: str | None, print_only: bool
) -> None:
    """Write a CloudWatch dashboard: cost, messages, LLM calls, errors by category, latency per stage."""
    from ..backends.cloudwatch.store import CloudWatchStore

    config = _config(store=cloudwatch_url(namespace, region))
    if name is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,255}", name):
        raise click.BadParameter(f"{name!r}: 1-255 of A-Z a-z 0-9 - _", param_hint="--name")
    try:
        store = CloudWatchStore(config.store, config=config)
        region_name = store.region or store.resolved_region()
        body = dashboard_body(store.namespace, region_name)
        name = name or dashboard_name(store.namespace)
        if print_only:
            click.echo(json.dumps(body, indent=2))
            return
        answer = store.call("cloudwatch", "put_dashboard", DashboardName=name, DashboardBody=json.dumps(body))
    except BotmeterError as exc:
        raise click.ClickException(str(exc)) from exc
    for message in answer.get("DashboardValidationMessages", []):
        click.echo(f"warning: {message.get('DataPath', '')}: {message.get('Message', '')}", err=True)
    click.echo(f"dashboard {name} written in {region_name} (namespace {store.namespace})")
