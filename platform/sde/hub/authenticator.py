"""The embedded sign-in: registry accounts, argon2 passwords, mandatory TOTP, throttling.

`SdeAuthenticator` is an ordinary JupyterHub authenticator, so a deployment
with an identity provider replaces it by configuration: `hub.authenticator =
"keycloak"` (sde.hub.keycloak_auth) or another plug-in (`hub.authenticator_class`).
What every sde sign-in shares, the registry's say over sessions, is
`RegistrySessions` below.

Sessions end when the account does: every `auth_refresh_age` seconds (and before
every spawn) `refresh_user` asks the registry again, and for a person no longer
active, or whose sign-in an operator has reset, it ends every session of that
person at once (a new cookie id invalidates all their hub cookies) and audits it.

Flow: the login form takes username, password and the 6-digit code. A person
without a TOTP enrolment who gives the right password gets the enrolment page
(secret, provisioning URI and QR code) and confirms with a first code; the
pending secret travels in a ticket signed with the hub's cookie secret and
valid for a few minutes, so nothing is stored before it is confirmed. Every
attempt is an audit event. `max_failures` failures in a row from one source lock
the account from that source only, for `lockout_seconds`; many failures on one
account slow its attempts from everywhere but lock nobody out; attempts from a
workspace address are refused unchecked and never counted (`sde.hub.throttle`).
An operator's `sde hub credentials reset` lifts every lock of the account.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from jupyterhub.auth import Authenticator
from jupyterhub.handlers.login import LoginHandler
from jupyterhub.utils import new_token
from tornado import web
from traitlets import Integer, Unicode, default

from sde.hub import credentials as creds
from sde.hub import throttle
from sde.hub.roles import OPERATOR_ROLE
from sde.hub.store import Store

ENROL_TICKET = "sde-totp-enrolment"


class EnrolmentRequired(Exception):
    """The password was right but the person has no TOTP enrolment yet."""

    def __init__(self, username: str, secret: str | None = None, error: str = "") -> None:
        super().__init__(username)
        self.username = username
        self.secret = secret or creds.generate_totp_secret()
        self.error = error


def locked_message(until: datetime) -> str:
    return (
        "This account is locked here after too many failed sign-ins. Try again after "
        f"{until:%H:%M} UTC, or ask an operator to reset your sign-in."
    )


WORKSPACE_MESSAGE = "Sign-in is not possible from inside a workspace."


class SdeLoginHandler(LoginHandler):
    """The hub's login page plus the TOTP enrolment step."""

    async def post(self) -> None:
        try:
            await super().post()
        except EnrolmentRequired as need:
            await self._render_enrolment(need)

    async def auth_to_user(self, authenticated: Any, user: Any = None) -> Any:
        # The login cookie about to be set names the user's cookie id: one of the
        # current credential generation, so that the sessions of an earlier one end.
        user = await super().auth_to_user(authenticated, user)
        authenticator: SdeAuthenticator = self.authenticator
        tag = await asyncio.to_thread(authenticator.generation, user.name)
        authenticator.ensure_generation(user, tag)
        return user

    async def _render_enrolment(self, need: EnrolmentRequired) -> None:
        authenticator: SdeAuthenticator = self.authenticator
        ticket = self.create_signed_value(
            ENROL_TICKET, json.dumps({"u": need.username, "s": need.secret})
        ).decode()
        uri = creds.provisioning_uri(need.secret, need.username, authenticator.totp_issuer)
        html = await self.render_template(
            "sde-enrol.html",
            username=need.username,
            secret=need.secret,
            secret_grouped=" ".join(need.secret[i : i + 4] for i in range(0, len(need.secret), 4)),
            provisioning_uri=uri,
            qr_svg=qr_svg(uri),
            ticket=ticket,
            enrol_error=need.error,
            login_url=authenticator.login_url(self.hub.base_url),
            next=self.get_argument("next", default=""),
            xsrf=self.xsrf_token.decode("ascii"),
        )
        self.finish(html)


def qr_svg(uri: str) -> str:
    """An inline SVG QR code of the provisioning URI, for authenticator apps."""
    import io

    import segno

    buf = io.BytesIO()
    segno.make(uri, error="m").save(buf, kind="svg", scale=5, xmldecl=False, svgns=True)
    return buf.getvalue().decode()


