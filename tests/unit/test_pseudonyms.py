"""Keyed pseudonyms: the secret's creation and permissions, determinism, separation."""

from __future__ import annotations

import os
import stat

import pyarrow as pa
import pytest

from sde.core.errors import ConfigError, SdeError
from sde.deid import pseudonyms as ps


def test_pseudonym_key_created_0600_on_first_use(tmp_path):
    path = tmp_path / "keys" / "pseudonym.key"
    secret = ps.load_or_create_secret(path)
    assert len(secret) == ps.KEY_BYTES
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert ps.load_or_create_secret(path) == secret


def test_pseudonym_key_readable_by_others_is_refused(tmp_path):
    path = tmp_path / "pseudonym.key"
    ps.load_or_create_secret(path)
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        ps.load_or_create_secret(path)


def test_pseudonym_short_key_is_refused(tmp_path):
    path = tmp_path / "pseudonym.key"
    path.write_bytes(b"short")
    os.chmod(path, 0o600)
    with pytest.raises(ConfigError, match="shorter"):
        ps.load_or_create_secret(path)


def test_pseudonym_deterministic_per_key_and_differs_between_keys():
    secret = b"s" * 32
    a, b = ps.dataset_key(secret, "ehr"), ps.dataset_key(secret, "other")
    assert ps.pseudonym(a, 42) == ps.pseudonym(a, 42)
    assert ps.pseudonym(a, 42) != ps.pseudonym(b, 42)
    assert ps.pseudonym(a, 42) != ps.pseudonym(a, 43)
    assert 0 <= ps.pseudonym(a, 42) < 2**63


def test_pseudonym_table_matches_scalar_and_projects_differ():
    secret = b"k" * 32
    ids = pa.array(range(1, 1001), pa.int64())
    p1 = ps.pseudonym_table(ps.project_key(secret, "p1"), ids, "pid")
    p2 = ps.pseudonym_table(ps.project_key(secret, "p2"), ids, "pid")
    assert p1.column("pid")[0].as_py() == ps.pseudonym(ps.project_key(secret, "p1"), 1)
    assert not set(p1.column("pid").to_pylist()) & set(p2.column("pid").to_pylist())
    assert len(set(p1.column("pid").to_pylist())) == 1000


def test_pseudonym_table_collision_is_refused(monkeypatch):
    monkeypatch.setattr(ps.hmac, "digest", lambda key, msg, alg: b"\x00" * 32)
    with pytest.raises(SdeError, match="collision"):
        ps.pseudonym_table(b"x" * 32, pa.array([1, 2], pa.int64()))


def test_pseudonym_day_shifts_in_range_and_never_zero():
    shifts = ps.day_shifts(b"d" * 32, pa.array(range(5000), pa.int64()), 30).to_pylist()
    assert all(-30 <= s <= 30 and s != 0 for s in shifts)
    assert len(set(shifts)) == 60


def test_pseudonym_fingerprint_does_not_contain_the_key():
    key = b"\x01" * 32
    assert key.hex() not in ps.fingerprint(key)
    assert len(ps.fingerprint(key)) == 16
