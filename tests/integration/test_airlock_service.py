"""The airlock lifecycle through its service, on SQLite and PostgreSQL (`engine`).

Everything goes through `sde.airlock.service` on a real state database, with
files copied out of a real work folder into a real store and the release
record signed with the installation's key; no part is replaced.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from sde.airlock import release_record, service
from sde.airlock.enums import CommentVisibility, Direction, RequestStatus, Role, Vote
from sde.airlock.models import AirlockFile, AirlockRequest, Release, Review, VoteRecord
from sde.airlock.permissions import SYSTEM_ACTOR, can, role_of
from sde.airlock.visibility import visible_comments, visible_votes
from sde.audit.schema import audit_events
from sde.core.config import Settings
from sde.core.db import transaction
from sde.core.errors import AccessDenied, Conflict, InvalidInput, NotFound
from sde.registry import service as registry
from tests.support.airlock import (
    AUTHOR,
    CHECKERS,
    GROUP,
    NOTES,
    PROJECT,
    RAGGED,
    TABLE,
    airlock_settings,
    ensure_people,
    ensure_person,
    ensure_project,
    make_request_at,
    write_work,
)
from tests.support.registry import ACTOR, audit_count

C1, C2, C3 = CHECKERS
FIGURE = "results/rates.csv"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return airlock_settings(tmp_path / "home")


@pytest.fixture
def work(tmp_path: Path) -> Path:
    root = write_work(tmp_path / "work")
    (root / FIGURE).write_text("group,rate\na,0.25\nb,0.5\n")
    return root


def _in(engine: Engine, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    with transaction(engine) as s:
        return fn(s, *args, **kwargs)


def _status(engine: Engine, rid: str) -> tuple[str, int]:
    with transaction(engine) as s:
        r = service.get_request(s, rid)
        return r.status, r.turn


def _events(engine: Engine, action: str) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count())
                .select_from(audit_events)
                .where(audit_events.c.action == action)
            ).scalar_one()
        )


def _seen(engine: Engine, settings: Settings, viewer: str, rid: str) -> tuple[set, set]:
    """(checker, file name, vote) and (author, text) that `viewer` may see now."""
    with transaction(engine) as s:
        request = service.get_request(s, rid)
        role, _ = role_of(s, settings, viewer, request)
        reviews = len(service.reviewers_of_turn(s, request))
        required = service.required_reviews(request, settings)
        votes = s.scalars(select(VoteRecord).where(VoteRecord.request_id == rid)).all()
        names = {f.id: f.name for f in request.files}
        from sde.airlock.models import Comment, FileGroup

        comments = s.scalars(
            select(Comment).join(FileGroup).where(FileGroup.request_id == rid).order_by(Comment.id)
        ).all()
        return (
            {
                (v.checker, names[v.file_id], v.vote)
                for v in visible_votes(request, viewer, role, votes, reviews, required)
            },
            {
                (c.author, c.text)
                for c in visible_comments(request, viewer, role, comments, reviews, required)
            },
        )


def test_airlock_egress_workflow_blind_reviews_return_resubmit_release(engine, settings, work):
    _in(engine, ensure_people)
    _in(engine, lambda s: ensure_project(s, PROJECT, pi="pat"))
    rid = _in(engine, lambda s: service.create_request(s, AUTHOR, settings, project=PROJECT).id)
    for relpath, kind in ((TABLE, "output"), (FIGURE, "output"), (NOTES, "supporting")):
        _in(
            engine,
            service.add_file,
            AUTHOR,
            settings,
            rid,
            root=work,
            relpath=relpath,
            group=GROUP,
            kind=kind,
        )
    # Context and controls first.
    with pytest.raises(InvalidInput, match="group tables needs context and controls"):
        _in(engine, service.submit, AUTHOR, settings, rid)
    _in(engine, service.set_group_text, AUTHOR, settings, rid, GROUP, context="c", controls="k")
    _in(engine, service.submit, AUTHOR, settings, rid)
    assert _status(engine, rid) == ("submitted", 2)

    # First review: changes on the table, with a comment; the second checker is blind to it.
    _in(engine, service.vote, C1, settings, rid, TABLE, Vote.REQUEST_CHANGES)
    _in(engine, service.vote, C1, settings, rid, FIGURE, Vote.APPROVE)
    with pytest.raises(InvalidInput, match="group tables needs a comment"):
        _in(engine, service.submit_review, C1, settings, rid)
    _in(engine, service.comment, C1, settings, rid, GROUP, "Round to 5.")
    _in(
        engine,
        service.comment,
        C1,
        settings,
        rid,
        GROUP,
        "Checkers only: b looks small.",
        CommentVisibility.CHECKERS,
    )
    _in(engine, service.submit_review, C1, settings, rid)
    assert _status(engine, rid) == ("partially_reviewed", 2)
    votes, comments = _seen(engine, settings, C2, rid)
    assert votes == set() and comments == set()
    _in(engine, service.vote, C2, settings, rid, TABLE, Vote.APPROVE)
    _in(engine, service.vote, C2, settings, rid, FIGURE, Vote.APPROVE)
    assert _seen(engine, settings, C1, rid)[0] == {
        (C1, TABLE, Vote.REQUEST_CHANGES),
        (C1, FIGURE, Vote.APPROVE),
    }
    _in(engine, service.submit_review, C2, settings, rid)
    assert _status(engine, rid) == ("reviewed", 2)
    # Consolidation: both reviews in, each checker sees the other's.
    assert (C2, TABLE, Vote.APPROVE) in _seen(engine, settings, C1, rid)[0]
    assert len(_seen(engine, settings, C2, rid)[1]) == 2
    # A conflict (approve vs changes) cannot be approved; the author sees nothing yet.
    with pytest.raises(InvalidInput, match=f"{TABLE} is conflict"):
        _in(engine, service.approve, C1, settings, rid)
    assert _seen(engine, settings, AUTHOR, rid) == (set(), set())

    _in(engine, service.return_request, C1, settings, rid)
    assert _status(engine, rid) == ("returned", 3)
    # The author sees the public comment, never the checkers-only one, and no single vote.
    assert _seen(engine, settings, AUTHOR, rid) == (set(), {(C1, "Round to 5.")})

    # Change one file and resubmit: its votes reset, the unchanged file's approvals stay.
    (work / TABLE).write_text("group,n\na,15\nb,<10\n")
    _in(engine, service.add_file, AUTHOR, settings, rid, root=work, relpath=TABLE, group=GROUP)
    _in(engine, service.resubmit, AUTHOR, settings, rid)
    assert _status(engine, rid) == ("submitted", 4)
    with transaction(engine) as s:
        by = {
            (v.checker, f.name): v.vote
            for v, f in s.execute(
                select(VoteRecord, AirlockFile).join(
                    AirlockFile, AirlockFile.id == VoteRecord.file_id
                )
            )
        }
    assert by == {
        (C1, TABLE): Vote.UNDECIDED,
        (C2, TABLE): Vote.UNDECIDED,
        (C1, FIGURE): Vote.APPROVE,
        (C2, FIGURE): Vote.APPROVE,
    }
    for checker in (C1, C2):
        with pytest.raises(InvalidInput, match=f"no vote on {TABLE}"):
            _in(engine, service.submit_review, checker, settings, rid)
        _in(engine, service.vote, checker, settings, rid, TABLE, Vote.APPROVE)
        _in(engine, service.submit_review, checker, settings, rid)
    assert _status(engine, rid) == ("reviewed", 4)
    _in(engine, service.approve, C2, settings, rid)
    assert _status(engine, rid) == ("approved", 5)

    made = _in(engine, service.release, SYSTEM_ACTOR, settings, rid)
    assert _status(engine, rid)[0] == "released"
    signed = service.signed_record(made)
    release_record.verify(signed, settings)
    record = signed["record"]
    assert sorted(f["name"] for f in record["files"]) == sorted(
        [FIGURE, TABLE]
    )  # no supporting file
    with transaction(engine) as s:
        table = s.scalar(select(AirlockFile).where(AirlockFile.name == TABLE))
        assert table is not None
        assert {f["name"]: f["sha256"] for f in record["files"]}[TABLE] == table.sha256
    assert {r["reviewer"]: r["decision"] for r in record["reviews"]} == {
        C1: "approve",
        C2: "approve",
    }
    tampered = {
        "record": {**record, "files": record["files"][:1]},
        "signature": signed["signature"],
    }
    with pytest.raises(release_record.RecordNotVerified):
        release_record.verify(tampered, settings)

    # Downloads: the author and the PI, never another member or a checker; revocation stops them.
    _in(engine, lambda s: ensure_project(s, PROJECT, "mo"))
    for who in (AUTHOR, "pat"):
        path = _in(engine, service.record_download, who, settings, rid, TABLE)
        assert path.read_bytes() == (work / TABLE).read_bytes()
    for who in ("mo", C1):
        with pytest.raises(AccessDenied):
            _in(engine, service.record_download, who, settings, rid, TABLE)
    with pytest.raises(NotFound):
        _in(engine, service.record_download, AUTHOR, settings, rid, NOTES)
    _in(engine, service.revoke_release, C1, settings, rid, "Found a small cell.")
    with pytest.raises(Conflict, match="revoked"):
        _in(engine, service.record_download, AUTHOR, settings, rid, TABLE)
    assert _events(engine, "airlock.file.download") == 2
    assert _events(engine, "airlock.request.release") == 1


def test_airlock_workspace_change_after_adding_never_reaches_the_release(engine, settings, work):
    rid = make_request_at(engine, settings, RequestStatus.APPROVED, work=work)
    (work / TABLE).write_text("group,n\na,1\nb,2\n")  # the workspace copy changes
    made = _in(engine, service.release, SYSTEM_ACTOR, settings, rid)
    released = {f["name"]: f["sha256"] for f in made.record["files"]}
    path = _in(engine, service.record_download, AUTHOR, settings, rid, TABLE)
    assert path.read_text() == "group,n\na,15\nb,20\n"
    assert path.name == released[TABLE]


def test_airlock_release_refused_when_the_stored_bytes_changed(engine, settings, work):
    rid = make_request_at(engine, settings, RequestStatus.APPROVED, work=work)
    with transaction(engine) as s:
        sha = s.scalar(select(AirlockFile.sha256).where(AirlockFile.name == TABLE))
    assert sha is not None
    stored = settings.airlock_store_dir / sha[:2] / sha
    stored.chmod(0o600)
    stored.write_text("group,n\na,3\n")
    before = audit_count(engine)
    with pytest.raises(Conflict, match="has changed"):
        _in(engine, service.release, SYSTEM_ACTOR, settings, rid)
    assert _status(engine, rid)[0] == "approved"
    assert audit_count(engine) == before
    with transaction(engine) as s:
        assert s.scalar(select(func.count()).select_from(Release)) == 0


def test_airlock_failing_check_blocks_submit_until_an_exception_is_asked(engine, settings, work):
    rid = make_request_at(engine, settings, RequestStatus.PENDING, work=work)
    (work / RAGGED).write_text("group,n\na,15\nb\n")
    _in(engine, service.add_file, AUTHOR, settings, rid, root=work, relpath=RAGGED, group=GROUP)
    with pytest.raises(InvalidInput, match=f"{RAGGED} fails table_shape"):
        _in(engine, service.submit, AUTHOR, settings, rid)
    with pytest.raises(InvalidInput, match="does not fail the check 'size'"):
        _in(engine, service.ask_exception, AUTHOR, settings, rid, RAGGED, "size", "why")
    with pytest.raises(InvalidInput, match="justification must not be empty"):
        _in(engine, service.ask_exception, AUTHOR, settings, rid, RAGGED, "table_shape", "  ")
    _in(engine, service.ask_exception, AUTHOR, settings, rid, RAGGED, "table_shape", "a footnote")
    _in(engine, service.submit, AUTHOR, settings, rid)
    assert _status(engine, rid)[0] == "submitted"


def test_airlock_bad_input_leaves_the_request_unchanged_and_nothing_stored(engine, settings, work):
    rid = make_request_at(engine, settings, RequestStatus.PENDING, work=work)
    (work / "results" / "archive.csv").write_bytes(b"PK\x03\x04" + b"\0" * 40)
    before = audit_count(engine)
    stored = sorted(settings.airlock_store_dir.rglob("*"))
    for relpath in ("../etc/passwd", "/etc/passwd", "results/archive.csv", ".hidden.csv"):
        with pytest.raises(InvalidInput):
            _in(
                engine,
                service.add_file,
                AUTHOR,
                settings,
                rid,
                root=work,
                relpath=relpath,
                group=GROUP,
            )
    with pytest.raises(InvalidInput, match="control characters"):
        _in(engine, service.set_group_text, AUTHOR, settings, rid, GROUP, context="a\x1bb")
    assert audit_count(engine) == before
    assert sorted(settings.airlock_store_dir.rglob("*")) == stored
    with transaction(engine) as s:
        assert s.scalar(select(func.count()).select_from(AirlockFile)) == 2


def test_airlock_file_limit_per_request(engine, tmp_path, work):
    settings = airlock_settings(tmp_path / "small", max_files="2")
    rid = make_request_at(engine, settings, RequestStatus.PENDING, work=work)
    with pytest.raises(InvalidInput, match="already has 2 files"):
        _in(engine, service.add_file, AUTHOR, settings, rid, root=work, relpath=FIGURE, group=GROUP)
    # Replacing a file already in the request is not a new one.
    _in(engine, service.add_file, AUTHOR, settings, rid, root=work, relpath=TABLE, group=GROUP)


def test_airlock_roles_from_the_registry(engine, settings, work):
    rid = make_request_at(engine, settings, RequestStatus.SUBMITTED, work=work)
    with transaction(engine) as s:
        ensure_person(s, AUTHOR, "output_checker")
        ensure_person(s, "member")
        ensure_project(s, PROJECT, "member")
        ensure_person(s, "member", "output_checker")
        ensure_person(s, "aud", "auditor")
        ensure_person(s, "op", "operator")
        ensure_person(s, "stranger")
        ensure_person(s, "lapsed", "output_checker")
        registry.set_person_status(s, ACTOR, "lapsed", "suspended", "left the team")

    def roles(st: Settings) -> dict[str, Role]:
        with transaction(engine) as s:
            request = service.get_request(s, rid)
            names = (AUTHOR, "member", C1, "aud", "op", "stranger", "lapsed")
            return {n: role_of(s, st, n, request)[0] for n in names}

    assert roles(settings) == {
        AUTHOR: Role.AUTHOR,  # a checker too, but never of their own request
        "member": Role.PROJECT_MEMBER,  # a checker in the same project: not by default
        C1: Role.CHECKER,
        "aud": Role.AUDITOR,
        "op": Role.OPERATOR,
        "stranger": Role.NOBODY,
        "lapsed": Role.NOBODY,
    }
    assert (
        roles(airlock_settings(settings.home, project_members_may_review="true"))["member"]
        == Role.CHECKER
    )
    for who in (AUTHOR, "member", "aud", "op", "lapsed"):
        with pytest.raises(AccessDenied):
            _in(engine, service.vote, who, settings, rid, TABLE, Vote.APPROVE)
    with pytest.raises(AccessDenied, match="user is suspended"):
        _in(engine, service.vote, "lapsed", settings, rid, TABLE, Vote.APPROVE)
    with transaction(engine) as s:
        request = service.get_request(s, rid)
        assert can(s, settings, "aud", "view", request)
        assert not can(s, settings, "stranger", "view", request)
    # A researcher cannot open a request in a project they are not in, nor change another's.
    with pytest.raises(AccessDenied, match="not a member of project p1"):
        _in(engine, lambda s: service.create_request(s, "stranger", settings, project=PROJECT))
    with pytest.raises(AccessDenied):
        _in(engine, service.withdraw_request, "member", settings, rid)
    # The author's membership ends: their own request is closed to them at once.
    with transaction(engine) as s:
        registry.remove_member(s, ACTOR, PROJECT, AUTHOR)
    with pytest.raises(AccessDenied, match="not a member"):
        _in(engine, service.record_file_view, AUTHOR, settings, rid, TABLE)


def _race(engine: Engine, calls: list[Callable[[Any], Any]]) -> list[BaseException | None]:
    """Run each call in its own thread and transaction (own connection), released together."""
    barrier = threading.Barrier(len(calls))
    outcome: list[BaseException | None] = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        try:
            with transaction(engine) as s:
                calls[i](s)
        except BaseException as exc:
            outcome[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return outcome


def test_airlock_two_checkers_submitting_at_once_both_count(engine, settings, work):
    for _ in range(3):
        rid = make_request_at(engine, settings, RequestStatus.SUBMITTED, work=work)
        for checker in (C1, C2):
            _in(engine, service.vote, checker, settings, rid, TABLE, Vote.APPROVE)

        def review(checker: str, r: str = rid) -> Callable[[Any], Any]:
            return lambda s: service.submit_review(s, checker, settings, r)

        outcome = _race(engine, [review(C1), review(C2)])
        assert outcome == [None, None]
        assert _status(engine, rid) == ("reviewed", 2)
        with transaction(engine) as s:
            assert s.scalar(select(func.count()).where(Review.request_id == rid)) == 2


def test_airlock_double_release_and_retries_end_in_one_state(engine, settings, work):
    rid = make_request_at(engine, settings, RequestStatus.APPROVED, work=work)
    outcome = _race(
        engine, [lambda s: service.release(s, SYSTEM_ACTOR, settings, rid) for _ in range(2)]
    )
    assert sorted(type(o).__name__ for o in outcome) == ["Conflict", "NoneType"]
    assert _status(engine, rid)[0] == "released"
    with transaction(engine) as s:
        assert s.scalar(select(func.count()).select_from(Release)) == 1
    assert _events(engine, "airlock.request.release") == 1
    # A retried call finds the state moved on and changes nothing.
    before = audit_count(engine)
    with pytest.raises(Conflict, match="is released: cannot release"):
        _in(engine, service.release, SYSTEM_ACTOR, settings, rid)
    rid2 = make_request_at(engine, settings, RequestStatus.PARTIALLY_REVIEWED, work=work)
    before = audit_count(engine)
    with pytest.raises(Conflict, match="already submitted a review"):
        _in(engine, service.submit_review, C1, settings, rid2)
    assert _status(engine, rid2) == ("partially_reviewed", 2)
    assert audit_count(engine) == before


def test_airlock_ingress_request_needs_one_review(engine, tmp_path, work, clamd):
    settings = airlock_settings(tmp_path / "home", clamd_socket=clamd)  # ingress files scanned
    rid = make_request_at(
        engine, settings, RequestStatus.SUBMITTED, work=work, direction=Direction.INGRESS
    )
    _in(engine, service.vote, C1, settings, rid, TABLE, Vote.APPROVE)
    _in(engine, service.submit_review, C1, settings, rid)
    assert _status(engine, rid) == ("reviewed", 2)
    _in(engine, service.approve, C1, settings, rid)
    made = _in(engine, service.release, SYSTEM_ACTOR, settings, rid)
    assert made.record["request"]["direction"] == "ingress"
    assert [r["reviewer"] for r in made.record["reviews"]] == [C1]
    release_record.verify(service.signed_record(made), settings)


def test_airlock_egress_one_review_is_not_enough(engine, settings, work):
    rid = make_request_at(engine, settings, RequestStatus.PARTIALLY_REVIEWED, work=work)
    with pytest.raises(Conflict, match="cannot approve"):
        _in(engine, service.approve, C1, settings, rid)
    with transaction(engine) as s:
        request = s.get(AirlockRequest, rid)
        assert request is not None and request.status == RequestStatus.PARTIALLY_REVIEWED


def test_airlock_withdraw_file_only_while_the_author_holds_it(engine, settings, work):
    rid = make_request_at(engine, settings, RequestStatus.PENDING, work=work)
    _in(engine, service.withdraw_file, AUTHOR, settings, rid, NOTES)
    with pytest.raises(NotFound):
        _in(engine, service.withdraw_file, AUTHOR, settings, rid, NOTES)
    _in(engine, service.submit, AUTHOR, settings, rid)
    with pytest.raises(Conflict, match="cannot withdraw file"):
        _in(engine, service.withdraw_file, AUTHOR, settings, rid, TABLE)
    with pytest.raises(Conflict, match="cannot withdraw"):
        _in(engine, service.withdraw_request, AUTHOR, settings, rid)
