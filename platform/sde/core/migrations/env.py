"""Alembic environment: runs against the engine sde passes in.

The components' tables are on the metadata already: `sde.core.schema` loaded each
component's migrations package (the `sde.migrations` entry points) to find its
revisions, and each of those imports its own tables. Core imports none of them.
"""

from __future__ import annotations

from alembic import context

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
