"""Which state allows what: the airlock lifecycle as data, and the rules over it.

Nothing here reads the database or writes. `TRANSITIONS` is the one table of
the lifecycle (action -> source states, target, audit action), `STATES` says
who owns each state and what it means, `ACTION_STATES` says in which states
each other write or read may happen; `sde.airlock.service` moves a request only
through `next_status`, `sde.airlock.permissions` adds *who*. A unit test checks
the tables are complete and consistent and that `docs/airlock-states.md`
(drawn from them by `lifecycle_reference`) is current.

The rules take plain views (`GroupView`, `FileView`) built by the service, so
each can be tested without a database.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from sde.airlock.enums import Direction, FileKind, Owner, RequestStatus, Vote
from sde.core.config import Settings
from sde.core.errors import Conflict

S = RequestStatus


@dataclass(frozen=True)
class Transition:
    sources: frozenset[RequestStatus]
    target: RequestStatus
    event: str  # the audit action of the write operation that makes it

    @property
    def owner(self) -> Owner:
        """Who owns the request once it has moved."""
        return STATES[self.target].owner


@dataclass(frozen=True)
class StateInfo:
    owner: Owner
    meaning: str


# A new request starts here (`service.create_request`).
REQUEST_START = S.PENDING

REVIEW_STATES = frozenset({S.SUBMITTED, S.PARTIALLY_REVIEWED, S.REVIEWED})
AUTHOR_STATES = frozenset({S.PENDING, S.RETURNED})

# action -> which states it may start from, the state it leads to, the audit
# action recorded. Submitting a review has two rows: it leads to
# partially_reviewed until the required number of reviews of the turn are in,
# then to reviewed (a further checker settling a conflict stays there).
TRANSITIONS: dict[str, Transition] = {
    "submit": Transition(frozenset({S.PENDING}), S.SUBMITTED, "airlock.request.submit"),
    "resubmit": Transition(frozenset({S.RETURNED}), S.SUBMITTED, "airlock.request.resubmit"),
    "review": Transition(frozenset({S.SUBMITTED}), S.PARTIALLY_REVIEWED, "airlock.review.submit"),
    "complete_review": Transition(REVIEW_STATES, S.REVIEWED, "airlock.review.submit"),
    "return": Transition(REVIEW_STATES, S.RETURNED, "airlock.request.return"),
    "withdraw": Transition(AUTHOR_STATES, S.WITHDRAWN, "airlock.request.withdraw"),
    "reject": Transition(frozenset({S.REVIEWED}), S.REJECTED, "airlock.request.reject"),
    "approve": Transition(frozenset({S.REVIEWED}), S.APPROVED, "airlock.request.approve"),
    "release": Transition(frozenset({S.APPROVED}), S.RELEASED, "airlock.request.release"),
}

STATES: dict[RequestStatus, StateInfo] = {
    S.PENDING: StateInfo(Owner.AUTHOR, "being prepared: files added, context and controls written"),
    S.SUBMITTED: StateInfo(Owner.CHECKERS, "waiting for independent reviews; no review in yet"),
    S.PARTIALLY_REVIEWED: StateInfo(
        Owner.CHECKERS, "some reviews in, fewer than required; reviewers still blind"
    ),
    S.REVIEWED: StateInfo(
        Owner.CHECKERS, "the required reviews are in: consolidate, settle conflicts, decide"
    ),
    S.RETURNED: StateInfo(Owner.AUTHOR, "back with the author to answer comments and resubmit"),
    S.APPROVED: StateInfo(Owner.SYSTEM, "every output file approved; the release follows"),
    S.RELEASED: StateInfo(
        Owner.SYSTEM, "final: output files downloadable under a signed record (unless revoked)"
    ),
    S.REJECTED: StateInfo(Owner.SYSTEM, "final: nothing leaves"),
    S.WITHDRAWN: StateInfo(Owner.SYSTEM, "final: withdrawn by the author; nothing leaves"),
}

FINAL_STATES = frozenset({S.RELEASED, S.REJECTED, S.WITHDRAWN})

# Writes and reads that do not move the request: the states they are allowed in.
ACTION_STATES: dict[str, frozenset[RequestStatus]] = {
    "add_file": AUTHOR_STATES,
    "set_group_text": AUTHOR_STATES,
    "withdraw_file": AUTHOR_STATES,
    "ask_exception": AUTHOR_STATES,
    "vote": REVIEW_STATES,
    "comment": AUTHOR_STATES | REVIEW_STATES,
    "view": frozenset(RequestStatus),
    "view_file": frozenset(RequestStatus),
    "revoke_release": frozenset({S.RELEASED}),
    "download": frozenset({S.RELEASED}),
}


def states_of(action: str) -> frozenset[RequestStatus]:
    """Every state in which `action` (a transition or another action) may happen."""
    if action in TRANSITIONS:
        return TRANSITIONS[action].sources
    return ACTION_STATES[action]


def owner_of(status: str) -> Owner:
    return STATES[RequestStatus(status)].owner


def check_state(request_id: str, status: str, action: str) -> None:
    """Conflict when `action` may not happen in `status`."""
    allowed = states_of(action)
    if status not in allowed:
        names = ", ".join(sorted(allowed))
        raise Conflict(
            f"airlock request {request_id} is {status}: cannot {action.replace('_', ' ')} "
            f"(only when {names})"
        )


def next_status(request_id: str, current: str, action: str) -> RequestStatus:
    """The state a transition leads to; Conflict when the table forbids it from `current`."""
    check_state(request_id, current, action)
    return TRANSITIONS[action].target


def next_turn(current: str, target: str, turn: int) -> int:
    """Every change of owner starts a new turn (a review's votes belong to one turn)."""
    return turn + 1 if owner_of(current) != owner_of(target) else turn


def reviews_required(direction: str, settings: Settings) -> int:
    if direction == Direction.INGRESS:
        return settings.airlock.ingress_reviews_required
    return settings.airlock.reviews_required


# ---------------------------------------------------------------- plain views for the rules


@dataclass(frozen=True)
class GroupView:
    name: str
    context: str
    controls: str


@dataclass(frozen=True)
class FileView:
    id: int
    name: str
    group: str
    kind: str
    failing_checks: frozenset[str] = frozenset()  # checks whose status is fail
    excepted_checks: frozenset[str] = frozenset()  # exceptions asked, with a justification
    changed_turn: int = 1
    votes: Mapping[str, str] = field(default_factory=dict)  # checker -> vote


def outputs(files: Iterable[FileView]) -> list[FileView]:
    return [f for f in files if f.kind == FileKind.OUTPUT]


# ---------------------------------------------------------------- submit


def submit_problems(groups: Iterable[GroupView], files: Iterable[FileView]) -> list[str]:
    """Why a request may not be submitted (empty when it may); every reason, in order."""
    files = list(files)
    problems = []
    if not outputs(files):
        problems.append("the request has no output file")
    used = {f.group for f in files}
    for g in groups:
        if g.name not in used:
            continue
        missing = [w for w, text in (("context", g.context), ("controls", g.controls)) if not text]
        if missing:
            problems.append(f"group {g.name} needs {' and '.join(missing)}")
    for f in files:
        unexcused = sorted(f.failing_checks - f.excepted_checks)
        if unexcused:
            problems.append(
                f"{f.name} fails {', '.join(unexcused)}: fix it or ask for an exception"
            )
    return problems


# ---------------------------------------------------------------- review


class FileDecision(StrEnum):
    """Where the submitted reviews of a turn leave one output file."""

    PENDING = "pending"  # fewer votes than reviews required
    APPROVED = "approved"
    CHANGES_REQUESTED = "changes_requested"
    CONFLICT = "conflict"  # as many for as against: a further checker settles it


def file_decision(votes: Iterable[str], required: int) -> FileDecision:
    """Approved when at least `required` reviews approve and approvals outnumber requests for
    changes; a tie is a conflict for a further checker; undecided votes do not count."""
    votes = list(votes)
    approvals = votes.count(Vote.APPROVE)
    changes = votes.count(Vote.REQUEST_CHANGES)
    if approvals + changes < required:
        return FileDecision.PENDING
    if approvals > changes and approvals >= required:
        return FileDecision.APPROVED
    if changes > approvals:
        return FileDecision.CHANGES_REQUESTED
    return FileDecision.CONFLICT


def review_problems(
    files: Iterable[FileView], checker: str, commented_groups: Iterable[str]
) -> list[str]:
    """Why `checker` may not submit their review: a vote on every output file, and a comment
    (of this turn) on every group where they requested changes."""
    problems = []
    commented = set(commented_groups)
    wanting: set[str] = set()
    for f in outputs(files):
        vote = f.votes.get(checker, Vote.UNDECIDED)
        if vote == Vote.UNDECIDED:
            problems.append(f"no vote on {f.name}")
        elif vote == Vote.REQUEST_CHANGES:
            wanting.add(f.group)
    for group in sorted(wanting - commented):
        problems.append(f"group {group} needs a comment saying what should change")
    return problems


def is_blind(reviews_in_turn: int, required: int) -> bool:
    """Checkers see only their own votes and comments of a turn until its reviews are all in."""
    return reviews_in_turn < required


def approve_problems(
    files: Iterable[FileView], reviewers: Iterable[str], required: int
) -> list[str]:
    """Why the request may not be approved: each output file approved by the reviews of the turn."""
    reviewers = list(reviewers)
    problems = []
    for f in outputs(files):
        decision = file_decision((f.votes.get(r, Vote.UNDECIDED) for r in reviewers), required)
        if decision != FileDecision.APPROVED:
            problems.append(f"{f.name} is {decision.replace('_', ' ')}")
    return problems


def groups_with_problems(files: Iterable[FileView], reviewers: Iterable[str]) -> set[str]:
    """Groups holding a file on which a submitted review of the turn requested changes."""
    reviewers = list(reviewers)
    return {
        f.group
        for f in outputs(files)
        if any(f.votes.get(r) == Vote.REQUEST_CHANGES for r in reviewers)
    }


def return_problems(
    files: Iterable[FileView], reviewers: Iterable[str], public_comment_groups: Iterable[str]
) -> list[str]:
    """Why the request may not go back: a public comment on every group with a problem."""
    missing = groups_with_problems(files, reviewers) - set(public_comment_groups)
    return [f"group {g} needs a public comment for the author" for g in sorted(missing)]


def votes_to_reset(files: Iterable[FileView], last_review_turn: int) -> list[FileView]:
    """On resubmission: the files changed since the turn they were reviewed in (their votes go
    back to undecided; approvals of unchanged files stay)."""
    return [f for f in files if f.changed_turn > last_review_turn]


# ---------------------------------------------------------------- the generated page


def _ordered(states: Iterable[RequestStatus]) -> list[RequestStatus]:
    return sorted(states, key=list(RequestStatus).index)


def lifecycle_reference() -> str:
    """docs/airlock-states.md: the airlock lifecycle drawn from the tables above."""
    lines = [
        "# Airlock states",
        "",
        "Generated from `sde.airlock.policies` by `lifecycle_reference()`; do not edit by hand",
        "(regenerate: `.venv/bin/python -c 'from sde.airlock.policies import "
        "lifecycle_reference as r; print(r())' > docs/airlock-states.md`).",
        "",
        "```mermaid",
        "stateDiagram-v2",
        f"    [*] --> {REQUEST_START}: create",
    ]
    for action, t in TRANSITIONS.items():
        for source in _ordered(t.sources):
            lines.append(f"    {source} --> {t.target}: {action}")
    for final in _ordered(FINAL_STATES):
        lines.append(f"    {final} --> [*]")
    lines += ["```", "", "| state | owner | meaning |", "|---|---|---|"]
    for state, info in STATES.items():
        lines.append(f"| `{state}` | {info.owner} | {info.meaning} |")
    lines += ["", "| action | from | to | owner then | audit event |", "|---|---|---|---|---|"]
    for action, t in TRANSITIONS.items():
        sources = ", ".join(f"`{s}`" for s in _ordered(t.sources))
        lines.append(f"| `{action}` | {sources} | `{t.target}` | {t.owner} | `{t.event}` |")
    lines += ["", "| other action | in states |", "|---|---|"]
    for action, states in ACTION_STATES.items():
        lines.append(f"| `{action}` | " + ", ".join(f"`{s}`" for s in _ordered(states)) + " |")
    return "\n".join(lines)
