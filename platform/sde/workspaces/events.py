"""Audit events of the workspaces component: firewall repairs, work carried over.

They live here, not in the hub, so that the API gate and `sde workspaces`
record them without importing the hub (which sits above this component).
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from sde.audit import record, write_operation


def workspace_target(username: str, project: str) -> str:
    return f"workspace:{username}/{project}"


@write_operation("workspaces.firewall.repaired")
def record_firewall_repair(session: Session, bridge: str, problems: list[str]) -> None:
    record(
        session,
        actor="sde:api-gate",
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
        target=workspace_target(username, project),
        project=project,
        details={"from": source, "to": volume},
    )
