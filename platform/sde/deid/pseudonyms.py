"""Keyed pseudonyms (HMAC-SHA256) under one secret kept outside the data.

Key hierarchy, all derived from the secret at `settings.pseudonym_key_path`:

- dataset key = HMAC(secret, "sde/dataset/<name>"): the dataset pseudonym of a source
  person id is stable across versions of one dataset and differs between datasets;
- project key = HMAC(secret, "sde/project/<slug>"): a project sees
  HMAC(project key, dataset pseudonym), so two projects cannot link their records;
- opt-out key = HMAC(secret, "sde/optout"): NHS numbers are only ever stored as
  HMAC(opt-out key, NHS number);
- date-shift key = HMAC(secret, "sde/dateshift/<name>"): per-person day offsets.

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

import pyarrow as pa

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


def optout_key(secret: bytes) -> bytes:
    return derive(secret, "sde/optout")


def dateshift_key(secret: bytes, dataset: str) -> bytes:
    return derive(secret, f"sde/dateshift/{dataset}")


def pseudonym(key: bytes, value: int) -> int:
    """The 63-bit pseudonym of one integer id."""
    digest = hmac.digest(key, value.to_bytes(8, "big", signed=True), "sha256")
    return int.from_bytes(digest[:8], "big") & _MASK63


def pseudonym_table(
    key: bytes, ids: pa.Array | pa.ChunkedArray, name: str = "pseudonym"
) -> pa.Table:
    """(id, pseudonym) for distinct int64 ids; raises if two ids share a pseudonym."""
    values = ids.to_pylist()
    digest = hmac.digest
    mask = _MASK63
    out = [
        int.from_bytes(digest(key, v.to_bytes(8, "big", signed=True), "sha256")[:8], "big") & mask
        for v in values
    ]
    if len(set(out)) != len(out):
        raise SdeError(
            "pseudonym collision: two people map to one pseudonym under this key; "
            "rotate the pseudonym key (this happens about once in 10^7 datasets)"
        )
    return pa.table({"id": pa.array(values, pa.int64()), name: pa.array(out, pa.int64())})


def text_hashes(key: bytes, values: Iterable[str]) -> list[str]:
    """Hex HMAC of each string (opt-out list entries)."""
    return [hmac.digest(key, v.encode(), "sha256").hex() for v in values]


def day_shifts(key: bytes, ids: pa.Array | pa.ChunkedArray, max_days: int) -> pa.Array:
    """A per-person offset in [-max_days, max_days] \\ {0} for each id (int32)."""
    span = 2 * max_days
    out = []
    for v in ids.to_pylist():
        n = int.from_bytes(hmac.digest(key, v.to_bytes(8, "big", signed=True), "sha256")[:8], "big")
        shift = n % span - max_days
        out.append(shift if shift < 0 else shift + 1)
    return pa.array(out, pa.int32())


def fingerprint(key: bytes) -> str:
    """A short public fingerprint of a key (for manifests): which key, never the key."""
    return hashlib.sha256(b"sde/fingerprint/" + key).hexdigest()[:16]
