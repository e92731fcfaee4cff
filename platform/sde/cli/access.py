"""`sde access`: ask the registry's access decision."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import typer

from sde.cli.context import console, read
from sde.core.errors import InvalidInput
from sde.registry.access import access_decision

app = typer.Typer(name="access", help="Check who may work on which project.", no_args_is_help=True)


@app.command("check")
def check(
    username: str = typer.Argument(..., help="The person."),
    project: str = typer.Argument(..., help="Project id."),
    at: str | None = typer.Option(None, "--at", help="When (ISO date or time; default now)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Print whether USER may work on PROJECT and why; exit 1 when denied."""
    when = datetime.now(UTC)
    if at:
        try:
            when = datetime.fromisoformat(at)
        except ValueError:
            raise InvalidInput(f"invalid --at {at!r}: expected an ISO date or time") from None
    with read() as session:
        decision = access_decision(session, username, project, when)
    if as_json:
        print(
            json.dumps(
                {"allowed": decision.allowed, "reasons": decision.reasons, "role": decision.role}
            )
        )
    elif decision.allowed:
        console.print(f"[green]allowed[/green]: {username} on {project} as {decision.role}")
    else:
        console.print(f"[red]denied[/red]: {username} on {project}")
        for reason in decision.reasons:
            console.print(f"  - {reason}")
    if not decision.allowed:
        raise typer.Exit(1)


def register(root: typer.Typer) -> None:
    root.add_typer(app)
