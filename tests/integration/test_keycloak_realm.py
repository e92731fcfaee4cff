"""The sde realm on a real Keycloak: what sde.keycloak.realm builds is what Keycloak runs.

Each check reads the realm back from the server (its admin API, or a token it
issues), never from the representation sde sent. Tests that change settings
import a realm of their own, so the session's `sde` realm stays as imported.
"""

from __future__ import annotations

import html
import re
import subprocess
import time
import uuid
from typing import Any

import httpx
import pytest

from sde.hub import origins
from sde.keycloak import realm
from tests.support.keycloak import KeycloakInstance

pytestmark = [pytest.mark.slow]


def _realm_of_its_own(keycloak: KeycloakInstance, **env: str) -> tuple[Any, Any]:
    settings = keycloak.settings_for(SDE_KEYCLOAK_REALM=f"t-{uuid.uuid4().hex[:8]}", **env)
    keycloak.import_realm(settings)
    return settings, keycloak.realm_admin(settings.keycloak.realm)


def _client(admin: Any, client_id: str) -> dict[str, Any]:
    return admin.get_client(admin.get_client_id(client_id))


def _snapshot(admin: Any, name: str) -> dict[str, Any]:
    """Everything import_realm manages, as Keycloak reports it."""
    clients = {}
    for client in admin.get_clients():
        if client["clientId"].startswith("sde-"):
            mappers = admin.get_mappers_from_client(client["id"])
            clients[client["clientId"]] = (client, sorted(mappers, key=lambda m: m["name"]))
    return {
        "realm": admin.get_realm(name),
        "actions": admin.get_required_actions(),
        "clients": clients,
    }


def _direct_grant_client(admin: Any) -> tuple[str, str]:
    """A test-only client that takes password + TOTP in one request (sde's never do)."""
    client_id = f"test-direct-{uuid.uuid4().hex[:6]}"
    admin.create_client(
        {
            "clientId": client_id,
            "publicClient": False,
            "secret": "test-direct-secret",
            "standardFlowEnabled": False,
            "directAccessGrantsEnabled": True,
        }
    )
    return client_id, "test-direct-secret"


def _password_grant(
    keycloak: KeycloakInstance, realm_name: str, client: tuple[str, str], **form: str
) -> httpx.Response:
    return httpx.post(
        f"{keycloak.url}/realms/{realm_name}/protocol/openid-connect/token",
        data={"grant_type": "password", "client_id": client[0], "client_secret": client[1], **form},
        trust_env=False,
    )


