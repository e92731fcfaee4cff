"""The hub's access to the sde state database: audited writes, each checkpointed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from sde.audit import audited_transaction
from sde.core.config import Settings, load_settings
from sde.core.db import get_engine, transaction


class Store:
    """State database plus the checkpoint key, as the hub process sees them."""

    def __init__(self, settings: Settings | None = None, engine: Engine | None = None) -> None:
        self.settings = settings or load_settings()
        self.engine = engine or get_engine(self.settings)

    def ensure_schema(self) -> None:
        from sde.core.schema import ensure_schema

        ensure_schema(self.engine)

    @contextmanager
    def read(self) -> Iterator[Session]:
        with transaction(self.engine) as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """An audited transaction; the new chain head is signed once it commits."""
        with audited_transaction(self.engine, self.settings) as session:
            yield session
