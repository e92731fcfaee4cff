"""Audit tables. They share the state database so that an event commits or
rolls back with the write it describes."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, String, Table, Text

from sde.core.db import Base

# BigInteger on PostgreSQL, INTEGER (the rowid alias) on SQLite.
SeqType = BigInteger().with_variant(Integer(), "sqlite")

audit_events = Table(
    "audit_events",
    Base.metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=False),
    Column("ts", String(32), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(100), nullable=False),
    Column("target", String(500), nullable=False),
    Column("project", String(100), nullable=False, server_default=""),
    Column("details", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
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
