"""Audit tables. They share the state database so that an event commits or
rolls back with the write it describes."""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Column, Computed, Index, Integer, String, Table, Text
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement

from sde.core.db import Base

# BigInteger on PostgreSQL, INTEGER (the rowid alias) on SQLite.
SeqType = BigInteger().with_variant(Integer(), "sqlite")


class body_field(ColumnElement[str]):
    """A text field of the event body, for generated columns (SQLite and PostgreSQL)."""

    inherit_cache = True

    def __init__(self, key: str) -> None:
        self.key = key
        self.type = String()


@compiles(body_field, "sqlite")
def _body_field_sqlite(element: body_field, compiler: Any, **kw: Any) -> str:
    return f"json_extract(body, '$.{element.key}')"


@compiles(body_field, "postgresql")
def _body_field_postgresql(element: body_field, compiler: Any, **kw: Any) -> str:
    return f"(body::json ->> '{element.key}')"


def _derived(name: str, length: int) -> Column[str]:
    # Stored generated columns: queryable and indexable, but never writable on
    # their own, so what a query shows is always what the hash covers.
    return Column(name, String(length), Computed(body_field(name), persisted=True))


# `body` is the exact canonical JSON that `hash` covers (see chain.py).
audit_events = Table(
    "audit_events",
    Base.metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=False),
    Column("body", Text, nullable=False),
    Column("hash", String(64), nullable=False),
    _derived("ts", 32),
    _derived("actor", 200),
    _derived("action", 100),
    _derived("target", 500),
    _derived("project", 100),
    Index("ix_audit_events_project", "project"),
    Index("ix_audit_events_actor", "actor"),
    Index("ix_audit_events_ts", "ts"),
)

audit_checkpoints = Table(
    "audit_checkpoints",
    Base.metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=False),
    Column("hash", String(64), nullable=False),
    Column("ts", String(32), nullable=False),
    Column("key_id", String(32), nullable=False),
    Column("signature", String(128), nullable=False),
)

APPEND_ONLY_TABLES = ("audit_events", "audit_checkpoints")


def append_only_ddl(dialect: str) -> list[str]:
    """Triggers that refuse UPDATE, DELETE (and on PostgreSQL TRUNCATE) on the audit tables.

    They stop accidents and ordinary users; someone who can drop triggers can
    still edit rows, which is what the hash chain and checkpoints detect.
    """
    statements: list[str] = []
    if dialect == "sqlite":
        for table in APPEND_ONLY_TABLES:
            for op in ("UPDATE", "DELETE"):
                statements.append(
                    f"CREATE TRIGGER {table}_no_{op.lower()} BEFORE {op} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: {op} refused'); END"
                )
    elif dialect == "postgresql":
        statements.append(
            "CREATE OR REPLACE FUNCTION sde_audit_append_only() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION '% is append-only: % refused', "
            "TG_TABLE_NAME, TG_OP; END $$"
        )
        for table in APPEND_ONLY_TABLES:
            statements.append(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION sde_audit_append_only()"
            )
            statements.append(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION sde_audit_append_only()"
            )
    else:
        raise ValueError(f"no append-only triggers for database dialect {dialect!r}")
    return statements


def drop_append_only_ddl(dialect: str) -> list[str]:
    if dialect == "sqlite":
        return [
            f"DROP TRIGGER IF EXISTS {t}_no_{op}"
            for t in APPEND_ONLY_TABLES
            for op in ("update", "delete")
        ]
    statements = []
    for table in APPEND_ONLY_TABLES:
        statements.append(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        statements.append(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
    statements.append("DROP FUNCTION IF EXISTS sde_audit_append_only()")
    return statements
