"""Registry write operations.

Each function takes the caller's session and actor, validates, changes state
and records one audit event in the same transaction; the caller commits.
Each is a write operation of `sde.audit` (its decorator names the action the
event carries; a meta-test drives every one and checks its event).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sde.audit import record, write_operation
from sde.core.errors import AccessDenied, Conflict, InvalidInput, NotFound
from sde.registry import validate
from sde.registry.enums import Classification, GlobalRoleName, PersonStatus, ProjectRole
from sde.registry.models import (
    Dataset,
    DatasetVersion,
    GlobalRole,
    Grant,
    Membership,
    Person,
    Project,
)
from sde.registry.policies import (
    PROJECT_START,
    check_project_open,
    lapsed,
    next_project_status,
    person_is_active,
)


def _now() -> datetime:
    return datetime.now(UTC)


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, date) else v for k, v in values.items()}


# ---------------------------------------------------------------- lookups


def get_person(session: Session, username: str) -> Person:
    person = session.scalar(select(Person).where(Person.username == username))
    if person is None:
        raise NotFound(f"unknown user {username!r}")
    return person


def get_project(session: Session, slug: str) -> Project:
    project = session.get(Project, slug)
    if project is None:
        raise NotFound(f"unknown project {slug!r}")
    return project


def get_dataset(session: Session, name: str) -> Dataset:
    dataset = session.get(Dataset, name)
    if dataset is None:
        raise NotFound(f"unknown dataset {name!r}")
    return dataset


def get_dataset_version(session: Session, name: str, version: int | None = None) -> DatasetVersion:
    """A dataset's version, or its latest when `version` is None."""
    get_dataset(session, name)
    q = select(DatasetVersion).where(DatasetVersion.dataset_name == name)
    if version is None:
        dv = session.scalar(q.order_by(DatasetVersion.version.desc()).limit(1))
        if dv is None:
            raise NotFound(f"dataset {name!r} has no published version yet")
        return dv
    dv = session.scalar(q.where(DatasetVersion.version == version))
    if dv is None:
        raise NotFound(f"dataset {name!r} has no version {version}")
    return dv


# ---------------------------------------------------------------- people


@write_operation("person.create")
def add_person(
    session: Session,
    actor: str,
    *,
    username: str,
    full_name: str,
    email: str,
    accreditation_ref: str | None = None,
    accreditation_expiry: date | None = None,
    training_completed: date | None = None,
    training_expiry: date | None = None,
) -> Person:
    username = validate.username(username)
    email = validate.email(email)
    today = _now().date()
    if accreditation_expiry is not None and accreditation_expiry < today:
        raise InvalidInput(
            f"accreditation expired on {accreditation_expiry}: record a current accreditation"
        )
    if training_expiry is not None and training_expiry < today:
        raise InvalidInput(f"training expired on {training_expiry}: record current training")
    if training_completed and training_expiry and training_expiry < training_completed:
        raise InvalidInput(
            f"training expiry {training_expiry} is before its completion {training_completed}"
        )
    if session.scalar(select(Person.id).where(Person.username == username)) is not None:
        raise Conflict(f"user {username!r} already exists")
    if session.scalar(select(Person.id).where(Person.email == email)) is not None:
        raise Conflict(f"email {email!r} is already registered to another user")
    person = Person(
        username=username,
        full_name=validate.text("full name", full_name, 200),
        email=email,
        accreditation_ref=accreditation_ref,
        accreditation_expiry=accreditation_expiry,
        training_completed=training_completed,
        training_expiry=training_expiry,
        status=PersonStatus.ACTIVE,
        created_at=_now(),
    )
    session.add(person)
    session.flush()
    record(
        session,
        actor=actor,
        target=f"person:{username}",
        details=_jsonable(
            {
                "full_name": person.full_name,
                "email": email,
                "accreditation_ref": accreditation_ref,
                "accreditation_expiry": accreditation_expiry,
                "training_completed": training_completed,
                "training_expiry": training_expiry,
            }
        ),
    )
    return person


