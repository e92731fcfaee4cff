"""The one decision on who may work on which project, and when.

Every component (spawner, airlock, provisioning) calls `access_decision` at
the moment of the action, so a lapse takes effect at once rather than at the
next sign-in. The rules over states and dates it applies live in
`sde.registry.policies`; this module only reads and never imports the writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from sde.registry.models import Membership, Person, Project
from sde.registry.policies import person_problems, project_problems


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
        reasons.extend(person_problems(person, day))
    if project is None:
        reasons.append(f"unknown project {project_slug!r}")
    else:
        reasons.extend(project_problems(project, day))

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
