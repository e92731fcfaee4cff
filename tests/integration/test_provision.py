"""`sde projects provision`: only what is granted, project pseudonyms, opt-outs, atomic swap."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import duckdb
import pytest

from sde.core.db import transaction
from sde.core.errors import Conflict, SdeError
from sde.data import catalogue, connect
from sde.deid import pseudonyms as ps
from sde.ingest import optout
from sde.ingest.pipeline import IngestOptions, ingest
from sde.provision.build import provision
from sde.registry import service
from tests.support.registry import ACTOR, make_active_project, make_person


@pytest.fixture
def published(data_settings, engine, synthetic_source):
    """One published dataset `ehr` and two active projects p1, p2."""
    result = ingest(
        data_settings, engine, synthetic_source, "ehr", ACTOR, IngestOptions(reference_year=2025)
    )
    make_person(engine, "alice")
    make_active_project(engine, "p1", "alice")
    make_active_project(engine, "p2", "alice")
    return result


def _grant(engine, slug, *columns, version=None):
    with transaction(engine) as s:
        service.grant_access(
            s, ACTOR, slug=slug, dataset="ehr", version=version, columns=list(columns)
        )


def _q(data_dir: Path, sql: str):
    con = connect(data_dir)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_provision_materialises_only_granted_columns(data_settings, engine, published):
    _grant(engine, "p1", "person.sex", "person.age_band", "measurement.*")
    result = provision(data_settings, engine, "p1", ACTOR)
    data = data_settings.projects_dir / "p1" / "data"
    assert data.is_symlink() and result.data_dir == data
    files = sorted(str(p.relative_to(data)) for p in data.rglob("*.parquet"))
    assert files == ["ehr/measurement.parquet", "ehr/person.parquet"]
    person_cols = duckdb.sql(f"SELECT * FROM '{data / 'ehr' / 'person.parquet'}'").columns
    assert person_cols == ["age_band", "sex"]  # in published order
    rows = {(r["table"], r["column"]): r["description"] for r in catalogue(path=data)}
    assert set(t for t, _ in rows) == {"measurement", "person"}
    assert ("person", "postcode_district") not in rows
    assert rows[("person", "sex")]
    assert _q(data, "SELECT count(*) FROM person") == [(150,)]
    assert _q(data, "SELECT count(*) FROM ehr.measurement") == [
        (published.manifest["tables"]["measurement"]["rows"],)
    ]


def test_provision_two_projects_get_different_pseudonyms(data_settings, engine, published):
    _grant(engine, "p1", "person.*")
    _grant(engine, "p2", "person.*")
    provision(data_settings, engine, "p1", ACTOR)
    provision(data_settings, engine, "p2", ACTOR)
    dataset_ids = {
        r[0]
        for r in duckdb.sql(
            f"SELECT person_id FROM '{published.path / 'person.parquet'}'"
        ).fetchall()
    }
    p1 = {
        r[0] for r in _q(data_settings.projects_dir / "p1" / "data", "SELECT person_id FROM person")
    }
    p2 = {
        r[0] for r in _q(data_settings.projects_dir / "p2" / "data", "SELECT person_id FROM person")
    }
    assert len(p1) == len(p2) == 150
    assert not p1 & p2
    assert not p1 & dataset_ids and not p2 & dataset_ids
    # Same person, same other columns: only the pseudonym differs between the projects.
    q = "SELECT year_of_birth, sex, ethnicity, postcode_district FROM person ORDER BY ALL"
    assert _q(data_settings.projects_dir / "p1" / "data", q) == _q(
        data_settings.projects_dir / "p2" / "data", q
    )


ALL_TABLES = [
    f"{t}.*"
    for t in (
        "person",
        "observation_period",
        "visit_occurrence",
        "condition_occurrence",
        "drug_exposure",
        "measurement",
        "notes",
    )
]
ROW_IDS = {
    "person_id",
    "observation_period_id",
    "visit_occurrence_id",
    "condition_occurrence_id",
    "drug_exposure_id",
    "measurement_id",
    "note_id",
}


def _values(path: Path, column: str) -> list:
    return [r[0] for r in duckdb.sql(f"SELECT \"{column}\" FROM '{path}'").fetchall()]


def test_provision_two_projects_share_no_identifier_value(data_settings, engine, published):
    for slug in ("p1", "p2"):
        _grant(engine, slug, *ALL_TABLES)
        provision(data_settings, engine, slug, ACTOR)
    d1, d2 = (data_settings.projects_dir / s / "data" for s in ("p1", "p2"))
    checked, linking = set(), set()
    for table, meta in published.manifest["tables"].items():
        for col in (c["name"] for c in meta["columns"]):
            a = _values(d1 / "ehr" / f"{table}.parquet", col)
            b = set(_values(d2 / "ehr" / f"{table}.parquet", col))
            source = set(_values(published.path / meta["file"], col))
            if col.endswith("_id") and not col.endswith("_concept_id"):
                checked.add(col)
                shared = {v for v in a if v is not None} & (b | source)
                assert not shared, f"{table}.{col}: {len(shared)} values shared"
            if len(set(a)) == len(a) and not set(a).isdisjoint(b):
                linking.add(f"{table}.{col}")
    assert checked == ROW_IDS
    # The only column that still links rows 1:1 is content: scrubbed notes are the same
    # text in both projects (docs/safe-data.md, "What re-keying does not stop").
    assert linking == {"notes.note_text"}


def test_provision_joins_inside_a_project_match_the_dataset(data_settings, engine, published):
    _grant(engine, "p1", *ALL_TABLES)
    provision(data_settings, engine, "p1", ACTOR)
    joins = [
        (t, "visit_occurrence", "visit_occurrence_id")
        for t in ("condition_occurrence", "drug_exposure", "measurement")
    ] + [
        (t, "person", "person_id")
        for t in ("observation_period", "visit_occurrence", "measurement", "notes")
    ]
    sql = "SELECT count(*) FROM {a} JOIN {b} USING ({key})"
    for a, b, key in joins:
        src = [f"read_parquet('{published.path / (t + '.parquet')}')" for t in (a, b)]
        expected = duckdb.sql(sql.format(a=src[0], b=src[1], key=key)).fetchall()
        got = _q(data_settings.projects_dir / "p1" / "data", sql.format(a=a, b=b, key=key))
        assert got == expected and expected[0][0] > 0, (a, b, key)


def test_provision_refuses_unmarked_id_column_and_writes_nothing(data_settings, engine, published):
    import shutil

    from sde.ingest import manifest, publish

    doc = manifest.read(published.path)
    (col,) = [
        c for c in doc["tables"]["measurement"]["columns"] if c["name"] == "visit_occurrence_id"
    ]
    col.pop("identifier", None)
    col.pop("keyspace", None)
    doc["version"] = 2
    build = publish.build_dir(data_settings.datasets_dir / "ehr", "build")
    shutil.copytree(published.path, build, dirs_exist_ok=True, copy_function=shutil.copyfile)
    os.chmod(build, 0o755)
    os.chmod(build / "manifest.json", 0o644)
    digest = manifest.write(build, doc)
    publish.publish_version(
        data_settings,
        engine,
        ACTOR,
        build=build,
        dataset="ehr",
        version=2,
        manifest_hash=digest,
        tables={t: [c["name"] for c in v["columns"]] for t, v in doc["tables"].items()},
        details={},
        description="",
        classification="pseudonymised",
    )
    _grant(engine, "p1", "person.*", "measurement.*", version=2)
    with pytest.raises(SdeError, match=r"measurement\.visit_occurrence_id .*neither"):
        provision(data_settings, engine, "p1", ACTOR)
    assert not (data_settings.projects_dir / "p1").exists()


def test_provision_workspace_manifest_has_no_operator_or_small_counts(
    data_settings, engine, published, synthetic_source, tmp_path
):
    import dataclasses
    import hashlib

    from sqlalchemy import select

    from sde.audit.schema import audit_events

    _grant(engine, "p1", "person.sex")
    with open(synthetic_source / "identifiers.csv", newline="") as f:
        numbers = [r["nhs_number"] for r in list(csv.DictReader(f))[:4]]
    listed = tmp_path / "optout.txt"
    listed.write_text("\n".join(numbers) + "\n")
    with transaction(engine) as s:
        optout.load_list(s, ACTOR, data_settings, listed)
    result = provision(data_settings, engine, "p1", ACTOR)
    mounted = (data_settings.projects_dir / "p1" / "data" / "manifest.json").read_bytes()
    doc = json.loads(mounted)
    assert ACTOR.encode() not in mounted and "created_by" not in doc
    assert doc["optout"]["removed_persons"] == {"ehr@1": "<10"}
    assert hashlib.sha256(mounted).hexdigest() == result.manifest_hash
    # The operator's side keeps the exact figures: the result and the audit event.
    assert result.manifest["optout"]["removed_persons"] == {"ehr@1": 4}
    with engine.connect() as conn:
        bodies = [json.loads(b) for b in conn.execute(select(audit_events.c.body)).scalars()]
    (event,) = [b for b in bodies if b["action"] == "project.provision"]
    assert event["actor"] == ACTOR
    assert event["details"]["optout"]["removed_persons"] == {"ehr@1": 4}
    # At the threshold a count is no longer small: shown as it is.
    settings = dataclasses.replace(
        data_settings, data=dataclasses.replace(data_settings.data, small_count_threshold=4)
    )
    provision(settings, engine, "p1", ACTOR)
    doc = json.loads((data_settings.projects_dir / "p1" / "data" / "manifest.json").read_bytes())
    assert doc["optout"]["removed_persons"] == {"ehr@1": 4}


def test_provision_project_dir_holds_no_key_material(data_settings, engine, published):
    _grant(engine, "p1", "person.*", "notes.*")
    provision(data_settings, engine, "p1", ACTOR)
    secret = data_settings.pseudonym_key_path.read_bytes()
    keys = [
        secret,
        ps.project_key(secret, "p1"),
        ps.dataset_key(secret, "ehr"),
        ps.optout_key(secret),
    ]
    needles = [k for key in keys for k in (key, key.hex().encode(), key.hex().upper().encode())]
    root = data_settings.projects_dir / "p1"
    scanned = 0
    for path in root.rglob("*"):
        if path.is_file():
            blob = path.read_bytes()
            scanned += 1
            assert not any(n in blob for n in needles), f"key material in {path}"
    assert scanned >= 3
    assert not any("linkage" in str(p) for p in root.rglob("*"))
    views = _q(root / "data", "SELECT sql FROM duckdb_views() WHERE NOT internal")
    assert all("read_parquet('ehr/" in v[0] for v in views)


def test_provision_applies_optout_unless_exempt(
    data_settings, engine, published, synthetic_source, tmp_path
):
    _grant(engine, "p1", "person.*", "notes.note_text")
    with open(synthetic_source / "identifiers.csv", newline="") as f:
        numbers = [r["nhs_number"] for r in list(csv.DictReader(f))[:4]]
    listed = tmp_path / "optout.txt"
    listed.write_text("\n".join(numbers) + "\n")
    with transaction(engine) as s:
        optout.load_list(s, ACTOR, data_settings, listed)
    result = provision(data_settings, engine, "p1", ACTOR)
    data = data_settings.projects_dir / "p1" / "data"
    assert _q(data, "SELECT count(*) FROM person") == [(146,)]
    assert result.manifest["optout"]["removed_persons"] == {"ehr@1": 4}
    assert result.manifest["optout"]["list_version"] == 1
    notes_total = published.manifest["tables"]["notes"]["rows"]
    assert _q(data, "SELECT count(*) FROM notes")[0][0] <= notes_total

    with transaction(engine) as s:
        optout.exempt(s, ACTOR, "p1", "s251 approval CAG 1-2-3")
    exempt = provision(data_settings, engine, "p1", ACTOR)
    assert _q(data, "SELECT count(*) FROM person") == [(150,)]
    assert exempt.manifest["optout"]["exempt"] is True

    with transaction(engine) as s:
        optout.revoke_exemption(s, ACTOR, "p1", "approval lapsed")
    provision(data_settings, engine, "p1", ACTOR)
    assert _q(data, "SELECT count(*) FROM person") == [(146,)]


def test_provision_swaps_atomically_and_keeps_one_previous_build(data_settings, engine, published):
    _grant(engine, "p1", "person.sex")
    first = provision(data_settings, engine, "p1", ACTOR)
    con = connect(data_settings.projects_dir / "p1" / "data")
    second = provision(data_settings, engine, "p1", ACTOR)
    # A reader that opened the previous data keeps a consistent view of it.
    assert con.execute("SELECT count(*) FROM person").fetchall() == [(150,)]
    con.close()
    third = provision(data_settings, engine, "p1", ACTOR)
    link = data_settings.projects_dir / "p1" / "data"
    assert os.readlink(link).endswith(third.build.name)
    builds = sorted(p.name for p in (data_settings.projects_dir / "p1" / "builds").iterdir())
    assert builds == sorted([second.build.name, third.build.name])
    assert first.build.name not in builds


def test_provision_second_run_of_same_project_is_refused_while_first_runs(
    data_settings, engine, published
):
    import fcntl

    _grant(engine, "p1", "person.sex")
    first = provision(data_settings, engine, "p1", ACTOR)
    root = data_settings.projects_dir / "p1"
    # Another run holds the project's lock (as `sde projects provision p1` would).
    with open(root / ".provision.lock", "w") as other:
        fcntl.flock(other, fcntl.LOCK_EX)
        with pytest.raises(Conflict, match="being provisioned by another run"):
            provision(data_settings, engine, "p1", ACTOR)
    assert [p.name for p in (root / "builds").iterdir()] == [first.build.name]
    assert os.readlink(root / "data").endswith(first.build.name)
    assert provision(data_settings, engine, "p1", ACTOR).build != first.build


@pytest.mark.docker
def test_provision_keeps_builds_mounted_by_running_workspaces(
    data_settings, engine, published, workspace_image
):
    import dataclasses

    import docker

    from sde.workspaces import pool
    from tests.conftest import require_service

    require_service("root (mounts)", os.geteuid() == 0, "slot mounts need root")
    settings = dataclasses.replace(
        data_settings,
        hub=dataclasses.replace(data_settings.hub, docker=True, name="sdetestprov"),
        workspaces=dataclasses.replace(
            data_settings.workspaces, pool_dir=str(data_settings.home / "run")
        ),
    )
    builds = settings.projects_dir / "p1" / "builds"
    _grant(engine, "p1", "person.sex")
    client = docker.from_env()
    pool.prepare_host(settings)
    slot = pool.new_slot(settings)
    container = None
    try:
        # A cold workspace (Docker bind mount) on the first build, a warm one (slot
        # mount) on the second; then three more provisions.
        cold = provision(settings, engine, "p1", ACTOR).build
        container = client.containers.run(
            workspace_image,
            ["sleep", "300"],
            detach=True,
            network_mode="none",
            volumes={str(cold): {"bind": "/data", "mode": "ro"}},
        )
        warm = provision(settings, engine, "p1", ACTOR).build
        pool.attach(settings, slot, warm, slot.data, read_only=True)
        for _ in range(3):
            last = provision(settings, engine, "p1", ACTOR).build
        kept = {p.name for p in builds.iterdir()}
        assert {cold.name, warm.name, last.name} <= kept and len(kept) == 4
        # Both workspaces gone: the next provision prunes their builds.
        container.remove(force=True)
        container = None
        pool.release(settings, slot.name)
        newest = provision(settings, engine, "p1", ACTOR).build
        assert {p.name for p in builds.iterdir()} == {last.name, newest.name}
    finally:
        if container is not None:
            container.remove(force=True)
        pool.release(settings, slot.name)
        pool.teardown_host(settings)


def test_provision_is_audited_with_manifest_hash(data_settings, engine, published):
    from sqlalchemy import select

    from sde.audit.schema import audit_events

    _grant(engine, "p1", "person.sex")
    result = provision(data_settings, engine, "p1", ACTOR)
    with engine.connect() as conn:
        bodies = [json.loads(b) for b in conn.execute(select(audit_events.c.body)).scalars()]
    (event,) = [b for b in bodies if b["action"] == "project.provision"]
    assert event["project"] == "p1"
    assert event["details"]["manifest_sha256"] == result.manifest_hash
    assert event["details"]["datasets"][0]["manifest_sha256"] == published.manifest_hash


def test_provision_refuses_tampered_dataset_version(data_settings, engine, published):
    _grant(engine, "p1", "person.sex")
    target = published.path / "person.parquet"
    os.chmod(published.path, 0o755)
    os.chmod(target, 0o644)
    target.write_bytes(target.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(SdeError, match="does not match"):
        provision(data_settings, engine, "p1", ACTOR)
    assert not (data_settings.projects_dir / "p1" / "data").exists()


def test_provision_without_grants_or_inactive_project_is_refused(data_settings, engine, published):
    with pytest.raises(SdeError, match="no dataset grants"):
        provision(data_settings, engine, "p1", ACTOR)
    _grant(engine, "p2", "person.sex")
    with transaction(engine) as s:
        service.close_project(s, ACTOR, "p2", "done")
    with pytest.raises(Conflict, match="closed"):
        provision(data_settings, engine, "p2", ACTOR)


def test_provision_cli_and_catalogue(sde_home, synthetic_source, capsys):
    from tests.support.cli import run_sde

    assert run_sde(capsys, "ingest", str(synthetic_source), "--dataset", "ehr").code == 0
    assert (
        run_sde(
            capsys,
            "projects",
            "create",
            "p1",
            "--title",
            "P",
            "--start",
            "2020-01-01",
            "--end",
            "2099-01-01",
        ).code
        == 0
    )
    assert (
        run_sde(
            capsys,
            "projects",
            "approve",
            "p1",
            "--approval-ref",
            "R",
            "--signed-off-by",
            "C",
            "--signed-off-on",
            "2020-01-01",
        ).code
        == 0
    )
    assert run_sde(capsys, "projects", "activate", "p1").code == 0
    assert run_sde(capsys, "datasets", "grant", "p1", "ehr", "-c", "person.*").code == 0
    out = run_sde(capsys, "projects", "provision", "p1")
    assert out.code == 0, out.err
    assert "ehr.person" in out.out
    cat = run_sde(capsys, "data", "catalogue", "--project", "p1", "--json")
    assert cat.code == 0
    rows = json.loads(cat.out)
    assert {r["column"] for r in rows} >= {"person_id", "age_band", "postcode_district"}
    missing = run_sde(capsys, "data", "catalogue", "--project", "nope")
    assert missing.code == 2 and "error: no project data" in missing.err


def test_provision_workspace_catalogue_command(
    data_settings, engine, published, capsys, monkeypatch
):
    from sde.data.cli import main

    _grant(engine, "p1", "person.sex", "person.age_band")
    provision(data_settings, engine, "p1", ACTOR)
    monkeypatch.setenv("SDE_DATA_DIR", str(data_settings.projects_dir / "p1" / "data"))
    assert main(["catalogue"]) == 0
    out = capsys.readouterr().out
    assert "ehr.person: One row per person." in out
    assert "age_band" in out and "postcode_district" not in out
    monkeypatch.setenv("SDE_DATA_DIR", str(data_settings.projects_dir / "nope"))
    assert main(["catalogue"]) == 2
    assert "no project data" in capsys.readouterr().err
