"""Verifying the chain and its checkpoints."""

from __future__ import annotations

import contextlib
import hashlib
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, select, text

from sde.audit.chain import GENESIS, PREV_SLICE
from sde.audit.checkpoint import Checkpoint, CheckpointSigner, read_witness
from sde.audit.schema import audit_checkpoints

_BATCH = 5_000
# Smaller batches keep the server's work and Python's hashing overlapping.
_PG_BATCH = 2_000


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


def _first_missing(conn: Connection, head: int) -> int:
    """The lowest seq in 1..head that has no event."""
    if conn.execute(text("SELECT 1 FROM audit_events WHERE seq = 1")).first() is None:
        return 1
    gap = conn.execute(
        text(
            "SELECT min(a.seq) + 1 FROM audit_events a WHERE a.seq < :head AND NOT EXISTS "
            "(SELECT 1 FROM audit_events b WHERE b.seq = a.seq + 1)"
        ),
        {"head": head},
    ).scalar()
    return int(gap or head + 1)


def _locate(rows: list[Any], first_seq: int, prev: bytes) -> tuple[int, str]:
    """Within a batch known to be bad, the first bad event and what is wrong with it."""
    for i, (body, h) in enumerate(rows):
        seq = first_seq + i
        if bytes(body[PREV_SLICE]) != prev:
            return seq, "previous-hash link broken (an event before it was removed or replaced)"
        if hashlib.sha256(body).hexdigest() != h:
            return seq, "event content does not match its hash"
        prev = h.encode()
    return first_seq + len(rows), "the stored events do not split into whole events"


def _batches(conn: Connection, dialect: str, high: int) -> Iterator[tuple[list[bytes], str]]:
    """(bodies, concatenated hashes) of consecutive events, in seq order."""
    if dialect == "postgresql":
        # One aggregated value per batch: the driver's per-row cost would
        # otherwise dominate. Bodies never hold a raw newline (invalid JSON,
        # refused by the generated columns), so the newline splits them exactly.
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            for lo in range(1, high + 1, _PG_BATCH):
                cursor.execute(
                    "SELECT string_agg(body, E'\\n' ORDER BY seq), "
                    "string_agg(hash, '' ORDER BY seq) FROM audit_events "
                    "WHERE seq >= %s AND seq < %s",
                    (lo, lo + _PG_BATCH),
                )
                bodies, hashes = cursor.fetchone() or ("", "")
                yield bodies.encode().split(b"\n"), hashes
        finally:
            cursor.close()
        return
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    cursor.execute("SELECT CAST(body AS BLOB), hash FROM audit_events ORDER BY seq")
    try:
        while rows := cursor.fetchmany(_BATCH):
            yield [r[0] for r in rows], "".join([r[1] for r in rows])
    finally:
        cursor.close()


_DONE = object()


def _prefetched(batches: Iterator[tuple[list[bytes], str]]) -> Iterator[tuple[list[bytes], str]]:
    """Produce the next batch in a thread while the caller hashes this one.

    The database server (another process) builds batch k+1 while Python hashes
    batch k, so on two cores verification costs about max(read, hash), not the sum.
    SQLite runs in this process and gains nothing from it.
    """
    out: queue.Queue[Any] = queue.Queue(maxsize=2)

    def pump() -> None:
        try:
            for item in batches:
                out.put(item)
        except BaseException as exc:
            out.put(exc)
        out.put(_DONE)

    worker = threading.Thread(target=pump, name="sde-audit-verify-read", daemon=True)
    worker.start()
    try:
        while (item := out.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        # Drain so the reader finishes and releases its cursor.
        while worker.is_alive():
            with contextlib.suppress(queue.Empty):
                out.get(timeout=0.1)
        worker.join()


def _scan_chain(
    engine: Engine, wanted: set[int]
) -> tuple[int, int, dict[int, str], tuple[int, str] | None]:
    """Walk the chain. Returns (events, head seq, hashes at wanted seqs, first failure).

    Hot loop: a batch of bodies is hashed and compared as one joined string,
    and links are checked the same way, so Python does little per event.
    """
    sha256 = hashlib.sha256
    at: dict[int, str] = {}
    with engine.connect() as conn:
        count, low, high = conn.execute(
            text("SELECT count(*), min(seq), max(seq) FROM audit_events")
        ).one()
        if count == 0:
            return 0, 0, at, None
        if low != 1 or high != count:
            missing = _first_missing(conn, high)
            return count, high, at, (missing, f"event {missing} is missing")

        prev = GENESIS.encode()
        done = 0
        pending = sorted(wanted)
        batches = _batches(conn, engine.dialect.name, high)
        if engine.dialect.name != "sqlite":
            # Another process (the server) builds the batches: overlap it with hashing.
            batches = _prefetched(batches)
        for bodies, hashes in batches:
            hashes_b = hashes.encode()
            if (
                len(bodies) * 64 != len(hashes)
                or "".join([sha256(b).hexdigest() for b in bodies]) != hashes
                or b"".join([b[PREV_SLICE] for b in bodies]) != prev + hashes_b[:-64]
            ):
                rows = list(
                    zip(
                        bodies,
                        [hashes[i : i + 64] for i in range(0, len(hashes), 64)],
                        strict=False,
                    )
                )
                return done, high, at, _locate(rows, done + 1, prev)
            last = done + len(bodies)
            while pending and pending[0] <= last:
                seq = pending.pop(0)
                at[seq] = hashes[(seq - done - 1) * 64 : (seq - done) * 64]
            prev = hashes_b[-64:]
            done = last
    return done, high, at, None


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
