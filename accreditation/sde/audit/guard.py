"""Refuse to commit a transaction that changed state without an audit event.

Every ORM flush and every DML statement run through a session marks the
transaction as having written; `record` marks it as audited. A commit with
writes but no event raises `UnauditedWrite`, so a forgotten audit call fails
loudly in tests and in production instead of leaving a silent gap.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction

_WRITES = "sde_writes"
_AUDITED = "sde_audited"
# Tables whose writes are the audit trail itself.
_EXEMPT = frozenset({"audit_events", "audit_checkpoints"})


class UnauditedWrite(RuntimeError):
    """A transaction changed the state database without recording an audit event."""


def mark_audited(session: Session) -> None:
    session.info[_AUDITED] = True


def _is_sde_table(table: Any) -> bool:
    # Other ORMs in the same process (JupyterHub's own database in the hub) are
    # not the state database and are not audited here.
    from sde.core.db import Base

    return table is not None and getattr(table, "metadata", None) is Base.metadata


def _table_names(obj: Any) -> set[str]:
    table = getattr(obj, "__table__", None)
    return {table.name} if table is not None and _is_sde_table(table) else set()


@event.listens_for(Session, "after_flush")
def _after_flush(session: Session, _ctx: Any) -> None:
    changed: set[str] = set()
    for obj in (*session.new, *session.deleted):
        changed |= _table_names(obj)
    for obj in session.dirty:
        if session.is_modified(obj):
            changed |= _table_names(obj)
    if changed - _EXEMPT:
        session.info.setdefault(_WRITES, set()).update(changed - _EXEMPT)


@event.listens_for(Session, "do_orm_execute")
def _on_execute(state: ORMExecuteState) -> None:
    if not (state.is_insert or state.is_update or state.is_delete):
        return
    table = getattr(state.statement, "table", None)
    if table is not None and not _is_sde_table(table):
        return
    name = getattr(table, "name", None)
    if name not in _EXEMPT:
        state.session.info.setdefault(_WRITES, set()).add(name or "?")


@event.listens_for(Session, "before_commit")
def _before_commit(session: Session) -> None:
    session.flush()
    writes = session.info.get(_WRITES)
    if writes and not session.info.get(_AUDITED):
        raise UnauditedWrite(
            f"transaction wrote to {', '.join(sorted(writes))} without an audit event"
        )


@event.listens_for(Session, "after_transaction_end")
def _reset(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        for key in (_WRITES, _AUDITED, "sde_audit_head"):
            session.info.pop(key, None)
