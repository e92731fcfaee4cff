"""`sde synth`: determinism, schema conformance, planted truth, realism, bad input, streaming."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tracemalloc
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pytest

from sde.core.errors import SdeError
from sde.synth import generate
from sde.synth.schema import (
    ENTITY_TYPES,
    ETHNIC_GROUPS,
    PLANTED_FIELDS,
    PLANTED_FILE,
    TABLES,
    TRUTH_DIR,
    csv_options,
)
from sde.synth.write import synthesize
from tests.support.cli import run_sde


def _read(source: Path, name: str) -> pa.Table:
    parse, convert = csv_options(TABLES[name])
    return pacsv.read_csv(
        source / TABLES[name].file_name, parse_options=parse, convert_options=convert
    )


def _planted(source: Path) -> list[dict]:
    lines = (source / TRUTH_DIR / PLANTED_FILE).read_text("utf-8").splitlines()
    return [json.loads(line) for line in lines]


def _files(source: Path) -> dict[str, bytes]:
    return {str(p.relative_to(source)): p.read_bytes() for p in sorted(source.rglob("*.*"))}


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "source"
    synthesize(3000, out, seed=11)
    return out


def _nhs_ok(number: str) -> bool:
    digits = [int(c) for c in number]
    total = sum(d * w for d, w in zip(digits[:9], range(10, 1, -1), strict=True))
    check = (11 - total % 11) % 11
    return len(digits) == 10 and check != 10 and check == digits[9]


def test_synth_same_seed_is_byte_identical(tmp_path: Path) -> None:
    synthesize(250, tmp_path / "a", seed=5, chunk_persons=100)
    synthesize(250, tmp_path / "b", seed=5, chunk_persons=100)
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert set(a) == {t.file_name for t in TABLES.values()} | {f"{TRUTH_DIR}/{PLANTED_FILE}"}
    assert a == b


def test_synth_is_identical_across_processes(tmp_path: Path) -> None:
    # Hash randomisation differs per process: nothing may depend on set or hash order.
    for name, hash_seed in (("a", "1"), ("b", "2")):
        out = ["-o", str(tmp_path / name)]
        subprocess.run(
            [sys.executable, "-m", "sde.cli.main", "synth", "-n", "150", "--seed", "9", "-q", *out],
            check=True,
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
        )
    assert _files(tmp_path / "a") == _files(tmp_path / "b")


def test_synth_different_seed_differs(tmp_path: Path) -> None:
    synthesize(200, tmp_path / "a", seed=1)
    synthesize(200, tmp_path / "b", seed=2)
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert a["person.csv"] != b["person.csv"]
    assert a["notes.csv"] != b["notes.csv"]


def test_synth_nhs_numbers_valid_and_unique(source: Path) -> None:
    numbers = _read(source, "identifiers").column("nhs_number").to_pylist()
    assert len(numbers) == 3000
    assert len(set(numbers)) == len(numbers)
    assert all(_nhs_ok(n) for n in numbers)


def test_synth_nhs_numbers_unique_across_many_persons() -> None:
    ids = pa.array(range(1, 300_001)).to_numpy()
    numbers = generate.nhs_numbers(ids, seed=3)
    assert len(set(numbers.tolist())) == len(numbers)
    assert all(_nhs_ok(str(n)) for n in numbers[::97].tolist())


def test_synth_files_conform_to_schema(source: Path) -> None:
    person_ids = set(_read(source, "person").column("person_id").to_pylist())
    assert len(person_ids) == 3000
    for name, spec in TABLES.items():
        path = source / spec.file_name
        header = path.read_text("utf-8").split("\n", 1)[0]
        assert header == ",".join(f'"{c}"' for c in spec.column_names), name
        table = _read(source, name)
        assert table.schema.equals(spec.arrow_schema(), check_metadata=False) or [
            f.type for f in table.schema
        ] == [f.type for f in spec.arrow_schema()], name
        assert table.num_rows > 0, name
        for column in spec.columns:
            if not column.nullable:
                assert table.column(column.name).null_count == 0, (name, column.name)
        key = table.select(list(spec.primary_key))
        assert key.group_by(list(spec.primary_key)).aggregate([]).num_rows == table.num_rows
        if spec.person_key:
            assert set(table.column(spec.person_key).to_pylist()) <= person_ids, name


def test_synth_events_lie_within_observation(source: Path) -> None:
    periods = _read(source, "observation_period")
    span = {
        p: (s, e)
        for p, s, e in zip(
            periods.column("person_id").to_pylist(),
            periods.column("observation_period_start_date").to_pylist(),
            periods.column("observation_period_end_date").to_pylist(),
            strict=True,
        )
    }
    drugs = _read(source, "drug_exposure")
    for p, d in zip(
        drugs.column("person_id").to_pylist(),
        drugs.column("drug_exposure_start_date").to_pylist(),
        strict=True,
    ):
        assert span[p][0] <= d <= span[p][1]


def test_synth_planted_record_matches_note_text(source: Path) -> None:
    notes = _read(source, "notes")
    texts = dict(
        zip(notes.column("note_id").to_pylist(), notes.column("note_text").to_pylist(), strict=True)
    )
    owners = dict(
        zip(notes.column("note_id").to_pylist(), notes.column("person_id").to_pylist(), strict=True)
    )
    planted = _planted(source)
    assert len(planted) > 5 * len(texts) > 0
    for p in planted:
        assert tuple(p) == PLANTED_FIELDS
        assert p["entity"] in ENTITY_TYPES
        note_id = p["key"]["note_id"]
        assert texts[note_id][p["start"] : p["end"]] == p["text"]
        assert owners[note_id] == p["person_id"]
    entities = Counter(p["entity"] for p in planted)
    assert set(entities) == set(ENTITY_TYPES)
    formats = {p["text"] for p in planted if p["entity"] == "NHS_NUMBER"}
    assert any(" " in f for f in formats) and any(f.isdigit() for f in formats)


def test_synth_shape_is_realistic(source: Path) -> None:
    person = _read(source, "person")
    n = person.num_rows
    female = pc.sum(pc.equal(person.column("gender_source_value"), "F")).as_py() / n
    assert 0.47 < female < 0.55
    old = pc.sum(pc.less_equal(person.column("year_of_birth"), 1959)).as_py() / n
    assert 0.14 < old < 0.26  # about a fifth of the UK is 65 or older
    groups = Counter(person.column("ethnicity_source_value").to_pylist())
    assert set(groups) == set(ETHNIC_GROUPS)
    assert 0.75 < groups["White"] / n < 0.88
    districts = Counter(
        p.split(" ")[0] for p in _read(source, "identifiers").column("postcode").to_pylist()
    )
    sizes = sorted(districts.values())
    assert sizes[0] < 5 and sizes[-1] > 100  # small k-anonymity classes next to big ones
    conditions = Counter(
        _read(source, "condition_occurrence").column("condition_source_value").to_pylist()
    )
    assert conditions["I10"] > 20 * max(conditions["G35"], 1)
    # Diabetics' HbA1c runs high: measurements follow conditions.
    diabetic = set(
        _read(source, "condition_occurrence")
        .filter(pc.equal(pc.field("condition_source_value"), "E11.9"))
        .column("person_id")
        .to_pylist()
    )
    hba1c = _read(source, "measurement").filter(
        pc.equal(pc.field("measurement_source_value"), "HbA1c")
    )
    values: dict[bool, list[float]] = {True: [], False: []}
    for p, v in zip(
        hba1c.column("person_id").to_pylist(),
        hba1c.column("value_as_number").to_pylist(),
        strict=True,
    ):
        if v is not None:
            values[p in diabetic].append(v)
    assert sum(values[True]) / len(values[True]) > sum(values[False]) / len(values[False]) + 10


def test_synth_rejects_bad_input(tmp_path: Path) -> None:
    for persons in (0, -3):
        with pytest.raises(SdeError, match="--persons must be a positive number"):
            synthesize(persons, tmp_path / "x")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    with pytest.raises(SdeError, match="already exists and is not empty"):
        synthesize(10, tmp_path / "full")
    (tmp_path / "file").write_text("x")
    with pytest.raises(SdeError, match="is an existing file"):
        synthesize(10, tmp_path / "file")
    (tmp_path / "file").unlink()
    with pytest.raises(SdeError, match="parent directory"):
        synthesize(10, tmp_path / "missing" / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"]
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["keep.txt"]


def test_synth_fills_an_existing_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    summary = synthesize(20, tmp_path / "empty", seed=1)
    assert summary.rows["person"] == 20
    assert (tmp_path / "empty" / "person.csv").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


def test_synth_failure_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = generate.generate_chunk

    def fail_on_third(seed: int, chunk_index: int, *args: object) -> generate.Chunk:
        if chunk_index == 2:
            raise RuntimeError("disk full")
        return real(seed, chunk_index, *args)  # type: ignore[arg-type]

    monkeypatch.setattr("sde.synth.write.generate_chunk", fail_on_third)
    with pytest.raises(RuntimeError, match="disk full"):
        synthesize(500, tmp_path / "out", chunk_persons=100)
    assert list(tmp_path.iterdir()) == []


def test_synth_cli_prints_summary_and_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_sde(
        capsys, "synth", "--persons", "50", "--out", str(tmp_path / "s"), "--seed", "4"
    )
    assert result.code == 0, result.err
    assert "identifiers" in result.out and "persons/s" in result.out
    assert (tmp_path / "s" / "notes.csv").exists()
    again = run_sde(capsys, "synth", "--persons", "50", "--out", str(tmp_path / "s"))
    assert again.code == 2
    assert again.err.strip().count("\n") == 0 and again.err.startswith("error: output directory")
    bad = run_sde(capsys, "synth", "--persons", "0", "--out", str(tmp_path / "t"))
    assert bad.code == 2 and bad.err.startswith("error: --persons must be a positive number")
    assert not (tmp_path / "t").exists()


def _peak(tmp_path: Path, persons: int, chunk: int) -> int:
    tracemalloc.start()
    try:
        synthesize(persons, tmp_path / f"p{persons}-{chunk}", seed=1, chunk_persons=chunk)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.slow
def test_synth_streams_memory_does_not_grow_with_persons(tmp_path: Path) -> None:
    synthesize(100, tmp_path / "warm-up", seed=1)  # first-call allocations are not per person
    small = _peak(tmp_path, 1000, chunk=500)
    large = _peak(tmp_path, 4000, chunk=500)
    # Four times the persons in chunks of the same size: the peak stays the same...
    assert large < small * 1.5, (small, large)
    # ...while holding them all at once would show up in this measurement.
    assert _peak(tmp_path, 4000, chunk=4000) > 2.5 * large