PERSON_FIELDS = (
    "full_name",
    "email",
    "accreditation_ref",
    "accreditation_expiry",
    "training_completed",
    "training_expiry",
)


@write_operation("person.update")
def update_person(session: Session, actor: str, username: str, **changes: Any) -> Person:
    person = get_person(session, username)
    unknown = set(changes) - set(PERSON_FIELDS)
    if unknown:
        raise InvalidInput(f"cannot change {', '.join(sorted(unknown))} of a person")
    changes = {k: v for k, v in changes.items() if v is not None}
    if not changes:
        raise InvalidInput("nothing to change")
    if "email" in changes:
        changes["email"] = validate.email(changes["email"])
        other = session.scalar(select(Person.id).where(Person.email == changes["email"]))
        if other is not None and other != person.id:
            raise Conflict(f"email {changes['email']!r} is already registered to another user")
    if "full_name" in changes:
        changes["full_name"] = validate.text("full name", changes["full_name"], 200)
    before = {k: getattr(person, k) for k in changes}
    for key, value in changes.items():
        setattr(person, key, value)
    record(
        session,
        actor=actor,
        target=f"person:{username}",
        details={"before": _jsonable(before), "after": _jsonable(changes)},
    )
    return person


@write_operation("person.status")
def set_person_status(
    session: Session, actor: str, username: str, status: str, reason: str
) -> Person:
    status = validate.choice("status", status, PersonStatus)
    reason = validate.text("reason", reason, 500)
    person = get_person(session, username)
    if person.status == status:
        raise Conflict(f"user {username!r} is already {status}")
    before, person.status = person.status, status
    record(
        session,
        actor=actor,
        target=f"person:{username}",
        details={"before": before, "after": status, "reason": reason},
    )
    return person


@write_operation("role.grant")
def grant_role(session: Session, actor: str, username: str, role: str) -> None:
    role = validate.choice("role", role, GlobalRoleName)
    person = get_person(session, username)
    if role in person.role_names:
        raise Conflict(f"user {username!r} already has role {role}")
    person.roles.append(GlobalRole(person_id=person.id, role=role, granted_at=_now()))
    record(
        session,
        actor=actor,
        target=f"person:{username}",
        details={"role": role},
    )


@write_operation("role.revoke")
def revoke_role(session: Session, actor: str, username: str, role: str) -> None:
    role = validate.choice("role", role, GlobalRoleName)
    person = get_person(session, username)
    match = [r for r in person.roles if r.role == role]
    if not match:
        raise NotFound(f"user {username!r} does not have role {role}")
    person.roles.remove(match[0])
    record(
        session,
        actor=actor,
        target=f"person:{username}",
        details={"role": role},
    )


# ---------------------------------------------------------------- projects


@write_operation("project.create")
def create_project(
    session: Session,
    actor: str,
    *,
    slug: str,
    title: str,
    start_date: date,
    end_date: date,
    lay_summary: str = "",
) -> Project:
    slug = validate.slug(slug)
    validate.date_range(start_date, end_date)
    if session.get(Project, slug) is not None:
        raise Conflict(f"project {slug!r} already exists")
    project = Project(
        slug=slug,
        title=validate.text("title", title, 300),
        lay_summary=validate.text("lay summary", lay_summary, 5000, required=False),
        start_date=start_date,
        end_date=end_date,
        status=PROJECT_START,
        created_at=_now(),
    )
    session.add(project)
    session.flush()
    record(
        session,
        actor=actor,
        target=f"project:{slug}",
        project=slug,
        details=_jsonable({"title": project.title, "start_date": start_date, "end_date": end_date}),
    )
    return project


