"""Who may act on a request: roles from the registry, checked at the moment of the action.

`role_of` reads what part a person plays towards one request, built on the
registry's own rules (`access_decision` for researchers, `person_problems` for
checkers, auditors and operators), so a lapse (accreditation, training,
membership, the project's dates) takes effect at once. `ACTION_ROLES` then says
which roles may take each action; *which state* allows it is
`sde.airlock.policies`. `allowed` combines the two (the permission matrix test
walks every action x role x state of it). Rules come in pairs:
`check_can_X` raises AccessDenied, `can_X` answers (for pages).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from sde.airlock.enums import RequestStatus, Role
from sde.airlock.models import AirlockRequest
from sde.airlock.policies import REVIEW_STATES, states_of
from sde.core.config import Settings
from sde.core.errors import AccessDenied
from sde.registry.access import access_decision
from sde.registry.enums import GlobalRoleName, ProjectRole
from sde.registry.models import Membership, Person
from sde.registry.policies import person_is_active, person_problems

# The actor of the airlock's own steps (the release after approval).
SYSTEM_ACTOR = "sde:airlock"

R = Role
_AUTHOR = frozenset({R.AUTHOR})
_CHECKER = frozenset({R.CHECKER})
_READERS = frozenset({R.AUTHOR, R.PRINCIPAL_INVESTIGATOR, R.PROJECT_MEMBER, R.CHECKER, R.AUDITOR})

# action -> the roles that may take it. Operators run the service but review
# nothing; auditors read everything and change nothing; only the author
# changes their request.
ACTION_ROLES: dict[str, frozenset[Role]] = {
    "add_file": _AUTHOR,
    "set_group_text": _AUTHOR,
    "withdraw_file": _AUTHOR,
    "ask_exception": _AUTHOR,
    "submit": _AUTHOR,
    "resubmit": _AUTHOR,
    "withdraw": _AUTHOR,
    "vote": _CHECKER,
    "review": _CHECKER,
    "complete_review": _CHECKER,
    "return": _CHECKER,
    "reject": _CHECKER,
    "approve": _CHECKER,
    "comment": frozenset({R.AUTHOR, R.CHECKER}),
    "release": frozenset({R.CHECKER, R.SYSTEM}),
    "revoke_release": frozenset({R.CHECKER, R.OPERATOR}),
    "view": _READERS,
    "view_file": _READERS,
    "download": frozenset({R.AUTHOR, R.PRINCIPAL_INVESTIGATOR}),
}

# (action, role) -> the only states in which that role may take it, where
# narrower than the action's own states: each side comments only while it
# holds the request, and checkers never see a request before its first submission.
ROLE_STATES: dict[tuple[str, Role], frozenset[RequestStatus]] = {
    ("comment", R.AUTHOR): frozenset({RequestStatus.PENDING, RequestStatus.RETURNED}),
    ("comment", R.CHECKER): REVIEW_STATES,
    ("view", R.CHECKER): frozenset(RequestStatus) - {RequestStatus.PENDING},
    ("view_file", R.CHECKER): frozenset(RequestStatus) - {RequestStatus.PENDING},
}


def role_allowed(action: str, role: Role, status: str) -> bool:
    """WHO: whether `role` may take `action` on a request in `status` (state aside)."""
    if role not in ACTION_ROLES[action]:
        return False
    limit = ROLE_STATES.get((action, role))
    return limit is None or status in limit


def allowed(action: str, role: Role, status: str) -> bool:
    """WHO and WHICH STATE together: the cell of the permission matrix."""
    return role_allowed(action, role, status) and status in states_of(action)


# ---------------------------------------------------------------- roles from the registry


def _today() -> datetime:
    return datetime.now(UTC)


def role_of(
    session: Session, settings: Settings, username: str, request: AirlockRequest
) -> tuple[Role, list[str]]:
    """The part `username` plays towards `request` now, and why it is no more than that."""
    if username == SYSTEM_ACTOR:
        return R.SYSTEM, []
    person = session.scalar(select(Person).where(Person.username == username))
    if person is None:
        return R.NOBODY, [f"unknown user {username!r}"]
    now = _today()
    if username == request.author:
        decision = access_decision(session, username, request.project, now)
        if decision.allowed:
            return R.AUTHOR, []
        return R.NOBODY, decision.reasons
    why: list[str] = []
    roles = set(person.role_names)
    member = session.scalar(
        select(Membership.role).where(
            Membership.person_id == person.id, Membership.project_slug == request.project
        )
    )
    problems = person_problems(person, now.date())
    if GlobalRoleName.OUTPUT_CHECKER in roles:
        if problems:
            why += [f"output checker {username} is not current: " + "; ".join(problems)]
        elif member is not None and not settings.airlock.project_members_may_review:
            why.append(f"{username} is a member of project {request.project}, so may not review")
        else:
            return R.CHECKER, []
    if member is not None:
        decision = access_decision(session, username, request.project, now)
        if decision.allowed:
            if member == ProjectRole.PRINCIPAL_INVESTIGATOR:
                return R.PRINCIPAL_INVESTIGATOR, why
            return R.PROJECT_MEMBER, why
        why += decision.reasons
    if person_is_active(person):
        if GlobalRoleName.AUDITOR in roles:
            return R.AUDITOR, why
        if GlobalRoleName.OPERATOR in roles:
            return R.OPERATOR, why
    return R.NOBODY, why or [f"{username} has no part in project {request.project}"]


def check_can(
    session: Session, settings: Settings, username: str, action: str, request: AirlockRequest
) -> Role:
    """The caller's role when they may take `action` on `request`; AccessDenied with the reasons
    otherwise. The state is checked after this, by `policies.check_state` (a Conflict)."""
    role, why = role_of(session, settings, username, request)
    if role_allowed(action, role, request.status):
        return role
    what = action.replace("_", " ")
    reasons = "; ".join(why) if why else f"a {role.replace('_', ' ')} may not {what} it"
    raise AccessDenied(f"{username} may not {what} airlock request {request.id}: {reasons}")


def can(
    session: Session, settings: Settings, username: str, action: str, request: AirlockRequest
) -> bool:
    """Whether `username` may take `action` on `request` now (who and which state)."""
    role, _ = role_of(session, settings, username, request)
    return allowed(action, role, request.status)


def check_can_create(session: Session, username: str, project: str) -> None:
    """A researcher opens requests only in a project they may work in now."""
    decision = access_decision(session, username, project)
    if not decision.allowed:
        raise AccessDenied(
            f"{username} may not open an airlock request in {project}: "
            + "; ".join(decision.reasons)
        )


def can_create(session: Session, username: str, project: str) -> bool:
    return access_decision(session, username, project).allowed


def check_can_review(
    session: Session, settings: Settings, username: str, request: AirlockRequest
) -> None:
    check_can(session, settings, username, "vote", request)


def can_review(
    session: Session, settings: Settings, username: str, request: AirlockRequest
) -> bool:
    return can(session, settings, username, "vote", request)


def check_can_view(
    session: Session, settings: Settings, username: str, request: AirlockRequest
) -> Role:
    return check_can(session, settings, username, "view", request)


def can_view(session: Session, settings: Settings, username: str, request: AirlockRequest) -> bool:
    return can(session, settings, username, "view", request)


def check_can_download(
    session: Session, settings: Settings, username: str, request: AirlockRequest
) -> None:
    check_can(session, settings, username, "download", request)


def can_download(
    session: Session, settings: Settings, username: str, request: AirlockRequest
) -> bool:
    return can(session, settings, username, "download", request)
