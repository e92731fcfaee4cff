"""`sde keycloak`: Keycloak, driven by the registry."""

from __future__ import annotations

import json

import typer

from sde.cli.context import actor, console, read, settings, write

app = typer.Typer(
    name="keycloak",
    help="Keycloak, the identity provider, kept in step with the registry.",
    no_args_is_help=True,
)


@app.command("sync")
def sync_command(
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print what would change; change nothing."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the changes as JSON."),
) -> None:
    """Make Keycloak's users and groups what the registry grants; print each change.

    Users, names and emails from the registry; disabled while the registry
    refuses the person (status, accreditation, training) and when the registry
    does not know them (never deleted); groups /projects/SLUG and /roles/ROLE.
    Every change is audited (keycloak.sync). Groups grant nothing: every spawn,
    request and review still asks the registry.
    """
    from sde.keycloak.sync import sync

    report = sync(settings(), read=read, write=write, actor=actor(), dry_run=dry_run)
    if as_json:
        print(
            json.dumps(
                {
                    "dry_run": report.dry_run,
                    "changes": [c.as_dict() for c in report.changes],
                    "unknown": report.unknown,
                    "people": report.people,
                    "users": report.users,
                    "seconds": round(report.seconds, 3),
                }
            )
        )
        return
    for line in report.lines():
        console.print(line, highlight=False, markup=False)


def register(root: typer.Typer) -> None:
    root.add_typer(app)
