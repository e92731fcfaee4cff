"""The demo registry: accredited people with their roles and one active project."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from sde.demo import DEMO_ACTOR, DEMO_PROJECT
from sde.registry import service
from sde.registry.enums import GlobalRoleName, ProjectRole
from sde.registry.models import Person, Project

# username, full name, global roles, project role in the demo project
DEMO_PEOPLE: list[tuple[str, str, tuple[GlobalRoleName, ...], ProjectRole | None]] = [
    ("alice", "Alice Researcher", (), ProjectRole.PRINCIPAL_INVESTIGATOR),
    ("bob", "Bob Analyst", (), ProjectRole.RESEARCHER),
    ("carol", "Carol Checker", (GlobalRoleName.OUTPUT_CHECKER,), None),
    ("dan", "Dan Checker", (GlobalRoleName.OUTPUT_CHECKER,), None),
    ("erin", "Erin Auditor", (GlobalRoleName.AUDITOR,), None),
    ("oscar", "Oscar Operator", (GlobalRoleName.OPERATOR,), None),
]


def seed_registry(session: Session) -> list[str]:
    """Create the demo people and project; returns what was made."""
    made: list[str] = []
    today = datetime.now(UTC).date()
    for username, name, roles, _ in DEMO_PEOPLE:
        if session.scalar(select(Person).where(Person.username == username)) is None:
            service.add_person(
                session,
                DEMO_ACTOR,
                username=username,
                full_name=name,
                email=f"{username}@demo.sde.invalid",
                accreditation_ref=f"DEMO-{username.upper()}",
                accreditation_expiry=today + timedelta(days=365),
                training_completed=today - timedelta(days=30),
                training_expiry=today + timedelta(days=335),
            )
            for role in roles:
                service.grant_role(session, DEMO_ACTOR, username, role)
            made.append(f"person {username}" + (f" ({', '.join(roles)})" if roles else ""))
    if session.get(Project, DEMO_PROJECT) is None:
        service.create_project(
            session,
            DEMO_ACTOR,
            slug=DEMO_PROJECT,
            title="Outcomes of type 2 diabetes in synthetic primary care records",
            lay_summary="A demonstration project on synthetic data.",
            start_date=today - timedelta(days=7),
            end_date=today + timedelta(days=358),
        )
        service.approve_project(
            session,
            DEMO_ACTOR,
            DEMO_PROJECT,
            approval_ref="DEMO-REC-0001",
            signed_off_by="Demo Data Controller",
            signed_off_on=today - timedelta(days=7),
        )
        service.activate_project(session, DEMO_ACTOR, DEMO_PROJECT, "demo")
        for username, _, _, project_role in DEMO_PEOPLE:
            if project_role:
                service.add_member(session, DEMO_ACTOR, DEMO_PROJECT, username, project_role)
        made.append(f"project {DEMO_PROJECT} (active)")
    return made
