"""The registry drives Keycloak: accounts, enablement and groups follow the registry.

The registry is the source of truth for who may work where; Keycloak only
signs people in. `sync` makes Keycloak's users of the sde realm what the
registry says (`wanted`): one user per person (username, name, email), enabled
only while `policies.person_problems` finds nothing (status active, accreditation
and training current), in `/projects/<slug>` for each project whose membership
the registry grants today (`policies.project_problems` empty: active, approved,
within its dates) and in `/roles/<role>` for each global role. Memberships of
the sde groups the registry no longer grants are removed; a user the registry
does not know is disabled (never deleted: its history stays in Keycloak) and
reported. Groups outside /projects and /roles are not sde's and are left alone.

The groups grant nothing by themselves: every spawn, request and review still
asks `access_decision` at the moment of the action, so a stale group (between
two syncs) cannot let anyone in. They exist for the token's `groups` claim and
for an operator reading Keycloak.

Fast because it reads in bulk and writes only differences: users and each sde
group's members are fetched in pages (1,000 a request, the groups' members
concurrently), compared in memory with the registry, and only what differs is
written; new users arrive in batches through Keycloak's partial import, with
their groups. A sync with nothing to change writes nothing and records nothing.

Each change made is one audit event (`keycloak.sync`, details name the kind of
change), recorded after Keycloak accepted it; if Keycloak fails half-way, the
changes already made are recorded before the error is raised, so the log never
misses a change and never shows one that did not happen.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from sde.audit import record, write_operation
from sde.core.config import Settings
from sde.keycloak.errors import KeycloakError
from sde.registry.enums import GlobalRoleName
from sde.registry.models import GlobalRole, Membership, Person, Project
from sde.registry.policies import person_problems, project_problems

log = logging.getLogger("sde.keycloak.sync")

PROJECTS = "projects"  # /projects/<slug>: members of a project the registry grants today
ROLES = "roles"  # /roles/<role>: holders of a global role
# Users and group members a request (Keycloak's own default is 100).
PAGE = 1000
# Concurrent requests for group members and per-user writes: Keycloak answers
# each in milliseconds, so round trips, not the server, bound a serial sync.
WORKERS = 8
# New users per partial import (one request each).
IMPORT_BATCH = 500
NOT_IN_REGISTRY = "not in the registry"


def project_group(slug: str) -> str:
    return f"/{PROJECTS}/{slug}"


def role_group(role: str) -> str:
    return f"/{ROLES}/{role}"


ROLE_GROUPS = tuple(role_group(r) for r in GlobalRoleName)


def split_name(full_name: str) -> tuple[str, str]:
    """Keycloak's firstName and lastName, both required by its default user profile.

    The registry keeps one full name; the last word is taken as the family name,
    and a single-word name fills both (else Keycloak would ask for it at sign-in).
    """
    name = " ".join(full_name.split())
    first, _, last = name.rpartition(" ")
    return (first, last) if first else (name, name)


@dataclass(frozen=True)
class Account:
    """One Keycloak user as sync compares it: the fields sde owns, and its sde groups."""

    username: str
    first_name: str
    last_name: str
    email: str
    enabled: bool
    groups: frozenset[str]
    # Why the registry disables it (empty when enabled); not compared.
    reasons: tuple[str, ...] = ()

    def profile(self) -> dict[str, Any]:
        return {
            "username": self.username,
            "firstName": self.first_name,
            "lastName": self.last_name,
            "email": self.email,
            # The registry vouches for the address; Keycloak need not ask.
            "emailVerified": True,
        }


@dataclass(frozen=True)
class Change:
    """One difference between the registry and Keycloak, and what sync does about it."""

    # group.create, user.create, user.update, user.enable, user.disable, group.join, group.leave
    kind: str
    name: str  # the username, or the group path for group.create
    details: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        d = self.details
        if self.kind == "group.create":
            return f"+ group {self.name}"
        if self.kind == "user.create":
            state = "enabled" if d["enabled"] else "disabled: " + "; ".join(d["reasons"])
            groups = ", ".join(d["groups"]) or "no groups"
            return f"+ user {self.name} ({state}; {groups})"
        if self.kind == "user.update":
            fields = ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in d["fields"].items())
            return f"~ user {self.name}: {fields}"
        if self.kind == "user.enable":
            return f"~ user {self.name} enabled"
        if self.kind == "user.disable":
            return f"- user {self.name} disabled: " + "; ".join(d["reasons"])
        if self.kind == "group.join":
            return f"+ {self.name} in {d['group']}"
        return f"- {self.name} out of {d['group']}"

    def as_dict(self) -> dict[str, Any]:
        return {"change": self.kind, "name": self.name, **self.details}


@dataclass
class Report:
    """What a sync found (and, unless a dry run, did)."""

    changes: list[Change]
    dry_run: bool
    people: int  # accounts the registry wants
    users: int  # sde realm users Keycloak had before
    seconds: float = 0.0

    @property
    def unknown(self) -> list[str]:
        """Users only in Keycloak that this sync disables (or would)."""
        return [
            c.name
            for c in self.changes
            if c.kind == "user.disable" and c.details["reasons"] == [NOT_IN_REGISTRY]
        ]

    def lines(self) -> list[str]:
        verb = "would change" if self.dry_run else "changed"
        out = [c.line() for c in self.changes]
        summary = f"{verb} {len(self.changes)}" if self.changes else "in step: nothing to change"
        out.append(
            f"{summary} ({self.people} people in the registry, {self.users} Keycloak users, "
            f"{self.seconds:.1f} s)"
        )
        return out


# ---------------------------------------------------------------- the two sides


def wanted(session: Session, on: date) -> dict[str, Account]:
    """username -> the account the registry grants on `on` (four queries, whatever the size)."""
    open_projects = {
        p.slug for p in session.scalars(select(Project)) if not project_problems(p, on)
    }
    groups: dict[int, set[str]] = {}
    for person_id, slug in session.execute(select(Membership.person_id, Membership.project_slug)):
        if slug in open_projects:
            groups.setdefault(person_id, set()).add(project_group(slug))
    for person_id, role in session.execute(select(GlobalRole.person_id, GlobalRole.role)):
        groups.setdefault(person_id, set()).add(role_group(role))
    accounts = {}
    for person in session.scalars(select(Person)):
        first, last = split_name(person.full_name)
        reasons = tuple(person_problems(person, on))
        accounts[person.username.lower()] = Account(
            username=person.username.lower(),
            first_name=first,
            last_name=last,
            email=person.email.lower(),
            enabled=not reasons,
            groups=frozenset(groups.get(person.id, ())),
            reasons=reasons,
        )
    return accounts


@dataclass
class Realm:
    """The sde realm's users and sde groups as Keycloak has them."""

    users: dict[str, Account]  # username -> account
    ids: dict[str, str]  # username -> Keycloak user id
    groups: dict[str, str]  # group path -> Keycloak group id (the two parents too)


