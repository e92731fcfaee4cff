"""Checkpoints signed by writers that commit at the same instant, on SQLite and PostgreSQL.

Every audited write signs the head once it has committed (`audited_transaction`
calls `sign_head`), so concurrent writers race to checkpoint the same head. On
PostgreSQL both can find it unsigned and insert the same sequence number; the
loser's write had already committed, so it must not fail (the airlock answered
500 for a committed step before, found by benchmarks/airlock.py).
"""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import func, select

from sde.audit import CheckpointSigner, EventIn, append_many, checkpoint
from sde.audit.schema import audit_checkpoints
from sde.core.db import transaction


def test_audit_checkpoint_of_one_head_by_racing_writers_signs_it_once(engine, tmp_path: Path):
    signer = CheckpointSigner(tmp_path / "keys" / "audit.key")
    witness = tmp_path / "witness" / "checkpoints.jsonl"
    signer.ensure()
    failures: list[BaseException] = []
    for round_ in range(5):
        with transaction(engine) as s:
            append_many(s, [EventIn("user", "test.event", f"thing:{round_}", "p1", {})])
        start = threading.Barrier(8)

        def sign(start: threading.Barrier = start) -> None:
            start.wait()
            try:
                checkpoint(engine, signer, witness)
            except BaseException as exc:
                failures.append(exc)

        threads = [threading.Thread(target=sign) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not failures, failures[0]
    with engine.connect() as conn:
        seqs = list(conn.scalars(select(audit_checkpoints.c.seq).order_by(audit_checkpoints.c.seq)))
        assert seqs == [1, 2, 3, 4, 5]
        assert conn.scalar(select(func.count()).select_from(audit_checkpoints)) == 5
    assert len(witness.read_text().splitlines()) == 5
