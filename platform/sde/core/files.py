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
