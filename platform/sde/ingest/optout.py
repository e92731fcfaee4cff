"""National Data Opt-Out: versioned lists of keyed NHS-number hashes, per-project exemptions.

What is stored: never an NHS number. `load_list` reads the file of NHS numbers as
received, checks each one, and keeps only HMAC(opt-out key, NHS number) (see
sde.deid.pseudonyms), sorted, in `$SDE_HOME/optout/vNNNN.parquet`; the state
database records the version, its size and hashes, and the audit log the load.
Ingest computes the same keyed hash for every source person and removes matches;
each dataset version keeps (dataset pseudonym, keyed hash) pairs in its private
`_linkage/` folder so that provisioning can apply a newer list without the source.

Each load is a complete list (the national service sends whole lists), so the
newest version is the one that applies.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sde.audit import record, write_operation
from sde.core.config import Settings
from sde.core.errors import Conflict, NotFound, SdeError
from sde.core.files import replacing, sha256_file
from sde.deid.generalise import nhs_number_valid, normalise_nhs_number
from sde.deid.pseudonyms import load_or_create_secret, optout_key, text_hashes
from sde.ingest.models import OptOutExemption, OptOutList
from sde.registry import validate
from sde.registry.service import get_project


def optout_dir(settings: Settings) -> Path:
    return settings.home / "optout"


@dataclass(frozen=True)
class ParsedList:
    hashes: list[str]
    source_sha256: str
    lines: int


def parse_file(path: Path, key: bytes) -> ParsedList:
    """Read NHS numbers, one per line (optional header `nhs_number`); hash them at once."""
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"opt-out file {path} does not exist")
    raw = path.read_bytes()
    if not raw:
        raise SdeError(f"{path}: file is empty (zero bytes): expected one NHS number per line")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        bad_line = raw[: exc.start].count(b"\n") + 1
        raise SdeError(f"{path}: line {bad_line}: not UTF-8 text") from None
    numbers: set[str] = set()
    lines = text.splitlines()
    for number, entry in enumerate(lines, start=1):
        value = entry.strip().strip('"').strip()
        if not value or (number == 1 and value.lower() in {"nhs_number", "nhs number"}):
            continue
        normalised = normalise_nhs_number(value)
        if not nhs_number_valid(normalised):
            # The value itself is not echoed: it may be a real (mistyped) NHS number.
            raise SdeError(f"{path}: line {number}: not a valid NHS number (10 digits, mod 11)")
        numbers.add(normalised)
    hashes = sorted(text_hashes(key, numbers))
    return ParsedList(hashes, hashlib.sha256(raw).hexdigest(), len(lines))


def current_list(session: Session) -> OptOutList | None:
    return session.scalar(select(OptOutList).order_by(OptOutList.version.desc()).limit(1))


def read_hashes(entry: OptOutList) -> pa.Table:
    """The keyed hashes of one list version (column `nhs_hash`), checked against the registry."""
    path = Path(entry.path)
    if not path.is_file():
        raise NotFound(f"opt-out list v{entry.version} file {path} is missing")
    if sha256_file(path) != entry.list_sha256:
        raise SdeError(
            f"opt-out list v{entry.version} file {path} does not match its recorded hash"
        )
    return pq.read_table(path)


@write_operation("optout.list.load")
def load_list(session: Session, actor: str, settings: Settings, path: Path) -> OptOutList:
    """Store a new opt-out list version from a file of NHS numbers; nothing is kept on error."""
    key = optout_key(load_or_create_secret(settings.pseudonym_key_path))
    parsed = parse_file(path, key)
    latest = session.scalar(select(func.max(OptOutList.version))) or 0
    version = latest + 1
    folder = optout_dir(settings)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = folder / f"v{version:04d}.parquet"
    if target.exists():
        # Left by a load whose transaction did not commit: no row refers to it.
        target.unlink()
    with replacing(target, mode=0o440) as tmp:
        pq.write_table(
            pa.table({"nhs_hash": pa.array(parsed.hashes, pa.string())}), tmp, compression="zstd"
        )
    entry = OptOutList(
        version=version,
        entries=len(parsed.hashes),
        list_sha256=sha256_file(target),
        source_sha256=parsed.source_sha256,
        path=str(target),
        loaded_at=datetime.now(UTC),
        loaded_by=actor,
    )
    session.add(entry)
    session.flush()
    record(
        session,
        actor=actor,
        target=f"optout:v{version}",
        details={
            "entries": entry.entries,
            "list_sha256": entry.list_sha256,
            "source_sha256": entry.source_sha256,
            "source_file": str(path),
        },
    )
    return entry


def is_exempt(session: Session, slug: str) -> OptOutExemption | None:
    return session.get(OptOutExemption, slug)


@write_operation("optout.exempt")
def exempt(session: Session, actor: str, slug: str, reason: str) -> OptOutExemption:
    """Let a project see opted-out people (its legal basis goes in `reason`)."""
    get_project(session, slug)
    reason = validate.text("reason", reason, 2000)
    if session.get(OptOutExemption, slug) is not None:
        raise Conflict(f"project {slug} is already exempt from the opt-out")
    row = OptOutExemption(
        project_slug=slug, reason=reason, granted_by=actor, granted_at=datetime.now(UTC)
    )
    session.add(row)
    record(
        session,
        actor=actor,
        target=f"project:{slug}",
        project=slug,
        details={"reason": reason},
    )
    return row


@write_operation("optout.exempt.revoke")
def revoke_exemption(session: Session, actor: str, slug: str, reason: str) -> None:
    get_project(session, slug)
    reason = validate.text("reason", reason, 2000)
    row = session.get(OptOutExemption, slug)
    if row is None:
        raise NotFound(f"project {slug} has no opt-out exemption")
    session.delete(row)
    record(
        session,
        actor=actor,
        target=f"project:{slug}",
        project=slug,
        details={"reason": reason, "granted_reason": row.reason},
    )
