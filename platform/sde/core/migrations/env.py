"""Alembic environment: runs against the engine sde passes in."""

from __future__ import annotations

from alembic import context

import sde.audit.schema
import sde.registry.models  # noqa: F401  (registers the registry tables)
from sde.core.db import Base

target_metadata = Base.metadata
engine = context.config.attributes["engine"]

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
