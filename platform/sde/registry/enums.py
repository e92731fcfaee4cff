"""The registry's states and roles, each declared once.

`StrEnum` members are `str`s equal to their stored values, so the columns keep
the plain strings they always held (no data migration), audit details and JSON
output read the same, and a value read back from the database compares equal
to its member. Definition order is the order shown to people (help texts,
"expected one of ..." messages).
"""

from __future__ import annotations

from enum import StrEnum


class PersonStatus(StrEnum):
    """Whether a person may work at all; any status other than active stops all access."""

    ACTIVE = "active"
    SUSPENDED = "suspended"
    LEFT = "left"


class ProjectStatus(StrEnum):
    """A project's place in its lifecycle (the transitions: `sde.registry.policies`)."""

    PROPOSED = "proposed"
    APPROVED = "approved"
    ACTIVE = "active"
    CLOSED = "closed"


class ProjectRole(StrEnum):
    """A member's role within one project."""

    RESEARCHER = "researcher"
    PRINCIPAL_INVESTIGATOR = "principal_investigator"


class GlobalRoleName(StrEnum):
    """A role across all projects (the `global_roles` table)."""

    OUTPUT_CHECKER = "output_checker"
    AUDITOR = "auditor"
    OPERATOR = "operator"


class Classification(StrEnum):
    """How identifiable a dataset's rows are."""

    IDENTIFIABLE = "identifiable"
    PSEUDONYMISED = "pseudonymised"
    ANONYMISED = "anonymised"
    SYNTHETIC = "synthetic"


def spoken(values: type[StrEnum], last: str = "or") -> str:
    """`a, b or c`: the members for a help text."""
    names = [str(v) for v in values]
    return ", ".join(names[:-1]) + f" {last} " + names[-1] if len(names) > 1 else names[0]
