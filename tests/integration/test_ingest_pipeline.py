"""`sde ingest` end to end on a small synthetic source, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path

import duckdb
import pytest
from sqlalchemy import select

from sde.audit.schema import audit_events
from sde.core.db import transaction
from sde.ingest import optout
from sde.ingest.pipeline import IngestOptions, ingest
from sde.registry import service
from sde.registry.models import DatasetVersion
from tests.support.registry import ACTOR


def _run(settings, engine, source, **options):
    return ingest(
        settings, engine, source, "ehr", ACTOR, IngestOptions(reference_year=2025, **options)
    )


def _events(engine, action):
    with engine.connect() as conn:
        rows = conn.execute(select(audit_events.c.body).order_by(audit_events.c.seq)).scalars()
        return [json.loads(b) for b in rows if json.loads(b)["action"] == action]


def _identifiers(source: Path) -> list[dict[str, str]]:
    with open(source / "identifiers.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_ingest_publishes_immutable_version_with_manifest_and_audit(
    data_settings, engine, synthetic_source
):
    result = _run(data_settings, engine, synthetic_source)
    folder = result.path
    assert folder == data_settings.datasets_dir / "ehr" / "v1"
    names = sorted(p.name for p in folder.glob("*.parquet"))
    assert "identifiers.parquet" not in names
    assert "person.parquet" in names and "notes.parquet" in names
    manifest_bytes = (folder / "manifest.json").read_bytes()
    assert hashlib.sha256(manifest_bytes).hexdigest() == result.manifest_hash
    m = json.loads(manifest_bytes)
    for rel, entry in m["files"].items():
        assert hashlib.sha256((folder / rel).read_bytes()).hexdigest() == entry["sha256"]
    assert {e["step"] for e in m["transformations"]} >= {
        "drop",
        "generalise",
        "pseudonymise",
        "optout",
        "scrub_free_text",
        "drop_table",
    }
    assert m["optout"] == {"list_version": None, "removed_persons": 0}
    assert m["k_anonymity"]["before"]["quasi_identifiers"] == list(
        data_settings.data.quasi_identifiers
    )
    assert m["free_text"]["entities"]["NHS_NUMBER"] > 0
    assert m["source"]["files"]["person.csv"]["rows"] == 150
    # Published files cannot be changed in place.
    assert not ((folder / "person.parquet").stat().st_mode & 0o222)
    with transaction(engine) as s:
        dv = service.get_dataset_version(s, "ehr", 1)
        assert dv.manifest_hash == result.manifest_hash
        assert "day_of_birth" not in dv.tables["person"]
    (event,) = _events(engine, "dataset.version.publish")
    assert event["details"]["manifest_sha256"] == result.manifest_hash
    # No leftovers of the build.
    assert [p.name for p in (data_settings.datasets_dir / "ehr").iterdir()] == ["v1"]


def test_ingest_person_table_is_generalised_and_pseudonymised(
    data_settings, engine, synthetic_source
):
    result = _run(data_settings, engine, synthetic_source)
    person = duckdb.sql(f"SELECT * FROM '{result.path / 'person.parquet'}'")
    cols = person.columns
    assert "day_of_birth" not in cols and "month_of_birth" not in cols
    assert "person_source_value" not in cols
    rows = person.fetchall()
    source_ids = {int(r["person_id"]) for r in _identifiers(synthetic_source)}
    ids = {r[cols.index("person_id")] for r in rows}
    assert not ids & source_ids
    districts = {r[cols.index("postcode_district")] for r in rows}
    assert all(d is None or (" " not in d and len(d) <= 4) for d in districts)
    bands = {r[cols.index("age_band")] for r in rows}
    assert all(b == "90+" or b.count("-") == 1 for b in bands)


def test_ingest_second_version_keeps_pseudonyms_and_numbers_on(
    data_settings, engine, synthetic_source
):
    first = _run(data_settings, engine, synthetic_source)
    second = _run(data_settings, engine, synthetic_source)
    assert second.version == 2
    q = "SELECT list_sort(list(person_id)) FROM '{}'"
    a = duckdb.sql(q.format(first.path / "person.parquet")).fetchall()
    b = duckdb.sql(q.format(second.path / "person.parquet")).fetchall()
    assert a == b


def test_ingest_optout_removes_listed_people_everywhere(
    data_settings, engine, synthetic_source, tmp_path
):
    ids = _identifiers(synthetic_source)[:7]
    listed = tmp_path / "optout.txt"
    listed.write_text("nhs_number\n" + "\n".join(r["nhs_number"] for r in ids) + "\n")
    with transaction(engine) as s:
        entry = optout.load_list(s, ACTOR, data_settings, listed)
        stored = Path(entry.path)
    assert all(r["nhs_number"].encode() not in stored.read_bytes() for r in ids)
    result = _run(data_settings, engine, synthetic_source)
    m = result.manifest
    assert m["optout"] == {"list_version": 1, "removed_persons": 7}
    assert m["persons"]["published"] == 150 - 7
    notes = duckdb.sql(f"SELECT note_text FROM '{result.path / 'notes.parquet'}'").fetchall()
    assert notes  # the rest are still there
    (event,) = _events(engine, "optout.list.load")
    assert event["details"]["entries"] == 7


def test_ingest_suppress_to_k_reaches_target(data_settings, engine, synthetic_source):
    result = _run(data_settings, engine, synthetic_source, suppress_to_k=3)
    k = result.manifest["k_anonymity"]
    assert k["before"]["min_k"] < 3
    assert k["after"]["min_k"] >= 3
    assert (
        k["suppression"]["removed_records"] == result.manifest["persons"]["removed_k_suppression"]
    )
    counts = duckdb.sql(
        f"SELECT min(n) FROM (SELECT count(*) n FROM '{result.path / 'person.parquet'}' "
        "GROUP BY age_band, sex, postcode_district, ethnicity)"
    ).fetchall()
    assert counts[0][0] >= 3


def test_ingest_date_shift_keeps_intervals_within_a_person(data_settings, engine, synthetic_source):
    plain = _run(data_settings, engine, synthetic_source)
    shifted = _run(data_settings, engine, synthetic_source, date_shift_days=30)
    rows = duckdb.sql(
        f"""
        SELECT a.person_id, a.visit_start_date - b.visit_start_date AS shift,
               (a.visit_end_date - a.visit_start_date) = (b.visit_end_date - b.visit_start_date)
        FROM '{shifted.path / "visit_occurrence.parquet"}' a
        JOIN '{plain.path / "visit_occurrence.parquet"}' b USING (visit_occurrence_id)
        """
    ).fetchall()
    assert rows
    assert all(same for _, _, same in rows)
    per_person: dict[int, set[int]] = {}
    for pid, shift, _ in rows:
        per_person.setdefault(pid, set()).add(shift)
    assert all(len(s) == 1 for s in per_person.values())
    assert {next(iter(s)) for s in per_person.values()} != {0}
    assert all(abs(next(iter(s))) <= 30 for s in per_person.values())


def test_ingest_parquet_source_gives_the_same_tables(
    data_settings, engine, synthetic_source, tmp_path
):
    pq_source = tmp_path / "pq"
    pq_source.mkdir()
    for f in synthetic_source.glob("*.csv"):
        from sde.synth.schema import TABLES

        table = TABLES[f.stem]
        types = ", ".join(
            f"'{c.name}': '{ {'int64': 'BIGINT', 'float64': 'DOUBLE', 'string': 'VARCHAR', 'date': 'DATE'}[c.type] }'"  # noqa: E501
            for c in table.columns
        )
        duckdb.sql(
            f"COPY (SELECT * FROM read_csv('{f}', header=true, columns={{{types}}})) "
            f"TO '{pq_source / (f.stem + '.parquet')}' (FORMAT parquet)"
        )
    a = _run(data_settings, engine, synthetic_source, free_text="drop")
    b = _run(data_settings, engine, pq_source, free_text="drop")
    for name in ("person", "measurement"):
        q = "SELECT * FROM '{}' ORDER BY ALL"
        assert (
            duckdb.sql(q.format(a.path / f"{name}.parquet")).fetchall()
            == duckdb.sql(q.format(b.path / f"{name}.parquet")).fetchall()
        )
    assert b.manifest["source"]["files"]["person.parquet"]["format"] == "parquet"


def test_ingest_free_text_drop_leaves_no_text_column(data_settings, engine, synthetic_source):
    result = _run(data_settings, engine, synthetic_source, free_text="drop")
    cols = duckdb.sql(f"SELECT * FROM '{result.path / 'notes.parquet'}'").columns
    assert "note_text" not in cols


def test_ingest_registry_version_path_points_at_published_folder(
    data_settings, engine, synthetic_source
):
    result = _run(data_settings, engine, synthetic_source)
    with transaction(engine) as s:
        dv = s.scalar(select(DatasetVersion))
        assert dv is not None and Path(dv.path) == result.path


def test_ingest_copy_of_source_is_untouched(data_settings, engine, synthetic_source, tmp_path):
    copy = tmp_path / "src"
    shutil.copytree(synthetic_source, copy)
    before = {p.name: p.read_bytes() for p in copy.glob("*.csv")}
    _run(data_settings, engine, copy)
    assert {p.name: p.read_bytes() for p in copy.glob("*.csv")} == before


@pytest.mark.parametrize("k", [1, 0])
def test_ingest_bad_option_is_refused_before_any_work(data_settings, engine, synthetic_source, k):
    from sde.core.errors import SdeError

    with pytest.raises(SdeError, match="2 or more"):
        _run(data_settings, engine, synthetic_source, suppress_to_k=k)
    assert not (data_settings.datasets_dir / "ehr").exists()
