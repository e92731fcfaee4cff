"""`sde.audit.write_operation`: the action is written once, and only its operation records it.

The operations declared here are taken out of `WRITE_OPERATIONS` again after
each test, so the audit meta-test never sees them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy.orm import Session

from sde.audit import WRITE_OPERATIONS, MissingEvent, UndeclaredAction, record, write_operation


@pytest.fixture
def declare() -> Iterator[Callable[[str], Any]]:
    before = dict(WRITE_OPERATIONS)
    yield write_operation
    WRITE_OPERATIONS.clear()
    WRITE_OPERATIONS.update(before)


def test_write_operation_recording_another_action_is_refused(declare):
    @declare("test.one")
    def one(session: Session) -> None:
        record(session, actor="a", target="t:1", action="test.other")

    with pytest.raises(UndeclaredAction, match=r"test\.one recorded test\.other"):
        one(Session())


def test_write_operation_returning_without_its_event_is_refused(declare):
    @declare("test.silent")
    def silent(session: Session) -> None:
        pass

    with pytest.raises(MissingEvent, match=r"test\.silent"):
        silent(Session())


def test_record_outside_a_write_operation_is_refused():
    with pytest.raises(UndeclaredAction, match="outside a write operation"):
        record(Session(), actor="a", target="t:1")


def test_write_operation_declared_twice_is_refused(declare):
    @declare("test.twice")
    def first(session: Session) -> None:
        pass

    with pytest.raises(ValueError, match="declared twice"):

        @declare("test.twice")
        def second(session: Session) -> None:
            pass


def test_write_operation_action_not_noun_verb_is_refused():
    with pytest.raises(ValueError, match=r"noun\.verb"):
        write_operation("Person Create")
