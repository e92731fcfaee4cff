"""data pipeline: opt-out lists and exemptions

Revision ID: 0001_data
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001_data"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("data",)
depends_on: str | Sequence[str] | None = "0001_core"


def upgrade() -> None:
    op.create_table(
        "optout_lists",
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("entries", sa.Integer(), nullable=False),
        sa.Column("list_sha256", sa.String(length=64), nullable=False),
        sa.Column("source_sha256", sa.String(length=64), nullable=False),
        sa.Column("path", sa.String(length=1000), nullable=False),
        sa.Column("loaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("loaded_by", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("version"),
    )
    op.create_table(
        "optout_exemptions",
        sa.Column("project_slug", sa.String(length=30), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("granted_by", sa.String(length=200), nullable=False),
        sa.Column("granted_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["project_slug"], ["projects.slug"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("project_slug"),
    )


def downgrade() -> None:
    op.drop_table("optout_exemptions")
    op.drop_table("optout_lists")
