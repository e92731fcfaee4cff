"""`sde keycloak sync` against the real Keycloak: Keycloak ends up as the registry says.

Each test imports a realm of its own (the session's `sde` realm stays as the
realm tests left it) and reads the result back from Keycloak's admin API, never
from what sync meant to send. The registry is built through its service
functions, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, text

from sde.audit.schema import audit_events
from sde.core.config import Settings
from sde.core.db import transaction
from sde.keycloak import sync as kc_sync
from sde.registry import service
from tests.support.keycloak import KeycloakInstance
from tests.support.registry import ACTOR, audit_count, make_active_project, make_person, today

pytestmark = [pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def realm(keycloak: KeycloakInstance) -> tuple[Settings, Any]:
    """Settings naming a fresh realm of this test's own, and an admin working in it."""
    settings = keycloak.settings_for(SDE_KEYCLOAK_REALM=f"sync-{uuid.uuid4().hex[:8]}")
    keycloak.import_realm(settings)
    return settings, keycloak.realm_admin(settings.keycloak.realm)


def _sync(engine: Engine, settings: Settings, **kwargs: Any) -> kc_sync.Report:
    return kc_sync.sync(
        settings,
        read=lambda: transaction(engine),
        write=lambda: transaction(engine),
        actor=ACTOR,
        **kwargs,
    )


def _state(admin: Any) -> dict[str, dict[str, Any]]:
    """username -> what Keycloak holds for that user (one request per user: fine for tests)."""
    out = {}
    for user in admin.get_users({}):
        out[user["username"]] = {
            "enabled": user["enabled"],
            "email": user.get("email"),
            "name": (user.get("firstName"), user.get("lastName")),
            "groups": {g["path"] for g in admin.get_user_groups(user["id"])},
        }
    return out


def _in_step(engine: Engine, settings: Settings) -> None:
    """A second sync finds nothing: no change and no audit event."""
    before = audit_count(engine)
    again = _sync(engine, settings)
    assert again.changes == []
    assert audit_count(engine) == before


def _sync_events(engine: Engine) -> list[dict[str, Any]]:
    import json

    with engine.connect() as conn:
        bodies = conn.execute(
            select(audit_events.c.body).where(audit_events.c.body.contains('"keycloak.sync"'))
        ).scalars()
        return [json.loads(b) for b in bodies]


