"""The airlock's migrations: requests, files, checks, reviews, releases (the `airlock` branch).

Imported through the `sde.migrations` entry point; importing it puts the tables
these revisions build on the shared metadata, for autogenerate.
"""

import sde.airlock.models  # noqa: F401
