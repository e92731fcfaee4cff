"""Which state allows what: rules over registry states and dates, as data where possible.

Nothing here writes. `sde.registry.access` decides *who* may work on a project
from these rules (so it never imports the write module), and
`sde.registry.service` checks each write against them. The project lifecycle
is one table, `PROJECT_TRANSITIONS` (action -> source states, target, audit
event), beside `PROJECT_STATES` (who moves a project on from each state and
what it means); a unit test checks the two are complete and consistent, and
`docs/registry-states.md` is drawn from them (`sde projects lifecycle`).
Rules come in pairs where callers need both: `check_...` raises, the other
answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

from sde.core.errors import Conflict
from sde.registry.enums import (
    Classification,
    GlobalRoleName,
    PersonStatus,
    ProjectRole,
    ProjectStatus,
)

if TYPE_CHECKING:
    from sde.registry.models import Person, Project


@dataclass(frozen=True)
class Transition:
    sources: frozenset[ProjectStatus]
    target: ProjectStatus
    event: str  # the audit action the write records


@dataclass(frozen=True)
class StateInfo:
    owner: str  # who moves a project on from this state ("nobody": final)
    meaning: str


# A new project starts here (`service.create_project`).
PROJECT_START = ProjectStatus.PROPOSED

# action -> which states it may start from, the state it leads to, its audit event.
# Each action is written by `service.<action>_project`.
PROJECT_TRANSITIONS: dict[str, Transition] = {
    "approve": Transition(
        frozenset({ProjectStatus.PROPOSED}), ProjectStatus.APPROVED, "project.approve"
    ),
    "activate": Transition(
        frozenset({ProjectStatus.APPROVED}), ProjectStatus.ACTIVE, "project.activate"
    ),
    "suspend": Transition(
        frozenset({ProjectStatus.ACTIVE}), ProjectStatus.APPROVED, "project.suspend"
    ),
    "close": Transition(
        frozenset({ProjectStatus.PROPOSED, ProjectStatus.APPROVED, ProjectStatus.ACTIVE}),
        ProjectStatus.CLOSED,
        "project.close",
    ),
}

PROJECT_STATES: dict[ProjectStatus, StateInfo] = {
    ProjectStatus.PROPOSED: StateInfo(
        "operator", "created; waits for its approval and the data controller's sign-off"
    ),
    ProjectStatus.APPROVED: StateInfo(
        "operator", "approved and signed off (or suspended); nobody works in it until activated"
    ),
    ProjectStatus.ACTIVE: StateInfo(
        "members", "open for work: its members may start workspaces within its dates"
    ),
    ProjectStatus.CLOSED: StateInfo(
        "nobody", "final: no more changes, members or grants; its records stay"
    ),
}

# States from which nothing leads on: the record is kept, frozen.
FINAL_PROJECT_STATES = frozenset({ProjectStatus.CLOSED})

# Members may work (start workspaces) only in these (`project_problems`).
WORKING_PROJECT_STATES = frozenset({ProjectStatus.ACTIVE})
# A project's data may be built in these (`sde projects provision`).
PROVISIONABLE_PROJECT_STATES = frozenset({ProjectStatus.APPROVED, ProjectStatus.ACTIVE})


# ---------------------------------------------------------------- project lifecycle


def next_project_status(slug: str, current: str, action: str) -> ProjectStatus:
    """The state `action` moves a project in `current` to; Conflict when the table forbids it."""
    transition = PROJECT_TRANSITIONS[action]
    if current not in transition.sources:
        sources = ", ".join(sorted(transition.sources))
        raise Conflict(f"project {slug} is {current}: cannot {action} (only from {sources})")
    return transition.target


def project_is_open(project: Project) -> bool:
    """Whether a project may still change (details, members, grants)."""
    return project.status not in FINAL_PROJECT_STATES


def check_project_open(project: Project, detail: str = "") -> None:
    """Conflict for a change to a closed project; `detail` ends the message."""
    if not project_is_open(project):
        raise Conflict(f"project {project.slug} is {project.status}{detail}")


# ---------------------------------------------------------------- access on a day


def lapsed(person: Person, on: date) -> list[str]:
    """Why a person's accreditation or training does not cover `on` (empty when current)."""
    reasons = []
    if person.accreditation_expiry is None:
        reasons.append("no accreditation on record")
    elif person.accreditation_expiry < on:
        reasons.append(f"accreditation expired on {person.accreditation_expiry}")
    if person.training_expiry is None:
        reasons.append("no data-protection training on record")
    elif person.training_expiry < on:
        reasons.append(f"training expired on {person.training_expiry}")
    return reasons


