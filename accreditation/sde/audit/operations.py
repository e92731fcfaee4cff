"""Write operations: each audited write path, declared once under the action it records.

`@write_operation("noun.verb")` registers a function in `WRITE_OPERATIONS`
(the audit meta-test drives every entry) and is the only place its action is
written: while the function runs, `record` takes the action from it, and
when the function returns the decorator checks that the event was recorded.
So an action cannot be recorded under a name the meta-test does not know, and
an operation cannot return without its event.

The action lives in a context variable, not in an argument, so that the
operations keep the signatures their callers use. An operation that records a
second kind of event calls another operation (a lockout inside a failed
sign-in); each has its own frame.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

# action -> the declared function (as callers see it, wrapped)
WRITE_OPERATIONS: dict[str, Callable[..., Any]] = {}

_ACTION = re.compile(r"[a-z][a-z_]*(\.[a-z][a-z_]*)+")


class UndeclaredAction(RuntimeError):
    """Code recorded an audit event under an action no running write operation declares."""


class MissingEvent(RuntimeError):
    """A write operation returned without recording its audit event."""


@dataclass
class _Running:
    action: str
    recorded: bool = False


_running: ContextVar[_Running | None] = ContextVar("sde_audit_operation", default=None)


def write_operation(action: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Declare an audited write path under the one action it records."""
    if not _ACTION.fullmatch(action):
        raise ValueError(f"audit action {action!r} is not of the form noun.verb")

    def wrap(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            frame = _Running(action)
            token = _running.set(frame)
            try:
                result = fn(*args, **kwargs)
            finally:
                _running.reset(token)
            if not frame.recorded:
                raise MissingEvent(f"write operation {action} returned without recording its event")
            return result

        other = WRITE_OPERATIONS.get(action)
        if other is not None and _name(other) != _name(fn):
            raise ValueError(
                f"audit action {action} is declared twice: {_name(other)}, {_name(fn)}"
            )
        WRITE_OPERATIONS[action] = run
        run.audit_action = action  # type: ignore[attr-defined]
        return run

    return wrap


def _name(fn: Callable[..., Any]) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


def claim_action(explicit: str | None) -> str:
    """The action `record` writes: the running operation's, which counts as recorded.

    `explicit` is for the log's own tests outside any operation; sde code never
    passes it (the meta-test checks), so its events all carry declared actions.
    """
    frame = _running.get()
    if frame is None:
        if explicit is None:
            raise UndeclaredAction(
                "audit event recorded outside a write operation: declare the function "
                "that records it with @write_operation"
            )
        return explicit
    if explicit is not None and explicit != frame.action:
        raise UndeclaredAction(
            f"write operation {frame.action} recorded {explicit}: declare that as an "
            "operation of its own"
        )
    frame.recorded = True
    return frame.action
