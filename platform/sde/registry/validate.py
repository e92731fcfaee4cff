"""Checks on registry input; each failure is a one-line InvalidInput."""

from __future__ import annotations

import re
from datetime import date
from enum import StrEnum
from typing import TypeVar

from sde.core.errors import InvalidInput

E = TypeVar("E", bound=StrEnum)

USERNAME_RE = re.compile(r"^[a-z][a-z0-9._-]{1,63}$")
# Project slugs double as JupyterHub named-server names: 1-30 of [a-z0-9-].
SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,28}[a-z0-9])?$")
DATASET_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
COLUMN_RE = re.compile(r"^[a-z_][a-z0-9_]*\.(?:\*|[a-z_][a-z0-9_]*)$")


def username(value: str) -> str:
    if not USERNAME_RE.match(value):
        raise InvalidInput(
            f"invalid username {value!r}: use 2-64 characters a-z 0-9 . _ -, starting with a letter"
        )
    return value


def slug(value: str) -> str:
    if not SLUG_RE.match(value):
        raise InvalidInput(
            f"invalid project id {value!r}: use 1-30 characters a-z 0-9 -, "
            "not starting or ending with -"
        )
    return value


def dataset_name(value: str) -> str:
    if not DATASET_RE.match(value):
        raise InvalidInput(
            f"invalid dataset name {value!r}: use a-z 0-9 _, starting with a letter (max 64)"
        )
    return value


def email(value: str) -> str:
    if not EMAIL_RE.match(value):
        raise InvalidInput(f"invalid email address {value!r}")
    return value.lower()


def choice(kind: str, value: str, allowed: type[E]) -> E:
    """`value` as a member of `allowed`, the enum of that kind."""
    try:
        return allowed(value)
    except ValueError:
        expected = ", ".join(allowed)
        raise InvalidInput(f"invalid {kind} {value!r}: expected one of {expected}") from None


def text(kind: str, value: str, max_len: int, required: bool = True) -> str:
    value = value.strip()
    if required and not value:
        raise InvalidInput(f"{kind} must not be empty")
    if len(value) > max_len:
        raise InvalidInput(f"{kind} is longer than {max_len} characters")
    return value


def date_range(start: date, end: date) -> None:
    if end < start:
        raise InvalidInput(f"end date {end} is before start date {start}")


def parse_date(kind: str, value: str | date | None) -> date | None:
    if value is None or isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"invalid {kind} {value!r}: expected YYYY-MM-DD") from None


def columns(values: list[str]) -> list[str]:
    if not values:
        raise InvalidInput("a grant needs at least one column (table.column or table.*)")
    for value in values:
        if not COLUMN_RE.match(value):
            raise InvalidInput(f"invalid column {value!r}: expected table.column or table.*")
    return sorted(set(values))
