"""Audit events of workspaces: started, stopped, refused.

They change no table, but they are decisions and actions the log must show;
registering them as write operations puts them under the audit meta-test.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from sde.audit import record
from sde.registry.service import write_operation


def workspace_target(username: str, project: str) -> str:
    return f"workspace:{username}/{project}"


@write_operation("workspace.spawn")
def record_spawn(
    session: Session, username: str, project: str, details: dict[str, Any] | None = None
) -> None:
    record(
        session,
        actor=f"user:{username}",
        action="workspace.spawn",
        target=workspace_target(username, project),
        project=project,
        details=details or {},
    )


@write_operation("workspace.spawn.refused")
def record_refusal(session: Session, username: str, project: str, reasons: list[str]) -> None:
    record(
        session,
        actor=f"user:{username}",
        action="workspace.spawn.refused",
        target=workspace_target(username, project),
        project=project,
        details={"reasons": reasons},
    )


@write_operation("workspace.access.lapsed")
def record_lapse(session: Session, username: str, project: str, reasons: list[str]) -> None:
    record(
        session,
        actor="sde:hub",
        action="workspace.access.lapsed",
        target=workspace_target(username, project),
        project=project,
        details={"reasons": reasons},
    )


@write_operation("workspace.stop")
def record_stop(
    session: Session, actor: str, username: str, project: str, details: dict[str, Any] | None = None
) -> None:
    record(
        session,
        actor=actor,
        action="workspace.stop",
        target=workspace_target(username, project),
        project=project,
        details=details or {},
    )


@write_operation("workspaces.firewall.repaired")
def record_firewall_repair(session: Session, bridge: str, problems: list[str]) -> None:
    record(
        session,
        actor="sde:api-gate",
        action="workspaces.firewall.repaired",
        target=f"firewall:{bridge}",
        details={"problems": problems},
    )


@write_operation("workspace.work.carried")
def record_work_carried(
    session: Session, actor: str, username: str, project: str, source: str, volume: str
) -> None:
    """A work volume of the old, ambiguous name copied into the person's own, once."""
    record(
        session,
        actor=actor,
        action="workspace.work.carried",
        target=workspace_target(username, project),
        project=project,
        details={"from": source, "to": volume},
    )
