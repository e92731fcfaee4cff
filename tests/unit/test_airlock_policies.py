"""The airlock's lifecycle table and rules (sde.airlock.policies), without a database."""

from __future__ import annotations

from pathlib import Path

import pytest

from sde.airlock import service
from sde.airlock.enums import FileKind, Owner, RequestStatus, Vote
from sde.airlock.policies import (
    ACTION_STATES,
    FINAL_STATES,
    REQUEST_START,
    STATES,
    TRANSITIONS,
    FileDecision,
    FileView,
    GroupView,
    approve_problems,
    file_decision,
    is_blind,
    lifecycle_reference,
    next_status,
    next_turn,
    return_problems,
    review_problems,
    submit_problems,
    votes_to_reset,
)
from sde.core.errors import Conflict

DOC = Path(__file__).resolve().parents[2] / "docs" / "airlock-states.md"
A, C, U = Vote.APPROVE, Vote.REQUEST_CHANGES, Vote.UNDECIDED

# Each transition's write operation in sde.airlock.service.
WRITES = {
    "submit": service.submit,
    "resubmit": service.resubmit,
    "review": service.submit_review,
    "complete_review": service.submit_review,
    "return": service.return_request,
    "withdraw": service.withdraw_request,
    "reject": service.reject,
    "approve": service.approve,
    "release": service.release,
}


def test_airlock_lifecycle_every_state_reachable_from_the_start():
    reached, frontier = {REQUEST_START}, [REQUEST_START]
    while frontier:
        state = frontier.pop()
        for t in TRANSITIONS.values():
            if state in t.sources and t.target not in reached:
                reached.add(t.target)
                frontier.append(t.target)
    assert reached == set(RequestStatus)


def test_airlock_lifecycle_every_state_owned_and_only_final_states_lead_nowhere():
    assert list(STATES) == list(RequestStatus)
    for state, info in STATES.items():
        assert info.owner in Owner and info.meaning, state
        leads_on = any(state in t.sources for t in TRANSITIONS.values())
        assert leads_on == (state not in FINAL_STATES), state
    assert {s for s in RequestStatus if STATES[s].owner == Owner.AUTHOR} == {
        RequestStatus.PENDING,
        RequestStatus.RETURNED,
    }
    for final in FINAL_STATES:
        assert STATES[final].owner == Owner.SYSTEM
        for states in ACTION_STATES.values():
            # Once final only reading, downloading and revoking remain.
            if final in states:
                assert states in (frozenset(RequestStatus), frozenset({RequestStatus.RELEASED}))


def test_airlock_lifecycle_each_transition_is_a_write_operation_recording_its_event():
    assert set(WRITES) == set(TRANSITIONS)
    for action, t in TRANSITIONS.items():
        assert WRITES[action].audit_action == t.event, action  # type: ignore[attr-defined]
        assert t.owner == STATES[t.target].owner


def test_airlock_lifecycle_refuses_an_action_from_a_state_the_table_does_not_list():
    assert next_status("r1", "pending", "submit") == RequestStatus.SUBMITTED
    with pytest.raises(Conflict) as refused:
        next_status("r1", "rejected", "approve")
    assert str(refused.value) == (
        "airlock request r1 is rejected: cannot approve (only when reviewed)"
    )
    for final in FINAL_STATES:
        for action in TRANSITIONS:
            with pytest.raises(Conflict):
                next_status("r1", final, action)


def test_airlock_turn_changes_with_the_owner_only():
    assert next_turn("pending", "submitted", 1) == 2
    assert next_turn("submitted", "partially_reviewed", 2) == 2
    assert next_turn("reviewed", "returned", 2) == 3
    assert next_turn("reviewed", "approved", 4) == 5


def _file(name: str = "t.csv", group: str = "g", **kw: object) -> FileView:
    values: dict[str, object] = {"id": 1, "name": name, "group": group, "kind": FileKind.OUTPUT}
    values.update(kw)
    return FileView(**values)  # type: ignore[arg-type]


