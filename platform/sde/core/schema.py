"""Schema migrations (Alembic) for the state database.

Components own their tables and migrations; each component's first migration
starts its own branch from the base revision, so `upgrade heads` brings every
component up to date without them coordinating revision numbers. Each component
keeps its revisions in its own `migrations` package and declares it in the
`sde.migrations` entry-point group; core collects them from there, so it imports
no component above it (and a new one, the airlock, adds tables without an edit
here).
"""

from __future__ import annotations

import os
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

# The Alembic environment (env.py, the revision template); the revisions are the components'.
MIGRATIONS = Path(__file__).with_name("migrations")
# The entry-point group: COMPONENT = "sde.PORTION.migrations" (a package of revision files).
COMPONENT_MIGRATIONS = "sde.migrations"


@cache
def version_locations() -> tuple[Path, ...]:
    """Each component's folder of revisions, from the `sde.migrations` entry points.

    Loading a component's migrations package also imports its tables onto the
    shared metadata, which env.py hands to autogenerate.
    """
    folders: list[Path] = []
    for entry_point in sorted(entry_points(group=COMPONENT_MIGRATIONS), key=lambda e: e.name):
        package = entry_point.load()
        folders.extend(Path(folder) for folder in package.__path__)
    return tuple(folders)


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("version_locations", os.pathsep.join(map(str, version_locations())))
    cfg.set_main_option("path_separator", "os")
    cfg.attributes["engine"] = engine
    return cfg


def _missing(cfg: Config, current: set[str]) -> set[str]:
    """Revisions not yet applied. A branch that another depends on is recorded only
    through its dependant, so "applied" means a current revision or an ancestor of one."""
    script = ScriptDirectory.from_config(cfg)
    applied: set[str] = set()
    for rev in current:
        applied.update(r.revision for r in script.iterate_revisions(rev, "base"))
    return set(script.get_heads()) - applied


def current_revisions(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(MigrationContext.configure(conn).get_current_heads())


def ensure_schema(engine: Engine) -> None:
    """Migrate the database to the newest schema of every component (no-op when current)."""
    cfg = alembic_config(engine)
    if _missing(cfg, current_revisions(engine)):
        command.upgrade(cfg, "heads")


def is_current(engine: Engine) -> bool:
    return not _missing(alembic_config(engine), current_revisions(engine))
