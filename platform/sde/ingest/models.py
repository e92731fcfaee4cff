"""State tables of the data pipeline: opt-out list versions and per-project exemptions."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from sde.core.db import Base


class OptOutList(Base):
    """One loaded National Data Opt-Out list (the whole list; each load is a new version)."""

    __tablename__ = "optout_lists"

    version: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    entries: Mapped[int]
    # SHA-256 of the stored file of keyed hashes, and of the file as received.
    list_sha256: Mapped[str] = mapped_column(String(64))
    source_sha256: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(String(1000))
    loaded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    loaded_by: Mapped[str] = mapped_column(String(200))


class OptOutExemption(Base):
    """A project allowed to see opted-out people (e.g. under a s251 approval)."""

    __tablename__ = "optout_exemptions"

    project_slug: Mapped[str] = mapped_column(
        ForeignKey("projects.slug", ondelete="CASCADE"), primary_key=True
    )
    reason: Mapped[str] = mapped_column(Text)
    granted_by: Mapped[str] = mapped_column(String(200))
    granted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
