"""A real Keycloak for the test session, with the sde realm imported.

infra/keycloak/fetch.sh caches the distribution zip (once per machine, under a
lock); sde.keycloak.server unpacks and builds it once and starts it on free
loopback ports. The `keycloak` fixture (tests/conftest.py) yields a
`KeycloakInstance`: the server's URL, an admin client, the Settings the realm was
imported from (their `keycloak.url` points at this server, their secret files are
in the session's SDE_HOME), the client secrets, and `create_user` for people who
sign in with a password and a TOTP code.
"""

from __future__ import annotations

import base64
import secrets
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyotp

from sde.core.config import Settings, load_settings
from sde.keycloak import realm, server
from sde.keycloak.errors import KeycloakError

REPO = Path(__file__).resolve().parents[2]
ADMIN = "sde-test-admin"


class Unavailable(Exception):
    """Keycloak could not be fetched, built or started (the reason is the message)."""


@dataclass(frozen=True)
class TestUser:
    username: str
    password: str
    # Base32, as an authenticator app (or pyotp) takes it; empty when not enrolled.
    totp_secret: str

    def code(self) -> str:
        return pyotp.TOTP(self.totp_secret).now()


@dataclass
class KeycloakInstance:
    server: server.KeycloakServer
    settings: Settings
    admin: Any  # KeycloakAdmin signed in to the master realm

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def realm(self) -> str:
        return self.settings.keycloak.realm

    def client_secret(self, client_id: str) -> str:
        return realm.client_secrets(self.settings)[client_id]

    def settings_for(self, **env: str) -> Settings:
        """These settings with more SDE_* variables (e.g. another realm or hub URL)."""
        return load_settings({**_env(self.settings), **env})

    def import_realm(self, settings: Settings | None = None) -> realm.ImportReport:
        return realm.import_realm(self.admin, settings or self.settings)

    def realm_admin(self, realm_name: str | None = None) -> Any:
        """A KeycloakAdmin working in the sde realm (signed in through the master realm)."""
        from keycloak import KeycloakAdmin

        return KeycloakAdmin(
            server_url=self.url,
            username=self.server.admin_username,
            password=self.server.admin_password,
            realm_name=realm_name or self.realm,
            user_realm_name="master",
        )

    def create_user(
        self,
        username: str | None = None,
        password: str | None = None,
        enrolled: bool = True,
        realm_name: str | None = None,
        **attributes: Any,
    ) -> TestUser:
        """A user in the realm with a password and, if `enrolled`, a TOTP authenticator.

        Enrolled users have nothing left to do at sign-in (the realm's default
        CONFIGURE_TOTP action is cleared, since they have an authenticator);
        unenrolled ones are asked to enrol at their first sign-in, as a new person is.
        The profile is complete (names, verified email), so Keycloak asks nothing else.
        """
        admin = self.realm_admin(realm_name)
        username = username or f"u{uuid.uuid4().hex[:10]}"
        password = password or secrets.token_urlsafe(12)
        credentials: list[dict[str, Any]] = [
            {"type": "password", "value": password, "temporary": False}
        ]
        totp_secret = ""
        if enrolled:
            # Keycloak keeps the shared secret as text and shows apps its bytes in Base32.
            raw = secrets.token_hex(10)
            totp_secret = base64.b32encode(raw.encode()).decode().rstrip("=")
            credentials.append(
                {
                    "type": "otp",
                    "userLabel": "test authenticator",
                    "secretData": f'{{"value": "{raw}"}}',
                    "credentialData": (
                        '{"subType": "totp", "digits": 6, "counter": 0, "period": 30, '
                        '"algorithm": "HmacSHA1"}'
                    ),
                }
            )
        user_id = admin.create_user(
            {
                "username": username,
                "enabled": True,
                "email": f"{username}@example.org",
                "emailVerified": True,
                "firstName": username.capitalize(),
                "lastName": "Tester",
                "credentials": credentials,
                **attributes,
            }
        )
        if enrolled:
            admin.update_user(user_id, {"requiredActions": []})
        return TestUser(username, password, totp_secret)

    def stop(self) -> None:
        self.server.stop()


def _env(settings: Settings) -> dict[str, str]:
    return {
        "SDE_HOME": str(settings.home),
        "SDE_KEYCLOAK_URL": settings.keycloak.url,
        "SDE_KEYCLOAK_ADMIN_USERNAME": settings.keycloak.admin_username,
    }


def fetch() -> Path:
    """The cached distribution zip (downloaded from Maven Central the first time)."""
    result = subprocess.run(
        ["bash", str(REPO / "infra/keycloak/fetch.sh")],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    if result.returncode != 0:
        raise Unavailable(f"infra/keycloak/fetch.sh failed: {result.stderr.strip()[-800:]}")
    return Path(result.stdout.strip().splitlines()[-1])


def start(home: Path) -> KeycloakInstance:
    """Fetch, build (once), start and import the sde realm; Unavailable with the reason."""
    password = secrets.token_urlsafe(16)
    try:
        dist = server.prepare(fetch())
        running = server.start(dist, ADMIN, password)
    except (KeycloakError, OSError) as exc:
        raise Unavailable(str(exc)) from None
    try:
        home.mkdir(parents=True, exist_ok=True)
        settings = load_settings(
            {
                "SDE_HOME": str(home),
                "SDE_KEYCLOAK_URL": running.url,
                "SDE_KEYCLOAK_ADMIN_USERNAME": ADMIN,
            }
        )
        path = settings.keycloak_admin_password_path
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.write_text(password)
        path.chmod(0o600)
        instance = KeycloakInstance(running, settings, realm.admin_client(settings))
        instance.import_realm()
    except BaseException:
        running.stop()
        raise
    return instance
