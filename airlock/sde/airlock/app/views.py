"""What the API returns and the pages show of a request, filtered through `visibility`.

One function builds the view of a request for one viewer, so the JSON API and
the pages can never disagree on who sees which vote or comment; the forms a
page offers come from `permissions.can` (who and which state), never from a
rule of their own.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sde.airlock import service
from sde.airlock.enums import Role
from sde.airlock.models import (
    AirlockRequest,
    CheckException,
    Comment,
    FileGroup,
    Review,
    VoteRecord,
)
from sde.airlock.permissions import ACTION_ROLES, allowed, check_can_view, role_of
from sde.airlock.policies import STATES
from sde.airlock.visibility import visible_comments, visible_votes
from sde.core.config import Settings


def age(when: datetime) -> str:
    """How long ago, in the largest whole unit (a queue shows the oldest first)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds = max(0, int((datetime.now(UTC) - when).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def summary(request: AirlockRequest) -> dict[str, Any]:
    return {
        "id": request.id,
        "direction": str(request.direction),
        "project": request.project,
        "author": request.author,
        "status": str(request.status),
        "owner": str(STATES[request.status].owner),  # type: ignore[index]
        "turn": request.turn,
        "created_at": request.created_at.isoformat(),
        "updated_at": request.updated_at.isoformat(),
        "age": age(request.updated_at),
    }


def request_view(
    session: Session, settings: Settings, viewer: str, request: AirlockRequest
) -> dict[str, Any]:
    """The request as `viewer` may see it now; AccessDenied when they may not see it at all."""
    role = check_can_view(session, settings, viewer, request)
    reviews = service.reviewers_of_turn(session, request)
    required = service.required_reviews(request, settings)
    votes = list(session.scalars(select(VoteRecord).where(VoteRecord.request_id == request.id)))
    seen_votes = visible_votes(request, viewer, role, votes, len(reviews), required)
    comments = list(
        session.scalars(
            select(Comment)
            .join(FileGroup, Comment.group_id == FileGroup.id)
            .where(FileGroup.request_id == request.id)
            .order_by(Comment.id)
        )
    )
    seen_comments = visible_comments(request, viewer, role, comments, len(reviews), required)
    files = service.active_files(session, request)
    # What changed since the last turn reviewed before this one: the rule that resets votes
    # on resubmit, so a file stays marked while this turn's reviews come in.
    last_review_turn = session.scalar(
        select(func.max(Review.turn)).where(
            Review.request_id == request.id, Review.turn < request.turn
        )
    )
    groups = []
    for g in service.groups_of(session, request):
        group_files = []
        for f in (f for f in files if f.group_id == g.id):
            exceptions = {
                e.check: e.justification
                for e in session.scalars(
                    select(CheckException).where(CheckException.file_id == f.id)
                )
            }
            group_files.append(
                {
                    "name": f.name,
                    "kind": str(f.kind),
                    "size": f.size,
                    "sha256": f.sha256,
                    "media_type": f.media_type,
                    "changed_turn": f.changed_turn,
                    "changed": last_review_turn is not None and f.changed_turn > last_review_turn,
                    "checks": service.report_of(session, request, f),
                    "exceptions": exceptions,
                    "votes": [
                        {"checker": v.checker, "vote": str(v.vote), "turn": v.turn}
                        for v in seen_votes
                        if v.file_id == f.id
                    ],
                }
            )
        groups.append(
            {
                "name": g.name,
                "context": g.context,
                "controls": g.controls,
                "files": group_files,
                "comments": [
                    {
                        "author": c.author,
                        "visibility": str(c.visibility),
                        "turn": c.turn,
                        "text": c.text,
                        "created_at": c.created_at.isoformat(),
                    }
                    for c in seen_comments
                    if c.group_id == g.id
                ],
            }
        )
    view = summary(request)
    view.update(
        role=str(role),
        reviews=reviews if role in (Role.CHECKER, Role.AUDITOR) else len(reviews),
        reviews_required=required,
        groups=groups,
        may=sorted(a for a in ACTION_ROLES if allowed(a, role, request.status)),
    )
    if str(request.status) == "released":
        release = service.get_release(session, request.id)
        view["released_files"] = [f["name"] for f in release.record.get("files", [])]
        view["revoked"] = release.revoked_at is not None
    return view


def visible_requests(
    session: Session, settings: Settings, viewer: str, project: str | None = None
) -> list[AirlockRequest]:
    """Every request `viewer` may see now (of `project` only, for a workspace), oldest first."""
    q = select(AirlockRequest).order_by(AirlockRequest.updated_at, AirlockRequest.id)
    if project is not None:
        q = q.where(AirlockRequest.project == project)
    found = []
    for request in session.scalars(q):
        role, _ = role_of(session, settings, viewer, request)
        if allowed("view", role, request.status):
            found.append(request)
    return found