def test_keycloak_server_listens_on_loopback_only(keycloak: KeycloakInstance) -> None:
    # --cache=local: without it Keycloak 26.7 opens its cluster ports on every interface.
    listening = subprocess.run(
        ["ss", "-Hltnp"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    pids = {keycloak.server.process.pid}
    children = subprocess.run(
        ["pgrep", "-g", str(keycloak.server.process.pid)], capture_output=True, text=True
    ).stdout.split()
    pids.update(int(p) for p in children)
    ours = [line for line in listening if any(f"pid={p}," in line for p in pids)]
    assert len(ours) >= 2, listening  # HTTP and management
    local = [line.split()[3] for line in ours]
    # The JVM listens on IPv6 sockets: IPv4 loopback shows as IPv4-mapped.
    assert all(a.startswith(("127.0.0.1:", "[::ffff:127.0.0.1]:")) for a in local), local


def test_keycloak_realm_clients_are_confidential_with_sde_redirects(
    keycloak: KeycloakInstance,
) -> None:
    settings = keycloak.settings
    admin = keycloak.realm_admin()
    hub = _client(admin, settings.keycloak.hub_client_id)
    airlock = _client(admin, settings.keycloak.airlock_client_id)
    public = origins.public_url(settings)
    assert realm.hub_origin(settings) == public
    assert hub["redirectUris"] == [f"{public}/hub/oauth_callback"]
    assert airlock["redirectUris"] == [
        "http://airlock--service.sde.localhost:8000/services/airlock/oauth_callback"
    ]
    for client in (hub, airlock):
        assert client["publicClient"] is False
        assert client["clientAuthenticatorType"] == "client-secret"
        assert client["standardFlowEnabled"] is True
        assert client["directAccessGrantsEnabled"] is False
        assert client["implicitFlowEnabled"] is False
        assert client["serviceAccountsEnabled"] is False
        secret = admin.get_client_secrets(client["id"])["value"]
        assert secret == keycloak.client_secret(client["clientId"])
    path = settings.keycloak_hub_secret_path
    assert path.stat().st_mode & 0o777 == 0o600


def test_keycloak_realm_tokens_carry_group_names_and_audience(
    keycloak: KeycloakInstance,
) -> None:
    admin = keycloak.realm_admin()
    group = f"project-{uuid.uuid4().hex[:6]}"
    group_id = admin.create_group({"name": group})
    person = keycloak.create_user()
    user_id = admin.get_user_id(person.username)
    admin.group_user_add(user_id, group_id)
    for client_id in (
        keycloak.settings.keycloak.hub_client_id,
        keycloak.settings.keycloak.airlock_client_id,
    ):
        internal = admin.get_client_id(client_id)
        base = f"admin/realms/{keycloak.realm}/clients/{internal}/evaluate-scopes"
        query = f"?userId={user_id}&scope=openid"
        access = admin.connection.raw_get(f"{base}/generate-example-access-token{query}").json()
        identity = admin.connection.raw_get(f"{base}/generate-example-id-token{query}").json()
        assert access["groups"] == [group]  # the name, not the path /project-...
        assert identity["groups"] == [group]
        audience = access["aud"] if isinstance(access["aud"], list) else [access["aud"]]
        assert client_id in audience
        assert identity["preferred_username"] == person.username


def test_keycloak_realm_asks_every_new_user_to_enrol_totp(keycloak: KeycloakInstance) -> None:
    admin = keycloak.realm_admin()
    actions = {a["alias"]: a for a in admin.get_required_actions()}
    # Every one of Keycloak's own actions is still there: the realm lists them all.
    assert set(actions) == {a[0] for a in realm.KEYCLOAK_REQUIRED_ACTIONS}
    assert [a for a, v in actions.items() if v["defaultAction"]] == ["CONFIGURE_TOTP"]
    assert actions["CONFIGURE_TOTP"]["enabled"] is True
    assert actions["UPDATE_PASSWORD"]["enabled"] is True
    newcomer = keycloak.create_user(enrolled=False)
    user = admin.get_user(admin.get_user_id(newcomer.username))
    assert user["requiredActions"] == ["CONFIGURE_TOTP"]
    policy = admin.get_realm(keycloak.realm)
    assert (policy["otpPolicyType"], policy["otpPolicyAlgorithm"]) == ("totp", "HmacSHA1")
    assert (policy["otpPolicyDigits"], policy["otpPolicyPeriod"]) == (6, 30)
    assert policy["otpPolicyCodeReusable"] is False


def _browser_sign_in(
    keycloak: KeycloakInstance, settings: Any, username: str, password: str
) -> httpx.Response:
    """Keycloak's own sign-in page, as a browser submits it, for the hub's client.

    Keycloak marks its cookies Secure even on plain HTTP, which Python's cookie jar
    then never sends back; so they are carried by hand, as a browser on 127.0.0.1 does.
    """
    cookies: dict[str, str] = {}

    def keep(response: httpx.Response) -> None:
        for header in response.headers.get_list("set-cookie"):
            name, _, rest = header.partition("=")
            cookies[name.strip()] = rest.split(";", 1)[0]

    base = f"{keycloak.url}/realms/{settings.keycloak.realm}/protocol/openid-connect"
    with httpx.Client(trust_env=False, follow_redirects=False, timeout=20) as http:
        page = http.get(
            f"{base}/auth",
            params={
                "client_id": settings.keycloak.hub_client_id,
                "redirect_uri": realm.hub_redirect_uri(settings),
                "response_type": "code",
                "scope": "openid",
                "state": uuid.uuid4().hex,
            },
        )
        assert page.status_code == 200, page.text[:300]
        keep(page)
        found = re.search(r'<form[^>]*id="kc-form-login"[^>]*action="([^"]+)"', page.text)
        assert found, page.text[:2000]

        def jar() -> dict[str, str]:
            return {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())}

        response = http.post(
            html.unescape(found.group(1)),
            data={"username": username, "password": password, "credentialId": ""},
            headers=jar(),
        )
        # Keycloak's own next steps (a required action) are followed; the hub's
        # callback, where a code would go, is not.
        while response.is_redirect and response.headers["location"].startswith(keycloak.url):
            keep(response)
            response = http.get(response.headers["location"], headers=jar())
        return response


def _issued_a_code(response: httpx.Response) -> bool:
    return response.status_code == 302 and "code=" in response.headers.get("location", "")


def test_keycloak_realm_makes_everyone_enrol_totp_however_created(
    keycloak: KeycloakInstance,
) -> None:
    settings, admin = _realm_of_its_own(keycloak)
    name = settings.keycloak.realm
    # Partial import (how sync creates people in bulk) skips the default action.
    person = {"username": "imported", "enabled": True, "email": "i@example.org"}
    person |= {"firstName": "Imported", "lastName": "Person", "emailVerified": True}
    person["credentials"] = [{"type": "password", "value": "pw-imported", "temporary": False}]
    admin.partial_import_realm(name, {"ifResourceExists": "FAIL", "users": [person]})
    user = admin.get_user(admin.get_user_id("imported"))
    assert user["requiredActions"] == [] and user["totp"] is False

    # Keycloak's own browser flow would let this person in on a password alone...
    admin.update_realm(name, {"browserFlow": "browser"})
    assert _issued_a_code(_browser_sign_in(keycloak, settings, "imported", "pw-imported"))
    # ...the realm's makes them enrol an authenticator first.
    assert "realm settings" in keycloak.import_realm(settings).changed
    enrol = _browser_sign_in(keycloak, settings, "imported", "pw-imported")
    assert not _issued_a_code(enrol)
    assert enrol.status_code == 200 and 'id="kc-totp-settings-form"' in enrol.text
    # An enrolled person is asked for a code, not let in.
    enrolled = keycloak.create_user(realm_name=name)
    asked = _browser_sign_in(keycloak, settings, enrolled.username, enrolled.password)
    assert not _issued_a_code(asked)
    assert asked.status_code == 200 and 'name="otp"' in asked.text
    admin.delete_realm(name)


def test_keycloak_user_signs_in_with_password_and_totp_only(keycloak: KeycloakInstance) -> None:
    admin = keycloak.realm_admin()
    client = _direct_grant_client(admin)
    try:
        person = keycloak.create_user()
        login = {"username": person.username, "password": person.password}
        ok = _password_grant(keycloak, keycloak.realm, client, **login, totp=person.code())
        assert ok.status_code == 200, ok.text
        assert "access_token" in ok.json()
        # Failures last: two in quick succession lock the account for a minute.
        wrong = "000000" if person.code() != "000000" else "111111"
        for attempt in ({}, {"totp": wrong}):
            refused = _password_grant(keycloak, keycloak.realm, client, **login, **attempt)
            assert refused.status_code == 400
            assert refused.json()["error"] == "invalid_grant"
    finally:
        admin.delete_client(admin.get_client_id(client[0]))


def test_keycloak_realm_locks_an_account_after_max_failures(keycloak: KeycloakInstance) -> None:
    settings, admin = _realm_of_its_own(keycloak, SDE_HUB_MAX_FAILURES="3")
    name = settings.keycloak.realm
    client = _direct_grant_client(admin)
    person = keycloak.create_user(realm_name=name)
    user_id = admin.get_user_id(person.username)
    state_url = f"admin/realms/{name}/attack-detection/brute-force/users/{user_id}"
    for failures in (1, 2, 3):
        # Slower than Keycloak's quick-login check (1 s), which would lock on its own.
        time.sleep(1.2)
        bad = _password_grant(keycloak, name, client, username=person.username, password="no")
        assert bad.status_code == 400
        state = admin.connection.raw_get(state_url).json()
        assert state["numFailures"] == failures
        assert state["disabled"] is (failures == 3)
    # Locked: even the right password and code are refused until the lockout ends.
    login = {"username": person.username, "password": person.password, "totp": person.code()}
    assert _password_grant(keycloak, name, client, **login).status_code == 400
    admin.delete_realm(name)


def test_keycloak_realm_lifetimes_follow_sde_settings(keycloak: KeycloakInstance) -> None:
    shown = keycloak.realm_admin().get_realm(keycloak.realm)
    defaults = keycloak.settings
    assert shown["accessTokenLifespan"] == defaults.workspaces.access_check_seconds == 30
    assert shown["ssoSessionMaxLifespan"] == defaults.hub.session_hours * 3600
    assert shown["ssoSessionIdleTimeout"] == defaults.hub.session_hours * 3600
    assert shown["bruteForceProtected"] is True
    assert shown["failureFactor"] == defaults.hub.max_failures
    assert shown["maxFailureWaitSeconds"] == defaults.hub.lockout_seconds
    assert shown["registrationAllowed"] is False and shown["resetPasswordAllowed"] is False

    settings, admin = _realm_of_its_own(
        keycloak, SDE_HUB_SESSION_HOURS="2", SDE_WORKSPACES_ACCESS_CHECK_SECONDS="15"
    )
    name = settings.keycloak.realm
    shown = admin.get_realm(name)
    assert (shown["accessTokenLifespan"], shown["ssoSessionMaxLifespan"]) == (15, 7200)
    # A change of the settings reaches an existing realm at the next import.
    report = keycloak.import_realm(keycloak.settings_for(SDE_KEYCLOAK_REALM=name))
    assert report.changed == ["realm settings"]
    assert admin.get_realm(name)["ssoSessionMaxLifespan"] == defaults.hub.session_hours * 3600
    admin.delete_realm(name)


def test_keycloak_realm_import_twice_changes_nothing(keycloak: KeycloakInstance) -> None:
    settings, admin = _realm_of_its_own(keycloak)
    name = settings.keycloak.realm
    before = _snapshot(admin, name)
    report = keycloak.import_realm(settings)
    assert report.created_realm is False and report.changed == []
    assert _snapshot(admin, name) == before
    admin.delete_realm(name)


def test_keycloak_realm_import_repairs_drift(keycloak: KeycloakInstance) -> None:
    settings, admin = _realm_of_its_own(keycloak)
    name = settings.keycloak.realm
    before = _snapshot(admin, name)
    hub_id = settings.keycloak.hub_client_id
    internal = admin.get_client_id(hub_id)
    # What a hand in the admin console might do.
    admin.update_client(internal, {"redirectUris": ["https://evil.example.org/*"]})
    groups = next(m for m in admin.get_mappers_from_client(internal) if m["name"] == "groups")
    admin.remove_client_mapper(internal, groups["id"])
    admin.update_realm(name, {"bruteForceProtected": False})
    admin.update_required_action(
        "CONFIGURE_TOTP",
        {
            "alias": "CONFIGURE_TOTP",
            "name": "Configure OTP",
            "providerId": "CONFIGURE_TOTP",
            "enabled": True,
            "defaultAction": False,
            "priority": 54,
            "config": {},
        },
    )
    admin.generate_client_secrets(internal)

    report = keycloak.import_realm(settings)
    assert sorted(report.changed) == sorted(
        [
            "realm settings",
            "required action CONFIGURE_TOTP",
            f"client {hub_id}",
            f"client {hub_id} secret",
            f"client {hub_id} mapper groups added",
        ]
    )
    after = _snapshot(admin, name)

    # The client keeps its id; only the re-added mapper and the secret's time are new.
    def settled(client: dict[str, Any]) -> dict[str, Any]:
        attributes = dict(client["attributes"])
        attributes.pop("client.secret.creation.time", None)
        return {**client, "attributes": attributes, "protocolMappers": None}

    assert settled(after["clients"][hub_id][0]) == settled(before["clients"][hub_id][0])
    assert [m["name"] for m in after["clients"][hub_id][1]] == ["audience", "groups"]
    assert after["realm"] == before["realm"] and after["actions"] == before["actions"]
    assert keycloak.import_realm(settings).changed == []
    admin.delete_realm(name)
