"""Sign-in secrets of registry people: password hash, TOTP secret; sign-in attempts.

Passwords are hashed with argon2id (argon2-cffi's RFC 9106 defaults); TOTP
secrets are encrypted at rest with a Fernet key kept outside the database, so
a copy of the database alone yields neither. Every change, and every sign-in
attempt, records an audit event in the caller's transaction. Failed attempts
are counted per account and source in `sde.hub.throttle`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import DateTime, ForeignKey, Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from sde.audit import record, write_operation
from sde.core.clock import as_utc, utc_now
from sde.core.db import Base
from sde.core.errors import NotFound, SdeError
from sde.core.files import secret_file
from sde.hub import throttle
from sde.registry.models import Person
from sde.registry.policies import person_is_active
from sde.registry.service import get_person

MIN_PASSWORD_LENGTH = 12
TOTP_DIGITS = 6
TOTP_INTERVAL = 30

_hasher = PasswordHasher()


@cache
def _dummy_hash() -> str:
    # Verified against when the user is unknown, so that a miss costs as long as a hit.
    return _hasher.hash(secrets.token_urlsafe(16))


class Credential(Base):
    __tablename__ = "credentials"

    person_id: Mapped[int] = mapped_column(
        ForeignKey("people.id", ondelete="CASCADE"), primary_key=True
    )
    password_hash: Mapped[str] = mapped_column(String(200))
    password_set_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Fernet token of the base32 TOTP secret; NULL until the person enrols.
    totp_secret: Mapped[str | None] = mapped_column(Text)
    enrolled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Time step of the last accepted code: a code is accepted once (RFC 6238, 5.2).
    totp_last_step: Mapped[int | None] = mapped_column(Integer)
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


# ---------------------------------------------------------------- key at rest


def totp_cipher(key_path: Path) -> Fernet:
    """The Fernet cipher of TOTP secrets, its key created on first use."""
    key = secret_file(key_path, Fernet.generate_key())
    try:
        return Fernet(key)
    except ValueError:
        raise SdeError(f"{key_path} is not a Fernet key (32 url-safe base64 bytes)") from None


def generate_totp_secret() -> str:
    return pyotp.random_base32()


def totp(secret: str) -> pyotp.TOTP:
    return pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_INTERVAL)


def provisioning_uri(secret: str, username: str, issuer: str) -> str:
    return totp(secret).provisioning_uri(name=username, issuer_name=issuer)


def matching_step(secret: str, code: str, at: float | None = None) -> int | None:
    """The time step whose code `code` is, or None.

    One step of clock drift either way is accepted, as authenticator apps drift.
    """
    code = re.sub(r"\s", "", code or "")
    if not re.fullmatch(rf"\d{{{TOTP_DIGITS}}}", code):
        return None
    t = totp(secret)
    now = time.time() if at is None else at
    for drift in (0, -1, 1):
        moment = datetime.fromtimestamp(now + drift * TOTP_INTERVAL, UTC)
        if hmac.compare_digest(t.at(moment), code):
            return int(t.timecode(moment))
    return None


def code_matches(secret: str, code: str) -> bool:
    return matching_step(secret, code) is not None


# ---------------------------------------------------------------- reads


@dataclass(frozen=True)
class LoginState:
    """What the authenticator needs to know about a person before checking secrets."""

    username: str
    exists: bool
    active: bool
    has_password: bool
    enrolled: bool


def credential_of(session: Session, username: str) -> Credential | None:
    return session.scalar(
        select(Credential)
        .join(Person, Person.id == Credential.person_id)
        .where(Person.username == username)
    )


def login_state(session: Session, username: str) -> LoginState:
    person = session.scalar(select(Person).where(Person.username == username))
    cred = credential_of(session, username) if person is not None else None
    return LoginState(
        username=username,
        exists=person is not None,
        active=person is not None and person_is_active(person),
        has_password=cred is not None,
        enrolled=cred is not None and cred.enrolled_at is not None,
    )


def verify_password(session: Session, username: str, password: str) -> bool:
    """Does `password` match? Costs the same whether or not the user exists."""
    cred = credential_of(session, username)
    try:
        return _hasher.verify(cred.password_hash if cred else _dummy_hash(), password) and bool(
            cred
        )
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def verify_code(session: Session, username: str, code: str, cipher: Fernet) -> int | None:
    """The time step of a valid, not yet used code; None when wrong or already used."""
    cred = credential_of(session, username)
    if cred is None or cred.totp_secret is None:
        return None
    try:
        secret = cipher.decrypt(cred.totp_secret.encode()).decode()
    except InvalidToken:
        raise SdeError(
            "the stored TOTP secret cannot be decrypted: the hub's TOTP key has changed"
        ) from None
    step = matching_step(secret, code)
    if step is None or (cred.totp_last_step is not None and step <= cred.totp_last_step):
        return None
    return step


# ---------------------------------------------------------------- writes


def _check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise SdeError(f"password must be at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > 1024:
        raise SdeError("password must be at most 1024 characters")
    return password


def generate_password() -> str:
    """A random password for a first sign-in or a reset (about 120 bits)."""
    return base64.b32encode(secrets.token_bytes(15)).decode().lower()


@write_operation("hub.password.set")
def set_password(session: Session, actor: str, username: str, password: str) -> None:
    """Set a person's password, keeping an existing TOTP enrolment."""
    person = get_person(session, username)
    if not person_is_active(person):
        raise SdeError(f"user {username!r} is {person.status}: no sign-in credentials")
    digest = _hasher.hash(_check_password(password))
    cred = session.get(Credential, person.id)
    first = cred is None
    if cred is None:
        cred = Credential(person_id=person.id, password_hash=digest, password_set_at=utc_now())
        session.add(cred)
    cred.password_hash, cred.password_set_at = digest, utc_now()
    throttle.clear(session, username)
    record(
        session,
        actor=actor,
        target=f"person:{username}",
        details={"first": first},
    )