class RegistrySessions:
    """What every sde sign-in shares: the registry decides whether a session goes on.

    Mixed into the embedded SdeAuthenticator and the Keycloak one
    (sde.hub.keycloak_auth), so that a lapse ends sessions the same way whoever
    checked the secrets: `refresh_registry` asks the registry, and for a person no
    longer active audits `hub.session.ended` and gives them a new cookie id, which
    ends every hub cookie of theirs in every browser.
    """

    log: Any

    @cached_property
    def store(self) -> Store:
        return Store()

    def source_of(self, request: Any) -> throttle.Source:
        """Where a sign-in request comes from (see sde.hub.throttle)."""
        settings = self.store.settings
        address = getattr(getattr(request.connection, "context", None), "address", None)
        peer = str(address[0]) if isinstance(address, tuple) and address else ""
        hub_ips = {ip for ip in (settings.hub.ip, settings.hub.api_ip) if ip}
        hub_ips.add(str(next(throttle.workspace_subnet(settings.workspaces.subnet).hosts())))
        return throttle.login_source(
            peer, request.headers.get("X-Forwarded-For"), settings.workspaces.subnet, hub_ips
        )

    def session_problem(self, s: Any, username: str, cookie_id: str) -> str:
        """Why the sessions of `username` must end (empty if not): here, the registry's say."""
        return "" if creds.login_state(s, username).active else "the account is not active"

    def generation_of(self, s: Any, username: str) -> str:
        """The tag a cookie id ends in (the embedded sign-in's credential generation)."""
        return "idp"

    async def refresh_registry(self, user: Any) -> bool:
        """True while the registry lets the session go on; else every session has ended."""
        cookie_id = user.orm_user.cookie_id
        problem, tag, operator = await asyncio.to_thread(self._account, user.name, cookie_id)
        if not problem:
            self._sync_operator_role(user, operator)
            return True
        self.log.warning("Ending every session of %s: %s", user.name, problem)
        self.ensure_generation(user, tag, rotate=True)
        return False

    async def end_sessions(self, user: Any, problem: str) -> None:
        """End every session of `user` for a reason found outside the registry (audited)."""
        await asyncio.to_thread(self._record_ended, user.name, problem)
        self.log.warning("Ending every session of %s: %s", user.name, problem)
        self.ensure_generation(user, "idp", rotate=True)

    def _record_ended(self, username: str, problem: str) -> None:
        with self.store.write() as s:
            creds.record_session_ended(s, username, problem)

    def ensure_generation(self, user: Any, tag: str, rotate: bool = False) -> None:
        """Give the user a cookie id of credential generation `tag` (a new id if `rotate`).

        Every hub cookie of the person names this id: a new one ends them all, in
        every browser; one that ends in an earlier generation marks sessions begun
        before the password was last set or reset.
        """
        if rotate or not user.orm_user.cookie_id.endswith(f".{tag}"):
            user.orm_user.cookie_id = f"{new_token()}.{tag}"
            user.db.commit()

    def _account(self, username: str, cookie_id: str) -> tuple[str, str, bool]:
        """Why the sessions must end (empty if not), the credential generation, operator?"""
        from sde.registry.enums import GlobalRoleName
        from sde.registry.service import get_person

        with self.store.read() as s:
            problem = self.session_problem(s, username, cookie_id)
            tag = self.generation_of(s, username)
            operator = not problem and GlobalRoleName.OPERATOR in get_person(s, username).role_names
        if problem:
            with self.store.write() as s:
                creds.record_session_ended(s, username, problem)
        return problem, tag, operator

    def _sync_operator_role(self, user: Any, operator: bool) -> None:
        """The hub's operator role follows the registry's, not only at hub start."""
        from jupyterhub import roles

        has = any(r.name == OPERATOR_ROLE for r in user.orm_user.roles)
        if operator and not has:
            self.log.info("Granting %s to %s (registry role operator)", OPERATOR_ROLE, user.name)
            roles.grant_role(user.db, user.orm_user, OPERATOR_ROLE)
        elif has and not operator:
            self.log.info(
                "Stripping %s from %s (no registry role operator)", OPERATOR_ROLE, user.name
            )
            roles.strip_role(user.db, user.orm_user, OPERATOR_ROLE)


