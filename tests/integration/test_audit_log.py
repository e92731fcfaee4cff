"""The audit log: chain, append-only triggers, checkpoints, and tamper detection.

Each tamper test plays an attacker with full database rights: they drop the
append-only triggers first, then edit. `verify` must still name the first bad
sequence number.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from sde.audit import CheckpointSigner, EventIn, append_many, checkpoint, record, verify
from sde.audit.chain import GENESIS, PREV_SLICE, event_body, event_hash
from sde.audit.schema import append_only_ddl, drop_append_only_ddl
from sde.core.db import transaction


@pytest.fixture
def signer(tmp_path: Path) -> CheckpointSigner:
    return CheckpointSigner(tmp_path / "keys" / "audit.key")


@pytest.fixture
def witness(tmp_path: Path) -> Path:
    return tmp_path / "witness" / "checkpoints.jsonl"


def fill(engine: Engine, n: int, start: int = 0) -> None:
    with transaction(engine) as s:
        append_many(
            s,
            [
                EventIn(f"user{i % 3}", "test.event", f"thing:{start + i}", "p1", {"i": start + i})
                for i in range(n)
            ],
        )


def drop_triggers(engine: Engine) -> None:
    with engine.begin() as conn:
        for stmt in drop_append_only_ddl(engine.dialect.name):
            conn.exec_driver_sql(stmt)


def tamper(engine: Engine, sql: str, **params: object) -> None:
    drop_triggers(engine)
    with engine.begin() as conn:
        before = conn.execute(text("SELECT body FROM audit_events ORDER BY seq")).all()
        conn.execute(text(sql), params)
        after = conn.execute(text("SELECT body FROM audit_events ORDER BY seq")).all()
    assert before != after, "the tampering statement changed nothing"


def rehash_from(engine: Engine, start: int) -> None:
    """Recompute the chain from `start` on, as an attacker covering their tracks would."""
    with engine.begin() as conn:
        rows = conn.execute(
            text("SELECT seq, body FROM audit_events WHERE seq >= :s ORDER BY seq"), {"s": start}
        ).all()
        prev = (
            conn.execute(
                text("SELECT hash FROM audit_events WHERE seq = :s"), {"s": start - 1}
            ).scalar()
            or GENESIS
        )
        for seq, body in rows:
            body = body[: PREV_SLICE.start] + prev + body[PREV_SLICE.stop :]
            h = event_hash(body)
            conn.execute(
                text("UPDATE audit_events SET body = :b, hash = :h WHERE seq = :s"),
                {"b": body, "h": h, "s": seq},
            )
            prev = h


def test_audit_verify_intact_chain_passes(engine, signer, witness):
    fill(engine, 25)
    checkpoint(engine, signer, witness)
    report = verify(engine, signer, witness)
    assert report.ok, report.summary()
    assert report.events == 25 and report.head_seq == 25 and report.checkpoints == 1


def test_audit_record_hash_covers_every_field(engine):
    with transaction(engine) as s:
        record(s, actor="alice", action="x.y", target="t:1", project="p", details={"b": 2, "a": 1})
    with engine.connect() as conn:
        row = conn.execute(text("SELECT * FROM audit_events")).mappings().one()
    assert row["body"] == event_body(
        GENESIS, row["ts"], "alice", "x.y", "t:1", "p", {"a": 1, "b": 2}
    )
    assert row["body"].endswith(',"details":{"a":1,"b":2}}')
    assert row["hash"] == event_hash(row["body"])
    assert (row["actor"], row["action"], row["target"], row["project"]) == (
        "alice",
        "x.y",
        "t:1",
        "p",
    )


def test_audit_derived_columns_cannot_be_edited_apart_from_the_body(engine):
    fill(engine, 3)
    drop_triggers(engine)
    with pytest.raises(DBAPIError), engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET actor = 'mallory' WHERE seq = 2"))


def test_audit_record_rolls_back_with_its_transaction(engine):
    fill(engine, 3)
    with pytest.raises(RuntimeError), transaction(engine) as s:
        record(s, actor="a", action="b", target="c")
        raise RuntimeError("the write failed")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT max(seq) FROM audit_events")).scalar() == 3


def test_audit_record_rejects_line_breaks(engine):
    with pytest.raises(ValueError, match="control characters"), transaction(engine) as s:
        record(s, actor="a\nb", action="x", target="t")


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_events SET hash = 'x' WHERE seq = 2",
        "DELETE FROM audit_events WHERE seq = 2",
        "UPDATE audit_checkpoints SET hash = 'x'",
        "DELETE FROM audit_checkpoints",
    ],
)
def test_audit_triggers_refuse_update_and_delete(engine, signer, witness, statement):
    fill(engine, 3)
    checkpoint(engine, signer, witness)
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text(statement))


def test_audit_trigger_refuses_emptying_the_table(engine):
    # SQLite has no TRUNCATE; its unqualified DELETE is the same operation.
    fill(engine, 2)
    statement = (
        "TRUNCATE audit_events"
        if engine.dialect.name == "postgresql"
        else ("DELETE FROM audit_events")
    )
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text(statement))


def test_audit_verify_detects_edited_event(engine, signer, witness):
    fill(engine, 10)
    tamper(
        engine,
        "UPDATE audit_events SET body = replace(body, :a, :b) WHERE seq = 6",
        a='"i":5}',
        b='"i":999}',
    )
    report = verify(engine, signer, witness)
    assert not report.ok and report.first_bad_seq == 6
    assert "does not match its hash" in (report.problem or "")


def test_audit_verify_detects_edited_actor_column(engine, signer, witness):
    fill(engine, 10)
    tamper(
        engine,
        "UPDATE audit_events SET body = replace(body, :a, :b) WHERE seq = 3",
        a='"actor":"user2"',
        b='"actor":"someone-else"',
    )
    assert verify(engine, signer, witness).first_bad_seq == 3


def test_audit_verify_detects_deleted_event(engine, signer, witness):
    fill(engine, 10)
    tamper(engine, "DELETE FROM audit_events WHERE seq = 4")
    report = verify(engine, signer, witness)
    assert not report.ok and report.first_bad_seq == 4
    assert "missing" in (report.problem or "")


def test_audit_verify_detects_swapped_events(engine, signer, witness):
    fill(engine, 10)
    drop_triggers(engine)
    with engine.begin() as conn:
        rows = {
            r.seq: r
            for r in conn.execute(
                text("SELECT seq, body, hash FROM audit_events WHERE seq IN (5, 6)")
            )
        }
        for seq, other in ((5, 6), (6, 5)):
            conn.execute(
                text("UPDATE audit_events SET body = :b, hash = :h WHERE seq = :s"),
                {"b": rows[other].body, "h": rows[other].hash, "s": seq},
            )
    report = verify(engine, signer, witness)
    assert not report.ok and report.first_bad_seq == 5


def test_audit_verify_detects_truncated_tail(engine, signer, witness):
    fill(engine, 10)
    checkpoint(engine, signer, witness)
    tamper(engine, "DELETE FROM audit_events WHERE seq > 7")
    report = verify(engine, signer, witness)
    assert not report.ok and report.first_bad_seq == 8
    assert "truncated" in (report.problem or "")


def test_audit_verify_detects_truncated_tail_with_checkpoints_deleted(engine, signer, witness):
    """Deleting the database's checkpoints too does not help: the witness keeps a copy."""
    fill(engine, 10)
    checkpoint(engine, signer, witness)
    tamper(engine, "DELETE FROM audit_events WHERE seq > 7")
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_checkpoints"))
    report = verify(engine, signer, witness)
    assert not report.ok and report.first_bad_seq == 8


