"""JupyterHub configuration file for sde: everything comes from the sde settings."""

from sde.hub.config import configure

configure(get_config())  # type: ignore[name-defined]  # noqa: F821
