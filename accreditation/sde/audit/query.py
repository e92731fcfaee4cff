"""Reading events back for auditors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import Engine, select

from sde.audit.chain import parse_body
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
    c = audit_events.c
    q = select(c.seq, c.body, c.hash).order_by(c.seq)
    if project is not None:
        q = q.where(c.project == project)
    if actor is not None:
        q = q.where(c.actor == actor)
    if action is not None:
        q = q.where(c.action.startswith(action))
    if since is not None:
        q = q.where(c.ts >= since)
    if until is not None:
        q = q.where(c.ts < until)
    if limit is not None:
        q = q.limit(limit)
    with engine.connect() as conn:
        for seq, body, h in conn.execute(q):
            event = parse_body(body)
            prev = event.pop("prev")
            yield {"seq": seq, **event, "prev_hash": prev, "hash": h}
