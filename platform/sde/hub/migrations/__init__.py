"""The hub's migrations: sign-in credentials and the sign-in throttle (the `hub` branch).

Imported through the `sde.migrations` entry point; importing it puts the tables
these revisions build on the shared metadata, for autogenerate.
"""

import sde.hub.credentials
import sde.hub.throttle  # noqa: F401
