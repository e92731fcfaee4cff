"""The sde realm as code: built from the sde settings, imported through the admin API.

`build_realm` is a pure function of the settings and the two client secrets, so
the realm a site runs is the one reviewed here and pinned by
tests/integration/test_keycloak_realm.py. `import_realm` creates the realm, or
brings an existing one back to that shape (realm settings, required actions, the
two clients and their mappers) without recreating anything, so running it again
changes nothing and keeps the clients' ids and their users' sessions.

The realm decides nothing about access: a Keycloak session only says who someone
is. Every spawn, request and review still asks the registry's `access_decision`.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from sde.core.config import Settings
from sde.core.files import secret_file
from sde.keycloak.errors import KeycloakError

# The airlock's JupyterHub service name: its host is NAME--service.HOST (sde.hub.origins).
AIRLOCK_SERVICE = "airlock"

# Keycloak 26.7's required actions with its own defaults, but CONFIGURE_TOTP a default
# action: every new user must enrol an authenticator at first sign-in. A realm that
# lists requiredActions gets exactly these and none of Keycloak's defaults, hence all.
# (alias, name, enabled, priority)
KEYCLOAK_REQUIRED_ACTIONS: tuple[tuple[str, str, bool, int], ...] = (
    ("TERMS_AND_CONDITIONS", "Terms and Conditions", False, 20),
    ("UPDATE_PROFILE", "Update Profile", True, 40),
    ("VERIFY_EMAIL", "Verify Email", True, 50),
    ("CONFIGURE_TOTP", "Configure OTP", True, 54),
    ("UPDATE_PASSWORD", "Update Password", True, 57),
    ("delete_account", "Delete Account", False, 60),
    ("UPDATE_EMAIL", "Update Email", False, 70),
    ("webauthn-register", "Webauthn Register", True, 80),
    ("webauthn-register-passwordless", "Webauthn Register Passwordless", True, 90),
    ("VERIFY_PROFILE", "Verify Profile", True, 100),
    ("delete_credential", "Delete Credential", True, 110),
    ("idp_link", "Linking Identity Provider", True, 120),
    ("CONFIGURE_RECOVERY_AUTHN_CODES", "Recovery Authentication Codes", True, 130),
    ("update_user_locale", "Update User Locale", True, 1000),
)
DEFAULT_ACTIONS = frozenset({"CONFIGURE_TOTP"})
# A default action reaches only users made through the users API: partial import (how
# sync creates users in bulk) and a hand clearing required actions skip it. So the
# realm's browser flow is Keycloak's own with its 2FA step required rather than
# conditional: a person without an authenticator is made to enrol one before any code
# is issued, whoever created their account.
BROWSER_FLOW = "sde browser"


def hub_origin(settings: Settings) -> str:
    """scheme://host[:port] of the hub, as sde.hub.origins.public_url gives it.

    Computed here from the settings because this portion sits below the hub;
    tests/integration/test_keycloak_realm.py checks that the two agree.
    """
    url = settings.hub.public_url or f"http://sde.localhost:{settings.hub.port}"
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def hub_redirect_uri(settings: Settings) -> str:
    return f"{hub_origin(settings)}/hub/oauth_callback"


def service_origin(settings: Settings, name: str) -> str:
    """scheme://NAME--service.HOST[:port]: a hub service's own web origin."""
    parts = urlsplit(hub_origin(settings))
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{name}--service.{parts.hostname}{port}"


def airlock_redirect_uri(settings: Settings) -> str:
    # JupyterHub's default OAuth callback of a service: its prefix + oauth_callback.
    origin = service_origin(settings, AIRLOCK_SERVICE)
    return f"{origin}/services/{AIRLOCK_SERVICE}/oauth_callback"


def client_secrets(settings: Settings) -> dict[str, str]:
    """client id -> secret, each read from its file (created 0600 on first use)."""

    def make() -> bytes:
        return secrets.token_urlsafe(32).encode()

    return {
        settings.keycloak.hub_client_id: secret_file(
            settings.keycloak_hub_secret_path, make()
        ).decode(),
        settings.keycloak.airlock_client_id: secret_file(
            settings.keycloak_airlock_secret_path, make()
        ).decode(),
    }


