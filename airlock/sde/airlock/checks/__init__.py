"""Automated checks of a snapshot: the runner and its plug-in interface.

A check is a plain function `(path, name, settings) -> list[Finding]`: `path`
is the stored (verified) copy, `name` the researcher's relative path (its
extension says what the file claims to be). Checks are registered in the
`sde.airlock.checks` entry-point group of pyproject.toml, so the disclosure
checks of the next issue plug in without an edit here; `run_checks(...,
checks=[...])` runs a given list instead (tests). A Report is the worst status
of its findings and records the thresholds and tool versions used, so a
release record can say exactly what was applied.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from sde.core.config import Settings

# The entry-point group of check plug-ins: NAME = "sde.PORTION.MODULE:function".
CHECKS_GROUP = "sde.airlock.checks"


class CheckStatus(StrEnum):
    PASS = "pass"
    REVIEW = "review"  # a checker must look; does not block submission
    FAIL = "fail"  # blocks submission unless the researcher asks for an exception


@dataclass(frozen=True)
class Finding:
    name: str  # the check's name, e.g. "table_shape"
    status: CheckStatus
    reason: str
    locations: list[str] = field(default_factory=list)  # "line 12", "row 3 col 2", ...

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": str(self.status),
            "reason": self.reason,
            "locations": list(self.locations),
        }


Check = Callable[[Path, str, Settings], list[Finding]]


@dataclass(frozen=True)
class Report:
    status: CheckStatus
    findings: list[Finding]
    thresholds: dict[str, Any]  # the settings the checks read, by name
    versions: dict[str, str]  # tool (sde, python, each check's distribution) -> version

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": str(self.status),
            "findings": [f.as_dict() for f in self.findings],
            "thresholds": dict(self.thresholds),
            "versions": dict(self.versions),
        }


def registered_checks() -> list[Check]:
    """The checks declared in the `sde.airlock.checks` entry-point group, by name."""
    raise NotImplementedError


def run_checks(
    path: Path, name: str, settings: Settings, checks: Sequence[Check] | None = None
) -> Report:
    """Run every registered check (or `checks`) over one file; the worst status wins."""
    raise NotImplementedError
