"""Sign-in through Keycloak (OIDC), when `hub.authenticator = "keycloak"`.

A thin subclass of OAuthenticator's GenericOAuthenticator, configured from the
sde settings alone (`configure`): the realm's endpoints are written out, not
discovered, so a hub never signs people in against an issuer it was not told of.
Keycloak checks the secrets (password and TOTP); the registry still decides:

- at sign-in, a person Keycloak vouches for but the registry does not hold, or
  holds as not active, is refused with a page saying so and `hub.login.refused`
  audited; an admitted one is `hub.login.success` (method keycloak);
- on every refresh (every `workspaces.access_check_seconds`, and before every
  spawn) the registry is asked first (`RegistrySessions.refresh_registry`, the
  embedded sign-in's own check), then the Keycloak session is refreshed with the
  refresh token: a user disabled in Keycloak, a session ended there, a token
  refused, or a Keycloak that cannot be reached ends every hub session of the
  person (`hub.session.ended`). Running workspaces follow the registry through
  WorkspaceSpawner.poll, as with the embedded sign-in.

Tokens live only in the hub's auth state, encrypted with `hub.auth_state_key`;
the spawner hands a workspace none of them (no auth_state hook). Logout drops
them and ends the Keycloak session too (`id_token_hint`). Keycloak allows a
post-logout redirect only to the client's redirect URI (the realm's "+"), so the
way back is the OAuth callback, which sends a request without a code to the
login page.

Keycloak unreachable at sign-in gives a 503 page naming it; nothing falls back
to the embedded accounts, which this authenticator never reads.
"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from oauthenticator.generic import GenericOAuthenticator
from oauthenticator.oauth2 import OAuthCallbackHandler, OAuthLoginHandler, OAuthLogoutHandler
from tornado import web
from tornado.httpclient import HTTPClientError
from traitlets import Unicode, default

from sde.core.config import Settings
from sde.core.files import secret_file
from sde.hub import credentials as creds
from sde.hub.authenticator import WORKSPACE_MESSAGE, RegistrySessions
from sde.keycloak.realm import hub_redirect_uri

UNREACHABLE = (
    "The sign-in service (Keycloak) cannot be reached just now, so nobody can sign in. "
    "Try again in a few minutes; if it persists, tell the operators."
)
CLIENT_REFUSED = (
    "Keycloak refused the hub's own client credentials (keycloak.hub_client_id and "
    "its secret do not match the realm), so nobody can sign in. Tell the operators."
)
CODE_REFUSED = (
    "Keycloak refused this sign-in (its code had expired, was used already or was "
    "altered). Sign in again."
)
NOT_REGISTERED = (
    "{user} signed in at Keycloak but is not in the sde registry, so cannot use this "
    "environment. Ask the operators to register you."
)
# The login page: the button, and why someone Keycloak does not know yet cannot sign in
# (custom_html is a template rendered with the login page's own variables).
LOGIN_HTML = """
<div class="service-login">
  <a role="button" id="keycloak-sign-in" class="btn btn-jupyter btn-lg"
     href="{{ authenticator_login_url }}">Sign in with Keycloak</a>
  <p id="keycloak-accounts" class="mt-3">
    Sign-in accounts are made from the sde registry by <code>sde keycloak sync</code>.
    If Keycloak does not know you yet (you were registered after its last run), you
    cannot sign in until the next sync: ask the operators.
  </p>
</div>
"""
NOT_ACTIVE = (
    "The account {user} is not active in the sde registry (suspended or left), so "
    "cannot sign in. Ask the operators."
)


def realm_url(settings: Settings) -> str:
    return f"{settings.keycloak.url.rstrip('/')}/realms/{settings.keycloak.realm}"


def endpoints(settings: Settings) -> dict[str, str]:
    """The realm's OIDC endpoints (Keycloak's fixed layout: no discovery at start)."""
    base = f"{realm_url(settings)}/protocol/openid-connect"
    return {
        "authorize_url": f"{base}/auth",
        "token_url": f"{base}/token",
        "userdata_url": f"{base}/userinfo",
        "end_session_url": f"{base}/logout",
    }


def auth_state_key(settings: Settings) -> bytes:
    """The 32-byte key (hex) of the hub's auth state, created on first use."""
    return secret_file(settings.auth_state_key_path, secrets.token_hex(32).encode())


