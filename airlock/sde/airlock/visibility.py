"""What each person may see of a request's votes and comments (blind review).

Independent review means a checker decides without seeing the others: until
the reviews required for a turn are all in, a checker sees only their own
votes and comments of that turn (earlier turns are open to every checker).
The author (and their project) never see checker-only comments, and see public
comments only once the request is back with them or decided, never while a
review is under way. Auditors see everything. Pages and the API filter through
here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Iterable

from sde.airlock.enums import CommentVisibility, Owner, Role
from sde.airlock.models import AirlockRequest, Comment, VoteRecord
from sde.airlock.policies import is_blind, owner_of

_PROJECT_SIDE = frozenset({Role.AUTHOR, Role.PRINCIPAL_INVESTIGATOR, Role.PROJECT_MEMBER})


def turn_is_blind(request: AirlockRequest, reviews_in_turn: int, required: int) -> bool:
    """Whether checkers are blind to each other in the request's current turn."""
    return owner_of(request.status) == Owner.CHECKERS and is_blind(reviews_in_turn, required)


def visible_votes(
    request: AirlockRequest,
    viewer: str,
    role: Role,
    votes: Iterable[VoteRecord],
    reviews_in_turn: int,
    required: int,
) -> list[VoteRecord]:
    """Checkers: their own, and the others' once the turn is no longer blind; auditors: all;
    the project side sees no single checker's vote (only the outcome, once decided)."""
    if role == Role.AUDITOR:
        return list(votes)
    if role != Role.CHECKER:
        return []
    blind = turn_is_blind(request, reviews_in_turn, required)
    return [v for v in votes if v.checker == viewer or not blind or v.turn < request.turn]


def visible_comments(
    request: AirlockRequest,
    viewer: str,
    role: Role,
    comments: Iterable[Comment],
    reviews_in_turn: int,
    required: int,
) -> list[Comment]:
    """The comments `viewer` may read, in the order given."""
    if role == Role.AUDITOR:
        return list(comments)
    if role == Role.CHECKER:
        blind = turn_is_blind(request, reviews_in_turn, required)
        return [c for c in comments if c.author == viewer or not blind or c.turn < request.turn]
    if role in _PROJECT_SIDE:
        under_review = owner_of(request.status) == Owner.CHECKERS
        return [
            c
            for c in comments
            if c.author == viewer
            or (
                c.visibility == CommentVisibility.PUBLIC
                and (c.turn < request.turn or not under_review)
            )
        ]
    return []
