"""The migrations build exactly the schema the models describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

import sde.audit.schema
import sde.hub.credentials
import sde.ingest.models
import sde.registry.models
from sde.core.db import Base
from sde.core.schema import alembic_config, current_revisions, is_current


def test_migrations_match_models(engine):
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
    assert sde.audit.schema.audit_events.name == "audit_events"


def test_migrations_database_is_at_every_head(engine):
    script = ScriptDirectory.from_config(alembic_config(engine))
    assert current_revisions(engine) <= set(script.get_heads())
    assert is_current(engine)
