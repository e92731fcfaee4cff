"""The one decision on who may work on which project, and when.

Every component (spawner, airlock, provisioning) calls `access_decision` at
the moment of the action, so a lapse takes effect at once rather than at the
next sign-in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from sde.registry.models import Membership, Person, Project
from sde.registry.service import lapsed


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reasons: list[str] = field(default_factory=list)
    role: str | None = None

    def explain(self) -> str:
        if self.allowed:
            return f"allowed ({self.role})"
        return "denied: " + "; ".join(self.reasons)


def access_decision(
    session: Session, username: str, project_slug: str, at: datetime | date | None = None
) -> Decision:
    """May `username` work in `project_slug` at time `at` (default now)? All reasons are listed."""
    moment = at or datetime.now(UTC)
    day = moment.date() if isinstance(moment, datetime) else moment
    reasons: list[str] = []

    person = session.scalar(select(Person).where(Person.username == username))
    project = session.get(Project, project_slug)
    if person is None:
        reasons.append(f"unknown user {username!r}")
    else:
        if person.status != "active":
            reasons.append(f"user is {person.status}")
        reasons.extend(lapsed(person, day))
    if project is None:
        reasons.append(f"unknown project {project_slug!r}")
    else:
        if project.status != "active":
            reasons.append(f"project is {project.status}, not active")
        if not project.approval_ref or not project.controller_signoff_by:
            reasons.append("project has no recorded approval and data-controller sign-off")
        if day < project.start_date:
            reasons.append(f"project starts on {project.start_date}")
        if day > project.end_date:
            reasons.append(f"project ended on {project.end_date}")

    role = None
    if person is not None and project is not None:
        role = session.scalar(
            select(Membership.role).where(
                Membership.person_id == person.id, Membership.project_slug == project_slug
            )
        )
        if role is None:
            reasons.append(f"not a member of project {project_slug}")
    return Decision(allowed=not reasons, reasons=reasons, role=role if not reasons else None)


def projects_of(session: Session, username: str) -> list[str]:
    """Slugs of the projects a person is a member of (whatever their state)."""
    return list(
        session.scalars(
            select(Membership.project_slug)
            .join(Person)
            .where(Person.username == username)
            .order_by(Membership.project_slug)
        )
    )