@write_operation("hub.credentials.reset")
def reset_credentials(
    session: Session, actor: str, username: str, password: str, reason: str
) -> None:
    """An operator's reset: new password, TOTP enrolment cleared, lockout lifted."""
    reason = (reason or "").strip()
    if not reason:
        raise SdeError("a reset needs a reason (it is kept in the audit log)")
    person = get_person(session, username)
    cred = session.get(Credential, person.id)
    if cred is None:
        raise NotFound(f"user {username!r} has no sign-in credentials yet; set a password first")
    cred.password_hash = _hasher.hash(_check_password(password))
    cred.password_set_at = utc_now()
    was_enrolled = cred.enrolled_at is not None
    cred.totp_secret, cred.enrolled_at, cred.totp_last_step = None, None, None
    throttle.clear(session, username)
    record(
        session,
        actor=actor,
        target=f"person:{username}",
        details={"reason": reason[:500], "totp_was_enrolled": was_enrolled},
    )


@write_operation("hub.totp.enrol")
def enrol_totp(
    session: Session,
    actor: str,
    username: str,
    secret: str,
    cipher: Fernet,
    step: int | None = None,
) -> None:
    """Store a verified TOTP secret (encrypted); the person must have a password.

    `step` is the time step of the code that proved the enrolment (used up).
    """
    person = get_person(session, username)
    cred = session.get(Credential, person.id)
    if cred is None:
        raise NotFound(f"user {username!r} has no sign-in credentials")
    if cred.enrolled_at is not None:
        raise SdeError(f"user {username!r} is already enrolled; an operator reset comes first")
    cred.totp_secret = cipher.encrypt(secret.encode()).decode()
    cred.enrolled_at = utc_now()
    cred.totp_last_step = step
    record(session, actor=actor, target=f"person:{username}")


class CodeReused(SdeError):
    """A TOTP code was presented again after it had been accepted."""


@write_operation("hub.login.success")
def record_login_success(
    session: Session,
    username: str,
    *,
    method: str = "password+totp",
    totp_step: int | None = None,
    source: str | None = None,
) -> None:
    """Record a sign-in; `totp_step` is used up (CodeReused if a concurrent sign-in won).

    The failures of the account from `source` are forgotten; those from other
    sources are not (they may be someone else's).
    """
    person = get_person(session, username)
    cred = session.get(Credential, person.id, with_for_update=True)
    if cred is not None:
        if totp_step is not None:
            if cred.totp_last_step is not None and totp_step <= cred.totp_last_step:
                raise CodeReused("this authenticator code has been used already")
            cred.totp_last_step = totp_step
        cred.last_login_at = utc_now()
    if source is not None:
        throttle.clear(session, username, source)
    record(
        session,
        actor=f"user:{username}",
        target=f"person:{username}",
        details={"method": method, "source": source},
    )


@write_operation("hub.session.ended")
def record_session_ended(session: Session, username: str, reason: str) -> None:
    """Every session of `username` was ended by the hub (account or sign-in changed)."""
    record(
        session,
        actor="sde:hub",
        target=f"person:{username}",
        details={"reason": reason},
    )


def session_problem(session: Session, username: str) -> str:
    """Why a signed-in session of `username` may not go on (empty when it may)."""
    state = login_state(session, username)
    if not state.active:
        return "the account is not active"
    if not state.enrolled:
        return "the sign-in was reset by an operator"
    return ""


def generation(session: Session, username: str) -> str:
    """A short tag that changes whenever the person's password is set or reset.

    The hub ends the sessions begun under another generation (SdeAuthenticator),
    also when the person has signed in again meanwhile.
    """
    cred = credential_of(session, username)
    stamp = as_utc(cred.password_set_at) if cred is not None else None
    raw = stamp.isoformat() if stamp is not None else "none"
    return hashlib.sha256(raw.encode()).hexdigest()[:12]


def _login_target(username: str) -> str:
    # The name is attacker-typed: keep it short and printable in the log.
    return f"person:{throttle.account_key(username)}"


@write_operation("hub.login.failure")
def record_login_failure(
    session: Session,
    username: str,
    reason: str,
    source: str,
    *,
    max_failures: int,
    lockout_seconds: int,
) -> datetime | None:
    """Count a failed attempt from `source`; at `max_failures` in a row the account is
    locked from that source. Returns the end of a lock begun now, else None."""
    target = _login_target(username)
    failures, locked_until = throttle.count_failure(
        session, username, source, max_failures=max_failures, lockout_seconds=lockout_seconds
    )
    record(
        session,
        actor=target.replace("person:", "user:", 1),
        target=target,
        details={"reason": reason, "source": source, "failed_attempts": failures},
    )
    if locked_until is not None:
        _record_lockout(session, target, source, failures, locked_until)
    return locked_until


@write_operation("hub.login.lockout")
def _record_lockout(
    session: Session, target: str, source: str, failures: int, locked_until: datetime
) -> None:
    """The failure that locked the account from `source` (recorded right after it)."""
    record(
        session,
        actor="sde:hub",
        target=target,
        details={
            "source": source,
            "failed_attempts": failures,
            "locked_until": locked_until.isoformat(),
        },
    )


@write_operation("hub.login.refused")
def record_login_refused(session: Session, username: str, source: str, reason: str) -> None:
    """A sign-in refused before any secret was checked, and not counted (e.g. from a
    workspace address)."""
    target = _login_target(username)
    record(
        session,
        actor=target.replace("person:", "user:", 1),
        target=target,
        details={"reason": reason, "source": source},
    )