@write_operation("project.update")
def update_project(
    session: Session,
    actor: str,
    slug: str,
    *,
    title: str | None = None,
    lay_summary: str | None = None,
    start_date: date | None = None,
    end_date: date | None = None,
) -> Project:
    project = get_project(session, slug)
    check_project_open(project, " and can no longer change")
    changes: dict[str, Any] = {}
    if title is not None:
        changes["title"] = validate.text("title", title, 300)
    if lay_summary is not None:
        changes["lay_summary"] = validate.text("lay summary", lay_summary, 5000, required=False)
    if start_date is not None:
        changes["start_date"] = start_date
    if end_date is not None:
        changes["end_date"] = end_date
    if not changes:
        raise InvalidInput("nothing to change")
    validate.date_range(
        changes.get("start_date", project.start_date), changes.get("end_date", project.end_date)
    )
    before = {k: getattr(project, k) for k in changes}
    for key, value in changes.items():
        setattr(project, key, value)
    record(
        session,
        actor=actor,
        target=f"project:{slug}",
        project=slug,
        details={"before": _jsonable(before), "after": _jsonable(changes)},
    )
    return project


@write_operation("project.approve")
def approve_project(
    session: Session,
    actor: str,
    slug: str,
    *,
    approval_ref: str,
    signed_off_by: str,
    signed_off_on: date,
) -> Project:
    project = get_project(session, slug)
    approval_ref = validate.text("approval reference", approval_ref, 100)
    signed_off_by = validate.text("data-controller sign-off", signed_off_by, 200)
    project.status = next_project_status(slug, project.status, "approve")
    project.approval_ref = approval_ref
    project.controller_signoff_by = signed_off_by
    project.controller_signoff_on = signed_off_on
    record(
        session,
        actor=actor,
        target=f"project:{slug}",
        project=slug,
        details=_jsonable(
            {
                "approval_ref": approval_ref,
                "signed_off_by": signed_off_by,
                "signed_off_on": signed_off_on,
            }
        ),
    )
    return project


def _transition(session: Session, actor: str, slug: str, action: str, reason: str) -> Project:
    project = get_project(session, slug)
    before = project.status
    project.status = next_project_status(slug, before, action)
    record(
        session,
        actor=actor,
        target=f"project:{slug}",
        project=slug,
        details={"before": before, "after": project.status, "reason": reason},
    )
    return project


@write_operation("project.activate")
def activate_project(session: Session, actor: str, slug: str, reason: str = "") -> Project:
    return _transition(session, actor, slug, "activate", reason)


@write_operation("project.suspend")
def suspend_project(session: Session, actor: str, slug: str, reason: str) -> Project:
    return _transition(session, actor, slug, "suspend", validate.text("reason", reason, 500))


@write_operation("project.close")
def close_project(session: Session, actor: str, slug: str, reason: str = "") -> Project:
    return _transition(session, actor, slug, "close", reason)


@write_operation("membership.add")
def add_member(
    session: Session, actor: str, slug: str, username: str, role: str = ProjectRole.RESEARCHER
) -> Membership:
    role = validate.choice("project role", role, ProjectRole)
    project = get_project(session, slug)
    person = get_person(session, username)
    check_project_open(project)
    if not person_is_active(person):
        raise Conflict(f"user {username!r} is {person.status}")
    problems = lapsed(person, _now().date())
    if problems:
        raise AccessDenied(f"cannot add {username!r} to {slug}: {'; '.join(problems)}")
    existing = session.scalar(
        select(Membership).where(Membership.person_id == person.id, Membership.project_slug == slug)
    )
    if existing is not None:
        raise Conflict(f"user {username!r} is already a member of {slug} ({existing.role})")
    membership = Membership(person=person, project=project, role=role, added_at=_now())
    session.add(membership)
    record(
        session,
        actor=actor,
        target=f"person:{username}",
        project=slug,
        details={"role": role},
    )
    return membership


@write_operation("membership.remove")
def remove_member(session: Session, actor: str, slug: str, username: str) -> None:
    get_project(session, slug)
    person = get_person(session, username)
    membership = session.scalar(
        select(Membership).where(Membership.person_id == person.id, Membership.project_slug == slug)
    )
    if membership is None:
        raise NotFound(f"user {username!r} is not a member of {slug}")
    session.delete(membership)
    record(
        session,
        actor=actor,
        target=f"person:{username}",
        project=slug,
        details={"role": membership.role},
    )


