"""Meta-test: every audited write path records its audit event in the same transaction.

Write operations (`@sde.audit.write_operation`) register themselves in
`WRITE_OPERATIONS`; this test drives each one and fails if one is not covered
here, so none can be added without proving its audit event. It also fails when
code records an action of its own choosing instead of its operation's, so no
recorded action escapes the registry.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from sde.audit import WRITE_OPERATIONS, UnauditedWrite
from sde.audit.schema import audit_events
from sde.core.config import Settings
from sde.core.db import transaction
from sde.registry import service
from sde.registry.models import Person
from tests.support import airlock as airlock_support
from tests.support.airlock import airlock_settings
from tests.support.registry import ACTOR, audit_count, make_active_project, make_person, today

H = "ab" * 32
ROOT = Path(__file__).resolve().parents[2]


def _sde_sources() -> list[Path]:
    """Every `<component>/sde/**.py`: the editable install's namespace finder cannot be
    walked with pkgutil."""
    return sorted(ROOT.glob("*/sde/**/*.py"))


def _import_every_sde_module() -> list[str]:
    """Write operations register on import; import them all so none is missed."""
    import importlib

    names = []
    for path in _sde_sources():
        # <component>/sde/pkg/mod.py -> sde.pkg.mod
        module = ".".join(path.relative_to(ROOT).parts[1:]).removesuffix(".py")
        module = module.removesuffix(".__init__")
        if ".migrations" in module or module.endswith(("jupyterhub_config", ".__main__")):
            continue  # run by tools, not imported
        if "jupyter-config" in module:
            continue
        importlib.import_module(module)
        names.append(module)
    return names


IMPORTED = _import_every_sde_module()

# The hub's write paths (imported by name: walk_packages does not see the
# editable install's namespace portions).
from cryptography.fernet import Fernet  # noqa: E402

from sde.hub import credentials as hub_creds  # noqa: E402
from sde.hub import events as hub_events  # noqa: E402
from sde.provision import build as provision_build  # noqa: E402
from sde.workspaces import events as workspace_events  # noqa: E402

HUB_PW = "a long enough password"

from sde.ingest import optout as data_optout  # noqa: E402
from sde.keycloak import sync as keycloak_sync  # noqa: E402


def _load_optout_list(s: Session) -> None:
    import tempfile
    from pathlib import Path

    from sde.core.config import load_settings

    home = Path(tempfile.mkdtemp(prefix="sde-audit-optout-"))
    listed = home / "optout.txt"
    listed.write_text("9434765919\n")
    data_optout.load_list(s, ACTOR, load_settings(env={"SDE_HOME": str(home)}), listed)


def _with_password(s: Session) -> None:
    hub_creds.set_password(s, ACTOR, "alice", HUB_PW)


def _setup(engine: Engine) -> None:
    make_person(engine, "alice")
    make_person(engine, "bob")
    make_active_project(engine, "p1", "alice")
    with transaction(engine) as s:
        service.create_project(
            s,
            ACTOR,
            slug="p2",
            title="Two",
            start_date=today(),
            end_date=today() + timedelta(days=9),
        )
        service.add_dataset(s, ACTOR, name="ds", description="d", classification="synthetic")
        service.add_dataset_version(
            s, ACTOR, name="ds", manifest_hash=H, path="/x", tables={"person": ["person_id", "sex"]}
        )
        service.grant_access(s, ACTOR, slug="p1", dataset="ds", version=1, columns=["person.sex"])
        service.grant_role(s, ACTOR, "bob", "auditor")


# action -> call on a prepared registry
CALLS: dict[str, Callable[[Session], Any]] = {
    "person.create": lambda s: service.add_person(
        s, ACTOR, username="carol", full_name="Carol", email="carol@example.org"
    ),
    "person.update": lambda s: service.update_person(s, ACTOR, "alice", full_name="Alice B"),
    "person.status": lambda s: service.set_person_status(s, ACTOR, "bob", "suspended", "why"),
    "role.grant": lambda s: service.grant_role(s, ACTOR, "alice", "output_checker"),
    "role.revoke": lambda s: service.revoke_role(s, ACTOR, "bob", "auditor"),
    "project.create": lambda s: service.create_project(
        s, ACTOR, slug="p3", title="Three", start_date=today(), end_date=today()
    ),
    "project.update": lambda s: service.update_project(s, ACTOR, "p1", title="New title"),
    "project.approve": lambda s: service.approve_project(
        s, ACTOR, "p2", approval_ref="R", signed_off_by="C", signed_off_on=today()
    ),
    "project.activate": lambda s: (
        service.approve_project(
            s, ACTOR, "p2", approval_ref="R", signed_off_by="C", signed_off_on=today()
        ),
        service.activate_project(s, ACTOR, "p2"),
    ),
    "project.suspend": lambda s: service.suspend_project(s, ACTOR, "p1", "pause"),
    "project.close": lambda s: service.close_project(s, ACTOR, "p2"),
    "membership.add": lambda s: service.add_member(s, ACTOR, "p1", "bob"),
    "membership.remove": lambda s: service.remove_member(s, ACTOR, "p1", "alice"),
    "dataset.create": lambda s: service.add_dataset(
        s, ACTOR, name="ds2", description="", classification="synthetic"
    ),
    "dataset.version.publish": lambda s: service.add_dataset_version(
        s, ACTOR, name="ds", manifest_hash=H, path="/y", tables={"person": ["sex"]}
    ),
    "grant.create": lambda s: service.grant_access(
        s, ACTOR, slug="p2", dataset="ds", version=1, columns=["person.*"]
    ),
    "grant.revoke": lambda s: service.revoke_grant(s, ACTOR, slug="p1", dataset="ds", version=1),
    "hub.password.set": _with_password,
    "hub.credentials.reset": lambda s: (
        _with_password(s),
        hub_creds.reset_credentials(s, ACTOR, "alice", HUB_PW + "!", "lost phone"),
    ),
    "hub.totp.enrol": lambda s: (
        _with_password(s),
        hub_creds.enrol_totp(
            s, ACTOR, "alice", hub_creds.generate_totp_secret(), Fernet(Fernet.generate_key())
        ),
    ),
    "hub.login.success": lambda s: (_with_password(s), hub_creds.record_login_success(s, "alice")),
    "hub.login.failure": lambda s: (
        _with_password(s),
        hub_creds.record_login_failure(
            s, "alice", "wrong password", "127.0.0.1", max_failures=1, lockout_seconds=60
        ),
    ),
    "hub.login.lockout": lambda s: (
        _with_password(s),
        hub_creds.record_login_failure(
            s, "alice", "wrong password", "127.0.0.1", max_failures=1, lockout_seconds=60
        ),
    ),
    "hub.login.refused": lambda s: hub_creds.record_login_refused(
        s, "alice", "10.213.0.5", "from a workspace"
    ),
    "hub.session.ended": lambda s: hub_creds.record_session_ended(
        s, "alice", "the account is not active"
    ),
    "workspace.spawn": lambda s: hub_events.record_spawn(s, "alice", "p1", {"image": "x"}),
    "workspace.spawn.refused": lambda s: hub_events.record_refusal(
        s, "bob", "p1", ["not a member of project p1"]
    ),
    "workspace.access.lapsed": lambda s: hub_events.record_lapse(
        s, "alice", "p1", ["project ended on 2026-01-01"]
    ),
    "workspace.stop": lambda s: hub_events.record_stop(s, ACTOR, "alice", "p1"),
    "workspace.work.carried": lambda s: workspace_events.record_work_carried(
        s, "sde:hub", "alice", "p1", "sde-work-alice-p1", "sde-work-0f3a"
    ),
    "workspaces.firewall.repaired": lambda s: workspace_events.record_firewall_repair(
        s, "sde-ws0", ["INPUT: `-j DOCKER-USER` sits above sde's `-i sde-ws0 -j SDE-WS-sde-ws0`"]
    ),
    "project.provision": lambda s: provision_build.record_provision(
        s,
        ACTOR,
        "p1",
        H,
        "b1",
        {
            "datasets": [
                {
                    "dataset": "ds",
                    "version": 1,
                    "manifest_sha256": H,
                    "tables": {"person": {"rows": 3}},
                }
            ],
            "optout": {"removed": 0},
        },
    ),
    "optout.list.load": _load_optout_list,
    "optout.exempt": lambda s: data_optout.exempt(s, ACTOR, "p1", "s251 approval"),
    "optout.exempt.revoke": lambda s: (
        data_optout.exempt(s, ACTOR, "p1", "s251 approval"),
        data_optout.revoke_exemption(s, ACTOR, "p1", "approval lapsed"),
    ),
    "keycloak.sync": lambda s: keycloak_sync.record_changes(
        s,
        ACTOR,
        [
            keycloak_sync.Change("group.create", "/projects/p1"),
            keycloak_sync.Change("group.join", "alice", {"group": "/projects/p1"}),
            keycloak_sync.Change("user.disable", "bob", {"reasons": ["user is suspended"]}),
        ],
    ),
}


def _airlock_settings() -> Settings:
    """A fresh home per call: each airlock call has its own store and keys."""
    import tempfile

    return airlock_settings(Path(tempfile.mkdtemp(prefix="sde-audit-airlock-")))


# The airlock's write operations, each on a request the service took to the state it needs.
CALLS.update(airlock_support.audit_calls(_airlock_settings))


def test_audit_coverage_imports_every_component():
    for module in (
        "sde.registry.service",
        "sde.hub.credentials",
        "sde.ingest.optout",
        "sde.provision.build",
        "sde.workspaces.events",
        "sde.workspaces.network",
        "sde.data",
        "sde.keycloak.sync",
        "sde.airlock.service",
    ):
        assert module in IMPORTED


def test_audit_coverage_every_write_operation_is_exercised():
    assert set(CALLS) == set(WRITE_OPERATIONS), "add a call for each new write operation to CALLS"


def _explicit_actions(path: Path) -> list[str]:
    """Places in `path` that record an event under an action they name themselves."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
        named = name == "record" and any(k.arg == "action" for k in node.keywords)
        if named or name in ("append_many", "EventIn"):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}(...)")
    return found


