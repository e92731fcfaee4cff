"""Keyed pseudonyms (HMAC-SHA256) under one secret kept outside the data.

Key hierarchy, all derived from the secret at `settings.pseudonym_key_path`:

- dataset key = HMAC(secret, "sde/dataset/<name>"): the dataset pseudonym of a source
  person id is stable across versions of one dataset and differs between datasets;
- project key = HMAC(secret, "sde/project/<slug>"): a project sees
  HMAC(project key, dataset pseudonym), so two projects cannot link their records;
- opt-out key = HMAC(secret, "sde/optout"): NHS numbers are only ever stored as
  HMAC(opt-out key, NHS number);
- date-shift key = HMAC(secret, "sde/dateshift/<name>"): per-person day offsets;
- row key = HMAC(project key, "sde/rows/<dataset>/<keyspace>"): a project's own row ids
  (sde.deid.rekey), one key per table's key space, so that the same row has unrelated
  ids in two projects and ids of two tables are unrelated too.

Pseudonyms are 63-bit non-negative integers (the first 8 bytes of the HMAC with the
top bit cleared): they join and compress like the source ids. Callers check that a
mapping has no collision (about 1 in 10^7 at ten million people) and refuse to
publish if it does, rather than merge two people.

Only the process that ingests or provisions ever holds a key; keys never appear in a
published file or in a view definition.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sde.core.errors import ConfigError, SdeError

KEY_BYTES = 32
_MASK63 = (1 << 63) - 1


def load_or_create_secret(path: Path) -> bytes:
    """The pseudonymisation secret; created (0600, in a 0700 directory) on first use."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = None
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, secrets.token_bytes(KEY_BYTES))
            os.fsync(fd)
        except FileExistsError:
            pass  # another process created it first: use theirs
        finally:
            if fd is not None:
                os.close(fd)
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise ConfigError(
            f"pseudonym key {path} is readable by others (mode {mode:o}): chmod 600 it"
        )
    secret = path.read_bytes()
    if len(secret) < KEY_BYTES:
        raise ConfigError(f"pseudonym key {path} is shorter than {KEY_BYTES} bytes")
    return secret


def derive(secret: bytes, purpose: str) -> bytes:
    return hmac.digest(secret, purpose.encode(), "sha256")


def dataset_key(secret: bytes, dataset: str) -> bytes:
    return derive(secret, f"sde/dataset/{dataset}")


def project_key(secret: bytes, slug: str) -> bytes:
    return derive(secret, f"sde/project/{slug}")


def row_key(project_key: bytes, dataset: str, keyspace: str) -> bytes:
    return derive(project_key, f"sde/rows/{dataset}/{keyspace}")


def optout_key(secret: bytes) -> bytes:
    return derive(secret, "sde/optout")


def dateshift_key(secret: bytes, dataset: str) -> bytes:
    return derive(secret, f"sde/dateshift/{dataset}")


def pseudonym(key: bytes, value: int) -> int:
    """The 63-bit pseudonym of one integer id (its decimal text is the HMAC message)."""
    digest = hmac.digest(key, str(value).encode(), "sha256")
    return int.from_bytes(digest[:8], "big") & _MASK63


def text_hashes(key: bytes, values: Iterable[str]) -> list[str]:
    """Hex HMAC of each string (opt-out list entries)."""
    return [hmac.digest(key, v.encode(), "sha256").hex() for v in values]


def day_shift(key: bytes, value: int, max_days: int) -> int:
    """The offset in [-max_days, max_days] without 0 of one person id."""
    n = int.from_bytes(hmac.digest(key, str(value).encode(), "sha256")[:8], "big")
    shift = n % (2 * max_days) - max_days
    return shift if shift < 0 else shift + 1


# ------------------------------------------------------------------ vectorised (DuckDB)
#
# The same functions as DuckDB expressions, so that millions of ids are hashed by the
# database's own threads. HMAC is spelled out (RFC 2104) over DuckDB's sha256; the pads
# derived from the key appear only in the SQL text of the ingesting or provisioning
# process (never in a view, a table or a file).


def _pads(key: bytes) -> tuple[bytes, bytes]:
    block = (hashlib.sha256(key).digest() if len(key) > 64 else key).ljust(64, b"\0")
    return bytes(b ^ 0x36 for b in block), bytes(b ^ 0x5C for b in block)


def hmac_hex_sql(key: bytes, message_sql: str) -> str:
    """DuckDB expression: hex HMAC-SHA256(key, UTF-8 of the VARCHAR `message_sql`)."""
    inner, outer = _pads(key)
    return (
        f"sha256(unhex('{outer.hex()}') || "
        f"unhex(sha256(unhex('{inner.hex()}') || encode({message_sql}))))"
    )


def _first64_sql(key: bytes, id_sql: str) -> str:
    digest = hmac_hex_sql(key, f"CAST({id_sql} AS VARCHAR)")
    return f"CAST('0x' || left({digest}, 16) AS UBIGINT)"


def pseudonym_sql(key: bytes, id_sql: str) -> str:
    """DuckDB expression equal to `pseudonym(key, id)` for a BIGINT expression."""
    return f"CAST({_first64_sql(key, id_sql)} & {_MASK63} AS BIGINT)"


def day_shift_sql(key: bytes, id_sql: str, max_days: int) -> str:
    """DuckDB expression equal to `day_shift(key, id, max_days)` (INTEGER)."""
    raw = f"(CAST({_first64_sql(key, id_sql)} % {2 * max_days} AS INTEGER) - {max_days})"
    return f"CASE WHEN {raw} < 0 THEN {raw} ELSE {raw} + 1 END"


def check_unique(con: Any, table: str, column: str) -> None:
    """Refuse a mapping in which two people share a pseudonym."""
    rows = con.execute(f"SELECT count(*), count(DISTINCT {column}) FROM {table}").fetchall()
    if rows and rows[0][0] != rows[0][1]:
        raise SdeError(
            "pseudonym collision: two people map to one pseudonym under this key; "
            "rotate the pseudonym key (this happens about once in 10^7 datasets)"
        )


def fingerprint(key: bytes) -> str:
    """A short public fingerprint of a key (for manifests): which key, never the key."""
    return hashlib.sha256(b"sde/fingerprint/" + key).hexdigest()[:16]
