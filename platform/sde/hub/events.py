"""Audit events of workspaces: started, stopped, refused.

They change no table, but they are decisions and actions the log must show;
declaring them as write operations puts them under the audit meta-test.
(Firewall repairs and work carried over are the workspaces component's:
sde.workspaces.events.)
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from sde.audit import record, write_operation
from sde.workspaces.events import workspace_target


@write_operation("workspace.spawn")
def record_spawn(
    session: Session, username: str, project: str, details: dict[str, Any] | None = None
) -> None:
    record(
        session,
        actor=f"user:{username}",
        target=workspace_target(username, project),
        project=project,
        details=details or {},
    )


@write_operation("workspace.spawn.refused")
def record_refusal(session: Session, username: str, project: str, reasons: list[str]) -> None:
    record(
        session,
        actor=f"user:{username}",
        target=workspace_target(username, project),
        project=project,
        details={"reasons": reasons},
    )


@write_operation("workspace.access.lapsed")
def record_lapse(session: Session, username: str, project: str, reasons: list[str]) -> None:
    record(
        session,
        actor="sde:hub",
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
        target=workspace_target(username, project),
        project=project,
        details=details or {},
    )
