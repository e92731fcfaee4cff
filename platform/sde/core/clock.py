"""The time of stored rows: everything sde stores is UTC.

SQLite keeps no time zone and hands back naive datetimes, PostgreSQL aware ones;
`as_utc` makes both comparable with `utc_now()`.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """`value` as an aware UTC datetime (a naive one is UTC already, as stored)."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value
