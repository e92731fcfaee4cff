"""The one error of the Keycloak portion."""

from __future__ import annotations

from sde.core.errors import SdeError


class KeycloakError(SdeError):
    """Keycloak cannot be started, reached or configured (its admin API refused a change).

    The identity provider is a service the platform depends on: to a web client its
    absence is the server's problem, not the request's, hence 503.
    """

    exit_code = 2
    http_status = 503
