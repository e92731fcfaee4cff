"""Registry rules and the access decision."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text

from sde.core.db import transaction
from sde.core.errors import Conflict, NotFound, SdeError
from sde.registry import service
from sde.registry.access import access_decision
from sde.registry.policies import PROJECT_TRANSITIONS
from tests.support.registry import ACTOR, audit_count, make_active_project, make_person, today


def decide(engine, username, slug, at=None):
    with transaction(engine) as s:
        return access_decision(s, username, slug, at)


def test_access_decision_member_of_active_project_allowed(engine):
    make_person(engine, "alice")
    make_active_project(engine, "p1", "alice")
    d = decide(engine, "alice", "p1")
    assert d.allowed and d.role == "researcher" and d.reasons == []


def test_access_decision_non_member_denied(engine):
    make_person(engine, "alice")
    make_person(engine, "bob")
    make_active_project(engine, "p1", "alice")
    d = decide(engine, "bob", "p1")
    assert not d.allowed and d.reasons == ["not a member of project p1"]


def test_access_decision_lapsed_accreditation_denied_at_that_moment(engine):
    make_person(engine, "alice", accreditation_expiry=today() + timedelta(days=3))
    make_active_project(engine, "p1", "alice")
    assert decide(engine, "alice", "p1", today() + timedelta(days=3)).allowed
    d = decide(engine, "alice", "p1", today() + timedelta(days=4))
    assert not d.allowed
    assert d.reasons == [f"accreditation expired on {today() + timedelta(days=3)}"]


def test_access_decision_lapsed_training_denied(engine):
    make_person(engine, "alice", training_expiry=today() + timedelta(days=1))
    make_active_project(engine, "p1", "alice")
    d = decide(engine, "alice", "p1", today() + timedelta(days=2))
    assert not d.allowed and "training expired" in d.reasons[0]


def test_access_decision_project_outside_dates_denied(engine):
    make_person(engine, "alice")
    make_active_project(engine, "p1", "alice")
    d = decide(engine, "alice", "p1", today() + timedelta(days=51))
    assert not d.allowed and d.reasons == [f"project ended on {today() + timedelta(days=50)}"]
    d = decide(engine, "alice", "p1", today() - timedelta(days=6))
    assert not d.allowed and "project starts on" in d.reasons[0]


def test_access_decision_suspended_person_and_project_denied_with_all_reasons(engine):
    make_person(engine, "alice")
    make_active_project(engine, "p1", "alice")
    with transaction(engine) as s:
        service.set_person_status(s, ACTOR, "alice", "suspended", "investigation")
        service.suspend_project(s, ACTOR, "p1", "paused by controller")
    d = decide(engine, "alice", "p1")
    assert not d.allowed
    assert d.reasons == ["user is suspended", "project is approved, not active"]


def test_access_decision_unknown_user_and_project_denied(engine):
    d = decide(engine, "nobody", "nothing")
    assert not d.allowed
    assert d.reasons == ["unknown user 'nobody'", "unknown project 'nothing'"]


def test_access_decision_proposed_project_denied(engine):
    make_person(engine, "alice")
    with transaction(engine) as s:
        service.create_project(s, ACTOR, slug="p1", title="T", start_date=today(), end_date=today())
        service.add_member(s, ACTOR, "p1", "alice")
    d = decide(engine, "alice", "p1")
    assert "project is proposed, not active" in d.reasons
    assert "project has no recorded approval and data-controller sign-off" in d.reasons


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"username": "Bad Name"}, "invalid username"),
        ({"email": "not-an-email"}, "invalid email"),
        ({"accreditation_expiry": today() - timedelta(days=1)}, "accreditation expired"),
        ({"training_expiry": today() - timedelta(days=1)}, "training expired"),
    ],
)
def test_registry_add_person_bad_input_writes_nothing(engine, kwargs, message):
    values = {"username": "carol", "full_name": "C", "email": "c@example.org"} | kwargs
    before = audit_count(engine)
    with pytest.raises(SdeError, match=message), transaction(engine) as s:
        service.add_person(s, ACTOR, **values)
    assert audit_count(engine) == before
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM people")).scalar() == 0


def test_registry_duplicate_username_refused(engine):
    make_person(engine, "alice")
    with pytest.raises(Conflict, match="already exists"), transaction(engine) as s:
        service.add_person(s, ACTOR, username="alice", full_name="A", email="other@example.org")


def test_registry_project_end_before_start_refused(engine):
    with pytest.raises(SdeError, match="before start date"), transaction(engine) as s:
        service.create_project(
            s, ACTOR, slug="p1", title="T", start_date=today(), end_date=today() - timedelta(days=1)
        )


def test_registry_project_slug_must_fit_a_server_name(engine):
    with pytest.raises(SdeError, match="invalid project id"), transaction(engine) as s:
        service.create_project(
            s, ACTOR, slug="x" * 31, title="T", start_date=today(), end_date=today()
        )


def test_registry_lifecycle_follows_transition_table(engine):
    make_person(engine, "alice")
    with transaction(engine) as s:
        service.create_project(s, ACTOR, slug="p1", title="T", start_date=today(), end_date=today())
    with pytest.raises(Conflict, match="cannot activate"), transaction(engine) as s:
        service.activate_project(s, ACTOR, "p1")
    with transaction(engine) as s:
        service.approve_project(
            s, ACTOR, "p1", approval_ref="R", signed_off_by="C", signed_off_on=today()
        )
        service.activate_project(s, ACTOR, "p1")
        service.close_project(s, ACTOR, "p1")
    for action in PROJECT_TRANSITIONS:
        with pytest.raises(Conflict), transaction(engine) as s:
            getattr(service, f"{action}_project")(
                s,
                ACTOR,
                "p1",
                **(
                    {"approval_ref": "R", "signed_off_by": "C", "signed_off_on": today()}
                    if action == "approve"
                    else {"reason": "r"}
                ),
            )


def test_registry_member_with_lapsed_training_cannot_be_added(engine):
    make_person(engine, "alice")
    make_active_project(engine, "p1")
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE people SET training_expiry = :d WHERE username='alice'"),
            {"d": today() - timedelta(days=1)},
        )
    with pytest.raises(SdeError, match="training expired"), transaction(engine) as s:
        service.add_member(s, ACTOR, "p1", "alice")


def test_registry_grant_unknown_column_refused(engine):
    make_active_project(engine, "p1")
    with transaction(engine) as s:
        service.add_dataset(s, ACTOR, name="ds", description="", classification="synthetic")
        service.add_dataset_version(
            s,
            ACTOR,
            name="ds",
            manifest_hash="0" * 64,
            path="/p",
            tables={"person": ["person_id", "sex"]},
        )
    with pytest.raises(NotFound, match="no column 'nhs_number'"), transaction(engine) as s:
        service.grant_access(
            s, ACTOR, slug="p1", dataset="ds", version=1, columns=["person.nhs_number"]
        )
    with pytest.raises(NotFound, match="no version 7"), transaction(engine) as s:
        service.grant_access(s, ACTOR, slug="p1", dataset="ds", version=7, columns=["person.sex"])