def _children(admin: Any, group_id: str) -> list[dict[str, Any]]:
    return list(admin.get_group_children(group_id, query={"briefRepresentation": True}))


def current(admin: Any) -> Realm:
    """Read the realm: every user (paged), the sde groups and their members (concurrently)."""
    from keycloak.exceptions import KeycloakGetError, raise_error_from_response

    admin.PAGE_SIZE = PAGE
    rows = admin.get_users({"briefRepresentation": True})
    groups: dict[str, str] = {}
    # Top-level groups by hand: python-keycloak's get_groups also fetches every
    # group's children, and the realm may hold groups that are not sde's.
    tops: list[dict[str, Any]] = []
    while True:
        page: Any = raise_error_from_response(
            admin.connection.raw_get(
                f"admin/realms/{admin.connection.realm_name}/groups",
                briefRepresentation="true",
                first=len(tops),
                max=PAGE,
            ),
            KeycloakGetError,
        )
        tops += page
        if len(page) < PAGE:
            break
    for top in tops:
        if top["name"] in (PROJECTS, ROLES):
            groups[f"/{top['name']}"] = top["id"]
            for child in _children(admin, top["id"]):
                groups[f"/{top['name']}/{child['name']}"] = child["id"]
    leaves = [path for path in groups if path.count("/") == 2]
    with ThreadPoolExecutor(WORKERS) as pool:
        members = pool.map(
            lambda path: admin.get_group_members(groups[path], {"briefRepresentation": True}),
            leaves,
        )
        belongs: dict[str, set[str]] = {}
        for path, users in zip(leaves, members, strict=True):
            for user in users:
                belongs.setdefault(user["id"], set()).add(path)
    users, ids = {}, {}
    for row in rows:
        name = row["username"]
        ids[name] = row["id"]
        users[name] = Account(
            username=name,
            first_name=row.get("firstName") or "",
            last_name=row.get("lastName") or "",
            email=row.get("email") or "",
            enabled=bool(row.get("enabled")),
            groups=frozenset(belongs.get(row["id"], ())),
        )
    return Realm(users, ids, groups)


# ---------------------------------------------------------------- the difference


