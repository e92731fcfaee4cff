"""Which state changes are allowed: the project lifecycle as a data table."""

from __future__ import annotations

from sde.core.errors import Conflict

# action -> (states it may start from, state it leads to)
PROJECT_TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "approve": (frozenset({"proposed"}), "approved"),
    "activate": (frozenset({"approved"}), "active"),
    "suspend": (frozenset({"active"}), "approved"),
    "close": (frozenset({"proposed", "approved", "active"}), "closed"),
}


def next_project_status(slug: str, current: str, action: str) -> str:
    sources, target = PROJECT_TRANSITIONS[action]
    if current not in sources:
        raise Conflict(
            f"project {slug} is {current}: cannot {action} (only from {', '.join(sorted(sources))})"
        )
    return target
