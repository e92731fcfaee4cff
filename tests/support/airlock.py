"""Airlock requests for tests, in any state, built only through the service.

`make_request_at(session_or_engine, settings, status)` walks a request along
the real lifecycle (create, add files from a real work folder, write the
group's context and controls, submit, blind reviews, ...) to `status`, so a
test never holds a state the service could not have produced. Given a session
every step runs in it (the caller commits, as the audit meta-test needs); given
an engine each step is its own transaction, as requests arrive in production.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from sde.airlock import service
from sde.airlock.enums import Direction, RequestStatus, Vote
from sde.airlock.permissions import SYSTEM_ACTOR
from sde.core.config import Settings, load_settings
from sde.core.db import transaction
from sde.registry import service as registry
from sde.registry.enums import ProjectRole
from sde.registry.models import Person, Project
from tests.support.registry import ACTOR, today

AUTHOR = "alice"
CHECKERS = ("chk1", "chk2", "chk3")
PROJECT = "p1"
TABLE = "results/counts.csv"
NOTES = "results/method.md"
GROUP = "tables"

Step = Callable[[Session], object]


def airlock_settings(home: Path, **env: str) -> Settings:
    """Settings with state (store, keys) under `home`; `env` as SDE_AIRLOCK_* values."""
    values = {"SDE_HOME": str(home)}
    values.update({f"SDE_AIRLOCK_{k.upper()}": v for k, v in env.items()})
    return load_settings(env=values)


def write_work(root: Path, counts: str = "group,n\na,15\nb,20\n") -> Path:
    """A researcher's work folder on the host with one table and one note."""
    (root / "results").mkdir(parents=True, exist_ok=True)
    (root / TABLE).write_text(counts)
    (root / NOTES).write_text("# Method\n\nCounts rounded to 5, none below 10.\n")
    return root


def ensure_person(s: Session, username: str, *roles: str) -> None:
    if s.scalar(select(Person.id).where(Person.username == username)) is None:
        registry.add_person(
            s,
            ACTOR,
            username=username,
            full_name=username.title(),
            email=f"{username}@example.org",
            accreditation_ref=f"ACC-{username}",
            accreditation_expiry=today() + timedelta(days=100),
            training_completed=today() - timedelta(days=10),
            training_expiry=today() + timedelta(days=100),
        )
    person = s.scalar(select(Person).where(Person.username == username))
    assert person is not None
    for role in roles:
        if role not in person.role_names:
            registry.grant_role(s, ACTOR, username, role)


def ensure_project(s: Session, slug: str, *members: str, pi: str | None = None) -> None:
    if s.get(Project, slug) is None:
        registry.create_project(
            s,
            ACTOR,
            slug=slug,
            title=f"Project {slug}",
            start_date=today() - timedelta(days=5),
            end_date=today() + timedelta(days=50),
        )
        registry.approve_project(
            s,
            ACTOR,
            slug,
            approval_ref="REC-1",
            signed_off_by="Controller",
            signed_off_on=today() - timedelta(days=5),
        )
        registry.activate_project(s, ACTOR, slug)
    for username in members:
        ensure_person(s, username)
        if member_role(s, slug, username) is None:
            registry.add_member(s, ACTOR, slug, username)
    if pi is not None:
        ensure_person(s, pi)
        if member_role(s, slug, pi) is None:
            registry.add_member(s, ACTOR, slug, pi, ProjectRole.PRINCIPAL_INVESTIGATOR)


def member_role(s: Session, slug: str, username: str) -> str | None:
    """The member's role in `slug`, or None."""
    from sde.registry.models import Membership

    return s.scalar(
        select(Membership.role)
        .join(Person)
        .where(Person.username == username, Membership.project_slug == slug)
    )


def ensure_people(s: Session) -> None:
    """The author in an active project, and three current output checkers outside it."""
    ensure_project(s, PROJECT, AUTHOR)
    for checker in CHECKERS:
        ensure_person(s, checker, "output_checker")


def _review(request_id: str, checker: str, settings: Settings, vote: str) -> list[Step]:
    steps: list[Step] = [
        lambda s: service.vote(s, checker, settings, request_id, TABLE, vote),
    ]
    if vote == Vote.REQUEST_CHANGES:
        steps.append(
            lambda s: service.comment(
                s, checker, settings, request_id, GROUP, "Round the counts to 5, please."
            )
        )
    steps.append(lambda s: service.submit_review(s, checker, settings, request_id))
    return steps


# The path to each state: after create, add and the group's text.
_PATHS: dict[RequestStatus, list[str]] = {
    RequestStatus.PENDING: [],
    RequestStatus.WITHDRAWN: ["withdraw"],
    RequestStatus.SUBMITTED: ["submit"],
    RequestStatus.PARTIALLY_REVIEWED: ["submit", "approve1"],
    RequestStatus.REVIEWED: ["submit", "approve1", "approve2"],
    RequestStatus.RETURNED: ["submit", "changes1", "return"],
    RequestStatus.REJECTED: ["submit", "approve1", "changes2", "reject"],
    RequestStatus.APPROVED: ["submit", "approve1", "approve2", "approve"],
    RequestStatus.RELEASED: ["submit", "approve1", "approve2", "approve", "release"],
}