def configure(c: Any, settings: Settings) -> None:
    """Make `c` (JupyterHub's config) sign in through the [keycloak] realm."""
    kc = settings.keycloak
    c.JupyterHub.authenticator_class = KeycloakAuthenticator
    for trait, url in endpoints(settings).items():
        setattr(c.KeycloakAuthenticator, trait, url)
    c.KeycloakAuthenticator.client_id = kc.hub_client_id
    # The secret from its file only (never an environment variable a child inherits).
    c.KeycloakAuthenticator.client_secret = secret_file(
        Path(settings.keycloak_hub_secret_path)
    ).decode()
    c.KeycloakAuthenticator.oauth_callback_url = hub_redirect_uri(settings)
    c.KeycloakAuthenticator.username_claim = "preferred_username"
    c.KeycloakAuthenticator.scope = ["openid"]
    c.KeycloakAuthenticator.enable_auth_state = True
    c.KeycloakAuthenticator.http_request_kwargs = {"connect_timeout": 5, "request_timeout": 10}
    c.CryptKeeper.keys = [auth_state_key(settings)]


class KeycloakLoginHandler(OAuthLoginHandler):
    """Off to Keycloak, but only when it answers: else a page that says so."""

    async def get(self) -> None:
        authenticator: KeycloakAuthenticator = self.authenticator
        if not await authenticator.keycloak_answers():
            raise web.HTTPError(503, UNREACHABLE)
        super().get()


class KeycloakCallbackHandler(OAuthCallbackHandler):
    async def get(self) -> None:
        if not any(self.get_argument(k, "") for k in ("code", "error", "state")):
            # Back from Keycloak's logout (its only allowed return is this URI).
            self.redirect(self.settings["login_url"])
            return
        await super().get()


class KeycloakLogoutHandler(OAuthLogoutHandler):
    """Logout drops the stored tokens and ends the Keycloak session (id_token_hint)."""

    _id_token: str | None = None

    async def handle_logout(self) -> None:
        await super().handle_logout()
        user = self.current_user
        if user is not None:
            state = await user.get_auth_state() or {}
            self._id_token = state.get("id_token")
            await user.save_auth_state(None)

    async def render_logout_page(self) -> None:
        if not self._id_token:
            self.redirect(self.settings["login_url"])
            return
        authenticator: KeycloakAuthenticator = self.authenticator
        self.redirect(authenticator.end_session_redirect(self._id_token))


