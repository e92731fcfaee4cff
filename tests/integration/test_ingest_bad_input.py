"""Bad sources: a report naming file, row and column, and nothing published."""

from __future__ import annotations

import csv
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select

from sde.core.db import transaction
from sde.ingest.pipeline import IngestOptions, ingest
from sde.ingest.source import SourceInvalid
from sde.registry.models import DatasetVersion
from tests.support.registry import ACTOR

Rows = list[list[str]]


def _edit(source: Path, table: str, change: Callable[[Rows], None]) -> None:
    path = source / f"{table}.csv"
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    change(rows)
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)


def _col(rows: Rows, name: str) -> int:
    return rows[0].index(name)


def _drop_column(name: str) -> Callable[[Rows], None]:
    def change(rows: Rows) -> None:
        i = _col(rows, name)
        for r in rows:
            del r[i]

    return change


def _add_column(rows: Rows) -> None:
    rows[0].append("shoe_size")
    for r in rows[1:]:
        r.append("9")


def _set(column: str, row: int, value: str) -> Callable[[Rows], None]:
    def change(rows: Rows) -> None:
        rows[row][_col(rows, column)] = value

    return change


def _nhs_of_row(source: Path, row: int, spaced: bool = False) -> str:
    with open(source / "identifiers.csv", newline="", encoding="utf-8") as f:
        n = list(csv.DictReader(f))[row - 1]["nhs_number"]
    return f"{n[:3]} {n[3:6]} {n[6:]}" if spaced else n


def _bad_last_digit(rows: Rows) -> None:
    i = _col(rows, "nhs_number")
    n = rows[3][i]
    rows[3][i] = n[:9] + str((int(n[9]) + 1) % 10)


def _duplicate_person(rows: Rows) -> None:
    rows[10][0] = rows[1][0]


def _non_utf8(source: Path) -> None:
    path = source / "visit_occurrence.csv"
    lines = path.read_bytes().split(b"\n")
    lines[4] = (
        lines[4].replace(b"Outpatient", b"Outp\xe9tient").replace(b"Inpatient", b"Inp\xe9tient")
    )
    lines[4] = lines[4].replace(b"A&E", b"A\xe9E")
    path.write_bytes(b"\n".join(lines))


def _header_only(source: Path) -> None:
    path = source / "drug_exposure.csv"
    path.write_bytes(path.read_bytes().split(b"\n", 1)[0] + b"\n")


