"""The airlock's states, owners, kinds and votes, each declared once.

`StrEnum` members are `str`s equal to their stored values (as in
`sde.registry.enums`): columns hold readable strings, audit details and JSON
read the same, and a value read back compares equal to its member.
Definition order is the order shown to people.
"""

from __future__ import annotations

from enum import StrEnum


class Direction(StrEnum):
    """Which way the files move: out of a workspace, or into a project's workspaces."""

    EGRESS = "egress"
    INGRESS = "ingress"


class RequestStatus(StrEnum):
    """A request's place in its lifecycle (the transitions: `sde.airlock.policies`)."""

    PENDING = "pending"
    SUBMITTED = "submitted"
    PARTIALLY_REVIEWED = "partially_reviewed"
    REVIEWED = "reviewed"
    RETURNED = "returned"
    APPROVED = "approved"
    RELEASED = "released"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"


class Owner(StrEnum):
    """Who must act next on a request in a state; every change of owner starts a turn."""

    AUTHOR = "author"
    CHECKERS = "checkers"
    SYSTEM = "system"


class FileKind(StrEnum):
    """Whether a file leaves with the release or is only shown to checkers."""

    OUTPUT = "output"
    SUPPORTING = "supporting"


class Vote(StrEnum):
    """A checker's decision on one output file (undecided: reset by a resubmission)."""

    APPROVE = "approve"
    REQUEST_CHANGES = "request_changes"
    UNDECIDED = "undecided"


class CommentVisibility(StrEnum):
    """Public comments reach the author once the request is back with them; checkers' never do."""

    PUBLIC = "public"
    CHECKERS = "checkers"


class Role(StrEnum):
    """The part a person plays towards one request (`sde.airlock.permissions.role_of`)."""

    AUTHOR = "author"
    PRINCIPAL_INVESTIGATOR = "principal_investigator"  # of the request's project
    PROJECT_MEMBER = "project_member"
    CHECKER = "checker"  # a current output checker who may review this request
    AUDITOR = "auditor"
    OPERATOR = "operator"
    SYSTEM = "system"  # the airlock service itself (release)
    NOBODY = "nobody"  # none of the above, or lapsed
