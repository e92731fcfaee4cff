"""Verifying the chain and its checkpoints."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, select, text

from sde.audit.chain import GENESIS, SEP, message_sql
from sde.audit.checkpoint import Checkpoint, CheckpointSigner, read_witness
from sde.audit.schema import audit_checkpoints

_BATCH = 20_000


@dataclass
class VerifyReport:
    ok: bool
    events: int
    head_seq: int
    checkpoints: int
    first_bad_seq: int | None = None
    problem: str | None = None
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        if self.ok:
            return (
                f"audit log intact: {self.events} events, head seq {self.head_seq}, "
                f"{self.checkpoints} checkpoint(s) verified"
            )
        return f"audit log TAMPERED: first bad seq {self.first_bad_seq}: {self.problem}"


def _scan_chain(
    engine: Engine, wanted: set[int]
) -> tuple[int, int, dict[int, str], tuple[int, str] | None]:
    """Walk the chain. Returns (events, head seq, hashes at wanted seqs, first failure)."""
    sql = text(
        f"SELECT seq, prev_hash, hash, {message_sql()} AS msg FROM audit_events ORDER BY seq"
    )
    sha256 = hashlib.sha256
    expected_seq, prev, count = 1, GENESIS, 0
    at: dict[int, str] = {}
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=_BATCH).execute(
            sql, {"sep": SEP}
        )
        for rows in result.partitions(_BATCH):
            for seq, prev_hash, h, msg in rows:
                if seq != expected_seq:
                    return (
                        count,
                        expected_seq - 1,
                        at,
                        (
                            expected_seq,
                            f"event {expected_seq} is missing (next is {seq})",
                        ),
                    )
                if prev_hash != prev:
                    return count, seq, at, (seq, "previous-hash link broken")
                if sha256(msg.encode()).hexdigest() != h:
                    return count, seq, at, (seq, "event content does not match its hash")
                if seq in wanted:
                    at[seq] = h
                prev = h
                expected_seq += 1
                count += 1
    return count, expected_seq - 1, at, None


def verify(engine: Engine, signer: CheckpointSigner, witness: Path) -> VerifyReport:
    """Check the chain, then every checkpoint (database copy and witness copy)."""
    with engine.connect() as conn:
        stored = [
            Checkpoint(**row._mapping)
            for row in conn.execute(select(audit_checkpoints).order_by(audit_checkpoints.c.seq))
        ]
    witnessed = read_witness(witness)
    all_cps = {(cp.seq, cp.hash, cp.signature): cp for cp in [*stored, *witnessed]}
    checkpoints = sorted(all_cps.values(), key=lambda cp: cp.seq)

    events, head, at, failure = _scan_chain(engine, {cp.seq for cp in checkpoints})
    report = VerifyReport(ok=True, events=events, head_seq=head, checkpoints=0)
    if failure is not None:
        report.ok, (report.first_bad_seq, report.problem) = False, failure
        return report

    public = signer.public_key()
    if public is None:
        if checkpoints:
            report.ok, report.first_bad_seq = False, checkpoints[0].seq
            report.problem = f"checkpoints exist but the public key {signer.public_path} is missing"
        else:
            report.warnings.append(
                "no checkpoints yet: truncation of the tail would not be detectable"
            )
        return report

    last_good = 0
    for cp in checkpoints:
        if not CheckpointSigner.valid(public, cp):
            report.ok, report.first_bad_seq = False, cp.seq
            report.problem = f"checkpoint at seq {cp.seq} has an invalid signature (forged)"
            return report
        if cp.seq > head:
            report.ok, report.first_bad_seq = False, head + 1
            report.problem = (
                f"chain ends at seq {head} but a signed checkpoint covers seq {cp.seq}: "
                "the tail was truncated"
            )
            return report
        if at.get(cp.seq) != cp.hash:
            report.ok, report.first_bad_seq = False, last_good + 1
            report.problem = (
                f"signed checkpoint at seq {cp.seq} does not match the chain: history after "
                f"seq {last_good} was rewritten"
            )
            return report
        last_good = cp.seq
        report.checkpoints += 1

    witnessed_keys = {(cp.seq, cp.hash, cp.signature) for cp in witnessed}
    missing = [cp for cp in stored if (cp.seq, cp.hash, cp.signature) not in witnessed_keys]
    if witnessed and missing:
        report.warnings.append(
            f"{len(missing)} checkpoint(s) in the database are not in the witness file {witness}"
        )
    stored_keys = {(cp.seq, cp.hash, cp.signature) for cp in stored}
    gone = [cp for cp in witnessed if (cp.seq, cp.hash, cp.signature) not in stored_keys]
    if gone:
        report.warnings.append(
            f"{len(gone)} witnessed checkpoint(s) are missing from the database table"
        )
    if checkpoints and checkpoints[-1].seq < head:
        report.warnings.append(
            f"events after seq {checkpoints[-1].seq} are not yet covered by a checkpoint"
        )
    return report
