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


def test_migrations_database_of_earlier_revisions_upgrades(tmp_path):
    """A database an earlier sde left (revisions found by id) upgrades to every head.

    The revisions moved from core to their components' folders; a database knows
    them only by id, so these ids must still be found, whichever folder holds them.
    """
    from alembic import command

    from sde.core.db import make_engine
    from sde.core.schema import ensure_schema

    eng = make_engine(f"sqlite:///{tmp_path / 'earlier.db'}")
    cfg = alembic_config(eng)
    command.upgrade(cfg, "0001_hub")  # and 0001_core, which it depends on
    command.upgrade(cfg, "0001_data")
    assert current_revisions(eng) == {"0001_hub", "0001_data"}
    assert not is_current(eng)
    ensure_schema(eng)
    # At every component's head, including branches added since (the airlock's).
    assert is_current(eng)
    assert "0002_hub" in current_revisions(eng)
    with eng.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    eng.dispose()