def person_is_active(person: Person) -> bool:
    return person.status == PersonStatus.ACTIVE


def person_problems(person: Person, on: date) -> list[str]:
    """Why a person may not work on `on`: not active, accreditation or training lapsed."""
    reasons = [] if person_is_active(person) else [f"user is {person.status}"]
    return reasons + lapsed(person, on)


def project_problems(project: Project, on: date) -> list[str]:
    """Why nobody may work in a project on `on`: its state, approval or dates."""
    reasons = []
    if project.status not in WORKING_PROJECT_STATES:
        reasons.append(f"project is {project.status}, not active")
    if not project.approval_ref or not project.controller_signoff_by:
        reasons.append("project has no recorded approval and data-controller sign-off")
    if on < project.start_date:
        reasons.append(f"project starts on {project.start_date}")
    if on > project.end_date:
        reasons.append(f"project ended on {project.end_date}")
    return reasons


# ---------------------------------------------------------------- the generated page


def _states(states: frozenset[ProjectStatus]) -> list[ProjectStatus]:
    return sorted(states, key=list(ProjectStatus).index)


def lifecycle_reference() -> str:
    """docs/registry-states.md: the project lifecycle drawn from the tables above."""
    lines = [
        "# Registry states",
        "",
        "Generated from `sde.registry.policies` by `sde projects lifecycle`; do not edit by hand.",
        "",
        "## Project lifecycle",
        "",
        "```mermaid",
        "stateDiagram-v2",
        f"    [*] --> {PROJECT_START}: create",
    ]
    for action, t in PROJECT_TRANSITIONS.items():
        for source in _states(t.sources):
            lines.append(f"    {source} --> {t.target}: {action}")
    for final in _states(FINAL_PROJECT_STATES):
        lines.append(f"    {final} --> [*]")
    lines += ["```", "", "| state | owner | meaning |", "|---|---|---|"]
    for state, info in PROJECT_STATES.items():
        lines.append(f"| `{state}` | {info.owner} | {info.meaning} |")
    lines += ["", "| action | from | to | audit event |", "|---|---|---|---|"]
    for action, t in PROJECT_TRANSITIONS.items():
        sources = ", ".join(f"`{s}`" for s in _states(t.sources))
        lines.append(f"| `{action}` | {sources} | `{t.target}` | `{t.event}` |")
    open_states = frozenset(ProjectStatus) - FINAL_PROJECT_STATES
    lines += ["", "| allowed | in states |", "|---|---|"]
    for allowed, states in (
        ("members start workspaces (`access_decision`)", WORKING_PROJECT_STATES),
        ("its data is provisioned (`sde projects provision`)", PROVISIONABLE_PROJECT_STATES),
        ("details change, members join, data is granted", open_states),
    ):
        lines.append(f"| {allowed} | " + ", ".join(f"`{s}`" for s in _states(states)) + " |")
    lines += [
        "",
        "## People and roles",
        "",
        "| kind | values |",
        "|---|---|",
    ]
    for kind, values in (
        ("person status", PersonStatus),
        ("project role", ProjectRole),
        ("global role", GlobalRoleName),
        ("dataset classification", Classification),
    ):
        lines.append(f"| {kind} | " + ", ".join(f"`{v}`" for v in values) + " |")
    return "\n".join(lines)