def make_request_at(
    target: Session | Engine,
    settings: Settings,
    status: str,
    *,
    work: Path | None = None,
    direction: str = Direction.EGRESS,
) -> str:
    """The id of a new request of AUTHOR in PROJECT, taken through the service to `status`."""
    work = write_work(work or settings.home / "work" / AUTHOR)
    run = _runner(target)
    run(ensure_people)
    request_id = str(
        run(
            lambda s: (
                service.create_request(s, AUTHOR, settings, project=PROJECT, direction=direction).id
            )
        )
    )
    rid = request_id
    for relpath, kind in ((TABLE, "output"), (NOTES, "supporting")):

        def add(s: Session, p: str = relpath, k: str = kind) -> object:
            return service.add_file(
                s, AUTHOR, settings, rid, root=work, relpath=p, group=GROUP, kind=k
            )

        run(add)
    run(
        lambda s: service.set_group_text(
            s,
            AUTHOR,
            settings,
            rid,
            GROUP,
            context="Counts of patients by group.",
            controls="Counts below 10 suppressed, the rest rounded to 5.",
        )
    )
    steps: dict[str, list[Step]] = {
        "withdraw": [lambda s: service.withdraw_request(s, AUTHOR, settings, rid)],
        "submit": [lambda s: service.submit(s, AUTHOR, settings, rid)],
        "approve1": _review(rid, CHECKERS[0], settings, Vote.APPROVE),
        "approve2": _review(rid, CHECKERS[1], settings, Vote.APPROVE),
        "changes1": _review(rid, CHECKERS[0], settings, Vote.REQUEST_CHANGES),
        "changes2": _review(rid, CHECKERS[1], settings, Vote.REQUEST_CHANGES),
        "return": [lambda s: service.return_request(s, CHECKERS[0], settings, rid)],
        "reject": [lambda s: service.reject(s, CHECKERS[0], settings, rid, "Disclosive.")],
        "approve": [lambda s: service.approve(s, CHECKERS[0], settings, rid)],
        "release": [lambda s: service.release(s, SYSTEM_ACTOR, settings, rid)],
    }
    for name in _PATHS[RequestStatus(status)]:
        for step in steps[name]:
            run(step)
    return request_id


def _runner(target: Session | Engine) -> Callable[[Step], object]:
    if isinstance(target, Session):
        return lambda step: step(target)

    def in_transaction(step: Step) -> object:
        with transaction(target) as s:
            return step(s)

    return in_transaction


RAGGED = "results/ragged.csv"


def _exception_asked(s: Session, settings: Settings) -> None:
    rid = make_request_at(s, settings, RequestStatus.PENDING)
    work = settings.home / "work" / AUTHOR
    (work / RAGGED).write_text("group,n\na,15\nb\n")
    service.add_file(s, AUTHOR, settings, rid, root=work, relpath=RAGGED, group=GROUP)
    service.ask_exception(
        s, AUTHOR, settings, rid, RAGGED, "table_shape", "Row b is a footnote, not data."
    )


def audit_calls(settings: Callable[[], Settings]) -> dict[str, Callable[[Session], object]]:
    """action -> a call that performs it on a registry prepared by the audit meta-test
    (tests/integration/test_audit_coverage.py); `settings` gives a fresh home each time."""
    S = RequestStatus

    def at(status: str, then: Callable[[Session, Settings, str], object] | None = None) -> Step:
        def call(s: Session) -> None:
            st = settings()
            rid = make_request_at(s, st, status)
            if then is not None:
                then(s, st, rid)

        return call

    c1 = CHECKERS[0]
    return {
        "airlock.request.create": at(S.PENDING),
        "airlock.file.add": at(S.PENDING),
        "airlock.group.update": at(S.PENDING),
        "airlock.file.withdraw": at(
            S.PENDING, lambda s, st, rid: service.withdraw_file(s, AUTHOR, st, rid, NOTES)
        ),
        "airlock.exception.ask": lambda s: _exception_asked(s, settings()),
        "airlock.request.submit": at(S.SUBMITTED),
        "airlock.vote.cast": at(S.PARTIALLY_REVIEWED),
        "airlock.comment.add": at(S.RETURNED),
        "airlock.review.submit": at(S.PARTIALLY_REVIEWED),
        "airlock.request.return": at(S.RETURNED),
        "airlock.request.resubmit": at(
            S.RETURNED, lambda s, st, rid: service.resubmit(s, AUTHOR, st, rid)
        ),
        "airlock.request.withdraw": at(S.WITHDRAWN),
        "airlock.request.reject": at(S.REJECTED),
        "airlock.request.approve": at(S.APPROVED),
        "airlock.request.release": at(S.RELEASED),
        "airlock.release.revoke": at(
            S.RELEASED, lambda s, st, rid: service.revoke_release(s, c1, st, rid, "Re-identified.")
        ),
        "airlock.file.view": at(
            S.SUBMITTED, lambda s, st, rid: service.record_file_view(s, c1, st, rid, TABLE)
        ),
        "airlock.file.download": at(
            S.RELEASED, lambda s, st, rid: service.record_download(s, AUTHOR, st, rid, TABLE)
        ),
    }
