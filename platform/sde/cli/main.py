"""Entry point of the `sde` command.

Each command group lives in its own module and is attached here. Errors a user
can fix (`SdeError`) print one line and exit 2; usage errors exit 2 as well.
"""

from __future__ import annotations

import sys

import click
import typer

from sde.core.errors import SdeError

app = typer.Typer(
    name="sde",
    help="sde: an open secure data environment. Run `sde COMMAND --help` for details.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _register() -> None:
    # Imported here so that `sde --help` stays one import away from every group.
    from sde.cli import access, audit, config, datasets, db, demo, people, projects

    for module in (people, projects, datasets, access, audit, db, config):
        app.add_typer(module.app)
    demo.register(app)
    for register in _plugin_registrars():
        register(app)


def _plugin_registrars() -> list:
    """Command groups contributed by other sde portions (data, hub, airlock)."""
    registrars = []
    for name in (
        "sde.synth.cli",
        "sde.ingest.cli",
        "sde.provision.cli",
        "sde.hub.cli",
        "sde.workspaces.cli",
    ):
        try:
            module = __import__(name, fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):
                continue
            raise
        registrars.append(module.register)
    return registrars


_register()


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
