"""The README's configuration tables name exactly what the settings declare, and each setting is
declared once: a variable or flag added, renamed or dropped fails here until the docs follow."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from downtime_operator.cli import COMMANDS, build_parser
from downtime_operator.settings import MonitorSettings, OperatorSettings, settings_of

README = Path(__file__).resolve().parents[2] / "README.md"
VARIABLE = re.compile(r"`([A-Z][A-Z0-9_]+)`")
FLAG = re.compile(r"`(--?[a-z][a-z-]*)`")


def table_after(heading: str) -> list[list[str]]:
    """The cells of the first table under ``heading`` (header and separator rows left out)."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index(f"\n## {heading}\n") :]
    rows = re.search(r"^\|.*?(?=\n[^|])", section, re.MULTILINE | re.DOTALL)
    assert rows is not None, f"no table under {heading!r}"
    cells = [[cell.strip() for cell in row.strip("|").split(" | ")] for row in rows[0].split("\n")]
    return cells[2:]


def variables(model: type[BaseModel]) -> set[str]:
    return {name for setting in settings_of(model) for name in setting.source.env}


def flags(model: type[BaseModel]) -> set[str]:
    return {
        name
        for setting in settings_of(model)
        for name in (setting.source.flag, setting.source.short)
        if name is not None
    }


def test_the_operator_table_names_every_variable_of_run() -> None:
    documented = {
        v for row in table_after("Configuration (environment)") for v in VARIABLE.findall(row[0])
    }
    assert documented == variables(OperatorSettings)


def test_the_monitor_table_names_every_flag_and_variable_of_monitor() -> None:
    rows = table_after("Without Kubernetes")
    assert {f for row in rows for f in FLAG.findall(row[0])} == flags(MonitorSettings)
    assert {v for row in rows for v in VARIABLE.findall(row[1])} == variables(MonitorSettings)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_variable_and_flag_is_one_setting(name: str) -> None:
    model = COMMANDS[name].settings
    env = [v for setting in settings_of(model) for v in setting.source.env]
    assert len(env) == len(set(env))
    declared = [f for setting in settings_of(model) for f in (setting.source.flag,) if f]
    assert len(declared) == len(set(declared))


def test_the_parser_offers_exactly_the_declared_flags() -> None:
    subcommands = next(
        action for action in build_parser()._actions if action.dest == "command"
    ).choices
    assert subcommands is not None
    for name, command in COMMANDS.items():
        offered = {
            option
            for action in subcommands[name]._actions
            for option in action.option_strings
            if option not in ("-h", "--help")
        }
        assert offered == (flags(command.settings) if command.takes_flags else set()), name


def test_every_setting_has_a_one_line_description() -> None:
    for command in COMMANDS.values():
        for setting in settings_of(command.settings):
            description = setting.field.description or ""
            assert description and "\n" not in description, setting.path
