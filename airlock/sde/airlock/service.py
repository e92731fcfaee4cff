"""Airlock write operations: the request lifecycle, each step one audited write.

Each function takes the caller's session, the acting username (or
`permissions.SYSTEM_ACTOR`) and the settings, checks *who* (`permissions`) and
*which state* (`policies`), changes state and records one audit event in the
same transaction; the caller commits (`sde.core.db.transaction`). Nothing
commits half a step: a refusal raises before the first write.

Atomic and idempotent transitions: every operation first locks the request's
row (`SELECT ... FOR UPDATE` on PostgreSQL; SQLite's BEGIN IMMEDIATE already
serialises writers) and re-reads its state under the lock, and the move itself
is a conditional UPDATE on the state it was read in. So two checkers
submitting at the same instant both count, a double-clicked release or a
retried call finds the state already moved and is refused (Conflict), and one
consistent state remains. The release's primary key is the request's id: a
second release cannot be stored at all.

Bytes come only through `sde.airlock.snapshots` (the airlock copies the
researcher's named path itself) and are verified again at release.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from sde.airlock import checks, release_record, snapshots
from sde.airlock import published as published_files
from sde.airlock.enums import CommentVisibility, Direction, FileKind, Role, Vote
from sde.airlock.models import (
    AirlockFile,
    AirlockRequest,
    CheckException,
    CheckReport,
    Comment,
    FileGroup,
    Release,
    Review,
    VoteRecord,
)
from sde.airlock.permissions import check_can, check_can_create
from sde.airlock.policies import (
    REQUEST_START,
    FileView,
    GroupView,
    approve_problems,
    check_state,
    next_status,
    next_turn,
    return_problems,
    review_problems,
    reviews_required,
    submit_problems,
    votes_to_reset,
)
from sde.audit import record, write_operation
from sde.core.config import Settings
from sde.core.errors import Conflict, InvalidInput, NotFound

MAX_TEXT = 20_000  # characters of a context, controls, comment or justification
MAX_GROUP_NAME = 100


def _now() -> datetime:
    return datetime.now(UTC)


def _record(session: Session, actor: str, request: AirlockRequest, **details: Any) -> None:
    record(
        session,
        actor=actor,
        target=f"airlock_request:{request.id}",
        project=request.project,
        details={"status": str(request.status), "turn": request.turn, **details},
    )


# ---------------------------------------------------------------- reads


def get_request(session: Session, request_id: str) -> AirlockRequest:
    request = session.get(AirlockRequest, request_id)
    if request is None:
        raise NotFound(f"unknown airlock request {request_id!r}")
    return request


def _lock(session: Session, request_id: str) -> AirlockRequest:
    """The request's row, locked for this transaction and read afresh under the lock."""
    request = session.scalar(
        select(AirlockRequest)
        .where(AirlockRequest.id == request_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if request is None:
        raise NotFound(f"unknown airlock request {request_id!r}")
    return request


def active_files(session: Session, request: AirlockRequest) -> list[AirlockFile]:
    return list(
        session.scalars(
            select(AirlockFile)
            .where(AirlockFile.request_id == request.id, AirlockFile.withdrawn.is_(False))
            .order_by(AirlockFile.id)
        )
    )


def groups_of(session: Session, request: AirlockRequest) -> list[FileGroup]:
    return list(
        session.scalars(
            select(FileGroup).where(FileGroup.request_id == request.id).order_by(FileGroup.id)
        )
    )


def report_of(session: Session, request: AirlockRequest, file: AirlockFile) -> dict[str, Any]:
    report = session.scalar(
        select(CheckReport.report).where(
            CheckReport.request_id == request.id,
            CheckReport.name == file.name,
            CheckReport.sha256 == file.sha256,
        )
    )
    return report or {}


def reviewers_of_turn(session: Session, request: AirlockRequest) -> list[str]:
    """Checkers who submitted a review in the request's current turn, first first."""
    return list(
        session.scalars(
            select(Review.checker)
            .where(Review.request_id == request.id, Review.turn == request.turn)
            .order_by(Review.id)
        )
    )


def required_reviews(request: AirlockRequest, settings: Settings) -> int:
    return reviews_required(request.direction, settings)


def file_views(session: Session, request: AirlockRequest) -> list[FileView]:
    """The plain views the rules of `sde.airlock.policies` take."""
    views = []
    for f in active_files(session, request):
        findings = report_of(session, request, f).get("findings", [])
        failing = frozenset(x["name"] for x in findings if x["status"] == checks.CheckStatus.FAIL)
        excepted = frozenset(
            session.scalars(select(CheckException.check).where(CheckException.file_id == f.id))
        )
        votes = {
            v.checker: v.vote
            for v in session.scalars(select(VoteRecord).where(VoteRecord.file_id == f.id))
        }
        views.append(
            FileView(f.id, f.name, f.group.name, f.kind, failing, excepted, f.changed_turn, votes)
        )
    return views


def group_views(session: Session, request: AirlockRequest) -> list[GroupView]:
    return [GroupView(g.name, g.context, g.controls) for g in groups_of(session, request)]


def _file(session: Session, request: AirlockRequest, name: str) -> AirlockFile:
    found = session.scalar(
        select(AirlockFile).where(
            AirlockFile.request_id == request.id,
            AirlockFile.name == name,
            AirlockFile.withdrawn.is_(False),
        )
    )
    if found is None:
        raise NotFound(f"airlock request {request.id} has no file {name!r}")
    return found


def _group(session: Session, request: AirlockRequest, name: str) -> FileGroup:
    found = session.scalar(
        select(FileGroup).where(FileGroup.request_id == request.id, FileGroup.name == name)
    )
    if found is None:
        raise NotFound(f"airlock request {request.id} has no group {name!r}")
    return found


def _text(what: str, value: str, required: bool = True) -> str:
    """User text is stored as given (pages escape it); only its length and presence checked."""
    value = value.strip()
    if required and not value:
        raise InvalidInput(f"{what} must not be empty")
    if len(value) > MAX_TEXT:
        raise InvalidInput(f"{what} is longer than {MAX_TEXT} characters")
    if any(ord(c) < 32 and c not in "\n\r\t" for c in value):
        raise InvalidInput(f"{what} contains control characters")
    return value


def _group_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_GROUP_NAME or not name.isprintable():
        raise InvalidInput(f"group name {name!r} must be 1-{MAX_GROUP_NAME} printable characters")
    return name


def _move(session: Session, request: AirlockRequest, action: str) -> None:
    """The transition `action` (policies.TRANSITIONS), conditional on the state read."""
    target = next_status(request.id, request.status, action)
    turn = next_turn(request.status, target, request.turn)
    moved = session.execute(
        update(AirlockRequest)
        .where(
            AirlockRequest.id == request.id,
            AirlockRequest.status == request.status,
            AirlockRequest.turn == request.turn,
        )
        .values(status=target, turn=turn, updated_at=_now())
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict(f"airlock request {request.id} changed meanwhile: try again")
    session.refresh(request)


def _touch(request: AirlockRequest) -> None:
    request.updated_at = _now()


# ---------------------------------------------------------------- the author's side


@write_operation("airlock.request.create")
def create_request(
    session: Session,
    actor: str,
    settings: Settings,
    *,
    project: str,
    direction: str = Direction.EGRESS,
) -> AirlockRequest:
    """A new, empty request of `actor` in `project` (they must be able to work in it now)."""
    if direction not in set(Direction):
        raise InvalidInput(f"direction must be one of {', '.join(Direction)}, got {direction!r}")
    check_can_create(session, actor, project)
    now = _now()
    request = AirlockRequest(
        id=uuid.uuid4().hex,
        direction=direction,
        project=project,
        author=actor,
        status=REQUEST_START,
        turn=1,
        created_at=now,
        updated_at=now,
    )
    session.add(request)
    session.flush()
    _record(session, actor, request, direction=str(direction))
    return request


@write_operation("airlock.file.add")
def add_file(
    session: Session,
    actor: str,
    settings: Settings,
    request_id: str,
    *,
    root: Path,
    relpath: str,
    group: str,
    kind: str = FileKind.OUTPUT,
) -> AirlockFile:
    """Copy `relpath` from beneath `root` (the workspace's work directory on the host) into the
    store, run the checks and add it to `group`; a file of the same name is replaced (its
    votes reset at resubmission). Refusals (snapshots.copy_in's) leave nothing stored."""
    request = _lock(session, request_id)
    check_can(session, settings, actor, "add_file", request)
    check_state(request.id, request.status, "add_file")
    if request.direction == Direction.INGRESS:
        # Files coming in may be code too: the snapshot and the checks take ingress_file_types.
        settings = replace(
            settings,
            airlock=replace(settings.airlock, file_types=settings.airlock.ingress_file_types),
        )
    if kind not in set(FileKind):
        raise InvalidInput(f"file kind must be one of {', '.join(FileKind)}, got {kind!r}")
    group = _group_name(group)
    count = session.scalar(
        select(func.count())
        .select_from(AirlockFile)
        .where(AirlockFile.request_id == request.id, AirlockFile.withdrawn.is_(False))
    )
    existing = session.scalar(
        select(AirlockFile).where(AirlockFile.request_id == request.id, AirlockFile.name == relpath)
    )
    if (existing is None or existing.withdrawn) and (count or 0) >= settings.airlock.max_files:
        raise InvalidInput(
            f"airlock request {request.id} already has {count} files "
            f"(airlock.max_files is {settings.airlock.max_files})"
        )
    store = settings.airlock_store_dir
    snap = snapshots.copy_in(root, relpath, store, settings)
    stored = snapshots.open_verified(store, snap.sha256)
    existing = session.scalar(
        select(AirlockFile).where(
            AirlockFile.request_id == request.id, AirlockFile.name == snap.name
        )
    )
    has_report = session.scalar(
        select(CheckReport.id).where(
            CheckReport.request_id == request.id,
            CheckReport.name == snap.name,
            CheckReport.sha256 == snap.sha256,
        )
    )
    if has_report is None:
        report = checks.run_checks(stored, snap.name, settings, direction=request.direction)
        session.add(
            CheckReport(
                request_id=request.id,
                name=snap.name,
                sha256=snap.sha256,
                status=str(report.status),
                report=report.as_dict(),
                created_at=_now(),
            )
        )
    file_group = session.scalar(
        select(FileGroup).where(FileGroup.request_id == request.id, FileGroup.name == group)
    )
    if file_group is None:
        file_group = FileGroup(request_id=request.id, name=group, context="", controls="")
        session.add(file_group)
        session.flush()
    if existing is None:
        existing = AirlockFile(
            request_id=request.id,
            group_id=file_group.id,
            name=snap.name,
            kind=kind,
            sha256=snap.sha256,
            size=snap.size,
            media_type=snap.media_type,
            withdrawn=False,
            changed_turn=request.turn,
        )
        session.add(existing)
        changed = True
    else:
        changed = (existing.sha256, existing.group_id, existing.kind, existing.withdrawn) != (
            snap.sha256,
            file_group.id,
            kind,
            False,
        )
        if changed:
            existing.sha256, existing.size, existing.media_type = (
                snap.sha256,
                snap.size,
                snap.media_type,
            )
            existing.group_id, existing.kind, existing.withdrawn = file_group.id, kind, False
            existing.changed_turn = request.turn
    _touch(request)
    session.flush()
    _record(
        session,
        actor,
        request,
        file=snap.name,
        group=group,
        kind=str(kind),
        sha256=snap.sha256,
        size=snap.size,
        changed=changed,
    )
    return existing


@write_operation("airlock.group.update")
def set_group_text(
    session: Session,
    actor: str,
    settings: Settings,
    request_id: str,
    group: str,
    *,
    context: str | None = None,
    controls: str | None = None,
) -> FileGroup:
    """The group's context (what the outputs are) and controls (how disclosure was controlled)."""
    request = _lock(session, request_id)
    check_can(session, settings, actor, "set_group_text", request)
    check_state(request.id, request.status, "set_group_text")
    found = _group(session, request, group)
    if context is not None:
        found.context = _text("context", context, required=False)
    if controls is not None:
        found.controls = _text("controls", controls, required=False)
    _touch(request)
    _record(session, actor, request, group=group, context=found.context, controls=found.controls)
    return found


@write_operation("airlock.file.withdraw")
def withdraw_file(
    session: Session, actor: str, settings: Settings, request_id: str, name: str
) -> None:
    """Take one file out of the request while the author holds it (its row and bytes stay)."""
    request = _lock(session, request_id)
    check_can(session, settings, actor, "withdraw_file", request)
    check_state(request.id, request.status, "withdraw_file")
    found = _file(session, request, name)
    found.withdrawn = True
    found.changed_turn = request.turn
    _touch(request)
    _record(session, actor, request, file=name)


@write_operation("airlock.exception.ask")
def ask_exception(
    session: Session,
    actor: str,
    settings: Settings,
    request_id: str,
    name: str,
    check: str,
    justification: str,
) -> CheckException:
    """The researcher's case for a file that fails `check`; checkers see it beside the finding."""
    request = _lock(session, request_id)
    check_can(session, settings, actor, "ask_exception", request)
    check_state(request.id, request.status, "ask_exception")
    found = _file(session, request, name)
    findings = report_of(session, request, found).get("findings", [])
    failing = {f["name"] for f in findings if f["status"] == checks.CheckStatus.FAIL}
    if check not in failing:
        raise InvalidInput(f"{name} does not fail the check {check!r}: no exception needed")
    if any(f["name"] == check and f.get("exceptable") is False for f in findings):
        raise InvalidInput(f"{name} fails the check {check!r}, which no exception can outweigh")
    text = _text("justification", justification)
    exc = session.scalar(
        select(CheckException).where(
            CheckException.file_id == found.id, CheckException.check == check
        )
    )
    if exc is None:
        exc = CheckException(file_id=found.id, check=check, justification=text, created_at=_now())
        session.add(exc)
    else:
        exc.justification, exc.created_at = text, _now()
    _touch(request)
    session.flush()
    _record(session, actor, request, file=name, check=check, justification=text)
    return exc


def _check_submittable(session: Session, request: AirlockRequest) -> None:
    problems = submit_problems(group_views(session, request), file_views(session, request))
    if problems:
        raise InvalidInput(
            f"airlock request {request.id} cannot be submitted: " + "; ".join(problems)
        )


@write_operation("airlock.request.submit")
def submit(session: Session, actor: str, settings: Settings, request_id: str) -> AirlockRequest:
    """Hand the request to the output checkers (context, controls and checks in order)."""
    request = _lock(session, request_id)
    check_can(session, settings, actor, "submit", request)
    check_state(request.id, request.status, "submit")
    _check_submittable(session, request)
    _move(session, request, "submit")
    _record(session, actor, request, files=len(active_files(session, request)))
    return request


@write_operation("airlock.request.resubmit")
def resubmit(session: Session, actor: str, settings: Settings, request_id: str) -> AirlockRequest:
    """Back to the checkers after a return: votes on files changed since their review reset to
    undecided, approvals of unchanged files stay."""
    request = _lock(session, request_id)
    check_can(session, settings, actor, "resubmit", request)
    check_state(request.id, request.status, "resubmit")
    _check_submittable(session, request)
    last_review_turn = session.scalar(
        select(func.max(Review.turn)).where(Review.request_id == request.id)
    )
    changed = votes_to_reset(file_views(session, request), last_review_turn or 0)
    withdrawn = session.scalars(
        select(AirlockFile.id).where(
            AirlockFile.request_id == request.id, AirlockFile.withdrawn.is_(True)
        )
    )
    reset_ids = [f.id for f in changed] + list(withdrawn)
    if reset_ids:
        session.execute(
            update(VoteRecord)
            .where(VoteRecord.file_id.in_(reset_ids))
            .values(vote=Vote.UNDECIDED, updated_at=_now())
            .execution_options(synchronize_session=False)
        )
    _move(session, request, "resubmit")
    _record(session, actor, request, changed=sorted(f.name for f in changed))
    return request


@write_operation("airlock.request.withdraw")
def withdraw_request(
    session: Session, actor: str, settings: Settings, request_id: str
) -> AirlockRequest:
    """The author gives up the request (final; its files and history stay)."""
    request = _lock(session, request_id)
    check_can(session, settings, actor, "withdraw", request)
    _move(session, request, "withdraw")
    _record(session, actor, request)
    return request


# ---------------------------------------------------------------- the checkers' side


def _reviewed_this_turn(session: Session, request: AirlockRequest, checker: str) -> bool:
    return checker in reviewers_of_turn(session, request)


@write_operation("airlock.vote.cast")
def vote(
    session: Session, actor: str, settings: Settings, request_id: str, name: str, decision: str
) -> VoteRecord:
    """A checker's vote on one output file; changeable until they submit their review."""
    request = _lock(session, request_id)
    check_can(session, settings, actor, "vote", request)
    check_state(request.id, request.status, "vote")
    if decision not in (Vote.APPROVE, Vote.REQUEST_CHANGES):
        raise InvalidInput(f"vote must be approve or request_changes, got {decision!r}")
    if _reviewed_this_turn(session, request, actor):
        raise Conflict(f"{actor} already submitted a review of this turn of request {request.id}")
    found = _file(session, request, name)
    if found.kind != FileKind.OUTPUT:
        raise InvalidInput(f"{name} is a supporting file: only output files get votes")
    cast = session.scalar(
        select(VoteRecord).where(VoteRecord.file_id == found.id, VoteRecord.checker == actor)
    )
    if cast is None:
        cast = VoteRecord(request_id=request.id, file_id=found.id, checker=actor)
        session.add(cast)
    cast.vote, cast.turn, cast.updated_at = decision, request.turn, _now()
    session.flush()
    _record(session, actor, request, file=name, vote=str(decision))
    return cast


@write_operation("airlock.comment.add")
def comment(
    session: Session,
    actor: str,
    settings: Settings,
    request_id: str,
    group: str,
    text: str,
    visibility: str = CommentVisibility.PUBLIC,
) -> Comment:
    """A comment on a group; the author's are always public."""
    request = _lock(session, request_id)
    role = check_can(session, settings, actor, "comment", request)
    check_state(request.id, request.status, "comment")
    if visibility not in set(CommentVisibility):
        raise InvalidInput(f"visibility must be public or checkers, got {visibility!r}")
    if role != Role.CHECKER:
        visibility = CommentVisibility.PUBLIC
    found = _group(session, request, group)
    body = _text("comment", text)
    made = Comment(
        group_id=found.id,
        author=actor,
        visibility=visibility,
        turn=request.turn,
        text=body,
        created_at=_now(),
    )
    session.add(made)
    session.flush()
    _record(session, actor, request, group=group, visibility=str(visibility), comment=made.id)
    return made


def _commented_groups(
    session: Session, request: AirlockRequest, author: str | None, public_only: bool
) -> set[str]:
    q = (
        select(FileGroup.name)
        .join(Comment, Comment.group_id == FileGroup.id)
        .where(FileGroup.request_id == request.id, Comment.turn == request.turn)
    )
    if author is not None:
        q = q.where(Comment.author == author)
    if public_only:
        q = q.where(Comment.visibility == CommentVisibility.PUBLIC)
    return set(session.scalars(q))


@write_operation("airlock.review.submit")
def submit_review(
    session: Session, actor: str, settings: Settings, request_id: str
) -> AirlockRequest:
    """The checker's review of this turn: partially_reviewed until the required number are in,
    then reviewed (and the checkers see each other's votes)."""
    request = _lock(session, request_id)
    check_can(session, settings, actor, "review", request)
    check_state(request.id, request.status, "complete_review")
    if _reviewed_this_turn(session, request, actor):
        raise Conflict(f"{actor} already submitted a review of this turn of request {request.id}")
    problems = review_problems(
        file_views(session, request), actor, _commented_groups(session, request, actor, False)
    )
    if problems:
        raise InvalidInput(f"review of request {request.id} is incomplete: " + "; ".join(problems))
    session.add(
        Review(request_id=request.id, checker=actor, turn=request.turn, submitted_at=_now())
    )
    session.flush()
    count = len(reviewers_of_turn(session, request))
    if count >= required_reviews(request, settings):
        _move(session, request, "complete_review")
    else:
        _move(session, request, "review")
    _record(session, actor, request, reviews=count)
    return request


@write_operation("airlock.request.return")
def return_request(
    session: Session, actor: str, settings: Settings, request_id: str
) -> AirlockRequest:
    """Back to the author, with a public comment on every group where changes were requested."""
    request = _lock(session, request_id)
    check_can(session, settings, actor, "return", request)
    check_state(request.id, request.status, "return")
    problems = return_problems(
        file_views(session, request),
        reviewers_of_turn(session, request),
        _commented_groups(session, request, None, True),
    )
    if problems:
        raise InvalidInput(f"request {request.id} cannot be returned: " + "; ".join(problems))
    _move(session, request, "return")
    _record(session, actor, request)
    return request


@write_operation("airlock.request.reject")
def reject(
    session: Session, actor: str, settings: Settings, request_id: str, reason: str
) -> AirlockRequest:
    """Final: nothing leaves. The reason is kept in the audit event."""
    request = _lock(session, request_id)
    check_can(session, settings, actor, "reject", request)
    check_state(request.id, request.status, "reject")
    why = _text("reason", reason)
    _move(session, request, "reject")
    _record(session, actor, request, reason=why)
    return request


@write_operation("airlock.request.approve")
def approve(session: Session, actor: str, settings: Settings, request_id: str) -> AirlockRequest:
    """Every output file approved by the required reviews of the turn (conflicts settled)."""
    request = _lock(session, request_id)
    check_can(session, settings, actor, "approve", request)
    check_state(request.id, request.status, "approve")
    reviewers = reviewers_of_turn(session, request)
    problems = approve_problems(
        file_views(session, request), reviewers, required_reviews(request, settings)
    )
    if problems:
        raise InvalidInput(f"request {request.id} cannot be approved: " + "; ".join(problems))
    _move(session, request, "approve")
    _record(session, actor, request, reviewers=reviewers)
    return request


# ---------------------------------------------------------------- release


def _release_inputs(
    session: Session, request: AirlockRequest, settings: Settings
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """The released files (each re-verified against its hash), the reviews that approved them,
    and their check reports: what `release_record.build` takes."""
    store = settings.airlock_store_dir
    files, reports = [], {}
    outputs = [f for f in active_files(session, request) if f.kind == FileKind.OUTPUT]
    for f in outputs:
        snapshots.open_verified(store, f.sha256)  # Conflict when the bytes changed
        files.append(
            {
                "name": f.name,
                "size": f.size,
                "sha256": f.sha256,
                "media_type": f.media_type,
                "group": f.group.name,
            }
        )
        reports[f.sha256] = report_of(session, request, f)
    review_turn = session.scalar(
        select(func.max(Review.turn)).where(Review.request_id == request.id)
    )
    reviews = []
    for r in session.scalars(
        select(Review)
        .where(Review.request_id == request.id, Review.turn == review_turn)
        .order_by(Review.id)
    ):
        votes = {
            f.name: session.scalar(
                select(VoteRecord.vote).where(
                    VoteRecord.file_id == f.id, VoteRecord.checker == r.checker
                )
            )
            for f in outputs
        }
        decision = (
            Vote.APPROVE if all(v == Vote.APPROVE for v in votes.values()) else Vote.REQUEST_CHANGES
        )
        reviews.append(
            {
                "reviewer": r.checker,
                "decision": str(decision),
                "votes": votes,
                "at": r.submitted_at.isoformat(),
            }
        )
    return files, reviews, reports


@write_operation("airlock.request.release")
def release(session: Session, actor: str, settings: Settings, request_id: str) -> Release:
    """Release an approved request under a signed record; the output files' bytes are verified
    against the reviewed hashes first (a changed store refuses the release)."""
    request = _lock(session, request_id)
    check_can(session, settings, actor, "release", request)
    check_state(request.id, request.status, "release")
    files, reviews, reports = _release_inputs(session, request, settings)
    now = _now()
    summary = {
        "id": request.id,
        "direction": str(request.direction),
        "project": request.project,
        "author": request.author,
        "created_at": request.created_at.isoformat(),
        "released_at": now.isoformat(),
        "released_by": actor,
    }
    signed = release_record.sign(release_record.build(summary, files, reviews, reports), settings)
    made = Release(
        request_id=request.id,
        record=signed["record"],
        signature=signed["signature"],
        released_at=now,
        released_by=actor,
    )
    session.add(made)
    _move(session, request, "release")
    published: list[str] = []  # names now under /ingress
    if request.direction == Direction.INGRESS:
        # Into the project's /ingress folder now, each file whole (sde.airlock.published);
        # should the commit fail, a retried release writes the same bytes again.
        published_files.publish(
            settings, request.project, [(f["name"], f["sha256"]) for f in files]
        )
        published = [f["name"] for f in files]
    _record(session, actor, request, files=[f["sha256"] for f in files], published=published)
    return made


def get_release(session: Session, request_id: str) -> Release:
    found = session.get(Release, request_id)
    if found is None:
        raise NotFound(f"airlock request {request_id} has no release")
    return found


def signed_record(release_row: Release) -> dict[str, Any]:
    """The document `sde airlock verify-release` checks."""
    return {"record": release_row.record, "signature": release_row.signature}


@write_operation("airlock.release.revoke")
def revoke_release(
    session: Session, actor: str, settings: Settings, request_id: str, reason: str
) -> Release:
    """Downloads stop; the record, the files and their history stay as evidence."""
    request = _lock(session, request_id)
    check_can(session, settings, actor, "revoke_release", request)
    check_state(request.id, request.status, "revoke_release")
    found = get_release(session, request.id)
    if found.revoked_at is not None:
        raise Conflict(f"the release of request {request.id} is already revoked")
    found.revoked_at, found.revoked_by = _now(), actor
    found.revoke_reason = _text("reason", reason)
    _record(session, actor, request, reason=found.revoke_reason)
    return found


# ---------------------------------------------------------------- audited reads


@write_operation("airlock.file.view")
def record_file_view(
    session: Session, actor: str, settings: Settings, request_id: str, name: str
) -> Path:
    """The verified stored copy of a file for a page to show, the view audited."""
    request = get_request(session, request_id)
    check_can(session, settings, actor, "view_file", request)
    found = _file(session, request, name)
    path = snapshots.open_verified(settings.airlock_store_dir, found.sha256)
    _record(session, actor, request, file=name, sha256=found.sha256)
    return path


@write_operation("airlock.file.download")
def record_download(
    session: Session, actor: str, settings: Settings, request_id: str, name: str
) -> Path:
    """A released output file for its author or the project's PI, unless revoked; audited."""
    request = get_request(session, request_id)
    check_can(session, settings, actor, "download", request)
    check_state(request.id, request.status, "download")
    found = get_release(session, request.id)
    if found.revoked_at is not None:
        raise Conflict(f"the release of request {request.id} was revoked")
    released = {f["name"]: f["sha256"] for f in _released_files(found.record)}
    if name not in released:
        raise NotFound(f"{name!r} is not a released file of request {request.id}")
    path = snapshots.open_verified(settings.airlock_store_dir, released[name])
    _record(session, actor, request, file=name, sha256=released[name])
    return path


def _released_files(record_: dict[str, Any]) -> Iterable[dict[str, Any]]:
    files = record_.get("files", [])
    return files if isinstance(files, list) else []