class KeycloakAuthenticator(RegistrySessions, GenericOAuthenticator):
    """Keycloak checks who someone is; the registry whether they may be here."""

    login_handler = KeycloakLoginHandler
    callback_handler = KeycloakCallbackHandler
    logout_handler = KeycloakLogoutHandler

    end_session_url = Unicode("", config=True, help="The realm's end-session endpoint.")

    @default("custom_html")
    def _custom_html(self) -> str:
        return LOGIN_HTML

    @default("login_service")
    def _login_service(self) -> str:
        return "Keycloak"

    @default("allow_all")
    def _allow_all(self) -> bool:
        return False

    @default("any_allow_config")
    def _any_allow_config(self) -> bool:
        # The registry (authenticate, check_allowed) is the allow configuration.
        return True

    async def keycloak_answers(self) -> bool:
        """Does the realm answer? (Asked before sending a browser there.)"""
        realm = self.token_url.split("/protocol/", 1)[0]
        try:
            await self.httpfetch(realm, "probing Keycloak", method="GET", request_timeout=5)
        except (HTTPClientError, OSError):
            return False
        return True

    def end_session_redirect(self, id_token: str) -> str:
        query = urlencode(
            {
                "id_token_hint": id_token,
                "client_id": self.client_id,
                "post_logout_redirect_uri": self.oauth_callback_url,
            }
        )
        return f"{self.end_session_url}?{query}"

    async def authenticate(self, handler: Any, data: Any = None, **kwargs: Any) -> Any:
        source = self.source_of(handler.request)
        if source.workspace:
            await self._refuse("", source.address, "from a workspace")
            raise web.HTTPError(403, WORKSPACE_MESSAGE)
        try:
            model = await super().authenticate(handler, data, **kwargs)
        except HTTPClientError as exc:
            raise web.HTTPError(*self._refusal(exc)) from None
        except OSError:
            raise web.HTTPError(503, UNREACHABLE) from None
        username = str(model["name"])
        message = await self._admit(username, source.address)
        if message:
            raise web.HTTPError(403, message)
        return model

    def _refusal(self, exc: HTTPClientError) -> tuple[int, str]:
        """The page for Keycloak's refusal of the code exchange or the user info."""
        body = exc.response.body.decode("utf8", "replace") if exc.response else ""
        # Keycloak's answer to a wrong client secret: 401 unauthorized_client (RFC 6749
        # says invalid_client); to a bad code: 400 invalid_grant.
        if exc.code == 401 and ("unauthorized_client" in body or "invalid_client" in body):
            return 503, CLIENT_REFUSED
        if exc.code in (400, 401):
            return 403, CODE_REFUSED
        return 503, UNREACHABLE

    async def _admit(self, username: str, source: str) -> str:
        return await asyncio.to_thread(self._admit_sync, username, source)

    def _admit_sync(self, username: str, source: str) -> str:
        """Empty when the registry admits `username` (audited either way), else the page."""
        with self.store.write() as s:
            state = creds.login_state(s, username)
            if not state.exists:
                creds.record_login_refused(s, username, source, "not in the registry")
                return NOT_REGISTERED.format(user=username)
            if not state.active:
                creds.record_login_refused(s, username, source, "no active account")
                return NOT_ACTIVE.format(user=username)
            creds.record_login_success(s, username, method="keycloak", source=source)
        return ""

    async def _refuse(self, username: str, source: str, reason: str) -> None:
        def write() -> None:
            with self.store.write() as s:
                creds.record_login_refused(s, username, source, reason)

        await asyncio.to_thread(write)

    async def check_allowed(self, username: str, auth_model: Any = None) -> bool:
        def active() -> bool:
            with self.store.read() as s:
                return creds.login_state(s, username).active

        return await asyncio.to_thread(active)

    async def refresh_user(self, user: Any, handler: Any = None, **kwargs: Any) -> Any:
        """The registry first, then Keycloak: either saying no ends every session."""
        if not await self.refresh_registry(user):
            return False
        state = await user.get_auth_state() or {}
        refresh_token = state.get("refresh_token")
        if not refresh_token:
            await self.end_sessions(user, "no Keycloak session is held for this sign-in")
            return False
        params = self.build_refresh_token_request_params(refresh_token)
        try:
            token_info = await self.get_token_info(handler, params)
            token_info.setdefault("refresh_token", refresh_token)
            model = await self._token_to_auth_model(token_info)
        except (HTTPClientError, web.HTTPError) as exc:
            self.log.info("Keycloak refused to refresh %s: %s", user.name, exc)
            await self.end_sessions(user, "Keycloak refused to refresh the session")
            return False
        except OSError as exc:
            self.log.info("Keycloak unreachable refreshing %s: %s", user.name, exc)
            await self.end_sessions(user, "Keycloak could not be reached to refresh the session")
            return False
        if model["name"] != user.name:
            await self.end_sessions(user, "Keycloak's refreshed token names another user")
            return False
        return model
