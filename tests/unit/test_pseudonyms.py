"""Keyed pseudonyms: the secret's creation and permissions, determinism, separation."""

from __future__ import annotations

import os
import stat

import duckdb
import numpy as np
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


def _sql(expr: str, ids: range) -> list:
    return [
        r[0]
        for r in duckdb.sql(f"SELECT {expr} FROM range({ids.start}, {ids.stop}) t(id)").fetchall()
    ]


def test_pseudonym_sql_equals_python_and_projects_differ():
    secret = b"k" * 32
    k1, k2 = ps.project_key(secret, "p1"), ps.project_key(secret, "p2")
    ids = range(-5, 1000)
    p1 = _sql(ps.pseudonym_sql(k1, "id"), ids)
    p2 = _sql(ps.pseudonym_sql(k2, "id"), ids)
    assert p1 == [ps.pseudonym(k1, i) for i in ids]
    assert not set(p1) & set(p2)
    assert len(set(p1)) == len(ids)


def test_pseudonym_hmac_sql_equals_hmac_of_text():
    key = b"o" * 32
    got = duckdb.sql(
        f"SELECT {ps.hmac_hex_sql(key, 'v')} FROM (VALUES ('9434765919'), ('é ü')) t(v)"
    ).fetchall()
    assert [g[0] for g in got] == ps.text_hashes(key, ["9434765919", "é ü"])


def test_pseudonym_collision_is_refused():
    con = duckdb.connect()
    con.execute("CREATE TABLE m AS SELECT * FROM (VALUES (1, 7), (2, 7)) t(id, pid)")
    with pytest.raises(SdeError, match="collision"):
        ps.check_unique(con, "m", "pid")
    con.execute("CREATE TABLE ok AS SELECT * FROM (VALUES (1, 7), (2, 8)) t(id, pid)")
    ps.check_unique(con, "ok", "pid")


def test_pseudonym_day_shifts_in_range_never_zero_and_match_python():
    key = b"d" * 32
    shifts = _sql(ps.day_shift_sql(key, "id", 30), range(0, 5000))
    assert all(-30 <= s <= 30 and s != 0 for s in shifts)
    assert len(set(shifts)) == 60
    assert shifts[:50] == [ps.day_shift(key, i, 30) for i in range(50)]


def test_pseudonym_fingerprint_does_not_contain_the_key():
    key = b"\x01" * 32
    assert key.hex() not in ps.fingerprint(key)
    assert len(ps.fingerprint(key)) == 16


# ------------------------------------------------------------------ row keys (sde.deid.rekey)

EDGES = [0, 1, -1, 2**63 - 1, -(2**63), 123456789, -987654321]


def test_rekey_permutation_matches_scalar_and_never_collides():
    from sde.deid import rekey

    key = ps.row_key(ps.project_key(b"r" * 32, "p1"), "ehr", "visit_occurrence")
    ids = np.array(list(range(-1000, 200_000)) + EDGES, dtype=np.int64)
    out = rekey.permute(key, ids)
    assert len(np.unique(out)) == len(np.unique(ids))  # a permutation: ids never collide
    assert [int(v) for v in out[-len(EDGES) :]] == [rekey.permute_one(key, v) for v in EDGES]
    assert int((out[:200_000] == ids[:200_000]).sum()) == 0


def test_rekey_sql_keeps_nulls_and_differs_between_projects_and_keyspaces():
    from sde.deid import rekey

    secret = b"r" * 32
    p1, p2 = ps.project_key(secret, "p1"), ps.project_key(secret, "p2")
    keys = {
        "p1 visits": ps.row_key(p1, "ehr", "visit_occurrence"),
        "p2 visits": ps.row_key(p2, "ehr", "visit_occurrence"),
        "p1 notes": ps.row_key(p1, "ehr", "notes"),
        "p1 other dataset": ps.row_key(p1, "other", "visit_occurrence"),
    }
    con = duckdb.connect()
    got = {}
    for i, (name, key) in enumerate(keys.items()):
        rekey.register(con, f"rk{i}", key)
        rows = con.execute(
            f"SELECT rk{i}(CASE WHEN range % 10 = 0 THEN NULL ELSE range END) FROM range(50000)"
        ).fetchall()
        assert [r[0] for r in rows[:20:10]] == [None, None]
        got[name] = {r[0] for r in rows if r[0] is not None}
        assert got[name] == {rekey.permute_one(key, v) for v in range(50000) if v % 10}
    con.close()
    names = list(got)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not got[a] & got[b], (a, b)
