"""Whole-or-nothing writes and file digests (sde.core.files)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from sde.core.files import replacing, sha256_file, write_atomic


def test_files_sha256_is_the_digest_of_the_content(tmp_path: Path) -> None:
    data = bytes(range(256)) * 5000  # more than one read block
    (tmp_path / "f").write_bytes(data)
    assert sha256_file(tmp_path / "f") == hashlib.sha256(data).hexdigest()


def test_files_write_atomic_replaces_with_the_mode_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_text("old")
    write_atomic(target, '{"new": 1}', mode=0o600)
    assert target.read_text() == '{"new": 1}'
    assert target.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_files_failed_write_leaves_the_target_as_it_was(tmp_path: Path) -> None:
    target = tmp_path / "list.parquet"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), replacing(target, mode=0o440) as tmp:
        tmp.write_bytes(b"half")
        assert tmp.stat().st_mode & 0o777 == 0o600  # private while written
        raise RuntimeError("writer failed")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["list.parquet"]
