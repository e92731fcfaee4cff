"""Content-addressed snapshots of files copied out of a workspace's work volume.

The airlock never takes bytes or paths from a client beyond the name the
researcher gives: it opens the file itself beneath the workspace's work
directory on the host, refusing anything that is not a plain, singly-linked,
visible file of an allowed type and size, and copies the bytes once, hashing
them as it goes, into `store/<sha256[:2]>/<sha256>` (read-only). What was
reviewed is then byte-for-byte what is released: `open_verified` re-hashes the
stored copy before it is used, and a change in the workspace after adding never
reaches the store. Every refusal is an `InvalidInput` naming the reason, raised
before anything is written to the store.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sde.core.config import Settings


@dataclass(frozen=True)
class Snapshot:
    """One stored file: the researcher's relative path and what was copied."""

    name: str  # the researcher's relative path, as normalised by copy_in
    sha256: str  # hex digest of the stored bytes (also their name in the store)
    size: int  # bytes
    media_type: str  # e.g. text/csv, image/png (from the allowed type of the name)


def copy_in(root: Path, relpath: str, store: Path, settings: Settings) -> Snapshot:
    """Copy `relpath` from beneath `root` into `store`; InvalidInput naming any refusal.

    Refused: `..` or absolute paths, symlinks (in any component), hard links,
    devices, FIFOs, sockets, dotfiles, control characters or look-alike Unicode
    in names, archives (by magic bytes), types outside `airlock.file_types`,
    files over `airlock.max_file_size`. Idempotent for the same content.
    """
    raise NotImplementedError


def stored_path(store: Path, sha256: str) -> Path:
    """Where the bytes with this digest live in the store."""
    return store / sha256[:2] / sha256


def open_verified(store: Path, sha256: str) -> Path:
    """The stored file for `sha256`, re-hashed first; NotFound if absent, Conflict if changed."""
    raise NotImplementedError
