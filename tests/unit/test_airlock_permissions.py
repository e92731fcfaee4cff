"""The airlock's permission matrix: every action x role x state, allowed and refused.

The expected cells are written out here from the rules in docs/airlock.md, not
derived from `sde.airlock.permissions`, so a change to either side fails.
"""

from __future__ import annotations

import pytest

from sde.airlock.enums import RequestStatus, Role
from sde.airlock.permissions import ACTION_ROLES, allowed
from sde.airlock.policies import ACTION_STATES, TRANSITIONS

S = RequestStatus
R = Role
ALL = frozenset(S)
AUTHORS = frozenset({S.PENDING, S.RETURNED})
REVIEWING = frozenset({S.SUBMITTED, S.PARTIALLY_REVIEWED, S.REVIEWED})
READERS = (R.AUTHOR, R.PRINCIPAL_INVESTIGATOR, R.PROJECT_MEMBER, R.AUDITOR)

# action -> role -> the states in which that role may take it; every other cell refused.
EXPECTED: dict[str, dict[Role, frozenset[RequestStatus]]] = {
    "add_file": {R.AUTHOR: AUTHORS},
    "set_group_text": {R.AUTHOR: AUTHORS},
    "withdraw_file": {R.AUTHOR: AUTHORS},
    "ask_exception": {R.AUTHOR: AUTHORS},
    "submit": {R.AUTHOR: frozenset({S.PENDING})},
    "resubmit": {R.AUTHOR: frozenset({S.RETURNED})},
    "withdraw": {R.AUTHOR: AUTHORS},
    "vote": {R.CHECKER: REVIEWING},
    "review": {R.CHECKER: frozenset({S.SUBMITTED})},
    "complete_review": {R.CHECKER: REVIEWING},
    "return": {R.CHECKER: REVIEWING},
    "reject": {R.CHECKER: frozenset({S.REVIEWED})},
    "approve": {R.CHECKER: frozenset({S.REVIEWED})},
    "comment": {R.AUTHOR: AUTHORS, R.CHECKER: REVIEWING},
    "release": {R.CHECKER: frozenset({S.APPROVED}), R.SYSTEM: frozenset({S.APPROVED})},
    "revoke_release": {R.CHECKER: frozenset({S.RELEASED}), R.OPERATOR: frozenset({S.RELEASED})},
    "view": {**{r: ALL for r in READERS}, R.CHECKER: ALL - {S.PENDING}},
    "view_file": {**{r: ALL for r in READERS}, R.CHECKER: ALL - {S.PENDING}},
    "download": {
        R.AUTHOR: frozenset({S.RELEASED}),
        R.PRINCIPAL_INVESTIGATOR: frozenset({S.RELEASED}),
    },
}


def test_airlock_permission_matrix_covers_every_action():
    assert set(EXPECTED) == set(ACTION_ROLES) == set(TRANSITIONS) | set(ACTION_STATES)


@pytest.mark.parametrize("status", list(S))
@pytest.mark.parametrize("role", list(R))
@pytest.mark.parametrize("action", sorted(EXPECTED))
def test_airlock_permission_matrix_cell(action, role, status):
    expected = status in EXPECTED[action].get(role, frozenset())
    assert allowed(action, role, status) is expected, (
        f"{role} {'may' if expected else 'may not'} {action} when {status}"
    )


def test_airlock_permission_nobody_and_auditors_change_nothing():
    writes = set(EXPECTED) - {"view", "view_file", "download"}
    for action in writes:
        for status in S:
            assert not allowed(action, R.AUDITOR, status)
            assert not allowed(action, R.NOBODY, status)
            assert not allowed(action, R.PROJECT_MEMBER, status)


def test_airlock_permission_operators_never_review():
    for action in ("vote", "review", "complete_review", "return", "reject", "approve"):
        assert not any(allowed(action, R.OPERATOR, s) for s in S)