def _mappers(client_id: str) -> list[dict[str, Any]]:
    """The claims sde's clients rely on: `groups` (names, not paths) and their audience."""
    return [
        {
            "name": "groups",
            "protocol": "openid-connect",
            "protocolMapper": "oidc-group-membership-mapper",
            "config": {
                "claim.name": "groups",
                "full.path": "false",
                "id.token.claim": "true",
                "access.token.claim": "true",
                "userinfo.token.claim": "true",
                "introspection.token.claim": "true",
            },
        },
        {
            # Tokens name the client they were issued for, so one client's token is
            # refused by another (Keycloak otherwise puts only "account" there).
            "name": "audience",
            "protocol": "openid-connect",
            "protocolMapper": "oidc-audience-mapper",
            "config": {
                "included.client.audience": client_id,
                "id.token.claim": "false",
                "access.token.claim": "true",
                "introspection.token.claim": "true",
                "userinfo.token.claim": "false",
            },
        },
    ]


def _client(client_id: str, name: str, origin: str, redirect: str, secret: str) -> dict[str, Any]:
    return {
        "clientId": client_id,
        "name": name,
        "enabled": True,
        "protocol": "openid-connect",
        "publicClient": False,
        "clientAuthenticatorType": "client-secret",
        "secret": secret,
        "rootUrl": origin,
        "baseUrl": origin,
        "redirectUris": [redirect],
        "webOrigins": [],
        # The authorisation-code flow only: no passwords through the client (direct
        # grants), no tokens in URLs (implicit), no client acting as itself.
        "standardFlowEnabled": True,
        "implicitFlowEnabled": False,
        "directAccessGrantsEnabled": False,
        "serviceAccountsEnabled": False,
        "frontchannelLogout": False,
        # "+": after logout, back only to where sign-in may return to.
        "attributes": {"post.logout.redirect.uris": "+"},
        "protocolMappers": _mappers(client_id),
    }


def build_realm(settings: Settings, secrets_by_client: dict[str, str]) -> dict[str, Any]:
    """The realm representation Keycloak's admin API takes, from the sde settings."""
    kc, hub = settings.keycloak, settings.hub
    session_seconds = hub.session_hours * 3600
    return {
        "realm": kc.realm,
        "displayName": "sde",
        "enabled": True,
        "sslRequired": "external",
        # Accounts come from the registry (sync), never from sign-up or self-service.
        "registrationAllowed": False,
        "resetPasswordAllowed": False,
        "editUsernameAllowed": False,
        "loginWithEmailAllowed": False,
        "rememberMe": False,
        # A lapse reaches a session within one access check: the hub refreshes the
        # tokens on that cycle, and a disabled user's refresh fails.
        "accessTokenLifespan": settings.workspaces.access_check_seconds,
        # The hub's cookie and the Keycloak session end together; the hub, not
        # Keycloak, decides what idleness means (hub.idle_timeout culls workspaces).
        "ssoSessionMaxLifespan": session_seconds,
        "ssoSessionIdleTimeout": session_seconds,
        "clientSessionMaxLifespan": 0,
        "clientSessionIdleTimeout": 0,
        "revokeRefreshToken": False,
        # The embedded sign-in's lockout, applied by Keycloak.
        "bruteForceProtected": True,
        "permanentLockout": False,
        "failureFactor": hub.max_failures,
        "waitIncrementSeconds": hub.lockout_seconds,
        "maxFailureWaitSeconds": hub.lockout_seconds,
        # TOTP as the embedded sign-in and every authenticator app do it (RFC 6238).
        "otpPolicyType": "totp",
        "otpPolicyAlgorithm": "HmacSHA1",
        "otpPolicyDigits": 6,
        "otpPolicyPeriod": 30,
        "otpPolicyLookAheadWindow": 1,
        "otpPolicyInitialCounter": 0,
        "otpPolicyCodeReusable": False,
        "browserFlow": BROWSER_FLOW,
        "requiredActions": [
            {
                "alias": alias,
                "name": name,
                "providerId": alias,
                "enabled": enabled,
                "defaultAction": alias in DEFAULT_ACTIONS,
                "priority": priority,
                "config": {},
            }
            for alias, name, enabled, priority in KEYCLOAK_REQUIRED_ACTIONS
        ],
        "clients": [
            _client(
                kc.hub_client_id,
                "sde hub",
                hub_origin(settings),
                hub_redirect_uri(settings),
                secrets_by_client[kc.hub_client_id],
            ),
            _client(
                kc.airlock_client_id,
                "sde airlock",
                service_origin(settings, AIRLOCK_SERVICE),
                airlock_redirect_uri(settings),
                secrets_by_client[kc.airlock_client_id],
            ),
        ],
    }


