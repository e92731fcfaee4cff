"""The hub signing people in through a real Keycloak (hub.authenticator = keycloak).

One Keycloak serves the test session (tests/support/keycloak.py); this module
imports realms of its own into it, each with the redirect URI of its hub. The
main hub runs workspaces in Docker and re-checks access every second. Sign-ins
go through Keycloak's own pages in a real Chromium: Keycloak marks its cookies
Secure even on plain HTTP, which a browser accepts on 127.0.0.1 and Python's
cookie jar does not. API calls then use a token the signed-in browser asked for.

These hubs hold no Keycloak admin password, so their keycloak-sync service
cannot write (it logs and retries): the tests set Keycloak's state themselves, as
a sync that is behind would leave it, and so pin the hub's own checks, which
must hold whether or not the sync has caught up.
"""

from __future__ import annotations

import base64
import json
import os
import re
import sqlite3
import time
from binascii import a2b_hex
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pyotp
import pytest
from cryptography.fernet import Fernet

from sde.audit import list_events
from sde.core.db import transaction
from sde.hub import keycloak_auth, localhost
from sde.hub.client import HubClient
from sde.hub.launch import hub_url
from sde.registry import service
from tests.conftest import require_service
from tests.support.hub import HubSite, free_port, make_site, running
from tests.support.hub_data import provision_project
from tests.support.keycloak import KeycloakInstance
from tests.support.keycloak import TestUser as Person
from tests.support.registry import ACTOR, make_active_project, make_person

pytestmark = [pytest.mark.docker, pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
REALM = "sde-hubtest"
PROJECT = "cohort-k"
REGISTERED = ("kara", "lars", "dina", "rita", "tom")


def keycloak_env(keycloak: KeycloakInstance, realm: str, port: int) -> dict[str, str]:
    return {
        "SDE_HUB_PORT": str(port),
        "SDE_HUB_AUTHENTICATOR": "keycloak",
        "SDE_KEYCLOAK_URL": keycloak.url,
        "SDE_KEYCLOAK_REALM": realm,
        "SDE_KEYCLOAK_HUB_CLIENT_SECRET": str(keycloak.settings.keycloak_hub_secret_path),
    }


def import_realm_for(keycloak: KeycloakInstance, realm: str, port: int) -> None:
    """A realm whose hub client redirects to the hub on `port`."""
    keycloak.import_realm(keycloak.settings_for(SDE_KEYCLOAK_REALM=realm, SDE_HUB_PORT=str(port)))


@pytest.fixture(scope="module")
def site(
    keycloak: KeycloakInstance, workspace_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HubSite]:
    port = free_port()
    import_realm_for(keycloak, REALM, port)
    s = make_site(
        tmp_path_factory.mktemp("hub-keycloak") / "home",
        docker=True,
        SDE_HUB_IMAGE=workspace_image,
        SDE_WORKSPACES_ACCESS_CHECK_SECONDS="1",
        **keycloak_env(keycloak, REALM, port),
    )
    for name in REGISTERED:
        make_person(s.engine, name)
    make_active_project(s.engine, PROJECT, "kara", "lars")
    provision_project(s, PROJECT)
    with running(s):
        yield s


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    require_service("chromium", os.access(CHROMIUM, os.X_OK), "apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-background-networking"],
        )
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context()
    context.set_default_timeout(30_000)
    yield context.new_page()
    context.close()


# ---------------------------------------------------------------- helpers


