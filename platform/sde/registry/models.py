"""Registry tables."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Date, DateTime, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from sde.core.db import Base
from sde.registry.enums import PersonStatus, ProjectStatus

# Status, role and classification columns hold the values of the StrEnums in
# sde.registry.enums as plain strings.


class Person(Base):
    __tablename__ = "people"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    full_name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(254), unique=True)
    accreditation_ref: Mapped[str | None] = mapped_column(String(100))
    accreditation_expiry: Mapped[date | None] = mapped_column(Date)
    training_completed: Mapped[date | None] = mapped_column(Date)
    training_expiry: Mapped[date | None] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16), default=PersonStatus.ACTIVE)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    memberships: Mapped[list[Membership]] = relationship(
        back_populates="person", cascade="all, delete-orphan"
    )
    roles: Mapped[list[GlobalRole]] = relationship(cascade="all, delete-orphan")

    @property
    def role_names(self) -> list[str]:
        return sorted(r.role for r in self.roles)


class Project(Base):
    __tablename__ = "projects"

    slug: Mapped[str] = mapped_column(String(30), primary_key=True)
    title: Mapped[str] = mapped_column(String(300))
    lay_summary: Mapped[str] = mapped_column(Text, default="")
    approval_ref: Mapped[str | None] = mapped_column(String(100))
    controller_signoff_by: Mapped[str | None] = mapped_column(String(200))
    controller_signoff_on: Mapped[date | None] = mapped_column(Date)
    start_date: Mapped[date] = mapped_column(Date)
    end_date: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16), default=ProjectStatus.PROPOSED)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    memberships: Mapped[list[Membership]] = relationship(
        back_populates="project", cascade="all, delete-orphan"
    )
    grants: Mapped[list[Grant]] = relationship(
        back_populates="project", cascade="all, delete-orphan"
    )


class Membership(Base):
    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("person_id", "project_slug"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"))
    project_slug: Mapped[str] = mapped_column(ForeignKey("projects.slug", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(32))
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    person: Mapped[Person] = relationship(back_populates="memberships")
    project: Mapped[Project] = relationship(back_populates="memberships")


class GlobalRole(Base):
    __tablename__ = "global_roles"

    person_id: Mapped[int] = mapped_column(
        ForeignKey("people.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[str] = mapped_column(String(32), primary_key=True)
    granted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Dataset(Base):
    __tablename__ = "datasets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    description: Mapped[str] = mapped_column(Text, default="")
    classification: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    versions: Mapped[list[DatasetVersion]] = relationship(
        back_populates="dataset", order_by="DatasetVersion.version"
    )


class DatasetVersion(Base):
    __tablename__ = "dataset_versions"
    __table_args__ = (UniqueConstraint("dataset_name", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_name: Mapped[str] = mapped_column(ForeignKey("datasets.name"))
    version: Mapped[int]
    manifest_hash: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(String(1000))
    # Table name -> list of column names, as published; grants are checked against it.
    tables: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    dataset: Mapped[Dataset] = relationship(back_populates="versions")

    @property
    def label(self) -> str:
        return f"{self.dataset_name}@{self.version}"


class Grant(Base):
    __tablename__ = "grants"
    __table_args__ = (UniqueConstraint("project_slug", "dataset_version_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_slug: Mapped[str] = mapped_column(ForeignKey("projects.slug", ondelete="CASCADE"))
    dataset_version_id: Mapped[int] = mapped_column(ForeignKey("dataset_versions.id"))
    # "table.column" or "table.*" entries.
    columns: Mapped[list[str]] = mapped_column(JSON)
    granted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    granted_by: Mapped[str] = mapped_column(String(200))

    project: Mapped[Project] = relationship(back_populates="grants")
    dataset_version: Mapped[DatasetVersion] = relationship()