def test_keycloak_sync_follows_the_registry_through_create_change_lapse_remove(engine, realm):
    settings, admin = realm
    make_person(engine, "alice", full_name="Alice Mary Smith")
    make_person(engine, "bob")
    make_active_project(engine, "p1", "alice")
    with transaction(engine) as s:
        service.grant_role(s, ACTOR, "bob", "auditor")

    # Create: users with their names, emails and groups; one audit event per change.
    before = audit_count(engine)
    report = _sync(engine, settings)
    state = _state(admin)
    assert state["alice"] == {
        "enabled": True,
        "email": "alice@example.org",
        "name": ("Alice Mary", "Smith"),
        "groups": {"/projects/p1"},
    }
    assert state["bob"]["groups"] == {"/roles/auditor"}
    assert state["bob"]["name"] == ("Bob", "Bob")
    assert {g["path"] for g in admin.get_groups({})} == {"/projects", "/roles"}
    assert audit_count(engine) - before == len(report.changes) > 0
    kinds = [e["details"]["change"] for e in _sync_events(engine)]
    assert kinds.count("user.create") == 2
    _in_step(engine, settings)

    # Change: a new name and email, a new membership.
    with transaction(engine) as s:
        service.update_person(s, ACTOR, "alice", full_name="Alice Jones", email="aj@example.org")
        service.add_member(s, ACTOR, "p1", "bob")
    report = _sync(engine, settings)
    assert sorted(c.kind for c in report.changes) == ["group.join", "user.update"]
    state = _state(admin)
    assert state["alice"]["name"] == ("Alice", "Jones")
    assert state["alice"]["email"] == "aj@example.org"
    assert state["bob"]["groups"] == {"/projects/p1", "/roles/auditor"}
    _in_step(engine, settings)

    # Lapse: training expired, and a suspension; both disabled with the registry's reasons.
    with transaction(engine) as s:
        service.update_person(s, ACTOR, "alice", training_expiry=today() - timedelta(days=1))
        service.set_person_status(s, ACTOR, "bob", "suspended", "under review")
    report = _sync(engine, settings)
    reasons = {c.name: c.details["reasons"] for c in report.changes if c.kind == "user.disable"}
    assert reasons["alice"] == [f"training expired on {today() - timedelta(days=1)}"]
    assert reasons["bob"] == ["user is suspended"]
    state = _state(admin)
    assert not state["alice"]["enabled"] and not state["bob"]["enabled"]
    _in_step(engine, settings)

    # ... and back: current again, enabled again.
    with transaction(engine) as s:
        service.update_person(s, ACTOR, "alice", training_expiry=today() + timedelta(days=30))
    assert [c.kind for c in _sync(engine, settings).changes] == ["user.enable"]
    assert _state(admin)["alice"]["enabled"]

    # Remove: a membership, a role, and a whole project (closed: nobody works there).
    with transaction(engine) as s:
        service.remove_member(s, ACTOR, "p1", "bob")
        service.revoke_role(s, ACTOR, "bob", "auditor")
    _sync(engine, settings)
    assert _state(admin)["bob"]["groups"] == set()
    with transaction(engine) as s:
        service.close_project(s, ACTOR, "p1")
    report = _sync(engine, settings)
    assert [(c.kind, c.details.get("group")) for c in report.changes] == [
        ("group.leave", "/projects/p1")
    ]
    assert _state(admin)["alice"]["groups"] == set()
    _in_step(engine, settings)
    # Every event names the person (or group) and, for a project group, the project.
    events = _sync_events(engine)
    assert {e["actor"] for e in events} == {ACTOR}
    leave = {
        e["details"]["group"]: e["project"]
        for e in events
        if e["details"]["change"] == "group.leave"
    }
    assert leave == {"/projects/p1": "p1", "/roles/auditor": ""}


def test_keycloak_sync_dry_run_changes_nothing(engine, realm):
    settings, admin = realm
    make_person(engine, "carol")
    make_active_project(engine, "p2", "carol")
    before = audit_count(engine)
    report = _sync(engine, settings, dry_run=True)
    assert {c.kind for c in report.changes} == {"group.create", "user.create"}
    assert "would change" in report.lines()[-1]
    assert _state(admin) == {}
    assert admin.get_groups({}) == []
    assert audit_count(engine) == before


def test_keycloak_sync_disables_a_user_only_in_keycloak_and_keeps_it(keycloak, engine, realm):
    settings, admin = realm
    stranger = keycloak.create_user(realm_name=settings.keycloak.realm).username
    make_person(engine, "dave")
    report = _sync(engine, settings)
    assert report.unknown == [stranger]
    state = _state(admin)
    assert state[stranger]["enabled"] is False  # disabled, never deleted
    assert state["dave"]["enabled"] is True
    _in_step(engine, settings)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sde.cli.main", "keycloak", "sync", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _cli_env(settings: Settings, db_url: str, **extra: str) -> dict[str, str]:
    return {
        "SDE_HOME": str(settings.home),
        "SDE_DATABASE_URL": db_url,
        "SDE_ACTOR": "test:cli",
        "SDE_KEYCLOAK_URL": settings.keycloak.url,
        "SDE_KEYCLOAK_REALM": settings.keycloak.realm,
        "SDE_KEYCLOAK_ADMIN_USERNAME": settings.keycloak.admin_username,
        **extra,
    }


