"""The data pipeline's migrations: opt-out lists and exemptions (the `data` branch).

Imported through the `sde.migrations` entry point; importing it puts the tables
these revisions build on the shared metadata, for autogenerate.
"""

import sde.ingest.models  # noqa: F401