def test_audit_coverage_no_code_records_an_undeclared_action():
    # Inside a write operation `record` takes the operation's own action (and
    # refuses another); outside one only an explicit action would do, so code
    # that names one could record what no operation declares.
    audit = ROOT / "accreditation" / "sde" / "audit"
    found = [f for p in _sde_sources() if audit not in p.parents for f in _explicit_actions(p)]
    assert not found, (
        "record events from a @write_operation without naming the action: " + "; ".join(found)
    )


@pytest.mark.parametrize("action", sorted(WRITE_OPERATIONS))
def test_audit_coverage_write_records_its_event_in_the_same_transaction(engine, action):
    _setup(engine)
    before = audit_count(engine)
    with transaction(engine) as s:
        CALLS[action](s)
        # Still inside the transaction: the event is there before commit.
        actions = set(s.scalars(select(audit_events.c.action).where(audit_events.c.seq > before)))
        assert action in actions
        assert actions <= set(WRITE_OPERATIONS)
    assert audit_count(engine) > before


@pytest.mark.parametrize("action", sorted(WRITE_OPERATIONS))
def test_audit_coverage_rollback_discards_write_and_event(engine, action):
    _setup(engine)
    before = audit_count(engine)
    with engine.connect() as conn:
        snapshot = conn.execute(text("SELECT count(*) FROM people")).scalar()
    with pytest.raises(RuntimeError), transaction(engine) as s:
        CALLS[action](s)
        raise RuntimeError("abort")
    assert audit_count(engine) == before
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM people")).scalar() == snapshot


def test_audit_coverage_unaudited_write_is_refused(engine):
    make_person(engine, "alice")
    with pytest.raises(UnauditedWrite, match="people"), transaction(engine) as s:
        person = s.scalar(select(Person).where(Person.username == "alice"))
        assert person is not None
        person.full_name = "Sneaky Change"
    with engine.connect() as conn:
        name = conn.execute(text("SELECT full_name FROM people WHERE username='alice'")).scalar()
    assert name == "Alice"


def test_audit_coverage_unaudited_core_statement_is_refused(engine):
    make_person(engine, "alice")
    from sqlalchemy import update

    with pytest.raises(UnauditedWrite), transaction(engine) as s:
        s.execute(update(Person).where(Person.username == "alice").values(status="left"))
