"""Keycloak, the OIDC identity provider a site signs people in with.

`server` runs a Keycloak distribution (the test setup's private server, from the
zip infra/keycloak/fetch.sh caches); `realm` builds the sde realm from the sde
settings and imports it through Keycloak's admin API, so the realm is code,
reviewed and tested, never clicked together in the admin console.
"""
