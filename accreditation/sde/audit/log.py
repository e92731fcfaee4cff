"""Appending events to the chain, inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select, text
from sqlalchemy.orm import Session

from sde.audit.chain import GENESIS, event_body, event_hash
from sde.audit.guard import mark_audited
from sde.audit.operations import claim_action
from sde.audit.schema import audit_events

# Any constant works; it names the lock that serialises appends on PostgreSQL.
_PG_APPEND_LOCK = 0x5DE_A0D1

_HEAD_KEY = "sde_audit_head"


@dataclass(frozen=True)
class EventIn:
    actor: str
    action: str
    target: str
    project: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


def now_ts() -> str:
    """UTC time in one fixed-width form, so that text order is time order."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _clean(name: str, value: str | None, required: bool = True) -> str:
    value = value or ""
    if required and not value:
        raise ValueError(f"audit event needs a {name}")
    if any(ord(ch) < 0x20 for ch in value):
        raise ValueError(f"audit event {name} must not contain control characters: {value!r}")
    return value


def _head(session: Session) -> tuple[int, str]:
    """(last seq, last hash) of the chain, locked against concurrent appenders."""
    cached = session.info.get(_HEAD_KEY)
    if cached is not None:
        return (int(cached[0]), str(cached[1]))
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_APPEND_LOCK})
    # SQLite transactions start with BEGIN IMMEDIATE (sde.core.db), which already
    # holds the write lock here.
    row = session.execute(
        select(audit_events.c.seq, audit_events.c.hash).order_by(audit_events.c.seq.desc()).limit(1)
    ).first()
    return (row[0], row[1]) if row else (0, GENESIS)


def append_many(session: Session, events: Iterable[EventIn], ts: str | None = None) -> int:
    """Append events in order, in the session's transaction. Returns the last seq."""
    seq, prev = _head(session)
    rows = []
    for ev in events:
        seq += 1
        stamp = ts or now_ts()
        actor = _clean("actor", ev.actor)
        action = _clean("action", ev.action)
        target = _clean("target", ev.target)
        project = _clean("project", ev.project, required=False)
        body = event_body(prev, stamp, actor, action, target, project, dict(ev.details))
        h = event_hash(body)
        rows.append({"seq": seq, "body": body, "hash": h})
        prev = h
    if rows:
        session.execute(insert(audit_events), rows)
        session.info[_HEAD_KEY] = (seq, prev)
        mark_audited(session)
    return seq


def record(
    session: Session,
    *,
    actor: str,
    target: str,
    project: str | None = None,
    details: Mapping[str, Any] | None = None,
    action: str | None = None,
) -> int:
    """Append one event of the running write operation, in the caller's transaction.

    The action is the operation's (`sde.audit.operations`); it commits or rolls
    back with the transaction. `action` is only for events outside any operation
    (the log's own tests).
    """
    ev = EventIn(actor, claim_action(action), target, project, details or {})
    return append_many(session, [ev])