@dataclass
class ImportReport:
    """What `import_realm` did: empty `changed` on a realm already in shape."""

    created_realm: bool = False
    changed: list[str] = field(default_factory=list)


def _differs(current: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """True when a wanted key has another value in `current` (keys it lacks count too).

    Nested tables (attributes, a mapper's config) compare the same way: Keycloak adds
    keys of its own to them, which sde neither sets nor minds.
    """
    for key, value in wanted.items():
        have = current.get(key)
        if isinstance(value, dict) and isinstance(have, dict):
            if _differs(have, value):
                return True
        elif have != value:
            return True
    return False


def import_realm(admin: Any, settings: Settings) -> ImportReport:
    """Create the sde realm, or bring the existing one back to `build_realm`'s shape.

    `admin` is a python-keycloak KeycloakAdmin signed in to the admin realm. Only
    what differs is written, so a second import writes nothing.
    """
    from keycloak.exceptions import KeycloakError as ApiError

    wanted = build_realm(settings, client_secrets(settings))
    name = wanted["realm"]
    report = ImportReport()
    try:
        if name not in {r["realm"] for r in admin.get_realms()}:
            # The browser flow is made in the new realm first, then bound below.
            admin.create_realm(
                payload={k: v for k, v in wanted.items() if k != "browserFlow"},
                skip_exists=False,
            )
            report.created_realm = True
            report.changed.append(f"realm {name} created")
        previous = admin.connection.realm_name
        admin.change_current_realm(name)
        try:
            _reconcile(admin, name, wanted, report)
        finally:
            admin.change_current_realm(previous)
    except ApiError as exc:
        raise KeycloakError(f"Keycloak refused the realm {name}: {exc}") from None
    return report


def _otp_required(executions: list[dict[str, Any]]) -> list[tuple[dict[str, Any], str]]:
    """(execution, requirement) pairs that make the 2FA step of a browser flow required.

    Keycloak's flow asks for a code only if the person has an authenticator
    (a CONDITIONAL subflow with "user configured" conditions); required, with its
    conditions off, the OTP form runs for everyone and makes the unenrolled enrol.
    """
    otp = next(i for i, e in enumerate(executions) if e.get("providerId") == "auth-otp-form")
    level = executions[otp]["level"]
    parent = next(i for i in range(otp - 1, -1, -1) if executions[i]["level"] == level - 1)
    wanted = [(executions[parent], "REQUIRED"), (executions[otp], "REQUIRED")]
    for execution in executions[parent + 1 :]:
        if execution["level"] < level:
            break
        if execution["level"] == level and str(execution.get("providerId", "")).startswith(
            "conditional-"
        ):
            wanted.append((execution, "DISABLED"))
    return wanted


def _reconcile_browser_flow(admin: Any, report: ImportReport) -> None:
    if BROWSER_FLOW not in {f["alias"] for f in admin.get_authentication_flows()}:
        admin.copy_authentication_flow(payload={"newName": BROWSER_FLOW}, flow_alias="browser")
        report.changed.append(f"flow {BROWSER_FLOW} created")
    executions = admin.get_authentication_flow_executions(BROWSER_FLOW)
    for execution, requirement in _otp_required(executions):
        if execution["requirement"] != requirement:
            admin.update_authentication_flow_executions(
                payload={**execution, "requirement": requirement}, flow_alias=BROWSER_FLOW
            )
            report.changed.append(f"flow {BROWSER_FLOW}: {execution['displayName']} {requirement}")


def _reconcile(admin: Any, name: str, wanted: dict[str, Any], report: ImportReport) -> None:
    _reconcile_browser_flow(admin, report)
    settings_only = {
        k: v for k, v in wanted.items() if k not in ("clients", "requiredActions", "realm")
    }
    if _differs(admin.get_realm(name), settings_only):
        admin.update_realm(name, settings_only)
        report.changed.append("realm settings")

    current_actions = {a["alias"]: a for a in admin.get_required_actions()}
    for action in wanted["requiredActions"]:
        alias = action["alias"]
        if alias not in current_actions:
            admin.connection.raw_post(
                f"admin/realms/{name}/authentication/register-required-action",
                data=json.dumps({"providerId": alias, "name": action["name"]}),
            )
            current_actions[alias] = {}
            report.changed.append(f"required action {alias} registered")
        if _differs(current_actions[alias], action):
            admin.update_required_action(alias, {**current_actions[alias], **action})
            report.changed.append(f"required action {alias}")

    clients = {c["clientId"]: c for c in admin.get_clients()}
    for client in wanted["clients"]:
        client_id = client["clientId"]
        mappers = client["protocolMappers"]
        plain = {k: v for k, v in client.items() if k not in ("protocolMappers", "secret")}
        if client_id not in clients:
            admin.create_client(payload=client)
            report.changed.append(f"client {client_id} created")
            continue
        internal = clients[client_id]["id"]
        current = clients[client_id]
        secret_differs = admin.get_client_secrets(internal).get("value") != client["secret"]
        if _differs(current, plain) or secret_differs:
            # Keycloak's own attributes are kept; sde's are set over them.
            attributes = {**current.get("attributes", {}), **client["attributes"]}
            desired = {**plain, "attributes": attributes, "secret": client["secret"]}
            admin.update_client(internal, {**current, **desired})
            if _differs(current, plain):
                report.changed.append(f"client {client_id}")
            if secret_differs:
                report.changed.append(f"client {client_id} secret")
        _reconcile_mappers(admin, internal, client_id, mappers, report)


def _reconcile_mappers(
    admin: Any, internal: str, client_id: str, mappers: list[dict[str, Any]], report: ImportReport
) -> None:
    """The client's mappers exactly as declared: sde owns these clients, so extras go."""
    current = {m["name"]: m for m in admin.get_mappers_from_client(internal)}
    for mapper in mappers:
        have = current.pop(mapper["name"], None)
        if have is None:
            admin.add_mapper_to_client(internal, mapper)
            report.changed.append(f"client {client_id} mapper {mapper['name']} added")
        elif _differs(have, mapper):
            admin.update_client_mapper(internal, have["id"], {**mapper, "id": have["id"]})
            report.changed.append(f"client {client_id} mapper {mapper['name']}")
    for extra in current.values():
        admin.remove_client_mapper(internal, extra["id"])
        report.changed.append(f"client {client_id} mapper {extra['name']} removed")


def admin_client(settings: Settings, password: str | None = None) -> Any:
    """A KeycloakAdmin for `keycloak.url`, signed in as keycloak.admin_username.

    The password comes from its file (keycloak.admin_password) unless given.
    """
    from keycloak import KeycloakAdmin

    kc = settings.keycloak
    if not kc.url:
        raise KeycloakError("keycloak.url is not set: which Keycloak should sde configure?")
    if password is None:
        password = secret_file(settings.keycloak_admin_password_path).decode()
    return KeycloakAdmin(
        server_url=kc.url,
        username=kc.admin_username,
        password=password,
        realm_name=kc.admin_realm,
        user_realm_name=kc.admin_realm,
    )
