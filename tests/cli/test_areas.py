"""The table of which module holds which command equals what each module registers."""

from __future__ import annotations

import importlib

import click
from click.testing import CliRunner

from rasd.cli import AREAS, main


def test_each_area_registers_exactly_the_commands_the_table_names() -> None:
    for module, names in AREAS.items():
        group = click.Group()
        importlib.import_module(module).register(group)
        assert set(group.commands) == set(names), module


def test_help_lists_every_command_and_an_unknown_one_is_refused() -> None:
    r = CliRunner().invoke(main, ["--help"])
    assert r.exit_code == 0
    for names in AREAS.values():
        for name in names:
            assert f"  {name} " in r.output, name
    r = CliRunner().invoke(main, ["replai"])
    assert r.exit_code == 2 and "replay" in r.output  # click's "did you mean"