def test_audit_verify_detects_rewritten_chain(engine, signer, witness):
    fill(engine, 5)
    checkpoint(engine, signer, witness)
    fill(engine, 5, start=5)
    checkpoint(engine, signer, witness)
    tamper(
        engine,
        "UPDATE audit_events SET body = replace(body, :a, :b) WHERE seq = 8",
        a='"action":"test.event"',
        b='"action":"covered.up"',
    )
    rehash_from(engine, 8)
    # The chain alone now looks perfect ...
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM audit_events")).scalar() == 10
    report = verify(engine, signer, witness)
    # ... but the checkpoint at seq 10 disagrees; seq 5 still matches.
    assert not report.ok and report.first_bad_seq == 6
    assert "rewritten" in (report.problem or "")


def test_audit_verify_detects_forged_checkpoint(engine, signer, witness, tmp_path):
    fill(engine, 5)
    forger = CheckpointSigner(tmp_path / "other" / "key")
    forger.ensure()
    signer.ensure()
    checkpoint(engine, forger, witness)  # signed with the wrong key
    report = verify(engine, signer, witness)
    assert not report.ok and "invalid signature" in (report.problem or "")


def test_audit_concurrent_appends_keep_one_chain(engine, signer, witness):
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(15):
                with transaction(engine) as s:
                    record(s, actor=f"w{n}", action="t", target=f"x:{i}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    report = verify(engine, signer, witness)
    assert report.ok and report.events == 60


def test_audit_triggers_are_installed_by_migration(engine):
    # Re-creating them must fail because they exist already.
    with pytest.raises(DBAPIError), engine.begin() as conn:
        conn.exec_driver_sql(append_only_ddl(engine.dialect.name)[-1])
