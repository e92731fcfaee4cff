"""The registry's migrations: people, projects, datasets, grants (the `core` branch).

The first revision, `0001_core`, predates per-component folders: it creates the
audit tables too (sde.audit has no migrations of its own) and every other
component's branch depends on it. It keeps its id and branch label so that
existing databases upgrade unchanged.

Imported through the `sde.migrations` entry point; importing it puts the tables
these revisions build on the shared metadata, for autogenerate.
"""

import sde.audit.schema
import sde.registry.models  # noqa: F401
