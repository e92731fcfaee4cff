"""The `sde` command's groups come from the `sde.cli` entry points, and none went missing.

The commands were attached by `sde.cli.main` itself before each component
declared its own through an entry point; `sde --help` must list the same ones.
"""

from __future__ import annotations

from importlib.metadata import entry_points

import typer
import typer.main

from sde.cli.main import COMMANDS, app
from tests.support.cli import run_sde

# `sde --help` before the command groups moved to entry points (listed by name now).
BEFORE = [
    "access",
    "audit",
    "config",
    "data",
    "datasets",
    "db",
    "demo",
    "hub",
    "ingest",
    "optout",
    "people",
    "projects",
    "synth",
    "workspaces",
]


def test_cli_commands_same_as_before_entry_points(capsys):
    root = typer.main.get_command(app)
    commands = root.list_commands(typer.Context(root))
    # None went missing; components added since (the airlock, Keycloak) plug in beside them.
    assert set(BEFORE) <= set(commands)
    assert commands == sorted(commands)
    result = run_sde(capsys, "--help")
    assert result.code == 0, result.err
    # The first word of each row of the help's panels; wrapped descriptions start blank.
    rows = [line[2:] for line in result.out.splitlines() if line.startswith("│ ")]
    listed = [row.split()[0] for row in rows if row[:1].strip() and row[0] != "-"]
    assert listed == commands


def test_cli_entry_points_each_register_a_component():
    declared = {ep.name: ep for ep in entry_points(group=COMMANDS)}
    assert "demo" in declared and "hub" in declared
    for name, ep in declared.items():
        assert ep.value.startswith("sde.") and ep.value.endswith(":register"), name
        assert callable(ep.load()), name
