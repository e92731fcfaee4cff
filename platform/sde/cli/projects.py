"""`sde projects`: approved projects, their members and lifecycle."""

from __future__ import annotations

from typing import Any

import typer
from sqlalchemy import select

from sde.cli.context import actor, console, read, show, write
from sde.core.errors import InvalidInput
from sde.registry import policies, service
from sde.registry.enums import ProjectRole, spoken
from sde.registry.models import Project
from sde.registry.validate import parse_date

app = typer.Typer(
    name="projects", help="Projects, approvals, members and lifecycle.", no_args_is_help=True
)


def _date(kind: str, value: str) -> Any:
    parsed = parse_date(kind, value)
    if parsed is None:
        raise InvalidInput(f"{kind} is required")
    return parsed


def project_row(p: Project) -> dict[str, Any]:
    return {
        "slug": p.slug,
        "title": p.title,
        "status": p.status,
        "start_date": p.start_date,
        "end_date": p.end_date,
        "approval_ref": p.approval_ref,
        "signed_off_by": p.controller_signoff_by,
        "members": ",".join(sorted(f"{m.person.username}:{m.role}" for m in p.memberships)),
        "grants": ",".join(sorted(g.dataset_version.label for g in p.grants)),
    }


@app.command("create")
def create(
    slug: str = typer.Argument(..., help="Project id, 1-30 of a-z 0-9 -."),
    title: str = typer.Option(..., "--title", help="Title."),
    start: str = typer.Option(..., "--start", help="Start date, YYYY-MM-DD."),
    end: str = typer.Option(..., "--end", help="End date, YYYY-MM-DD."),
    summary: str = typer.Option("", "--summary", help="Lay summary (published to the public)."),
) -> None:
    """Propose a project."""
    with write() as session:
        service.create_project(
            session,
            actor(),
            slug=slug,
            title=title,
            lay_summary=summary,
            start_date=_date("start date", start),
            end_date=_date("end date", end),
        )
    console.print(f"created project {slug} (proposed)")


@app.command("update")
def update(
    slug: str = typer.Argument(..., help="Project id."),
    title: str | None = typer.Option(None, "--title", help="New title."),
    summary: str | None = typer.Option(None, "--summary", help="New lay summary."),
    start: str | None = typer.Option(None, "--start", help="New start date."),
    end: str | None = typer.Option(None, "--end", help="New end date (extension)."),
) -> None:
    """Change a project's title, summary or dates."""
    with write() as session:
        service.update_project(
            session,
            actor(),
            slug,
            title=title,
            lay_summary=summary,
            start_date=parse_date("start date", start),
            end_date=parse_date("end date", end),
        )
    console.print(f"updated project {slug}")


@app.command("approve")
def approve(
    slug: str = typer.Argument(..., help="Project id."),
    approval_ref: str = typer.Option(
        ..., "--approval-ref", help="Approval reference (e.g. IGARD-123)."
    ),
    signed_off_by: str = typer.Option(
        ..., "--signed-off-by", help="Data controller who signed off."
    ),
    signed_off_on: str = typer.Option(..., "--signed-off-on", help="Date of sign-off, YYYY-MM-DD."),
) -> None:
    """Record the approval and the data controller's sign-off."""
    with write() as session:
        service.approve_project(
            session,
            actor(),
            slug,
            approval_ref=approval_ref,
            signed_off_by=signed_off_by,
            signed_off_on=_date("sign-off date", signed_off_on),
        )
    console.print(f"approved project {slug}")


@app.command("activate")
def activate(
    slug: str = typer.Argument(..., help="Project id."),
    reason: str = typer.Option("", "--reason", help="Note for the audit log."),
) -> None:
    """Open an approved project for work."""
    with write() as session:
        service.activate_project(session, actor(), slug, reason)
    console.print(f"project {slug} is active")


@app.command("suspend")
def suspend(
    slug: str = typer.Argument(..., help="Project id."),
    reason: str = typer.Option(..., "--reason", help="Why (recorded in the audit log)."),
) -> None:
    """Pause an active project: access stops until it is activated again."""
    with write() as session:
        service.suspend_project(session, actor(), slug, reason)
    console.print(f"project {slug} suspended")


@app.command("close")
def close(
    slug: str = typer.Argument(..., help="Project id."),
    reason: str = typer.Option("", "--reason", help="Note for the audit log."),
) -> None:
    """Close a project for good."""
    with write() as session:
        service.close_project(session, actor(), slug, reason)
    console.print(f"project {slug} closed")


@app.command("add-member")
def add_member(
    slug: str = typer.Argument(..., help="Project id."),
    username: str = typer.Argument(..., help="The person."),
    role: str = typer.Option(ProjectRole.RESEARCHER, "--role", help=f"{spoken(ProjectRole)}."),
) -> None:
    """Add a person to a project."""
    with write() as session:
        service.add_member(session, actor(), slug, username, role)
    console.print(f"{username} joined {slug} as {role}")


@app.command("remove-member")
def remove_member(
    slug: str = typer.Argument(..., help="Project id."),
    username: str = typer.Argument(..., help="The person."),
) -> None:
    """Remove a person from a project."""
    with write() as session:
        service.remove_member(session, actor(), slug, username)
    console.print(f"{username} left {slug}")


@app.command("list")
def list_projects(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List projects."""
    with read() as session:
        rows = [project_row(p) for p in session.scalars(select(Project).order_by(Project.slug))]
    show(
        rows,
        ["slug", "title", "status", "start_date", "end_date", "members", "grants"],
        as_json,
        "Projects",
    )


@app.command("show")
def show_project(
    slug: str = typer.Argument(..., help="Project id."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show one project."""
    with read() as session:
        row = project_row(service.get_project(session, slug))
    show([row], list(row), as_json, slug)


@app.command("lifecycle")
def lifecycle() -> None:
    """Print the project lifecycle (states, owners, transitions) as Markdown with a diagram."""
    print(policies.lifecycle_reference())


def register(root: typer.Typer) -> None:
    root.add_typer(app)
