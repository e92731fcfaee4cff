"""Who is calling: a hub token (API) or the airlock's own session cookie (pages).

Identity comes from the hub, never from the caller: a token is resolved with
`GET /hub/api/user` (the hub API is on loopback, where this service runs) and
the answer kept for `CACHE_SECONDS` only, so a revoked or expired token stops
working almost at once; *roles* are not cached at all (each call asks the
registry through `sde.airlock.permissions.role_of`).

Two kinds of caller, told apart by the scopes the hub reports for the token:

- a **workspace**: its server's token carries `custom:airlock:requests!server`,
  which the hub expands to `...!server=USER/PROJECT`; such a caller is that
  person acting from that project's workspace and may act only on that
  project's requests, and only on the author's side (`workspace_actions`);
- a **person**: a browser session (the hub's OAuth, scope
  `access:services!service=airlock`) or a token the person made with that scope.

Browser sessions are kept server-side: the cookie (host-only, on the service's
own host and prefix) holds a random id, the hub OAuth token stays in this
process. Every form carries a CSRF token derived from that id with a key of
this process, checked on every POST; API calls never accept the cookie, so
they need no CSRF token.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx

from sde.core.errors import AccessDenied

SERVICE = "airlock"
SCOPE_PERSON = f"access:services!service={SERVICE}"
SCOPE_WORKSPACE = "custom:airlock:requests"
CACHE_SECONDS = 10.0
SESSION_COOKIE = "sde-airlock-session"
STATE_COOKIE = "sde-airlock-oauth-state"
SESSION_SECONDS = 8 * 3600


class NotSignedIn(AccessDenied):
    """No valid hub token or session came with the request (forged, expired or none)."""

    http_status = 401


@dataclass(frozen=True)
class Caller:
    user: str
    # The project of the workspace the call comes from; None for a person's own session.
    project: str | None = None

    @property
    def from_workspace(self) -> bool:
        return self.project is not None


def caller_from_model(model: dict[str, Any]) -> Caller:
    """The caller a hub user model (with its token's scopes) stands for; NotSignedIn if none."""
    name = str(model.get("name") or "")
    if model.get("kind", "user") != "user" or not name:
        raise NotSignedIn("the token is not a person's")
    scopes = set(model.get("scopes") or [])
    prefix = f"{SCOPE_WORKSPACE}!server={name}/"
    servers = sorted(s.removeprefix(prefix) for s in scopes if s.startswith(prefix))
    if len(servers) == 1 and servers[0]:
        return Caller(name, servers[0])
    if SCOPE_PERSON in scopes or "access:services" in scopes:
        return Caller(name)
    raise AccessDenied(f"the token of {name} holds no airlock scope")


class HubIdentity:
    """Resolves hub tokens to callers, asking the hub at most every CACHE_SECONDS per token."""

    def __init__(self, api_url: str | None = None, api_token: str | None = None) -> None:
        self.api_url = (api_url or os.environ.get("JUPYTERHUB_API_URL", "")).rstrip("/")
        self.api_token = api_token or os.environ.get("JUPYTERHUB_API_TOKEN", "")
        self._cache: dict[str, tuple[float, Caller]] = {}
        self._lock = threading.Lock()
        self._client = httpx.Client(timeout=10)

    def resolve(self, token: str) -> Caller:
        if not token or len(token) > 512:
            raise NotSignedIn("no hub token")
        key = hashlib.sha256(token.encode()).hexdigest()
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and hit[0] > now:
                return hit[1]
        reply = self._client.get(
            f"{self.api_url}/user", headers={"Authorization": f"token {token}"}
        )
        if reply.status_code in (401, 403, 404):
            raise NotSignedIn("the hub does not know this token (forged, expired or revoked)")
        if reply.status_code != 200:
            raise AccessDenied(f"the hub could not identify the token (HTTP {reply.status_code})")
        caller = caller_from_model(json.loads(reply.text))
        with self._lock:
            self._cache[key] = (now + CACHE_SECONDS, caller)
            if len(self._cache) > 10_000:  # forget the expired ones
                self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
        return caller


def token_from_header(value: str | None) -> str:
    """The token of `Authorization: token T` (or `Bearer T`); '' when absent."""
    if not value:
        return ""
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() in ("token", "bearer") else ""


class Sessions:
    """Browser sessions of this process: cookie id -> the hub OAuth token, and CSRF tokens."""

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)
        self._sessions: dict[str, tuple[float, str]] = {}
        self._states: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()

    def start(self, hub_token: str) -> str:
        sid = secrets.token_urlsafe(32)
        with self._lock:
            self._sessions[sid] = (time.time() + SESSION_SECONDS, hub_token)
        return sid

    def token(self, sid: str | None) -> str:
        with self._lock:
            found = self._sessions.get(sid or "")
        if found is None or found[0] < time.time():
            return ""
        return found[1]

    def end(self, sid: str | None) -> None:
        with self._lock:
            self._sessions.pop(sid or "", None)

    def csrf(self, sid: str) -> str:
        return hmac.new(self._key, f"csrf:{sid}".encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, sid: str | None, given: str | None) -> bool:
        if not sid or not given or not self.token(sid):
            return False
        return hmac.compare_digest(self.csrf(sid), given)

    def new_state(self, next_url: str) -> str:
        state = secrets.token_urlsafe(24)
        with self._lock:
            self._states[state] = (time.time() + 600, next_url)
        return state

    def take_state(self, state: str | None) -> str | None:
        """The next URL of a pending sign-in, once; None when unknown or stale."""
        with self._lock:
            found = self._states.pop(state or "", None)
        if found is None or found[0] < time.time():
            return None
        return found[1]