def diff(want: dict[str, Account], have: Realm) -> list[Change]:
    """The changes that bring `have` to `want`, in the order they are applied.

    Disables come first, so that a lapse takes effect before anything else is
    written; then groups, new users, profile updates, enables and memberships.
    """
    disable, create_groups, create, update, enable, leave, join = ([] for _ in range(7))
    # The role groups exist even while empty, so an operator finds them in Keycloak.
    needed = {g for a in want.values() for g in a.groups} | set(ROLE_GROUPS)
    parents = {"/" + g.split("/")[1] for g in needed}
    for path in sorted(parents) + sorted(needed):
        if path not in have.groups:
            create_groups.append(Change("group.create", path))
    for name, account in sorted(want.items()):
        existing = have.users.get(name)
        if existing is None:
            create.append(
                Change(
                    "user.create",
                    name,
                    {
                        "enabled": account.enabled,
                        "reasons": list(account.reasons),
                        "groups": sorted(account.groups),
                    },
                )
            )
            continue
        fields = {
            key: (getattr(existing, attr), getattr(account, attr))
            for key, attr in (
                ("firstName", "first_name"),
                ("lastName", "last_name"),
                ("email", "email"),
            )
            if getattr(existing, attr) != getattr(account, attr)
        }
        if fields:
            update.append(Change("user.update", name, {"fields": fields}))
        if existing.enabled and not account.enabled:
            disable.append(Change("user.disable", name, {"reasons": list(account.reasons)}))
        elif account.enabled and not existing.enabled:
            enable.append(Change("user.enable", name))
        leave += [
            Change("group.leave", name, {"group": g})
            for g in sorted(existing.groups - account.groups)
        ]
        join += [
            Change("group.join", name, {"group": g})
            for g in sorted(account.groups - existing.groups)
        ]
    for name, existing in sorted(have.users.items()):
        if name in want:
            continue
        if existing.enabled:
            disable.append(Change("user.disable", name, {"reasons": [NOT_IN_REGISTRY]}))
        leave += [Change("group.leave", name, {"group": g}) for g in sorted(existing.groups)]
    return disable + create_groups + create + update + enable + leave + join


# ---------------------------------------------------------------- applying it


def _parent(path: str) -> str:
    return path.rpartition("/")[0]


def _create_group(admin: Any, path: str, parent_id: str | None) -> str:
    """Create the group at `path` (its parent's id given); returns its id."""
    return str(admin.create_group({"name": path.rpartition("/")[2]}, parent=parent_id))


def _create_users(admin: Any, realm: str, accounts: Sequence[Account]) -> list[str]:
    """Import new users in one request; returns the usernames Keycloak added."""
    users = [
        {
            **a.profile(),
            "enabled": a.enabled,
            "groups": sorted(a.groups),
            # The realm's default action, set explicitly: every new user enrols an
            # authenticator at first sign-in, however the account was made.
            "requiredActions": ["CONFIGURE_TOTP"],
        }
        for a in accounts
    ]
    result = admin.partial_import_realm(realm, {"ifResourceExists": "SKIP", "users": users})
    return [r["resourceName"] for r in result.get("results", []) if r.get("action") == "ADDED"]


def _user_write(admin: Any, have: Realm, want: dict[str, Account], change: Change) -> None:
    user_id = have.ids[change.name]
    if change.kind == "user.update":
        admin.update_user(user_id, want[change.name].profile())
    elif change.kind in ("user.enable", "user.disable"):
        admin.update_user(user_id, {"enabled": change.kind == "user.enable"})
    elif change.kind == "group.join":
        admin.group_user_add(user_id, have.groups[change.details["group"]])
    elif change.kind == "group.leave":
        admin.group_user_remove(user_id, have.groups[change.details["group"]])


def _concurrently(
    work: Callable[[Change], Any], changes: Sequence[Change]
) -> tuple[list[tuple[Change, Any]], BaseException | None]:
    """Run `work` on each change (WORKERS at a time); what succeeded, and the first error."""
    with ThreadPoolExecutor(WORKERS) as pool:
        futures = [(c, pool.submit(work, c)) for c in changes]
    made, failure = [], None
    for change, future in futures:
        error = future.exception()
        if error is None:
            made.append((change, future.result()))
        elif failure is None:
            failure = error
    return made, failure


