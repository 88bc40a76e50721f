"""The collector's commands: ``botmeter serve`` and ``botmeter tokens create|list|revoke``.

Registered on ``main`` (``cli_group``) when ``cli.py`` imports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from ..exceptions import BotmeterError
from ..store import open_store
from .cli_group import _config, _fail, main, store_option

if TYPE_CHECKING:
    from ..server.auth import TokenFile


@main.command()
@store_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8787, show_default=True, type=click.IntRange(0, 65535), help="Port.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64), help="Worker processes.")
@click.option(
    "--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True, help="Log lines."
)
@click.option(
    "--max-body-mb",
    type=click.FloatRange(min=0.001),
    default=10.0,
    show_default=True,
    help="Largest request body (also once decompressed); larger gets 413.",
)
@click.option(
    "--max-batch-events",
    type=click.IntRange(min=1),
    default=10_000,
    show_default=True,
    help="Most events in one request; more gets 413.",
)
@click.option(
    "--rate-limit",
    type=click.FloatRange(min=0),
    default=100_000.0,
    show_default=True,
    help="Events per second per token (a second's worth of burst); over it, 429. 0: no limit.",
)
@click.option(
    "--max-pending-events",
    type=click.IntRange(min=1),
    default=200_000,
    show_default=True,
    help="Events received but not yet stored; past it, 503.",
)
@click.option(
    "--read-timeout",
    type=click.FloatRange(min=0.1),
    default=30.0,
    show_default=True,
    help="Seconds a client may take to send a request body; slower gets 408.",
)
@click.option("--tokens-file", default=None, help="Where token hashes are kept (default: beside the store).")
def serve(store: str | None, tokens_file: str | None, **options: object) -> None:
    """Run the collector: an HTTP service taking events from many bots into one store."""
    from ..server.run import serve as run_server
    from ..server.settings import ServerConfig

    config = _config(store=store)
    run_server(ServerConfig(store=config.store, tokens_file=tokens_file, **options))  # type: ignore[arg-type]


@main.group()
def tokens() -> None:
    """Tokens for the collector: create, list, revoke."""


def _token_file(store: str | None, tokens_file: str | None) -> TokenFile:
    from ..server.auth import TokenFile, tokens_path

    config = _config(store=store)
    return TokenFile(tokens_path(open_store(config.store), tokens_file))


_tokens_file_option = click.option(
    "--tokens-file", default=None, help="Where token hashes are kept (default: beside the store)."
)


@tokens.command("create")
@click.option("--bot", required=True, help="The bot whose events the token may send.")
@click.option("--scope", default="ingest", show_default=True, help="ingest, read, or ingest,read.")
@store_option
@_tokens_file_option
def tokens_create(bot: str, scope: str, store: str | None, tokens_file: str | None) -> None:
    """Create a token; it is printed once, as the last line, and only its hash is kept."""
    from ..server.auth import parse_scopes

    try:
        scopes = parse_scopes(scope)
        file = _token_file(store, tokens_file)
        token = file.create(bot, scopes)
    except BotmeterError as exc:
        raise _fail(exc) from exc
    click.echo(f"token for bot {bot!r}, scope {','.join(scopes)}; it is shown only now:", err=True)
    click.echo(token)


@tokens.command("list")
@store_option
@_tokens_file_option
def tokens_list(store: str | None, tokens_file: str | None) -> None:
    """List tokens (id, bot, scopes, created, revoked); never the tokens themselves."""
    file = _token_file(store, tokens_file)
    found = file.load()
    if not found:
        click.echo("no tokens")
        return
    for t in found.values():
        state = f"revoked {t.revoked_at}" if t.revoked_at else "active"
        click.echo(f"{t.id}  bot={t.bot}  scope={','.join(t.scopes)}  created {t.created_at}  {state}")


@tokens.command("revoke")
@click.argument("token_id")
@store_option
@_tokens_file_option
def tokens_revoke(token_id: str, store: str | None, tokens_file: str | None) -> None:
    """Revoke a token by its id (as `tokens list` shows it); the server stops taking it within a second."""
    try:
        revoked = _token_file(store, tokens_file).revoke(token_id)
    except BotmeterError as exc:
        raise _fail(exc) from exc
    click.echo(f"revoked {revoked.id} (bot {revoked.bot})")
