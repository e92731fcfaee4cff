"""Building registry state for tests through the real service functions."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Engine, func, select

from sde.audit.schema import audit_events
from sde.core.db import transaction
from sde.registry import service

ACTOR = "test:operator"


def today() -> date:
    return datetime.now(UTC).date()


def make_person(engine: Engine, username: str, **overrides: object) -> None:
    values: dict[str, object] = {
        "username": username,
        "full_name": username.title(),
        "email": f"{username}@example.org",
        "accreditation_ref": f"ACC-{username}",
        "accreditation_expiry": today() + timedelta(days=100),
        "training_completed": today() - timedelta(days=10),
        "training_expiry": today() + timedelta(days=100),
    }
    values.update(overrides)
    with transaction(engine) as s:
        service.add_person(s, ACTOR, **values)  # type: ignore[arg-type]


def make_active_project(engine: Engine, slug: str, *members: str) -> None:
    with transaction(engine) as s:
        service.create_project(
            s,
            ACTOR,
            slug=slug,
            title=f"Project {slug}",
            start_date=today() - timedelta(days=5),
            end_date=today() + timedelta(days=50),
        )
        service.approve_project(
            s,
            ACTOR,
            slug,
            approval_ref="REC-1",
            signed_off_by="Controller",
            signed_off_on=today() - timedelta(days=5),
        )
        service.activate_project(s, ACTOR, slug)
        for username in members:
            service.add_member(s, ACTOR, slug, username)


def audit_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(audit_events)).scalar_one())