class Codes:
    """TOTP codes Keycloak has not seen accepted yet (it refuses a code used twice)."""

    def __init__(self) -> None:
        self.last: dict[str, int] = {}

    def next(self, secret: str) -> str:
        totp = pyotp.TOTP(secret)
        while True:
            now = time.time()
            step = int(now // 30)
            for candidate in (step, step + 1):  # Keycloak accepts one step ahead
                if candidate > self.last.get(secret, -1):
                    self.last[secret] = candidate
                    return totp.at(candidate * 30)
            time.sleep((step + 1) * 30 - now + 0.05)


CODES = Codes()


def user(
    keycloak: KeycloakInstance, name: str, enrolled: bool = True, realm: str = REALM
) -> Person:
    return keycloak.create_user(name, enrolled=enrolled, realm_name=realm)


def start_sign_in(page: Any, hub: str, who: Person) -> None:
    """From the hub's login page to Keycloak's, username and password entered."""
    page.goto(f"{hub}/hub/login")
    page.click("#keycloak-sign-in")
    page.wait_for_selector("#username")
    page.fill("#username", who.username)
    page.fill("#password", who.password)
    page.click("#kc-login")


def enter_code(page: Any, secret: str) -> None:
    page.wait_for_selector("#otp")
    page.fill("#otp", CODES.next(secret))
    page.click("#kc-login")


def sign_in(page: Any, hub: str, who: Person) -> None:
    """A pre-enrolled person's sign-in: password, then the authenticator code."""
    start_sign_in(page, hub, who)
    enter_code(page, who.totp_secret)
    page.wait_for_url(f"{hub}/hub/**")


def api_token(page: Any, hub: str, username: str) -> str:
    """A hub API token, asked for by the signed-in page itself (as the token page does)."""
    xsrf = next(c["value"] for c in page.context.cookies() if c["name"] == "_xsrf")
    status, body = page.evaluate(
        """async ([url, xsrf]) => {
            const r = await fetch(url, {
                method: "POST",
                headers: {"X-XSRFToken": xsrf, "Content-Type": "application/json"},
                body: JSON.stringify({note: "test", expires_in: 3600}),
            });
            return [r.status, await r.text()];
        }""",
        [f"{hub}/hub/api/users/{username}/tokens", xsrf],
    )
    assert status == 201, body
    return str(json.loads(body)["token"])


def client_for(site: HubSite, page: Any, username: str) -> HubClient:
    c = HubClient(site.url)
    c.username, c.token = username, api_token(page, site.url, username)
    return c


def signed_in(page: Any, hub: str) -> bool:
    """Does the browser's hub session still hold? (A page that needs one.)"""
    page.goto(f"{hub}/hub/home")
    return "/hub/home" in page.url


def auth_state(site: HubSite, username: str) -> dict[str, Any]:
    """The tokens the hub holds for `username`, decrypted as the hub would."""
    key = a2b_hex(site.settings.auth_state_key_path.read_bytes().strip())
    with sqlite3.connect(site.home / "hub" / "jupyterhub.sqlite") as db:
        (blob,) = db.execute(
            "SELECT encrypted_auth_state FROM users WHERE name = ?", (username,)
        ).fetchone()
    if blob is None:
        return {}
    return dict(json.loads(Fernet(base64.urlsafe_b64encode(key)).decrypt(blob)))


def events(site: HubSite, action: str, target: str) -> list[dict[str, Any]]:
    return [e for e in list_events(site.engine, action=action) if e["target"] == target]


def wait_for(check: Any, seconds: float = 20) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return bool(check())


# ---------------------------------------------------------------- sign-in and workspace


def test_hub_keycloak_first_sign_in_enrols_totp_then_runs_a_workspace_without_idp_tokens(
    site, keycloak, page
):
    kara = user(keycloak, "kara", enrolled=False)
    start_sign_in(page, site.url, kara)
    # Keycloak's own enrolment page: the secret as text for apps that cannot scan.
    page.wait_for_selector("#totp")
    manual = page.locator("#mode-manual")
    if manual.count():
        manual.click()
    secret = re.sub(r"\s", "", page.inner_text("#kc-totp-secret-key"))
    page.fill("#totp", CODES.next(secret))
    page.click("#saveTOTPBtn")
    page.wait_for_url(f"{site.url}/hub/**")
    assert signed_in(page, site.url)
    success = events(site, "hub.login.success", "person:kara")
    assert [e["details"]["method"] for e in success] == ["keycloak"]

    tokens = auth_state(site, "kara")
    held = [tokens["access_token"], tokens["refresh_token"], tokens["id_token"]]
    assert all(held)
    with client_for(site, page, "kara") as c:
        server = c.start_workspace(PROJECT)
        assert c.execute(server, "print(6 * 7)") == "42"
        env = c.execute(server, "import json, os; print(json.dumps(dict(os.environ)))")
        c.stop_workspace(PROJECT)
    values = json.loads(env)
    # Nothing of the Keycloak sign-in reaches the workspace: no token, no key.
    assert not [t for t in held if t in env]
    assert not [k for k, v in values.items() if re.match(r"eyJ[\w-]+\.[\w-]+\.", v)]
    assert not [k for k in values if "KEYCLOAK" in k or "CRYPT" in k or "OAUTH_CLIENT_SECRET" in k]
    assert site.settings.auth_state_key_path.read_text().strip() not in env

    # Logout ends the Keycloak session too: the next sign-in asks again, and for
    # the code (enrolled now), not for an enrolment.
    page.goto(f"{site.url}/hub/logout")
    page.wait_for_url(f"{site.url}/hub/login**")
    assert auth_state(site, "kara") == {}
    start_sign_in(page, site.url, kara)
    page.wait_for_selector("#otp")
    assert page.locator("#totp").count() == 0
    enter_code(page, secret)
    page.wait_for_url(f"{site.url}/hub/**")
    assert signed_in(page, site.url)


def test_hub_keycloak_suspension_ends_session_and_stops_workspace_within_poll(site, keycloak, page):
    from sde.workspaces import names

    lars = user(keycloak, "lars")
    sign_in(page, site.url, lars)
    c = client_for(site, page, "lars")
    c.start_workspace(PROJECT)
    with transaction(site.engine) as ses:
        service.set_person_status(ses, ACTOR, "lars", "suspended", "left the project team")
    lapsed = time.monotonic()
    container = names.container_name(site.settings, "lars", PROJECT)

    def stopped() -> bool:
        from sde.workspaces.engine import docker_client

        return not [x for x in docker_client().containers.list(all=True) if x.name == container]

    assert wait_for(stopped, 15)
    assert time.monotonic() - lapsed < 15
    assert not signed_in(page, site.url)
    ended = events(site, "hub.session.ended", "person:lars")
    assert [e["details"]["reason"] for e in ended] == ["the account is not active"]
    lapses = events(site, "workspace.access.lapsed", f"workspace:lars/{PROJECT}")
    assert lapses and "user is suspended" in lapses[0]["details"]["reasons"]
    # The API token is refused too while the account does not hold.
    assert c.api("GET", "/users/lars").status_code == 403
    c.close()


def test_hub_keycloak_disabled_user_loses_session_and_cannot_sign_in(site, keycloak, page):
    dina = user(keycloak, "dina")
    sign_in(page, site.url, dina)
    assert signed_in(page, site.url)
    admin = keycloak.realm_admin(REALM)
    admin.update_user(admin.get_user_id("dina"), {"enabled": False})
    time.sleep(1.5)  # one access check
    assert not signed_in(page, site.url)
    ended = events(site, "hub.session.ended", "person:dina")
    assert [e["details"]["reason"] for e in ended] == ["Keycloak refused to refresh the session"]
    # Keycloak refuses the next sign-in on its own page; the hub never sees one.
    page.click("#keycloak-sign-in")
    page.wait_for_selector("#username")
    page.fill("#username", "dina")
    page.fill("#password", dina.password)
    page.click("#kc-login")
    page.wait_for_load_state()
    assert page.url.startswith(keycloak.url)
    assert not signed_in(page, site.url)
    assert len(events(site, "hub.login.success", "person:dina")) == 1


# ---------------------------------------------------------------- refusals and failures


def test_hub_keycloak_user_not_in_registry_is_refused_and_audited(site, keycloak, page):
    zed = user(keycloak, "zed")
    sign_in(page, site.url, zed)
    assert "is not in the sde registry" in page.inner_text("body")
    assert not signed_in(page, site.url)
    refused = events(site, "hub.login.refused", "person:zed")
    assert [e["details"]["reason"] for e in refused] == ["not in the registry"]
    assert not events(site, "hub.login.success", "person:zed")


def test_hub_keycloak_registry_user_missing_from_keycloak_waits_for_sync(site, keycloak, page):
    page.goto(f"{site.url}/hub/login")
    # The hub's login page says why a registered person may not be known yet.
    notice = page.inner_text("#keycloak-accounts")
    assert "sde keycloak sync" in notice and "next sync" in notice
    rita = Person("rita", "not-yet-in-keycloak", "")
    start_sign_in(page, site.url, rita)
    page.wait_for_load_state()
    assert page.url.startswith(keycloak.url)
    assert not events(site, "hub.login.success", "person:rita")
    # What the sync does for her (sde.keycloak.sync): then she signs in.
    sign_in(page, site.url, user(keycloak, "rita"))
    assert signed_in(page, site.url)


def test_hub_keycloak_tampered_or_replayed_code_is_refused(site, keycloak, page):
    tom = user(keycloak, "tom")
    codes: list[str] = []
    page.on(
        "request",
        lambda r: (
            codes.append(parse_qs(urlsplit(r.url).query)["code"][0])
            if "/hub/oauth_callback?" in r.url
            else None
        ),
    )
    sign_in(page, site.url, tom)
    assert signed_in(page, site.url) and len(codes) == 1
    used = codes[0]

    def callback_with(code: str) -> httpx.Response:
        """A fresh sign-in's state (and its cookie) with `code` in place of Keycloak's."""
        with httpx.Client(base_url=site.url, transport=localhost.transport()) as http:
            to_keycloak = http.get("/hub/oauth_login")
            assert to_keycloak.status_code == 302
            state = parse_qs(urlsplit(to_keycloak.headers["location"]).query)["state"][0]
            return http.get("/hub/oauth_callback", params={"code": code, "state": state})

    altered = used[:-4] + ("0000" if not used.endswith("0000") else "1111")
    for code in (altered, used):
        r = callback_with(code)
        assert r.status_code == 403
        assert "Keycloak refused this sign-in" in r.text
        assert "jupyterhub-hub-login" not in r.cookies
    assert len(events(site, "hub.login.success", "person:tom")) == 1


def test_hub_keycloak_down_shows_a_clear_page_and_never_uses_embedded_accounts(keycloak, tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"
    s = make_site(
        tmp_path / "home",
        docker=False,
        **{**keycloak_env(keycloak, REALM, free_port()), "SDE_KEYCLOAK_URL": dead},
    )
    make_person(s.engine, "emma")
    s.enrol("emma")  # embedded credentials that must not be used
    with running(s), httpx.Client(base_url=s.url, transport=localhost.transport()) as http:
        r = http.get("/hub/oauth_login")
        assert r.status_code == 503
        assert keycloak_auth.UNREACHABLE.split(",")[0] in r.text
        login = http.get("/hub/login")
        assert login.status_code == 200 and 'id="keycloak-sign-in"' in login.text
        assert 'name="password"' not in login.text
        form = {
            "_xsrf": http.cookies.get("_xsrf") or "",
            "username": "emma",
            "password": "correct horse battery staple",
            "otp": s.code("emma"),
        }
        r = http.post("/hub/login", data=form)
        assert r.status_code not in (301, 302, 303)
        assert "jupyterhub-hub-login" not in http.cookies
        assert http.get("/hub/home").status_code in (302, 303)
    assert not events(s, "hub.login.success", "person:emma")


def test_hub_keycloak_wrong_client_secret_shows_a_clear_page(keycloak, browser, tmp_path):
    realm, port = "sde-hubwrong", free_port()
    import_realm_for(keycloak, realm, port)
    wrong = tmp_path / "wrong.secret"
    wrong.write_text("not-the-client-secret")
    env = {**keycloak_env(keycloak, realm, port), "SDE_KEYCLOAK_HUB_CLIENT_SECRET": str(wrong)}
    s = make_site(tmp_path / "home", docker=False, **env)
    make_person(s.engine, "walt")
    walt = user(keycloak, "walt", realm=realm)
    context = browser.new_context()
    page = context.new_page()
    try:
        with running(s):
            assert s.url == hub_url(s.settings).rstrip("/")
            sign_in(page, s.url, walt)
            body = page.inner_text("body")
            assert "refused the hub's own client credentials" in body
            assert not signed_in(page, s.url)
    finally:
        context.close()
    assert not events(s, "hub.login.success", "person:walt")


def test_hub_keycloak_setting_needs_a_keycloak_url(tmp_path: Path) -> None:
    from sde.core.config import load_settings
    from sde.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"hub\.authenticator: keycloak needs keycloak\.url"):
        load_settings({"SDE_HOME": str(tmp_path), "SDE_HUB_AUTHENTICATOR": "keycloak"})
