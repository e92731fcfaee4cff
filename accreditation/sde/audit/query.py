"""Reading events back for auditors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Engine, select

from sde.audit.schema import audit_events


def list_events(
    engine: Engine,
    *,
    project: str | None = None,
    actor: str | None = None,
    action: str | None = None,
    since: str | None = None,
    until: str | None = None,
    limit: int | None = None,
) -> Iterator[dict[str, Any]]:
    """Events in sequence order; `since`/`until` are ISO timestamps (UTC) or dates."""
    q = select(audit_events).order_by(audit_events.c.seq)
    if project is not None:
        q = q.where(audit_events.c.project == project)
    if actor is not None:
        q = q.where(audit_events.c.actor == actor)
    if action is not None:
        q = q.where(audit_events.c.action.startswith(action))
    if since is not None:
        q = q.where(audit_events.c.ts >= since)
    if until is not None:
        q = q.where(audit_events.c.ts < until)
    if limit is not None:
        q = q.limit(limit)
    with engine.connect() as conn:
        for row in conn.execute(q):
            event = dict(row._mapping)
            event["details"] = json.loads(event["details"])
            yield event
