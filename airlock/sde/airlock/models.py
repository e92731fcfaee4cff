"""Airlock tables, on the shared declarative base of the state database.

Status, kind, vote and visibility columns hold the values of the StrEnums in
`sde.airlock.enums` as plain strings. Nothing is ever deleted: a withdrawn file
keeps its row (and its snapshot), a reset vote becomes undecided, a revoked
release keeps its record, so the history a release record cites stays in the
database.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from sde.core.db import Base


class AirlockRequest(Base):
    __tablename__ = "airlock_requests"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    direction: Mapped[str] = mapped_column(String(16))
    project: Mapped[str] = mapped_column(ForeignKey("projects.slug"))
    author: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32))
    # Starts at 1 and goes up at every change of owner (author <-> checkers).
    turn: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    groups: Mapped[list[FileGroup]] = relationship(
        back_populates="request", order_by="FileGroup.id"
    )
    files: Mapped[list[AirlockFile]] = relationship(
        back_populates="request", order_by="AirlockFile.id"
    )


class FileGroup(Base):
    __tablename__ = "airlock_file_groups"
    __table_args__ = (UniqueConstraint("request_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("airlock_requests.id"))
    name: Mapped[str] = mapped_column(String(100))
    context: Mapped[str] = mapped_column(Text, default="")
    controls: Mapped[str] = mapped_column(Text, default="")

    request: Mapped[AirlockRequest] = relationship(back_populates="groups")


class AirlockFile(Base):
    __tablename__ = "airlock_files"
    __table_args__ = (UniqueConstraint("request_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("airlock_requests.id"))
    group_id: Mapped[int] = mapped_column(ForeignKey("airlock_file_groups.id"))
    name: Mapped[str] = mapped_column(String(1000))
    kind: Mapped[str] = mapped_column(String(16))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    media_type: Mapped[str] = mapped_column(String(100))
    withdrawn: Mapped[bool] = mapped_column(Boolean, default=False)
    # The turn in which its bytes, group or kind last changed: a resubmission
    # resets the votes of files changed since the review turn.
    changed_turn: Mapped[int] = mapped_column(Integer)

    request: Mapped[AirlockRequest] = relationship(back_populates="files")
    group: Mapped[FileGroup] = relationship()


class CheckReport(Base):
    """The check-runner's report on one snapshot, kept under the bytes' hash."""

    __tablename__ = "airlock_check_reports"
    __table_args__ = (UniqueConstraint("request_id", "name", "sha256"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("airlock_requests.id"))
    name: Mapped[str] = mapped_column(String(1000))
    sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    report: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CheckException(Base):
    """The researcher's case for releasing a file despite a failing check."""

    __tablename__ = "airlock_exceptions"
    __table_args__ = (UniqueConstraint("file_id", "check"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    file_id: Mapped[int] = mapped_column(ForeignKey("airlock_files.id"))
    check: Mapped[str] = mapped_column(String(100))
    justification: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Review(Base):
    """A checker's submitted review of one turn (their votes and comments become final)."""

    __tablename__ = "airlock_reviews"
    __table_args__ = (UniqueConstraint("request_id", "checker", "turn"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("airlock_requests.id"))
    checker: Mapped[str] = mapped_column(String(64))
    turn: Mapped[int] = mapped_column(Integer)
    submitted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class VoteRecord(Base):
    """A checker's current vote on one file; `turn` is the turn it was cast in."""

    __tablename__ = "airlock_votes"
    __table_args__ = (UniqueConstraint("file_id", "checker"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("airlock_requests.id"))
    file_id: Mapped[int] = mapped_column(ForeignKey("airlock_files.id"))
    checker: Mapped[str] = mapped_column(String(64))
    turn: Mapped[int] = mapped_column(Integer)
    vote: Mapped[str] = mapped_column(String(16))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Comment(Base):
    __tablename__ = "airlock_comments"

    id: Mapped[int] = mapped_column(primary_key=True)
    group_id: Mapped[int] = mapped_column(ForeignKey("airlock_file_groups.id"))
    author: Mapped[str] = mapped_column(String(64))
    visibility: Mapped[str] = mapped_column(String(16))
    turn: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Release(Base):
    """The signed release record of an approved request; revoking stops downloads only."""

    __tablename__ = "airlock_releases"

    # One release per request: a second (a double click, a retry) cannot be stored.
    request_id: Mapped[str] = mapped_column(ForeignKey("airlock_requests.id"), primary_key=True)
    record: Mapped[dict[str, Any]] = mapped_column(JSON)
    signature: Mapped[dict[str, Any]] = mapped_column(JSON)
    released_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    released_by: Mapped[str] = mapped_column(String(64))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_by: Mapped[str | None] = mapped_column(String(64))
    revoke_reason: Mapped[str | None] = mapped_column(Text)
