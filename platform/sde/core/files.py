"""Files written whole or not at all, and their digests: one way for every component.

A reader (the hub, a workspace polling for its claim, the next `sde` command)
must never see half a file: each write goes to a temporary file beside the
target, private (0600) while it is written so that a secret is never readable by
others, given its final mode just before it is renamed over the target, which
POSIX makes atomic within one filesystem. On any error the temporary file is
removed and the target is left as it was.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sde.core.errors import SdeError


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's content, read in blocks (files can be many GB)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


@contextmanager
def replacing(
    path: Path, mode: int = 0o644, owner: tuple[int, int] | None = None
) -> Iterator[Path]:
    """A temporary path beside `path` to write; renamed over `path` when the block succeeds.

    The temporary file exists (empty, 0600) when the block starts, so a writer that
    only takes a path (pyarrow, DuckDB) can use it; it gets `mode` and `owner` only
    once written, just before the rename.
    """
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if owner is not None:
            os.chown(tmp, *owner)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(
    path: Path, data: bytes | str, mode: int = 0o644, owner: tuple[int, int] | None = None
) -> None:
    """Write `data` (text as UTF-8) to `path` whole or not at all (see `replacing`)."""
    with replacing(path, mode, owner) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)


def secret_file(path: Path, make: bytes | None = None) -> bytes:
    """Read a secret file, creating it 0600 (atomically) with `make` when absent.

    Unlike `write_atomic`, it never replaces a file: processes starting at once
    (the hub and its services) must all end up with the same key, the first one
    written.
    """
    if path.exists():
        return path.read_bytes().strip()
    if make is None:
        raise SdeError(f"secret file {path} does not exist")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(make)
    try:
        # link() fails when another process won the race; its key then wins.
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_bytes().strip()