# name -> (how to break the source, expected file, column, row or line, words in the message)
CASES: dict[str, tuple[Callable[[Path], None], str, str | None, tuple[str, int] | None, str]] = {
    "missing_column": (
        lambda s: _edit(s, "person", _drop_column("ethnicity_source_value")),
        "person.csv",
        "ethnicity_source_value",
        ("line", 1),
        "missing",
    ),
    "extra_column": (
        lambda s: _edit(s, "visit_occurrence", _add_column),
        "visit_occurrence.csv",
        "shoe_size",
        ("line", 1),
        "unexpected column",
    ),
    "wrong_type": (
        lambda s: _edit(s, "measurement", _set("value_as_number", 5, "high")),
        "measurement.csv",
        "value_as_number",
        ("line", 6),
        "expected float64",
    ),
    "wrong_date": (
        lambda s: _edit(s, "visit_occurrence", _set("visit_start_date", 3, "31/02/2020")),
        "visit_occurrence.csv",
        "visit_start_date",
        ("line", 4),
        "expected date",
    ),
    "invalid_nhs_number": (
        lambda s: _edit(s, "identifiers", _bad_last_digit),
        "identifiers.csv",
        "nhs_number",
        ("row", 3),
        "not a valid NHS number",
    ),
    "duplicate_person_id": (
        lambda s: _edit(s, "person", _duplicate_person),
        "person.csv",
        "person_id",
        ("row", 10),
        "duplicate person_id",
    ),
    "non_utf8": (
        _non_utf8,
        "visit_occurrence.csv",
        "visit_source_value",
        ("line", 5),
        "not UTF-8",
    ),
    "header_only": (_header_only, "drug_exposure.csv", None, None, "no data rows"),
    "zero_bytes": (
        lambda s: (s / "notes.csv").write_bytes(b""),
        "notes.csv",
        None,
        None,
        "empty (zero bytes)",
    ),
    "missing_file": (
        lambda s: (s / "condition_occurrence.csv").unlink(),
        "condition_occurrence.csv",
        None,
        None,
        "missing",
    ),
    "unexpected_file": (
        lambda s: (s / "extra.csv").write_text("a\n1\n"),
        "extra.csv",
        None,
        None,
        "unexpected file",
    ),
    "required_value_empty": (
        lambda s: _edit(s, "condition_occurrence", _set("condition_concept_id", 6, "")),
        "condition_occurrence.csv",
        "condition_concept_id",
        ("row", 6),
        "empty value",
    ),
    "unknown_person": (
        lambda s: _edit(s, "drug_exposure", _set("person_id", 8, "99999999")),
        "drug_exposure.csv",
        "person_id",
        ("row", 8),
        "not found in person.csv",
    ),
    "nhs_number_in_text_column": (
        lambda s: _edit(
            s, "visit_occurrence", _set("visit_source_value", 7, _nhs_of_row(s, 2, True))
        ),
        "visit_occurrence.csv",
        "visit_source_value",
        ("row", 7),
        "NHS number",
    ),
    "email_in_text_column": (
        lambda s: _edit(s, "measurement", _set("unit_source_value", 2, "jo.bloggs@nhs.net")),
        "measurement.csv",
        "unit_source_value",
        ("row", 2),
        "email",
    ),
    "postcode_in_text_column": (
        lambda s: _edit(s, "drug_exposure", _set("drug_source_value", 4, "LE1 7WW")),
        "drug_exposure.csv",
        "drug_source_value",
        ("row", 4),
        "postcode",
    ),
    "nhs_number_in_numeric_column": (
        lambda s: _edit(s, "measurement", _set("value_as_number", 9, _nhs_of_row(s, 5))),
        "measurement.csv",
        "value_as_number",
        ("row", 9),
        "NHS number",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_ingest_bad_input_is_reported_and_nothing_published(
    case, data_settings, engine, synthetic_source, tmp_path
):
    break_it, file, column, where, words = CASES[case]
    source = tmp_path / "source"
    shutil.copytree(synthetic_source, source)
    break_it(source)
    with pytest.raises(SourceInvalid) as info:
        ingest(data_settings, engine, source, "ehr", ACTOR, IngestOptions(reference_year=2025))
    matching = [p for p in info.value.problems if p.file == file and words in p.message]
    assert matching, f"no problem for {file} mentioning {words!r}: {info.value.problems}"
    problem = matching[0]
    assert problem.column == column
    if where is not None:
        kind, number = where
        assert getattr(problem, kind) == number, str(problem)
    # One line naming the file (the CLI prints it after `error:`).
    assert file in str(info.value) and "\n" not in str(info.value)
    # Nothing published: no version folder, no leftovers, no registry row.
    folder = data_settings.datasets_dir / "ehr"
    assert not folder.exists() or list(folder.iterdir()) == []
    with transaction(engine) as s:
        assert s.scalar(select(func.count()).select_from(DatasetVersion)) == 0


def test_ingest_bad_input_cli_prints_report_and_exits_2(
    sde_home, synthetic_source, tmp_path, capsys
):
    from tests.support.cli import run_sde

    source = tmp_path / "source"
    shutil.copytree(synthetic_source, source)
    _edit(source, "measurement", _set("value_as_number", 5, "high"))
    result = run_sde(capsys, "ingest", str(source), "--dataset", "ehr")
    assert result.code == 2
    assert "error: source rejected, nothing published: measurement.csv line 6" in result.err
    assert "value_as_number" in result.err