class SdeAuthenticator(RegistrySessions, Authenticator):
    """Password + TOTP sign-in against the sde registry (the embedded default)."""

    max_failures = Integer(
        5,
        config=True,
        help="Failed attempts in a row (password or code) from one source that lock the "
        "account from that source.",
    )
    lockout_seconds = Integer(
        900, config=True, help="How long an account stays locked from a source."
    )
    totp_issuer = Unicode(
        "sde", config=True, help="Issuer name shown by authenticator apps next to the account."
    )
    totp_key_path = Unicode(
        "",
        config=True,
        help="Fernet key encrypting TOTP secrets at rest; empty: the sde setting hub.totp_key.",
    )
    enrolment_minutes = Integer(
        10, config=True, help="How long an enrolment page stays valid after the password check."
    )

    @default("request_otp")
    def _request_otp(self) -> bool:
        return True

    @default("otp_prompt")
    def _otp_prompt(self) -> str:
        return "Authenticator code (leave empty on your first sign-in):"

    @default("allow_all")
    def _allow_all(self) -> bool:
        # Who may sign in is the registry's decision (check_allowed), not a hub list.
        return False

    @default("any_allow_config")
    def _any_allow_config(self) -> bool:
        # check_allowed (the registry) is the allow configuration.
        return True

    @cached_property
    def cipher(self) -> Any:
        return creds.totp_cipher(Path(self.totp_key_path or self.store.settings.totp_key_path))

    def get_handlers(self, app: Any) -> list[tuple[str, type]]:
        return [("/login", SdeLoginHandler)]

    def check_allowed(self, username: str, authentication: Any = None) -> bool:
        with self.store.read() as s:
            return creds.login_state(s, username).active

    async def authenticate(self, handler: web.RequestHandler, data: dict[str, str]) -> Any:
        username = self.normalize_username(data.get("username", ""))
        if not username:
            return None
        source = self.source_of(handler.request)
        if source.workspace:
            # Kernel code must neither sign in nor count failures against anyone.
            await asyncio.to_thread(self._refuse, username, source.address, "from a workspace")
            raise web.HTTPError(403, WORKSPACE_MESSAGE)
        gate = await asyncio.to_thread(self._throttle, username, source.address)
        if gate.locked_until is not None:
            await asyncio.to_thread(self._fail, username, source.address, "account locked")
            raise web.HTTPError(403, locked_message(gate.locked_until))
        if gate.delay:
            # Before the check, right or wrong alike: the wait tells nothing.
            await asyncio.sleep(gate.delay)
        if data.get("enrol_ticket"):
            secret = self._ticket_secret(handler, data["enrol_ticket"], username)
            return await asyncio.to_thread(
                self._confirm, username, source.address, secret, data.get("otp", "")
            )
        return await asyncio.to_thread(
            self._check, username, source.address, data.get("password", ""), data.get("otp", "")
        )

    # -- the checks, run in a worker thread: argon2 and the database block

    def _throttle(self, username: str, source: str) -> throttle.Throttle:
        with self.store.read() as s:
            return throttle.throttle_state(
                s,
                username,
                source,
                max_failures=self.max_failures,
                lockout_seconds=self.lockout_seconds,
            )

    def _refuse(self, username: str, source: str, reason: str) -> None:
        with self.store.write() as s:
            creds.record_login_refused(s, username, source, reason)

    def _fail(self, username: str, source: str, reason: str) -> None:
        with self.store.write() as s:
            until = creds.record_login_failure(
                s,
                username,
                reason,
                source,
                max_failures=self.max_failures,
                lockout_seconds=self.lockout_seconds,
            )
        if until is not None:
            raise web.HTTPError(403, locked_message(until))

    def _check(self, username: str, source: str, password: str, code: str) -> dict[str, Any] | None:
        with self.store.read() as s:
            state = creds.login_state(s, username)
            password_ok = creds.verify_password(s, username, password)
        if not password_ok or not state.active:
            reason = "wrong password" if state.active else "no active account"
            self._fail(username, source, reason)
            return None
        if not state.enrolled:
            raise EnrolmentRequired(username)
        with self.store.read() as s:
            step = creds.verify_code(s, username, code, self.cipher)
        if step is None:
            reason = "wrong authenticator code" if code else "no authenticator code"
            self._fail(username, source, reason)
            return None
        try:
            with self.store.write() as s:
                creds.record_login_success(s, username, totp_step=step, source=source)
        except creds.CodeReused:
            self._fail(username, source, "authenticator code used twice")
            return None
        return {"name": username}

    async def refresh_user(self, user: Any, handler: Any = None) -> bool:
        return await self.refresh_registry(user)

    def generation(self, username: str) -> str:
        with self.store.read() as s:
            return creds.generation(s, username)

    def generation_of(self, s: Any, username: str) -> str:
        return creds.generation(s, username)

    def session_problem(self, s: Any, username: str, cookie_id: str) -> str:
        # The embedded sign-in's own reasons too: a reset, a password set since.
        problem = creds.session_problem(s, username)
        if not problem and not cookie_id.endswith(f".{creds.generation(s, username)}"):
            problem = "the password was set or reset since these sessions began"
        return problem

    def _ticket_secret(self, handler: web.RequestHandler, ticket: str, username: str) -> str:
        raw = web.decode_signed_value(
            handler.application.settings["cookie_secret"],
            ENROL_TICKET,
            ticket,
            max_age_days=self.enrolment_minutes / (24 * 60),
        )
        if raw is None:
            raise web.HTTPError(403, "The enrolment page has expired. Sign in again.")
        payload = json.loads(raw)
        if payload.get("u") != username:
            raise web.HTTPError(403, "The enrolment page belongs to another account.")
        return str(payload["s"])

    def _confirm(self, username: str, source: str, secret: str, code: str) -> dict[str, Any] | None:
        with self.store.read() as s:
            state = creds.login_state(s, username)
        if state.enrolled:
            raise web.HTTPError(403, "This account is already enrolled: sign in with your code.")
        step = creds.matching_step(secret, code)
        if step is None:
            self._fail(username, source, "wrong code at enrolment")
            raise EnrolmentRequired(
                username, secret, "That code did not match. Check the clock of your device."
            )
        with self.store.write() as s:
            creds.enrol_totp(s, f"user:{username}", username, secret, self.cipher, step)
            creds.record_login_success(s, username, method="password+totp-enrolment", source=source)
        return {"name": username}