def test_airlock_submit_needs_context_controls_an_output_and_passing_checks():
    groups = [GroupView("g", "", "rounded"), GroupView("empty", "", "")]
    files = [
        _file(
            failing_checks=frozenset({"table_shape", "file_size"}),
            excepted_checks=frozenset({"file_size"}),
        )
    ]
    assert submit_problems(groups, files) == [
        "group g needs context",
        "t.csv fails table_shape: fix it or ask for an exception",
    ]
    fixed = [
        _file(failing_checks=frozenset({"table_shape"}), excepted_checks=frozenset({"table_shape"}))
    ]
    assert submit_problems([GroupView("g", "what", "how")], fixed) == []
    supporting = [_file(kind=FileKind.SUPPORTING)]
    assert submit_problems([GroupView("g", "what", "how")], supporting) == [
        "the request has no output file"
    ]


@pytest.mark.parametrize(
    ("votes", "required", "decision"),
    [
        ([], 2, FileDecision.PENDING),
        ([A], 2, FileDecision.PENDING),
        ([A, U], 2, FileDecision.PENDING),
        ([A, A], 2, FileDecision.APPROVED),
        ([C, C], 2, FileDecision.CHANGES_REQUESTED),
        ([A, C], 2, FileDecision.CONFLICT),
        ([A, C, A], 2, FileDecision.APPROVED),  # a further checker settles it
        ([A, C, C], 2, FileDecision.CHANGES_REQUESTED),
        ([A], 1, FileDecision.APPROVED),
        ([C], 1, FileDecision.CHANGES_REQUESTED),
    ],
)
def test_airlock_file_decision_from_the_submitted_votes(votes, required, decision):
    assert file_decision(votes, required) == decision


def test_airlock_review_needs_every_output_voted_and_a_comment_where_changes_are_asked():
    files = [
        _file("a.csv", "g1", votes={"c1": C}),
        _file("b.csv", "g2", votes={}),
        _file("notes.md", "g2", kind=FileKind.SUPPORTING),
    ]
    assert review_problems(files, "c1", []) == [
        "no vote on b.csv",
        "group g1 needs a comment saying what should change",
    ]
    assert review_problems(files[:1], "c1", ["g1"]) == []


def test_airlock_blind_until_the_required_reviews_are_in():
    assert is_blind(0, 2) and is_blind(1, 2)
    assert not is_blind(2, 2) and not is_blind(1, 1)


def test_airlock_approve_needs_every_output_approved_by_the_reviews_of_the_turn():
    files = [_file("a.csv", votes={"c1": A, "c2": A}), _file("b.csv", votes={"c1": A, "c2": C})]
    assert approve_problems(files, ["c1", "c2"], 2) == ["b.csv is conflict"]
    # A vote of a checker who has not submitted a review does not count.
    assert approve_problems(files[:1], ["c1"], 2) == ["a.csv is pending"]
    assert approve_problems(files[:1], ["c1", "c2"], 2) == []


def test_airlock_return_needs_a_public_comment_on_every_group_with_a_problem():
    files = [_file("a.csv", "g1", votes={"c1": C}), _file("b.csv", "g2", votes={"c1": A})]
    assert return_problems(files, ["c1"], []) == ["group g1 needs a public comment for the author"]
    assert return_problems(files, ["c1"], ["g1"]) == []
    # Votes of a review not yet submitted are not a problem to explain.
    assert return_problems(files, [], []) == []


def test_airlock_resubmit_resets_votes_only_of_files_changed_since_the_review():
    files = [_file("a.csv", changed_turn=1), _file("b.csv", changed_turn=3)]
    assert [f.name for f in votes_to_reset(files, last_review_turn=2)] == ["b.csv"]


def test_airlock_states_doc_is_current():
    assert DOC.read_text() == lifecycle_reference() + "\n", (
        "regenerate with: .venv/bin/python -c 'from sde.airlock.policies import "
        "lifecycle_reference as r; print(r())' > docs/airlock-states.md"
    )
