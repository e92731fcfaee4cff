"""Entry point of the `sde` command.

Each command group lives with its component and is declared in the `sde.cli`
entry-point group as a `register(app)` function, which attaches its commands to
the root command. Errors a user can fix (`SdeError`) print one line and exit 2;
usage errors exit 2 as well.
"""

from __future__ import annotations

import sys
from importlib.metadata import entry_points
from typing import Any

import click
import typer
from typer.core import TyperGroup

from sde.core.errors import SdeError

# The entry-point group of sde's command groups: NAME = "sde.PORTION.MODULE:register".
COMMANDS = "sde.cli"


class Commands(TyperGroup):
    """The root command, listing its commands by name.

    Entry points come in no order a component can choose, so help lists them
    alphabetically rather than in whatever order they happened to be attached.
    """

    def list_commands(self, ctx: Any) -> list[str]:
        return sorted(self.commands)


app = typer.Typer(
    cls=Commands,
    name="sde",
    help="sde: an open secure data environment. Run `sde COMMAND --help` for details.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def register_commands(root: typer.Typer) -> None:
    """Attach every command group declared in the `sde.cli` entry-point group.

    Each component declares its own (pyproject.toml), so a new one (the airlock,
    Keycloak sign-in) plugs in without an edit here.
    """
    for entry_point in entry_points(group=COMMANDS):
        entry_point.load()(root)


register_commands(app)


def main(argv: list[str] | None = None) -> None:
    try:
        result = app(args=argv, prog_name="sde", standalone_mode=False)
    except SdeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        print("aborted", file=sys.stderr)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    sys.exit(result if isinstance(result, int) else 0)


if __name__ == "__main__":
    main()
