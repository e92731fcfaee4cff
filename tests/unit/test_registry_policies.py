"""The registry's state tables and rules (sde.registry.policies), without a database."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from sde.core.errors import Conflict
from sde.registry import service
from sde.registry.enums import ProjectStatus
from sde.registry.models import Person, Project
from sde.registry.policies import (
    FINAL_PROJECT_STATES,
    PROJECT_START,
    PROJECT_STATES,
    PROJECT_TRANSITIONS,
    check_project_open,
    lapsed,
    lifecycle_reference,
    next_project_status,
    person_problems,
    project_problems,
)

DAY = date(2026, 3, 1)
DOC = Path(__file__).resolve().parents[2] / "docs" / "registry-states.md"


def test_project_lifecycle_every_state_reachable_from_the_start():
    reached, frontier = {PROJECT_START}, [PROJECT_START]
    while frontier:
        state = frontier.pop()
        for t in PROJECT_TRANSITIONS.values():
            if state in t.sources and t.target not in reached:
                reached.add(t.target)
                frontier.append(t.target)
    assert reached == set(ProjectStatus)


def test_project_lifecycle_every_state_owned_and_only_final_states_lead_nowhere():
    assert list(PROJECT_STATES) == list(ProjectStatus)
    for state, info in PROJECT_STATES.items():
        assert info.owner and info.meaning, state
        leads_on = any(state in t.sources for t in PROJECT_TRANSITIONS.values())
        assert leads_on == (state not in FINAL_PROJECT_STATES), state
        assert (info.owner == "nobody") == (state in FINAL_PROJECT_STATES), state


def test_project_lifecycle_each_action_is_a_write_operation_recording_its_event():
    for action, t in PROJECT_TRANSITIONS.items():
        write = getattr(service, f"{action}_project")
        assert write.audit_action == t.event, action
        assert t.sources <= set(ProjectStatus) and t.target in ProjectStatus


def test_project_lifecycle_refuses_an_action_from_a_state_the_table_does_not_list():
    assert next_project_status("p1", "approved", "activate") == ProjectStatus.ACTIVE
    with pytest.raises(Conflict) as refused:
        next_project_status("p1", "closed", "close")
    assert str(refused.value) == (
        "project p1 is closed: cannot close (only from active, approved, proposed)"
    )


def test_project_closed_refuses_changes_with_the_callers_message():
    project = Project(slug="p1", status=ProjectStatus.CLOSED)
    with pytest.raises(Conflict) as refused:
        check_project_open(project, " and can no longer change")
    assert str(refused.value) == "project p1 is closed and can no longer change"
    check_project_open(Project(slug="p2", status=ProjectStatus.ACTIVE))


def test_lapsed_person_every_reason_listed():
    person = Person(accreditation_expiry=DAY, training_expiry=None)
    assert lapsed(person, DAY) == ["no data-protection training on record"]
    later = DAY + timedelta(days=1)
    assert lapsed(person, later) == [
        f"accreditation expired on {DAY}",
        "no data-protection training on record",
    ]
    suspended = Person(status="suspended", accreditation_expiry=DAY, training_expiry=DAY)
    assert person_problems(suspended, DAY) == ["user is suspended"]


def test_project_problems_state_approval_and_dates():
    project = Project(status="approved", start_date=DAY, end_date=DAY)
    assert project_problems(project, DAY + timedelta(days=1)) == [
        "project is approved, not active",
        "project has no recorded approval and data-controller sign-off",
        f"project ended on {DAY}",
    ]


def test_registry_states_doc_is_current():
    assert DOC.read_text() == lifecycle_reference() + "\n", (
        "regenerate with: sde projects lifecycle > docs/registry-states.md"
    )