# ---------------------------------------------------------------- datasets


@write_operation("dataset.create")
def add_dataset(
    session: Session, actor: str, *, name: str, description: str, classification: str
) -> Dataset:
    name = validate.dataset_name(name)
    classification = validate.choice("classification", classification, Classification)
    if session.get(Dataset, name) is not None:
        raise Conflict(f"dataset {name!r} already exists")
    dataset = Dataset(
        name=name,
        description=validate.text("description", description, 5000, required=False),
        classification=classification,
        created_at=_now(),
    )
    session.add(dataset)
    session.flush()
    record(
        session,
        actor=actor,
        target=f"dataset:{name}",
        details={"description": dataset.description, "classification": classification},
    )
    return dataset


@write_operation("dataset.version.publish")
def add_dataset_version(
    session: Session,
    actor: str,
    *,
    name: str,
    manifest_hash: str,
    path: str,
    tables: dict[str, list[str]],
    version: int | None = None,
    details: dict[str, Any] | None = None,
) -> DatasetVersion:
    """Record a published version; `version` defaults to the next number."""
    get_dataset(session, name)
    latest = session.scalar(
        select(func.max(DatasetVersion.version)).where(DatasetVersion.dataset_name == name)
    )
    next_version = (latest or 0) + 1
    if version is None:
        version = next_version
    elif version != next_version:
        raise Conflict(f"dataset {name!r}: next version is {next_version}, not {version}")
    if len(manifest_hash) != 64:
        raise InvalidInput("manifest hash must be a SHA-256 hex digest")
    dv = DatasetVersion(
        dataset_name=name,
        version=version,
        manifest_hash=manifest_hash,
        path=path,
        tables=tables,
        created_at=_now(),
    )
    session.add(dv)
    session.flush()
    record(
        session,
        actor=actor,
        target=f"dataset:{name}@{version}",
        details={"manifest_sha256": manifest_hash, "path": path, **(details or {})},
    )
    return dv


def _check_columns(dv: DatasetVersion, columns: list[str]) -> None:
    for col in columns:
        table, name = col.split(".", 1)
        if table not in dv.tables:
            raise NotFound(f"{dv.label} has no table {table!r}")
        if name != "*" and name not in dv.tables[table]:
            raise NotFound(f"{dv.label} table {table!r} has no column {name!r}")


@write_operation("grant.create")
def grant_access(
    session: Session,
    actor: str,
    *,
    slug: str,
    dataset: str,
    version: int | None,
    columns: list[str],
) -> Grant:
    project = get_project(session, slug)
    check_project_open(project)
    dv = get_dataset_version(session, dataset, version)
    cols = validate.columns(columns)
    _check_columns(dv, cols)
    existing = session.scalar(
        select(Grant).where(Grant.project_slug == slug, Grant.dataset_version_id == dv.id)
    )
    if existing is not None:
        raise Conflict(f"project {slug} already has a grant on {dv.label}; revoke it first")
    grant = Grant(
        project=project, dataset_version=dv, columns=cols, granted_at=_now(), granted_by=actor
    )
    session.add(grant)
    record(
        session,
        actor=actor,
        target=f"dataset:{dv.label}",
        project=slug,
        details={"columns": cols},
    )
    return grant


@write_operation("grant.revoke")
def revoke_grant(session: Session, actor: str, *, slug: str, dataset: str, version: int) -> None:
    get_project(session, slug)
    dv = get_dataset_version(session, dataset, version)
    grant = session.scalar(
        select(Grant).where(Grant.project_slug == slug, Grant.dataset_version_id == dv.id)
    )
    if grant is None:
        raise NotFound(f"project {slug} has no grant on {dv.label}")
    session.delete(grant)
    record(
        session,
        actor=actor,
        target=f"dataset:{dv.label}",
        project=slug,
        details={"columns": grant.columns},
    )