def apply(
    admin: Any, realm: str, want: dict[str, Account], have: Realm, changes: Sequence[Change]
) -> tuple[list[Change], BaseException | None]:
    """Make the changes in Keycloak; returns those made and the error that stopped it, if any.

    In `diff`'s order, by rounds: disables (a lapse is in force before anything
    else is written), then the groups (parents first), then new users, then the rest.
    """
    done: list[Change] = []

    def run(work: Callable[[Change], Any], batch: Sequence[Change]) -> BaseException | None:
        made, failure = _concurrently(work, batch)
        done.extend(change for change, _ in made)
        return failure

    def make_group(change: Change) -> None:
        parent = have.groups.get(_parent(change.name))
        have.groups[change.name] = _create_group(admin, change.name, parent)

    def write(change: Change) -> None:
        _user_write(admin, have, want, change)

    try:
        rounds: list[tuple[Callable[[Change], Any], list[Change]]] = [
            (write, [c for c in changes if c.kind == "user.disable"]),
            (
                make_group,
                [c for c in changes if c.kind == "group.create" and _parent(c.name) == ""],
            ),
            (make_group, [c for c in changes if c.kind == "group.create" and _parent(c.name)]),
        ]
        for work, batch in rounds:
            if (failure := run(work, batch)) is not None:
                return done, failure
        new = [c for c in changes if c.kind == "user.create"]
        for start in range(0, len(new), IMPORT_BATCH):
            batch = new[start : start + IMPORT_BATCH]
            added = set(_create_users(admin, realm, [want[c.name] for c in batch]))
            done.extend(c for c in batch if c.name in added)
        later = ("user.update", "user.enable", "group.leave", "group.join")
        failure = run(write, [c for c in changes if c.kind in later])
    except Exception as exc:
        return done, exc
    return done, failure


@write_operation("keycloak.sync")
def record_changes(session: Session, actor: str, changes: Sequence[Change]) -> None:
    """One audit event per change made in Keycloak (call only with changes)."""
    for change in changes:
        target = (
            f"keycloak-group:{change.name}"
            if change.kind == "group.create"
            else f"person:{change.name}"
        )
        project = None
        group = change.details.get("group", "")
        if group.startswith(f"/{PROJECTS}/"):
            project = group.rsplit("/", 1)[1]
        record(
            session,
            actor=actor,
            target=target,
            project=project,
            details={"change": change.kind, **change.details},
        )


# ---------------------------------------------------------------- one sync


def _explain(exc: BaseException, settings: Settings) -> KeycloakError:
    """One line for what went wrong talking to Keycloak."""
    from keycloak.exceptions import KeycloakAuthenticationError, KeycloakConnectionError

    kc = settings.keycloak
    if isinstance(exc, KeycloakError):
        return exc
    if isinstance(exc, KeycloakConnectionError) or "Connection" in type(exc).__name__:
        return KeycloakError(f"cannot reach Keycloak at {kc.url}")
    # Keycloak 26 answers a wrong password with 400 invalid_grant, older ones with 401.
    refused = getattr(exc, "response_code", None) in (400, 401) and "invalid_grant" in str(exc)
    if isinstance(exc, KeycloakAuthenticationError) or refused:
        return KeycloakError(
            f"Keycloak at {kc.url} refused the administrator {kc.admin_username!r} of realm "
            f"{kc.admin_realm!r} (is keycloak.admin_password the right file?)"
        )
    message = " ".join(str(exc).split())[:300]
    return KeycloakError(f"Keycloak at {kc.url} refused the sync: {message}")


def realm_admin(settings: Settings) -> Any:
    """A KeycloakAdmin signed in to the admin realm and working in the sde realm."""
    from sde.keycloak.realm import admin_client

    admin = admin_client(settings)
    admin.change_current_realm(settings.keycloak.realm)
    return admin


def sync(
    settings: Settings,
    read: Callable[[], Any],
    write: Callable[[], Any],
    actor: str,
    dry_run: bool = False,
    on: date | None = None,
    admin: Any = None,
) -> Report:
    """Bring Keycloak in step with the registry; KeycloakError (one line) when it cannot.

    `read` and `write` open a registry transaction (a context manager yielding a
    Session; `write` an audited one): the registry is read, then Keycloak is
    changed, then the changes made are recorded, so no database lock is held
    while Keycloak works.
    """
    started = time.monotonic()
    day = on or datetime.now(UTC).date()
    with read() as session:
        want = wanted(session, day)
    try:
        admin = admin or realm_admin(settings)
        have = current(admin)
    except Exception as exc:
        raise _explain(exc, settings) from None
    changes = diff(want, have)
    report = Report(changes, dry_run, len(want), len(have.users))
    if dry_run or not changes:
        report.seconds = time.monotonic() - started
        return report
    done, failure = apply(admin, settings.keycloak.realm, want, have, changes)
    if done:
        with write() as session:
            record_changes(session, actor, done)
    report.changes = done
    report.seconds = time.monotonic() - started
    if failure is not None:
        error = _explain(failure, settings)
        raise KeycloakError(f"{error} (after {len(done)} of {len(changes)} changes, recorded)")
    return report
