"""`sde people`: the register of accredited people and their global roles."""

from __future__ import annotations

from typing import Any

import typer
from sqlalchemy import select

from sde.cli.context import actor, console, read, show, write
from sde.registry import service
from sde.registry.enums import GlobalRoleName, PersonStatus, spoken
from sde.registry.models import Person
from sde.registry.validate import parse_date

app = typer.Typer(
    name="people", help="Register people, their accreditation and roles.", no_args_is_help=True
)


def person_row(p: Person) -> dict[str, Any]:
    return {
        "username": p.username,
        "full_name": p.full_name,
        "email": p.email,
        "status": p.status,
        "accreditation_ref": p.accreditation_ref,
        "accreditation_expiry": p.accreditation_expiry,
        "training_expiry": p.training_expiry,
        "roles": ",".join(p.role_names),
        "projects": ",".join(sorted(f"{m.project_slug}:{m.role}" for m in p.memberships)),
    }


@app.command("add")
def add(
    username: str = typer.Argument(..., help="Unique login name (a-z 0-9 . _ -)."),
    name: str = typer.Option(..., "--name", help="Full name."),
    email: str = typer.Option(..., "--email", help="Email address (unique)."),
    accreditation_ref: str | None = typer.Option(
        None, help="Accreditation reference, e.g. DEA-123."
    ),
    accreditation_expiry: str | None = typer.Option(None, help="Accreditation expiry, YYYY-MM-DD."),
    training_completed: str | None = typer.Option(None, help="Training completion, YYYY-MM-DD."),
    training_expiry: str | None = typer.Option(None, help="Training expiry, YYYY-MM-DD."),
) -> None:
    """Register a person."""
    with write() as session:
        service.add_person(
            session,
            actor(),
            username=username,
            full_name=name,
            email=email,
            accreditation_ref=accreditation_ref,
            accreditation_expiry=parse_date("accreditation expiry", accreditation_expiry),
            training_completed=parse_date("training completion", training_completed),
            training_expiry=parse_date("training expiry", training_expiry),
        )
    console.print(f"added {username}")


@app.command("update")
def update(
    username: str = typer.Argument(..., help="The person to change."),
    name: str | None = typer.Option(None, "--name", help="New full name."),
    email: str | None = typer.Option(None, "--email", help="New email address."),
    accreditation_ref: str | None = typer.Option(None, help="New accreditation reference."),
    accreditation_expiry: str | None = typer.Option(None, help="New accreditation expiry."),
    training_completed: str | None = typer.Option(None, help="New training completion date."),
    training_expiry: str | None = typer.Option(None, help="New training expiry."),
) -> None:
    """Change a person's details (renewed accreditation or training, new email)."""
    with write() as session:
        service.update_person(
            session,
            actor(),
            username,
            full_name=name,
            email=email,
            accreditation_ref=accreditation_ref,
            accreditation_expiry=parse_date("accreditation expiry", accreditation_expiry),
            training_completed=parse_date("training completion", training_completed),
            training_expiry=parse_date("training expiry", training_expiry),
        )
    console.print(f"updated {username}")


def _status_command(name: str, status: PersonStatus, done: str, summary: str) -> None:
    def command(
        username: str = typer.Argument(..., help="The person."),
        reason: str = typer.Option(..., "--reason", help="Why (recorded in the audit log)."),
    ) -> None:
        with write() as session:
            service.set_person_status(session, actor(), username, status, reason)
        console.print(f"{username} {done}")

    command.__doc__ = summary
    app.command(name)(command)


_status_command(
    "suspend",
    PersonStatus.SUSPENDED,
    "suspended",
    "Suspend a person: all their access stops at once.",
)
_status_command("reinstate", PersonStatus.ACTIVE, "reinstated", "Reinstate a suspended person.")
_status_command(
    "leave",
    PersonStatus.LEFT,
    "marked as left",
    "Mark a person as having left the organisation (access ends, records stay).",
)


@app.command("grant-role")
def grant_role(
    username: str = typer.Argument(..., help="The person."),
    role: str = typer.Argument(..., help=f"{spoken(GlobalRoleName)}."),
) -> None:
    """Give a person a global role."""
    with write() as session:
        service.grant_role(session, actor(), username, role)
    console.print(f"{username} is now {role}")


@app.command("revoke-role")
def revoke_role(
    username: str = typer.Argument(..., help="The person."),
    role: str = typer.Argument(..., help=f"{spoken(GlobalRoleName)}."),
) -> None:
    """Take a global role away."""
    with write() as session:
        service.revoke_role(session, actor(), username, role)
    console.print(f"{username} is no longer {role}")


@app.command("list")
def list_people(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List everyone in the register."""
    with read() as session:
        rows = [person_row(p) for p in session.scalars(select(Person).order_by(Person.username))]
    show(
        rows,
        [
            "username",
            "full_name",
            "status",
            "accreditation_expiry",
            "training_expiry",
            "roles",
            "projects",
        ],
        as_json,
        "People",
    )


@app.command("show")
def show_person(
    username: str = typer.Argument(..., help="The person."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show one person."""
    with read() as session:
        row = person_row(service.get_person(session, username))
    show([row], list(row), as_json, username)


def register(root: typer.Typer) -> None:
    root.add_typer(app)
