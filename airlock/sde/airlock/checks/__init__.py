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

import functools
import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from importlib.metadata import PackageNotFoundError, entry_points, version
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
    # False for a failure no justification may outweigh (malware): no exception can be asked.
    exceptable: bool = True

    def as_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "name": self.name,
            "status": str(self.status),
            "reason": self.reason,
            "locations": list(self.locations),
        }
        if not self.exceptable:
            found["exceptable"] = False
        return found


Check = Callable[[Path, str, Settings], list[Finding]]

# The status order: a report is as bad as its worst finding.
_RANK = {CheckStatus.PASS: 0, CheckStatus.REVIEW: 1, CheckStatus.FAIL: 2}


def check(
    name: str, reads: Sequence[str] = (), directions: Sequence[str] | None = None
) -> Callable[[Check], Check]:
    """Declare a check: its name in findings, and the settings ("section.name") it reads.

    The runner records the value of each setting read in the report's thresholds,
    so a release record names the limits that were applied, not today's.
    `directions` ("egress", "ingress") limits the check to requests of those
    directions (the malware scan is for files coming in); None runs it for all.
    """

    def declare(fn: Check) -> Check:
        setattr(fn, "check_name", name)  # noqa: B010 (a function's attribute, typed as Check)
        setattr(fn, "reads", tuple(reads))  # noqa: B010
        setattr(fn, "directions", None if directions is None else tuple(directions))  # noqa: B010
        return fn

    return declare


def check_name(fn: Check) -> str:
    return str(getattr(fn, "check_name", fn.__name__))


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


def _version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"


def registered_checks() -> list[Check]:
    """The checks declared in the `sde.airlock.checks` entry-point group, by name.

    Each carries the version of the distribution that declared it (its
    `check_version`), which the report records.
    """
    return list(_registered())


@functools.cache
def _registered() -> tuple[Check, ...]:
    # Reading the installed distributions' entry points costs about 45 ms, at every
    # file added; what is installed does not change while a process runs.
    found = []
    for ep in sorted(entry_points(group=CHECKS_GROUP), key=lambda e: e.name):
        fn = ep.load()
        if not hasattr(fn, "check_version"):
            setattr(fn, "check_version", _version(ep.dist.name) if ep.dist else "unknown")  # noqa: B010
        found.append(fn)
    return tuple(found)


def _setting(settings: Settings, dotted: str) -> Any:
    section, name = dotted.split(".")
    value = getattr(getattr(settings, section), name)
    return list(value) if isinstance(value, list | tuple) else value


def applies(fn: Check, direction: str | None) -> bool:
    """Whether `fn` runs for a request of `direction` (None: a check outside any request)."""
    directions = getattr(fn, "directions", None)
    return directions is None or direction in directions


def run_checks(
    path: Path,
    name: str,
    settings: Settings,
    checks: Sequence[Check] | None = None,
    direction: str | None = None,
) -> Report:
    """Run every registered check (or `checks`) that applies to `direction` over one file;
    the worst status wins.

    A check that raises becomes a failing finding with the error: a broken check
    must block, never pass a file silently, and never stall the request.
    """
    chosen = registered_checks() if checks is None else list(checks)
    chosen = [fn for fn in chosen if applies(fn, direction)]
    findings: list[Finding] = []
    thresholds: dict[str, Any] = {}
    versions = {"sde": _version("sde"), "python": platform.python_version()}
    for fn in chosen:
        label = check_name(fn)
        versions[f"check.{label}"] = str(getattr(fn, "check_version", versions["sde"]))
        for dotted in getattr(fn, "reads", ()):
            thresholds[dotted] = _setting(settings, dotted)
        try:
            findings.extend(fn(path, name, settings))
        except Exception as exc:
            findings.append(
                Finding(label, CheckStatus.FAIL, f"the check failed: {type(exc).__name__}: {exc}")
            )
    worst = max((_RANK[f.status] for f in findings), default=0)
    status = next(s for s, rank in _RANK.items() if rank == worst)
    return Report(status=status, findings=findings, thresholds=thresholds, versions=versions)