def test_keycloak_sync_cli_prints_the_diff_and_audits_each_change(db_url, engine, realm):
    settings, admin = realm
    make_person(engine, "erin")
    env = _cli_env(settings, db_url)
    dry = _cli(env, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "+ user erin (enabled; no groups)" in dry.stdout
    assert "would change" in dry.stdout
    assert _state(admin) == {}
    done = _cli(env)
    assert done.returncode == 0, done.stderr
    assert "+ user erin" in done.stdout and "changed" in done.stdout
    assert "erin" in _state(admin)
    assert {e["actor"] for e in _sync_events(engine)} == {"test:cli"}
    again = _cli(env)
    assert "in step: nothing to change" in again.stdout


def _registry_snapshot(engine: Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        people = conn.execute(text("SELECT count(*) FROM people")).scalar_one()
    return int(people), audit_count(engine)


def test_keycloak_sync_cli_keycloak_down_is_one_line_exit_2(db_url, engine, realm):
    settings, _ = realm
    make_person(engine, "frank")
    before = _registry_snapshot(engine)
    down = f"http://127.0.0.1:{_free_port()}"
    result = _cli(_cli_env(settings, db_url, SDE_KEYCLOAK_URL=down))
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: cannot reach Keycloak at {down}"
    assert _registry_snapshot(engine) == before


def test_keycloak_sync_cli_wrong_admin_password_is_one_line_exit_2(db_url, engine, realm, tmp_path):
    settings, admin = realm
    make_person(engine, "grace")
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not the password")
    before = _registry_snapshot(engine)
    result = _cli(_cli_env(settings, db_url, SDE_KEYCLOAK_ADMIN_PASSWORD=str(wrong)))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: Keycloak at ")
    assert "refused the administrator" in lines[0]
    assert _registry_snapshot(engine) == before
    assert _state(admin) == {}


def _wait_for(check: Any, seconds: float) -> bool:
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


def test_keycloak_sync_service_follows_registry_writes_each_cycle(keycloak, db_url, engine, realm):
    import threading

    from sde.keycloak import service as kc_service

    settings, admin = realm
    settings = keycloak.settings_for(
        SDE_KEYCLOAK_REALM=settings.keycloak.realm,
        SDE_DATABASE_URL=db_url,
        SDE_WORKSPACES_ACCESS_CHECK_SECONDS="1",
    )
    make_person(engine, "heidi")
    stop = threading.Event()
    loop = threading.Thread(target=kc_service.serve, args=(settings, stop), daemon=True)
    loop.start()
    try:
        # At start: heidi is created; a later lapse reaches Keycloak within a cycle.
        assert _wait_for(lambda: _state(admin).get("heidi", {}).get("enabled"), 30)
        with transaction(engine) as s:
            service.set_person_status(s, ACTOR, "heidi", "left", "moved on")
        assert _wait_for(lambda: _state(admin)["heidi"]["enabled"] is False, 10)
    finally:
        stop.set()
        loop.join(30)
    assert not loop.is_alive()
    assert {e["actor"] for e in _sync_events(engine)} == {kc_service.ACTOR}


def test_keycloak_sync_service_keeps_running_while_keycloak_is_down(tmp_path, caplog):
    import logging
    import threading

    from sde.core.config import load_settings
    from sde.keycloak import service as kc_service

    password = tmp_path / "admin.password"
    password.write_text("x")
    settings = load_settings(
        {
            "SDE_HOME": str(tmp_path),
            "SDE_KEYCLOAK_URL": f"http://127.0.0.1:{_free_port()}",
            "SDE_KEYCLOAK_ADMIN_PASSWORD": str(password),
            "SDE_WORKSPACES_ACCESS_CHECK_SECONDS": "1",
        }
    )
    stop = threading.Event()
    caplog.set_level(logging.WARNING, logger="sde.keycloak.service")
    loop = threading.Thread(target=kc_service.serve, args=(settings, stop), daemon=True)
    loop.start()

    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "sde.keycloak.service"]

    try:
        assert _wait_for(lambda: len(warnings()) >= 2, 20)  # tried again, still running
        assert loop.is_alive()
    finally:
        stop.set()
        loop.join(30)
    assert "cannot reach Keycloak" in warnings()[0]


def test_keycloak_sync_hub_runs_the_service_only_with_a_keycloak_url(tmp_path):
    from traitlets.config import Config

    from sde.core.config import load_settings
    from sde.hub.config import configure

    def services(**env: str) -> list[str]:
        c = Config()
        home = tmp_path / uuid.uuid4().hex[:6]
        configure(c, load_settings({"SDE_HOME": str(home), "SDE_HUB_DOCKER": "false", **env}))
        return [s["name"] for s in c.JupyterHub.services]

    assert "keycloak-sync" not in services()
    assert "keycloak-sync" in services(SDE_KEYCLOAK_URL="http://127.0.0.1:1")
