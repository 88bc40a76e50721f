"""Everything a user can set or run is in the README: a new setting or command fails here until documented."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from botmeter.config import SETTINGS, settings_table
from botmeter.events import RECORDS
from botmeter.interfaces.cli import main

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_readme_first_screen_has_the_two_commands():
    first_screen = "\n".join(README.splitlines()[:20])
    assert "make demo" in first_screen and "make test" in first_screen


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.env)
def test_every_setting_is_documented(setting):
    assert f"`{setting.env}`" in README
    for alias in setting.aliases:
        assert f"`{alias}`" in README


def test_the_settings_table_is_the_declaration():
    # Variable, aliases, default and help of every setting come from config.SETTINGS: a changed
    # default or a new setting fails here until the README's table says the same.
    assert settings_table() in README


def _commands(group: click.Group, prefix: str = "botmeter"):
    for name, command in group.commands.items():
        path = f"{prefix} {name}"
        if isinstance(command, click.Group):
            yield from _commands(command, path)
        else:
            yield path, command


COMMANDS = list(_commands(main))


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[p for p, _ in COMMANDS])
def test_every_command_and_option_is_documented(path, command):
    assert path in README
    for param in command.params:
        if isinstance(param, click.Option):
            assert any(opt in README for opt in param.opts), f"{path}: {param.opts} undocumented"


@pytest.mark.parametrize("call", sorted(RECORDS))
def test_every_track_call_is_documented(call):
    assert f"{call}(" in README
    for name in RECORDS[call].names:
        assert name in README
