"""JupyterHub configuration file for sde: everything comes from the sde settings.

`hub.extra_config` names a further JupyterHub configuration file loaded last,
e.g. the client settings of an OIDC authenticator (Keycloak).
"""

from sde.core.config import load_settings
from sde.hub.config import configure

settings = load_settings()
configure(get_config(), settings)  # type: ignore[name-defined]  # noqa: F821
if settings.hub.extra_config:
    load_subconfig(settings.hub.extra_config)  # type: ignore[name-defined]  # noqa: F821
